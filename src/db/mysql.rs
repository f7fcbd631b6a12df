//! MySQL / MariaDB driver: mysql_async and its pool.

use super::{Database, Row, Session, SessionSettings, Statement};
use crate::dialect::{Dialect, mysql::Mysql};
use crate::error::{Error, ErrorKind, Result};
use crate::url::{DbUrl, scrub};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{
    Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, TxOpts, Value,
};
use std::collections::HashMap;

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
        let base = Opts::from_url(url.secret_str()).map_err(|e| {
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
        let _ = probe.disconnect().await;
        let mariadb = version.unwrap_or_default().contains("MariaDB");

        // Values cross in exact form (UTC, utf8mb4, strict modes that
        // refuse to truncate); short lock waits; READ COMMITTED chunks.
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
        let init = vec![
            "SET NAMES utf8mb4".to_string(),
            "SET time_zone = '+00:00'".into(),
            "SET sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,\
             ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE'"
                .into(),
            format!("SET innodb_lock_wait_timeout = {lock_secs}"),
            format!("SET lock_wait_timeout = {lock_secs}"),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".into(),
            statement_timeout,
        ];
        let constraints = PoolConstraints::new(0, settings.pool_size.max(1))
            .ok_or_else(|| Error::fatal("internal: bad pool size"))?;
        let opts: Opts = OptsBuilder::from_opts(base)
            .init(init)
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

/// Parameters are named `p1`, `p2`, ... (see the dialect) and sent as text.
fn params_of(params: &[String]) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    let named: HashMap<Vec<u8>, Value> = params
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("p{}", i + 1).into_bytes(),
                Value::Bytes(v.clone().into_bytes()),
            )
        })
        .collect();
    Params::Named(named)
}

#[async_trait]
impl Session for MySession {
    async fn query(&mut self, sql: &str, params: &[String]) -> Result<Vec<Row>> {
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(sql, params_of(params))
            .await
            .map_err(|e| server_error(&e, self.password.as_deref()))?;
        rows.into_iter()
            .map(|row| row.unwrap().into_iter().map(text_cell).collect())
            .collect()
    }

    async fn check(&mut self, sql: &str) -> Result<()> {
        // The server parses the statement and resolves its tables and
        // columns when preparing it; nothing runs.
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
            self.conn
                .exec_drop(only.sql.as_str(), params_of(&only.params))
                .await
                .map_err(err)?;
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
            txn.exec_drop(s.sql.as_str(), params_of(&s.params))
                .await
                .map_err(err)?;
            counts.push(txn.affected_rows());
        }
        txn.commit().await.map_err(err)?;
        Ok(counts)
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
            // connections, 1053 server shutdown, 1927 connection killed.
            let retryable = matches!(se.code, 1213 | 1205 | 1040 | 1053 | 1927);
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

/// `Duplicate entry 'x' for key 'name'` (MySQL 8 writes `table.name`).
fn duplicate_key_name(message: &str) -> Option<String> {
    let rest = &message[message.rfind("for key '")? + "for key '".len()..];
    let name = rest.strip_suffix('\'').unwrap_or(rest);
    Some(name.rsplit('.').next().unwrap_or(name).to_string())
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
    fn duplicate_key_names_from_both_servers() {
        assert_eq!(
            duplicate_key_name("Duplicate entry 'a@b' for key 'email_unique'").as_deref(),
            Some("email_unique")
        );
        assert_eq!(
            duplicate_key_name("Duplicate entry '7' for key 'dst.PRIMARY'").as_deref(),
            Some("PRIMARY")
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
