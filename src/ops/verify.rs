//! `rowferry verify`: prove that the target holds exactly the source's rows
//! (after `--map` and `--where`). The planner's chunks are compared by
//! checksums computed in the database, in parallel and throttled like a
//! copy; a differing range is bisected down to the keys that differ, and
//! each of those is read again before it is reported, so that a row
//! written while verify ran is not a false alarm.

use super::copy::{inspect_pair, resolve_columns};
use super::watch_signals;
use crate::checkpoint::{Chunk, Ledger};
use crate::db::{self, Database, Row, Session, SessionSettings};
use crate::dialect::Dialect;
use crate::dialect::checksum::{
    Bounds, ChecksumSide, canonical_bounds_sql, checksum_sql, paired_checksum_sql,
    row_hash_by_key_sql, row_hashes_sql, split_point_sql,
};
use crate::dialect::wire::{Kind, shared_kind};
use crate::error::{Error, ErrorKind, Result};
use crate::planner::{KeysetPlanner, lock};
use crate::pool::{ChunkWork, LedgerSink, Outcome, Pipeline, describe_chunk};
use crate::progress::{Reporter, Stats};
use crate::spec::{CopySpec, RunOptions};
use crate::table::{Key, KeyValue, TableInfo};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A range this small on its larger side is diffed row by row.
const LEAF_ROWS: u64 = 256;
/// A difference must persist across this many reads to be reported.
const RECHECKS: u32 = 3;
const RECHECK_PAUSE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    MissingInTarget,
    ExtraInTarget,
    DifferentValues,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub kind: DifferenceKind,
    /// The key, as the source (or, for extra rows, the target) prints it.
    pub key: KeyValue,
}

/// What `verify` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "equal", "different" or "interrupted".
    pub status: &'static str,
    pub source_table: String,
    pub target_table: String,
    pub key: Vec<String>,
    /// Source rows compared (after --where).
    pub rows_compared: u64,
    pub chunks: u64,
    /// Ranges whose checksums differed.
    pub differing_ranges: u64,
    pub differences: Vec<Difference>,
    /// More rows differ than --max-differences: bisecting stopped there.
    pub truncated: bool,
    /// Target rows with a NULL in a (nullable) key column: extra rows
    /// that have no key to name.
    pub target_rows_with_null_key: u64,
    pub elapsed_s: f64,
    pub rows_per_sec: f64,
}

/// A key range: keys above every `lo` and up to every `hi` (a chunk
/// `(lo, hi]` has one of each, or no `lo`; no bound is open-ended). A
/// half of a bisected range keeps its parent's bounds and adds the split
/// key: where the two sides order keys otherwise (text under another
/// collation), it still holds only its parent's rows on both sides.
#[derive(Debug, Clone)]
struct Range {
    lo: Vec<KeyValue>,
    hi: Vec<KeyValue>,
    /// Rows on both sides of the range this one is a half of.
    parent_rows: Option<u64>,
}

impl Range {
    fn shape(&self) -> Bounds {
        Bounds {
            lower: self.lo.len(),
            upper: self.hi.len(),
        }
    }

    fn params(&self) -> Vec<String> {
        self.lo.iter().chain(&self.hi).flatten().cloned().collect()
    }

    /// The keys of this range (of `rows` rows on both sides) up to
    /// `mid`, and those above it.
    fn split(&self, mid: KeyValue, rows: u64) -> (Range, Range) {
        let mut below = self.clone();
        below.parent_rows = Some(rows);
        let mut above = below.clone();
        below.hi.push(mid.clone());
        above.lo.push(mid);
        (below, above)
    }
}

/// The two sides and how to read them.
struct Comparison {
    d: &'static dyn Dialect,
    /// The target's dialect (another engine's, for a cross-engine verify).
    td: &'static dyn Dialect,
    source: ChecksumSide,
    target: ChecksumSide,
    /// Where the target lives when not beside the source. Beside it, both
    /// sides are read in one statement (one snapshot).
    target_db: Option<Arc<dyn Database>>,
}

/// (count, hash sum) of each side.
type Sums = (
    (Option<String>, Option<String>),
    (Option<String>, Option<String>),
);

impl Comparison {
    /// The range `(lo, hi]` of keys as the planner read them (the
    /// source's own key text), in the form both sides are bounded with:
    /// across engines, each bound is printed again by the source in the
    /// canonical form (`\x..` bytes as hex, `1.50` as `1.5`), since the
    /// other engine would read the source's own text otherwise.
    async fn range(
        &self,
        source: &mut dyn Session,
        lo: Option<KeyValue>,
        hi: Option<KeyValue>,
    ) -> Result<Range> {
        let native = Range {
            lo: lo.iter().cloned().collect(),
            hi: hi.iter().cloned().collect(),
            parent_rows: None,
        };
        let bounds: Vec<&KeyValue> = lo.iter().chain(&hi).collect();
        if !self.source.neutral || bounds.is_empty() {
            return Ok(native);
        }
        let width = self.source.key.columns.len();
        let sql = canonical_bounds_sql(self.d, &self.source.key, bounds.len());
        let params: Vec<String> = bounds.into_iter().flatten().cloned().collect();
        let row = source.query(&sql, &params).await?.into_iter().next();
        let mut values = row.unwrap_or_default().into_iter();
        let mut next = |bounds: &[KeyValue]| -> Result<Vec<KeyValue>> {
            bounds
                .iter()
                .map(|bound| {
                    let printed: Vec<Option<String>> = values.by_ref().take(width).collect();
                    match printed.into_iter().collect::<Option<Vec<String>>>() {
                        Some(key) if key.len() == width => Ok(key),
                        _ => Err(Error::new(
                            ErrorKind::Fatal,
                            format!(
                                "the source could not print the chunk bound ({}) in the form both engines read",
                                bound.join(", ")
                            ),
                        )),
                    }
                })
                .collect()
        };
        Ok(Range {
            lo: next(&native.lo)?,
            hi: next(&native.hi)?,
            parent_rows: None,
        })
    }

    async fn sums(&self, source: &mut dyn Session, range: &Range) -> Result<Sums> {
        let d = self.d;
        let params = range.params();
        let pair = |row: Option<&Row>, at: usize| {
            let cell = |i: usize| row.and_then(|r| r.get(i).cloned().flatten());
            (cell(at), cell(at + 1))
        };
        match &self.target_db {
            None => {
                let sql = paired_checksum_sql(d, &self.source, &self.target, range.shape());
                let rows = source.query(&sql, &params).await?;
                Ok((pair(rows.first(), 0), pair(rows.first(), 2)))
            }
            Some(db) => {
                let s = source
                    .query(&checksum_sql(d, &self.source, range.shape()), &params)
                    .await?;
                let mut t_session = db.session().await?;
                let t = t_session
                    .query(&checksum_sql(self.td, &self.target, range.shape()), &params)
                    .await?;
                Ok((pair(s.first(), 0), pair(t.first(), 0)))
            }
        }
    }

    async fn on_target<T>(
        &self,
        source: &mut dyn Session,
        f: impl AsyncFnOnce(&mut dyn Session) -> Result<T>,
    ) -> Result<T> {
        match &self.target_db {
            None => f(source).await,
            Some(db) => {
                let mut s = db.session().await?;
                f(s.as_mut()).await
            }
        }
    }

    /// Key -> row hash of every row of a small range on one side.
    async fn rows(
        &self,
        session: &mut dyn Session,
        side: &ChecksumSide,
        range: &Range,
    ) -> Result<HashMap<KeyValue, Option<String>>> {
        let d = if std::ptr::eq(side, &self.target) {
            self.td
        } else {
            self.d
        };
        let sql = row_hashes_sql(d, side, range.shape());
        let width = side.key.columns.len();
        Ok(session
            .query(&sql, &range.params())
            .await?
            .into_iter()
            .map(|r| {
                let key = r[..width.min(r.len())]
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect();
                (key, r.get(width).cloned().flatten())
            })
            .collect())
    }

    /// Where to cut a range in two: `offset` rows into the larger side.
    async fn split_point(
        &self,
        source: &mut dyn Session,
        on_target: bool,
        range: &Range,
        offset: u64,
    ) -> Result<Option<KeyValue>> {
        let side = if on_target {
            &self.target
        } else {
            &self.source
        };
        let d = if on_target { self.td } else { self.d };
        let sql = split_point_sql(d, side, range.shape(), offset);
        let params = range.params();
        let rows = if on_target {
            self.on_target(source, async |s| s.query(&sql, &params).await)
                .await?
        } else {
            source.query(&sql, &params).await?
        };
        Ok(rows
            .into_iter()
            .next()
            .map(|r| r.into_iter().map(Option::unwrap_or_default).collect()))
    }

    /// Target rows whose key has a NULL (a nullable unique key allows
    /// them): no key range reaches them, and the source has none.
    async fn null_key_rows(&self, source: &mut dyn Session) -> Result<u64> {
        let nullable: Vec<String> = self
            .target
            .key
            .columns
            .iter()
            .filter(|c| c.nullable)
            .map(|c| format!("{} IS NULL", self.td.quote_ident(&c.name)))
            .collect();
        if nullable.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            self.td.text("COUNT(*)"),
            self.target.table,
            nullable.join(" OR ")
        );
        let rows = self
            .on_target(source, async |s| s.query(&sql, &[]).await)
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// One key's row hash on each side, read again.
    async fn recheck(&self, source: &mut dyn Session, key: &KeyValue) -> Result<bool> {
        let (s, t) = self.hashes(source, key).await?;
        Ok(s != t)
    }

    /// One key's row hash on each side (None: no such row), read by the
    /// key itself rather than by a range.
    async fn hashes(
        &self,
        source: &mut dyn Session,
        key: &KeyValue,
    ) -> Result<(Option<String>, Option<String>)> {
        let d = self.d;
        let one = |rows: Vec<Row>| {
            rows.into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten())
        };
        match &self.target_db {
            None => {
                let sql = format!(
                    "SELECT ({}), ({})",
                    row_hash_by_key_sql(d, &self.source),
                    row_hash_by_key_sql(d, &self.target)
                );
                let rows = source.query(&sql, key).await?;
                let row = rows.into_iter().next().unwrap_or_default();
                Ok((
                    row.first().cloned().flatten(),
                    row.get(1).cloned().flatten(),
                ))
            }
            Some(_) => {
                let s = one(source
                    .query(&row_hash_by_key_sql(d, &self.source), key)
                    .await?);
                let sql = row_hash_by_key_sql(self.td, &self.target);
                let t = one(self
                    .on_target(source, async |t| t.query(&sql, key).await)
                    .await?);
                Ok((s, t))
            }
        }
    }
}

/// Each chunk: compare both sides' checksums; remember the ranges that differ.
struct VerifyWork {
    comparison: Arc<Comparison>,
    differing: Mutex<Vec<Range>>,
}

#[async_trait]
impl ChunkWork for VerifyWork {
    async fn run(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<u64> {
        let range = self
            .comparison
            .range(session, chunk.lo.clone(), Some(chunk.hi.clone()))
            .await?;
        let (s, t) = self.comparison.sums(session, &range).await?;
        if s != t {
            lock(&self.differing).push(range);
        }
        Ok(s.0.and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    fn explain(&self, chunk: &Chunk, error: Error) -> Error {
        error.context(format!("verifying {}", describe_chunk(chunk)))
    }
}

/// Verify keeps no checkpoint: it writes nothing, and a rerun starts over.
struct NoCheckpoint;

impl LedgerSink for NoCheckpoint {
    fn save(&mut self, _ledger: &Ledger) -> Result<()> {
        Ok(())
    }
}

pub async fn run(spec: &CopySpec, opts: &RunOptions, max_differences: u64) -> Result<()> {
    let settings = SessionSettings {
        pool_size: opts.workers + 2,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        idle_in_transaction_timeout: None,
    };
    let db: Arc<dyn Database> = Arc::from(db::connect(&spec.source, &settings).await?);
    let target_db: Option<Arc<dyn Database>> = match &spec.target {
        Some(t) if t.identity() != spec.source.identity() => {
            Some(Arc::from(db::connect(t, &settings).await?))
        }
        _ => None,
    };
    let d = db.dialect();
    let mut session = db.session().await?;
    let td = target_db.as_ref().map_or(d, |t| t.dialect());
    let (source, target, key) = match &target_db {
        Some(t) if cross_engine(spec) => {
            // Another engine: each side is read with its own dialect.
            let source = super::inspect(session.as_mut(), d, &spec.table, "--table").await?;
            let key = Key::resolve(&source, spec.key.as_deref())?;
            let mut ts = t.session().await?;
            let target =
                super::inspect(ts.as_mut(), td, &spec.target_table, "--target-table").await?;
            (source, target, key)
        }
        Some(t) => {
            let mut ts = t.session().await?;
            inspect_pair(d, session.as_mut(), Some(ts.as_mut()), spec).await?
        }
        None => inspect_pair(d, session.as_mut(), None, spec).await?,
    };
    let comparison = Arc::new(comparison(d, td, &source, &target, &key, spec, target_db)?);
    let started = Instant::now();

    let signals = crate::supervisor::Prepared::check(opts, &db).await?;
    let stop = CancellationToken::new();
    watch_signals(stop.clone());
    let stats = Arc::new(Stats::default());
    let throttle = Arc::new(crate::throttle::Throttle::new(
        opts.max_rows_per_sec,
        opts.pause_file.clone(),
    ));
    let sizer = Arc::new(Mutex::new(opts.chunk_sizer(source.estimated_row_bytes)));
    let planner = Arc::new(KeysetPlanner::new(
        d,
        comparison.source.table.clone(),
        key.clone(),
    ));
    let upper = planner.upper_bound(session.as_mut()).await?;
    eprintln!(
        "rowferry: verify {} -> {}: key ({}), ~{} rows (catalog estimate), {} workers",
        source.display_name(),
        target.display_name(),
        key.names().join(", "),
        source.estimated_rows,
        opts.workers
    );
    let work = Arc::new(VerifyWork {
        comparison: comparison.clone(),
        differing: Mutex::new(Vec::new()),
    });
    let reporter = Reporter::new(
        opts.progress,
        "verify",
        stats.clone(),
        throttle.clone(),
        source.estimated_rows,
    );
    let reporting_done = CancellationToken::new();
    let reporting = tokio::spawn(reporter.run(reporting_done.clone()));
    let mut supervisor = crate::supervisor::Supervisor::start(
        opts,
        signals,
        crate::supervisor::Pipeline {
            phase: "verify",
            throttle: &throttle,
            sizer: &sizer,
            stats: &stats,
            stop: &stop,
            total_estimate: source.estimated_rows,
        },
        serde_json::json!({
            "operation": "verify",
            "table": source.display_name(),
            "target_table": target.display_name(),
        }),
        serde_json::json!({ "rows_total_estimate": source.estimated_rows }),
    )
    .await?;
    let pipeline = Pipeline {
        db: db.clone(),
        planner,
        work: work.clone(),
        ledger: Arc::new(Mutex::new(Ledger::new(upper.clone()))),
        sizer,
        throttle,
        stats: stats.clone(),
        workers: opts.workers,
        max_retries: opts.max_retries,
        stop: stop.clone(),
        crash_after_chunks: None,
    };
    let outcome = pipeline.run(&mut NoCheckpoint).await;
    reporting_done.cancel();
    let _ = reporting.await;
    let critical = supervisor.stop_watching().await;
    let mut report = Report {
        status: "equal",
        source_table: source.display_name(),
        target_table: target.display_name(),
        key: key.names(),
        rows_compared: stats.rows_done.load(Ordering::Relaxed),
        chunks: stats.chunks_done.load(Ordering::Relaxed),
        differing_ranges: 0,
        differences: Vec::new(),
        truncated: false,
        target_rows_with_null_key: 0,
        elapsed_s: 0.0,
        rows_per_sec: 0.0,
    };
    let result: Result<()> = async {
        match outcome {
            Outcome::Done => {}
            Outcome::Interrupted if critical.is_some() => {
                report.status = "interrupted";
                finish(&mut report, started, opts.json);
                return Err(crate::signals::critical_stop(
                    critical.as_deref().unwrap_or_default(),
                ));
            }
            Outcome::Interrupted => {
                report.status = "interrupted";
                finish(&mut report, started, opts.json);
                return Err(interrupted());
            }
            Outcome::Failed(e) => return Err(e),
        }

        // Rows past the largest key at the start (written since), and the
        // target's rows beyond the source's range.
        let mut differing = std::mem::take(&mut *lock(&work.differing));
        let tail = comparison.range(session.as_mut(), upper, None).await?;
        let (s, t) = comparison.sums(session.as_mut(), &tail).await?;
        if s != t {
            differing.push(tail);
        }
        report.differing_ranges = differing.len() as u64;
        report.target_rows_with_null_key = comparison.null_key_rows(session.as_mut()).await?;
        let found = bisect(
            &comparison,
            session.as_mut(),
            differing,
            max_differences,
            &stop,
        )
        .await?;
        report.truncated = found.truncated;
        // Differences must hold when read again: a row written while verify
        // ran is compared as it is now.
        let mut differences = found.differences;
        for _ in 0..RECHECKS {
            if differences.is_empty() {
                break;
            }
            if stop.is_cancelled() {
                return Err(interrupted());
            }
            tokio::time::sleep(RECHECK_PAUSE).await;
            let mut still = Vec::new();
            for diff in differences {
                if comparison.recheck(session.as_mut(), &diff.key).await? {
                    still.push(diff);
                }
            }
            differences = still;
        }
        report.differences = differences;
        if !report.differences.is_empty()
            || report.truncated
            || report.target_rows_with_null_key > 0
        {
            report.status = "different";
        }
        finish(&mut report, started, opts.json);
        if report.status == "different" {
            return Err(Error::new(
                ErrorKind::Differences,
                format!(
                    "verify found differences between {} and {}{} (exit 3)",
                    report.source_table,
                    report.target_table,
                    if report.truncated {
                        format!("; listing stopped at --max-differences {max_differences}")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        Ok(())
    }
    .await;
    let status = match &result {
        Ok(()) => "equal",
        Err(e) if e.kind == ErrorKind::Differences => "different",
        Err(e) if e.kind == ErrorKind::Interrupted => "interrupted",
        Err(_) => "failed",
    };
    supervisor
        .finish(status, result.as_ref().err().map(|e| e.message.as_str()))
        .await;
    result
}

/// The two checksum sides: the copy's resolved columns, source
/// expressions converted to the target column's type as the INSERT would.
/// The target is another engine than the source.
fn cross_engine(spec: &CopySpec) -> bool {
    spec.target
        .as_ref()
        .is_some_and(|t| t.engine != spec.source.engine)
}

fn comparison(
    d: &'static dyn Dialect,
    td: &'static dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    key: &Key,
    spec: &CopySpec,
    target_db: Option<Arc<dyn Database>>,
) -> Result<Comparison> {
    let neutral = cross_engine(spec);
    let resolved = resolve_columns(d, source, target, &spec.maps, key)?;
    let mut source_values = Vec::new();
    let mut target_values = Vec::new();
    let mut json_as_text = Vec::new();
    for (name, expr) in &resolved.columns {
        let Some(column) = target.column(name) else {
            continue;
        };
        if neutral {
            // Each engine prints the value in a form both print alike for
            // equal values (a mapped expression travels as the target's
            // kind): decimals trimmed, doubles as bits; where the kinds
            // differ (a number into text), as the copy sends it.
            let source_kind = match source.column(name) {
                Some(s) if *expr == d.quote_ident(name) => d.wire().kind(s),
                _ => td.wire().kind(column),
            };
            let target_kind = td.wire().kind(column);
            let target_expr = td.quote_ident(name);
            match shared_kind(source_kind, target_kind) {
                Some(kind) => {
                    source_values.push(d.wire().canonical(expr, kind));
                    target_values.push(td.wire().canonical(&target_expr, kind));
                }
                None => {
                    source_values.push(d.wire().wire_out(expr, source_kind, true));
                    target_values.push(td.wire().wire_out(&target_expr, target_kind, true));
                }
            }
            if source_kind == Kind::Json || target_kind == Kind::Json {
                json_as_text.push(name.clone());
            }
            continue;
        }
        let unchanged = source
            .column(name)
            .is_some_and(|s| s.data_type == column.data_type && *expr == d.quote_ident(name));
        source_values.push(d.canonical_value(expr, column, !unchanged));
        target_values.push(d.canonical_value(&d.quote_ident(name), column, false));
    }
    let target_key = Key {
        columns: resolved
            .key_target_columns
            .iter()
            .filter_map(|name| target.column(name).cloned())
            .collect(),
    };
    // Keys are matched by their text: the target's is printed as the
    // source's type prints it where the types differ (bigint vs numeric);
    // across engines both print the canonical form the bounds travel in.
    let source_key_text = key
        .columns
        .iter()
        .map(|c| {
            if neutral {
                canonical_key_text(d, c)
            } else {
                Ok(d.key_text(c))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let target_key_text = target_key
        .columns
        .iter()
        .zip(&key.columns)
        .map(|(t, s)| {
            if neutral {
                canonical_key_text(td, t)
            } else if t.data_type == s.data_type {
                Ok(td.key_text(t))
            } else {
                Ok(td.key_text_as(t, s))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if !json_as_text.is_empty() {
        eprintln!(
            "rowferry: note: json column(s) {} are compared as text: a document the other \
             engine prints otherwise (PostgreSQL jsonb reorders keys and respaces; MariaDB's JSON \
             and PostgreSQL's json keep the text as written) shows as a difference",
            json_as_text.join(", ")
        );
    }
    let ordered_apart: Vec<&str> = key
        .columns
        .iter()
        .zip(&target_key.columns)
        .filter(|(s, t)| {
            let kinds = [d.wire().kind(s), td.wire().kind(t)];
            neutral && kinds.iter().any(|k| matches!(k, Kind::Text | Kind::Uuid))
        })
        .map(|(s, _)| s.name.as_str())
        .collect();
    if !ordered_apart.is_empty() {
        eprintln!(
            "rowferry: note: key column(s) {} are text (or uuid) on two engines, each ordering them \
             by its own collation: where the orders differ, chunks hold other rows on each side \
             and those rows are compared key by key (exact, but slower)",
            ordered_apart.join(", ")
        );
    }
    Ok(Comparison {
        d,
        td,
        source: ChecksumSide {
            table: d.qualified(&source.schema, &source.name),
            key: key.clone(),
            key_text: source_key_text,
            values: source_values,
            where_sql: spec.where_sql.clone(),
            neutral,
        },
        target: ChecksumSide {
            table: td.qualified(&target.schema, &target.name),
            key: target_key,
            key_text: target_key_text,
            values: target_values,
            where_sql: None,
            neutral,
        },
        target_db,
    })
}

/// A key column in the canonical form of a cross-engine verify. A
/// floating-point key has none both engines read back exactly, so it
/// cannot bound chunks on both sides alike.
fn canonical_key_text(d: &dyn Dialect, column: &crate::table::Column) -> Result<String> {
    let kind = d.wire().kind(column);
    if kind == Kind::Float {
        return Err(Error::input(format!(
            "verify across engines cannot bound its chunks by the floating-point key column {} \
             (the engines print doubles differently); name another unique key with --key",
            column.name
        )));
    }
    Ok(d.wire().canonical_key(&d.quote_ident(&column.name), kind))
}

fn interrupted() -> Error {
    Error::new(
        ErrorKind::Interrupted,
        "verify interrupted before it compared every chunk; rerun it to start over",
    )
}

struct Found {
    differences: Vec<Difference>,
    truncated: bool,
}

/// Narrow each differing range: halve it (at the larger side's middle
/// key) until it is small, then compare its rows one by one.
async fn bisect(
    c: &Comparison,
    session: &mut dyn Session,
    mut ranges: Vec<Range>,
    max: u64,
    stop: &CancellationToken,
) -> Result<Found> {
    let mut differences = Vec::new();
    let mut reported: HashSet<KeyValue> = HashSet::new();
    let count = |v: &Option<String>| {
        v.as_deref()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    while let Some(range) = ranges.pop() {
        if stop.is_cancelled() {
            return Err(interrupted());
        }
        if differences.len() as u64 >= max {
            return Ok(Found {
                differences,
                truncated: true,
            });
        }
        let (s, t) = c.sums(session, &range).await?;
        if s == t {
            continue; // equal now: the difference was a write in flight
        }
        let (ns, nt) = (count(&s.0), count(&t.0));
        let larger = ns.max(nt);
        // Each half holds fewer rows than its parent, counted on both
        // sides, as long as each side's ORDER BY agrees with its own
        // comparisons; where it does not (a MySQL ENUM orders by its
        // index), a half no smaller is compared row by row.
        let shrinking = range.parent_rows.is_none_or(|rows| ns + nt < rows);
        if larger > LEAF_ROWS && shrinking {
            let on_target = nt > ns;
            if let Some(mid) = c
                .split_point(session, on_target, &range, larger / 2)
                .await?
            {
                let (below, above) = range.split(mid, ns + nt);
                ranges.push(above);
                ranges.push(below);
                continue;
            }
        }
        let source_rows = c.rows(session, &c.source, &range).await?;
        let target_rows = c
            .on_target(session, async |t| c.rows(t, &c.target, &range).await)
            .await?;
        let mut found: Vec<Difference> = Vec::new();
        for (key, hash) in &source_rows {
            match target_rows.get(key) {
                None => found.push(Difference {
                    kind: DifferenceKind::MissingInTarget,
                    key: key.clone(),
                }),
                Some(h) if h != hash => found.push(Difference {
                    kind: DifferenceKind::DifferentValues,
                    key: key.clone(),
                }),
                Some(_) => {}
            }
        }
        for key in target_rows.keys().filter(|k| !source_rows.contains_key(*k)) {
            found.push(Difference {
                kind: DifferenceKind::ExtraInTarget,
                key: key.clone(),
            });
        }
        // A row on one side only of this range may be in the other side's
        // range elsewhere, where the sides order keys otherwise (text
        // under two collations): look it up by its key.
        let mut confirmed = Vec::with_capacity(found.len());
        for diff in found {
            if diff.kind == DifferenceKind::DifferentValues {
                confirmed.push(diff);
                continue;
            }
            let kind = match c.hashes(session, &diff.key).await? {
                (Some(_), None) => DifferenceKind::MissingInTarget,
                (None, Some(_)) => DifferenceKind::ExtraInTarget,
                (Some(s), Some(t)) if s != t => DifferenceKind::DifferentValues,
                // Equal, or gone from both: nothing to report.
                _ => continue,
            };
            confirmed.push(Difference {
                kind,
                key: diff.key,
            });
        }
        // A key is reported once, however many ranges held it.
        let mut found: Vec<Difference> = confirmed
            .into_iter()
            .filter(|diff| reported.insert(diff.key.clone()))
            .collect();
        // A stable order for the report (by kind, then as the server
        // printed the key: only for display, never to bound a range).
        found.sort_by(|a, b| (a.kind as u8, &a.key).cmp(&(b.kind as u8, &b.key)));
        differences.extend(found);
    }
    let truncated = differences.len() as u64 > max;
    differences.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok(Found {
        differences,
        truncated,
    })
}

fn finish(report: &mut Report, started: Instant, json: bool) {
    let elapsed = started.elapsed().as_secs_f64();
    report.elapsed_s = (elapsed * 1000.0).round() / 1000.0;
    report.rows_per_sec = if elapsed > 0.0 {
        (report.rows_compared as f64 / elapsed).round()
    } else {
        0.0
    };
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    let verdict = match report.status {
        "equal" => "equal".to_string(),
        "different" => format!(
            "{}{} difference(s) in {} differing range(s)",
            report.differences.len() as u64 + report.target_rows_with_null_key,
            if report.truncated { "+" } else { "" },
            report.differing_ranges
        ),
        other => other.to_string(),
    };
    println!(
        "verify {} -> {}: {verdict}; {} source rows in {} chunks compared in {:.1}s ({:.0} rows/s)",
        report.source_table,
        report.target_table,
        report.rows_compared,
        report.chunks,
        report.elapsed_s,
        report.rows_per_sec
    );
    if report.target_rows_with_null_key > 0 {
        println!(
            "  extra in target: {} row(s) whose key ({}) is NULL",
            report.target_rows_with_null_key,
            report.key.join(", ")
        );
    }
    for diff in &report.differences {
        let what = match diff.kind {
            DifferenceKind::MissingInTarget => "missing in target",
            DifferenceKind::ExtraInTarget => "extra in target",
            DifferenceKind::DifferentValues => "different values",
        };
        println!("  {what}: key ({})", diff.key.join(", "));
    }
}
