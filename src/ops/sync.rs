//! `rowferry sync install|remove|status`: dual-write triggers that mirror
//! every write on the source table into the target, with the copy's own
//! `--map` and `--where`. Installing and removing are idempotent and run
//! under the session's short lock timeout, retried with backoff, so they
//! never queue the application behind a long transaction for long.

use super::copy::{CopyPlan, names_column};
use super::inspect;
use crate::db::{self, Database, Session, SessionSettings, Statement};
use crate::dialect::sync::{SYNC_PREFIX, SyncTriggers, same_body, trigger_insert_check};
use crate::dialect::{CopyStatement, Dialect};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::RetryingSession;
use crate::progress::Stats;
use crate::spec::{CopySpec, RunOptions};
use crate::table::TableInfo;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncAction {
    /// Create (or bring up to date) the triggers.
    Install,
    /// Drop the triggers (and function).
    Remove,
    /// Show what is installed.
    Status,
}

/// The base name of a sync's objects: readable, and unique per target
/// table (so one target has one sync, whatever its flags).
pub fn sync_name(target_schema: &str, target_name: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{target_schema}.{target_name}")));
    let readable: String = target_name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect();
    format!("{SYNC_PREFIX}{readable}_{}", &digest[..8])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectState {
    Absent,
    /// Present with exactly this command's definition.
    Current,
    /// Present with another definition (other --map/--where, disabled).
    Stale,
}

/// What the catalog holds of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncState {
    pub source_table: String,
    pub target_table: String,
    pub objects: Vec<ObjectStatus>,
    /// Other rowferry sync triggers on the source (feeding other tables).
    pub others: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub kind: &'static str,
    pub name: String,
    pub state: ObjectState,
}

impl SyncState {
    pub fn any_present(&self) -> bool {
        self.objects.iter().any(|o| o.state != ObjectState::Absent)
    }

    pub fn fully_current(&self) -> bool {
        self.objects.iter().all(|o| o.state == ObjectState::Current)
    }

    pub fn any_stale(&self) -> bool {
        self.objects.iter().any(|o| o.state == ObjectState::Stale)
    }

    fn summary(&self) -> &'static str {
        if self.fully_current() {
            "installed"
        } else if !self.any_present() {
            "not installed"
        } else if self.any_stale() {
            "installed with another definition (stale)"
        } else {
            "partly installed"
        }
    }
}

/// The triggers that mirror a copy's writes: `columns` are its (target
/// column, source expression) pairs, `statement` its chunk statement's shape.
pub fn triggers_for(
    d: &dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    columns: &[(String, String)],
    statement: &CopyStatement,
    other_unique_indexes: bool,
) -> SyncTriggers {
    let key_targets: Vec<&str> = statement
        .key_match
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    let update_columns = columns
        .iter()
        .filter(|(name, _)| {
            let quoted = d.quote_ident(name);
            let identity_always = target.column(name).is_some_and(|c| c.identity_always);
            !key_targets.contains(&quoted.as_str()) && !identity_always
        })
        .map(|(name, _)| d.quote_ident(name))
        .collect();
    SyncTriggers {
        copy: statement.clone(),
        source: d.qualified(&source.schema, &source.name),
        source_schema: source.schema.clone(),
        source_name: source.name.clone(),
        source_columns: source.columns.clone(),
        update_columns,
        name: sync_name(&target.schema, &target.name),
        other_unique_indexes,
    }
}

/// The same sync once its tables carry other names (after a swap): the
/// trigger's SQL names both tables, and the sync is named after its target.
pub fn renamed(
    d: &dyn Dialect,
    triggers: &SyncTriggers,
    source_name: &str,
    target_name: &str,
) -> SyncTriggers {
    let mut t = triggers.clone();
    let target_schema = t.source_schema.clone();
    t.source_name = source_name.to_string();
    t.source = d.qualified(&t.source_schema, source_name);
    t.copy.source = t.source.clone();
    t.copy.target = d.qualified(&target_schema, target_name);
    t.name = sync_name(&target_schema, target_name);
    t
}

/// Compare the catalog with the objects this sync wants.
pub async fn state(
    session: &mut dyn Session,
    d: &dyn Dialect,
    triggers: &SyncTriggers,
    target_table: &str,
) -> Result<SyncState> {
    let rows = session
        .query(
            d.sync_catalog_sql(),
            &[
                triggers.source_schema.clone(),
                triggers.source_name.clone(),
                triggers.name.clone(),
            ],
        )
        .await?;
    let found: Vec<(String, String, String)> = rows
        .into_iter()
        .map(|r| {
            let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            (text(0), text(1), text(2))
        })
        .collect();
    let wanted = d.sync_objects(triggers);
    let objects = wanted
        .iter()
        .map(|o| {
            let state = match found.iter().find(|(k, n, _)| k == o.kind && *n == o.name) {
                None => ObjectState::Absent,
                Some((_, _, body)) if same_body(body, &o.body) => ObjectState::Current,
                Some(_) => ObjectState::Stale,
            };
            ObjectStatus {
                kind: o.kind,
                name: o.name.clone(),
                state,
            }
        })
        .collect();
    let others = found
        .iter()
        .filter(|(k, n, _)| {
            *k == "trigger" && !wanted.iter().any(|o| o.kind == "trigger" && o.name == *n)
        })
        .map(|(_, n, _)| n.clone())
        .collect();
    Ok(SyncState {
        source_table: format!("{}.{}", triggers.source_schema, triggers.source_name),
        target_table: target_table.to_string(),
        objects,
        others,
    })
}

/// What `install` changed.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub created: usize,
    pub replaced: usize,
    pub retries: u64,
}

/// Create what is absent and replace what is stale; leave current objects
/// alone (no lock taken at all when everything is current).
pub async fn install(
    db: &Arc<dyn Database>,
    triggers: &SyncTriggers,
    target_table: &str,
    opts: &RunOptions,
) -> Result<Installed> {
    let d = db.dialect();
    check_trigger_statement(db, triggers).await?;
    let current = {
        let mut s = db.session().await?;
        state(s.as_mut(), d, triggers, target_table).await?
    };
    let mut installed = Installed::default();
    let mut steps: Vec<String> = Vec::new();
    for (object, status) in d.sync_objects(triggers).iter().zip(&current.objects) {
        match status.state {
            ObjectState::Current => {}
            ObjectState::Absent => {
                installed.created += 1;
                steps.extend(object.create.iter().cloned());
            }
            ObjectState::Stale => {
                installed.replaced += 1;
                steps.extend(object.replace.iter().cloned());
            }
        }
    }
    match run_ddl(db, d, &steps, opts).await {
        Ok(retries) => {
            installed.retries = retries;
            Ok(installed)
        }
        Err(e) => {
            let mut e = explain_ddl(e, triggers);
            // Where DDL commits statement by statement, a failure can leave
            // some events mirrored and others not: a fresh install is
            // taken back whole rather than left half done.
            if !d.transactional_ddl() && !current.any_present() {
                let drops =
                    d.sync_drop_sql(&triggers.source, &triggers.source_schema, &triggers.name);
                e.message.push_str(match run_ddl(db, d, &drops, opts).await {
                    Ok(_) => " The triggers created before the failure were dropped again.",
                    Err(_) => {
                        " Some triggers may have been created before the failure and could not be \
                         dropped again: run `rowferry sync remove` with the same tables"
                    }
                });
            }
            Err(e)
        }
    }
}

/// Drop every object of the sync feeding `target` (schema, name).
pub async fn remove(
    db: &Arc<dyn Database>,
    source_schema: &str,
    source_name: &str,
    name: &str,
    opts: &RunOptions,
) -> Result<u64> {
    let d = db.dialect();
    let steps = d.sync_drop_sql(
        &d.qualified(source_schema, source_name),
        source_schema,
        name,
    );
    run_ddl(db, d, &steps, opts).await
}

/// Run DDL with the session's short lock timeout, retrying lock timeouts
/// and deadlocks with backoff. One transaction where DDL is transactional,
/// so the objects appear together. Returns the retries it took.
pub(crate) async fn run_ddl(
    db: &Arc<dyn Database>,
    d: &dyn Dialect,
    steps: &[String],
    opts: &RunOptions,
) -> Result<u64> {
    let stats = Arc::new(Stats::default());
    let mut session = RetryingSession::new(
        db.clone(),
        stats.clone(),
        opts.max_retries,
        CancellationToken::new(),
    );
    let statements: Vec<Statement> = steps
        .iter()
        .map(|sql| Statement {
            sql: sql.clone(),
            params: vec![],
        })
        .collect();
    let batches: Vec<Vec<Statement>> = if d.transactional_ddl() {
        vec![statements]
    } else {
        statements.into_iter().map(|s| vec![s]).collect()
    };
    for batch in batches.into_iter().filter(|b| !b.is_empty()) {
        session
            .run(|s| {
                let batch = batch.clone();
                Box::pin(async move { s.transaction(&batch).await })
            })
            .await?;
    }
    Ok(stats.retries.load(std::sync::atomic::Ordering::Relaxed))
}

/// The server checks the trigger's INSERT before any trigger exists: an
/// expression that works in the copy but not on the trigger's one-row
/// table would otherwise fail the application's writes.
async fn check_trigger_statement(db: &Arc<dyn Database>, triggers: &SyncTriggers) -> Result<()> {
    let d = db.dialect();
    let sql = trigger_insert_check(d, triggers);
    let mut session = db.session().await?;
    session.check(&sql).await.map_err(|e| {
        if e.is_retryable() {
            return e;
        }
        Error::input(format!(
            "the sync trigger's INSERT does not work on one row ({}). Inside the trigger the \
             source row is a one-row table named {}: --map and --where may name its columns \
             (or table.column) but not schema.table.column, and functions outside the search \
             path must be schema-qualified. Statement: {sql}",
            e.message, triggers.source_name
        ))
    })
}

/// Server refusals that a DBA can act on, told with the fix.
fn explain_ddl(e: Error, triggers: &SyncTriggers) -> Error {
    let advice = match e.code.as_deref() {
        Some("1235") => Some(
            "this server allows only one trigger per event and timing on a table (MySQL before \
             5.7.2, MariaDB before 10.2.3), and the table already has one of its own. Upgrade, or \
             fold the existing trigger's work into the application before installing the sync",
        ),
        Some("1419") => Some(
            "binary logging is on and the connecting user lacks SUPER: the server refuses to \
             create triggers. Connect as a user with SUPER (or, knowingly, set GLOBAL \
             log_bin_trust_function_creators = 1)",
        ),
        // SQL Server: 1088 (no such object, or no permission on it), 262
        // (permission denied in the database).
        Some("1142") | Some("42501") | Some("1088") | Some("262") => Some(
            "the connecting user may not create triggers on the source table (TRIGGER \
             privilege on MySQL, table ownership on PostgreSQL, ALTER on the table on SQL \
             Server). Grant it, or connect as the table's owner",
        ),
        // SQL Server: 1222 lock timeout (its 1205 is a deadlock: contention
        // all the same).
        Some("55P03") | Some("1205") | Some("1222") => Some(
            "another transaction holds a lock on the source table, and waiting for it would \
             queue the application's writes behind this install; every attempt gave up after \
             --lock-timeout. Find the long transaction (pg_stat_activity, \
             SHOW PROCESSLIST, sys.dm_exec_requests), let it finish, and rerun; or raise \
             --max-retries",
        ),
        Some("1064") if e.message.contains("OR REPLACE") => Some(
            "this server cannot replace a trigger in one step (MySQL 8 has no CREATE OR \
             REPLACE TRIGGER). Run `rowferry sync remove` and then `sync install`; writes made \
             in between are not mirrored, so run `rowferry verify` afterwards",
        ),
        _ => None,
    };
    let kind = if e.is_retryable() {
        ErrorKind::Fatal
    } else {
        e.kind
    };
    let message = match advice {
        Some(a) => format!(
            "installing sync {}: {a}. Server said: {}",
            triggers.name, e.message
        ),
        None => format!("installing sync {}: {}", triggers.name, e.message),
    };
    Error { kind, message, ..e }
}

/// The command: install, remove or show the sync for one table pair.
pub async fn run(action: SyncAction, spec: &CopySpec, opts: &RunOptions) -> Result<()> {
    match action {
        SyncAction::Remove => run_remove(spec, opts).await,
        SyncAction::Install | SyncAction::Status => {
            let plan = super::copy::prepare(spec, opts).await?;
            let triggers = plan.sync.clone();
            let target = plan.target.display_name();
            let d = plan.job.db.dialect();
            if action == SyncAction::Status {
                let mut s = plan.job.db.session().await?;
                let st = state(s.as_mut(), d, &triggers, &target).await?;
                print_state(&st, opts.json);
                return Ok(());
            }
            let checks = super::copy::preflight(&plan, spec, opts).await?;
            if let Some(refusal) = checks.refusal(&target) {
                return Err(refusal);
            }
            warn_about_limits(&plan).await?;
            let done = install(&plan.job.db, &triggers, &target, opts).await?;
            let mut s = plan.job.db.session().await?;
            let st = state(s.as_mut(), d, &triggers, &target).await?;
            if !st.fully_current() {
                return Err(Error::fatal(format!(
                    "sync {} is {} after installing; run `rowferry sync status` to see which object",
                    triggers.name,
                    st.summary()
                )));
            }
            let what = match (done.created, done.replaced) {
                (0, 0) => "already installed and current; nothing changed".to_string(),
                (c, 0) => format!("installed ({c} object(s) created)"),
                (c, r) => {
                    format!("updated ({c} created, {r} replaced with this command's definition)")
                }
            };
            eprintln!(
                "rowferry: sync {}: {} -> {}: {what}{}",
                triggers.name,
                st.source_table,
                target,
                retries_note(done.retries)
            );
            if opts.json {
                print_state(&st, true);
            }
            Ok(())
        }
    }
}

fn retries_note(retries: u64) -> String {
    match retries {
        0 => String::new(),
        n => format!(" after {n} retried lock wait(s)"),
    }
}

async fn run_remove(spec: &CopySpec, opts: &RunOptions) -> Result<()> {
    let db: Arc<dyn Database> = Arc::from(db::connect(&spec.source, &settings(opts)).await?);
    let d = db.dialect();
    let mut s = db.session().await?;
    let source = inspect(s.as_mut(), d, &spec.table, "--table").await?;
    // The target may be gone already: its name is all removal needs.
    let target_schema = match &spec.target_table.schema {
        Some(schema) => schema.clone(),
        None => s
            .query(d.default_schema_sql(), &[])
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_else(|| source.schema.clone()),
    };
    let name = sync_name(&target_schema, &spec.target_table.name);
    let retries = remove(&db, &source.schema, &source.name, &name, opts).await?;
    eprintln!(
        "rowferry: sync {name}: removed from {} (its triggers no longer mirror writes into \
         {target_schema}.{}){}",
        source.display_name(),
        spec.target_table.name,
        retries_note(retries)
    );
    Ok(())
}

fn settings(opts: &RunOptions) -> SessionSettings {
    SessionSettings {
        pool_size: 2,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        idle_in_transaction_timeout: None,
    }
}

fn print_state(st: &SyncState, json: bool) {
    if json {
        println!("{}", serde_json::to_string(st).unwrap_or_default());
        return;
    }
    println!(
        "sync {} -> {}: {}",
        st.source_table,
        st.target_table,
        st.summary()
    );
    for o in &st.objects {
        let state = match o.state {
            ObjectState::Absent => "absent",
            ObjectState::Current => "current",
            ObjectState::Stale => "stale: differs from this command's --map/--where, or disabled",
        };
        println!("  {} {}: {state}", o.kind, o.name);
    }
    if !st.others.is_empty() {
        println!(
            "  other rowferry sync triggers on {}: {}",
            st.source_table,
            st.others.join(", ")
        );
    }
}

/// What a trigger may mirror differently than the copy writes it (values
/// converted with the application session's settings), and writes that a
/// trigger never sees (MySQL fires none for cascading foreign keys).
pub async fn warn_about_limits(plan: &CopyPlan) -> Result<()> {
    let d = plan.job.db.dialect();
    for (name, expr) in &plan.columns {
        let source = plan
            .job
            .source
            .columns
            .iter()
            .find(|c| names_column(d, expr, &c.name));
        let (Some(source), Some(target)) = (source, plan.target.column(name)) else {
            continue;
        };
        if let Some(why) = d.session_dependent(source, target) {
            eprintln!(
                "rowferry: warning: {}.{} ({}) -> {} ({}): {why}",
                plan.job.source.display_name(),
                source.name,
                source.data_type,
                target.name,
                target.data_type
            );
        }
    }
    let Some(sql) = d.untriggered_writes_sql() else {
        return Ok(());
    };
    let mut s = plan.job.db.session().await?;
    let rows = s
        .query(
            sql,
            &[plan.job.source.schema.clone(), plan.job.source.name.clone()],
        )
        .await?;
    for r in rows {
        let name = r.first().cloned().flatten().unwrap_or_default();
        eprintln!(
            "rowferry: warning: foreign key `{name}` changes rows of {} by cascading (ON DELETE/UPDATE \
             CASCADE or SET NULL/DEFAULT); MySQL does not fire triggers for such changes, so they \
             are not mirrored into {}. `rowferry verify` reports them; fix them by hand or change the \
             foreign key to RESTRICT during the migration",
            plan.job.source.display_name(),
            plan.target.display_name()
        );
    }
    Ok(())
}
