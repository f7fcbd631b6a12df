//! Progress for humans and machines: a bar on a terminal, log lines
//! otherwise, or one JSON object per line; and the final summary.

use crate::throttle::Throttle;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    Bar,
    /// One JSON object per line on stderr.
    Json,
    None,
}

/// Counters shared by the workers and the reporter.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows done before this run (from the checkpoint) plus this run's.
    pub rows_done: AtomicU64,
    pub chunks_done: AtomicU64,
    pub retries: AtomicU64,
    /// Rows this run wrote (for the rate).
    pub rows_this_run: AtomicU64,
    /// The longest a chunk took this run, retries included (microseconds):
    /// an upper bound on how long a chunk held its row locks.
    pub slowest_chunk_us: AtomicU64,
}

/// One progress sample, as `--progress json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub phase: &'static str,
    pub rows_done: u64,
    pub rows_total_estimate: u64,
    pub chunks_done: u64,
    pub rows_per_sec: f64,
    pub eta_s: Option<f64>,
    pub throttled: Option<String>,
    pub retries: u64,
    pub elapsed_s: f64,
}

/// The job's progress now.
pub fn snapshot(
    phase: &'static str,
    stats: &Stats,
    throttle: &Throttle,
    total_estimate: u64,
    started: Instant,
) -> Snapshot {
    let rows_done = stats.rows_done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let rate = if elapsed > 0.0 {
        stats.rows_this_run.load(Ordering::Relaxed) as f64 / elapsed
    } else {
        0.0
    };
    let remaining = total_estimate.saturating_sub(rows_done) as f64;
    Snapshot {
        phase,
        rows_done,
        rows_total_estimate: total_estimate.max(rows_done),
        chunks_done: stats.chunks_done.load(Ordering::Relaxed),
        rows_per_sec: (rate * 10.0).round() / 10.0,
        eta_s: (rate > 0.0).then(|| (remaining / rate * 10.0).round() / 10.0),
        throttled: throttle.reason(),
        retries: stats.retries.load(Ordering::Relaxed),
        elapsed_s: (elapsed * 1000.0).round() / 1000.0,
    }
}

pub struct Reporter {
    mode: ProgressMode,
    stats: Arc<Stats>,
    throttle: Arc<Throttle>,
    total_estimate: u64,
    started: Instant,
    phase: &'static str,
}

const LOG_EVERY: Duration = Duration::from_secs(5);
const JSON_EVERY: Duration = Duration::from_secs(1);
const BAR_EVERY: Duration = Duration::from_millis(200);

impl Reporter {
    pub fn new(
        mode: ProgressMode,
        phase: &'static str,
        stats: Arc<Stats>,
        throttle: Arc<Throttle>,
        total_estimate: u64,
    ) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            other => other,
        };
        Reporter {
            mode,
            stats,
            throttle,
            total_estimate,
            started: Instant::now(),
            phase,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot(
            self.phase,
            &self.stats,
            &self.throttle,
            self.total_estimate,
            self.started,
        )
    }

    /// Report until `done` is cancelled, then draw the last state.
    pub async fn run(self, done: CancellationToken) {
        match self.mode {
            ProgressMode::None => done.cancelled().await,
            ProgressMode::Json => {
                self.tick(done, JSON_EVERY, |s| eprintln!("{}", json_line(s)))
                    .await
            }
            ProgressMode::Auto => {
                self.tick(done, LOG_EVERY, |s| eprintln!("{}", log_line(s)))
                    .await
            }
            ProgressMode::Bar => {
                let bar = ProgressBar::with_draw_target(
                    Some(self.total_estimate),
                    ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix} [{bar:40.cyan/blue}] {human_pos}/{human_len} rows  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(self.phase);
                let draw = |s: &Snapshot| {
                    bar.set_length(s.rows_total_estimate);
                    bar.set_position(s.rows_done);
                    bar.set_message(format!(
                        "{:.0} rows/s  eta {}  {}",
                        s.rows_per_sec,
                        s.eta_s
                            .map(
                                |e| humantime::format_duration(Duration::from_secs(e as u64))
                                    .to_string()
                            )
                            .unwrap_or_else(|| "?".into()),
                        s.throttled
                            .as_ref()
                            .map(|t| format!("throttled: {t}"))
                            .unwrap_or_default()
                    ));
                };
                self.tick(done, BAR_EVERY, draw).await;
                bar.finish_and_clear();
            }
        }
    }

    async fn tick(
        &self,
        done: CancellationToken,
        every: Duration,
        mut emit: impl FnMut(&Snapshot),
    ) {
        let mut interval = tokio::time::interval(every);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                _ = interval.tick() => emit(&self.snapshot()),
            }
        }
        emit(&self.snapshot());
    }
}

fn json_line(s: &Snapshot) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn log_line(s: &Snapshot) -> String {
    let pct = if s.rows_total_estimate > 0 {
        100.0 * s.rows_done as f64 / s.rows_total_estimate as f64
    } else {
        100.0
    };
    format!(
        "{}: {}/{} rows ({pct:.1}%), {} chunks, {:.0} rows/s, eta {}, throttled: {}",
        s.phase,
        s.rows_done,
        s.rows_total_estimate,
        s.chunks_done,
        s.rows_per_sec,
        s.eta_s
            .map(|e| format!("{e:.0}s"))
            .unwrap_or_else(|| "?".into()),
        s.throttled.as_deref().unwrap_or("no")
    )
}

/// What a run did, printed at the end (JSON on stdout with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub operation: &'static str,
    /// "done", "interrupted" or "failed".
    pub status: &'static str,
    pub source_table: String,
    pub target_table: String,
    /// Rows written by this run.
    pub rows: u64,
    /// Chunks committed by this run.
    pub chunks: u64,
    /// Rows written by the whole job, earlier runs included.
    pub rows_total: u64,
    pub chunks_total: u64,
    pub elapsed_s: f64,
    pub rows_per_sec: f64,
    pub retries: u64,
    pub slowest_chunk_s: f64,
    pub resumed: bool,
    pub checkpoint: String,
    pub error: Option<String>,
    /// What the job leaves in place (e.g. dual-write triggers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Summary {
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        eprintln!(
            "{} {}: {} -> {}: {} rows in {} chunks this run ({} rows, {} chunks in all), {:.1}s, {:.0} rows/s, {} retries, slowest chunk {:.3}s; checkpoint {}",
            self.operation,
            self.status,
            self.source_table,
            self.target_table,
            self.rows,
            self.chunks,
            self.rows_total,
            self.chunks_total,
            self.elapsed_s,
            self.rows_per_sec,
            self.retries,
            self.slowest_chunk_s,
            self.checkpoint
        );
        if let Some(note) = &self.note {
            eprintln!("{}: {note}", self.operation);
        }
    }
}
