//! What watches and steers a running pipeline, for every job that has one
//! (copy, backfill, verify): the throttle's signal observer, the control
//! socket, the metrics endpoint and the event hooks. Started before the
//! first chunk, finished after the last.

use crate::control::{ControlSocket, JobControl, ReplicaLagReading};
use crate::db::Database;
use crate::error::Result;
use crate::events::EventHook;
use crate::planner::{ChunkSizer, lock};
use crate::progress::Stats;
use crate::signals::Signal;
use crate::spec::RunOptions;
use crate::throttle::Throttle;
use serde_json::{Value, json};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// What the options ask for, checked before anything is written: the
/// signals (see `signals::prepare`), and the control socket and metrics
/// address, already listening.
pub struct Prepared {
    signals: Vec<Box<dyn Signal>>,
    replica_lags: Vec<ReplicaLagReading>,
    max_lag_ms: Arc<AtomicU64>,
    socket: Option<ControlSocket>,
    metrics: Option<tokio::net::TcpListener>,
}

impl Prepared {
    pub async fn check(opts: &RunOptions, db: &Arc<dyn Database>) -> Result<Prepared> {
        let max_lag_ms = Arc::new(AtomicU64::new(
            u64::try_from(opts.signals.max_lag.as_millis()).unwrap_or(u64::MAX),
        ));
        let (signals, replica_lags) =
            crate::signals::prepare(&opts.signals, db, &max_lag_ms).await?;
        let socket = match &opts.control.control_socket {
            Some(path) => Some(ControlSocket::bind(path)?),
            None => None,
        };
        let metrics = match &opts.control.metrics_addr {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        Ok(Prepared {
            signals,
            replica_lags,
            max_lag_ms,
            socket,
            metrics,
        })
    }
}

/// The pipeline's shared parts that the supervisor reads and changes.
pub struct Pipeline<'a> {
    pub phase: &'static str,
    pub throttle: &'a Arc<Throttle>,
    pub sizer: &'a Arc<Mutex<ChunkSizer>>,
    pub stats: &'a Arc<Stats>,
    pub stop: &'a CancellationToken,
    pub total_estimate: u64,
}

pub struct Supervisor {
    control: Arc<JobControl>,
    observer: tokio::task::JoinHandle<()>,
    critical: Arc<Mutex<Option<String>>>,
    socket: Option<ControlSocket>,
    metrics: Option<tokio::task::JoinHandle<()>>,
    hook: EventHook,
    hook_done: CancellationToken,
    throttle_events: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Start watching; `job` is what every event carries, `start` what
    /// the start event adds.
    pub async fn start(
        opts: &RunOptions,
        prepared: Prepared,
        pipeline: Pipeline<'_>,
        job: Value,
        start: Value,
    ) -> Result<Supervisor> {
        let critical = Arc::new(Mutex::new(None));
        let observer = crate::signals::observe(
            prepared.signals,
            pipeline.throttle.clone(),
            critical.clone(),
            pipeline.stop.clone(),
        )
        .await;
        let control = Arc::new(JobControl::new(
            pipeline.phase,
            pipeline.throttle.clone(),
            pipeline.sizer.clone(),
            pipeline.stats.clone(),
            pipeline.stop.clone(),
            prepared.max_lag_ms,
            prepared.replica_lags,
            opts.workers,
            pipeline.total_estimate,
        ));
        let mut socket = prepared.socket;
        if let Some(s) = socket.as_mut() {
            s.serve(control.clone());
        }
        let metrics = prepared
            .metrics
            .map(|listener| crate::metrics::serve(listener, control.clone()));
        let hook = EventHook::new(opts.control.on_event.as_deref(), job);
        hook.emit("start", start).await;
        let hook_done = CancellationToken::new();
        let throttle_events = hook.watch_throttle(pipeline.throttle.clone(), hook_done.clone());
        Ok(Supervisor {
            control,
            observer,
            critical,
            socket,
            metrics,
            hook,
            hook_done,
            throttle_events,
        })
    }

    /// Stop watching once the pipeline is over. The reason a critical
    /// signal stopped the job, if one did.
    pub async fn stop_watching(&mut self) -> Option<String> {
        self.observer.abort();
        self.hook_done.cancel();
        let _ = (&mut self.throttle_events).await;
        if let Some(m) = self.metrics.take() {
            m.abort();
        }
        self.socket.take();
        lock(&self.critical).clone()
    }

    /// Report how the job ended (`error`: None when it succeeded) to the
    /// hooks, and wait for them.
    pub async fn finish(self, status: &str, error: Option<&str>) {
        let s = self.control.snapshot();
        match error {
            None => self
                .hook
                .emit(
                    "completion",
                    json!({ "status": status, "rows_done": s.rows_done, "elapsed_s": s.elapsed_s }),
                )
                .await,
            Some(message) => {
                self.hook
                    .emit(
                        "failure",
                        json!({ "status": status, "error": message, "rows_done": s.rows_done }),
                    )
                    .await
            }
        }
        self.hook.finish().await;
    }
}
