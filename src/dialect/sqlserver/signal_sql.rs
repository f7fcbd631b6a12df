//! The throttle's signals on SQL Server: an availability-group
//! secondary's lag for the current database, and load from the server's
//! requests. Both need VIEW SERVER STATE; without it the replica shows no
//! row (refused, fail closed) and the load is NULL (unknown: refused).

use super::SqlServer;
use crate::dialect::signals::{NamedRow, SignalSql};

fn cell<'a>(row: &'a NamedRow, name: &str) -> Option<&'a str> {
    row.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_deref())
}

fn number(row: &NamedRow, name: &str) -> Result<Option<f64>, String> {
    cell(row, name)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|e| format!("unreadable {name} {v:?}: {e}"))
        })
        .transpose()
}

impl SignalSql for SqlServer {
    fn replica_status_sql(&self) -> &'static str {
        // The local replica of the current database. redo_queue_size is
        // the log (KB) received but not yet redone, redo_rate its pace
        // (KB/s): what a reader of the secondary does not see yet.
        // secondary_lag_seconds is the server's own figure where it has
        // one (2016+; mostly NULL on the secondary itself).
        "SELECT CASE WHEN rs.is_primary_replica = 1 THEN N'primary' ELSE N'secondary' END AS role, \
                rs.synchronization_state_desc AS sync_state, \
                CONVERT(nvarchar(1), rs.is_suspended) AS suspended, \
                rs.suspend_reason_desc AS suspend_reason, \
                CONVERT(nvarchar(30), rs.redo_queue_size) AS redo_queue_kb, \
                CONVERT(nvarchar(30), rs.redo_rate) AS redo_rate_kb_s, \
                CONVERT(nvarchar(30), rs.secondary_lag_seconds) AS secondary_lag_s \
         FROM sys.dm_hadr_database_replica_states rs \
         WHERE rs.database_id = DB_ID() AND rs.is_local = 1"
    }

    fn replica_lag(&self, rows: &[NamedRow]) -> Result<f64, String> {
        let row = rows.first().ok_or(
            "not an availability-group replica of this database \
             (sys.dm_hadr_database_replica_states has no local row for it; reading it needs \
             VIEW SERVER STATE)",
        )?;
        if cell(row, "role") != Some("secondary") {
            return Err("the primary replica of its availability group, not a secondary".into());
        }
        if cell(row, "suspended") == Some("1") {
            return Err(format!(
                "data movement to it is suspended ({})",
                cell(row, "suspend_reason").unwrap_or("no reason given")
            ));
        }
        match cell(row, "sync_state") {
            Some(s) if s.eq_ignore_ascii_case("SYNCHRONIZING") => {}
            Some(s) if s.eq_ignore_ascii_case("SYNCHRONIZED") => {}
            Some(other) => return Err(format!("it is {other}, not synchronizing")),
            None => return Err("its synchronization state is unknown".into()),
        }
        let queue = number(row, "redo_queue_kb")?
            .ok_or("its redo queue size is unknown (redo_queue_size is NULL)")?;
        let redo = if queue <= 0.0 {
            0.0
        } else {
            match number(row, "redo_rate_kb_s")? {
                Some(rate) if rate > 0.0 => queue / rate,
                _ => {
                    return Err(format!(
                        "{queue} KB of log wait for redo and redo is not progressing"
                    ));
                }
            }
        };
        let reported = number(row, "secondary_lag_s")?.unwrap_or(0.0);
        Ok(redo.max(reported).max(0.0))
    }

    fn default_load_metric(&self) -> &'static str {
        "active"
    }

    fn load_sql(&self, metric: &str) -> Option<String> {
        // Requests of user sessions (rowferry's own workers included):
        // running or waiting for anything, waiting for another session's
        // lock; or tasks queued for a CPU. NULL (unknown) without VIEW
        // SERVER STATE, which would show this session's requests only.
        let (count, from) = match metric.to_ascii_lowercase().as_str() {
            "active" => (
                "COUNT(*)",
                "sys.dm_exec_requests r JOIN sys.dm_exec_sessions s ON s.session_id = r.session_id \
                 WHERE s.is_user_process = 1 AND r.session_id <> @@SPID",
            ),
            "waiting" => (
                "COUNT(*)",
                "sys.dm_exec_requests r JOIN sys.dm_exec_sessions s ON s.session_id = r.session_id \
                 WHERE s.is_user_process = 1 AND r.session_id <> @@SPID AND r.blocking_session_id <> 0",
            ),
            "runnable" => (
                "COALESCE(SUM(runnable_tasks_count), 0)",
                "sys.dm_os_schedulers WHERE status = N'VISIBLE ONLINE'",
            ),
            _ => return None,
        };
        Some(format!(
            "SELECT CASE WHEN HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') = 1 \
             THEN CONVERT(nvarchar(20), {count}) END AS value FROM {from}"
        ))
    }
}
