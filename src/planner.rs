//! The planner: walks the key in order and cuts chunks `(lo, hi]`, each
//! bound found by the server's index (`ORDER BY key LIMIT 1 OFFSET n`), and
//! sizes them so that one chunk takes about `--chunk-time`.

use crate::checkpoint::Ledger;
use crate::db::Session;
use crate::dialect::{self, Dialect};
use crate::error::Result;
use crate::table::{Key, KeyValue};
use std::collections::VecDeque;
use std::time::Duration;

/// Finds chunk bounds for one table and key.
pub struct KeysetPlanner {
    table_sql: String,
    key: Key,
    dialect: &'static dyn Dialect,
}

impl KeysetPlanner {
    pub fn new(dialect: &'static dyn Dialect, table_sql: String, key: Key) -> Self {
        KeysetPlanner {
            table_sql,
            key,
            dialect,
        }
    }

    /// The largest key now: the job's range ends here (rows inserted later
    /// are the triggers' or the application's). None for an empty table.
    pub async fn upper_bound(&self, session: &mut dyn Session) -> Result<Option<KeyValue>> {
        let sql = dialect::max_key_sql(self.dialect, &self.table_sql, &self.key);
        session
            .query(&sql, &[])
            .await?
            .into_iter()
            .next()
            .map(key_of)
            .transpose()
    }

    /// Where the next chunk of `rows` rows after `lo` ends, never past
    /// `upper`. The server answers everything: Rust never compares keys.
    pub async fn next_bound(
        &self,
        session: &mut dyn Session,
        lo: Option<&KeyValue>,
        upper: &KeyValue,
        rows: u64,
    ) -> Result<Bound> {
        let (sql, params) = self.probe(lo, upper, rows);
        let mut keys = session.query(&sql, &params).await?.into_iter().map(key_of);
        Ok(match (keys.next().transpose()?, keys.next().is_some()) {
            (Some(hi), true) => Bound::More(hi),
            // The n-th row is the last one of the range.
            (Some(hi), false) => Bound::Last(hi),
            // Fewer than n rows are left: the chunk runs to `upper`.
            (None, _) => Bound::Last(upper.clone()),
        })
    }

    /// The probe statement and its parameters (shown by `rowferry plan`).
    pub fn probe(
        &self,
        lo: Option<&KeyValue>,
        upper: &KeyValue,
        rows: u64,
    ) -> (String, Vec<String>) {
        let sql = dialect::boundary_probe_sql(
            self.dialect,
            &self.table_sql,
            &self.key,
            lo.is_some(),
            rows.max(1),
        );
        let params = lo.into_iter().flatten().chain(upper).cloned().collect();
        (sql, params)
    }

    /// Plan the next chunk into the ledger, or None when the range is done.
    pub async fn plan_next(
        &self,
        session: &mut dyn Session,
        ledger: &std::sync::Mutex<Ledger>,
        rows: u64,
    ) -> Result<Option<crate::checkpoint::Chunk>> {
        let (lo, upper) = {
            let l = lock(ledger);
            match (&l.upper_bound, l.planning_finished) {
                (Some(upper), false) => (l.frontier(), upper.clone()),
                _ => return Ok(None),
            }
        };
        let bound = self.next_bound(session, lo.as_ref(), &upper, rows).await?;
        let mut l = lock(ledger);
        let chunk = match bound {
            Bound::More(hi) => l.issue(hi, rows),
            Bound::Last(hi) => {
                l.planning_finished = true;
                l.issue(hi, rows)
            }
        };
        Ok(Some(chunk))
    }
}

/// The end of the next chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// More rows follow in the job's range.
    More(KeyValue),
    /// This chunk finishes the range.
    Last(KeyValue),
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn key_of(row: crate::db::Row) -> Result<KeyValue> {
    row.into_iter()
        .map(|v| {
            v.ok_or_else(|| crate::error::Error::fatal("internal: a key column returned NULL"))
        })
        .collect()
}

/// Adaptive chunk size: aims one chunk at `target` time, judged on the p90
/// of recent chunks' time per row; grows at most 50% a step; shrinks at
/// once; capped in rows and in bytes. A zero target keeps the size fixed.
#[derive(Debug, Clone)]
pub struct ChunkSizer {
    current: u64,
    target: Duration,
    max_rows: u64,
    /// The cap from rows and bytes, before the rate's.
    base_max_rows: u64,
    recent: VecDeque<f64>,
}

const MIN_CHUNK_ROWS: u64 = 10;
const SAMPLES: usize = 16;

impl ChunkSizer {
    /// `max_bytes / row_bytes` caps chunks of wide rows.
    pub fn new(
        first: u64,
        target: Duration,
        max_rows: u64,
        max_bytes: u64,
        row_bytes: u64,
    ) -> Self {
        // The caps hold in fixed mode too; the floor never lifts a chunk
        // above them (a rate of 5 rows/s means chunks of 5 rows).
        let max_rows = max_rows.min(max_bytes / row_bytes.max(1)).max(1);
        let current = if target.is_zero() {
            first.clamp(1, max_rows)
        } else {
            first.clamp(MIN_CHUNK_ROWS.min(max_rows), max_rows)
        };
        ChunkSizer {
            current,
            target,
            max_rows,
            base_max_rows: max_rows,
            recent: VecDeque::new(),
        }
    }

    /// Cap chunks to one second's worth at `rate` rows/s (None: no rate):
    /// the throttle admits a chunk in one go.
    pub fn set_rate_cap(&mut self, rate: Option<u64>) {
        self.max_rows = rate.map_or(self.base_max_rows, |r| self.base_max_rows.min(r.max(1)));
        self.current = self.current.min(self.max_rows);
    }

    /// A new target time per chunk (0: fixed size from now on).
    pub fn set_target(&mut self, target: Duration) {
        self.target = target;
        self.recent.clear();
    }

    pub fn target(&self) -> Duration {
        self.target
    }

    pub fn rows(&self) -> u64 {
        self.current
    }

    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }

    pub fn record(&mut self, rows: u64, elapsed: Duration) {
        if self.target.is_zero() || rows == 0 {
            return;
        }
        if self.recent.len() == SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(elapsed.as_secs_f64() / rows as f64);
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let p90 = sorted[((sorted.len() - 1) as f64 * 0.9).round() as usize];
        let ideal = if p90 > 0.0 {
            self.target.as_secs_f64() / p90
        } else {
            f64::MAX
        };
        let grown = self.current as f64 * 1.5;
        let next = ideal
            .min(grown)
            .min(self.max_rows as f64)
            .max(MIN_CHUNK_ROWS.min(self.max_rows) as f64);
        self.current = next as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    #[test]
    fn fixed_size_when_target_is_zero() {
        let mut s = ChunkSizer::new(7, Duration::ZERO, 100_000, MIB16, 100);
        s.record(7, Duration::from_secs(5));
        assert_eq!(s.rows(), 7);
    }

    #[test]
    fn fixed_size_still_obeys_the_row_byte_and_rate_caps() {
        // --chunk-time 0 --chunk-rows 50000 with a 1000 rows/s rate cap.
        assert_eq!(
            ChunkSizer::new(50_000, Duration::ZERO, 1000, MIB16, 100).rows(),
            1000
        );
        // 16 MiB of 1 MiB rows.
        assert_eq!(
            ChunkSizer::new(50_000, Duration::ZERO, 100_000, MIB16, 1 << 20).rows(),
            16
        );
        // A rate below the adaptive floor.
        let mut s = ChunkSizer::new(1000, Duration::from_millis(500), 5, MIB16, 100);
        assert_eq!(s.rows(), 5);
        s.record(5, Duration::from_secs(10));
        assert_eq!(s.rows(), 5);
    }

    #[test]
    fn grows_at_most_half_a_step_toward_target() {
        let mut s = ChunkSizer::new(1000, Duration::from_millis(500), 1_000_000, u64::MAX, 1);
        // 1000 rows in 10 ms: ideal is 50k rows, but growth is capped.
        s.record(1000, Duration::from_millis(10));
        assert_eq!(s.rows(), 1500);
        s.record(1500, Duration::from_millis(15));
        assert_eq!(s.rows(), 2250);
    }

    #[test]
    fn shrinks_on_the_p90_of_recent_chunks() {
        let mut s = ChunkSizer::new(10_000, Duration::from_millis(500), 1_000_000, u64::MAX, 1);
        // Mostly fast, one slow outlier among few samples: p90 sees it.
        s.record(10_000, Duration::from_millis(100));
        s.record(10_000, Duration::from_millis(2000));
        assert_eq!(s.rows(), 2500);
    }

    #[test]
    fn capped_in_rows_and_bytes() {
        let mut s = ChunkSizer::new(1000, Duration::from_millis(500), 5000, u64::MAX, 1);
        for _ in 0..20 {
            let rows = s.rows();
            s.record(rows, Duration::from_millis(1));
        }
        assert_eq!(s.rows(), 5000);
        // 16 MiB cap at 1 MiB a row: 16 rows.
        let s = ChunkSizer::new(1000, Duration::from_millis(500), 100_000, MIB16, 1 << 20);
        assert_eq!(s.max_rows(), 16);
        assert_eq!(s.rows(), 16);
    }
}
