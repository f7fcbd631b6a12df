//! Pre-flight checks on the real servers: a copy that would put NULLs into
//! NOT NULL columns, cut or round values, collide on a unique index or
//! leave a NOT NULL column empty is refused with exit 2 before anything is
//! written, naming the column and an example key; `plan` lists the same
//! problems and exits 0; a copy whose narrower types hold every value
//! still copies exactly.

mod common;
use common::*;

fn copy_args(db: &TestDb) -> Vec<String> {
    with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "40",
            "--chunk-time",
            "0",
            "--progress",
            "none",
        ],
    )
}

fn plan_args(db: &TestDb, json: bool) -> Vec<String> {
    let mut args = copy_args(db);
    args[0] = "plan".into();
    if json {
        args.push("--json".into());
    }
    args
}

/// `plan` exits 0, says the copy would refuse, and lists a problem of
/// `kind` on `column` with `rows` rows and `example` as its key.
async fn plan_lists(db: &TestDb, kind: &str, column: &str, rows: u64, example: &[&str]) {
    let out = run(&plan_args(db, false));
    expect_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("copy would refuse"), "{text}");
    assert!(text.contains(column), "{text}");

    let out = run(&plan_args(db, true));
    expect_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("plan JSON");
    let problems = plan["preflight"].as_array().expect("preflight array");
    let found = problems
        .iter()
        .find(|p| p["kind"] == kind && p["column"] == column)
        .unwrap_or_else(|| panic!("no {kind} problem on {column}: {plan}"));
    assert_eq!(found["rows"], rows, "{found}");
    assert_eq!(found["example_key"], serde_json::json!(example), "{found}");
    assert!(found["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(db.count("dst").await, 0, "plan writes nothing");
    assert!(!db.path("job.checkpoint").exists());
}

// ---------------------------------------------------------------- NULLs

async fn nulls_into_not_null(db: &TestDb) {
    let err = refused(db, copy_args(db), "NULL into NOT NULL").await;
    assert!(err.contains("name is NOT NULL"), "{err}");
    assert!(err.contains("2 source rows, e.g. key (id) = (37)"), "{err}");
    assert!(err.contains("COALESCE"), "the fix is named: {err}");
    plan_lists(db, "null_into_not_null", "name", 2, &["37"]).await;
    // Leaving those rows out is one of the fixes: the copy then runs.
    let out = run(&with(copy_args(db), &["--where", "name IS NOT NULL"]));
    expect_exit(&out, 0);
    assert_eq!(db.count("dst").await, 98);
}

#[tokio::test(flavor = "multi_thread")]
async fn nulls_into_not_null_are_refused_on_postgres() {
    let db = TestDb::new("pf_null").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, name varchar(20));
         INSERT INTO {s}.src SELECT g, CASE WHEN g IN (37, 80) THEN NULL ELSE 'n' || g END
           FROM generate_series(1, 100) g;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, name varchar(20) NOT NULL);",
    )
    .await;
    nulls_into_not_null(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nulls_into_not_null_are_refused_on_mysql() {
    let db = TestDb::mysql("pf_null").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, name varchar(20));
         INSERT INTO {s}.src SELECT seq, IF(seq IN (37, 80), NULL, CONCAT('n', seq)) FROM seq_1_to_100;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, name varchar(20) NOT NULL);",
    )
    .await;
    nulls_into_not_null(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_key_of_a_composite_key_is_one_rows_key() {
    let db = TestDb::new("pf_comp").await;
    db.exec(
        "CREATE TABLE {s}.src (tenant int, seq int, v text, PRIMARY KEY (tenant, seq));
         INSERT INTO {s}.src SELECT t, s, 'v' FROM generate_series(1, 5) t, generate_series(1, 20) s;
         UPDATE {s}.src SET v = NULL WHERE (tenant, seq) IN ((3, 7), (4, 2));
         CREATE TABLE {s}.dst (tenant int, seq int, v text NOT NULL, PRIMARY KEY (tenant, seq));",
    )
    .await;
    let err = refused(&db, copy_args(&db), "v is NOT NULL").await;
    assert!(
        err.contains("2 source rows, e.g. key (tenant, seq) = (3, 7)"),
        "{err}"
    );
    db.cleanup().await;
}

// ------------------------------------------------------------ narrowing

async fn too_long_text(db: &TestDb) {
    let err = refused(db, copy_args(db), "value does not fit").await;
    assert!(
        err.contains("v: ") && err.contains("values longer than 10 characters"),
        "{err}"
    );
    assert!(err.contains("1 source row, e.g. key (id) = (42)"), "{err}");
    plan_lists(db, "narrowing", "v", 1, &["42"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_longer_than_the_target_is_refused_on_postgres() {
    let db = TestDb::new("pf_long").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g, 'short' FROM generate_series(1, 100) g;
         UPDATE {s}.src SET v = 'elevenchars' WHERE id = 42;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v varchar(10));",
    )
    .await;
    too_long_text(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_longer_than_the_target_is_refused_on_mysql() {
    let db = TestDb::mysql("pf_long").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v varchar(100));
         INSERT INTO {s}.src SELECT seq, 'short' FROM seq_1_to_100;
         UPDATE {s}.src SET v = 'élevenchars' WHERE id = 42;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v varchar(10));",
    )
    .await;
    too_long_text(&db).await;
    db.cleanup().await;
}

async fn rounded_decimal(db: &TestDb) {
    let err = refused(db, copy_args(db), "value does not fit").await;
    assert!(
        err.contains("n: ") && err.contains("more than 2 decimal places are rounded"),
        "{err}"
    );
    assert!(err.contains("1 source row, e.g. key (id) = (7)"), "{err}");
    plan_lists(db, "narrowing", "n", 1, &["7"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decimal_that_would_be_rounded_is_refused_on_postgres() {
    let db = TestDb::new("pf_round").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, n numeric(10,3));
         INSERT INTO {s}.src SELECT g, g / 4.0 FROM generate_series(1, 100) g;
         UPDATE {s}.src SET n = 1.235 WHERE id = 7;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, n numeric(10,2));",
    )
    .await;
    rounded_decimal(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decimal_that_would_be_rounded_is_refused_on_mysql() {
    let db = TestDb::mysql("pf_round").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, n decimal(10,3));
         INSERT INTO {s}.src SELECT seq, seq / 4 FROM seq_1_to_100;
         UPDATE {s}.src SET n = 1.235 WHERE id = 7;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, n decimal(10,2));",
    )
    .await;
    rounded_decimal(&db).await;
    db.cleanup().await;
}

// ----------------------------------------------------------- duplicates

async fn duplicates(db: &TestDb) {
    let err = refused(db, copy_args(db), "dst_email_key").await;
    assert!(err.contains("duplicate"), "{err}");
    assert!(
        err.contains("(user10@example.com)") && err.contains("2 source rows share it"),
        "{err}"
    );
    assert!(err.contains("e.g. key (id) = (10)"), "{err}");
    plan_lists(db, "duplicate", "dst_email_key", 2, &["10"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_for_a_target_unique_index_are_refused_on_postgres() {
    let db = TestDb::new("pf_dup").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email text NOT NULL);
         INSERT INTO {s}.src SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 100) g;
         UPDATE {s}.src SET email = 'user10@example.com' WHERE id = 55;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, email text NOT NULL CONSTRAINT dst_email_key UNIQUE);",
    )
    .await;
    duplicates(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_for_a_target_unique_index_are_refused_on_mysql() {
    let db = TestDb::mysql("pf_dup").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email varchar(50) NOT NULL);
         INSERT INTO {s}.src SELECT seq, CONCAT('user', seq, '@example.com') FROM seq_1_to_100;
         UPDATE {s}.src SET email = 'user10@example.com' WHERE id = 55;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, email varchar(50) NOT NULL, UNIQUE KEY dst_email_key (email));",
    )
    .await;
    duplicates(&db).await;
    db.cleanup().await;
}

// ------------------------------------------------------- missing values

async fn no_value(db: &TestDb) {
    let err = refused(db, copy_args(db), "no value for NOT NULL").await;
    assert!(
        err.contains("region is NOT NULL") && err.contains("has no default"),
        "{err}"
    );
    assert!(err.contains("--map region=EXPR"), "{err}");
    let out = run(&plan_args(db, false));
    expect_exit(&out, 0);
    assert!(
        stdout(&out).contains("no value for NOT NULL"),
        "{}",
        stdout(&out)
    );
    // The fix: a value from the source.
    let out = run(&with(copy_args(db), &["--map", "region='eu'"]));
    expect_exit(&out, 0);
    assert_eq!(db.count("dst").await, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_null_column_without_default_or_source_is_refused_on_postgres() {
    let db = TestDb::new("pf_noval").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g, 'v' FROM generate_series(1, 50) g;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v text, region text NOT NULL,
                               made timestamptz NOT NULL DEFAULT now(), n bigserial);",
    )
    .await;
    no_value(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn not_null_column_without_default_or_source_is_refused_on_mysql() {
    let db = TestDb::mysql("pf_noval").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v varchar(9));
         INSERT INTO {s}.src SELECT seq, 'v' FROM seq_1_to_50;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v varchar(9), region varchar(9) NOT NULL,
                               made datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
                               twice int AS (id * 2) STORED);",
    )
    .await;
    no_value(&db).await;
    db.cleanup().await;
}

// ----------------------------------------------------------- clean copy

/// Every narrowing-prone column holds only values that fit: the checks
/// run (and pass), and the copy is exact.
async fn clean_copy(db: &TestDb, src_cols: &str, dst_cols: &str) {
    let out = run(&plan_args(db, false));
    expect_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("pre-flight:  no problem found"), "{text}");
    assert!(text.contains("checked by reading the source"), "{text}");
    assert!(text.contains("proven by the catalog"), "{text}");
    assert!(
        text.contains("unique index") && text.contains("covers it"),
        "the code index is proven by the source's: {text}"
    );
    let out = run(&plan_args(db, true));
    expect_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("plan JSON");
    assert_eq!(plan["preflight"], serde_json::json!([]), "{plan}");

    let out = run(&copy_args(db));
    expect_exit(&out, 0);
    assert_eq!(db.count("dst").await, 200);
    assert_eq!(
        db.checksum("src", src_cols, "id").await,
        db.checksum("dst", dst_cols, "id").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn narrower_types_that_hold_every_value_copy_exactly_on_postgres() {
    let db = TestDb::new("pf_clean").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v varchar(100), t text, n numeric(12,3),
                               f double precision, big bigint, at timestamp(6), code text NOT NULL UNIQUE,
                               email text, note text);
         INSERT INTO {s}.src SELECT g, 'v' || g, 'τ' || g, g / 4.0, g / 2.0, g * 1000,
                                    timestamp '2024-01-01' + g * interval '1.001 s', 'c' || g,
                                    'u' || g || '@x', CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' END
           FROM generate_series(1, 200) g;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v varchar(10) NOT NULL, t varchar(5), n numeric(10,2),
                               f numeric(8,1), big int, at timestamp(3), code text NOT NULL UNIQUE,
                               email varchar(20) UNIQUE, note text);",
    )
    .await;
    clean_copy(
        &db,
        "id, v, t, round(n, 2), f::numeric(8,1), big, at, code, email, note",
        "id, v, t, n, f, big, at, code, email, note",
    )
    .await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn narrower_types_that_hold_every_value_copy_exactly_on_mysql() {
    let db = TestDb::mysql("pf_clean").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v varchar(100), t text, n decimal(12,3),
                               f double, big bigint, at datetime(6), code varchar(40) NOT NULL UNIQUE,
                               email varchar(80), note varchar(20));
         INSERT INTO {s}.src SELECT seq, CONCAT('v', seq), CONCAT('τ', seq), seq / 4, seq / 2, seq * 1000,
                                    TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1001000 MICROSECOND,
                                    CONCAT('c', seq), CONCAT('u', seq, '@x'), IF(seq % 3 = 0, NULL, 'n')
           FROM seq_1_to_200;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, v varchar(10) NOT NULL, t varchar(5), n decimal(10,2),
                               f decimal(8,1), big int, at datetime(3), code varchar(40) NOT NULL UNIQUE,
                               email varchar(20) UNIQUE, note tinytext);",
    )
    .await;
    clean_copy(
        &db,
        "id, v, t, CAST(n AS DECIMAL(10,2)), CAST(f AS DECIMAL(8,1)), big, CAST(at AS DATETIME(3)), code, email, note",
        "id, v, t, n, f, big, at, code, email, note",
    )
    .await;
    db.cleanup().await;
}
