//! `copy --target URL` into another database, server or engine, on the
//! real PostgreSQL and MariaDB: PostgreSQL to another database, MariaDB to
//! PostgreSQL and back, every supported kind of value compared row for row
//! (NULLs, extreme numbers, microsecond instants, non-ASCII text, empty
//! strings, bytes); a crash mid-copy and a rerun give an exact copy; a
//! column with no faithful counterpart is refused (exit 2) by name.

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
    let want = pg_lines(
        &connect().await,
        &pg_canonical("src").replace("{s}", &db.schema),
    )
    .await;
    let got = pg_lines(&target, &pg_canonical("dst").replace("{s}", &db.schema)).await;
    assert_eq!(want.len(), 3002);
    assert_rows(&got, &want, "PostgreSQL -> PostgreSQL");
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
    expect_exit(&run(&back), 0);
    let again = pg_lines(
        &connect().await,
        &pg_canonical("back").replace("{s}", &pg.schema),
    )
    .await;
    assert_rows(&again, &want, "MariaDB -> PostgreSQL");
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
