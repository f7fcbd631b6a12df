//! `copy --target mysql://...` writes each chunk with LOAD DATA LOCAL
//! INFILE, on the real PostgreSQL and MariaDB: values that look like LOAD
//! DATA's own syntax (tabs, newlines, backslashes, `\N`, the word NULL,
//! every byte) arrive exactly, from PostgreSQL and from another MariaDB
//! database; what LOAD DATA LOCAL would only warn about (a value too long,
//! a duplicate on a second unique key) fails the chunk with the strict
//! INSERT's own error (the chunk is replayed with INSERT) and what LOAD
//! DATA said, with nothing of it written; a decimal rounded to the target's
//! scale (a note, which INSERT accepts too) is not refused. The choice
//! between LOAD DATA and INSERT (local_infile off) is unit-tested in
//! `ops::transfer`: turning the global off here would disturb other tests.

mod common;
use common::*;

const LOAD_PATH: &str = "rowferry: copying with LOAD DATA LOCAL INFILE:";

fn copy_args(source: &TestDb, target: &TestDb, target_url: &str, extra: &[&str]) -> Vec<String> {
    let checkpoint = source.path("load.checkpoint").display().to_string();
    with(
        vec![
            "copy".into(),
            "--source".into(),
            source.url(),
            "--target".into(),
            target_url.into(),
            "--table".into(),
            source.q("src"),
            "--target-table".into(),
            target.q("dst"),
            "--checkpoint".into(),
            checkpoint,
        ],
        extra,
    )
}

/// The URL of `db`'s own database on its server: another database, so a
/// copy from the server's default one crosses servers.
fn database_url(db: &TestDb) -> String {
    let base = db.url();
    let at = base.rfind('/').expect("a database in the URL");
    format!("{}/{}", &base[..at], db.schema)
}

fn assert_load_path(out: &std::process::Output) {
    let err = stderr(out);
    assert_eq!(err.matches(LOAD_PATH).count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn values_that_look_like_load_data_syntax_arrive_exactly() {
    let pg = TestDb::new("ld_exact").await;
    let my = TestDb::mysql("ld_exact").await;
    let other = TestDb::mysql("ld_exact2").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, t text, v varchar(40), b bytea, \
           n numeric(12,4), f boolean, ts timestamptz, dp double precision);
         INSERT INTO {s}.src VALUES
           (1, E'tab\\there', E'new\\nline', '\\x00090a0d5c4e', 1.5, true, '2024-02-29 23:59:59.999999+00', 0.1),
           (2, E'back\\\\slash', E'cr\\rlf', '\\x', -0.0001, false, '1970-01-01 00:00:01+00', -2.5),
           (3, E'\\\\N', 'NULL', NULL, NULL, NULL, NULL, NULL),
           (4, '', '', '\\x5c', 0, NULL, NULL, 1.7976931348623157e308),
           (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (6, E'ends with a backslash \\\\', E'\\\\t not a tab', '\\x09', 99999999.9999, true, NULL, 3),
           (7, 'Grüße 注文 🚚', 'ÅÄÖ', '\\xf09f9a9a', 1, false, NULL, 0.1);
         INSERT INTO {s}.src SELECT g, E'row\\t' || g || E'\\n', 'v' || g, \
           decode((SELECT string_agg(lpad(to_hex((g + i) % 256), 2, '0'), '') \
                   FROM generate_series(0, 255) i), 'hex'), \
           g / 3.0, g % 2 = 0, timestamptz '2020-01-01 00:00:00.000001+00' + g * interval '1 second', g / 7.0 \
         FROM generate_series(10, 2500) g",
    )
    .await;
    my.exec(
        "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, t text, v varchar(40), b longblob, \
         n decimal(12,4), f tinyint(1), ts timestamp(6) NULL, dp double)",
    )
    .await;
    let out = run(&copy_args(
        &pg,
        &my,
        &my.url(),
        &["--chunk-rows", "700", "--chunk-time", "0"],
    ));
    expect_exit(&out, 0);
    assert_load_path(&out);
    assert!(
        stderr(&out).contains("neutral text forms"),
        "{}",
        stderr(&out)
    );
    let pg_rows = "SELECT string_agg(concat_ws('|', id, coalesce(t, '<null>'), coalesce(v, '<null>'), \
         coalesce(upper(encode(b, 'hex')), '<null>'), coalesce(n::text, '<null>'), \
         coalesce(f::int::text, '<null>'), \
         coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'), \
         coalesce(dp::text, '<null>')), '<row>' ORDER BY id) FROM {s}.src";
    let my_rows = "SELECT GROUP_CONCAT(CONCAT_WS('|', id, IFNULL(t, '<null>'), IFNULL(v, '<null>'), \
         IFNULL(HEX(b), '<null>'), IFNULL(n, '<null>'), IFNULL(f, '<null>'), \
         IFNULL(DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), '<null>'), \
         IFNULL(dp, '<null>')) ORDER BY id SEPARATOR '<row>') FROM {s}.dst";
    let want = pg.scalar(pg_rows).await;
    let got = my.scalar(my_rows).await;
    let (want, got): (Vec<&str>, Vec<&str>) =
        (want.split("<row>").collect(), got.split("<row>").collect());
    assert_eq!(want.len(), 2498);
    // The engines print doubles alike but for the exponent (e+308, e308).
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.replace("e+", "e"), w.replace("e+", "e"));
    }
    assert_eq!(got.len(), want.len());

    // MariaDB to another MariaDB database: its own text forms, hex for
    // bytes and BIT, text with a NUL, a latin1 column, ENUM, SET, YEAR
    // and TIME.
    my.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, t text, l varchar(20) CHARACTER SET latin1, \
           b varbinary(300), bits bit(10), e enum('a', 'b c'), st set('x', 'y'), y year, \
           tm time(6), j json);
         INSERT INTO {s}.src SELECT id, t, IF(id % 2 = 0, 'Grüße\\tÅ', NULL), b, id % 1024, \
           IF(id % 2 = 0, 'b c', NULL), IF(id % 3 = 0, 'x,y', ''), 1901 + id % 255, \
           SEC_TO_TIME(id * 3.000001 - 3000), JSON_OBJECT('k', t) FROM {s}.dst;
         INSERT INTO {s}.src (id, t) VALUES (100000, CONCAT('nul', CHAR(0), 'inside'))",
    )
    .await;
    other
        .exec(&format!(
            "CREATE TABLE {{s}}.dst LIKE {}.src",
            my.schema.as_str()
        ))
        .await;
    let out = run(&copy_args(
        &my,
        &other,
        &database_url(&other),
        &["--chunk-rows", "500", "--chunk-time", "0"],
    ));
    expect_exit(&out, 0);
    assert_load_path(&out);
    let cols = "id, t, HEX(t), l, HEX(b), bits + 0, e, st, y, tm, j";
    assert_eq!(
        other.checksum("dst", cols, "id").await,
        my.checksum("src", cols, "id").await
    );
    assert_eq!(other.count("dst").await, 2499);
    other.cleanup().await;
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_too_long_fails_the_chunk_with_nothing_of_it_written() {
    let pg = TestDb::new("ld_long").await;
    let my = TestDb::mysql("ld_long").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g, 'v' || g FROM generate_series(1, 300) g;
         UPDATE {s}.src SET v = 'much too long' WHERE id = 150",
    )
    .await;
    // A row of the failing chunk already in the target: the chunk's DELETE
    // must be rolled back with the rest.
    my.exec(
        "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v varchar(5));
         INSERT INTO {s}.dst VALUES (120, 'old')",
    )
    .await;
    let out = run(&copy_args(
        &pg,
        &my,
        &my.url(),
        &["--chunk-rows", "100", "--chunk-time", "0", "--workers", "1"],
    ));
    expect_exit(&out, 1);
    assert_load_path(&out);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        // The strict INSERT's own error, as the INSERT path gives it.
        &format!(
            "{}.dst refused a row of this chunk: Data too long for column 'v' at row 50 \
             (error 1406)",
            my.schema
        ),
        // What LOAD DATA said: MariaDB "Data truncated", MySQL "Data too long".
        "LOAD DATA LOCAL had loaded 100 of 100 rows with 1 warning(s), first: Data t",
        "for column 'v' at row 50 (warning 1265) (key id = 150)",
        "written again with INSERT",
        "nothing of it was written",
        "widen or change the target column's type",
        "chunk (100, 200]",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    // The first chunk committed; the second left nothing, not even its
    // DELETE; the third never ran.
    assert_eq!(my.count("dst").await, 101);
    assert_eq!(
        my.scalar("SELECT v FROM {s}.dst WHERE id = 120").await,
        "old"
    );
    assert_eq!(
        my.scalar("SELECT CAST(MAX(id) AS CHAR) FROM {s}.dst").await,
        "120"
    );

    // Widened, the same command resumes and finishes.
    my.exec("ALTER TABLE {s}.dst MODIFY v varchar(20)").await;
    let out = run(&copy_args(
        &pg,
        &my,
        &my.url(),
        &["--chunk-rows", "100", "--chunk-time", "0", "--workers", "1"],
    ));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(my.count("dst").await, 300);
    assert_eq!(
        my.scalar("SELECT v FROM {s}.dst WHERE id = 150").await,
        "much too long"
    );
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_on_a_second_unique_key_fails_instead_of_skipping_the_row() {
    let pg = TestDb::new("ld_dup").await;
    let my = TestDb::mysql("ld_dup").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, email text NOT NULL);
         INSERT INTO {s}.src SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 50) g",
    )
    .await;
    // A target row outside the source's keys holds row 7's email.
    my.exec(
        "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, email varchar(100) NOT NULL, \
           UNIQUE KEY uq_email (email));
         INSERT INTO {s}.dst VALUES (1000, 'user7@example.com')",
    )
    .await;
    let out = run(&copy_args(&pg, &my, &my.url(), &["--chunk-time", "0"]));
    expect_exit(&out, 1);
    assert_load_path(&out);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        &format!(
            "{}.dst refused a row of this chunk: Duplicate entry 'user7@example.com' for key \
             'uq_email' (error 1062)",
            my.schema
        ),
        "LOAD DATA LOCAL had loaded 49 of 50 rows with 1 warning(s), first: Duplicate entry \
         'user7@example.com' for key 'uq_email' (warning 1062)",
        "unique key named above already holds that value",
        "nothing of it was written",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    assert_eq!(my.count("dst").await, 1, "only the target's own row");
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decimal_rounded_to_the_targets_scale_is_taken_as_insert_takes_it() {
    let pg = TestDb::new("ld_round").await;
    let my = TestDb::mysql("ld_round").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, n numeric(12,4));
         INSERT INTO {s}.src VALUES (1, 1.125), (2, 2.3349), (3, -0.005), (4, NULL)",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, n decimal(10,2))")
        .await;
    // The narrower scale is refused by the pre-flight; a --map is the
    // operator's explicit choice to round.
    let out = run(&copy_args(&pg, &my, &my.url(), &[]));
    expect_exit(&out, 2);
    let out = run(&copy_args(&pg, &my, &my.url(), &["--map", "n=n"]));
    expect_exit(&out, 0);
    assert_load_path(&out);
    assert_eq!(
        my.scalar("SELECT GROUP_CONCAT(IFNULL(n, 'null') ORDER BY id) FROM {s}.dst")
            .await,
        "1.13,2.33,-0.01,null"
    );
    my.cleanup().await;
    pg.cleanup().await;
}
