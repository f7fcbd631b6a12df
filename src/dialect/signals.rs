//! SQL for the throttle's signals (replica lag, server load), and reading
//! the answers. Pure: the observer in `signals.rs` runs it.

use super::mysql::Mysql;
use super::postgres::Postgres;

/// A row with its column names: SHOW statements' columns differ between
/// server versions, so they are read by name.
pub type NamedRow = Vec<(String, Option<String>)>;

pub trait SignalSql: Send + Sync {
    /// Run on a replica: its replication state, read by `replica_lag`.
    fn replica_status_sql(&self) -> &'static str;

    /// The replica's lag in seconds, or why it cannot be measured (which
    /// the throttle counts as over any limit: it fails closed).
    fn replica_lag(&self, rows: &[NamedRow]) -> Result<f64, String>;

    /// The load metric `--max-load` and `--critical-load` name by default.
    fn default_load_metric(&self) -> &'static str;

    /// A query whose first row's last column is the metric's current
    /// value; None for a metric this engine does not have.
    fn load_sql(&self, metric: &str) -> Option<String>;
}

fn cell<'a>(row: &'a NamedRow, names: &[&str]) -> Option<&'a str> {
    row.iter()
        .find(|(name, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|(_, value)| value.as_deref())
}

impl SignalSql for Postgres {
    fn replica_status_sql(&self) -> &'static str {
        // Replay lag: nothing received is waiting for replay (also on an
        // idle primary) means 0; otherwise the age of the last transaction
        // replayed, which grows while replay is behind or paused. A WAL
        // receiver that is not streaming cannot tell how far behind it is.
        "SELECT pg_is_in_recovery()::text AS in_recovery, \
                (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS receiver, \
                CASE WHEN pg_is_in_recovery() THEN \
                  CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() \
                       THEN '0' \
                       ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::text \
                  END \
                END AS lag_s, \
                CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused()::text END AS paused"
    }

    fn replica_lag(&self, rows: &[NamedRow]) -> Result<f64, String> {
        let row = rows.first().ok_or("the replica returned no status")?;
        if cell(row, &["in_recovery"]) != Some("true") {
            return Err("not a replica (pg_is_in_recovery() is false)".into());
        }
        match cell(row, &["receiver"]) {
            Some("streaming") => {}
            Some(other) => return Err(format!("its WAL receiver is {other}, not streaming")),
            None => return Err("it has no WAL receiver (not streaming from a primary)".into()),
        }
        let lag = cell(row, &["lag_s"])
            .ok_or("it has replayed no transaction yet")?
            .parse::<f64>()
            .map_err(|e| format!("unreadable lag: {e}"))?;
        Ok(lag.max(0.0))
    }

    fn default_load_metric(&self) -> &'static str {
        "active"
    }

    fn load_sql(&self, metric: &str) -> Option<String> {
        // Client sessions running a statement (rowferry's own workers
        // included), or waiting for a lock.
        let filter = match metric.to_ascii_lowercase().as_str() {
            "active" => "state = 'active'",
            "waiting" => "wait_event_type = 'Lock'",
            _ => return None,
        };
        Some(format!(
            "SELECT count(*)::text AS value FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND {filter}"
        ))
    }
}

impl SignalSql for Mysql {
    fn replica_status_sql(&self) -> &'static str {
        // MariaDB 10.5+ and MySQL 8.0.22+ (MySQL 8.4 has no SHOW SLAVE).
        "SHOW REPLICA STATUS"
    }

    fn replica_lag(&self, rows: &[NamedRow]) -> Result<f64, String> {
        if rows.is_empty() {
            return Err("not a replica (SHOW REPLICA STATUS is empty)".into());
        }
        // Several sources (multi-source replication): the worst counts.
        let mut worst: f64 = 0.0;
        for row in rows {
            for (names, thread) in [
                (["Slave_IO_Running", "Replica_IO_Running"], "I/O"),
                (["Slave_SQL_Running", "Replica_SQL_Running"], "SQL"),
            ] {
                let state = cell(row, &names).unwrap_or("unknown");
                if !state.eq_ignore_ascii_case("yes") {
                    return Err(format!(
                        "its replication {thread} thread is not running ({state})"
                    ));
                }
            }
            let seconds = cell(row, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .ok_or("Seconds_Behind_Master is NULL")?
                .parse::<f64>()
                .map_err(|e| format!("unreadable Seconds_Behind_Master: {e}"))?;
            worst = worst.max(seconds);
        }
        Ok(worst)
    }

    fn default_load_metric(&self) -> &'static str {
        "Threads_running"
    }

    fn load_sql(&self, metric: &str) -> Option<String> {
        // Any global status counter, as pt-online-schema-change takes them.
        let plain = !metric.is_empty()
            && metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        plain.then(|| format!("SHOW GLOBAL STATUS LIKE '{metric}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, Option<&str>)]) -> NamedRow {
        cells
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(String::from)))
            .collect()
    }

    #[test]
    fn postgres_lag_fails_closed_unless_a_streaming_replica_answers() {
        let pg = Postgres;
        let ok = row(&[
            ("in_recovery", Some("true")),
            ("receiver", Some("streaming")),
            ("lag_s", Some("3.25")),
            ("paused", Some("false")),
        ]);
        assert_eq!(pg.replica_lag(&[ok]), Ok(3.25));
        let primary = row(&[("in_recovery", Some("false")), ("receiver", None)]);
        assert!(
            pg.replica_lag(&[primary])
                .unwrap_err()
                .contains("not a replica")
        );
        let cut_off = row(&[
            ("in_recovery", Some("true")),
            ("receiver", None),
            ("lag_s", Some("0")),
        ]);
        assert!(
            pg.replica_lag(&[cut_off])
                .unwrap_err()
                .contains("no WAL receiver")
        );
        assert!(pg.replica_lag(&[]).is_err());
        assert!(pg.load_sql("active").unwrap().contains("state = 'active'"));
        assert!(pg.load_sql("Waiting").unwrap().contains("'Lock'"));
        assert_eq!(pg.load_sql("Threads_running"), None);
    }

    #[test]
    fn mysql_lag_reads_either_spelling_and_fails_closed_on_stopped_threads() {
        let my = Mysql;
        let mariadb = row(&[
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("Yes")),
            ("Seconds_Behind_Master", Some("2")),
        ]);
        let mysql8 = row(&[
            ("Replica_IO_Running", Some("Yes")),
            ("Replica_SQL_Running", Some("Yes")),
            ("Seconds_Behind_Source", Some("7")),
        ]);
        assert_eq!(my.replica_lag(&[mariadb, mysql8]), Ok(7.0));
        let stopped = row(&[
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("No")),
            ("Seconds_Behind_Master", None),
        ]);
        assert!(
            my.replica_lag(&[stopped])
                .unwrap_err()
                .contains("SQL thread")
        );
        assert!(my.replica_lag(&[]).unwrap_err().contains("not a replica"));
        assert_eq!(
            my.load_sql("Threads_running").as_deref(),
            Some("SHOW GLOBAL STATUS LIKE 'Threads_running'")
        );
        assert_eq!(my.load_sql("x' OR 1=1 -- "), None);
    }
}
