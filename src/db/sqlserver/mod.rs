//! SQL Server driver: tiberius (TDS 7.3 over rustls) on tokio, behind a
//! small deadpool pool (no pool adapter supports tiberius 0.13).
//!
//! # Connection URL
//!
//! `sqlserver://user:password@host:1433/database` (or `mssql://`); the port
//! defaults to 1433, the database to the login's default database. User,
//! password and database are percent-decoded. SQL Server authentication
//! only (no Windows or Entra ID logins in this build); a named instance is
//! reached by its port (no SQL Browser lookup). Query options:
//!
//! | option | values | default |
//! |---|---|---|
//! | `encrypt` | `on` (encrypt everything if the server can), `required` (refuse a server that cannot), `strict` (TDS 8.0: TLS before the prelogin), `off` (encrypt the login only, unless the server forces encryption) | `on` |
//! | `trust_server_certificate` | `true`: accept any server certificate (self-signed ones: the connection is encrypted, the server is not authenticated) | `false` |
//! | `trust_server_certificate_ca` | a PEM/DER file of the CA that signed the server's certificate | the system's trust store |
//! | `application_name` | shown in `sys.dm_exec_sessions` | `rowferry` |
//! | `connect_timeout` | seconds for TCP connect, TLS and login | 15 |
//! | `bulk_load` | `false`: a copy into this server writes with multi-row INSERTs instead of TDS bulk load (see `dialect::sqlserver::StagedInsert`) | `true` |
//!
//! The certificate is always checked unless `trust_server_certificate=true`
//! (SQL Server runs TLS for the login even with `encrypt=off`): what ODBC
//! Driver 18 and `sqlcmd` do (their `-C` is this option).
//!
//! # Sessions
//!
//! Every connection starts with one batch: `SET LOCK_TIMEOUT` (from
//! `--lock-timeout`), `XACT_ABORT ON` (an error or a cancelled statement
//! rolls the whole transaction back), the ANSI settings that indexed
//! views, computed-column indexes and filtered indexes require, `LANGUAGE
//! us_english` and `DATEFORMAT ymd` (English messages, ISO text dates),
//! `NOCOUNT OFF` (row counts), `TEXTSIZE 2147483647` (a TDS client that
//! does not set it gets nvarchar(max) values cut at 4 KB), READ COMMITTED
//! and `DEADLOCK_PRIORITY LOW` (rowferry retries a deadlocked chunk; the
//! application should not have to).
//!
//! Statements go as `sp_executesql` (tiberius numbers parameters `@P1`,
//! `@P2`, ... and sends them as NVARCHAR), so a `SET IDENTITY_INSERT`
//! inside one ends with the call. `Session::transaction` runs BEGIN TRAN
//! ... COMMIT (one statement: autocommit), `IF @@TRANCOUNT > 0 ROLLBACK`
//! after an error; a connection that may be left inside a transaction is
//! never reused (the pool checks `@@TRANCOUNT` before lending one again).
//!
//! # Statement timeout
//!
//! SQL Server has no server-side statement timeout: each call is bounded
//! on the client (`--statement-timeout`). When it expires the driver sends
//! an Attention (the server aborts the batch and, with XACT_ABORT ON, rolls
//! the transaction back), then closes the connection. If the Attention
//! cannot be sent or is not answered within a few seconds, the server
//! goes on running the statement, holding its locks, until it notices
//! the closed connection (when it next writes to it): a caveat of every
//! SQL Server client.
//!
//! # Errors
//!
//! `Error::code` is the server's error number (`"1205"`); a client-side
//! statement timeout is `"HYT00"` (ODBC's). Deadlocks (1205), lock
//! timeouts (1222), snapshot and in-memory OLTP conflicts, Azure SQL's
//! transient errors and lost connections are retryable; duplicate keys
//! (2627, 2601) carry the index's name. Informational messages (severity
//! 10 and below, such as sp_rename's caution) are not errors.

use super::{Database, Row, Session, SessionSettings, Statement};
use crate::dialect::Dialect;
use crate::dialect::signals::NamedRow;
use crate::dialect::sqlserver::{SLICE_ROWS, SqlServer, StagedInsert};
use crate::error::{Error, ErrorKind, Result};
use crate::url::{DbUrl, scrub};
use async_trait::async_trait;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, Query, TokenRow};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type Conn = Client<Compat<TcpStream>>;

const DEFAULT_PORT: u16 = 1433;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a pooled connection's health check, a rollback after an
/// error, or an Attention after a timeout may take.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// ODBC's SQLSTATE for "timeout expired": the code of a statement that
/// ran longer than `--statement-timeout` (SQL Server has no error number
/// for a client's timeout).
pub const STATEMENT_TIMEOUT_CODE: &str = "HYT00";

/// `encrypt=` in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encrypt {
    /// Encrypt the login only (everything if the server forces it).
    Off,
    /// Encrypt everything (the default).
    On,
    /// Encrypt everything; a server that cannot is refused.
    Required,
    /// TDS 8.0: TLS before the prelogin.
    Strict,
}

impl Encrypt {
    fn level(self) -> EncryptionLevel {
        match self {
            Encrypt::Off => EncryptionLevel::Off,
            Encrypt::On => EncryptionLevel::On,
            Encrypt::Required => EncryptionLevel::Required,
            Encrypt::Strict => EncryptionLevel::Strict,
        }
    }
}

/// Everything a connection needs from the URL but the password (which
/// never appears in `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// None: the login's default database.
    pub(crate) database: Option<String>,
    pub(crate) user: String,
    pub(crate) encrypt: Encrypt,
    pub(crate) trust_server_certificate: bool,
    pub(crate) ca_file: Option<String>,
    pub(crate) application_name: String,
    pub(crate) connect_timeout: Duration,
    /// Copies into this server may use TDS bulk load.
    pub(crate) bulk_load: bool,
}

/// The password, decoded, and the forms to scrub from any message.
#[derive(Clone, Default)]
struct Secret {
    password: String,
    /// As written in the URL (percent-encoded), if it differs.
    raw: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    fn scrub(&self, text: &str) -> String {
        let text = scrub(text, Some(&self.password));
        scrub(&text, self.raw.as_deref())
    }
}

const KNOWN_OPTIONS: &str = "encrypt, trust_server_certificate, trust_server_certificate_ca, \
                             application_name, connect_timeout, bulk_load";

/// Percent-decode a URL part; None if the bytes are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn yes_no(key: &str, value: &str, url: &DbUrl) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(Error::input(format!(
            "{url}: `{key}={value}` is not understood; write {key}=true or {key}=false"
        ))),
    }
}

impl Options {
    /// The connection settings a `sqlserver://` URL describes, and its
    /// password.
    fn from_url(url: &DbUrl) -> Result<(Options, Secret)> {
        let bad = |what: String| {
            Error::input(format!(
                "cannot use connection URL {url}: {what}. Expected \
                 sqlserver://user:password@host:1433/database[?encrypt=on&trust_server_certificate=true]"
            ))
        };
        let parsed = url::Url::parse(url.secret_str()).map_err(|e| bad(e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?;
        // An IPv6 literal comes bracketed.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_string();
        let user = percent_decode(parsed.username())
            .ok_or_else(|| bad("the user name is not UTF-8".into()))?;
        if user.is_empty() {
            return Err(bad(
                "it names no user (SQL Server authentication needs user:password@; Windows and \
                 Entra ID logins are not supported in this build)"
                    .into(),
            ));
        }
        let raw_password = parsed.password().unwrap_or("");
        let password =
            percent_decode(raw_password).ok_or_else(|| bad("the password is not UTF-8".into()))?;
        let secret = Secret {
            raw: (raw_password != password).then(|| raw_password.to_string()),
            password,
        };
        let path = parsed.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(bad(format!(
                "the path names more than a database (`/{path}`); a named instance is reached \
                 by its port"
            )));
        }
        let database =
            percent_decode(path).ok_or_else(|| bad("the database name is not UTF-8".into()))?;
        let mut options = Options {
            host,
            port: parsed.port().unwrap_or(DEFAULT_PORT),
            database: (!database.is_empty()).then_some(database),
            user,
            encrypt: Encrypt::On,
            trust_server_certificate: false,
            ca_file: None,
            application_name: "rowferry".into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            bulk_load: true,
        };
        for (key, value) in parsed.query_pairs() {
            let normalized: String = key
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .collect::<String>()
                .to_ascii_lowercase();
            match normalized.as_str() {
                "encrypt" => {
                    options.encrypt = match value.to_ascii_lowercase().as_str() {
                        "on" | "true" | "yes" | "optional" => Encrypt::On,
                        "off" | "false" | "no" => Encrypt::Off,
                        "required" | "mandatory" => Encrypt::Required,
                        "strict" => Encrypt::Strict,
                        _ => {
                            return Err(bad(format!(
                                "`encrypt={value}` is not one of on, required, strict, off"
                            )));
                        }
                    }
                }
                "trustservercertificate" => {
                    options.trust_server_certificate = yes_no(&key, &value, url)?;
                }
                "trustservercertificateca" => options.ca_file = Some(value.into_owned()),
                "applicationname" | "appname" => options.application_name = value.into_owned(),
                "bulkload" => options.bulk_load = yes_no(&key, &value, url)?,
                "connecttimeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        bad(format!(
                            "`connect_timeout={value}` is not a number of seconds"
                        ))
                    })?;
                    options.connect_timeout = Duration::from_secs(secs.max(1));
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option `{key}` (known: {KNOWN_OPTIONS})"
                    )));
                }
            }
        }
        if options.trust_server_certificate && options.ca_file.is_some() {
            return Err(bad(
                "trust_server_certificate=true accepts any certificate, \
                 trust_server_certificate_ca checks it against a CA: give one of them"
                    .into(),
            ));
        }
        Ok((options, secret))
    }

    /// The tiberius configuration: no per-round-trip command timeout
    /// (each call is bounded by `--statement-timeout` here instead, and an
    /// index build may rightly run for hours without sending a byte).
    fn config(&self, secret: &Secret) -> Config {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        if let Some(database) = &self.database {
            config.database(database);
        }
        config.application_name(&self.application_name);
        config.authentication(AuthMethod::sql_server(&self.user, &secret.password));
        config.encryption(self.encrypt.level());
        if self.trust_server_certificate {
            config.trust_cert();
        } else if let Some(ca) = &self.ca_file {
            config.trust_cert_ca(ca);
        }
        config.handshake_timeout(Some(self.connect_timeout));
        config.command_timeout(None);
        config
    }
}

/// The first batch of every connection (see the module's documentation).
/// A zero lock timeout means none, as on PostgreSQL (SQL Server's own 0
/// would be "never wait", its -1 is "wait as long as it takes").
fn setup_batch(settings: &SessionSettings) -> String {
    let lock_timeout = match settings.lock_timeout.as_millis() {
        0 => -1,
        ms => i64::try_from(ms.min(i32::MAX as u128)).unwrap_or(i64::from(i32::MAX)),
    };
    format!(
        "SET LANGUAGE us_english; SET DATEFORMAT ymd; SET LOCK_TIMEOUT {}; SET XACT_ABORT ON; \
         SET ANSI_NULLS ON; SET ANSI_PADDING ON; SET ANSI_WARNINGS ON; SET ARITHABORT ON; \
         SET CONCAT_NULL_YIELDS_NULL ON; SET QUOTED_IDENTIFIER ON; SET NUMERIC_ROUNDABORT OFF; \
         SET ANSI_NULL_DFLT_ON ON; SET IMPLICIT_TRANSACTIONS OFF; SET NOCOUNT OFF; \
         SET TEXTSIZE 2147483647; SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET DEADLOCK_PRIORITY LOW",
        lock_timeout
    )
}

/// How to open a connection: shared by the pool and dedicated sessions.
struct Opener {
    options: Options,
    secret: Secret,
    setup: String,
    url: DbUrl,
}

impl Opener {
    async fn open(&self) -> Result<Conn> {
        let mut config = self.options.config(&self.secret);
        let mut addr = (self.options.host.clone(), self.options.port);
        let mut redirected = false;
        let mut client = loop {
            let tcp = tokio::time::timeout(
                self.options.connect_timeout,
                TcpStream::connect((addr.0.as_str(), addr.1)),
            )
            .await
            .map_err(|_| {
                connect_error(
                    &self.url,
                    &tiberius::error::Error::Io {
                        kind: std::io::ErrorKind::TimedOut,
                        message: format!(
                            "no answer from {}:{} within {:?}",
                            addr.0, addr.1, self.options.connect_timeout
                        ),
                    },
                    &self.secret,
                )
            })?
            .map_err(|e| connect_error(&self.url, &e.into(), &self.secret))?;
            let _ = tcp.set_nodelay(true);
            match Client::connect(config.clone(), tcp.compat_write()).await {
                Ok(client) => break client,
                // Azure SQL's gateway sends the client to the database's
                // node: once.
                Err(tiberius::error::Error::Routing { host, port }) if !redirected => {
                    redirected = true;
                    config.host(&host);
                    config.port(port);
                    addr = (host, port);
                }
                Err(e) => return Err(connect_error(&self.url, &e, &self.secret)),
            }
        };
        let setup = async {
            client
                .simple_query(self.setup.as_str())
                .await?
                .into_results()
                .await
        };
        match tokio::time::timeout(HOUSEKEEPING, setup).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(server_error(&e, &self.secret)
                .context(format!("setting up a session on {}", self.url))),
            Err(_) => Err(Error::new(
                ErrorKind::Retryable,
                format!(
                    "setting up a session on {}: no answer within {HOUSEKEEPING:?}",
                    self.url
                ),
            )),
        }
    }
}

/// The pool's manager: opens connections and checks them before lending
/// one again.
pub struct Manager {
    opener: Arc<Opener>,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = Error;

    async fn create(&self) -> Result<Conn> {
        self.opener.open().await
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<Error> {
        // Alive, and not left inside a transaction.
        let ping = async {
            conn.simple_query("SELECT @@TRANCOUNT")
                .await?
                .into_row()
                .await
        };
        match tokio::time::timeout(HOUSEKEEPING, ping).await {
            Ok(Ok(Some(row))) if cell_text(&row, 0).ok().flatten().as_deref() == Some("0") => {
                Ok(())
            }
            Ok(Ok(_)) => Err(RecycleError::message("left inside a transaction")),
            Ok(Err(e)) => Err(RecycleError::Backend(server_error(&e, &self.opener.secret))),
            Err(_) => Err(RecycleError::message("no answer to a health check")),
        }
    }
}

pub struct MsDatabase {
    pool: managed::Pool<Manager>,
    opener: Arc<Opener>,
    statement_timeout: Option<Duration>,
}

impl MsDatabase {
    pub fn new(url: &DbUrl, settings: &SessionSettings) -> Result<Self> {
        let (options, secret) = Options::from_url(url)?;
        let opener = Arc::new(Opener {
            options,
            secret,
            setup: setup_batch(settings),
            url: url.clone(),
        });
        let pool = managed::Pool::builder(Manager {
            opener: opener.clone(),
        })
        .max_size(settings.pool_size.max(1))
        .build()
        .map_err(|e| Error::fatal(format!("cannot build the connection pool: {e}")))?;
        Ok(MsDatabase {
            pool,
            opener,
            statement_timeout: (!settings.statement_timeout.is_zero())
                .then_some(settings.statement_timeout),
        })
    }

    fn session_of(&self, held: Held) -> Box<dyn Session> {
        Box::new(MsSession {
            conn: Some(held),
            timeout: self.statement_timeout,
            secret: self.opener.secret.clone(),
            bulk_load: self.opener.options.bulk_load,
        })
    }
}

#[async_trait]
impl Database for MsDatabase {
    fn dialect(&self) -> &'static dyn Dialect {
        &SqlServer
    }

    async fn session(&self) -> Result<Box<dyn Session>> {
        let conn = self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => e,
            other => Error::new(
                ErrorKind::Retryable,
                format!(
                    "cannot get a connection to {} from the pool: {other}",
                    self.opener.url
                ),
            ),
        })?;
        Ok(self.session_of(Held::Pooled(Box::new(conn))))
    }

    async fn dedicated_session(&self) -> Result<Box<dyn Session>> {
        let conn = self.opener.open().await?;
        Ok(self.session_of(Held::Dedicated(Box::new(conn))))
    }
}

enum Held {
    Pooled(Box<managed::Object<Manager>>),
    Dedicated(Box<Conn>),
}

impl Held {
    fn client(&mut self) -> &mut Conn {
        match self {
            Held::Pooled(c) => c,
            Held::Dedicated(c) => c,
        }
    }
}

struct MsSession {
    /// None once the connection was closed after an error that may have
    /// left it unusable.
    conn: Option<Held>,
    timeout: Option<Duration>,
    secret: Secret,
    /// The URL allows TDS bulk load (`bulk_load`).
    bulk_load: bool,
}

/// `sql` (sp_executesql) with `params` bound as NVARCHAR @P1, @P2, ...
fn bound<'a>(sql: &'a str, params: &'a [String]) -> Query<'a> {
    let mut query = Query::new(sql);
    for p in params {
        query.bind(p.as_str());
    }
    query
}

/// A call that ran longer than allowed.
struct TimedOut;

async fn within<F: Future>(limit: Option<Duration>, f: F) -> Result<F::Output, TimedOut> {
    match limit {
        None => Ok(f.await),
        Some(limit) => tokio::time::timeout(limit, f).await.map_err(|_| TimedOut),
    }
}

impl MsSession {
    fn client(&mut self) -> Result<&mut Conn> {
        match self.conn.as_mut() {
            Some(held) => Ok(held.client()),
            None => Err(Error::new(
                ErrorKind::Retryable,
                "the connection was closed after an earlier error (a timeout or a lost \
                 connection); retry on a new one",
            )),
        }
    }

    /// Close the connection for good: never back into the pool.
    fn discard(&mut self) {
        match self.conn.take() {
            Some(Held::Pooled(object)) => drop(managed::Object::take(*object)),
            Some(Held::Dedicated(conn)) => drop(conn),
            None => {}
        }
    }

    /// The outcome of one bounded call: a server error as the crate's
    /// error (the connection closed if it may be broken), a timeout
    /// cancelled on the server and the connection closed.
    async fn settle<T>(
        &mut self,
        outcome: Result<Result<T, tiberius::error::Error>, TimedOut>,
        sql: &str,
    ) -> Result<T> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    self.discard();
                }
                Err(server_error(&e, &self.secret))
            }
            Err(TimedOut) => {
                // Ask the server to stop (it aborts the batch and, with
                // XACT_ABORT ON, rolls the transaction back), then close
                // the connection whatever it answered: the response may be
                // only partly read.
                if let Some(held) = self.conn.as_mut() {
                    let _ = tokio::time::timeout(HOUSEKEEPING, held.client().cancel_query()).await;
                }
                self.discard();
                Err(self.timed_out(sql))
            }
        }
    }

    /// `sql` ran longer than `--statement-timeout`.
    fn timed_out(&self, sql: &str) -> Error {
        let limit = self.timeout.unwrap_or_default();
        let mut e = Error::new(
            ErrorKind::Fatal,
            format!(
                "a statement ran longer than --statement-timeout ({}); it was cancelled and its \
                 transaction rolled back. Raise --statement-timeout, or lower --max-chunk-rows / \
                 --chunk-time, then rerun to resume. Statement: {}",
                humantime::format_duration(limit),
                shorten(sql)
            ),
        );
        e.code = Some(STATEMENT_TIMEOUT_CODE.into());
        e
    }

    /// Run `sql` with `params` (sp_executesql); one row count per
    /// statement the server reported.
    async fn exec(&mut self, sql: &str, params: &[String]) -> Result<Vec<u64>> {
        let limit = self.timeout;
        let outcome = {
            let conn = self.client()?;
            within(limit, async {
                bound(sql, params)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected().to_vec())
            })
            .await
        };
        self.settle(outcome, sql).await
    }

    /// Run a batch as it is (no sp_executesql: its SETs last for the
    /// session), results discarded.
    async fn batch(&mut self, sql: &str, limit: Option<Duration>) -> Result<()> {
        let outcome = {
            let conn = self.client()?;
            within(limit, async {
                conn.simple_query(sql)
                    .await?
                    .into_results()
                    .await
                    .map(|_| ())
            })
            .await
        };
        self.settle(outcome, sql).await
    }

    /// After an error inside a transaction: roll back what is left of it
    /// (XACT_ABORT has usually done so), or close the connection.
    async fn roll_back(&mut self) {
        if self.conn.is_none() {
            return;
        }
        if self
            .batch(
                "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION",
                Some(HOUSEKEEPING),
            )
            .await
            .is_err()
        {
            self.discard();
        }
    }

    /// `rows` by TDS bulk load into `load`'s stage (created by this
    /// session's transaction): every cell as nvarchar text, NULL as NULL.
    /// Rows the server loaded. A timeout closes the connection without an
    /// Attention: the server is reading a bulk stream that will not end,
    /// and a closed connection rolls its transaction back at once.
    async fn bulk_load(&mut self, load: &StagedInsert, rows: &[Row]) -> Result<u64> {
        let limit = self.timeout;
        let columns: Vec<&str> = load.stage_columns.iter().map(String::as_str).collect();
        let outcome = {
            let conn = self.client()?;
            within(limit, async {
                let mut bulk = conn.bulk_insert_columns(load.stage, &columns).await?;
                for row in rows {
                    let mut token = TokenRow::with_capacity(row.len());
                    for cell in row {
                        token.push(ColumnData::String(cell.as_deref().map(Cow::Borrowed)));
                    }
                    bulk.send(token).await?;
                }
                bulk.finalize().await.map(|r| r.total())
            })
            .await
        };
        let sql = format!("INSERT BULK {}", load.stage);
        match outcome {
            Err(TimedOut) => {
                self.discard();
                Err(self.timed_out(&sql))
            }
            done => self.settle(done, &sql).await,
        }
    }

    /// See `Session::transaction_with_bulk_load`.
    async fn bulk_transaction_inner(
        &mut self,
        before: &[Statement],
        load: &StagedInsert,
        rows: &[Row],
    ) -> Result<u64> {
        self.batch("BEGIN TRANSACTION", self.timeout).await?;
        for s in before {
            self.exec(&s.sql, &s.params).await?;
        }
        self.batch(&load.create_stage, self.timeout).await?;
        let loaded = self.bulk_load(load, rows).await?;
        if let Some((on, _)) = &load.identity_insert {
            self.batch(on, self.timeout).await?;
        }
        // Slice by slice; at least one, so that even no rows compile the
        // INSERT with its conversions.
        let mut inserted = 0;
        let mut from = 0;
        loop {
            let to = from + SLICE_ROWS;
            // The INSERT's own count comes last: its triggers' come before.
            let reported = self
                .exec(&load.insert, &[from.to_string(), to.to_string()])
                .await?;
            inserted += reported.last().copied().unwrap_or(0);
            if to >= loaded {
                break;
            }
            from = to;
        }
        if let Some((_, off)) = &load.identity_insert {
            self.batch(off, self.timeout).await?;
        }
        if loaded != rows.len() as u64 || inserted != loaded {
            return Err(Error::fatal(format!(
                "the target took {loaded} of {} rows by bulk load and inserted {inserted} of \
                 them; nothing was committed. Add bulk_load=false to the target URL to copy \
                 with INSERT instead, and report this",
                rows.len()
            )));
        }
        self.batch(&load.drop_stage, self.timeout).await?;
        // No rows: a rehearsal (the copy's probe), undone.
        let end = if rows.is_empty() {
            "ROLLBACK TRANSACTION"
        } else {
            "COMMIT TRANSACTION"
        };
        self.batch(end, self.timeout).await?;
        Ok(inserted)
    }

    async fn transaction_inner(&mut self, statements: &[Statement]) -> Result<Vec<u64>> {
        self.batch("BEGIN TRANSACTION", self.timeout).await?;
        let mut counts = Vec::with_capacity(statements.len());
        for s in statements {
            let reported = self.exec(&s.sql, &s.params).await?;
            counts.push(statement_count(&s.sql, &reported));
        }
        self.batch("COMMIT TRANSACTION", self.timeout).await?;
        Ok(counts)
    }
}

#[async_trait]
impl Session for MsSession {
    async fn query(&mut self, sql: &str, params: &[String]) -> Result<Vec<Row>> {
        let limit = self.timeout;
        let outcome = {
            let conn = self.client()?;
            within(limit, async {
                bound(sql, params).query(conn).await?.into_results().await
            })
            .await
        };
        let results = self.settle(outcome, sql).await?;
        Ok(results
            .iter()
            .flatten()
            .map(|row| row.cells().map(|(_, data)| data_text(data)).collect())
            .collect())
    }

    async fn query_named(&mut self, sql: &str) -> Result<Vec<NamedRow>> {
        let limit = self.timeout;
        let outcome = {
            let conn = self.client()?;
            within(limit, async {
                conn.simple_query(sql).await?.into_results().await
            })
            .await
        };
        let results = self.settle(outcome, sql).await?;
        Ok(results
            .iter()
            .flatten()
            .map(|row| {
                row.cells()
                    .map(|(column, data)| (column.name().to_string(), data_text(data)))
                    .collect()
            })
            .collect())
    }

    async fn check(&mut self, sql: &str) -> Result<()> {
        // 1. Compile without running: the whole batch is compiled before
        //    SET NOEXEC ON runs (a syntax error, an unknown column of an
        //    existing table or an unknown function fails it, and nothing
        //    ran); then nothing more runs until SET NOEXEC OFF.
        let sql = sql.trim().trim_end_matches(';');
        let declared = parameter_declarations(sql);
        let compile = format!(
            "SET NOEXEC ON; {}{sql}; SET NOEXEC OFF;",
            declared
                .as_ref()
                .map(|d| format!("DECLARE {d}; "))
                .unwrap_or_default()
        );
        let compiled = self.batch(&compile, self.timeout).await;
        if self.conn.is_some() {
            // Whatever happened, the session runs statements again.
            if self
                .batch("SET NOEXEC OFF", Some(HOUSEKEEPING))
                .await
                .is_err()
            {
                self.discard();
            }
        }
        compiled.or_else(|e| identity_insert_only(e, sql))?;
        // 2. Names: a table that does not exist is not an error when a
        //    batch is compiled (deferred name resolution), only when the
        //    statement runs. sp_describe_first_result_set binds every
        //    statement of the batch without running it.
        let limit = self.timeout;
        let outcome = {
            let conn = self.client()?;
            within(limit, async {
                let mut query =
                    Query::new("EXEC sys.sp_describe_first_result_set @tsql = @P1, @params = @P2");
                query.bind(sql);
                query.bind(declared.as_deref());
                query.query(conn).await?.into_results().await.map(|_| ())
            })
            .await
        };
        match self.settle(outcome, "sp_describe_first_result_set").await {
            Ok(()) => Ok(()),
            // 11500-11599: the procedure could not describe the batch (a
            // temporary table, dynamic SQL...), which says nothing about
            // the statement; what the compile above found stands.
            Err(e)
                if e.code
                    .as_deref()
                    .and_then(|c| c.parse::<u32>().ok())
                    .is_some_and(|c| (11500..11600).contains(&c)) =>
            {
                Ok(())
            }
            Err(e) => identity_insert_only(e, sql),
        }
    }

    async fn transaction(&mut self, statements: &[Statement]) -> Result<Vec<u64>> {
        if let [only] = statements {
            // A single statement is its own transaction (autocommit).
            let reported = self.exec(&only.sql, &only.params).await?;
            return Ok(vec![statement_count(&only.sql, &reported)]);
        }
        let outcome = self.transaction_inner(statements).await;
        if outcome.is_err() {
            self.roll_back().await;
        }
        outcome
    }

    async fn execute(&mut self, sql: &str) -> Result<u64> {
        // Autocommit, outside any transaction (index builds and drops).
        let reported = self.exec(sql, &[]).await?;
        Ok(statement_count(sql, &reported))
    }

    async fn transaction_with_bulk_load(
        &mut self,
        before: &[Statement],
        load: &StagedInsert,
        rows: &[Row],
    ) -> Result<u64> {
        if !self.bulk_load {
            let mut e = Error::input(BULK_LOAD_OFF);
            e.code = Some(BULK_LOAD_OFF_CODE.into());
            return Err(e);
        }
        if let Some(row) = rows.iter().find(|r| r.len() != load.stage_columns.len()) {
            return Err(Error::fatal(format!(
                "internal: a row of {} values for a stage of {} columns",
                row.len(),
                load.stage_columns.len()
            )));
        }
        if !fits_bulk_load(rows) {
            return Err(Error::fatal(format!(
                "internal: a value of more than {MAX_BULK_VALUE_UNITS} UTF-16 code units cannot \
                 go by bulk load; such a chunk is written with INSERT"
            )));
        }
        let outcome = self.bulk_transaction_inner(before, load, rows).await;
        if outcome.is_err() {
            // Closing the connection rolls the transaction back with its
            // stage, and leaves no half-sent bulk stream to read past.
            self.discard();
        }
        outcome
    }
}

/// Why a copy does not use bulk load: the URL said so (the message of
/// the error whose code is `BULK_LOAD_OFF_CODE`).
pub const BULK_LOAD_OFF: &str = "bulk_load=false in the target URL";
pub const BULK_LOAD_OFF_CODE: &str = "rowferry:bulk_load=false";

/// The longest text value, in UTF-16 code units, that tiberius 0.13 bulk
/// loads into an nvarchar(max) column: it checks every value against
/// 65,535 bytes, max or not.
pub const MAX_BULK_VALUE_UNITS: usize = 32_767;

/// Whether every value of `rows` can go by bulk load (see
/// `MAX_BULK_VALUE_UNITS`; a value's UTF-8 bytes are never fewer than its
/// UTF-16 code units, so most are settled by their length).
pub fn fits_bulk_load(rows: &[Row]) -> bool {
    rows.iter().flatten().flatten().all(|v| {
        v.len() <= MAX_BULK_VALUE_UNITS || v.encode_utf16().count() <= MAX_BULK_VALUE_UNITS
    })
}

/// An error from checking a statement that writes an identity column
/// with `SET IDENTITY_INSERT ... ON` around it, which a check does not
/// run: "explicit value for the identity column" (544, 8101) is not the
/// statement's fault.
fn identity_insert_only(e: Error, sql: &str) -> Result<()> {
    let identity = matches!(e.code.as_deref(), Some("544" | "8101"));
    if identity && sql.trim_start().starts_with("SET IDENTITY_INSERT ") {
        Ok(())
    } else {
        Err(e)
    }
}

/// `@P1 nvarchar(max), @P2 nvarchar(max), ...` for the parameters `sql`
/// references, None if it references none.
fn parameter_declarations(sql: &str) -> Option<String> {
    let n = max_parameter(sql);
    (n > 0).then(|| {
        (1..=n)
            .map(|i| format!("@P{i} nvarchar(max)"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The highest `@Pn` in `sql` outside string literals, quoted
/// identifiers and comments; 0 if none.
fn max_parameter(sql: &str) -> usize {
    let chars: Vec<char> = sql.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut max = 0;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' | '"' | '[' => {
                let close = if chars[i] == '[' { ']' } else { chars[i] };
                i += 1;
                while let Some(c) = at(i) {
                    i += 1;
                    if c == close {
                        if at(i) == Some(close) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if at(i + 1) == Some('-') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && at(i + 1) == Some('/')) {
                    i += 1;
                }
                i += 2;
            }
            '@' if at(i + 1) == Some('P')
                && at(i + 2).is_some_and(|c| c.is_ascii_digit())
                && (i == 0 || !is_name_char(chars[i - 1])) =>
            {
                let mut j = i + 2;
                while at(j).is_some_and(|c| c.is_ascii_digit()) {
                    j += 1;
                }
                if !at(j).is_some_and(is_name_char) {
                    let n: usize = chars[i + 2..j]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .unwrap_or(0);
                    max = max.max(n);
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    max
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$')
}

/// The rows a statement changed, from the counts the server reported for
/// its batch: the last one, which is the statement's own (a trigger's
/// counts come before it), except after the `SET IDENTITY_INSERT ... OFF`
/// that closes an identity-writing batch.
fn statement_count(sql: &str, reported: &[u64]) -> u64 {
    let trailing = usize::from(sql.trim_start().starts_with("SET IDENTITY_INSERT "));
    reported
        .len()
        .checked_sub(1 + trailing)
        .and_then(|i| reported.get(i))
        .copied()
        .unwrap_or(0)
}

fn shorten(sql: &str) -> String {
    const MAX: usize = 2000;
    match sql.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &sql[..cut]),
        None => sql.to_string(),
    }
}

/// Whether a connection that returned `e` must not be used again.
fn breaks_connection(e: &tiberius::error::Error) -> bool {
    match e {
        tiberius::error::Error::Server(te) => te.class() >= 20,
        tiberius::error::Error::Io { .. }
        | tiberius::error::Error::Protocol(_)
        | tiberius::error::Error::Tls(_)
        | tiberius::error::Error::Routing { .. } => true,
        _ => false,
    }
}

/// Server error numbers a retry can get past: 1205 deadlock victim, 1222
/// lock request time-out, 3960 snapshot update conflict, 41301/41302/
/// 41305/41325/41839 in-memory OLTP conflicts, 8645 memory grant wait,
/// 976/978/983 availability replica not (yet) accessible, 6005 shutdown in
/// progress, 233/10053/10054/10060 transport, and Azure SQL's transient
/// 40197, 40501, 40613, 49918-49920, 10928, 10929, 4221.
fn retryable_code(code: u32) -> bool {
    matches!(
        code,
        1205 | 1222
            | 3960
            | 41301
            | 41302
            | 41305
            | 41325
            | 41839
            | 8645
            | 976
            | 978
            | 983
            | 6005
            | 233
            | 10053
            | 10054
            | 10060
            | 40197
            | 40501
            | 40613
            | 49918
            | 49919
            | 49920
            | 10928
            | 10929
            | 4221
    )
}

/// A server error (number, severity, text) as the crate's error.
pub(crate) fn classify(code: u32, class: u8, message: &str) -> Error {
    let kind = if retryable_code(code) {
        ErrorKind::Retryable
    } else {
        ErrorKind::Fatal
    };
    let mut text = format!("{message} (SQL Server error {code}, severity {class})");
    if code == 1222 {
        text.push_str("; another transaction held a lock longer than --lock-timeout");
    }
    let mut err = Error::new(kind, text);
    err.code = Some(code.to_string());
    if matches!(code, 2627 | 2601) {
        err.duplicate_key = Some(duplicate_key_name(code, message).unwrap_or_else(|| "?".into()));
    }
    err
}

/// The index or constraint a duplicate key error names:
/// 2627 "Violation of PRIMARY KEY constraint 'PK_t'. Cannot insert
/// duplicate key in object 'dbo.t'. ..." and 2601 "Cannot insert duplicate
/// key row in object 'dbo.t' with unique index 'ix_t'. ...". (Names are
/// printed as they are: one may hold a quote, so the text after it is
/// matched too.)
pub(crate) fn duplicate_key_name(code: u32, message: &str) -> Option<String> {
    let (start, ends): (&str, &[&str]) = match code {
        2627 => (" constraint '", &["'. Cannot insert", "'."]),
        2601 => (" with unique index '", &["'. The duplicate key", "'."]),
        _ => return None,
    };
    let rest = &message[message.find(start)? + start.len()..];
    let end = ends
        .iter()
        .find_map(|e| rest.find(e))
        .or_else(|| rest.rfind('\''))?;
    Some(rest[..end].to_string())
}

/// A driver error as the crate's error, never with the password.
fn server_error(e: &tiberius::error::Error, secret: &Secret) -> Error {
    use tiberius::error::Error as E;
    let mut err = match e {
        E::Server(te) => classify(te.code(), te.class(), te.message()),
        E::Io { message, .. } => Error::new(
            ErrorKind::Retryable,
            format!("connection problem: {message}"),
        ),
        // A response that could not be read, or a connection left out of
        // step: retried on a new connection.
        E::Protocol(message) => Error::new(
            ErrorKind::Retryable,
            format!("connection problem: {message}"),
        ),
        E::Tls(message) => Error::fatal(format!("TLS: {message}")),
        E::Routing { host, port } => Error::fatal(format!(
            "the server redirected the connection to {host}:{port} a second time"
        )),
        other => Error::fatal(format!("SQL Server driver: {other}")),
    };
    err.message = secret.scrub(&err.message);
    err
}

/// A failed connection, told with the fix in mind and never with the
/// password. Refused logins and TLS problems are input errors; an
/// unreachable server is retryable mid-job (`db::connect` makes it an input
/// error at startup).
fn connect_error(url: &DbUrl, e: &tiberius::error::Error, secret: &Secret) -> Error {
    let base = server_error(e, secret);
    let user = percent_decode(url.user()).unwrap_or_default();
    let (kind, advice) = match (e, base.code.as_deref()) {
        (_, Some("18456")) => (
            ErrorKind::Input,
            format!(
                "login failed for user `{user}`; check the user name and the password in the \
                 URL (and that the server accepts SQL Server logins: mixed mode \
                 authentication)"
            ),
        ),
        (_, Some("18470" | "18486" | "18487" | "18488" | "18452")) => (
            ErrorKind::Input,
            format!("{}; check the login `{user}`", base.message),
        ),
        (_, Some("4060" | "916")) => (
            ErrorKind::Input,
            format!(
                "{}; check the database name at the end of the URL, and that `{user}` may \
                 use it",
                base.message
            ),
        ),
        (_, Some(_)) => (base.kind, base.message.clone()),
        (tiberius::error::Error::Tls(_), None) => (
            ErrorKind::Input,
            format!(
                "{}; if the server's certificate is self-signed (the default of a new SQL \
                 Server, and of its Docker image), add trust_server_certificate=true to the \
                 URL (the connection stays encrypted, the server is not authenticated) or \
                 trust_server_certificate_ca=/path/to/ca.pem",
                base.message
            ),
        ),
        (tiberius::error::Error::Protocol(m), None) if m.contains("encryption level") => (
            ErrorKind::Input,
            format!(
                "{}; the server and the URL's encrypt= do not agree: a server without a \
                 certificate needs encrypt=off, a server that forces encryption cannot take \
                 encrypt=off",
                base.message
            ),
        ),
        (_, None) => (
            ErrorKind::Retryable,
            format!(
                "{}; check that the server is running and that host and port are right \
                 (SQL Server listens on 1433 unless configured otherwise)",
                base.message
            ),
        ),
    };
    let mut err = Error::new(kind, format!("cannot connect to {url}: {advice}"));
    err.code = base.code;
    err
}

/// Cell `i` of `row` as text, whatever its type (rowferry's SQL returns
/// nvarchar; anything else is converted as SQL Server's CONVERT prints it).
fn cell_text(row: &tiberius::Row, i: usize) -> Result<Option<String>> {
    let data = row
        .cells()
        .nth(i)
        .map(|(_, data)| data)
        .ok_or_else(|| Error::fatal(format!("internal: a result row has no column {i}")))?;
    Ok(data_text(data))
}

/// A value as text: strings as they are, numbers in full, bytes as
/// upper-case hex (style 2), uuids in lower case, dates and times ISO
/// with every digit of their precision (style 121).
pub(crate) fn data_text(data: &ColumnData<'_>) -> Option<String> {
    use ColumnData as D;
    match data {
        D::String(v) => v.as_ref().map(|s| s.to_string()),
        D::U8(v) => v.map(|n| n.to_string()),
        D::I16(v) => v.map(|n| n.to_string()),
        D::I32(v) => v.map(|n| n.to_string()),
        D::I64(v) => v.map(|n| n.to_string()),
        D::F32(v) => v.map(|n| n.to_string()),
        D::F64(v) => v.map(|n| n.to_string()),
        D::Bit(v) => v.map(|b| if b { "1" } else { "0" }.to_string()),
        D::Guid(v) => v.map(|g| g.to_string()),
        D::Binary(v) => v.as_ref().map(|b| hex::encode_upper(b.as_ref())),
        D::Numeric(v) => v.map(|n| decimal_text(n.value(), n.scale())),
        D::Xml(v) => v.as_ref().map(|x| x.to_string()),
        D::DateTime(v) => v.map(|dt| {
            // Days since 1900-01-01, and 1/300 s since midnight (printed
            // in milliseconds as the server rounds them: .000, .003, .007).
            let ms = (u64::from(dt.seconds_fragments()) * 1000 + 150) / 300;
            format!(
                "{} {}.{:03}",
                date_text(i64::from(dt.days()) + DAYS_1900),
                clock_text(ms / 1000),
                ms % 1000
            )
        }),
        D::SmallDateTime(v) => v.map(|dt| {
            format!(
                "{} {}",
                date_text(i64::from(dt.days()) + DAYS_1900),
                clock_text(u64::from(dt.seconds_fragments()) * 60)
            )
        }),
        D::Time(v) => v.map(|t| time_text(t.increments(), t.scale())),
        D::Date(v) => v.map(|d| date_text(i64::from(d.days()) + DAYS_0001)),
        D::DateTime2(v) => v.map(|dt| {
            format!(
                "{} {}",
                date_text(i64::from(dt.date().days()) + DAYS_0001),
                time_text(dt.time().increments(), dt.time().scale())
            )
        }),
        D::DateTimeOffset(v) => v.map(|dto| {
            // Sent in UTC with the offset in minutes: shown at the offset.
            let dt = dto.datetime2();
            let scale = dt.time().scale();
            let per_day = 86_400 * 10i128.pow(u32::from(scale));
            let total = (i128::from(dt.date().days()) + i128::from(DAYS_0001)) * per_day
                + i128::from(dt.time().increments())
                + i128::from(dto.offset()) * 60 * 10i128.pow(u32::from(scale));
            let (days, increments) = (total.div_euclid(per_day), total.rem_euclid(per_day));
            let offset = dto.offset();
            format!(
                "{} {} {}{:02}:{:02}",
                date_text(days as i64),
                time_text(increments as u64, scale),
                if offset < 0 { '-' } else { '+' },
                offset.unsigned_abs() / 60,
                offset.unsigned_abs() % 60
            )
        }),
    }
}

/// Days from 1970-01-01 back to 0001-01-01 and to 1900-01-01.
const DAYS_0001: i64 = -719_162;
const DAYS_1900: i64 = -25_567;

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (proleptic Gregorian).
fn date_text(days: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn clock_text(seconds: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `hh:mm:ss[.f...]` of `increments` of 10^-scale s since midnight.
fn time_text(increments: u64, scale: u8) -> String {
    let unit = 10u64.pow(u32::from(scale.min(9)));
    let clock = clock_text(increments / unit);
    if scale == 0 {
        clock
    } else {
        format!(
            "{clock}.{:0width$}",
            increments % unit,
            width = usize::from(scale)
        )
    }
}

/// An exact decimal from its unscaled value and scale.
fn decimal_text(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod bulk_tests;
#[cfg(test)]
mod driver_tests;
#[cfg(test)]
mod fake_tds;

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<(Options, Secret)> {
        Options::from_url(&DbUrl::parse(url)?)
    }

    #[test]
    fn url_maps_to_connection_settings() {
        let (o, secret) = options("sqlserver://sa:RowFerry!2026@db.example/sales").unwrap();
        assert_eq!(
            o,
            Options {
                host: "db.example".into(),
                port: 1433,
                database: Some("sales".into()),
                user: "sa".into(),
                encrypt: Encrypt::On,
                trust_server_certificate: false,
                ca_file: None,
                application_name: "rowferry".into(),
                connect_timeout: Duration::from_secs(15),
                bulk_load: true,
            }
        );
        assert_eq!(secret.password, "RowFerry!2026");
        assert_eq!(o.config(&secret).get_addr(), "db.example:1433");
        assert_eq!(
            o.config(&secret).get_command_timeout(),
            None,
            "calls are bounded by --statement-timeout, not per round trip"
        );

        let (o, secret) = options(
            "mssql://app%40corp:p%40ss%3Aw%2Fd@[::1]:14330/my%20db?encrypt=required&\
             TrustServerCertificate=true&application_name=etl&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(o.host, "::1");
        assert_eq!(o.port, 14330);
        assert_eq!(o.user, "app@corp");
        assert_eq!(o.database.as_deref(), Some("my db"));
        assert_eq!(o.encrypt, Encrypt::Required);
        assert!(o.trust_server_certificate);
        assert_eq!(o.application_name, "etl");
        assert_eq!(o.connect_timeout, Duration::from_secs(3));
        assert_eq!(secret.password, "p@ss:w/d");
        assert_eq!(secret.raw.as_deref(), Some("p%40ss%3Aw%2Fd"));
        assert_eq!(
            o.config(&secret).get_handshake_timeout(),
            Some(Duration::from_secs(3))
        );

        let (o, _) = options("sqlserver://sa:x@h:1/?encrypt=off&bulk_load=false").unwrap();
        assert_eq!((o.database, o.encrypt), (None, Encrypt::Off));
        assert!(!o.bulk_load);
        let (o, _) = options("sqlserver://sa:x@h?encrypt=strict").unwrap();
        assert_eq!(o.encrypt, Encrypt::Strict);
        assert_eq!(Encrypt::On.level(), EncryptionLevel::On);
        assert_eq!(Encrypt::Off.level(), EncryptionLevel::Off);
    }

    #[test]
    fn bad_urls_are_input_errors_without_the_password() {
        for (url, needle) in [
            ("sqlserver://h/db", "names no user"),
            ("sqlserver://sa:hunter2@h/db?encrypt=maybe", "encrypt=maybe"),
            (
                "sqlserver://sa:hunter2@h/db?trust_server_certificate=perhaps",
                "perhaps",
            ),
            (
                "sqlserver://sa:hunter2@h/db?colour=blue",
                "unknown option `colour`",
            ),
            ("sqlserver://sa:hunter2@h/db/x", "named instance"),
            (
                "sqlserver://sa:hunter2@h/db?connect_timeout=soon",
                "seconds",
            ),
            (
                "sqlserver://sa:hunter2@h/db?trust_server_certificate=true&trust_server_certificate_ca=/ca.pem",
                "give one of them",
            ),
        ] {
            let e = options(url).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{url}");
            assert!(e.message.contains(needle), "{url}: {}", e.message);
            assert!(!e.message.contains("hunter2"), "{url}: {}", e.message);
        }
        let (_, secret) = options("sqlserver://sa:hunter2@h/db").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(
            secret.scrub("Login failed: hunter2"),
            "Login failed: ***",
            "driver text is scrubbed"
        );
    }

    #[test]
    fn server_errors_map_to_kinds() {
        let e = classify(1205, 13, "Transaction (Process ID 61) was deadlocked ...");
        assert!(e.is_retryable());
        assert_eq!(e.code.as_deref(), Some("1205"));
        assert!(classify(1222, 16, "Lock request time out period exceeded.").is_retryable());
        assert!(classify(40613, 17, "Database is not currently available.").is_retryable());
        for code in [208, 207, 102, 156, 4104, 547, 515, 8152, 2628] {
            let e = classify(code, 16, "x");
            assert_eq!(e.kind, ErrorKind::Fatal, "{code}");
            assert_eq!(e.duplicate_key, None, "{code}");
        }
        let e = classify(
            2627,
            14,
            "Violation of PRIMARY KEY constraint 'PK__dst__3213E83F'. Cannot insert duplicate key \
             in object 'rf.dst'. The duplicate key value is (7).",
        );
        assert_eq!(e.kind, ErrorKind::Fatal);
        assert_eq!(e.duplicate_key.as_deref(), Some("PK__dst__3213E83F"));
        let e = classify(
            2601,
            14,
            "Cannot insert duplicate key row in object 'rf.dst' with unique index 'ux_it''s'. \
             The duplicate key value is (a@b).",
        );
        assert_eq!(e.duplicate_key.as_deref(), Some("ux_it''s"));
        let e = classify(
            2627,
            14,
            "Violation of UNIQUE KEY constraint 'uq_email'. Cannot insert duplicate key in object 'dbo.t'.",
        );
        assert_eq!(e.duplicate_key.as_deref(), Some("uq_email"));
        assert_eq!(
            classify(2627, 14, "unexpected wording")
                .duplicate_key
                .as_deref(),
            Some("?")
        );
    }

    #[test]
    fn connection_failures_are_told_with_the_fix() {
        let url = DbUrl::parse("sqlserver://sa:hunter2@h/db").unwrap();
        let secret = Secret {
            password: "hunter2".into(),
            raw: None,
        };
        let io = tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: "Connection refused (os error 111)".into(),
        };
        let e = connect_error(&url, &io, &secret);
        assert!(e.is_retryable());
        assert!(
            e.message.contains("check that the server is running"),
            "{}",
            e.message
        );
        let e = connect_error(
            &url,
            &tiberius::error::Error::Tls("invalid peer certificate: UnknownIssuer".into()),
            &secret,
        );
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(
            e.message.contains("trust_server_certificate=true"),
            "{}",
            e.message
        );
        for text in [e.message.clone(), format!("{e}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        let e = server_error(
            &tiberius::error::Error::Io {
                kind: std::io::ErrorKind::BrokenPipe,
                message: "broken pipe while sending hunter2".into(),
            },
            &secret,
        );
        assert!(e.is_retryable());
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(breaks_connection(&io));
        assert!(!breaks_connection(&tiberius::error::Error::Utf16));
    }

    #[test]
    fn cells_become_exact_text() {
        use tiberius::numeric::Numeric;
        use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
        let text = |d: ColumnData<'static>| data_text(&d);
        assert_eq!(
            text(ColumnData::String(Some("é,'x".into()))).as_deref(),
            Some("é,'x")
        );
        assert_eq!(text(ColumnData::String(None)), None);
        assert_eq!(
            text(ColumnData::I64(Some(i64::MIN))).as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(text(ColumnData::U8(Some(255))).as_deref(), Some("255"));
        assert_eq!(text(ColumnData::Bit(Some(true))).as_deref(), Some("1"));
        assert_eq!(text(ColumnData::I32(None)), None);
        assert_eq!(text(ColumnData::F64(Some(0.1))).as_deref(), Some("0.1"));
        assert_eq!(
            text(ColumnData::Binary(Some(vec![0x00, 0xAB, 0x1f].into()))).as_deref(),
            Some("00AB1F")
        );
        assert_eq!(
            text(ColumnData::Numeric(Some(Numeric::new_with_scale(
                -12345, 4
            ))))
            .as_deref(),
            Some("-1.2345")
        );
        assert_eq!(
            text(ColumnData::Numeric(Some(Numeric::new_with_scale(5, 3)))).as_deref(),
            Some("0.005")
        );
        assert_eq!(
            text(ColumnData::Numeric(Some(Numeric::new_with_scale(120, 0)))).as_deref(),
            Some("120")
        );
        assert_eq!(
            text(ColumnData::Guid(Some(
                tiberius::Uuid::parse_str("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap()
            )))
            .as_deref(),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        // 2024-02-29 is day 738944 from 0001-01-01 (and 45349 from 1900).
        assert_eq!(
            text(ColumnData::Date(Some(Date::new(738_944)))).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(
            text(ColumnData::Date(Some(Date::new(0)))).as_deref(),
            Some("0001-01-01")
        );
        assert_eq!(
            text(ColumnData::DateTime(Some(DateTime::new(
                45_349,
                300 * 3661 + 2
            ))))
            .as_deref(),
            Some("2024-02-29 01:01:01.007")
        );
        assert_eq!(
            text(ColumnData::DateTime(Some(DateTime::new(-1, 0)))).as_deref(),
            Some("1899-12-31 00:00:00.000")
        );
        assert_eq!(
            text(ColumnData::SmallDateTime(Some(SmallDateTime::new(
                45_349, 61
            ))))
            .as_deref(),
            Some("2024-02-29 01:01:00")
        );
        let noon = Time::new(12 * 3600 * 10_000_000 + 5, 7);
        assert_eq!(
            text(ColumnData::Time(Some(noon))).as_deref(),
            Some("12:00:00.0000005")
        );
        assert_eq!(
            text(ColumnData::Time(Some(Time::new(59, 0)))).as_deref(),
            Some("00:00:59")
        );
        let dt2 = DateTime2::new(Date::new(738_944), Time::new(123_456, 3));
        assert_eq!(
            text(ColumnData::DateTime2(Some(dt2))).as_deref(),
            Some("2024-02-29 00:02:03.456")
        );
        // 23:30 UTC at +02:00 is 01:30 the next day.
        let utc = DateTime2::new(Date::new(738_944), Time::new((23 * 3600 + 1800) * 100, 2));
        assert_eq!(
            text(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                utc, 120
            ))))
            .as_deref(),
            Some("2024-03-01 01:30:00.00 +02:00")
        );
        assert_eq!(
            text(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                utc, -330
            ))))
            .as_deref(),
            Some("2024-02-29 18:00:00.00 -05:30")
        );
    }

    #[test]
    fn parameters_found_outside_quotes_and_comments() {
        assert_eq!(max_parameter("SELECT 1"), 0);
        assert_eq!(
            max_parameter(
                "SELECT '@P9', [@P8], \"@P7\" -- @P6\n FROM t /* @P5 */ WHERE a > @P1 OR (a = @P1 AND b > @P2) AND c <= @P12"
            ),
            12
        );
        assert_eq!(max_parameter("DECLARE @Pa int, @@P3, @xP4; SELECT @P2x"), 0);
        assert_eq!(max_parameter("N'it''s @P3' + @P2"), 2);
        assert_eq!(
            parameter_declarations("x = @P2").as_deref(),
            Some("@P1 nvarchar(max), @P2 nvarchar(max)")
        );
        assert_eq!(parameter_declarations("x = 1"), None);
    }

    #[test]
    fn a_statement_count_is_its_own() {
        assert_eq!(statement_count("INSERT INTO t SELECT 1", &[3]), 3);
        // A trigger without NOCOUNT reports its own counts first.
        assert_eq!(statement_count("UPDATE t SET a = 1", &[1, 0, 5]), 5);
        assert_eq!(statement_count("DELETE FROM t", &[]), 0);
        let identity = "SET IDENTITY_INSERT [s].[t] ON; INSERT INTO [s].[t] ([id]) SELECT 1; \
                        SET IDENTITY_INSERT [s].[t] OFF";
        assert_eq!(statement_count(identity, &[0, 2, 7, 0]), 7);
        assert_eq!(statement_count(identity, &[0]), 0);
        assert!(identity_insert_only(classify(544, 16, "x"), identity).is_ok());
        assert!(identity_insert_only(classify(544, 16, "x"), "INSERT INTO t SELECT 1").is_err());
        assert!(identity_insert_only(classify(207, 16, "x"), identity).is_err());
    }

    /// The SQL rowferry's commands send through this driver (outside the
    /// dialect): T-SQL that parses, with what SQL Server requires.
    #[test]
    fn commands_send_t_sql() {
        use crate::dialect::RangeShape;
        use crate::dialect::checksum::{
            ChecksumSide, paired_checksum_sql, row_hash_by_key_sql, row_hashes_sql,
        };
        use crate::dialect::test_support::column;
        use crate::table::Key;
        let parses = |sql: &str| {
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MsSqlDialect {}, sql)
                .unwrap_or_else(|e| panic!("{e}: {sql}"));
        };
        let d = &SqlServer;
        let id = column("id", "bigint");
        let side = |table: &str| ChecksumSide {
            table: d.qualified("s", table),
            key: Key {
                columns: vec![id.clone()],
            },
            key_text: vec![d.key_text(&id)],
            values: vec![d.canonical_value("[id]", &id, false)],
            where_sql: None,
            neutral: false,
        };
        let bounds = RangeShape {
            has_lo: true,
            has_hi: true,
        };
        // A derived table's columns need names (error 8155).
        let paired = paired_checksum_sql(d, &side("src"), &side("dst"), bounds);
        assert!(
            paired.contains(" AS rowferry_n, ") && paired.contains(" AS rowferry_h FROM "),
            "{paired}"
        );
        parses(&paired);
        // No MD5() in T-SQL: HASHBYTES.
        for sql in [
            row_hashes_sql(d, &side("src"), bounds),
            row_hash_by_key_sql(d, &side("src")),
        ] {
            assert!(!sql.contains("MD5("), "{sql}");
            assert!(sql.contains("HASHBYTES('MD5'"), "{sql}");
        }
        parses(crate::dialect::sqlserver::IGNORE_DUP_KEY_INDEXES_SQL);
    }

    #[test]
    fn setup_sets_what_the_dialect_relies_on() {
        let sql = setup_batch(&SessionSettings {
            pool_size: 1,
            lock_timeout: Duration::from_millis(2500),
            statement_timeout: Duration::ZERO,
            idle_in_transaction_timeout: None,
        });
        for needle in [
            "SET LOCK_TIMEOUT 2500;",
            "SET XACT_ABORT ON;",
            "SET QUOTED_IDENTIFIER ON;",
            "SET ANSI_NULLS ON;",
            "SET DATEFORMAT ymd;",
            "SET NOCOUNT OFF;",
            "SET TEXTSIZE 2147483647;",
        ] {
            assert!(sql.contains(needle), "{needle} in {sql}");
        }
        // LANGUAGE sets a DATEFORMAT of its own: it goes first.
        assert!(sql.find("LANGUAGE") < sql.find("DATEFORMAT"));
        let unlimited = setup_batch(&SessionSettings {
            pool_size: 1,
            lock_timeout: Duration::ZERO,
            statement_timeout: Duration::ZERO,
            idle_in_transaction_timeout: None,
        });
        assert!(unlimited.contains("SET LOCK_TIMEOUT -1;"), "{unlimited}");
    }
}
