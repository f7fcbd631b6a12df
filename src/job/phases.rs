//! What each phase does to run, to tell whether it is already done, and to
//! be taken back. Operations are the real subcommands: a phase builds the
//! command line from the job file and dispatches it like `main` does.

use super::file::{Ddl, JobFile, PhaseKind};
use super::state::{self, JobState};
use crate::cli;
use crate::db::{self, Database, SessionSettings, Statement};
use crate::error::{Error, Result};
use crate::table::TableName;
use crate::url::{DbUrl, Engine};
use std::path::Path;
use std::time::Duration;

/// Every command line a phase may run (run and abort), named for
/// messages; checked when the file is loaded.
pub fn command_lines(job: &JobFile, kind: PhaseKind) -> Vec<(&'static str, Vec<String>)> {
    match kind {
        PhaseKind::Expand | PhaseKind::Contract => Vec::new(),
        PhaseKind::Sync => vec![
            ("sync", job.argv(Some(kind), &["sync", "install"], &[])),
            ("sync", job.argv(Some(kind), &["sync", "remove"], &[])),
        ],
        PhaseKind::Copy => vec![("copy", copy_argv(job))],
        PhaseKind::Backfill => vec![("backfill", backfill_argv(job))],
        PhaseKind::Indexes => vec![("indexes", indexes_argv(job))],
        PhaseKind::Verify => vec![("verify", job.argv(Some(kind), &["verify"], &[]))],
        PhaseKind::Cutover => vec![
            ("cutover", job.argv(Some(kind), &["cutover"], &[])),
            ("cutover", rollback_argv(job)),
        ],
        PhaseKind::Cleanup => vec![("cleanup", cleanup_argv(job))],
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

fn copy_argv(job: &JobFile) -> Vec<String> {
    let mut extra = vec![
        "--checkpoint".into(),
        path_arg(&job.checkpoint_path(PhaseKind::Copy)),
    ];
    if job.defer_indexes {
        extra.push("--defer-indexes".into());
    }
    job.argv(Some(PhaseKind::Copy), &["copy"], &extra)
}

fn backfill_argv(job: &JobFile) -> Vec<String> {
    let extra = vec![
        "--checkpoint".into(),
        path_arg(&job.checkpoint_path(PhaseKind::Backfill)),
    ];
    job.argv(Some(PhaseKind::Backfill), &["backfill"], &extra)
}

fn indexes_argv(job: &JobFile) -> Vec<String> {
    let mut extra = Vec::new();
    // The copy's target database and table: the indexes the copy deferred.
    if let Some(url) = job
        .value(Some(PhaseKind::Copy), "target")
        .or_else(|| job.value(Some(PhaseKind::Copy), "source"))
    {
        extra.extend(["--target".to_string(), url]);
    }
    if let Some(t) = job.value(Some(PhaseKind::Copy), "target-table") {
        extra.extend(["--table".to_string(), t]);
    }
    extra.extend([
        "--state".to_string(),
        path_arg(&job.checkpoint_path(PhaseKind::Copy)),
    ]);
    job.argv(Some(PhaseKind::Indexes), &["indexes", "rebuild"], &extra)
}

/// The cutover's own keys (old-name, repoint-foreign-keys) carry over.
fn rollback_argv(job: &JobFile) -> Vec<String> {
    job.argv(Some(PhaseKind::Cutover), &["rollback"], &[])
}

fn cleanup_argv(job: &JobFile) -> Vec<String> {
    let mut extra = vec!["--drop-old-table".to_string()];
    if job.value(Some(PhaseKind::Cleanup), "old-name").is_none()
        && let Some(old) = job.value(Some(PhaseKind::Cutover), "old-name")
    {
        extra.extend(["--old-name".to_string(), old]);
    }
    job.argv(Some(PhaseKind::Cleanup), &["cleanup"], &extra)
}

/// Run a rowferry command line in this process.
async fn dispatch(job: &JobFile, name: &str, argv: Vec<String>) -> Result<()> {
    let command = job.parse_argv(name, &argv)?;
    // Boxed: the job itself is dispatched from the same function.
    Box::pin(cli::dispatch(command)).await
}

/// A connection for the job's own SQL (DDL, catalog checks).
pub struct JobDb {
    pub db: Box<dyn Database>,
    pub engine: Engine,
    max_retries: u32,
}

pub async fn connect(job: &JobFile) -> Result<JobDb> {
    let text = job.value(None, "source").ok_or_else(|| {
        Error::input(format!(
            "{}: no `source` (the database's connection URL) at the top of the job file",
            job.path.display()
        ))
    })?;
    let url = DbUrl::parse(&text).map_err(|e| e.context("source"))?;
    let duration = |key: &str, default: Duration| {
        job.value(None, key)
            .and_then(|t| humantime::parse_duration(t.trim()).ok())
            .unwrap_or(default)
    };
    let settings = SessionSettings {
        pool_size: 1,
        lock_timeout: duration("lock-timeout", Duration::from_secs(2)),
        statement_timeout: duration("statement-timeout", Duration::from_secs(600)),
        idle_in_transaction_timeout: None,
    };
    let max_retries = job
        .value(None, "max-retries")
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    Ok(JobDb {
        db: db::connect(&url, &settings).await?,
        engine: url.engine,
        max_retries,
    })
}

/// SQLSTATEs / error numbers for "already exists" and "does not exist".
fn already_exists(e: &Error) -> bool {
    matches!(
        e.code.as_deref(),
        Some(
            "42P07"
                | "42701"
                | "42710"
                | "42P06"
                | "42723"
                | "1050"
                | "1060"
                | "1061"
                | "1826"
                | "1022"
                | "1007"
        )
    )
}

fn does_not_exist(e: &Error) -> bool {
    matches!(
        e.code.as_deref(),
        Some("42P01" | "42703" | "42704" | "42883" | "3F000" | "1051" | "1091" | "1146" | "1008")
    )
}

impl JobDb {
    /// Run statements in one transaction, retrying lock timeouts and
    /// deadlocks: DDL waits at most the lock timeout behind the
    /// application, then backs off.
    async fn transaction(&self, sqls: &[&str]) -> Result<()> {
        let statements: Vec<Statement> = sqls
            .iter()
            .map(|s| Statement {
                sql: s.to_string(),
                params: Vec::new(),
            })
            .collect();
        let mut attempt = 0;
        loop {
            let mut session = self.db.session().await?;
            let result = if statements.len() == 1 && self.engine != Engine::Postgres {
                session.execute(&statements[0].sql).await.map(|_| ())
            } else {
                session.transaction(&statements).await.map(|_| ())
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    attempt += 1;
                    let wait = Duration::from_millis(200 * u64::from(attempt.min(10)));
                    eprintln!(
                        "rowferry: {e}; retrying in {wait:?} (attempt {attempt} of {})",
                        self.max_retries
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Whether `table` (schema.name, or a bare name in the default schema)
    /// exists.
    pub async fn table_exists(&self, table: &TableName) -> Result<bool> {
        let sql = match self.engine {
            Engine::Postgres => {
                "SELECT count(*)::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                 ON n.oid = c.relnamespace WHERE n.nspname = coalesce(nullif($1::text, ''), \
                 current_schema()) AND c.relname = $2::text AND c.relkind IN ('r', 'p')"
            }
            Engine::Mysql => {
                "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA \
                 = COALESCE(NULLIF(:p1, ''), DATABASE()) AND TABLE_NAME = :p2"
            }
            Engine::Mssql => {
                "SELECT CAST(COUNT(*) AS varchar(20)) FROM sys.tables t JOIN sys.schemas s ON \
                 s.schema_id = t.schema_id WHERE s.name = COALESCE(NULLIF(@P1, ''), \
                 SCHEMA_NAME()) AND t.name = @P2"
            }
        };
        let mut session = self.db.session().await?;
        let rows = session
            .query(
                sql,
                &[table.schema.clone().unwrap_or_default(), table.name.clone()],
            )
            .await?;
        let n = rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .unwrap_or_default();
        Ok(n.trim() != "0")
    }
}

fn table_key(job: &JobFile, kind: Option<PhaseKind>, key: &str) -> Result<TableName> {
    let text = job.value(kind, key).ok_or_else(|| {
        Error::input(format!(
            "{}: no `{key}` in the job file",
            job.path.display()
        ))
    })?;
    TableName::parse(&text).map_err(|e| e.context(key))
}

/// The table names a cutover swaps: (application table, new table, old
/// table after the swap).
fn cutover_names(job: &JobFile) -> Result<(TableName, TableName, TableName)> {
    let table = table_key(job, Some(PhaseKind::Cutover), "table")?;
    let new = table_key(job, Some(PhaseKind::Cutover), "target-table")?;
    let old = TableName {
        schema: table.schema.clone(),
        name: job
            .value(Some(PhaseKind::Cutover), "old-name")
            .unwrap_or_else(|| format!("{}_old", table.name)),
    };
    Ok((table, new, old))
}

/// Whether the cutover's swap has happened: the new table's name is free
/// and the old name is taken.
async fn swapped(job: &JobFile) -> Result<bool> {
    let (_, new, old) = cutover_names(job)?;
    let db = connect(job).await?;
    Ok(!db.table_exists(&new).await? && db.table_exists(&old).await?)
}

/// Persist the state, or stop the job: it must not go on unrecorded.
fn save(job: &JobFile, st: &JobState) -> Result<()> {
    state::save(&job.state_path(), st)
}

/// Run a DDL phase's statements; `applied` and `attempted` in the state say
/// which ran, so a rerun or an abort knows.
async fn run_ddl(job: &JobFile, st: &mut JobState, kind: PhaseKind) -> Result<()> {
    let list: &[Ddl] = if kind == PhaseKind::Expand {
        &job.expand
    } else {
        &job.contract
    };
    let name = kind.name();
    let db = connect(job).await?;
    let todo: Vec<usize> = (0..list.len())
        .filter(|i| !st.phase(name).applied.contains(i))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    // PostgreSQL runs DDL in transactions: all statements commit together.
    // MySQL commits each DDL statement on its own: one at a time.
    let groups: Vec<Vec<usize>> = if db.engine == Engine::Postgres {
        vec![todo]
    } else {
        todo.into_iter().map(|i| vec![i]).collect()
    };
    for group in groups {
        let uncertain = group.iter().any(|i| st.phase(name).attempted.contains(i));
        {
            let p = st.phase_mut(name);
            for i in &group {
                if !p.attempted.contains(i) {
                    p.attempted.push(*i);
                }
            }
        }
        save(job, st)?;
        let sqls: Vec<&str> = group.iter().map(|i| list[*i].sql.as_str()).collect();
        match db.transaction(&sqls).await {
            Ok(()) => {}
            // An earlier run may have committed these and died before
            // recording it.
            Err(e) if uncertain && already_exists(&e) => eprintln!(
                "rowferry: {name}: {e}; an earlier run applied this before it stopped, taken \
                 as done"
            ),
            Err(e) => {
                let which = if group.len() == 1 {
                    format!("statement {} ({})", group[0] + 1, list[group[0]].sql.trim())
                } else {
                    "statements (one transaction, none applied)".to_string()
                };
                return Err(e.context(which));
            }
        }
        let p = st.phase_mut(name);
        for i in &group {
            p.applied.push(*i);
            p.attempted.retain(|a| a != i);
        }
        save(job, st)?;
    }
    eprintln!("rowferry: {name}: {} statement(s) applied", list.len());
    Ok(())
}

/// Run one phase to completion (statuses are the caller's).
/// `resumed`: an earlier run started this phase and did not finish it.
pub async fn run(job: &JobFile, st: &mut JobState, kind: PhaseKind, resumed: bool) -> Result<()> {
    match kind {
        PhaseKind::Expand | PhaseKind::Contract => run_ddl(job, st, kind).await,
        PhaseKind::Sync => {
            dispatch(job, "sync", job.argv(Some(kind), &["sync", "install"], &[])).await
        }
        PhaseKind::Copy => dispatch(job, "copy", copy_argv(job)).await,
        PhaseKind::Backfill => dispatch(job, "backfill", backfill_argv(job)).await,
        PhaseKind::Indexes => dispatch(job, "indexes", indexes_argv(job)).await,
        PhaseKind::Verify => dispatch(job, "verify", job.argv(Some(kind), &["verify"], &[])).await,
        PhaseKind::Cutover => {
            // A run that died right after the swap committed.
            if resumed && swapped(job).await? {
                eprintln!("rowferry: cutover: the tables are already swapped; taken as done");
                return Ok(());
            }
            dispatch(job, "cutover", job.argv(Some(kind), &["cutover"], &[])).await
        }
        PhaseKind::Cleanup => {
            let (_, _, old) = cutover_names(job)?;
            if resumed && !connect(job).await?.table_exists(&old).await? {
                eprintln!("rowferry: cleanup: the old table is gone already; taken as done");
                return Ok(());
            }
            dispatch(job, "cleanup", cleanup_argv(job)).await
        }
    }
}

/// Why a started phase cannot be undone, if it cannot.
pub fn irreversible(job: &JobFile, st: &JobState, kind: PhaseKind) -> Option<String> {
    let p = st.phase(kind.name());
    p.status?;
    match kind {
        PhaseKind::Cleanup => Some(
            "cleanup ran: it dropped the old table, the way back; there is nothing to go back to"
                .into(),
        ),
        PhaseKind::Expand | PhaseKind::Contract => {
            let list = if kind == PhaseKind::Expand {
                &job.expand
            } else {
                &job.contract
            };
            p.applied
                .iter()
                .chain(p.attempted.iter())
                .filter_map(|i| list.get(*i))
                .find(|d| d.undo.is_none())
                .map(|d| {
                    format!(
                        "{} statement `{}` ran and has no undo; add undo = \"...\" to it in the \
                         job file to make it reversible, or undo it by hand and delete {}",
                        kind.name(),
                        d.sql.trim(),
                        job.state_path().display()
                    )
                })
        }
        _ => None,
    }
}

/// Take back what a started phase did.
pub async fn abort(job: &JobFile, st: &mut JobState, kind: PhaseKind) -> Result<()> {
    if !st.started(kind.name()) {
        return Ok(());
    }
    match kind {
        PhaseKind::Expand | PhaseKind::Contract => undo_ddl(job, st, kind).await,
        PhaseKind::Sync => {
            dispatch(job, "sync", job.argv(Some(kind), &["sync", "remove"], &[])).await
        }
        PhaseKind::Copy | PhaseKind::Indexes | PhaseKind::Verify => Ok(()),
        PhaseKind::Backfill => {
            if st.is_complete("backfill") {
                return Ok(());
            }
            drop_backfill_state(job).await
        }
        PhaseKind::Cutover => {
            if swapped(job).await? {
                dispatch(job, "rollback", rollback_argv(job)).await
            } else {
                Ok(())
            }
        }
        PhaseKind::Cleanup => Err(Error::input(
            irreversible(job, st, kind).unwrap_or_else(|| "cleanup cannot be undone".into()),
        )),
    }
}

/// An unfinished backfill keeps its per-chunk state rows in a
/// `rowferry_bf_*` table; remove this job's rows, and the table when no
/// other job's remain (what a finished backfill does).
async fn drop_backfill_state(job: &JobFile) -> Result<()> {
    let argv = backfill_argv(job);
    let cli::Command::Backfill(args) = job.parse_argv("backfill", &argv)? else {
        return Err(Error::fatal(
            "internal: the backfill command line parsed otherwise",
        ));
    };
    let mut opts = args.run.options();
    opts.progress = crate::progress::ProgressMode::None;
    let plan = crate::ops::backfill::prepare(&args.spec()?, &opts).await?;
    let mut session = plan.job.db.session().await?;
    session.execute(&plan.clear_state).await?;
    let others = session.query(&plan.state_rows, &[]).await?;
    if others.is_empty() {
        session.execute(&plan.drop_state).await?;
    }
    Ok(())
}

async fn undo_ddl(job: &JobFile, st: &mut JobState, kind: PhaseKind) -> Result<()> {
    let list = if kind == PhaseKind::Expand {
        &job.expand
    } else {
        &job.contract
    };
    let name = kind.name();
    let db = connect(job).await?;
    let mut done: Vec<usize> = st.phase(name).applied.clone();
    done.extend(st.phase(name).attempted.iter().copied());
    done.sort_unstable();
    done.dedup();
    // Latest first: a column added to a table created earlier goes before
    // the table.
    for i in done.into_iter().rev() {
        let Some(ddl) = list.get(i) else { continue };
        let Some(undo) = ddl.undo.as_deref() else {
            return Err(Error::input(
                irreversible(job, st, kind).unwrap_or_default(),
            ));
        };
        let certain = st.phase(name).applied.contains(&i);
        match db.transaction(&[undo]).await {
            Ok(()) => {}
            Err(e) if does_not_exist(&e) => eprintln!(
                "rowferry: {name}: undo of statement {} found nothing to undo ({e}){}",
                i + 1,
                if certain { "" } else { "; it never ran" }
            ),
            Err(e) => return Err(e.context(format!("undo `{}`", undo.trim()))),
        }
        let p = st.phase_mut(name);
        p.applied.retain(|a| *a != i);
        p.attempted.retain(|a| *a != i);
        save(job, st)?;
    }
    Ok(())
}
