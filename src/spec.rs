//! What the operator asked for, validated: the job spec and the run
//! options. Building one writes nothing and touches no server.

use crate::error::{Error, Result};
use crate::planner::ChunkSizer;
use crate::progress::ProgressMode;
use crate::table::TableName;
use crate::url::DbUrl;
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// `--map COL=EXPR`: a target column and the source SQL that fills it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnMap {
    pub column: String,
    pub expr: String,
}

impl ColumnMap {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::input(format!(
                "--map `{text}` is not COLUMN=EXPRESSION; for example --map full_name=\"first || ' ' || last\""
            ))
        };
        let (column, expr) = if let Some(rest) = text.trim_start().strip_prefix('"') {
            // A quoted target column may itself contain `=`.
            let close = find_closing_quote(rest).ok_or_else(bad)?;
            let column = rest[..close].replace("\"\"", "\"");
            let expr = rest[close + 1..]
                .trim_start()
                .strip_prefix('=')
                .ok_or_else(bad)?;
            (column, expr)
        } else {
            let (c, e) = text.split_once('=').ok_or_else(bad)?;
            (c.trim().to_string(), e)
        };
        let expr = expr.trim();
        if column.is_empty() || expr.is_empty() {
            return Err(bad());
        }
        Ok(ColumnMap {
            column,
            expr: expr.to_string(),
        })
    }
}

fn find_closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A copy job: everything that defines it (and so its fingerprint).
#[derive(Debug, Clone)]
pub struct CopySpec {
    pub source: DbUrl,
    pub target: Option<DbUrl>,
    pub table: TableName,
    pub target_table: TableName,
    pub maps: Vec<ColumnMap>,
    pub where_sql: Option<String>,
    pub key: Option<Vec<String>>,
    /// Install sync triggers first (and read rows under share locks).
    pub dual_write: bool,
}

/// A backfill job: `UPDATE table SET sets WHERE where`, in chunks.
#[derive(Debug, Clone)]
pub struct BackfillSpec {
    pub source: DbUrl,
    pub table: TableName,
    pub sets: Vec<ColumnMap>,
    pub where_sql: Option<String>,
    pub key: Option<Vec<String>>,
    pub then_not_null: Option<String>,
}

/// Split `--set 'a = x + 1, "B" = coalesce(y, 0)'` into columns and
/// expressions: commas inside parentheses or quotes do not split.
pub fn parse_set(text: &str) -> Result<Vec<ColumnMap>> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start, mut escaped) = (0i32, None::<char>, 0, false);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            // A backslash escapes the next character in MySQL strings and
            // PostgreSQL E'' strings; a doubled quote reads as close+open.
            (Some(_), _) if escaped => escaped = false,
            (Some(q), '\\') if q != '`' => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    let sets: Vec<ColumnMap> = parts
        .into_iter()
        .map(ColumnMap::parse)
        .collect::<Result<_>>()
        .map_err(|_| {
            Error::input(format!(
                "--set `{text}` is not COLUMN = EXPRESSION[, COLUMN = EXPRESSION]; for example \
             --set 'email_verified = (verified_at IS NOT NULL), n = n + 1'"
            ))
        })?;
    Ok(sets)
}

/// How a job runs; changing these between runs still resumes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub workers: usize,
    pub chunk_rows: u64,
    pub chunk_time: Duration,
    pub max_chunk_rows: u64,
    pub max_chunk_bytes: u64,
    pub max_rows_per_sec: Option<NonZeroU32>,
    pub pause_file: Option<PathBuf>,
    pub checkpoint: Option<PathBuf>,
    pub restart: bool,
    pub progress: ProgressMode,
    pub json: bool,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_retries: u32,
    pub signals: SignalOptions,
    pub control: ControlOptions,
    /// `--coordinate-in-db`: the lease of a claimed chunk. None: the job
    /// runs in this process alone, with its checkpoint file.
    pub coordinate_lease: Option<Duration>,
}

/// What the throttle watches in the background (`signals.rs`).
#[derive(Debug, Clone, Default)]
pub struct SignalOptions {
    /// `--replica URL`, repeatable.
    pub replicas: Vec<crate::url::DbUrl>,
    pub max_lag: Duration,
    pub max_load: Option<LoadLimit>,
    pub critical_load: Option<LoadLimit>,
    pub throttle_query: Option<String>,
}

/// `--max-load` / `--critical-load`: `N` (the engine's default metric) or
/// `METRIC=N`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadLimit {
    pub metric: Option<String>,
    pub value: f64,
}

impl std::str::FromStr for LoadLimit {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (metric, value) = match text.split_once('=') {
            Some((m, v)) => (Some(m.trim().to_string()), v),
            None => (None, text),
        };
        let value: f64 = value.trim().parse().map_err(|_| {
            format!("{text:?}: write a number, or METRIC=N (e.g. Threads_running=25, active=25)")
        })?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{text:?}: the limit must be a number >= 0"));
        }
        Ok(LoadLimit { metric, value })
    }
}

/// How an operator steers and watches a running job (`control.rs`).
#[derive(Debug, Clone, Default)]
pub struct ControlOptions {
    pub control_socket: Option<PathBuf>,
    pub metrics_addr: Option<String>,
    pub on_event: Option<String>,
}

impl RunOptions {
    /// The chunk flags' defaults with one worker: for a step that only
    /// runs DDL (sync install/remove).
    pub fn for_ddl() -> Self {
        RunOptions {
            workers: 1,
            chunk_rows: 1000,
            chunk_time: Duration::from_millis(500),
            max_chunk_rows: 100_000,
            max_chunk_bytes: 16 << 20,
            max_rows_per_sec: None,
            pause_file: None,
            checkpoint: None,
            restart: false,
            progress: ProgressMode::None,
            json: false,
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(60),
            max_retries: 10,
            signals: SignalOptions::default(),
            control: ControlOptions::default(),
            coordinate_lease: None,
        }
    }

    /// The chunk sizer for a table whose rows take about `row_bytes`.
    /// Chunks are capped in rows, in bytes, and to one second's worth of
    /// the rate limit (the throttle admits a chunk in one go).
    pub fn chunk_sizer(&self, row_bytes: u64) -> ChunkSizer {
        let mut sizer = ChunkSizer::new(
            self.chunk_rows,
            self.chunk_time,
            self.max_chunk_rows,
            self.max_chunk_bytes,
            row_bytes,
        );
        sizer.set_rate_cap(self.max_rows_per_sec.map(|r| u64::from(r.get())));
        sizer
    }
}

/// The resolved identity of a job: hashed into its fingerprint, shown by
/// `rowferry status`. Never holds a password.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobIdentity {
    pub operation: &'static str,
    pub source: String,
    pub target: String,
    pub table: String,
    pub target_table: String,
    pub key: Vec<String>,
    pub map: Vec<ColumnMap>,
    #[serde(rename = "where")]
    pub where_sql: Option<String>,
}

impl JobIdentity {
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }

    /// Default checkpoint file, named after the job, in the current directory.
    pub fn default_checkpoint(&self) -> PathBuf {
        let name = format!(
            "rowferry-{}-{}-to-{}.checkpoint",
            self.operation, self.table, self.target_table
        );
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(safe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_lists() {
        let sets = parse_set("n = n + 1, label = concat(a, ',', b), \"Odd, col\" = 'x,y'").unwrap();
        let pairs: Vec<(&str, &str)> = sets
            .iter()
            .map(|s| (s.column.as_str(), s.expr.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("n", "n + 1"),
                ("label", "concat(a, ',', b)"),
                ("Odd, col", "'x,y'")
            ]
        );
        let sets = parse_set(r"note = 'a\', n = n + 1, m = ', tags = ARRAY[1,2]").unwrap();
        let pairs: Vec<(&str, &str)> = sets
            .iter()
            .map(|s| (s.column.as_str(), s.expr.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![("note", r"'a\', n = n + 1, m = '"), ("tags", "ARRAY[1,2]")]
        );
        assert_eq!(parse_set("n + 1").unwrap_err().exit_code(), 2);
        assert_eq!(parse_set("a = 1,").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn parses_maps() {
        assert_eq!(
            ColumnMap::parse("full_name = first || '=' || last").unwrap(),
            ColumnMap {
                column: "full_name".into(),
                expr: "first || '=' || last".into()
            }
        );
        assert_eq!(
            ColumnMap::parse(r#""a=""b"=lower(x)"#).unwrap(),
            ColumnMap {
                column: r#"a="b"#.into(),
                expr: "lower(x)".into()
            }
        );
        for bad in ["nocolumn", "=x", "c=", r#""open=x"#] {
            assert_eq!(ColumnMap::parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    fn identity() -> JobIdentity {
        JobIdentity {
            operation: "copy",
            source: "Postgres://u@h:5432/db".into(),
            target: "Postgres://u@h:5432/db".into(),
            table: "public.orders".into(),
            target_table: "public.orders v2".into(),
            key: vec!["id".into()],
            map: vec![],
            where_sql: None,
        }
    }

    #[test]
    fn fingerprint_changes_with_what_defines_the_job() {
        let a = identity();
        let mut b = identity();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.where_sql = Some("id > 5".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn chunks_are_capped_to_the_rate_limit() {
        let opts = RunOptions {
            chunk_rows: 50_000,
            chunk_time: Duration::ZERO,
            max_rows_per_sec: NonZeroU32::new(700),
            ..RunOptions::for_ddl()
        };
        assert_eq!(opts.chunk_sizer(100).rows(), 700);
    }

    #[test]
    fn default_checkpoint_name_is_a_safe_file_name() {
        assert_eq!(
            identity().default_checkpoint(),
            PathBuf::from("rowferry-copy-public.orders-to-public.orders_v2.checkpoint")
        );
    }
}
