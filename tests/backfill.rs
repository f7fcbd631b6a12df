//! `rowferry backfill` on PostgreSQL and MariaDB: exactly once across a
//! crash (`SET n = n + 1` ends at 1), bounded by the key range at start,
//! --where, --then-not-null, bad input, and no state left behind.

mod common;
use common::*;

fn is_mysql(db: &TestDb) -> bool {
    db.url().starts_with("mysql")
}

/// `src(id, n, amount, flag)`: ids 2, 4, ... (gaps), n = 0, flag NULL.
async fn table(db: &TestDb, rows: u32) {
    let sql = if is_mysql(db) {
        format!(
            "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, amount int NOT NULL, flag boolean NULL);
             INSERT INTO {{s}}.src (id, amount) SELECT seq * 2, seq % 250 FROM seq_1_to_{rows};"
        )
    } else {
        format!(
            "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, amount int NOT NULL, flag boolean NULL);
             INSERT INTO {{s}}.src (id, amount) SELECT g * 2, g % 250 FROM generate_series(1, {rows}) g;
             ANALYZE {{s}}.src;"
        )
    };
    db.exec(&sql).await;
}

fn args(db: &TestDb, set: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "backfill".into(),
        "--source".into(),
        db.url(),
        "--table".into(),
        db.q("src"),
    ];
    a.extend([
        "--set".into(),
        set.into(),
        "--checkpoint".into(),
        db.path("bf.checkpoint").display().to_string(),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn count_where(db: &TestDb, cond: &str) -> String {
    let cast = if is_mysql(db) {
        "CAST(COUNT(*) AS CHAR)"
    } else {
        "count(*)::text"
    };
    db.scalar(&format!("SELECT {cast} FROM {{s}}.src WHERE {cond}"))
        .await
}

/// The state tables rowferry made in this schema (none after success).
async fn state_tables(db: &TestDb) -> String {
    let sql = if is_mysql(db) {
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{s}' AND TABLE_NAME LIKE 'rowferry%'"
    } else {
        "SELECT count(*)::text FROM pg_tables WHERE schemaname = '{s}' AND tablename LIKE 'rowferry%'"
    };
    db.scalar(sql).await
}

async fn exactly_once_across_a_crash(db: TestDb) {
    table(&db, 3000).await;
    let base = args(
        &db,
        "n = n + 1",
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
    run_crashing_after(&base, 7);
    // Seven chunks committed; the checkpoint knows at most six.
    assert_eq!(count_where(&db, "n = 1").await, "700");
    assert_eq!(state_tables(&db).await, "1");

    let out = run(&base);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        count_where(&db, "n = 1").await,
        "3000",
        "every row exactly once"
    );
    assert_eq!(count_where(&db, "n <> 1").await, "0");
    assert_eq!(state_tables(&db).await, "0", "state table cleaned up");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_exactly_once_across_a_crash() {
    exactly_once_across_a_crash(TestDb::new("bf_once").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_exactly_once_across_a_crash() {
    exactly_once_across_a_crash(TestDb::mysql("bf_once").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_backfill_then_rerun_applies_each_row_once() {
    let db = TestDb::new("bf_kill9").await;
    table(&db, 20_000).await;
    let base = args(
        &db,
        "n = n + 1",
        &["--chunk-rows", "200", "--chunk-time", "0", "--workers", "2"],
    );
    let mut running = Running::start(&with(base.clone(), &["--max-rows-per-sec", "4000"]));
    running.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(3));
    running.child.kill().expect("kill -9");
    let (code, _) = running.finish();
    assert_eq!(code, None);
    let out = run(&with(base, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count_where(&db, "n = 1").await, "20000");
    assert_eq!(state_tables(&db).await, "0");
    db.cleanup().await;
}

async fn where_and_high_watermark(db: TestDb) {
    table(&db, 2000).await;
    let pause = db.path("pause");
    std::fs::write(&pause, "").expect("pause");
    let base = args(
        &db,
        "n = n + 1",
        &[
            "--where",
            "amount >= 100",
            "--chunk-rows",
            "150",
            "--chunk-time",
            "0",
        ],
    );
    let mut running = Running::start(&with(base, &["--pause-file", pause.to_str().unwrap()]));
    running.wait_for_progress(|p| p["throttled"] == "pause-file");
    // Rows inserted after the start, above its largest key, are the
    // application's: the backfill neither waits for nor touches them.
    db.exec("INSERT INTO {s}.src (id, amount) VALUES (100001, 200), (100003, 200), (100005, 5)")
        .await;
    std::fs::remove_file(&pause).expect("unpause");
    let (code, err) = running.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        count_where(&db, "n = 1").await,
        count_where(&db, "amount >= 100 AND id < 100000").await
    );
    assert_eq!(count_where(&db, "n = 1 AND amount < 100").await, "0");
    assert_eq!(count_where(&db, "n = 1 AND id > 100000").await, "0");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_where_is_exact_and_later_rows_are_left_alone() {
    where_and_high_watermark(TestDb::new("bf_where").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_where_is_exact_and_later_rows_are_left_alone() {
    where_and_high_watermark(TestDb::mysql("bf_where").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn then_not_null_makes_the_column_not_null_or_refuses_with_a_count() {
    let db = TestDb::new("bf_notnull").await;
    table(&db, 1000).await;
    // Only some rows filled: refused, column left nullable.
    let out = run(&args(
        &db,
        "flag = (amount > 100)",
        &[
            "--where",
            "id > 1000",
            "--then-not-null",
            "flag",
            "--progress",
            "none",
        ],
    ));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("flag: 500 row(s)") && stderr(&out).contains("still hold NULL"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    let not_null = "SELECT attnotnull::text FROM pg_attribute WHERE attrelid = '{s}.src'::regclass AND attname = 'flag'";
    assert_eq!(db.scalar(not_null).await, "false");
    // All rows: the column ends NOT NULL, with no helper constraint left.
    let out = run(&args(
        &db,
        "flag = (amount > 100)",
        &["--then-not-null", "flag", "--progress", "none", "--restart"],
    ));
    expect_exit(&out, 0);
    assert_eq!(db.scalar(not_null).await, "true");
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM pg_constraint WHERE conrelid = '{s}.src'::regclass AND conname LIKE 'rowferry%'").await,
        "0"
    );
    assert_eq!(state_tables(&db).await, "0");
    db.cleanup().await;
}

async fn bad_input(db: TestDb) {
    table(&db, 100).await;
    let refused = |a: Vec<String>, needle: &'static str| {
        let out = run(&a);
        let err = stderr(&out);
        expect_exit(&out, 2);
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
        assert!(err.contains("nothing was written"), "{err}");
    };
    refused(args(&db, "nope = 1", &[]), "no column `nope`");
    refused(args(&db, "id = id + 1", &[]), "part of the key");
    refused(
        args(&db, "n = n +* 1", &[]),
        "rejected the backfill statement",
    );
    refused(args(&db, "n = no_such_col", &[]), "no_such_col");
    refused(
        args(&db, "n = 1", &["--where", "amount >>>> 2"]),
        "rejected the backfill statement",
    );
    refused(args(&db, "n + 1", &[]), "is not COLUMN = EXPRESSION");
    refused(
        args(&db, "n = 1", &["--then-not-null", "nope"]),
        "--then-not-null: table",
    );
    assert_eq!(count_where(&db, "n <> 0").await, "0", "no row changed");
    assert_eq!(state_tables(&db).await, "0", "no state table");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_bad_input_is_refused_before_any_write() {
    bad_input(TestDb::new("bf_bad").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_bad_input_is_refused_before_any_write() {
    bad_input(TestDb::mysql("bf_bad").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_the_backfill_and_writes_nothing() {
    let db = TestDb::new("bf_plan").await;
    table(&db, 1000).await;
    let mut a = args(
        &db,
        "n = n + 1",
        &["--chunk-rows", "100", "--then-not-null", "flag"],
    );
    a[0] = "plan".into();
    let out = run(&a);
    expect_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("rowferry plan: backfill (dry run: nothing is written)"),
        "{text}"
    );
    assert!(text.contains("chunk 2:     (200, 400]"), "{text}");
    assert!(
        text.contains(&format!(
            "UPDATE \"{}\".\"src\" SET \"n\" = (n + 1) WHERE",
            db.schema
        )),
        "{text}"
    );
    assert!(text.contains("VALIDATE CONSTRAINT"), "{text}");
    assert_eq!(count_where(&db, "n <> 0").await, "0");
    assert_eq!(state_tables(&db).await, "0");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_then_not_null_uses_the_online_alter() {
    let db = TestDb::mysql("bf_notnull").await;
    table(&db, 1000).await;
    db.exec("ALTER TABLE {s}.src MODIFY flag boolean NULL COMMENT 'filled, NULL before'")
        .await;
    let out = run(&args(
        &db,
        "flag = (amount > 100)",
        &[
            "--where",
            "id > 1000",
            "--then-not-null",
            "flag",
            "--progress",
            "none",
        ],
    ));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("flag: 500 row(s)"),
        "{}",
        stderr(&out)
    );
    let nullable = "SELECT IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{s}' AND TABLE_NAME = 'src' AND COLUMN_NAME = 'flag'";
    assert_eq!(db.scalar(nullable).await, "YES");
    let out = run(&args(
        &db,
        "flag = (amount > 100)",
        &["--then-not-null", "flag", "--progress", "none", "--restart"],
    ));
    expect_exit(&out, 0);
    assert_eq!(db.scalar(nullable).await, "NO");
    let comment = "SELECT COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{s}' AND TABLE_NAME = 'src' AND COLUMN_NAME = 'flag'";
    assert_eq!(
        db.scalar(comment).await,
        "filled, NULL before",
        "the rest of the definition is kept"
    );
    assert_eq!(count_where(&db, "flag IS NULL").await, "0");
    assert_eq!(state_tables(&db).await, "0");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_starts_over_instead_of_skipping_old_state() {
    let db = TestDb::new("bf_restart").await;
    table(&db, 1000).await;
    let base = args(
        &db,
        "n = n + 1",
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
    run_crashing_after(&base, 3);
    assert_eq!(count_where(&db, "n = 1").await, "300");
    // --restart means a new job: the same chunks are applied again, not
    // skipped as if the abandoned run's state rows were this run's.
    expect_exit(&run(&with(base, &["--restart"])), 0);
    assert_eq!(count_where(&db, "n = 2").await, "300");
    assert_eq!(count_where(&db, "n = 1").await, "700");
    assert_eq!(state_tables(&db).await, "0");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn adaptive_chunks_and_parallel_workers_stay_exactly_once_across_a_crash() {
    // Default adaptive sizing and 3 workers: a rerun would cut different
    // chunks, so every chunk's bounds must be durable before it runs.
    let db = TestDb::new("bf_adaptive").await;
    table(&db, 30_000).await;
    let base = args(
        &db,
        "n = n + 1",
        &[
            "--workers",
            "3",
            "--chunk-rows",
            "500",
            "--progress",
            "none",
        ],
    );
    run_crashing_after(&base, 6);
    // Meanwhile the application deletes and inserts rows below the range's end.
    db.exec("DELETE FROM {s}.src WHERE id IN (4000, 4002, 20000); INSERT INTO {s}.src (id, amount) VALUES (4001, 7)").await;
    let out = run(&base);
    expect_exit(&out, 0);
    assert_eq!(count_where(&db, "n > 1").await, "0", "no row updated twice");
    assert_eq!(
        count_where(&db, "n = 0 AND id <> 4001").await,
        "0",
        "no row missed"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_in_the_database_without_its_checkpoint_is_refused_not_reapplied() {
    let db = TestDb::new("bf_leftover").await;
    table(&db, 2000).await;
    let base = args(
        &db,
        "n = n + 1",
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
    run_crashing_after(&base, 4);
    // Another checkpoint path (another directory, a typo): refused.
    let mut elsewhere = base.clone();
    let at = elsewhere.iter().position(|a| a == "--checkpoint").unwrap() + 1;
    elsewhere[at] = db.path("other.checkpoint").display().to_string();
    let out = run(&elsewhere);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("left its progress in the database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count_where(&db, "n = 1").await, "400");
    // A checkpoint of another job: refused before the state table is made.
    let fresh = TestDb::new("bf_foreign").await;
    table(&fresh, 10).await;
    std::fs::copy(db.path("bf.checkpoint"), fresh.path("bf.checkpoint")).expect("copy checkpoint");
    let out = run(&args(&fresh, "n = 5", &["--progress", "none"]));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("belongs to another job"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state_tables(&fresh).await, "0");
    fresh.cleanup().await;
    // The right checkpoint resumes; every row ends at exactly 1.
    expect_exit(&run(&base), 0);
    assert_eq!(count_where(&db, "n = 1").await, "2000");
    db.cleanup().await;
}
