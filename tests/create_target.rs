//! `copy --create-target` across engines on the real PostgreSQL and MariaDB:
//! the table is created with mapped types, NOT NULL, defaults, identity
//! columns and the key as primary key, the copy verifies equal; a crash
//! and a rerun reuse the table; a type with no faithful counterpart is
//! refused (exit 2, nothing created) until `--cast`/`--map` say how to
//! convert it. After the copy the source's secondary indexes are built on
//! the target (PostgreSQL to another database, MariaDB to PostgreSQL,
//! PostgreSQL to MariaDB), those the other engine cannot build alike are
//! named with the way to build them by hand, a crash during the copy or
//! the builds still ends with all of them, and a unique index the copied
//! values break fails the run with the rows kept.

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

    // A longer value into a narrower PostgreSQL column is refused, not
    // cut. (TEXT: a declared varchar(10) would be refused before the copy.)
    my.exec(
        "CREATE TABLE {s}.wide (id int PRIMARY KEY, v text);
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

/// `SHOW INDEX`, one `name [UNIQUE] (col [DESC], ...)` per index, by name.
async fn my_indexes(my: &TestDb) -> String {
    my.scalar(
        "SELECT GROUP_CONCAT(x ORDER BY x SEPARATOR '; ') FROM ( \
           SELECT CONCAT(INDEX_NAME, IF(NON_UNIQUE = 0, ' UNIQUE', ''), ' (', \
                  GROUP_CONCAT(CONCAT(COLUMN_NAME, IF(COLLATION = 'D', ' DESC', '')) \
                               ORDER BY SEQ_IN_INDEX SEPARATOR ', '), ')') x \
           FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{s}' AND TABLE_NAME = 'made' \
           GROUP BY INDEX_NAME, NON_UNIQUE) t",
    )
    .await
}

const PG_INDEXES: &str = "SELECT string_agg(replace(indexdef, '{s}.', ''), '; ' ORDER BY indexname) \
     FROM pg_indexes WHERE schemaname = '{s}' AND tablename = 'made'";

fn crash_after_indexes(args: &[String], built: u32) -> std::process::Output {
    let out = bin()
        .args(args)
        .env("ROWFERRY_CRASH_AFTER_INDEXES", built.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run rowferry");
    assert_eq!(
        out.status.code(),
        None,
        "expected an abort: {}",
        stderr(&out)
    );
    out
}

/// PostgreSQL into another database: every index as the source defines
/// it (unique, several columns with DESC, partial, expression, GIN), the
/// exclusion constraint named with the statement to add it; defaults and
/// the identity carried, its sequence past the copied values. A crash
/// during the copy, then one during the index builds: each rerun goes on,
/// and the last ends with every index.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_into_another_database_gets_the_indexes_defaults_and_identity() {
    let pg = TestDb::new("ct_pgidx").await;
    let other = OtherDatabase::new(&pg, "ct_pgidx_t").await;
    pg.exec(
        "CREATE TABLE {s}.src (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
           email text NOT NULL, name varchar(40), n int DEFAULT 0, ok boolean DEFAULT true,
           status text DEFAULT 'new', at timestamptz DEFAULT now(), tags text[], during tsrange,
           EXCLUDE USING gist (during WITH &&));
         CREATE UNIQUE INDEX src_email_key ON {s}.src (email);
         CREATE INDEX src_name_n ON {s}.src (name DESC, n);
         CREATE INDEX src_big ON {s}.src (n) WHERE n > 1000;
         CREATE INDEX src_lower ON {s}.src (lower(name));
         CREATE INDEX src_tags ON {s}.src USING gin (tags);
         INSERT INTO {s}.src (email, name, n, tags, during)
           SELECT 'e' || g, 'n' || g, g, ARRAY['t' || g % 5],
                  tsrange('2020-01-01'::timestamp + g * interval '1 day',
                          '2020-01-01'::timestamp + (g + 1) * interval '1 day')
           FROM generate_series(1, 2000) g",
    )
    .await;
    let checkpoint = pg.path("pgidx.checkpoint").display().to_string();
    let args = with(
        vec![
            "copy".into(),
            "--source".into(),
            pg.url(),
            "--target".into(),
            other.url(),
            "--table".into(),
            pg.q("src"),
            "--target-table".into(),
            other.q("made"),
        ],
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
    let out = run_crashing_after(&args, 2);
    assert!(
        stderr(&out).contains("the source's secondary indexes are built after the copy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        other.scalar(PG_INDEXES).await,
        "CREATE UNIQUE INDEX made_pkey ON made USING btree (id)",
        "no secondary index before the copy is done"
    );
    // The rerun finishes the copy; the builds stop after the first index.
    let out = crash_after_indexes(&args, 1);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    let out = run(&args);
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("already there: src_big"), "{err}");
    assert!(
        err.contains("index src_during_excl of ")
            && err.contains("an exclusion constraint")
            && err.contains("ADD CONSTRAINT \"src_during_excl\" EXCLUDE"),
        "{err}"
    );
    assert_eq!(
        other.scalar(PG_INDEXES).await,
        "CREATE UNIQUE INDEX made_pkey ON made USING btree (id); \
         CREATE INDEX src_big ON made USING btree (n) WHERE (n > 1000); \
         CREATE UNIQUE INDEX src_email_key ON made USING btree (email); \
         CREATE INDEX src_lower ON made USING btree (lower((name)::text)); \
         CREATE INDEX src_name_n ON made USING btree (name DESC, n); \
         CREATE INDEX src_tags ON made USING gin (tags)"
    );
    assert_eq!(
        other
            .scalar(
                "SELECT string_agg(column_name || '=' || coalesce(column_default, identity_generation, '-'), ', ' \
                   ORDER BY ordinal_position) FROM information_schema.columns \
                 WHERE table_schema = '{s}' AND table_name = 'made'"
            )
            .await,
        "id=ALWAYS, email=-, name=-, n=0, ok=true, status='new'::text, at=CURRENT_TIMESTAMP, tags=-, during=-"
    );
    // The identity goes on past the copied values.
    assert_eq!(
        other
            .scalar("INSERT INTO {s}.made (email) VALUES ('new') RETURNING id::text")
            .await,
        "2001"
    );
    // Once more: nothing to copy, nothing to build.
    let out = run(&args);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("0 built, 5 already there, 1 not carried"),
        "{}",
        stderr(&out)
    );
    other.drop().await;
    pg.cleanup().await;
}

/// MariaDB into PostgreSQL: plain indexes (unique, several columns, DESC)
/// arrive with the table's name before theirs; a prefix index and a
/// FULLTEXT one are named, not dropped silently; literal defaults,
/// CURRENT_TIMESTAMP and AUTO_INCREMENT are carried, an expression
/// default and ON UPDATE are named.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_to_postgres_gets_plain_indexes_and_names_the_others() {
    let my = TestDb::mysql("ct_myidx").await;
    let pg = TestDb::new("ct_myidx").await;
    my.exec(
        "CREATE TABLE {s}.src (id int unsigned AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL,
           name varchar(50) DEFAULT 'it''s', n int DEFAULT -1, ok tinyint(1) DEFAULT 1,
           made datetime(6) DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6),
           tag varchar(36) DEFAULT (uuid()), body text,
           UNIQUE KEY email_u (email), KEY n_name (n, name DESC), KEY pre (name(10)), FULLTEXT KEY ft (body));
         INSERT INTO {s}.src (email, n, body) SELECT CONCAT('e', seq), seq, 'x' FROM seq_1_to_700",
    )
    .await;
    let out = run(&copy_creating(&my, &pg, "src", &[]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("index pre of ") && err.contains("a prefix length (10 of `name` only)"),
        "{err}"
    );
    assert!(
        err.contains(r#"CREATE INDEX CONCURRENTLY "made_pre" ON"#),
        "{err}"
    );
    assert!(
        err.contains("index ft of ") && err.contains("a FULLTEXT index has no counterpart"),
        "{err}"
    );
    assert!(
        err.contains("column tag: its default uuid()") && err.contains("column made: ON UPDATE"),
        "{err}"
    );
    assert_eq!(
        pg.scalar(PG_INDEXES).await,
        "CREATE UNIQUE INDEX made_email_u ON made USING btree (email); \
         CREATE INDEX made_n_name ON made USING btree (n, name DESC); \
         CREATE UNIQUE INDEX made_pkey ON made USING btree (id)"
    );
    assert_eq!(
        pg.scalar(
            "SELECT string_agg(column_name || '=' || coalesce(column_default, identity_generation, '-'), ', ' \
               ORDER BY ordinal_position) FROM information_schema.columns \
             WHERE table_schema = '{s}' AND table_name = 'made'"
        )
        .await,
        "id=BY DEFAULT, email=-, name='it''s'::character varying, n='-1'::integer, ok=true, \
         made=CURRENT_TIMESTAMP, tag=-, body=-"
    );
    expect_exit(&verify(&my, &pg, "src"), 0);
    assert_eq!(
        pg.scalar("INSERT INTO {s}.made (email) VALUES ('new') RETURNING id::text")
            .await,
        "701"
    );
    my.cleanup().await;
    pg.cleanup().await;
}

/// PostgreSQL into MariaDB: the btree indexes on plain columns arrive;
/// an expression, a partial, a GIN index and one on a TEXT column (MySQL
/// indexes a prefix only) are named with what to run. A unique index over
/// values MariaDB's case-insensitive collation takes for duplicates fails
/// the run (exit 1, said plainly) after the copy: the rows stay, and the
/// other indexes are built.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_mariadb_gets_plain_indexes_and_a_broken_unique_one_fails_plainly() {
    let pg = TestDb::new("ct_pgmyidx").await;
    let my = TestDb::mysql("ct_pgmyidx").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
           code varchar(20) NOT NULL, n int DEFAULT 5, label varchar(30) DEFAULT 'none',
           seen timestamp(3) DEFAULT CURRENT_TIMESTAMP, note text, tags text[]);
         CREATE UNIQUE INDEX src_code ON {s}.src (code);
         CREATE INDEX src_n_label ON {s}.src (n DESC, label);
         CREATE INDEX src_lower ON {s}.src (lower(label));
         CREATE INDEX src_some ON {s}.src (n) WHERE n > 3;
         CREATE INDEX src_tags ON {s}.src USING gin (tags);
         CREATE INDEX src_note ON {s}.src (note);
         INSERT INTO {s}.src (code, n, label, note, tags)
           SELECT 'c' || g, g % 7, 'l' || g, 'x', ARRAY['a'] FROM generate_series(1, 1000) g;
         INSERT INTO {s}.src (code) VALUES ('abc'), ('ABC')",
    )
    .await;
    let out = run(&copy_creating(
        &pg,
        &my,
        "src",
        &[
            "--map",
            "tags=array_to_string(tags, ',')",
            "--cast",
            "tags=varchar(100)",
        ],
    ));
    expect_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("the copy into ") && err.contains("is complete and its rows stay"),
        "{err}"
    );
    assert!(
        err.contains("unique index src_code could not be built")
            && err.contains("takes for duplicates")
            && err.contains("Duplicate entry"),
        "{err}"
    );
    for (index, why) in [
        ("src_lower", "an expression has no counterpart"),
        ("src_some", "a WHERE clause (a partial index)"),
        ("src_tags", "the gin method"),
        ("src_note", "by a prefix only"),
    ] {
        assert!(
            err.contains(&format!("index {index} of ")) && err.contains(why),
            "{index}: {err}"
        );
    }
    assert_eq!(my.count("made").await, 1002, "the copied rows stay");
    assert_eq!(
        my_indexes(&my).await,
        "PRIMARY UNIQUE (id); src_n_label (n DESC, label)"
    );
    assert_eq!(
        my.scalar(
            "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, '=', IFNULL(COLUMN_DEFAULT, '-'), \
               IF(EXTRA LIKE '%auto_increment%', ' auto', '')) ORDER BY ORDINAL_POSITION SEPARATOR ', ') \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{s}' AND TABLE_NAME = 'made'"
        )
        .await,
        "id=- auto, code=-, n=5, label='none', seen=current_timestamp(3), note=NULL, tags=NULL"
    );
    // Fixed on the target, the rerun builds it.
    my.exec("UPDATE {s}.made SET code = 'ABC2' WHERE BINARY code = 'ABC'")
        .await;
    let out = run(&copy_creating(
        &pg,
        &my,
        "src",
        &[
            "--map",
            "tags=array_to_string(tags, ',')",
            "--cast",
            "tags=varchar(100)",
        ],
    ));
    expect_exit(&out, 0);
    assert_eq!(
        my_indexes(&my).await,
        "PRIMARY UNIQUE (id); src_code UNIQUE (code); src_n_label (n DESC, label)"
    );
    my.cleanup().await;
    pg.cleanup().await;
}
