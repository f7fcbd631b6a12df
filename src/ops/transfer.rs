//! `rowferry copy --target URL` where the target is another database, server
//! or engine. Each chunk is read from the source in key order (every value
//! as text in a form the target takes back exactly, see `dialect/wire.rs`)
//! and written to the target in ONE target transaction that first deletes
//! the chunk's keys there, then inserts its rows: a chunk that runs again
//! after a crash leaves exactly one copy of each row. Checkpoint, resume,
//! workers, throttle and progress are the same pipeline as any copy.

use super::{ChunkSql, PreparedJob, inspect, run_job};
use crate::checkpoint::Chunk;
use crate::db::{self, Database, Session, SessionSettings, Statement};
use crate::dialect::wire::{Kind, faithful};
use crate::dialect::{Dialect, RangeShape, key_range};
use crate::error::{Error, Result};
use crate::planner::KeysetPlanner;
use crate::pool::{ChunkWork, describe_chunk};
use crate::spec::{CopySpec, JobIdentity, RunOptions};
use crate::table::{Column, Key, TableInfo};
use async_trait::async_trait;
use std::sync::Arc;

/// Whether `spec` copies into another database (of any engine).
pub fn crosses_servers(spec: &CopySpec) -> bool {
    spec.target
        .as_ref()
        .is_some_and(|t| t.identity() != spec.source.identity())
}

/// Statements bind at most this many parameters (PostgreSQL and MySQL
/// both stop at 65535).
const MAX_PARAMS: usize = 60_000;

pub async fn run(spec: &CopySpec, opts: &RunOptions) -> Result<()> {
    if spec.dual_write {
        return Err(Error::input(
            "--dual-write needs the source and the target in one database (triggers cannot \
             write into another server); copy without it, or into a table beside the source",
        ));
    }
    let job = prepare(spec, opts).await?;
    let _lock = run_job(job, opts).await?;
    Ok(())
}

pub async fn prepare(spec: &CopySpec, opts: &RunOptions) -> Result<PreparedJob> {
    let target_url = spec
        .target
        .as_ref()
        .ok_or_else(|| Error::input("--target is needed to copy into another database"))?;
    let settings = SessionSettings {
        pool_size: opts.workers + 2,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
    };
    let db: Arc<dyn Database> = Arc::from(
        db::connect(&spec.source, &settings)
            .await
            .map_err(|e| e.context("--source"))?,
    );
    let target_db: Arc<dyn Database> = Arc::from(
        db::connect(target_url, &settings)
            .await
            .map_err(|e| e.context("--target"))?,
    );
    let (d, td) = (db.dialect(), target_db.dialect());
    let neutral = spec.source.engine != target_url.engine;
    let source = {
        let mut s = db.session().await?;
        inspect(s.as_mut(), d, &spec.table, "--table").await?
    };
    let target = {
        let mut s = target_db.session().await?;
        inspect(s.as_mut(), td, &spec.target_table, "--target-table").await?
    };
    let key = Key::resolve(&source, spec.key.as_deref())?;
    for column in &key.columns {
        if let Some(reason) = d.unusable_key_reason(column) {
            return Err(Error::input(format!(
                "key column {} of {} ({}) cannot bound chunks: {reason}",
                column.name,
                source.display_name(),
                column.data_type
            )));
        }
    }
    let columns = resolve(d, td, &source, &target, spec, neutral)?;
    let key_targets: Vec<Column> = key
        .columns
        .iter()
        .map(|k| {
            columns
                .iter()
                .find(|c| super::copy::names_column(d, &c.expr, &k.name))
                .map(|c| c.target.clone())
                .ok_or_else(|| {
                    Error::input(format!(
                        "key column {} of {} is not copied into {}: the target needs the copy \
                         key to replace a chunk's rows exactly. Add a column of that name or \
                         --map TARGET_COL={}",
                        k.name,
                        source.display_name(),
                        target.display_name(),
                        d.quote_ident(&k.name)
                    ))
                })
        })
        .collect::<Result<_>>()?;

    let source_q = d.qualified(&source.schema, &source.name);
    let select = |has_lo: bool| {
        let list = columns
            .iter()
            .map(|c| d.wire().wire_out(&c.expr, c.kind, neutral))
            .collect::<Vec<_>>()
            .join(", ");
        let range = key_range(
            d,
            &key,
            RangeShape {
                has_lo,
                has_hi: true,
            },
        );
        let filter = spec
            .where_sql
            .as_deref()
            .map(|w| format!(" AND ({w})"))
            .unwrap_or_default();
        let order = key
            .columns
            .iter()
            .map(|c| d.quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT {list} FROM {source_q} WHERE {range}{filter} ORDER BY {order}")
    };
    let read = ChunkSql {
        first: select(false),
        rest: select(true),
    };
    // The server checks the read (a bad --map or --where) now.
    {
        let mut s = db.session().await?;
        s.check(&read.rest).await.map_err(|e| {
            Error::input(format!(
                "the source rejected the chunk query ({}); check --map and --where. \
                 Statement: {}",
                e.message, read.rest
            ))
        })?;
    }
    let key_positions: Vec<usize> = key_targets
        .iter()
        .map(|t| {
            columns
                .iter()
                .position(|c| c.target.name == t.name)
                .unwrap_or(0)
        })
        .collect();
    let target_q = td.qualified(&target.schema, &target.name);
    let identity = JobIdentity {
        operation: "copy",
        source: spec.source.identity(),
        target: target_url.identity(),
        table: source.display_name(),
        target_table: target.display_name(),
        key: key.names(),
        map: spec.maps.clone(),
        where_sql: spec.where_sql.clone(),
    };
    let planner = Arc::new(KeysetPlanner::new(d, source_q, key.clone()));
    let work = Arc::new(TransferWork {
        target_db: target_db.clone(),
        read,
        target_q,
        target_name: target.display_name(),
        columns: columns.iter().map(|c| c.target.clone()).collect(),
        key_targets,
        key_positions,
        neutral,
    });
    eprintln!(
        "rowferry: copying across servers{}: {} -> {} ({})",
        if neutral { " and engines" } else { "" },
        spec.source,
        target_url,
        columns
            .iter()
            .map(|c| c.target.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(PreparedJob {
        db,
        identity,
        planner,
        work,
        source,
        phase: "copy",
        // One run per target table, whichever source feeds it.
        lock_name: format!("rowferry:writes:{}:{}", target_url.identity(), target.id),
        side_state: Default::default(),
        summary_note: None,
        before_chunks: None,
    })
}

/// A target column and the source expression (with its kind) that fills it.
struct Mapped {
    target: Column,
    expr: String,
    kind: Kind,
}

/// `--map` first, then same-named source columns; generated target
/// columns are skipped. Across engines every pair of kinds must convert
/// exactly, else the column is named and the copy refused.
fn resolve(
    d: &dyn Dialect,
    td: &dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    spec: &CopySpec,
    neutral: bool,
) -> Result<Vec<Mapped>> {
    let mut out = Vec::new();
    for column in target.columns.iter().filter(|c| !c.generated) {
        let mapped = spec
            .maps
            .iter()
            .find(|m| m.column.eq_ignore_ascii_case(&column.name));
        let (expr, kind) = match (mapped, source.column(&column.name)) {
            // A mapped expression is evaluated by the source: it travels
            // as the kind the target column expects.
            (Some(m), _) => (m.expr.clone(), td.wire().kind(column)),
            (None, Some(s)) => (d.quote_ident(&s.name), d.wire().kind(s)),
            (None, None) => continue,
        };
        if neutral && !faithful(kind, td.wire().kind(column)) {
            return Err(Error::input(format!(
                "column {} cannot cross engines exactly: source {:?} into target {} ({:?}). \
                 Change the target column's type, or --map {}=<expression> to convert it on \
                 the source",
                column.name,
                kind,
                column.data_type,
                td.wire().kind(column),
                column.name
            )));
        }
        out.push(Mapped {
            target: column.clone(),
            expr,
            kind,
        });
    }
    for m in &spec.maps {
        if !out
            .iter()
            .any(|c| c.target.name.eq_ignore_ascii_case(&m.column))
        {
            return Err(Error::input(format!(
                "--map {}: {} has no such (writable) column",
                m.column,
                target.display_name()
            )));
        }
    }
    Ok(out)
}

struct TransferWork {
    target_db: Arc<dyn Database>,
    read: ChunkSql,
    target_q: String,
    target_name: String,
    columns: Vec<Column>,
    key_targets: Vec<Column>,
    /// Where each key column is in a read row.
    key_positions: Vec<usize>,
    neutral: bool,
}

impl TransferWork {
    /// DELETE of the chunk's keys, then INSERTs of its rows, in statements
    /// under the parameter limit.
    fn statements(&self, td: &dyn Dialect, rows: &[crate::db::Row]) -> Vec<Statement> {
        let mut statements = Vec::new();
        let keys_per = (MAX_PARAMS / self.key_targets.len().max(1)).max(1);
        for batch in rows.chunks(keys_per) {
            let mut n = 0;
            let mut params = Vec::new();
            let tuples: Vec<String> = batch
                .iter()
                .map(|row| {
                    let values: Vec<String> = self
                        .key_targets
                        .iter()
                        .zip(&self.key_positions)
                        .map(|(column, &at)| {
                            n += 1;
                            params.push(row.get(at).cloned().flatten().unwrap_or_default());
                            td.wire().wire_in(n, column, self.neutral)
                        })
                        .collect();
                    format!("({})", values.join(", "))
                })
                .collect();
            let keys = self
                .key_targets
                .iter()
                .map(|c| td.quote_ident(&c.name))
                .collect::<Vec<_>>()
                .join(", ");
            statements.push(Statement {
                sql: format!(
                    "DELETE FROM {} WHERE ({keys}) IN ({})",
                    self.target_q,
                    tuples.join(", ")
                ),
                params,
            });
        }
        let names = self
            .columns
            .iter()
            .map(|c| td.quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let rows_per = (MAX_PARAMS / self.columns.len().max(1)).max(1);
        for batch in rows.chunks(rows_per) {
            let mut n = 0;
            let mut params: Vec<Option<String>> = Vec::new();
            let tuples: Vec<String> = batch
                .iter()
                .map(|row| {
                    let values: Vec<String> = self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, column)| {
                            let value = row.get(i).cloned().flatten();
                            match value {
                                None => "NULL".to_string(),
                                Some(v) => {
                                    n += 1;
                                    params.push(Some(v));
                                    td.wire().wire_in(n, column, self.neutral)
                                }
                            }
                        })
                        .collect();
                    format!("({})", values.join(", "))
                })
                .collect();
            statements.push(Statement {
                sql: format!(
                    "INSERT INTO {} ({names}) VALUES {}",
                    self.target_q,
                    tuples.join(", ")
                ),
                params: params.into_iter().flatten().collect(),
            });
        }
        statements
    }
}

#[async_trait]
impl ChunkWork for TransferWork {
    async fn run(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<u64> {
        let read = self.read.statement(chunk);
        let rows = session.query(&read.sql, &read.params).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut target = self.target_db.session().await?;
        let statements = self.statements(self.target_db.dialect(), &rows);
        target.transaction(&statements).await?;
        Ok(rows.len() as u64)
    }

    fn explain(&self, chunk: &Chunk, error: Error) -> Error {
        error.context(format!(
            "{} into {} (the chunk's target transaction was rolled back; rerun the same \
             command to resume)",
            describe_chunk(chunk),
            self.target_name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::test_support::column;

    /// The statements only; `target_db` is never reached.
    fn statements(columns: Vec<Column>, rows: &[crate::db::Row]) -> Vec<Statement> {
        struct NoDb;
        #[async_trait]
        impl Database for NoDb {
            fn dialect(&self) -> &'static dyn Dialect {
                &Mysql
            }
            async fn session(&self) -> Result<Box<dyn Session>> {
                Err(Error::fatal("no database in unit tests"))
            }
            async fn dedicated_session(&self) -> Result<Box<dyn Session>> {
                Err(Error::fatal("no database in unit tests"))
            }
        }
        let work = TransferWork {
            target_db: Arc::new(NoDb),
            read: ChunkSql {
                first: String::new(),
                rest: String::new(),
            },
            target_q: "`s`.`t`".into(),
            target_name: "s.t".into(),
            key_targets: vec![columns[0].clone()],
            key_positions: vec![0],
            columns,
            neutral: true,
        };
        work.statements(&Mysql, rows)
    }

    #[test]
    fn a_chunk_replaces_its_keys_in_one_go_with_nulls_as_literals() {
        let rows = vec![
            vec![Some("1".into()), Some("00FF".into())],
            vec![Some("2".into()), None],
        ];
        let got = statements(vec![column("id", "bigint(20)"), column("b", "blob")], &rows);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].sql,
            "DELETE FROM `s`.`t` WHERE (`id`) IN ((:p1), (:p2))"
        );
        assert_eq!(got[0].params, ["1", "2"]);
        assert_eq!(
            got[1].sql,
            "INSERT INTO `s`.`t` (`id`, `b`) VALUES (:p1, UNHEX(:p2)), (:p3, NULL)"
        );
        assert_eq!(got[1].params, ["1", "00FF", "2"]);
    }

    #[test]
    fn statements_stay_under_the_parameter_limit() {
        let columns: Vec<Column> = (0..10).map(|i| column(&format!("c{i}"), "int")).collect();
        let rows: Vec<crate::db::Row> = (0..7000)
            .map(|r| (0..10).map(|c| Some(format!("{}", r * 10 + c))).collect())
            .collect();
        let got = statements(columns, &rows);
        assert!(got.iter().all(|s| s.params.len() <= MAX_PARAMS));
        let inserted: usize = got
            .iter()
            .filter(|s| s.sql.starts_with("INSERT"))
            .map(|s| s.params.len())
            .sum();
        assert_eq!(inserted, 70_000, "every value is written once");
    }
}
