//! `verify --target URL` across engines on the real PostgreSQL and MariaDB:
//! after a cross-engine copy the tables compare equal (exit 0); a value
//! changed by one microsecond, one byte or one character, a missing row and
//! an extra row are each found, by key, and nothing else (exit 3).

mod common;
use common::*;

const PG_TABLE: &str = "(id bigint PRIMARY KEY, amount numeric(12,2), note text, \
    payload bytea, paid boolean, at timestamptz, ratio double precision)";
const MY_TABLE: &str = "(id bigint PRIMARY KEY, amount decimal(12,2), note text, \
    payload blob, paid tinyint(1), at datetime(6), ratio double)";

async fn pg_source(pg: &TestDb) {
    pg.exec(&format!("CREATE TABLE {{s}}.src {PG_TABLE}")).await;
    pg.exec(
        "INSERT INTO {s}.src SELECT g, g * 1.25, CASE WHEN g % 4 = 0 THEN NULL ELSE 'ünïcode ' || g END, \
           decode(md5(g::text), 'hex'), g % 3 = 0, \
           timestamptz '2024-02-29 23:59:59.999999+00' + g * interval '1.5 second', g / 7.0 \
         FROM generate_series(1, 2500) g",
    )
    .await;
}

fn verify(
    source: &TestDb,
    target: &TestDb,
    table: &str,
    target_table: &str,
) -> std::process::Output {
    run(&across(
        "verify",
        source,
        table,
        target,
        target_table,
        &["--progress", "none"],
    ))
}

fn copy(source: &TestDb, target: &TestDb, table: &str, target_table: &str) {
    let checkpoint = source.path("copy.checkpoint").display().to_string();
    let args = across(
        "copy",
        source,
        table,
        target,
        target_table,
        &["--checkpoint", &checkpoint, "--progress", "none"],
    );
    expect_exit(&run(&args), 0);
}

/// The keys verify names, sorted, from its report.
fn named_keys(out: &std::process::Output) -> Vec<String> {
    let mut keys: Vec<String> = stdout(out)
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| {
            l.trim()
                .split_once(": key (")
                .map(|(what, k)| format!("{what} {}", k.trim_end_matches(')')))
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_mariadb_compares_equal_then_finds_each_change() {
    let pg = TestDb::new("vx_pgmy").await;
    let my = TestDb::mysql("vx_pgmy").await;
    pg_source(&pg).await;
    my.exec(&format!("CREATE TABLE {{s}}.dst {MY_TABLE}")).await;
    copy(&pg, &my, "src", "dst");
    let out = verify(&pg, &my, "src", "dst");
    expect_exit(&out, 0);

    my.exec(
        "UPDATE {s}.dst SET at = at + INTERVAL 1 MICROSECOND WHERE id = 10;
         UPDATE {s}.dst SET payload = CONCAT(LEFT(payload, 15), 'x') WHERE id = 11;
         UPDATE {s}.dst SET note = 'ünïcode 1z' WHERE id = 13;
         UPDATE {s}.dst SET paid = 1 - paid WHERE id = 14;
         DELETE FROM {s}.dst WHERE id = 2000;
         INSERT INTO {s}.dst (id, amount) VALUES (9000, 1)",
    )
    .await;
    let out = verify(&pg, &my, "src", "dst");
    expect_exit(&out, 3);
    assert_eq!(
        named_keys(&out),
        [
            "different values 10",
            "different values 11",
            "different values 13",
            "different values 14",
            "extra in target 9000",
            "missing in target 2000",
        ],
        "{}",
        stdout(&out)
    );
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_to_postgres_compares_equal_then_finds_a_changed_amount() {
    let pg = TestDb::new("vx_mypg").await;
    let my = TestDb::mysql("vx_mypg").await;
    pg_source(&pg).await;
    pg.exec(&format!("CREATE TABLE {{s}}.back {PG_TABLE}"))
        .await;
    my.exec(&format!("CREATE TABLE {{s}}.dst {MY_TABLE}")).await;
    copy(&pg, &my, "src", "dst");
    copy(&my, &pg, "dst", "back");
    expect_exit(&verify(&my, &pg, "dst", "back"), 0);
    pg.exec("UPDATE {s}.back SET amount = amount + 0.01 WHERE id = 77")
        .await;
    let out = verify(&my, &pg, "dst", "back");
    expect_exit(&out, 3);
    assert_eq!(
        named_keys(&out),
        ["different values 77"],
        "{}",
        stdout(&out)
    );
    my.cleanup().await;
    pg.cleanup().await;
}

/// `verify` between the two databases in small fixed chunks, so that
/// every chunk bound crosses from one engine to the other.
fn verify_chunked(
    source: &TestDb,
    target: &TestDb,
    table: &str,
    target_table: &str,
) -> std::process::Output {
    run(&across(
        "verify",
        source,
        table,
        target,
        target_table,
        &[
            "--progress",
            "none",
            "--chunk-rows",
            "150",
            "--chunk-time",
            "0",
            "--workers",
            "2",
        ],
    ))
}

/// Equal after the copy, then exactly the one changed row is found.
fn equal_then_only(
    out_equal: &std::process::Output,
    out_changed: &std::process::Output,
    keys: &[&str],
) {
    expect_exit(out_equal, 0);
    assert!(
        stdout(out_equal).contains(": equal;"),
        "{}",
        stdout(out_equal)
    );
    expect_exit(out_changed, 3);
    assert_eq!(named_keys(out_changed), keys, "{}", stdout(out_changed));
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_keys_bound_chunks_on_both_engines() {
    let pg = TestDb::new("vx_binkey").await;
    let my = TestDb::mysql("vx_binkey").await;
    // 16-byte keys (md5 of n), plus short ones where varbinary allows.
    pg.exec(
        "CREATE TABLE {s}.src (k bytea PRIMARY KEY, n int NOT NULL, v text);
         INSERT INTO {s}.src SELECT decode(md5(g::text), 'hex'), g, 'row ' || g
           FROM generate_series(1, 2000) g;
         INSERT INTO {s}.src VALUES ('\\x00', -1, 'short'), ('\\x0000', -2, NULL), ('\\xff', -3, 'ff');
         CREATE TABLE {s}.back16 (k bytea PRIMARY KEY, n int NOT NULL, v text)",
    )
    .await;
    my.exec(
        "CREATE TABLE {s}.dst (k varbinary(16) PRIMARY KEY, n int NOT NULL, v text);
         CREATE TABLE {s}.fixed (k binary(16) PRIMARY KEY, n int NOT NULL, v text);
         INSERT INTO {s}.fixed SELECT UNHEX(MD5(seq)), seq, CONCAT('fixed ', seq) FROM seq_1_to_2000",
    )
    .await;

    // PostgreSQL bytea -> MariaDB varbinary.
    copy(&pg, &my, "src", "dst");
    let equal = verify_chunked(&pg, &my, "src", "dst");
    my.exec("UPDATE {s}.dst SET v = 'changed' WHERE n = 1234")
        .await;
    let changed = verify_chunked(&pg, &my, "src", "dst");
    let key = my.scalar("SELECT HEX(UNHEX(MD5('1234')))").await;
    equal_then_only(&equal, &changed, &[&format!("different values {key}")]);

    // MariaDB binary(16) -> PostgreSQL bytea.
    copy(&my, &pg, "fixed", "back16");
    let equal = verify_chunked(&my, &pg, "fixed", "back16");
    pg.exec("UPDATE {s}.back16 SET v = 'changed' WHERE n = 777")
        .await;
    let changed = verify_chunked(&my, &pg, "fixed", "back16");
    let key = my.scalar("SELECT HEX(UNHEX(MD5('777')))").await;
    equal_then_only(&equal, &changed, &[&format!("different values {key}")]);
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decimals_of_another_scale_compare_by_value() {
    let pg = TestDb::new("vx_dec").await;
    let my = TestDb::mysql("vx_dec").await;
    // The key is a decimal too: its bounds and its text cross engines.
    pg.exec(
        "CREATE TABLE {s}.src (k numeric(20,4) PRIMARY KEY, amount numeric(30,10), whole numeric(30,10));
         INSERT INTO {s}.src SELECT g / 4.0, (g - 1000) * 1.5 / 7, g * 100
           FROM generate_series(1, 2000) g;
         INSERT INTO {s}.src VALUES (-1, 0, 0), (-2, -0.5, NULL), (-3, 1.5, 1e17)",
    )
    .await;
    // Two more places, and the same integer digits (a narrower target is
    // refused by the copy).
    my.exec("CREATE TABLE {s}.dst (k decimal(22,6) PRIMARY KEY, amount decimal(32,12), whole decimal(32,12))")
        .await;
    copy(&pg, &my, "src", "dst");
    assert_eq!(
        my.scalar("SELECT CAST(amount AS CHAR) FROM {s}.dst WHERE k = -3")
            .await,
        "1.500000000000"
    );
    let equal = verify_chunked(&pg, &my, "src", "dst");
    my.exec("UPDATE {s}.dst SET amount = amount + 0.000000000001 WHERE k = 300.25")
        .await;
    let changed = verify_chunked(&pg, &my, "src", "dst");
    equal_then_only(&equal, &changed, &["different values 300.25"]);

    // numeric(30,10) against decimal(30,12), the same values written on
    // each side (no copy): 1.5000000000 and 1.500000000000 are equal.
    let values: Vec<String> = (1..=600)
        .map(|i| {
            let v = match i % 6 {
                0 => format!("{}.5", i - 300),
                1 => format!("-0.{i:010}"),
                2 => format!("{}", i * 1000),
                3 => "0".to_string(),
                4 => format!("123456789012345678.{:010}", i * 7),
                _ => format!("{}.0000000001", i),
            };
            format!("({i}, {v})")
        })
        .collect();
    let rows = values.join(", ");
    pg.exec(&format!(
        "CREATE TABLE {{s}}.a (id int PRIMARY KEY, v numeric(30,10)); INSERT INTO {{s}}.a VALUES {rows}"
    ))
    .await;
    my.exec(&format!(
        "CREATE TABLE {{s}}.b (id int PRIMARY KEY, v decimal(30,12)); INSERT INTO {{s}}.b VALUES {rows}"
    ))
    .await;
    assert_eq!(
        my.scalar("SELECT CAST(v AS CHAR) FROM {s}.b WHERE id = 6")
            .await,
        "-294.500000000000"
    );
    let equal = verify_chunked(&pg, &my, "a", "b");
    my.exec("UPDATE {s}.b SET v = v + 0.000000000001 WHERE id = 4")
        .await;
    let changed = verify_chunked(&pg, &my, "a", "b");
    equal_then_only(&equal, &changed, &["different values 4"]);
    my.cleanup().await;
    pg.cleanup().await;
}

/// A reproducible spread of doubles: random bit patterns (every
/// exponent, subnormals), random magnitudes, integers past 2^53, and the
/// values whose printed forms differ between the engines.
fn doubles(n: usize) -> Vec<f64> {
    let mut vals: Vec<f64> = vec![
        1e-5,
        -1e-5,
        0.00001234,
        1e-7,
        123456789012345680000.0,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        2.225073858507201e-308,
        0.0,
        -0.0,
        0.1 + 0.2,
        1e15,
        1e16,
        1e17,
        5.299064834871378e16,
        9007199254740993.0,
        123456789012345.6,
        4.4501477170144023e-308,
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while vals.len() < n {
        let bits = next();
        let v = match bits % 4 {
            0 | 1 => f64::from_bits(next()),
            2 => (next() as f64 / u64::MAX as f64 - 0.5) * 10f64.powi((next() % 50) as i32 - 25),
            _ => ((next() >> 4) as i64 - (1 << 59)) as f64,
        };
        if v.is_finite() {
            vals.push(v);
        }
    }
    vals
}

#[tokio::test(flavor = "multi_thread")]
async fn doubles_compare_by_value_whatever_each_engine_prints() {
    let pg = TestDb::new("vx_dbl").await;
    let my = TestDb::mysql("vx_dbl").await;
    let vals = doubles(10_000);
    pg.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, x double precision, r real);
         CREATE TABLE {s}.back (id bigint PRIMARY KEY, x double precision, r real)",
    )
    .await;
    for (at, batch) in vals.chunks(2000).enumerate() {
        let rows: Vec<String> = batch
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = at * 2000 + i + 1;
                let r = *v as f32;
                let r = if r.is_finite() {
                    format!("'{r:e}'")
                } else {
                    "NULL".into()
                };
                format!("({id}, '{v:e}', {r})")
            })
            .collect();
        pg.exec(&format!("INSERT INTO {{s}}.src VALUES {}", rows.join(", ")))
            .await;
    }
    my.exec("CREATE TABLE {s}.dst (id bigint PRIMARY KEY, x double, r float)")
        .await;
    copy(&pg, &my, "src", "dst");
    // The engines print these differently; the values are the same.
    assert_eq!(
        my.scalar("SELECT CAST(x AS CHAR) FROM {s}.dst WHERE id = 1")
            .await,
        "0.00001"
    );
    assert_eq!(
        pg.scalar("SELECT x::text FROM {s}.src WHERE id = 1").await,
        "1e-05"
    );
    let equal = verify_chunked(&pg, &my, "src", "dst");
    // The next double after 1e-5: one bit apart.
    my.exec("UPDATE {s}.dst SET x = 1.0000000000000002e-5 WHERE id = 1")
        .await;
    let changed = verify_chunked(&pg, &my, "src", "dst");
    equal_then_only(&equal, &changed, &["different values 1"]);

    // And back: MariaDB -> PostgreSQL.
    my.exec("UPDATE {s}.dst SET x = 1e-5 WHERE id = 1").await;
    copy(&my, &pg, "dst", "back");
    let equal = verify_chunked(&my, &pg, "dst", "back");
    pg.exec("UPDATE {s}.back SET r = 0.1 WHERE id = 5000").await;
    let changed = verify_chunked(&my, &pg, "dst", "back");
    equal_then_only(&equal, &changed, &["different values 5000"]);
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_keys_ordered_otherwise_by_each_engine_compare_exactly() {
    let pg = TestDb::new("vx_coll").await;
    let my = TestDb::mysql("vx_coll").await;
    // PostgreSQL's C order puts 'B' before 'a'; MariaDB's
    // utf8mb4_general_ci puts it after: chunk bounds from one side hold
    // other rows on the other. Keys stay distinct case-insensitively.
    pg.exec(
        "CREATE TABLE {s}.src (k text PRIMARY KEY, v int NOT NULL);
         INSERT INTO {s}.src SELECT CASE WHEN g % 2 = 0 THEN upper(md5(g::text)) ELSE md5(g::text) END
             || CASE WHEN g % 3 = 0 THEN ' é' ELSE '_x' END, g
           FROM generate_series(1, 1200) g",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (k varchar(64) PRIMARY KEY, v int NOT NULL)")
        .await;
    copy(&pg, &my, "src", "dst");
    let equal = verify_chunked(&pg, &my, "src", "dst");
    assert!(
        stderr(&equal).contains("note: key column(s) k are text"),
        "{}",
        stderr(&equal)
    );
    let changed_key = pg.scalar("SELECT k FROM {s}.src WHERE v = 500").await;
    let missing_key = pg.scalar("SELECT k FROM {s}.src WHERE v = 1001").await;
    my.exec(
        "UPDATE {s}.dst SET v = -1 WHERE v = 500;
         DELETE FROM {s}.dst WHERE v = 1001;
         INSERT INTO {s}.dst VALUES ('Zextra', 5)",
    )
    .await;
    let changed = verify_chunked(&pg, &my, "src", "dst");
    equal_then_only(
        &equal,
        &changed,
        &[
            &format!("different values {changed_key}"),
            "extra in target Zextra",
            &format!("missing in target {missing_key}"),
        ],
    );
    my.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_columns_are_compared_as_text_and_say_so() {
    let pg = TestDb::new("vx_json").await;
    let my = TestDb::mysql("vx_json").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, doc jsonb);
         INSERT INTO {s}.src SELECT g, jsonb_build_object('b', g, 'a', jsonb_build_array(g, 2.50)) \
           FROM generate_series(1, 300) g;
         CREATE TABLE {s}.back (id int PRIMARY KEY, doc jsonb)",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id int PRIMARY KEY, doc json)")
        .await;
    // jsonb's text, written as it is into MariaDB's JSON: equal.
    copy(&pg, &my, "src", "dst");
    let out = verify(&pg, &my, "src", "dst");
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("json column(s) doc are compared as text"),
        "{}",
        stderr(&out)
    );
    // A document MariaDB keeps as written, which jsonb rewrites: the
    // same document, another text, and the note says why it differs.
    my.exec(r#"UPDATE {s}.dst SET doc = '{"b":7,  "a":[7,2.50]}' WHERE id = 7"#)
        .await;
    copy(&my, &pg, "dst", "back");
    let out = verify(&my, &pg, "dst", "back");
    expect_exit(&out, 3);
    assert_eq!(named_keys(&out), ["different values 7"], "{}", stdout(&out));
    assert!(
        stderr(&out).contains("jsonb reorders keys"),
        "{}",
        stderr(&out)
    );
    my.cleanup().await;
    pg.cleanup().await;
}
