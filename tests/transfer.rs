//! `copy --target URL` into another database, server or engine, on the
//! real PostgreSQL and MariaDB: PostgreSQL to another database, MariaDB to
//! PostgreSQL and back, every supported kind of value compared row for row
//! (NULLs, extreme numbers, microsecond instants, non-ASCII text, empty
//! strings, bytes); a crash mid-copy and a rerun give an exact copy; a
//! column with no faithful counterpart is refused (exit 2) by name.
//! PostgreSQL to PostgreSQL goes by COPY: binary where the types are alike
//! (or converted on the source), text for types that are not built in,
//! rows read with SELECT where the target's key range may hold other keys;
//! each exact, through crashes, kill -9 and a lock that makes chunks retry.

mod common;
use common::*;

/// A PostgreSQL database of the test's own (cross-database copies need a
/// second one), dropped at the end.
struct PgDatabase {
    name: String,
}

impl PgDatabase {
    async fn new(tag: &str) -> PgDatabase {
        let name = format!("rf_x_{tag}_{}", std::process::id());
        let admin = connect().await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the target database");
        }
        PgDatabase { name }
    }

    fn url(&self) -> String {
        let base = pg_url();
        let at = base.rfind('/').expect("a database in ROWFERRY_TEST_PG");
        format!("{}/{}", &base[..at], self.name)
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the target database");
        tokio::spawn(conn);
        client
    }

    async fn drop(self) {
        connect()
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop the target database");
    }
}

const PG_COLUMNS: &str = "id bigint PRIMARY KEY, n numeric(30,10), t text, v varchar(20), \
    b bytea, f boolean, ts timestamptz, tn timestamp, d date, j jsonb, u uuid, dp double precision";
const MY_COLUMNS: &str = "id bigint PRIMARY KEY, n decimal(30,10), t text, v varchar(20), \
    b longblob, f tinyint(1), ts timestamp(6) NULL, tn datetime(6), d date, j json, u char(36), dp double";

/// Rows with every kind of value, including the edges.
const PG_ROWS: &str = "INSERT INTO {s}.src SELECT g, g / 7.0, \
      CASE WHEN g % 5 = 0 THEN NULL WHEN g % 7 = 0 THEN '' ELSE 'Grüße 注文 🚚 ' || g END, \
      'v' || g, decode(md5(g::text) || '00ff', 'hex'), g % 2 = 0, \
      timestamptz '2020-01-01 00:00:00.123456+00' + g * interval '1.000001 second', \
      timestamp '1999-12-31 23:59:59.999999' + g * interval '1 minute', date '2020-02-29' + g, \
      jsonb_build_object('a', g, 'b', 'ü'), md5(g::text)::uuid, g / 3.0 \
    FROM generate_series(1, 3000) g; \
    INSERT INTO {s}.src VALUES \
      (-9223372036854775808, -99999999999999999999.9999999999, 'min', '', '\\x', false, \
       '1970-01-01 00:00:01+00', '1000-01-01 00:00:00', '1000-01-01', '{}', \
       '00000000-0000-0000-0000-000000000000', -1.7976931348623157e308), \
      (9223372036854775807, 99999999999999999999.9999999999, NULL, NULL, NULL, NULL, NULL, \
       NULL, NULL, NULL, NULL, NULL)";

/// One canonical text line per row, in key order, on PostgreSQL.
fn pg_canonical(table: &str) -> String {
    format!(
        "SELECT concat_ws('|', id, n, coalesce(t, '<null>'), coalesce(v, '<null>'), \
           coalesce(upper(encode(b, 'hex')), '<null>'), coalesce(f::int::text, '<null>'), \
           coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'), \
           coalesce(to_char(tn, 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'), coalesce(d::text, '<null>'), \
           coalesce(j::text, '<null>'), coalesce(u::text, '<null>'), coalesce(dp::text, '<null>')) \
         FROM {{s}}.{table} ORDER BY id"
    )
}

/// The same on MariaDB.
fn my_canonical(table: &str) -> String {
    format!(
        "SELECT CONCAT_WS('|', id, n, IFNULL(t, '<null>'), IFNULL(v, '<null>'), \
           IFNULL(HEX(b), '<null>'), IFNULL(f, '<null>'), \
           IFNULL(DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), '<null>'), \
           IFNULL(DATE_FORMAT(tn, '%Y-%m-%d %H:%i:%s.%f'), '<null>'), IFNULL(d, '<null>'), \
           IFNULL(j, '<null>'), IFNULL(u, '<null>'), IFNULL(dp, '<null>')) \
         FROM {{s}}.{table} ORDER BY id"
    )
}

/// Equal row lists, or the first row that differs (lists are long). The
/// engines print a double's exponent differently (`e+308`, `e308`).
fn assert_rows(got: &[String], want: &[String], what: &str) {
    let same = |a: &String, b: &String| a.replace("e+", "e") == b.replace("e+", "e");
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| !same(g, w)) {
        panic!("{what}: first differing row:\n got: {g}\nwant: {w}");
    }
    assert_eq!(got.len(), want.len(), "{what}: row counts");
}

async fn pg_lines(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .expect("canonical rows")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

async fn my_lines(db: &TestDb, sql: &str) -> Vec<String> {
    let mut conn = connect_mysql().await;
    use mysql_async::prelude::Queryable;
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .expect("utc");
    conn.query::<String, _>(sql.replace("{s}", &db.schema))
        .await
        .expect("canonical rows")
}

fn cross_copy(
    source: &str,
    target: &str,
    table: &str,
    target_table: &str,
    dir: &TestDb,
) -> Vec<String> {
    vec![
        "copy".into(),
        "--source".into(),
        source.into(),
        "--target".into(),
        target.into(),
        "--table".into(),
        table.into(),
        "--target-table".into(),
        target_table.into(),
        "--checkpoint".into(),
        dir.path("cross.checkpoint").display().to_string(),
        "--chunk-rows".into(),
        "400".into(),
        "--chunk-time".into(),
        "0".into(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_into_another_database_is_exact() {
    let db = TestDb::new("x_pg").await;
    db.exec(&format!("CREATE TABLE {{s}}.src ({PG_COLUMNS})"))
        .await;
    db.exec(PG_ROWS).await;
    let other = PgDatabase::new("pgpg").await;
    let target = other.client().await;
    target
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.dst ({PG_COLUMNS})",
            s = db.schema
        ))
        .await
        .expect("target table");
    let out = run(&cross_copy(
        &db.url(),
        &other.url(),
        &db.q("src"),
        &db.q("dst"),
        &db,
    ));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("copying across servers"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stderr(&out)
            .matches("rowferry: copying with COPY (binary)")
            .count(),
        1,
        "{}",
        stderr(&out)
    );
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &db.schema),
    )
    .await;
    let got = pg_lines(&target, &pg_canonical("dst").replace("{s}", &db.schema)).await;
    assert_eq!(want.len(), 3002);
    assert_rows(&got, &want, "PostgreSQL -> PostgreSQL");

    // Again over the full target: each chunk's key range is replaced, so
    // a changed, a deleted and an extra target row are put right.
    target
        .batch_execute(&format!(
            "UPDATE {s}.dst SET t = 'changed' WHERE id = 7; DELETE FROM {s}.dst WHERE id = 8; \
             INSERT INTO {s}.dst (id) VALUES (3001)",
            s = db.schema
        ))
        .await
        .expect("disturb the target");
    connect()
        .await
        .batch_execute(&format!("DELETE FROM {}.src WHERE id = 3000", db.schema))
        .await
        .expect("delete a source row");
    let again = with(
        cross_copy(&db.url(), &other.url(), &db.q("src"), &db.q("dst"), &db),
        &["--restart"],
    );
    expect_exit(&run(&again), 0);
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &db.schema),
    )
    .await;
    let got = pg_lines(&target, &pg_canonical("dst").replace("{s}", &db.schema)).await;
    assert_eq!(want.len(), 3001);
    assert_rows(&got, &want, "PostgreSQL -> PostgreSQL, copied again");
    drop(target);
    other.drop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_mariadb_and_back_is_exact_row_for_row() {
    let pg = TestDb::new("x_pgmy").await;
    let my = TestDb::mysql("x_pgmy").await;
    pg.exec(&format!(
        "CREATE TABLE {{s}}.src ({PG_COLUMNS}); CREATE TABLE {{s}}.back ({PG_COLUMNS})"
    ))
    .await;
    pg.exec(PG_ROWS).await;
    my.exec(&format!("CREATE TABLE {{s}}.dst ({MY_COLUMNS})"))
        .await;

    let out = run(&cross_copy(
        &pg.url(),
        &my.url(),
        &pg.q("src"),
        &my.q("dst"),
        &pg,
    ));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("across servers and engines"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("rowferry: copying with LOAD DATA LOCAL INFILE:"),
        "PostgreSQL -> MariaDB writes with LOAD DATA: {}",
        stderr(&out)
    );
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &pg.schema),
    )
    .await;
    let there = my_lines(&my, &my_canonical("dst")).await;
    assert_eq!(want.len(), 3002);
    assert_rows(&there, &want, "PostgreSQL -> MariaDB");

    let back = with(
        cross_copy(&my.url(), &pg.url(), &my.q("dst"), &pg.q("back"), &my),
        &[],
    );
    let out = run(&back);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("copying with COPY (text) of rows read with SELECT: values cross"),
        "MariaDB -> PostgreSQL writes with COPY: {}",
        stderr(&out)
    );
    let again = pg_lines(
        &connect().await,
        &pg_canonical("back").replace("{s}", &pg.schema),
    )
    .await;
    assert_rows(&again, &want, "MariaDB -> PostgreSQL");
    assert!(
        stderr(&out).contains("one DELETE of its key range"),
        "integer keys clear a chunk by its range: {}",
        stderr(&out)
    );

    // Copied again over a disturbed target: a row the source never had
    // (inside the key range) and a changed row are put right.
    pg.exec(
        "INSERT INTO {s}.back (id, t) VALUES (3005, 'not in the source'); \
         UPDATE {s}.back SET t = 'changed' WHERE id = 7",
    )
    .await;
    expect_exit(&run(&with(back, &["--restart"])), 0);
    let again = pg_lines(
        &connect().await,
        &pg_canonical("back").replace("{s}", &pg.schema),
    )
    .await;
    assert_rows(&again, &want, "MariaDB -> PostgreSQL, copied again");
    my.cleanup().await;
    pg.cleanup().await;
}

/// A crash right after a chunk committed on the target (before the
/// checkpoint knew), and a real kill -9: each rerun is exact.
#[tokio::test(flavor = "multi_thread")]
async fn crashes_mid_copy_then_reruns_are_exact() {
    let pg = TestDb::new("x_crash").await;
    let my = TestDb::mysql("x_crash").await;
    pg.exec(&format!("CREATE TABLE {{s}}.src ({PG_COLUMNS})"))
        .await;
    pg.exec(PG_ROWS).await;
    my.exec(&format!("CREATE TABLE {{s}}.dst ({MY_COLUMNS})"))
        .await;
    let args = cross_copy(&pg.url(), &my.url(), &pg.q("src"), &my.q("dst"), &pg);

    let out = run_crashing_after(&args, 3);
    assert_ne!(out.status.code(), Some(0), "the crash hook did not fire");
    assert!(
        my.count("dst").await > 0,
        "nothing was copied before the crash"
    );

    // A real kill -9 while chunks run (slowed down to be sure it is mid-way).
    let mut slow = Running::start(&with(args.clone(), &["--max-rows-per-sec", "2000"]));
    slow.wait_for_progress(|p| p["rows_done"].as_u64().is_some_and(|n| n > 1200));
    slow.signal(libc::SIGKILL);
    let _ = slow.finish();

    let out = run(&args);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("rowferry: copying with LOAD DATA LOCAL INFILE:"),
        "{}",
        stderr(&out)
    );
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &pg.schema),
    )
    .await;
    assert_rows(
        &my_lines(&my, &my_canonical("dst")).await,
        &want,
        "after the crashes",
    );
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_type_without_a_faithful_counterpart_is_refused_by_name() {
    let pg = TestDb::new("x_refuse").await;
    let my = TestDb::mysql("x_refuse").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, span interval, tags text[]);
         INSERT INTO {s}.src VALUES (1, '1 day', '{a}')",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id int PRIMARY KEY, span varchar(40), tags int)")
        .await;
    let out = run(&cross_copy(
        &pg.url(),
        &my.url(),
        &pg.q("src"),
        &my.q("dst"),
        &pg,
    ));
    expect_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("column span cannot cross engines exactly"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(my.count("dst").await, 0);
    // Mapped on the source into a form that converts exactly, it goes.
    let mapped = with(
        cross_copy(&pg.url(), &my.url(), &pg.q("src"), &my.q("dst"), &pg),
        &[
            "--map",
            "span=span::text",
            "--map",
            "tags=cardinality(tags)",
        ],
    );
    expect_exit(&run(&mapped), 0);
    assert_eq!(
        my.scalar("SELECT CONCAT(span, '/', tags) FROM {s}.dst")
            .await,
        "P1D/1",
        "rowferry's sessions print intervals in ISO 8601"
    );
    my.cleanup().await;
    pg.cleanup().await;
}

/// Source rows for the PostgreSQL -> PostgreSQL conversion tests: NULLs,
/// quotes, backslashes, tabs and newlines, non-ASCII text.
const CONV_ROWS: &str = "INSERT INTO {s}.src SELECT g, g * 1000 - 7, \
      CASE WHEN g % 5 = 0 THEN NULL WHEN g % 7 = 0 THEN E'q''\\\\t\\t\\n\\r' || g ELSE 'Grüße ' || g END, \
      g / 7.0, timestamp '1999-12-31 23:59:59.999999' + g * interval '1.000001 minute', \
      CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END, \
      CASE WHEN g % 4 = 0 THEN NULL ELSE 'k' || lpad(g::text, 5, '0') END, \
      CASE WHEN g % 6 = 0 THEN NULL ELSE (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::{s}.mood END \
    FROM generate_series(1, 2500) g";

/// Another database to copy into, with the same schema name as `db`'s.
async fn other_database(db: &TestDb, tag: &str, ddl: &str) -> (PgDatabase, tokio_postgres::Client) {
    let other = PgDatabase::new(tag).await;
    let target = other.client().await;
    target
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; {}",
            ddl.replace("{s}", &db.schema),
            s = db.schema
        ))
        .await
        .expect("target tables");
    (other, target)
}

/// A source table of every kind of value, filled, and an empty `dst` of
/// the same columns in a database of the test's own.
async fn pg_source_and_target(tag: &str) -> (TestDb, PgDatabase, tokio_postgres::Client) {
    let db = TestDb::new(&format!("x_{tag}")).await;
    db.exec(&format!("CREATE TABLE {{s}}.src ({PG_COLUMNS})"))
        .await;
    db.exec(PG_ROWS).await;
    let (other, target) =
        other_database(&db, tag, &format!("CREATE TABLE {{s}}.dst ({PG_COLUMNS})")).await;
    (db, other, target)
}

/// `args` with `flag`'s value replaced.
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"))
        + 1;
    args[at] = value.into();
}

/// Into other types and a --map expression: converted on the source and
/// sent in binary, as exact as INSERT's casts. A key of another type (the
/// target's key range may hold other keys) goes by rows read with SELECT,
/// deleted by key and written by COPY in text; an enum (not built in) by
/// COPY in text.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_into_other_types_and_a_map_is_exact_on_every_copy_path() {
    let db = TestDb::new("x_conv").await;
    db.exec(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE {s}.src (id integer PRIMARY KEY, i integer, v varchar(20),
           n numeric(10,2), ts timestamp, f boolean, code text, m {s}.mood)",
    )
    .await;
    db.exec(CONV_ROWS).await;
    let (other, target) = other_database(
        &db,
        "conv",
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE {s}.dst_types (id integer PRIMARY KEY, i bigint, v text, n numeric(12,3),
           ts timestamptz, f text, label text NOT NULL);
         CREATE TABLE {s}.dst_key (id bigint PRIMARY KEY, i bigint, v text, n numeric(12,3),
           ts timestamptz, f text, label text NOT NULL);
         CREATE TABLE {s}.dst_enum (id integer PRIMARY KEY, v varchar(20), m {s}.mood);
         CREATE TABLE {s}.dst_typmods (id integer PRIMARY KEY, v varchar(40), n numeric(12,1),
           ts timestamp(3));
         CREATE TABLE {s}.dst_narrow (id integer PRIMARY KEY, v varchar(5))",
    )
    .await;
    let label = "label=coalesce(code, '-') || '/' || (i * 2)::text";
    // What each target row must be, computed on the source as INSERT's
    // casts would convert it.
    let want_sql = "SELECT concat_ws('|', id, coalesce(i::bigint::text, '<null>'), \
           coalesce(v::text, '<null>'), coalesce(n::text::numeric(12,3)::text, '<null>'), \
           coalesce(to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'), \
           coalesce(f::text, '<null>'), coalesce(code, '-') || '/' || (i * 2)::text) \
         FROM {s}.src ORDER BY id";
    let got_sql = |table: &str| {
        format!(
            "SELECT concat_ws('|', id, coalesce(i::text, '<null>'), coalesce(v, '<null>'), \
               coalesce(n::text, '<null>'), \
               coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '<null>'), \
               coalesce(f, '<null>'), label) FROM {{s}}.{table} ORDER BY id"
        )
    };
    let want = pg_lines(&connect().await, &want_sql.replace("{s}", &db.schema)).await;
    assert_eq!(want.len(), 2500);

    let into = |table: &str, extra: &[&str]| {
        let mut args = cross_copy(&db.url(), &other.url(), &db.q("src"), &db.q(table), &db);
        let at = args
            .iter()
            .position(|a| a == "--checkpoint")
            .expect("--checkpoint")
            + 1;
        args[at] = db
            .path(&format!("{table}.checkpoint"))
            .display()
            .to_string();
        with(args, extra)
    };
    let out = run(&into("dst_types", &["--map", label]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("copying with COPY (binary)"), "{err}");
    assert!(
        err.contains("converted to the target's type on the source: i, v, n, ts, f, label"),
        "{err}"
    );
    let got = pg_lines(&target, &got_sql("dst_types").replace("{s}", &db.schema)).await;
    assert_rows(&got, &want, "into other types, binary");

    let out = run(&into("dst_key", &["--map", label]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("copying with COPY (text) of rows read with SELECT: key column id is integer in the source and bigint in the target"),
        "{err}"
    );
    let got = pg_lines(&target, &got_sql("dst_key").replace("{s}", &db.schema)).await;
    assert_rows(&got, &want, "into another key type, rows read with SELECT");

    // --where: only the chunk's own keys are deleted in the target.
    target
        .batch_execute(&format!(
            "TRUNCATE {s}.dst_key; INSERT INTO {s}.dst_key VALUES (3, 0, 'kept', 0, now(), 'x', 'x')",
            s = db.schema
        ))
        .await
        .expect("reset dst_key");
    let out = run(&into(
        "dst_key",
        &["--map", label, "--where", "id % 3 <> 0", "--restart"],
    ));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("with --where a chunk's key range"),
        "{}",
        stderr(&out)
    );
    let got = pg_lines(&target, &got_sql("dst_key").replace("{s}", &db.schema)).await;
    let kept: Vec<String> = want
        .iter()
        .filter(|l| {
            l.split('|')
                .next()
                .and_then(|id| id.parse::<i64>().ok())
                .is_some_and(|id| id % 3 != 0)
        })
        .cloned()
        .collect();
    let (own, copied): (Vec<String>, Vec<String>) =
        got.into_iter().partition(|l| l.starts_with("3|"));
    assert_eq!(own.len(), 1, "the target's own row 3 stays");
    assert!(own[0].starts_with("3|0|kept|"), "{}", own[0]);
    assert_rows(&copied, &kept, "with --where");

    let out = run(&into("dst_enum", &[]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("copying with COPY (text): each chunk streams")
            && err.contains("not binary: target column m is of type"),
        "{err}"
    );
    let enum_sql = "SELECT concat_ws('|', id, coalesce(v, '<null>'), coalesce(m::text, '<null>')) \
                    FROM {s}.{t} ORDER BY id";
    let want_enum = pg_lines(
        &connect().await,
        &enum_sql.replace("{s}", &db.schema).replace("{t}", "src"),
    )
    .await;
    let got_enum = pg_lines(
        &target,
        &enum_sql
            .replace("{s}", &db.schema)
            .replace("{t}", "dst_enum"),
    )
    .await;
    assert_eq!(want_enum.len(), 2500);
    assert_rows(&got_enum, &want_enum, "an enum, COPY in text");

    // Other modifiers: rounded as an INSERT's assignment rounds them.
    // Narrower modifiers are refused before anything is written; a --map
    // is the operator's explicit conversion (rounded as by INSERT).
    let out = run(&into("dst_typmods", &[]));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("2 columns of") && stderr(&out).contains("column ts: source"),
        "{}",
        stderr(&out)
    );
    let out = run(&into("dst_typmods", &["--map", "n=n", "--map", "ts=ts"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("copying with COPY (binary)"),
        "{}",
        stderr(&out)
    );
    let typmods = |expr: &str, table: &str| {
        format!(
            "SELECT concat_ws('|', id, coalesce(v, '<null>'), coalesce({expr}, '<null>')) \
             FROM {}.{table} ORDER BY id",
            db.schema
        )
    };
    let want_typmods = pg_lines(
        &connect().await,
        &typmods(
            "n::numeric(12,1)::text || '/' || to_char(ts::timestamp(3), 'YYYY-MM-DD HH24:MI:SS.US')",
            "src",
        ),
    )
    .await;
    let got_typmods = pg_lines(
        &target,
        &typmods(
            "n::text || '/' || to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US')",
            "dst_typmods",
        ),
    )
    .await;
    assert_rows(
        &got_typmods,
        &want_typmods,
        "numeric and timestamp modifiers",
    );

    // varchar(20) into varchar(5) is refused before anything is written;
    // mapped, a value too long for it is refused, not cut.
    let out = run(&into("dst_narrow", &[]));
    expect_exit(&out, 2);
    assert!(
        stderr(&out)
            .contains("column v: source character varying(20) into target character varying(5)"),
        "{}",
        stderr(&out)
    );
    let out = run(&into("dst_narrow", &["--map", "v=v"]));
    expect_exit(&out, 1);
    assert!(
        stderr(&out).contains("value too long for type character varying(5)"),
        "{}",
        stderr(&out)
    );
    drop(target);
    other.drop().await;
    db.cleanup().await;
}

/// A crash right after a chunk committed on the target, a real kill -9
/// mid-copy, then a rerun: all on the COPY path, and exact.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_copy_path_crash_and_kill_9_then_rerun_is_exact() {
    let (db, other, target) = pg_source_and_target("pgkill").await;
    let mut args = cross_copy(&db.url(), &other.url(), &db.q("src"), &db.q("dst"), &db);
    set_flag(&mut args, "--chunk-rows", "100");
    args.extend(["--workers".into(), "2".into()]);

    let out = run_crashing_after(&args, 3);
    assert_ne!(out.status.code(), Some(0), "the crash hook did not fire");
    assert!(
        stderr(&out).contains("copying with COPY (binary)"),
        "{}",
        stderr(&out)
    );
    let dst = format!("SELECT count(*) FROM {}.dst", db.schema);
    let count = async |c: &tokio_postgres::Client| {
        c.query_one(&dst, &[])
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    let crashed = count(&target).await;
    assert!(crashed > 0, "nothing was copied before the crash");

    // Slow enough (COPY is quick) that the kill lands mid-copy.
    let mut slow = Running::start(&with(args.clone(), &["--max-rows-per-sec", "400"]));
    slow.wait_for_progress(|p| {
        p["rows_done"]
            .as_u64()
            .is_some_and(|n| n as i64 > crashed + 200)
    });
    slow.signal(libc::SIGKILL);
    let _ = slow.finish();
    let between = count(&target).await;
    assert!(
        (crashed + 200..3002).contains(&between),
        "{between} rows after the kill ({crashed} after the crash)"
    );

    let out = run(&args);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("copying with COPY (binary)"),
        "{}",
        stderr(&out)
    );
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &db.schema),
    )
    .await;
    let got = pg_lines(&target, &pg_canonical("dst").replace("{s}", &db.schema)).await;
    assert_rows(&got, &want, "after the crash and the kill -9");
    drop(target);
    other.drop().await;
    db.cleanup().await;
}

/// A lock held on the target (that lets readers through) makes chunks
/// time out (--lock-timeout); each is run again whole, and the copy ends
/// exact once the lock goes.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_copy_path_retries_a_chunk_whole() {
    let (db, other, target) = pg_source_and_target("pgretry").await;
    let locker = other.client().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.dst IN SHARE MODE",
            db.schema
        ))
        .await
        .expect("lock the target");
    let args = with(
        cross_copy(&db.url(), &other.url(), &db.q("src"), &db.q("dst"), &db),
        &["--lock-timeout", "200ms", "--json"],
    );
    let mut running = Running::start(&args);
    // Held until a chunk has timed out and is waiting to run again.
    running.wait_for_progress(|p| p["retries"].as_u64().is_some_and(|n| n > 0));
    locker.batch_execute("COMMIT").await.expect("unlock");
    let status = running.child.wait().expect("wait");
    let mut summary = String::new();
    use std::io::Read;
    running
        .child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut summary)
        .expect("summary");
    let (_, err) = running.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).expect("--json summary");
    assert!(
        summary["retries"].as_u64().is_some_and(|n| n > 0),
        "{summary}"
    );
    assert_eq!(summary["rows"].as_u64(), Some(3002), "{summary}");
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &db.schema),
    )
    .await;
    let got = pg_lines(&target, &pg_canonical("dst").replace("{s}", &db.schema)).await;
    assert_rows(&got, &want, "after retries");
    drop((target, locker));
    other.drop().await;
    db.cleanup().await;
}

/// Text keys full of quotes, backslashes, `$1`, newlines and emoji bound
/// every chunk: as literals in the source's COPY (byte-ordered keys), and
/// as parameters of the key list (a collation not proven to order alike).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_text_keys_with_quotes_and_backslashes_bound_chunks_exactly() {
    let db = TestDb::new("x_pgtext").await;
    let keys = "SELECT CASE g % 5 WHEN 0 THEN E'it''s\\\\' WHEN 1 THEN E'$1 \\\\''' \
                WHEN 2 THEN E'line\\nbreak' WHEN 3 THEN '注文 🚚' ELSE E'\\\\x00' END || g, g \
                FROM generate_series(1, 2000) g";
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id text COLLATE \"C\" PRIMARY KEY, n integer);
         INSERT INTO {{s}}.src {keys}"
    ))
    .await;
    let (other, target) = other_database(
        &db,
        "pgtext",
        "CREATE TABLE {s}.dst_c (id text COLLATE \"C\" PRIMARY KEY, n integer);
         CREATE TABLE {s}.dst_default (id text PRIMARY KEY, n integer)",
    )
    .await;
    let lines = "SELECT id || '|' || n FROM {s}.{t} ORDER BY id COLLATE \"C\"";
    let want = pg_lines(
        &connect().await,
        &lines.replace("{s}", &db.schema).replace("{t}", "src"),
    )
    .await;
    assert_eq!(want.len(), 2000);
    for (table, path) in [
        ("dst_c", "copying with COPY (binary)"),
        (
            "dst_default",
            "copying with COPY (text) of rows read with SELECT: key column id sorts by collation C",
        ),
    ] {
        let mut args = cross_copy(&db.url(), &other.url(), &db.q("src"), &db.q(table), &db);
        set_flag(&mut args, "--chunk-rows", "150");
        let out = run(&with(args.clone(), &["--restart"]));
        expect_exit(&out, 0);
        assert!(stderr(&out).contains(path), "{}", stderr(&out));
        // A second run over the filled target replaces every chunk.
        expect_exit(&run(&with(args, &["--restart"])), 0);
        let got = pg_lines(
            &target,
            &lines.replace("{s}", &db.schema).replace("{t}", table),
        )
        .await;
        assert_rows(&got, &want, table);
    }
    drop(target);
    other.drop().await;
    db.cleanup().await;
}

/// A long, throttled copy whose planner waits with a chunk in hand while
/// the worker holds its session: the throttle's load question is still
/// answered (when it waited for the job's full pool it read as "load
/// unknown" after 5 s, and held the job for good).
#[tokio::test(flavor = "multi_thread")]
async fn a_long_throttled_copy_keeps_a_session_for_the_load_signal() {
    let (db, other, target) = pg_source_and_target("pgstarve").await;
    let mut args = cross_copy(&db.url(), &other.url(), &db.q("src"), &db.q("dst"), &db);
    set_flag(&mut args, "--chunk-rows", "100");
    // About 7.5 s: longer than the signal's 5 s answer limit.
    let mut running = Running::start(&with(
        args,
        &["--workers", "1", "--max-rows-per-sec", "400"],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while running.child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            running.signal(libc::SIGKILL);
            let (_, err) = running.finish();
            panic!("the copy did not end within 60 s:\n{err}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, err) = running.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("load unknown"), "{err}");
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &db.schema),
    )
    .await;
    let got = pg_lines(&target, &pg_canonical("dst").replace("{s}", &db.schema)).await;
    assert_rows(&got, &want, "a long throttled copy");
    drop(target);
    other.drop().await;
    db.cleanup().await;
}

/// PostgreSQL's `time` holds 24:00:00, and so does MySQL's TIME: it must
/// not arrive as 00:00:00 (the neutral form once went through a date).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_time_24_00_reaches_mariadb_as_24_00() {
    let pg = TestDb::new("x_t24").await;
    let my = TestDb::mysql("x_t24").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, t time(6));
         INSERT INTO {s}.src VALUES (1, '24:00:00'), (2, '23:59:59.5'), (3, '00:00:00')",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id int PRIMARY KEY, t time(6))")
        .await;
    let out = run(&cross_copy(
        &pg.url(),
        &my.url(),
        &pg.q("src"),
        &my.q("dst"),
        &pg,
    ));
    expect_exit(&out, 0);
    assert_eq!(
        my.scalar("SELECT GROUP_CONCAT(CAST(t AS CHAR) ORDER BY id) FROM {s}.dst")
            .await,
        "24:00:00.000000,23:59:59.500000,00:00:00.000000"
    );
    let verify = across("verify", &pg, "src", &my, "dst", &[]);
    expect_exit(&run(&verify), 0);
    my.cleanup().await;
    pg.cleanup().await;
}
