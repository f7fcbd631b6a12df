//! The framework recipes of docs/recipes, run for real. The Alembic project
//! in docs/recipes/alembic migrates a seeded `orders` table (add a column,
//! backfill it with rowferry, NOT NULL) against the local PostgreSQL, in
//! each of its data-step variants, including a backfill killed half-way and
//! resumed by the next `alembic upgrade head`. (The Flyway and Liquibase
//! recipes are documented examples, not run here.)
//!
//! Alembic, SQLAlchemy and psycopg2 (docs/recipes/alembic/requirements.txt)
//! are installed once into a virtualenv cached outside the repository,
//! under $ROWFERRY_RECIPES_CACHE or ~/.cache/rowferry-recipes-venv, keyed by
//! the requirements and the Python. No python3 with venv is a failure, not a
//! skip.

mod common;

use common::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const ROWS: u32 = 20_000;

fn recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes/alembic")
}

fn python() -> String {
    std::env::var("ROWFERRY_PYTHON").unwrap_or_else(|_| "python3".into())
}

const NO_PYTHON: &str = "the Alembic recipe test needs python3 with the venv module and pip \
     (Debian: apt-get install -y python3-venv; scripts/services.sh installs it on a fresh \
     machine), or ROWFERRY_PYTHON pointing at such a python3";

fn checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}; {NO_PYTHON}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}\n{NO_PYTHON}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// The cached virtualenv's python, with the pinned requirements installed.
/// Test processes running in parallel take turns through a lock file, so
/// only one of them builds it. Once per test process.
fn venv_python() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(build_venv).clone()
}

fn build_venv() -> PathBuf {
    let requirements = recipe_dir().join("requirements.txt");
    let reqs = std::fs::read(&requirements).expect("read requirements.txt");
    let version = checked(
        Command::new(python()).args(["-c", "import sys, venv; print(sys.version)"]),
        "python3 with venv",
    );
    let mut h = DefaultHasher::new();
    (reqs, python(), version.stdout).hash(&mut h);
    let root = std::env::var_os("ROWFERRY_RECIPES_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME (or ROWFERRY_RECIPES_CACHE)");
            PathBuf::from(home).join(".cache/rowferry-recipes-venv")
        });
    std::fs::create_dir_all(&root).expect("create the venv cache directory");
    let key = format!("{:016x}", h.finish());
    let lock = std::fs::File::create(root.join(format!("{key}.lock"))).expect("venv lock file");
    lock.lock().expect("lock the venv cache");
    let dir = root.join(key);
    let py = dir.join("bin/python");
    let works = Command::new(&py)
        .args(["-c", "import alembic, sqlalchemy, psycopg2"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        let _ = std::fs::remove_dir_all(&dir); // half-built or broken
        checked(
            Command::new(python()).arg("-m").arg("venv").arg(&dir),
            "python3 -m venv",
        );
        checked(
            Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
            "pip install -r docs/recipes/alembic/requirements.txt",
        );
    }
    py
}

/// One run of the recipe's Alembic, on the test's schema, with the
/// rowferry binary under test and the test's own state directory.
fn alembic(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Output {
    let url = db
        .url()
        .replacen("postgresql://", "postgresql+psycopg2://", 1)
        .replacen("postgres://", "postgresql+psycopg2://", 1);
    let mut cmd = Command::new(venv_python());
    cmd.args(["-m", "alembic", "-c"])
        .arg(recipe_dir().join("alembic.ini"))
        .args(["-x", &format!("url={url}")])
        .args(["-x", &format!("schema={}", db.schema)])
        .args([
            "-x",
            &format!("state_dir={}", db.path("rowferry-state").display()),
        ])
        .args(args)
        .env("ROWFERRY_BIN", env!("CARGO_BIN_EXE_rowferry"))
        .env_remove("ROWFERRY_CRASH_AFTER_CHUNKS")
        .env_remove("ROWFERRY_CRASH_AFTER_PHASE")
        .envs(env.iter().copied())
        .current_dir(&db.dir)
        .stdin(Stdio::null());
    cmd.output().expect("run alembic")
}

fn ok(out: Output) -> String {
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "alembic failed ({}):\n{all}",
        out.status
    );
    all
}

/// The seed's orders: ids with gaps, amounts with cents.
async fn orders(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.orders (
            id bigint PRIMARY KEY, customer_id bigint NOT NULL,
            amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL);
         INSERT INTO {{s}}.orders
         SELECT n + (n - 1) / 6, (n * 7919) % 50000 + 1, ((n * 104729) % 9999991) / 100.0,
                timestamptz '2020-01-01 00:00:00+00' + n * interval '37 seconds'
         FROM generate_series(1::bigint, {ROWS}::bigint) AS n;
         ANALYZE {{s}}.orders;"
    ))
    .await;
}

async fn version(db: &TestDb) -> String {
    db.scalar("SELECT coalesce(string_agg(version_num, ','), '') FROM {s}.alembic_version")
        .await
}

/// "absent", "nullable" or "not null".
async fn amount_cents(db: &TestDb) -> String {
    db.scalar(
        "SELECT coalesce((SELECT CASE WHEN attnotnull THEN 'not null' ELSE 'nullable' END
           FROM pg_attribute WHERE attrelid = '{s}.orders'::regclass
            AND attname = 'amount_cents' AND NOT attisdropped), 'absent')",
    )
    .await
}

/// At head: the column is NOT NULL, every row has exactly its value, and
/// rowferry left nothing in the schema (no state table, no CHECK).
async fn assert_at_head(db: &TestDb) {
    assert_eq!(version(db).await, "0003_contract");
    assert_eq!(amount_cents(db).await, "not null");
    assert_eq!(db.count("orders").await, i64::from(ROWS));
    assert_eq!(
        db.scalar("SELECT count(*)::text FROM {s}.orders WHERE amount_cents IS DISTINCT FROM round(amount * 100)")
            .await,
        "0"
    );
    assert_eq!(
        db.scalar(
            "SELECT coalesce(string_agg(relname, ','), '') FROM pg_class
             WHERE relnamespace = '{s}'::regnamespace AND relname LIKE 'rowferry%'"
        )
        .await,
        "",
        "rowferry state left in the schema"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*)::text FROM pg_constraint
             WHERE conrelid = '{s}.orders'::regclass AND contype = 'c'"
        )
        .await,
        "0",
        "the NOT NULL check constraint was not dropped"
    );
}

async fn assert_at_base(db: &TestDb) {
    assert_eq!(version(db).await, "");
    assert_eq!(amount_cents(db).await, "absent");
    assert_eq!(db.count("orders").await, i64::from(ROWS));
}

/// Upgrade with rowferry aborting after its first chunk: the migration
/// fails loudly and stays at the expand revision, part of the rows filled.
async fn upgrade_crashing(db: &TestDb, data_step: &str) {
    let x = format!("data_step={data_step}");
    let out = alembic(
        db,
        &["-x", &x, "upgrade", "head"],
        &[("ROWFERRY_CRASH_AFTER_CHUNKS", "1")],
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "expected a failure:\n{all}");
    assert!(
        all.contains("ROWFERRY_CRASH_AFTER_CHUNKS=1 reached"),
        "{all}"
    );
    assert!(all.contains("rowferry failed (signal 6)"), "{all}");
    assert_eq!(version(db).await, "0001_expand");
    assert_eq!(amount_cents(db).await, "nullable");
    let filled: i64 = db
        .scalar("SELECT count(amount_cents)::text FROM {s}.orders")
        .await
        .parse()
        .unwrap();
    assert!(
        filled > 0 && filled < i64::from(ROWS),
        "{filled} rows filled"
    );
}

/// The flags variant (revision 0002 runs `rowferry backfill`): upgrade to
/// head, down to base, and up again (the downgrade forgot the finished job,
/// so the second upgrade backfills again).
#[tokio::test]
async fn alembic_upgrade_head_backfills_and_downgrades_to_base() {
    let db = TestDb::new("recipe_alembic").await;
    orders(&db).await;

    let out = ok(alembic(&db, &["upgrade", "head"], &[]));
    assert!(
        out.contains("rowferry backfill --source $DATABASE_URL"),
        "{out}"
    );
    assert!(!out.contains(&db.url()), "the URL is printed: {out}");
    assert!(out.contains("amount_cents of"), "{out}");
    assert_at_head(&db).await;

    ok(alembic(&db, &["downgrade", "base"], &[]));
    assert_at_base(&db).await;

    ok(alembic(&db, &["upgrade", "head"], &[]));
    assert_at_head(&db).await;
    ok(alembic(&db, &["downgrade", "base"], &[]));
    assert_at_base(&db).await;
    db.cleanup().await;
}

/// A backfill killed after its first chunk: `alembic upgrade head` fails,
/// and the next one resumes from rowferry's checkpoint and completes.
#[tokio::test]
async fn alembic_upgrade_head_after_a_failed_backfill_resumes_it() {
    let db = TestDb::new("recipe_resume").await;
    orders(&db).await;
    // Fixed chunks, so there are many and the crash is mid-way.
    let small = "rowferry_args=--chunk-rows 500 --chunk-time 0 --workers 2";
    let x = ["-x", small];

    let out = alembic(
        &db,
        &[x[0], x[1], "upgrade", "head"],
        &[("ROWFERRY_CRASH_AFTER_CHUNKS", "3")],
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "expected a failure:\n{all}");
    assert!(
        all.contains("ROWFERRY_CRASH_AFTER_CHUNKS=3 reached"),
        "{all}"
    );
    assert_eq!(version(&db).await, "0001_expand");
    assert_eq!(amount_cents(&db).await, "nullable");
    let filled: i64 = db
        .scalar("SELECT count(amount_cents)::text FROM {s}.orders")
        .await
        .parse()
        .unwrap();
    assert!(
        filled >= 1500 && filled < i64::from(ROWS),
        "{filled} rows filled"
    );

    let out = ok(alembic(&db, &[x[0], x[1], "upgrade", "head"], &[]));
    assert!(out.contains("resuming from checkpoint"), "{out}");
    assert_at_head(&db).await;

    ok(alembic(&db, &["downgrade", "base"], &[]));
    assert_at_base(&db).await;
    db.cleanup().await;
}

/// The job-file variant (revision 0002 runs `rowferry run`): killed
/// mid-way, resumed by the next upgrade; the downgrade runs `rowferry
/// abort` and leaves no job state behind.
#[tokio::test]
async fn alembic_with_the_job_file_resumes_and_aborts_on_downgrade() {
    let db = TestDb::new("recipe_job").await;
    orders(&db).await;
    upgrade_crashing(&db, "job").await;
    let state = db.path("rowferry-state");
    let job = format!("{}.backfill_amount_cents.toml", db.schema);
    assert!(state.join(format!("{job}.state")).exists());

    let out = ok(alembic(
        &db,
        &["-x", "data_step=job", "upgrade", "head"],
        &[],
    ));
    assert!(out.contains("resuming from checkpoint"), "{out}");
    assert!(out.contains("complete: backfill"), "{out}");
    assert_at_head(&db).await;

    let out = ok(alembic(
        &db,
        &["-x", "data_step=job", "downgrade", "base"],
        &[],
    ));
    assert!(out.contains("aborted"), "{out}");
    assert_at_base(&db).await;
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the state directory: {left:?}");
    db.cleanup().await;
}

/// The external variant: rowferry runs between `alembic upgrade
/// 0001_expand` and `alembic upgrade head`, outside Alembic; the contract
/// revision refuses while the column is still nullable.
#[tokio::test]
async fn alembic_with_rowferry_run_between_expand_and_head() {
    let db = TestDb::new("recipe_external").await;
    orders(&db).await;
    let x = ["-x", "data_step=external"];

    ok(alembic(&db, &[x[0], x[1], "upgrade", "0001_expand"], &[]));
    assert_eq!(version(&db).await, "0001_expand");
    assert_eq!(amount_cents(&db).await, "nullable");

    // Without the data step, the contract revision refuses.
    let out = alembic(&db, &[x[0], x[1], "upgrade", "head"], &[]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "expected a refusal:\n{all}");
    assert!(all.contains("amount_cents is still nullable"), "{all}");
    assert_eq!(amount_cents(&db).await, "nullable");

    let table = db.q("orders");
    let checkpoint = db.path("backfill.checkpoint");
    let url = db.url();
    let out = run_strs(&[
        "backfill",
        "--source",
        &url,
        "--table",
        &table,
        "--set",
        "amount_cents = round(amount * 100)",
        "--then-not-null",
        "amount_cents",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    ok(alembic(&db, &[x[0], x[1], "upgrade", "head"], &[]));
    assert_at_head(&db).await;
    ok(alembic(&db, &[x[0], x[1], "downgrade", "base"], &[]));
    assert_at_base(&db).await;
    db.cleanup().await;
}
