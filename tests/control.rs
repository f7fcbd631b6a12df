//! Steering a running job from outside, against the real binary and real
//! servers: `--throttle-query` holds chunks until it returns 0, the control
//! socket's commands each change what the job does, `/metrics` serves
//! Prometheus text that says why the job is held, `--on-event` hooks hear
//! the job's events in order, and `--critical-load` stops a job cleanly so
//! that a rerun resumes it.

mod common;
use common::*;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const QUERY_HOLD: &str = "--throttle-query returned 1";
const OPERATOR_HOLD: &str = "paused by the operator";

/// A running rowferry (`--progress json`) that is killed if the test fails
/// before it ends: a failed test leaves no process behind.
struct Job(Option<Running>);

impl Job {
    fn start(args: &[String]) -> Job {
        Job(Some(Running::start(args)))
    }

    fn finish(mut self) -> (Option<i32>, String) {
        self.0.take().expect("running").finish()
    }

    /// Wait for exit like `finish`, but fail (and kill it) after `secs`.
    fn finish_within(mut self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let (_, err) = self.finish();
                let tail: Vec<&str> = err.lines().rev().take(5).collect();
                panic!(
                    "rowferry did not end within {secs}s; last lines (newest first):\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.finish()
    }

    /// Panic (with its stderr) if the process has already exited.
    fn assert_alive(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let (_, err) = self.0.take().expect("running").finish();
            panic!("rowferry exited ({status}) before {what}:\n{err}");
        }
    }
}

impl Deref for Job {
    type Target = Running;
    fn deref(&self) -> &Running {
        self.0.as_ref().expect("running")
    }
}

impl DerefMut for Job {
    fn deref_mut(&mut self) -> &mut Running {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(mut running) = self.0.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

/// A connection to a job's control socket.
struct Ctl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Ctl {
    /// Connect once the job listens (it does after its start-up checks).
    fn connect(path: &Path, job: &mut Job) -> Ctl {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(stream) = UnixStream::connect(path) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("read timeout");
                let writer = stream.try_clone().expect("clone socket");
                return Ctl {
                    reader: BufReader::new(stream),
                    writer,
                };
            }
            job.assert_alive("its control socket answered");
            assert!(
                Instant::now() < deadline,
                "nothing listens on {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send one command; its one reply line.
    fn cmd(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .expect("send command");
        let mut reply = String::new();
        let n = self.reader.read_line(&mut reply).expect("read reply");
        assert!(n > 0, "the socket closed instead of answering {command:?}");
        assert!(reply.ends_with('\n'), "reply is one whole line: {reply:?}");
        reply.trim_end().to_string()
    }

    /// A command that must succeed: its reply starts with `ok`.
    fn ok(&mut self, command: &str) -> String {
        let reply = self.cmd(command);
        assert!(reply.starts_with("ok"), "{command:?} answered {reply:?}");
        reply
    }

    fn status(&mut self) -> Value {
        let reply = self.cmd("status");
        serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("status is not one JSON object ({e}): {reply}"))
    }

    /// Poll `status` (up to 20 s) until `pred` holds; that status.
    fn wait_for_status(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status();
            if pred(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "status never showed {what}: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `src` with `rows` rows (id, payload), an empty `dst` like it, and
/// `ctl(hold)` = 1 for a throttle query; on PostgreSQL.
async fn pg_tables(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id int PRIMARY KEY, payload text NOT NULL);
         INSERT INTO {{s}}.src SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;
         ANALYZE {{s}}.src;
         CREATE TABLE {{s}}.dst (LIKE {{s}}.src INCLUDING ALL);
         CREATE TABLE {{s}}.ctl (hold int NOT NULL);
         INSERT INTO {{s}}.ctl VALUES (1);"
    ))
    .await;
}

/// The same on MariaDB/MySQL.
async fn mysql_tables(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id int PRIMARY KEY, payload varchar(64) NOT NULL);
         INSERT INTO {{s}}.src SELECT seq, MD5(seq) FROM seq_1_to_{rows};
         ANALYZE TABLE {{s}}.src;
         CREATE TABLE {{s}}.dst LIKE {{s}}.src;
         CREATE TABLE {{s}}.ctl (hold int NOT NULL);
         INSERT INTO {{s}}.ctl VALUES (1);"
    ))
    .await;
}

/// A copy of src into dst in fixed 500-row chunks with 2 workers. The load
/// limit is off so that other jobs on the shared test server cannot hold
/// these ones for reasons of their own (except where a test sets it).
fn base_args(db: &TestDb, extra: &[&str]) -> Vec<String> {
    with(
        db.copy_args("src", "dst"),
        &[
            &[
                "--chunk-rows",
                "500",
                "--chunk-time",
                "0",
                "--workers",
                "2",
                "--max-load",
                "none",
            ][..],
            extra,
        ]
        .concat(),
    )
}

async fn assert_same(db: &TestDb) {
    let (src, dst) = (
        db.checksum("src", "id, payload", "id").await,
        db.checksum("dst", "id, payload", "id").await,
    );
    assert!(!src.starts_with("0:"), "the source is not empty: {src}");
    assert_eq!(src, dst, "source and target differ");
}

/// Wait (up to 20 s) for the target to hold more than `n` rows.
async fn wait_count_above(db: &TestDb, table: &str, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = db.count(table).await;
        if count > n {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "{table} never grew past {n} rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The target's row count, checked to stay the same for `ms`.
async fn assert_count_stays(db: &TestDb, table: &str, ms: u64) -> i64 {
    let before = db.count(table).await;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let after = db.count(table).await;
    assert_eq!(before, after, "{table} grew while the job was held");
    after
}

/// `rowferry status --checkpoint PATH --json`.
fn checkpoint_status(path: &Path) -> Value {
    let out = run_strs(&["status", "--checkpoint", path.to_str().unwrap(), "--json"]);
    expect_exit(&out, 0);
    serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("status JSON ({e}): {}", stdout(&out)))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// One HTTP/1.1 GET: status code, headers, body.
fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let code = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().expect("Content-Length"))
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (code, head.to_string(), body.to_string())
}

/// One sample line of the Prometheus text format, `name{labels} value`:
/// the name, the labels (unescaped) and the value.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Result<Sample, String> {
    let mut chars = line.chars().peekable();
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name".into());
    }
    let mut labels = Vec::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            if chars.peek() == Some(&'}') {
                chars.next();
                break;
            }
            let mut label = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    label.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if label.is_empty() || chars.next() != Some('=') || chars.next() != Some('"') {
                return Err("a label is not name=\"value\"".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}")),
                    },
                    Some('\n') | None => return Err("unterminated label value".into()),
                    Some(c) => value.push(c),
                }
            }
            labels.push((label, value));
            match chars.next() {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
    }
    if chars.next() != Some(' ') {
        return Err("no space before the value".into());
    }
    let value: String = chars.collect();
    let value = match value.as_str() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .map_err(|_| format!("value {v:?} is not a number"))?,
    };
    Ok((name, labels, value))
}

/// Every line of a /metrics body checked; the samples.
fn parse_metrics(body: &str) -> Vec<Sample> {
    assert!(body.ends_with('\n'), "the text ends with a newline");
    let mut samples = Vec::new();
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), Some(_)) => assert!(name.starts_with("rowferry_")),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(name.starts_with("rowferry_"), "{line}");
                    assert!(["gauge", "counter"].contains(&kind), "{line}");
                }
                _ => panic!("unexpected comment line {line:?}"),
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(sample.0.starts_with("rowferry_"), "{line}");
        samples.push(sample);
    }
    samples
}

/// The value of the one sample named `name` with exactly `labels`.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.2)
        .collect();
    assert_eq!(found.len(), 1, "one {name}{labels:?} in {samples:?}");
    found[0]
}

/// The events an `--on-event 'cat >> FILE'` hook wrote, one JSON per line.
fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no event file {} ({e})", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event JSON ({e}): {l:?}")))
        .collect()
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_query_holds_until_it_returns_zero() {
    let db = TestDb::new("ctl_tq").await;
    pg_tables(&db, 20_000).await;
    let query = format!("SELECT hold FROM {}", db.q("ctl"));
    let mut job = Job::start(&base_args(&db, &["--throttle-query", &query]));

    let held = job.wait_for_progress(|p| p["throttled"] == QUERY_HOLD);
    assert_eq!(held["rows_done"], 0, "{held}");
    assert_eq!(assert_count_stays(&db, "dst", 1500).await, 0);
    // Still held, for the same reason, and still nothing done.
    let held = job.wait_for_progress(|_| true);
    assert_eq!(held["throttled"], QUERY_HOLD, "{held}");
    assert_eq!(held["rows_done"], 0, "{held}");
    job.assert_alive("the throttle query was released");

    db.exec("UPDATE {s}.ctl SET hold = 0").await;
    let (code, err) = job.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(db.count("dst").await, 20_000);
    assert_same(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_socket_commands_each_change_behaviour() {
    let db = TestDb::new("ctl_sock").await;
    pg_tables(&db, 40_000).await;
    let args = base_args(&db, &["--max-rows-per-sec", "4000"]);
    let socket = db.path("ctl.sock");
    let mut job = Job::start(&with(
        args.clone(),
        &["--control-socket", socket.to_str().unwrap()],
    ));
    job.wait_for_progress(|p| p["rows_done"].as_u64() > Some(0));
    let mut ctl = Ctl::connect(&socket, &mut job);

    let status = ctl.status();
    assert_eq!(status["phase"], "copy", "{status}");
    assert_eq!(status["paused"], false, "{status}");
    assert_eq!(status["rate"], 4000, "{status}");
    assert_eq!(status["chunk_time_ms"], 0, "{status}");
    assert_eq!(status["workers"], 2, "{status}");
    assert_eq!(status["pool_workers"], 2, "{status}");
    assert_eq!(status["max_lag_ms"], 1000, "{status}");
    assert_eq!(status["stopping"], false, "{status}");
    assert!(status["rows_done"].as_u64() > Some(0), "{status}");

    // pause: no new chunk starts, and status says why.
    assert!(ctl.ok("pause").starts_with("ok paused"));
    let paused = ctl.wait_for_status("the operator's pause", |s| s["throttled"] == OPERATOR_HOLD);
    assert_eq!(paused["paused"], true, "{paused}");
    tokio::time::sleep(Duration::from_millis(500)).await; // chunks in flight commit
    let held = assert_count_stays(&db, "dst", 1000).await;
    assert!(held > 0 && held < 40_000, "{held}");
    let status = ctl.status();
    assert_eq!(status["rows_done"].as_i64(), Some(held), "{status}");
    assert_eq!(status["throttled"], OPERATOR_HOLD, "{status}");

    // The settings, changed while paused.
    assert_eq!(ctl.ok("rate 0"), "ok rate unlimited");
    assert_eq!(ctl.status()["rate"], Value::Null);
    assert_eq!(ctl.ok("rate 3000"), "ok rate 3000 rows/s");
    assert_eq!(ctl.status()["rate"], 3000);
    ctl.ok("chunk-time 2s");
    assert_eq!(ctl.status()["chunk_time_ms"], 2000);
    assert_eq!(ctl.ok("workers 1"), "ok workers 1");
    let status = ctl.status();
    assert_eq!(status["workers"], 1, "{status}");
    assert_eq!(status["pool_workers"], 2, "{status}");
    let refused = ctl.cmd("workers 99");
    assert!(
        refused.starts_with("error:") && refused.contains("1..=2"),
        "{refused}"
    );
    assert_eq!(
        ctl.status()["workers"],
        1,
        "a refused command changes nothing"
    );
    ctl.ok("max-lag 3s");
    assert_eq!(ctl.status()["max_lag_ms"], 3000);
    let unknown = ctl.cmd("bogus");
    assert!(unknown.starts_with("error:"), "{unknown}");
    for command in [
        "status",
        "pause",
        "resume",
        "rate",
        "chunk-time",
        "workers",
        "max-lag",
        "stop",
    ] {
        assert!(
            unknown.contains(command),
            "{command} missing from {unknown}"
        );
    }
    assert!(ctl.cmd("rate fast").starts_with("error:"));
    // Still paused through all of that.
    assert_eq!(db.count("dst").await, held);

    // resume: chunks flow again.
    assert_eq!(ctl.ok("resume"), "ok resumed");
    wait_count_above(&db, "dst", held).await;
    let status = ctl.status();
    assert_eq!(status["paused"], false, "{status}");
    assert_ne!(status["throttled"], OPERATOR_HOLD, "{status}");

    // stop: like Ctrl-C.
    assert!(ctl.ok("stop").starts_with("ok stopping"));
    let (code, err) = job.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(!socket.exists(), "the socket is removed when the job ends");
    let copied = db.count("dst").await;
    assert!(copied > held && copied < 40_000, "{copied}");
    let saved = checkpoint_status(&db.path("job.checkpoint"));
    assert_eq!(saved["state"], "unfinished", "{saved}");
    assert_eq!(saved["rows_done"].as_i64(), Some(copied), "{saved}");

    // The same copy without the socket resumes and completes.
    let out = run(&with(args, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_same(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_serves_parseable_prometheus_text() {
    let db = TestDb::new("ctl_metrics").await;
    pg_tables(&db, 20_000).await;
    let query = format!("SELECT hold FROM {}", db.q("ctl"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut job = Job::start(&base_args(
        &db,
        &[
            "--throttle-query",
            &query,
            "--metrics-addr",
            &addr,
            "--max-rows-per-sec",
            "5000",
        ],
    ));
    job.wait_for_progress(|p| p["throttled"] == QUERY_HOLD);

    let (code, head, body) = http_get(port, "/metrics");
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse_metrics(&body);
    let copy = [("phase", "copy")];
    assert_eq!(sample(&samples, "rowferry_throttled", &copy), 1.0, "{body}");
    assert_eq!(
        sample(
            &samples,
            "rowferry_throttle_reason",
            &[("phase", "copy"), ("reason", QUERY_HOLD)]
        ),
        1.0
    );
    assert_eq!(sample(&samples, "rowferry_rows_done", &copy), 0.0);
    assert_eq!(sample(&samples, "rowferry_chunks_done", &copy), 0.0);
    assert_eq!(sample(&samples, "rowferry_paused", &copy), 0.0);
    assert_eq!(sample(&samples, "rowferry_retries_total", &copy), 0.0);
    assert!(
        sample(&samples, "rowferry_eta_seconds", &copy).is_nan(),
        "no rate yet, so no ETA: {body}"
    );
    assert!(
        body.contains("# TYPE rowferry_retries_total counter\n"),
        "{body}"
    );
    assert!(
        body.contains("rowferry_throttled{phase=\"copy\"} 1\n"),
        "{body}"
    );

    let (code, _, body) = http_get(port, "/nope");
    assert_eq!(code, 404, "{body}");

    // Released: the same endpoint shows the rows arriving and the query's
    // hold gone (the rate limit may still space chunks out, and then says
    // so: `rowferry_throttled` is 1 exactly when a reason is given).
    db.exec("UPDATE {s}.ctl SET hold = 0").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _, body) = http_get(port, "/metrics");
        assert_eq!(code, 200);
        let samples = parse_metrics(&body);
        let reasons: Vec<&str> = samples
            .iter()
            .filter(|(n, _, _)| n == "rowferry_throttle_reason")
            .flat_map(|(_, l, _)| l.iter().filter(|(k, _)| k == "reason"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(reasons.len(), 1, "one reason at a time: {body}");
        let throttled = sample(&samples, "rowferry_throttled", &copy);
        assert_eq!(
            throttled,
            f64::from(u8::from(!reasons[0].is_empty())),
            "{body}"
        );
        if sample(&samples, "rowferry_rows_done", &copy) > 0.0 && reasons[0] != QUERY_HOLD {
            assert!(
                ["", "rate-limit"].contains(&reasons[0]),
                "released, so only the rate limit may hold: {body}"
            );
            assert!(sample(&samples, "rowferry_rows_per_second", &copy) > 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "metrics never moved on: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (code, err) = job.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the endpoint closes with the job"
    );
    assert_same(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_event_hook_gets_start_throttle_and_completion() {
    let db = TestDb::new("ctl_events").await;
    pg_tables(&db, 20_000).await;
    let query = format!("SELECT hold FROM {}", db.q("ctl"));
    let file = db.path("events.jsonl");
    // Appends each event to the file; `start` takes a moment longer, as a
    // hook that posts to an alerting service can: events must still arrive
    // in the order they happened (a plain `cat >>` shows the same race
    // about one run in three).
    let hook = format!(
        r#"read -r line; case "$line" in *'"event":"start"'*) sleep 0.3;; esac; printf '%s\n' "$line" >> '{}'"#,
        file.display()
    );
    let mut job = Job::start(&base_args(
        &db,
        &[
            "--throttle-query",
            &query,
            "--on-event",
            &hook,
            "--max-rows-per-sec",
            "8000",
        ],
    ));
    job.wait_for_progress(|p| p["throttled"] == QUERY_HOLD);
    // The hook heard the hold before it ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("throttle_begin")) {
        assert!(Instant::now() < deadline, "no throttle_begin event");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(db.count("dst").await, 0);
    db.exec("UPDATE {s}.ctl SET hold = 0").await;
    let (code, err) = job.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("--on-event"), "no hook warning: {err}");
    assert_same(&db).await;

    let events = events(&file);
    assert_eq!(
        names(&events),
        ["start", "throttle_begin", "throttle_end", "completion"],
        "{events:?}"
    );
    let checkpoint = db.path("job.checkpoint").display().to_string();
    for e in &events {
        assert_eq!(e["operation"], "copy", "{e}");
        assert_eq!(e["table"], db.q("src"), "{e}");
        assert_eq!(e["target_table"], db.q("dst"), "{e}");
        assert_eq!(e["checkpoint"], checkpoint.as_str(), "{e}");
        assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    assert_eq!(events[0]["resumed"], false, "{}", events[0]);
    assert_eq!(events[1]["reason"], QUERY_HOLD, "{}", events[1]);
    assert_eq!(events[2]["reason"], QUERY_HOLD, "{}", events[2]);
    assert_eq!(events[3]["rows_done"], 20_000, "{}", events[3]);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_event_hook_gets_a_failure_with_the_error() {
    let db = TestDb::new("ctl_fail").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email text NOT NULL);
         INSERT INTO {s}.src SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, email text NOT NULL CONSTRAINT dst_email_unique UNIQUE);
         INSERT INTO {s}.dst VALUES (100000, 'user1500@example.com');",
    )
    .await;
    let file = db.path("events.jsonl");
    let hook = format!("cat >> '{}'", file.display());
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "100",
            "--chunk-time",
            "0",
            "--workers",
            "1",
            "--max-load",
            "none",
            "--progress",
            "none",
            "--on-event",
            &hook,
        ],
    );
    let out = run(&args);
    expect_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("dst_email_unique"), "{err}");

    let events = events(&file);
    assert_eq!(names(&events), ["start", "failure"], "{events:?}");
    let failure = &events[1];
    assert_eq!(failure["table"], db.q("src"), "{failure}");
    assert_eq!(failure["target_table"], db.q("dst"), "{failure}");
    assert_eq!(failure["status"], "failed", "{failure}");
    let error = failure["error"].as_str().unwrap_or_default();
    assert!(error.contains("dst_email_unique"), "{failure}");
    assert!(error.contains("chunk (1400, 1500]"), "{failure}");
    // The chunks before the failing one are done, and no more.
    assert_eq!(failure["rows_done"], 1400, "{failure}");
    assert_eq!(db.count("dst").await, 1401);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn critical_load_stops_cleanly_and_a_rerun_resumes() {
    let db = TestDb::new("ctl_crit").await;
    pg_tables(&db, 40_000).await;
    db.exec("CREATE TABLE {s}.lockme (id int)").await;
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "500",
            "--chunk-time",
            "0",
            "--workers",
            "2",
            "--max-rows-per-sec",
            "4000",
            "--critical-load",
            "waiting=1",
        ],
    );
    let mut job = Job::start(&args);
    job.wait_for_progress(|p| p["rows_done"].as_u64() > Some(0));
    job.assert_alive("a session waited for a lock");

    // One session holds a lock, another waits for it: `waiting` is 1.
    let locker = connect().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            db.q("lockme")
        ))
        .await
        .expect("take the lock");
    let waiter = connect().await;
    let select = format!("SELECT * FROM {}", db.q("lockme"));
    let waiting = tokio::spawn(async move { waiter.simple_query(&select).await.map(|_| ()) });

    let (code, err) = job.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rowferry: critical: waiting = "), "{err}");
    assert!(err.contains("reached --critical-load 1"), "{err}");
    assert!(err.contains("checkpoint is saved"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let copied = db.count("dst").await;
    assert!(copied > 0 && copied < 40_000, "stopped midway: {copied}");
    let saved = checkpoint_status(&db.path("job.checkpoint"));
    assert_eq!(saved["state"], "unfinished", "{saved}");
    assert_eq!(saved["rows_done"].as_i64(), Some(copied), "{saved}");
    assert!(
        !waiting.is_finished(),
        "the lock wait lasted until the stop"
    );

    // The load is gone: the identical command resumes and completes.
    locker.batch_execute("ROLLBACK").await.expect("release");
    waiting.await.expect("join").expect("the waiting query ran");
    let out = run(&with(args, &["--progress", "json"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_same(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_load_metrics_are_refused_before_anything_is_written() {
    let db = TestDb::new("ctl_metric").await;
    pg_tables(&db, 100).await;
    let err = refused(
        &db,
        with(
            db.copy_args("src", "dst"),
            &["--max-load", "bogus=3", "--progress", "none"],
        ),
        "unknown metric \"bogus\"",
    )
    .await;
    assert!(
        err.contains("waiting"),
        "the known metrics are named: {err}"
    );
    refused(
        &db,
        with(
            db.copy_args("src", "dst"),
            &["--critical-load", "bogus=3", "--progress", "none"],
        ),
        "unknown metric \"bogus\"",
    )
    .await;

    let err = refused(
        &db,
        with(
            db.copy_args("src", "dst"),
            &[
                "--throttle-query",
                &format!("SELECT no_such_column FROM {}", db.q("ctl")),
                "--progress",
                "none",
            ],
        ),
        "--throttle-query failed",
    )
    .await;
    assert!(err.contains("no_such_column"), "{err}");

    let db2 = TestDb::mysql("ctl_mymetric").await;
    mysql_tables(&db2, 100).await;
    refused(
        &db2,
        with(
            db2.copy_args("src", "dst"),
            &["--max-load", "No_such_counter=3", "--progress", "none"],
        ),
        "No_such_counter",
    )
    .await;
    db2.cleanup().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_throttle_query_and_control_socket() {
    let db = TestDb::mysql("ctl_my").await;
    mysql_tables(&db, 20_000).await;
    let query = format!("SELECT hold FROM {}", db.q("ctl"));
    let socket = db.path("ctl.sock");
    let mut job = Job::start(&base_args(
        &db,
        &[
            "--throttle-query",
            &query,
            "--control-socket",
            socket.to_str().unwrap(),
            "--max-rows-per-sec",
            "4000",
        ],
    ));

    // Held by the query: nothing arrives, and both progress and status say why.
    let held = job.wait_for_progress(|p| p["throttled"] == QUERY_HOLD);
    assert_eq!(held["rows_done"], 0, "{held}");
    let mut ctl = Ctl::connect(&socket, &mut job);
    assert_eq!(assert_count_stays(&db, "dst", 1500).await, 0);
    let status = ctl.status();
    assert_eq!(status["throttled"], QUERY_HOLD, "{status}");
    assert_eq!(status["paused"], false, "{status}");
    assert_eq!(status["rows_done"], 0, "{status}");

    db.exec("UPDATE {s}.ctl SET hold = 0").await;
    wait_count_above(&db, "dst", 0).await;

    // Paused by the operator.
    ctl.ok("pause");
    let paused = ctl.wait_for_status("the operator's pause", |s| s["throttled"] == OPERATOR_HOLD);
    assert_eq!(paused["paused"], true, "{paused}");
    tokio::time::sleep(Duration::from_millis(500)).await; // chunks in flight commit
    let held = assert_count_stays(&db, "dst", 1000).await;
    assert!(held > 0 && held < 20_000, "{held}");
    assert_eq!(ctl.status()["rows_done"].as_i64(), Some(held));

    ctl.ok("resume");
    wait_count_above(&db, "dst", held).await;
    assert_eq!(ctl.status()["paused"], false);
    drop(ctl);

    let (code, err) = job.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(db.count("dst").await, 20_000);
    assert_same(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_event_throttle_end_is_sent_even_when_the_job_ends_right_after_the_hold() {
    let db = TestDb::new("ctl_evend").await;
    pg_tables(&db, 2_000).await;
    let query = format!("SELECT hold FROM {}", db.q("ctl"));
    let file = db.path("events.jsonl");
    let hook = format!("cat >> '{}'", file.display());
    let mut job = Job::start(&base_args(
        &db,
        &["--throttle-query", &query, "--on-event", &hook],
    ));
    job.wait_for_progress(|p| p["throttled"] == QUERY_HOLD);
    // Unthrottled, the 2000 rows take well under one 250 ms tick.
    db.exec("UPDATE {s}.ctl SET hold = 0").await;
    let (code, err) = job.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_same(&db).await;
    let events = events(&file);
    let mut seen = names(&events);
    // (Their relative order is the other test's subject.)
    seen.sort_unstable();
    assert_eq!(
        seen,
        ["completion", "start", "throttle_begin", "throttle_end"],
        "a hold that began must be reported ended: {events:?}"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fewer_workers_over_the_socket_still_finish_the_job() {
    let db = TestDb::new("ctl_workers").await;
    pg_tables(&db, 10_000).await;
    let socket = db.path("ctl.sock");
    let mut job = Job::start(&base_args(
        &db,
        &[
            "--max-rows-per-sec",
            "5000",
            "--control-socket",
            socket.to_str().unwrap(),
        ],
    ));
    job.wait_for_progress(|p| p["rows_done"].as_u64() > Some(0));
    let mut ctl = Ctl::connect(&socket, &mut job);
    assert_eq!(ctl.ok("workers 1"), "ok workers 1");
    drop(ctl);
    // About 2 s of work left at 5000 rows/s.
    let (code, err) = job.finish_within(15);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(db.count("dst").await, 10_000);
    assert_same(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_control_socket_or_metrics_address_is_refused_before_anything_is_written() {
    let db = TestDb::new("ctl_badaddr").await;
    pg_tables(&db, 1_000).await;
    db.exec("CREATE INDEX dst_payload ON {s}.dst (payload)")
        .await;
    let base = with(
        db.copy_args("src", "dst"),
        &["--defer-indexes", "--progress", "none"],
    );
    let socket = db.path("no/such/dir/ctl.sock");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for (flag, value) in [
        ("--control-socket", socket.to_str().unwrap()),
        ("--metrics-addr", addr.as_str()),
    ] {
        let out = run(&with(base.clone(), &[flag, value]));
        expect_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("error: {flag}")), "{err}");
        assert!(err.contains("nothing was written"), "{err}");
        // Which it must be true to: the deferrable index is still there,
        // and no checkpoint claims the job started.
        let index = db
            .scalar(
                "SELECT count(*)::text FROM pg_indexes \
                 WHERE schemaname = '{s}' AND indexname = 'dst_payload'",
            )
            .await;
        let checkpoint = db.path("job.checkpoint").exists();
        assert!(
            index == "1" && !checkpoint,
            "{flag} refused, yet the target's index dst_payload {} and a checkpoint {}:\n{err}",
            if index == "1" {
                "is kept"
            } else {
                "was dropped"
            },
            if checkpoint {
                "was written"
            } else {
                "was not written"
            },
        );
        assert_eq!(db.count("dst").await, 0);
    }
    drop(taken);
    db.cleanup().await;
}

/// The load signal has a connection of its own: a copy that runs longer
/// than a signal may take to answer (5 s) is not held forever by its own
/// workers holding every pooled connection (it was, with the default
/// `--max-load`).
#[tokio::test(flavor = "multi_thread")]
async fn a_long_copy_with_the_default_max_load_finishes() {
    let db = TestDb::new("ctl_longload").await;
    pg_tables(&db, 28_000).await;
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "500",
            "--chunk-time",
            "0",
            "--workers",
            "2",
            "--max-rows-per-sec",
            "4000",
        ],
    );
    let (code, err) = Job::start(&args).finish_within(40);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("load unknown"), "{err}");
    assert_same(&db).await;
    db.cleanup().await;
}
