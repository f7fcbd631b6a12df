//! `copy --create-target`: the target table's definition from the
//! source's, with column types mapped between engines (the table in the
//! README). A type with no faithful counterpart maps to nothing, and the
//! copy is refused naming the column unless `--cast COL=TYPE` gives one.
//! Defaults, identity columns and secondary indexes are carried where the
//! target's engine can hold them alike; what it cannot is named, with why.
//! Also the catalog queries a copy to another server needs of either
//! engine (column defaults, foreign keys that cascade deletes).

use super::Dialect;
use super::indexes::{CatalogIndex, IndexDefinition, IndexShape, IndexSql, KeyPart};
use super::mysql::Mysql;
use super::postgres::Postgres;
use super::types::{TemporalKind, TypeShape};
use crate::db::Row;
use crate::table::Column;
use crate::url::Engine;

/// The target type for a source column's type, or None where no type
/// holds every value exactly.
pub fn column_type(from: Engine, to: Engine, source_type: &str) -> Option<String> {
    if from == to {
        return Some(source_type.to_string());
    }
    let ty = source_type.trim().to_ascii_lowercase();
    match (from, to) {
        (Engine::Postgres, Engine::Mysql) => postgres_to_mysql(&ty),
        (Engine::Mysql, Engine::Postgres) => mysql_to_postgres(&ty),
        _ => None,
    }
}

/// `name(args)` split into the name and its arguments.
fn parts(ty: &str) -> (&str, Vec<u32>) {
    match ty.split_once('(') {
        Some((name, rest)) => {
            let args = rest
                .split(')')
                .next()
                .unwrap_or("")
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect();
            (name.trim(), args)
        }
        None => (ty, Vec::new()),
    }
}

fn postgres_to_mysql(ty: &str) -> Option<String> {
    let (name, args) = parts(ty);
    let fraction = |args: &[u32]| args.first().copied().unwrap_or(6).min(6);
    Some(match name {
        "smallint" => "smallint".into(),
        "integer" => "int".into(),
        "bigint" => "bigint".into(),
        "numeric" => match args[..] {
            [p, s] if p <= 65 && s <= 30 => format!("decimal({p},{s})"),
            [p] if p <= 65 => format!("decimal({p},0)"),
            // Unconstrained numeric holds any scale: no DECIMAL does.
            _ => return None,
        },
        "real" => "float".into(),
        "double precision" => "double".into(),
        "text" => "longtext".into(),
        "character varying" => match args[..] {
            [n] if n <= 16_383 => format!("varchar({n})"),
            _ => "longtext".into(),
        },
        "character" => match args[..] {
            [n] if n <= 255 => format!("char({n})"),
            _ => return None,
        },
        "bytea" => "longblob".into(),
        "boolean" => "tinyint(1)".into(),
        "date" => "date".into(),
        "json" | "jsonb" => "json".into(),
        "uuid" => "char(36)".into(),
        _ if name.starts_with("timestamp") && ty.ends_with("with time zone") => {
            // An instant, kept as its UTC time (TIMESTAMP stops in 2038).
            format!("datetime({})", fraction(&args))
        }
        _ if name.starts_with("timestamp") => format!("datetime({})", fraction(&args)),
        _ if name.starts_with("time") && ty.ends_with("without time zone") => {
            format!("time({})", fraction(&args))
        }
        _ => return None,
    })
}

fn mysql_to_postgres(ty: &str) -> Option<String> {
    let unsigned = ty.contains("unsigned");
    let (name, args) = parts(ty.trim_end_matches(" zerofill"));
    let name = name.trim_end_matches(" unsigned");
    Some(match name {
        "tinyint" if args.first() == Some(&1) && !unsigned => "boolean".into(),
        "tinyint" | "year" => "smallint".into(),
        "smallint" if unsigned => "integer".into(),
        "smallint" => "smallint".into(),
        "mediumint" | "int" | "integer" if unsigned => "bigint".into(),
        "mediumint" | "int" | "integer" => "integer".into(),
        "bigint" if unsigned => "numeric(20,0)".into(),
        "bigint" => "bigint".into(),
        "decimal" | "numeric" => match args[..] {
            [p, s] => format!("numeric({p},{s})"),
            [p] => format!("numeric({p},0)"),
            _ => "numeric(10,0)".into(),
        },
        "float" => "real".into(),
        "double" | "real" => "double precision".into(),
        "char" => format!("character({})", args.first().copied().unwrap_or(1)),
        "varchar" => format!(
            "character varying({})",
            args.first().copied().unwrap_or(255)
        ),
        "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => "text".into(),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "bytea".into(),
        "date" => "date".into(),
        "datetime" => format!(
            "timestamp({}) without time zone",
            args.first().unwrap_or(&0)
        ),
        "timestamp" => format!("timestamp({}) with time zone", args.first().unwrap_or(&0)),
        "json" => "jsonb".into(),
        "uuid" => "uuid".into(),
        // MySQL TIME spans ±838 hours; PostgreSQL's stops at 24.
        _ => return None,
    })
}

/// A target column to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
    /// What fills it when an INSERT leaves it out, as written after the
    /// type: `DEFAULT 0`, `GENERATED BY DEFAULT AS IDENTITY`, `AUTO_INCREMENT`.
    pub fill: Option<String>,
}

/// `CREATE TABLE t (columns, PRIMARY KEY (key))`.
pub fn create_table_sql(
    d: &dyn Dialect,
    table: &str,
    columns: &[NewColumn],
    primary_key: &[String],
) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}{}",
                d.quote_ident(&c.name),
                c.data_type,
                if c.nullable { "" } else { " NOT NULL" },
                c.fill
                    .as_deref()
                    .map(|f| format!(" {f}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    parts.push(format!(
        "PRIMARY KEY ({})",
        primary_key
            .iter()
            .map(|k| d.quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    format!("CREATE TABLE {table} ({})", parts.join(", "))
}

// ------------------------------------------------------------------ catalog

/// Catalog queries of the engine on either side of a copy to another
/// server. Each takes the table's catalog id (`TableInfo::id`) as its
/// one parameter.
pub trait CatalogSql: Sync {
    /// (column, default as the catalog prints it, identity, extra,
    /// flavor), one row per column (generated ones too, on MySQL): read
    /// by `read_fill`.
    fn column_fills_sql(&self) -> &'static str;
    /// (constraint, referencing table, ON DELETE rule) of every foreign
    /// key that references the table and whose delete rule changes the
    /// referencing rows (CASCADE, SET NULL, SET DEFAULT).
    fn cascading_foreign_keys_sql(&self) -> &'static str;
}

impl CatalogSql for Postgres {
    fn column_fills_sql(&self) -> &'static str {
        // A serial: a default that calls nextval() of a sequence the
        // column owns.
        "SELECT a.attname::text, pg_catalog.pg_get_expr(d.adbin, d.adrelid), \
                CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' \
                  ELSE CASE WHEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' \
                             AND pg_catalog.pg_get_serial_sequence(a.attrelid::regclass::text, \
                                                                   a.attname) IS NOT NULL \
                       THEN 'serial' ELSE '' END END, \
                '', 'postgres' \
         FROM pg_catalog.pg_attribute a \
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = $1::text::oid AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attgenerated = '' \
         ORDER BY a.attnum"
    }

    fn cascading_foreign_keys_sql(&self) -> &'static str {
        // Clones of a partitioned table's foreign key (conparentid) are
        // reported once, by their parent.
        "SELECT c.conname::text, c.conrelid::regclass::text, \
                CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' \
                     ELSE 'SET DEFAULT' END \
         FROM pg_catalog.pg_constraint c \
         WHERE c.confrelid = $1::text::oid AND c.contype = 'f' \
           AND c.confdeltype IN ('c', 'n', 'd') AND c.conparentid = 0 \
         ORDER BY 2, 1"
    }
}

impl CatalogSql for Mysql {
    fn column_fills_sql(&self) -> &'static str {
        // MariaDB prints a default as SQL (quoted literals, NULL, or an
        // expression); MySQL 8 prints a literal bare and marks
        // expressions DEFAULT_GENERATED.
        "SELECT COLUMN_NAME, COLUMN_DEFAULT, \
                IF(EXTRA LIKE '%auto_increment%', 'auto_increment', ''), EXTRA, \
                IF(VERSION() LIKE '%MariaDB%', 'mariadb', 'mysql') \
         FROM information_schema.COLUMNS \
         WHERE BINARY TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
         ORDER BY ORDINAL_POSITION"
    }

    fn cascading_foreign_keys_sql(&self) -> &'static str {
        "SELECT CONSTRAINT_NAME, \
                CONCAT('`', REPLACE(CONSTRAINT_SCHEMA, '`', '``'), '`.`', \
                       REPLACE(TABLE_NAME, '`', '``'), '`'), DELETE_RULE \
         FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE BINARY UNIQUE_CONSTRAINT_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY REFERENCED_TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
           AND DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
         ORDER BY 2, 1"
    }
}

/// The catalog queries for `d`'s engine, where this version has them.
pub fn catalog_sql(d: &dyn Dialect) -> Option<&'static dyn CatalogSql> {
    match d.name() {
        "postgres" => Some(&Postgres),
        "mysql" => Some(&Mysql),
        _ => None,
    }
}

// ------------------------------------------------------------------ defaults

/// A column default, read from the source's catalog into what can cross
/// engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDefault {
    Number(String),
    Text(String),
    Bool(bool),
    /// CURRENT_TIMESTAMP, now(), with or without a precision.
    CurrentTimestamp,
    /// Anything else, in the source engine's SQL.
    Expression(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// PostgreSQL GENERATED ALWAYS AS IDENTITY.
    Always,
    /// GENERATED BY DEFAULT AS IDENTITY.
    ByDefault,
    /// A PostgreSQL serial: nextval() of a sequence the column owns.
    Serial,
    AutoIncrement,
}

/// What fills a source column that an INSERT leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnFill {
    pub column: String,
    pub default: Option<SourceDefault>,
    pub identity: Option<Identity>,
    /// MySQL's ON UPDATE CURRENT_TIMESTAMP.
    pub on_update_now: bool,
}

/// One row of `CatalogSql::column_fills_sql`.
pub fn read_fill(row: &Row) -> ColumnFill {
    let text = |i: usize| row.get(i).cloned().flatten();
    let extra = text(3).unwrap_or_default().to_ascii_lowercase();
    let identity = match text(2).as_deref() {
        Some("always") => Some(Identity::Always),
        Some("by default") => Some(Identity::ByDefault),
        Some("serial") => Some(Identity::Serial),
        Some("auto_increment") => Some(Identity::AutoIncrement),
        _ => None,
    };
    let default = match (identity, text(4).as_deref()) {
        (Some(_), _) => None,
        (None, Some("postgres")) => text(1).and_then(|e| pg_default(&e)),
        (None, Some(flavor)) => text(1).and_then(|e| {
            mysql_default(&e, extra.contains("default_generated"), flavor == "mariadb")
        }),
        (None, None) => None,
    };
    ColumnFill {
        column: text(0).unwrap_or_default(),
        default,
        identity,
        on_update_now: extra.contains("on update"),
    }
}

fn is_number(text: &str) -> bool {
    let t = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(at) => (&t[..at], Some(&t[at + 1..])),
        None => (t, None),
    };
    let mut halves = mantissa.splitn(2, '.');
    let whole = halves.next().unwrap_or("");
    let fraction = halves.next().unwrap_or("");
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    !(whole.is_empty() && fraction.is_empty())
        && digits(whole)
        && digits(fraction)
        && exponent.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        })
}

fn is_current_timestamp(text: &str) -> bool {
    let t = text.trim().to_ascii_lowercase();
    let name = t.split('(').next().unwrap_or("").trim();
    matches!(
        name,
        "now" | "current_timestamp" | "localtimestamp" | "transaction_timestamp"
    ) && (t == name || t.ends_with(')'))
}

/// A leading `'...'` (quotes doubled inside, and with `backslashes`,
/// backslash escapes) as its text, and what follows it.
fn quoted(text: &str, backslashes: bool) -> Option<(String, &str)> {
    let rest = text.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if backslashes => out.push(chars.next()?.1),
            '\'' if chars.peek().map(|(_, d)| *d) == Some('\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return Some((out, &rest[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// `text` without the parentheses around all of it: `((1 + 2))` gives
/// `1 + 2`; `(a) + (b)` stays.
fn outer_parens_off(text: &str) -> &str {
    let mut t = text.trim();
    while let Some(inner) = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        // The first parenthesis must close at the very end.
        let mut depth = 0;
        let closes_at_end = t.char_indices().all(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            depth > 0 || i == t.len() - 1
        });
        if !closes_at_end {
            break;
        }
        t = inner.trim();
    }
    t
}

/// PostgreSQL's `pg_get_expr` of a default: `0`, `'-1'::integer`,
/// `'new'::text`, `true`, `now()`, `CURRENT_TIMESTAMP`, `NULL::text`.
fn pg_default(expr: &str) -> Option<SourceDefault> {
    let e = expr.trim();
    let bare = outer_parens_off(e);
    // Only casts may follow a literal: `::type`, `::character varying`.
    let only_casts = |rest: &str| {
        let mut casts = rest.trim().split("::");
        casts.next().is_some_and(str::is_empty)
            && casts.all(|ty| {
                !ty.trim().is_empty()
                    && ty
                        .chars()
                        .all(|c| c.is_alphanumeric() || " _(),\".[]".contains(c))
            })
    };
    let lower = bare.to_ascii_lowercase();
    Some(if let Some((value, rest)) = quoted(bare, false) {
        if !only_casts(rest) {
            SourceDefault::Expression(e.to_string())
        } else if is_number(&value) && !rest.contains("char") && !rest.contains("text") {
            SourceDefault::Number(value)
        } else {
            SourceDefault::Text(value)
        }
    } else if lower.starts_with("null") && only_casts(&bare[4..]) {
        return None;
    } else if lower == "true" || lower == "false" {
        SourceDefault::Bool(lower == "true")
    } else if let Some(number) = bare
        .split("::")
        .next()
        .filter(|n| is_number(n.trim()) && only_casts(&bare[n.len()..]))
    {
        SourceDefault::Number(number.trim().to_string())
    } else if is_current_timestamp(bare) {
        SourceDefault::CurrentTimestamp
    } else {
        SourceDefault::Expression(e.to_string())
    })
}

/// MySQL's COLUMN_DEFAULT: MariaDB writes SQL (`'text'`, `0`, `NULL`,
/// `current_timestamp()`); MySQL 8 writes a literal bare and flags an
/// expression (`generated`).
fn mysql_default(text: &str, generated: bool, mariadb: bool) -> Option<SourceDefault> {
    let t = text.trim();
    Some(if mariadb {
        if t.eq_ignore_ascii_case("null") {
            return None;
        }
        match quoted(t, true) {
            Some((value, rest)) if rest.trim().is_empty() => SourceDefault::Text(value),
            _ if is_number(t) => SourceDefault::Number(t.to_string()),
            _ if is_current_timestamp(t) => SourceDefault::CurrentTimestamp,
            _ => SourceDefault::Expression(t.to_string()),
        }
    } else if generated {
        if is_current_timestamp(t) {
            SourceDefault::CurrentTimestamp
        } else {
            SourceDefault::Expression(t.to_string())
        }
    } else if is_number(t) {
        SourceDefault::Number(t.to_string())
    } else {
        SourceDefault::Text(t.to_string())
    })
}

/// The created column a fill is for.
#[derive(Debug, Clone, Copy)]
pub struct FillTarget<'a> {
    pub from: Engine,
    pub to: Engine,
    /// Both tables in one database: the source's sequences are there too.
    pub same_database: bool,
    pub source_type: &'a str,
    pub data_type: &'a str,
    /// The first column of the created primary key (MySQL's AUTO_INCREMENT
    /// must lead an index).
    pub leads_key: bool,
}

/// A string literal in `engine`'s SQL.
fn literal(engine: Engine, text: &str) -> String {
    match engine {
        Engine::Mysql => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''")),
        _ => format!("'{}'", text.replace('\'', "''")),
    }
}

fn dialect_of(engine: Engine) -> &'static dyn Dialect {
    match engine {
        Engine::Mysql => &Mysql,
        _ => &Postgres,
    }
}

/// MySQL column types that take no literal DEFAULT on MySQL 8 (only an
/// expression) and that an index covers by a prefix only.
fn mysql_lob(data_type: &str) -> bool {
    let base = super::types::base_name(data_type);
    base.ends_with("text") || base.ends_with("blob") || base == "json" || base == "geometry"
}

/// What follows a created column's type so that an INSERT leaving it out
/// fills it as on the source (`DEFAULT ...`, an identity, AUTO_INCREMENT),
/// and one note per part the target cannot hold alike (not carried).
pub fn fill_clause(fill: &ColumnFill, t: &FillTarget) -> (Option<String>, Vec<String>) {
    let (sd, td) = (dialect_of(t.from), dialect_of(t.to));
    let (source_shape, shape) = (sd.type_shape(t.source_type), td.type_shape(t.data_type));
    let pg_boolean = t.to == Engine::Postgres && t.data_type == "boolean";
    let integer = matches!(shape, TypeShape::Integer { .. });
    let mut notes = Vec::new();
    let mut clause = match fill.identity {
        Some(identity) => match t.to {
            Engine::Postgres
                if integer
                    && matches!(
                        super::types::base_name(t.data_type).as_str(),
                        "smallint" | "integer" | "bigint"
                    ) =>
            {
                Some(
                    match identity {
                        Identity::Always if t.from == Engine::Postgres => {
                            "GENERATED ALWAYS AS IDENTITY"
                        }
                        _ => "GENERATED BY DEFAULT AS IDENTITY",
                    }
                    .to_string(),
                )
            }
            Engine::Mysql if integer && t.leads_key => Some("AUTO_INCREMENT".to_string()),
            Engine::Mysql if integer => {
                notes.push(
                    "MySQL's AUTO_INCREMENT must be the first column of the primary key".into(),
                );
                None
            }
            _ => {
                notes.push(format!(
                    "an identity needs an integer type on the target, not {}",
                    t.data_type
                ));
                None
            }
        },
        None => None,
    };
    if let Some(default) = fill.default.as_ref().filter(|_| fill.identity.is_none()) {
        let number = |n: &str| match shape {
            TypeShape::Integer { .. }
            | TypeShape::Decimal { .. }
            | TypeShape::UnboundedDecimal
            | TypeShape::Float { .. } => Some(n.to_string()),
            TypeShape::Text { .. } | TypeShape::UnboundedText => Some(literal(t.to, n)),
            _ if pg_boolean && (n == "0" || n == "1") => {
                Some((if n == "1" { "true" } else { "false" }).to_string())
            }
            _ => None,
        };
        let rendered = match default {
            SourceDefault::Number(n) => number(n).ok_or("a number"),
            SourceDefault::Bool(b) if pg_boolean => Ok(b.to_string()),
            SourceDefault::Bool(b) if integer => Ok(u8::from(*b).to_string()),
            SourceDefault::Bool(_) => Err("a boolean"),
            SourceDefault::Text(s) if t.from == t.to => Ok(literal(t.to, s)),
            SourceDefault::Text(s) => match shape {
                TypeShape::Text { .. } | TypeShape::UnboundedText => Ok(literal(t.to, s)),
                _ if is_number(s) => number(s).ok_or("a text"),
                TypeShape::Temporal {
                    kind: TemporalKind::Date | TemporalKind::Timestamp | TemporalKind::Time,
                    ..
                } if s.chars().all(|c| c.is_ascii_digit() || " -:.".contains(c)) => {
                    Ok(literal(t.to, s))
                }
                _ => Err("a text"),
            },
            SourceDefault::CurrentTimestamp => match (source_shape, shape) {
                // The PostgreSQL instant travels as its UTC time into a
                // DATETIME; MySQL's CURRENT_TIMESTAMP is the session's
                // local time.
                (
                    TypeShape::Temporal {
                        kind: TemporalKind::TimestampTz,
                        ..
                    },
                    TypeShape::Temporal {
                        kind: TemporalKind::Timestamp,
                        ..
                    },
                ) if t.from != t.to => Err("a current time in UTC"),
                (
                    _,
                    TypeShape::Temporal {
                        kind: TemporalKind::Timestamp | TemporalKind::TimestampTz,
                        fraction,
                    },
                ) => Ok(match (t.to, fraction) {
                    (Engine::Mysql, 1..) => format!("CURRENT_TIMESTAMP({fraction})"),
                    _ => "CURRENT_TIMESTAMP".to_string(),
                }),
                _ => Err("a current time"),
            },
            SourceDefault::Expression(e) if t.from == t.to => match t.to {
                Engine::Mysql => Ok(format!("({e})")),
                _ if !t.same_database && e.contains("nextval(") => {
                    Err("a sequence of the source's database")
                }
                _ => Ok(e.clone()),
            },
            SourceDefault::Expression(_) => Err("an expression of the source's engine"),
        };
        match rendered {
            // MySQL 8 takes no literal default for TEXT, BLOB and JSON
            // columns, only an expression (MariaDB takes both).
            Ok(v) if t.to == Engine::Mysql && mysql_lob(t.data_type) && !v.starts_with('(') => {
                clause = Some(format!("DEFAULT ({v})"))
            }
            Ok(v) => clause = Some(format!("DEFAULT {v}")),
            Err(what) => notes.push(format!(
                "its default {} ({what}) has no counterpart on the target's {} column",
                describe(default),
                t.data_type
            )),
        }
    }
    if fill.on_update_now {
        match (t.to, shape) {
            (Engine::Mysql, TypeShape::Temporal { fraction, .. }) => {
                let now = match fraction {
                    0 => "CURRENT_TIMESTAMP".to_string(),
                    f => format!("CURRENT_TIMESTAMP({f})"),
                };
                clause = Some(format!(
                    "{} ON UPDATE {now}",
                    clause.unwrap_or_else(|| "DEFAULT NULL".into())
                ));
            }
            _ => notes.push(
                "ON UPDATE CURRENT_TIMESTAMP: PostgreSQL does that with a trigger only".into(),
            ),
        }
    }
    (clause, notes)
}

fn describe(d: &SourceDefault) -> String {
    match d {
        SourceDefault::Number(n) => n.clone(),
        SourceDefault::Text(s) => format!("'{s}'"),
        SourceDefault::Bool(b) => b.to_string(),
        SourceDefault::CurrentTimestamp => "CURRENT_TIMESTAMP".into(),
        SourceDefault::Expression(e) => e.clone(),
    }
}

// ------------------------------------------------------------------ indexes

/// The table the source's indexes are built on.
#[derive(Clone, Copy)]
pub struct IndexTarget<'a> {
    pub engine: Engine,
    pub schema: &'a str,
    pub table: &'a str,
    pub columns: &'a [Column],
    pub primary_key: &'a [String],
    /// The source table's name where index names would collide with the
    /// source's own (one schema of one PostgreSQL database): names are
    /// then made from the target's.
    pub rename_from: Option<&'a str>,
}

/// What becomes of one source index on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexPlan {
    /// Made with the table.
    PrimaryKey,
    Build {
        source: String,
        definition: IndexDefinition,
        unique: bool,
    },
    /// Not built: why, and what to run by hand.
    Skip {
        source: String,
        reason: String,
        by_hand: String,
    },
}

/// An index name for the target: the source's, unless it would collide
/// with the source's own (made from the target table's name then), or
/// MySQL's names (per table) go into PostgreSQL's (per schema, shared
/// with tables), where the table's name leads it. Within each engine's
/// length limit.
fn target_index_name(from: Engine, source_name: &str, t: &IndexTarget) -> String {
    let name = match t.rename_from {
        Some(old) => match source_name.strip_prefix(old) {
            Some(rest) if !rest.is_empty() => format!("{}{rest}", t.table),
            _ => format!("{}_{source_name}", t.table),
        },
        None if from != t.engine
            && t.engine == Engine::Postgres
            && !source_name.starts_with(t.table) =>
        {
            format!("{}_{source_name}", t.table)
        }
        None => source_name.to_string(),
    };
    let limit = match t.engine {
        Engine::Postgres => 63,
        _ => 64,
    };
    let mut end = name.len().min(limit);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// `index` (as read from the source's catalog) on the target table: the
/// statement's definition for the target's `IndexSql::build_sql`, or why
/// not. One engine to the other takes plain lists of columns, each
/// ascending or descending; the same engine takes the source's own
/// definition (PostgreSQL's with the target's table and name in it).
pub fn plan_index(
    from: Engine,
    index: &CatalogIndex,
    shape: Option<&IndexShape>,
    t: &IndexTarget,
    isql: &dyn IndexSql,
) -> IndexPlan {
    let td = dialect_of(t.engine);
    let table_q = td.qualified(t.schema, t.table);
    let source = index.name.clone();
    let skip = |reason: String, by_hand: String| IndexPlan::Skip {
        source: index.name.clone(),
        reason,
        by_hand,
    };
    let as_on_source = format!(
        "build the closest equivalent by hand; the source's definition: {}",
        index.definition
    );
    let Some(shape) = shape else {
        return skip(
            "its definition could not be read from the source's catalog".into(),
            as_on_source,
        );
    };
    if !index.valid {
        return skip(
            "it is INVALID on the source (a failed or unfinished concurrent build)".into(),
            "rebuild it on the source (REINDEX), then rerun".into(),
        );
    }
    let name = target_index_name(from, &index.name, t);
    let build = |unique: bool, parts: &[KeyPart], name: &str| IndexDefinition {
        name: name.to_string(),
        definition: plain_index(t.engine, unique, name, &table_q, parts),
        tablespace: None,
        comment: None,
    };
    let online = |def: &IndexDefinition| {
        isql.build_sql(t.schema, t.table, &[def])
            .map(|s| {
                s.into_iter()
                    .filter(|s| !s.starts_with("SET "))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    let columns: Vec<&str> = shape.parts.iter().map(|p| p.column.as_str()).collect();
    if shape.primary {
        if columns == t.primary_key {
            return IndexPlan::PrimaryKey;
        }
        return skip(
            format!(
                "it is the source's primary key ({}), and the target's primary key is the copy \
                 key ({})",
                columns.join(", "),
                t.primary_key.join(", ")
            ),
            online(&build(
                true,
                &shape.parts,
                &format!("{}_source_pkey", t.table),
            )),
        );
    }
    // Across engines, what the other engine lacks is the reason.
    let not_rebuildable = shape
        .not_rebuildable
        .as_ref()
        .filter(|_| from == t.engine || shape.engine_specific.is_empty());
    if let Some(why) = not_rebuildable {
        let by_hand = match (from == t.engine, t.engine) {
            (true, Engine::Mysql) => format!(
                "ALTER TABLE {table_q} ADD {} (it blocks writes while it builds)",
                index.definition
            ),
            (true, _) => format!(
                "add the constraint by hand: ALTER TABLE {table_q} ADD CONSTRAINT {} EXCLUDE ... \
                 as on the source (pg_get_constraintdef)",
                td.quote_ident(&name)
            ),
            (false, _) => as_on_source.clone(),
        };
        return skip(format!("it is {why}"), by_hand);
    }
    if let Some(missing) = shape
        .parts
        .iter()
        .find(|p| !p.column.is_empty() && !t.columns.iter().any(|c| c.name == p.column))
    {
        return skip(
            format!("the target table has no column {}", missing.column),
            as_on_source,
        );
    }
    if from == t.engine {
        let definition = match (t.engine, &shape.head) {
            (Engine::Postgres, Some(head)) => match index.definition.strip_prefix(head.as_str()) {
                Some(tail) => format!(
                    "CREATE {}INDEX {} ON {table_q}{tail}",
                    if shape.unique { "UNIQUE " } else { "" },
                    td.quote_ident(&name)
                ),
                None => {
                    return skip(
                        "its definition could not be read from the source's catalog".into(),
                        as_on_source,
                    );
                }
            },
            // MySQL's line names no table.
            _ => index.definition.clone(),
        };
        return IndexPlan::Build {
            source,
            definition: IndexDefinition {
                name,
                definition,
                tablespace: None,
                comment: index.comment.clone(),
            },
            unique: shape.unique,
        };
    }
    let plain_parts: Vec<KeyPart> = shape
        .parts
        .iter()
        .filter(|p| !p.column.is_empty())
        .map(|p| KeyPart {
            prefix: None,
            ..p.clone()
        })
        .collect();
    let lob = (t.engine == Engine::Mysql)
        .then(|| {
            shape
                .parts
                .iter()
                .filter_map(|p| t.columns.iter().find(|c| c.name == p.column))
                .find(|c| mysql_lob(&c.data_type))
        })
        .flatten();
    if !shape.engine_specific.is_empty() {
        let by_hand = if plain_parts.len() == shape.parts.len() && lob.is_none() {
            format!(
                "the closest the target can build is on the whole columns: {}",
                online(&build(shape.unique, &plain_parts, &name))
            )
        } else {
            as_on_source
        };
        return skip(
            format!(
                "{} has no counterpart on the target's engine",
                shape.engine_specific.join(", ")
            ),
            by_hand,
        );
    }
    if t.engine == Engine::Mysql {
        let column = |p: &KeyPart| t.columns.iter().find(|c| c.name == p.column);
        if let Some(c) = lob {
            return skip(
                format!(
                    "MySQL indexes a {} column ({}) by a prefix only, which is not the source's \
                     index",
                    c.data_type, c.name
                ),
                format!(
                    "create the table with --cast {}=varchar(N) (up to 768 characters) to index \
                     the whole values, or add a prefix index by hand: ALTER TABLE {table_q} ADD \
                     INDEX {} ({}(191)), ALGORITHM=INPLACE, LOCK=NONE",
                    c.name,
                    td.quote_ident(&name),
                    td.quote_ident(&c.name)
                ),
            );
        }
        // InnoDB's key stops at 3072 bytes; a character takes up to 4.
        let bytes: u64 = shape
            .parts
            .iter()
            .filter_map(column)
            .map(|c| match Mysql.type_shape(&c.data_type) {
                TypeShape::Text { max, unit } => match unit {
                    super::types::LengthUnit::Chars => max * 4,
                    super::types::LengthUnit::Bytes => max,
                },
                _ => 16,
            })
            .sum();
        if bytes > 3072 {
            return skip(
                format!(
                    "its key may take {bytes} bytes on MySQL, more than InnoDB's 3072 (a \
                     character takes up to 4)"
                ),
                "create the table with narrower --cast types for its columns, or add a \
                 prefix index by hand"
                    .into(),
            );
        }
    }
    IndexPlan::Build {
        source,
        definition: build(shape.unique, &shape.parts, &name),
        unique: shape.unique,
    }
}

/// `CREATE [UNIQUE] INDEX name ON table USING btree (a, b DESC)`, or
/// MySQL's index line `[UNIQUE] KEY name (a, b DESC)`, for plain columns.
fn plain_index(engine: Engine, unique: bool, name: &str, table: &str, parts: &[KeyPart]) -> String {
    let d = dialect_of(engine);
    let columns = parts
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                d.quote_ident(&p.column),
                if p.descending { " DESC" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let unique = if unique { "UNIQUE " } else { "" };
    match engine {
        Engine::Mysql => format!("{unique}KEY {} ({columns})", d.quote_ident(name)),
        _ => format!(
            "CREATE {unique}INDEX {} ON {table} USING btree ({columns})",
            d.quote_ident(name)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;

    fn to_my(ty: &str) -> Option<String> {
        column_type(Engine::Postgres, Engine::Mysql, ty)
    }

    fn to_pg(ty: &str) -> Option<String> {
        column_type(Engine::Mysql, Engine::Postgres, ty)
    }

    #[test]
    fn postgres_types_map_to_mysql_or_are_refused() {
        assert_eq!(to_my("numeric(30,10)").as_deref(), Some("decimal(30,10)"));
        assert_eq!(to_my("numeric"), None);
        assert_eq!(
            to_my("character varying(20)").as_deref(),
            Some("varchar(20)")
        );
        assert_eq!(
            to_my("timestamp(3) with time zone").as_deref(),
            Some("datetime(3)")
        );
        assert_eq!(
            to_my("timestamp with time zone").as_deref(),
            Some("datetime(6)")
        );
        assert_eq!(to_my("time without time zone").as_deref(), Some("time(6)"));
        assert_eq!(to_my("boolean").as_deref(), Some("tinyint(1)"));
        assert_eq!(to_my("uuid").as_deref(), Some("char(36)"));
        assert_eq!(to_my("interval"), None);
        assert_eq!(to_my("integer[]"), None);
    }

    #[test]
    fn mysql_types_map_to_postgres_or_are_refused() {
        assert_eq!(to_pg("tinyint(1)").as_deref(), Some("boolean"));
        assert_eq!(to_pg("int(10) unsigned").as_deref(), Some("bigint"));
        assert_eq!(
            to_pg("bigint(20) unsigned").as_deref(),
            Some("numeric(20,0)")
        );
        assert_eq!(to_pg("decimal(12,2)").as_deref(), Some("numeric(12,2)"));
        assert_eq!(
            to_pg("datetime(6)").as_deref(),
            Some("timestamp(6) without time zone")
        );
        assert_eq!(to_pg("varbinary(16)").as_deref(), Some("bytea"));
        assert_eq!(to_pg("enum('a','b')").as_deref(), Some("text"));
        assert_eq!(to_pg("time"), None);
        assert_eq!(to_pg("geometry"), None);
        assert_eq!(
            column_type(Engine::Postgres, Engine::Postgres, "interval").as_deref(),
            Some("interval")
        );
    }

    #[test]
    fn create_table_quotes_names_and_keeps_not_null() {
        let columns = [
            NewColumn {
                name: "id".into(),
                data_type: "bigint".into(),
                nullable: false,
                fill: None,
            },
            NewColumn {
                name: "odd`name".into(),
                data_type: "longtext".into(),
                nullable: true,
                fill: None,
            },
        ];
        assert_eq!(
            create_table_sql(&Mysql, "`s`.`t`", &columns, &["id".into()]),
            "CREATE TABLE `s`.`t` (`id` bigint NOT NULL, `odd``name` longtext, PRIMARY KEY (`id`))"
        );
        assert_eq!(
            create_table_sql(&Postgres, r#""s"."t""#, &columns[..1], &["id".into()]),
            r#"CREATE TABLE "s"."t" ("id" bigint NOT NULL, PRIMARY KEY ("id"))"#
        );
    }

    fn row(cells: &[Option<&str>]) -> Row {
        cells.iter().map(|c| c.map(String::from)).collect()
    }

    #[test]
    fn defaults_read_from_either_catalog() {
        let pg = |e: &str| pg_default(e);
        assert_eq!(pg("0"), Some(SourceDefault::Number("0".into())));
        assert_eq!(
            pg("'-1'::integer"),
            Some(SourceDefault::Number("-1".into()))
        );
        assert_eq!(pg("1.50"), Some(SourceDefault::Number("1.50".into())));
        assert_eq!(
            pg("'it''s'::text"),
            Some(SourceDefault::Text("it's".into()))
        );
        assert_eq!(
            pg("'7'::character varying"),
            Some(SourceDefault::Text("7".into()))
        );
        assert_eq!(pg("true"), Some(SourceDefault::Bool(true)));
        assert_eq!(pg("now()"), Some(SourceDefault::CurrentTimestamp));
        assert_eq!(
            pg("CURRENT_TIMESTAMP"),
            Some(SourceDefault::CurrentTimestamp)
        );
        assert_eq!(pg("NULL::text"), None);
        assert_eq!(
            pg("(1 + 2)"),
            Some(SourceDefault::Expression("(1 + 2)".into()))
        );
        assert_eq!(
            pg("('a'::text || 'b'::text)"),
            Some(SourceDefault::Expression("('a'::text || 'b'::text)".into()))
        );
        assert_eq!(outer_parens_off("((1 + 2))"), "1 + 2");
        assert_eq!(outer_parens_off("(a) + (b)"), "(a) + (b)");

        // MariaDB: SQL; MySQL 8: bare literals, expressions flagged.
        assert_eq!(
            mysql_default("'it''s'", false, true),
            Some(SourceDefault::Text("it's".into()))
        );
        assert_eq!(mysql_default("NULL", false, true), None);
        assert_eq!(
            mysql_default("-5", false, true),
            Some(SourceDefault::Number("-5".into()))
        );
        assert_eq!(
            mysql_default("current_timestamp(6)", false, true),
            Some(SourceDefault::CurrentTimestamp)
        );
        assert_eq!(
            mysql_default("uuid()", false, true),
            Some(SourceDefault::Expression("uuid()".into()))
        );
        assert_eq!(
            mysql_default("it's", false, false),
            Some(SourceDefault::Text("it's".into()))
        );
        assert_eq!(
            mysql_default("CURRENT_TIMESTAMP", true, false),
            Some(SourceDefault::CurrentTimestamp)
        );

        let fill = read_fill(&row(&[
            Some("id"),
            None,
            Some("auto_increment"),
            Some("auto_increment"),
            Some("mariadb"),
        ]));
        assert_eq!(fill.identity, Some(Identity::AutoIncrement));
        let fill = read_fill(&row(&[
            Some("at"),
            Some("current_timestamp()"),
            Some(""),
            Some("on update current_timestamp()"),
            Some("mariadb"),
        ]));
        assert_eq!(fill.default, Some(SourceDefault::CurrentTimestamp));
        assert!(fill.on_update_now);
        let fill = read_fill(&row(&[
            Some("id"),
            Some("nextval('s.t_id_seq'::regclass)"),
            Some("serial"),
            Some(""),
            Some("postgres"),
        ]));
        assert_eq!(
            (fill.identity, fill.default),
            (Some(Identity::Serial), None)
        );
    }

    fn fill(default: Option<SourceDefault>, identity: Option<Identity>) -> ColumnFill {
        ColumnFill {
            column: "c".into(),
            default,
            identity,
            on_update_now: false,
        }
    }

    fn target<'a>(
        from: Engine,
        to: Engine,
        source_type: &'a str,
        data_type: &'a str,
    ) -> FillTarget<'a> {
        FillTarget {
            from,
            to,
            same_database: false,
            source_type,
            data_type,
            leads_key: true,
        }
    }

    #[test]
    fn defaults_and_identities_carried_where_portable() {
        use Engine::{Mysql as M, Postgres as P};
        let clause = |f: &ColumnFill, t: FillTarget| fill_clause(f, &t);
        let number = fill(Some(SourceDefault::Number("1".into())), None);
        assert_eq!(
            clause(&number, target(M, P, "int(11)", "integer"))
                .0
                .as_deref(),
            Some("DEFAULT 1")
        );
        // tinyint(1) 1 into a PostgreSQL boolean.
        assert_eq!(
            clause(&number, target(M, P, "tinyint(1)", "boolean"))
                .0
                .as_deref(),
            Some("DEFAULT true")
        );
        let yes = fill(Some(SourceDefault::Bool(true)), None);
        assert_eq!(
            clause(&yes, target(P, M, "boolean", "tinyint(1)"))
                .0
                .as_deref(),
            Some("DEFAULT 1")
        );
        let text = fill(Some(SourceDefault::Text("it's \\ new".into())), None);
        assert_eq!(
            clause(&text, target(M, P, "varchar(9)", "character varying(9)"))
                .0
                .as_deref(),
            Some("DEFAULT 'it''s \\ new'")
        );
        // MySQL 8 takes an expression only for TEXT.
        assert_eq!(
            clause(&text, target(P, M, "text", "longtext")).0.as_deref(),
            Some("DEFAULT ('it''s \\\\ new')")
        );
        let now = fill(Some(SourceDefault::CurrentTimestamp), None);
        assert_eq!(
            clause(
                &now,
                target(P, M, "timestamp(3) without time zone", "datetime(3)")
            )
            .0
            .as_deref(),
            Some("DEFAULT CURRENT_TIMESTAMP(3)")
        );
        assert_eq!(
            clause(
                &now,
                target(M, P, "timestamp", "timestamp(0) with time zone")
            )
            .0
            .as_deref(),
            Some("DEFAULT CURRENT_TIMESTAMP")
        );
        // An instant kept as UTC in a DATETIME: MySQL's now is local time.
        let (none, notes) = clause(
            &now,
            target(P, M, "timestamp with time zone", "datetime(6)"),
        );
        assert_eq!(none, None);
        assert!(notes[0].contains("a current time in UTC"), "{notes:?}");
        let expr = fill(
            Some(SourceDefault::Expression("gen_random_uuid()".into())),
            None,
        );
        assert_eq!(
            clause(&expr, target(P, P, "uuid", "uuid")).0.as_deref(),
            Some("DEFAULT gen_random_uuid()")
        );
        let (none, notes) = clause(&expr, target(P, M, "uuid", "char(36)"));
        assert!(
            none.is_none() && notes[0].contains("gen_random_uuid()"),
            "{notes:?}"
        );
        // A sequence stays in its database.
        let seq = fill(
            Some(SourceDefault::Expression("nextval('s'::regclass)".into())),
            None,
        );
        assert!(clause(&seq, target(P, P, "bigint", "bigint")).0.is_none());
        let mut same = target(P, P, "bigint", "bigint");
        same.same_database = true;
        assert!(clause(&seq, same).0.is_some());

        let always = fill(None, Some(Identity::Always));
        assert_eq!(
            clause(&always, target(P, P, "bigint", "bigint"))
                .0
                .as_deref(),
            Some("GENERATED ALWAYS AS IDENTITY")
        );
        assert_eq!(
            clause(&always, target(P, M, "bigint", "bigint"))
                .0
                .as_deref(),
            Some("AUTO_INCREMENT")
        );
        let auto = fill(None, Some(Identity::AutoIncrement));
        assert_eq!(
            clause(&auto, target(M, P, "int(10) unsigned", "bigint"))
                .0
                .as_deref(),
            Some("GENERATED BY DEFAULT AS IDENTITY")
        );
        let (none, notes) = clause(&auto, target(M, P, "bigint(20) unsigned", "numeric(20,0)"));
        assert!(
            none.is_none() && notes[0].contains("integer type"),
            "{notes:?}"
        );
        let mut not_first = target(P, M, "bigint", "bigint");
        not_first.leads_key = false;
        assert!(clause(&always, not_first).1[0].contains("first column of the primary key"));

        let mut on_update = fill(Some(SourceDefault::CurrentTimestamp), None);
        on_update.on_update_now = true;
        assert_eq!(
            clause(&on_update, target(M, M, "datetime(6)", "datetime(6)"))
                .0
                .as_deref(),
            Some("DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)")
        );
        let (kept, notes) = clause(
            &on_update,
            target(M, P, "datetime(6)", "timestamp(6) without time zone"),
        );
        assert_eq!(kept.as_deref(), Some("DEFAULT CURRENT_TIMESTAMP"));
        assert!(notes[0].contains("trigger"), "{notes:?}");
    }

    fn part(column: &str, descending: bool, prefix: Option<u32>) -> KeyPart {
        KeyPart {
            column: column.into(),
            descending,
            prefix,
        }
    }

    /// A source index read from the catalog, and its shape.
    #[derive(Clone)]
    struct Source(CatalogIndex, IndexShape);

    fn index(name: &str, definition: &str, shape: IndexShape) -> Source {
        Source(
            CatalogIndex {
                name: name.into(),
                definition: definition.into(),
                kept_because: None,
                valid: true,
                tablespace: None,
                comment: None,
            },
            shape,
        )
    }

    fn plan(from: Engine, i: &Source, t: &IndexTarget, isql: &dyn IndexSql) -> IndexPlan {
        plan_index(from, &i.0, Some(&i.1), t, isql)
    }

    fn col(name: &str, ty: &str) -> Column {
        crate::dialect::test_support::column(name, ty)
    }

    #[test]
    fn indexes_cross_as_plain_columns_or_are_skipped_with_why() {
        let columns = [
            col("id", "bigint"),
            col("a", "varchar(40)"),
            col("b", "int"),
            col("body", "longtext"),
        ];
        let key = ["id".to_string()];
        let my = IndexTarget {
            engine: Engine::Mysql,
            schema: "d",
            table: "t",
            columns: &columns,
            primary_key: &key,
            rename_from: None,
        };
        let multi = index(
            "t_a_b",
            "CREATE INDEX t_a_b ON s.src USING btree (a DESC, b)",
            IndexShape {
                parts: vec![part("a", true, None), part("b", false, None)],
                head: Some("CREATE INDEX t_a_b ON s.src".into()),
                ..Default::default()
            },
        );
        let IndexPlan::Build {
            definition, unique, ..
        } = plan(Engine::Postgres, &multi, &my, &Mysql)
        else {
            panic!("not built")
        };
        assert_eq!(definition.definition, "KEY `t_a_b` (`a` DESC, `b`)");
        assert!(!unique);

        // Into PostgreSQL: MySQL's per-table names get the table's.
        let pg_columns = [
            col("id", "bigint"),
            col("a", "character varying(40)"),
            col("b", "integer"),
        ];
        let pg = IndexTarget {
            engine: Engine::Postgres,
            schema: "s",
            table: "t",
            columns: &pg_columns,
            primary_key: &key,
            rename_from: None,
        };
        let unique_a = index(
            "ua",
            "UNIQUE KEY `ua` (`a`)",
            IndexShape {
                unique: true,
                parts: vec![part("a", false, None)],
                ..Default::default()
            },
        );
        let IndexPlan::Build {
            definition, unique, ..
        } = plan(Engine::Mysql, &unique_a, &pg, &Postgres)
        else {
            panic!("not built")
        };
        assert_eq!(
            definition.definition,
            r#"CREATE UNIQUE INDEX "t_ua" ON "s"."t" USING btree ("a")"#
        );
        assert!(unique);

        // A prefix, an expression, FULLTEXT: skipped, with the closest
        // statement where there is one.
        let prefix = index(
            "p",
            "KEY `p` (`a`(10))",
            IndexShape {
                parts: vec![part("a", false, Some(10))],
                engine_specific: vec!["a prefix length (10 of `a` only)".into()],
                ..Default::default()
            },
        );
        let IndexPlan::Skip {
            reason, by_hand, ..
        } = plan(Engine::Mysql, &prefix, &pg, &Postgres)
        else {
            panic!("built")
        };
        assert!(reason.contains("prefix length"), "{reason}");
        assert_eq!(
            by_hand,
            r#"the closest the target can build is on the whole columns: CREATE INDEX CONCURRENTLY "t_p" ON "s"."t" USING btree ("a")"#
        );
        let fulltext = index(
            "ft",
            "FULLTEXT KEY `ft` (`a`)",
            IndexShape {
                parts: vec![part("a", false, None)],
                engine_specific: vec!["a FULLTEXT index".into()],
                not_rebuildable: Some("a FULLTEXT index: ...".into()),
                ..Default::default()
            },
        );
        let IndexPlan::Skip { reason, .. } = plan(Engine::Mysql, &fulltext, &pg, &Postgres) else {
            panic!("built")
        };
        assert!(
            reason.starts_with("a FULLTEXT index has no counterpart"),
            "{reason}"
        );
        // The same engine: FULLTEXT cannot be built online.
        let my_columns = [col("id", "bigint"), col("a", "varchar(40)")];
        let my_same = IndexTarget {
            columns: &my_columns,
            ..my
        };
        let IndexPlan::Skip { by_hand, .. } = plan(Engine::Mysql, &fulltext, &my_same, &Mysql)
        else {
            panic!("built")
        };
        assert!(
            by_hand.starts_with("ALTER TABLE `d`.`t` ADD FULLTEXT KEY"),
            "{by_hand}"
        );

        // A longtext on MySQL is indexed by a prefix only.
        let body = index(
            "b",
            "CREATE INDEX b ON s.src USING btree (body)",
            IndexShape {
                parts: vec![part("body", false, None)],
                ..Default::default()
            },
        );
        let IndexPlan::Skip { reason, .. } = plan(Engine::Postgres, &body, &my, &Mysql) else {
            panic!("built")
        };
        assert!(reason.contains("by a prefix only"), "{reason}");
        // A column the target lacks; the primary key made with the table.
        let gone = index(
            "g",
            "KEY `g` (`gone`)",
            IndexShape {
                parts: vec![part("gone", false, None)],
                ..Default::default()
            },
        );
        assert!(
            matches!(plan(Engine::Mysql, &gone, &pg, &Postgres), IndexPlan::Skip { reason, .. } if reason.contains("no column gone"))
        );
        let pkey = index(
            "PRIMARY",
            "PRIMARY KEY (`id`)",
            IndexShape {
                primary: true,
                unique: true,
                parts: vec![part("id", false, None)],
                ..Default::default()
            },
        );
        assert_eq!(
            plan(Engine::Mysql, &pkey, &pg, &Postgres),
            IndexPlan::PrimaryKey
        );
        let mut invalid = multi.clone();
        invalid.0.valid = false;
        assert!(
            matches!(plan(Engine::Postgres, &invalid, &pg, &Postgres), IndexPlan::Skip { reason, .. } if reason.contains("INVALID"))
        );
    }

    #[test]
    fn postgres_to_postgres_keeps_the_definition_with_the_target_in_it() {
        let columns = [col("id", "bigint"), col("name", "text")];
        let key = ["id".to_string()];
        let partial = index(
            "src_lower",
            "CREATE INDEX src_lower ON ONLY s.src USING gin (lower(name)) WHERE (id > 0)",
            IndexShape {
                parts: vec![part("", false, None)],
                engine_specific: vec!["an expression".into()],
                head: Some("CREATE INDEX src_lower ON ONLY s.src".into()),
                ..Default::default()
            },
        );
        // Another database: the same name.
        let other = IndexTarget {
            engine: Engine::Postgres,
            schema: "s2",
            table: "made",
            columns: &columns,
            primary_key: &key,
            rename_from: None,
        };
        let IndexPlan::Build { definition, .. } =
            plan(Engine::Postgres, &partial, &other, &Postgres)
        else {
            panic!("not built")
        };
        assert_eq!(
            definition.definition,
            r#"CREATE INDEX "src_lower" ON "s2"."made" USING gin (lower(name)) WHERE (id > 0)"#
        );
        // One schema: the source table's name in it becomes the target's.
        let beside = IndexTarget {
            rename_from: Some("src"),
            ..other
        };
        let IndexPlan::Build { definition, .. } =
            plan(Engine::Postgres, &partial, &beside, &Postgres)
        else {
            panic!("not built")
        };
        assert_eq!(definition.name, "made_lower");
        let exclusion = index(
            "no_overlap",
            "CREATE INDEX no_overlap ON s.src USING gist (during)",
            IndexShape {
                not_rebuildable: Some("an exclusion constraint: ...".into()),
                head: Some("CREATE INDEX no_overlap ON s.src".into()),
                ..Default::default()
            },
        );
        assert!(
            matches!(plan(Engine::Postgres, &exclusion, &other, &Postgres), IndexPlan::Skip { by_hand, .. } if by_hand.contains("ADD CONSTRAINT \"no_overlap\" EXCLUDE"))
        );
        let long = "x".repeat(70);
        assert_eq!(target_index_name(Engine::Mysql, &long, &other).len(), 63);
    }
}
