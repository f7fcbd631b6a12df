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

// ----------------------------------------------------------- SQL Server
//
// No SQL Server runs on the dev/CI machines: its tests are `#[ignore]`d
// (nextest reports them as skipped) and scripts/test.sh runs them only when
// ROWFERRY_TEST_MSSQL is set. Run explicitly without it, or with a server
// that cannot be reached, they fail. The harness talks to the server with
// tiberius directly, not through the driver under test.

/// A tiberius client over tokio.
pub type MsClient = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

/// ROWFERRY_TEST_MSSQL, e.g.
/// `sqlserver://sa:RowFerry!2026@127.0.0.1:1433/master?trust_server_certificate=true`.
pub fn mssql_url() -> String {
    std::env::var("ROWFERRY_TEST_MSSQL").unwrap_or_else(|_| {
        panic!(
            "ROWFERRY_TEST_MSSQL is not set: these tests need a SQL Server. Start one with \
             `docker compose up -d --wait sqlserver` and set \
             ROWFERRY_TEST_MSSQL='sqlserver://sa:RowFerry!2026@127.0.0.1:1433/master?trust_server_certificate=true' \
             (README, \"SQL Server\")"
        )
    })
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| {
            bytes
                .get(j)
                .and_then(|b| (*b as char).to_digit(16))
                .map(|d| d as u8)
        };
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("a UTF-8 URL")
}

/// The tiberius configuration for a `sqlserver://` URL (the options the
/// tests need: encrypt and trust_server_certificate).
pub fn mssql_config(url: &str) -> tiberius::Config {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("ROWFERRY_TEST_MSSQL: {e}"));
    let mut config = tiberius::Config::new();
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    config.host(host.trim_start_matches('[').trim_end_matches(']'));
    config.port(parsed.port().unwrap_or(1433));
    let database = percent_decoded(parsed.path().trim_start_matches('/'));
    if !database.is_empty() {
        config.database(database);
    }
    config.authentication(tiberius::AuthMethod::sql_server(
        percent_decoded(parsed.username()),
        percent_decoded(parsed.password().unwrap_or("")),
    ));
    config.encryption(tiberius::EncryptionLevel::On);
    for (key, value) in parsed.query_pairs() {
        let key = key.to_ascii_lowercase().replace(['_', '-'], "");
        let on = matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "yes" | "1" | "on"
        );
        match key.as_str() {
            "trustservercertificate" if on => config.trust_cert(),
            "encrypt" if !on && value.eq_ignore_ascii_case("off") => {
                config.encryption(tiberius::EncryptionLevel::Off)
            }
            _ => {}
        }
    }
    config
}

/// Connect to the SQL Server at `url`, or fail the test saying why.
pub async fn connect_mssql(url: &str) -> MsClient {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let shown = rowferry::url::DbUrl::parse(url)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| "ROWFERRY_TEST_MSSQL".into());
    let config = mssql_config(url);
    let tcp = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::net::TcpStream::connect(config.get_addr()),
    )
    .await
    .unwrap_or_else(|_| panic!("SQL Server at {shown} did not answer within 15 s"))
    .unwrap_or_else(|e| panic!("SQL Server at {shown} is unreachable ({e})"));
    let _ = tcp.set_nodelay(true);
    let mut client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap_or_else(|e| panic!("SQL Server at {shown} refused the connection ({e})"));
    ms_exec(
        &mut client,
        "SET XACT_ABORT ON; SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON; SET ANSI_PADDING ON; \
         SET ANSI_WARNINGS ON; SET ARITHABORT ON; SET CONCAT_NULL_YIELDS_NULL ON; \
         SET TEXTSIZE 2147483647",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    client
}

/// Run a batch; the server's error as text.
pub async fn ms_exec(client: &mut MsClient, sql: &str) -> Result<(), String> {
    match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    }
    .map_err(|e| format!("{sql}: {e}"))
}

/// The first column of the first row as text (the query must return
/// nvarchar), "" for NULL or no row.
pub async fn ms_scalar(client: &mut MsClient, sql: &str) -> Result<String, String> {
    let row = match client.simple_query(sql).await {
        Ok(stream) => stream.into_row().await,
        Err(e) => Err(e),
    }
    .map_err(|e| format!("{sql}: {e}"))?;
    Ok(row
        .and_then(|r| r.get::<&str, _>(0).map(String::from))
        .unwrap_or_default())
}

/// Drop every object of `schema`, then the schema (SQL Server has no
/// DROP SCHEMA ... CASCADE). Triggers and constraints go with their tables.
pub async fn ms_drop_schema(client: &mut MsClient, schema: &str) -> Result<(), String> {
    let s = schema.replace('\'', "''");
    ms_exec(
        client,
        &format!(
            "DECLARE @sql nvarchar(max);
             SELECT @sql = STRING_AGG(CONVERT(nvarchar(max), N'ALTER TABLE ' + QUOTENAME(OBJECT_SCHEMA_NAME(fk.parent_object_id))
                    + N'.' + QUOTENAME(OBJECT_NAME(fk.parent_object_id)) + N' DROP CONSTRAINT ' + QUOTENAME(fk.name)), N'; ')
             FROM sys.foreign_keys fk
             WHERE OBJECT_SCHEMA_NAME(fk.parent_object_id) = N'{s}' OR OBJECT_SCHEMA_NAME(fk.referenced_object_id) = N'{s}';
             IF @sql IS NOT NULL EXEC sys.sp_executesql @sql;
             SET @sql = NULL;
             SELECT @sql = STRING_AGG(CONVERT(nvarchar(max), N'DROP '
                    + CASE o.type WHEN 'V' THEN N'VIEW' WHEN 'U' THEN N'TABLE' WHEN 'P' THEN N'PROCEDURE'
                                  WHEN 'SO' THEN N'SEQUENCE' ELSE N'FUNCTION' END
                    + N' ' + QUOTENAME(s.name) + N'.' + QUOTENAME(o.name)), N'; ')
                    WITHIN GROUP (ORDER BY CASE o.type WHEN 'V' THEN 0 WHEN 'P' THEN 1 WHEN 'U' THEN 2 ELSE 3 END)
             FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id
             WHERE s.name = N'{s}' AND o.parent_object_id = 0 AND o.type IN ('V', 'U', 'P', 'SO', 'FN', 'IF', 'TF');
             IF @sql IS NOT NULL EXEC sys.sp_executesql @sql;
             DROP SCHEMA IF EXISTS [{q}];",
            q = schema.replace(']', "]]")
        ),
    )
    .await
}

/// A schema of the test's own on the SQL Server of ROWFERRY_TEST_MSSQL,
/// and a temp directory for its files; `{s}` in SQL is the schema.
pub struct MsDb {
    client: tokio::sync::Mutex<MsClient>,
    server: String,
    pub schema: String,
    pub dir: PathBuf,
}

impl MsDb {
    pub async fn new(name: &str) -> MsDb {
        let server = mssql_url();
        let mut client = connect_mssql(&server).await;
        let schema = unique_name(name);
        ms_drop_schema(&mut client, &schema)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ms_exec(&mut client, &format!("EXEC (N'CREATE SCHEMA [{schema}]')"))
            .await
            .unwrap_or_else(|e| panic!("create test schema: {e}"));
        let dir = std::env::temp_dir().join(&schema);
        std::fs::create_dir_all(&dir).expect("temp dir");
        MsDb {
            client: tokio::sync::Mutex::new(client),
            server,
            schema,
            dir,
        }
    }

    pub fn url(&self) -> String {
        self.server.clone()
    }

    /// Run a batch with `{s}` replaced by this test's schema (CREATE
    /// TRIGGER and CREATE VIEW must be alone in theirs).
    pub async fn exec(&self, sql: &str) {
        let sql = sql.replace("{s}", &self.schema);
        ms_exec(&mut *self.client.lock().await, &sql)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Like `exec`, the server's error returned.
    pub async fn try_exec(&self, sql: &str) -> Result<(), String> {
        let sql = sql.replace("{s}", &self.schema);
        ms_exec(&mut *self.client.lock().await, &sql).await
    }

    /// The first column of the first row, as text (convert it to nvarchar
    /// in the query); "" for NULL.
    pub async fn scalar(&self, sql: &str) -> String {
        let sql = sql.replace("{s}", &self.schema);
        ms_scalar(&mut *self.client.lock().await, &sql)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!(
            "SELECT CONVERT(nvarchar(20), COUNT_BIG(*)) FROM {{s}}.{table}"
        ))
        .await
        .parse()
        .expect("count")
    }

    /// Row count and SHA-256 of every row's values (`cols`, NULL kept
    /// apart from any text) in `order`: equal checksums, same rows.
    pub async fn checksum(&self, table: &str, cols: &[&str], order: &str) -> String {
        let row = cols
            .iter()
            .map(|c| format!("COALESCE(N'=' + CONVERT(nvarchar(max), {c}), N'NULL')"))
            .collect::<Vec<_>>()
            .join(" + N'|' + ");
        self.scalar(&format!(
            "SELECT CONVERT(nvarchar(20), COUNT_BIG(*)) + N':' + COALESCE(CONVERT(nvarchar(64), \
             HASHBYTES('SHA2_256', STRING_AGG(CONVERT(nvarchar(max), {row}), NCHAR(10)) \
             WITHIN GROUP (ORDER BY {order})), 2), N'') FROM {{s}}.{table}"
        ))
        .await
    }

    /// rowferry's objects (triggers, state tables) left in the schema.
    pub async fn rowferry_objects(&self) -> String {
        self.scalar(
            "SELECT CONVERT(nvarchar(10), COUNT(*)) FROM sys.objects \
             WHERE schema_id = SCHEMA_ID(N'{s}') AND name LIKE N'rowferry%'",
        )
        .await
    }

    /// A column list of `table`, in order.
    pub async fn columns(&self, table: &str) -> String {
        self.scalar(&format!(
            "SELECT STRING_AGG(CONVERT(nvarchar(max), name), N',') WITHIN GROUP (ORDER BY column_id) \
             FROM sys.columns WHERE object_id = OBJECT_ID(N'[{{s}}].[{table}]')"
        ))
        .await
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
        vec![
            "copy".into(),
            "--source".into(),
            self.url(),
            "--table".into(),
            self.q(src),
            "--target-table".into(),
            self.q(dst),
            "--checkpoint".into(),
            self.path("job.checkpoint").display().to_string(),
        ]
    }

    /// Drop the schema and files, and check that nothing is left.
    pub async fn cleanup(mut self) {
        let schema = std::mem::take(&mut self.schema);
        let mut client = self.client.lock().await;
        ms_drop_schema(&mut client, &schema)
            .await
            .unwrap_or_else(|e| panic!("drop test schema: {e}"));
        let left = ms_scalar(
            &mut client,
            &format!(
                "SELECT CONVERT(nvarchar(10), COUNT(*)) FROM sys.schemas WHERE name = N'{}'",
                schema.replace('\'', "''")
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(left, "0", "schema {schema} left behind");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for MsDb {
    /// A test that panicked before `cleanup` still leaves nothing behind.
    fn drop(&mut self) {
        if self.schema.is_empty() {
            return;
        }
        let schema = std::mem::take(&mut self.schema);
        let server = self.server.clone();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut client = connect_mssql(&server).await;
                ms_drop_schema(&mut client, &schema).await.ok()
            })
        })
        .join();
    }
}
