//! `rowferry cutover`, `rollback` and `cleanup`: the blue-green swap.
//!
//! The cutover renames the old table away and the new one into its name in
//! ONE short transaction (lock timeout, retried with backoff, then given up
//! with nothing changed), moving sequences past the old table's values,
//! dropping the forward sync and, with `--reverse-sync`, installing triggers
//! that keep the old table a complete fallback. What rollback and cleanup
//! need is recorded in a comment on the old table, inside that transaction.

use super::copy::{CopyPlan, prepare};
use super::inspect;
use super::sync::{self, renamed};
use crate::db::{Session, Statement};
use crate::dialect::sync::SyncTriggers;
use crate::dialect::{Dialect, SwapSql};
use crate::error::{Error, ErrorKind, Result};
use crate::spec::{ColumnMap, CopySpec, RunOptions};
use crate::table::{TableInfo, TableName};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the comment on the old table says, after `RECORD_PREFIX`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CutoverRecord {
    /// The new table's name before the swap (rollback gives it back).
    target_table: String,
    map: Vec<ColumnMap>,
    #[serde(rename = "where")]
    where_sql: Option<String>,
    key: Option<Vec<String>>,
    reverse_sync: bool,
}

const RECORD_PREFIX: &str = "rowferry cutover: ";

pub struct CutoverSpec {
    pub pair: CopySpec,
    pub old_name: Option<String>,
    pub reverse_sync: bool,
    pub skip_verify: bool,
    pub repoint_foreign_keys: bool,
}

fn swap_sql(d: &'static dyn Dialect) -> Result<&'static dyn SwapSql> {
    d.swap().ok_or_else(|| {
        Error::input(
            "cutover and rollback are available for PostgreSQL in this version; on MySQL/MariaDB \
             swap the tables with RENAME TABLE after the copy and verify, then remove the sync",
        )
    })
}

fn default_old_name(table: &str) -> String {
    format!("{table}_old")
}

pub async fn cutover(spec: &CutoverSpec, opts: &RunOptions) -> Result<()> {
    let plan = prepare(&spec.pair, opts).await?;
    let d = plan.job.db.dialect();
    let swap = swap_sql(d)?;
    let (old, new) = (&plan.job.source, &plan.target);
    if old.schema != new.schema {
        return Err(Error::input(format!(
            "{} and {} are in different schemas; the cutover renames within one schema. \
             Create the new table in {}",
            old.display_name(),
            new.display_name(),
            old.schema
        )));
    }
    if !plan.sync_state.fully_current() {
        return Err(Error::input(format!(
            "no current sync from {} into {} (sync is {}): writes made since the copy would be \
             missing after the swap. Run `rowferry copy --dual-write` with the same tables and \
             flags first",
            old.display_name(),
            new.display_name(),
            if plan.sync_state.any_present() {
                "stale or partly installed"
            } else {
                "not installed"
            }
        )));
    }
    let old_name = spec
        .old_name
        .clone()
        .unwrap_or_else(|| default_old_name(&old.name));
    let mut session = plan.job.db.session().await?;
    if exists(session.as_mut(), d, &old.schema, &old_name).await? {
        return Err(Error::input(format!(
            "{}.{old_name} exists already; the old table needs a free name. Pass --old-name",
            old.schema
        )));
    }
    // The triggers are synchronous: what the application committed is in
    // the new table already, so there is no lag to wait for.
    if spec.skip_verify {
        eprintln!("rowferry: cutover: --skip-verify: not comparing the tables first");
    } else {
        eprintln!("rowferry: cutover: verifying first (--skip-verify to skip)");
        let quiet = RunOptions {
            progress: crate::progress::ProgressMode::None,
            json: false,
            ..opts.clone()
        };
        super::verify::run(&spec.pair, &quiet, 20)
            .await
            .map_err(|e| e.context("cutover refused, nothing changed"))?;
    }
    refuse_invalid_indexes(session.as_mut(), d, new).await?;
    // Indexes a copy or `indexes defer` dropped and still owes (records in
    // the current directory, where those commands keep them by default):
    // after the rename the record would name a table that is gone.
    let identity = spec.pair.source.identity();
    for record in [
        plan.job.checkpoint_path(opts),
        super::indexes::default_state_path(&new.display_name()),
    ] {
        if let Some(owed) = super::indexes::owed_at(&record, &identity, &new.display_name()) {
            return Err(Error::input(format!(
                "{} still owes deferred indexes ({owed}) according to {}: rebuild them first \
                 (rerun the copy, or `rowferry indexes rebuild`), then cut over; nothing changed",
                new.display_name(),
                record.display()
            )));
        }
    }
    let foreign_keys =
        referencing_objects(session.as_mut(), swap, old, spec.repoint_foreign_keys).await?;

    if spec.reverse_sync && !swap.reverse_sync_at_swap() {
        return Err(Error::input(
            "--reverse-sync is not available on MySQL/MariaDB in this version: the reverse \
             triggers would have to appear in the same instant as the rename, and MariaDB cannot \
             rename tables it holds locked. Cut over without it (the old table then stops \
             receiving writes), or keep the forward sync and cut over later; nothing changed",
        ));
    }
    let reverse = if spec.reverse_sync {
        Some(reverse_triggers(&plan, &spec.pair.source, opts, &old_name).await?)
    } else {
        None
    };
    let old_q = d.qualified(&old.schema, &old.name);
    let new_q = d.qualified(&new.schema, &new.name);
    let after_old = d.qualified(&old.schema, &old_name);
    let after_new = d.qualified(&old.schema, &old.name);

    let mut steps: Vec<String> = swap
        .lock_sql(&[old_q.clone(), new_q.clone()])
        .into_iter()
        .collect();
    steps.extend(sequence_steps(session.as_mut(), swap, old, new, &new_q).await?);
    let record = CutoverRecord {
        target_table: new.name.clone(),
        map: spec.pair.maps.clone(),
        where_sql: spec.pair.where_sql.clone(),
        key: spec.pair.key.clone(),
        reverse_sync: spec.reverse_sync,
    };
    let comment = format!(
        "{RECORD_PREFIX}{}",
        serde_json::to_string(&record).unwrap_or_default()
    );
    let drop_forward = d.sync_drop_sql(&old_q, &old.schema, &plan.sync.name);
    let mut after_swap = Vec::new();
    if d.transactional_ddl() {
        steps.extend(drop_forward);
        steps.extend(swap.swap_names_sql(&old_q, &old_name, &new_q, &old.name));
        for fk in &foreign_keys {
            steps.push(swap.drop_constraint_sql(&fk.table, &fk.name));
            steps.push(swap.add_constraint_not_valid_sql(&fk.table, &fk.name, &fk.definition));
        }
        if let Some(r) = &reverse {
            for object in d.sync_objects(r) {
                steps.extend(object.create);
            }
        }
        steps.push(swap.comment_sql(&after_old, Some(&comment)));
    } else {
        // Statement by statement: the record goes on the old table first
        // (it moves with the rename), then the one atomic RENAME; the
        // forward triggers, active up to that instant, go after it.
        steps.push(swap.comment_sql(&old_q, Some(&comment)));
        steps.extend(swap.swap_names_sql(&old_q, &old_name, &new_q, &old.name));
        after_swap = drop_forward;
    }
    let retries = swap_in_one_transaction(&plan, &steps, opts, "cutover").await?;
    if let Err(e) = sync::run_ddl(&plan.job.db, d, &after_swap, opts).await {
        return Err(Error::fatal(format!(
            "cutover: the tables WERE swapped ({after_new} is the new table, {after_old} the \
             old one), but dropping the old table's forward triggers failed: {}. They are inert \
             (nothing writes the old table); remove them with `rowferry sync remove --source URL \
             --table {}.{old_name} --target-table {}`",
            e.message,
            old.schema,
            new.display_name()
        )));
    }
    validate_foreign_keys(&plan, swap, &foreign_keys).await;

    eprintln!(
        "rowferry: cutover done{}: {} is now the new table (was {}); the old table is {}{}",
        retries_note(retries),
        after_new,
        new.display_name(),
        after_old,
        match &reverse {
            Some(r) => format!(
                "; reverse sync {} mirrors every write on {after_new} into it, so `rowferry \
                 rollback --source URL --table {}` loses nothing",
                r.name,
                old.display_name()
            ),
            None => "; no reverse sync: writes from now on reach only the new table".into(),
        }
    );
    Ok(())
}

/// An INVALID index on the new table (a concurrent build that failed or
/// was cut off, e.g. deferred indexes not yet rebuilt) would go into
/// production doing nothing: finish the rebuild first.
async fn refuse_invalid_indexes(
    session: &mut dyn Session,
    d: &dyn Dialect,
    table: &TableInfo,
) -> Result<()> {
    let Some(isql) = d.indexes() else {
        return Ok(());
    };
    let (sql, params) = isql.list_indexes(&table.id, &table.schema, &table.name);
    let rows = session.query(&sql, &params).await?;
    let invalid: Vec<String> = isql
        .read_indexes(&rows)?
        .into_iter()
        .filter(|i| !i.valid)
        .map(|i| i.name)
        .collect();
    if invalid.is_empty() {
        return Ok(());
    }
    Err(Error::input(format!(
        "{} has INVALID indexes ({}), left by a failed or interrupted concurrent build: rerun \
         the copy (or `rowferry indexes rebuild --target URL --table {}`) to build them, then \
         cut over; nothing changed",
        table.display_name(),
        invalid.join(", "),
        table.display_name()
    )))
}

/// Foreign keys of other tables that point at the table being swapped.
struct ForeignKey {
    name: String,
    /// The referencing table, quoted as the server prints it.
    table: String,
    definition: String,
}

/// Find what follows the old table through a rename (foreign keys and
/// views point at the table, not at its name). Views are refused; foreign
/// keys are re-pointed with `--repoint-foreign-keys`, else refused.
async fn referencing_objects(
    session: &mut dyn Session,
    swap: &dyn SwapSql,
    table: &TableInfo,
    repoint: bool,
) -> Result<Vec<ForeignKey>> {
    let id = std::slice::from_ref(&table.id);
    let text = |r: &crate::db::Row, i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let views: Vec<String> = session
        .query(swap.dependent_views_sql(), id)
        .await?
        .iter()
        .map(|r| text(r, 0))
        .collect();
    if !views.is_empty() {
        return Err(Error::input(format!(
            "views read {} and would keep reading the old table after the swap: {}. Re-create \
             them on the new table after the cutover (or drop them first); nothing changed",
            table.display_name(),
            views.join(", ")
        )));
    }
    let keys: Vec<ForeignKey> = session
        .query(swap.referencing_foreign_keys_sql(), id)
        .await?
        .iter()
        .map(|r| ForeignKey {
            name: text(r, 0),
            table: text(r, 1),
            definition: text(r, 2),
        })
        .collect();
    if repoint && keys.iter().any(|k| k.definition.is_empty()) {
        return Err(Error::input(format!(
            "foreign keys point at {}: {}. Re-pointing them is not available on this engine in \
             this version: drop them before the cutover and re-create them after; nothing changed",
            table.display_name(),
            keys.iter()
                .map(|k| format!("{} on {}", k.name, k.table))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if !keys.is_empty() && !repoint {
        return Err(Error::input(format!(
            "foreign keys point at {} and would keep pointing at the old table after the swap: \
             {}. Pass --repoint-foreign-keys to re-create them on the new table (NOT VALID in the \
             swap, validated right after); nothing changed",
            table.display_name(),
            keys.iter()
                .map(|k| format!("{} on {}", k.name, k.table))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(keys)
}

/// The new table's sequences move past the largest value they hold and
/// past the old table's sequence for the same column.
async fn sequence_steps(
    session: &mut dyn Session,
    swap: &dyn SwapSql,
    old: &TableInfo,
    new: &TableInfo,
    new_q: &str,
) -> Result<Vec<String>> {
    let read = async |s: &mut dyn Session, t: &TableInfo| -> Result<Vec<(String, String)>> {
        Ok(
            s.query(swap.column_sequences_sql(), std::slice::from_ref(&t.id))
                .await?
                .into_iter()
                .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.clone()?)))
                .collect(),
        )
    };
    let old_sequences = read(session, old).await?;
    let new_sequences = read(session, new).await?;
    Ok(new_sequences
        .iter()
        .filter(|(column, seq)| {
            // The same sequence (a default copied with LIKE) moves on its own.
            !old_sequences.iter().any(|(c, s)| c == column && s == seq)
        })
        .map(|(column, seq)| {
            let old_seq = old_sequences
                .iter()
                .find(|(c, _)| c == column)
                .map(|(_, s)| s.as_str());
            swap.advance_sequence_sql(seq, new_q, column, old_seq)
        })
        .collect())
}

/// Triggers on the new table (under the old one's name) that mirror
/// every write back into the old table (under `old_name`).
async fn reverse_triggers(
    plan: &CopyPlan,
    source: &crate::url::DbUrl,
    opts: &RunOptions,
    old_name: &str,
) -> Result<SyncTriggers> {
    let old = &plan.job.source;
    let new = &plan.target;
    let back = CopySpec {
        source: source.clone(),
        target: None,
        table: TableName {
            schema: Some(new.schema.clone()),
            name: new.name.clone(),
        },
        target_table: TableName {
            schema: Some(old.schema.clone()),
            name: old.name.clone(),
        },
        maps: Vec::new(),
        where_sql: None,
        key: None,
        dual_write: false,
    };
    let reverse = prepare(&back, opts).await.map_err(|e| {
        e.context(format!(
            "--reverse-sync: the old table {} cannot take the new table's rows back",
            old.display_name()
        ))
    })?;
    Ok(renamed(
        plan.job.db.dialect(),
        &reverse.sync,
        &old.name,
        old_name,
    ))
}

/// Run the swap's statements, retrying lock timeouts with backoff: in one
/// transaction where DDL is transactional (then, when the retries run out,
/// nothing changed), else one by one (the rename itself is atomic).
async fn swap_in_one_transaction(
    plan: &CopyPlan,
    steps: &[String],
    opts: &RunOptions,
    what: &str,
) -> Result<u64> {
    sync::run_ddl(&plan.job.db, plan.job.db.dialect(), steps, opts)
        .await
        .map_err(|e| {
            let advice = if matches!(e.code.as_deref(), Some("55P03" | "1205")) {
                "another transaction holds the tables, and waiting for it would queue the \
                 application behind the swap; every attempt gave up after --lock-timeout. Find \
                 the long transaction (pg_stat_activity, SHOW PROCESSLIST), let it finish, and \
                 rerun (or raise --max-retries)"
            } else {
                "the server refused the swap"
            };
            Error {
                kind: if e.is_retryable() {
                    ErrorKind::Fatal
                } else {
                    e.kind
                },
                message: format!(
                    "{what}: {advice}; nothing changed (the swap is one transaction, or one \
                     atomic RENAME). Server said: {}",
                    e.message
                ),
                ..e
            }
        })
}

async fn validate_foreign_keys(plan: &CopyPlan, swap: &dyn SwapSql, keys: &[ForeignKey]) {
    for fk in keys {
        let sql = swap.validate_constraint_sql(&fk.table, &fk.name);
        let result = async {
            let mut s = plan.job.db.session().await?;
            s.transaction(&[Statement {
                sql: sql.clone(),
                params: vec![],
            }])
            .await
        }
        .await;
        match result {
            Ok(_) => eprintln!(
                "rowferry: foreign key {} on {} now points at the new table, validated",
                fk.name, fk.table
            ),
            Err(e) => eprintln!(
                "rowferry: warning: foreign key {} on {} points at the new table but is NOT \
                 VALID yet ({}); run `{sql}`",
                fk.name, fk.table, e.message
            ),
        }
    }
}

async fn exists(
    session: &mut dyn Session,
    d: &dyn Dialect,
    schema: &str,
    name: &str,
) -> Result<bool> {
    Ok(!session
        .query(d.find_table_sql(), &[schema.to_string(), name.to_string()])
        .await?
        .is_empty())
}

fn retries_note(retries: u64) -> String {
    match retries {
        0 => String::new(),
        n => format!(" (after {n} retried lock waits)"),
    }
}

/// Read the cutover record on the old table.
async fn record_of(
    session: &mut dyn Session,
    swap: &dyn SwapSql,
    old: &TableInfo,
) -> Result<CutoverRecord> {
    let rows = session
        .query(swap.table_comment_sql(), std::slice::from_ref(&old.id))
        .await?;
    let comment = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    comment
        .strip_prefix(RECORD_PREFIX)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| {
            Error::input(format!(
                "{} carries no rowferry cutover record (its comment was changed, or it was not \
                 swapped out by `rowferry cutover`); pass --old-name if the old table has \
                 another name",
                old.display_name()
            ))
        })
}

/// After a cutover: the table the application uses, the old one beside
/// it, and the record the cutover left on it.
struct Swapped {
    db: Arc<dyn crate::db::Database>,
    d: &'static dyn Dialect,
    swap: &'static dyn SwapSql,
    session: Box<dyn Session>,
    current: TableInfo,
    old: TableInfo,
    record: CutoverRecord,
}

async fn swapped(
    source: &crate::url::DbUrl,
    table: &TableName,
    old_name: Option<&str>,
    opts: &RunOptions,
) -> Result<Swapped> {
    let settings = crate::db::SessionSettings {
        pool_size: 3,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
    };
    let db: Arc<dyn crate::db::Database> = Arc::from(crate::db::connect(source, &settings).await?);
    let d = db.dialect();
    let swap = swap_sql(d)?;
    let mut session = db.session().await?;
    let current = inspect(session.as_mut(), d, table, "--table").await?;
    let old_name = old_name.map_or_else(|| default_old_name(&current.name), String::from);
    let old_table = TableName {
        schema: Some(current.schema.clone()),
        name: old_name,
    };
    let old = inspect(session.as_mut(), d, &old_table, "--old-name").await?;
    let record = record_of(session.as_mut(), swap, &old).await?;
    Ok(Swapped {
        db,
        d,
        swap,
        session,
        current,
        old,
        record,
    })
}

pub struct RollbackSpec {
    pub source: crate::url::DbUrl,
    pub table: TableName,
    pub old_name: Option<String>,
    pub repoint_foreign_keys: bool,
}

/// Swap back: the old table (kept current by the reverse sync) takes the
/// name again, the new one gets its own back, and forward sync resumes.
pub async fn rollback(spec: &RollbackSpec, opts: &RunOptions) -> Result<()> {
    let Swapped {
        d,
        swap,
        mut session,
        current,
        old,
        record,
        ..
    } = swapped(&spec.source, &spec.table, spec.old_name.as_deref(), opts).await?;
    let old_name = old.name.clone();
    // The reverse sync must be current, or writes since the cutover would
    // be missing from the table that takes the name back.
    let back = CopySpec {
        source: spec.source.clone(),
        target: None,
        table: spec.table.clone(),
        target_table: TableName {
            schema: Some(current.schema.clone()),
            name: old_name.clone(),
        },
        maps: Vec::new(),
        where_sql: None,
        key: None,
        dual_write: false,
    };
    let back_plan = prepare(&back, opts).await?;
    if !record.reverse_sync || !back_plan.sync_state.fully_current() {
        return Err(Error::input(format!(
            "{} has no current reverse sync from {}: writes made since the cutover are not in \
             it, and a rollback would lose them. Nothing changed",
            old.display_name(),
            current.display_name()
        )));
    }
    if exists(session.as_mut(), d, &current.schema, &record.target_table).await? {
        return Err(Error::input(format!(
            "{}.{} exists; the new table needs its old name back. Nothing changed",
            current.schema, record.target_table
        )));
    }
    let foreign_keys =
        referencing_objects(session.as_mut(), swap, &current, spec.repoint_foreign_keys).await?;
    // Forward sync as before the cutover, under the names after rollback.
    let forward_spec = CopySpec {
        source: spec.source.clone(),
        target: None,
        table: back.target_table.clone(),
        target_table: spec.table.clone(),
        maps: record.map.clone(),
        where_sql: record.where_sql.clone(),
        key: record.key.clone(),
        dual_write: false,
    };
    let forward_plan = prepare(&forward_spec, opts).await?;
    let forward = renamed(d, &forward_plan.sync, &current.name, &record.target_table);

    let current_q = d.qualified(&current.schema, &current.name);
    let old_q = d.qualified(&old.schema, &old.name);
    let mut steps: Vec<String> = swap
        .lock_sql(&[current_q.clone(), old_q.clone()])
        .into_iter()
        .collect();
    // The reverse sync wrote explicit values: the restored table's own
    // sequences move past them, and past the new table's.
    steps.extend(sequence_steps(session.as_mut(), swap, &current, &old, &old_q).await?);
    steps.extend(d.sync_drop_sql(&current_q, &current.schema, &back_plan.sync.name));
    steps.extend(swap.swap_names_sql(&current_q, &record.target_table, &old_q, &current.name));
    for fk in &foreign_keys {
        steps.push(swap.drop_constraint_sql(&fk.table, &fk.name));
        steps.push(swap.add_constraint_not_valid_sql(&fk.table, &fk.name, &fk.definition));
    }
    for object in d.sync_objects(&forward) {
        steps.extend(object.create);
    }
    steps.push(swap.comment_sql(&current_q, None));
    let retries = swap_in_one_transaction(&back_plan, &steps, opts, "rollback").await?;
    validate_foreign_keys(&back_plan, swap, &foreign_keys).await;
    eprintln!(
        "rowferry: rollback done{}: {} is the old table again, with every write made since the \
         cutover; the new table is {}.{} again, kept current by sync {}",
        retries_note(retries),
        current.display_name(),
        current.schema,
        record.target_table,
        forward.name
    );
    Ok(())
}

pub struct CleanupSpec {
    pub source: crate::url::DbUrl,
    pub table: TableName,
    pub old_name: Option<String>,
    pub drop_old_table: bool,
}

/// After a cutover: drop the old table and the reverse sync.
pub async fn cleanup(spec: &CleanupSpec, opts: &RunOptions) -> Result<()> {
    let Swapped {
        db,
        d,
        swap,
        mut session,
        current,
        old,
        ..
    } = swapped(&spec.source, &spec.table, spec.old_name.as_deref(), opts).await?;
    if !spec.drop_old_table {
        return Err(Error::input(format!(
            "cleanup drops {} (the table swapped out by the cutover, and with it the way back) \
             and the reverse sync on {}. Rerun with --drop-old-table to confirm",
            old.display_name(),
            current.display_name()
        )));
    }
    let current_q = d.qualified(&current.schema, &current.name);
    let old_q = d.qualified(&old.schema, &old.name);
    let mut steps = d.sync_drop_sql(
        &current_q,
        &current.schema,
        &sync::sync_name(&old.schema, &old.name),
    );
    // A sequence the new table still uses must outlive the old table.
    let shared = session
        .query(
            swap.shared_owned_sequences_sql(),
            &[old.schema.clone(), old.name.clone()],
        )
        .await?;
    for r in shared {
        if let Some(seq) = r.first().cloned().flatten() {
            steps.push(swap.disown_sequence_sql(&seq));
        }
    }
    steps.push(swap.drop_table_sql(&old_q));
    sync::run_ddl(&db, d, &steps, opts)
        .await
        .map_err(|e| e.context("cleanup (nothing changed where DDL is transactional)"))?;
    eprintln!(
        "rowferry: cleanup done: dropped {} and the reverse sync on {}",
        old.display_name(),
        current.display_name()
    );
    Ok(())
}
