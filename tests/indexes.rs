//! Deferred secondary indexes, with the real binary on PostgreSQL and
//! MariaDB: `copy --defer-indexes` brings back exactly the definitions it
//! dropped (all valid, rows equal) and keeps what carries a guarantee; a
//! crash during the copy or during the rebuild resumes; an INVALID index
//! left by a failed concurrent build is dropped and built again; the
//! standalone `indexes defer|rebuild|status` round trip.

mod common;
use common::*;
use mysql_async::prelude::Queryable;

// ------------------------------------------------------------------ helpers

/// Every index of `table` with its definition, validity and comment,
/// sorted: equal text means the same indexes.
async fn pg_indexes(db: &TestDb, table: &str) -> String {
    db.scalar(&format!(
        "SELECT coalesce(string_agg(d, E'\\n' ORDER BY d), '') FROM ( \
           SELECT pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid \
                  || coalesce(' comment=' || obj_description(i.indexrelid, 'pg_class'), '') AS d \
           FROM pg_index i WHERE i.indrelid = '{{s}}.{table}'::regclass) x"
    ))
    .await
}

/// The index and constraint lines of SHOW CREATE TABLE, sorted (a rebuilt
/// index may be listed in another position).
async fn mysql_index_lines(db: &TestDb, table: &str) -> Vec<String> {
    let mut conn = connect_mysql().await;
    let row: Option<(String, String)> = conn
        .query_first(format!("SHOW CREATE TABLE {}.{table}", db.schema))
        .await
        .expect("SHOW CREATE TABLE");
    let (_, text) = row.expect("a definition");
    let _ = conn.disconnect().await;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| {
            [
                "PRIMARY KEY",
                "UNIQUE KEY",
                "KEY ",
                "FULLTEXT",
                "SPATIAL",
                "CONSTRAINT",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    lines.sort();
    lines
}

fn checkpoint(db: &TestDb) -> serde_json::Value {
    let text = std::fs::read_to_string(db.path("job.checkpoint")).expect("checkpoint file");
    serde_json::from_str(&text).expect("checkpoint JSON")
}

/// `rowferry indexes ACTION --target URL --table SCHEMA.dst --state FILE`.
fn indexes_args(db: &TestDb, action: &str) -> Vec<String> {
    [
        "indexes",
        action,
        "--target",
        &db.url(),
        "--table",
        &db.q("dst"),
        "--state",
        &db.path("indexes.json").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn status_json(db: &TestDb) -> serde_json::Value {
    let out = run(&with(indexes_args(db, "status"), &["--json"]));
    expect_exit(&out, 0);
    serde_json::from_str(stdout(&out).trim()).expect("status JSON")
}

/// name -> state, from `indexes status --json`.
fn states(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["indexes"]
        .as_array()
        .expect("indexes")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or("?").to_string(),
                i["state"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = v
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

// ------------------------------------------------------------------ PostgreSQL

/// src and an empty dst with the kinds of index a deferral must tell
/// apart: primary key, unique index, exclusion constraint (kept), and
/// plain, partial, expression, INCLUDE and commented ones (deferred).
async fn pg_tables(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, customer int NOT NULL, email text NOT NULL,
                                 note text, during int4range NOT NULL);
         INSERT INTO {{s}}.src SELECT g, g % 97, 'user' || g || '@example.com',
                CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END,
                int4range((g * 10)::int, (g * 10 + 5)::int)
         FROM generate_series(1, {rows}) g;
         ANALYZE {{s}}.src;
         CREATE TABLE {{s}}.dst (LIKE {{s}}.src INCLUDING ALL);
         CREATE UNIQUE INDEX dst_email_key ON {{s}}.dst (email);
         ALTER TABLE {{s}}.dst ADD CONSTRAINT dst_no_overlap EXCLUDE USING gist (during WITH &&);
         CREATE INDEX dst_customer_idx ON {{s}}.dst (customer);
         CREATE INDEX \"Dst Note\" ON {{s}}.dst (lower(note) DESC) INCLUDE (customer) WHERE note IS NOT NULL;
         COMMENT ON INDEX {{s}}.dst_customer_idx IS 'it''s for \\ lookups';"
    ))
    .await;
}

async fn pg_assert_rows_equal(db: &TestDb) {
    let cols = "id, customer, email, note, during";
    assert_eq!(
        db.checksum("src", cols, "id").await,
        db.checksum("dst", cols, "id").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_copy_with_deferred_indexes_brings_back_the_same_valid_indexes() {
    let db = TestDb::new("defer_copy").await;
    pg_tables(&db, 6000).await;
    let before = pg_indexes(&db, "dst").await;
    assert_eq!(before.matches("valid=true").count(), 5, "{before}");
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--defer-indexes",
            "--chunk-rows",
            "500",
            "--chunk-time",
            "0",
            "--workers",
            "2",
            "--progress",
            "none",
        ],
    );

    // A crash in the middle of the copy: the deferred indexes are gone,
    // their definitions are in the checkpoint, the kept ones are there.
    let out = run_crashing_after(&args, 3);
    let err = stderr(&out);
    assert!(
        err.contains("2 secondary index(es)") && err.contains("dropped until the copy ends"),
        "{err}"
    );
    assert!(
        err.contains("kept dst_email_key: unique")
            && err.contains("kept dst_pkey: primary key")
            && err.contains("kept dst_no_overlap: exclusion constraint"),
        "the command says what it kept and why:\n{err}"
    );
    let during = pg_indexes(&db, "dst").await;
    assert!(
        !during.contains("dst_customer_idx") && !during.contains("Dst Note"),
        "{during}"
    );
    assert_eq!(during.matches("valid=true").count(), 3, "{during}");
    let cp = checkpoint(&db);
    let recorded: Vec<&str> = cp["deferred_indexes"]["indexes"]
        .as_array()
        .expect("recorded indexes")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(recorded, vec!["Dst Note", "dst_customer_idx"]);
    assert!(cp["deferred_indexes"]["rebuilt_at"].is_null());

    // The rerun resumes (nothing more to drop) and rebuilds at the end.
    let out = run(&with(args, &["--json"]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert!(err.contains("(2 already gone)"), "{err}");
    assert!(err.contains("are back, valid"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("summary");
    assert_eq!(summary["status"], "done");

    assert_eq!(pg_indexes(&db, "dst").await, before);
    pg_assert_rows_equal(&db).await;
    assert!(checkpoint(&db)["deferred_indexes"]["rebuilt_at"].is_string());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_crash_during_the_rebuild_resumes_it() {
    let db = TestDb::new("defer_crash").await;
    pg_tables(&db, 3000).await;
    let before = pg_indexes(&db, "dst").await;
    let args = with(
        db.copy_args("src", "dst"),
        &["--defer-indexes", "--index-jobs", "1", "--progress", "none"],
    );
    let out = bin()
        .args(&args)
        .env("ROWFERRY_CRASH_AFTER_INDEXES", "1")
        .output()
        .expect("run rowferry");
    assert_eq!(out.status.code(), None, "an abort: {}", stderr(&out));
    assert!(
        stderr(&out).contains("ROWFERRY_CRASH_AFTER_INDEXES=1 reached"),
        "{}",
        stderr(&out)
    );
    // One index built, one still owed; the copy itself is finished.
    let cp = checkpoint(&db);
    assert_eq!(cp["finished"], true);
    assert!(cp["deferred_indexes"]["rebuilt_at"].is_null());
    let half = pg_indexes(&db, "dst").await;
    assert!(
        half.contains("Dst Note") ^ half.contains("dst_customer_idx"),
        "{half}"
    );

    let out = run(&args);
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("already finished"), "{err}");
    assert!(err.contains("1 recorded index(es)"), "{err}");
    assert!(
        err.contains("(1/1)"),
        "only the missing one is built:\n{err}"
    );
    assert_eq!(pg_indexes(&db, "dst").await, before);
    pg_assert_rows_equal(&db).await;
    assert!(checkpoint(&db)["deferred_indexes"]["rebuilt_at"].is_string());

    // A third run has nothing to do.
    let out = run(&args);
    expect_exit(&out, 0);
    assert!(!stderr(&out).contains("building"), "{}", stderr(&out));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_an_invalid_index_from_a_failed_concurrent_build_is_dropped_and_built_again() {
    let db = TestDb::new("defer_invalid").await;
    pg_tables(&db, 2000).await;
    db.exec("INSERT INTO {s}.dst SELECT * FROM {s}.src").await;
    let before = pg_indexes(&db, "dst").await;

    let out = run(&indexes_args(&db, "defer"));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("deferred 2 index(es)"),
        "{}",
        stderr(&out)
    );

    // A concurrent build of that name fails (customer repeats), leaving
    // an INVALID unique index where the recorded plain one belongs.
    let failed = connect()
        .await
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY dst_customer_idx ON {}.dst (customer)",
            db.schema
        ))
        .await;
    assert!(failed.is_err(), "the unique build must fail");
    assert!(
        pg_indexes(&db, "dst")
            .await
            .contains("CREATE UNIQUE INDEX dst_customer_idx ON")
    );
    assert_eq!(
        states(&status_json(&db)),
        pairs(&[
            ("Dst Note", "missing"),
            ("dst_customer_idx", "invalid"),
            ("dst_email_key", "kept"),
            ("dst_no_overlap", "kept"),
            ("dst_pkey", "kept"),
        ])
    );

    let out = run(&indexes_args(&db, "rebuild"));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("dst_customer_idx") && err.contains("is INVALID"),
        "{err}"
    );
    // The recorded, non-unique definition, valid, with its comment.
    assert_eq!(pg_indexes(&db, "dst").await, before);
    let report = status_json(&db);
    assert_eq!(report["record"], "rebuilt");
    assert_eq!(
        states(&report),
        pairs(&[
            ("Dst Note", "valid"),
            ("dst_customer_idx", "valid"),
            ("dst_email_key", "kept"),
            ("dst_no_overlap", "kept"),
            ("dst_pkey", "kept"),
        ])
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_standalone_defer_rebuild_status_round_trip_and_refusals() {
    let db = TestDb::new("defer_cli").await;
    pg_tables(&db, 500).await;
    let before = pg_indexes(&db, "dst").await;

    // No record yet: status says what a deferral would do; rebuild refuses.
    let report = status_json(&db);
    assert_eq!(report["record"], "none");
    assert_eq!(
        states(&report),
        pairs(&[
            ("Dst Note", "deferrable"),
            ("dst_customer_idx", "deferrable"),
            ("dst_email_key", "kept"),
            ("dst_no_overlap", "kept"),
            ("dst_pkey", "kept"),
        ])
    );
    let out = run(&indexes_args(&db, "rebuild"));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("no deferred indexes recorded"),
        "{}",
        stderr(&out)
    );

    expect_exit(&run(&indexes_args(&db, "defer")), 0);
    assert!(db.path("indexes.json").exists());
    let report = status_json(&db);
    assert_eq!(report["record"], "deferred");
    assert!(states(&report).contains(&("dst_customer_idx".into(), "missing".into())));
    // Deferring again drops nothing more and keeps the record.
    let out = run(&indexes_args(&db, "defer"));
    expect_exit(&out, 0);
    assert!(stderr(&out).contains("0 dropped now"), "{}", stderr(&out));

    // Someone creates another index under a recorded name: refused, named.
    db.exec("CREATE INDEX dst_customer_idx ON {s}.dst (email)")
        .await;
    let out = run(&indexes_args(&db, "rebuild"));
    expect_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("index dst_customer_idx") && err.contains("another definition"),
        "{err}"
    );
    assert!(
        !pg_indexes(&db, "dst").await.contains("Dst Note"),
        "nothing built"
    );
    db.exec("DROP INDEX {s}.dst_customer_idx").await;

    let out = run(&with(indexes_args(&db, "rebuild"), &["--json"]));
    expect_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(report["record"], "rebuilt");
    assert_eq!(pg_indexes(&db, "dst").await, before);
    // Rebuilding again checks and builds nothing.
    let out = run(&indexes_args(&db, "rebuild"));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("2 recorded index(es)") && !stderr(&out).contains("building"),
        "{}",
        stderr(&out)
    );

    // A table with nothing to defer: nothing recorded.
    db.exec("DROP INDEX {s}.dst_customer_idx; DROP INDEX {s}.\"Dst Note\"")
        .await;
    std::fs::remove_file(db.path("indexes.json")).expect("state file");
    let out = run(&indexes_args(&db, "defer"));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("no secondary index to defer"),
        "{}",
        stderr(&out)
    );
    assert!(!db.path("indexes.json").exists());
    db.cleanup().await;
}

// ------------------------------------------------------------------ MariaDB

/// src and an empty dst with a primary key, a unique key, an index a
/// foreign key needs and a FULLTEXT index (kept), and plain indexes with
/// a prefix, DESC, a comment and an odd name (deferred).
async fn mysql_tables(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.parent (id int PRIMARY KEY) ENGINE=InnoDB;
         INSERT INTO {{s}}.parent SELECT seq FROM seq_1_to_100;
         CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, email varchar(100) NOT NULL, b int,
                                 body text, parent_id int) ENGINE=InnoDB;
         INSERT INTO {{s}}.src SELECT seq, CONCAT('user', seq, '@example.com'), seq % 77,
                CONCAT('text ', seq), seq % 100 + 1 FROM seq_1_to_{rows};
         CREATE TABLE {{s}}.dst (id bigint PRIMARY KEY, email varchar(100) NOT NULL, b int,
                body text, parent_id int,
                UNIQUE KEY email_key (email),
                KEY b_email (b DESC, email(10)) COMMENT 'for, (reports)',
                KEY parent_b (parent_id, b),
                KEY `odd``name` (b) USING BTREE,
                FULLTEXT KEY body_ft (body),
                CONSTRAINT parent_fk FOREIGN KEY (parent_id) REFERENCES {{s}}.parent (id)
         ) ENGINE=InnoDB;"
    ))
    .await;
}

async fn mysql_assert_rows_equal(db: &TestDb) {
    let cols = "id, email, b, body, parent_id";
    assert_eq!(
        db.checksum("src", cols, "id").await,
        db.checksum("dst", cols, "id").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_copy_with_deferred_indexes_brings_back_the_same_indexes() {
    let db = TestDb::mysql("defer_copy").await;
    mysql_tables(&db, 5000).await;
    let before = mysql_index_lines(&db, "dst").await;
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--defer-indexes",
            "--chunk-rows",
            "500",
            "--chunk-time",
            "0",
            "--workers",
            "2",
            "--progress",
            "none",
        ],
    );
    let out = run_crashing_after(&args, 2);
    let err = stderr(&out);
    assert!(
        err.contains("kept PRIMARY: primary key")
            && err.contains("kept email_key: unique")
            && err.contains("kept parent_b: supports foreign key `parent_fk`")
            && err.contains("kept body_ft: FULLTEXT"),
        "{err}"
    );
    let during = mysql_index_lines(&db, "dst").await;
    assert!(
        !during
            .iter()
            .any(|l| l.starts_with("KEY `b_email`") || l.starts_with("KEY `odd``name`")),
        "{during:?}"
    );

    // Even a rerun with --restart and without the flag still owes them:
    // they come back at the end.
    let rerun: Vec<String> = args
        .iter()
        .filter(|a| *a != "--defer-indexes")
        .cloned()
        .chain(["--restart".to_string()])
        .collect();
    let out = run(&rerun);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("(2 already gone)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("are back, valid"), "{}", stderr(&out));
    assert_eq!(mysql_index_lines(&db, "dst").await, before);
    mysql_assert_rows_equal(&db).await;
    assert!(checkpoint(&db)["deferred_indexes"]["rebuilt_at"].is_string());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_crash_during_the_rebuild_resumes_it() {
    let db = TestDb::mysql("defer_crash").await;
    mysql_tables(&db, 2000).await;
    let before = mysql_index_lines(&db, "dst").await;
    let args = with(
        db.copy_args("src", "dst"),
        &["--defer-indexes", "--progress", "none"],
    );
    // The crash comes right after the one ALTER that builds both indexes,
    // before the checkpoint says so.
    let out = bin()
        .args(&args)
        .env("ROWFERRY_CRASH_AFTER_INDEXES", "1")
        .output()
        .expect("run rowferry");
    assert_eq!(out.status.code(), None, "an abort: {}", stderr(&out));
    let cp = checkpoint(&db);
    assert_eq!(cp["finished"], true);
    assert!(cp["deferred_indexes"]["rebuilt_at"].is_null());

    let out = run(&args);
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("2 recorded index(es)"), "{err}");
    assert!(
        !err.contains("building index"),
        "nothing left to build:\n{err}"
    );
    assert_eq!(mysql_index_lines(&db, "dst").await, before);
    mysql_assert_rows_equal(&db).await;
    assert!(checkpoint(&db)["deferred_indexes"]["rebuilt_at"].is_string());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_standalone_defer_rebuild_status_round_trip() {
    let db = TestDb::mysql("defer_cli").await;
    mysql_tables(&db, 1000).await;
    db.exec("INSERT INTO {s}.dst SELECT * FROM {s}.src").await;
    let before = mysql_index_lines(&db, "dst").await;

    expect_exit(&run(&indexes_args(&db, "defer")), 0);
    assert_eq!(
        states(&status_json(&db)),
        pairs(&[
            ("PRIMARY", "kept"),
            ("b_email", "missing"),
            ("body_ft", "kept"),
            ("email_key", "kept"),
            ("odd`name", "missing"),
            ("parent_b", "kept"),
        ])
    );

    // Another index under a recorded name is refused, named.
    db.exec("ALTER TABLE {s}.dst ADD KEY b_email (email)").await;
    let out = run(&indexes_args(&db, "rebuild"));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("index b_email") && stderr(&out).contains("another definition"),
        "{}",
        stderr(&out)
    );
    db.exec("ALTER TABLE {s}.dst DROP KEY b_email").await;

    let out = run(&indexes_args(&db, "rebuild"));
    expect_exit(&out, 0);
    assert_eq!(mysql_index_lines(&db, "dst").await, before);
    let report = status_json(&db);
    assert_eq!(report["record"], "rebuilt");
    assert!(states(&report).contains(&("odd`name".into(), "valid".into())));
    db.cleanup().await;
}
