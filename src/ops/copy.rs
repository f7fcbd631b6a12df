//! `rowferry copy`: insert-if-absent of each key range into the target.

use super::indexes::{CopyIndexes, IndexOptions};
use super::lengths::{self, LengthGuard, guard_lengths, length_guards};
use super::preflight::Preflight;
use super::sync::{self, SyncState};
use super::{ChunkSql, PreparedJob, inspect, run_job};
use crate::checkpoint::Chunk;
use crate::db::{self, Database, Session, SessionSettings};
use crate::dialect::sync::SyncTriggers;
use crate::dialect::{CopyStatement, Dialect, Presence, copy_chunk_sql};
use crate::error::{Error, ErrorKind, Result};
use crate::planner::KeysetPlanner;
use crate::pool::{ChunkWork, describe_chunk};
use crate::spec::{ColumnMap, CopySpec, JobIdentity, RunOptions};
use crate::table::{Key, TableInfo};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub async fn run(spec: &CopySpec, opts: &RunOptions) -> Result<()> {
    run_with_indexes(spec, opts, IndexOptions::default()).await
}

/// `run` with `--defer-indexes` / `--index-jobs`. Indexes a checkpoint
/// still owes are rebuilt even without the flag.
pub async fn run_with_indexes(
    spec: &CopySpec,
    opts: &RunOptions,
    indexes: IndexOptions,
) -> Result<()> {
    if super::transfer::crosses_servers(spec) {
        if indexes.defer {
            return Err(Error::input(
                "--defer-indexes is not available with --target on another server in this \
                 version; drop the target's secondary indexes before the copy and create them \
                 after it",
            ));
        }
        return super::transfer::run(spec, opts).await;
    }
    let mut plan = prepare(spec, opts).await?;
    // A resumed job passed its pre-flight when it started; rows written
    // since then are caught by the chunk statements themselves.
    if plan.job.resumes(opts) {
        eprintln!(
            "rowferry: pre-flight checks passed when this job started; not repeated on resume"
        );
    } else if let Some(refusal) = preflight(&plan, spec, opts)
        .await?
        .refusal(&plan.target.display_name())
    {
        return Err(refusal);
    }
    if !plan.unwritten_source_columns.is_empty() {
        eprintln!(
            "rowferry: note: source columns not copied (no target column of that name, and no --map): {}",
            plan.unwritten_source_columns.join(", ")
        );
    }
    if plan.sync_state.any_stale() && !spec.dual_write {
        return Err(Error::input(format!(
            "sync triggers {} on {} mirror writes into {} with another --map/--where (or are \
             disabled) than this copy's: the copy and the triggers would write different rows. \
             Run `rowferry sync install` with this copy's flags (or copy with --dual-write, which \
             does it), or `rowferry sync remove` first",
            plan.sync.name,
            plan.job.source.display_name(),
            plan.target.display_name()
        )));
    }
    if spec.dual_write {
        install_sync(&mut plan, opts).await?;
    } else if plan.statement.lock_source_rows {
        eprintln!(
            "rowferry: sync triggers {} mirror writes into {}: source rows are read under share \
             locks so that the triggers' newer versions win",
            plan.sync.name,
            plan.target.display_name()
        );
    }
    // Deferred indexes are dropped under the job's lock before the first
    // chunk and rebuilt under it after the last.
    let indexes = CopyIndexes::attach(&mut plan, spec, opts, indexes)?;
    let _lock = run_job(plan.job, opts).await?;
    indexes.rebuild_pending().await
}

/// `--dual-write`: the triggers go in before the first chunk is read, so
/// every write from then on reaches the target, and they stay afterwards.
async fn install_sync(plan: &mut CopyPlan, opts: &RunOptions) -> Result<()> {
    let target = plan.target.display_name();
    sync::warn_about_limits(plan).await?;
    let done = sync::install(&plan.job.db, &plan.sync, &target, opts).await?;
    let verb = if done.created + done.replaced == 0 {
        "already installed"
    } else {
        "installed"
    };
    eprintln!(
        "rowferry: dual-write: sync triggers {} {verb} on {}; every write to it is mirrored into {target}",
        plan.sync.name,
        plan.job.source.display_name()
    );
    plan.job.summary_note = Some(format!(
        "sync triggers {} stay installed on {} and keep {target} current; `rowferry sync remove` \
         (or the cutover) takes them away",
        plan.sync.name,
        plan.job.source.display_name()
    ));
    Ok(())
}

/// Everything decided before the first row moves; `plan` shows it.
pub struct CopyPlan {
    pub job: PreparedJob,
    pub target: TableInfo,
    pub key: Key,
    /// (target column, source expression) in insert order.
    pub columns: Vec<(String, String)>,
    pub unwritten_source_columns: Vec<String>,
    /// The chunk statement's shape (what sync triggers mirror too),
    /// without the chunk statement's length guards (`length_guards`).
    pub statement: CopyStatement,
    /// The dual-write triggers for this copy, and what of them is installed.
    pub sync: SyncTriggers,
    pub sync_state: SyncState,
    /// Chunk SQL while the target has none of the chunk's rows, and once
    /// it may (after a resume, or with writers filling it).
    pub fast: ChunkSql,
    pub skipping: ChunkSql,
}

fn copy_sql(d: &dyn Dialect, copy: &CopyStatement, key: &Key, presence: Presence) -> ChunkSql {
    ChunkSql {
        first: copy_chunk_sql(d, copy, key, false, presence),
        rest: copy_chunk_sql(d, copy, key, true, presence),
    }
}

/// Connect, read both tables, resolve key and columns, and have the server
/// check the chunk statement. Any problem is an input error (exit 2)
/// found before anything is written.
pub async fn prepare(spec: &CopySpec, opts: &RunOptions) -> Result<CopyPlan> {
    let settings = SessionSettings {
        // Workers, the planner, and one spare for retries.
        pool_size: opts.workers + 2,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        // --coordinate-in-db: a process frozen inside a transaction loses
        // it after a lease, so its locks never hold the others up.
        idle_in_transaction_timeout: opts.coordinate_lease,
    };
    let db: Arc<dyn Database> = Arc::from(db::connect(&spec.source, &settings).await?);
    let d = db.dialect();
    let mut session = db.session().await?;
    let (source, target, key) = inspect_pair(d, session.as_mut(), None, spec).await?;
    super::preflight::refuse_ignore_dup_key(session.as_mut(), d, &target).await?;
    let resolved = resolve_columns(d, &source, &target, &spec.maps, &key)?;
    let mut copy = CopyStatement {
        source: d.qualified(&source.schema, &source.name),
        target: d.qualified(&target.schema, &target.name),
        target_columns: resolved
            .columns
            .iter()
            .map(|(t, _)| d.quote_ident(t))
            .collect(),
        source_exprs: resolved.columns.iter().map(|(_, e)| e.clone()).collect(),
        key_match: resolved
            .key_target_columns
            .iter()
            .zip(&key.columns)
            .map(|(t, k)| (d.quote_ident(t), d.quote_ident(&k.name)))
            .collect(),
        where_sql: spec.where_sql.clone(),
        overriding_identity: resolved.overriding_identity,
        lock_source_rows: false,
        skip_key_conflicts: false,
    };
    // With sync triggers in place (or about to be), rows are read under a
    // share lock: a trigger's newer version of a row then always wins, and
    // a concurrent delete cannot be undone by the copy.
    let other_unique_indexes = match d.unique_index_count_sql() {
        Some(sql) => {
            let rows = session.query(sql, std::slice::from_ref(&target.id)).await?;
            let all: usize = rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            all > resolved.key_indexes.len()
        }
        None => target.unique_indexes.len() > resolved.key_indexes.len(),
    };
    let sync = sync::triggers_for(
        d,
        &source,
        &target,
        &resolved.columns,
        &copy,
        other_unique_indexes,
    );
    let sync_state = sync::state(session.as_mut(), d, &sync, &target.display_name()).await?;
    copy.lock_source_rows = spec.dual_write || sync_state.any_present();
    // Triggers write keys while chunks run. Where the key has the same type
    // on both sides, two source rows can never share a target key, so a
    // conflict on it can only be a trigger's newer row: skip it in place
    // rather than re-running the chunk (which, under a busy writer, meets
    // a new one every time).
    copy.skip_key_conflicts = copy.lock_source_rows
        && resolved
            .key_target_columns
            .iter()
            .zip(&key.columns)
            .all(|(t, s)| target.column(t).is_some_and(|t| t.data_type == s.data_type));
    // Only the chunks guard lengths: a trigger's write that failed would
    // fail the application's own.
    let guards = length_guards(d, &source, &target, &resolved.columns);
    let guarded = guard_lengths(d, &copy, &guards, &key);
    if copy.lock_source_rows && !guards.is_empty() {
        eprintln!(
            "rowferry: note: the sync triggers do not check the length of {} (as the chunks \
             do): an application's write of a longer value may be stored there changed (its \
             trailing spaces cut; on MariaDB a TEXT value into a shorter TEXT column cut to its \
             length modulo 256) rather than refused; `rowferry verify` after the copy finds such \
             rows",
            guards
                .iter()
                .map(|g| format!("{} ({})", g.column, g.data_type))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let fast = copy_sql(d, &guarded, &key, Presence::Absent);
    let skipping = copy_sql(d, &guarded, &key, Presence::MaySkip);
    check_statement(session.as_mut(), &skipping.rest, spec).await?;

    let identity = JobIdentity {
        operation: "copy",
        source: spec.source.identity(),
        target: spec.target.as_ref().unwrap_or(&spec.source).identity(),
        table: source.display_name(),
        target_table: target.display_name(),
        key: key.names(),
        map: spec.maps.clone(),
        where_sql: spec.where_sql.clone(),
    };
    let planner = Arc::new(KeysetPlanner::new(d, copy.source.clone(), key.clone()));
    let work = Arc::new(CopyWork {
        fast: fast.clone(),
        skipping: skipping.clone(),
        target_has_rows: AtomicBool::new(false),
        target: target.display_name(),
        key: key.names(),
        key_indexes: resolved.key_indexes.clone(),
        guards,
        synced: copy.lock_source_rows,
    });
    Ok(CopyPlan {
        job: PreparedJob {
            db,
            identity,
            planner,
            work,
            source,
            phase: "copy",
            lock_db: None,
            lock_name: format!("rowferry:writes:{}", target.id),
            side_state: Default::default(),
            summary_note: None,
            before_chunks: None,
        },
        target,
        key,
        columns: resolved.columns,
        unwritten_source_columns: resolved.unwritten_source_columns,
        statement: copy,
        sync,
        sync_state,
        fast,
        skipping,
    })
}

/// Read both tables (the target through its own session when it lives
/// elsewhere) and choose the key that bounds chunks.
pub(crate) async fn inspect_pair(
    d: &dyn Dialect,
    source_session: &mut dyn Session,
    target_session: Option<&mut dyn Session>,
    spec: &CopySpec,
) -> Result<(TableInfo, TableInfo, Key)> {
    let source = inspect(source_session, d, &spec.table, "--table").await?;
    let target = match target_session {
        Some(t) => inspect(t, d, &spec.target_table, "--target-table").await?,
        None => inspect(source_session, d, &spec.target_table, "--target-table").await?,
    };
    if source.schema == target.schema
        && source.name == target.name
        && spec
            .target
            .as_ref()
            .is_none_or(|t| t.identity() == spec.source.identity())
    {
        return Err(Error::input(format!(
            "--table and --target-table are both {}; copy into another table",
            source.display_name()
        )));
    }
    let key = Key::resolve(&source, spec.key.as_deref())?;
    for column in &key.columns {
        if let Some(reason) = d.unusable_key_reason(column) {
            return Err(Error::input(format!(
                "key column {} of {} ({}) cannot bound chunks: {reason}. Pass --key with \
                 another NOT NULL unique key",
                column.name,
                source.display_name(),
                column.data_type
            )));
        }
    }
    Ok((source, target, key))
}

/// The pre-flight checks (NULLs, narrowing, duplicates), on a connection
/// of their own without the chunk statement timeout: the one read they may
/// need covers every source row in scope.
pub async fn preflight(plan: &CopyPlan, spec: &CopySpec, opts: &RunOptions) -> Result<Preflight> {
    let settings = SessionSettings {
        pool_size: 1,
        lock_timeout: opts.lock_timeout,
        statement_timeout: std::time::Duration::ZERO,
        idle_in_transaction_timeout: None,
    };
    let db = db::connect(&spec.source, &settings).await?;
    let mut session = db.session().await?;
    super::preflight::run(
        session.as_mut(),
        db.dialect(),
        &plan.job.source,
        &plan.target,
        &plan.columns,
        &plan.key,
        spec.where_sql.as_deref(),
    )
    .await
}

/// Let the server parse and plan the chunk statement: a bad `--where`,
/// `--map` or a missing privilege is reported now, not after N chunks.
async fn check_statement(session: &mut dyn Session, sql: &str, spec: &CopySpec) -> Result<()> {
    session.check(sql).await.map_err(|e| {
        if e.is_retryable() {
            return e;
        }
        let flags = match (spec.maps.is_empty(), spec.where_sql.is_none()) {
            (true, true) => "the tables' definitions",
            (false, true) => "--map",
            (true, false) => "--where",
            (false, false) => "--map or --where",
        };
        Error::input(format!(
            "the server rejected the copy statement ({}); check {flags}. Statement: {sql}",
            e.message
        ))
    })
}

pub(crate) struct ResolvedColumns {
    pub(crate) columns: Vec<(String, String)>,
    /// Target columns that receive the key, and their unique index.
    pub(crate) key_target_columns: Vec<String>,
    pub(crate) key_indexes: Vec<String>,
    pub(crate) overriding_identity: bool,
    pub(crate) unwritten_source_columns: Vec<String>,
}

/// Which target columns are written and from what: `--map` first, then
/// same-named source columns; target-only columns get their defaults;
/// generated columns are never written.
pub(crate) fn resolve_columns(
    d: &dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    maps: &[ColumnMap],
    key: &Key,
) -> Result<ResolvedColumns> {
    let mut mapped: Vec<(String, &str)> = Vec::new();
    for m in maps {
        let column = target
            .column_named(&m.column)
            .map_err(|e| e.context("--map"))?;
        if column.generated {
            return Err(Error::input(format!(
                "--map {}: column {} of {} is generated; the target computes it, so it cannot be mapped",
                m.column,
                column.name,
                target.display_name()
            )));
        }
        if mapped.iter().any(|(c, _)| *c == column.name) {
            return Err(Error::input(format!(
                "--map names target column {} twice",
                column.name
            )));
        }
        mapped.push((column.name.clone(), &m.expr));
    }
    let mut columns = Vec::new();
    let mut key_target_columns = vec![None; key.columns.len()];
    let mut overriding_identity = false;
    for column in target.columns.iter().filter(|c| !c.generated) {
        let expr = match mapped.iter().find(|(c, _)| *c == column.name) {
            Some((_, expr)) => expr.to_string(),
            None => match source.column(&column.name) {
                Some(_) => d.quote_ident(&column.name),
                None => continue, // target-only: its default
            },
        };
        // The target column that receives a key column unchanged is how
        // insert-if-absent finds a row's copy.
        for (i, k) in key.columns.iter().enumerate() {
            if names_column(d, &expr, &k.name) {
                key_target_columns[i].get_or_insert(column.name.clone());
            }
        }
        overriding_identity |= column.identity_always;
        columns.push((column.name.clone(), expr));
    }
    let key_target_columns = key_target_columns
        .into_iter()
        .zip(&key.columns)
        .map(|(c, k)| {
            c.ok_or_else(|| {
                Error::input(format!(
                    "key column {} of {} is not copied into any column of {}; the target needs \
                     the copy key to insert each row once. Add a column of that name or --map TARGET_COL={}",
                    k.name,
                    source.display_name(),
                    target.display_name(),
                    d.quote_ident(&k.name)
                ))
            })
        })
        .collect::<Result<Vec<String>>>()?;
    // Every unique index on exactly these columns: the server may report a
    // duplicate key through any of them.
    let key_indexes: Vec<String> = target
        .unique_indexes
        .iter()
        .filter(|i| {
            i.columns.len() == key_target_columns.len()
                && i.columns.iter().all(|c| key_target_columns.contains(c))
        })
        .map(|i| i.name.clone())
        .collect();
    if key_indexes.is_empty() {
        return Err(Error::input(format!(
            "target {} has no unique index on ({}), the columns that receive the copy key; \
             insert-if-absent needs one to skip rows already copied. Create it (CREATE UNIQUE \
             INDEX CONCURRENTLY ...) or copy into a table with the same primary key",
            target.display_name(),
            key_target_columns.join(", ")
        )));
    }
    let unwritten_source_columns = source
        .columns
        .iter()
        .filter(|s| !columns.iter().any(|(_, e)| names_column(d, e, &s.name)))
        .map(|s| s.name.clone())
        .collect();
    Ok(ResolvedColumns {
        columns,
        key_target_columns,
        key_indexes,
        overriding_identity,
        unwritten_source_columns,
    })
}

/// Whether a source expression is just the column `name` (bare or quoted).
pub(crate) fn names_column(d: &dyn Dialect, expr: &str, name: &str) -> bool {
    let expr = expr.trim();
    expr == d.quote_ident(name) || (expr == name && is_plain_identifier(name))
}

fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// One chunk: one INSERT ... SELECT in its own transaction. It starts
/// with the plain insert (about 40% cheaper per row than probing the target
/// for each row) and switches for good to the anti-join the first time a
/// chunk hits a duplicate key (a row already there?): a plain insert that succeeds
/// inserted only absent rows, so both give the same result.
struct CopyWork {
    fast: ChunkSql,
    skipping: ChunkSql,
    target_has_rows: AtomicBool,
    target: String,
    key: Vec<String>,
    /// The target's unique indexes on the key.
    key_indexes: Vec<String>,
    /// The columns whose values the chunk statement checks for length,
    /// by the guard's number.
    guards: Vec<LengthGuard>,
    /// Sync triggers write into the target too (they guard no length).
    synced: bool,
}

impl CopyWork {
    /// A duplicate on one of the key's unique indexes (MySQL 8 names it
    /// `table.index`).
    fn is_key_conflict(&self, e: &Error) -> bool {
        e.duplicate_key.as_ref().is_some_and(|named| {
            self.key_indexes.iter().any(|idx| {
                named == idx
                    || named
                        .strip_suffix(idx.as_str())
                        .is_some_and(|t| t.ends_with('.'))
            })
        })
    }
}

#[async_trait]
impl ChunkWork for CopyWork {
    async fn run(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<u64> {
        if !self.target_has_rows.load(Ordering::Relaxed) {
            match session.transaction(&[self.fast.statement(chunk)]).await {
                Ok(counts) => return Ok(counts.first().copied().unwrap_or(0)),
                // Any duplicate: perhaps a row already there. The anti-join
                // below skips present rows and still raises a conflict on
                // another key, however the server names the index.
                Err(e) if e.duplicate_key.is_some() => {
                    self.target_has_rows.store(true, Ordering::Relaxed)
                }
                Err(e) => return Err(e),
            }
        }
        match session.transaction(&[self.skipping.statement(chunk)]).await {
            Ok(counts) => Ok(counts.first().copied().unwrap_or(0)),
            // Another writer (a dual-write trigger, the application) added
            // one of these keys after the anti-join looked: run the chunk
            // again and it will skip that row.
            Err(e) if self.is_key_conflict(&e) => Err(e.with_kind(ErrorKind::Retryable)),
            Err(e) => Err(e),
        }
    }

    fn explain(&self, chunk: &Chunk, error: Error) -> Error {
        if let Some(refusal) = lengths::refusal(
            &self.guards,
            self.synced,
            &self.target,
            &self.key,
            chunk,
            &error,
        ) {
            return refusal;
        }
        if self.is_key_conflict(&error) {
            // Retried and still conflicting: not a race with a writer.
            return Error::fatal(format!(
                "{}: two source rows map to the same key in {} (unique index `{}`), for \
                 example because a target key column is narrower or case-insensitive where \
                 the source's is not. The chunk was rolled back and no row was dropped. Make \
                 the target's key columns hold the source's values exactly, then rerun the \
                 same command to resume. Server said: {}",
                describe_chunk(chunk),
                self.target,
                error.duplicate_key.as_deref().unwrap_or("?"),
                error.message
            ));
        }
        if let Some(constraint) = &error.duplicate_key {
            return Error::fatal(format!(
                "{}: a source row conflicts with unique constraint `{constraint}` of {} on \
                 columns other than the copy key ({}). The chunk was rolled back and no row was \
                 dropped. Fix the conflicting rows (or the constraint) and rerun the same \
                 command to resume. Server said: {}",
                describe_chunk(chunk),
                self.target,
                self.key.join(", "),
                error.message
            ));
        }
        error.context(format!("{} of {}", describe_chunk(chunk), self.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::postgres::Postgres;
    use crate::dialect::test_support::column;
    use crate::dialect::types::LengthUnit;
    use crate::table::UniqueIndex;

    fn table(name: &str, cols: &[&str]) -> TableInfo {
        TableInfo {
            id: "1".into(),
            schema: "s".into(),
            name: name.into(),
            columns: cols.iter().map(|c| column(c, "bigint")).collect(),
            unique_indexes: vec![UniqueIndex {
                name: format!("{name}_pkey"),
                columns: vec!["id".into()],
                primary: true,
            }],
            estimated_rows: 0,
            estimated_row_bytes: 1,
        }
    }

    #[test]
    fn maps_same_names_and_leaves_target_only_columns_to_defaults() {
        let src = table("a", &["id", "x", "gone"]);
        let mut dst = table("b", &["id", "x", "y", "g"]);
        dst.columns[3].generated = true;
        let key = Key::resolve(&src, None).unwrap();
        let maps = vec![ColumnMap {
            column: "y".into(),
            expr: "x * 2".into(),
        }];
        let r = resolve_columns(&Postgres, &src, &dst, &maps, &key).unwrap();
        assert_eq!(
            r.columns,
            vec![
                ("id".to_string(), "\"id\"".to_string()),
                ("x".into(), "\"x\"".into()),
                ("y".into(), "x * 2".into())
            ]
        );
        assert_eq!(r.key_target_columns, vec!["id"]);
        assert_eq!(r.key_indexes, vec!["b_pkey"]);
        assert_eq!(r.unwritten_source_columns, vec!["gone"]);
    }

    #[test]
    fn renamed_key_is_matched_in_its_new_column() {
        let src = table("a", &["id", "x"]);
        let mut dst = table("b", &["new_id", "x"]);
        dst.unique_indexes[0].columns = vec!["new_id".into()];
        let key = Key::resolve(&src, None).unwrap();
        let maps = vec![ColumnMap {
            column: "new_id".into(),
            expr: "id".into(),
        }];
        let r = resolve_columns(&Postgres, &src, &dst, &maps, &key).unwrap();
        assert_eq!(r.key_target_columns, vec!["new_id"]);
    }

    #[test]
    fn refuses_generated_maps_unknown_columns_and_missing_unique_index() {
        let src = table("a", &["id", "x"]);
        let mut dst = table("b", &["id", "x", "g"]);
        dst.columns[2].generated = true;
        let key = Key::resolve(&src, None).unwrap();
        let m = |c: &str| {
            vec![ColumnMap {
                column: c.into(),
                expr: "1".into(),
            }]
        };
        let e = resolve_columns(&Postgres, &src, &dst, &m("g"), &key)
            .err()
            .unwrap();
        assert!(e.message.contains("generated"), "{e}");
        let e = resolve_columns(&Postgres, &src, &dst, &m("nope"), &key)
            .err()
            .unwrap();
        assert!(
            e.message.contains("--map") && e.message.contains("no column `nope`"),
            "{e}"
        );
        dst.unique_indexes.clear();
        let e = resolve_columns(&Postgres, &src, &dst, &[], &key)
            .err()
            .unwrap();
        assert!(e.message.contains("no unique index"), "{e}");
        let e = resolve_columns(&Postgres, &src, &table("c", &["other", "x"]), &[], &key)
            .err()
            .unwrap();
        assert!(e.message.contains("not copied"), "{e}");
    }

    #[test]
    fn only_guarded_columns_change_in_the_chunk_statement() {
        let mut src = table("a", &["id", "v", "w", "n"]);
        src.columns[1].data_type = "text".into();
        src.columns[2].data_type = "character varying(3)".into();
        let mut dst = table("b", &["id", "v", "w", "n", "m"]);
        for c in &mut dst.columns[1..] {
            c.data_type = "character varying(5)".into();
        }
        let key = Key::resolve(&src, None).unwrap();
        let maps = vec![ColumnMap {
            column: "m".into(),
            expr: "upper(v)".into(),
        }];
        let r = resolve_columns(&Postgres, &src, &dst, &maps, &key).unwrap();
        let guards = length_guards(&Postgres, &src, &dst, &r.columns);
        assert_eq!(
            guards
                .iter()
                .map(|g| (g.at, g.column.as_str(), g.max, g.value.as_str(), g.mapped))
                .collect::<Vec<_>>(),
            vec![(1, "v", 5, "v", false), (4, "m", 5, "upper(v)", true)]
        );
        let copy = CopyStatement {
            source: "s.a".into(),
            target: "s.b".into(),
            target_columns: r
                .columns
                .iter()
                .map(|(t, _)| Postgres.quote_ident(t))
                .collect(),
            source_exprs: r.columns.iter().map(|(_, e)| e.clone()).collect(),
            key_match: vec![(r#""id""#.into(), r#""id""#.into())],
            where_sql: None,
            overriding_identity: false,
            lock_source_rows: false,
            skip_key_conflicts: false,
        };
        let guarded = guard_lengths(&Postgres, &copy, &guards, &key);
        assert_eq!(guarded.source_exprs[0], r#""id""#);
        assert_eq!(guarded.source_exprs[2], r#""w""#);
        assert_eq!(guarded.source_exprs[3], r#""n""#);
        assert!(
            guarded.source_exprs[1].contains("'rowferry_too_long:0:'")
                && guarded.source_exprs[1].ends_with(r#"ELSE "v" END"#),
            "{}",
            guarded.source_exprs[1]
        );
        assert!(
            guarded.source_exprs[4].contains("'rowferry_too_long:1:'")
                && guarded.source_exprs[4].ends_with("OFFSET 0) AS rowferry_once_1)")
                && guarded.source_exprs[4].matches("upper(v)").count() == 1,
            "{}",
            guarded.source_exprs[4]
        );
        // What the sync triggers mirror stays as written.
        assert_eq!(copy.source_exprs[4], "upper(v)");
    }

    #[test]
    fn a_failed_guard_names_the_column_the_row_and_the_way_out() {
        let sql = ChunkSql {
            first: String::new(),
            rest: String::new(),
        };
        let work = CopyWork {
            fast: sql.clone(),
            skipping: sql,
            target_has_rows: AtomicBool::new(false),
            target: "s.dst".into(),
            key: vec!["id".into()],
            key_indexes: vec!["dst_pkey".into()],
            guards: vec![LengthGuard {
                at: 1,
                column: "v".into(),
                data_type: "character varying(5)".into(),
                max: 5,
                unit: LengthUnit::Chars,
                value: "lower(v)".into(),
                mapped: true,
                charset: None,
            }],
            synced: false,
        };
        let chunk = Chunk {
            seq: 3,
            lo: Some(vec!["4".into()]),
            hi: vec!["6".into()],
            planned_rows: 2,
        };
        let server = |m: &str| {
            let mut e = Error::fatal(m);
            e.code = Some("22P02".into());
            e
        };
        let e = work.explain(
            &chunk,
            server(r#"invalid input syntax for type integer: "rowferry_too_long:0:10:3:["6"]""#),
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.message,
            "chunk (4, 6]: s.dst column v (character varying(5)) holds at most 5 characters, but \
             the value of the row with key id = 6 is 10 characters long, its last 5 trailing \
             spaces, which the server would cut without an error (rowferry copies every value \
             exactly): nothing of this chunk was written. Widen the column, or --map \
             v=rtrim(lower(v)) if its trailing spaces do not matter, then rerun the same command \
             to resume"
        );
        // Other characters past the limit, and a key the server cut.
        let e = work.explain(
            &chunk,
            server("Truncated incorrect INTEGER value: 'rowferry_too_long:0:8:8:[\"zz...'"),
        );
        assert!(
            e.message.contains(
                "the value of a row is 8 characters long (8 without trailing spaces): nothing \
                 of this chunk was written. Widen the column, or --map v=<expression>"
            ),
            "{e}"
        );
        // A guard this job does not have, or any other error: as it was.
        let e = work.explain(&chunk, server("rowferry_too_long:4:8:8:[\"1\"]"));
        assert!(
            e.message
                .starts_with("chunk (4, 6] of s.dst: rowferry_too_long"),
            "{e}"
        );
        let e = work.explain(
            &chunk,
            server("value too long for type character varying(5)"),
        );
        assert_eq!(
            e.message,
            "chunk (4, 6] of s.dst: value too long for type character varying(5)"
        );
        // With sync triggers, which check no length.
        let synced = CopyWork {
            synced: true,
            ..work
        };
        let e = synced.explain(
            &chunk,
            server(r#"invalid input syntax for type integer: "rowferry_too_long:0:10:3:["6"]""#),
        );
        assert!(
            e.message.ends_with(
                "then rerun the same command to resume. The sync triggers check no length: a \
                 value the application wrote since they exist may already be stored cut; after \
                 the copy, `rowferry verify` finds such rows"
            ),
            "{e}"
        );
    }
}
