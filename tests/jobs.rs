//! Job files (`rowferry run/abort/status JOB.toml`) against real servers:
//! the shipped fixtures in fixtures/jobs end to end, a crash after every
//! phase resumed exactly, an abort after every phase leaving the schema as
//! it was, a held cutover, a real kill -9 mid-copy, bad job files.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const ADD_COLUMN: &str = "add_column_backfill_not_null.toml";
const V2: &str = "orders_to_v2_orders.toml";
const ORDER_COLS: &str = "id, customer_id, status, amount, created_at, note";

/// The seed's `orders` (as fixtures/orders_pg.sql makes it): ids with
/// gaps, microsecond timestamps, NULL and multi-byte notes, two indexes.
async fn orders(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.orders (
            id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
            amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL, note text);
         INSERT INTO {{s}}.orders
         SELECT n + (n - 1) / 6, (n * 7919) % 50000 + 1,
                (ARRAY['new','paid','shipped','delivered','cancelled','refunded'])[(n * 13) % 6 + 1],
                ((n * 104729) % 9999991) / 100.0,
                timestamptz '2020-01-01 00:00:00+00' + n * interval '37 seconds'
                    + (n % 1000000) * interval '1 microsecond',
                CASE WHEN n % 5 = 0 THEN NULL
                     WHEN n % 11 = 0 THEN 'Grüße aus Köln — 注文 ' || n || ' 🚚'
                     WHEN n % 17 = 0 THEN E'it''s, \"quoted\" \\\\ back\\tslash\\nsecond line ' || n
                     ELSE 'order ' || n END
         FROM generate_series(1::bigint, {rows}::bigint) AS n;
         CREATE INDEX orders_customer_id_idx ON {{s}}.orders (customer_id);
         CREATE INDEX orders_created_at_idx ON {{s}}.orders (created_at);
         ANALYZE {{s}}.orders;"
    ))
    .await;
}

/// The shipped fixture, copied into the test's directory (its state and
/// checkpoints are written beside it), unchanged.
fn fixture(db: &TestDb, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jobs")
        .join(name);
    let dst = db.path(name);
    std::fs::copy(&src, &dst).expect("copy the fixture");
    dst
}

fn job_cmd(db: &TestDb, args: &[&str]) -> std::process::Command {
    let mut cmd = bin();
    cmd.args(args)
        .env("ROWFERRY_URL", db.url())
        .env("ROWFERRY_SCHEMA", &db.schema)
        .env("ROWFERRY_CUTOVER_FLAG", db.path("cutover.go"))
        .env_remove("ROWFERRY_CRASH_AFTER_PHASE")
        .env_remove("ROWFERRY_CRASH_AFTER_CHUNKS")
        .stdin(Stdio::null());
    cmd
}

fn job(db: &TestDb, args: &[&str]) -> Output {
    job_cmd(db, args).output().expect("run rowferry")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `run` with a crash right after `phase` is recorded complete.
fn crash_after(db: &TestDb, path: &Path, phase: &str) {
    let out = job_cmd(db, &["run", p(path), "--cutover-now"])
        .env("ROWFERRY_CRASH_AFTER_PHASE", phase)
        .output()
        .expect("run rowferry");
    assert_eq!(
        out.status.code(),
        None,
        "expected an abort: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("ROWFERRY_CRASH_AFTER_PHASE={phase} reached")),
        "{}",
        stderr(&out)
    );
}

/// Everything in the schema: relations, columns, constraints, indexes,
/// triggers, functions, comments; and the orders' rows.
async fn snapshot(db: &TestDb) -> String {
    let objects = objects(db).await;
    let rows = db.checksum("orders", ORDER_COLS, "id").await;
    format!("{objects}\nrows {rows}")
}

async fn objects(db: &TestDb) -> String {
    db
        .scalar(
            "SELECT concat_ws(E'\\n',
               (SELECT string_agg(relname || ':' || relkind::text || ':' || coalesce(obj_description(oid, 'pg_class'), ''), ',' ORDER BY relname)
                  FROM pg_class WHERE relnamespace = '{s}'::regnamespace),
               (SELECT string_agg(table_name || '.' || column_name || ':' || data_type || ':' || is_nullable, ',' ORDER BY table_name, ordinal_position)
                  FROM information_schema.columns WHERE table_schema = '{s}'),
               (SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ',' ORDER BY conname)
                  FROM pg_constraint WHERE connamespace = '{s}'::regnamespace),
               (SELECT string_agg(indexname || ':' || indexdef, ',' ORDER BY indexname)
                  FROM pg_indexes WHERE schemaname = '{s}'),
               (SELECT string_agg(t.tgname, ',' ORDER BY t.tgname) FROM pg_trigger t
                  JOIN pg_class c ON c.oid = t.tgrelid
                  WHERE c.relnamespace = '{s}'::regnamespace AND NOT t.tgisinternal),
               (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc
                  WHERE pronamespace = '{s}'::regnamespace))",
    )
    .await
}

/// No state file and no checkpoint beside the job file.
fn no_job_files(path: &Path) {
    let dir = path.parent().expect("a directory");
    let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
    let left: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(name) && f != name)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

async fn abort_restores(db: &TestDb, path: &Path, before: &str) {
    let out = job(db, &["abort", p(path)]);
    expect_exit(&out, 0);
    assert_eq!(
        snapshot(db).await,
        before,
        "abort left changes:\n{}",
        stderr(&out)
    );
    no_job_files(path);
}

/// The add-column job's result: amount_cents filled exactly and NOT NULL,
/// no state table left.
async fn add_column_done(db: &TestDb, rows: &str) {
    assert_eq!(
        db.scalar(
            "SELECT is_nullable FROM information_schema.columns WHERE table_schema = '{s}' \
             AND table_name = 'orders' AND column_name = 'amount_cents'"
        )
        .await,
        "NO"
    );
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM {s}.orders WHERE amount_cents IS DISTINCT FROM round(amount * 100)")
            .await,
        "0"
    );
    assert_eq!(db.checksum("orders", ORDER_COLS, "id").await, rows);
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM pg_class WHERE relnamespace = '{s}'::regnamespace AND relname LIKE 'rowferry%'")
            .await,
        "0"
    );
}

#[tokio::test]
async fn add_column_job_end_to_end_then_abort() {
    let db = TestDb::new("job_add").await;
    orders(&db, 6000).await;
    let before = snapshot(&db).await;
    let rows = db.checksum("orders", ORDER_COLS, "id").await;
    let path = fixture(&db, ADD_COLUMN);

    let out = job(&db, &["run", p(&path)]);
    expect_exit(&out, 0);
    add_column_done(&db, &rows).await;
    let status = job(&db, &["status", p(&path), "--json"]);
    expect_exit(&status, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("status JSON");
    assert_eq!(v["complete"], true, "{v}");
    // A rerun of a complete job does nothing.
    let again = job(&db, &["run", p(&path)]);
    expect_exit(&again, 0);
    assert!(
        stderr(&again).contains("already complete"),
        "{}",
        stderr(&again)
    );

    abort_restores(&db, &path, &before).await;
    db.cleanup().await;
}

#[tokio::test]
async fn add_column_job_crash_after_each_phase_resumes_and_aborts() {
    let db = TestDb::new("job_add_crash").await;
    orders(&db, 6000).await;
    let before = snapshot(&db).await;
    let rows = db.checksum("orders", ORDER_COLS, "id").await;
    let path = fixture(&db, ADD_COLUMN);
    for phase in ["expand", "backfill"] {
        // Abort after the phase: as before.
        crash_after(&db, &path, phase);
        abort_restores(&db, &path, &before).await;
        // Rerun after the crash: completes, exactly.
        crash_after(&db, &path, phase);
        let out = job(&db, &["run", p(&path)]);
        expect_exit(&out, 0);
        assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
        add_column_done(&db, &rows).await;
        abort_restores(&db, &path, &before).await;
    }
    // A crash inside the backfill (after 2 chunks): the rerun resumes in
    // the phase, from the checkpoint; an abort there drops the state table.
    for then_abort in [true, false] {
        let out = job_cmd(&db, &["run", p(&path)])
            .env("ROWFERRY_CRASH_AFTER_CHUNKS", "2")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), None, "{}", stderr(&out));
        if then_abort {
            abort_restores(&db, &path, &before).await;
            continue;
        }
        let out = job(&db, &["run", p(&path)]);
        expect_exit(&out, 0);
        assert!(
            stderr(&out).contains("resuming from checkpoint"),
            "{}",
            stderr(&out)
        );
        add_column_done(&db, &rows).await;
        abort_restores(&db, &path, &before).await;
    }
    db.cleanup().await;
}

/// The v2 job's result: `orders` is the new shape with every row, nothing
/// of rowferry's and no old table left.
async fn v2_done(db: &TestDb, rows: &str) {
    assert_eq!(db.checksum("orders", ORDER_COLS, "id").await, rows);
    assert_eq!(
        db.scalar(
            "SELECT count(*)::text FROM {s}.orders WHERE amount_cents <> round(amount * 100)"
        )
        .await,
        "0"
    );
    let tables = db
        .scalar("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = '{s}'::regnamespace AND relkind = 'r'")
        .await;
    assert_eq!(tables, "orders", "only the new orders is left");
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = '{s}'::regnamespace AND NOT t.tgisinternal")
            .await,
        "0"
    );
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM pg_proc WHERE pronamespace = '{s}'::regnamespace")
            .await,
        "0"
    );
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM pg_indexes WHERE schemaname = '{s}' AND indexname = 'v2_orders_customer_id_idx'")
            .await,
        "1"
    );
}

#[tokio::test]
async fn v2_job_held_cutover_then_completes_with_writes_in_between() {
    let db = TestDb::new("job_v2").await;
    orders(&db, 6000).await;
    let path = fixture(&db, V2);

    let out = job(&db, &["run", p(&path)]);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("held before the cutover"),
        "{}",
        stderr(&out)
    );
    let status = job(&db, &["status", p(&path)]);
    expect_exit(&status, 0);
    assert!(
        stdout(&status).contains("held before the cutover"),
        "{}",
        stdout(&status)
    );
    assert_eq!(db.count("v2_orders").await, 6000);
    // A held run stays held.
    expect_exit(&job(&db, &["run", p(&path)]), 0);
    assert_eq!(db.scalar("SELECT count(*)::text FROM pg_class WHERE relnamespace = '{s}'::regnamespace AND relname = 'orders_old'").await, "0");

    // The application writes meanwhile; the sync keeps v2_orders current.
    db.exec(
        "INSERT INTO {s}.orders VALUES (900001, 7, 'new', 12.34, now(), 'late'); \
         UPDATE {s}.orders SET amount = amount + 1, note = 'changed' WHERE id % 10 = 3; \
         DELETE FROM {s}.orders WHERE id % 10 = 4",
    )
    .await;
    let rows = db.checksum("orders", ORDER_COLS, "id").await;

    std::fs::write(db.path("cutover.go"), "").expect("flag file");
    let out = job(&db, &["run", p(&path)]);
    expect_exit(&out, 0);
    assert!(stderr(&out).contains("complete"), "{}", stderr(&out));
    v2_done(&db, &rows).await;
    // Cleanup ran: the job cannot be taken back any more.
    let out = job(&db, &["abort", p(&path)]);
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("cleanup ran"), "{}", stderr(&out));
    db.cleanup().await;
}

async fn reset_v2(db: &TestDb, path: &Path) {
    db.exec("DROP TABLE IF EXISTS {s}.orders, {s}.orders_old, {s}.v2_orders CASCADE")
        .await;
    orders(db, 4000).await;
    let _ = std::fs::remove_file(format!("{}.state", path.display()));
}

const V2_PHASES: [&str; 8] = [
    "expand", "sync", "copy", "indexes", "verify", "cutover", "contract", "cleanup",
];

#[tokio::test]
async fn v2_job_crash_after_each_phase_then_rerun_is_exact() {
    let db = TestDb::new("job_v2_crash").await;
    let path = fixture(&db, V2);
    for phase in V2_PHASES {
        reset_v2(&db, &path).await;
        let rows = db.checksum("orders", ORDER_COLS, "id").await;
        crash_after(&db, &path, phase);
        let out = job(&db, &["run", p(&path), "--cutover-now"]);
        expect_exit(&out, 0);
        if phase != "cleanup" {
            assert!(
                stderr(&out).contains("resuming"),
                "{phase}: {}",
                stderr(&out)
            );
        }
        v2_done(&db, &rows).await;
    }
    db.cleanup().await;
}

#[tokio::test]
async fn v2_job_abort_after_each_phase_leaves_the_schema_as_before() {
    let db = TestDb::new("job_v2_abort").await;
    orders(&db, 4000).await;
    let before = snapshot(&db).await;
    let path = fixture(&db, V2);
    for phase in &V2_PHASES[..7] {
        crash_after(&db, &path, phase);
        abort_restores(&db, &path, &before).await;
    }
    // Held before the cutover (after verify): abort too.
    expect_exit(&job(&db, &["run", p(&path)]), 0);
    abort_restores(&db, &path, &before).await;
    // After cleanup: refused, nothing changed.
    crash_after(&db, &path, "cleanup");
    let after = snapshot(&db).await;
    let out = job(&db, &["abort", p(&path)]);
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("cleanup ran"), "{}", stderr(&out));
    assert_eq!(snapshot(&db).await, after);
    db.cleanup().await;
}

#[tokio::test]
async fn kill_9_mid_copy_then_rerun_is_exact() {
    let db = TestDb::new("job_kill").await;
    orders(&db, 20000).await;
    let rows = db.checksum("orders", ORDER_COLS, "id").await;
    let path = db.path("copy.toml");
    std::fs::write(
        &path,
        "source = \"${ROWFERRY_URL}\"\n\
         table = \"${ROWFERRY_SCHEMA}.orders\"\n\
         target-table = \"${ROWFERRY_SCHEMA}.orders_copy\"\n\
         [[expand]]\n\
         sql = \"CREATE TABLE ${ROWFERRY_SCHEMA}.orders_copy (LIKE ${ROWFERRY_SCHEMA}.orders INCLUDING ALL)\"\n\
         undo = \"DROP TABLE ${ROWFERRY_SCHEMA}.orders_copy\"\n\
         [copy]\n\
         chunk-rows = 500\n\
         chunk-time = \"0\"\n\
         max-rows-per-sec = 4000\n\
         workers = 1\n\
         [verify]\n",
    )
    .expect("job file");
    let mut child = job_cmd(&db, &["run", p(&path), "--progress", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no copy progress:\n{}",
            seen.join("\n")
        );
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        seen.push(line.clone());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["phase"] == "copy" && v["rows_done"].as_u64().unwrap_or(0) >= 2000 {
            break;
        }
    }
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let _ = child.wait();
    assert!(db.count("orders_copy").await < 20000, "killed mid-copy");

    let out = job(&db, &["run", p(&path)]);
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("phase verify"),
        "verify ran: {}",
        stderr(&out)
    );
    assert_eq!(db.checksum("orders_copy", ORDER_COLS, "id").await, rows);
    db.cleanup().await;
}

#[tokio::test]
async fn bad_job_files_are_refused_naming_the_key() {
    let db = TestDb::new("job_bad").await;
    orders(&db, 100).await;
    let before = snapshot(&db).await;
    let write = |name: &str, text: &str| {
        let path = db.path(name);
        std::fs::write(&path, text).expect("job file");
        path
    };
    let unknown = write(
        "unknown.toml",
        "source = \"${ROWFERRY_URL}\"\ntable = \"${ROWFERRY_SCHEMA}.orders\"\n\n[backfill]\nset = \"amount = amount\"\nchunk-rowz = 10\n",
    );
    let out = job(&db, &["run", p(&unknown)]);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("unknown.toml:6: [backfill] unknown key `chunk-rowz`"),
        "{}",
        stderr(&out)
    );
    let no_table = write(
        "no_table.toml",
        "source = \"${ROWFERRY_URL}\"\n[backfill]\nset = \"amount = amount\"\n",
    );
    let out = job(&db, &["run", p(&no_table)]);
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("--table"), "{}", stderr(&out));
    let unset = write(
        "unset.toml",
        "source = \"${ROWFERRY_NO_SUCH_VAR}\"\ntable = \"t\"\n[backfill]\nset = \"a = 1\"\n",
    );
    let out = job(&db, &["run", p(&unset)]);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("ROWFERRY_NO_SUCH_VAR"),
        "{}",
        stderr(&out)
    );
    let top = write(
        "top.toml",
        "source = \"${ROWFERRY_URL}\"\ntable = \"${ROWFERRY_SCHEMA}.orders\"\nbogus = 1\n[backfill]\nset = \"amount = amount\"\n",
    );
    let out = job(&db, &["run", p(&top)]);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("top.toml:3: unknown key `bogus`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&db).await, before, "nothing written");

    // A contract statement without undo: abort refuses, naming it, and
    // changes nothing.
    let contract = write(
        "contract.toml",
        "source = \"${ROWFERRY_URL}\"\n\
         [[expand]]\n\
         sql = \"ALTER TABLE ${ROWFERRY_SCHEMA}.orders ADD COLUMN flag int\"\n\
         undo = \"ALTER TABLE ${ROWFERRY_SCHEMA}.orders DROP COLUMN flag\"\n\
         [[contract]]\n\
         sql = \"ALTER TABLE ${ROWFERRY_SCHEMA}.orders DROP COLUMN note\"\n",
    );
    expect_exit(&job(&db, &["run", p(&contract)]), 0);
    let after = objects(&db).await;
    let out = job(&db, &["abort", p(&contract)]);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("DROP COLUMN note` ran and has no undo"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        objects(&db).await,
        after,
        "nothing changed by the refused abort"
    );
    // The file changed since the run: refused.
    std::fs::write(
        &contract,
        std::fs::read_to_string(&contract)
            .expect("read")
            .replace("flag int", "flag bigint"),
    )
    .expect("rewrite");
    let out = job(&db, &["run", p(&contract)]);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("was changed since its run started"),
        "{}",
        stderr(&out)
    );
    db.cleanup().await;
}

/// MariaDB: a dual-write move into a new table, cutover and cleanup; then
/// an abort after the copy leaves the database as before.
#[tokio::test]
async fn mariadb_v2_job_end_to_end_and_abort() {
    let db = TestDb::mysql("job_my").await;
    let setup = "CREATE TABLE {s}.orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, \
                 amount decimal(12,2) NOT NULL, note text); \
                 INSERT INTO {s}.orders SELECT seq, seq % 97, seq / 7, IF(seq % 5 = 0, NULL, \
                 CONCAT('Grüße ', seq)) FROM seq_1_to_3000";
    db.exec(setup).await;
    let cols = "id, customer_id, amount, note";
    let rows = db.checksum("orders", cols, "id").await;
    let path = db.path("my.toml");
    std::fs::write(
        &path,
        "source = \"${ROWFERRY_URL}\"\n\
         table = \"${ROWFERRY_SCHEMA}.orders\"\n\
         target-table = \"${ROWFERRY_SCHEMA}.v2_orders\"\n\
         map = [\"amount_cents = ROUND(amount * 100)\"]\n\
         [[expand]]\n\
         sql = \"CREATE TABLE ${ROWFERRY_SCHEMA}.v2_orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, amount decimal(12,2) NOT NULL, amount_cents bigint NOT NULL, note text)\"\n\
         undo = \"DROP TABLE ${ROWFERRY_SCHEMA}.v2_orders\"\n\
         [sync]\n\
         [copy]\n\
         chunk-rows = 500\n\
         [verify]\n\
         [cutover]\n\
         reverse-sync = true\n\
         [cleanup]\n",
    )
    .expect("job file");
    let tables = "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES \
                  WHERE TABLE_SCHEMA = '{s}'";
    let triggers = "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.TRIGGERS \
                    WHERE TRIGGER_SCHEMA = '{s}'";

    // Abort after the copy: as before.
    crash_after(&db, &path, "copy");
    assert_eq!(db.scalar(tables).await, "orders,v2_orders");
    let out = job(&db, &["abort", p(&path)]);
    expect_exit(&out, 0);
    assert_eq!(db.scalar(tables).await, "orders", "{}", stderr(&out));
    assert_eq!(db.scalar(triggers).await, "0");
    no_job_files(&path);

    // End to end, after a crash right after the cutover.
    crash_after(&db, &path, "cutover");
    let out = job(&db, &["run", p(&path)]);
    expect_exit(&out, 0);
    assert_eq!(db.scalar(tables).await, "orders");
    assert_eq!(db.scalar(triggers).await, "0");
    assert_eq!(db.checksum("orders", cols, "id").await, rows);
    assert_eq!(
        db.scalar("SELECT CAST(COUNT(*) AS CHAR) FROM {s}.orders WHERE amount_cents <> ROUND(amount * 100)")
            .await,
        "0"
    );
    db.cleanup().await;
}
