//! The command line: clap definitions turned into specs, and dispatch.

use crate::error::{Error, ErrorKind, Result};
use crate::ops;
use crate::progress::ProgressMode;
use crate::spec::{
    BackfillSpec, ColumnMap, ControlOptions, CopySpec, LoadLimit, RunOptions, SignalOptions,
    parse_set,
};
use crate::table::TableName;
use crate::url::DbUrl;
use clap::{Args, Parser, Subcommand};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "rowferry",
    version,
    about = "Online, resumable, throttled copies of huge SQL tables"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy rows into another table in key-ordered, throttled chunks.
    Copy(CopyArgs),
    /// Update rows in place in key-ordered chunks, exactly once across crashes.
    Backfill(BackfillArgs),
    /// Dry run of a copy (--target-table) or a backfill (--set): key,
    /// estimates, first chunks and the exact SQL. Writes nothing.
    Plan(PlanArgs),
    /// Show a job's progress from its checkpoint file.
    Status(StatusArgs),
    /// Dual-write triggers that mirror every write on --table into
    /// --target-table: install, remove, or show them.
    Sync(SyncArgs),
    /// Secondary indexes of --table: record and drop them (defer), build
    /// them again online (rebuild), or show them (status).
    Indexes(IndexesArgs),
    /// Compare --table and --target-table chunk by chunk with checksums;
    /// name every differing key. Exit 3 on any difference.
    Verify(VerifyArgs),
    /// Swap the new table into the old one's name in one short transaction
    /// (after a dual-write copy), optionally keeping the old one current.
    Cutover(CutoverArgs),
    /// Swap back after a cutover with --reverse-sync; no write is lost.
    Rollback(RollbackArgs),
    /// After a cutover: drop the old table and the reverse sync.
    Cleanup(CleanupArgs),
    /// Run a whole migration from a job file (expand DDL, sync, copy or
    /// backfill, indexes, verify, cutover, contract DDL, cleanup); a rerun
    /// resumes at the phase it reached.
    Run(JobRunArgs),
    /// Take back what a job file's run did: triggers, DDL (with undo), a
    /// cutover (rolled back), and the job's state and checkpoints.
    Abort(JobAbortArgs),
}

#[derive(Args, Debug, Clone)]
pub struct JobRunArgs {
    /// The job file (TOML); its state is kept in JOB.state beside it.
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
    /// Do the cutover now even if its wait-for-file does not exist.
    #[arg(long)]
    pub cutover_now: bool,
    /// Progress display of every phase (overrides the file's `progress`).
    #[arg(long, value_enum)]
    pub progress: Option<ProgressMode>,
}

#[derive(Args, Debug, Clone)]
pub struct JobAbortArgs {
    /// The job file (TOML) whose run is taken back.
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
}

/// The two tables of a copy, sync or verify, and how rows map between them.
#[derive(Args, Debug, Clone)]
pub struct PairArgs {
    /// Source connection URL (postgres://user:password@host:port/db).
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// Target connection URL; defaults to the source's database.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Source table: schema.table, or a bare name in the default schema.
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// Target table (must exist, with a unique index on the copy key).
    #[arg(long, value_name = "TABLE")]
    pub target_table: String,
    /// Fill target column COL with the source SQL expression EXPR.
    #[arg(long = "map", value_name = "COL=EXPR")]
    pub maps: Vec<String>,
    /// Only source rows matching this SQL condition.
    #[arg(long = "where", value_name = "SQL")]
    pub where_sql: Option<String>,
    /// Key columns to cut chunks on (NOT NULL, unique); default: primary key.
    #[arg(long, value_name = "COL[,COL]", value_delimiter = ',')]
    pub key: Option<Vec<String>>,
}

#[derive(Args, Debug, Clone)]
pub struct CopyArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Install sync triggers first, so that writes during and after the
    /// copy reach the target; they stay installed afterwards.
    #[arg(long)]
    pub dual_write: bool,
    /// Drop the target's non-unique secondary indexes before the copy
    /// (definitions kept in the checkpoint) and build them again online
    /// after it; primary key, unique and exclusion indexes stay.
    #[arg(long)]
    pub defer_indexes: bool,
    #[command(flatten)]
    pub index_jobs: IndexJobsArg,
    /// Create the target table from the source's definition if it does not
    /// exist (types mapped between engines; primary key on the copy key).
    #[arg(long)]
    pub create_target: bool,
    /// With --create-target: the created column's type, COL=TYPE.
    #[arg(long = "cast", value_name = "COL=TYPE")]
    pub casts: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug, Clone)]
pub struct IndexJobsArg {
    /// Processes for deferred index builds. PostgreSQL: N plain builds at
    /// once (a copy's private target), or one online build at a time with
    /// N-1 parallel workers; MySQL 8: innodb_ddl_threads.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub index_jobs: u16,
}

#[derive(Args, Debug, Clone)]
pub struct IndexesArgs {
    #[arg(value_enum)]
    pub action: ops::indexes::IndexAction,
    /// Connection URL of the table's database.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// The table whose indexes are deferred: schema.table, or a bare name.
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// Where the definitions are recorded (default:
    /// rowferry-indexes-SCHEMA.TABLE.json in the current directory); a
    /// copy's checkpoint works too.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub index_jobs: IndexJobsArg,
    /// Give up waiting for the table's lock after this long (then retry).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Retries when the lock cannot be had or a build fails transiently.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// Print each index's state as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl IndexesArgs {
    async fn run(self) -> Result<()> {
        ops::indexes::run(&ops::indexes::IndexesRequest {
            action: self.action,
            target: DbUrl::parse(&self.target).map_err(|e| e.context("--target"))?,
            table: TableName::parse(&self.table).map_err(|e| e.context("--table"))?,
            state: self.state,
            jobs: usize::from(self.index_jobs.index_jobs),
            opts: RunOptions {
                lock_timeout: self.lock_timeout,
                max_retries: self.max_retries,
                json: self.json,
                ..RunOptions::for_ddl()
            },
        })
        .await
    }
}

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    #[arg(value_enum)]
    pub action: ops::sync::SyncAction,
    #[command(flatten)]
    pub pair: PairArgs,
    /// Give up waiting for the table's lock after this long (then retry).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Retries when the lock cannot be had.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// Print the state as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Name for the old table after the swap (default: TABLE_old).
    #[arg(long, value_name = "NAME")]
    pub old_name: Option<String>,
    /// Keep the old table current from the new one after the swap, so a
    /// rollback loses nothing.
    #[arg(long)]
    pub reverse_sync: bool,
    /// Swap without comparing the tables first.
    #[arg(long)]
    pub skip_verify: bool,
    /// Re-create other tables' foreign keys on the new table (NOT VALID,
    /// then validated) instead of refusing.
    #[arg(long)]
    pub repoint_foreign_keys: bool,
    #[command(flatten)]
    pub swap: SwapArgs,
}

/// How a swap waits for its locks, and how often it tries.
#[derive(Args, Debug, Clone)]
pub struct SwapArgs {
    /// Give up waiting for the tables' locks after this long (then retry).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Attempts after the first before giving up (nothing changed).
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
}

impl SwapArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            lock_timeout: self.lock_timeout,
            max_retries: self.max_retries,
            ..RunOptions::for_ddl()
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// Connection URL of the tables' database.
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// The table the application uses (the new one, since the cutover).
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// The old table's name, if not TABLE_old.
    #[arg(long, value_name = "NAME")]
    pub old_name: Option<String>,
    #[arg(long)]
    pub repoint_foreign_keys: bool,
    #[command(flatten)]
    pub swap: SwapArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CleanupArgs {
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// The table the application uses.
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// The old table's name, if not TABLE_old.
    #[arg(long, value_name = "NAME")]
    pub old_name: Option<String>,
    /// Confirm: drop the old table (the way back) and the reverse sync.
    #[arg(long)]
    pub drop_old_table: bool,
    #[command(flatten)]
    pub swap: SwapArgs,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// List at most this many differing keys (bisecting stops there).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_differences: u64,
    #[command(flatten)]
    pub chunks: ChunkArgs,
}

/// The flags of `copy` and `backfill` together; `--set` makes it a
/// backfill.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[arg(long, value_name = "URL")]
    pub source: String,
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// Plan a copy into this table.
    #[arg(long, value_name = "TABLE", conflicts_with = "set")]
    pub target_table: Option<String>,
    #[arg(long = "map", value_name = "COL=EXPR")]
    pub maps: Vec<String>,
    /// Plan a backfill.
    #[arg(long = "set", value_name = "COL = EXPR")]
    pub set: Option<String>,
    #[arg(long = "where", value_name = "SQL")]
    pub where_sql: Option<String>,
    #[arg(long, value_name = "COL[,COL]", value_delimiter = ',')]
    pub key: Option<Vec<String>>,
    #[arg(long, value_name = "COL")]
    pub then_not_null: Option<String>,
    /// Plan a copy with dual-write triggers.
    #[arg(long, conflicts_with = "set")]
    pub dual_write: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

impl PlanArgs {
    async fn run(self) -> Result<()> {
        let opts = self.run.options();
        match (self.set, self.target_table) {
            (Some(set), _) => {
                let args = BackfillArgs {
                    source: self.source,
                    table: self.table,
                    set,
                    where_sql: self.where_sql,
                    key: self.key,
                    then_not_null: self.then_not_null,
                    run: self.run,
                };
                ops::plan::backfill(&args.spec()?, &opts).await
            }
            (None, Some(target_table)) => {
                let pair = PairArgs {
                    source: self.source,
                    target: self.target,
                    table: self.table,
                    target_table,
                    maps: self.maps,
                    where_sql: self.where_sql,
                    key: self.key,
                };
                ops::plan::copy(&pair.spec(SameDatabase::Required, self.dual_write)?, &opts).await
            }
            (None, None) => Err(Error::input(
                "plan needs --target-table (to plan a copy) or --set (to plan a backfill)",
            )),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BackfillArgs {
    /// Connection URL of the table's database.
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// The table to update: schema.table, or a bare name.
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// What to set: 'COL = EXPR[, COL2 = EXPR2]' (SQL expressions).
    #[arg(long = "set", value_name = "COL = EXPR")]
    pub set: String,
    /// Update only rows matching this SQL condition.
    #[arg(long = "where", value_name = "SQL")]
    pub where_sql: Option<String>,
    /// Key columns to cut chunks on (NOT NULL, unique); default: primary key.
    #[arg(long, value_name = "COL[,COL]", value_delimiter = ',')]
    pub key: Option<Vec<String>>,
    /// After the backfill, make this column NOT NULL without a long lock.
    #[arg(long, value_name = "COL")]
    pub then_not_null: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

impl BackfillArgs {
    pub fn spec(&self) -> Result<BackfillSpec> {
        let where_sql = match self.where_sql.as_deref().map(str::trim) {
            Some("") => {
                return Err(Error::input(
                    "--where is empty; give an SQL condition or leave it out",
                ));
            }
            other => other.map(String::from),
        };
        Ok(BackfillSpec {
            source: DbUrl::parse(&self.source).map_err(|e| e.context("--source"))?,
            table: TableName::parse(&self.table).map_err(|e| e.context("--table"))?,
            sets: parse_set(&self.set)?,
            where_sql,
            key: self.key.clone(),
            then_not_null: self.then_not_null.clone(),
        })
    }
}

/// The flags of every chunked job that writes: chunking, throttling and
/// progress, plus the checkpoint.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub chunks: ChunkArgs,
    /// Checkpoint file (default: named after the job, in the current directory).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Ignore an existing checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
    /// Share the job with other rowferry processes (on any hosts) started
    /// with the same flags: the chunk plan and leases live in
    /// `rowferry_jobs`/`rowferry_chunks` beside the source table, instead
    /// of a checkpoint file.
    #[arg(long)]
    pub coordinate_in_db: bool,
    /// With --coordinate-in-db: how long a claimed chunk stays a
    /// process's without renewal before another process takes it over.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "D")]
    pub lease: Duration,
}

/// How chunks are sized, throttled, timed out and reported.
#[derive(Args, Debug, Clone)]
pub struct ChunkArgs {
    /// Parallel chunk workers, each with its own connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Rows in the first chunk (and every chunk with --chunk-time 0).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_rows: u64,
    /// Target time per chunk; 0 keeps --chunk-rows fixed.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub chunk_time: Duration,
    /// Upper bound on rows per chunk.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_chunk_rows: u64,
    /// Upper bound on a chunk's estimated size in bytes.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_chunk_bytes: u64,
    /// Rate limit in rows per second.
    #[arg(long, value_name = "N")]
    pub max_rows_per_sec: Option<NonZeroU32>,
    /// No chunk starts while this file exists.
    #[arg(long, value_name = "PATH")]
    pub pause_file: Option<PathBuf>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting for a lock after this long (then retry the chunk).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Cancel any statement running longer (then retry the chunk).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub statement_timeout: Duration,
    /// Retries of a chunk on deadlocks, lock timeouts and lost connections.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    #[command(flatten)]
    pub throttle: ThrottleArgs,
}

/// Signals the throttle watches, and how an operator steers the job.
#[derive(Args, Debug, Clone)]
pub struct ThrottleArgs {
    /// A replica whose replay lag holds chunks back (repeatable). Lag that
    /// cannot be measured counts as over --max-lag.
    #[arg(long = "replica", value_name = "URL", value_parser = parse_url)]
    pub replicas: Vec<DbUrl>,
    /// Longest replica lag at which chunks still start.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub max_lag: Duration,
    /// Hold chunks while the source server's load reaches N: PostgreSQL
    /// active sessions (or waiting=N: sessions waiting for a lock); MySQL
    /// Threads_running (or any status counter, NAME=N); SQL Server active
    /// requests (or waiting=N, runnable=N). `none` turns it off.
    #[arg(long, value_name = "[METRIC=]N", default_value = "25", value_parser = parse_max_load)]
    pub max_load: MaxLoad,
    /// Stop the job cleanly (checkpoint saved, exit 1) when the load reaches N.
    #[arg(long, value_name = "[METRIC=]N", value_parser = parse_load)]
    pub critical_load: Option<LoadLimit>,
    /// Hold chunks while this query's first column is not 0 (run on the
    /// source every 250ms).
    #[arg(long, value_name = "SQL")]
    pub throttle_query: Option<String>,
    /// Accept line commands on this Unix socket: status, pause, resume,
    /// rate N, chunk-time D, workers N, max-lag D, stop.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Run this shell command on each job event, with the event as JSON on
    /// stdin: start, throttle_begin, throttle_end, failure, completion.
    #[arg(long, value_name = "CMD")]
    pub on_event: Option<String>,
}

fn parse_url(text: &str) -> std::result::Result<DbUrl, String> {
    DbUrl::parse(text).map_err(|e| e.message)
}

/// `--max-load`: a limit, or `none`.
#[derive(Debug, Clone)]
pub struct MaxLoad(pub Option<LoadLimit>);

fn parse_max_load(text: &str) -> std::result::Result<MaxLoad, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(MaxLoad(None));
    }
    parse_load(text).map(|l| MaxLoad(Some(l)))
}

fn parse_load(text: &str) -> std::result::Result<LoadLimit, String> {
    text.parse()
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// A job file (TOML): show each phase of the job.
    #[arg(
        value_name = "JOB",
        required_unless_present = "checkpoint",
        conflicts_with = "checkpoint"
    )]
    pub job: Option<PathBuf>,
    /// The job's checkpoint file.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (write e.g. 500ms, 2s, 1m)"))
}

/// Whether `--target` may name another database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameDatabase {
    Required,
    /// Verify compares across databases of one engine.
    NotRequired,
    /// Copy and verify reach any database, server or engine.
    AnyServer,
}

impl PairArgs {
    pub fn spec(&self, same: SameDatabase, dual_write: bool) -> Result<CopySpec> {
        let source = DbUrl::parse(&self.source).map_err(|e| e.context("--source"))?;
        let target = self
            .target
            .as_deref()
            .map(DbUrl::parse)
            .transpose()
            .map_err(|e| e.context("--target"))?;
        if let Some(t) = target.as_ref() {
            if same == SameDatabase::Required && t.identity() != source.identity() {
                return Err(Error::input(format!(
                    "--target {t} is another server or database than --source {source}; this \
                     version copies within one database. Leave out --target to copy there"
                )));
            }
            if t.engine != source.engine && same != SameDatabase::AnyServer {
                return Err(Error::input(format!(
                    "--target {t} is another engine than --source {source}; this version \
                     compares tables on one engine"
                )));
            }
        }
        let where_sql = match self.where_sql.as_deref().map(str::trim) {
            Some("") => {
                return Err(Error::input(
                    "--where is empty; give an SQL condition or leave it out",
                ));
            }
            other => other.map(String::from),
        };
        Ok(CopySpec {
            source,
            target,
            table: TableName::parse(&self.table).map_err(|e| e.context("--table"))?,
            target_table: TableName::parse(&self.target_table)
                .map_err(|e| e.context("--target-table"))?,
            maps: self
                .maps
                .iter()
                .map(|m| ColumnMap::parse(m))
                .collect::<Result<_>>()?,
            where_sql,
            key: self.key.clone(),
            dual_write,
        })
    }
}

impl RunArgs {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            checkpoint: self.checkpoint.clone(),
            restart: self.restart,
            coordinate_lease: self.coordinate_in_db.then_some(self.lease),
            ..self.chunks.options()
        }
    }
}

impl ChunkArgs {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            workers: usize::from(self.workers),
            chunk_rows: self.chunk_rows,
            chunk_time: self.chunk_time,
            max_chunk_rows: self.max_chunk_rows,
            max_chunk_bytes: self.max_chunk_bytes,
            max_rows_per_sec: self.max_rows_per_sec,
            pause_file: self.pause_file.clone(),
            checkpoint: None,
            restart: false,
            progress: self.progress,
            json: self.json,
            lock_timeout: self.lock_timeout,
            statement_timeout: self.statement_timeout,
            max_retries: self.max_retries,
            signals: SignalOptions {
                replicas: self.throttle.replicas.clone(),
                max_lag: self.throttle.max_lag,
                max_load: self.throttle.max_load.0.clone(),
                critical_load: self.throttle.critical_load.clone(),
                throttle_query: self.throttle.throttle_query.clone(),
            },
            control: ControlOptions {
                control_socket: self.throttle.control_socket.clone(),
                metrics_addr: self.throttle.metrics_addr.clone(),
                on_event: self.throttle.on_event.clone(),
            },
            coordinate_lease: None,
        }
    }
}

impl SyncArgs {
    async fn run(self) -> Result<()> {
        let spec = self.pair.spec(SameDatabase::Required, false)?;
        let opts = RunOptions {
            lock_timeout: self.lock_timeout,
            max_retries: self.max_retries,
            json: self.json,
            ..RunOptions::for_ddl()
        };
        ops::sync::run(self.action, &spec, &opts).await
    }
}

/// Run one parsed command (what `main` does after parsing; job files
/// dispatch their phases through it too).
pub async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Copy(args) => {
            let spec = args.pair.spec(SameDatabase::AnyServer, args.dual_write)?;
            let indexes = ops::indexes::IndexOptions {
                defer: args.defer_indexes,
                jobs: usize::from(args.index_jobs.index_jobs),
            };
            let opts = args.run.options();
            if args.run.coordinate_in_db {
                if args.defer_indexes {
                    return Err(Error::input(
                        "--coordinate-in-db cannot be combined with --defer-indexes: run \
                         `rowferry indexes defer` before the processes start and `rowferry \
                         indexes rebuild` after the last one finished",
                    ));
                }
                if ops::transfer::crosses_servers(&spec) || args.create_target {
                    return Err(Error::input(
                        "--coordinate-in-db needs the target table on the source's server, \
                         already created (each chunk's done-mark commits in the chunk's own \
                         transaction): create the target first, or copy across servers from \
                         one process",
                    ));
                }
            }
            let casts = args
                .casts
                .iter()
                .map(|c| ops::create_target::Cast::parse(c))
                .collect::<Result<Vec<_>>>()?;
            if args.create_target {
                return ops::create_target::run(&spec, &opts, &casts, indexes).await;
            } else if !casts.is_empty() {
                return Err(Error::input(
                    "--cast sets a column's type in the table --create-target creates; \
                     add --create-target (or create the target yourself)",
                ));
            }
            ops::copy::run_with_indexes(&spec, &opts, indexes).await
        }
        Command::Backfill(args) => ops::backfill::run(&args.spec()?, &args.run.options()).await,
        Command::Plan(args) => args.run().await,
        Command::Status(args) => match (args.job, args.checkpoint) {
            (Some(job), _) => crate::job::status(&job, args.json),
            (None, Some(checkpoint)) => ops::status::run(&checkpoint, args.json),
            (None, None) => Err(Error::input("status needs a job file or --checkpoint PATH")),
        },
        Command::Run(args) => {
            let progress = args
                .progress
                .and_then(|p| clap::ValueEnum::to_possible_value(&p))
                .map(|v| v.get_name().to_string());
            crate::job::run(&args.job, args.cutover_now, progress).await
        }
        Command::Abort(args) => crate::job::abort(&args.job).await,
        Command::Sync(args) => args.run().await,
        Command::Indexes(args) => args.run().await,
        Command::Cutover(args) => {
            let spec = ops::cutover::CutoverSpec {
                pair: args.pair.spec(SameDatabase::Required, false)?,
                old_name: args.old_name,
                reverse_sync: args.reverse_sync,
                skip_verify: args.skip_verify,
                repoint_foreign_keys: args.repoint_foreign_keys,
            };
            ops::cutover::cutover(&spec, &args.swap.options()).await
        }
        Command::Rollback(args) => {
            let spec = ops::cutover::RollbackSpec {
                source: DbUrl::parse(&args.source).map_err(|e| e.context("--source"))?,
                table: TableName::parse(&args.table).map_err(|e| e.context("--table"))?,
                old_name: args.old_name,
                repoint_foreign_keys: args.repoint_foreign_keys,
            };
            ops::cutover::rollback(&spec, &args.swap.options()).await
        }
        Command::Cleanup(args) => {
            let spec = ops::cutover::CleanupSpec {
                source: DbUrl::parse(&args.source).map_err(|e| e.context("--source"))?,
                table: TableName::parse(&args.table).map_err(|e| e.context("--table"))?,
                old_name: args.old_name,
                drop_old_table: args.drop_old_table,
            };
            ops::cutover::cleanup(&spec, &args.swap.options()).await
        }
        Command::Verify(args) => {
            let spec = args.pair.spec(SameDatabase::AnyServer, false)?;
            ops::verify::run(&spec, &args.chunks.options(), args.max_differences).await
        }
    }
}

/// Parse, run, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rowferry: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(()) => 0,
        Err(e) if matches!(e.kind, ErrorKind::Interrupted | ErrorKind::Differences) => {
            eprintln!("rowferry: {e}");
            e.exit_code()
        }
        Err(e) => {
            let note = if e.exit_code() == 2 && !e.after_writes {
                " (nothing was written)"
            } else {
                ""
            };
            eprintln!("rowferry: error: {e}{note}");
            e.exit_code()
        }
    }
}
