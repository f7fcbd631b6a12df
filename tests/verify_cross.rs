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
