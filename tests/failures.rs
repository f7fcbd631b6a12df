//! A unique violation on anything but the copy key stops the job (exit 1),
//! names the constraint and the chunk, drops no row, and resumes once fixed.
//! (Duplicates within the source are refused before the copy starts, see
//! tests/preflight.rs; here the conflict is with a row already in the target.)

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn unique_violation_on_another_key_stops_the_job_and_drops_nothing() {
    let db = TestDb::new("uniq").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email text NOT NULL);
         INSERT INTO {s}.src SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, email text NOT NULL CONSTRAINT dst_email_unique UNIQUE);
         INSERT INTO {s}.dst VALUES (100000, 'user1500@example.com');",
    )
    .await;
    let mut args = db.copy_args("src", "dst");
    args.extend(
        [
            "--chunk-rows",
            "100",
            "--chunk-time",
            "0",
            "--workers",
            "1",
            "--progress",
            "none",
        ]
        .map(String::from),
    );
    let out = run(&args);
    expect_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("dst_email_unique"), "{err}");
    assert!(err.contains("chunk (1400, 1500]"), "{err}");
    assert!(err.contains("no row was dropped"), "{err}");
    // The failing chunk rolled back: nothing from it is in the target, and
    // nothing after it was skipped silently (the job stopped).
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM {s}.dst WHERE id > 1400 AND id <= 1500")
            .await,
        "0"
    );
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM {s}.dst WHERE id = 10")
            .await,
        "1"
    );

    // Fix the data, rerun: it resumes and every row arrives.
    db.exec("DELETE FROM {s}.dst WHERE id = 100000").await;
    let out = run(&args);
    expect_exit(&out, 0);
    assert!(stderr(&out).contains("resuming from checkpoint"));
    assert_eq!(
        db.checksum("src", "id, email", "id").await,
        db.checksum("dst", "id, email", "id").await
    );
    db.cleanup().await;
}
