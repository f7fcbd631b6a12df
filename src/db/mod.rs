//! The one async database interface. Everything that talks to a server goes
//! through `Database` (a pool) and `Session` (one connection). Values cross
//! as text in both directions; the dialect's SQL does the conversions.

pub mod mysql;
pub mod postgres;
pub mod sqlserver;

use crate::dialect::Dialect;
use crate::error::{Error, ErrorKind, Result};
use crate::url::{DbUrl, Engine};
use async_trait::async_trait;
use std::time::Duration;

/// One result row; NULL is None.
pub type Row = Vec<Option<String>>;

/// What a `COPY ... TO STDOUT` writes (or what a `COPY ... FROM STDIN`
/// reads), in the server's own COPY format, piece by piece: a chunk is
/// never held whole when it can be streamed.
pub type CopyData<'a> =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes>> + Send + 'a>>;

/// A statement and its text parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

/// One connection, used by one task at a time.
#[async_trait]
pub trait Session: Send {
    async fn query(&mut self, sql: &str, params: &[String]) -> Result<Vec<Row>>;

    /// Run `sql` (no parameters) and return each row's cells with their
    /// column names: for SHOW statements whose columns vary by version.
    async fn query_named(&mut self, sql: &str) -> Result<Vec<crate::dialect::signals::NamedRow>>;

    /// Parse and plan `sql` without running it: reports a bad `--where` or
    /// `--map` before anything is written.
    async fn check(&mut self, sql: &str) -> Result<()>;

    /// Run the statements in one transaction; rows affected by each.
    async fn transaction(&mut self, statements: &[Statement]) -> Result<Vec<u64>>;

    /// Run one statement without parameters outside any transaction block
    /// (autocommit): for DDL that refuses to run inside one, such as
    /// PostgreSQL's CREATE/DROP INDEX CONCURRENTLY. Rows affected.
    async fn execute(&mut self, sql: &str) -> Result<u64>;

    /// Run `sql`, a `COPY (...) TO STDOUT` (no parameters: bounds are
    /// literals), and stream what it writes. The session is busy until the
    /// stream ends or is dropped.
    async fn copy_out(&mut self, _sql: &str) -> Result<CopyData<'_>> {
        Err(Error::fatal(
            "internal: COPY TO STDOUT is PostgreSQL's; this engine reads rows with SELECT",
        ))
    }

    /// One transaction: `before` (e.g. the DELETE of a chunk's keys), then
    /// `copy_sql`, a `COPY ... FROM STDIN`, fed with `data` to its end, then
    /// COMMIT. An error from `data` or the server aborts the COPY and rolls
    /// everything back, and is returned as it is (a source's lost
    /// connection stays retryable). Rows affected by each of `before`, and
    /// rows copied.
    async fn transaction_with_copy_in(
        &mut self,
        _before: &[Statement],
        _copy_sql: &str,
        _data: CopyData<'_>,
    ) -> Result<(Vec<u64>, u64)> {
        Err(Error::fatal(
            "internal: COPY FROM STDIN is PostgreSQL's; this engine takes rows with INSERT",
        ))
    }

    /// One transaction: `before` (the DELETE of a chunk's keys), then
    /// `load_sql`, a `LOAD DATA LOCAL INFILE`, answered with `data` from
    /// memory. With LOCAL the server cannot stop the client mid-file, so
    /// it turns what a strict INSERT refuses (a value too long, a
    /// duplicate key) into warnings and goes on: the transaction commits
    /// only if exactly `expected` rows loaded without a warning, and is
    /// rolled back otherwise. Notes (what a strict INSERT accepts too,
    /// such as a decimal rounded to the column's scale) do not count.
    async fn transaction_with_load_data(
        &mut self,
        _before: &[Statement],
        _load_sql: &str,
        _data: Vec<bytes::Bytes>,
        _expected: u64,
    ) -> Result<LoadOutcome> {
        Err(Error::fatal(
            "internal: LOAD DATA LOCAL INFILE is MySQL's; this engine takes rows otherwise",
        ))
    }

    /// One transaction: `before` (the chunk's DELETE), then `rows` by the
    /// engine's bulk load into the staging table `load` describes, then
    /// its INSERT ... SELECT into the target, then COMMIT. Rows written.
    /// An error rolls everything back and is returned as it is.
    async fn transaction_with_bulk_load(
        &mut self,
        _before: &[Statement],
        _load: &crate::dialect::sqlserver::StagedInsert,
        _rows: &[Row],
    ) -> Result<u64> {
        Err(Error::fatal(
            "internal: TDS bulk load is SQL Server's; this engine takes rows otherwise",
        ))
    }
}

/// What a `LOAD DATA LOCAL` did (see `Session::transaction_with_load_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Every row loaded without a warning, and committed. Rows affected
    /// by each of `before`, and rows loaded.
    Committed { before: Vec<u64>, loaded: u64 },
    /// The server loaded another number of rows or warned: rolled back,
    /// nothing written. `shown`: the first warnings, as SHOW WARNINGS
    /// lists them.
    RolledBack {
        loaded: u64,
        warnings: u64,
        shown: Vec<ServerWarning>,
    },
}

/// One line of SHOW WARNINGS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerWarning {
    pub level: String,
    pub code: u32,
    pub message: String,
}

/// A pool of sessions to one server and database.
#[async_trait]
pub trait Database: Send + Sync {
    fn dialect(&self) -> &'static dyn Dialect;

    /// A pooled session.
    async fn session(&self) -> Result<Box<dyn Session>>;

    /// A session outside the pool, closed when dropped; for locks that must
    /// live exactly as long as the job.
    async fn dedicated_session(&self) -> Result<Box<dyn Session>>;
}

/// Session settings every engine applies.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub pool_size: usize,
    /// Give up waiting for a row or table lock after this long.
    pub lock_timeout: Duration,
    /// Cancel any single statement that runs longer.
    pub statement_timeout: Duration,
    /// Have the server end a session that sits idle inside an open
    /// transaction this long (PostgreSQL's
    /// `idle_in_transaction_session_timeout`, MariaDB's
    /// `idle_transaction_timeout`; MySQL and SQL Server have none), so that
    /// a client frozen mid-transaction (SIGSTOP, a VM pause) releases its
    /// locks. `--coordinate-in-db` sets it to the lease: the other
    /// processes take over a stalled process's chunks, and must not wait
    /// for the row locks it holds. None: no limit.
    pub idle_in_transaction_timeout: Option<Duration>,
}

/// Open a pool for `url` and prove it works with one connection, so that a
/// wrong host or password is reported (exit 2) before anything happens.
pub async fn connect(url: &DbUrl, settings: &SessionSettings) -> Result<Box<dyn Database>> {
    let db: Box<dyn Database> = match url.engine {
        Engine::Postgres => Box::new(postgres::PgDatabase::new(url, settings)?),
        Engine::Mysql => Box::new(
            mysql::MyDatabase::connect(url, settings)
                .await
                .map_err(at_startup)?,
        ),
        Engine::Mssql => Box::new(sqlserver::MsDatabase::new(url, settings)?),
    };
    db.session().await.map_err(at_startup)?;
    Ok(db)
}

/// A failed first connection: a server that is full or starting up is a
/// runtime condition (exit 1); anything else is configuration (exit 2).
fn at_startup(e: Error) -> Error {
    // PostgreSQL 53300/57P03, MySQL 1040 (too many connections); SQL
    // Server 17809 (too many connections), 18401 (upgrade mode after a
    // start), 40613 (Azure SQL database not yet available).
    let transient = matches!(
        e.code.as_deref(),
        Some("53300" | "57P03" | "1040" | "17809" | "18401" | "40613")
    );
    e.with_kind(if transient {
        ErrorKind::Fatal
    } else {
        ErrorKind::Input
    })
}
