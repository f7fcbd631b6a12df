//! The throttle: decides when the next chunk may start. Workers ask it
//! before every chunk; it waits out the pause file and the rate limit and
//! reports why it is holding them back.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Throttle {
    limiter: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    pause_file: Option<PathBuf>,
    reason: Mutex<Option<String>>,
}

const PAUSE_POLL: Duration = Duration::from_millis(200);

impl Throttle {
    pub fn new(max_rows_per_sec: Option<NonZeroU32>, pause_file: Option<PathBuf>) -> Self {
        // Burst of one second's worth: a chunk never exceeds it (chunks are
        // capped to the rate), so a chunk's rows can always be paid at once.
        let limiter = max_rows_per_sec.map(|rate| {
            let limiter = RateLimiter::direct(Quota::per_second(rate));
            // Start with the bucket empty: otherwise the first second's
            // burst comes on top of the rate and a short job runs faster
            // than the operator allowed.
            let _ = limiter.check_n(rate);
            (limiter, rate)
        });
        Throttle {
            limiter,
            pause_file,
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

    /// Wait until a chunk of `rows` rows may start. Returns false if the job
    /// is stopping (then the chunk must not start).
    pub async fn admit(&self, rows: u64, stop: &CancellationToken) -> bool {
        if let Some(file) = &self.pause_file {
            while file.exists() {
                self.set_reason(Some("pause-file"));
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep(PAUSE_POLL) => {}
                }
            }
        }
        if let Some((limiter, rate)) = &self.limiter {
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
}
