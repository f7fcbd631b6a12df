//! A running job as the operator sees and steers it: the control socket's
//! line commands, and what the metrics endpoint and event hooks read.

use crate::planner::{ChunkSizer, lock};
use crate::progress::{Snapshot, Stats};
use crate::throttle::Throttle;
use serde_json::json;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// A replica's last measured lag (None: not measurable).
pub type ReplicaLagReading = (String, Arc<Mutex<Option<f64>>>);

pub struct JobControl {
    pub phase: &'static str,
    pub throttle: Arc<Throttle>,
    pub sizer: Arc<Mutex<ChunkSizer>>,
    pub stats: Arc<Stats>,
    /// Cancelled by `stop`: chunks in flight finish, the checkpoint is saved.
    pub stop: CancellationToken,
    pub max_lag_ms: Arc<AtomicU64>,
    pub replica_lags: Vec<ReplicaLagReading>,
    /// The pool's size: `workers N` can lower it and raise it back.
    pub pool_workers: usize,
    workers: AtomicUsize,
    pub total_estimate: u64,
    pub started: Instant,
}

impl JobControl {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        phase: &'static str,
        throttle: Arc<Throttle>,
        sizer: Arc<Mutex<ChunkSizer>>,
        stats: Arc<Stats>,
        stop: CancellationToken,
        max_lag_ms: Arc<AtomicU64>,
        replica_lags: Vec<ReplicaLagReading>,
        pool_workers: usize,
        total_estimate: u64,
    ) -> Self {
        JobControl {
            phase,
            throttle,
            sizer,
            stats,
            stop,
            max_lag_ms,
            replica_lags,
            pool_workers,
            workers: AtomicUsize::new(pool_workers),
            total_estimate,
            started: Instant::now(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        crate::progress::snapshot(
            self.phase,
            &self.stats,
            &self.throttle,
            self.total_estimate,
            self.started,
        )
    }

    /// `status`: the progress snapshot plus the settings an operator can
    /// change.
    pub fn status_json(&self) -> serde_json::Value {
        let mut status = serde_json::to_value(self.snapshot()).unwrap_or_default();
        if let Some(map) = status.as_object_mut() {
            map.insert("paused".into(), json!(self.throttle.paused()));
            map.insert("rate".into(), json!(self.throttle.rate().map(|r| r.get())));
            map.insert(
                "chunk_time_ms".into(),
                json!(lock(&self.sizer).target().as_millis() as u64),
            );
            map.insert(
                "workers".into(),
                json!(self.workers.load(Ordering::Relaxed)),
            );
            map.insert("pool_workers".into(), json!(self.pool_workers));
            map.insert(
                "max_lag_ms".into(),
                json!(self.max_lag_ms.load(Ordering::Relaxed)),
            );
            map.insert(
                "replica_lag_s".into(),
                self.replica_lags
                    .iter()
                    .map(|(label, lag)| (label.clone(), json!(*lock(lag))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            );
            map.insert("stopping".into(), json!(self.stop.is_cancelled()));
        }
        status
    }

    /// Apply one line command; the reply (one line), or why it was refused.
    pub fn apply(&self, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("").to_ascii_lowercase();
        let arg = words.next();
        if words.next().is_some() {
            return Err(format!("{command}: one argument at most"));
        }
        let need = |what: &str| arg.ok_or_else(|| format!("{command}: missing {what}"));
        match command.as_str() {
            "status" => Ok(self.status_json().to_string()),
            "pause" => {
                self.throttle.set_paused(true);
                Ok("ok paused: chunks in flight finish, no new chunk starts".into())
            }
            "resume" => {
                self.throttle.set_paused(false);
                Ok("ok resumed".into())
            }
            "rate" => {
                let text = need("rows per second (or 0 for no limit)")?;
                let n: u32 = text
                    .parse()
                    .map_err(|_| format!("rate: {text:?} is not a whole number of rows/s"))?;
                let rate = NonZeroU32::new(n);
                self.throttle.set_rate(rate);
                lock(&self.sizer).set_rate_cap(rate.map(|r| u64::from(r.get())));
                Ok(match rate {
                    Some(r) => format!("ok rate {r} rows/s"),
                    None => "ok rate unlimited".into(),
                })
            }
            "chunk-time" => {
                let d = duration(need("a duration (e.g. 250ms, 0 for fixed chunks)")?)?;
                lock(&self.sizer).set_target(d);
                Ok(format!("ok chunk-time {}", humantime::format_duration(d)))
            }
            "workers" => {
                let text = need("a number of workers")?;
                let n: usize = text
                    .parse()
                    .map_err(|_| format!("workers: {text:?} is not a number"))?;
                if n == 0 || n > self.pool_workers {
                    return Err(format!(
                        "workers: {n} is outside 1..={} (the job started with --workers {}; \
                         restart it with more to go higher)",
                        self.pool_workers, self.pool_workers
                    ));
                }
                self.workers.store(n, Ordering::Relaxed);
                self.throttle.set_active_workers(n);
                Ok(format!("ok workers {n}"))
            }
            "max-lag" => {
                let d = duration(need("a duration (e.g. 2s)")?)?;
                self.max_lag_ms
                    .store(d.as_millis() as u64, Ordering::Relaxed);
                Ok(format!("ok max-lag {}", humantime::format_duration(d)))
            }
            "stop" => {
                self.stop.cancel();
                Ok("ok stopping: chunks in flight finish, then the checkpoint is saved".into())
            }
            "" => Err("empty command".into()),
            other => Err(format!(
                "unknown command {other:?}; commands: status, pause, resume, rate N, \
                 chunk-time D, workers N, max-lag D, stop"
            )),
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (write e.g. 500ms, 2s)"))
}

/// The control socket, removed again when the job ends.
pub struct ControlSocket {
    path: PathBuf,
    listener: Option<tokio::net::UnixListener>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ControlSocket {
    /// Listen on `path` (refused if something else is there: another job's
    /// socket must not be taken over); commands are served once `serve`
    /// is called. Bound before the job writes anything, so a bad path is an
    /// input error.
    pub fn bind(path: &Path) -> crate::error::Result<ControlSocket> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(crate::error::Error::input(format!(
                    "--control-socket {}: another job is listening there; choose another path",
                    path.display()
                )));
            }
            // Left by a job that was killed: nothing answers on it.
            let _ = std::fs::remove_file(path);
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
            crate::error::Error::input(format!(
                "--control-socket {}: cannot listen there ({e}); check that the directory \
                 exists and is writable",
                path.display()
            ))
        })?;
        // Only the job's own user may steer it.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(ControlSocket {
            path: path.to_path_buf(),
            listener: Some(listener),
            task: None,
        })
    }

    /// Answer line commands: one reply line per command (`ok ...`, a
    /// JSON object for `status`, or `error: ...`).
    pub fn serve(&mut self, control: Arc<JobControl>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let control = control.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = match control.apply(&line) {
                            Ok(reply) => reply,
                            Err(why) => format!("error: {why}"),
                        };
                        if write
                            .write_all(format!("{reply}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }));
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> JobControl {
        let sizer = ChunkSizer::new(1000, Duration::from_millis(500), 100_000, 16 << 20, 100);
        JobControl::new(
            "copy",
            Arc::new(Throttle::new(None, None)),
            Arc::new(Mutex::new(sizer)),
            Arc::new(Stats::default()),
            CancellationToken::new(),
            Arc::new(AtomicU64::new(1000)),
            vec![("db2:5433".into(), Arc::new(Mutex::new(Some(0.5))))],
            4,
            10_000,
        )
    }

    #[test]
    fn commands_change_the_settings_they_name() {
        let c = control();
        c.apply("pause").unwrap();
        assert!(c.throttle.paused());
        c.apply("resume").unwrap();
        assert!(!c.throttle.paused());
        c.apply("rate 50").unwrap();
        assert_eq!(c.throttle.rate().map(|r| r.get()), Some(50));
        assert_eq!(
            lock(&c.sizer).rows(),
            50,
            "chunks fit one second at the rate"
        );
        c.apply("rate 0").unwrap();
        assert_eq!(c.throttle.rate(), None);
        c.apply("chunk-time 2s").unwrap();
        assert_eq!(lock(&c.sizer).target(), Duration::from_secs(2));
        c.apply("workers 2").unwrap();
        c.apply("max-lag 3s").unwrap();
        assert_eq!(c.max_lag_ms.load(Ordering::Relaxed), 3000);
        let status: serde_json::Value = serde_json::from_str(&c.apply("status").unwrap()).unwrap();
        assert_eq!(status["workers"], 2);
        assert_eq!(status["max_lag_ms"], 3000);
        assert_eq!(status["replica_lag_s"]["db2:5433"], 0.5);
        assert_eq!(status["phase"], "copy");
        c.apply("stop").unwrap();
        assert!(c.stop.is_cancelled());
    }

    #[test]
    fn bad_commands_are_refused_with_the_reason() {
        let c = control();
        assert!(c.apply("workers 9").unwrap_err().contains("outside 1..=4"));
        assert!(c.apply("workers 0").is_err());
        assert!(c.apply("rate fast").unwrap_err().contains("whole number"));
        assert!(c.apply("chunk-time soon").is_err());
        assert!(c.apply("rate").unwrap_err().contains("missing"));
        assert!(c.apply("launch").unwrap_err().contains("commands: status"));
        assert!(c.apply("pause now please").is_err());
    }
}
