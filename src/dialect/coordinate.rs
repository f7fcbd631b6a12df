//! SQL for `--coordinate-in-db`: the job row, the chunk plan with its
//! leases, and the processes' heartbeats, kept in `rowferry_`-prefixed
//! tables beside the source table. Pure functions of the dialect, the
//! schema and the lease: every statement is built here and unit tested.
//!
//! Leases are computed with the server's clock (`now()`), never the
//! client's. Key bounds are stored as JSON text (`null` for the start of
//! the table), so no parameter is ever NULL.

use super::Dialect;

/// Every statement a coordinated job runs against its tables. Parameters
/// are text; `$n`/`:pn`/`@Pn` as the dialect spells them.
#[derive(Debug, Clone)]
pub struct CoordinationSql {
    pub jobs: String,
    pub chunks: String,
    pub workers: String,
    /// CREATE TABLE IF NOT EXISTS, one statement each.
    pub ddl: Vec<String>,
    /// (job) -> upper_bound, frontier, next_seq, planning_done, finished.
    pub job_row: String,
    /// (job, upper_bound, planning_done)
    pub job_insert: String,
    /// Statements of one transaction; the last one's count is 1 when a
    /// chunk was claimed: (job, owner, token) for each.
    pub claim: Vec<String>,
    /// (job, token) -> seq, lo, hi, planned_rows, claims.
    pub claimed_row: String,
    /// Planning, one transaction: advance the frontier only from the
    /// expected sequence number (job, frontier, planning_done, expected
    /// seq), then insert the chunk claimed by its planner (job, seq, lo,
    /// hi, planned_rows, owner, token). Two planners racing: the second's
    /// insert meets the first's row and the whole transaction rolls back.
    pub plan_advance: String,
    pub plan_insert: String,
    /// (job) -> chunks not done.
    pub unfinished: String,
    /// The last statement of a chunk's own transaction (job, seq, owner):
    /// marks the chunk done, and fails (NOT NULL violation, rolling the
    /// chunk back) when the caller no longer holds its lease.
    pub done_guard: String,
    /// (job, seq, owner) -> owner, state.
    pub chunk_owner: String,
    /// After the commit: (job, seq, rows, owner).
    pub set_rows: String,
    /// (job, owner): extend the leases of every chunk the caller holds.
    pub renew: String,
    /// (job, owner): give them back (on a clean stop).
    pub release: String,
    /// (job, owner) heartbeat; insert when the update found no row.
    pub heartbeat_update: String,
    pub heartbeat_insert: String,
    pub heartbeat_delete: String,
    /// (job): forget the heartbeats of processes that died.
    pub heartbeat_sweep: String,
    /// (job) -> live processes.
    pub live_workers: String,
    /// (job) -> chunks done, rows done.
    pub totals: String,
    /// (job)
    pub finish: String,
    /// (job), one statement per table: forget the job (`--restart`).
    pub forget: Vec<String>,
}

/// The coordination SQL for this dialect, or why it has none.
pub fn coordination_sql(
    d: &dyn Dialect,
    schema: &str,
    lease_ms: u64,
) -> Result<CoordinationSql, String> {
    let e = Engine::of(d)?;
    let jobs = d.qualified(schema, "rowferry_jobs");
    let chunks = d.qualified(schema, "rowferry_chunks");
    let workers = d.qualified(schema, "rowferry_workers");
    let p = |n: usize| d.placeholder(n);
    let int = |n: usize| e.int_param(d, n);
    let txt = |col: &str| e.text(col);
    let now = e.now();
    let lease = e.plus_ms(lease_ms);
    let (id, ts, key, int_t) = e.types();
    let expired = format!("(state = 'planned' OR (state = 'claimed' AND lease_until < {now}))");

    let ddl = vec![
        e.create_if_absent(
            &jobs,
            &format!(
                "job {id} NOT NULL, upper_bound {key} NOT NULL, frontier {key} NOT NULL, \
                 next_seq bigint NOT NULL, planning_done {int_t} NOT NULL, \
                 created_at {ts} NOT NULL DEFAULT {now}, finished_at {ts} NULL, PRIMARY KEY (job)"
            ),
        ),
        e.create_if_absent(
            &chunks,
            &format!(
                "job {id} NOT NULL, seq bigint NOT NULL, lo {key} NOT NULL, hi {key} NOT NULL, \
                 planned_rows bigint NOT NULL, state varchar(8) NOT NULL, owner {id} NULL, \
                 token {id} NULL, lease_until {ts} NULL, claims {int_t} NOT NULL, \
                 rows_done bigint NULL, done_at {ts} NULL, PRIMARY KEY (job, seq)"
            ),
        ),
        e.create_if_absent(
            &workers,
            &format!(
                "job {id} NOT NULL, owner {id} NOT NULL, seen_until {ts} NOT NULL, \
                 PRIMARY KEY (job, owner)"
            ),
        ),
    ];

    let set_claimed = format!(
        "claims = claims + 1, state = 'claimed', owner = {}, token = {}, lease_until = {lease}",
        p(2),
        p(3)
    );
    let claim = match e {
        Engine::Postgres => vec![format!(
            "UPDATE {chunks} SET {set_claimed} WHERE job = {p1} AND {expired} AND seq = \
             (SELECT seq FROM {chunks} WHERE job = {p1} AND {expired} ORDER BY seq LIMIT 1 \
             FOR UPDATE SKIP LOCKED)",
            p1 = p(1)
        )],
        Engine::MySql => vec![
            "SET @rowferry_claim = NULL".to_string(),
            format!(
                "SELECT seq INTO @rowferry_claim FROM {chunks} WHERE job = {p1} AND {expired} \
                 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                p1 = p(1)
            ),
            format!(
                "UPDATE {chunks} SET {set_claimed} WHERE job = {p1} AND seq = @rowferry_claim",
                p1 = p(1)
            ),
        ],
        Engine::SqlServer => vec![format!(
            "UPDATE {chunks} SET {set_claimed} WHERE job = {p1} AND {expired} AND seq = \
             (SELECT TOP (1) seq FROM {chunks} WITH (UPDLOCK, READPAST, ROWLOCK) \
             WHERE job = {p1} AND {expired} ORDER BY seq)",
            p1 = p(1)
        )],
    };
    // MySQL evaluates SET assignments left to right: `state` is read
    // before anything in the row changes.
    let guard_state = format!(
        "state = CASE WHEN owner = {} AND state = 'claimed' THEN 'done' END",
        p(3)
    );

    Ok(CoordinationSql {
        ddl,
        job_row: format!(
            "SELECT upper_bound, frontier, {}, {}, CASE WHEN finished_at IS NULL THEN '0' \
             ELSE '1' END FROM {jobs} WHERE job = {}",
            txt("next_seq"),
            txt("planning_done"),
            p(1)
        ),
        job_insert: format!(
            "INSERT INTO {jobs} (job, upper_bound, frontier, next_seq, planning_done) \
             VALUES ({}, {}, 'null', 0, {})",
            p(1),
            p(2),
            int(3)
        ),
        claim,
        claimed_row: format!(
            "SELECT {}, lo, hi, {}, {} FROM {chunks} WHERE job = {} AND token = {}",
            txt("seq"),
            txt("planned_rows"),
            txt("claims"),
            p(1),
            p(2)
        ),
        plan_advance: format!(
            "UPDATE {jobs} SET frontier = {}, planning_done = {}, next_seq = next_seq + 1 \
             WHERE job = {} AND next_seq = {}",
            p(2),
            int(3),
            p(1),
            int(4)
        ),
        plan_insert: format!(
            "INSERT INTO {chunks} (job, seq, lo, hi, planned_rows, state, owner, token, \
             lease_until, claims) VALUES ({}, {}, {}, {}, {}, 'claimed', {}, {}, {lease}, 1)",
            p(1),
            int(2),
            p(3),
            p(4),
            int(5),
            p(6),
            p(7)
        ),
        unfinished: format!(
            "SELECT {} FROM {chunks} WHERE job = {} AND state <> 'done'",
            txt("count(*)"),
            p(1)
        ),
        done_guard: format!(
            "UPDATE {chunks} SET {guard_state}, done_at = {now} WHERE job = {} AND seq = {}",
            p(1),
            int(2)
        ),
        chunk_owner: format!(
            "SELECT owner, state FROM {chunks} WHERE job = {} AND seq = {}",
            p(1),
            int(2)
        ),
        set_rows: format!(
            "UPDATE {chunks} SET rows_done = {} WHERE job = {} AND seq = {} AND owner = {}",
            int(3),
            p(1),
            int(2),
            p(4)
        ),
        renew: format!(
            "UPDATE {chunks} SET lease_until = {lease} WHERE job = {} AND owner = {} \
             AND state = 'claimed'",
            p(1),
            p(2)
        ),
        release: format!(
            "UPDATE {chunks} SET state = 'planned', owner = NULL, token = NULL, \
             lease_until = NULL WHERE job = {} AND owner = {} AND state = 'claimed'",
            p(1),
            p(2)
        ),
        heartbeat_update: format!(
            "UPDATE {workers} SET seen_until = {lease} WHERE job = {} AND owner = {}",
            p(1),
            p(2)
        ),
        heartbeat_insert: format!(
            "INSERT INTO {workers} (job, owner, seen_until) VALUES ({}, {}, {lease})",
            p(1),
            p(2)
        ),
        heartbeat_delete: format!(
            "DELETE FROM {workers} WHERE job = {} AND owner = {}",
            p(1),
            p(2)
        ),
        heartbeat_sweep: format!(
            "DELETE FROM {workers} WHERE job = {} AND seen_until < {now}",
            p(1)
        ),
        live_workers: format!(
            "SELECT {} FROM {workers} WHERE job = {} AND seen_until > {now}",
            txt("count(*)"),
            p(1)
        ),
        totals: format!(
            "SELECT {}, {} FROM {chunks} WHERE job = {} AND state = 'done'",
            txt("count(*)"),
            txt("COALESCE(sum(rows_done), 0)"),
            p(1)
        ),
        finish: format!(
            "UPDATE {jobs} SET finished_at = {now} WHERE job = {} AND finished_at IS NULL",
            p(1)
        ),
        forget: vec![
            format!("DELETE FROM {chunks} WHERE job = {}", p(1)),
            format!("DELETE FROM {workers} WHERE job = {}", p(1)),
            format!("DELETE FROM {jobs} WHERE job = {}", p(1)),
        ],
        jobs,
        chunks,
        workers,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MySql,
    SqlServer,
}

impl Engine {
    fn of(d: &dyn Dialect) -> Result<Engine, String> {
        match d.name() {
            "postgres" => Ok(Engine::Postgres),
            "mysql" => Ok(Engine::MySql),
            "sqlserver" => Ok(Engine::SqlServer),
            other => Err(format!(
                "--coordinate-in-db is not available for {other} in this version"
            )),
        }
    }

    /// (job/owner id, timestamp, key JSON, small int) column types.
    fn types(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Engine::Postgres => ("text", "timestamptz", "text", "integer"),
            Engine::MySql => ("varchar(200)", "datetime(6)", "longtext", "integer"),
            Engine::SqlServer => ("nvarchar(200)", "datetime2(6)", "nvarchar(max)", "int"),
        }
    }

    fn create_if_absent(self, table: &str, columns: &str) -> String {
        match self {
            Engine::Postgres => format!("CREATE TABLE IF NOT EXISTS {table} ({columns})"),
            Engine::MySql => {
                format!("CREATE TABLE IF NOT EXISTS {table} ({columns}) ENGINE = InnoDB")
            }
            Engine::SqlServer => {
                let literal = table.replace('\'', "''");
                format!("IF OBJECT_ID(N'{literal}', N'U') IS NULL CREATE TABLE {table} ({columns})")
            }
        }
    }

    fn now(self) -> &'static str {
        match self {
            // The transaction's start: statements here are single, short ones.
            Engine::Postgres => "now()",
            Engine::MySql => "NOW(6)",
            Engine::SqlServer => "SYSUTCDATETIME()",
        }
    }

    fn plus_ms(self, ms: u64) -> String {
        match self {
            Engine::Postgres => format!("now() + interval '{ms} milliseconds'"),
            Engine::MySql => format!("NOW(6) + INTERVAL {} MICROSECOND", ms * 1000),
            Engine::SqlServer => format!("DATEADD(millisecond, {ms}, SYSUTCDATETIME())"),
        }
    }

    /// A number passed as text.
    fn int_param(self, d: &dyn Dialect, n: usize) -> String {
        match self {
            Engine::Postgres => format!("{}::bigint", d.placeholder(n)),
            Engine::MySql => d.placeholder(n),
            Engine::SqlServer => format!("CAST({} AS bigint)", d.placeholder(n)),
        }
    }

    /// A value read back as text.
    fn text(self, expr: &str) -> String {
        match self {
            Engine::Postgres => format!("({expr})::text"),
            Engine::MySql => format!("CAST({expr} AS CHAR)"),
            Engine::SqlServer => format!("CAST({expr} AS nvarchar(40))"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;

    #[test]
    fn postgres_claims_with_skip_locked_and_the_servers_clock() {
        let s = coordination_sql(&Postgres, "public", 2000).unwrap();
        assert_eq!(s.chunks, "\"public\".\"rowferry_chunks\"");
        assert_eq!(
            s.claim,
            vec![
                "UPDATE \"public\".\"rowferry_chunks\" SET claims = claims + 1, state = 'claimed', \
                 owner = $2, token = $3, lease_until = now() + interval '2000 milliseconds' \
                 WHERE job = $1 AND (state = 'planned' OR (state = 'claimed' AND lease_until < now())) \
                 AND seq = (SELECT seq FROM \"public\".\"rowferry_chunks\" WHERE job = $1 AND \
                 (state = 'planned' OR (state = 'claimed' AND lease_until < now())) ORDER BY seq \
                 LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    .to_string()
            ]
        );
        assert_eq!(
            s.done_guard,
            "UPDATE \"public\".\"rowferry_chunks\" SET state = CASE WHEN owner = $3 AND state = \
             'claimed' THEN 'done' END, done_at = now() WHERE job = $1 AND seq = $2::bigint"
        );
        assert_eq!(
            s.plan_advance,
            "UPDATE \"public\".\"rowferry_jobs\" SET frontier = $2, planning_done = $3::bigint, \
             next_seq = next_seq + 1 WHERE job = $1 AND next_seq = $4::bigint"
        );
        assert!(s.ddl[1].starts_with(
            "CREATE TABLE IF NOT EXISTS \"public\".\"rowferry_chunks\" (job text NOT NULL, seq bigint"
        ));
        assert!(
            s.ddl[1].contains("state varchar(8) NOT NULL"),
            "{}",
            s.ddl[1]
        );
        assert_eq!(
            s.renew,
            "UPDATE \"public\".\"rowferry_chunks\" SET lease_until = now() + interval '2000 \
             milliseconds' WHERE job = $1 AND owner = $2 AND state = 'claimed'"
        );
    }

    #[test]
    fn mysql_claims_in_one_transaction_through_a_session_variable() {
        let s = coordination_sql(&Mysql, "test", 1500).unwrap();
        assert_eq!(s.claim.len(), 3);
        assert_eq!(s.claim[0], "SET @rowferry_claim = NULL");
        assert_eq!(
            s.claim[1],
            "SELECT seq INTO @rowferry_claim FROM `test`.`rowferry_chunks` WHERE job = :p1 AND \
             (state = 'planned' OR (state = 'claimed' AND lease_until < NOW(6))) ORDER BY seq \
             LIMIT 1 FOR UPDATE SKIP LOCKED"
        );
        assert!(
            s.claim[2].ends_with("WHERE job = :p1 AND seq = @rowferry_claim"),
            "{}",
            s.claim[2]
        );
        assert!(
            s.claim[2].contains("lease_until = NOW(6) + INTERVAL 1500000 MICROSECOND"),
            "{}",
            s.claim[2]
        );
        // `state` is read before the row changes (left-to-right SET).
        assert_eq!(
            s.done_guard,
            "UPDATE `test`.`rowferry_chunks` SET state = CASE WHEN owner = :p3 AND state = \
             'claimed' THEN 'done' END, done_at = NOW(6) WHERE job = :p1 AND seq = :p2"
        );
        assert!(s.ddl.iter().all(|d| d.ends_with("ENGINE = InnoDB")));
        assert_eq!(
            s.totals,
            "SELECT CAST(count(*) AS CHAR), CAST(COALESCE(sum(rows_done), 0) AS CHAR) FROM \
             `test`.`rowferry_chunks` WHERE job = :p1 AND state = 'done'"
        );
    }

    #[test]
    fn sqlserver_claims_with_readpast() {
        let s = coordination_sql(&crate::dialect::sqlserver::SqlServer, "dbo", 1000).unwrap();
        assert!(
            s.claim[0].contains("WITH (UPDLOCK, READPAST, ROWLOCK)"),
            "{}",
            s.claim[0]
        );
        assert!(s.ddl[0].starts_with("IF OBJECT_ID(N'"), "{}", s.ddl[0]);
    }
}
