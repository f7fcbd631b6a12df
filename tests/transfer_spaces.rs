//! `copy --target` never lets a server cut a value's trailing spaces: a
//! text value longer than its target `varchar(n)` whose excess is all
//! spaces is stored cut by PostgreSQL and MySQL/MariaDB alike (by the SQL
//! standard, at most a note), so rowferry checks it itself and fails the
//! chunk (exit 1), naming the table, the column, the row's key, the
//! value's length and the column's limit, with nothing of the chunk
//! written. `--map v=rtrim(v)` is the way through where the spaces do not
//! matter. Values at the limit, shorter ones with trailing spaces and
//! non-ASCII text at the limit go through byte for byte. On every write
//! path: PostgreSQL -> MariaDB (LOAD DATA or INSERT), MariaDB ->
//! PostgreSQL (COPY of rows), PostgreSQL -> PostgreSQL (which would
//! otherwise stream COPY to COPY, values never on the client). And
//! within one database (`INSERT ... SELECT` on the server), where each
//! chunk statement guards the length of such values itself.

mod common;
use common::*;

/// Rows 1-4 fit varchar(5) exactly (at the limit, shorter with trailing
/// spaces, five 2-byte characters); row 6 is 'abc' and seven spaces.
const ROWS: &str = "INSERT INTO {s}.src VALUES (1, 'ab   '), (2, 'abcde'), (3, 'ééééé'),
     (4, 'a  '), (5, NULL), (6, 'abc       ')";
const FITTING: &str = "1:5:[ab   ],2:5:[abcde],3:5:[ééééé],4:3:[a  ]";

const PG_ROWS: &str = "SELECT coalesce(string_agg(id || ':' || length(v) || ':[' || v || ']', ',' \
                       ORDER BY id), '') FROM {s}.dst";
const MY_ROWS: &str = "SELECT COALESCE(GROUP_CONCAT(CONCAT(id, ':', CHAR_LENGTH(v), ':[', v, ']') \
                       ORDER BY id SEPARATOR ','), '') FROM {s}.dst";

fn args(base: Vec<String>, source: &TestDb, checkpoint: &str, extra: &[&str]) -> Vec<String> {
    let checkpoint = source.path(checkpoint).display().to_string();
    let mut all = vec!["--checkpoint", checkpoint.as_str(), "--progress", "none"];
    all.extend_from_slice(extra);
    with(base, &all)
}

/// The failing run's message names everything and the way out.
fn refused_chunk(out: &std::process::Output, target_table: &str) -> String {
    expect_exit(out, 1);
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        target_table,
        "column v",
        "id = 6",
        "10 characters",
        "at most 5",
        "trailing spaces",
        "--map v=rtrim(v)",
        "nothing of this chunk was written",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    err
}

/// `source_type` text from `source` into a varchar(5) of `target` on the
/// other engine: the long value's chunk refused, `--map v=rtrim(v)` the
/// way through, and without the long value every value exact.
async fn across_engines(source: TestDb, target: TestDb, source_type: &str, into_mysql: bool) {
    source
        .exec(&format!(
            "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, v {source_type})"
        ))
        .await;
    source.exec(ROWS).await;
    target
        .exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))")
        .await;
    let base = || across("copy", &source, "src", &target, "dst", &[]);
    let rows = if into_mysql { MY_ROWS } else { PG_ROWS };

    let out = run(&args(base(), &source, "a.checkpoint", &[]));
    refused_chunk(&out, &target.q("dst"));
    assert_eq!(target.count("dst").await, 0, "nothing of the chunk");

    let out = run(&args(
        base(),
        &source,
        "b.checkpoint",
        &["--map", "v=rtrim(v)"],
    ));
    expect_exit(&out, 0);
    assert_eq!(
        target.scalar(rows).await,
        "1:2:[ab],2:5:[abcde],3:5:[ééééé],4:1:[a],6:3:[abc]"
    );

    // Without the long value, every value arrives as it is.
    target.exec("DELETE FROM {s}.dst").await;
    source.exec("DELETE FROM {s}.src WHERE id = 6").await;
    let out = run(&args(base(), &source, "c.checkpoint", &[]));
    expect_exit(&out, 0);
    assert_eq!(target.scalar(rows).await, FITTING);
    assert_eq!(
        target
            .scalar(if into_mysql {
                "SELECT HEX(v) FROM {s}.dst WHERE id = 1"
            } else {
                "SELECT encode(convert_to(v, 'UTF8'), 'hex') FROM {s}.dst WHERE id = 1"
            })
            .await,
        "6162202020"
    );
    source.cleanup().await;
    target.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_text_into_a_mariadb_varchar_never_loses_trailing_spaces() {
    across_engines(
        TestDb::new("ts_pm").await,
        TestDb::mysql("ts_pm").await,
        "text",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_longtext_into_a_postgres_varchar_never_loses_trailing_spaces() {
    across_engines(
        TestDb::mysql("ts_mp").await,
        TestDb::new("ts_mp").await,
        "longtext",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_text_into_a_varchar_of_another_database_never_loses_trailing_spaces() {
    let pg = TestDb::new("ts_pp").await;
    let other = OtherDatabase::new(&pg, "ts_pp_t").await;
    pg.exec("CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text, w varchar(5))")
        .await;
    pg.exec(ROWS).await;
    pg.exec("UPDATE {s}.src SET w = 'x  '").await;
    other
        .exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5), w varchar(5))")
        .await;
    let base = || {
        with(
            vec![
                "copy".into(),
                "--source".into(),
                pg.url(),
                "--target".into(),
                other.url(),
                "--table".into(),
                pg.q("src"),
                "--target-table".into(),
                other.q("dst"),
            ],
            &[],
        )
    };

    let out = run(&args(base(), &pg, "a.checkpoint", &[]));
    let err = refused_chunk(&out, &other.q("dst"));
    // The values must be seen: not the COPY to COPY stream.
    assert!(err.contains("rows read with SELECT"), "{err}");
    assert!(err.contains("v is text in the source"), "{err}");
    assert_eq!(
        other.scalar("SELECT count(*)::text FROM {s}.dst").await,
        "0",
        "nothing of the chunk"
    );

    let out = run(&args(base(), &pg, "b.checkpoint", &["--map", "v=rtrim(v)"]));
    expect_exit(&out, 0);
    assert_eq!(
        other.scalar(PG_ROWS).await,
        "1:2:[ab],2:5:[abcde],3:5:[ééééé],4:1:[a],6:3:[abc]"
    );

    other.exec("DELETE FROM {s}.dst").await;
    pg.exec("DELETE FROM {s}.src WHERE id = 6").await;
    let out = run(&args(base(), &pg, "c.checkpoint", &[]));
    expect_exit(&out, 0);
    assert_eq!(other.scalar(PG_ROWS).await, FITTING);
    assert_eq!(
        other
            .scalar("SELECT string_agg(DISTINCT w || '|', ',') FROM {s}.dst")
            .await,
        "x  |"
    );

    // varchar(5) into varchar(5) cannot carry a longer value: the stream.
    other
        .exec("CREATE TABLE {s}.dst2 (id bigint PRIMARY KEY, w varchar(5))")
        .await;
    let mut narrow = base();
    let at = narrow.len() - 1;
    narrow[at] = other.q("dst2");
    let out = run(&args(narrow, &pg, "d.checkpoint", &[]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("COPY (binary): each chunk streams"), "{err}");
    assert_eq!(
        other
            .scalar("SELECT count(*)::text FROM {s}.dst2 WHERE w = 'x  ' AND octet_length(w) = 3")
            .await,
        "5"
    );
    other.drop().await;
    pg.cleanup().await;
}

/// A copy within one database is `INSERT ... SELECT` on the server,
/// which would cut the excess trailing spaces of a value assigned to
/// varchar(n) as silently. Its pre-flight reads plain columns' values,
/// but not a `--map` expression's, nor rows written after it (an online
/// copy) or before a resume: each chunk statement guards the length of
/// such a column's values itself, and a longer one fails the chunk (exit
/// 1, rolled back), named like the copy to another server names it.
fn refused_in_one_database(out: &std::process::Output, target_table: &str, advice: &str) {
    expect_exit(out, 1);
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        target_table,
        "column v",
        "the row with key id = 6",
        "10 characters long",
        "at most 5",
        "its last 5 trailing spaces",
        advice,
        "nothing of this chunk was written",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    // The server's own wording is replaced, not shown.
    assert!(!err.contains("rowferry_too_long"), "{err}");
}

/// The rows of the target, as `PG_ROWS` / `MY_ROWS` print them.
async fn rows_of(db: &TestDb, mysql: bool) -> String {
    db.scalar(if mysql { MY_ROWS } else { PG_ROWS }).await
}

async fn a_mapped_value(db: TestDb, mysql: bool) {
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))",
    )
    .await;
    db.exec(ROWS).await;
    let out = run(&with(
        db.copy_args("src", "dst"),
        &["--progress", "none", "--map", "v=lower(v)"],
    ));
    refused_in_one_database(&out, &db.q("dst"), "--map v=rtrim(lower(v))");
    assert_eq!(db.count("dst").await, 0, "nothing of the chunk");

    // The way out the message names.
    let out = run(&with(
        db.copy_args("src", "dst"),
        &[
            "--progress",
            "none",
            "--restart",
            "--map",
            "v=rtrim(lower(v))",
        ],
    ));
    expect_exit(&out, 0);
    assert_eq!(
        rows_of(&db, mysql).await,
        "1:2:[ab],2:5:[abcde],3:5:[ééééé],4:1:[a],6:3:[abc]"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_database_never_loses_trailing_spaces_of_a_mapped_value() {
    a_mapped_value(TestDb::new("ts_same").await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_mariadb_database_never_loses_trailing_spaces_of_a_mapped_value() {
    a_mapped_value(TestDb::mysql("ts_same_my").await, true).await;
}

/// A copy from `src` to `dst` in chunks of two rows, one at a time, so
/// that a crash after the first chunk leaves the rest to a resume.
fn two_rows_a_chunk(db: &TestDb) -> Vec<String> {
    with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "2",
            "--chunk-time",
            "0",
            "--workers",
            "1",
            "--progress",
            "none",
        ],
    )
}

/// A plain column whose value grows after the pre-flight read it: rows
/// written before a resume (which does not repeat the pre-flight), as
/// an application writes during an online copy.
async fn a_value_grown_after_the_preflight(db: TestDb, mysql: bool) {
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))",
    )
    .await;
    db.exec(ROWS).await;
    db.exec("UPDATE {s}.src SET v = 'abc' WHERE id = 6").await;
    let base = two_rows_a_chunk(&db);
    // Every value fits when the pre-flight reads them.
    run_crashing_after(&base, 1);
    db.exec("UPDATE {s}.src SET v = 'abc       ' WHERE id = 6")
        .await;

    let out = run(&base);
    let err = stderr(&out);
    assert!(err.contains("not repeated on resume"), "{err}");
    refused_in_one_database(&out, &db.q("dst"), "--map v=rtrim(v)");
    assert!(err.contains("chunk (4, 6]"), "{err}");
    assert_eq!(
        rows_of(&db, mysql).await,
        "1:5:[ab   ],2:5:[abcde],3:5:[ééééé],4:3:[a  ]",
        "the chunks before, and nothing of the failed one"
    );

    // Widened, the same command resumes and copies the value exactly.
    db.exec(if mysql {
        "ALTER TABLE {s}.dst MODIFY v varchar(10)"
    } else {
        "ALTER TABLE {s}.dst ALTER COLUMN v TYPE varchar(10)"
    })
    .await;
    let out = run(&base);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        rows_of(&db, mysql).await,
        format!("{FITTING},6:10:[abc       ]")
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_database_never_loses_trailing_spaces_written_after_the_preflight() {
    a_value_grown_after_the_preflight(TestDb::new("ts_grown").await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_mariadb_database_never_loses_trailing_spaces_written_after_the_preflight()
 {
    a_value_grown_after_the_preflight(TestDb::mysql("ts_grown_my").await, true).await;
}

/// Values that fit go through byte for byte, guarded or not: at the
/// limit, shorter with trailing spaces, five 2-byte characters, NULL;
/// from a plain column and from a `--map` expression.
async fn values_that_fit(db: TestDb, mysql: bool) {
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))",
    )
    .await;
    db.exec(ROWS).await;
    db.exec("DELETE FROM {s}.src WHERE id = 6").await;
    let plain = db.copy_args("src", "dst");
    let out = run(&with(plain, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert_eq!(rows_of(&db, mysql).await, FITTING);

    db.exec("DELETE FROM {s}.dst").await;
    let mapped = with(
        db.copy_args("src", "dst"),
        &[
            "--progress",
            "none",
            "--restart",
            "--map",
            if mysql {
                "v=CONCAT(v, '')"
            } else {
                "v=v || ''"
            },
        ],
    );
    let out = run(&mapped);
    expect_exit(&out, 0);
    assert_eq!(rows_of(&db, mysql).await, FITTING);
    assert_eq!(
        db.scalar(if mysql {
            "SELECT CONCAT(HEX(v), '/', COALESCE((SELECT v FROM {s}.dst WHERE id = 5), 'null')) \
             FROM {s}.dst WHERE id = 1"
        } else {
            "SELECT encode(convert_to(v, 'UTF8'), 'hex') || '/' || \
             COALESCE((SELECT v FROM {s}.dst WHERE id = 5), 'null') FROM {s}.dst WHERE id = 1"
        })
        .await,
        "6162202020/null"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_database_keeps_values_that_fit_exactly() {
    values_that_fit(TestDb::new("ts_fits").await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_mariadb_database_keeps_values_that_fit_exactly() {
    values_that_fit(TestDb::mysql("ts_fits_my").await, true).await;
}

/// A guarded `--map` expression is evaluated once per row: a sequence
/// advances once per row copied, and the value checked is the value
/// stored.
async fn a_volatile_map_runs_once_per_row(db: TestDb, mysql: bool) {
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(8));
         CREATE SEQUENCE {s}.seq",
    )
    .await;
    db.exec(ROWS).await;
    let next = if mysql {
        format!("v=CONCAT('ORD-', NEXTVAL({}))", db.q("seq"))
    } else {
        format!("v='ORD-' || nextval('{}')", db.q("seq"))
    };
    let out = run(&with(
        db.copy_args("src", "dst"),
        &["--progress", "none", "--chunk-rows", "2", "--map", &next],
    ));
    expect_exit(&out, 0);
    assert_eq!(
        rows_of(&db, mysql).await,
        "1:5:[ORD-1],2:5:[ORD-2],3:5:[ORD-3],4:5:[ORD-4],5:5:[ORD-5],6:5:[ORD-6]"
    );
    assert_eq!(
        db.scalar(if mysql {
            "SELECT CAST(NEXTVAL({s}.seq) AS CHAR)"
        } else {
            "SELECT nextval('{s}.seq')::text"
        })
        .await,
        "7",
        "one value of the sequence per row"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_database_evaluates_a_guarded_map_once_per_row() {
    a_volatile_map_runs_once_per_row(TestDb::new("ts_once").await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_mariadb_database_evaluates_a_guarded_map_once_per_row() {
    a_volatile_map_runs_once_per_row(TestDb::mysql("ts_once_my").await, true).await;
}

/// MySQL: a `--map` giving a binary string is counted in characters, as
/// the varchar(n) it goes into counts them, not in bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_binary_string_map_is_counted_in_characters_on_mariadb() {
    let db = TestDb::mysql("ts_binary_my").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))",
    )
    .await;
    db.exec(ROWS).await;
    db.exec("DELETE FROM {s}.src WHERE id = 6").await;
    let out = run(&with(
        db.copy_args("src", "dst"),
        &["--progress", "none", "--map", "v=CAST(v AS BINARY)"],
    ));
    expect_exit(&out, 0);
    assert_eq!(rows_of(&db, true).await, FITTING);
    db.cleanup().await;
}

/// MariaDB stores a TEXT column's value copied into a shorter TEXT
/// column with its length cut modulo 256 (300 characters into tinytext:
/// 44), without a warning. A value grown after the pre-flight (here,
/// before a resume) fails its chunk instead, named in bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_longer_text_into_a_mariadb_tinytext_fails_its_chunk_never_wraps() {
    let db = TestDb::mysql("ts_tiny_my").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v longtext);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v tinytext);
         INSERT INTO {s}.src VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
    )
    .await;
    let base = two_rows_a_chunk(&db);
    run_crashing_after(&base, 1);
    db.exec("UPDATE {s}.src SET v = REPEAT('x', 300) WHERE id = 4")
        .await;
    let out = run(&base);
    expect_exit(&out, 1);
    let err = stderr(&out);
    for needle in [
        "column v (tinytext) holds at most 255 bytes",
        "id = 4 is 300 characters long",
        "nothing of this chunk was written",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    assert_eq!(
        db.scalar("SELECT GROUP_CONCAT(CONCAT(id, ':', LENGTH(v)) ORDER BY id) FROM {s}.dst")
            .await,
        "1:1,2:1",
        "the first chunk, nothing of the failed one"
    );
    db.exec("ALTER TABLE {s}.dst MODIFY v text").await;
    let out = run(&base);
    expect_exit(&out, 0);
    assert_eq!(
        db.scalar("SELECT GROUP_CONCAT(CONCAT(id, ':', LENGTH(v)) ORDER BY id) FROM {s}.dst")
            .await,
        "1:1,2:1,3:1,4:300"
    );
    db.cleanup().await;
}

/// MySQL assigns a binary string to a varchar as its bytes read as text,
/// trailing spaces and all: a varbinary value grown too long by its
/// spaces after the pre-flight (here, before a resume) fails its chunk
/// like a text one.
#[tokio::test(flavor = "multi_thread")]
async fn a_varbinary_value_into_a_mariadb_varchar_never_loses_trailing_spaces() {
    let db = TestDb::mysql("ts_varbinary_my").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v varbinary(20));
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))",
    )
    .await;
    db.exec(ROWS).await;
    db.exec("UPDATE {s}.src SET v = 'abcde' WHERE id IN (3, 6)")
        .await;
    let base = two_rows_a_chunk(&db);
    run_crashing_after(&base, 1);
    db.exec("UPDATE {s}.src SET v = 'abc       ' WHERE id = 6")
        .await;
    let out = run(&base);
    refused_in_one_database(&out, &db.q("dst"), "--map v=rtrim(v)");
    assert_eq!(
        rows_of(&db, true).await,
        "1:5:[ab   ],2:5:[abcde],3:5:[abcde],4:3:[a  ]",
        "the chunks before, and nothing of the failed one"
    );
    db.cleanup().await;
}

/// A PostgreSQL domain over varchar(n) (here through another domain)
/// holds what its base type holds: its values are checked like the
/// varchar's, by the pre-flight and by each chunk.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_domain_over_a_varchar_is_checked_like_the_varchar() {
    let db = TestDb::new("ts_domain").await;
    db.exec(
        "CREATE DOMAIN {s}.short AS varchar(5);
         CREATE DOMAIN {s}.shorter AS {s}.short CHECK (VALUE <> 'x');
         CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v {s}.shorter)",
    )
    .await;
    db.exec(ROWS).await;
    // The pre-flight reads the source for values longer than 5.
    let out = run(&with(db.copy_args("src", "dst"), &["--progress", "none"]));
    expect_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("values longer than 5 characters"), "{err}");
    assert_eq!(rows_of(&db, false).await, "");
    // A --map value is checked by each chunk.
    let out = run(&with(
        db.copy_args("src", "dst"),
        &["--progress", "none", "--restart", "--map", "v=lower(v)"],
    ));
    expect_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("holds at most 5 characters"), "{err}");
    assert!(err.contains("id = 6 is 10 characters long"), "{err}");
    assert!(!rows_of(&db, false).await.contains("6:"));
    // Values that fit go through exactly.
    db.exec("DELETE FROM {s}.src WHERE id = 6").await;
    let out = run(&with(
        db.copy_args("src", "dst"),
        &["--progress", "none", "--restart"],
    ));
    expect_exit(&out, 0);
    assert_eq!(rows_of(&db, false).await, FITTING);
    db.cleanup().await;
}

/// A window function in a checked `--map` would be computed over one row
/// where the value is evaluated once: PostgreSQL refuses it, the copy
/// fails before writing (never a row numbered 1 throughout).
#[tokio::test(flavor = "multi_thread")]
async fn a_window_function_in_a_checked_map_is_refused_not_miscomputed() {
    let db = TestDb::new("ts_window").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5))",
    )
    .await;
    db.exec(ROWS).await;
    let out = run(&with(
        db.copy_args("src", "dst"),
        &[
            "--progress",
            "none",
            "--map",
            "v=(row_number() OVER (ORDER BY id))::text",
        ],
    ));
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("window functions are not allowed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rows_of(&db, false).await, "");
    db.cleanup().await;
}

/// The check counts a binary value's characters in the column's own
/// character set, as the column reads its bytes: bytes that are no
/// UTF-8 go into a latin1 column as they would without rowferry.
#[tokio::test(flavor = "multi_thread")]
async fn a_binary_value_into_a_latin1_varchar_is_counted_in_latin1() {
    let db = TestDb::mysql("ts_latin1_my").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v varbinary(20));
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5) CHARACTER SET latin1);
         INSERT INTO {s}.src VALUES (1, X'E9E9'), (2, 'abc  '), (3, NULL)",
    )
    .await;
    let out = run(&with(db.copy_args("src", "dst"), &["--progress", "none"]));
    expect_exit(&out, 0);
    assert_eq!(
        db.scalar(
            "SELECT GROUP_CONCAT(CONCAT(id, ':', COALESCE(HEX(v), 'null')) ORDER BY id) \
             FROM {s}.dst"
        )
        .await,
        "1:E9E9,2:6162632020,3:null"
    );
    db.cleanup().await;
}

/// MariaDB stores a BLOB column's value copied into a shorter BLOB column
/// with its length cut modulo 256 (300 bytes into tinyblob: 44), without
/// a warning. The pre-flight refuses such values (exit 2), a value grown
/// after it fails its chunk, and bytes that are no text go through.
#[tokio::test(flavor = "multi_thread")]
async fn a_longer_blob_into_a_mariadb_tinyblob_is_refused_never_wraps() {
    let db = TestDb::mysql("ts_tinyblob_my").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v blob);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v tinyblob);
         INSERT INTO {s}.src VALUES (1, X'E9FF00'), (2, 'b'), (3, REPEAT('x', 300)), (4, 'd')",
    )
    .await;
    let base = two_rows_a_chunk(&db);
    let out = run(&base);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("values longer than 255"),
        "{}",
        stderr(&out)
    );
    db.exec("UPDATE {s}.src SET v = 'c' WHERE id = 3").await;
    run_crashing_after(&base, 1);
    db.exec("UPDATE {s}.src SET v = REPEAT('x', 300) WHERE id = 4")
        .await;
    let out = run(&base);
    expect_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("holds at most 255 bytes"), "{err}");
    assert!(err.contains("id = 4 is 300 characters long"), "{err}");
    assert_eq!(
        db.scalar("SELECT GROUP_CONCAT(CONCAT(id, ':', HEX(v)) ORDER BY id) FROM {s}.dst")
            .await,
        "1:E9FF00,2:62",
        "the first chunk exactly, nothing of the failed one"
    );
    db.cleanup().await;
}
