//! `copy --create-target`: create the target table from the source's
//! definition before the copy (columns, types mapped between engines by
//! `dialect/ddl.rs`, NOT NULL, defaults and identity columns where the
//! target's engine holds them alike, and the copy key as primary key),
//! and after the copy build the source's secondary indexes on it, online,
//! and move identity counters past the copied values. A table already
//! there is used as it is (a rerun after a crash finds the one it
//! created); its indexes are built where missing, so a rerun after any
//! crash ends with all of them.

use super::indexes::{IndexOptions, TargetIndexes};
use super::{inspect, watch_signals};
use crate::db::{self, SessionSettings};
use crate::dialect::ddl::{
    ColumnFill, FillTarget, IndexPlan, IndexTarget, NewColumn, catalog_sql, column_type,
    create_table_sql, fill_clause, plan_index, read_fill,
};
use crate::dialect::indexes::IndexDefinition;
use crate::error::{Error, ErrorKind, Result};
use crate::spec::{CopySpec, RunOptions};
use crate::table::Key;
use crate::url::Engine;
use tokio_util::sync::CancellationToken;

/// `copy --create-target`: create the table, copy, then build its
/// indexes. Each step finds what an earlier run did and goes on from there.
pub async fn run(
    spec: &CopySpec,
    opts: &RunOptions,
    casts: &[Cast],
    indexes: IndexOptions,
) -> Result<()> {
    ensure(spec, opts, casts).await?;
    super::copy::run_with_indexes(spec, opts, indexes).await?;
    finish(spec, opts, indexes.jobs).await
}

/// `--cast COL=TYPE`: the created column's type, where the mapping has
/// none (or to choose another).
#[derive(Debug, Clone)]
pub struct Cast {
    pub column: String,
    pub data_type: String,
}

impl Cast {
    pub fn parse(text: &str) -> Result<Cast> {
        match text.split_once('=') {
            Some((c, t)) if !c.trim().is_empty() && !t.trim().is_empty() => Ok(Cast {
                column: c.trim().to_string(),
                data_type: t.trim().to_string(),
            }),
            _ => Err(Error::input(format!(
                "--cast {text:?}: write COLUMN=TYPE, e.g. --cast span=varchar(40)"
            ))),
        }
    }
}

pub async fn ensure(spec: &CopySpec, opts: &RunOptions, casts: &[Cast]) -> Result<()> {
    let target_url = spec.target.as_ref().unwrap_or(&spec.source);
    let Some(schema) = spec.target_table.schema.clone() else {
        return Err(Error::input(
            "--create-target needs --target-table as schema.table (database.table on MySQL)",
        ));
    };
    let settings = SessionSettings {
        pool_size: 1,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        idle_in_transaction_timeout: None,
    };
    let source_db = db::connect(&spec.source, &settings)
        .await
        .map_err(|e| e.context("--source"))?;
    let target_db = db::connect(target_url, &settings)
        .await
        .map_err(|e| e.context("--target"))?;
    let (d, td) = (source_db.dialect(), target_db.dialect());
    let mut ts = target_db.session().await?;
    let name = spec.target_table.name.clone();
    let present = ts
        .query(td.find_table_sql(), &[schema.clone(), name.clone()])
        .await?;
    let table_q = td.qualified(&schema, &name);
    if !present.is_empty() {
        eprintln!(
            "rowferry: --create-target: {table_q} exists already (created by an earlier run?); \
             copying into it as it is"
        );
        return Ok(());
    }
    let mut s = source_db.session().await?;
    let source = inspect(s.as_mut(), d, &spec.table, "--table").await?;
    let key = Key::resolve(&source, spec.key.as_deref())?;
    let fills: Vec<ColumnFill> = match catalog_sql(d) {
        Some(c) => s
            .query(c.column_fills_sql(), std::slice::from_ref(&source.id))
            .await?
            .iter()
            .map(read_fill)
            .collect(),
        None => Vec::new(),
    };
    let same_database = !super::transfer::crosses_servers(spec);
    let mut not_carried = Vec::new();
    let cast_of = |column: &str| {
        casts
            .iter()
            .find(|c| c.column.eq_ignore_ascii_case(column))
            .map(|c| c.data_type.clone())
    };
    let mut columns = Vec::new();
    for c in source.columns.iter().filter(|c| !c.generated) {
        let data_type = cast_of(&c.name)
            .or_else(|| column_type(spec.source.engine, target_url.engine, &c.data_type))
            .ok_or_else(|| {
                Error::input(format!(
                    "--create-target: column {} ({}) has no type on the target engine that \
                     holds every value exactly; give one with --cast {}=TYPE (and, if the \
                     values need converting, --map {}=<expression>)",
                    c.name, c.data_type, c.name, c.name
                ))
            })?;
        let (fill, notes) = match fills.iter().find(|f| f.column == c.name) {
            Some(f) => fill_clause(
                f,
                &FillTarget {
                    from: spec.source.engine,
                    to: target_url.engine,
                    same_database,
                    source_type: &c.data_type,
                    data_type: &data_type,
                    leads_key: key.columns.first().is_some_and(|k| k.name == c.name),
                },
            ),
            None => (None, Vec::new()),
        };
        not_carried.extend(notes.into_iter().map(|n| (c.name.clone(), n)));
        columns.push(NewColumn {
            name: c.name.clone(),
            data_type,
            nullable: c.nullable,
            fill,
        });
    }
    // Across engines every column must also travel exactly (checked
    // again by the copy; here before anything is created).
    if spec.source.engine != target_url.engine {
        for (c, new) in source.columns.iter().filter(|c| !c.generated).zip(&columns) {
            let mapped = spec
                .maps
                .iter()
                .any(|m| m.column.eq_ignore_ascii_case(&c.name));
            let to = crate::table::Column {
                data_type: new.data_type.clone(),
                domain_base: None,
                charset: None,
                ..c.clone()
            };
            let (from, to) = (d.wire().kind(c), td.wire().kind(&to));
            if !mapped && !crate::dialect::wire::faithful(from, to) {
                return Err(Error::input(format!(
                    "--create-target: column {} ({}) cannot become {} on the target exactly; \
                     convert it on the source with --map {}=<expression> (and --cast {}=TYPE)",
                    c.name, c.data_type, new.data_type, c.name, c.name
                )));
            }
        }
    }
    // Mapped columns the source does not have need a type.
    for m in &spec.maps {
        if columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&m.column))
        {
            continue;
        }
        let data_type = cast_of(&m.column).ok_or_else(|| {
            Error::input(format!(
                "--create-target: --map {} names no source column, so its type is unknown; \
                 give it with --cast {}=TYPE",
                m.column, m.column
            ))
        })?;
        columns.push(NewColumn {
            name: m.column.clone(),
            data_type,
            nullable: true,
            fill: None,
        });
    }
    for cast in casts {
        if !columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&cast.column))
        {
            return Err(Error::input(format!(
                "--cast {}: the created table has no such column",
                cast.column
            )));
        }
    }
    let sql = create_table_sql(td, &table_q, &columns, &key.names());
    ts.execute(&sql).await.map_err(|e| {
        Error::input(format!(
            "--create-target: the target refused the table ({}). Statement: {sql}",
            e.message
        ))
    })?;
    eprintln!(
        "rowferry: --create-target: created {table_q} ({}), primary key ({}); the source's \
         secondary indexes are built after the copy",
        columns
            .iter()
            .map(|c| match &c.fill {
                Some(f) => format!("{} {} {f}", c.name, c.data_type),
                None => format!("{} {}", c.name, c.data_type),
            })
            .collect::<Vec<_>>()
            .join(", "),
        key.names().join(", ")
    );
    for (column, note) in &not_carried {
        eprintln!(
            "rowferry: --create-target: column {column}: {note}; not carried (add it to \
             {table_q} by hand if the application needs it)"
        );
    }
    Ok(())
}

/// After the copy, on the target table under its write lock: identity
/// counters past the copied values, then the source's secondary indexes,
/// online, each one only if not there already. An index the target's
/// engine cannot build alike is named with why and what to run by hand;
/// one that fails (a unique index over values the target compares
/// otherwise) is reported, the others still built, and the run fails.
async fn finish(spec: &CopySpec, opts: &RunOptions, jobs: usize) -> Result<()> {
    let target_url = spec.target.as_ref().unwrap_or(&spec.source);
    let after_copy = |mut e: Error| {
        e.after_writes = true;
        e
    };
    let settings = SessionSettings {
        pool_size: 1,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        idle_in_transaction_timeout: None,
    };
    let source_db = db::connect(&spec.source, &settings)
        .await
        .map_err(|e| e.context("--source"))
        .map_err(after_copy)?;
    let d = source_db.dialect();
    let mut s = source_db.session().await.map_err(after_copy)?;
    let source = inspect(s.as_mut(), d, &spec.table, "--table")
        .await
        .map_err(after_copy)?;
    let Some(source_isql) = d.indexes() else {
        eprintln!(
            "rowferry: --create-target: this version cannot read {}'s indexes; create the \
             secondary indexes of {} by hand",
            spec.source, spec.target_table
        );
        return Ok(());
    };
    let (sql, params) = source_isql.list_indexes(&source.id, &source.schema, &source.name);
    let rows = s.query(&sql, &params).await.map_err(after_copy)?;
    let catalog = source_isql.read_indexes(&rows).map_err(after_copy)?;
    let shapes = source_isql.read_shapes(&rows);
    drop(s);
    let Some(target) = TargetIndexes::open(target_url, opts, jobs, &spec.target_table)
        .await
        .map_err(after_copy)?
    else {
        eprintln!(
            "rowferry: --create-target: this version builds no indexes on {target_url}; create \
             the secondary indexes of {} by hand",
            spec.target_table
        );
        return Ok(());
    };
    advance_identities(&target, target_url.engine)
        .await
        .map_err(after_copy)?;

    let table = target.table().clone();
    let table_name = table.display_name();
    let primary_key = table
        .unique_indexes
        .iter()
        .find(|u| u.primary)
        .map(|u| u.columns.clone())
        .unwrap_or_default();
    // One schema of one PostgreSQL database: index names must differ
    // from the source's own.
    let shares_names = !super::transfer::crosses_servers(spec)
        && target_url.engine == Engine::Postgres
        && source.schema == table.schema;
    let on = IndexTarget {
        engine: target_url.engine,
        schema: &table.schema,
        table: &table.name,
        columns: &table.columns,
        primary_key: &primary_key,
        rename_from: shares_names.then_some(source.name.as_str()),
    };
    let mut wanted: Vec<(String, IndexDefinition, bool)> = Vec::new();
    let mut skipped = 0;
    for index in &catalog {
        let shape = shapes
            .iter()
            .find(|(name, _)| *name == index.name)
            .map(|(_, s)| s);
        match plan_index(spec.source.engine, index, shape, &on, target.sql()) {
            IndexPlan::PrimaryKey => {}
            IndexPlan::Build {
                source,
                definition,
                unique,
            } => wanted.push((source, definition, unique)),
            IndexPlan::Skip {
                source: name,
                reason,
                by_hand,
            } => {
                skipped += 1;
                eprintln!(
                    "rowferry: --create-target: index {name} of {} not created on {table_name}: \
                     {reason}. By hand: {by_hand}",
                    source.display_name()
                );
            }
        }
    }
    let present = target.catalog().await.map_err(after_copy)?;
    let (there, missing): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .partition(|(_, def, _)| present.iter().any(|c| c.name == def.name && c.valid));
    if !there.is_empty() {
        eprintln!(
            "rowferry: --create-target: index(es) of {table_name} already there: {}",
            names(there.iter().map(|(_, d, _)| d))
        );
    }
    // One build each where the engine builds one index per statement
    // anyway; MySQL builds the non-unique ones in one ALTER (one scan),
    // and each unique one alone, so that values one refuses fail that one
    // only.
    let mut groups: Vec<Vec<(String, IndexDefinition, bool)>> = Vec::new();
    let mut together = Vec::new();
    for item in missing {
        if target.sql().builds_together() && !item.2 {
            together.push(item);
        } else {
            groups.push(vec![item]);
        }
    }
    if !together.is_empty() {
        groups.insert(0, together);
    }
    let stop = CancellationToken::new();
    watch_signals(stop.clone());
    let (mut built, mut failures) = (Vec::new(), Vec::new());
    for group in groups {
        let defs: Vec<IndexDefinition> = group.iter().map(|(_, d, _)| d.clone()).collect();
        match target.build(defs, &stop).await {
            Ok(true) => built.extend(group.into_iter().map(|(_, d, _)| d.name)),
            Ok(false) => {
                return Err(after_copy(Error::new(
                    ErrorKind::Interrupted,
                    "interrupted while building the indexes of the created table: the builds in \
                     flight finished. Rerun the same command to build the rest",
                )));
            }
            Err(e) => failures.push(explain_failure(&target, &table_name, &group, e).await),
        }
    }
    if !failures.is_empty() {
        return Err(Error {
            kind: ErrorKind::Fatal,
            message: format!(
                "the copy into {table_name} is complete and its rows stay, but {} of its \
                 index builds failed: {}",
                failures.len(),
                failures.join("; ")
            ),
            code: None,
            duplicate_key: None,
            after_writes: true,
        });
    }
    eprintln!(
        "rowferry: --create-target: indexes of {table_name}: {} built{}{}",
        built.len(),
        if there.is_empty() {
            String::new()
        } else {
            format!(", {} already there", there.len())
        },
        if skipped == 0 {
            String::new()
        } else {
            format!(", {skipped} not carried (see above)")
        }
    );
    Ok(())
}

fn names<'a>(defs: impl Iterator<Item = &'a IndexDefinition>) -> String {
    defs.map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// A failed build said plainly: a unique index over values the target
/// takes for duplicates gets the why and the fix; its INVALID leftover
/// (PostgreSQL) is dropped.
async fn explain_failure(
    target: &TargetIndexes,
    table: &str,
    group: &[(String, IndexDefinition, bool)],
    e: Error,
) -> String {
    // 23505: unique_violation; 1062: ER_DUP_ENTRY; SQL Server 1505 (CREATE
    // UNIQUE INDEX found a duplicate key).
    let duplicate = matches!(e.code.as_deref(), Some("23505" | "1062"))
        || (e.code.as_deref() == Some("1505") && target.db().dialect().name() == "sqlserver");
    let mut leftovers = Vec::new();
    for (_, def, _) in group {
        if let Ok(true) = target.drop_if_invalid(&def.name).await {
            leftovers.push(def.name.clone());
        }
    }
    let dropped = if leftovers.is_empty() {
        String::new()
    } else {
        format!(
            " (the INVALID index the failed build left was dropped: {})",
            leftovers.join(", ")
        )
    };
    let what = group
        .iter()
        .map(|(source, def, _)| match source == &def.name {
            true => def.name.clone(),
            false => format!("{} (the source's {source})", def.name),
        })
        .collect::<Vec<_>>()
        .join(", ");
    match group {
        [(_, _, true)] if duplicate => format!(
            "unique index {what} could not be built: the copied rows hold \
             values that {table} takes for duplicates although the source's index did not (the \
             target compares them otherwise: a case- or accent-insensitive collation, trailing \
             spaces, another type). Server said: {}{dropped}. Find them with SELECT <its \
             columns>, COUNT(*) FROM {table} GROUP BY <its columns> HAVING COUNT(*) > 1; fix \
             them (or give the columns a collation that tells them apart), then rerun the same \
             command to build it; or create it by hand as a non-unique index",
            e.message
        ),
        _ => format!(
            "index(es) {what} could not be built: {}{dropped}. Rerun the same command to build \
             them (an INVALID leftover is dropped first)",
            e.message
        ),
    }
}

/// Identity and serial columns of a PostgreSQL target: the copy wrote
/// their values, so their sequences start past the largest one (InnoDB's
/// AUTO_INCREMENT moves past every value written by itself).
async fn advance_identities(target: &TargetIndexes, engine: Engine) -> Result<()> {
    let db = target.db();
    let Some(swap) = db.dialect().swap().filter(|_| engine == Engine::Postgres) else {
        return Ok(());
    };
    let table = target.table();
    let table_q = db.dialect().qualified(&table.schema, &table.name);
    let mut s = db.session().await?;
    for row in s
        .query(swap.column_sequences_sql(), std::slice::from_ref(&table.id))
        .await?
    {
        let (Some(Some(column)), Some(Some(sequence))) = (row.first(), row.get(1)) else {
            continue;
        };
        s.query(
            &swap.advance_sequence_sql(sequence, &table_q, column, None),
            &[],
        )
        .await?;
    }
    Ok(())
}
