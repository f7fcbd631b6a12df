//! The command line: clap definitions turned into specs, and dispatch.

use crate::error::{Error, ErrorKind, Result};
use crate::ops;
use crate::progress::ProgressMode;
use crate::spec::{BackfillSpec, ColumnMap, CopySpec, RunOptions, parse_set};
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
}

#[derive(Args, Debug, Clone)]
pub struct CopyArgs {
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
    /// Copy only source rows matching this SQL condition.
    #[arg(long = "where", value_name = "SQL")]
    pub where_sql: Option<String>,
    /// Key columns to cut chunks on (NOT NULL, unique); default: primary key.
    #[arg(long, value_name = "COL[,COL]", value_delimiter = ',')]
    pub key: Option<Vec<String>>,
    #[command(flatten)]
    pub run: RunArgs,
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
                let args = CopyArgs {
                    source: self.source,
                    target: self.target,
                    table: self.table,
                    target_table,
                    maps: self.maps,
                    where_sql: self.where_sql,
                    key: self.key,
                    run: self.run,
                };
                ops::plan::copy(&args.spec()?, &opts).await
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

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
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
    /// Checkpoint file (default: named after the job, in the current directory).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Ignore an existing checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
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
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The job's checkpoint file.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
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

impl CopyArgs {
    pub fn spec(&self) -> Result<CopySpec> {
        let source = DbUrl::parse(&self.source).map_err(|e| e.context("--source"))?;
        let target = self
            .target
            .as_deref()
            .map(DbUrl::parse)
            .transpose()
            .map_err(|e| e.context("--target"))?;
        if let Some(t) = target
            .as_ref()
            .filter(|t| t.identity() != source.identity())
        {
            return Err(Error::input(format!(
                "--target {t} is another server or database than --source {source}; this \
                 version copies within one database. Leave out --target to copy there"
            )));
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
        })
    }
}

impl RunArgs {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            workers: usize::from(self.workers),
            chunk_rows: self.chunk_rows,
            chunk_time: self.chunk_time,
            max_chunk_rows: self.max_chunk_rows,
            max_chunk_bytes: self.max_chunk_bytes,
            max_rows_per_sec: self.max_rows_per_sec,
            pause_file: self.pause_file.clone(),
            checkpoint: self.checkpoint.clone(),
            restart: self.restart,
            progress: self.progress,
            json: self.json,
            lock_timeout: self.lock_timeout,
            statement_timeout: self.statement_timeout,
            max_retries: self.max_retries,
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Copy(args) => ops::copy::run(&args.spec()?, &args.run.options()).await,
            Command::Backfill(args) => ops::backfill::run(&args.spec()?, &args.run.options()).await,
            Command::Plan(args) => args.run().await,
            Command::Status(args) => ops::status::run(&args.checkpoint, args.json),
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) if e.kind == ErrorKind::Interrupted => {
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
