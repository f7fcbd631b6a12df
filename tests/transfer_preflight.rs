//! The pre-flight of `copy --target URL` into an existing table on another
//! server, on the real PostgreSQL and MariaDB: target columns narrower
//! than the source's (scale, fractional seconds, integer range, varchar
//! length) are refused with exit 2, each column named with both types,
//! before anything is written (no row, no checkpoint); a `--map` of such a
//! column is the operator's choice and goes through; unbounded text into
//! a varchar is left to each value. A foreign key that cascades deletes
//! from the target (CASCADE, SET NULL) is refused; a plain one is not.

mod common;
use common::*;

/// `copy` from `src` in `source` into `dst` at `target_url` (schema
/// `schema`), with a checkpoint in `source`'s directory.
fn copy_into(source: &TestDb, target_url: &str, target_table: &str, extra: &[&str]) -> Vec<String> {
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
            target_table.into(),
            "--checkpoint".into(),
            source.path("job.checkpoint").display().to_string(),
            "--progress".into(),
            "none".into(),
        ],
        extra,
    )
}

/// Refused with exit 2 before anything was written: no checkpoint.
fn refused(out: &std::process::Output, source: &TestDb) -> String {
    expect_exit(out, 2);
    let err = stderr(out);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!source.path("job.checkpoint").exists(), "no checkpoint");
    err
}

const SOURCE: &str = "CREATE TABLE {s}.src (id bigint PRIMARY KEY, amount numeric(30,10),
       at timestamp(6), big bigint, code varchar(100), note text);
     INSERT INTO {s}.src SELECT g, g + 0.123456789, timestamp '2020-01-01 00:00:00.123456' + g * interval '1 hour',
       g * 1000, 'c' || g, 'n' || g FROM generate_series(1, 500) g";

#[tokio::test(flavor = "multi_thread")]
async fn narrower_postgres_columns_in_another_database_are_refused_unless_mapped() {
    let pg = TestDb::new("tp_pg").await;
    let other = OtherDatabase::new(&pg, "tp_pg_t").await;
    pg.exec(SOURCE).await;
    other
        .exec(
            "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, amount numeric(12,2),
               at timestamp(3), big integer, code varchar(10), note varchar(50))",
        )
        .await;
    let args = copy_into(&pg, &other.url(), &other.q("dst"), &[]);
    let err = refused(&run(&args), &pg);
    for item in [
        "column amount: source numeric(30,10) into target numeric(12,2): values with more than 2 \
         decimal places are rounded",
        "column at: source timestamp(6) without time zone into target timestamp(3) without time \
         zone: fractional seconds beyond 3 digits are lost",
        "column big: source bigint into target integer",
        "column code: source character varying(100) into target character varying(10)",
        "Widen the target columns",
        "--map COL=<expression>",
    ] {
        assert!(err.contains(item), "{item}: {err}");
    }
    // text into varchar(50): each value is the judge, not the types.
    assert!(!err.contains("column note"), "{err}");
    assert_eq!(
        other.scalar("SELECT count(*)::text FROM {s}.dst").await,
        "0"
    );

    // Mapped columns are the operator's conversion.
    let out = run(&with(
        args,
        &[
            "--map",
            "amount=round(amount, 2)",
            "--map",
            "at=at",
            "--map",
            "big=big",
            "--map",
            "code=code",
        ],
    ));
    expect_exit(&out, 0);
    assert_eq!(
        other
            .scalar("SELECT count(*) || ':' || max(amount) || ':' || max(at)::text FROM {s}.dst")
            .await,
        "500:500.12:2020-01-21 20:00:00.123"
    );
    other.drop().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn narrower_mariadb_columns_are_refused_unless_mapped() {
    let pg = TestDb::new("tp_my").await;
    let my = TestDb::mysql("tp_my").await;
    pg.exec(SOURCE).await;
    my.exec(
        "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, amount decimal(12,2), at datetime(3),
           big int, code varchar(10), note varchar(50))",
    )
    .await;
    let args = copy_into(&pg, &my.url(), &my.q("dst"), &[]);
    let err = refused(&run(&args), &pg);
    for item in [
        "4 columns of",
        "column amount: source numeric(30,10) into target decimal(12,2)",
        "column at: source timestamp(6) without time zone into target datetime(3)",
        "column big: source bigint into target int(11)",
        "column code: source character varying(100) into target varchar(10)",
    ] {
        assert!(err.contains(item), "{item}: {err}");
    }
    assert_eq!(my.count("dst").await, 0);
    let out = run(&with(
        args,
        &[
            "--map",
            "amount=round(amount, 2)",
            "--map",
            "at=date_trunc('milliseconds', at)",
            "--map",
            "big=big",
            "--map",
            "code=code",
        ],
    ));
    expect_exit(&out, 0);
    assert_eq!(my.count("dst").await, 500);
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_keys_that_cascade_from_the_target_are_refused() {
    let pg = TestDb::new("tp_fk").await;
    let other = OtherDatabase::new(&pg, "tp_fk_t").await;
    let my = TestDb::mysql("tp_fk").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g, 'v' || g FROM generate_series(1, 100) g",
    )
    .await;
    other
        .exec(
            "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v text);
             CREATE TABLE {s}.child (id int PRIMARY KEY, dst_id bigint
               CONSTRAINT child_dst REFERENCES {s}.dst ON DELETE CASCADE)",
        )
        .await;
    let args = copy_into(&pg, &other.url(), &other.q("dst"), &[]);
    let err = refused(&run(&args), &pg);
    assert!(
        err.contains(&format!(
            "is referenced by foreign key child_dst of {} (ON DELETE CASCADE)",
            other.q("child")
        )),
        "{err}"
    );
    assert!(
        err.contains("Drop it for the copy and add it back afterwards"),
        "{err}"
    );
    // A plain foreign key: a delete of a referenced row fails loudly.
    other
        .exec(
            "ALTER TABLE {s}.child DROP CONSTRAINT child_dst,
               ADD CONSTRAINT child_dst FOREIGN KEY (dst_id) REFERENCES {s}.dst",
        )
        .await;
    expect_exit(&run(&args), 0);
    assert_eq!(
        other.scalar("SELECT count(*)::text FROM {s}.dst").await,
        "100"
    );

    my.exec(
        "CREATE TABLE {s}.dst (id bigint PRIMARY KEY, v text);
         CREATE TABLE {s}.child (id int PRIMARY KEY, dst_id bigint,
           CONSTRAINT child_dst FOREIGN KEY (dst_id) REFERENCES {s}.dst (id) ON DELETE SET NULL)",
    )
    .await;
    let _ = std::fs::remove_file(pg.path("job.checkpoint"));
    let err = refused(&run(&copy_into(&pg, &my.url(), &my.q("dst"), &[])), &pg);
    assert!(
        err.contains(&format!(
            "foreign key child_dst of `{}`.`child` (ON DELETE SET NULL)",
            my.schema
        )) && err.contains("delete or change the referencing rows"),
        "{err}"
    );
    assert_eq!(my.count("dst").await, 0);
    my.cleanup().await;
    other.drop().await;
    pg.cleanup().await;
}

/// A double into a single-precision float (either way across engines) is
/// rounded to 24 bits with no error: refused like any narrower column,
/// and goes through when mapped.
#[tokio::test(flavor = "multi_thread")]
async fn a_double_into_a_float_is_refused_unless_mapped() {
    let pg = TestDb::new("tp_fl").await;
    let my = TestDb::mysql("tp_fl").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, x double precision);
         INSERT INTO {s}.src VALUES (1, 0.123456789012)",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, x float)")
        .await;
    let args = copy_into(&pg, &my.url(), &my.q("dst"), &[]);
    let err = refused(&run(&args), &pg);
    assert!(
        err.contains("column x: source double precision into target float"),
        "{err}"
    );
    assert_eq!(my.count("dst").await, 0);
    expect_exit(&run(&with(args, &["--map", "x=x"])), 0);
    assert_eq!(my.count("dst").await, 1);
    my.cleanup().await;
    pg.cleanup().await;
}

/// An unconstrained numeric holds any scale: into a DECIMAL(p,s) its
/// values are rounded with no more than a note, so it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_unconstrained_numeric_into_a_decimal_is_refused_unless_mapped() {
    let pg = TestDb::new("tp_un").await;
    let my = TestDb::mysql("tp_un").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, amount numeric);
         INSERT INTO {s}.src VALUES (1, 1.005)",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, amount decimal(12,2))")
        .await;
    let args = copy_into(&pg, &my.url(), &my.q("dst"), &[]);
    let err = refused(&run(&args), &pg);
    assert!(
        err.contains(
            "column amount: source numeric into target decimal(12,2): values with more than 2 \
             decimal places are rounded"
        ),
        "{err}"
    );
    assert_eq!(my.count("dst").await, 0);
    expect_exit(&run(&with(args, &["--map", "amount=round(amount, 2)"])), 0);
    assert_eq!(
        my.scalar("SELECT CAST(amount AS CHAR) FROM {s}.dst").await,
        "1.01"
    );
    my.cleanup().await;
    pg.cleanup().await;
}

/// MySQL's YEAR reads a number from 0 to 99 as a year of this century or
/// the last (5 becomes 2005): an integer into YEAR is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_integer_into_a_mysql_year_is_refused() {
    let pg = TestDb::new("tp_yr").await;
    let my = TestDb::mysql("tp_yr").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, y integer);
         INSERT INTO {s}.src VALUES (1, 5)",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, y year)")
        .await;
    let err = refused(&run(&copy_into(&pg, &my.url(), &my.q("dst"), &[])), &pg);
    assert!(
        err.contains("column y: source integer into target year"),
        "{err}"
    );
    assert_eq!(my.count("dst").await, 0);
    my.cleanup().await;
    pg.cleanup().await;
}
