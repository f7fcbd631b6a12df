//! The worker pool: a planner task feeds a bounded queue, N workers take
//! chunks from it, each on its own connection, one transaction per chunk,
//! and a coordinator records what committed in the ledger and checkpoint.

use crate::checkpoint::{Chunk, Ledger};
use crate::db::{Database, Session};
use crate::error::{Error, ErrorKind, Result};
use crate::planner::{ChunkSizer, KeysetPlanner, lock};
use crate::progress::Stats;
use crate::throttle::Throttle;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a job does to one chunk, in one transaction.
#[async_trait]
pub trait ChunkWork: Send + Sync {
    /// Rows written.
    async fn run(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<u64>;

    /// Turn a non-retryable error into the message the operator reads.
    fn explain(&self, chunk: &Chunk, error: Error) -> Error {
        error.context(describe_chunk(chunk))
    }
}

/// `chunk (lo, hi]` in the key's text form, for messages.
pub fn describe_chunk(chunk: &Chunk) -> String {
    let show = |k: &Vec<String>| {
        if k.len() == 1 {
            k[0].clone()
        } else {
            format!("({})", k.join(", "))
        }
    };
    match &chunk.lo {
        Some(lo) => format!("chunk ({}, {}]", show(lo), show(&chunk.hi)),
        None => format!("chunk (start, {}]", show(&chunk.hi)),
    }
}

/// Persists the ledger; called by the coordinator only.
pub trait LedgerSink: Send {
    fn save(&mut self, ledger: &Ledger) -> Result<()>;
}

pub struct Pipeline {
    pub db: Arc<dyn Database>,
    pub planner: Arc<KeysetPlanner>,
    pub work: Arc<dyn ChunkWork>,
    pub ledger: Arc<Mutex<Ledger>>,
    pub sizer: Arc<Mutex<ChunkSizer>>,
    pub throttle: Arc<Throttle>,
    pub stats: Arc<Stats>,
    pub workers: usize,
    pub max_retries: u32,
    /// Cancelled by a signal (or a failure): no new chunk starts.
    pub stop: CancellationToken,
    /// Testing hook: abort the process right after this many commits,
    /// before the checkpoint records the last one.
    pub crash_after_chunks: Option<u64>,
}

#[derive(Debug)]
pub enum Outcome {
    Done,
    Interrupted,
    Failed(Error),
}

enum Event {
    Committed {
        seq: u64,
        rows: u64,
        planned_rows: u64,
        elapsed: Duration,
    },
    Failed(Error),
    /// A worker is about to run this chunk: its bounds must be in the
    /// checkpoint file first.
    NeedDurable(u64),
}

const SAVE_EVERY: Duration = Duration::from_millis(250);

impl Pipeline {
    pub async fn run(self, sink: &mut dyn LedgerSink) -> Outcome {
        let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(self.workers.max(1));
        let chunk_rx = Arc::new(tokio::sync::Mutex::new(chunk_rx));
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<Event>();
        // Chunks with a sequence number below this are in the file. A chunk
        // only runs once its bounds are durable: after a crash, every chunk
        // that may have committed is in the checkpoint with its exact
        // bounds, and is re-run with them (a backfill's state row then
        // recognises it), never re-cut differently.
        let (durable_tx, durable_rx) = tokio::sync::watch::channel(lock(&self.ledger).next_seq());

        let planner = tokio::spawn(plan_chunks(
            self.db.clone(),
            self.planner.clone(),
            self.ledger.clone(),
            self.sizer.clone(),
            self.stats.clone(),
            self.max_retries,
            self.stop.clone(),
            chunk_tx,
            event_tx.clone(),
        ));
        let mut workers = Vec::new();
        for worker in 0..self.workers.max(1) {
            workers.push(tokio::spawn(work_chunks(
                worker,
                self.db.clone(),
                self.work.clone(),
                self.throttle.clone(),
                self.stats.clone(),
                self.max_retries,
                self.stop.clone(),
                chunk_rx.clone(),
                event_tx.clone(),
                durable_rx.clone(),
            )));
        }
        drop(event_tx);

        // The coordinator: the only writer of the ledger's completions.
        let mut failure: Option<Error> = None;
        let mut committed_this_run = 0u64;
        let mut last_save = Instant::now();
        let mut dirty = false;
        let mut tick = tokio::time::interval(SAVE_EVERY);
        loop {
            tokio::select! {
                event = event_rx.recv() => match event {
                    None => break,
                    Some(Event::Committed { seq, rows, planned_rows, elapsed }) => {
                        committed_this_run += 1;
                        if self.crash_after_chunks == Some(committed_this_run) {
                            eprintln!("rowferry: ROWFERRY_CRASH_AFTER_CHUNKS={committed_this_run} reached; aborting");
                            std::process::abort();
                        }
                        lock(&self.ledger).complete(seq, rows);
                        lock(&self.sizer).record(planned_rows, elapsed);
                        self.stats.rows_done.fetch_add(rows, Ordering::Relaxed);
                        self.stats.rows_this_run.fetch_add(rows, Ordering::Relaxed);
                        self.stats.chunks_done.fetch_add(1, Ordering::Relaxed);
                        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                        self.stats.slowest_chunk_us.fetch_max(micros, Ordering::Relaxed);
                        dirty = true;
                    }
                    Some(Event::Failed(e)) => {
                        self.stop.cancel();
                        failure.get_or_insert(e);
                    }
                    Some(Event::NeedDurable(seq)) => {
                        if *durable_tx.borrow() <= seq {
                            let snapshot = lock(&self.ledger).clone();
                            match sink.save(&snapshot) {
                                Ok(()) => {
                                    let _ = durable_tx.send(snapshot.next_seq());
                                    last_save = Instant::now();
                                    dirty = false;
                                }
                                Err(e) => {
                                    self.stop.cancel();
                                    failure.get_or_insert(e);
                                }
                            }
                        }
                    }
                },
                _ = tick.tick() => {}
            }
            if dirty && last_save.elapsed() >= SAVE_EVERY {
                let snapshot = lock(&self.ledger).clone();
                if let Err(e) = sink.save(&snapshot) {
                    self.stop.cancel();
                    failure.get_or_insert(e);
                }
                last_save = Instant::now();
                dirty = false;
            }
        }
        let _ = planner.await;
        for w in workers {
            let _ = w.await;
        }
        let snapshot = lock(&self.ledger).clone();
        if let Err(e) = sink.save(&snapshot) {
            failure.get_or_insert(e);
        }
        match failure {
            Some(e) => Outcome::Failed(e),
            None if snapshot.is_complete() => Outcome::Done,
            None if self.stop.is_cancelled() => Outcome::Interrupted,
            None => Outcome::Failed(Error::fatal(
                "internal: the job ended with chunks left and no error",
            )),
        }
    }
}

/// What `RetryingSession::run` runs on the session (boxed: a borrowing
/// async closure cannot yet promise `Send` to tokio::spawn).
pub type SessionFuture<'s, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 's>>;

/// One connection and the retry loop around it: a retryable failure
/// (deadlock, lock timeout, lost connection) drops the connection, waits
/// with backoff and tries again, up to `max_retries` times.
pub struct RetryingSession {
    db: Arc<dyn Database>,
    session: Option<Box<dyn Session>>,
    stats: Arc<Stats>,
    max_retries: u32,
    stop: CancellationToken,
}

impl RetryingSession {
    pub fn new(
        db: Arc<dyn Database>,
        stats: Arc<Stats>,
        max_retries: u32,
        stop: CancellationToken,
    ) -> Self {
        RetryingSession {
            db,
            session: None,
            stats,
            max_retries,
            stop,
        }
    }

    /// Ok(None) when the job stopped while waiting to retry.
    pub async fn run<T>(
        &mut self,
        mut op: impl for<'s> FnMut(&'s mut (dyn Session + 'static)) -> SessionFuture<'s, T>,
    ) -> Result<Option<T>> {
        let mut attempt = 0;
        loop {
            let result = match self.session.as_mut() {
                Some(s) => op(s.as_mut()).await,
                None => match self.db.session().await {
                    Ok(s) => {
                        self.session = Some(s);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(value) => return Ok(Some(value)),
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    // A fresh connection next time: this one may be broken.
                    self.session = None;
                    if !backoff(attempt, &self.stop).await {
                        return Ok(None);
                    }
                }
                Err(e) if e.is_retryable() => {
                    let mut e = e.with_kind(ErrorKind::Fatal);
                    e.message = format!("{} (gave up after {attempt} retries)", e.message);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn plan_chunks(
    db: Arc<dyn Database>,
    planner: Arc<KeysetPlanner>,
    ledger: Arc<Mutex<Ledger>>,
    sizer: Arc<Mutex<ChunkSizer>>,
    stats: Arc<Stats>,
    max_retries: u32,
    stop: CancellationToken,
    queue: mpsc::Sender<Chunk>,
    events: mpsc::UnboundedSender<Event>,
) {
    // Chunks handed out by an earlier run but never committed go first.
    let unfinished = lock(&ledger).unfinished();
    for chunk in unfinished {
        if !send(&queue, chunk, &stop).await {
            return;
        }
    }
    let mut session = RetryingSession::new(db, stats, max_retries, stop.clone());
    while !stop.is_cancelled() {
        let rows = lock(&sizer).rows();
        let planned = session
            .run(|s| {
                let (planner, ledger) = (planner.clone(), ledger.clone());
                Box::pin(async move { planner.plan_next(s, &ledger, rows).await })
            })
            .await;
        match planned {
            Ok(Some(Some(chunk))) => {
                if !send(&queue, chunk, &stop).await {
                    return;
                }
            }
            // The range is fully planned, or the job is stopping.
            Ok(Some(None)) | Ok(None) => return,
            Err(e) => {
                let _ = events.send(Event::Failed(e.context("planning the next chunk")));
                return;
            }
        }
    }
}

async fn send(queue: &mpsc::Sender<Chunk>, chunk: Chunk, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        sent = queue.send(chunk) => sent.is_ok(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn work_chunks(
    worker: usize,
    db: Arc<dyn Database>,
    work: Arc<dyn ChunkWork>,
    throttle: Arc<Throttle>,
    stats: Arc<Stats>,
    max_retries: u32,
    stop: CancellationToken,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Chunk>>>,
    events: mpsc::UnboundedSender<Event>,
    mut durable: tokio::sync::watch::Receiver<u64>,
) {
    let mut session = RetryingSession::new(db, stats, max_retries, stop.clone());
    loop {
        // Beyond the operator's `workers N`: idle, but still gone once
        // the planner is done and the queue is empty.
        while !throttle.may_work(worker) {
            {
                let queue = queue.lock().await;
                if queue.is_closed() && queue.is_empty() {
                    return;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let next = tokio::select! {
            _ = stop.cancelled() => None,
            chunk = async { queue.lock().await.recv().await } => chunk,
        };
        let Some(chunk) = next else { return };
        if !throttle.admit(chunk.planned_rows, &stop).await {
            return;
        }
        if *durable.borrow() <= chunk.seq {
            let _ = events.send(Event::NeedDurable(chunk.seq));
            let saved = tokio::select! {
                _ = stop.cancelled() => false,
                saved = durable.wait_for(|next| *next > chunk.seq) => saved.is_ok(),
            };
            if !saved {
                return;
            }
        }
        let started = Instant::now();
        let ran = session
            .run(|s| {
                let (work, chunk) = (work.clone(), chunk.clone());
                Box::pin(async move { work.run(s, &chunk).await })
            })
            .await;
        match ran {
            Ok(Some(rows)) => {
                let _ = events.send(Event::Committed {
                    seq: chunk.seq,
                    rows,
                    planned_rows: chunk.planned_rows,
                    elapsed: started.elapsed(),
                });
            }
            // Stopping while waiting to retry: the chunk stays unfinished.
            Ok(None) => return,
            Err(e) => {
                let _ = events.send(Event::Failed(work.explain(&chunk, e)));
                return;
            }
        }
    }
}

/// Exponential backoff with jitter: 100 ms, 200 ms, ... capped at 5 s, each
/// between half and all of that. False if the job stops meanwhile.
async fn backoff(attempt: u32, stop: &CancellationToken) -> bool {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(5));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 0.5 + f64::from(nanos % 1000) / 2000.0;
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(base.mul_f64(jitter)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_described_by_their_bounds() {
        let c = Chunk {
            seq: 0,
            lo: Some(vec!["10".into()]),
            hi: vec!["20".into()],
            planned_rows: 10,
        };
        assert_eq!(describe_chunk(&c), "chunk (10, 20]");
        let c = Chunk {
            seq: 0,
            lo: None,
            hi: vec!["a".into(), "2".into()],
            planned_rows: 10,
        };
        assert_eq!(describe_chunk(&c), "chunk (start, (a, 2)]");
    }
}
