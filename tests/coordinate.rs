//! `--coordinate-in-db`: several rowferry processes share one job through
//! `rowferry_jobs` / `rowferry_chunks` in the source database. Real
//! servers; the processes are the real binary.

mod common;

use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const ROWS: i64 = 24_000;

async fn setup(db: &TestDb, mysql: bool) {
    if mysql {
        db.exec(
            "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v varchar(64), n int);
             CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(64), n int);",
        )
        .await;
        db.exec(&format!(
            "INSERT INTO {{s}}.src WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g \
             WHERE i < 199), n(i) AS (SELECT a.i * 200 + b.i + 1 FROM g a CROSS JOIN g b) \
             SELECT i, MD5(i), i % 97 FROM n WHERE i <= {ROWS}"
        ))
        .await;
    } else {
        db.exec(&format!(
            "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, v text, n int);
             CREATE TABLE {{s}}.dst (id bigint PRIMARY KEY, v text, n int);
             INSERT INTO {{s}}.src SELECT g, md5(g::text), g % 97 FROM generate_series(1, {ROWS}) g;"
        ))
        .await;
    }
}

/// A copy of `src` into `dst` shared through the database; throttled so
/// that it takes a few seconds.
fn coordinated_args(db: &TestDb, rate: &str) -> Vec<String> {
    let mut args = db.copy_args("src", "dst");
    args.extend(
        [
            "--coordinate-in-db",
            "--lease",
            "2s",
            "--workers",
            "2",
            "--chunk-rows",
            "400",
            "--chunk-time",
            "0",
            "--max-rows-per-sec",
            rate,
            "--progress",
            "none",
        ]
        .map(String::from),
    );
    args
}

fn spawn(args: &[String], crash_after: Option<u32>) -> Child {
    let mut cmd = bin();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(n) = crash_after {
        cmd.env("ROWFERRY_CRASH_AFTER_CHUNKS", n.to_string());
    }
    cmd.spawn().expect("spawn rowferry")
}

fn owner_like(pid: u32) -> String {
    format!("'%:{pid}:%'")
}

/// Poll until `sql`'s scalar is at least `n` (up to 60 s), once the
/// first process created the coordination tables.
async fn wait_until(db: &TestDb, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let tables = format!(
        "SELECT {} FROM information_schema.tables WHERE table_schema = '{{s}}' \
         AND table_name IN ('rowferry_chunks', 'rowferry_jobs', 'rowferry_workers')",
        text(db, "count(*)")
    );
    while db.scalar(&tables).await != "3" {
        assert!(
            Instant::now() < deadline,
            "the coordination tables never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let v: i64 = db.scalar(sql).await.parse().unwrap_or(0);
        if v >= n {
            return;
        }
        assert!(Instant::now() < deadline, "never reached {n}: {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text(db: &TestDb, expr: &str) -> String {
    if db.url().starts_with("mysql") {
        format!("CAST({expr} AS CHAR)")
    } else {
        format!("({expr})::text")
    }
}

/// Every chunk done exactly once, the plan contiguous, the target exact.
async fn assert_exact(db: &TestDb, dead: Option<u32>) {
    assert_eq!(
        db.checksum("dst", "id, v, n", "id").await,
        db.checksum("src", "id, v, n", "id").await
    );
    let chunks = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_chunks",
            text(db, "count(*)")
        ))
        .await;
    let done = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_chunks WHERE state = 'done' AND done_at IS NOT NULL",
            text(db, "count(*)")
        ))
        .await;
    assert_eq!(chunks, done, "every chunk is done");
    // One row per sequence number: each chunk recorded done once, and the
    // plan has no gap.
    let seqs = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_chunks",
            text(db, "count(DISTINCT seq) * 1000000 + max(seq) + 1")
        ))
        .await;
    let n: i64 = chunks.parse().expect("count");
    assert_eq!(seqs, (n * 1_000_000 + n).to_string());
    // The recorded counts add up to the table (a killed process may have
    // died between a commit and its count: then the sum is short, never
    // over).
    let rows: i64 = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_chunks",
            text(db, "COALESCE(sum(rows_done), 0)")
        ))
        .await
        .parse()
        .expect("sum");
    assert!(rows <= ROWS, "{rows} rows counted for {ROWS}");
    let finished = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_jobs WHERE finished_at IS NOT NULL",
            text(db, "count(*)")
        ))
        .await;
    assert_eq!(
        finished, "1",
        "the job row is marked finished (kept for audit)"
    );
    // Live processes remove their heartbeats; a dead one's expires.
    let except = dead.map_or(String::new(), |pid| {
        format!(" WHERE owner NOT LIKE {}", owner_like(pid))
    });
    let heartbeats = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_workers{except}",
            text(db, "count(*)")
        ))
        .await;
    assert_eq!(
        heartbeats, "0",
        "finished processes remove their heartbeats"
    );
}

async fn three_processes_one_killed(db: &TestDb) {
    setup(db, db.url().starts_with("mysql")).await;
    // 24000 rows at 4000 rows/s shared: about six seconds.
    let args = coordinated_args(db, "4000");
    let a = spawn(&args, None);
    let mut victim = spawn(&args, None);
    let c = spawn(&args, None);
    let pid = victim.id();
    // The victim did some chunks and holds one now (taken, waiting for
    // the rate).
    let mine = owner_like(pid);
    wait_until(
        db,
        &format!(
            "SELECT {} FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'done'",
            text(db, "count(*)")
        ),
        2,
    )
    .await;
    wait_until(
        db,
        &format!(
            "SELECT {} FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'claimed'",
            text(db, "count(*)")
        ),
        1,
    )
    .await;
    victim.kill().expect("kill -9");
    let _ = victim.wait();
    let held: Vec<String> = {
        let list = db
            .scalar(&format!(
                "SELECT {} FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'claimed'",
                text(db, "count(*)")
            ))
            .await;
        vec![list]
    };
    eprintln!("chunks held by the killed process: {}", held[0]);
    let a_out = a.wait_with_output().expect("wait");
    let c_out = c.wait_with_output().expect("wait");
    expect_exit(&a_out, 0);
    expect_exit(&c_out, 0);
    let said = format!("{}\n{}", stderr(&a_out), stderr(&c_out));
    assert_exact(db, Some(pid)).await;
    if held[0] != "0" {
        // The victim's chunks were taken over once their lease expired.
        assert!(said.contains("took over chunk"), "{said}");
        let taken = db
            .scalar(&format!(
                "SELECT {} FROM {{s}}.rowferry_chunks WHERE claims > 1",
                text(db, "count(*)")
            ))
            .await;
        assert!(taken.parse::<i64>().unwrap_or(0) >= 1, "{said}");
    }
    assert!(
        said.contains("the job has"),
        "each process reports the job's totals: {said}"
    );
    // No chunk still names the dead process.
    let left = db
        .scalar(&format!(
            "SELECT {} FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state <> 'done'",
            text(db, "count(*)")
        ))
        .await;
    assert_eq!(left, "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_share_a_job_and_survive_a_kill_postgres() {
    let db = TestDb::new("coord_kill").await;
    three_processes_one_killed(&db).await;
    // A rerun finds the job finished.
    let again = run(&coordinated_args(&db, "4000"));
    expect_exit(&again, 0);
    assert!(
        stderr(&again).contains("already finished"),
        "{}",
        stderr(&again)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_share_a_job_and_survive_a_kill_mariadb() {
    let db = TestDb::mysql("coord_kill").await;
    three_processes_one_killed(&db).await;
    db.cleanup().await;
}

/// The deterministic crash hook: one process aborts right after its third
/// commit; the other finishes the job, exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_aborts_after_a_commit_leaves_nothing_undone() {
    let db = TestDb::new("coord_crash").await;
    setup(&db, false).await;
    let args = coordinated_args(&db, "8000");
    let crashing = spawn(&args, Some(3));
    let crashed_pid = crashing.id();
    let other = spawn(&args, None);
    let crashed = crashing.wait_with_output().expect("wait");
    assert_eq!(crashed.status.code(), None, "{}", stderr(&crashed));
    assert!(
        stderr(&crashed).contains("ROWFERRY_CRASH_AFTER_CHUNKS=3 reached"),
        "{}",
        stderr(&crashed)
    );
    let other = other.wait_with_output().expect("wait");
    expect_exit(&other, 0);
    assert_exact(&db, Some(crashed_pid)).await;
    db.cleanup().await;
}

/// A process that stalls past its lease (SIGSTOP) loses its chunk to
/// another; woken up, it runs the chunk, but its done-mark is refused and
/// the chunk rolls back: done once, counted once.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_process_loses_its_chunk_and_its_done_mark_is_refused() {
    let db = TestDb::new("coord_stall").await;
    setup(&db, false).await;
    let args = coordinated_args(&db, "6000");
    let stalled = spawn(&args, None);
    let pid = stalled.id();
    // If an assertion fails while it is stopped, kill it: a stopped child
    // would hold its session (and the schema's cleanup) forever.
    let reaper = KillIfPanicking(pid);
    let mine = owner_like(pid);
    // Stop it while it holds a chunk (taken, waiting for the rate).
    let seq = loop {
        wait_until(
            &db,
            &format!(
                "SELECT count(*)::text FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'claimed'"
            ),
            1,
        )
        .await;
        // SAFETY: signals to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let seq = db
            .scalar(&format!(
                "SELECT COALESCE(min(seq)::text, '') FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'claimed'"
            ))
            .await;
        if !seq.is_empty() {
            break seq;
        }
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    };
    let other = run(&args);
    expect_exit(&other, 0);
    assert!(
        stderr(&other).contains("took over chunk"),
        "{}",
        stderr(&other)
    );
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let woken = stalled.wait_with_output().expect("wait");
    std::mem::forget(reaper);
    expect_exit(&woken, 0);
    assert!(
        stderr(&woken).contains("was taken over by another process"),
        "{}",
        stderr(&woken)
    );
    assert_exact(&db, None).await;
    // The chunk was claimed twice, done once, by the other process.
    let row = db
        .scalar(&format!(
            "SELECT claims::text || ':' || (owner LIKE {mine})::text FROM {{s}}.rowferry_chunks WHERE seq = {seq}"
        ))
        .await;
    assert_eq!(row, "2:false");
    let counted = db
        .scalar("SELECT sum(rows_done)::text FROM {s}.rowferry_chunks")
        .await;
    assert_eq!(counted, ROWS.to_string(), "no chunk counted twice");
    db.cleanup().await;
}

/// SIGKILLs a child (stopped or not) when the test panics before reaping it.
struct KillIfPanicking(u32);

impl Drop for KillIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: a signal to our own child, not yet reaped.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinated_backfill_applies_each_chunk_once() {
    let db = TestDb::new("coord_bf").await;
    setup(&db, false).await;
    let args: Vec<String> = [
        "backfill",
        "--source",
        &db.url(),
        "--table",
        &db.q("src"),
        "--set",
        "n = n + 1000",
        "--coordinate-in-db",
        "--lease",
        "2s",
        "--chunk-rows",
        "1000",
        "--chunk-time",
        "0",
        "--max-rows-per-sec",
        "12000",
        "--progress",
        "none",
    ]
    .map(String::from)
    .to_vec();
    let a = spawn(&args, None);
    let b = spawn(&args, Some(4));
    let _ = b.wait_with_output().expect("wait");
    let a = a.wait_with_output().expect("wait");
    expect_exit(&a, 0);
    let wrong = db
        .scalar("SELECT count(*)::text FROM {s}.src WHERE n <> id % 97 + 1000")
        .await;
    assert_eq!(wrong, "0", "every row updated exactly once");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinate_refuses_what_it_cannot_share() {
    let db = TestDb::new("coord_refuse").await;
    setup(&db, false).await;
    let mut args = coordinated_args(&db, "1000");
    args.push("--defer-indexes".into());
    let out = run(&args);
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("--defer-indexes"), "{}", stderr(&out));
    let args: Vec<String> = coordinated_args(&db, "1000")
        .into_iter()
        .map(|a| if a == "2s" { "10ms".to_string() } else { a })
        .collect();
    let out = run(&args);
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
    db.cleanup().await;
}

/// SIGTERM: chunks in flight commit, the chunks it had taken are handed
/// back at once (no lease to wait for), exit 130; the others finish.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_the_claimed_chunks_back() {
    let db = TestDb::new("coord_term").await;
    setup(&db, false).await;
    let args = coordinated_args(&db, "6000");
    let leaving = spawn(&args, None);
    let pid = leaving.id();
    let mine = owner_like(pid);
    wait_until(
        &db,
        &format!(
            "SELECT count(*)::text FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'done'"
        ),
        2,
    )
    .await;
    let staying = spawn(&args, None);
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let left = leaving.wait_with_output().expect("wait");
    expect_exit(&left, 130);
    assert!(stderr(&left).contains("handed back"), "{}", stderr(&left));
    let held = db
        .scalar(&format!(
            "SELECT count(*)::text FROM {{s}}.rowferry_chunks WHERE owner LIKE {mine} AND state = 'claimed'"
        ))
        .await;
    assert_eq!(held, "0", "nothing left claimed by the process that left");
    let beats = db
        .scalar(&format!(
            "SELECT count(*)::text FROM {{s}}.rowferry_workers WHERE owner LIKE {mine}"
        ))
        .await;
    assert_eq!(beats, "0");
    let stayed = staying.wait_with_output().expect("wait");
    expect_exit(&stayed, 0);
    assert_exact(&db, None).await;
    db.cleanup().await;
}
