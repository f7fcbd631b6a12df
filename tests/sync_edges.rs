//! Sync triggers and verify at their edges, on the real servers: an
//! application in REPEATABLE READ, a target that holds only the key, a
//! --map calling a function from the search path, application sessions in
//! another time zone, and verify on FLOAT values, text too long for the
//! target, NULL target keys and keys typed differently on each side.

mod common;
use common::*;

fn args(db: &TestDb, command: &[&str], extra: &[&str]) -> Vec<String> {
    with(
        command.iter().map(|s| s.to_string()).collect(),
        &[
            &[
                "--source",
                &db.url(),
                "--table",
                &db.q("src"),
                "--target-table",
                &db.q("dst"),
            ],
            extra,
        ]
        .concat(),
    )
}

fn verify(db: &TestDb, extra: &[&str]) -> std::process::Output {
    run(&args(
        db,
        &["verify"],
        &[&["--progress", "none"], extra].concat(),
    ))
}

/// A REPEATABLE READ transaction whose snapshot predates the copy's
/// commit cannot see the copied row it deletes: the trigger turns that
/// into a serialization failure (which such applications retry) instead
/// of leaving the row in the target.
#[tokio::test(flavor = "multi_thread")]
async fn pg_repeatable_read_delete_of_a_freshly_copied_row_is_not_lost() {
    let db = TestDb::new("se_rr").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    )
    .await;
    expect_exit(&run(&args(&db, &["sync", "install"], &[])), 0);
    let app = connect().await;
    app.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM {}.src",
        db.schema
    ))
    .await
    .expect("snapshot");
    let copy = with(db.copy_args("src", "dst"), &["--progress", "none"]);
    expect_exit(&run(&copy), 0);
    let first = app
        .batch_execute(&format!("DELETE FROM {}.src WHERE id = 2", db.schema))
        .await
        .expect_err("a serialization failure");
    assert_eq!(first.code().map(|c| c.code()), Some("40001"), "{first:?}");
    app.batch_execute("ROLLBACK").await.expect("rollback");
    // The application's retry, in a fresh snapshot.
    app.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; DELETE FROM {s}.src WHERE id = 2; \
         UPDATE {s}.src SET id = 102 WHERE id = 3; COMMIT",
        s = db.schema
    ))
    .await
    .expect("retry");
    expect_exit(&verify(&db, &[]), 0);
    assert_eq!(db.count("dst").await, 99);
    db.cleanup().await;
}

/// A target holding only the key, with --where: updating a matching row
/// keeps it in the target.
#[tokio::test(flavor = "multi_thread")]
async fn pg_key_only_target_with_where_keeps_updated_rows() {
    let db = TestDb::new("se_keyonly").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, flag boolean NOT NULL, v text);
         CREATE TABLE {s}.dst (id int PRIMARY KEY);
         INSERT INTO {s}.src SELECT g, g % 2 = 0, 'a' FROM generate_series(1, 10) g;",
    )
    .await;
    let copy = with(
        db.copy_args("src", "dst"),
        &["--where", "flag", "--dual-write", "--progress", "none"],
    );
    expect_exit(&run(&copy), 0);
    assert_eq!(db.count("dst").await, 5);
    db.exec(
        "UPDATE {s}.src SET v = 'b' WHERE id = 4;
         UPDATE {s}.src SET flag = false WHERE id = 6;
         UPDATE {s}.src SET flag = true WHERE id = 7;",
    )
    .await;
    assert_eq!(
        db.scalar("SELECT string_agg(id::text, ',' ORDER BY id) FROM {s}.dst")
            .await,
        "2,4,7,8,10"
    );
    expect_exit(&verify(&db, &["--where", "flag"]), 0);
    db.cleanup().await;
}

/// --map may call a function found through the search path, as the copy
/// does; a --map that names the source by schema.table.column cannot work
/// inside a trigger and is refused before anything is installed.
#[tokio::test(flavor = "multi_thread")]
async fn pg_trigger_expressions_are_checked_and_resolve_like_the_copy() {
    let db = TestDb::new("se_path").await;
    let function = format!("public.{}_dbl", db.schema);
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id int PRIMARY KEY, v int);
         CREATE TABLE {{s}}.dst (id int PRIMARY KEY, v int);
         INSERT INTO {{s}}.src VALUES (1, 1);
         CREATE FUNCTION {function}(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';"
    ))
    .await;
    let bare = format!("v={}_dbl(v)", db.schema);
    let copy = with(
        db.copy_args("src", "dst"),
        &["--map", &bare, "--dual-write", "--progress", "none"],
    );
    expect_exit(&run(&copy), 0);
    db.exec("INSERT INTO {s}.src VALUES (2, 21)").await;
    assert_eq!(
        db.scalar("SELECT v::text FROM {s}.dst WHERE id = 2").await,
        "42"
    );
    expect_exit(&run(&args(&db, &["sync", "remove"], &[])), 0);

    let qualified = format!("v={}.src.v", db.schema);
    let out = run(&args(&db, &["sync", "install"], &["--map", &qualified]));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("does not work on one row"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*)::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{s}' AND NOT t.tgisinternal"
        )
        .await,
        "0"
    );
    db.exec(&format!("DROP FUNCTION {function}(int)")).await;
    db.cleanup().await;
}

/// An application session in another time zone, with fewer float digits:
/// the trigger converts as the copy's UTC sessions do.
#[tokio::test(flavor = "multi_thread")]
async fn pg_trigger_values_do_not_depend_on_the_application_session() {
    let db = TestDb::new("se_tz").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, ts timestamptz, f float8);
         CREATE TABLE {s}.dst (id int PRIMARY KEY, ts timestamp, f text);
         INSERT INTO {s}.src VALUES (1, '2026-01-01 12:00:00+00', 1.0 / 3);",
    )
    .await;
    let copy = with(
        db.copy_args("src", "dst"),
        &["--dual-write", "--progress", "none"],
    );
    expect_exit(&run(&copy), 0);
    let app = connect().await;
    app.batch_execute(&format!(
        "SET TimeZone = 'America/New_York'; SET extra_float_digits = 0;
         INSERT INTO {s}.src VALUES (2, '2026-01-01 12:00:00+00', 2.0 / 3);
         UPDATE {s}.src SET f = f WHERE id = 1;",
        s = db.schema
    ))
    .await
    .expect("application writes");
    assert_eq!(
        db.scalar("SELECT ts::text FROM {s}.dst WHERE id = 2").await,
        "2026-01-01 12:00:00"
    );
    expect_exit(&verify(&db, &[]), 0);
    db.cleanup().await;
}

/// MariaDB: a TIMESTAMP mirrored into a DATETIME depends on the
/// application session's time zone; installing says so.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_sync_install_warns_about_session_time_zones() {
    let db = TestDb::mysql("se_tz").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, ts timestamp(6) NULL);
         CREATE TABLE {s}.dst (id int PRIMARY KEY, ts datetime(6));",
    )
    .await;
    let out = run(&args(&db, &["sync", "install"], &[]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("in the session's time_zone"),
        "{}",
        stderr(&out)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_verify_compares_every_bit_of_a_float() {
    let db = TestDb::mysql("se_float").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, f float, d double);
         CREATE TABLE {s}.dst LIKE {s}.src;
         INSERT INTO {s}.src VALUES (1, 123456.7, 0.12345678901234567), (2, 1.5, 2.5);
         INSERT INTO {s}.dst SELECT * FROM {s}.src;",
    )
    .await;
    expect_exit(&verify(&db, &[]), 0);
    db.exec("UPDATE {s}.dst SET f = 123456.8 WHERE id = 1")
        .await;
    let out = verify(&db, &[]);
    expect_exit(&out, 3);
    assert!(
        stdout(&out).contains("different values: key (1)"),
        "{}",
        stdout(&out)
    );
    db.exec("UPDATE {s}.dst SET f = 123456.7, d = 0.12345678901234569 WHERE id = 1")
        .await;
    expect_exit(&verify(&db, &[]), 3);
    db.cleanup().await;
}

/// A value too long for the target is a difference, not a match after a
/// silent cut; char(n) padding is not.
#[tokio::test(flavor = "multi_thread")]
async fn pg_verify_does_not_cut_text_to_the_target_length() {
    let db = TestDb::new("se_len").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text, c text);
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v varchar(5), c char(4));
         INSERT INTO {s}.src VALUES (1, 'abc', 'ab'), (2, 'abcde', 'abcd');
         INSERT INTO {s}.dst VALUES (1, 'abc', 'ab'), (2, 'abcde', 'abcd');",
    )
    .await;
    expect_exit(&verify(&db, &[]), 0);
    db.exec("UPDATE {s}.src SET v = 'abcdefgh' WHERE id = 2")
        .await;
    let out = verify(&db, &[]);
    expect_exit(&out, 3);
    assert!(
        stdout(&out).contains("different values: key (2)"),
        "{}",
        stdout(&out)
    );
    db.cleanup().await;
}

/// Target rows whose (nullable, unique) key is NULL are extra rows too.
async fn verify_counts_null_key_rows(db: TestDb) {
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v int);
         CREATE TABLE {s}.dst (id bigint UNIQUE, v int);
         INSERT INTO {s}.src VALUES (1, 1), (2, 2);
         INSERT INTO {s}.dst VALUES (1, 1), (2, 2);",
    )
    .await;
    expect_exit(&verify(&db, &[]), 0);
    db.exec("INSERT INTO {s}.dst VALUES (NULL, 99), (NULL, 98)")
        .await;
    let out = verify(&db, &["--json"]);
    expect_exit(&out, 3);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(report["target_rows_with_null_key"], 2, "{report}");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_verify_counts_null_key_rows() {
    verify_counts_null_key_rows(TestDb::new("se_nullkey").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_verify_counts_null_key_rows() {
    verify_counts_null_key_rows(TestDb::mysql("se_nullkey").await).await;
}

/// A key typed differently on each side (bigint vs numeric) is matched by
/// value, and a difference is named by its key.
async fn verify_matches_keys_of_other_types(db: TestDb) {
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v int);
         CREATE TABLE {s}.dst (id numeric(10,2) PRIMARY KEY, v int);
         INSERT INTO {s}.src VALUES (1, 1), (2, 2), (3, 3);
         INSERT INTO {s}.dst VALUES (1, 1), (2, 2), (3, 3);",
    )
    .await;
    expect_exit(&verify(&db, &[]), 0);
    db.exec("UPDATE {s}.dst SET v = 20 WHERE id = 2").await;
    let out = verify(&db, &[]);
    expect_exit(&out, 3);
    assert!(
        stdout(&out).contains("different values: key (2)"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_verify_matches_keys_of_other_types() {
    verify_matches_keys_of_other_types(TestDb::new("se_keytype").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_verify_matches_keys_of_other_types() {
    verify_matches_keys_of_other_types(TestDb::mysql("se_keytype").await).await;
}

/// A trigger commits a row's newer version while a chunk waits for that
/// row's lock: the chunk skips the key in place (no retry of the whole
/// chunk, which a busy writer would make fail again and again), and the
/// trigger's version stays.
#[tokio::test(flavor = "multi_thread")]
async fn pg_chunk_skips_a_key_a_trigger_wrote_after_its_snapshot() {
    let db = TestDb::new("se_race").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g, 'old' FROM generate_series(1, 100) g;
         INSERT INTO {s}.dst VALUES (1, 'old');",
    )
    .await;
    expect_exit(&run(&args(&db, &["sync", "install"], &[])), 0);
    let app = connect().await;
    app.batch_execute(&format!(
        "BEGIN; UPDATE {}.src SET v = 'new' WHERE id = 50",
        db.schema
    ))
    .await
    .expect("application update");
    let copy = with(
        db.copy_args("src", "dst"),
        &[
            // Row 1 already in the target sends the chunks onto the
            // anti-join path at once; row 50 is in chunk 5.
            "--workers",
            "1",
            "--chunk-rows",
            "10",
            "--chunk-time",
            "0",
            "--progress",
            "none",
            "--json",
        ],
    );
    let running = tokio::task::spawn_blocking(move || run(&copy));
    // Wait until the chunk waits for row 50's lock, then commit.
    let waiting = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND query LIKE 'INSERT INTO \"{}\".%'",
        db.schema
    );
    let mut seen = false;
    for _ in 0..200 {
        if db.scalar(&waiting).await != "0" {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen,
        "the chunk never waited for the application's row lock"
    );
    app.batch_execute("COMMIT").await.expect("commit");
    let out = running.await.expect("copy");
    expect_exit(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(summary["retries"], 0, "{summary}");
    assert_eq!(
        db.scalar("SELECT v FROM {s}.dst WHERE id = 50").await,
        "new"
    );
    expect_exit(&verify(&db, &[]), 0);
    db.cleanup().await;
}

/// MariaDB: with a unique index besides the key on the target, the
/// triggers never upsert through it (ON DUPLICATE KEY would overwrite an
/// unrelated row): a write the target cannot hold fails in the
/// application, and everything else is mirrored.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_other_unique_index_makes_conflicting_writes_fail_not_overwrite() {
    let db = TestDb::mysql("se_unique").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, name varchar(20));
         CREATE TABLE {s}.dst (id int PRIMARY KEY, name varchar(20), UNIQUE KEY dst_name (name));",
    )
    .await;
    expect_exit(&run(&args(&db, &["sync", "install"], &[])), 0);
    db.exec(
        "INSERT INTO {s}.src VALUES (1, 'a'), (2, 'b'), (3, 'c');
         UPDATE {s}.src SET name = 'bb' WHERE id = 2;
         UPDATE {s}.src SET id = 30 WHERE id = 3;
         DELETE FROM {s}.src WHERE id = 1;",
    )
    .await;
    expect_exit(&verify(&db, &[]), 0);
    let mut app = connect_mysql().await;
    let clash = mysql_async::prelude::Queryable::query_drop(
        &mut app,
        format!("UPDATE {}.src SET name = 'c' WHERE id = 2", db.schema),
    )
    .await;
    db.exec("INSERT INTO {s}.src VALUES (4, 'd')").await;
    assert!(
        matches!(clash, Err(mysql_async::Error::Server(ref e)) if e.code == 1062),
        "the clash on dst_name must fail the application's write: {clash:?}"
    );
    assert_eq!(
        db.scalar("SELECT GROUP_CONCAT(CONCAT(id, '=', name) ORDER BY id) FROM {s}.dst")
            .await,
        db.scalar("SELECT GROUP_CONCAT(CONCAT(id, '=', name) ORDER BY id) FROM {s}.src")
            .await
    );
    db.cleanup().await;
}
