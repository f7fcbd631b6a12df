//! `--coordinate-in-db`: several rowferry processes, on any hosts, run one
//! job together. The chunk plan, the leases and the processes' heartbeats
//! live in `rowferry_jobs`, `rowferry_chunks` and `rowferry_workers` beside
//! the source table (see `dialect::coordinate` and docs/coordinate.md);
//! that table is the job's checkpoint, and no file is written.
//!
//! Each worker of each process loops: claim the first chunk that is
//! planned or whose lease expired (`FOR UPDATE SKIP LOCKED`), or else plan
//! the next one from the shared frontier and insert it claimed; run it in
//! one transaction whose last statement marks it done *only if this
//! process still holds its lease* (otherwise the statement fails and the
//! chunk rolls back); repeat until every chunk of the job is done. A
//! background task renews the leases and the heartbeat, and divides the
//! rate limit among the live processes.

use crate::checkpoint::{Chunk, Ledger};
use crate::db::{Database, Row, Session, Statement};
use crate::dialect::coordinate::{CoordinationSql, coordination_sql};
use crate::error::{Error, ErrorKind, Result};
use crate::ops::{JobLock, PreparedJob, cell, execute, summary};
use crate::planner::{Bound, ChunkSizer, lock};
use crate::pool::{ChunkWork, RetryingSession};
use crate::progress::{Reporter, Stats};
use crate::spec::RunOptions;
use crate::table::KeyValue;
use crate::throttle::Throttle;
use async_trait::async_trait;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const MIN_LEASE: Duration = Duration::from_millis(500);

/// This process's view of the shared job.
struct Shared {
    db: Arc<dyn Database>,
    sql: CoordinationSql,
    job: String,
    /// host:pid:random
    owner: String,
    planner: Arc<crate::planner::KeysetPlanner>,
    upper: Option<KeyValue>,
    /// One planner per process at a time (the others claim or wait).
    planning: tokio::sync::Mutex<()>,
    claims: AtomicU64,
    lease: Duration,
}

/// What a worker gets when it asks for work.
enum Next {
    Chunk(Chunk),
    /// Every chunk is planned; some are still another process's.
    Wait,
    /// Every chunk of the job is done.
    Done,
}

/// How a chunk's transaction ended.
enum Ran {
    Committed(u64),
    /// Another process holds the chunk now: rolled back (or, if the
    /// chunk's row vanished, committed idempotently), not counted.
    Lost,
}

fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

fn json_key(key: &Option<KeyValue>) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| "null".into())
}

fn parse_key(text: Option<&String>, what: &str) -> Result<Option<KeyValue>> {
    let text = text.map(String::as_str).unwrap_or("null");
    serde_json::from_str(text).map_err(|e| {
        Error::fatal(format!(
            "rowferry_chunks/rowferry_jobs hold an unreadable {what} ({e}): {text}; the \
             coordination tables were changed by hand. Rerun with --restart to plan the job afresh"
        ))
    })
}

fn number(row: &Row, i: usize) -> u64 {
    row.get(i)
        .cloned()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn stmt(sql: &str, params: &[&str]) -> Statement {
    Statement {
        sql: sql.to_string(),
        params: params.iter().map(|p| p.to_string()).collect(),
    }
}

impl Shared {
    /// A chunk to run: claimed, planned afresh, or none for now.
    async fn next(&self, session: &mut dyn Session, rows: u64) -> Result<Next> {
        loop {
            if let Some(chunk) = self.claim(session).await? {
                return Ok(Next::Chunk(chunk));
            }
            let _planning = self.planning.lock().await;
            // Another worker of this process may have planned meanwhile;
            // its chunk is its own, so plan on.
            let job = session
                .query(&self.sql.job_row, std::slice::from_ref(&self.job))
                .await?;
            let Some(row) = job.first() else {
                return Err(Error::fatal(format!(
                    "the job's row vanished from {} while the job ran (dropped or --restart by \
                     another process); rerun to start over",
                    self.sql.jobs
                )));
            };
            let frontier = parse_key(row.get(1).and_then(|v| v.as_ref()), "frontier")?;
            let next_seq = number(row, 2);
            let planning_done = number(row, 3) == 1;
            if planning_done || self.upper.is_none() {
                let left = session
                    .query(&self.sql.unfinished, std::slice::from_ref(&self.job))
                    .await?;
                return Ok(if left.first().is_some_and(|r| number(r, 0) == 0) {
                    Next::Done
                } else {
                    Next::Wait
                });
            }
            let Some(upper) = &self.upper else {
                return Ok(Next::Done);
            };
            let bound = self
                .planner
                .next_bound(session, frontier.as_ref(), upper, rows)
                .await?;
            let (hi, last) = match bound {
                Bound::More(hi) => (hi, false),
                Bound::Last(hi) => (hi, true),
            };
            let token = self.token();
            let seq = next_seq.to_string();
            let hi_json = json_key(&Some(hi.clone()));
            let statements = [
                stmt(
                    &self.sql.plan_advance,
                    &[
                        &self.job,
                        &hi_json,
                        if last { "1" } else { "0" },
                        seq.as_str(),
                    ],
                ),
                stmt(
                    &self.sql.plan_insert,
                    &[
                        &self.job,
                        &seq,
                        &json_key(&frontier),
                        &hi_json,
                        &rows.to_string(),
                        &self.owner,
                        &token,
                    ],
                ),
            ];
            match session.transaction(&statements).await {
                Ok(counts) if counts.first() == Some(&1) => {
                    return Ok(Next::Chunk(Chunk {
                        seq: next_seq,
                        lo: frontier,
                        hi,
                        planned_rows: rows,
                    }));
                }
                // Another process planned this sequence number first:
                // rolled back; look again.
                Ok(_) => {}
                Err(e) if e.duplicate_key.is_some() => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn token(&self) -> String {
        format!(
            "{}:{}",
            self.owner,
            self.claims.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn claim(&self, session: &mut dyn Session) -> Result<Option<Chunk>> {
        let token = self.token();
        let params = [self.job.clone(), self.owner.clone(), token.clone()];
        let statements: Vec<Statement> = self
            .sql
            .claim
            .iter()
            .map(|sql| {
                // Each statement takes the parameters it names (MySQL's
                // SET takes none).
                let used = if sql.contains(&self.placeholder(1)) {
                    params.to_vec()
                } else {
                    vec![]
                };
                Statement {
                    sql: sql.clone(),
                    params: used,
                }
            })
            .collect();
        let counts = session.transaction(&statements).await?;
        if counts.last() != Some(&1) {
            return Ok(None);
        }
        let rows = session
            .query(&self.sql.claimed_row, &[self.job.clone(), token])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let hi = parse_key(row.get(2).and_then(|v| v.as_ref()), "chunk bound")?
            .ok_or_else(|| Error::fatal("internal: a claimed chunk has no upper bound"))?;
        let claims = number(row, 4);
        let chunk = Chunk {
            seq: number(row, 0),
            lo: parse_key(row.get(1).and_then(|v| v.as_ref()), "chunk bound")?,
            hi,
            planned_rows: number(row, 3),
        };
        if claims > 1 {
            eprintln!(
                "rowferry: took over {} (seq {}, claim {claims}): the process that held it let \
                 its lease expire or handed it back",
                crate::pool::describe_chunk(&chunk),
                chunk.seq
            );
        }
        Ok(Some(chunk))
    }

    fn placeholder(&self, n: usize) -> String {
        self.db.dialect().placeholder(n)
    }

    fn guard(&self, chunk: &Chunk) -> Statement {
        stmt(
            &self.sql.done_guard,
            &[&self.job, &chunk.seq.to_string(), &self.owner],
        )
    }

    /// Whether this process still holds `chunk`.
    async fn holds(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<bool> {
        let rows = session
            .query(
                &self.sql.chunk_owner,
                &[self.job.clone(), chunk.seq.to_string()],
            )
            .await?;
        Ok(rows.first().is_some_and(|r| {
            r.first().cloned().flatten().as_deref() == Some(self.owner.as_str())
                && r.get(1).cloned().flatten().as_deref() == Some("claimed")
        }))
    }

    /// Run the chunk with the done-mark as its transaction's last statement.
    async fn run_chunk(
        &self,
        session: &mut dyn Session,
        work: &dyn ChunkWork,
        chunk: &Chunk,
    ) -> Result<Ran> {
        let mut guarded = Guarded {
            inner: session,
            guard: self.guard(chunk),
            lost: false,
        };
        match work.run(&mut guarded, chunk).await {
            Ok(_) if guarded.lost => Ok(Ran::Lost),
            Ok(rows) => Ok(Ran::Committed(rows)),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                // The done-mark refuses a chunk another process holds (a
                // NOT NULL violation): not a failure of this job.
                if !self.holds(session, chunk).await.unwrap_or(true) {
                    Ok(Ran::Lost)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn query(&self, session: &mut dyn Session, sql: &str) -> Result<Vec<Row>> {
        session.query(sql, std::slice::from_ref(&self.job)).await
    }
}

/// A session whose every transaction ends with the chunk's done-mark.
struct Guarded<'a> {
    inner: &'a mut dyn Session,
    guard: Statement,
    /// The done-mark found no row (the plan was dropped meanwhile).
    lost: bool,
}

#[async_trait]
impl Session for Guarded<'_> {
    async fn query(&mut self, sql: &str, params: &[String]) -> Result<Vec<Row>> {
        self.inner.query(sql, params).await
    }

    async fn query_named(&mut self, sql: &str) -> Result<Vec<crate::dialect::signals::NamedRow>> {
        self.inner.query_named(sql).await
    }

    async fn check(&mut self, sql: &str) -> Result<()> {
        self.inner.check(sql).await
    }

    async fn transaction(&mut self, statements: &[Statement]) -> Result<Vec<u64>> {
        let mut all = statements.to_vec();
        all.push(self.guard.clone());
        let mut counts = self.inner.transaction(&all).await?;
        if counts.pop() != Some(1) {
            self.lost = true;
        }
        Ok(counts)
    }

    async fn execute(&mut self, sql: &str) -> Result<u64> {
        self.inner.execute(sql).await
    }
}

/// Run `job` as one of the processes sharing it.
pub async fn run_job(job: PreparedJob, opts: &RunOptions, lease: Duration) -> Result<JobLock> {
    if job.lock_db.is_some() {
        return Err(Error::input(
            "--coordinate-in-db needs the target table on the source's server (each chunk's \
             done-mark commits in the chunk's own transaction); copy across servers from one \
             process, or copy into a table on the source's server",
        ));
    }
    // `before_chunks` (the deferred-index step) is not run: the CLI
    // refuses --defer-indexes with --coordinate-in-db.
    if lease < MIN_LEASE {
        return Err(Error::input(format!(
            "--lease {lease:?} is too short: a process renews its leases every third of it; \
             use at least 500ms (the default is 30s)"
        )));
    }
    let d = job.db.dialect();
    let sql = coordination_sql(
        d,
        &job.source.schema,
        u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
    )
    .map_err(Error::input)?;
    let signals = crate::supervisor::Prepared::check(opts, &job.db).await?;
    let job_id = job.identity.fingerprint();

    let mut s = job.db.session().await?;
    for ddl in sql.ddl.iter().chain(&job.side_state.setup) {
        let mut attempt = 0;
        loop {
            match execute(s.as_mut(), ddl).await {
                Ok(()) => break,
                // Another process creating the same table at this moment
                // (PostgreSQL's IF NOT EXISTS is not atomic: the loser sees
                // a unique violation on pg_type, 42710 duplicate_object or
                // 42P07 duplicate_table): look again.
                Err(e)
                    if (e.duplicate_key.is_some()
                        || e.is_retryable()
                        || matches!(e.code.as_deref(), Some("42710" | "42P07" | "1050")))
                        && attempt < 5 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    s = job.db.session().await?;
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "creating the coordination tables in schema {} (the source's user \
                         needs CREATE there)",
                        job.source.schema
                    )));
                }
            }
        }
    }
    if opts.restart {
        // Only safe with no other process on this job: said in --help/docs.
        for forget in sql.forget.iter() {
            s.transaction(&[stmt(forget, &[&job_id])]).await?;
        }
        for restart in &job.side_state.restart {
            execute(s.as_mut(), restart).await?;
        }
    }
    let mut row = s.query(&sql.job_row, std::slice::from_ref(&job_id)).await?;
    let resumed = !row.is_empty();
    if row.is_empty() {
        if let Some(leftovers) = &job.side_state.leftovers
            && !s.query(leftovers, &[]).await?.is_empty()
        {
            return Err(Error::input(
                "an earlier run of this job (without --coordinate-in-db) left its progress in \
                 the database: planning afresh could apply some chunks twice. Finish it with \
                 that run's --checkpoint, or pass --restart to start this job over on purpose",
            ));
        }
        let upper = job.planner.upper_bound(s.as_mut()).await?;
        let created = s
            .transaction(&[stmt(
                &sql.job_insert,
                &[
                    &job_id,
                    &json_key(&upper),
                    if upper.is_none() { "1" } else { "0" },
                ],
            )])
            .await;
        match created {
            Ok(_) => {}
            // Another process created it first: use its upper bound.
            Err(e) if e.duplicate_key.is_some() => {}
            Err(e) => return Err(e),
        }
        row = s.query(&sql.job_row, std::slice::from_ref(&job_id)).await?;
    }
    let Some(job_row) = row.first() else {
        return Err(Error::fatal(format!(
            "internal: the job's row in {} could not be read back",
            sql.jobs
        )));
    };
    let upper = parse_key(job_row.first().and_then(|v| v.as_ref()), "upper bound")?;
    let finished = number(job_row, 4) == 1;
    let where_ = PathBuf::from(format!("(in the database: {})", sql.chunks));
    let totals = |rows: &[Row]| -> Ledger {
        let mut l = Ledger::new(None);
        if let Some(r) = rows.first() {
            l.chunks_done = number(r, 0);
            l.rows_done = number(r, 1);
        }
        l
    };
    if finished {
        let t = totals(&s.query(&sql.totals, std::slice::from_ref(&job_id)).await?);
        eprintln!(
            "rowferry: job already finished according to {} ({} rows in {} chunks); nothing to \
             do. Pass --restart to run it again",
            sql.jobs, t.rows_done, t.chunks_done
        );
        summary(
            &job,
            &where_,
            "done",
            &t,
            &t,
            0.0,
            &Stats::default(),
            true,
            None,
        )
        .print(opts.json);
        return Ok(JobLock::unlocked());
    }
    let before = totals(&s.query(&sql.totals, std::slice::from_ref(&job_id)).await?);
    drop(s);

    let shared = Arc::new(Shared {
        db: job.db.clone(),
        sql,
        job: job_id,
        owner: owner_id(),
        planner: job.planner.clone(),
        upper,
        planning: tokio::sync::Mutex::new(()),
        claims: AtomicU64::new(0),
        lease,
    });
    let throttle = Arc::new(Throttle::new(
        opts.max_rows_per_sec,
        opts.pause_file.clone(),
    ));
    let sizer = Arc::new(Mutex::new(opts.chunk_sizer(job.source.estimated_row_bytes)));
    let stats = Arc::new(Stats::default());
    stats.rows_done.store(before.rows_done, Ordering::Relaxed);
    stats
        .chunks_done
        .store(before.chunks_done, Ordering::Relaxed);
    eprintln!(
        "rowferry: {} {} -> {}: key ({}), coordinated in {} as {} ({} workers, lease {:?}{})",
        job.phase,
        job.identity.table,
        job.identity.target_table,
        job.identity.key.join(", "),
        shared.sql.chunks,
        shared.owner,
        opts.workers,
        lease,
        if resumed { ", joining the job" } else { "" }
    );

    let stop = CancellationToken::new();
    crate::ops::watch_signals(stop.clone());
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
            "coordinated_in": shared.sql.chunks,
            "owner": shared.owner,
        }),
        serde_json::json!({ "rows_total_estimate": job.source.estimated_rows, "resumed": resumed }),
    )
    .await?;
    let reporter = Reporter::new(
        opts.progress,
        job.phase,
        stats.clone(),
        throttle.clone(),
        job.source.estimated_rows,
    );
    let reporting_done = CancellationToken::new();
    let reporting = tokio::spawn(reporter.run(reporting_done.clone()));

    // Leases, heartbeat and the shared rate, in the background.
    let lease_lost = Arc::new(AtomicBool::new(false));
    let renewing_done = CancellationToken::new();
    let renewing = tokio::spawn(renew(
        shared.clone(),
        throttle.clone(),
        sizer.clone(),
        opts.max_rows_per_sec,
        stop.clone(),
        lease_lost.clone(),
        renewing_done.clone(),
    ));

    let crash_after: Option<u64> = std::env::var("ROWFERRY_CRASH_AFTER_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok());
    let committed = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..opts.workers.max(1) {
        workers.push(tokio::spawn(work(
            worker,
            shared.clone(),
            job.work.clone(),
            throttle.clone(),
            sizer.clone(),
            stats.clone(),
            opts.max_retries,
            stop.clone(),
            crash_after,
            committed.clone(),
            finished.clone(),
            failure.clone(),
        )));
    }
    for w in workers {
        let _ = w.await;
    }
    renewing_done.cancel();
    let _ = renewing.await;
    reporting_done.cancel();
    let _ = reporting.await;
    let critical = supervisor.stop_watching().await;

    // Give back what this process claimed but never ran, say goodbye, and
    // mark the job finished when it is.
    let mut ending = RetryingSession::new(
        job.db.clone(),
        stats.clone(),
        opts.max_retries,
        CancellationToken::new(),
    );
    let done = finished.load(Ordering::Relaxed);
    let end = ending
        .run(|s| {
            let shared = shared.clone();
            Box::pin(async move {
                let me = [shared.job.as_str(), shared.owner.as_str()];
                s.transaction(&[stmt(&shared.sql.release, &me)]).await?;
                s.transaction(&[stmt(&shared.sql.heartbeat_delete, &me)])
                    .await?;
                if done {
                    s.transaction(&[stmt(&shared.sql.finish, &[&shared.job])])
                        .await?;
                    s.transaction(&[stmt(&shared.sql.heartbeat_sweep, &[&shared.job])])
                        .await?;
                }
                shared.query(s, &shared.sql.totals).await
            })
        })
        .await;
    let after = match &end {
        Ok(Some(rows)) => totals(rows),
        _ => before.clone(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let mut mine = Ledger::new(None);
    mine.rows_done = stats.rows_this_run.load(Ordering::Relaxed);
    mine.chunks_done = committed.load(Ordering::Relaxed);
    let failed = lock(&failure).take();
    let (status, result) = match (failed, end) {
        (Some(e), _) => ("failed", Err(e)),
        (None, Err(e)) => ("failed", Err(e.context("releasing this process's chunks"))),
        (None, Ok(_)) if done => ("done", Ok(())),
        (None, Ok(_)) if lease_lost.load(Ordering::Relaxed) => (
            "failed",
            Err(Error::fatal(format!(
                "could not renew this process's leases in {} for longer than --lease {lease:?}: \
                 stopped taking chunks (other processes take over the ones it held). Check the \
                 connection to the source, then rerun the same command to rejoin the job",
                shared.sql.chunks
            ))),
        ),
        (None, Ok(_)) if critical.is_some() => (
            "failed",
            Err(crate::signals::critical_stop(
                critical.as_deref().unwrap_or_default(),
            )),
        ),
        (None, Ok(_)) => (
            "interrupted",
            Err(Error::new(
                ErrorKind::Interrupted,
                "interrupted: this process's chunks in flight committed and the ones it had \
                 claimed were handed back to the other processes; rerun the same command to \
                 rejoin the job",
            )),
        ),
    };
    let error = result.as_ref().err().map(|e| e.message.clone());
    supervisor.finish(status, error.as_deref()).await;
    eprintln!(
        "rowferry: this process ({}) did {} chunks, {} rows; the job has {} chunks, {} rows done",
        shared.owner, mine.chunks_done, mine.rows_done, after.chunks_done, after.rows_done
    );
    let mut base = after.clone();
    base.rows_done = after.rows_done.saturating_sub(mine.rows_done);
    base.chunks_done = after.chunks_done.saturating_sub(mine.chunks_done);
    summary(
        &job, &where_, status, &base, &after, elapsed, &stats, resumed, error,
    )
    .print(opts.json);
    result.map(|()| JobLock::unlocked())
}

#[allow(clippy::too_many_arguments)]
async fn work(
    worker: usize,
    shared: Arc<Shared>,
    work: Arc<dyn ChunkWork>,
    throttle: Arc<Throttle>,
    sizer: Arc<Mutex<ChunkSizer>>,
    stats: Arc<Stats>,
    max_retries: u32,
    stop: CancellationToken,
    crash_after: Option<u64>,
    committed: Arc<AtomicU64>,
    finished: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<Error>>>,
) {
    let fail = |e: Error| {
        lock(&failure).get_or_insert(e);
        stop.cancel();
    };
    let mut session =
        RetryingSession::new(shared.db.clone(), stats.clone(), max_retries, stop.clone());
    let poll = (shared.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        if stop.is_cancelled() || finished.load(Ordering::Relaxed) {
            return;
        }
        if !throttle.may_work(worker) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        }
        let rows = lock(&sizer).rows();
        let next = session
            .run(|s| {
                let shared = shared.clone();
                Box::pin(async move { shared.next(s, rows).await })
            })
            .await;
        let chunk = match next {
            Ok(Some(Next::Chunk(chunk))) => chunk,
            Ok(Some(Next::Wait)) => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(poll) => continue,
                }
            }
            Ok(Some(Next::Done)) => {
                finished.store(true, Ordering::Relaxed);
                return;
            }
            Ok(None) => return,
            Err(e) => return fail(e.context("claiming or planning the next chunk")),
        };
        // As in the local pipeline: the chunk is taken, then waits for the
        // throttle (pause, lag, load, the rate). Its lease is renewed
        // meanwhile; a stop hands it back.
        if !throttle.admit(chunk.planned_rows, &stop).await {
            return;
        }
        let started = Instant::now();
        let ran = session
            .run(|s| {
                let (shared, work, chunk) = (shared.clone(), work.clone(), chunk.clone());
                Box::pin(async move { shared.run_chunk(s, work.as_ref(), &chunk).await })
            })
            .await;
        match ran {
            Ok(Some(Ran::Committed(rows))) => {
                let n = committed.fetch_add(1, Ordering::Relaxed) + 1;
                if crash_after == Some(n) {
                    eprintln!("rowferry: ROWFERRY_CRASH_AFTER_CHUNKS={n} reached; aborting");
                    std::process::abort();
                }
                let elapsed = started.elapsed();
                lock(&sizer).record(chunk.planned_rows, elapsed);
                stats.rows_done.fetch_add(rows, Ordering::Relaxed);
                stats.rows_this_run.fetch_add(rows, Ordering::Relaxed);
                stats.chunks_done.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                stats.slowest_chunk_us.fetch_max(micros, Ordering::Relaxed);
                // The count, after the commit (the done-mark is already in).
                let counted = session
                    .run(|s| {
                        let shared = shared.clone();
                        let params = [
                            shared.job.clone(),
                            chunk.seq.to_string(),
                            rows.to_string(),
                            shared.owner.clone(),
                        ];
                        Box::pin(async move {
                            s.transaction(&[Statement {
                                sql: shared.sql.set_rows.clone(),
                                params: params.to_vec(),
                            }])
                            .await
                        })
                    })
                    .await;
                if let Err(e) = counted {
                    eprintln!(
                        "rowferry: warning: chunk {} committed, but its row count could not be \
                         recorded ({}); the job's total will be short by {rows}",
                        chunk.seq, e.message
                    );
                }
            }
            Ok(Some(Ran::Lost)) => {
                eprintln!(
                    "rowferry: chunk {} ({}) was taken over by another process after this one's \
                     lease expired; its done-mark was refused and the chunk rolled back",
                    chunk.seq,
                    crate::pool::describe_chunk(&chunk)
                );
            }
            Ok(None) => return,
            Err(e) => return fail(work.explain(&chunk, e)),
        }
    }
}

/// Every lease/3: renew this process's leases and heartbeat, and share the
/// rate among the live processes. A process that cannot renew for a whole
/// lease stops taking chunks (others take its chunks over).
async fn renew(
    shared: Arc<Shared>,
    throttle: Arc<Throttle>,
    sizer: Arc<Mutex<ChunkSizer>>,
    total_rate: Option<NonZeroU32>,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
    done: CancellationToken,
) {
    let every = shared.lease / 3;
    let mut last_ok = Instant::now();
    let mut share: Option<u32> = total_rate.map(NonZeroU32::get);
    let mut session: Option<Box<dyn Session>> = None;
    loop {
        let ok = renew_once(&shared, &mut session).await;
        match ok {
            Ok(live) => {
                last_ok = Instant::now();
                if let Some(total) = total_rate {
                    let each = (total.get() / live.max(1)).max(1);
                    if share != Some(each) {
                        share = Some(each);
                        throttle.set_rate(NonZeroU32::new(each));
                        lock(&sizer).set_rate_cap(Some(u64::from(each)));
                    }
                }
            }
            Err(e) => {
                session = None;
                if last_ok.elapsed() >= shared.lease {
                    eprintln!(
                        "rowferry: cannot renew this process's leases ({}); stopping after the \
                         chunks in flight",
                        e.message
                    );
                    lost.store(true, Ordering::Relaxed);
                    stop.cancel();
                    return;
                }
            }
        }
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One renewal; the number of live processes.
async fn renew_once(shared: &Shared, session: &mut Option<Box<dyn Session>>) -> Result<u32> {
    if session.is_none() {
        *session = Some(shared.db.session().await?);
    }
    let Some(s) = session.as_mut() else {
        return Err(Error::fatal("internal: no session"));
    };
    let me = [shared.job.as_str(), shared.owner.as_str()];
    s.transaction(&[stmt(&shared.sql.renew, &me)]).await?;
    let beat = s
        .transaction(&[stmt(&shared.sql.heartbeat_update, &me)])
        .await?;
    if beat.first() != Some(&1) {
        s.transaction(&[stmt(&shared.sql.heartbeat_insert, &me)])
            .await?;
    }
    let live = shared.query(s.as_mut(), &shared.sql.live_workers).await?;
    Ok(cell(&live, 0, 0)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1))
}
