//! `rowferry copy --target URL` where the target is another database, server
//! or engine. Each chunk is read from the source in key order (every value
//! as text in a form the target takes back exactly, see `dialect/wire.rs`)
//! and written to the target in ONE target transaction that first deletes
//! the chunk's keys there, then inserts its rows: a chunk that runs again
//! after a crash leaves exactly one copy of each row. Checkpoint, resume,
//! workers, throttle and progress are the same pipeline as any copy.
//!
//! PostgreSQL to PostgreSQL uses COPY instead of SELECT and INSERT (see
//! `WritePath`): the source's `COPY (SELECT ...) TO STDOUT` streams into the
//! target's `COPY ... FROM STDIN`, in binary where both sides' types are
//! built in and alike, after a DELETE of the chunk's key range. Where the
//! target's key range may not hold the same keys as the source's (another
//! key type, a collation not proven to order alike, `--where`), rows are
//! read with SELECT, their keys deleted one by one, and the rows written
//! with COPY in text form, encoded here on every core (rayon).
//!
//! Into MySQL/MariaDB the rows read with SELECT go by LOAD DATA LOCAL
//! INFILE, encoded likewise and sent from memory, after the DELETE of their
//! keys. LOCAL makes the server turn what a strict INSERT refuses (a value
//! too long, a duplicate key) into warnings, so a chunk commits only if
//! every row loaded without one; otherwise it is rolled back and written
//! again with INSERT, whose own error (or success) is the reference. A
//! server with local_infile off gets INSERTs from the start.
//!
//! Into SQL Server the rows go by TDS bulk load, as text, into a
//! temporary table, then into the target with one INSERT ... SELECT that
//! converts them as the INSERT path's parameters are converted (see
//! `dialect::sqlserver::StagedInsert`). A server that refuses bulk load
//! in a probe of no rows, or a URL with `bulk_load=false`, gets
//! multi-row INSERTs.

use super::lengths::TextLimit;
use super::{ChunkSql, PreparedJob, inspect, run_job};
use crate::checkpoint::Chunk;
use crate::db::sqlserver::{BULK_LOAD_OFF_CODE, MAX_BULK_VALUE_UNITS, fits_bulk_load};
use crate::db::{
    self, CopyData, Database, LoadOutcome, ServerWarning, Session, SessionSettings, Statement,
};
use crate::dialect::mysql::{LoadColumn, Mysql, load_data_field};
use crate::dialect::sqlserver::{SqlServer, StagedInsert};
use crate::dialect::wire::{CopyText, Kind, faithful, tab_separated_field};
use crate::dialect::{Dialect, RangeShape, key_range};
use crate::error::{Error, Result};
use crate::planner::KeysetPlanner;
use crate::pool::{ChunkWork, describe_chunk};
use crate::spec::{CopySpec, JobIdentity, RunOptions};
use crate::table::{Column, Key, TableInfo};
use crate::url::Engine;
use async_trait::async_trait;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether `spec` copies into another database (of any engine).
pub fn crosses_servers(spec: &CopySpec) -> bool {
    spec.target
        .as_ref()
        .is_some_and(|t| t.identity() != spec.source.identity())
}

/// Statements bind at most this many parameters (PostgreSQL and MySQL
/// both stop at 65535).
const MAX_PARAMS: usize = 60_000;

/// What one statement into the target may hold: parameters, and rows of
/// a VALUES list. SQL Server takes 2,100 parameters per call and 1,000
/// rows per VALUES.
fn statement_limits(td: &dyn Dialect) -> (usize, usize) {
    if td.name() == "sqlserver" {
        (2_000, 1_000)
    } else {
        (MAX_PARAMS, usize::MAX)
    }
}

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
        idle_in_transaction_timeout: None,
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
        let target = inspect(s.as_mut(), td, &spec.target_table, "--target-table").await?;
        super::preflight::refuse_ignore_dup_key(s.as_mut(), td, &target).await?;
        target
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
    let char_limits: Vec<(usize, CharLimit)> = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let from = source
                .columns
                .iter()
                .find(|s| super::copy::names_column(d, &c.expr, &s.name));
            char_limit(d, td, from, c).map(|l| (i, l))
        })
        .collect();
    let copied = columns.iter().map(|c| &c.target);
    super::preflight::other_server(spec, td, target_db.as_ref(), &source, &target, copied).await?;
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
    let overriding_identity = columns.iter().any(|c| c.target.identity_always);
    let both_postgres =
        spec.source.engine == Engine::Postgres && target_url.engine == Engine::Postgres;
    let (write, path_note) = if both_postgres && !neutral {
        let (source_facts, target_facts) = (
            pg_facts(db.as_ref(), &source).await?,
            pg_facts(target_db.as_ref(), &target).await?,
        );
        let facts = |f: &PgFacts, c: &Column| {
            let found = f.columns.get(&c.name);
            TypeFacts {
                data_type: c.data_type.clone(),
                oid: found.map_or(0, |c| c.oid),
                collation: found.and_then(|c| c.collation.clone()),
                unconstrained: found
                    .map_or_else(|| c.data_type.clone(), |c| c.unconstrained.clone()),
            }
        };
        let keys: Vec<(String, TypeFacts, TypeFacts)> = key
            .columns
            .iter()
            .zip(&key_targets)
            .map(|(s, t)| {
                (
                    s.name.clone(),
                    facts(&source_facts, s),
                    facts(&target_facts, t),
                )
            })
            .collect();
        let pairs: Vec<(String, Option<TypeFacts>, TypeFacts)> = columns
            .iter()
            .map(|c| {
                let from = source
                    .columns
                    .iter()
                    .find(|s| super::copy::names_column(d, &c.expr, &s.name))
                    .map(|s| facts(&source_facts, s));
                (c.target.name.clone(), from, facts(&target_facts, &c.target))
            })
            .collect();
        let spaces = char_limits.first().map(|(i, l)| {
            format!(
                "column {} is {} in the source and {} in the target, whose server would cut a \
                 longer value's trailing spaces without an error: each value's length is \
                 checked here",
                columns[*i].target.name,
                l.source_type.as_deref().unwrap_or("an expression (--map)"),
                columns[*i].target.data_type
            )
        });
        let choice = choose_pg_path(
            spec.where_sql.is_some(),
            spaces,
            &keys,
            &pairs,
            source_facts.major == target_facts.major,
        );
        let names = columns
            .iter()
            .map(|c| td.quote_ident(&c.target.name))
            .collect::<Vec<_>>()
            .join(", ");
        match choice.path {
            PgPath::Rows => (
                WritePath::Rows {
                    copy_in: format!("COPY {target_q} ({names}) FROM STDIN (FORMAT text)"),
                    forms: copy_text_forms(td, &columns, neutral),
                },
                format!(
                    "COPY (text) of rows read with SELECT: {}; each chunk clears its place in \
                     the target, then writes its rows with COPY FROM STDIN",
                    choice.why
                ),
            ),
            path => {
                let binary = path == PgPath::Binary;
                let list = columns
                    .iter()
                    .zip(&choice.convert)
                    .zip(&pairs)
                    .map(|((c, &convert), (_, _, to))| match (binary, convert) {
                        // As the INSERT converts its text parameter, on
                        // the source, into the target type without its
                        // modifier: the target's binary input applies
                        // that as an assignment would (a longer value
                        // for varchar(n) is refused, never cut).
                        (true, true) => format!("({})::text::{}", c.expr, to.unconstrained),
                        (false, true) => format!("({})::text", c.expr),
                        (_, false) => c.expr.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let format = if binary { "binary" } else { "text" };
                let stream = StreamCopy {
                    select: format!("SELECT {list} FROM {source_q} WHERE "),
                    tail: format!("{filter} ORDER BY {order}"),
                    format,
                    key: key.clone(),
                    delete: range_delete_sql(td, &target_q, &key_targets),
                    copy_in: format!("COPY {target_q} ({names}) FROM STDIN (FORMAT {format})"),
                };
                // The source checks the statement inside the COPY (with
                // the conversions) before anything is written.
                let check = format!(
                    "{}{}{}",
                    stream.select,
                    key_range(
                        d,
                        &key,
                        RangeShape {
                            has_lo: true,
                            has_hi: true
                        }
                    ),
                    stream.tail
                );
                let mut s = db.session().await?;
                s.check(&check).await.map_err(|e| {
                    Error::input(format!(
                        "the source rejected the chunk query ({}); check --map. Statement: {check}",
                        e.message
                    ))
                })?;
                let converted: Vec<&str> = columns
                    .iter()
                    .zip(&choice.convert)
                    .filter(|(_, convert)| **convert)
                    .map(|(c, _)| c.target.name.as_str())
                    .collect();
                let mut note = format!(
                    "COPY ({format}): each chunk streams from the source's COPY TO STDOUT into \
                     the target's COPY FROM STDIN, in one target transaction that first deletes \
                     the target's rows in the chunk's key range"
                );
                if !converted.is_empty() {
                    note.push_str(&format!(
                        "; converted to the target's type {}: {}",
                        if binary {
                            "on the source"
                        } else {
                            "by the target"
                        },
                        converted.join(", ")
                    ));
                }
                if !binary {
                    note.push_str(&format!(" (not binary: {})", choice.why));
                }
                (WritePath::Stream(stream), note)
            }
        }
    } else if target_url.engine == Engine::Postgres {
        let names = columns
            .iter()
            .map(|c| td.quote_ident(&c.target.name))
            .collect::<Vec<_>>()
            .join(", ");
        (
            WritePath::Rows {
                copy_in: format!("COPY {target_q} ({names}) FROM STDIN (FORMAT text)"),
                forms: copy_text_forms(td, &columns, neutral),
            },
            "COPY (text) of rows read with SELECT: values cross engines in neutral text forms; \
             each chunk clears its place in the target, then writes its rows with COPY FROM \
             STDIN in the same transaction"
                .to_string(),
        )
    } else if target_url.engine == Engine::Mysql {
        let load = LoadData {
            sql: Mysql.load_data_local(
                &target_q,
                &columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| LoadColumn {
                        name: td.quote_ident(&c.target.name),
                        // The value as the INSERT path writes it, so that
                        // both paths assign alike.
                        value_sql: td.wire().wire_in(i + 1, &c.target, neutral),
                        n: i + 1,
                    })
                    .collect::<Vec<_>>(),
            ),
            refused: AtomicBool::new(false),
            replayed: AtomicBool::new(false),
        };
        let crossing = if neutral {
            "; values cross engines in neutral text forms"
        } else {
            ""
        };
        match probe_load_data(target_db.as_ref(), &load.sql).await? {
            MyPath::Load => (
                WritePath::Load(load),
                format!(
                    "LOAD DATA LOCAL INFILE: each chunk clears its place in the target, then \
                     loads its rows from memory in the same transaction, which commits only if \
                     every row loaded without a warning (else the chunk is written again with \
                     INSERT){crossing}"
                ),
            ),
            MyPath::Insert(why) => (
                WritePath::Insert,
                format!("INSERT ... VALUES (not LOAD DATA LOCAL INFILE: {why}){crossing}"),
            ),
        }
    } else if target_url.engine == Engine::Mssql {
        let load = SqlServer.staged_insert(
            &target_q,
            &columns.iter().map(|c| c.target.clone()).collect::<Vec<_>>(),
            neutral,
            overriding_identity,
        );
        let crossing = if neutral {
            "; values cross engines in neutral text forms"
        } else {
            ""
        };
        match probe_bulk_load(target_db.as_ref(), &load).await? {
            Ok(()) => (
                WritePath::Bulk(BulkLoad {
                    load,
                    too_long: AtomicBool::new(false),
                }),
                format!(
                    "TDS bulk load: each chunk clears its place in the target, bulk-loads its \
                     rows as text into a temporary table and moves them into the target with \
                     INSERT ... SELECT (4,000 rows a statement) converting each value, in one \
                     transaction{crossing}"
                ),
            ),
            Err(why) => (
                WritePath::Insert,
                format!(
                    "INSERT ... VALUES, at most 1,000 rows and 2,000 values per statement (not \
                     TDS bulk load: {why}){crossing}"
                ),
            ),
        }
    } else {
        (
            WritePath::Insert,
            if neutral {
                "INSERT ... VALUES: values cross engines in neutral text forms that the \
                 target turns back with SQL expressions"
                    .to_string()
            } else {
                "INSERT ... VALUES: COPY is PostgreSQL's".to_string()
            },
        )
    };
    let range_delete = ranges_match(
        spec.where_sql.is_some(),
        &key.columns
            .iter()
            .zip(&key_targets)
            .map(|(s, t)| (d.wire().kind(s), td.wire().kind(t)))
            .collect::<Vec<_>>(),
    )
    .then(|| range_delete_sql(td, &target_q, &key_targets));
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
        source_dialect: d,
        write,
        overriding_identity,
        range_delete,
        char_limits,
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
    let clearing = match (&work.write, &work.range_delete) {
        (WritePath::Stream(_), _) => "",
        (_, Some(_)) => {
            "; the target's rows of a chunk go by one DELETE of its key range (integer keys \
             mean the same rows on both sides)"
        }
        (_, None) => "; the target's rows of a chunk go by DELETEs of its keys",
    };
    eprintln!("rowferry: copying with {path_note}{clearing}");
    Ok(PreparedJob {
        db,
        identity,
        planner,
        work,
        source,
        phase: "copy",
        // One run per target table, whichever source feeds it: the lock
        // is taken on the target's server.
        lock_db: Some(target_db.clone()),
        lock_name: format!("rowferry:writes:{}", target.id),
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

/// A target column's limit, checked on each value here in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CharLimit {
    limit: TextLimit,
    /// The source column's type, where the column's expression names one.
    source_type: Option<String>,
    /// What the advice's `--map COL=rtrim(...)` takes: the source
    /// column's name, or the `--map` expression.
    value: String,
}

/// The limit to check `c`'s values against here, where the target server
/// would not refuse every longer value (`lengths::text_limit`): text whose
/// length no declared type bounds (text, MySQL's TEXT types, varchar
/// without length, a `--map` expression, json or another type printed as
/// text) into a `varchar(n)` limited in characters, or a type limited in
/// bytes.
fn char_limit(
    d: &dyn Dialect,
    td: &dyn Dialect,
    from: Option<&Column>,
    c: &Mapped,
) -> Option<CharLimit> {
    let limit = super::lengths::text_limit(d, td, from, Some(c.kind), c.target.shape_type())?;
    Some(CharLimit {
        limit,
        source_type: from.map(|s| s.data_type.clone()),
        value: from.map_or_else(|| c.expr.clone(), |s| s.name.clone()),
    })
}

/// `DELETE FROM target WHERE` a chunk's key range, over the target's key
/// columns (bounds as parameters).
fn range_delete_sql(td: &dyn Dialect, target_q: &str, key_targets: &[Column]) -> ChunkSql {
    let target_key = Key {
        columns: key_targets.to_vec(),
    };
    let delete = |has_lo| {
        format!(
            "DELETE FROM {target_q} WHERE {}",
            key_range(
                td,
                &target_key,
                RangeShape {
                    has_lo,
                    has_hi: true
                }
            )
        )
    };
    ChunkSql {
        first: delete(false),
        rest: delete(true),
    }
}

/// Whether a chunk's key range means the same keys in the target as in the
/// source, so that deleting the range clears exactly the chunk's place:
/// integer keys order and compare alike on every engine (text keys do not:
/// collations), and without `--where` no row of the range is left out.
/// `keys`: (source kind, target kind) per key column.
fn ranges_match(has_where: bool, keys: &[(Kind, Kind)]) -> bool {
    !has_where
        && keys
            .iter()
            .all(|&(from, to)| from == Kind::Integer && to == Kind::Integer)
}

/// Per copied column, how its wire text becomes the target's COPY text.
fn copy_text_forms(td: &dyn Dialect, columns: &[Mapped], neutral: bool) -> Arc<[CopyText]> {
    columns
        .iter()
        .map(|c| td.wire().copy_text(&c.target, neutral))
        .collect()
}

/// How chunks are written into the target.
enum WritePath {
    /// SELECT the rows as text; DELETE their keys; INSERT ... VALUES.
    Insert,
    /// Into MySQL: SELECT the rows as text; DELETE their keys; LOAD DATA
    /// LOCAL INFILE of the rows, encoded here (rayon) and sent from memory.
    Load(LoadData),
    /// PostgreSQL to PostgreSQL whose key range means the same rows on
    /// both sides: the source's COPY streams into the target's.
    Stream(StreamCopy),
    /// PostgreSQL to PostgreSQL otherwise: SELECT the rows as text;
    /// DELETE their keys; COPY FROM STDIN (text) of the rows.
    Rows {
        copy_in: String,
        /// Per column, how its wire text becomes COPY's input text.
        forms: Arc<[CopyText]>,
    },
    /// Into SQL Server: SELECT the rows as text; DELETE their keys; TDS
    /// bulk load into a staging table, then INSERT ... SELECT from it.
    Bulk(BulkLoad),
}

struct BulkLoad {
    load: StagedInsert,
    /// A chunk with a value too long for bulk load was written with
    /// INSERT (said once).
    too_long: AtomicBool,
}

/// Rehearse the bulk load path with no rows, rolled back (the server
/// compiles the INSERT ... SELECT with its conversions; INSERT triggers
/// on the target fire, for no rows), so that chunks meet no surprise: a
/// server, a login or a proxy that refuses bulk load shows here. Ok(Err):
/// why chunks are written with INSERT instead. A retryable error is
/// tried again, then returned: a passing lock or a lost connection must
/// not slow down the whole copy.
async fn probe_bulk_load(
    target_db: &dyn Database,
    load: &StagedInsert,
) -> Result<std::result::Result<(), String>> {
    let mut attempt = 1;
    loop {
        let probe = match target_db.session().await {
            Ok(mut s) => s.transaction_with_bulk_load(&[], load, &[]).await,
            Err(e) => Err(e),
        };
        match probe {
            Ok(_) => return Ok(Ok(())),
            Err(e) if e.code.as_deref() == Some(BULK_LOAD_OFF_CODE) => return Ok(Err(e.message)),
            Err(e) if e.is_retryable() && attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) if e.is_retryable() => {
                return Err(e.context("rehearsing a bulk load of no rows into the target"));
            }
            Err(e) => {
                return Ok(Err(format!(
                    "a bulk load of no rows into the target failed: {}; add bulk_load=false to \
                     the target URL to skip this attempt",
                    e.message
                )));
            }
        }
    }
}

struct LoadData {
    /// `LOAD DATA LOCAL INFILE ... INTO TABLE target ...`.
    sql: String,
    /// The target refused LOAD DATA LOCAL mid-job (local_infile turned
    /// off): the remaining chunks are written with INSERT.
    refused: AtomicBool,
    /// A chunk that LOAD DATA warned about was taken by INSERT (said once).
    replayed: AtomicBool,
}

/// A MySQL target's path: LOAD DATA LOCAL, or INSERT and why.
#[derive(Debug, PartialEq, Eq)]
enum MyPath {
    Load,
    Insert(String),
}

/// Whether a server error refuses LOAD DATA LOCAL itself: 1148 (MariaDB,
/// and MySQL before 8.0.19: "not allowed with this version") or 3948
/// (MySQL: "Loading local data is disabled").
fn refuses_local_infile(e: &Error) -> bool {
    matches!(e.code.as_deref(), Some("1148" | "3948"))
}

/// Whether the server's `@@local_infile`, as it reads, is off.
fn local_infile_off(local_infile: Option<&str>) -> bool {
    local_infile.is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "0" | "OFF"))
}

/// The path into a MySQL target. `local_infile`: the server's
/// `@@local_infile` as it reads (None if it could not be read); `probe`:
/// how a LOAD DATA LOCAL of no rows into the target went, if one was
/// tried. Any doubt means INSERT, the path that needs nothing of the
/// server's settings.
fn choose_mysql_path(local_infile: Option<&str>, probe: Option<&Result<()>>) -> MyPath {
    if local_infile_off(local_infile) {
        return MyPath::Insert(
            "the target server has local_infile=OFF; SET GLOBAL local_infile = ON there to \
             load chunks faster"
                .into(),
        );
    }
    match probe {
        Some(Ok(())) => MyPath::Load,
        Some(Err(e)) if refuses_local_infile(e) => MyPath::Insert(format!(
            "the target refused it: {}; enable local_infile on the target server to load \
             chunks faster",
            e.message
        )),
        Some(Err(e)) => MyPath::Insert(format!(
            "a LOAD DATA of no rows into the target failed: {}",
            e.message
        )),
        None => MyPath::Insert("LOAD DATA LOCAL was not tried on the target".into()),
    }
}

/// Read the target's `@@local_infile` and, unless it is off, try the real
/// statement with no rows (it writes nothing), so that the chunks meet no
/// surprise: a proxy or a server that refuses LOCAL shows here.
async fn probe_load_data(target_db: &dyn Database, load_sql: &str) -> Result<MyPath> {
    let mut s = target_db.session().await?;
    let local_infile = s
        .query("SELECT @@local_infile", &[])
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|row| row.into_iter().next().flatten());
    let probe = if local_infile_off(local_infile.as_deref()) {
        None
    } else {
        Some(
            s.transaction_with_load_data(&[], load_sql, Vec::new(), 0)
                .await
                .and_then(|outcome| match outcome {
                    LoadOutcome::Committed { .. } => Ok(()),
                    LoadOutcome::RolledBack { shown, .. } => Err(Error::fatal(format!(
                        "it warned: {}",
                        shown
                            .first()
                            .map_or("no warning shown", |w| w.message.as_str())
                    ))),
                }),
        )
    };
    Ok(choose_mysql_path(local_infile.as_deref(), probe.as_ref()))
}

struct StreamCopy {
    /// `SELECT list FROM source WHERE `: the chunk's range follows.
    select: String,
    /// `--where` and ORDER BY, after the range.
    tail: String,
    format: &'static str,
    /// The source's key, for the chunk's bounds.
    key: Key,
    /// `DELETE FROM target WHERE` the chunk's range (target key columns,
    /// bounds as parameters).
    delete: ChunkSql,
    copy_in: String,
}

impl StreamCopy {
    /// The source's COPY for `chunk`. COPY takes no parameters: the bounds
    /// are literals, cast exactly as `Dialect::key_param` casts a bound
    /// parameter.
    fn copy_out_sql(&self, d: &dyn Dialect, chunk: &Chunk) -> String {
        format!(
            "COPY ({}{}{}) TO STDOUT (FORMAT {})",
            self.select,
            literal_range(d, &self.key, chunk.lo.as_deref(), &chunk.hi),
            self.tail,
            self.format
        )
    }
}

/// A PostgreSQL string literal of `value` cast to `data_type` through
/// text, like the bound parameter `$n::text::type`. An escape string
/// (`E'...'`) with quotes and backslashes doubled reads the same whatever
/// `standard_conforming_strings` says.
fn pg_literal(value: &str, data_type: &str) -> String {
    format!(
        "E'{}'::text::{data_type}",
        value.replace('\\', "\\\\").replace('\'', "''")
    )
}

/// `key > lo AND key <= hi` with the bounds as literals: `key_range`'s
/// shape.
fn literal_range(d: &dyn Dialect, key: &Key, lo: Option<&[String]>, hi: &[String]) -> String {
    let cols: Vec<String> = key.columns.iter().map(|c| d.quote_ident(&c.name)).collect();
    let literals = |values: &[String]| -> Vec<String> {
        key.columns
            .iter()
            .zip(values)
            .map(|(c, v)| pg_literal(v, &c.data_type))
            .collect()
    };
    let mut parts = Vec::new();
    if let Some(lo) = lo {
        parts.push(d.tuple_compare(&cols, ">", &literals(lo)));
    }
    parts.push(d.tuple_compare(&cols, "<=", &literals(hi)));
    parts.join(" AND ")
}

/// Types below this oid are built into the server (`FirstNormalObjectId`):
/// the same oid, name and binary form in every database of a major
/// version. Extension and user types (enums, domains, composites) are not.
const FIRST_NORMAL_OID: u32 = 16384;

/// (table oid) -> (column, type oid, collation as JSON or NULL, the type
/// without its modifier). The collation's details (provider, locale,
/// version) are read through `to_jsonb` so that columns a server version
/// lacks read as NULL. `format_type(oid, -1)` spells the type so that the
/// parser adds no modifier (`bpchar`, `"bit"`, not char(1) or bit(1)).
const PG_COLUMN_FACTS: &str = "SELECT a.attname::text, a.atttypid::text, \
       CASE WHEN a.attcollation = 0 THEN NULL \
            WHEN a.attcollation = 100 THEN \
              (SELECT jsonb_build_object('name', 'default', 'provider', j ->> 'datlocprovider', \
                        'collate', j ->> 'datcollate', \
                        'locale', coalesce(j ->> 'daticulocale', j ->> 'datlocale'), \
                        'version', j ->> 'datcollversion')::text \
                 FROM pg_catalog.pg_database d CROSS JOIN LATERAL to_jsonb(d) j \
                WHERE d.datname = current_database()) \
            ELSE \
              (SELECT jsonb_build_object('name', c.collname, 'provider', j ->> 'collprovider', \
                        'collate', j ->> 'collcollate', \
                        'locale', coalesce(j ->> 'colliculocale', j ->> 'colllocale'), \
                        'version', j ->> 'collversion')::text \
                 FROM pg_catalog.pg_collation c CROSS JOIN LATERAL to_jsonb(c) j \
                WHERE c.oid = a.attcollation) \
       END, \
       pg_catalog.format_type(a.atttypid, -1) \
  FROM pg_catalog.pg_attribute a \
 WHERE a.attrelid = $1::text::oid AND a.attnum > 0 AND NOT a.attisdropped";

/// What the fast path needs to know of one side.
struct PgFacts {
    /// `server_version_num / 10000`: binary COPY between one major version.
    major: u32,
    columns: HashMap<String, ColumnFacts>,
}

struct ColumnFacts {
    oid: u32,
    collation: Option<Collation>,
    /// The type without its modifier (`character varying` for
    /// `character varying(20)`).
    unconstrained: String,
}

async fn pg_facts(db: &dyn Database, table: &TableInfo) -> Result<PgFacts> {
    let mut s = db.session().await?;
    let version = s
        .query("SELECT current_setting('server_version_num')", &[])
        .await?;
    let major = version
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
        / 10000;
    let mut columns = HashMap::new();
    for row in s
        .query(PG_COLUMN_FACTS, std::slice::from_ref(&table.id))
        .await?
    {
        let text = |i: usize| row.get(i).cloned().flatten();
        let collation = match text(2) {
            Some(json) => Some(serde_json::from_str::<Collation>(&json).map_err(|e| {
                Error::fatal(format!("internal: unreadable collation {json}: {e}"))
            })?),
            None => None,
        };
        columns.insert(
            text(0).unwrap_or_default(),
            ColumnFacts {
                oid: text(1).and_then(|o| o.parse().ok()).unwrap_or(0),
                collation,
                unconstrained: text(3).unwrap_or_default(),
            },
        );
    }
    Ok(PgFacts { major, columns })
}

/// A column's collation as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Collation {
    name: Option<String>,
    provider: Option<String>,
    collate: Option<String>,
    locale: Option<String>,
    version: Option<String>,
}

impl Collation {
    /// libc's C or POSIX: bytes order, on any server.
    fn byte_order(&self) -> bool {
        matches!(self.provider.as_deref(), None | Some("c"))
            && matches!(self.collate.as_deref(), Some("C" | "POSIX"))
    }

    /// Whether values order alike under this collation on one server and
    /// `other` on another: both byte order, or the same collation in the
    /// same version of its library (a libc or ICU upgrade may reorder
    /// strings; without a version nothing proves it did not).
    fn orders_like(&self, other: &Collation) -> bool {
        (self.byte_order() && other.byte_order())
            || (self == other && self.version.as_deref().is_some_and(|v| !v.is_empty()))
    }
}

/// A column's type on one side.
#[derive(Debug, Clone)]
struct TypeFacts {
    data_type: String,
    oid: u32,
    collation: Option<Collation>,
    /// The type without its modifier.
    unconstrained: String,
}

impl TypeFacts {
    fn built_in(&self) -> bool {
        self.oid != 0 && self.oid < FIRST_NORMAL_OID
    }

    /// The very same type: values travel in binary as they are.
    fn same_as(&self, other: &TypeFacts) -> bool {
        self.built_in() && self.oid == other.oid && self.data_type == other.data_type
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgPath {
    Binary,
    Text,
    Rows,
}

#[derive(Debug)]
struct PgChoice {
    path: PgPath,
    /// Per copied column: converted through text to the target's type
    /// (else sent as the source has it).
    convert: Vec<bool>,
    /// Why not a faster path.
    why: String,
}

/// The PostgreSQL to PostgreSQL path. `keys`: (source key column, its
/// type, the target key column's type). `columns`: (target column, the
/// type of the source column its expression names, if it names one, the
/// target column's type). The target's chunk range can be deleted only
/// where it holds exactly the keys the source's does: the same built-in
/// key types, collations that order alike, and no `--where` (which leaves
/// some of the range's rows out). Binary needs built-in target types and
/// one major version.
fn choose_pg_path(
    has_where: bool,
    spaces: Option<String>,
    keys: &[(String, TypeFacts, TypeFacts)],
    columns: &[(String, Option<TypeFacts>, TypeFacts)],
    same_major: bool,
) -> PgChoice {
    let convert: Vec<bool> = columns
        .iter()
        .map(|(_, from, to)| !from.as_ref().is_some_and(|f| f.same_as(to)))
        .collect();
    let rows = |why: String| PgChoice {
        path: PgPath::Rows,
        convert: convert.clone(),
        why,
    };
    if has_where {
        return rows(
            "with --where a chunk's key range in the target may hold rows that --where leaves \
             out"
            .into(),
        );
    }
    // COPY to COPY never shows the values to rowferry, and the target
    // would cut a longer value's excess trailing spaces silently.
    if let Some(why) = spaces {
        return rows(why);
    }
    for (name, from, to) in keys {
        if !from.same_as(to) {
            return rows(format!(
                "key column {name} is {} in the source and {} in the target (a chunk's key \
                 range is only the same rows on both sides for the same built-in type)",
                from.data_type, to.data_type
            ));
        }
        match (&from.collation, &to.collation) {
            (None, None) => {}
            (Some(a), Some(b)) if a.orders_like(b) => {}
            (a, b) => {
                let show = |c: &Option<Collation>| {
                    c.as_ref().map_or("none".to_string(), |c| {
                        format!(
                            "{} ({}{})",
                            c.name.as_deref().unwrap_or("?"),
                            c.collate.as_deref().or(c.locale.as_deref()).unwrap_or("?"),
                            c.version
                                .as_deref()
                                .filter(|v| !v.is_empty())
                                .map(|v| format!(", version {v}"))
                                .unwrap_or_default()
                        )
                    })
                };
                return rows(format!(
                    "key column {name} sorts by collation {} in the source and {} in the \
                     target, not known to order alike",
                    show(a),
                    show(b)
                ));
            }
        }
    }
    let text = |why: String| PgChoice {
        path: PgPath::Text,
        convert: convert.clone(),
        why,
    };
    if !same_major {
        return text("the servers are of different major versions".into());
    }
    if let Some((name, _, to)) = columns.iter().find(|(_, _, to)| !to.built_in()) {
        return text(format!(
            "target column {name} is of type {}, not built in (its binary form may differ \
             between databases)",
            to.data_type
        ));
    }
    PgChoice {
        path: PgPath::Binary,
        convert,
        why: String::new(),
    }
}

/// Rows in COPY's text format: tab between values, newline after each
/// row, `\N` for NULL, backslash, tab, newline and carriage return escaped.
/// Parts of the chunk are encoded on all cores at once.
async fn encode_copy_text(
    rows: Vec<crate::db::Row>,
    forms: Arc<[CopyText]>,
) -> Result<CopyData<'static>> {
    const ROWS_PER_PIECE: usize = 2048;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Off the async runtime's threads: rayon's pool waits for its parts.
    rayon::spawn(move || {
        let pieces: Vec<bytes::Bytes> = rows
            .par_chunks(ROWS_PER_PIECE)
            .map(|part| {
                let mut out = Vec::with_capacity(part.len() * 64);
                for row in part {
                    encode_text_row(row, &forms, &mut out);
                }
                bytes::Bytes::from(out)
            })
            .collect();
        let _ = tx.send(pieces);
    });
    let pieces = rx
        .await
        .map_err(|_| Error::fatal("internal: the COPY encoder stopped"))?;
    Ok(Box::pin(futures_util::stream::iter(
        pieces.into_iter().map(Ok),
    )))
}

fn encode_text_row(row: &[Option<String>], forms: &[CopyText], out: &mut Vec<u8>) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        let form = forms.get(i).copied().unwrap_or(CopyText::AsSent);
        tab_separated_field(value.as_deref().map(|v| form.apply(v)).as_deref(), out);
    }
    out.push(b'\n');
}

/// Bytes per piece handed to the server: each is one protocol packet,
/// well under any `max_allowed_packet`.
const LOAD_PIECE: usize = 512 * 1024;

/// Rows as `Mysql::load_data_local` reads them: a tab between values, a
/// newline after each row, escapes by `load_data_field`. Parts of the
/// chunk are encoded on all cores at once.
async fn encode_load_data(rows: Arc<Vec<crate::db::Row>>) -> Result<Vec<bytes::Bytes>> {
    const ROWS_PER_PART: usize = 2048;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Off the async runtime's threads: rayon's pool waits for its parts.
    rayon::spawn(move || {
        let parts: Vec<bytes::Bytes> = rows
            .par_chunks(ROWS_PER_PART)
            .map(|part| {
                let mut out = Vec::with_capacity(part.len() * 64);
                for row in part {
                    encode_load_row(row, &mut out);
                }
                bytes::Bytes::from(out)
            })
            .collect();
        let _ = tx.send(parts);
    });
    let parts = rx
        .await
        .map_err(|_| Error::fatal("internal: the LOAD DATA encoder stopped"))?;
    // Cut where the bytes fall: LOAD DATA reads one stream.
    let mut pieces = Vec::with_capacity(parts.len());
    for part in parts {
        let mut at = 0;
        while at < part.len() {
            let end = (at + LOAD_PIECE).min(part.len());
            pieces.push(part.slice(at..end));
            at = end;
        }
    }
    Ok(pieces)
}

fn encode_load_row(row: &[Option<String>], out: &mut Vec<u8>) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        load_data_field(value.as_deref(), out);
    }
    out.push(b'\n');
}

/// `at row N` in a MySQL warning: the row's place in the LOAD, 1-based.
fn warning_row(message: &str) -> Option<usize> {
    let rest = &message[message.rfind(" at row ")? + " at row ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What to do about the first thing a LOAD DATA warned about.
fn load_warning_advice(code: Option<u32>) -> &'static str {
    match code {
        Some(1062) => {
            "the target's unique key named above already holds that value (in a row outside \
             this chunk, or for two of the chunk's keys that its collation treats as equal; \
             LOAD DATA LOCAL would have skipped the row): remove the conflicting row from the \
             target, or drop that unique key or give it a binary collation (utf8mb4_bin)"
        }
        Some(1406 | 1265 | 1264 | 1366 | 1292 | 1367 | 1411 | 1048 | 1263 | 1364 | 1261) => {
            "the target column cannot hold the value as it is (LOAD DATA LOCAL would have cut, \
             zeroed or defaulted it): widen or change the target column's type, or --map \
             COL=EXPR to convert the value on the source"
        }
        _ => "fix the target table or the source row the warning names",
    }
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
    source_dialect: &'static dyn Dialect,
    write: WritePath,
    /// A GENERATED ALWAYS identity column is written (PostgreSQL), or an
    /// identity column (SQL Server).
    overriding_identity: bool,
    /// `DELETE FROM target WHERE` the chunk's key range, where that range
    /// holds exactly the chunk's keys on both sides (integer keys, no
    /// `--where`): one statement instead of one per thousand keys, and
    /// rows deleted from the source since an earlier run go too.
    range_delete: Option<ChunkSql>,
    /// (position in a read row, limit) of the columns whose values are
    /// checked here for length: see `char_limit`.
    char_limits: Vec<(usize, CharLimit)>,
}

/// Key tuples per DELETE or lookup: PostgreSQL runs out of stack on
/// `(a, b) IN (...)` lists of about 10,000 tuples.
const KEYS_PER_STATEMENT: usize = 1000;

impl TransferWork {
    /// `clearing` (the chunk's DELETE), then INSERTs of its rows, in
    /// statements under the parameter limit.
    fn statements(
        &self,
        td: &dyn Dialect,
        clearing: &[Statement],
        rows: &[crate::db::Row],
    ) -> Vec<Statement> {
        let mut statements = clearing.to_vec();
        statements.extend(self.insert_statements(td, rows));
        statements
    }

    /// What clears the chunk's place in the target before its rows are
    /// written: its key range where that is exact, else its rows' own keys
    /// (after refusing keys the target's collation confuses).
    async fn clearing_statements(
        &self,
        td: &dyn Dialect,
        target: &mut dyn Session,
        chunk: &Chunk,
        rows: &[crate::db::Row],
    ) -> Result<Vec<Statement>> {
        if let Some(range) = &self.range_delete {
            return Ok(vec![range.statement(chunk)]);
        }
        self.refuse_colliding_keys(td, target, rows).await?;
        Ok(self.delete_statements(td, rows))
    }

    /// `(key columns) IN ((...), ...)` for a batch of rows, and its params.
    fn key_list(&self, td: &dyn Dialect, batch: &[crate::db::Row]) -> (String, Vec<String>) {
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
        let names: Vec<String> = self
            .key_targets
            .iter()
            .map(|c| td.quote_ident(&c.name))
            .collect();
        if td.name() == "sqlserver" && names.len() > 1 {
            // No row-value IN in T-SQL: `(a = x AND b = y) OR ...`, with
            // the parameters numbered as above.
            let mut n = 0;
            let ors: Vec<String> = batch
                .iter()
                .map(|_| {
                    let parts: Vec<String> = self
                        .key_targets
                        .iter()
                        .zip(&names)
                        .map(|(column, name)| {
                            n += 1;
                            format!("{name} = {}", td.wire().wire_in(n, column, self.neutral))
                        })
                        .collect();
                    format!("({})", parts.join(" AND "))
                })
                .collect();
            return (format!("({})", ors.join(" OR ")), params);
        }
        (
            format!("({}) IN ({})", names.join(", "), tuples.join(", ")),
            params,
        )
    }

    /// Key tuples per DELETE or lookup, under the target's parameter limit.
    fn keys_per_statement(&self, td: &dyn Dialect) -> usize {
        let (max_params, _) = statement_limits(td);
        KEYS_PER_STATEMENT
            .min(max_params / self.key_targets.len().max(1))
            .max(1)
    }

    /// DELETE of the rows' keys, a batch of keys per statement.
    fn delete_statements(&self, td: &dyn Dialect, rows: &[crate::db::Row]) -> Vec<Statement> {
        rows.chunks(self.keys_per_statement(td))
            .map(|batch| {
                let (list, params) = self.key_list(td, batch);
                Statement {
                    sql: format!("DELETE FROM {} WHERE {list}", self.target_q),
                    params,
                }
            })
            .collect()
    }

    /// Refuse a chunk whose keys the target finds rows for under other
    /// keys (a case- or accent-insensitive collation, trailing spaces):
    /// replacing the chunk's rows would delete those rows, which belong to
    /// other source keys.
    async fn refuse_colliding_keys(
        &self,
        td: &dyn Dialect,
        target: &mut dyn Session,
        rows: &[crate::db::Row],
    ) -> Result<()> {
        let sent: std::collections::HashSet<Vec<String>> = rows
            .iter()
            .map(|r| {
                self.key_positions
                    .iter()
                    .map(|&at| r.get(at).cloned().flatten().unwrap_or_default())
                    .collect()
            })
            .collect();
        let printed = self
            .key_targets
            .iter()
            .map(|c| {
                td.wire()
                    .wire_out(&td.quote_ident(&c.name), td.wire().kind(c), self.neutral)
            })
            .collect::<Vec<_>>()
            .join(", ");
        for batch in rows.chunks(self.keys_per_statement(td)) {
            let (list, params) = self.key_list(td, batch);
            let found = target
                .query(
                    &format!("SELECT {printed} FROM {} WHERE {list}", self.target_q),
                    &params,
                )
                .await?;
            for key in found {
                let key: Vec<String> = key.into_iter().map(Option::unwrap_or_default).collect();
                if !sent.contains(&key) {
                    return Err(Error::fatal(format!(
                        "{} holds a row with key ({}) that its key columns treat as equal to a \
                         different key of this chunk (a case- or accent-insensitive collation, \
                         or trailing spaces): writing the chunk would replace that row. Give \
                         the target's key columns a binary collation (utf8mb4_bin, COLLATE \
                         \"C\", Latin1_General_100_BIN2), then rerun the same command to resume; nothing of this chunk \
                         was written",
                        self.target_name,
                        key.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// `key id = 7` or `key (a, b) = (1, x)`: the key of a read row.
    fn row_key(&self, row: &crate::db::Row) -> String {
        let values: Vec<String> = self
            .key_positions
            .iter()
            .map(|&at| row.get(at).cloned().flatten().unwrap_or_default())
            .collect();
        let names: Vec<&str> = self.key_targets.iter().map(|c| c.name.as_str()).collect();
        if names.len() == 1 {
            format!("key {} = {}", names.join(""), values.join(""))
        } else {
            format!("key ({}) = ({})", names.join(", "), values.join(", "))
        }
    }

    /// Refuse a chunk with a value longer than its target column's limit
    /// in characters (see `char_limit`) whose excess is all spaces: the
    /// target would store it cut, without an error. (Any other longer
    /// value the target refuses itself.) Before anything of the chunk is
    /// written. Counts bytes first: a value of no more bytes than the
    /// limit has no more characters.
    fn refuse_long_values(&self, rows: &[crate::db::Row]) -> Result<()> {
        for (at, limit) in &self.char_limits {
            for row in rows {
                let Some(Some(value)) = row.get(*at) else {
                    continue;
                };
                if value.len() as u64 <= limit.limit.max {
                    continue;
                }
                let chars = value.chars().count() as u64;
                if chars <= limit.limit.max {
                    continue;
                }
                // Other characters past the limit: the server refuses
                // the value itself, with its own error.
                if !value
                    .chars()
                    .skip(limit.limit.max as usize)
                    .all(|ch| ch == ' ')
                {
                    continue;
                }
                let column = &self.columns[*at];
                return Err(Error::fatal(format!(
                    "{} column {} ({}) holds at most {}, but the value of the row with \
                     {} is {chars} characters long, its last {} trailing spaces, which the \
                     target's server would cut without an error (rowferry copies every value \
                     exactly): nothing of this chunk was written. \
                     Widen the column, or --map {}=rtrim({}) if its trailing spaces do not \
                     matter, then rerun the same command to resume",
                    self.target_name,
                    column.name,
                    column.data_type,
                    limit.limit.told(),
                    self.row_key(row),
                    chars - limit.limit.max,
                    column.name,
                    limit.value,
                )));
            }
        }
        Ok(())
    }

    /// `insert`, the error of the strict INSERT that replayed a chunk
    /// whose LOAD DATA warned or loaded another number of rows, told with
    /// what LOAD DATA said (its first warnings, the key of the row it
    /// names) and what to do. Kind and codes stay the INSERT's.
    fn load_refused(
        &self,
        rows: &[crate::db::Row],
        loaded: u64,
        warnings: u64,
        shown: &[ServerWarning],
        insert: Error,
    ) -> Error {
        let said = match shown.first() {
            Some(w) => {
                let key = warning_row(&w.message)
                    .and_then(|n| rows.get(n.checked_sub(1)?))
                    .map(|row| format!(" ({})", self.row_key(row)))
                    .unwrap_or_default();
                let more = shown[1..]
                    .iter()
                    .map(|w| format!("; {}", w.message))
                    .collect::<String>();
                format!(", first: {} (warning {}){key}{more}", w.message, w.code)
            }
            None => String::new(),
        };
        let advice = load_warning_advice(
            insert
                .code
                .as_deref()
                .and_then(|c| c.parse().ok())
                .or(shown.first().map(|w| w.code)),
        );
        let mut err = insert;
        err.message = format!(
            "{} refused a row of this chunk: {}. LOAD DATA LOCAL had loaded {loaded} of {} rows \
             with {warnings} warning(s){said} (it turns into warnings what a strict INSERT \
             refuses); the chunk was rolled back, then written again with INSERT, which refused it \
             as above: nothing of it was written; {advice}, then rerun the same command to resume",
            self.target_name,
            err.message,
            rows.len(),
        );
        err
    }

    /// INSERTs of the rows, in statements under the parameter limit.
    fn insert_statements(&self, td: &dyn Dialect, rows: &[crate::db::Row]) -> Vec<Statement> {
        let mut statements = Vec::new();
        let names = self
            .columns
            .iter()
            .map(|c| td.quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let (max_params, max_rows) = statement_limits(td);
        let rows_per = (max_params / self.columns.len().max(1)).clamp(1, max_rows);
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
            let sql = if self.overriding_identity && td.name() == "sqlserver" {
                // SQL Server writes an identity column only with
                // IDENTITY_INSERT on, for this call (sp_executesql).
                format!(
                    "SET IDENTITY_INSERT {t} ON; INSERT INTO {t} ({names}) VALUES {}; \
                     SET IDENTITY_INSERT {t} OFF",
                    tuples.join(", "),
                    t = self.target_q
                )
            } else {
                format!(
                    "INSERT INTO {} ({names}) {}VALUES {}",
                    self.target_q,
                    if self.overriding_identity {
                        "OVERRIDING SYSTEM VALUE "
                    } else {
                        ""
                    },
                    tuples.join(", ")
                )
            };
            statements.push(Statement {
                sql,
                params: params.into_iter().flatten().collect(),
            });
        }
        statements
    }
}

#[async_trait]
impl ChunkWork for TransferWork {
    async fn run(&self, session: &mut dyn Session, chunk: &Chunk) -> Result<u64> {
        let td = self.target_db.dialect();
        if let WritePath::Stream(copy) = &self.write {
            let mut target = self.target_db.session().await?;
            let data = session
                .copy_out(&copy.copy_out_sql(self.source_dialect, chunk))
                .await?;
            let delete = copy.delete.statement(chunk);
            let (_, rows) = target
                .transaction_with_copy_in(std::slice::from_ref(&delete), &copy.copy_in, data)
                .await?;
            return Ok(rows);
        }
        let read = self.read.statement(chunk);
        let rows = session.query(&read.sql, &read.params).await?;
        if rows.is_empty() {
            // The source's range is empty now: the target's range, where
            // it means the same keys, must end up empty too.
            if let Some(range) = &self.range_delete {
                let mut target = self.target_db.session().await?;
                target.transaction(&[range.statement(chunk)]).await?;
            }
            return Ok(0);
        }
        self.refuse_long_values(&rows)?;
        let mut target = self.target_db.session().await?;
        let deletes = self
            .clearing_statements(td, target.as_mut(), chunk, &rows)
            .await?;
        if let WritePath::Bulk(bulk) = &self.write {
            if fits_bulk_load(&rows) {
                return target
                    .transaction_with_bulk_load(&deletes, &bulk.load, &rows)
                    .await;
            }
            if !bulk.too_long.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "rowferry: a chunk holds a value of more than {MAX_BULK_VALUE_UNITS} \
                     characters, more than the driver's bulk load takes; such chunks are written \
                     with INSERT"
                );
            }
        }
        if let WritePath::Rows { copy_in, forms } = &self.write {
            let data = encode_copy_text(rows, forms.clone()).await?;
            let (_, copied) = target
                .transaction_with_copy_in(&deletes, copy_in, data)
                .await?;
            return Ok(copied);
        }
        if let WritePath::Load(load) = &self.write
            && !load.refused.load(Ordering::Relaxed)
        {
            let rows = Arc::new(rows);
            let data = encode_load_data(rows.clone()).await?;
            match target
                .transaction_with_load_data(&deletes, &load.sql, data, rows.len() as u64)
                .await
            {
                Ok(LoadOutcome::Committed { loaded, .. }) => return Ok(loaded),
                // Rolled back. The strict INSERT is the reference: its
                // own error, or the chunk written as that path writes it.
                Ok(LoadOutcome::RolledBack {
                    loaded,
                    warnings,
                    shown,
                }) => {
                    let statements = self.statements(td, &deletes, &rows);
                    return match target.transaction(&statements).await {
                        Ok(_) => {
                            if !load.replayed.swap(true, Ordering::Relaxed) {
                                eprintln!(
                                    "rowferry: LOAD DATA LOCAL warned on a chunk ({}) where a \
                                     strict INSERT did not; such chunks are written with INSERT",
                                    shown
                                        .first()
                                        .map_or("no warning shown", |w| w.message.as_str())
                                );
                            }
                            Ok(rows.len() as u64)
                        }
                        Err(e) if e.is_retryable() => Err(e),
                        Err(e) => Err(self.load_refused(&rows, loaded, warnings, &shown, e)),
                    };
                }
                // local_infile turned off mid-job: rolled back; this chunk
                // and the rest go by INSERT.
                Err(e) if refuses_local_infile(&e) => {
                    if !load.refused.swap(true, Ordering::Relaxed) {
                        eprintln!(
                            "rowferry: the target refused LOAD DATA LOCAL INFILE ({}); copying \
                             the remaining chunks with INSERT ... VALUES",
                            e.message
                        );
                    }
                    let statements = self.statements(td, &deletes, &rows);
                    target.transaction(&statements).await?;
                    return Ok(rows.len() as u64);
                }
                Err(e) => return Err(e),
            }
        }
        let statements = self.statements(td, &deletes, &rows);
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
            source_dialect: &Mysql,
            write: WritePath::Insert,
            overriding_identity: false,
            range_delete: None,
            char_limits: Vec::new(),
        };
        work.statements(&Mysql, &work.delete_statements(&Mysql, rows), rows)
    }

    #[test]
    fn only_integer_keys_without_where_clear_a_chunk_by_its_range() {
        use Kind::*;
        assert!(ranges_match(false, &[(Integer, Integer)]));
        assert!(ranges_match(
            false,
            &[(Integer, Integer), (Integer, Integer)]
        ));
        assert!(!ranges_match(true, &[(Integer, Integer)]));
        assert!(!ranges_match(false, &[(Integer, Integer), (Text, Text)]));
        assert!(!ranges_match(false, &[(Integer, Decimal)]));
        assert!(!ranges_match(false, &[(Bool, Integer)]));
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
    fn copy_bounds_are_literals_cast_like_bound_parameters() {
        use crate::dialect::postgres::Postgres;
        use crate::dialect::test_support::key;
        assert_eq!(pg_literal("12", "bigint"), "E'12'::text::bigint");
        assert_eq!(
            pg_literal("it's a \\ $1", "text"),
            "E'it''s a \\\\ $1'::text::text"
        );
        let k = key(&[("a b", "text"), ("n", "numeric(10,2)")]);
        let lo = ["x'".to_string(), "1.50".to_string()];
        let hi = ["y".to_string(), "2.00".to_string()];
        assert_eq!(
            literal_range(&Postgres, &k, Some(&lo), &hi),
            "(\"a b\", \"n\") > (E'x'''::text::text, E'1.50'::text::numeric(10,2)) AND \
             (\"a b\", \"n\") <= (E'y'::text::text, E'2.00'::text::numeric(10,2))"
        );
        let one = key(&[("id", "bigint")]);
        assert_eq!(
            literal_range(&Postgres, &one, None, &["7".to_string()]),
            "\"id\" <= E'7'::text::bigint"
        );
    }

    #[test]
    fn copy_text_rows_escape_what_copy_reads_as_syntax() {
        let mut out = Vec::new();
        encode_text_row(
            &[
                Some("a\tb\nc\rd\\e\\.".into()),
                None,
                Some(String::new()),
                Some("Grüße 🚚".into()),
                Some("00FF".into()),
                Some("2024-02-29 23:59:59.000001".into()),
            ],
            &[
                CopyText::AsSent,
                CopyText::AsSent,
                CopyText::AsSent,
                CopyText::AsSent,
                CopyText::HexBytes,
                CopyText::Utc,
            ],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\nc\\rd\\\\e\\\\.\t\\N\t\tGrüße 🚚\t\\\\x00FF\t\
             2024-02-29 23:59:59.000001+00\n"
        );
    }

    #[test]
    fn a_mysql_target_loads_unless_it_refuses_local_infile() {
        let refused = |code: &str, message: &str| {
            let mut e = Error::fatal(message);
            e.code = Some(code.into());
            Err(e)
        };
        assert_eq!(choose_mysql_path(Some("1"), Some(&Ok(()))), MyPath::Load);
        assert_eq!(choose_mysql_path(None, Some(&Ok(()))), MyPath::Load);
        for off in ["0", "OFF", "off "] {
            let MyPath::Insert(why) = choose_mysql_path(Some(off), None) else {
                panic!("local_infile={off} means INSERT");
            };
            assert!(why.contains("local_infile=OFF"), "{why}");
            assert!(why.contains("SET GLOBAL local_infile = ON"), "{why}");
        }
        let MyPath::Insert(why) = choose_mysql_path(
            Some("1"),
            Some(&refused(
                "3948",
                "Loading local data is disabled; this must be enabled on both the client and \
                 server sides",
            )),
        ) else {
            panic!("a refused LOAD means INSERT");
        };
        assert!(
            why.contains("refused it: Loading local data is disabled"),
            "{why}"
        );
        assert!(matches!(
            choose_mysql_path(Some("1"), Some(&refused("1148", "not allowed"))),
            MyPath::Insert(_)
        ));
        let MyPath::Insert(why) =
            choose_mysql_path(Some("ON"), Some(&refused("1142", "INSERT command denied")))
        else {
            panic!("any failed probe means INSERT");
        };
        assert!(why.contains("failed: INSERT command denied"), "{why}");
        assert!(matches!(
            choose_mysql_path(Some("1"), None),
            MyPath::Insert(_)
        ));
    }

    #[test]
    fn load_data_rows_and_their_warnings() {
        let mut out = Vec::new();
        encode_load_row(
            &[
                Some("1".into()),
                None,
                Some("a\tb\\".into()),
                Some(String::new()),
            ],
            &mut out,
        );
        encode_load_row(&[Some("NULL".into())], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1\t\\N\ta\\tb\\\\\t\nNULL\n"
        );
        assert_eq!(
            warning_row("Data too long for column 'v' at row 3"),
            Some(3)
        );
        assert_eq!(
            warning_row("Incorrect integer value: 'x' for column `d`.`t`.`n` at row 12"),
            Some(12)
        );
        assert_eq!(warning_row("Duplicate entry 'a' for key 'u'"), None);
    }

    #[tokio::test]
    async fn load_data_pieces_stay_small_and_keep_every_byte() {
        let rows: Vec<crate::db::Row> = (0..5000)
            .map(|i| vec![Some(i.to_string()), Some("x".repeat(300))])
            .collect();
        let mut want = Vec::new();
        for row in &rows {
            encode_load_row(row, &mut want);
        }
        let pieces = encode_load_data(Arc::new(rows)).await.unwrap();
        assert!(pieces.len() > 2);
        assert!(
            pieces
                .iter()
                .all(|p| !p.is_empty() && p.len() <= LOAD_PIECE)
        );
        assert_eq!(pieces.concat(), want);
    }

    fn facts(ty: &str, oid: u32, collation: Option<Collation>) -> TypeFacts {
        TypeFacts {
            data_type: ty.into(),
            oid,
            collation,
            unconstrained: ty.into(),
        }
    }

    fn collation(name: &str, collate: &str, version: Option<&str>) -> Collation {
        Collation {
            name: Some(name.into()),
            provider: Some("c".into()),
            collate: Some(collate.into()),
            locale: None,
            version: version.map(String::from),
        }
    }

    #[test]
    fn the_copy_path_follows_the_types_collations_and_where() {
        let int8 = || facts("bigint", 20, None);
        let key = |from: TypeFacts, to: TypeFacts| vec![("id".to_string(), from, to)];
        let cols = vec![
            ("id".to_string(), Some(int8()), int8()),
            (
                "v".to_string(),
                Some(facts("character varying(20)", 1043, None)),
                facts("text", 25, None),
            ),
            ("label".to_string(), None, facts("text", 25, None)),
        ];
        let got = choose_pg_path(false, None, &key(int8(), int8()), &cols, true);
        assert_eq!(got.path, PgPath::Binary);
        assert_eq!(got.convert, [false, true, true]);
        // Another major version, or a type that is not built in: text.
        let got = choose_pg_path(false, None, &key(int8(), int8()), &cols, false);
        assert_eq!(got.path, PgPath::Text);
        let mut with_enum = cols.clone();
        with_enum.push((
            "m".into(),
            Some(facts("s.mood", 16500, None)),
            facts("s.mood", 16600, None),
        ));
        let got = choose_pg_path(false, None, &key(int8(), int8()), &with_enum, true);
        assert_eq!((got.path, got.convert[3]), (PgPath::Text, true));
        assert!(got.why.contains("target column m"), "{}", got.why);
        // The target's key range may hold other keys: rows by SELECT.
        let got = choose_pg_path(
            false,
            None,
            &key(facts("integer", 23, None), int8()),
            &cols,
            true,
        );
        assert_eq!(got.path, PgPath::Rows);
        assert!(
            got.why.contains("integer in the source and bigint"),
            "{}",
            got.why
        );
        assert_eq!(
            choose_pg_path(true, None, &key(int8(), int8()), &cols, true).path,
            PgPath::Rows
        );
        let text = |c: Collation| facts("text", 25, Some(c));
        let en = collation("default", "en_US.UTF-8", None);
        let got = choose_pg_path(false, None, &key(text(en.clone()), text(en)), &cols, true);
        assert_eq!(
            got.path,
            PgPath::Rows,
            "no version: nothing proves the order"
        );
        assert!(
            got.why.contains("collation default (en_US.UTF-8)"),
            "{}",
            got.why
        );
        let en = collation("default", "en_US.UTF-8", Some("2.36"));
        let got = choose_pg_path(
            false,
            None,
            &key(text(en.clone()), text(en.clone())),
            &cols,
            true,
        );
        assert_eq!(got.path, PgPath::Binary, "same collation, same version");
        let newer = collation("default", "en_US.UTF-8", Some("2.41"));
        let got = choose_pg_path(false, None, &key(text(en), text(newer)), &cols, true);
        assert_eq!(got.path, PgPath::Rows, "a libc upgrade may reorder");
        let (c, posix) = (
            collation("C", "C", None),
            collation("default", "POSIX", None),
        );
        let got = choose_pg_path(false, None, &key(text(c), text(posix)), &cols, true);
        assert_eq!(got.path, PgPath::Binary, "byte order on both sides");
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

    /// A transfer into SQL Server keyed by the first `keys` columns.
    fn into_sqlserver(columns: Vec<Column>, keys: usize, identity: bool) -> TransferWork {
        use crate::dialect::sqlserver::SqlServer;
        struct NoDb;
        #[async_trait]
        impl Database for NoDb {
            fn dialect(&self) -> &'static dyn Dialect {
                &SqlServer
            }
            async fn session(&self) -> Result<Box<dyn Session>> {
                Err(Error::fatal("no database in unit tests"))
            }
            async fn dedicated_session(&self) -> Result<Box<dyn Session>> {
                Err(Error::fatal("no database in unit tests"))
            }
        }
        TransferWork {
            target_db: Arc::new(NoDb),
            read: ChunkSql {
                first: String::new(),
                rest: String::new(),
            },
            target_q: "[s].[t]".into(),
            target_name: "s.t".into(),
            key_targets: columns[..keys].to_vec(),
            key_positions: (0..keys).collect(),
            columns,
            neutral: false,
            source_dialect: &SqlServer,
            write: WritePath::Insert,
            overriding_identity: identity,
            range_delete: None,
            char_limits: Vec::new(),
        }
    }

    #[test]
    fn values_are_checked_for_length_where_a_server_would_cut_trailing_spaces() {
        use crate::dialect::postgres::Postgres;
        let mapped = |target: &str, expr: &str, kind| Mapped {
            target: column("v", target),
            expr: expr.into(),
            kind,
        };
        let pg = |source: &str, target: &str| {
            let from = column("v", source);
            char_limit(
                &Postgres,
                &Postgres,
                Some(&from),
                &mapped(target, "\"v\"", Kind::Text),
            )
            .map(|l| l.limit.max)
        };
        assert_eq!(pg("text", "character varying(5)"), Some(5));
        assert_eq!(pg("character varying", "character varying(5)"), Some(5));
        assert_eq!(pg("character varying(5)", "character varying(5)"), None);
        assert_eq!(pg("character varying(3)", "character varying(5)"), None);
        // Blank-padded: its trailing spaces are no part of the value.
        assert_eq!(pg("text", "character(5)"), None);
        assert_eq!(pg("text", "text"), None);
        // A --map expression: any length.
        let expr = char_limit(
            &Postgres,
            &Mysql,
            None,
            &mapped("varchar(5)", "rtrim(v)", Kind::Text),
        )
        .expect("checked");
        assert_eq!((expr.limit.max, expr.value.as_str()), (5, "rtrim(v)"));
        let my = |source: &str, target: &str, kind| {
            let from = column("v", source);
            char_limit(&Mysql, &Postgres, Some(&from), &mapped(target, "`v`", kind))
                .map(|l| l.limit.max)
        };
        assert_eq!(my("longtext", "character varying(5)", Kind::Text), Some(5));
        assert_eq!(my("tinytext", "character varying(255)", Kind::Text), None);
        assert_eq!(my("int(11)", "character varying(5)", Kind::Integer), None);
        // Limited in bytes (MySQL TEXT): checked in characters, of which
        // a longer value has more than the limit's bytes.
        assert_eq!(
            char_limit(&Postgres, &Mysql, None, &mapped("text", "v", Kind::Text))
                .map(|l| (l.limit.max, l.limit.told())),
            Some((65_535, "65535 bytes".to_string()))
        );
    }

    #[test]
    fn into_sqlserver_composite_keys_identity_and_its_limits() {
        use crate::dialect::sqlserver::SqlServer;
        let d = &SqlServer;
        let work = into_sqlserver(
            vec![
                column("a", "int"),
                column("b", "nvarchar(10)"),
                column("v", "int"),
            ],
            2,
            true,
        );
        let rows = vec![
            vec![Some("1".into()), Some("x".into()), Some("7".into())],
            vec![Some("2".into()), Some("y".into()), None],
        ];
        let got = work.statements(d, &work.delete_statements(d, &rows), &rows);
        assert_eq!(
            got[0].sql,
            "DELETE FROM [s].[t] WHERE (([a] = @P1 AND [b] = @P2) OR ([a] = @P3 AND [b] = @P4))"
        );
        assert_eq!(got[0].params, ["1", "x", "2", "y"]);
        assert_eq!(
            got[1].sql,
            "SET IDENTITY_INSERT [s].[t] ON; INSERT INTO [s].[t] ([a], [b], [v]) VALUES \
             (@P1, @P2, @P3), (@P4, @P5, NULL); SET IDENTITY_INSERT [s].[t] OFF"
        );
        assert_eq!(got[1].params, ["1", "x", "7", "2", "y"]);

        // 2,100 parameters per call, 1,000 rows per VALUES.
        let work = into_sqlserver(vec![column("id", "bigint"), column("v", "int")], 1, false);
        let rows: Vec<crate::db::Row> = (0..2500)
            .map(|r| vec![Some(r.to_string()), Some("1".into())])
            .collect();
        let got = work.statements(d, &work.delete_statements(d, &rows), &rows);
        assert!(
            got.iter().all(|s| s.params.len() <= 2000),
            "parameters per call"
        );
        let inserts: Vec<&Statement> = got.iter().filter(|s| s.sql.starts_with("INSERT")).collect();
        assert!(inserts.iter().all(|s| s.params.len() <= 2000));
        assert_eq!(inserts.iter().map(|s| s.params.len()).sum::<usize>(), 5000);
        assert!(
            got[0]
                .sql
                .starts_with("DELETE FROM [s].[t] WHERE ([id]) IN ((@P1), (@P2), ")
        );
        let wide = into_sqlserver(
            (0..3).map(|i| column(&format!("k{i}"), "int")).collect(),
            3,
            false,
        );
        assert_eq!(wide.keys_per_statement(d), 666);
        assert_eq!(
            into_sqlserver(vec![column("id", "int")], 1, false).keys_per_statement(d),
            1000
        );
    }
}
