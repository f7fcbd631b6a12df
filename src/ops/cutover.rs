//! `rowferry cutover`, `rollback` and `cleanup`: the blue-green swap.
//!
//! The cutover renames the old table away and the new one into its name in
//! ONE short transaction (lock timeout, retried with backoff, then given up
//! with nothing changed), moving sequences past the old table's values,
//! dropping the forward sync and, with `--reverse-sync`, installing triggers
//! that keep the old table a complete fallback. Where DDL is not
//! transactional (MySQL) the same exchange is one atomic RENAME between
//! stand-in tables (`Exchange::with_stand_ins`). Rollback is the exchange
//! the other way. What rollback and cleanup need is recorded in a comment
//! on the old table.

use super::copy::{CopyPlan, prepare};
use super::inspect;
use super::sync::{self, renamed};
use crate::db::{Database, Session, Statement};
use crate::dialect::sync::SyncTriggers;
use crate::dialect::{Dialect, SwapSql};
use crate::error::{Error, ErrorKind, Result};
use crate::spec::{ColumnMap, CopySpec, RunOptions};
use crate::table::{TableInfo, TableName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
    /// The old table's own comment before the cutover (rollback puts it back).
    #[serde(default)]
    previous_comment: Option<String>,
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
            "cutover and rollback are not available for this engine in this version: swap the \
             tables by hand after the copy and verify, then remove the sync",
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
    if name_taken(session.as_mut(), d, swap, &old.schema, &old_name).await? {
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

    let reverse = if spec.reverse_sync {
        Some(reverse_triggers(&plan, &spec.pair.source, opts).await?)
    } else {
        None
    };
    let new_q = d.qualified(&new.schema, &new.name);
    let after_old = d.qualified(&old.schema, &old_name);
    let after_new = d.qualified(&old.schema, &old.name);
    let previous_comment = table_comment(session.as_mut(), d, swap, &old.schema, &old.name)
        .await?
        .flatten();
    let record = CutoverRecord {
        target_table: new.name.clone(),
        map: spec.pair.maps.clone(),
        where_sql: spec.pair.where_sql.clone(),
        key: spec.pair.key.clone(),
        reverse_sync: spec.reverse_sync,
        previous_comment: previous_comment.clone(),
    };
    let exchange = Exchange {
        schema: old.schema.clone(),
        live: old.name.clone(),
        live_new_name: old_name.clone(),
        standby: new.name.clone(),
        live_sync: plan.sync.name.clone(),
        install: reverse.clone(),
        sequences: sequence_steps(session.as_mut(), swap, old, new, &new_q).await?,
        foreign_keys,
        comment: CommentChange {
            side: Side::Live,
            set: Some(format!(
                "{RECORD_PREFIX}{}",
                serde_json::to_string(&record).unwrap_or_default()
            )),
            previous: previous_comment,
        },
    };
    let retries = exchange
        .run(&plan.job.db, session.as_mut(), opts, "cutover")
        .await?;
    validate_foreign_keys(&plan.job.db, swap, &exchange.foreign_keys).await;

    eprintln!(
        "rowferry: cutover done{}: {} is now the new table (was {}); the old table is {}{}",
        retries_note(retries),
        after_new,
        new.display_name(),
        after_old,
        match &reverse {
            Some(_) => format!(
                "; reverse sync {} mirrors every write on {after_new} into it, so `rowferry \
                 rollback --source URL --table {}` loses nothing",
                sync::sync_name(&old.schema, &old_name),
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

/// The sync from the new table back into the old one, as the tables are
/// named now (the exchange renames it).
async fn reverse_triggers(
    plan: &CopyPlan,
    source: &crate::url::DbUrl,
    opts: &RunOptions,
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
    Ok(reverse.sync)
}

/// Which table of an exchange.
#[derive(Debug, Clone, Copy)]
enum Side {
    Live,
    Standby,
}

/// A table comment the exchange sets, and what it puts back if the
/// exchange fails before the names move.
struct CommentChange {
    side: Side,
    set: Option<String>,
    previous: Option<String>,
}

/// What an interrupted exchange on MySQL leaves under the old table's
/// future name: recognised by this comment, and replaced.
const STAND_IN_COMMENT: &str = "rowferry stand-in: receives trigger writes while the names move";

/// One exchange of names, the same for cutover and rollback in opposite
/// directions: the live table (under the application's name) moves to
/// `live_new_name`, the standby takes the application's name, the sync on
/// the live table stops and `install` starts, from the standby into the
/// live table, in the same instant.
struct Exchange {
    schema: String,
    live: String,
    live_new_name: String,
    standby: String,
    /// The sync whose triggers are on the live table.
    live_sync: String,
    /// The sync to start, as prepared between the tables under their
    /// current names (standby -> live).
    install: Option<SyncTriggers>,
    /// Statements that move sequences, run before the names change.
    sequences: Vec<String>,
    foreign_keys: Vec<ForeignKey>,
    comment: CommentChange,
}

impl Exchange {
    fn q(&self, d: &dyn Dialect, name: &str) -> String {
        d.qualified(&self.schema, name)
    }

    /// The sync to start, under the names after the exchange (its row is
    /// read under the application's name, its target is the live table's
    /// new name), with its triggers created on the table named `on`.
    fn install_on(&self, d: &dyn Dialect, on: &str) -> Option<SyncTriggers> {
        self.install.as_ref().map(|t| {
            let mut t = renamed(d, t, &self.live, &self.live_new_name);
            t.source = self.q(d, on);
            t.copy.source = t.source.clone();
            t
        })
    }

    /// Run it; the number of lock waits retried.
    async fn run(
        &self,
        db: &Arc<dyn Database>,
        session: &mut dyn Session,
        opts: &RunOptions,
        what: &str,
    ) -> Result<u64> {
        let d = db.dialect();
        let swap = swap_sql(d)?;
        if d.transactional_ddl() {
            let steps = self.one_transaction(d, swap);
            return sync::run_ddl(db, d, &steps, opts)
                .await
                .map_err(|e| swap_refused(e, what));
        }
        self.with_stand_ins(db, session, swap, opts, what).await
    }

    /// Where DDL is transactional: everything in one transaction under a
    /// lock taken with the lock timeout. If the retries run out, nothing
    /// changed.
    fn one_transaction(&self, d: &dyn Dialect, swap: &dyn SwapSql) -> Vec<String> {
        let live_q = self.q(d, &self.live);
        let standby_q = self.q(d, &self.standby);
        let mut steps: Vec<String> = swap
            .lock_sql(&[live_q.clone(), standby_q.clone()])
            .into_iter()
            .collect();
        steps.extend(self.sequences.iter().cloned());
        steps.extend(d.sync_drop_sql(&live_q, &self.schema, &self.live_sync));
        steps.extend(swap.renames_sql(&[(&live_q, &self.live_new_name), (&standby_q, &self.live)]));
        for fk in &self.foreign_keys {
            steps.push(swap.drop_constraint_sql(&fk.table, &fk.name));
            steps.push(swap.add_constraint_not_valid_sql(&fk.table, &fk.name, &fk.definition));
        }
        if let Some(t) = self.install_on(d, &self.live) {
            for object in d.sync_objects(&t) {
                steps.extend(object.create);
            }
        }
        let commented = match self.comment.side {
            Side::Live => self.q(d, &self.live_new_name),
            Side::Standby => live_q,
        };
        steps.push(swap.comment_sql(&commented, self.comment.set.as_deref()));
        steps
    }

    /// With syncs both ways during the swap, an application write on the
    /// live table also opens the standby and the live table's new name
    /// (through the triggers). A RENAME that locks tables in name order
    /// and reaches one of those before the live table would hold it while
    /// waiting for the writes in flight: a deadlock the server breaks by
    /// restarting the write, which MariaDB 10.11 then fails with 1146
    /// (reproduced by tests/cutover.rs). With both names after the live
    /// one, the RENAME waits at the live table holding nothing they need.
    fn check_lock_order(&self, swap: &dyn SwapSql, what: &str) -> Result<()> {
        if self.install.is_none() || !swap.renames_lock_in_name_order() {
            return Ok(());
        }
        let early: Vec<&str> = [&self.standby, &self.live_new_name]
            .into_iter()
            .filter(|name| name.as_str() <= self.live.as_str())
            .map(String::as_str)
            .collect();
        if early.is_empty() {
            return Ok(());
        }
        Err(Error::input(format!(
            "{what} with a sync in both directions needs the other tables' names to sort after \
             {live:?} on MySQL/MariaDB, and {} do(es) not: RENAME TABLE locks tables in name \
             order, and an application write caught between those locks fails. Name the new \
             table and the old one after the application's (e.g. {live}_v2 and {live}_old; a \
             new table's sync must then be installed again under its new name), or cut over \
             without --reverse-sync. Nothing changed",
            early
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" and "),
            live = self.live,
        )))
    }

    /// Where DDL commits statement by statement (MySQL), the new triggers
    /// cannot appear in the same transaction as the names. They are
    /// created first, on the standby, writing into a stand-in table under
    /// the live table's future name; a second stand-in waits to take the
    /// standby's name, which the live table's triggers write into. Then ONE
    /// `RENAME TABLE` moves all four names at once. At every instant each
    /// trigger's target exists, and from the rename on every write to the
    /// application's table reaches the other table. The live table's old
    /// triggers and the stand-ins go afterwards. A failure before the
    /// rename takes back each step done.
    async fn with_stand_ins(
        &self,
        db: &Arc<dyn Database>,
        session: &mut dyn Session,
        swap: &dyn SwapSql,
        opts: &RunOptions,
        what: &str,
    ) -> Result<u64> {
        let d = db.dialect();
        self.check_lock_order(swap, what)?;
        let live_q = self.q(d, &self.live);
        let standby_q = self.q(d, &self.standby);
        let live_after = self.q(d, &self.live_new_name);
        let stand_in = |role: &str| {
            let digest = hex::encode(Sha256::digest(format!(
                "{}.{}.{role}",
                self.schema, self.live
            )));
            format!("rowferry_standin_{}", &digest[..12])
        };
        let (retired, waiting) = (stand_in("retired"), stand_in("waiting"));
        let install = self.install_on(d, &self.standby);

        // (step, how to take it back)
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        // Stand-ins left by an interrupted exchange: rowferry's own names.
        for name in [&retired, &waiting] {
            if table_comment(session, d, swap, &self.schema, name)
                .await?
                .is_some()
            {
                steps.push((swap.drop_table_sql(&self.q(d, name)), vec![]));
            }
        }
        if let Some(Some(comment)) =
            table_comment(session, d, swap, &self.schema, &self.live_new_name).await?
            && comment == STAND_IN_COMMENT
        {
            // Its triggers first: the application's writes reach them.
            let name = sync::sync_name(&self.schema, &self.live_new_name);
            steps.extend(
                d.sync_drop_sql(&standby_q, &self.schema, &name)
                    .into_iter()
                    .map(|s| (s, vec![])),
            );
            steps.push((swap.drop_table_sql(&live_after), vec![]));
        }
        steps.extend(self.sequences.iter().map(|s| (s.clone(), vec![])));
        if let Some(t) = &install {
            steps.push((
                swap.create_like_sql(&live_after, &live_q),
                vec![swap.drop_table_sql(&live_after)],
            ));
            steps.push((
                swap.comment_sql(&live_after, Some(STAND_IN_COMMENT)),
                vec![],
            ));
            for create in d.sync_objects(t).into_iter().flat_map(|o| o.create) {
                steps.push((create, d.sync_drop_sql(&standby_q, &self.schema, &t.name)));
            }
        }
        let waiting_q = self.q(d, &waiting);
        steps.push((
            swap.create_like_sql(&waiting_q, &standby_q),
            vec![swap.drop_table_sql(&waiting_q)],
        ));
        // LIKE copies the table comment (the cutover record, in a
        // rollback): the stand-in must not pass for the old table.
        steps.push((swap.comment_sql(&waiting_q, Some(STAND_IN_COMMENT)), vec![]));
        let commented = match self.comment.side {
            Side::Live => &live_q,
            Side::Standby => &standby_q,
        };
        steps.push((
            swap.comment_sql(commented, self.comment.set.as_deref()),
            vec![swap.comment_sql(commented, self.comment.previous.as_deref())],
        ));
        let mut renames = Vec::new();
        if install.is_some() {
            renames.push((live_after.as_str(), retired.as_str()));
        }
        renames.extend([
            (live_q.as_str(), self.live_new_name.as_str()),
            (standby_q.as_str(), self.live.as_str()),
            (waiting_q.as_str(), self.standby.as_str()),
        ]);
        steps.extend(swap.renames_sql(&renames).into_iter().map(|s| (s, vec![])));

        let mut retries = 0;
        for (done, (step, _)) in steps.iter().enumerate() {
            match sync::run_ddl(db, d, std::slice::from_ref(step), opts).await {
                Ok(n) => retries += n,
                Err(e) => {
                    let undo: Vec<String> = steps[..done]
                        .iter()
                        .rev()
                        .flat_map(|(_, undo)| undo.iter().cloned())
                        .collect();
                    let e = swap_refused(e, what);
                    return match sync::run_ddl(db, d, &undo, opts).await {
                        Ok(_) => Err(e),
                        Err(u) => Err(Error::fatal(format!(
                            "{}. Taking back the steps before it failed too ({}): run {} to \
                             remove what is left",
                            e.message,
                            u.message,
                            undo.join("; ")
                        ))),
                    };
                }
            }
        }

        // Swapped. The live table's old triggers now write into the
        // waiting stand-in (under the standby's old name): drop them
        // first, then the stand-ins.
        let mut after = d.sync_drop_sql(&live_after, &self.schema, &self.live_sync);
        after.push(swap.drop_table_sql(&standby_q));
        if install.is_some() {
            after.push(swap.drop_table_sql(&self.q(d, &retired)));
        }
        match sync::run_ddl(db, d, &after, opts).await {
            Ok(n) => Ok(retries + n),
            Err(e) => Err(Error::fatal(format!(
                "{what}: the tables WERE swapped ({} is now the former {}, {live_after} the \
                 former {}), but removing what the swap no longer needs failed: {}. Run: {}",
                live_q,
                standby_q,
                self.live,
                e.message,
                after.join("; ")
            ))),
        }
    }
}

/// A swap that could not happen, said with what to do about it.
fn swap_refused(e: Error, what: &str) -> Error {
    // 55P03 PostgreSQL, 1205 MySQL lock wait timeout (SQL Server's 1205
    // is a deadlock: contention all the same), 1222 SQL Server.
    let advice = if matches!(e.code.as_deref(), Some("55P03" | "1205" | "1222")) {
        "another transaction holds the tables, and waiting for it would queue the application \
         behind the swap; every attempt gave up after --lock-timeout. Find the long transaction \
         (pg_stat_activity, SHOW PROCESSLIST, sys.dm_exec_requests), let it finish, and rerun \
         (or raise --max-retries)"
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
            "{what}: {advice}; nothing changed (the swap is one transaction, or one atomic \
             RENAME after steps that were taken back). Server said: {}",
            e.message
        ),
        ..e
    }
}

/// A table's comment: None if there is no such table, Some(None) if it
/// has no comment.
async fn table_comment(
    session: &mut dyn Session,
    d: &dyn Dialect,
    swap: &dyn SwapSql,
    schema: &str,
    name: &str,
) -> Result<Option<Option<String>>> {
    let rows = session
        .query(d.find_table_sql(), &[schema.to_string(), name.to_string()])
        .await?;
    let Some(id) = rows.first().and_then(|r| r.get(3).cloned().flatten()) else {
        return Ok(None);
    };
    let rows = session.query(swap.table_comment_sql(), &[id]).await?;
    Ok(Some(
        rows.first()
            .and_then(|r| r.first().cloned().flatten())
            .filter(|c| !c.is_empty()),
    ))
}

async fn validate_foreign_keys(db: &Arc<dyn Database>, swap: &dyn SwapSql, keys: &[ForeignKey]) {
    for fk in keys {
        let sql = swap.validate_constraint_sql(&fk.table, &fk.name);
        let result = async {
            let mut s = db.session().await?;
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

/// A table holds the name (a stand-in left by an interrupted swap does
/// not count: the next swap replaces it).
async fn name_taken(
    session: &mut dyn Session,
    d: &dyn Dialect,
    swap: &dyn SwapSql,
    schema: &str,
    name: &str,
) -> Result<bool> {
    Ok(match table_comment(session, d, swap, schema, name).await? {
        None => false,
        Some(comment) => comment.as_deref() != Some(STAND_IN_COMMENT),
    })
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
) -> Result<(CutoverRecord, String)> {
    let rows = session
        .query(swap.table_comment_sql(), std::slice::from_ref(&old.id))
        .await?;
    let comment = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    let record = comment
        .strip_prefix(RECORD_PREFIX)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| {
            Error::input(format!(
                "{} carries no rowferry cutover record (its comment was changed, or it was not \
                 swapped out by `rowferry cutover`); pass --old-name if the old table has \
                 another name",
                old.display_name()
            ))
        })?;
    Ok((record, comment))
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
    /// The comment holding the record, as stored.
    record_text: String,
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
        idle_in_transaction_timeout: None,
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
    let (record, record_text) = record_of(session.as_mut(), swap, &old).await?;
    Ok(Swapped {
        db,
        d,
        swap,
        session,
        current,
        old,
        record,
        record_text,
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
        record_text,
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
    if name_taken(
        session.as_mut(),
        d,
        swap,
        &current.schema,
        &record.target_table,
    )
    .await?
    {
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
    let old_q = d.qualified(&old.schema, &old.name);
    let exchange = Exchange {
        schema: current.schema.clone(),
        live: current.name.clone(),
        live_new_name: record.target_table.clone(),
        standby: old.name.clone(),
        live_sync: back_plan.sync.name.clone(),
        install: Some(forward_plan.sync.clone()),
        // The reverse sync wrote explicit values: the restored table's own
        // sequences move past them, and past the new table's.
        sequences: sequence_steps(session.as_mut(), swap, &current, &old, &old_q).await?,
        foreign_keys,
        comment: CommentChange {
            side: Side::Standby,
            set: record.previous_comment.clone(),
            previous: Some(record_text),
        },
    };
    let retries = exchange
        .run(&back_plan.job.db, session.as_mut(), opts, "rollback")
        .await?;
    validate_foreign_keys(&back_plan.job.db, swap, &exchange.foreign_keys).await;
    eprintln!(
        "rowferry: rollback done{}: {} is the old table again, with every write made since the \
         cutover; the new table is {}.{} again, kept current by sync {}",
        retries_note(retries),
        current.display_name(),
        current.schema,
        record.target_table,
        sync::sync_name(&current.schema, &record.target_table)
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
