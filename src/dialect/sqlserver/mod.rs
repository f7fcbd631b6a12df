//! SQL Server SQL (2017 and later; see "Versions" below). Pure text: the
//! tiberius driver (`db::sqlserver`) runs it.
//!
//! # Conventions the driver follows
//!
//! - **Parameters** are `@P1`, `@P2`, ... (tiberius numbers them so), sent
//!   as NVARCHAR text; the SQL converts them (`key_param`, `wire_in`). A
//!   parameter may appear several times in one statement (the expanded
//!   composite comparison repeats its bounds).
//! - **Every cell is text**: non-text results are wrapped in
//!   `CONVERT(nvarchar(..), x[, style])` with an exact style (see
//!   `SqlType::text`). Fixed-width values are converted to `nvarchar(64)`
//!   (a bounded type keeps LOB handling out of sorts and aggregates),
//!   strings and bytes to `nvarchar(max)`.
//! - **Catalog ids**: a table's `table_id` is its `object_id` as text;
//!   the default schema is `SCHEMA_NAME()`.
//! - **`data_type`**, as `columns_sql` spells it (and every cast here
//!   takes it): the system type's name from `sys.types`, lower case, with
//!   - a length for `varchar(n)`, `char(n)`, `varbinary(n)`, `binary(n)` in
//!     bytes and for `nvarchar(n)`, `nchar(n)` in byte pairs (UTF-16 code
//!     units), `max` for the LOB forms: `nvarchar(50)`, `varbinary(max)`;
//!   - precision and scale for `decimal(18,4)` / `numeric(10,0)`;
//!   - the fractional digits for `datetime2(7)`, `datetimeoffset(3)`,
//!     `time(0)`;
//!   - nothing for the others: `int`, `bigint`, `bit`, `money`, `float`
//!     (53 bits), `real`, `date`, `datetime`, `smalldatetime`,
//!     `uniqueidentifier`, `xml`, `sql_variant`, `timestamp` (rowversion),
//!     `hierarchyid`, `geometry`, `geography`, a CLR type's own name.
//!
//!   Alias types are spelled as their base type (`sysname` is
//!   `nvarchar(128)`). Every spelling is valid in `CAST(x AS ...)`.
//! - **Identity columns** are reported as `identity_always` (only
//!   `SET IDENTITY_INSERT` writes them); computed, rowversion, temporal
//!   period, column-set and graph columns as `generated`.
//! - **IDENTITY_INSERT**: where a statement writes an identity column,
//!   `insert_select` returns ONE batch `SET IDENTITY_INSERT t ON; INSERT
//!   ...; SET IDENTITY_INSERT t OFF`. Sent with parameters (sp_executesql)
//!   the setting is scoped to that call and cannot leak into the pooled
//!   session even when the INSERT fails; the SETs report no row count, so
//!   the batch's count is the INSERT's. A session can have the setting on
//!   for one table at a time only.
//! - **Transactions**: the driver runs BEGIN TRAN / COMMIT around
//!   `Session::transaction` and sets `LOCK_TIMEOUT` per session; nothing
//!   here emits either. Every statement is sent as its own batch (CREATE
//!   TRIGGER must be the first statement of its batch). Index builds and
//!   drops (`IndexSql`) run outside any transaction (`Session::execute`).
//! - **The job's lock** (`try_job_lock_sql`) is a `sp_getapplock` owned by
//!   the session: run it on the dedicated session that lives as long as
//!   the job.
//!
//! # Versions
//!
//! - 2016 SP1: `CREATE OR ALTER TRIGGER`, `DROP ... IF EXISTS`,
//!   `HASHBYTES` over more than 8000 bytes, `STRING_ESCAPE`.
//! - 2017: `STRING_AGG` (catalog queries: unique index columns, index and
//!   foreign key definitions), `sys.columns.graph_type`. This is the floor.
//! - 2019: UTF-8 collations, for what must hash alike on every engine
//!   (`WireSql::row_text`/`hash_sum`, `row_md5`: a cross-engine verify,
//!   and the row-by-row diff of any verify). Same-engine checksums hash
//!   the UTF-16 text and run on 2017.
//! - Online index builds (`WITH (ONLINE = ON)`): Enterprise and Developer
//!   editions (and Azure SQL); see `index_sql`.
//! - Replica lag: availability groups (2014+, `is_primary_replica`),
//!   with the server's own `secondary_lag_seconds` where it reports one
//!   (2016+).

mod bulk_sql;
mod index_sql;
mod signal_sql;
mod swap;
#[cfg(test)]
mod tests;
mod triggers;
mod wire_sql;

pub use bulk_sql::{SLICE_ROWS, StagedInsert};
pub use index_sql::{ONLINE_INDEX_UNAVAILABLE, online_index_unavailable};

use super::sync::{SyncObject, SyncTriggers};
use super::types::{LengthUnit, TemporalKind, TypeShape, base_name, decimal_shape, first_modifier};
use super::{CopyStatement, Dialect, expanded_tuple_compare, target_lookup_hinted};
use crate::table::Column;

pub struct SqlServer;

/// A UTF-8 collation (SQL Server 2019+): an nvarchar value collated with
/// it and cast to varchar(max) is its UTF-8 bytes.
const UTF8_COLLATION: &str = "Latin1_General_100_BIN2_UTF8";

/// `N'...'`: a Unicode string literal, quotes doubled.
pub(crate) fn nliteral(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// The parts of a name quoted by `quote_ident`/`qualified` (`[s].[t]`,
/// `]]` inside a part), unquoted; None for anything else.
pub(crate) fn unquote_qualified(quoted: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = quoted.chars().peekable();
    loop {
        if chars.next()? != '[' {
            return None;
        }
        let mut part = String::new();
        loop {
            match chars.next()? {
                ']' if chars.peek() == Some(&']') => {
                    chars.next();
                    part.push(']');
                }
                ']' => break,
                c => part.push(c),
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// A column type as `columns_sql` spells it, as far as SQL generation
/// cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlType {
    /// tinyint (0..255), smallint, int, bigint.
    Integer(&'static str),
    Bit,
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// money, smallmoney: four decimal places.
    Money(&'static str),
    /// float(53).
    Float,
    /// real, float(24).
    Real,
    Date,
    /// datetime2(n), datetime, smalldatetime: the spelling.
    DateTime(String),
    DateTimeOffset(u32),
    Time(u32),
    Uuid,
    /// binary(n) and rowversion: Some(n); varbinary(n|max), image: None.
    Binary(Option<u32>),
    /// nchar (fixed: padded), nvarchar, ntext.
    Unicode {
        fixed: bool,
    },
    /// char (fixed: padded), varchar, text: bytes in the collation's code
    /// page (UTF-8 under a _UTF8 collation).
    Ansi {
        fixed: bool,
    },
    Xml,
    /// SQL Server 2025's json.
    Json,
    Variant,
    /// hierarchyid, geometry, geography, CLR types: the name.
    Other(String),
}

impl SqlType {
    pub(crate) fn of(data_type: &str) -> SqlType {
        let first = first_modifier(data_type);
        let fraction = || first.unwrap_or(7).min(7);
        match base_name(data_type).as_str() {
            "tinyint" => SqlType::Integer("tinyint"),
            "smallint" => SqlType::Integer("smallint"),
            "int" | "integer" => SqlType::Integer("int"),
            "bigint" => SqlType::Integer("bigint"),
            "bit" => SqlType::Bit,
            "decimal" | "numeric" | "dec" => match decimal_shape(data_type, Some((18, 0))) {
                TypeShape::Decimal { precision, scale } => SqlType::Decimal { precision, scale },
                _ => SqlType::Decimal {
                    precision: 18,
                    scale: 0,
                },
            },
            "money" => SqlType::Money("money"),
            "smallmoney" => SqlType::Money("smallmoney"),
            "float" if first.is_some_and(|n| n <= 24) => SqlType::Real,
            "float" | "double precision" => SqlType::Float,
            "real" => SqlType::Real,
            "date" => SqlType::Date,
            "datetime2" => SqlType::DateTime(format!("datetime2({})", fraction())),
            "datetime" => SqlType::DateTime("datetime".into()),
            "smalldatetime" => SqlType::DateTime("smalldatetime".into()),
            "datetimeoffset" => SqlType::DateTimeOffset(fraction()),
            "time" => SqlType::Time(fraction()),
            "uniqueidentifier" => SqlType::Uuid,
            "binary" => SqlType::Binary(Some(first.unwrap_or(1))),
            "timestamp" | "rowversion" => SqlType::Binary(Some(8)),
            "varbinary" | "image" => SqlType::Binary(None),
            "nchar" => SqlType::Unicode { fixed: true },
            "nvarchar" | "ntext" | "sysname" => SqlType::Unicode { fixed: false },
            "char" => SqlType::Ansi { fixed: true },
            "varchar" | "text" => SqlType::Ansi { fixed: false },
            "xml" => SqlType::Xml,
            "json" => SqlType::Json,
            "sql_variant" => SqlType::Variant,
            other => SqlType::Other(other.to_string()),
        }
    }

    /// The type an INSERT into such a column converts a value to, for
    /// `CONVERT(type, value)`: variable lengths unbounded (an explicit
    /// conversion to `varchar(10)` silently cuts what the INSERT refuses),
    /// None where no conversion applies.
    pub(crate) fn cast_type(&self) -> Option<String> {
        Some(match self {
            SqlType::Integer(name) | SqlType::Money(name) => name.to_string(),
            SqlType::Bit => "bit".into(),
            SqlType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            SqlType::Float => "float".into(),
            SqlType::Real => "real".into(),
            SqlType::Date => "date".into(),
            SqlType::DateTime(spelled) => spelled.clone(),
            SqlType::DateTimeOffset(n) => format!("datetimeoffset({n})"),
            SqlType::Time(n) => format!("time({n})"),
            SqlType::Uuid => "uniqueidentifier".into(),
            SqlType::Binary(Some(n)) => format!("binary({n})"),
            SqlType::Binary(None) => "varbinary(max)".into(),
            SqlType::Unicode { .. } => "nvarchar(max)".into(),
            SqlType::Ansi { .. } => "varchar(max)".into(),
            SqlType::Xml | SqlType::Json | SqlType::Variant | SqlType::Other(_) => return None,
        })
    }

    /// `value` (of this type) as exact text that converts back to the
    /// same value (`key_param`, `wire_in`): decimals as printed, money
    /// with its four places (style 2; the default prints two), floats
    /// with 17 significant digits (style 3), dates ISO (23), date-times
    /// with every fractional digit of their type (121; 126 leaves out a
    /// zero fraction), bytes as upper-case hex without 0x (2), uuids in
    /// lower case, CLR values as their serialized bytes.
    pub(crate) fn text(&self, value: &str) -> String {
        match self {
            SqlType::Integer(_) | SqlType::Bit | SqlType::Decimal { .. } => {
                format!("CONVERT(nvarchar(64), {value})")
            }
            SqlType::Money(_) => format!("CONVERT(nvarchar(64), {value}, 2)"),
            SqlType::Float | SqlType::Real => format!("CONVERT(nvarchar(64), {value}, 3)"),
            SqlType::Date => format!("CONVERT(nvarchar(64), {value}, 23)"),
            SqlType::DateTime(_) | SqlType::DateTimeOffset(_) => {
                format!("CONVERT(nvarchar(64), {value}, 121)")
            }
            SqlType::Time(_) => format!("CONVERT(nvarchar(64), {value})"),
            SqlType::Uuid => format!("LOWER(CONVERT(nvarchar(36), {value}))"),
            SqlType::Binary(_) => {
                format!("CONVERT(nvarchar(max), CONVERT(varbinary(max), {value}), 2)")
            }
            SqlType::Other(name) if name != "hierarchyid" => {
                format!("CONVERT(nvarchar(max), CONVERT(varbinary(max), {value}), 2)")
            }
            _ => format!("CONVERT(nvarchar(max), {value})"),
        }
    }

    /// A key column (or an expression of its type) as the text the
    /// planner reads back: `text`, and nvarchar keys as they are.
    fn key_text(&self, value: &str) -> String {
        match self {
            SqlType::Unicode { .. } => value.to_string(),
            _ => self.text(value),
        }
    }

    /// Parameter `p` (key text) converted back: the column's own type, so
    /// that the column is never the side converted (an index seek), and
    /// compared in the column's collation. Strings and bytes are compared
    /// at the longest length a key can have: a bound is never cut.
    fn param(&self, p: &str) -> String {
        match self {
            SqlType::Integer(name) | SqlType::Money(name) => format!("CAST({p} AS {name})"),
            SqlType::Bit => format!("CAST({p} AS bit)"),
            SqlType::Decimal { precision, scale } => {
                format!("CAST({p} AS decimal({precision},{scale}))")
            }
            SqlType::Float => format!("CAST({p} AS float)"),
            SqlType::Real => format!("CAST({p} AS real)"),
            SqlType::Date => format!("CONVERT(date, {p}, 23)"),
            SqlType::DateTime(spelled) => format!("CONVERT({spelled}, {p}, 121)"),
            SqlType::DateTimeOffset(n) => format!("CONVERT(datetimeoffset({n}), {p}, 121)"),
            SqlType::Time(n) => format!("CAST({p} AS time({n}))"),
            SqlType::Uuid => format!("CAST({p} AS uniqueidentifier)"),
            SqlType::Binary(Some(n)) => format!("CONVERT(binary({n}), {p}, 2)"),
            // 8000, not max: a key holds 1700 bytes at most, and a LOB
            // value would keep the comparison from seeking.
            SqlType::Binary(None) => format!("CONVERT(varbinary(8000), {p}, 2)"),
            // nvarchar against nvarchar: the column's collation decides
            // (implicit beats the parameter's coercible default).
            SqlType::Unicode { .. } => p.to_string(),
            // The parameter is converted with the database's default code
            // page: a varchar key in a collation of another code page can
            // only hold characters both share.
            SqlType::Ansi { .. } => format!("CAST({p} AS varchar(8000))"),
            SqlType::Other(name) if name == "hierarchyid" => format!("CAST({p} AS hierarchyid)"),
            _ => p.to_string(),
        }
    }
}

impl Dialect for SqlServer {
    fn name(&self) -> &'static str {
        "sqlserver"
    }

    fn quote_ident(&self, ident: &str) -> String {
        format!("[{}]", ident.replace(']', "]]"))
    }

    fn placeholder(&self, n: usize) -> String {
        format!("@P{n}")
    }

    fn key_param(&self, n: usize, column: &Column) -> String {
        SqlType::of(&column.data_type).param(&self.placeholder(n))
    }

    fn key_text(&self, column: &Column) -> String {
        SqlType::of(&column.data_type).key_text(&self.quote_ident(&column.name))
    }

    fn key_text_as(&self, column: &Column, like: &Column) -> String {
        let like_type = SqlType::of(&like.data_type);
        match like_type.cast_type() {
            Some(t) => {
                like_type.key_text(&format!("CAST({} AS {t})", self.quote_ident(&column.name)))
            }
            None => self.key_text(column),
        }
    }

    fn unusable_key_reason(&self, column: &Column) -> Option<&'static str> {
        match SqlType::of(&column.data_type) {
            SqlType::Real => Some(
                "a real's text form is converted back through float, so a chunk bound may not \
                 be the exact value",
            ),
            SqlType::Variant => Some(
                "sql_variant values order by their base type's family first and print without \
                 it, so no text bound compares like the value",
            ),
            SqlType::Xml | SqlType::Json => Some("it cannot be compared"),
            SqlType::Other(name) if name != "hierarchyid" => {
                Some("a CLR type's values cannot be compared by the server")
            }
            _ => None,
        }
    }

    fn tuple_compare(&self, lhs: &[String], op: &str, rhs: &[String]) -> String {
        // No row-value comparison in T-SQL.
        expanded_tuple_compare(lhs, op, rhs)
    }

    fn rows_at_offset(&self, limit: u64, offset: u64) -> String {
        // Valid after an ORDER BY only.
        format!(" OFFSET {offset} ROWS FETCH NEXT {limit} ROWS ONLY")
    }

    fn insert_select(&self, copy: &CopyStatement, filter: &str) -> String {
        // REPEATABLEREAD holds the shared row locks to the end of the
        // chunk's transaction (FOR SHARE / LOCK IN SHARE MODE elsewhere).
        // Never IGNORE_DUP_KEY or MERGE: a conflict on another unique key
        // must raise.
        let hint = if copy.lock_source_rows {
            " WITH (REPEATABLEREAD)"
        } else {
            ""
        };
        let insert = format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}{hint} WHERE {filter}",
            copy.target,
            copy.target_columns.join(", "),
            copy.source_exprs.join(", "),
            copy.source,
        );
        if copy.overriding_identity {
            format!(
                "SET IDENTITY_INSERT {t} ON; {insert}; SET IDENTITY_INSERT {t} OFF",
                t = copy.target
            )
        } else {
            insert
        }
    }

    fn absent_from_target(&self, copy: &CopyStatement) -> String {
        // With triggers writing the target, the lookup reads with locks
        // even under READ_COMMITTED_SNAPSHOT: a row version from before
        // the statement would miss a trigger's row committed while the
        // chunk waited for a source row's lock. (A hash join that reads
        // the target first can still miss one: the insert then fails on
        // the key, and the chunk is retried.)
        let hint = if copy.lock_source_rows {
            " WITH (READCOMMITTEDLOCK)"
        } else {
            ""
        };
        format!("NOT EXISTS ({})", target_lookup_hinted(copy, hint))
    }

    fn default_schema_sql(&self) -> &'static str {
        "SELECT SCHEMA_NAME()"
    }

    fn find_table_sql(&self) -> &'static str {
        // Names compare in the database's collation (case-insensitive as
        // a rule): the exact spelling first. A system-versioned table's
        // history table refuses writes.
        "SELECT s.name, o.name, \
                CASE WHEN o.type = 'U' AND t.temporal_type = 1 THEN N'history table of a system-versioned table' \
                     WHEN o.type = 'U' THEN N'table' WHEN o.type = 'V' THEN N'view' \
                     ELSE LOWER(REPLACE(o.type_desc, N'_', N' ')) END, \
                CONVERT(nvarchar(20), o.object_id) \
         FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id \
         LEFT JOIN sys.tables t ON t.object_id = o.object_id \
         WHERE s.name = @P1 AND o.name = @P2 AND o.type IN ('U', 'V', 'S', 'IT', 'SN', 'ET') \
         ORDER BY CASE WHEN o.name = @P2 COLLATE Latin1_General_100_BIN2 THEN 0 ELSE 1 END, \
                  CASE WHEN s.name = @P1 COLLATE Latin1_General_100_BIN2 THEN 0 ELSE 1 END"
    }

    fn columns_sql(&self) -> &'static str {
        // The spelling contract is in the module's documentation. Type
        // names come from the system type (alias types as their base);
        // CLR types (system type 240) by their own name.
        "SELECT c.name, \
                CASE WHEN ty.name IN (N'varchar', N'char', N'varbinary', N'binary') \
                          THEN ty.name + N'(' + CASE WHEN c.max_length = -1 THEN N'max' \
                               ELSE CONVERT(nvarchar(10), c.max_length) END + N')' \
                     WHEN ty.name IN (N'nvarchar', N'nchar') \
                          THEN ty.name + N'(' + CASE WHEN c.max_length = -1 THEN N'max' \
                               ELSE CONVERT(nvarchar(10), c.max_length / 2) END + N')' \
                     WHEN ty.name IN (N'decimal', N'numeric') \
                          THEN ty.name + N'(' + CONVERT(nvarchar(10), c.precision) + N',' \
                               + CONVERT(nvarchar(10), c.scale) + N')' \
                     WHEN ty.name IN (N'datetime2', N'datetimeoffset', N'time') \
                          THEN ty.name + N'(' + CONVERT(nvarchar(10), c.scale) + N')' \
                     ELSE ty.name END, \
                CASE WHEN c.is_nullable = 1 THEN N'true' ELSE N'false' END, \
                CASE WHEN c.is_computed = 1 OR c.is_column_set = 1 OR c.generated_always_type <> 0 \
                          OR c.graph_type IS NOT NULL OR ty.name = N'timestamp' \
                     THEN N'true' ELSE N'false' END, \
                CASE WHEN c.is_identity = 1 THEN N'true' ELSE N'false' END, \
                CASE WHEN c.default_object_id <> 0 OR c.is_identity = 1 OR c.is_computed = 1 \
                          OR c.is_column_set = 1 OR c.generated_always_type <> 0 \
                          OR c.graph_type IS NOT NULL OR ty.name = N'timestamp' \
                     THEN N'true' ELSE N'false' END \
         FROM sys.columns c \
         CROSS APPLY (SELECT TYPE_NAME(CASE WHEN c.system_type_id = 240 THEN c.user_type_id \
                                            ELSE c.system_type_id END) AS name) ty \
         WHERE c.object_id = CONVERT(int, @P1) \
         ORDER BY c.column_id"
    }

    fn unique_indexes_sql(&self) -> &'static str {
        // Only what proves full values unique: enabled, not filtered.
        // (An IGNORE_DUP_KEY index is listed: it is unique, but it drops
        // duplicates with a warning; see IGNORE_DUP_KEY_INDEXES_SQL.)
        "SELECT i.name, CASE WHEN i.is_primary_key = 1 THEN N'true' ELSE N'false' END, \
                N'[' + (SELECT STRING_AGG(CONVERT(nvarchar(max), N'\"' + STRING_ESCAPE(c.name, 'json') + N'\"'), N',') \
                               WITHIN GROUP (ORDER BY ic.key_ordinal) \
                        FROM sys.index_columns ic \
                        JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
                        WHERE ic.object_id = i.object_id AND ic.index_id = i.index_id AND ic.key_ordinal > 0) + N']' \
         FROM sys.indexes i \
         WHERE i.object_id = CONVERT(int, @P1) AND i.is_unique = 1 AND i.has_filter = 0 \
           AND i.is_disabled = 0 AND i.is_hypothetical = 0 \
         ORDER BY i.is_primary_key DESC, i.name"
    }

    fn estimate_sql(&self) -> &'static str {
        // Rows of the heap or clustered index, and the pages they use
        // (metadata only: no VIEW DATABASE STATE needed).
        "SELECT CONVERT(nvarchar(20), r.n), \
                CONVERT(nvarchar(20), CASE WHEN r.n > 0 AND b.n / r.n >= 1 THEN b.n / r.n \
                                           WHEN r.n > 0 THEN 1 ELSE 100 END) \
         FROM (SELECT COALESCE(SUM(p.rows), 0) AS n FROM sys.partitions p \
               WHERE p.object_id = CONVERT(int, @P1) AND p.index_id IN (0, 1)) r \
         CROSS JOIN (SELECT COALESCE(SUM(CONVERT(bigint, au.used_pages)), 0) * 8192 AS n \
                     FROM sys.partitions p JOIN sys.allocation_units au ON au.container_id = p.partition_id \
                     WHERE p.object_id = CONVERT(int, @P1) AND p.index_id IN (0, 1)) b"
    }

    fn try_job_lock_sql(&self) -> &'static str {
        // An application lock owned by the session (released when it
        // ends), not waited for. Resource names are cut at 255
        // characters: the name is hashed, as MySQL's GET_LOCK name is.
        // APPLOCK_MODE tells whether this session now holds it (a second
        // call by the holder is granted again).
        "DECLARE @rowferry_lock nvarchar(255) = N'rowferry:' + CONVERT(nvarchar(64), HASHBYTES('SHA2_256', @P1), 2); \
         EXEC sys.sp_getapplock @Resource = @rowferry_lock, @LockMode = 'Exclusive', \
              @LockOwner = 'Session', @LockTimeout = 0; \
         SELECT CASE WHEN APPLOCK_MODE(N'public', @rowferry_lock, N'Session') = N'Exclusive' \
                     THEN N'true' ELSE N'false' END"
    }

    fn type_shape(&self, data_type: &str) -> TypeShape {
        // Characters of nchar/nvarchar are UTF-16 code units (a character
        // outside the BMP takes two), as `length_sql` counts them.
        let length = || first_modifier(data_type).map(u64::from);
        let temporal = |kind, fraction| TypeShape::Temporal { kind, fraction };
        match SqlType::of(data_type) {
            SqlType::Unicode { .. } => match length() {
                Some(max) => TypeShape::Text {
                    max,
                    unit: LengthUnit::Chars,
                },
                None if base_name(data_type) == "sysname" => TypeShape::Text {
                    max: 128,
                    unit: LengthUnit::Chars,
                },
                None if base_name(data_type) == "nchar" => TypeShape::Text {
                    max: 1,
                    unit: LengthUnit::Chars,
                },
                None => TypeShape::UnboundedText,
            },
            SqlType::Ansi { .. } => match length() {
                Some(max) => TypeShape::Text {
                    max,
                    unit: LengthUnit::Bytes,
                },
                None if base_name(data_type) == "char" => TypeShape::Text {
                    max: 1,
                    unit: LengthUnit::Bytes,
                },
                None => TypeShape::UnboundedText,
            },
            SqlType::Decimal { precision, scale } => TypeShape::Decimal { precision, scale },
            SqlType::Money("smallmoney") => TypeShape::Decimal {
                precision: 10,
                scale: 4,
            },
            SqlType::Money(_) => TypeShape::Decimal {
                precision: 19,
                scale: 4,
            },
            SqlType::Integer("tinyint") => TypeShape::integer(8, true),
            SqlType::Integer("smallint") => TypeShape::integer(16, false),
            SqlType::Integer("int") => TypeShape::integer(32, false),
            SqlType::Integer(_) => TypeShape::integer(64, false),
            SqlType::Bit => TypeShape::Integer { min: 0, max: 1 },
            SqlType::Float => TypeShape::Float { bits: 53 },
            SqlType::Real => TypeShape::Float { bits: 24 },
            SqlType::Date => temporal(TemporalKind::Date, 0),
            SqlType::DateTime(spelled) if spelled.starts_with("datetime2") => temporal(
                TemporalKind::Timestamp,
                first_modifier(&spelled).unwrap_or(7),
            ),
            SqlType::DateTimeOffset(n) => temporal(TemporalKind::TimestampTz, n),
            SqlType::Time(n) => temporal(TemporalKind::Time, n),
            // datetime (1/300 s) and smalldatetime (minutes) have no
            // digit count that tells what they hold: not modelled.
            _ => TypeShape::Other,
        }
    }

    fn length_sql(&self, expr: &str, unit: LengthUnit) -> String {
        // DATALENGTH counts trailing spaces (LEN does not).
        match unit {
            LengthUnit::Chars => format!("(DATALENGTH(CONVERT(nvarchar(max), {expr})) / 2)"),
            LengthUnit::Bytes => format!("DATALENGTH(CONVERT(varchar(max), {expr}))"),
        }
    }

    fn temporal_cast_sql(&self, expr: &str, data_type: &str) -> Option<String> {
        // TRY_CONVERT is NULL where the type cannot hold the value.
        matches!(self.type_shape(data_type), TypeShape::Temporal { .. })
            .then(|| format!("TRY_CONVERT({data_type}, {expr})"))
    }

    fn json_text_array(&self, items: &[String]) -> String {
        let items: Vec<String> = items
            .iter()
            .map(|i| format!("COALESCE(N'\"' + STRING_ESCAPE({i}, 'json') + N'\"', N'null')"))
            .collect();
        if items.is_empty() {
            return "N'[]'".into();
        }
        format!("N'[' + {} + N']'", items.join(" + N',' + "))
    }

    fn state_table_ddl(&self, table: &str) -> String {
        // Job ids are 64 hex digits; nvarchar as the parameters are.
        format!(
            "IF OBJECT_ID({}, N'U') IS NULL CREATE TABLE {table} (job nvarchar(64) NOT NULL, \
             chunk nvarchar(64) NOT NULL, done_at datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME(), \
             PRIMARY KEY (job, chunk))",
            nliteral(table)
        )
    }

    // set_not_null_steps: None. ALTER COLUMN ... NOT NULL (and a checked
    // CHECK constraint) scan the table under a schema modification lock,
    // which blocks every reader and writer: SQL Server has no online path.

    fn sync_objects(&self, s: &SyncTriggers) -> Vec<SyncObject> {
        triggers::sync_objects(self, s)
    }

    fn sync_catalog_sql(&self) -> &'static str {
        triggers::CATALOG_SQL
    }

    fn sync_drop_sql(&self, _source: &str, source_schema: &str, name: &str) -> Vec<String> {
        vec![format!(
            "DROP TRIGGER IF EXISTS {}",
            self.qualified(source_schema, name)
        )]
    }

    fn session_dependent(&self, source: &Column, target: &Column) -> Option<&'static str> {
        let text = matches!(
            SqlType::of(&source.data_type),
            SqlType::Unicode { .. } | SqlType::Ansi { .. }
        );
        let temporal = matches!(
            SqlType::of(&target.data_type),
            SqlType::Date | SqlType::DateTime(_) | SqlType::DateTimeOffset(_)
        );
        (text && temporal).then_some(
            "SQL Server reads text as a date by the session's DATEFORMAT and LANGUAGE: a trigger \
             runs in the application's session, so rows it writes may be read otherwise than the \
             copy reads them (its sessions use the server's defaults). Keep the application's \
             DATEFORMAT and LANGUAGE at the defaults, or store ISO 8601 text (yyyy-mm-ddThh:mm:ss)",
        )
    }

    fn unique_index_count_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT CONVERT(nvarchar(20), COUNT(*)) FROM sys.indexes \
             WHERE object_id = CONVERT(int, @P1) AND is_unique = 1 AND is_disabled = 0 \
               AND is_hypothetical = 0",
        )
    }

    fn swap(&self) -> Option<&dyn super::SwapSql> {
        Some(self)
    }

    fn signals(&self) -> &dyn super::signals::SignalSql {
        self
    }

    fn wire(&self) -> &dyn super::wire::WireSql {
        self
    }

    fn indexes(&self) -> Option<&dyn super::indexes::IndexSql> {
        Some(self)
    }

    fn typed_null(&self, data_type: &str) -> String {
        match SqlType::of(data_type) {
            // rowversion has no NULL of its own type in a SELECT.
            SqlType::Binary(Some(8)) if base_name(data_type) == "timestamp" => {
                "CAST(NULL AS binary(8))".into()
            }
            _ => format!("CAST(NULL AS {data_type})"),
        }
    }

    // untriggered_writes_sql: None. SQL Server fires AFTER triggers for
    // cascading foreign key actions. Bulk loads (BULK INSERT, bcp,
    // SqlBulkCopy) without FIRE_TRIGGERS, TRUNCATE and partition SWITCH
    // bypass every trigger, as on the other engines.

    fn transactional_ddl(&self) -> bool {
        true
    }

    fn canonical_value(&self, expr: &str, column: &Column, cast: bool) -> String {
        // Text as the server prints the value in an exact style, after
        // the INSERT's conversion. char(n)/nchar(n) pad, and SQL Server
        // compares without trailing spaces: they are trimmed.
        let ty = SqlType::of(&column.data_type);
        let value = match (cast, ty.cast_type()) {
            (true, Some(t)) => format!("CONVERT({t}, ({expr}))"),
            _ => expr.to_string(),
        };
        match ty {
            SqlType::Unicode { fixed: true } | SqlType::Ansi { fixed: true } => {
                format!("RTRIM(CONVERT(nvarchar(max), {value}))")
            }
            _ => ty.text(&value),
        }
    }

    fn row_text(&self, values: &[String]) -> String {
        // Length-prefixed (UTF-16 code units, trailing spaces counted) so
        // that ('a,b', 'c') and ('a', 'b,c') differ; NULL is `-`. The
        // length is nvarchar(max), so the concatenation is never cut at
        // 4000 characters. `+`, not CONCAT_WS: no limit of 254 arguments.
        let parts: Vec<String> = values
            .iter()
            .map(|v| {
                format!("COALESCE(CONVERT(nvarchar(max), DATALENGTH({v}) / 2) + N':' + {v}, N'-')")
            })
            .collect();
        join_row(&parts)
    }

    fn hash_sum(&self, row_text: &str) -> String {
        // The first 64 bits of each row's MD5 (of its UTF-16 text) as a
        // signed bigint, summed exactly as decimal(38,0).
        format!(
            "CONVERT(nvarchar(64), COALESCE(SUM(CONVERT(decimal(38,0), \
             CONVERT(bigint, SUBSTRING(HASHBYTES('MD5', {row_text}), 1, 8)))), 0))"
        )
    }

    fn row_md5(&self, row_text: &str) -> String {
        // SQL Server 2019+: the UTF-8 bytes, as every other engine hashes.
        format!(
            "LOWER(CONVERT(nvarchar(32), HASHBYTES('MD5', {}), 2))",
            utf8_bytes(row_text)
        )
    }

    fn text(&self, expr: &str) -> String {
        format!("CONVERT(nvarchar(max), {expr})")
    }
}

/// A row's parts joined by `,` (one part stands alone).
fn join_row(parts: &[String]) -> String {
    if parts.is_empty() {
        return "N''".into();
    }
    parts.join(" + N',' + ")
}

/// An nvarchar expression's UTF-8 bytes (SQL Server 2019+).
fn utf8_bytes(text: &str) -> String {
    format!("CAST(({text}) COLLATE {UTF8_COLLATION} AS varchar(max))")
}

/// Whether `target` has an IGNORE_DUP_KEY unique index, which would drop
/// a row that conflicts with it with a warning instead of an error: a
/// copy into it could lose rows silently, so callers refuse it.
/// (table_id) -> (index name) for each such index.
pub const IGNORE_DUP_KEY_INDEXES_SQL: &str = "SELECT i.name FROM sys.indexes i \
     WHERE i.object_id = CONVERT(int, @P1) AND i.ignore_dup_key = 1 ORDER BY i.name";
