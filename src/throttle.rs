//! The throttle: decides when the next chunk may start. Workers ask it
//! before every chunk; it holds them while the operator paused the job,
//! the pause file exists, a background signal (replica lag, load, the
//! throttle query: see `signals.rs`) says so, or the rate limit needs
//! time, and it reports why. Nothing here queries a database: workers
//! only read flags.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Limiter = Arc<(DefaultDirectRateLimiter, NonZeroU32)>;

pub struct Throttle {
    limiter: Mutex<Option<Limiter>>,
    pause_file: Option<PathBuf>,
    /// Paused by the operator (control socket).
    paused: AtomicBool,
    /// Set by the background signals: why chunks must wait, if they must.
    held: watch::Sender<Option<String>>,
    /// Workers with an index at or above this wait (control socket
    /// `workers N`); the pool's size is the bound.
    active_workers: AtomicUsize,
    reason: Mutex<Option<String>>,
}

const POLL: Duration = Duration::from_millis(100);

fn limiter(rate: NonZeroU32) -> Limiter {
    // Burst of one second's worth: a chunk never exceeds it (chunks are
    // capped to the rate), so a chunk's rows can always be paid at once.
    let limiter = RateLimiter::direct(Quota::per_second(rate));
    // Start with the bucket empty: otherwise the first second's burst
    // comes on top of the rate and a short job runs faster than the
    // operator allowed.
    let _ = limiter.check_n(rate);
    Arc::new((limiter, rate))
}

impl Throttle {
    pub fn new(max_rows_per_sec: Option<NonZeroU32>, pause_file: Option<PathBuf>) -> Self {
        Throttle {
            limiter: Mutex::new(max_rows_per_sec.map(limiter)),
            pause_file,
            paused: AtomicBool::new(false),
            held: watch::channel(None).0,
            active_workers: AtomicUsize::new(usize::MAX),
            reason: Mutex::new(None),
        }
    }

    /// Why workers are held back right now, if they are.
    pub fn reason(&self) -> Option<String> {
        crate::planner::lock(&self.reason).clone()
    }

    fn set_reason(&self, reason: Option<&str>) {
        *crate::planner::lock(&self.reason) = reason.map(String::from);
    }

    /// The background signals' verdict: `Some(reason)` holds every chunk
    /// not yet started, `None` releases them.
    pub fn hold(&self, reason: Option<String>) {
        self.held.send_if_modified(|held| {
            let changed = *held != reason;
            *held = reason;
            changed
        });
    }

    /// What the signals hold chunks for now.
    pub fn held(&self) -> Option<String> {
        self.held.borrow().clone()
    }

    /// Why every chunk waits now, if it does (not counting the rate
    /// limit, which only spaces chunks out).
    pub fn holding(&self) -> Option<String> {
        if self.paused() {
            Some("paused by the operator".to_string())
        } else if self.pause_file.as_ref().is_some_and(|f| f.exists()) {
            Some("pause-file".to_string())
        } else {
            self.held()
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// A new rate limit (None: unlimited), from the next chunk on.
    pub fn set_rate(&self, rate: Option<NonZeroU32>) {
        *crate::planner::lock(&self.limiter) = rate.map(limiter);
    }

    pub fn rate(&self) -> Option<NonZeroU32> {
        crate::planner::lock(&self.limiter).as_ref().map(|l| l.1)
    }

    /// Let only workers 0..n take chunks (the others finish the chunk in
    /// hand and wait).
    pub fn set_active_workers(&self, n: usize) {
        self.active_workers.store(n.max(1), Ordering::Relaxed);
    }

    /// Whether worker `worker` is within the number of workers the
    /// operator allows (asked before it takes a chunk, so no chunk waits
    /// in the hands of an idle worker).
    pub fn may_work(&self, worker: usize) -> bool {
        worker < self.active_workers.load(Ordering::Relaxed)
    }

    /// Wait until a chunk of `rows` rows may start. Returns false if the
    /// job is stopping (then the chunk must not start).
    pub async fn admit(&self, rows: u64, stop: &CancellationToken) -> bool {
        while let Some(reason) = self.holding() {
            self.set_reason(Some(&reason));
            let mut held = self.held.subscribe();
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(POLL) => {}
                _ = held.changed() => {}
            }
        }
        let limiter = crate::planner::lock(&self.limiter).clone();
        if let Some(l) = limiter {
            let (limiter, rate) = (&l.0, l.1);
            let cells = NonZeroU32::new(rows.clamp(1, u64::from(rate.get())) as u32)
                .unwrap_or(NonZeroU32::MIN);
            if limiter.check_n(cells).map(|r| r.is_err()).unwrap_or(false) {
                self.set_reason(Some("rate-limit"));
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = limiter.until_n_ready(cells) => {}
                }
            }
        }
        self.set_reason(None);
        !stop.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pause_file_holds_until_removed_and_says_why() {
        let path = std::env::temp_dir().join(format!("rowferry-pause-{}", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let throttle = std::sync::Arc::new(Throttle::new(None, Some(path.clone())));
        let stop = CancellationToken::new();
        let t = throttle.clone();
        let s = stop.clone();
        let waiter = tokio::spawn(async move { t.admit(10, &s).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished());
        assert_eq!(throttle.reason().as_deref(), Some("pause-file"));
        std::fs::remove_file(&path).unwrap();
        assert!(waiter.await.unwrap());
        assert_eq!(throttle.reason(), None);
    }

    #[tokio::test]
    async fn stop_releases_a_paused_worker_without_admitting() {
        let path = std::env::temp_dir().join(format!("rowferry-pause2-{}", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let throttle = Throttle::new(None, Some(path.clone()));
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!throttle.admit(10, &stop).await);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn rate_limit_holds_chunks_from_the_start_and_says_why() {
        let throttle = std::sync::Arc::new(Throttle::new(NonZeroU32::new(100), None));
        let stop = CancellationToken::new();
        // No initial burst: 100 rows at 100 rows/s wait about a second.
        let t = throttle.clone();
        let s = stop.clone();
        let waiter = tokio::spawn(async move { t.admit(100, &s).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished());
        assert_eq!(throttle.reason().as_deref(), Some("rate-limit"));
        assert!(waiter.await.unwrap());
        assert_eq!(throttle.reason(), None);
    }

    #[tokio::test]
    async fn a_signal_holds_until_released_and_names_itself() {
        let throttle = std::sync::Arc::new(Throttle::new(None, None));
        throttle.hold(Some("replica lag 3.2s on db2:5432".into()));
        let stop = CancellationToken::new();
        let (t, s) = (throttle.clone(), stop.clone());
        let waiter = tokio::spawn(async move { t.admit(10, &s).await });
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!waiter.is_finished());
        assert_eq!(
            throttle.reason().as_deref(),
            Some("replica lag 3.2s on db2:5432")
        );
        throttle.hold(None);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn operator_pause_and_worker_count_hold_chunks() {
        let throttle = std::sync::Arc::new(Throttle::new(None, None));
        let stop = CancellationToken::new();
        throttle.set_paused(true);
        let (t, s) = (throttle.clone(), stop.clone());
        let paused = tokio::spawn(async move { t.admit(10, &s).await });
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!paused.is_finished());
        assert_eq!(throttle.reason().as_deref(), Some("paused by the operator"));
        throttle.set_paused(false);
        assert!(paused.await.unwrap());

        throttle.set_active_workers(1);
        assert!(throttle.may_work(0), "worker 0 still runs");
        assert!(!throttle.may_work(1), "worker 1 waits");
        throttle.set_active_workers(2);
        assert!(throttle.may_work(1));
    }
}
