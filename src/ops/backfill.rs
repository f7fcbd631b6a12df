//! `rowferry backfill`: a batched in-place UPDATE, exactly once across
//! crashes. Each chunk records itself in a `rowferry_bf_*` state table in
//! the same transaction as its UPDATE, so a chunk re-run after a crash
//! (committed, but not yet in the checkpoint file) finds its row and
//! changes nothing: `SET n = n + 1` is applied once.

use super::{ChunkSql, PreparedJob, SideState, inspect, run_job};
use crate::checkpoint::Chunk;
use crate::db::{self, Database, Session, SessionSettings, Statement};
use crate::dialect::{state_exists_sql, state_mark_sql, update_chunk_sql};
use crate::error::{Error, Result};
use crate::planner::KeysetPlanner;
use crate::pool::{ChunkWork, RetryingSession, describe_chunk};
use crate::progress::Stats;
use crate::spec::{BackfillSpec, JobIdentity, RunOptions};
use crate::table::{Key, TableInfo};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub async fn run(spec: &BackfillSpec, opts: &RunOptions) -> Result<()> {
    let plan = prepare(spec, opts).await?;
    let db = plan.job.db.clone();
    let mut ddl = RetryingSession::new(
        db,
        Arc::new(Stats::default()),
        opts.max_retries,
        CancellationToken::new(),
    );
    // Interrupted or failed runs keep their state rows: the rerun needs them.
    // The job's lock is held until cleanup and --then-not-null are done.
    let _lock = run_job(plan.job, opts).await?;
    run_statement(&mut ddl, plan.clear_state).await?;
    let others = query(&mut ddl, &plan.state_rows).await?;
    if others.is_empty() {
        run_statement(&mut ddl, plan.drop_state).await?;
    }
    if let Some(not_null) = plan.not_null {
        let nulls = query(&mut ddl, &not_null.count_nulls)
            .await?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .unwrap_or_default();
        if nulls.trim() != "0" {
            let mut refused = Error::input(format!(
                "--then-not-null {}: {} row(s) of {} still hold NULL (outside --where, or \
                 written by the application meanwhile); the column was left nullable. Fill them, \
                 e.g. rowferry backfill --where '{} IS NULL', then rerun",
                not_null.column,
                nulls.trim(),
                plan.table,
                not_null.column
            ));
            refused.after_writes = true;
            return Err(refused);
        }
        let prefix: Vec<String> = not_null.no_timeout.iter().cloned().collect();
        for sql in not_null.steps {
            let statements = prefix.iter().cloned().chain([sql]).collect();
            if let Err(e) = run_statements(&mut ddl, statements).await {
                // Never leave a helper constraint that rejects NULLs behind.
                if let Some(undo) = not_null.undo.clone() {
                    let _ = run_statements(&mut ddl, vec![undo]).await;
                }
                // MySQL 1845/1846: no online path; it would copy the table
                // (or block writers), which rowferry never does for you.
                return Err(if matches!(e.code.as_deref(), Some("1845" | "1846")) {
                    Error::fatal(format!(
                        "--then-not-null {}: the server cannot change the column online \
                         (ALGORITHM=INPLACE, LOCK=NONE refused: {}); the backfill itself is complete. \
                         Make the column NOT NULL in a quiet period, or with an online schema tool",
                        not_null.column, e.message
                    ))
                } else {
                    e.context(format!(
                        "--then-not-null {} (the column was left nullable)",
                        not_null.column
                    ))
                });
            }
        }
        eprintln!(
            "rowferry: {} of {} is now NOT NULL",
            not_null.column, plan.table
        );
    }
    Ok(())
}

async fn query(session: &mut RetryingSession, sql: &str) -> Result<Vec<crate::db::Row>> {
    let rows = session
        .run(|s| {
            let sql = sql.to_string();
            Box::pin(async move { s.query(&sql, &[]).await })
        })
        .await?;
    Ok(rows.unwrap_or_default())
}

async fn run_statements(session: &mut RetryingSession, sqls: Vec<String>) -> Result<()> {
    session
        .run(|s| {
            let statements: Vec<Statement> = sqls
                .iter()
                .map(|sql| Statement {
                    sql: sql.clone(),
                    params: vec![],
                })
                .collect();
            Box::pin(async move { s.transaction(&statements).await.map(|_| ()) })
        })
        .await
        .map(|_| ())
}

/// One statement with the job's retries (DDL waits at most --lock-timeout
/// for its lock, then backs off and tries again).
async fn run_statement(session: &mut RetryingSession, sql: String) -> Result<()> {
    session
        .run(|s| {
            let sql = sql.clone();
            Box::pin(async move {
                s.transaction(&[Statement {
                    sql,
                    params: vec![],
                }])
                .await
                .map(|_| ())
            })
        })
        .await
        .map(|_| ())
}

/// Everything decided before the first row changes.
pub struct BackfillPlan {
    pub job: PreparedJob,
    pub table: String,
    /// The UPDATE a chunk runs (shown by `rowferry plan`).
    pub update: ChunkSql,
    /// After success: delete this job's state rows, and drop the state
    /// table when no other job's rows remain in it.
    pub clear_state: String,
    pub state_rows: String,
    pub drop_state: String,
    pub not_null: Option<NotNull>,
}

/// `--then-not-null`: how many rows would violate it, and the DDL.
pub struct NotNull {
    pub column: String,
    pub count_nulls: String,
    pub steps: Vec<String>,
    /// Run first in each step's transaction (no statement timeout).
    pub no_timeout: Option<String>,
    /// Run if a step fails.
    pub undo: Option<String>,
}

/// Connect, read the table, resolve key and `--set`, have the server check
/// the UPDATE, create the state table. Bad input is found before anything
/// is written.
pub async fn prepare(spec: &BackfillSpec, opts: &RunOptions) -> Result<BackfillPlan> {
    let settings = SessionSettings {
        pool_size: opts.workers + 2,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        // --coordinate-in-db: a process frozen inside a transaction loses
        // it after a lease, so its locks never hold the others up.
        idle_in_transaction_timeout: opts.coordinate_lease,
    };
    let db: Arc<dyn Database> = Arc::from(db::connect(&spec.source, &settings).await?);
    let d = db.dialect();
    let mut session = db.session().await?;
    let table = inspect(session.as_mut(), d, &spec.table, "--table").await?;
    let key = Key::resolve(&table, spec.key.as_deref())?;
    for column in &key.columns {
        if let Some(reason) = d.unusable_key_reason(column) {
            return Err(Error::input(format!(
                "key column {} of {} cannot bound chunks: {reason}; pass --key with another NOT NULL unique key",
                column.name,
                table.display_name()
            )));
        }
    }
    let set_sql = resolve_set(d, &table, &key, spec)?;
    let table_sql = d.qualified(&table.schema, &table.name);
    let update = ChunkSql {
        first: update_chunk_sql(
            d,
            &table_sql,
            &set_sql,
            &key,
            false,
            spec.where_sql.as_deref(),
        ),
        rest: update_chunk_sql(
            d,
            &table_sql,
            &set_sql,
            &key,
            true,
            spec.where_sql.as_deref(),
        ),
    };
    session.check(&update.rest).await.map_err(|e| {
        if e.is_retryable() {
            return e;
        }
        Error::input(format!(
            "the server rejected the backfill statement ({}); check --set{}. Statement: {}",
            e.message,
            if spec.where_sql.is_some() {
                " and --where"
            } else {
                ""
            },
            update.rest
        ))
    })?;
    let not_null = match &spec.then_not_null {
        None => None,
        Some(name) => {
            let column = table
                .column_named(name)
                .map_err(|e| e.context("--then-not-null"))?;
            let constraint = format!("rowferry_nn_{}", short_hash(&column.name));
            let definition = match d.table_definition_sql(&table_sql) {
                Some(sql) => session
                    .query(&sql, &[])
                    .await?
                    .into_iter()
                    .next()
                    .and_then(|row| row.into_iter().last().flatten()),
                None => None,
            };
            let steps = d
                .set_not_null_steps(&table_sql, &column.name, &constraint, definition.as_deref())
                .ok_or_else(|| {
                    Error::input(if d.name() == "sqlserver" {
                        format!(
                            "--then-not-null {}: SQL Server has no online way to make a column \
                             NOT NULL (ALTER COLUMN ... NOT NULL scans the table under a schema \
                             modification lock that blocks every reader and writer); nothing \
                             was written. Run the backfill without it and alter the column in a \
                             quiet period",
                            column.name
                        )
                    } else {
                        format!(
                            "--then-not-null {}: cannot find the column's definition on {} to \
                             restate it; run the backfill without it and make the column NOT \
                             NULL yourself",
                            column.name,
                            d.name()
                        )
                    })
                })?;
            let count_nulls = format!(
                "SELECT CAST(COUNT(*) AS CHAR(20)) FROM {table_sql} WHERE {} IS NULL",
                d.quote_ident(&column.name)
            );
            Some(NotNull {
                column: column.name.clone(),
                count_nulls,
                steps,
                no_timeout: d.no_statement_timeout().map(String::from),
                undo: d.undo_not_null(&table_sql, &constraint),
            })
        }
    };

    let identity = JobIdentity {
        operation: "backfill",
        source: spec.source.identity(),
        target: spec.source.identity(),
        table: table.display_name(),
        target_table: table.display_name(),
        key: key.names(),
        map: spec.sets.clone(),
        where_sql: spec.where_sql.clone(),
    };
    let job_id = identity.fingerprint();
    // One state table per table (one job writes a table at a time).
    let state = d.qualified(
        &table.schema,
        &format!("rowferry_bf_{}", short_hash(&table.id)),
    );
    let planner = Arc::new(KeysetPlanner::new(d, table_sql.clone(), key.clone()));
    let work = Arc::new(BackfillWork {
        update: update.clone(),
        mark_sql: state_mark_sql(d, &state),
        exists_sql: state_exists_sql(d, &state),
        job: job_id.clone(),
        table: table.display_name(),
    });
    let lock_name = format!("rowferry:writes:{}", table.id);
    let display = table.display_name();
    Ok(BackfillPlan {
        job: PreparedJob {
            db,
            identity,
            planner,
            work,
            source: table,
            phase: "backfill",
            lock_db: None,
            lock_name,
            summary_note: None,
            before_chunks: None,
            side_state: SideState {
                setup: vec![d.state_table_ddl(&state)],
                restart: vec![format!("DELETE FROM {state} WHERE job = '{job_id}'")],
                leftovers: Some(format!("SELECT job FROM {state} WHERE job = '{job_id}'")),
            },
        },
        table: display,
        update,
        // The job id is a hex fingerprint: safe to write into SQL.
        clear_state: format!("DELETE FROM {state} WHERE job = '{job_id}'"),
        state_rows: format!("SELECT job FROM {state}"),
        drop_state: format!("DROP TABLE IF EXISTS {state}"),
        not_null,
    })
}

/// `COL = EXPR, ...` with every column checked against the catalog: a key
/// column or a generated one cannot be set.
fn resolve_set(
    d: &dyn crate::dialect::Dialect,
    table: &TableInfo,
    key: &Key,
    spec: &BackfillSpec,
) -> Result<String> {
    let mut parts = Vec::new();
    for set in &spec.sets {
        let column = table
            .column_named(&set.column)
            .map_err(|e| e.context("--set"))?;
        if key.columns.iter().any(|k| k.name == column.name)
            || table
                .unique_indexes
                .iter()
                .any(|i| i.primary && i.columns.contains(&column.name))
        {
            return Err(Error::input(format!(
                "--set {}: {} is part of the key chunks are cut on (or the primary key); changing it \
                 would move rows between chunks. Backfill other columns, or copy into a new table",
                set.column, column.name
            )));
        }
        if column.generated {
            return Err(Error::input(format!(
                "--set {}: column {} is generated; the server computes it",
                set.column, column.name
            )));
        }
        parts.push(format!("{} = ({})", d.quote_ident(&column.name), set.expr));
    }
    Ok(parts.join(", "))
}

fn short_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
}

struct BackfillWork {
    update: ChunkSql,
    mark_sql: String,
    exists_sql: String,
    job: String,
    table: String,
}

/// A chunk's name in the state table: a hash of its exact bounds.
fn chunk_id(chunk: &Chunk) -> String {
    let bounds = serde_json::to_vec(&(&chunk.lo, &chunk.hi)).unwrap_or_default();
    hex::encode(Sha256::digest(&bounds))[..40].to_string()
}

#[async_trait]
impl ChunkWork for BackfillWork {
    async fn run(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<u64> {
        let mark = Statement {
            sql: self.mark_sql.clone(),
            params: vec![self.job.clone(), chunk_id(chunk)],
        };
        match session
            .transaction(&[mark.clone(), self.update.statement(chunk)])
            .await
        {
            Ok(counts) => Ok(counts.get(1).copied().unwrap_or(0)),
            Err(e) if e.duplicate_key.is_some() => {
                // Was it the state row? Then an earlier run applied this
                // chunk and stopped before its checkpoint recorded it.
                let applied = session.query(&self.exists_sql, &mark.params).await?;
                if applied.is_empty() { Err(e) } else { Ok(0) }
            }
            Err(e) => Err(e),
        }
    }

    fn explain(&self, chunk: &Chunk, error: Error) -> Error {
        error.context(format!("{} of {}", describe_chunk(chunk), self.table))
    }
}
