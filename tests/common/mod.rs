//! Shared test harness: a uniquely named schema per test on the real
//! PostgreSQL (ROWFERRY_TEST_PG), dropped afterwards, and helpers to run the
//! real rowferry binary. A server that cannot be reached fails the test.

#![allow(dead_code)]

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

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A schema of the test's own, and a temp directory for its files.
pub struct TestDb {
    pub client: Client,
    pub schema: String,
    pub dir: PathBuf,
}

impl TestDb {
    pub async fn new(name: &str) -> TestDb {
        let client = connect().await;
        let schema = format!(
            "rf_{name}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .expect("create test schema");
        let dir = std::env::temp_dir().join(&schema);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestDb {
            client,
            schema,
            dir,
        }
    }

    /// Run SQL with `{s}` replaced by this test's schema.
    pub async fn exec(&self, sql: &str) {
        let sql = sql.replace("{s}", &self.schema);
        self.client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    pub async fn scalar(&self, sql: &str) -> String {
        let sql = sql.replace("{s}", &self.schema);
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        row.get::<_, Option<String>>(0).unwrap_or_default()
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT count(*)::text FROM {{s}}.{table}"))
            .await
            .parse()
            .expect("count")
    }

    /// Row count and md5 of every row's text form over `cols`, in key order:
    /// equal checksums mean the same rows with the same values.
    pub async fn checksum(&self, table: &str, cols: &str, order: &str) -> String {
        self.scalar(&format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(row({cols})::text, '|' ORDER BY {order})), '') \
             FROM {{s}}.{table}"
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
        let mut args: Vec<String> = vec!["copy".into(), "--source".into(), pg_url()];
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
        self.client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await
            .expect("drop test schema");
        let left = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )
            .await
            .expect("look for the schema");
        assert_eq!(
            left.get::<_, i64>(0),
            0,
            "schema {} left behind",
            self.schema
        );
        let _ = std::fs::remove_dir_all(&self.dir);
        self.schema.clear();
    }
}

impl Drop for TestDb {
    /// A test that panicked before `cleanup` still leaves nothing behind.
    fn drop(&mut self) {
        if self.schema.is_empty() {
            return;
        }
        let schema = std::mem::take(&mut self.schema);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&pg_url(), NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
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
