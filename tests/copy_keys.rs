//! Copies over every kind of key, compared row by row by checksum on the
//! real PostgreSQL. Small fixed chunks so that every table spans many chunks
//! and every boundary is exercised.

mod common;
use common::*;

/// Copy `src` into `dst` in chunks of `chunk` rows and return the output.
fn copy(db: &TestDb, src: &str, dst: &str, chunk: u32, extra: &[&str]) -> std::process::Output {
    let mut args = db.copy_args(src, dst);
    args.extend([
        "--chunk-rows".into(),
        chunk.to_string(),
        "--chunk-time".into(),
        "0".into(),
    ]);
    args.extend([
        "--workers".into(),
        "3".into(),
        "--progress".into(),
        "none".into(),
        "--json".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run(&args);
    expect_exit(&out, 0);
    out
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("summary JSON: {e}: {}", stdout(out)))
}

#[tokio::test(flavor = "multi_thread")]
async fn integer_key_with_gaps() {
    let db = TestDb::new("intgaps").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v text, n numeric(12,2));
         INSERT INTO {s}.src SELECT g * g % 1000003 + g * 1000, 'v' || g, g / 3.0
           FROM generate_series(1, 5000) g WHERE g % 7 <> 0;
         INSERT INTO {s}.src VALUES (-9223372036854775808, 'min', 0), (9223372036854775807, 'max', 1);
         ANALYZE {s}.src;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    let out = copy(&db, "src", "dst", 97, &[]);
    let s = summary(&out);
    assert_eq!(s["status"], "done");
    assert_eq!(s["rows"], 4288);
    assert!(s["chunks"].as_u64().unwrap() >= 45, "{s}");
    assert_eq!(db.count("dst").await, 4288);
    assert_eq!(
        db.checksum("src", "id, v, n", "id").await,
        db.checksum("dst", "id, v, n", "id").await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn composite_key_with_skewed_groups() {
    let db = TestDb::new("composite").await;
    db.exec(
        "CREATE TABLE {s}.src (tenant int, seq int, payload text NOT NULL, PRIMARY KEY (tenant, seq));
         INSERT INTO {s}.src SELECT 1, g, 'big' || g FROM generate_series(1, 3000) g;
         INSERT INTO {s}.src SELECT t, s, 'small' FROM generate_series(2, 60) t, generate_series(1, t % 5 + 1) s;
         INSERT INTO {s}.src SELECT 1000, g, 'tail' FROM generate_series(1, 700) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    copy(&db, "src", "dst", 53, &[]);
    let expected = db.scalar("SELECT count(*)::text FROM {s}.src").await;
    assert_eq!(db.count("dst").await.to_string(), expected);
    assert_eq!(
        db.checksum("src", "tenant, seq, payload", "tenant, seq")
            .await,
        db.checksum("dst", "tenant, seq, payload", "tenant, seq")
            .await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uuid_key() {
    let db = TestDb::new("uuid").await;
    db.exec(
        "CREATE TABLE {s}.src (id uuid PRIMARY KEY, n int NOT NULL);
         INSERT INTO {s}.src SELECT md5(g::text)::uuid, g FROM generate_series(1, 3000) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    copy(&db, "src", "dst", 101, &[]);
    assert_eq!(db.count("dst").await, 3000);
    assert_eq!(
        db.checksum("src", "id, n", "id").await,
        db.checksum("dst", "id, n", "id").await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_key_under_icu_collation_with_case_and_accents() {
    let db = TestDb::new("icu").await;
    // Under und-x-icu, 'a' < 'A' < 'á' < 'b'; byte order puts 'A' < 'B' <
    // 'a' < 'á'. A copier that orders keys in Rust, or compares under the
    // wrong collation, loses or repeats rows here.
    db.exec(
        "CREATE TABLE {s}.src (name text COLLATE \"und-x-icu\" PRIMARY KEY, n int NOT NULL);
         INSERT INTO {s}.src
           SELECT (ARRAY['a','A','á','Á','b','B','é','É','e','E','z','Z','ä','Ä','ö','Ö','ß','ss','Œ','œ'])[g % 20 + 1]
                  || (g / 20)::text
                  || (ARRAY['', ' x', '-Y', 'ñ', 'N'])[g % 5 + 1], g
           FROM generate_series(1, 4000) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    let expected = db.count("src").await;
    copy(&db, "src", "dst", 37, &[]);
    assert_eq!(db.count("dst").await, expected);
    assert_eq!(
        db.checksum("src", "name, n", "name COLLATE \"C\"").await,
        db.checksum("dst", "name, n", "name COLLATE \"C\"").await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamp_and_numeric_keys_round_trip_exactly() {
    let db = TestDb::new("tsnum").await;
    db.exec(
        "CREATE TABLE {s}.ts_src (at timestamptz PRIMARY KEY, local timestamp NOT NULL);
         INSERT INTO {s}.ts_src SELECT '2024-03-31 01:59:59.999999+02'::timestamptz + g * interval '1.000001 second',
                                       '1999-12-31 23:59:59.5'::timestamp + g * interval '7 microseconds'
           FROM generate_series(1, 2500) g;
         CREATE TABLE {s}.ts_dst (LIKE {s}.ts_src INCLUDING ALL);
         CREATE TABLE {s}.num_src (k numeric(30,10) PRIMARY KEY, f double precision NOT NULL);
         INSERT INTO {s}.num_src SELECT g / 7.0 + 0.0000000001, g / 3.0::float8 FROM generate_series(-1200, 1200) g;
         CREATE TABLE {s}.num_dst (LIKE {s}.num_src INCLUDING ALL);",
    )
    .await;
    copy(&db, "ts_src", "ts_dst", 89, &[]);
    assert_eq!(db.count("ts_dst").await, 2500);
    assert_eq!(
        db.checksum("ts_src", "at, local", "at").await,
        db.checksum("ts_dst", "at, local", "at").await
    );
    // A second job in the same schema: its own checkpoint.
    std::fs::remove_file(db.path("job.checkpoint")).expect("first job's checkpoint");
    copy(&db, "num_src", "num_dst", 61, &[]);
    assert_eq!(db.count("num_dst").await, 2401);
    assert_eq!(
        db.checksum("num_src", "k, f", "k").await,
        db.checksum("num_dst", "k, f", "k").await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn map_renames_and_computes_columns() {
    let db = TestDb::new("map").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, first text NOT NULL, last text NOT NULL, cents int NOT NULL);
         INSERT INTO {s}.src SELECT g, 'F' || g, 'L' || g, g * 10 FROM generate_series(1, 1500) g;
         CREATE TABLE {s}.dst (user_id int PRIMARY KEY, full_name text NOT NULL, euros numeric(12,2), last text);",
    )
    .await;
    copy(
        &db,
        "src",
        "dst",
        200,
        &[
            "--map",
            "user_id=id",
            "--map",
            "full_name=first || ' ' || last",
            "--map",
            "euros=cents / 100.0",
        ],
    );
    assert_eq!(db.count("dst").await, 1500);
    assert_eq!(
        db.checksum(
            "src",
            "id, first || ' ' || last, (cents / 100.0)::numeric(12,2), last",
            "id"
        )
        .await,
        db.checksum("dst", "user_id, full_name, euros, last", "user_id")
            .await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn target_only_columns_get_their_defaults_and_generated_columns_are_computed() {
    let db = TestDb::new("defaults").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, price int NOT NULL, qty int NOT NULL,
                               total int GENERATED ALWAYS AS (price * qty) STORED);
         INSERT INTO {s}.src (id, price, qty) SELECT g, g % 100, g % 7 FROM generate_series(1, 1200) g;
         CREATE TABLE {s}.dst (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, price int NOT NULL, qty int NOT NULL,
                               total int GENERATED ALWAYS AS (price * qty) STORED,
                               origin text NOT NULL DEFAULT 'legacy', migrated boolean DEFAULT true);",
    )
    .await;
    copy(&db, "src", "dst", 150, &[]);
    assert_eq!(db.count("dst").await, 1200);
    assert_eq!(
        db.checksum("src", "id, price, qty, total", "id").await,
        db.checksum("dst", "id, price, qty, total", "id").await
    );
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM {s}.dst WHERE origin = 'legacy' AND migrated")
            .await,
        "1200"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn where_copies_only_matching_rows() {
    let db = TestDb::new("where").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, status text NOT NULL);
         INSERT INTO {s}.src SELECT g, CASE WHEN g % 3 = 0 THEN 'open' ELSE 'closed' END FROM generate_series(1, 3000) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    copy(&db, "src", "dst", 128, &["--where", "status = 'open'"]);
    assert_eq!(db.count("dst").await, 1000);
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM {s}.src s WHERE status = 'open' AND NOT EXISTS (SELECT 1 FROM {s}.dst d WHERE d.id = s.id)").await,
        "0"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_identifiers_are_quoted_not_pasted() {
    let db = TestDb::new("hostile").await;
    db.exec(
        r#"CREATE TABLE {s}."Odd ""Src""; DROP TABLE x;--" ("Key Col" int PRIMARY KEY, "Mixed;Case" text, "select" text);
           INSERT INTO {s}."Odd ""Src""; DROP TABLE x;--" SELECT g, 'v' || g, 's' FROM generate_series(1, 700) g;
           CREATE TABLE {s}."dst.with.dots" (LIKE {s}."Odd ""Src""; DROP TABLE x;--" INCLUDING ALL);"#,
    )
    .await;
    let mut args: Vec<String> = vec!["copy".into(), "--source".into(), pg_url()];
    args.extend([
        "--table".into(),
        format!(r#"{}."Odd ""Src""; DROP TABLE x;--""#, db.schema),
    ]);
    args.extend([
        "--target-table".into(),
        format!(r#"{}."dst.with.dots""#, db.schema),
    ]);
    args.extend([
        "--checkpoint".into(),
        db.path("odd.checkpoint").display().to_string(),
    ]);
    args.extend(
        [
            "--chunk-rows",
            "50",
            "--chunk-time",
            "0",
            "--progress",
            "none",
            "--key",
            "Key Col",
        ]
        .map(String::from),
    );
    expect_exit(&run(&args), 0);
    assert_eq!(
        db.checksum(
            r#""Odd ""Src""; DROP TABLE x;--""#,
            r#""Key Col", "Mixed;Case", "select""#,
            r#""Key Col""#
        )
        .await,
        db.checksum(
            r#""dst.with.dots""#,
            r#""Key Col", "Mixed;Case", "select""#,
            r#""Key Col""#
        )
        .await
    );
    assert_eq!(db.count(r#""dst.with.dots""#).await, 700);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_already_in_the_target_are_kept_and_never_duplicated() {
    let db = TestDb::new("present").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO {s}.src SELECT g, 'src' || g FROM generate_series(1, 3000) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);
         -- Scattered rows already copied, and one newer version written by
         -- someone else (a trigger, the application): the target's wins.
         INSERT INTO {s}.dst SELECT id, v FROM {s}.src WHERE id % 97 = 0;
         INSERT INTO {s}.dst VALUES (1500, 'newer');",
    )
    .await;
    let out = copy(&db, "src", "dst", 100, &[]);
    let s = summary(&out);
    assert_eq!(s["rows"], 3000 - 30 - 1, "{s}");
    assert_eq!(db.count("dst").await, 3000);
    assert_eq!(
        db.scalar("SELECT v FROM {s}.dst WHERE id = 1500").await,
        "newer"
    );
    assert_eq!(
        db.checksum(
            "src",
            "id, CASE WHEN id = 1500 THEN 'newer' ELSE v END",
            "id"
        )
        .await,
        db.checksum("dst", "id, v", "id").await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fixed_length_char_and_bit_keys_keep_their_length() {
    let db = TestDb::new("charkey").await;
    // Cast to a bare `character` (char(1)) or `bit` and every bound is cut:
    // the copy would find nothing and never end.
    db.exec(
        "CREATE TABLE {s}.src (code char(4) PRIMARY KEY, flags bit(5) NOT NULL UNIQUE, n int NOT NULL);
         INSERT INTO {s}.src SELECT lpad(g::text, 3, 'a') || chr(65 + g % 26), (g % 32)::bit(5), g
           FROM generate_series(1, 31) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    copy(&db, "src", "dst", 4, &[]);
    assert_eq!(db.count("dst").await, 31);
    assert_eq!(
        db.checksum("src", "code, flags, n", "code").await,
        db.checksum("dst", "code, flags, n", "code").await
    );
    db.exec("TRUNCATE {s}.dst").await;
    std::fs::remove_file(db.path("job.checkpoint")).expect("checkpoint");
    copy(&db, "src", "dst", 3, &["--key", "flags"]);
    assert_eq!(db.count("dst").await, 31);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_with_covering_include_indexes_and_two_unique_indexes_on_the_key() {
    let db = TestDb::new("twoidx").await;
    // The target's key is unique twice over (an extra UNIQUE ... INCLUDE
    // index besides the primary key), and some rows are already there: the
    // server may name either index when a row is present.
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO {s}.src SELECT g, 'v' || g FROM generate_series(1, 2000) g;
         CREATE TABLE {s}.dst (id int NOT NULL, v text NOT NULL);
         CREATE UNIQUE INDEX dst_id_first ON {s}.dst (id) INCLUDE (v);
         ALTER TABLE {s}.dst ADD PRIMARY KEY (id);
         INSERT INTO {s}.dst SELECT id, v FROM {s}.src WHERE id % 50 = 0;",
    )
    .await;
    copy(&db, "src", "dst", 100, &[]);
    assert_eq!(db.count("dst").await, 2000);
    assert_eq!(
        db.checksum("src", "id, v", "id").await,
        db.checksum("dst", "id, v", "id").await
    );
    db.cleanup().await;
}
