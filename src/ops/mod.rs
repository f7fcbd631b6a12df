//! The operations behind the commands, and what they share: reading a
//! table from the catalog, and running a chunked job end to end (lock,
//! checkpoint, pipeline, progress, signals, summary).

pub mod backfill;
pub mod copy;
pub mod create_target;
pub mod cutover;
pub mod indexes;
pub mod lengths;
pub mod plan;
pub mod preflight;
pub mod status;
pub mod sync;
pub mod transfer;
pub mod verify;

use crate::checkpoint::{Checkpoint, FORMAT_VERSION, Ledger, now_rfc3339};
use crate::db::{Database, Session};
use crate::dialect::Dialect;
use crate::error::{Error, ErrorKind, Result};
use crate::planner::{KeysetPlanner, lock};
use crate::pool::{ChunkWork, LedgerSink, Outcome, Pipeline};
use crate::progress::{Reporter, Stats, Summary};
use crate::spec::{JobIdentity, RunOptions};
use crate::table::{Column, TableInfo, TableName, UniqueIndex};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The inspector: read a table's definition from the catalog. Names are
/// bound as parameters, never pasted into SQL.
pub async fn inspect(
    session: &mut dyn Session,
    d: &dyn Dialect,
    name: &TableName,
    flag: &str,
) -> Result<TableInfo> {
    let schema = match &name.schema {
        Some(s) => s.clone(),
        None => {
            cell(&session.query(d.default_schema_sql(), &[]).await?, 0, 0).ok_or_else(|| {
                Error::input(format!(
                    "{flag} {name}: the connection has no default schema; write it as schema.table"
                ))
            })?
        }
    };
    let found = session
        .query(d.find_table_sql(), &[schema.clone(), name.name.clone()])
        .await?;
    let Some(row) = found.first() else {
        return Err(Error::input(format!(
            "{flag}: table {schema}.{} does not exist (names are case-sensitive; check the \
             spelling and the schema, and that the URL points at the right database)",
            name.name
        )));
    };
    let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let (schema, table, kind, id) = (text(0), text(1), text(2), text(3));
    if kind != "table" {
        return Err(Error::input(format!(
            "{flag}: {schema}.{table} is a {kind}, not a table; rowferry copies tables"
        )));
    }
    let is_true = |v: &Option<String>| v.as_deref() == Some("true");
    let columns: Vec<Column> = session
        .query(d.columns_sql(), std::slice::from_ref(&id))
        .await?
        .into_iter()
        .map(|r| Column {
            name: r.first().cloned().flatten().unwrap_or_default(),
            data_type: r.get(1).cloned().flatten().unwrap_or_default(),
            nullable: r.get(2).is_some_and(is_true),
            generated: r.get(3).is_some_and(is_true),
            identity_always: r.get(4).is_some_and(is_true),
            has_default: r.get(5).is_some_and(is_true),
            domain_base: r.get(6).cloned().flatten(),
            charset: r.get(7).cloned().flatten(),
        })
        .collect();
    let mut unique_indexes = Vec::new();
    for r in session
        .query(d.unique_indexes_sql(), std::slice::from_ref(&id))
        .await?
    {
        let columns_json = r.get(2).cloned().flatten().unwrap_or_else(|| "[]".into());
        unique_indexes.push(UniqueIndex {
            name: r.first().cloned().flatten().unwrap_or_default(),
            primary: r.get(1).is_some_and(is_true),
            columns: serde_json::from_str(&columns_json).map_err(|e| {
                Error::fatal(format!(
                    "internal: unreadable index columns {columns_json}: {e}"
                ))
            })?,
        });
    }
    let estimate = session
        .query(d.estimate_sql(), std::slice::from_ref(&id))
        .await?;
    let number = |i: usize| {
        cell(&estimate, 0, i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(TableInfo {
        id,
        schema,
        name: table,
        columns,
        unique_indexes,
        estimated_rows: number(0),
        estimated_row_bytes: number(1).max(1),
    })
}

pub(crate) fn cell(rows: &[crate::db::Row], row: usize, col: usize) -> Option<String> {
    rows.get(row)?.get(col)?.clone()
}

/// A chunk statement for the first chunk (no lower bound) and the others.
#[derive(Debug, Clone)]
pub struct ChunkSql {
    pub first: String,
    pub rest: String,
}

impl ChunkSql {
    /// The statement for `chunk`, with its bounds as parameters.
    pub fn statement(&self, chunk: &crate::checkpoint::Chunk) -> crate::db::Statement {
        match &chunk.lo {
            Some(lo) => crate::db::Statement {
                sql: self.rest.clone(),
                params: lo.iter().chain(&chunk.hi).cloned().collect(),
            },
            None => crate::db::Statement {
                sql: self.first.clone(),
                params: chunk.hi.clone(),
            },
        }
    }
}

/// A chunked job ready to run: what `copy` (and later `backfill`) prepare.
pub struct PreparedJob {
    pub db: Arc<dyn Database>,
    pub identity: JobIdentity,
    pub planner: Arc<KeysetPlanner>,
    pub work: Arc<dyn ChunkWork>,
    pub source: TableInfo,
    /// The progress bar's label and the summary's operation name.
    pub phase: &'static str,
    /// Where the job's lock is taken when the table it writes is on
    /// another server than the source (None: the source's).
    pub lock_db: Option<Arc<dyn Database>>,
    /// The advisory lock that allows one run at a time. Keyed by the
    /// catalog id of the table the job writes, not by how the URL was
    /// spelled, so no two runs can write one table at once.
    pub lock_name: String,
    /// Side state the job keeps in the database (a backfill's state rows).
    pub side_state: SideState,
    /// Said after the summary (and in its JSON): what the job leaves behind.
    pub summary_note: Option<String>,
    /// Runs under the job's lock once the checkpoint is accepted and
    /// written, before the first chunk (copy --defer-indexes).
    pub before_chunks: Option<Arc<dyn BeforeChunks>>,
}

/// A step between accepting the checkpoint and the first chunk.
#[async_trait::async_trait]
pub trait BeforeChunks: Send + Sync {
    /// `checkpoint` is the content just saved at `path`; what the step
    /// changes there is kept by every later save. `resumed`: an earlier
    /// run's checkpoint was found.
    async fn run(&self, checkpoint: &mut Checkpoint, path: &Path, resumed: bool) -> Result<()>;
}

/// SQL for the state a job keeps beside its checkpoint. Every statement
/// runs under the job's lock, after the checkpoint was accepted.
#[derive(Debug, Clone, Default)]
pub struct SideState {
    /// Before any chunk (e.g. CREATE TABLE IF NOT EXISTS).
    pub setup: Vec<String>,
    /// On `--restart`: forget what an earlier run of this job recorded.
    pub restart: Vec<String>,
    /// Without a checkpoint and without `--restart`: rows returned here
    /// mean an earlier run's state exists, and starting fresh could apply
    /// its chunks twice; the run is refused.
    pub leftovers: Option<String>,
}

/// Held while a job runs; dropping it releases the one-run-per-job lock.
/// Returned by `run_job` so that finishing steps run under it too.
pub struct JobLock {
    /// Owns the lock's session and checks it stays alive.
    watcher: tokio::task::JoinHandle<()>,
    /// Cancelled if the lock's connection was lost (the lock with it).
    pub lost: CancellationToken,
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Ends the task, which closes the session: the server releases
        // the lock.
        self.watcher.abort();
    }
}

const LOCK_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl JobLock {
    /// No lock held (`--coordinate-in-db`: many processes run the job,
    /// the chunk leases keep them apart).
    pub(crate) fn unlocked() -> JobLock {
        JobLock {
            watcher: tokio::spawn(async {}),
            lost: CancellationToken::new(),
        }
    }

    /// Keep the lock's session and look at it every few seconds: a lock
    /// lives exactly as long as its connection, so a dead connection means
    /// another run could start, and this one must stop.
    fn watch(mut session: Box<dyn Session>) -> JobLock {
        let lost = CancellationToken::new();
        let flag = lost.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_CHECK_EVERY).await;
                if session.query("SELECT 1", &[]).await.is_err() {
                    flag.cancel();
                    return;
                }
            }
        });
        JobLock { watcher, lost }
    }
}

impl PreparedJob {
    pub fn checkpoint_path(&self, opts: &RunOptions) -> PathBuf {
        opts.checkpoint
            .clone()
            .unwrap_or_else(|| self.identity.default_checkpoint())
    }

    /// Whether a run would resume this job: its own checkpoint exists, and
    /// `--restart` was not given. (`run_job` decides for good, under the
    /// job's lock.)
    pub fn resumes(&self, opts: &RunOptions) -> bool {
        !opts.restart
            && Checkpoint::load(&self.checkpoint_path(opts))
                .ok()
                .flatten()
                .is_some_and(|cp| cp.fingerprint == self.identity.fingerprint())
    }
}

/// Saves the ledger into the checkpoint file.
struct CheckpointFile {
    path: PathBuf,
    content: Checkpoint,
}

impl LedgerSink for CheckpointFile {
    fn save(&mut self, ledger: &Ledger) -> Result<()> {
        self.content.ledger = ledger.clone();
        self.content.finished = ledger.is_complete();
        self.content.updated_at = now_rfc3339();
        // A small file and an fsync: fine to block this worker thread for.
        tokio::task::block_in_place(|| self.content.save(&self.path))
    }
}

/// Run a prepared job to the end, an interruption, or a failure.
pub async fn run_job(job: PreparedJob, opts: &RunOptions) -> Result<JobLock> {
    // Several processes share the job through tables in the source
    // database: no checkpoint file, no one-run lock.
    if let Some(lease) = opts.coordinate_lease {
        return crate::coordinate::run_job(job, opts, lease).await;
    }
    let path = job.checkpoint_path(opts);

    // One run per job: the lock lives as long as this session, on the
    // server that holds the table the job writes.
    let lock_db = job.lock_db.as_ref().unwrap_or(&job.db);
    let mut lock_session = lock_db
        .dedicated_session()
        .await
        .map_err(|e| e.with_kind(ErrorKind::Input))?;
    let held = lock_session
        .query(
            lock_db.dialect().try_job_lock_sql(),
            std::slice::from_ref(&job.lock_name),
        )
        .await?;
    if cell(&held, 0, 0).as_deref() != Some("true") {
        return Err(Error::input(format!(
            "another rowferry run is already writing {} (advisory lock `{}` is held); only one \
             run per job at a time. Wait for it to finish, or stop it with Ctrl-C / SIGTERM \
             (it saves its checkpoint) before starting this one",
            job.identity.target_table, job.lock_name
        )));
    }

    // Signals are checked before anything is written.
    let signals = crate::supervisor::Prepared::check(opts, &job.db).await?;

    let fingerprint = job.identity.fingerprint();
    let existing = if opts.restart {
        None
    } else {
        Checkpoint::load(&path)?
    };
    if let Some(cp) = &existing {
        if cp.fingerprint != fingerprint {
            return Err(Error::input(format!(
                "checkpoint {} belongs to another job ({}), not to this one ({}); nothing was \
                 written. Rerun with that job's exact flags to resume it, pass another \
                 --checkpoint for this job, or --restart to start this job over",
                path.display(),
                describe_job(&cp.job),
                describe_job(&serde_json::to_value(&job.identity).unwrap_or_default())
            )));
        }
        if cp.finished {
            eprintln!(
                "rowferry: job already finished according to checkpoint {} ({} rows in {} chunks); \
                 nothing to do. Pass --restart to run it again",
                path.display(),
                cp.ledger.rows_done,
                cp.ledger.chunks_done
            );
            summary(
                &job,
                &path,
                "done",
                &cp.ledger,
                &cp.ledger,
                0.0,
                &Stats::default(),
                true,
                None,
            )
            .print(opts.json);
            return Ok(JobLock::watch(lock_session));
        }
    }

    let mut s = job.db.session().await?;
    for sql in &job.side_state.setup {
        execute(s.as_mut(), sql).await?;
    }
    if existing.is_none() && opts.restart {
        for sql in &job.side_state.restart {
            execute(s.as_mut(), sql).await?;
        }
    }
    let leftovers = match (&existing, opts.restart, &job.side_state.leftovers) {
        (None, false, Some(sql)) => !s.query(sql, &[]).await?.is_empty(),
        _ => false,
    };
    if leftovers {
        return Err(Error::input(format!(
            "an earlier run of this job left its progress in the database, but there is no \
             checkpoint at {}: starting afresh could apply some chunks twice. Rerun with that \
             run's --checkpoint (and from its directory), or pass --restart to start this job \
             over on purpose",
            path.display()
        )));
    }

    let resumed = existing.is_some();
    // Indexes a copy dropped stay owed until rebuilt: across resumes, and
    // across --restart too (they are still missing).
    let deferred_indexes = match &existing {
        Some(cp) => cp.deferred_indexes.clone(),
        None => Checkpoint::load(&path)
            .ok()
            .flatten()
            .and_then(|cp| cp.deferred_indexes),
    }
    .filter(|d| d.owed_by(&job.identity.target, &job.identity.target_table));
    let (ledger, started_at) = match existing {
        Some(cp) => {
            eprintln!(
                "rowferry: resuming from checkpoint: {}",
                resume_note(&path, &cp.ledger)
            );
            (cp.ledger, cp.started_at)
        }
        None => (
            Ledger::new(job.planner.upper_bound(s.as_mut()).await?),
            now_rfc3339(),
        ),
    };
    let mut sink = CheckpointFile {
        path: path.clone(),
        content: Checkpoint {
            format: FORMAT_VERSION,
            fingerprint,
            job: serde_json::to_value(&job.identity).unwrap_or_default(),
            key_columns: job.identity.key.clone(),
            rows_total_estimate: job.source.estimated_rows,
            started_at,
            updated_at: now_rfc3339(),
            finished: false,
            ledger: ledger.clone(),
            deferred_indexes,
        },
    };
    // Prove the checkpoint can be written before any row is.
    sink.save(&ledger)
        .map_err(|e| e.with_kind(ErrorKind::Input).context("--checkpoint"))?;
    if let Some(step) = &job.before_chunks {
        step.run(&mut sink.content, &path, resumed).await?;
    }

    let throttle = Arc::new(crate::throttle::Throttle::new(
        opts.max_rows_per_sec,
        opts.pause_file.clone(),
    ));
    let sizer = Arc::new(Mutex::new(opts.chunk_sizer(job.source.estimated_row_bytes)));
    let stats = Arc::new(Stats::default());
    stats.rows_done.store(ledger.rows_done, Ordering::Relaxed);
    stats
        .chunks_done
        .store(ledger.chunks_done, Ordering::Relaxed);
    let before = ledger.clone();

    eprintln!(
        "rowferry: {} {} -> {}: key ({}), ~{} rows (catalog estimate), {} workers, checkpoint {}",
        job.phase,
        job.identity.table,
        job.identity.target_table,
        job.identity.key.join(", "),
        job.source.estimated_rows,
        opts.workers,
        path.display()
    );

    let stop = CancellationToken::new();
    watch_signals(stop.clone());
    let mut supervisor = crate::supervisor::Supervisor::start(
        opts,
        signals,
        crate::supervisor::Pipeline {
            phase: job.phase,
            throttle: &throttle,
            sizer: &sizer,
            stats: &stats,
            stop: &stop,
            total_estimate: job.source.estimated_rows,
        },
        serde_json::json!({
            "operation": job.phase,
            "table": job.identity.table,
            "target_table": job.identity.target_table,
            "checkpoint": path.display().to_string(),
        }),
        serde_json::json!({ "rows_total_estimate": job.source.estimated_rows, "resumed": resumed }),
    )
    .await?;
    let job_lock = JobLock::watch(lock_session);
    let lock_lost = job_lock.lost.clone();
    let stop_on_loss = stop.clone();
    tokio::spawn(async move {
        lock_lost.cancelled().await;
        eprintln!(
            "rowferry: the connection holding the job's lock was lost; stopping after the chunks in flight"
        );
        stop_on_loss.cancel();
    });
    let reporter = Reporter::new(
        opts.progress,
        job.phase,
        stats.clone(),
        throttle.clone(),
        job.source.estimated_rows,
    );
    let reporting_done = CancellationToken::new();
    let reporting = tokio::spawn(reporter.run(reporting_done.clone()));

    let started = Instant::now();
    let pipeline = Pipeline {
        db: job.db.clone(),
        planner: job.planner.clone(),
        work: job.work.clone(),
        ledger: Arc::new(Mutex::new(ledger)),
        sizer,
        throttle,
        stats: stats.clone(),
        workers: opts.workers,
        max_retries: opts.max_retries,
        stop,
        crash_after_chunks: std::env::var("ROWFERRY_CRASH_AFTER_CHUNKS")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    let ledger = pipeline.ledger.clone();
    let outcome = pipeline.run(&mut sink).await;
    reporting_done.cancel();
    let _ = reporting.await;
    let critical = supervisor.stop_watching().await;

    let elapsed = started.elapsed().as_secs_f64();
    let final_ledger = lock(&ledger).clone();
    let (status, result) = match outcome {
        Outcome::Done => ("done", Ok(())),
        Outcome::Interrupted if job_lock.lost.is_cancelled() => (
            "failed",
            Err(Error::fatal(
                "lost the connection that held the job's lock, so another run could have \
                 started: stopped after the chunks in flight, checkpoint saved. Rerun the same \
                 command to resume",
            )),
        ),
        Outcome::Interrupted if critical.is_some() => (
            "failed",
            Err(crate::signals::critical_stop(
                critical.as_deref().unwrap_or_default(),
            )),
        ),
        Outcome::Interrupted => ("interrupted", Err(Error::interrupted())),
        Outcome::Failed(e) => ("failed", Err(e)),
    };
    let error = result.as_ref().err().map(|e| e.message.clone());
    supervisor.finish(status, error.as_deref()).await;
    summary(
        &job,
        &path,
        status,
        &before,
        &final_ledger,
        elapsed,
        &stats,
        resumed,
        error,
    )
    .print(opts.json);
    result.map(|()| job_lock)
}

pub(crate) async fn execute(session: &mut dyn Session, sql: &str) -> Result<()> {
    let statement = crate::db::Statement {
        sql: sql.to_string(),
        params: vec![],
    };
    session
        .transaction(std::slice::from_ref(&statement))
        .await
        .map(|_| ())
}

/// The end-of-run summary: this run's share is the difference between the
/// ledger before and after it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn summary(
    job: &PreparedJob,
    path: &Path,
    status: &'static str,
    before: &Ledger,
    after: &Ledger,
    elapsed: f64,
    stats: &Stats,
    resumed: bool,
    error: Option<String>,
) -> Summary {
    let rows = after.rows_done - before.rows_done;
    Summary {
        operation: job.phase,
        status,
        source_table: job.identity.table.clone(),
        target_table: job.identity.target_table.clone(),
        rows,
        chunks: after.chunks_done - before.chunks_done,
        rows_total: after.rows_done,
        chunks_total: after.chunks_done,
        elapsed_s: (elapsed * 1000.0).round() / 1000.0,
        rows_per_sec: if elapsed > 0.0 {
            (rows as f64 / elapsed).round()
        } else {
            0.0
        },
        retries: stats.retries.load(Ordering::Relaxed),
        slowest_chunk_s: stats.slowest_chunk_us.load(Ordering::Relaxed) as f64 / 1e6,
        resumed,
        checkpoint: path.display().to_string(),
        error,
        note: job.summary_note.clone(),
    }
}

fn resume_note(path: &Path, ledger: &Ledger) -> String {
    let show = |k: &Option<Vec<String>>| match k {
        Some(k) => k.join(", "),
        None => "the start".into(),
    };
    let redo = ledger.unfinished().len();
    format!(
        "{}: {} rows in {} chunks already done, complete up to key ({}); {} unfinished chunk(s) \
         to run again, then continuing after key ({})",
        path.display(),
        ledger.rows_done,
        ledger.chunks_done,
        show(&ledger.low_watermark),
        redo,
        show(&ledger.frontier())
    )
}

fn describe_job(job: &serde_json::Value) -> String {
    let field = |k: &str| {
        job.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut text = format!(
        "{} {} -> {}",
        field("operation"),
        field("table"),
        field("target_table")
    );
    if let Some(w) = job.get("where").and_then(|v| v.as_str()) {
        text.push_str(&format!(" where {w}"));
    }
    text
}

/// SIGINT/SIGTERM: stop handing out chunks and let the ones in flight
/// commit. A second signal exits at once (the checkpoint on disk only ever
/// lists committed chunks, so it stays valid).
pub(crate) fn watch_signals(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!(
            "rowferry: stopping: chunks in flight will commit, then the checkpoint is saved \
             (signal again to exit at once)"
        );
        stop.cancel();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("rowferry: exiting now; rerun the same command to resume");
        std::process::exit(130);
    });
}
