//! Shared test harness: a uniquely named schema (PostgreSQL,
//! ROWFERRY_TEST_PG) or database (MariaDB/MySQL, ROWFERRY_TEST_MYSQL) per
//! test, dropped afterwards, and helpers to run the real rowferry binary.
//! A server that cannot be reached fails the test.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

pub fn pg_url() -> String {
    std::env::var("ROWFERRY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_url() -> String {
    std::env::var("ROWFERRY_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub async fn connect() -> Client {
    let url = pg_url();
    let (client, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is unreachable ({e}); start it with scripts/services.sh")
        });
    tokio::spawn(conn);
    client
}

pub async fn connect_mysql() -> mysql_async::Conn {
    connect_mysql_at(&mysql_url()).await
}

pub async fn connect_mysql_at(url: &str) -> mysql_async::Conn {
    let url = url.to_string();
    let opts = mysql_async::Opts::from_url(&url).expect("a mysql:// URL");
    mysql_async::Conn::new(opts).await.unwrap_or_else(|e| {
        panic!("MariaDB/MySQL at {url} is unreachable ({e}); start it with scripts/services.sh")
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

enum Conn {
    Pg(Client),
    My(tokio::sync::Mutex<mysql_async::Conn>),
}

/// A schema (database, on MySQL) of the test's own, and a temp directory
/// for its files.
pub struct TestDb {
    conn: Conn,
    /// The server's URL (ROWFERRY_TEST_PG / ROWFERRY_TEST_MYSQL, or another).
    server: String,
    pub schema: String,
    pub dir: PathBuf,
}

fn unique_name(name: &str) -> String {
    format!(
        "rf_{name}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    /// On PostgreSQL.
    pub async fn new(name: &str) -> TestDb {
        let client = connect().await;
        let schema = unique_name(name);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .expect("create test schema");
        TestDb::with(Conn::Pg(client), pg_url(), schema)
    }

    /// On MariaDB/MySQL.
    pub async fn mysql(name: &str) -> TestDb {
        TestDb::mysql_at(name, &mysql_url()).await
    }

    /// On the MariaDB/MySQL server at `url` (e.g. a replication primary).
    pub async fn mysql_at(name: &str, url: &str) -> TestDb {
        let mut conn = connect_mysql_at(url).await;
        let schema = unique_name(name);
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema} CHARACTER SET utf8mb4; \
             SET SESSION group_concat_max_len = 1073741824, time_zone = '+00:00'"
        ))
        .await
        .expect("create test database");
        TestDb::with(
            Conn::My(tokio::sync::Mutex::new(conn)),
            url.to_string(),
            schema,
        )
    }

    fn with(conn: Conn, server: String, schema: String) -> TestDb {
        let dir = std::env::temp_dir().join(&schema);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestDb {
            conn,
            server,
            schema,
            dir,
        }
    }

    pub fn url(&self) -> String {
        self.server.clone()
    }

    /// Run SQL (several statements are fine) with `{s}` replaced by this
    /// test's schema.
    pub async fn exec(&self, sql: &str) {
        let sql = sql.replace("{s}", &self.schema);
        let result = match &self.conn {
            Conn::Pg(c) => c.batch_execute(&sql).await.map_err(|e| format!("{e:?}")),
            Conn::My(c) => c
                .lock()
                .await
                .query_drop(&sql)
                .await
                .map_err(|e| format!("{e:?}")),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row, as text ("" for NULL).
    pub async fn scalar(&self, sql: &str) -> String {
        let sql = sql.replace("{s}", &self.schema);
        let result = match &self.conn {
            Conn::Pg(c) => c
                .query_one(&sql, &[])
                .await
                .map(|row| row.get::<_, Option<String>>(0))
                .map_err(|e| format!("{e:?}")),
            Conn::My(c) => c
                .lock()
                .await
                .query_first::<Option<String>, _>(&sql)
                .await
                .map(Option::flatten)
                .map_err(|e| format!("{e:?}")),
        };
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_default()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let cast = match self.conn {
            Conn::Pg(_) => "count(*)::text",
            Conn::My(_) => "CAST(COUNT(*) AS CHAR)",
        };
        self.scalar(&format!("SELECT {cast} FROM {{s}}.{table}"))
            .await
            .parse()
            .expect("count")
    }

    /// Row count and md5 of every row's text form over `cols`, in key order:
    /// equal checksums mean the same rows with the same values.
    pub async fn checksum(&self, table: &str, cols: &str, order: &str) -> String {
        let sql = match self.conn {
            Conn::Pg(_) => format!(
                "SELECT count(*)::text || ':' || coalesce(md5(string_agg(row({cols})::text, '|' ORDER BY {order})), '') \
                 FROM {{s}}.{table}"
            ),
            // JSON_ARRAY keeps NULLs apart from any string (CONCAT_WS
            // would skip them). Pass binary columns through HEX().
            Conn::My(_) => format!(
                "SELECT CONCAT(COUNT(*), ':', COALESCE(MD5(GROUP_CONCAT(JSON_ARRAY({cols}) ORDER BY {order} \
                 SEPARATOR '\\n')), '')) FROM {{s}}.{table}"
            ),
        };
        self.scalar(&sql).await
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn q(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// Arguments of a copy from `src` to `dst` in this schema, with a
    /// checkpoint file of the test's own.
    pub fn copy_args(&self, src: &str, dst: &str) -> Vec<String> {
        let mut args: Vec<String> = vec!["copy".into(), "--source".into(), self.url()];
        args.extend([
            "--table".into(),
            self.q(src),
            "--target-table".into(),
            self.q(dst),
        ]);
        args.extend([
            "--checkpoint".into(),
            self.path("job.checkpoint").display().to_string(),
        ]);
        args
    }

    /// Drop the schema and files, and check that nothing is left.
    pub async fn cleanup(mut self) {
        let schema = std::mem::take(&mut self.schema);
        let left = match &self.conn {
            Conn::Pg(_) => "SELECT count(*)::text FROM pg_namespace WHERE nspname = '{s}'",
            Conn::My(_) => {
                "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{s}'"
            }
        };
        drop_schema(&self.conn, &schema).await;
        self.schema = schema.clone();
        assert_eq!(self.scalar(left).await, "0", "schema {schema} left behind");
        self.schema.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn drop_schema(conn: &Conn, schema: &str) {
    match conn {
        Conn::Pg(c) => c
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .expect("drop test schema"),
        Conn::My(c) => c
            .lock()
            .await
            .query_drop(format!("DROP DATABASE IF EXISTS {schema}"))
            .await
            .expect("drop test database"),
    }
}

impl Drop for TestDb {
    /// A test that panicked before `cleanup` still leaves nothing behind.
    fn drop(&mut self) {
        if self.schema.is_empty() {
            return;
        }
        let schema = std::mem::take(&mut self.schema);
        let mysql = matches!(self.conn, Conn::My(_));
        let server = self.server.clone();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let conn = if mysql {
                    Conn::My(tokio::sync::Mutex::new(connect_mysql_at(&server).await))
                } else {
                    Conn::Pg(connect().await)
                };
                drop_schema(&conn, &schema).await;
                Some(())
            })
        })
        .join();
    }
}

/// `COMMAND --source S --target T --table A --target-table B` between the
/// test databases `source` and `target` (possibly on other servers or
/// engines), then `extra`.
pub fn across(
    command: &str,
    source: &TestDb,
    table: &str,
    target: &TestDb,
    target_table: &str,
    extra: &[&str],
) -> Vec<String> {
    with(
        vec![
            command.into(),
            "--source".into(),
            source.url(),
            "--target".into(),
            target.url(),
            "--table".into(),
            source.q(table),
            "--target-table".into(),
            target.q(target_table),
        ],
        extra,
    )
}

/// `args` followed by `extra`.
pub fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Run a copy that must be refused: exit 2, `needle` in the message,
/// "nothing was written", no panic, the target `dst` empty and no
/// checkpoint file.
pub async fn refused(db: &TestDb, args: Vec<String>, needle: &str) -> String {
    let out = run(&args);
    let err = stderr(&out);
    expect_exit(&out, 2);
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(db.count("dst").await, 0, "target untouched");
    assert!(!db.path("job.checkpoint").exists(), "no checkpoint written");
    err
}

/// Run with `ROWFERRY_CRASH_AFTER_CHUNKS=chunks` (an abort right after
/// that many commits, before the checkpoint records the last one) and
/// assert that the process died that way.
pub fn run_crashing_after(args: &[String], chunks: u32) -> Output {
    let out = bin()
        .args(args)
        .env("ROWFERRY_CRASH_AFTER_CHUNKS", chunks.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run rowferry");
    assert_eq!(
        out.status.code(),
        None,
        "expected an abort: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("ROWFERRY_CRASH_AFTER_CHUNKS={chunks} reached")),
        "{}",
        stderr(&out)
    );
    out
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rowferry"))
}

/// Run rowferry to the end.
pub fn run(args: &[String]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rowferry")
}

pub fn run_strs(args: &[&str]) -> Output {
    run(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert the exit code, showing the output when it is not the one expected.
pub fn expect_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A running rowferry with `--progress json`, whose progress lines can be
/// waited on.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(args: &[String]) -> Running {
        let mut child = bin()
            .args(args)
            .args(["--progress", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rowferry");
        let err = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (up to 60 s) for a JSON progress line satisfying `pred`.
    pub fn wait_for_progress(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let progress = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .filter(|v| v.get("phase").is_some());
                    if let Some(v) = progress.filter(|v| pred(v)) {
                        return v;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!(
            "progress condition never met; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// Wait for exit; returns the code and all of stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().expect("wait");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// A PostgreSQL database of the test's own beside the default one (copies
/// into another database need it), holding a schema named like `db`'s.
/// `drop` removes it.
pub struct OtherDatabase {
    pub name: String,
    schema: String,
    client: Client,
}

impl OtherDatabase {
    pub async fn new(db: &TestDb, tag: &str) -> OtherDatabase {
        let name = unique_name(tag);
        let admin = connect().await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the other database");
        }
        let base = pg_url();
        let at = base.rfind('/').expect("a database in ROWFERRY_TEST_PG");
        let url = format!("{}/{name}", &base[..at]);
        let (client, conn) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connect to the other database");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {}", db.schema))
            .await
            .expect("schema in the other database");
        OtherDatabase {
            name,
            schema: db.schema.clone(),
            client,
        }
    }

    pub fn url(&self) -> String {
        let base = pg_url();
        let at = base.rfind('/').expect("a database in ROWFERRY_TEST_PG");
        format!("{}/{}", &base[..at], self.name)
    }

    /// The schema-qualified name of `table` there.
    pub fn q(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// Run SQL with `{s}` replaced by the schema's name.
    pub async fn exec(&self, sql: &str) {
        let sql = sql.replace("{s}", &self.schema);
        self.client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The first column of the first row, as text ("" for NULL).
    pub async fn scalar(&self, sql: &str) -> String {
        let sql = sql.replace("{s}", &self.schema);
        self.client
            .query_one(&sql, &[])
            .await
            .map(|row| row.get::<_, Option<String>>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .unwrap_or_default()
    }

    pub async fn drop(self) {
        drop(self.client);
        connect()
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop the other database");
    }
}
