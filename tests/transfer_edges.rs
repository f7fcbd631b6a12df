//! Edges of `copy --target` found in review, on the real servers: keys a
//! case-insensitive target treats as equal are refused instead of losing
//! rows; a GENERATED ALWAYS identity target is written; chunks of 20,000
//! composite keys are deleted and written in batches.

mod common;
use common::*;

fn cross(source: &TestDb, target: &TestDb, extra: &[&str]) -> Vec<String> {
    let checkpoint = source.path("edges.checkpoint").display().to_string();
    let args = across(
        "copy",
        source,
        "src",
        target,
        "dst",
        &["--checkpoint", &checkpoint],
    );
    with(args, extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_a_case_insensitive_target_confuses_are_refused_not_lost() {
    let pg = TestDb::new("te_case").await;
    let my = TestDb::mysql("te_case").await;
    pg.exec(
        "CREATE TABLE {s}.src (k varchar(20) COLLATE \"C\" PRIMARY KEY, v int);
         INSERT INTO {s}.src VALUES ('KEY005', 1), ('key001', 2), ('key005', 3), ('key009', 4)",
    )
    .await;
    // utf8mb4_general_ci: 'KEY005' = 'key005'.
    my.exec("CREATE TABLE {s}.dst (k varchar(20) PRIMARY KEY, v int)")
        .await;
    let out = run(&cross(
        &pg,
        &my,
        &["--chunk-rows", "1", "--chunk-time", "0", "--workers", "1"],
    ));
    expect_exit(&out, 1);
    assert!(
        stderr(&out).contains("treat as equal to a different key"),
        "{}",
        stderr(&out)
    );
    // What was written is intact: no row of another key was replaced.
    assert_eq!(
        my.scalar("SELECT GROUP_CONCAT(CONCAT(BINARY k, '=', v) ORDER BY BINARY k) FROM {s}.dst")
            .await,
        "KEY005=1,key001=2"
    );
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_always_targets_and_big_composite_chunks_are_written() {
    let my = TestDb::mysql("te_big").await;
    let pg = TestDb::new("te_big").await;
    my.exec(
        "CREATE TABLE {s}.src (region varchar(10), n int, amount decimal(10,2), PRIMARY KEY (region, n));
         INSERT INTO {s}.src SELECT IF(seq % 2 = 0, 'north', 'south'), seq, seq / 4 FROM seq_1_to_45000",
    )
    .await;
    pg.exec(
        "CREATE TABLE {s}.dst (region varchar(10), n int GENERATED ALWAYS AS IDENTITY, \
         amount numeric(10,2), PRIMARY KEY (region, n))",
    )
    .await;
    let args = cross(
        &my,
        &pg,
        &[
            "--chunk-rows",
            "20000",
            "--chunk-time",
            "0",
            "--workers",
            "2",
        ],
    );
    // Twice: the second run replaces every chunk's rows again.
    expect_exit(&run(&args), 0);
    expect_exit(&run(&with(args.clone(), &["--restart"])), 0);
    assert_eq!(
        pg.scalar("SELECT count(*) || ':' || sum(n) || ':' || sum(amount) FROM {s}.dst")
            .await,
        my.scalar("SELECT CONCAT(COUNT(*), ':', SUM(n), ':', SUM(amount)) FROM {s}.src")
            .await
    );
    my.cleanup().await;
    pg.cleanup().await;
}
