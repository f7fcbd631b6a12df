//! SQL generation. A dialect turns a plan into SQL text and nothing else: no
//! I/O, so every statement is unit-tested without a server. The shapes of
//! the statements (keyset ranges, boundary probes, the chunk copy) are built
//! here once; a dialect only supplies the pieces that differ per engine.

pub mod checksum;
pub mod coordinate;
pub mod ddl;
pub mod indexes;
pub mod mysql;
pub mod postgres;
pub mod signals;
pub mod sqlserver;
pub mod sync;
pub mod types;
pub mod wire;

use crate::table::{Column, Key};

/// The engine-specific pieces of SQL.
pub trait Dialect: Send + Sync {
    fn name(&self) -> &'static str;

    /// Quote an identifier so that any name (quotes, dots, spaces, mixed
    /// case, semicolons) is taken literally.
    fn quote_ident(&self, ident: &str) -> String;

    fn qualified(&self, schema: &str, name: &str) -> String {
        format!("{}.{}", self.quote_ident(schema), self.quote_ident(name))
    }

    /// Placeholder for the n-th (1-based) bind parameter.
    fn placeholder(&self, n: usize) -> String;

    /// The n-th parameter, sent as text, turned back into `column`'s type.
    fn key_param(&self, n: usize, column: &Column) -> String;

    /// A key column rendered as exact text (what the planner reads back).
    fn key_text(&self, column: &Column) -> String;

    /// `(a, b) op (x, y)`. Row-value comparison where the engine has it (and
    /// uses the index for it); SQL Server overrides with the expanded form.
    fn tuple_compare(&self, lhs: &[String], op: &str, rhs: &[String]) -> String {
        if lhs.len() == 1 {
            format!("{} {op} {}", lhs[0], rhs[0])
        } else {
            format!("({}) {op} ({})", lhs.join(", "), rhs.join(", "))
        }
    }

    /// Clause that skips `offset` rows and returns at most `limit` (after
    /// ORDER BY).
    fn rows_at_offset(&self, limit: u64, offset: u64) -> String;

    /// `INSERT INTO target (cols) SELECT exprs FROM source WHERE filter`,
    /// with the engine's spelling of the identity override and share lock.
    fn insert_select(&self, copy: &CopyStatement, filter: &str) -> String;

    /// `NOT EXISTS (...)`: the source row has no copy in the target yet.
    fn absent_from_target(&self, copy: &CopyStatement) -> String {
        format!("NOT EXISTS ({})", target_lookup(copy))
    }

    // Catalog queries. Each returns text columns only.

    /// () -> (schema)
    fn default_schema_sql(&self) -> &'static str;
    /// (schema, name) -> (schema, name, kind, table_id); kind is "table",
    /// "view" or another word for what cannot be copied.
    fn find_table_sql(&self) -> &'static str;
    /// (table_id) -> (name, type, nullable, generated, identity_always,
    /// has_default)
    fn columns_sql(&self) -> &'static str;
    /// (table_id) -> (index name, is primary, JSON array of column names)
    fn unique_indexes_sql(&self) -> &'static str;
    /// (table_id) -> (estimated rows, estimated bytes per row)
    fn estimate_sql(&self) -> &'static str;
    /// (lock name) -> ("true" when this session now holds the job's lock)
    fn try_job_lock_sql(&self) -> &'static str;

    /// `column` (the target's) as exact text in the form `like` (the
    /// source's key column) prints, where their types differ: keys of both
    /// sides must read alike to be matched.
    fn key_text_as(&self, column: &Column, like: &Column) -> String;

    /// Why `column` cannot bound chunks on this engine, if it cannot: a
    /// key whose text form is not exact would lose the rows past a
    /// rounded bound.
    fn unusable_key_reason(&self, _column: &Column) -> Option<&'static str> {
        None
    }

    // Pre-flight checks (shared shapes in types.rs).

    /// What values a column of this type (as the catalog spells it) holds.
    fn type_shape(&self, _data_type: &str) -> types::TypeShape {
        types::TypeShape::Other
    }

    /// Whether a column of this type is blank-padded to its length
    /// (PostgreSQL `character(n)`, MySQL `CHAR(n)`, SQL Server `char(n)`):
    /// its trailing spaces carry no meaning (PostgreSQL pads them and
    /// ignores them in comparisons; MySQL strips them on read), so a
    /// server cutting excess trailing spaces does not change its value.
    fn pads_blanks(&self, data_type: &str) -> bool {
        matches!(
            types::base_name(data_type).as_str(),
            "character" | "char" | "nchar" | "bpchar"
        )
    }

    /// The length of a text expression in characters or bytes.
    fn length_sql(&self, expr: &str, unit: types::LengthUnit) -> String {
        match unit {
            types::LengthUnit::Chars => format!("CHAR_LENGTH({expr})"),
            types::LengthUnit::Bytes => format!("OCTET_LENGTH({expr})"),
        }
    }

    /// The characters of `expr`'s value as a `varchar(n)` column (SQL
    /// Server: `nvarchar(n)`) of character set `charset` (where the
    /// catalog tells one) counts them against `n`, whatever the
    /// expression's type: with its trailing spaces, or without them
    /// (`trimmed`). For `length_guard_sql`.
    fn char_count_sql(&self, expr: &str, trimmed: bool, _charset: Option<&str>) -> String {
        if trimmed {
            self.length_sql(
                &format!("RTRIM({})", self.text(expr)),
                types::LengthUnit::Chars,
            )
        } else {
            self.length_sql(expr, types::LengthUnit::Chars)
        }
    }

    /// Whether the value (`first`, its first use: see `evaluated_once`;
    /// `again`, any later use) has more than `max` characters.
    fn longer_than_sql(
        &self,
        first: &str,
        _again: &str,
        max: u64,
        charset: Option<&str>,
    ) -> String {
        format!("{} > {max}", self.char_count_sql(first, false, charset))
    }

    /// `body(first, again)` with `expr` (a `--map` expression, which may
    /// be volatile: nextval(), random()) evaluated once per row: `first`
    /// is its first use, where it is evaluated, `again` each later use.
    /// By default (SQL Server) it is evaluated at each use.
    fn evaluated_once(
        &self,
        expr: &str,
        _slot: usize,
        body: &dyn Fn(&str, &str) -> String,
    ) -> String {
        body(expr, expr)
    }

    /// An integer expression that fails the statement when evaluated, the
    /// server's error quoting the concatenation of `parts` (SQL text
    /// expressions): a cast to a number of a text that is none. Only
    /// ever in a CASE branch taken where the statement must fail.
    fn failing_int_sql(&self, parts: &[String]) -> String {
        format!("CAST(CONCAT({}) AS INTEGER)", parts.join(", "))
    }

    /// `expr` converted to a temporal column type as an INSERT would, NULL
    /// where that type cannot hold it; None where there is no such cast.
    fn temporal_cast_sql(&self, _expr: &str, _data_type: &str) -> Option<String> {
        None
    }

    /// A floating-point value as the exact decimal an INSERT into a decimal
    /// column converts it to.
    fn float_as_decimal_sql(&self, expr: &str) -> String {
        expr.to_string()
    }

    /// A JSON array (as text) of text expressions: several values read
    /// back in one cell, e.g. one row's whole key from an aggregate.
    fn json_text_array(&self, items: &[String]) -> String;

    /// `CREATE TABLE IF NOT EXISTS` for a backfill's state table: one row
    /// per committed chunk, keyed by (job, chunk).
    fn state_table_ddl(&self, table: &str) -> String;

    /// Run first in a DDL step's transaction so that a long VALIDATE is
    /// not cancelled by the chunk statement timeout.
    fn no_statement_timeout(&self) -> Option<&'static str> {
        None
    }

    /// Undo what a failed `set_not_null_steps` may have left (a helper
    /// constraint that would start rejecting the application's NULLs).
    fn undo_not_null(&self, _table: &str, _constraint: &str) -> Option<String> {
        None
    }

    /// A query whose first row's last column is the table's definition,
    /// where `set_not_null_steps` needs it (MySQL's MODIFY restates the
    /// whole column).
    fn table_definition_sql(&self, _table: &str) -> Option<String> {
        None
    }

    /// The statements that make `column` NOT NULL without a long lock, in
    /// order, or None where the engine has no such path here.
    fn set_not_null_steps(
        &self,
        _table: &str,
        _column: &str,
        _constraint: &str,
        _definition: Option<&str>,
    ) -> Option<Vec<String>> {
        None
    }

    // Dual-write sync triggers (shared shapes in sync.rs).

    /// The objects that mirror the source's writes into the target, in
    /// creation order.
    fn sync_objects(&self, s: &sync::SyncTriggers) -> Vec<sync::SyncObject>;

    /// (schema, table, base name) -> (kind, name, body) of the sync
    /// objects on that table: every `rowferry_sync_` trigger, and the
    /// objects named after the base name.
    fn sync_catalog_sql(&self) -> &'static str;

    /// Statements that drop a sync's objects, each `IF EXISTS`.
    fn sync_drop_sql(&self, source: &str, source_schema: &str, name: &str) -> Vec<String>;

    /// Why a trigger could write `source`'s value into `target` otherwise
    /// than the copy does, if it could: the conversion depends on the
    /// application session's settings, which a trigger inherits.
    fn session_dependent(&self, _source: &Column, _target: &Column) -> Option<&'static str> {
        None
    }

    /// (table_id) -> (number of unique indexes of any kind, prefix and
    /// functional ones included), where triggers need to know it.
    fn unique_index_count_sql(&self) -> Option<&'static str> {
        None
    }

    /// The blue-green swap, where this version has it for the engine: the
    /// SQL pieces of `cutover` and `rollback`, or None.
    fn swap(&self) -> Option<&dyn SwapSql> {
        None
    }

    /// The throttle's replica-lag and load queries.
    fn signals(&self) -> &dyn signals::SignalSql;

    /// How values travel to and from another server (`--target`).
    fn wire(&self) -> &dyn wire::WireSql;

    /// Deferred secondary indexes (dropped before a copy, rebuilt online
    /// after it), where this version has them for the engine.
    fn indexes(&self) -> Option<&dyn indexes::IndexSql> {
        None
    }

    /// NULL of a column's type (where the engine can name any type in a cast).
    fn typed_null(&self, _data_type: &str) -> String {
        "NULL".into()
    }

    /// (schema, table) -> names of foreign keys whose cascades change the
    /// table's rows without firing its triggers, where the engine has them.
    fn untriggered_writes_sql(&self) -> Option<&'static str> {
        None
    }

    /// Whether DDL runs inside a transaction (all of a sync's objects
    /// appear at once) or commits statement by statement.
    fn transactional_ddl(&self) -> bool;

    // Checksums (shared shapes in checksum.rs).

    /// A value in a canonical text form that is equal on both sides for
    /// equal values. With `cast`, `expr` is first converted to `column`'s
    /// type, as the INSERT would.
    fn canonical_value(&self, expr: &str, column: &Column, cast: bool) -> String;

    /// One text per row from canonical values; NULL and '' stay distinct.
    fn row_text(&self, values: &[String]) -> String;

    /// Order-independent aggregate of the rows' hashes, as text.
    fn hash_sum(&self, row_text: &str) -> String;

    /// One row text's MD5 as 32 lower-case hex digits, computed over its
    /// UTF-8 bytes: the same on every engine (a row-by-row diff compares
    /// them across engines). SQL Server has no MD5() and hashes UTF-16.
    fn row_md5(&self, row_text: &str) -> String {
        format!("MD5({row_text})")
    }

    /// An expression converted to text (drivers read text only).
    fn text(&self, expr: &str) -> String;
}

/// The SQL of a table swap (cutover and rollback). Catalog queries take
/// the table's catalog id and return text columns.
pub trait SwapSql: Send + Sync {
    /// (table_id) -> (constraint, referencing table, definition): foreign
    /// keys of other tables that point at this one.
    fn referencing_foreign_keys_sql(&self) -> &'static str;
    /// (table_id) -> (view): views that read this table.
    fn dependent_views_sql(&self) -> &'static str;
    /// (table_id) -> (column, sequence): columns fed by a sequence.
    fn column_sequences_sql(&self) -> &'static str;
    /// (table_id) -> (comment on the table)
    fn table_comment_sql(&self) -> &'static str;
    /// Lock the tables against every other session (statement in the
    /// swap's transaction, under the session's lock timeout), where the
    /// renames do not do it themselves.
    fn lock_sql(&self, tables: &[String]) -> Option<String>;
    /// Rename each quoted table to its new name (within the table's
    /// schema), in order and at once: one statement where DDL commits
    /// statement by statement, else statements for one transaction.
    fn renames_sql(&self, renames: &[(&str, &str)]) -> Vec<String>;
    /// Whether one multi-table rename takes its locks table by table in
    /// name order (MySQL's metadata locks), rather than all at once.
    fn renames_lock_in_name_order(&self) -> bool;
    /// An empty table of `like`'s columns and indexes (a stand-in that
    /// triggers can write into while names move).
    fn create_like_sql(&self, table: &str, like: &str) -> String;
    fn comment_sql(&self, table: &str, comment: Option<&str>) -> String;
    /// Move `sequence` (the new table's) past both the largest value in
    /// `column` and the old table's sequence, if it has one.
    fn advance_sequence_sql(
        &self,
        sequence: &str,
        table: &str,
        column: &str,
        old_sequence: Option<&str>,
    ) -> String;
    fn drop_constraint_sql(&self, table: &str, constraint: &str) -> String;
    /// Re-create a foreign key from its definition without checking the
    /// rows (a brief lock); `validate_sql` checks them afterwards without
    /// blocking writers.
    fn add_constraint_not_valid_sql(
        &self,
        table: &str,
        constraint: &str,
        definition: &str,
    ) -> String;
    fn validate_constraint_sql(&self, table: &str, constraint: &str) -> String;
    /// (schema, name) -> (sequence) owned by the table's columns that
    /// another table's column default uses (drop the table and they go).
    fn shared_owned_sequences_sql(&self) -> &'static str;
    fn disown_sequence_sql(&self, sequence: &str) -> String;
    fn drop_table_sql(&self, table: &str) -> String;
}

/// `UPDATE table SET ... WHERE key range [AND where]`: one backfill chunk.
pub fn update_chunk_sql(
    d: &dyn Dialect,
    table: &str,
    set_sql: &str,
    key: &Key,
    has_lo: bool,
    where_sql: Option<&str>,
) -> String {
    let mut filter = vec![format!(
        "({})",
        key_range(
            d,
            key,
            RangeShape {
                has_lo,
                has_hi: true
            }
        )
    )];
    filter.extend(where_sql.map(|w| format!("({w})")));
    format!(
        "UPDATE {table} SET {set_sql} WHERE {}",
        filter.join(" AND ")
    )
}

/// Record a chunk as applied (in the chunk's own transaction).
pub fn state_mark_sql(d: &dyn Dialect, state: &str) -> String {
    format!(
        "INSERT INTO {state} (job, chunk) VALUES ({}, {})",
        d.placeholder(1),
        d.placeholder(2)
    )
}

/// Whether a chunk was applied already.
pub fn state_exists_sql(d: &dyn Dialect, state: &str) -> String {
    format!(
        "SELECT job FROM {state} WHERE job = {} AND chunk = {}",
        d.placeholder(1),
        d.placeholder(2)
    )
}

/// `(a, b) > (x, y)` spelled without row values:
/// `a > x OR (a = x AND b > y)`. For engines whose range optimizer does not
/// use an index for row-value comparisons (MariaDB) or lack them (SQL Server).
pub fn expanded_tuple_compare(lhs: &[String], op: &str, rhs: &[String]) -> String {
    let strict = op.trim_end_matches('=');
    let (last, init) = match (lhs.split_last(), rhs.split_last()) {
        (Some((l, li)), Some((r, _))) => ((l, r), li.len()),
        _ => return "1 = 1".to_string(),
    };
    // Built from the last column outwards; parenthesized whole so that it
    // can be ANDed with anything.
    let mut expr = format!("{} {op} {}", last.0, last.1);
    for i in (0..init).rev() {
        expr = format!(
            "({l} {strict} {r} OR ({l} = {r} AND {expr}))",
            l = lhs[i],
            r = rhs[i]
        );
    }
    expr
}

/// Everything the chunk copy statement needs, already quoted.
#[derive(Debug, Clone)]
pub struct CopyStatement {
    pub source: String,
    pub target: String,
    /// Quoted target columns that are written.
    pub target_columns: Vec<String>,
    /// Source-side SQL for each target column, same order.
    pub source_exprs: Vec<String>,
    /// (target column, source key column), quoted: how a source row finds
    /// its copy in the target.
    pub key_match: Vec<(String, String)>,
    pub where_sql: Option<String>,
    /// An identity GENERATED ALWAYS column is written: values come from the source.
    pub overriding_identity: bool,
    /// Read source rows under a shared row lock (needed with dual-write
    /// triggers so a trigger's newer version always wins).
    pub lock_source_rows: bool,
    /// Skip a row whose key a concurrent writer (a sync trigger) added
    /// after the statement's snapshot, where the engine's anti-join cannot
    /// see it (PostgreSQL reads the NOT EXISTS in the statement's
    /// snapshot). Only on the copy key's own unique index: any other
    /// conflict still raises.
    pub skip_key_conflicts: bool,
}

/// The target row that holds a source row's copy, found by the key.
pub fn target_lookup(copy: &CopyStatement) -> String {
    target_lookup_hinted(copy, "")
}

/// `target_lookup` with a table hint after the target's alias (SQL
/// Server's ` WITH (READCOMMITTEDLOCK)`), or none with "".
pub fn target_lookup_hinted(copy: &CopyStatement, hint: &str) -> String {
    let on = copy
        .key_match
        .iter()
        .map(|(t, s)| format!("rowferry_dst.{t} = {}.{s}", copy.source))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "SELECT 1 FROM {} rowferry_dst{hint} WHERE {on}",
        copy.target
    )
}

/// A failed `length_guard_sql` makes the server's error quote a text that
/// starts with this, followed by `guard:characters:characters without
/// trailing spaces:the row's key as a JSON array of texts` (the key may
/// be cut short: MySQL quotes at most 128 characters).
pub const TOO_LONG: &str = "rowferry_too_long:";

/// `expr`, the value an `INSERT ... SELECT` writes into a column that
/// holds at most `max` characters (or `max` bytes, which no value of more
/// characters fits), unchanged where it fits; where it is longer the
/// statement fails (its error quoting `TOO_LONG`, `guard`, the
/// value's lengths and the row's `key`), so the transaction rolls back.
/// A server assigning a longer value whose excess is all spaces would
/// otherwise cut them without an error (the SQL standard), and refuses
/// any other longer value itself. The value is `expr`'s (the other
/// branch is a NULL), as the server types a CASE. A column (`mapped`
/// false) is read at each use; a `--map` expression is evaluated once
/// per row (`Dialect::evaluated_once`): a sequence must not advance
/// twice, nor a random value be checked and another stored. The cast
/// that fails depends on the row, so no server folds it while planning.
pub fn length_guard_sql(
    d: &dyn Dialect,
    expr: &str,
    mapped: bool,
    max: u64,
    guard: usize,
    key: &Key,
    charset: Option<&str>,
) -> String {
    let key_texts: Vec<String> = key.columns.iter().map(|c| d.key_text(c)).collect();
    let body = |first: &str, again: &str| {
        let fail = d.failing_int_sql(&[
            format!("'{TOO_LONG}{guard}:'"),
            d.char_count_sql(again, false, charset),
            "':'".into(),
            d.char_count_sql(again, true, charset),
            "':'".into(),
            d.json_text_array(&key_texts),
        ]);
        format!(
            "CASE WHEN (CASE WHEN {} THEN {fail} ELSE 0 END) <> 0 THEN NULL ELSE {again} END",
            d.longer_than_sql(first, again, max, charset)
        )
    };
    if mapped {
        d.evaluated_once(expr, guard, &body)
    } else {
        body(expr, expr)
    }
}

/// Which bounds a chunk range has. The first chunk has no lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeShape {
    pub has_lo: bool,
    pub has_hi: bool,
}

/// `key > lo AND key <= hi` with parameters numbered from 1: lo first.
pub fn key_range(d: &dyn Dialect, key: &Key, shape: RangeShape) -> String {
    let cols: Vec<String> = key.columns.iter().map(|c| d.quote_ident(&c.name)).collect();
    let mut n = 0;
    let mut params = || {
        key.columns
            .iter()
            .map(|c| {
                n += 1;
                d.key_param(n, c)
            })
            .collect::<Vec<_>>()
    };
    let mut parts = Vec::new();
    if shape.has_lo {
        parts.push(d.tuple_compare(&cols, ">", &params()));
    }
    if shape.has_hi {
        parts.push(d.tuple_compare(&cols, "<=", &params()));
    }
    if parts.is_empty() {
        "1 = 1".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// Probes read the table under this alias and qualify ORDER BY with it:
/// an unqualified name would sort by the select list's text column of the
/// same name (`ORDER BY id` over `id::text AS id` sorts "99" after "300").
pub(crate) const PROBE_ALIAS: &str = "rowferry_t";

pub(crate) fn order_by(d: &dyn Dialect, key: &Key, descending: bool) -> String {
    let dir = if descending { " DESC" } else { "" };
    key.columns
        .iter()
        .map(|c| format!("{PROBE_ALIAS}.{}{dir}", d.quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_select_list(d: &dyn Dialect, key: &Key) -> String {
    key.columns
        .iter()
        .map(|c| d.key_text(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest key: where the job's key range ends.
pub fn max_key_sql(d: &dyn Dialect, table: &str, key: &Key) -> String {
    format!(
        "SELECT {} FROM {table} {PROBE_ALIAS} ORDER BY {}{}",
        key_select_list(d, key),
        order_by(d, key, true),
        d.rows_at_offset(1, 0)
    )
}

/// The key `rows` rows after `lo` (and not past `hi`): the upper bound of
/// the next chunk, found by the index, compared by the server. It reads one
/// row more, so the server also tells whether any row follows in the range.
pub fn boundary_probe_sql(
    d: &dyn Dialect,
    table: &str,
    key: &Key,
    has_lo: bool,
    rows: u64,
) -> String {
    format!(
        "SELECT {} FROM {table} {PROBE_ALIAS} WHERE {} ORDER BY {}{}",
        key_select_list(d, key),
        key_range(
            d,
            key,
            RangeShape {
                has_lo,
                has_hi: true
            }
        ),
        order_by(d, key, false),
        d.rows_at_offset(2, rows.saturating_sub(1))
    )
}

/// How a chunk's INSERT treats rows that may already be in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Insert every row; a row already present raises a unique violation
    /// on the key (the fast path while the target range is empty).
    Absent,
    /// Skip rows whose key is already in the target (anti-join).
    MaySkip,
}

/// The statement that copies one chunk. Never INSERT IGNORE or a blanket
/// ON CONFLICT DO NOTHING: a conflict on any other unique key must raise.
pub fn copy_chunk_sql(
    d: &dyn Dialect,
    copy: &CopyStatement,
    key: &Key,
    has_lo: bool,
    presence: Presence,
) -> String {
    let mut filter = vec![format!(
        "({})",
        key_range(
            d,
            key,
            RangeShape {
                has_lo,
                has_hi: true
            }
        )
    )];
    filter.extend(copy.where_sql.iter().map(|w| format!("({w})")));
    if presence == Presence::MaySkip {
        filter.push(d.absent_from_target(copy));
    }
    d.insert_select(copy, &filter.join(" AND "))
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::table::{Column, Key};

    pub fn column(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            data_type: ty.into(),
            nullable: false,
            generated: false,
            identity_always: false,
            has_default: false,
            domain_base: None,
            charset: None,
        }
    }

    pub fn key(cols: &[(&str, &str)]) -> Key {
        Key {
            columns: cols.iter().map(|(n, t)| column(n, t)).collect(),
        }
    }
}
