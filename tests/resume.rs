//! Crashes, signals, checkpoints and the one-run-per-job lock, with the real
//! binary: kill -9 and rerun, a deterministic crash point, SIGINT/SIGTERM,
//! foreign and corrupt checkpoints, a second concurrent run.

mod common;
use common::*;

async fn orders(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, customer int NOT NULL, note text);
         INSERT INTO {{s}}.src SELECT g * 2, g % 97, repeat('x', g % 50) FROM generate_series(1, {rows}) g;
         ANALYZE {{s}}.src;
         CREATE TABLE {{s}}.dst (LIKE {{s}}.src INCLUDING ALL);"
    ))
    .await;
}

async fn assert_equal(db: &TestDb) {
    assert_eq!(
        db.checksum("src", "id, customer, note", "id").await,
        db.checksum("dst", "id, customer, note", "id").await
    );
}

fn checkpoint_json(db: &TestDb) -> serde_json::Value {
    let text = std::fs::read_to_string(db.path("job.checkpoint")).expect("checkpoint file");
    serde_json::from_str(&text).expect("checkpoint JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_the_middle_then_rerun_resumes_and_copies_everything() {
    let db = TestDb::new("kill9").await;
    orders(&db, 20_000).await;
    let base = with(
        db.copy_args("src", "dst"),
        &["--chunk-rows", "200", "--chunk-time", "0", "--workers", "2"],
    );
    let mut running = Running::start(&with(base.clone(), &["--max-rows-per-sec", "4000"]));
    running.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(3));
    running.child.kill().expect("kill -9");
    let (code, _) = running.finish();
    assert_eq!(code, None, "killed by a signal");
    let partial = db.count("dst").await;
    assert!(
        partial > 0 && partial < 20_000,
        "partial copy, got {partial}"
    );

    let out = run(&with(base, &["--progress", "none", "--json"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("summary");
    assert_eq!(summary["resumed"], true);
    assert_eq!(db.count("dst").await, 20_000);
    assert_equal(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_right_after_a_commit_is_not_recorded_and_the_rerun_is_exact() {
    let db = TestDb::new("crashpoint").await;
    orders(&db, 3000).await;
    let base = with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "100",
            "--chunk-time",
            "0",
            "--workers",
            "1",
            "--progress",
            "none",
        ],
    );
    run_crashing_after(&base, 5);
    // Chunk 5 committed, and the checkpoint does not know it yet.
    let copied = db.count("dst").await as u64;
    assert!(copied >= 500, "five chunks committed, got {copied}");
    let recorded = checkpoint_json(&db)["ledger"]["rows_done"]
        .as_u64()
        .expect("rows_done");
    assert!(
        recorded < copied,
        "checkpoint records only what it saw commit: {recorded} vs {copied}"
    );

    let out = run(&base);
    expect_exit(&out, 0);
    assert!(stderr(&out).contains("resuming from checkpoint"));
    assert_eq!(db.count("dst").await, 3000);
    assert_equal(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_lets_chunks_commit_saves_the_checkpoint_exits_130_and_resumes() {
    let db = TestDb::new("sigint").await;
    orders(&db, 20_000).await;
    let base = with(
        db.copy_args("src", "dst"),
        &["--chunk-rows", "250", "--chunk-time", "0", "--workers", "3"],
    );
    let mut running = Running::start(&with(base.clone(), &["--max-rows-per-sec", "3000"]));
    running.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(2));
    running.signal(libc::SIGINT);
    let (code, err) = running.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // A clean stop: the checkpoint holds exactly what committed.
    let copied = db.count("dst").await as u64;
    assert!(copied > 0 && copied < 20_000, "{copied}");
    let status = run_strs(&[
        "status",
        "--checkpoint",
        db.path("job.checkpoint").to_str().unwrap(),
        "--json",
    ]);
    expect_exit(&status, 0);
    let status: serde_json::Value =
        serde_json::from_str(stdout(&status).trim()).expect("status JSON");
    assert_eq!(status["rows_done"].as_u64(), Some(copied));
    assert_eq!(status["state"], "unfinished");
    let human = run_strs(&[
        "status",
        "--checkpoint",
        db.path("job.checkpoint").to_str().unwrap(),
    ]);
    assert!(
        stdout(&human).contains(&format!("rows done:   {copied} of")),
        "{}",
        stdout(&human)
    );

    let out = run(&with(base, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert!(stderr(&out).contains(&format!(
        "resuming from checkpoint: {}",
        db.path("job.checkpoint").display()
    )));
    assert!(
        stderr(&out).contains(&format!("{copied} rows in")),
        "{}",
        stderr(&out)
    );
    assert_equal(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_file_holds_work_second_run_is_refused_and_sigterm_stops() {
    let db = TestDb::new("pause").await;
    orders(&db, 2000).await;
    let pause = db.path("pause");
    std::fs::write(&pause, "").expect("pause file");
    let base = with(
        db.copy_args("src", "dst"),
        &["--chunk-rows", "100", "--chunk-time", "0"],
    );
    let mut first = Running::start(&with(
        base.clone(),
        &["--pause-file", pause.to_str().unwrap()],
    ));
    let p = first.wait_for_progress(|p| p["throttled"] == "pause-file");
    assert_eq!(p["rows_done"], 0);

    // The first run holds the job's lock: a second one is refused.
    let second = run(&with(base.clone(), &["--progress", "none"]));
    expect_exit(&second, 2);
    assert!(
        stderr(&second).contains("another rowferry run is already writing"),
        "{}",
        stderr(&second)
    );
    // Also when it spells the same server another way (the lock is keyed
    // by the target table's catalog id, not by the URL).
    let mut respelled = with(base.clone(), &["--progress", "none"]);
    respelled[2] = pg_url().replace("127.0.0.1", "localhost");
    assert_ne!(respelled[2], base[2]);
    let third = run(&respelled);
    expect_exit(&third, 2);
    assert!(
        stderr(&third).contains("another rowferry run is already writing"),
        "{}",
        stderr(&third)
    );
    assert_eq!(db.count("dst").await, 0);

    first.signal(libc::SIGTERM);
    let (code, err) = first.finish();
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(db.count("dst").await, 0, "nothing ran while paused");

    // Unpaused, the rerun finishes; once finished, a rerun does nothing.
    std::fs::remove_file(&pause).expect("unpause");
    expect_exit(&run(&with(base.clone(), &["--progress", "none"])), 0);
    assert_equal(&db).await;
    let again = run(&with(base, &["--progress", "none"]));
    expect_exit(&again, 0);
    assert!(
        stderr(&again).contains("job already finished"),
        "{}",
        stderr(&again)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_and_corrupt_checkpoints_are_refused_before_anything_is_written() {
    let db = TestDb::new("foreign").await;
    orders(&db, 1000).await;
    db.exec("CREATE TABLE {s}.dst2 (LIKE {s}.src INCLUDING ALL)")
        .await;
    expect_exit(
        &run(&with(db.copy_args("src", "dst"), &["--progress", "none"])),
        0,
    );

    // Same checkpoint file, another job.
    let other = run(&with(db.copy_args("src", "dst2"), &["--progress", "none"]));
    expect_exit(&other, 2);
    assert!(
        stderr(&other).contains("belongs to another job"),
        "{}",
        stderr(&other)
    );
    assert_eq!(db.count("dst2").await, 0);
    // Same tables, another --where: another job too.
    let other = run(&with(db.copy_args("src", "dst"), &["--where", "id > 10"]));
    expect_exit(&other, 2);

    std::fs::write(db.path("job.checkpoint"), "{\"format\": 1, \"fingerpr").expect("corrupt it");
    let corrupt = run(&with(db.copy_args("src", "dst2"), &["--progress", "none"]));
    expect_exit(&corrupt, 2);
    assert!(
        stderr(&corrupt).contains("is corrupt"),
        "{}",
        stderr(&corrupt)
    );
    assert_eq!(db.count("dst2").await, 0);

    // --restart starts over.
    expect_exit(
        &run(&with(
            db.copy_args("src", "dst2"),
            &["--progress", "none", "--restart"],
        )),
        0,
    );
    assert_eq!(db.count("dst2").await, 1000);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_timeouts_are_retried_until_the_blocker_commits() {
    let db = TestDb::new("retry").await;
    orders(&db, 500).await;
    // Another session inserts one of the rows and holds its transaction
    // open: the copy's insert of that key waits, times out, retries.
    let blocker = connect().await;
    blocker.batch_execute("BEGIN").await.expect("begin");
    blocker
        .batch_execute(&format!(
            "INSERT INTO {0}.dst SELECT * FROM {0}.src WHERE id = 400",
            db.schema
        ))
        .await
        .expect("blocking insert");
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--lock-timeout",
            "100ms",
            "--progress",
            "none",
            "--json",
            "--workers",
            "1",
        ],
    );
    let child = bin()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    blocker.batch_execute("COMMIT").await.expect("commit");
    let out = child.wait_with_output().expect("wait");
    expect_exit(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("summary");
    assert!(summary["retries"].as_u64() >= Some(1), "{summary}");
    assert_eq!(db.count("dst").await, 500);
    assert_equal(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_lock_connection_stops_the_job_with_its_checkpoint() {
    let db = TestDb::new("locklost").await;
    orders(&db, 1000).await;
    let pause = db.path("pause");
    std::fs::write(&pause, "").expect("pause file");
    let base = with(
        db.copy_args("src", "dst"),
        &["--chunk-rows", "100", "--chunk-time", "0"],
    );
    let mut running = Running::start(&with(
        base.clone(),
        &["--pause-file", pause.to_str().unwrap()],
    ));
    running.wait_for_progress(|p| p["throttled"] == "pause-file");
    // Kill exactly the backend that holds this job's advisory lock.
    let killed = db
        .scalar(
            "WITH k AS (SELECT ('x' || left(md5('rowferry:writes:' || '{s}.dst'::regclass::oid::text), 16))::bit(64)::bigint AS v)
             SELECT count(pg_terminate_backend(l.pid))::text FROM pg_locks l, k
             WHERE l.locktype = 'advisory' AND l.classid::text::bigint = ((k.v >> 32) & 4294967295)
               AND l.objid::text::bigint = (k.v & 4294967295)",
        )
        .await;
    assert_eq!(killed, "1", "the lock's backend");
    let (code, err) = running.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lost the connection that held the job's lock"),
        "{err}"
    );
    // The checkpoint is intact: a rerun resumes and finishes.
    std::fs::remove_file(&pause).expect("unpause");
    let out = run(&with(base, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_equal(&db).await;
    db.cleanup().await;
}
