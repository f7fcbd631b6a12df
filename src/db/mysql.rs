//! MySQL / MariaDB driver: mysql_async and its pool.

use super::{Database, LoadOutcome, Row, ServerWarning, Session, SessionSettings, Statement};
use crate::dialect::{Dialect, mysql::Mysql};
use crate::error::{Error, ErrorKind, Result};
use crate::url::{DbUrl, scrub};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{
    Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, TxOpts, Value,
};

pub struct MyDatabase {
    pool: Pool,
    opts: Opts,
    url: DbUrl,
}

impl MyDatabase {
    /// Connect once to learn the server's flavour (MariaDB and MySQL name
    /// the statement timeout differently), then build the pool.
    pub async fn connect(url: &DbUrl, settings: &SessionSettings) -> Result<Self> {
        let password = url.password().map(String::from);
        // mysql_async knows only the mysql:// scheme.
        let text = url.secret_str();
        let text = text
            .strip_prefix("mariadb://")
            .map_or(text.to_string(), |rest| format!("mysql://{rest}"));
        let base = Opts::from_url(&text).map_err(|e| {
            Error::input(format!(
                "cannot use connection URL {url}: {}. Expected mysql://user:password@host:3306/database",
                scrub(&e.to_string(), password.as_deref())
            ))
        })?;
        let mut probe = Conn::new(base.clone())
            .await
            .map_err(|e| connect_error(url, &e))?;
        let version: Option<String> = probe
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| server_error(&e, password.as_deref()))?;
        // READ COMMITTED chunks cannot be written to a statement-based
        // binary log (error 1665 on every chunk): say so now.
        let binlog: Option<(u8, String)> = probe
            .query_first("SELECT @@log_bin, @@binlog_format")
            .await
            .map_err(|e| server_error(&e, password.as_deref()))?;
        let _ = probe.disconnect().await;
        if let Some((1, format)) = binlog
            .as_ref()
            .filter(|(_, f)| f.eq_ignore_ascii_case("STATEMENT"))
        {
            return Err(Error::input(format!(
                "{url} writes a statement-based binary log (binlog_format={format}), which \
                 cannot record READ COMMITTED INSERT ... SELECT chunks safely; set \
                 binlog_format to ROW or MIXED first"
            )));
        }
        let mariadb = version.unwrap_or_default().contains("MariaDB");

        // Values cross in exact form (UTC, utf8mb4, a strict mode that
        // refuses to truncate; zero dates stay legal, old tables hold them);
        // short lock waits; READ COMMITTED chunks; English error messages
        // (the duplicate key's index is read from them); a lock session
        // that is not closed for idling through a long job.
        let lock_secs = settings.lock_timeout.as_secs().max(1);
        let statement_timeout = if mariadb {
            format!(
                "SET max_statement_time = {}",
                settings.statement_timeout.as_secs_f64()
            )
        } else {
            // MySQL limits only SELECTs this way (the planner's probes).
            format!(
                "SET max_execution_time = {}",
                settings.statement_timeout.as_millis()
            )
        };
        // MariaDB only (MySQL has no such limit): a session frozen inside
        // a transaction is ended by the server, releasing its locks.
        let idle_limit = settings
            .idle_in_transaction_timeout
            .filter(|_| mariadb)
            .map(|idle| {
                // Whole seconds, rounded up: never before the lease ends.
                let secs = idle.as_secs() + u64::from(idle.subsec_nanos() > 0);
                format!("SET idle_transaction_timeout = {}", secs.max(1))
            });
        let mut setup = vec![
            "SET NAMES utf8mb4".to_string(),
            "SET time_zone = '+00:00', lc_messages = 'en_US', wait_timeout = 31536000, \
             group_concat_max_len = 1048576"
                .into(),
            "SET sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'"
                .into(),
            format!("SET innodb_lock_wait_timeout = {lock_secs}"),
            format!("SET lock_wait_timeout = {lock_secs}"),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".into(),
            statement_timeout,
        ];
        setup.extend(idle_limit);
        let constraints = PoolConstraints::new(0, settings.pool_size.max(1))
            .ok_or_else(|| Error::fatal("internal: bad pool size"))?;
        // `setup`, not `init`: the pool resets a connection it gets back,
        // and only setup commands run again after a reset.
        let opts: Opts = OptsBuilder::from_opts(base)
            .setup(setup)
            .pool_opts(PoolOpts::new().with_constraints(constraints))
            .into();
        Ok(MyDatabase {
            pool: Pool::new(opts.clone()),
            opts,
            url: url.clone(),
        })
    }

    fn session_of(&self, conn: Conn) -> Box<dyn Session> {
        Box::new(MySession {
            conn,
            password: self.url.password().map(String::from),
        })
    }
}

#[async_trait]
impl Database for MyDatabase {
    fn dialect(&self) -> &'static dyn Dialect {
        &Mysql
    }

    async fn session(&self) -> Result<Box<dyn Session>> {
        let conn = self
            .pool
            .get_conn()
            .await
            .map_err(|e| connect_error(&self.url, &e))?;
        Ok(self.session_of(conn))
    }

    async fn dedicated_session(&self) -> Result<Box<dyn Session>> {
        let conn = Conn::new(self.opts.clone())
            .await
            .map_err(|e| connect_error(&self.url, &e))?;
        Ok(self.session_of(conn))
    }
}

struct MySession {
    conn: Conn,
    password: Option<String>,
}

/// The dialect numbers parameters (`:p1`, `:p2`, ... : a bound may appear
/// twice); the server takes positional `?`. Rewrite them, outside quoted
/// strings, quoted identifiers and comments, repeating each value as often
/// as it is referenced. (mysql_async's own named-parameter parser misreads
/// some valid `--map` text, such as a backquote right after `-`.)
fn positional(sql: &str, params: &[String]) -> (String, Params) {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut values = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                // Copy the quoted text as is: doubled quotes and (except in
                // identifiers) backslash escapes stay inside.
                out.push(c);
                i += 1;
                while let Some(d) = at(i) {
                    out.push(d);
                    i += 1;
                    if d == '\\' && c != '`' {
                        if let Some(e) = at(i) {
                            out.push(e);
                            i += 1;
                        }
                    } else if d == c {
                        if at(i) == Some(c) {
                            out.push(c);
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if at(i + 1) == Some('-') && at(i + 2).is_none_or(char::is_whitespace) => {
                while let Some(d) = at(i).filter(|d| *d != '\n') {
                    out.push(d);
                    i += 1;
                }
            }
            '#' => {
                while let Some(d) = at(i).filter(|d| *d != '\n') {
                    out.push(d);
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                out.push_str("/*");
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && at(i + 1) == Some('/')) {
                    out.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    out.push_str("*/");
                    i += 2;
                }
            }
            ':' if at(i + 1) == Some('p') && at(i + 2).is_some_and(|d| d.is_ascii_digit()) => {
                let mut j = i + 2;
                while at(j).is_some_and(|d| d.is_ascii_digit()) {
                    j += 1;
                }
                let n: usize = chars[i + 2..j]
                    .iter()
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0);
                out.push('?');
                if let Some(v) = n.checked_sub(1).and_then(|k| params.get(k)) {
                    values.push(Value::Bytes(v.clone().into_bytes()));
                }
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    let params = if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    };
    (out, params)
}

#[async_trait]
impl Session for MySession {
    async fn query(&mut self, sql: &str, params: &[String]) -> Result<Vec<Row>> {
        let (sql, params) = positional(sql, params);
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(sql, params)
            .await
            .map_err(|e| server_error(&e, self.password.as_deref()))?;
        rows.into_iter()
            .map(|row| row.unwrap().into_iter().map(text_cell).collect())
            .collect()
    }

    async fn query_named(&mut self, sql: &str) -> Result<Vec<crate::dialect::signals::NamedRow>> {
        // Text protocol: SHOW statements are not all preparable.
        let rows: Vec<mysql_async::Row> = self
            .conn
            .query(sql)
            .await
            .map_err(|e| server_error(&e, self.password.as_deref()))?;
        rows.into_iter()
            .map(|row| {
                let names: Vec<String> = row
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().to_string())
                    .collect();
                names
                    .into_iter()
                    .zip(row.unwrap())
                    .map(|(name, value)| Ok((name, text_cell(value)?)))
                    .collect()
            })
            .collect()
    }

    async fn check(&mut self, sql: &str) -> Result<()> {
        // The server parses the statement and resolves its tables and
        // columns when preparing it; nothing runs.
        let (sql, _) = positional(sql, &[]);
        self.conn
            .prep(sql)
            .await
            .map(|_| ())
            .map_err(|e| server_error(&e, self.password.as_deref()))
    }

    async fn transaction(&mut self, statements: &[Statement]) -> Result<Vec<u64>> {
        let password = self.password.clone();
        let err = |e: mysql_async::Error| server_error(&e, password.as_deref());
        if let [only] = statements {
            // A single statement commits on its own (autocommit).
            let (sql, params) = positional(&only.sql, &only.params);
            self.conn.exec_drop(sql, params).await.map_err(err)?;
            return Ok(vec![self.conn.affected_rows()]);
        }
        // Dropping the transaction on an error rolls it back.
        let mut txn = self
            .conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(err)?;
        let mut counts = Vec::with_capacity(statements.len());
        for s in statements {
            let (sql, params) = positional(&s.sql, &s.params);
            txn.exec_drop(sql, params).await.map_err(err)?;
            counts.push(txn.affected_rows());
        }
        txn.commit().await.map_err(err)?;
        Ok(counts)
    }

    async fn transaction_with_load_data(
        &mut self,
        before: &[Statement],
        load_sql: &str,
        data: Vec<bytes::Bytes>,
        expected: u64,
    ) -> Result<LoadOutcome> {
        let password = self.password.clone();
        let err = |e: mysql_async::Error| server_error(&e, password.as_deref());
        // Notes are what a strict INSERT accepts too (a decimal rounded to
        // the column's scale): with sql_notes off they are not counted, so
        // every warning left is one the INSERT would have failed on.
        self.conn
            .query_drop("SET @rowferry_sql_notes = @@sql_notes, sql_notes = 0")
            .await
            .map_err(err)?;
        let outcome = self
            .load_in_transaction(before, load_sql, data, expected)
            .await;
        // The pool resets a session it gets back; this keeps a session
        // that stays out (a dedicated one) as it was.
        let restored = self
            .conn
            .query_drop("SET sql_notes = @rowferry_sql_notes")
            .await
            .map_err(err);
        let outcome = outcome?;
        restored?;
        Ok(outcome)
    }

    async fn execute(&mut self, sql: &str) -> Result<u64> {
        // The text protocol: DDL as is, autocommitted.
        self.conn
            .query_drop(sql)
            .await
            .map_err(|e| server_error(&e, self.password.as_deref()))?;
        Ok(self.conn.affected_rows())
    }
}

impl MySession {
    async fn load_in_transaction(
        &mut self,
        before: &[Statement],
        load_sql: &str,
        data: Vec<bytes::Bytes>,
        expected: u64,
    ) -> Result<LoadOutcome> {
        let password = self.password.clone();
        let err = |e: mysql_async::Error| server_error(&e, password.as_deref());
        // A one-shot handler: the LOAD below takes it, whatever file name
        // it asks for. (A transaction lends the connection only as shared,
        // so it is set first; nothing before the LOAD asks for a file.)
        self.conn.set_infile_handler(async move {
            use futures_util::StreamExt;
            Ok(futures_util::stream::iter(data.into_iter().map(Ok)).boxed())
        });
        // Dropping the transaction on an error rolls it back.
        let mut txn = self
            .conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(err)?;
        let mut counts = Vec::with_capacity(before.len());
        for s in before {
            let (sql, params) = positional(&s.sql, &s.params);
            txn.exec_drop(sql, params).await.map_err(err)?;
            counts.push(txn.affected_rows());
        }
        // The text protocol: LOAD DATA cannot be prepared.
        txn.query_drop(load_sql).await.map_err(err)?;
        let (loaded, warnings) = (txn.affected_rows(), u64::from(txn.get_warnings()));
        if loaded == expected && warnings == 0 {
            txn.commit().await.map_err(err)?;
            return Ok(LoadOutcome::Committed {
                before: counts,
                loaded,
            });
        }
        let shown: Vec<(String, u32, String)> =
            txn.query("SHOW WARNINGS LIMIT 5").await.map_err(err)?;
        txn.rollback().await.map_err(err)?;
        Ok(LoadOutcome::RolledBack {
            loaded,
            warnings,
            shown: shown
                .into_iter()
                .map(|(level, code, message)| ServerWarning {
                    level,
                    code,
                    message: scrub(&message, password.as_deref()),
                })
                .collect(),
        })
    }
}

fn text_cell(value: Value) -> Result<Option<String>> {
    Ok(match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8(b).map_err(|_| {
            Error::fatal("internal: the server returned a value that is not UTF-8 text where text was expected")
        })?),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        Value::Date(y, mo, d, h, mi, s, us) => Some(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")),
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            Some(format!("{}{hours:02}:{mi:02}:{s:02}.{us:06}", if neg { "-" } else { "" }))
        }
    })
}

/// Classify a server error: retryable or not, with the error number and,
/// for a duplicate key, the index named.
fn server_error(e: &mysql_async::Error, password: Option<&str>) -> Error {
    use mysql_async::{DriverError, Error as E};
    match e {
        E::Server(se) => {
            // 1213 deadlock, 1205 lock wait timeout, 1040 too many
            // connections, 1053 server shutdown, 1927 connection killed,
            // 4031 idle client disconnected, 1020 record changed (MariaDB
            // snapshot isolation), 1047 Galera node not ready.
            let retryable = matches!(
                se.code,
                1213 | 1205 | 1040 | 1053 | 1927 | 4031 | 1020 | 1047
            );
            let mut message = format!("{} (error {})", se.message, se.code);
            if matches!(se.code, 1969 | 3024) {
                message.push_str(
                    "; a statement ran longer than --statement-timeout: raise it, or lower \
                     --max-chunk-rows / --chunk-time, then rerun to resume",
                );
            }
            let mut err = Error::new(
                if retryable {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::Fatal
                },
                scrub(&message, password),
            );
            err.code = Some(se.code.to_string());
            if se.code == 1062 {
                err.duplicate_key = duplicate_key_name(&se.message).or_else(|| Some("?".into()));
            }
            err
        }
        E::Io(_) | E::Driver(DriverError::ConnectionClosed | DriverError::PoolDisconnected) => {
            Error::new(
                ErrorKind::Retryable,
                format!("connection problem: {}", scrub(&e.to_string(), password)),
            )
        }
        other => Error::fatal(scrub(&other.to_string(), password)),
    }
}

/// `Duplicate entry 'x' for key 'name'`, as written (MySQL 8 writes
/// `table.name`; a name may itself hold dots, so nothing is cut here).
pub(crate) fn duplicate_key_name(message: &str) -> Option<String> {
    let rest = &message[message.rfind("for key '")? + "for key '".len()..];
    Some(rest.strip_suffix('\'').unwrap_or(rest).to_string())
}

/// A failed connection, told with the fix in mind and never with the
/// password. Refused credentials are input errors; an unreachable server is
/// retryable mid-job (`db::connect` makes it an input error at startup).
fn connect_error(url: &DbUrl, e: &mysql_async::Error) -> Error {
    let base = server_error(e, url.password());
    let (kind, advice) = match base.code.as_deref() {
        Some("1045") => (
            ErrorKind::Input,
            format!(
                "access denied for user `{}`; check the user name and the password in the URL",
                url.user()
            ),
        ),
        Some("1044" | "1049") => (
            ErrorKind::Input,
            format!(
                "{}; check the database name at the end of the URL",
                base.message
            ),
        ),
        Some(_) => (base.kind, base.message.clone()),
        None => (
            ErrorKind::Retryable,
            format!(
                "{}; check that the server is running and that host and port are right",
                base.message
            ),
        ),
    };
    let mut err = Error::new(kind, format!("cannot connect to {url}: {advice}"));
    err.code = base.code;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_positional_outside_quotes_and_comments() {
        let params: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let (sql, values) = positional(
            "SELECT `gross`-`tax` ':p1', \"x:p2\" FROM t -- :p1\nWHERE k > :p1 OR (k = :p1 AND j > :p2) /* :p2 */ AND s = 'it''s :p1 \\' :p2'",
            &params,
        );
        assert_eq!(
            sql,
            "SELECT `gross`-`tax` ':p1', \"x:p2\" FROM t -- :p1\nWHERE k > ? OR (k = ? AND j > ?) /* :p2 */ AND s = 'it''s :p1 \\' :p2'"
        );
        let bytes = |s: &str| Value::Bytes(s.as_bytes().to_vec());
        assert_eq!(
            values,
            Params::Positional(vec![bytes("a"), bytes("a"), bytes("b")])
        );
        assert_eq!(positional("SELECT 1", &[]).1, Params::Empty);
    }

    #[test]
    fn duplicate_key_names_from_both_servers() {
        assert_eq!(
            duplicate_key_name("Duplicate entry 'a@b' for key 'email_unique'").as_deref(),
            Some("email_unique")
        );
        assert_eq!(
            duplicate_key_name("Duplicate entry '7' for key 'dst.PRIMARY'").as_deref(),
            Some("dst.PRIMARY")
        );
        assert_eq!(
            duplicate_key_name("Duplicate entry '1' for key 'idx.e'x'").as_deref(),
            Some("idx.e'x")
        );
        assert_eq!(duplicate_key_name("something else"), None);
    }

    #[test]
    fn values_become_exact_text() {
        assert_eq!(
            text_cell(Value::Date(2024, 2, 29, 23, 59, 58, 123456))
                .unwrap()
                .as_deref(),
            Some("2024-02-29 23:59:58.123456")
        );
        assert_eq!(
            text_cell(Value::UInt(u64::MAX)).unwrap().as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(text_cell(Value::NULL).unwrap(), None);
    }
}
