//! Deferred secondary indexes: `copy --defer-indexes`, and `rowferry
//! indexes defer|rebuild|status`. The definitions are recorded (in the
//! copy's checkpoint, or in a small state file) before anything is
//! dropped; the rebuild builds them online (PostgreSQL `CREATE INDEX
//! CONCURRENTLY`, MySQL `ALTER TABLE ... ADD ..., ALGORITHM=INPLACE,
//! LOCK=NONE`), finds what a failed concurrent build left INVALID, drops it
//! and builds it again, and never skips an index by `IF NOT EXISTS`: an
//! index of the recorded name is skipped only after the catalog showed it
//! valid with the recorded definition. Indexes that carry a guarantee
//! (primary key, unique, exclusion) or that the server needs are kept.

use super::{BeforeChunks, inspect, watch_signals};
use crate::checkpoint::{Checkpoint, now_rfc3339};
use crate::db::{self, Database, Session, SessionSettings};
use crate::dialect::indexes::{CatalogIndex, IndexDefinition, IndexSql};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::RetryingSession;
use crate::progress::Stats;
use crate::spec::RunOptions;
use crate::table::{TableInfo, TableName};
use crate::url::DbUrl;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexAction {
    /// Record the table's secondary index definitions, then drop them.
    Defer,
    /// Build the recorded indexes again online; repair INVALID leftovers.
    Rebuild,
    /// Show each index: valid, missing, invalid, or kept (and why).
    Status,
}

/// `copy --defer-indexes --index-jobs N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOptions {
    pub defer: bool,
    /// Processes that build each index, where the server can use them.
    pub jobs: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            defer: false,
            jobs: 2,
        }
    }
}

/// The record: which indexes were dropped and must come back, kept in
/// the copy's checkpoint or the `indexes` state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredIndexes {
    /// Server and database (no password), and the table, as schema.table.
    pub target: String,
    pub table: String,
    pub deferred_at: String,
    /// Every index dropped, with its definition as the server wrote it.
    pub indexes: Vec<IndexDefinition>,
    /// Indexes left in place, and why.
    #[serde(default)]
    pub kept: Vec<KeptIndex>,
    /// Set once every index above is back and valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptIndex {
    pub name: String,
    pub reason: String,
}

impl DeferredIndexes {
    pub fn pending(&self) -> bool {
        self.rebuilt_at.is_none()
    }

    /// Still owed a rebuild, on this server's `table`.
    pub fn owed_by(&self, target: &str, table: &str) -> bool {
        self.pending() && self.target == target && self.table == table
    }

    fn names(&self) -> String {
        names(self.indexes.iter().map(|i| i.name.as_str()))
    }
}

/// The indexes a record at `path` (a state file or a copy's checkpoint)
/// still owes `table` on `target`, if any: what a cutover must not leave
/// behind. Unreadable or absent files owe nothing.
pub fn owed_at(path: &Path, target: &str, table: &str) -> Option<String> {
    let (_, record) = Store::load(path).ok()?;
    record
        .filter(|r| r.owed_by(target, table))
        .map(|r| r.names())
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// One table's indexes and a connection pool for their DDL.
struct Target {
    /// No statement timeout: a build takes as long as the table needs
    /// (the chunks' --statement-timeout would cut it). Lock waits keep
    /// --lock-timeout and are retried.
    db: Arc<dyn Database>,
    isql: &'static dyn IndexSql,
    table: TableInfo,
    jobs: usize,
    max_retries: u32,
    /// Others may write the table (sync triggers, the application):
    /// builds must not block them. A copy's target without sync triggers
    /// is written by nothing else, and a plain build reads it once.
    online: bool,
    /// Indexes of the wanted names count as there whatever their
    /// definition (`copy --create-target`: built from another server's
    /// definitions, which this server prints its own way); deferred
    /// indexes must come back with the recorded definition.
    by_name: bool,
}

async fn connect(url: &DbUrl, opts: &RunOptions, jobs: usize) -> Result<Arc<dyn Database>> {
    let settings = SessionSettings {
        // A session per concurrent build, and one to read the catalog.
        pool_size: jobs.max(1) + 1,
        lock_timeout: opts.lock_timeout,
        statement_timeout: Duration::ZERO,
        idle_in_transaction_timeout: None,
    };
    Ok(Arc::from(db::connect(url, &settings).await?))
}

fn index_sql(db: &Arc<dyn Database>, url: &DbUrl) -> Result<&'static dyn IndexSql> {
    db.dialect().indexes().ok_or_else(|| {
        Error::input(format!(
            "{url}: deferred indexes are not available for this engine in this version"
        ))
    })
}

impl Target {
    async fn catalog(&self, s: &mut dyn Session) -> Result<Vec<CatalogIndex>> {
        let (sql, params) =
            self.isql
                .list_indexes(&self.table.id, &self.table.schema, &self.table.name);
        let rows = s.query(&sql, &params).await?;
        self.isql.read_indexes(&rows)
    }

    async fn catalog_now(&self) -> Result<Vec<CatalogIndex>> {
        let mut s = self.db.session().await?;
        self.catalog(s.as_mut()).await
    }

    fn retrying(&self, stop: &CancellationToken) -> RetryingSession {
        RetryingSession::new(
            self.db.clone(),
            Arc::new(Stats::default()),
            self.max_retries,
            stop.clone(),
        )
    }

    /// A record of the deferrable indexes the table has now.
    fn record(&self, target: &str, catalog: &[CatalogIndex]) -> DeferredIndexes {
        DeferredIndexes {
            target: target.to_string(),
            table: self.table.display_name(),
            deferred_at: now_rfc3339(),
            indexes: catalog
                .iter()
                .filter(|c| c.kept_because.is_none())
                .map(IndexDefinition::from)
                .collect(),
            kept: kept(catalog),
            rebuilt_at: None,
        }
    }

    /// Whether `found` is the index `want` asks for.
    fn is(&self, found: &CatalogIndex, want: &IndexDefinition) -> bool {
        self.by_name || found.definition == want.definition
    }

    fn conflict(&self, want: &IndexDefinition, found: &CatalogIndex) -> Error {
        Error::input(format!(
            "index {} of {} exists with another definition than the one recorded when it was \
             deferred (now `{}`, recorded `{}`); rowferry never replaces an index it did not \
             build. Drop or rename that index, then rerun",
            want.name,
            self.table.display_name(),
            found.definition,
            want.definition
        ))
    }

    /// Drop the recorded indexes that are still there. Idempotent: a
    /// rerun after a crash drops what is left.
    async fn drop_recorded(self: &Arc<Self>, record: &DeferredIndexes) -> Result<Vec<String>> {
        let stop = CancellationToken::new();
        let dropped = self
            .retrying(&stop)
            .run(|s| {
                let (t, record) = (self.clone(), record.clone());
                Box::pin(async move {
                    let current = t.catalog(s).await?;
                    let mut present = Vec::new();
                    for want in &record.indexes {
                        match current.iter().find(|c| c.name == want.name) {
                            None => {}
                            // An INVALID one (a failed build) goes too.
                            Some(c) if !c.valid || c.definition == want.definition => {
                                present.push(want.name.clone())
                            }
                            Some(c) => return Err(t.conflict(want, c)),
                        }
                    }
                    let refs: Vec<&str> = present.iter().map(String::as_str).collect();
                    for sql in t.isql.drop_sql(&t.table.schema, &t.table.name, &refs) {
                        s.execute(&sql).await?;
                    }
                    Ok(present)
                })
            })
            .await;
        match dropped {
            Ok(Some(names)) => Ok(names),
            Ok(None) => Err(Error::interrupted()),
            Err(e) => Err(explain_ddl(e, "dropping", record, &self.table)),
        }
    }

    /// Build what is missing or INVALID; true when every recorded index
    /// is back and valid, false when stopped by a signal first.
    async fn rebuild(
        self: &Arc<Self>,
        record: &DeferredIndexes,
        stop: &CancellationToken,
    ) -> Result<bool> {
        let table = self.table.display_name();
        let current = self.catalog_now().await?;
        // Refuse before building anything.
        let mut missing = Vec::new();
        for want in &record.indexes {
            match current.iter().find(|c| c.name == want.name) {
                Some(c) if c.valid && self.is(c, want) => {}
                Some(c) if c.valid => return Err(self.conflict(want, c)),
                Some(_) => {
                    eprintln!(
                        "rowferry: index {} of {table} is INVALID (left by a failed or interrupted \
                         concurrent build): dropping it and building it again",
                        want.name
                    );
                    missing.push(want.clone());
                }
                None => missing.push(want.clone()),
            }
        }
        let present = record.indexes.len() - missing.len();
        if present > 0 {
            eprintln!(
                "rowferry: {present} {} of {table} already present{} and valid: {}",
                if self.by_name {
                    "index(es)"
                } else {
                    "recorded index(es)"
                },
                if self.by_name {
                    ""
                } else {
                    " with the recorded definition"
                },
                names(
                    record
                        .indexes
                        .iter()
                        .filter(|i| !missing.iter().any(|m| m.name == i.name))
                        .map(|i| i.name.as_str())
                )
            );
        }
        // MySQL builds them all in one ALTER, one scan. PostgreSQL builds one
        // index per statement. Online (CONCURRENTLY) builds run one after
        // another, each with --index-jobs processes: two on one table wait
        // on each other's lock (and deadlock). Plain builds of a table
        // nothing else writes share their lock: up to --index-jobs run at
        // once, one process each (faster than one at a time with parallel
        // workers: the sorts' merge phases overlap).
        let units: Vec<Vec<IndexDefinition>> = if missing.is_empty() {
            Vec::new()
        } else if self.isql.builds_together() {
            vec![missing]
        } else {
            missing.into_iter().map(|i| vec![i]).collect()
        };
        let (at_once, processes) = if self.online || self.isql.builds_together() {
            (1, self.jobs)
        } else {
            (self.jobs.max(1), 1)
        };
        let crash_after: Option<usize> = std::env::var("ROWFERRY_CRASH_AFTER_INDEXES")
            .ok()
            .and_then(|v| v.parse().ok());
        let total = units.len();
        let slots = Arc::new(tokio::sync::Semaphore::new(at_once));
        let mut builds = tokio::task::JoinSet::new();
        for (n, unit) in units.into_iter().enumerate() {
            let (t, slots, stop) = (self.clone(), slots.clone(), stop.clone());
            builds.spawn(async move {
                let _slot = slots.acquire_owned().await;
                if stop.is_cancelled() {
                    return Ok(false);
                }
                let what = names(unit.iter().map(|i| i.name.as_str()));
                eprintln!(
                    "rowferry: building index(es) {what} of {} {} ({}/{total})",
                    t.table.display_name(),
                    if t.online {
                        "online"
                    } else {
                        "(nothing else writes the table: one scan, not the online two)"
                    },
                    n + 1
                );
                let started = Instant::now();
                let built = t
                    .retrying(&stop)
                    .run(|s| {
                        let (t, unit) = (t.clone(), unit.clone());
                        Box::pin(async move { t.build(s, &unit, processes).await })
                    })
                    .await
                    .map_err(|e| t.explain_build(e, &unit))?;
                if built.is_some() {
                    eprintln!(
                        "rowferry: built {what} in {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok::<bool, Error>(built.is_some())
            });
        }
        let (mut done, mut all_built) = (0, true);
        while let Some(joined) = builds.join_next().await {
            let built = joined.map_err(|e| Error::fatal(format!("index build task: {e}")))??;
            all_built &= built;
            done += usize::from(built);
            if built && crash_after == Some(done) {
                eprintln!("rowferry: ROWFERRY_CRASH_AFTER_INDEXES={done} reached; aborting");
                std::process::abort();
            }
        }
        if !all_built {
            return Ok(false);
        }
        // Proof from the catalog, not from the statements' success.
        let after = self.catalog_now().await?;
        for want in &record.indexes {
            match after.iter().find(|c| c.name == want.name) {
                Some(c) if c.valid && self.is(c, want) => {}
                Some(c) if !c.valid => {
                    return Err(Error::fatal(format!(
                        "index {} of {table} is INVALID after its build; rerun to drop and build \
                         it again",
                        want.name
                    )));
                }
                Some(c) => return Err(self.conflict(want, c)),
                None => {
                    return Err(Error::fatal(format!(
                        "index {} of {table} is missing after its build (dropped by another \
                         session?); rerun to build it again",
                        want.name
                    )));
                }
            }
        }
        Ok(true)
    }

    /// One build statement's worth, looked at afresh: a retry may find
    /// the index built, or left INVALID by the attempt that failed.
    async fn build(
        &self,
        s: &mut dyn Session,
        unit: &[IndexDefinition],
        processes: usize,
    ) -> Result<()> {
        let current = self.catalog(s).await?;
        let mut todo = Vec::new();
        for want in unit {
            match current.iter().find(|c| c.name == want.name) {
                None => todo.push(want),
                Some(c) if !c.valid => {
                    for sql in self
                        .isql
                        .drop_sql(&self.table.schema, &self.table.name, &[&c.name])
                    {
                        s.execute(&sql).await?;
                    }
                    todo.push(want);
                }
                Some(c) if self.is(c, want) => {}
                Some(c) => return Err(self.conflict(want, c)),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        for sql in self.isql.build_settings(processes) {
            // Older servers lack some settings; the build just uses fewer
            // processes.
            let _ = s.execute(&sql).await;
        }
        let (schema, name) = (&self.table.schema, &self.table.name);
        let statements = if self.online {
            self.isql.build_sql(schema, name, &todo)?
        } else {
            self.isql.private_build_sql(schema, name, &todo)?
        };
        for sql in statements {
            s.execute(&sql).await?;
        }
        Ok(())
    }
}

fn kept(catalog: &[CatalogIndex]) -> Vec<KeptIndex> {
    catalog
        .iter()
        .filter_map(|c| {
            c.kept_because.as_ref().map(|reason| KeptIndex {
                name: c.name.clone(),
                reason: reason.clone(),
            })
        })
        .collect()
}

impl Target {
    /// Server refusals told with the fix; the record stays as it was.
    fn explain_build(&self, e: Error, unit: &[IndexDefinition]) -> Error {
        let what = names(unit.iter().map(|i| i.name.as_str()));
        let table = self.table.display_name();
        let kind = if e.is_retryable() {
            ErrorKind::Fatal
        } else {
            e.kind
        };
        let message = match e.code.as_deref() {
            // SQL Server: ONLINE = ON needs Enterprise or Developer edition.
            Some(code)
                if code == crate::dialect::sqlserver::ONLINE_INDEX_UNAVAILABLE
                    && self.db.dialect().name() == "sqlserver" =>
            {
                format!(
                    "building index(es) {what} of {table}: {} ({})",
                    crate::dialect::sqlserver::online_index_unavailable(
                        &table,
                        &unit.iter().map(|i| i.name.as_str()).collect::<Vec<_>>()
                    ),
                    e.message
                )
            }
            // MySQL: the server cannot do it without blocking writes.
            Some("1845" | "1846") => format!(
                "building index(es) {what} of {table}: the server cannot build them without \
                 blocking writes ({}). {}build them in a quiet period ({} with LOCK=SHARED), \
                 then rerun to check them{}",
                e.message,
                if self.by_name {
                    ""
                } else {
                    "They stay recorded as deferred; "
                },
                self.isql
                    .build_sql(
                        &self.table.schema,
                        &self.table.name,
                        &unit.iter().collect::<Vec<_>>()
                    )
                    .map(|s| s.join("; "))
                    .unwrap_or_default(),
                if self.by_name {
                    ""
                } else {
                    " and mark them rebuilt"
                }
            ),
            // Said by the caller, which knows why it builds them.
            _ if self.by_name => e.message.clone(),
            _ => format!(
                "building index(es) {what} of {table}: {}. They stay recorded as deferred; rerun \
                 the same command to build them again (an INVALID leftover is dropped first)",
                e.message
            ),
        };
        Error {
            kind,
            message,
            after_writes: true,
            ..e
        }
    }
}

fn explain_ddl(e: Error, doing: &str, record: &DeferredIndexes, table: &TableInfo) -> Error {
    let kind = if e.is_retryable() {
        ErrorKind::Fatal
    } else {
        e.kind
    };
    Error {
        kind,
        message: format!(
            "{doing} deferred index(es) {} of {}: {}. Their definitions are recorded; rerun the \
             same command to go on",
            record.names(),
            table.display_name(),
            e.message
        ),
        // Some may be gone already.
        after_writes: true,
        ..e
    }
}

fn describe_kept(kept: &[KeptIndex]) {
    for k in kept {
        eprintln!("rowferry:   kept {}: {}", k.name, k.reason);
    }
}

/// One writer of a table at a time: the same lock a copy into it holds,
/// kept as long as the returned session lives.
async fn write_lock(db: &Arc<dyn Database>, table: &TableInfo) -> Result<Box<dyn Session>> {
    try_write_lock(db, table)
        .await?
        .ok_or_else(|| write_lock_held(table))
}

/// The write lock, or None while another session holds it.
async fn try_write_lock(
    db: &Arc<dyn Database>,
    table: &TableInfo,
) -> Result<Option<Box<dyn Session>>> {
    let mut lock_session = db
        .dedicated_session()
        .await
        .map_err(|e| e.with_kind(ErrorKind::Input))?;
    let held = lock_session
        .query(
            db.dialect().try_job_lock_sql(),
            std::slice::from_ref(&write_lock_name(table)),
        )
        .await?;
    let got = held
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .as_deref()
        == Some("true");
    Ok(got.then_some(lock_session))
}

fn write_lock_name(table: &TableInfo) -> String {
    format!("rowferry:writes:{}", table.id)
}

fn write_lock_held(table: &TableInfo) -> Error {
    Error::input(format!(
        "another rowferry run is writing {} (advisory lock `{}` is held): a copy, or another \
         `indexes` command. Wait for it to finish, then rerun",
        table.display_name(),
        write_lock_name(table)
    ))
}

// ------------------------------------------------------------------ copy --create-target

/// The indexes `copy --create-target` builds on the table it created,
/// after the copy, under the table's write lock: online, one build at a
/// time, each index matched by name (one already there and valid is
/// kept; an INVALID one, left by a failed concurrent build, is dropped
/// and built again), and proven from the catalog afterwards.
pub(crate) struct TargetIndexes {
    target: Arc<Target>,
    _lock: Box<dyn Session>,
}

impl TargetIndexes {
    pub(crate) async fn open(
        url: &DbUrl,
        opts: &RunOptions,
        jobs: usize,
        table: &TableName,
    ) -> Result<Option<TargetIndexes>> {
        let db = connect(url, opts, jobs).await?;
        let Some(isql) = db.dialect().indexes() else {
            return Ok(None);
        };
        let table = {
            let mut s = db.session().await?;
            inspect(s.as_mut(), db.dialect(), table, "--target-table").await?
        };
        // The copy that just ended released the lock with its session,
        // which the server may take a moment to see gone.
        let mut lock = None;
        for _ in 0..50 {
            lock = try_write_lock(&db, &table).await?;
            if lock.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lock = lock.ok_or_else(|| write_lock_held(&table))?;
        Ok(Some(TargetIndexes {
            target: Arc::new(Target {
                db,
                isql,
                table,
                jobs,
                max_retries: opts.max_retries,
                online: true,
                by_name: true,
            }),
            _lock: lock,
        }))
    }

    pub(crate) fn table(&self) -> &TableInfo {
        &self.target.table
    }

    pub(crate) fn db(&self) -> &Arc<dyn Database> {
        &self.target.db
    }

    pub(crate) fn sql(&self) -> &'static dyn IndexSql {
        self.target.isql
    }

    /// The table's indexes now.
    pub(crate) async fn catalog(&self) -> Result<Vec<CatalogIndex>> {
        self.target.catalog_now().await
    }

    /// Build those of `indexes` that are missing or INVALID; false when
    /// stopped by a signal first.
    pub(crate) async fn build(
        &self,
        indexes: Vec<IndexDefinition>,
        stop: &CancellationToken,
    ) -> Result<bool> {
        let record = DeferredIndexes {
            target: String::new(),
            table: self.target.table.display_name(),
            deferred_at: now_rfc3339(),
            indexes,
            kept: Vec::new(),
            rebuilt_at: None,
        };
        self.target.rebuild(&record, stop).await
    }

    /// Drop what a failed concurrent build of `name` left INVALID (it
    /// would go on checking, and slowing, every write); true if it did.
    pub(crate) async fn drop_if_invalid(&self, name: &str) -> Result<bool> {
        let t = &self.target;
        let invalid = t
            .catalog_now()
            .await?
            .iter()
            .any(|c| c.name == name && !c.valid);
        if invalid {
            let mut s = t.db.session().await?;
            for sql in t.isql.drop_sql(&t.table.schema, &t.table.name, &[name]) {
                s.execute(&sql).await?;
            }
        }
        Ok(invalid)
    }
}

// ------------------------------------------------------------------ copy

/// What `copy` attaches to its job: the indexes are dropped under the
/// job's lock once the checkpoint is written (only on a fresh start; a
/// resume finds them recorded), and rebuilt after the last chunk, or by
/// the rerun of a copy that finished with indexes still owed.
#[derive(Clone)]
pub struct CopyIndexes {
    url: DbUrl,
    identity: String,
    table: TableInfo,
    path: PathBuf,
    options: IndexOptions,
    opts: RunOptions,
    /// Sync triggers write the target too: builds go online.
    online: bool,
}

impl CopyIndexes {
    pub fn attach(
        plan: &mut super::copy::CopyPlan,
        spec: &crate::spec::CopySpec,
        opts: &RunOptions,
        options: IndexOptions,
    ) -> Result<CopyIndexes> {
        let url = spec.target.clone().unwrap_or_else(|| spec.source.clone());
        if options.defer && plan.job.db.dialect().indexes().is_none() {
            return Err(Error::input(format!(
                "--defer-indexes: not available for {url} in this version; copy without it"
            )));
        }
        let this = CopyIndexes {
            identity: url.identity(),
            url,
            table: plan.target.clone(),
            path: plan.job.checkpoint_path(opts),
            options,
            opts: opts.clone(),
            online: spec.dual_write || plan.sync_state.any_present(),
        };
        plan.job.before_chunks = Some(Arc::new(this.clone()));
        Ok(this)
    }

    async fn target(&self) -> Result<Arc<Target>> {
        let db = connect(&self.url, &self.opts, self.options.jobs).await?;
        Ok(Arc::new(Target {
            isql: index_sql(&db, &self.url)?,
            db,
            table: self.table.clone(),
            jobs: self.options.jobs,
            max_retries: self.opts.max_retries,
            online: self.online,
            by_name: false,
        }))
    }

    /// After the job: build what the checkpoint still owes.
    pub async fn rebuild_pending(&self) -> Result<()> {
        let Some(mut cp) = Checkpoint::load(&self.path)? else {
            return Ok(());
        };
        let Some(mut record) = cp
            .deferred_indexes
            .clone()
            .filter(|r| r.owed_by(&self.identity, &self.table.display_name()))
        else {
            return Ok(());
        };
        if !cp.finished {
            return Ok(());
        }
        let t = self.target().await?;
        eprintln!(
            "rowferry: copy complete; building the {} deferred index(es) of {} again: {}",
            record.indexes.len(),
            record.table,
            record.names()
        );
        let stop = CancellationToken::new();
        watch_signals(stop.clone());
        // The copy wrote rows (in this run or an earlier one).
        let built = t.rebuild(&record, &stop).await.map_err(|mut e| {
            e.after_writes = true;
            e
        })?;
        if !built {
            return Err(stopped_rebuilding());
        }
        record.rebuilt_at = Some(now_rfc3339());
        cp.deferred_indexes = Some(record.clone());
        cp.save(&self.path)?;
        eprintln!(
            "rowferry: deferred indexes of {} are back, valid, with their recorded definitions: {}",
            record.table,
            record.names()
        );
        Ok(())
    }
}

fn stopped_rebuilding() -> Error {
    Error::new(
        ErrorKind::Interrupted,
        "interrupted: the index builds in flight finished; the rest stay recorded as deferred. \
         Rerun the same command to build them",
    )
}

#[async_trait]
impl BeforeChunks for CopyIndexes {
    async fn run(&self, cp: &mut Checkpoint, path: &Path, resumed: bool) -> Result<()> {
        let mut record = cp.deferred_indexes.clone().filter(|r| r.pending());
        let mut t = None;
        if self.options.defer && !resumed {
            let target = self.target().await?;
            let catalog = target.catalog_now().await?;
            let fresh = target.record(&self.identity, &catalog);
            let merged = match record.take() {
                // --restart while indexes were still owed: those stay
                // recorded (they are missing now), and any other
                // deferrable index joins them.
                Some(mut owed) => {
                    for i in fresh.indexes {
                        if !owed.indexes.iter().any(|o| o.name == i.name) {
                            owed.indexes.push(i);
                        }
                    }
                    owed.kept = fresh.kept;
                    owed
                }
                None => fresh,
            };
            if merged.indexes.is_empty() {
                eprintln!(
                    "rowferry: --defer-indexes: {} has no secondary index to defer",
                    self.table.display_name()
                );
                describe_kept(&merged.kept);
                return Ok(());
            }
            // Recorded before anything is dropped.
            cp.deferred_indexes = Some(merged.clone());
            cp.save(path)?;
            record = Some(merged);
            t = Some(target);
        } else if self.options.defer && record.is_none() {
            eprintln!(
                "rowferry: --defer-indexes: this job started without deferring indexes; they \
                 stay in place for the rest of it"
            );
        }
        let Some(record) = record else {
            return Ok(());
        };
        let t = match t {
            Some(t) => t,
            None => self.target().await?,
        };
        let dropped = t.drop_recorded(&record).await?;
        eprintln!(
            "rowferry: --defer-indexes: {} secondary index(es) of {} recorded in {} and dropped \
             until the copy ends{}: {}",
            record.indexes.len(),
            record.table,
            path.display(),
            if dropped.len() < record.indexes.len() {
                format!(" ({} already gone)", record.indexes.len() - dropped.len())
            } else {
                String::new()
            },
            record.names()
        );
        describe_kept(&record.kept);
        Ok(())
    }
}

// ------------------------------------------------------------------ the command

/// `rowferry indexes defer|rebuild|status`.
pub struct IndexesRequest {
    pub action: IndexAction,
    pub target: DbUrl,
    pub table: TableName,
    pub state: Option<PathBuf>,
    pub jobs: usize,
    /// lock_timeout, max_retries and json are used.
    pub opts: RunOptions,
}

/// The state file of the standalone command.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    /// What this file is, for whoever finds it.
    about: String,
    format: u32,
    deferred: DeferredIndexes,
}

const STATE_FORMAT: u32 = 1;

/// Where a record lives: a state file of its own, or a copy's checkpoint
/// (`--state` may name one, to rebuild what an abandoned copy dropped).
struct Store {
    path: PathBuf,
    checkpoint: bool,
}

impl Store {
    fn load(path: &Path) -> Result<(Store, Option<DeferredIndexes>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let store = Store {
                    path: path.to_path_buf(),
                    checkpoint: false,
                };
                return Ok((store, None));
            }
            Err(e) => {
                return Err(Error::input(format!(
                    "cannot read state file {}: {e}; fix its permissions or pass another --state",
                    path.display()
                )));
            }
        };
        let corrupt = |e: serde_json::Error| {
            Error::input(format!(
                "state file {} is not a rowferry index record ({e}). It may list indexes that \
                 were dropped: keep it, and pass another --state for a new record",
                path.display()
            ))
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(corrupt)?;
        if value.get("ledger").is_some() {
            let cp = Checkpoint::load(path)?;
            let store = Store {
                path: path.to_path_buf(),
                checkpoint: true,
            };
            return Ok((store, cp.and_then(|c| c.deferred_indexes)));
        }
        let file: StateFile = serde_json::from_value(value).map_err(corrupt)?;
        if file.format != STATE_FORMAT {
            return Err(Error::input(format!(
                "state file {} has format {} but this rowferry reads format {STATE_FORMAT}",
                path.display(),
                file.format
            )));
        }
        let store = Store {
            path: path.to_path_buf(),
            checkpoint: false,
        };
        Ok((store, Some(file.deferred)))
    }

    fn save(&self, record: &DeferredIndexes) -> Result<()> {
        if self.checkpoint {
            let mut cp = Checkpoint::load(&self.path)?.ok_or_else(|| {
                Error::fatal(format!("checkpoint {} disappeared", self.path.display()))
            })?;
            cp.deferred_indexes = Some(record.clone());
            return cp.save(&self.path);
        }
        let file = StateFile {
            about: "rowferry deferred indexes: definitions to build again (rowferry indexes \
                    rebuild)"
                .into(),
            format: STATE_FORMAT,
            deferred: record.clone(),
        };
        let body = serde_json::to_vec_pretty(&file).map_err(|e| Error::fatal(e.to_string()))?;
        write_atomically(&self.path, &body)
    }
}

/// Temp file, fsync, rename, fsync the directory: a crash leaves the old
/// record or the new one, never half of one.
fn write_atomically(path: &Path, body: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::fatal(format!("cannot write state file {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(body).map_err(fail)?;
        f.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `rowferry-indexes-<schema.table>.json`, a safe file name.
pub fn default_state_path(table: &str) -> PathBuf {
    let safe: String = format!("rowferry-indexes-{table}.json")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(safe)
}

pub async fn run(req: &IndexesRequest) -> Result<()> {
    let db = connect(&req.target, &req.opts, req.jobs).await?;
    let isql = index_sql(&db, &req.target)?;
    let d = db.dialect();
    let table = {
        let mut s = db.session().await?;
        inspect(s.as_mut(), d, &req.table, "--table").await?
    };
    let path = req
        .state
        .clone()
        .unwrap_or_else(|| default_state_path(&table.display_name()));
    let (store, loaded) = Store::load(&path)?;
    let identity = req.target.identity();
    let t = Arc::new(Target {
        db: db.clone(),
        isql,
        table: table.clone(),
        jobs: req.jobs,
        max_retries: req.opts.max_retries,
        online: true,
        by_name: false,
    });
    let ours = |r: &DeferredIndexes| r.target == identity && r.table == table.display_name();
    if let Some(other) = loaded.as_ref().filter(|r| !ours(r)) {
        let refuse = match req.action {
            IndexAction::Defer => other.pending(),
            _ => true,
        };
        if refuse {
            return Err(Error::input(format!(
                "state file {} records the indexes of {} on {}{}, not of {} on {}; pass \
                 another --state for this table",
                path.display(),
                other.table,
                other.target,
                if other.pending() {
                    " (not yet rebuilt)"
                } else {
                    ""
                },
                table.display_name(),
                identity
            )));
        }
    }
    let loaded = loaded.filter(|r| ours(r));

    if req.action == IndexAction::Status {
        let report = status(&t, loaded.as_ref(), &path).await?;
        print_report(&report, req.opts.json);
        return Ok(());
    }

    let _lock = write_lock(&db, &table).await?;

    match req.action {
        IndexAction::Defer => {
            let record = match loaded.filter(|r| r.pending()) {
                Some(r) => {
                    eprintln!(
                        "rowferry: {} records {} deferred index(es) of {} not yet rebuilt; \
                         dropping what is left of them",
                        path.display(),
                        r.indexes.len(),
                        r.table
                    );
                    r
                }
                None => {
                    let catalog = t.catalog_now().await?;
                    let record = t.record(&identity, &catalog);
                    if record.indexes.is_empty() {
                        eprintln!(
                            "rowferry: {} has no secondary index to defer; nothing recorded",
                            table.display_name()
                        );
                        describe_kept(&record.kept);
                        if req.opts.json {
                            print_report(&status(&t, None, &path).await?, true);
                        }
                        return Ok(());
                    }
                    // Recorded before anything is dropped.
                    store.save(&record)?;
                    record
                }
            };
            let dropped = t.drop_recorded(&record).await?;
            eprintln!(
                "rowferry: deferred {} index(es) of {} ({} dropped now): {}; definitions in {}. \
                 Build them again with `rowferry indexes rebuild` (same --target, --table{})",
                record.indexes.len(),
                record.table,
                dropped.len(),
                record.names(),
                path.display(),
                if req.state.is_some() { ", --state" } else { "" }
            );
            describe_kept(&record.kept);
            if req.opts.json {
                print_report(&status(&t, Some(&record), &path).await?, true);
            }
            Ok(())
        }
        IndexAction::Rebuild => {
            let Some(mut record) = loaded else {
                return Err(Error::input(format!(
                    "no deferred indexes recorded for {} at {}; pass --state with the file \
                     `rowferry indexes defer` wrote (or the checkpoint of a copy --defer-indexes)",
                    table.display_name(),
                    path.display()
                )));
            };
            let stop = CancellationToken::new();
            watch_signals(stop.clone());
            if !t.rebuild(&record, &stop).await? {
                return Err(stopped_rebuilding());
            }
            if record.rebuilt_at.is_none() {
                record.rebuilt_at = Some(now_rfc3339());
                store.save(&record)?;
            }
            eprintln!(
                "rowferry: the {} deferred index(es) of {} are present, valid, with their \
                 recorded definitions: {}",
                record.indexes.len(),
                record.table,
                record.names()
            );
            if req.opts.json {
                print_report(&status(&t, Some(&record), &path).await?, true);
            }
            Ok(())
        }
        IndexAction::Status => Ok(()),
    }
}

#[derive(Debug, Serialize)]
struct Report {
    table: String,
    state_file: String,
    /// "deferred" (not yet rebuilt), "rebuilt", or "none" (no record).
    record: &'static str,
    deferred_at: Option<String>,
    rebuilt_at: Option<String>,
    indexes: Vec<IndexStatus>,
}

#[derive(Debug, Serialize)]
struct IndexStatus {
    name: String,
    /// Recorded indexes: valid, missing, invalid, different. Others:
    /// kept (with the reason), deferrable (no record yet), not-recorded.
    state: &'static str,
    definition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

async fn status(t: &Target, record: Option<&DeferredIndexes>, path: &Path) -> Result<Report> {
    let current = t.catalog_now().await?;
    let mut indexes = Vec::new();
    for want in record.map(|r| r.indexes.as_slice()).unwrap_or_default() {
        let found = current.iter().find(|c| c.name == want.name);
        let state = match found {
            None => "missing",
            Some(c) if !c.valid => "invalid",
            Some(c) if c.definition == want.definition => "valid",
            Some(_) => "different",
        };
        indexes.push(IndexStatus {
            name: want.name.clone(),
            state,
            definition: want.definition.clone(),
            reason: match (state, found) {
                ("invalid", _) => Some(
                    "a failed or unfinished concurrent build; `rowferry indexes rebuild` drops \
                     and builds it again"
                        .into(),
                ),
                ("different", Some(c)) => Some(format!("the table has `{}`", c.definition)),
                _ => None,
            },
        });
    }
    for c in &current {
        if indexes.iter().any(|i| i.name == c.name) {
            continue;
        }
        let (state, reason) = match (&c.kept_because, record) {
            (Some(reason), _) => ("kept", Some(reason.clone())),
            (None, None) => ("deferrable", None),
            (None, Some(_)) => (
                "not-recorded",
                Some("created after the indexes were deferred".into()),
            ),
        };
        indexes.push(IndexStatus {
            name: c.name.clone(),
            state,
            definition: c.definition.clone(),
            reason,
        });
    }
    Ok(Report {
        table: t.table.display_name(),
        state_file: path.display().to_string(),
        record: match record {
            None => "none",
            Some(r) if r.pending() => "deferred",
            Some(_) => "rebuilt",
        },
        deferred_at: record.map(|r| r.deferred_at.clone()),
        rebuilt_at: record.and_then(|r| r.rebuilt_at.clone()),
        indexes,
    })
}

fn print_report(r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let headline = match r.record {
        "none" => format!("no deferred indexes recorded (state file {})", r.state_file),
        "deferred" => format!(
            "indexes deferred at {} (recorded in {}), not yet rebuilt",
            r.deferred_at.as_deref().unwrap_or("?"),
            r.state_file
        ),
        _ => format!(
            "indexes deferred at {} and rebuilt at {} (recorded in {})",
            r.deferred_at.as_deref().unwrap_or("?"),
            r.rebuilt_at.as_deref().unwrap_or("?"),
            r.state_file
        ),
    };
    println!("{}: {headline}", r.table);
    let width = r.indexes.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for i in &r.indexes {
        let detail = match &i.reason {
            Some(reason) => format!("{reason}; {}", i.definition),
            None => i.definition.clone(),
        };
        println!("  {:<12} {:<width$}  {detail}", i.state, i.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeferredIndexes {
        DeferredIndexes {
            target: "Postgres://u@h:5432/db".into(),
            table: "s.t".into(),
            deferred_at: "2026-01-01T00:00:00Z".into(),
            indexes: vec![IndexDefinition {
                name: "t_a_idx".into(),
                definition: "CREATE INDEX t_a_idx ON s.t USING btree (a)".into(),
                tablespace: None,
                comment: None,
            }],
            kept: vec![KeptIndex {
                name: "t_pkey".into(),
                reason: "primary key".into(),
            }],
            rebuilt_at: None,
        }
    }

    #[test]
    fn a_record_is_owed_until_rebuilt_and_only_by_its_table() {
        let mut r = record();
        assert!(r.owed_by("Postgres://u@h:5432/db", "s.t"));
        assert!(!r.owed_by("Postgres://u@h:5432/other", "s.t"));
        assert!(!r.owed_by("Postgres://u@h:5432/db", "s.u"));
        r.rebuilt_at = Some("2026-01-01T00:01:00Z".into());
        assert!(!r.owed_by("Postgres://u@h:5432/db", "s.t"));
    }

    #[test]
    fn state_files_round_trip_atomically_and_refuse_garbage() {
        let dir = std::env::temp_dir().join(format!("rowferry-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let (store, none) = Store::load(&path).unwrap();
        assert!(none.is_none() && !store.checkpoint);
        store.save(&record()).unwrap();
        let (_, back) = Store::load(&path).unwrap();
        assert_eq!(back, Some(record()));
        assert!(!dir.join("state.json.tmp").exists());
        std::fs::write(&path, "{\"about\": 1}").unwrap();
        let e = Store::load(&path).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("not a rowferry index record"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_state_file_is_named_after_the_table() {
        assert_eq!(
            default_state_path("public.orders v2"),
            PathBuf::from("rowferry-indexes-public.orders_v2.json")
        );
    }
}
