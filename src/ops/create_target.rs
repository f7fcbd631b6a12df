//! `copy --create-target`: create the target table from the source's
//! definition before the copy (columns, types mapped between engines by
//! `dialect/ddl.rs`, NOT NULL, and the copy key as primary key). A table
//! already there is used as it is (a rerun after a crash finds the one it
//! created).

use super::inspect;
use crate::db::{self, SessionSettings};
use crate::dialect::ddl::{NewColumn, column_type, create_table_sql};
use crate::error::{Error, Result};
use crate::spec::{CopySpec, RunOptions};
use crate::table::Key;

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
        columns.push(NewColumn {
            name: c.name.clone(),
            data_type,
            nullable: c.nullable,
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
        "rowferry: --create-target: created {table_q} ({}), primary key ({}); secondary \
         indexes are not created: add them after the copy",
        columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.data_type))
            .collect::<Vec<_>>()
            .join(", "),
        key.names().join(", ")
    );
    Ok(())
}
