//! PostgreSQL driver: tokio-postgres behind a deadpool pool.

use super::{CopyData, Database, Row, Session, SessionSettings, Statement};
use crate::dialect::{Dialect, postgres::Postgres};
use crate::error::{Error, ErrorKind, Result};
use crate::url::{DbUrl, scrub};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::{SinkExt, StreamExt};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Config, NoTls};

/// Statements longer than this are not kept in the per-connection cache.
const UNCACHED_ABOVE: usize = 8 * 1024;

pub struct PgDatabase {
    pool: Pool,
    config: Config,
    url: DbUrl,
}

impl PgDatabase {
    pub fn new(url: &DbUrl, settings: &SessionSettings) -> Result<Self> {
        let mut config = Config::from_str(url.secret_str()).map_err(|e| {
            Error::input(format!(
                "cannot use connection URL {url}: {}. Expected postgres://user:password@host:5432/database",
                scrub(&e.to_string(), url.password())
            ))
        })?;
        // Values cross the wire in exact form (UTC, ISO dates, shortest
        // exact floats); every statement has lock and statement limits; no
        // JIT (compiling a chunk's plan costs more than running it).
        let pinned = format!(
            "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 \
             -c extra_float_digits=3 -c jit=off -c lock_timeout={} -c statement_timeout={}",
            settings.lock_timeout.as_millis(),
            settings.statement_timeout.as_millis()
        );
        // A session frozen inside a transaction (when asked: see
        // SessionSettings) is ended by the server, releasing its locks.
        let pinned = match settings.idle_in_transaction_timeout {
            Some(idle) => format!(
                "{pinned} -c idle_in_transaction_session_timeout={}",
                idle.as_millis().max(1)
            ),
            None => pinned,
        };
        let options = match config.get_options() {
            Some(user) if !user.is_empty() => format!("{user} {pinned}"),
            _ => pinned,
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("rowferry");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .build()
            .map_err(|e| Error::fatal(format!("cannot build the connection pool: {e}")))?;
        Ok(PgDatabase {
            pool,
            config,
            url: url.clone(),
        })
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> Error {
        connect_error(&self.url, e)
    }
}

#[async_trait]
impl Database for PgDatabase {
    fn dialect(&self) -> &'static dyn Dialect {
        &Postgres
    }

    async fn session(&self) -> Result<Box<dyn Session>> {
        let client = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.connect_error(&e),
            other => Error::new(
                ErrorKind::Retryable,
                format!(
                    "cannot get a connection to {} from the pool: {other}",
                    self.url
                ),
            ),
        })?;
        Ok(Box::new(PgSession {
            client: PgClient::Pooled(client),
            password: self.url.password().map(String::from),
        }))
    }

    async fn dedicated_session(&self) -> Result<Box<dyn Session>> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| self.connect_error(&e))?;
        tokio::spawn(connection);
        Ok(Box::new(PgSession {
            client: PgClient::Dedicated(client),
            password: self.url.password().map(String::from),
        }))
    }
}

enum PgClient {
    Pooled(deadpool_postgres::Object),
    Dedicated(tokio_postgres::Client),
}

struct PgSession {
    client: PgClient,
    password: Option<String>,
}

impl PgSession {
    async fn prepare(&self, sql: &str, params: usize) -> Result<tokio_postgres::Statement> {
        let types = vec![Type::TEXT; params];
        // Chunk statements repeat and are cached per connection. A long
        // one is unique (a chunk's multi-row INSERT written to another
        // server): cached, each would stay in the server's memory until
        // the connection closed; prepared afresh, it is closed when done.
        let prepared = match &self.client {
            PgClient::Pooled(c) if sql.len() <= UNCACHED_ABOVE => {
                c.prepare_typed_cached(sql, &types).await
            }
            PgClient::Pooled(c) => c.prepare_typed(sql, &types).await,
            PgClient::Dedicated(c) => c.prepare_typed(sql, &types).await,
        };
        prepared.map_err(|e| self.error(&e))
    }

    fn client(&self) -> &tokio_postgres::Client {
        match &self.client {
            PgClient::Pooled(c) => c,
            PgClient::Dedicated(c) => c,
        }
    }

    fn error(&self, e: &tokio_postgres::Error) -> Error {
        server_error(e, self.password.as_deref())
    }
}

fn params_of(params: &[String]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

#[async_trait]
impl Session for PgSession {
    async fn query(&mut self, sql: &str, params: &[String]) -> Result<Vec<Row>> {
        let stmt = self.prepare(sql, params.len()).await?;
        let rows = self
            .client()
            .query(&stmt, &params_of(params))
            .await
            .map_err(|e| self.error(&e))?;
        rows.iter()
            .map(|row| (0..row.len()).map(|i| text_cell(row, i)).collect())
            .collect()
    }

    async fn query_named(&mut self, sql: &str) -> Result<Vec<crate::dialect::signals::NamedRow>> {
        let messages = self
            .client()
            .simple_query(sql)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), row.get(i).map(String::from)))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    async fn check(&mut self, sql: &str) -> Result<()> {
        // Preparing parses, resolves names and types, and plans: exactly
        // the errors a bad expression would raise, without running it.
        self.client()
            .prepare(sql)
            .await
            .map(|_| ())
            .map_err(|e| self.error(&e))
    }

    async fn transaction(&mut self, statements: &[Statement]) -> Result<Vec<u64>> {
        let mut prepared = Vec::with_capacity(statements.len());
        for s in statements {
            prepared.push(self.prepare(&s.sql, s.params.len()).await?);
        }
        let password = self.password.clone();
        let err = |e: tokio_postgres::Error| server_error(&e, password.as_deref());
        if let [only] = statements {
            // A single statement is its own transaction: no BEGIN/COMMIT
            // round trips on the hot path.
            let n = self
                .client()
                .execute(&prepared[0], &params_of(&only.params))
                .await
                .map_err(err)?;
            return Ok(vec![n]);
        }
        let client: &mut tokio_postgres::Client = match &mut self.client {
            PgClient::Pooled(c) => c.as_mut(),
            PgClient::Dedicated(c) => c,
        };
        // Dropping the transaction on an error rolls it back.
        let txn = client.transaction().await.map_err(err)?;
        let mut counts = Vec::with_capacity(statements.len());
        for (s, p) in statements.iter().zip(&prepared) {
            counts.push(txn.execute(p, &params_of(&s.params)).await.map_err(err)?);
        }
        txn.commit().await.map_err(err)?;
        Ok(counts)
    }

    async fn copy_out(&mut self, sql: &str) -> Result<CopyData<'_>> {
        // Never cached: the statement carries the chunk's bounds.
        let stream = self
            .client()
            .copy_out(sql)
            .await
            .map_err(|e| self.error(&e))?;
        let password = self.password.clone();
        Ok(Box::pin(stream.map(move |piece| {
            piece.map_err(|e| server_error(&e, password.as_deref()))
        })))
    }

    async fn transaction_with_copy_in(
        &mut self,
        before: &[Statement],
        copy_sql: &str,
        mut data: CopyData<'_>,
    ) -> Result<(Vec<u64>, u64)> {
        let mut prepared = Vec::with_capacity(before.len());
        for s in before {
            prepared.push(self.prepare(&s.sql, s.params.len()).await?);
        }
        let copy = self.prepare(copy_sql, 0).await?;
        let password = self.password.clone();
        let err = |e: tokio_postgres::Error| server_error(&e, password.as_deref());
        let client: &mut tokio_postgres::Client = match &mut self.client {
            PgClient::Pooled(c) => c.as_mut(),
            PgClient::Dedicated(c) => c,
        };
        // Dropping the transaction on an error rolls it back; dropping the
        // sink unfinished aborts the COPY first (CopyFail).
        let txn = client.transaction().await.map_err(err)?;
        let mut counts = Vec::with_capacity(before.len());
        for (s, p) in before.iter().zip(&prepared) {
            counts.push(txn.execute(p, &params_of(&s.params)).await.map_err(err)?);
        }
        let sink = txn.copy_in::<_, bytes::Bytes>(&copy).await.map_err(err)?;
        let mut sink = std::pin::pin!(sink);
        while let Some(piece) = data.next().await {
            // The sink gathers small pieces (a source sends one per row)
            // into larger messages; `feed` does not flush each one.
            sink.feed(piece?).await.map_err(err)?;
        }
        let rows = sink.as_mut().finish().await.map_err(err)?;
        txn.commit().await.map_err(err)?;
        Ok((counts, rows))
    }

    async fn execute(&mut self, sql: &str) -> Result<u64> {
        // The simple query protocol runs a lone statement in no transaction
        // block, and prepares (and caches) nothing.
        let messages = self
            .client()
            .simple_query(sql)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(messages
            .iter()
            .map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum())
    }
}

/// One cell as text, whatever simple type the catalog returned.
fn text_cell(row: &tokio_postgres::Row, i: usize) -> Result<Option<String>> {
    let ty = row.columns()[i].type_().clone();
    let got = match ty {
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
            row.try_get::<_, Option<String>>(i)
        }
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|b| b.to_string())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|n| n.to_string())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|n| n.to_string())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map(|v| v.map(|n| n.to_string())),
        other => {
            return Err(Error::fatal(format!(
                "internal: query returned a column of type {other}; rowferry reads values as text"
            )));
        }
    };
    got.map_err(|e| Error::fatal(format!("cannot read a result column: {e}")))
}

/// Classify a server error: retryable or not, with SQLSTATE and constraint.
fn server_error(e: &tokio_postgres::Error, password: Option<&str>) -> Error {
    let Some(db) = e.as_db_error() else {
        // No server error: the connection broke or timed out. Retrying on
        // a fresh connection can help.
        let mut err = Error::new(
            ErrorKind::Retryable,
            format!("connection problem: {}", scrub(&e.to_string(), password)),
        );
        if e.is_closed() {
            err.message = "the server closed the connection".into();
        }
        return err;
    };
    let code = db.code();
    let retryable = [
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        // This session sat idle in a transaction past the limit it set
        // (a frozen process): ended and rolled back, a fresh one can go on.
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    ]
    .contains(code)
        || code.code().starts_with("08");
    let mut message = format!("{} (SQLSTATE {})", db.message(), code.code());
    if *code == SqlState::QUERY_CANCELED {
        message.push_str(
            "; a statement ran longer than --statement-timeout (or was cancelled): raise it, \
             or lower --max-chunk-rows / --chunk-time, then rerun to resume",
        );
    }
    if let Some(detail) = db.detail() {
        message.push_str(&format!("; {detail}"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!("; hint: {hint}"));
    }
    let mut err = Error::new(
        if retryable {
            ErrorKind::Retryable
        } else {
            ErrorKind::Fatal
        },
        scrub(&message, password),
    );
    err.code = Some(code.code().to_string());
    if *code == SqlState::UNIQUE_VIOLATION {
        err.duplicate_key = Some(db.constraint().unwrap_or("?").to_string());
    }
    err
}

/// A failed connection, told with the fix in mind and never with the
/// password. Refused credentials are input errors; an unreachable server is
/// retryable mid-job (`db::connect` makes it an input error at startup).
fn connect_error(url: &DbUrl, e: &tokio_postgres::Error) -> Error {
    let base = server_error(e, url.password());
    let advice = match base.code.as_deref() {
        Some("28P01") => format!(
            "password authentication failed for user `{}`; check the password in the URL",
            url.user()
        ),
        Some(c) if c.starts_with("28") => format!(
            "the server refused user `{}` ({}); check the user name and the server's pg_hba.conf",
            url.user(),
            base.message
        ),
        Some("3D000") => format!(
            "{}; check the database name at the end of the URL",
            base.message
        ),
        Some(_) => base.message.clone(),
        None => format!(
            "{}; check that the server is running and that host and port are right",
            scrub(&e.to_string(), url.password())
        ),
    };
    let refused = base
        .code
        .as_deref()
        .is_some_and(|c| c.starts_with("28") || c == "3D000");
    let kind = if refused {
        ErrorKind::Input
    } else {
        ErrorKind::Retryable
    };
    let mut err = Error::new(kind, format!("cannot connect to {url}: {advice}"));
    err.code = base.code;
    err
}
