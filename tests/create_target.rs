//! `copy --create-target` across engines on the real PostgreSQL and MariaDB:
//! the table is created with mapped types, NOT NULL and the key as primary
//! key, the copy verifies equal; a crash and a rerun reuse the table; a
//! type with no faithful counterpart is refused (exit 2, nothing created)
//! until `--cast`/`--map` say how to convert it.

mod common;
use common::*;

fn copy_creating(source: &TestDb, target: &TestDb, table: &str, extra: &[&str]) -> Vec<String> {
    let checkpoint = source
        .path(&format!("create-{table}.checkpoint"))
        .display()
        .to_string();
    let args = across(
        "copy",
        source,
        table,
        target,
        "made",
        &[
            "--create-target",
            "--checkpoint",
            &checkpoint,
            "--chunk-rows",
            "300",
            "--chunk-time",
            "0",
        ],
    );
    with(args, extra)
}

fn verify(source: &TestDb, target: &TestDb, table: &str) -> std::process::Output {
    run(&across(
        "verify",
        source,
        table,
        target,
        "made",
        &["--progress", "none"],
    ))
}

async fn my_columns(my: &TestDb) -> String {
    my.scalar(
        "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE, IF(IS_NULLABLE = 'NO', ' NOT NULL', ''), \
           IF(COLUMN_KEY = 'PRI', ' PK', '')) ORDER BY ORDINAL_POSITION SEPARATOR ', ') \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{s}' AND TABLE_NAME = 'made'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_mariadb_creates_mapped_columns_and_copies_exactly() {
    let pg = TestDb::new("ct_pgmy").await;
    let my = TestDb::mysql("ct_pgmy").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, name varchar(30),
                               body text, raw bytea, ok boolean, at timestamptz, day date, doc jsonb, ref uuid);
         INSERT INTO {s}.src SELECT g, g * 0.25, 'n' || g, repeat('ü', g % 7), decode(md5(g::text), 'hex'),
                g % 2 = 0, timestamptz '2030-06-01 12:00:00.000001+00' + g * interval '1 day',
                date '2001-01-01' + g, jsonb_build_object('g', g), md5(g::text)::uuid
         FROM generate_series(1, 2000) g",
    )
    .await;
    let args = copy_creating(&pg, &my, "src", &[]);
    // A crash after some chunks: the rerun finds the table it created.
    let out = run_crashing_after(&args, 2);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("--create-target: created"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        my_columns(&my).await,
        "id bigint(20) NOT NULL PK, amount decimal(12,2) NOT NULL, name varchar(30), body longtext, \
         raw longblob, ok tinyint(1), at datetime(6), day date, doc longtext, ref char(36)"
    );
    let out = run(&args);
    expect_exit(&out, 0);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    expect_exit(&verify(&pg, &my, "src"), 0);
    assert_eq!(my.count("made").await, 2000);
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_to_postgres_creates_mapped_columns_and_copies_exactly() {
    let my = TestDb::mysql("ct_mypg").await;
    let pg = TestDb::new("ct_mypg").await;
    my.exec(
        "CREATE TABLE {s}.src (id int unsigned PRIMARY KEY, flag tinyint(1), small tinyint, price decimal(10,3),
                               label char(4), note varchar(50), blob_ varbinary(8), made datetime(6), seen timestamp(3) NULL);
         INSERT INTO {s}.src SELECT seq, seq % 2, seq % 100, seq / 8, 'ab', CONCAT('ñ', seq), UNHEX('00FF'),
                '2020-01-01 00:00:00.5' + INTERVAL seq SECOND, '2021-01-01 00:00:00.123' + INTERVAL seq MINUTE
         FROM seq_1_to_1500",
    )
    .await;
    expect_exit(&run(&copy_creating(&my, &pg, "src", &[])), 0);
    assert_eq!(
        pg.scalar(
            "SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum) \
             FROM pg_attribute a WHERE a.attrelid = '{s}.made'::regclass AND a.attnum > 0"
        )
        .await,
        "id bigint NOT NULL, flag boolean, small smallint, price numeric(10,3), label character(4), \
         note character varying(50), blob_ bytea, made timestamp(6) without time zone, \
         seen timestamp(3) with time zone"
    );
    expect_exit(&verify(&my, &pg, "src"), 0);
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmappable_type_is_refused_until_cast_and_mapped() {
    let pg = TestDb::new("ct_refuse").await;
    let my = TestDb::mysql("ct_refuse").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, span interval);
         INSERT INTO {s}.src VALUES (1, '36 hours'), (2, NULL)",
    )
    .await;
    let out = run(&copy_creating(&pg, &my, "src", &[]));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("column span (interval) has no type on the target engine"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        my.scalar("SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{s}'")
            .await,
        "0",
        "nothing created"
    );
    // A type alone is not enough: the values need converting too.
    let out = run(&copy_creating(
        &pg,
        &my,
        "src",
        &["--cast", "span=varchar(40)"],
    ));
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("--map span="), "{}", stderr(&out));
    let out = run(&copy_creating(
        &pg,
        &my,
        "src",
        &["--cast", "span=varchar(40)", "--map", "span=span::text"],
    ));
    expect_exit(&out, 0);
    assert_eq!(
        my.scalar("SELECT CONCAT(COUNT(*), ':', MAX(span), ':', SUM(span IS NULL)) FROM {s}.made")
            .await,
        "2:PT36H:1"
    );
    my.cleanup().await;
    pg.cleanup().await;
}

/// Values with no counterpart fail loudly instead of arriving changed:
/// infinite and BC timestamps into MariaDB, text too long for a narrower
/// PostgreSQL column. MySQL BIT travels as its bytes; times keep their
/// microseconds and verify equal.
#[tokio::test(flavor = "multi_thread")]
async fn values_without_a_counterpart_fail_loudly_and_odd_types_stay_exact() {
    let pg = TestDb::new("ct_edges").await;
    let my = TestDb::mysql("ct_edges").await;
    let my2 = TestDb::mysql("ct_edges2").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, at timestamp);
         INSERT INTO {s}.src VALUES (1, '2020-01-01'), (2, 'infinity');
         CREATE TABLE {s}.bc (id int PRIMARY KEY, at timestamptz);
         INSERT INTO {s}.bc VALUES (1, '0044-03-15 12:00:00+00 BC');
         CREATE TABLE {s}.times (id int PRIMARY KEY, t time(3));
         INSERT INTO {s}.times VALUES (1, '10:00:00'), (2, '23:59:59.999'), (3, NULL);
         CREATE TABLE {s}.narrow (id int PRIMARY KEY, v varchar(3));",
    )
    .await;
    for table in ["src", "bc"] {
        let out = run(&copy_creating(&pg, &my, table, &[]));
        expect_exit(&out, 1);
        assert!(
            stderr(&out).contains("Incorrect datetime value"),
            "{table}: {}",
            stderr(&out)
        );
        my.exec("DROP TABLE {s}.made").await;
    }
    // Times: created as time(3), equal to the microsecond.
    expect_exit(&run(&copy_creating(&pg, &my, "times", &[])), 0);
    expect_exit(&verify(&pg, &my, "times"), 0);

    // A longer value into a narrower PostgreSQL column is refused, not cut.
    my.exec(
        "CREATE TABLE {s}.wide (id int PRIMARY KEY, v varchar(10));
         INSERT INTO {s}.wide VALUES (1, 'abcdefgh')",
    )
    .await;
    let checkpoint = my.path("narrow.checkpoint").display().to_string();
    let into_narrow = across(
        "copy",
        &my,
        "wide",
        &pg,
        "narrow",
        &["--checkpoint", &checkpoint],
    );
    let out = run(&into_narrow);
    expect_exit(&out, 1);
    assert!(stderr(&out).contains("too long"), "{}", stderr(&out));
    assert_eq!(pg.count("narrow").await, 0);

    // MySQL BIT between two databases: its bytes, exactly.
    my.exec(
        "CREATE TABLE {s}.bits (id int PRIMARY KEY, b bit(8), p point);
         INSERT INTO {s}.bits VALUES (1, b'11001000', POINT(1.5, -2)), (2, b'00000001', NULL)",
    )
    .await;
    expect_exit(&run(&copy_creating(&my, &my2, "bits", &[])), 0);
    assert_eq!(
        my2.scalar("SELECT GROUP_CONCAT(CONCAT(id, ':', b + 0, ':', IFNULL(ST_AsText(p), '-')) ORDER BY id) FROM {s}.made")
            .await,
        "1:200:POINT(1.5 -2),2:1:-"
    );
    my2.cleanup().await;
    my.cleanup().await;
    pg.cleanup().await;
}
