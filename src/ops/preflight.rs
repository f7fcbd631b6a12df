//! Pre-flight checks: before a copy (or a sync) writes anything, find the
//! source rows that the target would refuse or change: NULLs for NOT NULL
//! columns, values a narrower type would cut or round, duplicates for a
//! unique index. The catalog proves what it can for free; the rest is
//! checked in one read of the source (plus one grouped read per unique
//! index that cannot be proven), so a copy is refused with exit 2 instead
//! of failing at chunk 9,000 or silently rounding.

use super::copy::names_column;
use crate::db::{Database, Row, Session};
use crate::dialect::Dialect;
use crate::dialect::ddl::{catalog_sql, column_type};
use crate::dialect::types::{Fit, LengthUnit, TemporalKind, TypeShape, fit};
use crate::error::{Error, Result};
use crate::spec::CopySpec;
use crate::table::{Column, Key, TableInfo};
use crate::url::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A written NOT NULL column would receive NULL.
    NullIntoNotNull,
    /// A NOT NULL column without default that nothing writes.
    NoValueForNotNull,
    /// A value the target type would cut, round or refuse.
    Narrowing,
    /// Source rows that collide on a target unique index.
    Duplicate,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The target column, or the index for a duplicate.
    #[serde(rename = "column")]
    pub target_column: String,
    /// What is wrong, without the fix.
    pub detail: String,
    /// Source rows affected (for a duplicate: the rows sharing the value
    /// shown; other values may repeat too).
    pub rows: u64,
    /// One affected row's key, in the key's column order.
    pub example_key: Option<Vec<String>>,
    /// How to fix it.
    pub fix: String,
}

/// What the checks found, and how each check was settled (for `plan`).
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    pub problems: Vec<Problem>,
    /// Checks run against the data.
    pub scanned: Vec<String>,
    /// Checks the catalog settled without reading a row.
    pub proven: Vec<String>,
    /// What no check covers (arbitrary `--map` expressions, types without
    /// a portable check).
    pub not_checked: Vec<String>,
    /// The source key's column names, to show example keys.
    pub key: Vec<String>,
}

/// A condition to count over the source rows.
struct Check {
    kind: ProblemKind,
    column: String,
    detail: String,
    fix: String,
    condition: String,
}

/// Check a copy of `source` into `target` before it starts. `columns` are
/// (target column, source SQL expression) as the copy writes them; `key`
/// is the source key; `where_sql` limits the source rows like the copy's.
pub async fn run(
    session: &mut dyn Session,
    d: &dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    columns: &[(String, String)],
    key: &Key,
    where_sql: Option<&str>,
) -> Result<Preflight> {
    let mut pf = Preflight {
        key: key.names(),
        ..Default::default()
    };
    let table = d.qualified(&source.schema, &source.name);
    let filter = where_sql
        .map(|w| format!(" WHERE ({w})"))
        .unwrap_or_default();
    let key_json = d.json_text_array(
        &key.columns
            .iter()
            .map(|c| d.key_text(c))
            .collect::<Vec<_>>(),
    );
    let written = |name: &str| {
        columns
            .iter()
            .find(|(t, _)| t == name)
            .map(|(_, e)| e.as_str())
    };
    let bare_source = |expr: &str| {
        source
            .columns
            .iter()
            .find(|s| names_column(d, expr, &s.name))
    };

    let mut checks = Vec::new();
    let mut unfilled = Vec::new();
    for col in target.columns.iter().filter(|c| !c.generated) {
        let Some(expr) = written(&col.name) else {
            if !col.nullable && !col.has_default {
                unfilled.push(col);
            }
            continue;
        };
        let from = bare_source(expr);
        if !col.nullable {
            match from {
                Some(s) if !s.nullable => pf.proven.push(format!(
                    "{}: NOT NULL, and source column {} is NOT NULL",
                    col.name, s.name
                )),
                _ => {
                    pf.scanned
                        .push(format!("{}: NOT NULL; rows where {expr} IS NULL", col.name));
                    checks.push(Check {
                        kind: ProblemKind::NullIntoNotNull,
                        column: col.name.clone(),
                        detail: format!(
                            "{} is NOT NULL in {}, but {expr} is NULL",
                            col.name,
                            target.display_name()
                        ),
                        fix: format!(
                            "write a value for those rows (--map {}=COALESCE({expr}, <value>)), \
                             leave them out (--where {expr} IS NOT NULL), or make the column \
                             nullable",
                            col.name
                        ),
                        condition: format!("({expr}) IS NULL"),
                    });
                }
            }
        }
        let Some(s) = from else {
            if d.type_shape(col.shape_type()) == TypeShape::UnboundedText {
                pf.proven.push(format!(
                    "{}: {} holds any value's text",
                    col.name, col.data_type
                ));
                continue;
            }
            pf.not_checked
                .push(match super::lengths::length_limit(d, None, col) {
                    // Its length is what a varchar(n) limits; the chunk checks it.
                    Some(limit) => format!(
                        "{}: the values of --map expression {expr} are not read before the copy; a \
                         value of more than {} characters fails its chunk, never cut{}",
                        col.name,
                        limit.max,
                        match limit.unit {
                            LengthUnit::Chars => String::new(),
                            LengthUnit::Bytes => format!(
                                " ({} holds {}: a value of fewer characters but more bytes is \
                                 refused by the server, or stored with its trailing spaces cut \
                                 if they are the excess)",
                                col.data_type,
                                limit.told()
                            ),
                        }
                    ),
                    None => format!(
                        "{}: whether the values of --map expression {expr} fit {}",
                        col.name, col.data_type
                    ),
                });
            continue;
        };
        match fit(d, s.shape_type(), col.shape_type(), expr) {
            Fit::Exact => pf.proven.push(format!(
                "{}: {} holds every {} value",
                col.name, col.data_type, s.data_type
            )),
            Fit::Unchecked(why) => pf.not_checked.push(format!("{}: {why}", col.name)),
            Fit::Lossy(n) => {
                pf.scanned.push(format!("{}: {}", col.name, n.description));
                checks.push(Check {
                    kind: ProblemKind::Narrowing,
                    column: col.name.clone(),
                    detail: format!("{}: {}", col.name, n.description),
                    fix: format!(
                        "widen the target column (ALTER TABLE {} ALTER/MODIFY COLUMN {} ...), \
                         convert the values on purpose (--map {}=EXPR), or leave those rows out \
                         (--where)",
                        target.display_name(),
                        col.name,
                        col.name
                    ),
                    condition: n.lossy_condition,
                });
            }
        }
    }

    // One read of the source counts every condition and keeps one key
    // per condition (a whole row's key, as one JSON text).
    if !checks.is_empty() {
        let mut select = vec!["COUNT(*)".to_string(), format!("MIN({key_json})")];
        for c in &checks {
            select.push(format!("SUM(CASE WHEN {} THEN 1 ELSE 0 END)", c.condition));
            select.push(format!(
                "MIN(CASE WHEN {} THEN {key_json} END)",
                c.condition
            ));
        }
        let sql = format!("SELECT {} FROM {table}{filter}", select.join(", "));
        eprintln!(
            "rowferry: pre-flight: reading {} once for what the catalog cannot prove ({})",
            source.display_name(),
            checks
                .iter()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = scan(session, &sql, source).await?;
        let row = rows.first();
        let total = number(row, 0);
        for (i, c) in checks.into_iter().enumerate() {
            let hits = number(row, 2 + 2 * i);
            if hits > 0 {
                pf.problems.push(Problem {
                    kind: c.kind,
                    target_column: c.column,
                    detail: c.detail,
                    rows: hits,
                    example_key: key_of(row, 3 + 2 * i)?,
                    fix: c.fix,
                });
            }
        }
        if total > 0 {
            for col in &unfilled {
                pf.problems
                    .push(no_value(col, target, total, key_of(row, 1)?));
            }
        }
        unfilled.clear();
    }
    if !unfilled.is_empty() {
        // Certain for any row at all: one row is enough to show it.
        let sql = format!("SELECT {key_json} FROM {table}{filter}{}", any_row(d));
        let rows = scan(session, &sql, source).await?;
        if let Some(row) = rows.first() {
            let example = key_of(Some(row), 0)?;
            for col in &unfilled {
                let rows = source.estimated_rows.max(1);
                pf.problems
                    .push(no_value(col, target, rows, example.clone()));
            }
        }
    }

    duplicates(
        &mut pf, session, d, source, target, columns, key, &key_json, &table, &filter,
    )
    .await?;
    Ok(pf)
}

fn no_value(col: &Column, target: &TableInfo, rows: u64, example: Option<Vec<String>>) -> Problem {
    Problem {
        kind: ProblemKind::NoValueForNotNull,
        target_column: col.name.clone(),
        detail: format!(
            "{} is NOT NULL in {} and has no default, but nothing writes it (no source column \
             of that name, no --map) in any row",
            col.name,
            target.display_name()
        ),
        rows,
        example_key: example,
        fix: format!(
            "write it (--map {}=EXPR), or give the column a DEFAULT",
            col.name
        ),
    }
}

/// Target unique indexes other than the copy key's: rows that collide on
/// one would stop the copy midway (a unique violation is never skipped).
#[allow(clippy::too_many_arguments)]
async fn duplicates(
    pf: &mut Preflight,
    session: &mut dyn Session,
    d: &dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    columns: &[(String, String)],
    key: &Key,
    key_json: &str,
    table: &str,
    filter: &str,
) -> Result<()> {
    // The target columns that receive the key unchanged: insert-if-absent
    // arbitrates on their index, which holds the source's unique key.
    let key_targets: Vec<&str> = key
        .columns
        .iter()
        .filter_map(|k| {
            columns
                .iter()
                .find(|(_, e)| names_column(d, e, &k.name))
                .map(|(t, _)| t.as_str())
        })
        .collect();
    for index in &target.unique_indexes {
        let cols = index.columns.join(", ");
        if index.columns.len() == key_targets.len()
            && index
                .columns
                .iter()
                .all(|c| key_targets.contains(&c.as_str()))
        {
            continue;
        }
        let mut exprs = Vec::new();
        for c in &index.columns {
            match (columns.iter().find(|(t, _)| t == c), target.column(c)) {
                (Some((_, e)), Some(tcol)) => exprs.push((tcol, e.as_str())),
                _ => break,
            }
        }
        if exprs.len() < index.columns.len() {
            // A column left to its default: not the copy's doing.
            pf.not_checked.push(format!(
                "unique index {} ({cols}): some of its columns are not written",
                index.name
            ));
            continue;
        }
        // Bare source columns that keep their values exactly, covering a
        // source unique index: the source already proves them unique.
        let same: Option<Vec<&Column>> = exprs
            .iter()
            .map(|(tcol, e)| {
                source
                    .columns
                    .iter()
                    .find(|s| names_column(d, e, &s.name))
                    .filter(|s| fit(d, s.shape_type(), tcol.shape_type(), e) == Fit::Exact)
            })
            .collect();
        let proof = same.as_ref().and_then(|same| {
            source
                .unique_indexes
                .iter()
                .find(|si| si.columns.iter().all(|c| same.iter().any(|s| &s.name == c)))
        });
        if let Some(si) = proof {
            pf.proven.push(format!(
                "unique index {} ({cols}): source unique index {} ({}) covers it",
                index.name,
                si.name,
                si.columns.join(", ")
            ));
            continue;
        }
        pf.scanned.push(format!(
            "unique index {} ({cols}): source rows sharing a value",
            index.name
        ));
        // The values are named in a derived table, so that GROUP BY never
        // reads a constant `--map` as a column position.
        let names: Vec<String> = (0..exprs.len())
            .map(|i| d.quote_ident(&format!("rowferry_v{i}")))
            .collect();
        let inner: Vec<String> = exprs
            .iter()
            .zip(&names)
            .map(|((_, e), n)| format!("{e} AS {n}"))
            .collect();
        let not_null: Vec<String> = names.iter().map(|n| format!("{n} IS NOT NULL")).collect();
        let texts: Vec<String> = names.iter().map(|n| d.text(n)).collect();
        let key_alias = d.quote_ident("rowferry_k");
        let sql = format!(
            "SELECT MIN({key_alias}), COUNT(*), MIN({}) FROM (SELECT {key_json} AS {key_alias}, {} \
             FROM {table}{filter}) rowferry_d WHERE {} GROUP BY {} HAVING COUNT(*) > 1{}",
            d.json_text_array(&texts),
            inner.join(", "),
            not_null.join(" AND "),
            names.join(", "),
            any_row(d)
        );
        let rows = scan(session, &sql, source).await?;
        let Some(row) = rows.first() else {
            continue;
        };
        let value = key_of(Some(row), 2)?
            .map(|v| v.join(", "))
            .unwrap_or_default();
        pf.problems.push(Problem {
            kind: ProblemKind::Duplicate,
            target_column: index.name.clone(),
            detail: format!(
                "unique index {} of {} ({cols}): source rows share the value ({value})",
                index.name,
                target.display_name()
            ),
            rows: number(Some(row), 1),
            example_key: key_of(Some(row), 0)?,
            fix: format!(
                "remove the duplicates from the source, leave them out with --where, or drop \
                 the index {} until the copy is done",
                index.name
            ),
        });
    }
    Ok(())
}

/// SQL Server: a unique index with IGNORE_DUP_KEY = ON turns a duplicate
/// key into a warning and drops the row, so a copy (or a sync trigger)
/// into `target` could lose rows without an error: refused.
pub async fn refuse_ignore_dup_key(
    session: &mut dyn Session,
    d: &dyn Dialect,
    target: &TableInfo,
) -> Result<()> {
    if d.name() != "sqlserver" {
        return Ok(());
    }
    let rows = session
        .query(
            crate::dialect::sqlserver::IGNORE_DUP_KEY_INDEXES_SQL,
            std::slice::from_ref(&target.id),
        )
        .await?;
    let names: Vec<String> = rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let table = d.qualified(&target.schema, &target.name);
    Err(Error::input(format!(
        "{} has unique index(es) with IGNORE_DUP_KEY = ON ({}): SQL Server drops a row that \
         duplicates such a key with only a warning, so rows written into it could be lost \
         silently. Turn the option off first ({}), or copy into another table",
        target.display_name(),
        names.join(", "),
        names
            .iter()
            .map(|n| format!(
                "ALTER INDEX {} ON {table} SET (IGNORE_DUP_KEY = OFF)",
                d.quote_ident(n)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// The clause that keeps any one row: T-SQL's OFFSET/FETCH needs an
/// ORDER BY.
fn any_row(d: &dyn Dialect) -> String {
    let order = if d.name() == "sqlserver" {
        " ORDER BY (SELECT NULL)"
    } else {
        ""
    };
    format!("{order}{}", d.rows_at_offset(1, 0))
}

/// Run one pre-flight read. A timeout or an expression the server cannot
/// evaluate is the operator's to fix before anything is written.
async fn scan(session: &mut dyn Session, sql: &str, source: &TableInfo) -> Result<Vec<Row>> {
    session.query(sql, &[]).await.map_err(|e| {
        if e.is_retryable() {
            return e;
        }
        // PostgreSQL 57014, MariaDB 1969, MySQL 3024: statement timeout.
        if matches!(e.code.as_deref(), Some("57014" | "1969" | "3024")) {
            return Error::input(format!(
                "the pre-flight check of {} (one read of the source rows in scope, to find \
                 NULLs, values that do not fit and duplicates before writing) ran longer than \
                 the server's own statement time limit allows. Raise that limit for this user, \
                 or narrow the copy with --where. Statement: {sql}",
                source.display_name()
            ));
        }
        Error::input(format!(
            "the pre-flight check of {} failed: {}; check --map and --where (the server \
             evaluates them over every source row in scope). Statement: {sql}",
            source.display_name(),
            e.message
        ))
    })
}

fn number(row: Option<&Row>, i: usize) -> u64 {
    row.and_then(|r| r.get(i).cloned().flatten())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// A JSON array text cell as its values.
fn key_of(row: Option<&Row>, i: usize) -> Result<Option<Vec<String>>> {
    let Some(text) = row.and_then(|r| r.get(i).cloned().flatten()) else {
        return Ok(None);
    };
    let values: Vec<Option<String>> = serde_json::from_str(&text)
        .map_err(|e| Error::fatal(format!("internal: unreadable key {text}: {e}")))?;
    Ok(Some(
        values
            .into_iter()
            .map(|v| v.unwrap_or_else(|| "NULL".into()))
            .collect(),
    ))
}

impl Problem {
    fn label(&self) -> &'static str {
        match self.kind {
            ProblemKind::NullIntoNotNull => "NULL into NOT NULL",
            ProblemKind::NoValueForNotNull => "no value for NOT NULL",
            ProblemKind::Narrowing => "value does not fit",
            ProblemKind::Duplicate => "duplicate",
        }
    }

    fn describe(&self, key: &[String]) -> String {
        let example = self
            .example_key
            .as_ref()
            .map(|k| format!(", e.g. key ({}) = ({})", key.join(", "), k.join(", ")))
            .unwrap_or_default();
        let rows = match self.kind {
            ProblemKind::Duplicate => format!("{} source rows share it", self.rows),
            _ => format!(
                "{} source row{}",
                self.rows,
                if self.rows == 1 { "" } else { "s" }
            ),
        };
        format!("{} ({rows}{example})", self.detail)
    }
}

impl Preflight {
    /// The refusal of a copy into `target` when any problem was found:
    /// each problem with its column, an example key and the fix.
    pub fn refusal(&self, target: &str) -> Option<Error> {
        if self.problems.is_empty() {
            return None;
        }
        let items: Vec<String> = self
            .problems
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "({}) {}: {}; {}",
                    i + 1,
                    p.label(),
                    p.describe(&self.key),
                    p.fix
                )
            })
            .collect();
        Some(Error::input(format!(
            "pre-flight checks found {} problem{} copying into {target} that would lose data or \
             stop the copy midway, so it did not start: {}. `rowferry plan` with the same flags \
             lists every check",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            items.join("; ")
        )))
    }

    /// The checks and their results, one line each, for `plan`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.problems.is_empty() {
            lines.push("no problem found".to_string());
        } else {
            lines.push(format!(
                "{} problem{}: copy would refuse to start (exit 2)",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" }
            ));
            for p in &self.problems {
                lines.push(format!(
                    "  {}: {}; fix: {}",
                    p.label(),
                    p.describe(&self.key),
                    p.fix
                ));
            }
        }
        for (title, items) in [
            ("checked by reading the source", &self.scanned),
            ("proven by the catalog", &self.proven),
            ("not checked", &self.not_checked),
        ] {
            if !items.is_empty() {
                lines.push(format!("{title}:"));
                lines.extend(items.iter().map(|i| format!("  {i}")));
            }
        }
        lines
    }
}

// ------------------------------------------------------------------ another server

/// A copied column whose target type holds fewer values than its source
/// column's: a copy to another server would round them (scale,
/// fractional seconds) or stop midway on one (integer range, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    pub column: String,
    pub source_type: String,
    pub target_type: String,
    /// What is lost, as `types::fit` says it.
    pub what: String,
}

/// The declared types a pre-flight of a copy to another server compares:
/// numbers into numbers (scale, integer digits, range), text of a
/// declared length into text of a shorter one, and times into times of
/// the same kind (fractional seconds). Unbounded text (`text`, MySQL's
/// TEXT types) into `varchar(n)` is not compared: nothing says its
/// values are long, and a longer one fails its chunk, never cut. Other
/// pairs are the wire's to judge (`dialect::wire::faithful`).
fn compared(source: TypeShape, target: TypeShape) -> bool {
    use TypeShape as S;
    match (source, target) {
        (
            S::Text {
                unit: LengthUnit::Chars,
                ..
            },
            S::Text {
                unit: LengthUnit::Chars,
                ..
            },
        ) => true,
        (
            S::Decimal { .. } | S::UnboundedDecimal | S::Integer { .. } | S::Float { .. },
            S::Decimal { .. } | S::Integer { .. },
        ) => true,
        (S::Temporal { kind: a, .. }, S::Temporal { kind: b, .. }) => {
            a == b && a != TemporalKind::Date
        }
        _ => false,
    }
}

/// Pure: the copied columns whose target type is narrower than their
/// source's. `pairs` are (source column, target column) copied unchanged
/// (a `--map` is the operator's explicit conversion, not compared). The
/// source type is spelled in the target's engine first (the mapping of
/// `--create-target`, which holds every value exactly), then compared
/// by the same rules as a copy within one database (`types::fit`).
pub fn declared_narrowing(
    from: Engine,
    to: Engine,
    td: &dyn Dialect,
    pairs: &[(&Column, &Column)],
) -> Vec<Narrowed> {
    pairs
        .iter()
        .filter_map(|(s, t)| {
            let narrowed = |what: String| Narrowed {
                column: t.name.clone(),
                source_type: s.data_type.clone(),
                target_type: t.data_type.clone(),
                what,
            };
            let Some(as_target) = column_type(from, to, s.shape_type()) else {
                // PostgreSQL's unconstrained numeric has no spelling on
                // MySQL, and DECIMAL(p,s) rounds its longer fractions with
                // no more than a note.
                let unconstrained = from == Engine::Postgres
                    && crate::dialect::postgres::Postgres.type_shape(s.shape_type())
                        == TypeShape::UnboundedDecimal;
                return match td.type_shape(t.shape_type()) {
                    TypeShape::Decimal { scale, .. } if unconstrained => Some(narrowed(format!(
                        "values with more than {scale} decimal places are rounded"
                    ))),
                    _ => None,
                };
            };
            // MySQL's YEAR takes 0 to 99 as two-digit years, silently.
            let year = |ty: &str| crate::dialect::types::base_name(ty) == "year";
            if to == Engine::Mysql && year(t.shape_type()) && !year(&as_target) {
                return Some(narrowed(
                    "numbers from 0 to 99 are read as two-digit years (5 becomes 2005)".into(),
                ));
            }
            // `fit` leaves floats unchecked; the server rounds a double
            // into a float (or a wide integer into either) without a word.
            if let Some(what) =
                float_narrowing(td.type_shape(&as_target), td.type_shape(t.shape_type()))
            {
                return Some(narrowed(what));
            }
            if !compared(td.type_shape(&as_target), td.type_shape(t.shape_type())) {
                return None;
            }
            let Fit::Lossy(n) = fit(td, &as_target, t.shape_type(), "v") else {
                return None;
            };
            let said = format!("{as_target} -> {}: ", t.data_type);
            Some(narrowed(
                n.description
                    .strip_prefix(&said)
                    .unwrap_or(&n.description)
                    .to_string(),
            ))
        })
        .collect()
}

/// What a float target of fewer significand bits than the source's
/// values need loses: a double into a float, an integer wider than the
/// significand into either.
fn float_narrowing(source: TypeShape, target: TypeShape) -> Option<String> {
    let TypeShape::Float { bits } = target else {
        return None;
    };
    match source {
        TypeShape::Float { bits: b } if b > bits => Some(format!(
            "values are rounded to the target's {bits}-bit significand"
        )),
        TypeShape::Integer { min, max }
            if max.unsigned_abs() > 1u128 << bits || min.unsigned_abs() > 1u128 << bits =>
        {
            Some(format!(
                "integers beyond 2^{bits} (in magnitude) are rounded to the target's {bits}-bit \
                 significand"
            ))
        }
        _ => None,
    }
}

/// What `declared_narrowing` found, as the refusal of the copy.
pub fn narrowing_refusal(target: &str, found: &[Narrowed]) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let items: Vec<String> = found
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "({}) column {}: source {} into target {}: {}",
                i + 1,
                n.column,
                n.source_type,
                n.target_type,
                n.what
            )
        })
        .collect();
    let first = &found[0].column;
    Some(format!(
        "{} column{} of {target} {} narrower than the source's, so the copy would round values \
         or stop midway on one: {}. Widen the target column{} to hold the source's type, or \
         convert the values on purpose with --map COL=<expression> (e.g. --map {first}={first}, \
         or a rounding expression of your choice): a mapped column is not compared",
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        if found.len() == 1 { "is" } else { "are" },
        items.join("; "),
        if found.len() == 1 { "" } else { "s" },
    ))
}

/// A foreign key of another table (or of the table itself) that changes
/// its rows when a row of the target is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadingKey {
    pub constraint: String,
    pub table: String,
    /// CASCADE, SET NULL, SET DEFAULT.
    pub rule: String,
}

/// The refusal of a copy into `target` that such foreign keys point at:
/// a chunk deletes its keys in the target before it writes them, and a
/// chunk written again (a rerun after a crash, a target that held rows)
/// would delete or change the referencing rows.
pub fn cascade_refusal(target: &str, keys: &[CascadingKey]) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let items: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "foreign key {} of {} (ON DELETE {})",
                k.constraint, k.table, k.rule
            )
        })
        .collect();
    Some(format!(
        "{target} is referenced by {}: each chunk deletes its keys in the target before writing \
         them, so a chunk written again (after a crash, or into rows already there) would {} the \
         referencing rows. Drop {} for the copy and add {} back afterwards (ALTER TABLE ... DROP \
         CONSTRAINT / DROP FOREIGN KEY, then ADD CONSTRAINT ... FOREIGN KEY ...), or copy into a \
         table no such foreign key references",
        items.join(", "),
        if keys.iter().all(|k| k.rule == "CASCADE") {
            "delete"
        } else {
            "delete or change"
        },
        if keys.len() == 1 { "it" } else { "them" },
        if keys.len() == 1 { "it" } else { "them" },
    ))
}

/// (table_id) -> (constraint, referencing table, ON DELETE rule) of the
/// foreign keys whose deletes cascade into other rows, on SQL Server.
const SQLSERVER_CASCADING_FOREIGN_KEYS_SQL: &str = "SELECT fk.name, \
        QUOTENAME(OBJECT_SCHEMA_NAME(fk.parent_object_id)) + N'.' + QUOTENAME(OBJECT_NAME(fk.parent_object_id)), \
        REPLACE(fk.delete_referential_action_desc, N'_', N' ') \
 FROM sys.foreign_keys fk \
 WHERE fk.referenced_object_id = CONVERT(int, @P1) AND fk.delete_referential_action <> 0 \
 ORDER BY 2, 1";

/// Pre-flight of a copy into a table on another server, before anything
/// is written: no copied column narrower than its source (`--map`ped
/// ones aside), no foreign key that cascades a chunk's deletes. `copied`
/// are the target columns the copy writes.
pub async fn other_server<'a>(
    spec: &CopySpec,
    td: &dyn Dialect,
    target_db: &dyn Database,
    source: &TableInfo,
    target: &TableInfo,
    copied: impl IntoIterator<Item = &'a Column>,
) -> Result<()> {
    let to = spec
        .target
        .as_ref()
        .map_or(spec.source.engine, |t| t.engine);
    let pairs: Vec<(&Column, &Column)> = copied
        .into_iter()
        .filter(|t| {
            !spec
                .maps
                .iter()
                .any(|m| m.column.eq_ignore_ascii_case(&t.name))
        })
        .filter_map(|t| source.column(&t.name).map(|s| (s, t)))
        .collect();
    let name = target.display_name();
    let mut problems: Vec<String> = narrowing_refusal(
        &name,
        &declared_narrowing(spec.source.engine, to, td, &pairs),
    )
    .into_iter()
    .collect();
    let cascading = match catalog_sql(td) {
        Some(c) => Some(c.cascading_foreign_keys_sql()),
        None if td.name() == "sqlserver" => Some(SQLSERVER_CASCADING_FOREIGN_KEYS_SQL),
        None => None,
    };
    if let Some(sql) = cascading {
        let mut s = target_db.session().await?;
        let keys: Vec<CascadingKey> = s
            .query(sql, std::slice::from_ref(&target.id))
            .await?
            .into_iter()
            .map(|r| {
                let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                CascadingKey {
                    constraint: text(0),
                    table: text(1),
                    rule: text(2),
                }
            })
            .collect();
        problems.extend(cascade_refusal(&name, &keys));
    }
    match problems.as_slice() {
        [] => Ok(()),
        [one] => Err(Error::input(one.clone())),
        many => Err(Error::input(many.join(". Also: "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_of_anything_is_ordered_on_sql_server() {
        use crate::dialect::mysql::Mysql;
        use crate::dialect::sqlserver::SqlServer;
        assert_eq!(
            any_row(&SqlServer),
            " ORDER BY (SELECT NULL) OFFSET 0 ROWS FETCH NEXT 1 ROWS ONLY"
        );
        assert_eq!(any_row(&Mysql), Mysql.rows_at_offset(1, 0));
        let cascading = SQLSERVER_CASCADING_FOREIGN_KEYS_SQL;
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MsSqlDialect {}, cascading)
            .unwrap_or_else(|e| panic!("{e}: {cascading}"));
    }

    fn problem(kind: ProblemKind, rows: u64) -> Problem {
        Problem {
            kind,
            target_column: "n".into(),
            detail: "n is NOT NULL in s.dst, but \"n\" is NULL".into(),
            rows,
            example_key: Some(vec!["7".into(), "b".into()]),
            fix: "fix it".into(),
        }
    }

    #[test]
    fn refusal_names_column_key_and_fix() {
        let mut pf = Preflight {
            key: vec!["id".into(), "k".into()],
            ..Default::default()
        };
        assert!(pf.refusal("s.dst").is_none());
        pf.problems.push(problem(ProblemKind::NullIntoNotNull, 3));
        let e = pf.refusal("s.dst").unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("1 problem copying into s.dst"), "{e}");
        assert!(e.message.contains("NULL into NOT NULL"), "{e}");
        assert!(
            e.message
                .contains("3 source rows, e.g. key (id, k) = (7, b)"),
            "{e}"
        );
        assert!(e.message.contains("fix it"), "{e}");
        let lines = pf.lines();
        assert!(lines[0].contains("copy would refuse"), "{lines:?}");
    }

    #[test]
    fn reads_keys_from_json_text() {
        let row: Row = vec![Some(r#"["1","a\"b"]"#.into()), None];
        assert_eq!(
            key_of(Some(&row), 0).unwrap(),
            Some(vec!["1".to_string(), "a\"b".to_string()])
        );
        assert_eq!(key_of(Some(&row), 1).unwrap(), None);
        assert_eq!(number(Some(&row), 1), 0);
    }

    #[test]
    fn problems_serialize_for_plan_json() {
        let v = serde_json::to_value(problem(ProblemKind::Duplicate, 2)).unwrap();
        assert_eq!(v["kind"], "duplicate");
        assert_eq!(v["column"], "n");
        assert_eq!(v["rows"], 2);
        assert_eq!(v["example_key"][0], "7");
    }

    fn col(name: &str, ty: &str) -> Column {
        crate::dialect::test_support::column(name, ty)
    }

    #[test]
    fn declared_types_narrower_on_another_server_are_found() {
        use crate::dialect::mysql::Mysql;
        use crate::dialect::postgres::Postgres;
        let found = |from, to, td: &dyn Dialect, s: &str, t: &str| {
            let (s, t) = (col("c", s), col("c", t));
            declared_narrowing(from, to, td, &[(&s, &t)])
        };
        let (p, m) = (Engine::Postgres, Engine::Mysql);
        let n = found(p, p, &Postgres, "numeric(30,10)", "numeric(12,2)");
        assert_eq!(n.len(), 1);
        assert!(
            n[0].what
                .starts_with("values with more than 2 decimal places are rounded")
        );
        assert_eq!(
            (n[0].source_type.as_str(), n[0].target_type.as_str()),
            ("numeric(30,10)", "numeric(12,2)")
        );
        let n = found(
            p,
            p,
            &Postgres,
            "timestamp(6) without time zone",
            "timestamp(3) without time zone",
        );
        assert_eq!(n[0].what, "fractional seconds beyond 3 digits are lost");
        assert_eq!(found(p, p, &Postgres, "bigint", "integer").len(), 1);
        assert_eq!(
            found(
                p,
                p,
                &Postgres,
                "character varying(100)",
                "character varying(10)"
            )
            .len(),
            1
        );
        // Unbounded text into varchar(n): each value fails alone if too long.
        assert!(found(p, p, &Postgres, "text", "character varying(10)").is_empty());
        assert!(found(p, m, &Mysql, "text", "varchar(10)").is_empty());
        assert!(found(m, p, &Postgres, "mediumtext", "character varying(10)").is_empty());
        // Wider, or the same: nothing.
        assert!(found(p, p, &Postgres, "numeric(10,2)", "numeric(12,2)").is_empty());
        assert!(found(p, p, &Postgres, "integer", "bigint").is_empty());
        // Across engines, through the type --create-target would make.
        assert_eq!(
            found(p, m, &Mysql, "numeric(30,10)", "decimal(12,2)").len(),
            1
        );
        assert_eq!(
            found(p, m, &Mysql, "timestamp(6) without time zone", "datetime").len(),
            1
        );
        assert_eq!(
            found(m, p, &Postgres, "int(10) unsigned", "integer").len(),
            1
        );
        assert!(found(m, p, &Postgres, "int(10) unsigned", "bigint").is_empty());
        assert!(
            found(
                m,
                p,
                &Postgres,
                "datetime(6)",
                "timestamp without time zone"
            )
            .is_empty()
        );
        // Another kind of time is the wire's to judge.
        assert!(found(p, m, &Mysql, "timestamp with time zone", "datetime(6)").is_empty());

        let e = narrowing_refusal("s.t", &found(p, p, &Postgres, "bigint", "integer")).unwrap();
        assert!(e.starts_with("1 column of s.t is narrower"), "{e}");
        assert!(
            e.contains("column c: source bigint into target integer"),
            "{e}"
        );
        assert!(e.contains("--map c=c"), "{e}");
        assert!(narrowing_refusal("s.t", &[]).is_none());
    }

    #[test]
    fn cascading_foreign_keys_are_named_with_the_way_out() {
        assert!(cascade_refusal("s.t", &[]).is_none());
        let e = cascade_refusal(
            "s.t",
            &[CascadingKey {
                constraint: "child_fk".into(),
                table: "s.child".into(),
                rule: "CASCADE".into(),
            }],
        )
        .unwrap();
        assert!(
            e.contains("foreign key child_fk of s.child (ON DELETE CASCADE)"),
            "{e}"
        );
        assert!(e.contains("would delete the referencing rows"), "{e}");
        assert!(e.contains("Drop it for the copy"), "{e}");
    }
}
