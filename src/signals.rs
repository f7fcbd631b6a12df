//! Throttle signals, observed in the background: replica lag, server load
//! and the operator's throttle query. Every `OBSERVE_EVERY` the observer
//! asks each signal and tells the throttle to hold chunks (with the
//! reasons) or release them; workers never query anything themselves. A
//! signal that cannot be measured holds: the throttle fails closed. A
//! critical signal stops the job cleanly (checkpoint saved, exit 1).

use crate::db::{self, Database, SessionSettings};
use crate::dialect::Dialect;
use crate::dialect::signals::NamedRow;
use crate::error::{Error, Result};
use crate::throttle::Throttle;
use crate::url::DbUrl;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often signals are measured.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(250);
/// A signal that does not answer within this counts as over its limit.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// One measurement's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Clear,
    /// Chunks wait; the reason shows in progress.
    Hold(String),
    /// The job stops cleanly.
    Stop(String),
}

#[async_trait]
pub trait Signal: Send + Sync {
    async fn check(&self) -> Verdict;
}

/// A database the observer asks: the job's own server (through one
/// connection of its own: the pool's are all taken by the workers, the
/// planner and the job), or a replica it connects to on first use. After
/// an error it connects again (a replica may restart during a long job).
struct Lazy {
    /// None for the job's server.
    url: Option<DbUrl>,
    db: tokio::sync::Mutex<Option<Arc<dyn Database>>>,
    /// The connection in use, kept between measurements.
    session: tokio::sync::Mutex<Option<Box<dyn db::Session>>>,
}

impl Lazy {
    fn new(url: DbUrl) -> Self {
        Lazy {
            url: Some(url),
            db: tokio::sync::Mutex::new(None),
            session: tokio::sync::Mutex::new(None),
        }
    }

    fn shared(db: Arc<dyn Database>) -> Self {
        Lazy {
            url: None,
            db: tokio::sync::Mutex::new(Some(db)),
            session: tokio::sync::Mutex::new(None),
        }
    }

    async fn database(&self) -> Result<Arc<dyn Database>> {
        let mut slot = self.db.lock().await;
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let Some(url) = &self.url else {
            return Err(Error::fatal("internal: the job's pool is gone"));
        };
        let settings = SessionSettings {
            pool_size: 1,
            lock_timeout: Duration::from_secs(1),
            statement_timeout: ANSWER_WITHIN,
            idle_in_transaction_timeout: None,
        };
        let db: Arc<dyn Database> = Arc::from(db::connect(url, &settings).await?);
        *slot = Some(db.clone());
        Ok(db)
    }

    /// The kept connection (opened outside any pool when there is none),
    /// and the server's dialect.
    async fn session(
        &self,
    ) -> Result<(
        &'static dyn Dialect,
        tokio::sync::MutexGuard<'_, Option<Box<dyn db::Session>>>,
    )> {
        let db = self.database().await?;
        let mut slot = self.session.lock().await;
        if slot.is_none() {
            *slot = Some(db.dedicated_session().await?);
        }
        Ok((db.dialect(), slot))
    }

    async fn forget(&self) {
        *self.session.lock().await = None;
        if self.url.is_some() {
            *self.db.lock().await = None;
        }
    }

    /// Rows with column names for `sql` (None: the replica status query
    /// of the server's engine), and the engine; within `ANSWER_WITHIN`.
    async fn named(
        &self,
        sql: Option<&str>,
    ) -> std::result::Result<(&'static dyn Dialect, Vec<NamedRow>), String> {
        let answer = tokio::time::timeout(ANSWER_WITHIN, async {
            let (d, mut slot) = self.session().await?;
            let session = slot
                .as_mut()
                .ok_or_else(|| Error::fatal("internal: no session"))?;
            let sql = sql.unwrap_or(d.signals().replica_status_sql());
            Ok((d, session.query_named(sql).await?))
        })
        .await;
        self.settle(answer).await
    }

    /// Plain rows for `sql`, within `ANSWER_WITHIN`.
    async fn rows(&self, sql: &str) -> std::result::Result<Vec<db::Row>, String> {
        let answer = tokio::time::timeout(ANSWER_WITHIN, async {
            let (_, mut slot) = self.session().await?;
            let session = slot
                .as_mut()
                .ok_or_else(|| Error::fatal("internal: no session"))?;
            session.query(sql, &[]).await
        })
        .await;
        self.settle(answer).await
    }

    /// The answer, or why there is none; after a failure the next question
    /// connects again.
    async fn settle<T>(
        &self,
        answer: std::result::Result<Result<T>, tokio::time::error::Elapsed>,
    ) -> std::result::Result<T, String> {
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.forget().await;
                Err(e.message)
            }
            Err(_) => {
                self.forget().await;
                Err(format!("no answer within {}s", ANSWER_WITHIN.as_secs()))
            }
        }
    }
}

/// `--replica URL --max-lag D`: replay lag on one replica.
pub struct ReplicaLag {
    /// host:port/database, no credentials.
    label: String,
    replica: Lazy,
    max_lag_ms: Arc<AtomicU64>,
    /// The last measurement in seconds (None: unmeasurable), for metrics.
    pub last_lag: Arc<Mutex<Option<f64>>>,
}

impl ReplicaLag {
    pub fn new(url: DbUrl, max_lag_ms: Arc<AtomicU64>) -> Self {
        ReplicaLag {
            label: url.label(),
            replica: Lazy::new(url),
            max_lag_ms,
            last_lag: Arc::new(Mutex::new(None)),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

#[async_trait]
impl Signal for ReplicaLag {
    async fn check(&self) -> Verdict {
        let lag = self
            .replica
            .named(None)
            .await
            .and_then(|(d, rows)| d.signals().replica_lag(&rows));
        *crate::planner::lock(&self.last_lag) = lag.as_ref().ok().copied();
        match lag {
            Ok(seconds) => {
                let max = self.max_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0;
                if seconds > max {
                    Verdict::Hold(format!(
                        "replica lag {seconds:.1}s on {} (max {max:.1}s)",
                        self.label
                    ))
                } else {
                    Verdict::Clear
                }
            }
            Err(why) => self.unmeasurable(&why),
        }
    }
}

impl ReplicaLag {
    fn unmeasurable(&self, why: &str) -> Verdict {
        Verdict::Hold(format!(
            "replica lag unknown on {}: {why} (counted as over --max-lag)",
            self.label
        ))
    }
}

/// `--max-load` / `--critical-load METRIC=N` on the source server.
pub struct Load {
    server: Lazy,
    metric: String,
    sql: String,
    max: Option<f64>,
    critical: Option<f64>,
}

impl Load {
    pub fn new(
        db: Arc<dyn Database>,
        metric: String,
        sql: String,
        max: Option<f64>,
        critical: Option<f64>,
    ) -> Self {
        Load {
            server: Lazy::shared(db),
            metric,
            sql,
            max,
            critical,
        }
    }
}

#[async_trait]
impl Signal for Load {
    async fn check(&self) -> Verdict {
        let value = self
            .server
            .named(Some(&self.sql))
            .await
            .and_then(|(_, rows)| {
                rows.first()
                    .and_then(|r| r.last())
                    .and_then(|(_, v)| v.as_deref())
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("no value for {}", self.metric))
            });
        let value = match value {
            Ok(v) => v,
            Err(why) => return Verdict::Hold(format!("load unknown ({}): {why}", self.metric)),
        };
        if let Some(critical) = self.critical.filter(|c| value >= *c) {
            return Verdict::Stop(format!(
                "{} = {value} reached --critical-load {critical}",
                self.metric
            ));
        }
        match self.max.filter(|m| value >= *m) {
            Some(max) => Verdict::Hold(format!("load {} = {value} (max {max})", self.metric)),
            None => Verdict::Clear,
        }
    }
}

/// `--throttle-query SQL`: held while its first column is not zero.
pub struct ThrottleQuery {
    server: Lazy,
    sql: String,
}

impl ThrottleQuery {
    pub fn new(db: Arc<dyn Database>, sql: String) -> Self {
        ThrottleQuery {
            server: Lazy::shared(db),
            sql,
        }
    }
}

#[async_trait]
impl Signal for ThrottleQuery {
    async fn check(&self) -> Verdict {
        let answer = self.server.rows(&self.sql).await;
        match answer {
            Ok(rows) => {
                let first = rows.first().and_then(|r| r.first().cloned().flatten());
                let zero = first
                    .as_deref()
                    .is_none_or(|v| v.trim().parse::<f64>().is_ok_and(|n| n == 0.0));
                if zero {
                    Verdict::Clear
                } else {
                    Verdict::Hold(format!(
                        "--throttle-query returned {}",
                        first.unwrap_or_default()
                    ))
                }
            }
            Err(why) => Verdict::Hold(format!("--throttle-query failed: {why}")),
        }
    }
}

/// The signals a job's options ask for, checked before anything is
/// written (an unknown load metric or a failing throttle query is an
/// input error), and each replica's lag reading for metrics and status.
pub async fn prepare(
    opts: &crate::spec::SignalOptions,
    db: &Arc<dyn Database>,
    max_lag_ms: &Arc<AtomicU64>,
) -> Result<(Vec<Box<dyn Signal>>, Vec<crate::control::ReplicaLagReading>)> {
    let d = db.dialect();
    let mut signals: Vec<Box<dyn Signal>> = Vec::new();
    let mut lags = Vec::new();
    for url in &opts.replicas {
        let replica = ReplicaLag::new(url.clone(), max_lag_ms.clone());
        lags.push((replica.label().to_string(), replica.last_lag.clone()));
        signals.push(Box::new(replica));
    }
    let metric_of =
        |limit: &Option<crate::spec::LoadLimit>| limit.as_ref().and_then(|l| l.metric.clone());
    let (max_metric, critical_metric) = (metric_of(&opts.max_load), metric_of(&opts.critical_load));
    let mut metrics: Vec<String> = Vec::new();
    for m in [max_metric.clone(), critical_metric.clone()] {
        let m = m.unwrap_or_else(|| d.signals().default_load_metric().to_string());
        if !metrics.iter().any(|x| x.eq_ignore_ascii_case(&m)) {
            metrics.push(m);
        }
    }
    for metric in metrics {
        let applies = |limit: &Option<crate::spec::LoadLimit>| {
            limit.as_ref().and_then(|l| {
                let named = l
                    .metric
                    .clone()
                    .unwrap_or_else(|| d.signals().default_load_metric().to_string());
                named.eq_ignore_ascii_case(&metric).then_some(l.value)
            })
        };
        let (max, critical) = (applies(&opts.max_load), applies(&opts.critical_load));
        if max.is_none() && critical.is_none() {
            continue;
        }
        let sql = d.signals().load_sql(&metric).ok_or_else(|| {
            Error::input(format!(
                "--max-load/--critical-load: unknown metric {metric:?} for this engine. \
                 PostgreSQL: active (sessions running a statement), waiting (sessions waiting \
                 for a lock); MySQL/MariaDB: a global status counter such as Threads_running; \
                 SQL Server: active (user requests), waiting (requests blocked by another \
                 session), runnable (tasks queued for a CPU)"
            ))
        })?;
        let load = Load::new(db.clone(), metric, sql, max, critical);
        if let Verdict::Hold(why) = load.check().await
            && why.starts_with("load unknown")
        {
            return Err(Error::input(format!("--max-load/--critical-load: {why}")));
        }
        signals.push(Box::new(load));
    }
    if let Some(sql) = &opts.throttle_query {
        let query = ThrottleQuery::new(db.clone(), sql.clone());
        if let Verdict::Hold(why) = query.check().await
            && why.starts_with("--throttle-query failed")
        {
            return Err(Error::input(format!(
                "{why}. It runs on the source every 250ms; its first column must be a number \
                 (0: go on)"
            )));
        }
        signals.push(Box::new(query));
    }
    Ok((signals, lags))
}

/// Observe `signals` until `stop` is cancelled: hold or release the
/// throttle, and on a critical verdict record it in `critical` and stop
/// the job. The first measurement is taken before this returns, so no
/// chunk starts before the signals have been heard.
pub async fn observe(
    signals: Vec<Box<dyn Signal>>,
    throttle: Arc<Throttle>,
    critical: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if signals.is_empty() {
        return tokio::spawn(async {});
    }
    let apply = move |verdicts: Vec<Verdict>, throttle: &Throttle, stop: &CancellationToken| {
        let mut holds = Vec::new();
        for verdict in verdicts {
            match verdict {
                Verdict::Clear => {}
                Verdict::Hold(reason) => holds.push(reason),
                Verdict::Stop(reason) => {
                    eprintln!("rowferry: critical: {reason}; stopping after the chunks in flight");
                    *crate::planner::lock(&critical) = Some(reason.clone());
                    throttle.hold(Some(reason));
                    stop.cancel();
                    return false;
                }
            }
        }
        throttle.hold((!holds.is_empty()).then(|| holds.join("; ")));
        true
    };
    if !apply(measure_all(&signals).await, &throttle, &stop) {
        return tokio::spawn(async {});
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(OBSERVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !apply(measure_all(&signals).await, &throttle, &stop) {
                return;
            }
        }
    })
}

/// Every signal's verdict, one after the other (each answers within
/// `ANSWER_WITHIN`).
async fn measure_all(signals: &[Box<dyn Signal>]) -> Vec<Verdict> {
    let mut out = Vec::with_capacity(signals.len());
    for s in signals {
        out.push(s.check().await);
    }
    out
}

/// The error a critical stop ends the job with.
pub fn critical_stop(reason: &str) -> Error {
    Error::fatal(format!(
        "stopped: {reason}. The chunks in flight finished and the checkpoint is saved; rerun \
         the same command to resume once the load is down"
    ))
}
