//! Dual-write sync triggers and verify, on real PostgreSQL and MariaDB:
//! an online copy while a writer inserts (inside and beyond the copied
//! range), updates, changes keys and deletes; afterwards both tables hold
//! the same rows and `verify` says so. Tampering is found and named; a
//! crash mid-copy is resumed exactly; `sync remove` leaves nothing; the
//! user's own triggers keep firing.

mod common;
use common::*;
use mysql_async::prelude::Queryable;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const ROWS: u64 = 20_000;
const MAP: &str = "doubled=amount*2";

fn is_pg(db: &TestDb) -> bool {
    db.url().starts_with("postgres")
}

/// `src` with even keys 2..=2*ROWS (odd keys are free for inserts inside
/// the copied range), `dst` in a new shape with a computed column, and
/// user triggers on `src`: a BEFORE trigger that stamps `note` and an
/// AFTER trigger that writes an audit row.
async fn setup(db: &TestDb) {
    if is_pg(db) {
        db.exec(&format!(
            "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, name text, amount numeric(10,2), note text);
             CREATE TABLE {{s}}.dst (id bigint PRIMARY KEY, name text, amount numeric(10,2),
                                     doubled numeric(12,2), note text, created timestamptz DEFAULT now());
             CREATE TABLE {{s}}.audit (id bigint);
             INSERT INTO {{s}}.src SELECT g * 2, 'n' || g, g / 7.0, NULL FROM generate_series(1, {ROWS}) g;
             CREATE FUNCTION {{s}}.stamp() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.note := 'stamped ' || NEW.name; RETURN NEW; END $$;
             CREATE TRIGGER user_stamp BEFORE INSERT OR UPDATE ON {{s}}.src FOR EACH ROW EXECUTE FUNCTION {{s}}.stamp();
             CREATE FUNCTION {{s}}.audit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO {{s}}.audit VALUES (NEW.id); RETURN NULL; END $$;
             CREATE TRIGGER user_audit AFTER INSERT ON {{s}}.src FOR EACH ROW EXECUTE FUNCTION {{s}}.audit();
             ANALYZE {{s}}.src;"
        ))
        .await;
    } else {
        db.exec(&format!(
            "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, name varchar(100), amount decimal(10,2), note varchar(120));
             CREATE TABLE {{s}}.dst (id bigint PRIMARY KEY, name varchar(100), amount decimal(10,2),
                                     doubled decimal(12,2), note varchar(120), created datetime(6) DEFAULT CURRENT_TIMESTAMP(6));
             CREATE TABLE {{s}}.audit (id bigint);
             INSERT INTO {{s}}.src SELECT seq * 2, CONCAT('n', seq), seq / 7, NULL FROM seq_1_to_{ROWS};
             CREATE TRIGGER {{s}}.user_stamp_i BEFORE INSERT ON {{s}}.src FOR EACH ROW SET NEW.note = CONCAT('stamped ', NEW.name);
             CREATE TRIGGER {{s}}.user_stamp_u BEFORE UPDATE ON {{s}}.src FOR EACH ROW SET NEW.note = CONCAT('stamped ', NEW.name);
             CREATE TRIGGER {{s}}.user_audit AFTER INSERT ON {{s}}.src FOR EACH ROW INSERT INTO {{s}}.audit VALUES (NEW.id);
             ANALYZE TABLE {{s}}.src;"
        ))
        .await;
    }
}

/// `--source ... --table src --target-table dst --map ...` after `command`.
fn pair(db: &TestDb, command: &[&str]) -> Vec<String> {
    with(
        command.iter().map(|s| s.to_string()).collect(),
        &[
            "--source",
            &db.url(),
            "--table",
            &db.q("src"),
            "--target-table",
            &db.q("dst"),
            "--map",
            MAP,
        ],
    )
}

fn dual_write_copy(db: &TestDb) -> Vec<String> {
    with(
        db.copy_args("src", "dst"),
        &[
            "--map",
            MAP,
            "--dual-write",
            "--workers",
            "2",
            "--chunk-rows",
            "400",
            "--chunk-time",
            "0",
            "--max-rows-per-sec",
            "8000",
            "--progress",
            "none",
        ],
    )
}

/// Source (mapped) and target hold the same rows, value for value.
async fn assert_same(db: &TestDb) {
    let src = db
        .checksum("src", "id, name, amount, amount * 2, note", "id")
        .await;
    let dst = db
        .checksum("dst", "id, name, amount, doubled, note", "id")
        .await;
    assert_eq!(src, dst, "source and target differ");
}

fn verify(db: &TestDb, extra: &[&str]) -> std::process::Output {
    run(&with(
        pair(db, &["verify"]),
        &[&["--progress", "none", "--workers", "2"], extra].concat(),
    ))
}

/// rowferry objects left in the test's schema.
async fn rowferry_objects(db: &TestDb) -> String {
    if is_pg(db) {
        db.scalar(
            "SELECT ((SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = '{s}' AND t.tgname LIKE 'rowferry%')
                   + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = '{s}' AND p.proname LIKE 'rowferry%'))::text",
        )
        .await
    } else {
        db.scalar(
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.TRIGGERS
             WHERE TRIGGER_SCHEMA = '{s}' AND TRIGGER_NAME LIKE 'rowferry%'",
        )
        .await
    }
}

/// The application: random inserts inside and beyond the copied range,
/// updates, key-changing updates and deletes, until stopped.
enum Writer {
    /// PostgreSQL: pgbench with a custom script.
    Pgbench(Child, std::path::PathBuf),
    /// MariaDB: a scripted client on three connections.
    Script {
        stop: Arc<AtomicBool>,
        done: Arc<AtomicU64>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    },
}

impl Writer {
    async fn start(db: &TestDb) -> Writer {
        if is_pg(db) {
            Writer::pgbench(db)
        } else {
            Writer::script(db).await
        }
    }

    fn pgbench(db: &TestDb) -> Writer {
        let s = &db.schema;
        let script = format!(
            "\\set r random(1, 100)
\\set inside random(0, {ROWS}) * 2 + 1
\\set existing random(1, {ROWS}) * 2
\\set fresh random(1000000000, 900000000000000)
\\if :r <= 20
INSERT INTO {s}.src (id, name, amount) VALUES (:inside, 'inside ' || :inside, 1.25) ON CONFLICT (id) DO NOTHING;
\\elif :r <= 35
INSERT INTO {s}.src (id, name, amount) VALUES (:fresh, 'beyond', 2.5) ON CONFLICT (id) DO NOTHING;
\\elif :r <= 65
UPDATE {s}.src SET name = 'updated ' || :r, amount = amount + 1 WHERE id = :existing;
\\elif :r <= 80
UPDATE {s}.src SET id = :fresh WHERE id = :existing;
\\else
DELETE FROM {s}.src WHERE id = :existing;
\\endif
"
        );
        let path = db.path("writer.pgbench");
        std::fs::write(&path, script).expect("pgbench script");
        let log = db.path("pgbench.log");
        let child = Command::new("pgbench")
            .args(["-n", "-c", "3", "-j", "1", "-T", "600", "-f"])
            .arg(&path)
            .arg(pg_url())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("pgbench log"))
            .spawn()
            .expect("pgbench (from the PostgreSQL packages) must be installed");
        Writer::Pgbench(child, log)
    }

    async fn script(db: &TestDb) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for n in 0..3u64 {
            let (stop, done, s) = (stop.clone(), done.clone(), db.schema.clone());
            let mut conn = connect_mysql().await;
            tasks.push(tokio::spawn(async move {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (n + 1);
                let mut next = move |m: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % m
                };
                while !stop.load(Ordering::Relaxed) {
                    let r = next(100);
                    let inside = next(ROWS + 1) * 2 + 1;
                    let existing = (next(ROWS) + 1) * 2;
                    let fresh = 1_000_000_000 + next(900_000_000_000_000);
                    let sql = match r {
                        0..20 => format!(
                            "INSERT IGNORE INTO {s}.src (id, name, amount) VALUES ({inside}, 'inside {inside}', 1.25)"
                        ),
                        20..35 => format!(
                            "INSERT IGNORE INTO {s}.src (id, name, amount) VALUES ({fresh}, 'beyond', 2.5)"
                        ),
                        35..65 => format!(
                            "UPDATE {s}.src SET name = 'updated {r}', amount = amount + 1 WHERE id = {existing}"
                        ),
                        65..80 => format!("UPDATE {s}.src SET id = {fresh} WHERE id = {existing}"),
                        _ => format!("DELETE FROM {s}.src WHERE id = {existing}"),
                    };
                    match conn.query_drop(&sql).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        // What an application retries: deadlocks and lock waits.
                        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1213 | 1205) => {}
                        Err(e) => panic!("writer: {sql}: {e}"),
                    }
                }
            }));
        }
        Writer::Script { stop, done, tasks }
    }

    /// Stop writing; fails the test if the writer hit an error.
    async fn stop(self, db: &TestDb) {
        match self {
            Writer::Pgbench(mut child, log) => {
                let still_running = child.try_wait().expect("pgbench status").is_none();
                let _ = child.kill();
                let _ = child.wait();
                let errors = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(still_running, "pgbench ended early: {errors}");
                assert!(
                    !errors.contains("aborted") && !errors.contains("ERROR"),
                    "the writer hit errors: {errors}"
                );
                // The server rolls back what the killed clients had open.
                for _ in 0..100 {
                    let open = db
                        .scalar("SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgbench'")
                        .await;
                    if open == "0" {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("pgbench sessions did not end");
            }
            Writer::Script { stop, done, tasks } => {
                stop.store(true, Ordering::Relaxed);
                for t in tasks {
                    t.await.expect("writer task");
                }
                assert!(done.load(Ordering::Relaxed) > 0, "the writer wrote nothing");
            }
        }
    }
}

/// `expr` as text in SQL (PostgreSQL's CHAR is char(1)).
fn text(db: &TestDb, expr: &str) -> String {
    if is_pg(db) {
        format!("({expr})::text")
    } else {
        format!("CAST({expr} AS CHAR)")
    }
}

async fn count_where(db: &TestDb, table: &str, cond: &str) -> i64 {
    db.scalar(&format!(
        "SELECT {} FROM {{s}}.{table} WHERE {cond}",
        text(db, "COUNT(*)")
    ))
    .await
    .parse()
    .expect("count")
}

/// The writer's work reached the target: keys changed or inserted beyond
/// the copied range, rows inserted inside it, updates, deletes.
async fn assert_writer_wrote(db: &TestDb) {
    assert!(count_where(db, "dst", "id > 1000000000").await > 0);
    assert!(count_where(db, "dst", "name LIKE 'updated%'").await > 0);
    assert!(count_where(db, "dst", "id % 2 = 1 AND id < 100000").await > 0);
    assert!(
        count_where(db, "dst", "id % 2 = 0 AND id <= 40000").await < ROWS as i64,
        "some rows were deleted or re-keyed"
    );
}

async fn dual_write_copy_under_a_writer_is_exact(db: TestDb) {
    setup(&db).await;
    let writer = Writer::start(&db).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let args = dual_write_copy(&db);
    let out = tokio::task::spawn_blocking(move || run(&args))
        .await
        .expect("copy");
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("stay installed"), "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.stop(&db).await;
    assert_same(&db).await;
    assert_writer_wrote(&db).await;
    let out = verify(&db, &[]);
    expect_exit(&out, 0);
    assert!(stdout(&out).contains(": equal;"), "{}", stdout(&out));

    // The user's triggers fired all along and still do after removal.
    let audited = db.count("audit").await;
    assert!(audited > 0);
    expect_exit(&run(&pair(&db, &["sync", "remove"])), 0);
    assert_eq!(rowferry_objects(&db).await, "0", "sync remove left objects");
    // A key the writer never uses (its keys are positive).
    db.exec("INSERT INTO {s}.src (id, name, amount) VALUES (-7, 'after', 1)")
        .await;
    assert_eq!(db.count("audit").await, audited + 1);
    assert_eq!(
        db.scalar("SELECT note FROM {s}.src WHERE id = -7").await,
        "stamped after"
    );
    // ...and no longer reaches the target.
    assert_eq!(count_where(&db, "dst", "id = -7").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dual_write_copy_under_pgbench_is_exact() {
    dual_write_copy_under_a_writer_is_exact(TestDb::new("dw_copy").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_dual_write_copy_under_a_writer_is_exact() {
    dual_write_copy_under_a_writer_is_exact(TestDb::mysql("dw_copy").await).await;
}

/// How the copy dies mid-way.
#[derive(Clone, Copy)]
enum Crash {
    /// A real `kill -9` once some chunks committed.
    Kill9,
    /// The deterministic crash point: abort right after the 5th commit.
    AfterFiveChunks,
}

async fn crash_mid_copy_then_rerun_is_exact(db: TestDb, crash: Crash) {
    setup(&db).await;
    let writer = Writer::start(&db).await;
    let args = dual_write_copy(&db);
    let crash_args = args.clone();
    tokio::task::spawn_blocking(move || match crash {
        Crash::AfterFiveChunks => {
            run_crashing_after(&crash_args, 5);
        }
        Crash::Kill9 => {
            // Running adds --progress json; drop the test's own --progress.
            let at = crash_args
                .iter()
                .position(|a| a == "--progress")
                .expect("--progress");
            let mut args = crash_args.clone();
            args.drain(at..at + 2);
            let mut copy = Running::start(&args);
            copy.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(5));
            copy.signal(libc::SIGKILL);
            let (code, _) = copy.finish();
            assert_eq!(code, None, "killed by a signal");
        }
    })
    .await
    .expect("crashing copy");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::task::spawn_blocking(move || run(&args))
        .await
        .expect("copy");
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    // The writer is still going: verify reads both sides in one snapshot
    // and re-reads what differs, so live writes raise no false alarm.
    let out = verify(&db, &[]);
    expect_exit(&out, 0);
    writer.stop(&db).await;
    assert_same(&db).await;
    expect_exit(&verify(&db, &[]), 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_kill_9_mid_dual_write_copy_then_rerun_is_exact() {
    crash_mid_copy_then_rerun_is_exact(TestDb::new("dw_crash").await, Crash::Kill9).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_crash_mid_dual_write_copy_then_rerun_is_exact() {
    crash_mid_copy_then_rerun_is_exact(TestDb::mysql("dw_crash").await, Crash::AfterFiveChunks)
        .await;
}

async fn verify_names_tampered_keys(db: TestDb) {
    setup(&db).await;
    let args = with(
        db.copy_args("src", "dst"),
        &["--map", MAP, "--progress", "none"],
    );
    expect_exit(&run(&args), 0);
    expect_exit(&verify(&db, &[]), 0);
    db.exec(
        "UPDATE {s}.dst SET name = 'tampered' WHERE id = 1234;
         UPDATE {s}.dst SET doubled = doubled + 0.01 WHERE id = 30000;
         DELETE FROM {s}.dst WHERE id = 4000;
         INSERT INTO {s}.dst (id, name, amount, doubled) VALUES (4001, 'extra', 1, 2), (99999999, 'far', 1, 2);",
    )
    .await;
    let out = verify(&db, &["--json"]);
    expect_exit(&out, 3);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("report JSON: {e}: {}", stdout(&out)));
    assert_eq!(report["status"], "different");
    assert_eq!(report["rows_compared"], ROWS);
    let mut found: Vec<(String, String)> = report["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or("").to_string(),
                d["key"][0].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, String)> = [
        ("different_values", "1234"),
        ("different_values", "30000"),
        ("extra_in_target", "4001"),
        ("extra_in_target", "99999999"),
        ("missing_in_target", "4000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(found, expected);
    // The human report names them too.
    let out = verify(&db, &[]);
    expect_exit(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("missing in target: key (4000)"), "{text}");
    assert!(text.contains("extra in target: key (99999999)"), "{text}");
    assert!(text.contains("different values: key (1234)"), "{text}");
    assert!(
        stderr(&out).contains("verify found differences"),
        "{}",
        stderr(&out)
    );
    // --max-differences caps the list and says so.
    let out = verify(&db, &["--json", "--max-differences", "2"]);
    expect_exit(&out, 3);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(report["differences"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["truncated"], true);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_verify_names_tampered_keys() {
    verify_names_tampered_keys(TestDb::new("dw_tamper").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_verify_names_tampered_keys() {
    verify_names_tampered_keys(TestDb::mysql("dw_tamper").await).await;
}

async fn sync_install_is_idempotent_and_follows_where(db: TestDb) {
    setup(&db).await;
    let install = with(pair(&db, &["sync", "install"]), &["--where", "amount > 10"]);
    expect_exit(&run(&install), 0);
    let again = run(&install);
    expect_exit(&again, 0);
    assert!(
        stderr(&again).contains("already installed and current"),
        "{}",
        stderr(&again)
    );
    let status = run(&with(
        pair(&db, &["sync", "status"]),
        &["--where", "amount > 10", "--json"],
    ));
    expect_exit(&status, 0);
    let st: serde_json::Value = serde_json::from_str(stdout(&status).trim()).expect("status JSON");
    assert!(
        st["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .all(|o| o["state"] == "current"),
        "{st}"
    );
    // Without the --where the installed triggers are someone else's
    // definition: status says stale, a copy refuses.
    let status = run(&pair(&db, &["sync", "status"]));
    assert!(stdout(&status).contains("stale"), "{}", stdout(&status));
    let refused = run(&with(
        db.copy_args("src", "dst"),
        &["--map", MAP, "--progress", "none"],
    ));
    expect_exit(&refused, 2);
    assert!(
        stderr(&refused).contains("another --map/--where"),
        "{}",
        stderr(&refused)
    );

    // A row that starts, stops and starts again matching --where.
    db.exec("INSERT INTO {s}.src (id, name, amount) VALUES (1, 'w', 50)")
        .await;
    let doubled = |id: u32| {
        format!(
            "SELECT {} FROM {{s}}.dst WHERE id = {id}",
            text(&db, "doubled")
        )
    };
    assert_eq!(db.scalar(&doubled(1)).await, "100.00");
    db.exec("UPDATE {s}.src SET amount = 5 WHERE id = 1").await;
    assert_eq!(count_where(&db, "dst", "id = 1").await, 0);
    db.exec("UPDATE {s}.src SET amount = 20, id = 3 WHERE id = 1")
        .await;
    assert_eq!(db.scalar(&doubled(3)).await, "40.00");
    db.exec("DELETE FROM {s}.src WHERE id = 3").await;
    assert_eq!(db.count("dst").await, 0);

    expect_exit(&run(&pair(&db, &["sync", "remove"])), 0);
    expect_exit(&run(&pair(&db, &["sync", "remove"])), 0);
    assert_eq!(rowferry_objects(&db).await, "0");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_sync_install_is_idempotent_and_follows_where() {
    sync_install_is_idempotent_and_follows_where(TestDb::new("dw_sync").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_sync_install_is_idempotent_and_follows_where() {
    sync_install_is_idempotent_and_follows_where(TestDb::mysql("dw_sync").await).await;
}

/// A long transaction holds the source table: install gives up after its
/// short lock waits (never queueing the application for long), leaves
/// nothing behind, and succeeds once the transaction ends.
async fn install_gives_up_behind_a_long_transaction(db: TestDb) {
    setup(&db).await;
    let begin = if is_pg(&db) {
        "BEGIN"
    } else {
        "START TRANSACTION"
    };
    db.exec(&format!(
        "{begin}; UPDATE {{s}}.src SET amount = amount WHERE id = 2"
    ))
    .await;
    let install = with(
        pair(&db, &["sync", "install"]),
        &["--lock-timeout", "300ms", "--max-retries", "2"],
    );
    let args = install.clone();
    let out = tokio::task::spawn_blocking(move || run(&args))
        .await
        .expect("install");
    expect_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("another transaction holds a lock"), "{err}");
    assert!(err.contains("gave up after 2 retries"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    db.exec("COMMIT").await;
    assert_eq!(
        rowferry_objects(&db).await,
        "0",
        "a failed install left objects"
    );
    expect_exit(&run(&install), 0);
    assert_eq!(
        rowferry_objects(&db).await,
        if is_pg(&db) { "2" } else { "3" }
    );
    expect_exit(&run(&pair(&db, &["sync", "remove"])), 0);
    assert_eq!(rowferry_objects(&db).await, "0");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_install_gives_up_behind_a_long_transaction() {
    install_gives_up_behind_a_long_transaction(TestDb::new("dw_lock").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_install_gives_up_behind_a_long_transaction() {
    install_gives_up_behind_a_long_transaction(TestDb::mysql("dw_lock").await).await;
}

/// `verify --target` on another database: each side read on its own
/// connection; differences found and named all the same.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_verify_across_databases() {
    let a = TestDb::mysql("dw_xa").await;
    let b = TestDb::mysql("dw_xb").await;
    for db in [&a, &b] {
        db.exec(
            "CREATE TABLE {s}.t (id int PRIMARY KEY, v varchar(20), b varbinary(8));
             INSERT INTO {s}.t SELECT seq, CONCAT('v', seq), UNHEX('00ff') FROM seq_1_to_3000;",
        )
        .await;
    }
    let base = mysql_url();
    let other = format!(
        "{}/{}",
        &base[..base.rfind('/').expect("URL path")],
        b.schema
    );
    let args = |extra: &[&str]| {
        with(
            vec!["verify".into()],
            &[
                &[
                    "--source",
                    &a.url(),
                    "--target",
                    &other,
                    "--table",
                    &a.q("t"),
                    "--target-table",
                    &b.q("t"),
                    "--progress",
                    "none",
                ],
                extra,
            ]
            .concat(),
        )
    };
    expect_exit(&run(&args(&[])), 0);
    b.exec("UPDATE {s}.t SET b = UNHEX('00fe') WHERE id = 2999")
        .await;
    let out = run(&args(&[]));
    expect_exit(&out, 3);
    assert!(
        stdout(&out).contains("different values: key (2999)"),
        "{}",
        stdout(&out)
    );
    a.cleanup().await;
    b.cleanup().await;
}

/// MySQL does not fire triggers for rows a cascading foreign key changes:
/// `sync install` says so, naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_sync_install_warns_about_cascading_foreign_keys() {
    let db = TestDb::mysql("dw_cascade").await;
    db.exec(
        "CREATE TABLE {s}.parent (id int PRIMARY KEY);
         CREATE TABLE {s}.src (id bigint PRIMARY KEY, parent_id int, name varchar(20), amount decimal(10,2),
             CONSTRAINT src_parent_fk FOREIGN KEY (parent_id) REFERENCES {s}.parent (id) ON DELETE CASCADE);
         CREATE TABLE {s}.dst (id bigint PRIMARY KEY, parent_id int, name varchar(20), amount decimal(10,2),
             doubled decimal(12,2));",
    )
    .await;
    let out = run(&pair(&db, &["sync", "install"]));
    expect_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("warning: foreign key `src_parent_fk`") && err.contains("not mirrored"),
        "{err}"
    );
    expect_exit(&run(&pair(&db, &["sync", "remove"])), 0);
    assert_eq!(rowferry_objects(&db).await, "0");
    db.cleanup().await;
}
