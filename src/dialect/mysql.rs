//! MySQL and MariaDB SQL. Keys travel as text (`CAST(col AS CHAR)`, `HEX()`
//! for binary) and come back through a cast chosen from the column's type;
//! parameters are named (`:p1`) so a bound can appear twice, as the
//! expanded composite comparison needs.

use super::sync::{SyncObject, SyncTriggers, trigger_delete, trigger_insert, trigger_row};
use super::types::{LengthUnit, TemporalKind, TypeShape, base_name, decimal_shape, first_modifier};
use super::{CopyStatement, Dialect, expanded_tuple_compare};
use crate::table::Column;

pub struct Mysql;

/// How a key column's type crosses as text.
enum KeyForm {
    /// Integers: exact through SIGNED/UNSIGNED (a bare string would be
    /// compared as a double and lose precision past 2^53).
    Integer { unsigned: bool },
    /// A cast with the column's own precision: DECIMAL(p,s), DATETIME(6)...
    Cast(String),
    /// Bytes: hex out, UNHEX in.
    Binary,
    /// ENUM and SET sort by their index, not their text: cross as the index.
    Ordinal,
    /// Floating point: MySQL prints it rounded, so no exact text exists.
    Inexact,
    /// Strings: the column's collation decides comparisons (a parameter's
    /// coercibility is weaker than a column's).
    Text,
}

fn key_form(column: &Column) -> KeyForm {
    let ty = column.data_type.to_ascii_lowercase();
    let base = ty.split(['(', ' ']).next().unwrap_or("");
    let modifiers = ty
        .find('(')
        .and_then(|i| ty[i..].find(')').map(|j| &ty[i..=i + j]));
    match base {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" | "bit" => {
            KeyForm::Integer {
                unsigned: ty.contains("unsigned") || base == "year" || base == "bit",
            }
        }
        "decimal" | "numeric" => KeyForm::Cast(format!("DECIMAL{}", modifiers.unwrap_or("(10,0)"))),
        "datetime" | "timestamp" => KeyForm::Cast(format!("DATETIME{}", modifiers.unwrap_or(""))),
        "time" => KeyForm::Cast(format!("TIME{}", modifiers.unwrap_or(""))),
        "date" => KeyForm::Cast("DATE".into()),
        "float" | "double" | "real" => KeyForm::Inexact,
        "enum" | "set" => KeyForm::Ordinal,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => KeyForm::Binary,
        _ => KeyForm::Text,
    }
}

impl Dialect for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn quote_ident(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn placeholder(&self, n: usize) -> String {
        format!(":p{n}")
    }

    fn key_param(&self, n: usize, column: &Column) -> String {
        let p = self.placeholder(n);
        match key_form(column) {
            KeyForm::Integer { unsigned: true } | KeyForm::Ordinal => {
                format!("CAST({p} AS UNSIGNED)")
            }
            KeyForm::Integer { unsigned: false } => format!("CAST({p} AS SIGNED)"),
            KeyForm::Cast(ty) => format!("CAST({p} AS {ty})"),
            KeyForm::Binary => format!("UNHEX({p})"),
            KeyForm::Text | KeyForm::Inexact => p,
        }
    }

    fn key_text(&self, column: &Column) -> String {
        let col = self.quote_ident(&column.name);
        match key_form(column) {
            KeyForm::Binary => format!("HEX({col})"),
            KeyForm::Ordinal => format!("CAST({col} + 0 AS CHAR)"),
            KeyForm::Integer { .. } if column.data_type.to_ascii_lowercase().starts_with("bit") => {
                format!("CAST({col} AS UNSIGNED)")
            }
            _ => format!("CAST({col} AS CHAR)"),
        }
    }

    fn key_text_as(&self, column: &Column, like: &Column) -> String {
        let col = self.quote_ident(&column.name);
        match key_form(like) {
            KeyForm::Integer { unsigned: true } => format!("CAST(CAST({col} AS UNSIGNED) AS CHAR)"),
            KeyForm::Integer { unsigned: false } => format!("CAST(CAST({col} AS SIGNED) AS CHAR)"),
            KeyForm::Cast(ty) => format!("CAST(CAST({col} AS {ty}) AS CHAR)"),
            KeyForm::Binary => format!("HEX({col})"),
            KeyForm::Ordinal | KeyForm::Inexact | KeyForm::Text => format!("CAST({col} AS CHAR)"),
        }
    }

    fn unusable_key_reason(&self, column: &Column) -> Option<&'static str> {
        matches!(key_form(column), KeyForm::Inexact).then_some(
            "MySQL prints floating-point values rounded, so a chunk bound would not be exact",
        )
    }

    fn type_shape(&self, data_type: &str) -> TypeShape {
        // COLUMN_TYPE spellings: `varchar(20)`, `int(10) unsigned`,
        // `decimal(10,2)`, `datetime(6)`. TEXT and BLOB types are limited
        // in bytes (a BLOB's characters are its bytes).
        let name = base_name(data_type);
        let mut words = name.split(' ');
        let base = words.next().unwrap_or("");
        let unsigned = words.any(|w| w == "unsigned");
        let bytes = |max: u64| TypeShape::Text {
            max,
            unit: LengthUnit::Bytes,
        };
        let temporal = |kind| TypeShape::Temporal {
            kind,
            fraction: first_modifier(data_type).unwrap_or(0),
        };
        match base {
            "varchar" | "char" => TypeShape::Text {
                max: first_modifier(data_type).unwrap_or(1).into(),
                unit: LengthUnit::Chars,
            },
            "tinytext" => bytes(255),
            "text" => bytes(65_535),
            "mediumtext" => bytes(16_777_215),
            "longtext" => bytes(4_294_967_295),
            "tinyblob" => bytes(255),
            "blob" => bytes(65_535),
            "mediumblob" => bytes(16_777_215),
            "longblob" => bytes(4_294_967_295),
            "decimal" | "numeric" | "dec" | "fixed" => decimal_shape(data_type, Some((10, 0))),
            "tinyint" => TypeShape::integer(8, unsigned),
            "smallint" => TypeShape::integer(16, unsigned),
            "mediumint" => TypeShape::integer(24, unsigned),
            "int" | "integer" => TypeShape::integer(32, unsigned),
            "bigint" => TypeShape::integer(64, unsigned),
            "float" => TypeShape::Float { bits: 24 },
            "double" | "real" => TypeShape::Float { bits: 53 },
            "datetime" => temporal(TemporalKind::Timestamp),
            "timestamp" => temporal(TemporalKind::TimestampTz),
            "time" => temporal(TemporalKind::Time),
            "date" => temporal(TemporalKind::Date),
            _ => TypeShape::Other,
        }
    }

    fn length_sql(&self, expr: &str, unit: LengthUnit) -> String {
        match unit {
            // Characters as text: a binary string (a BLOB) is counted in
            // characters, not bytes (a SELECT only warns about bytes that
            // are no UTF-8).
            LengthUnit::Chars => format!("CHAR_LENGTH(CONVERT({expr} USING utf8mb4))"),
            LengthUnit::Bytes => format!("LENGTH({expr})"),
        }
    }

    fn evaluated_once(
        &self,
        expr: &str,
        slot: usize,
        body: &dyn Fn(&str, &str) -> String,
    ) -> String {
        // A user variable of the session keeps the value from its first
        // use on, in the row (MySQL 8 deprecates assignments inside
        // expressions with a note-level warning; strict mode ignores it).
        let variable = format!("@rowferry_once_{slot}");
        body(&format!("({variable} := ({expr}))"), &variable)
    }

    fn longer_than_sql(&self, first: &str, again: &str, max: u64, charset: Option<&str>) -> String {
        // Bytes are never fewer than characters, and LENGTH is cheap:
        // most values are settled without converting them.
        format!(
            "(LENGTH({first}) > {max} AND {} > {max})",
            self.char_count_sql(again, false, charset)
        )
    }

    fn char_count_sql(&self, expr: &str, trimmed: bool, charset: Option<&str>) -> String {
        // Characters as a text of the column's character set: any type
        // converts, and a binary string (a varbinary column,
        // CAST(... AS BINARY), FROM_BASE64) is counted in characters as
        // the column reads its bytes (latin1 takes any byte; utf8mb4
        // refuses what is no UTF-8, as the column would).
        // A column of no character set (BLOB) counts bytes.
        let Some(charset) = charset
            .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            return if trimmed {
                format!("LENGTH(RTRIM({expr}))")
            } else {
                format!("LENGTH({expr})")
            };
        };
        let text = format!("CONVERT({expr} USING {charset})");
        if trimmed {
            format!("CHAR_LENGTH(RTRIM({text}))")
        } else {
            format!("CHAR_LENGTH({text})")
        }
    }

    fn failing_int_sql(&self, parts: &[String]) -> String {
        // A text that is no number only warns ("Truncated incorrect
        // INTEGER value"); the strict sql_mode of every rowferry session
        // makes that an error in an INSERT (MySQL 5.7+, MariaDB).
        format!("CAST(CONCAT({}) AS SIGNED)", parts.join(", "))
    }

    fn temporal_cast_sql(&self, expr: &str, data_type: &str) -> Option<String> {
        let TypeShape::Temporal { kind, fraction } = self.type_shape(data_type) else {
            return None;
        };
        Some(match kind {
            TemporalKind::Timestamp => format!("CAST({expr} AS DATETIME({fraction}))"),
            // TIMESTAMP holds 1970-01-01 00:00:01 .. 2038-01-19 03:14:07
            // (UTC, the session's zone) only: NULL outside.
            TemporalKind::TimestampTz => format!(
                "CASE WHEN {expr} >= '1970-01-01 00:00:01' AND {expr} < '2038-01-19 03:14:08' \
                 THEN CAST({expr} AS DATETIME({fraction})) END"
            ),
            TemporalKind::Time | TemporalKind::TimeTz => {
                format!("CAST({expr} AS TIME({fraction}))")
            }
            TemporalKind::Date => format!("CAST({expr} AS DATE)"),
        })
    }

    fn json_text_array(&self, items: &[String]) -> String {
        format!("CAST(JSON_ARRAY({}) AS CHAR)", items.join(", "))
    }

    fn tuple_compare(&self, lhs: &[String], op: &str, rhs: &[String]) -> String {
        expanded_tuple_compare(lhs, op, rhs)
    }

    fn rows_at_offset(&self, limit: u64, offset: u64) -> String {
        format!(" LIMIT {limit} OFFSET {offset}")
    }

    fn insert_select(&self, copy: &CopyStatement, filter: &str) -> String {
        // AUTO_INCREMENT columns take the source values as they are (the
        // session's sql_mode has NO_AUTO_VALUE_ON_ZERO, so even 0 is kept).
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {} WHERE {filter}{}",
            copy.target,
            copy.target_columns.join(", "),
            copy.source_exprs.join(", "),
            copy.source,
            if copy.lock_source_rows {
                " LOCK IN SHARE MODE"
            } else {
                ""
            },
        )
    }

    fn default_schema_sql(&self) -> &'static str {
        "SELECT DATABASE()"
    }

    fn find_table_sql(&self) -> &'static str {
        // information_schema compares names case-insensitively: prefer the
        // exact spelling, accept a unique case-insensitive match.
        "SELECT TABLE_SCHEMA, TABLE_NAME, \
                CASE TABLE_TYPE WHEN 'BASE TABLE' THEN 'table' WHEN 'VIEW' THEN 'view' \
                     WHEN 'SYSTEM VIEW' THEN 'system view' ELSE LOWER(TABLE_TYPE) END, \
                JSON_ARRAY(TABLE_SCHEMA, TABLE_NAME) \
         FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = :p1 AND TABLE_NAME = :p2 \
         ORDER BY BINARY TABLE_NAME = BINARY :p2 DESC, BINARY TABLE_SCHEMA = BINARY :p1 DESC"
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT COLUMN_NAME, COLUMN_TYPE, IF(IS_NULLABLE = 'YES', 'true', 'false'), \
                IF(COALESCE(GENERATION_EXPRESSION, '') <> '', 'true', 'false'), 'false', \
                IF(COLUMN_DEFAULT IS NOT NULL OR EXTRA LIKE '%auto_increment%' \
                   OR COALESCE(GENERATION_EXPRESSION, '') <> '', 'true', 'false'), \
                NULL, CHARACTER_SET_NAME \
         FROM information_schema.COLUMNS \
         WHERE BINARY TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
         ORDER BY ORDINAL_POSITION"
    }

    fn unique_indexes_sql(&self) -> &'static str {
        // Prefix indexes (SUB_PART) and functional ones (no COLUMN_NAME)
        // do not prove the full values unique.
        "SELECT INDEX_NAME, IF(INDEX_NAME = 'PRIMARY', 'true', 'false'), \
                CONCAT('[', GROUP_CONCAT(JSON_QUOTE(COLUMN_NAME) ORDER BY SEQ_IN_INDEX SEPARATOR ','), ']') \
         FROM information_schema.STATISTICS \
         WHERE BINARY TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
           AND NON_UNIQUE = 0 \
         GROUP BY INDEX_NAME \
         HAVING MAX(SUB_PART) IS NULL AND SUM(COLUMN_NAME IS NULL) = 0 \
         ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME"
    }

    fn estimate_sql(&self) -> &'static str {
        "SELECT CAST(COALESCE(TABLE_ROWS, 0) AS CHAR), CAST(GREATEST(COALESCE(AVG_ROW_LENGTH, 100), 1) AS CHAR) \
         FROM information_schema.TABLES \
         WHERE BINARY TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]'))"
    }

    fn state_table_ddl(&self, table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (job varchar(64) NOT NULL, chunk varchar(64) NOT NULL, \
             done_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (job, chunk)) ENGINE = InnoDB"
        )
    }

    fn table_definition_sql(&self, table: &str) -> Option<String> {
        Some(format!("SHOW CREATE TABLE {table}"))
    }

    fn set_not_null_steps(
        &self,
        table: &str,
        column: &str,
        _constraint: &str,
        definition: Option<&str>,
    ) -> Option<Vec<String>> {
        // MODIFY restates the column exactly as SHOW CREATE TABLE prints it,
        // NULL-ness aside; the server refuses (rather than copying the
        // table under a lock) if it cannot do it online.
        let prefix = format!("{} ", self.quote_ident(column));
        let line = definition?
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&prefix))?;
        let mut column_def = line.trim_end_matches(',').replacen(" DEFAULT NULL", "", 1);
        if let Some(at) = column_def.find(" NULL") {
            // An explicit NULL attribute (TIMESTAMP columns print one), not
            // the word inside a COMMENT or DEFAULT string.
            if !column_def[..at].ends_with(" NOT")
                && !column_def[..at].contains('\'')
                && column_def[at + 5..].chars().next().is_none_or(|c| c == ' ')
            {
                column_def.replace_range(at..at + 5, "");
            }
        }
        Some(vec![format!(
            "ALTER TABLE {table} MODIFY {column_def} NOT NULL, ALGORITHM=INPLACE, LOCK=NONE"
        )])
    }

    fn try_job_lock_sql(&self) -> &'static str {
        // GET_LOCK names are server-wide and at most 64 characters.
        "SELECT IF(GET_LOCK(CONCAT('rowferry:', SHA1(:p1)), 0) = 1, 'true', 'false')"
    }

    fn sync_objects(&self, s: &SyncTriggers) -> Vec<SyncObject> {
        // One trigger per event (MySQL has no multi-event triggers). The
        // upsert is ON DUPLICATE KEY UPDATE where the key is the target's
        // only unique index; with others it would fire on them too and
        // overwrite an unrelated row, so the key is deleted and inserted
        // instead (more gap locks: more deadlocks under REPEATABLE READ).
        let upsert = if s.other_unique_indexes {
            format!(
                "{};\n  {}",
                trigger_delete(s, "NEW"),
                trigger_insert(self, s, "NEW")
            )
        } else {
            let assignments = if s.update_columns.is_empty() {
                s.copy.key_match.iter().map(|(t, _)| t.clone()).collect()
            } else {
                s.update_columns.clone()
            };
            format!(
                "{} ON DUPLICATE KEY UPDATE {}",
                trigger_insert(self, s, "NEW"),
                assignments
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // With --where, a row that stops matching leaves the target.
        let write_new = match &s.copy.where_sql {
            Some(w) => format!(
                "IF EXISTS (SELECT 1 FROM {} WHERE ({w})) THEN\n    {upsert};\n  ELSE\n    {};\n  END IF",
                trigger_row(self, s, "NEW"),
                trigger_delete(s, "NEW")
            ),
            None => upsert,
        };
        let key_changed = s
            .copy
            .key_match
            .iter()
            .map(|(_, src)| format!("OLD.{src} <=> NEW.{src}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let events = [
            ("ins", "INSERT", vec![write_new.clone()]),
            (
                "upd",
                "UPDATE",
                vec![
                    format!(
                        "IF NOT ({key_changed}) THEN\n    {};\n  END IF",
                        trigger_delete(s, "OLD")
                    ),
                    write_new,
                ],
            ),
            ("del", "DELETE", vec![trigger_delete(s, "OLD")]),
        ];
        events
            .into_iter()
            .map(|(suffix, event, statements)| {
                let name = format!("{}_{suffix}", s.name);
                let body = format!("BEGIN\n  {};\nEND", statements.join(";\n  "));
                let head = |verb: &str| {
                    format!(
                        "{verb} TRIGGER {} AFTER {event} ON {} FOR EACH ROW {body}",
                        self.qualified(&s.source_schema, &name),
                        s.source
                    )
                };
                let (create, replace) = (head("CREATE"), head("CREATE OR REPLACE"));
                SyncObject {
                    kind: "trigger",
                    name,
                    create: vec![create],
                    // Atomic on MariaDB; MySQL 8 lacks it and says so.
                    replace: vec![replace],
                    body,
                }
            })
            .collect()
    }

    fn sync_catalog_sql(&self) -> &'static str {
        "SELECT 'trigger', TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS \
         WHERE BINARY TRIGGER_SCHEMA = BINARY :p1 AND BINARY EVENT_OBJECT_TABLE = BINARY :p2 \
           AND TRIGGER_NAME LIKE 'rowferry\\_sync\\_%' \
         ORDER BY TRIGGER_NAME"
    }

    fn sync_drop_sql(&self, _source: &str, source_schema: &str, name: &str) -> Vec<String> {
        ["ins", "upd", "del"]
            .iter()
            .map(|suffix| {
                format!(
                    "DROP TRIGGER IF EXISTS {}",
                    self.qualified(source_schema, &format!("{name}_{suffix}"))
                )
            })
            .collect()
    }

    fn transactional_ddl(&self) -> bool {
        false
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

    fn session_dependent(&self, source: &Column, target: &Column) -> Option<&'static str> {
        let timestamp = |c: &Column| c.data_type.to_ascii_lowercase().starts_with("timestamp");
        (timestamp(source) && !timestamp(target)).then_some(
            "MySQL turns a TIMESTAMP into a DATETIME in the session's time_zone: rows the \
             application writes from a session not in UTC reach the target shifted (the copy \
             itself runs in UTC). Run the application in UTC during the migration, or make the \
             target column TIMESTAMP",
        )
    }

    fn unique_index_count_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT CAST(COUNT(DISTINCT INDEX_NAME) AS CHAR) FROM information_schema.STATISTICS \
             WHERE BINARY TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
               AND BINARY TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
               AND NON_UNIQUE = 0",
        )
    }

    fn swap(&self) -> Option<&dyn super::SwapSql> {
        Some(self)
    }

    fn untriggered_writes_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE BINARY CONSTRAINT_SCHEMA = BINARY :p1 AND BINARY TABLE_NAME = BINARY :p2 \
               AND (DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
                    OR UPDATE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT')) \
             ORDER BY CONSTRAINT_NAME",
        )
    }

    fn canonical_value(&self, expr: &str, column: &Column, cast: bool) -> String {
        // Bytes as hex (a cast to CHAR could mangle them); everything
        // else as the server prints it, after the INSERT's conversion.
        let value = match (cast, key_form(column)) {
            (_, KeyForm::Binary) => return format!("HEX({expr})"),
            (true, KeyForm::Integer { unsigned: true }) => format!("CAST(({expr}) AS UNSIGNED)"),
            (true, KeyForm::Integer { unsigned: false }) => format!("CAST(({expr}) AS SIGNED)"),
            (true, KeyForm::Cast(ty)) => format!("CAST(({expr}) AS {ty})"),
            // FLOAT prints 6 digits; as DOUBLE, every bit shows.
            (_, KeyForm::Inexact) => format!("CAST(({expr}) AS DOUBLE)"),
            _ => expr.to_string(),
        };
        format!("CAST({value} AS CHAR)")
    }

    fn row_text(&self, values: &[String]) -> String {
        // Length-prefixed so that ('a,b', 'c') and ('a', 'b,c') differ;
        // NULL is `-`, which no prefixed value can be.
        let parts: Vec<String> = values
            .iter()
            .map(|v| format!("IFNULL(CONCAT(LENGTH({v}), ':', {v}), '-')"))
            .collect();
        format!("CONCAT_WS(',', {})", parts.join(", "))
    }

    fn text(&self, expr: &str) -> String {
        format!("CAST({expr} AS CHAR)")
    }

    fn hash_sum(&self, row_text: &str) -> String {
        // The first 64 bits of each row's MD5, summed exactly.
        format!(
            "CAST(COALESCE(SUM(CAST(CONV(LEFT(MD5({row_text}), 16), 16, 10) AS DECIMAL(20, 0))), 0) AS CHAR)"
        )
    }
}

impl super::SwapSql for Mysql {
    fn referencing_foreign_keys_sql(&self) -> &'static str {
        // Re-pointing is not offered here: the cutover only lists them.
        "SELECT CONSTRAINT_NAME, CONCAT('`', TABLE_NAME, '`'), '' \
         FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE BINARY UNIQUE_CONSTRAINT_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY REFERENCED_TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
         ORDER BY 2, 1"
    }

    fn dependent_views_sql(&self) -> &'static str {
        // MySQL views name their tables: after the swap they read the new one.
        "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE 1 = 0 AND :p1 = :p1"
    }

    fn column_sequences_sql(&self) -> &'static str {
        // The AUTO_INCREMENT counter stands for the sequence.
        "SELECT c.COLUMN_NAME, CAST(t.AUTO_INCREMENT AS CHAR) \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE BINARY c.TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY c.TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]')) \
           AND c.EXTRA LIKE '%auto_increment%' AND t.AUTO_INCREMENT IS NOT NULL"
    }

    fn table_comment_sql(&self) -> &'static str {
        "SELECT TABLE_COMMENT FROM information_schema.TABLES \
         WHERE BINARY TABLE_SCHEMA = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[0]')) \
           AND BINARY TABLE_NAME = BINARY JSON_UNQUOTE(JSON_EXTRACT(:p1, '$[1]'))"
    }

    fn lock_sql(&self, _tables: &[String]) -> Option<String> {
        // RENAME TABLE takes its own metadata locks, under lock_wait_timeout.
        None
    }

    fn renames_sql(&self, renames: &[(&str, &str)]) -> Vec<String> {
        // One statement: atomic, all or none, and no name is ever missing
        // for a query queued behind it. Names stay in the schema of the
        // tables (`schema`.`table`).
        let in_schema = |q: &str, name: &str| match q.rfind("`.`") {
            Some(at) => format!("{}.{}", &q[..=at], self.quote_ident(name)),
            None => self.quote_ident(name),
        };
        vec![format!(
            "RENAME TABLE {}",
            renames
                .iter()
                .map(|(table, to)| format!("{table} TO {}", in_schema(table, to)))
                .collect::<Vec<_>>()
                .join(", ")
        )]
    }

    fn renames_lock_in_name_order(&self) -> bool {
        true
    }

    fn create_like_sql(&self, table: &str, like: &str) -> String {
        format!("CREATE TABLE {table} LIKE {like}")
    }

    fn comment_sql(&self, table: &str, comment: Option<&str>) -> String {
        let text = comment.unwrap_or("");
        format!(
            "ALTER TABLE {table} COMMENT = '{}'",
            text.replace('\\', "\\\\").replace('\'', "''")
        )
    }

    fn advance_sequence_sql(
        &self,
        _sequence: &str,
        table: &str,
        _column: &str,
        old_sequence: Option<&str>,
    ) -> String {
        // InnoDB never sets the counter below the largest value + 1.
        let at = old_sequence
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1);
        format!("ALTER TABLE {table} AUTO_INCREMENT = {at}")
    }

    fn drop_constraint_sql(&self, table: &str, constraint: &str) -> String {
        format!(
            "ALTER TABLE {table} DROP FOREIGN KEY {}",
            self.quote_ident(constraint)
        )
    }

    fn add_constraint_not_valid_sql(
        &self,
        table: &str,
        constraint: &str,
        definition: &str,
    ) -> String {
        format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {definition}",
            self.quote_ident(constraint)
        )
    }

    fn validate_constraint_sql(&self, _table: &str, _constraint: &str) -> String {
        "DO 0".into()
    }

    fn shared_owned_sequences_sql(&self) -> &'static str {
        "SELECT NULL FROM DUAL WHERE 1 = 0 AND :p1 = :p1 AND :p2 = :p2"
    }

    fn disown_sequence_sql(&self, _sequence: &str) -> String {
        "DO 0".into()
    }

    fn drop_table_sql(&self, table: &str) -> String {
        format!("DROP TABLE {table}")
    }
}

/// One column of a `LOAD DATA`: its quoted name, and the SQL that turns
/// its field into the value, written over `:pN` as the INSERT path
/// writes it (`WireSql::wire_in`), or just `:pN` when the field is
/// assigned as it is.
pub struct LoadColumn {
    pub name: String,
    pub value_sql: String,
    pub n: usize,
}

/// The file name a `LOAD DATA LOCAL` asks the client for; the client
/// answers with the chunk from memory, whatever the name.
pub const LOAD_DATA_FILE: &str = "rowferry-chunk";

impl Mysql {
    /// `LOAD DATA LOCAL INFILE` into `table` (quoted) of rows in the form
    /// `load_data_field` writes: utf8mb4 text, a tab between fields, a
    /// newline after each row, backslash escapes and `\N` for NULL, and no
    /// enclosing quotes (so the word NULL stays text). A field whose value
    /// needs SQL (hex bytes through UNHEX) goes through a user variable
    /// and a SET, as the INSERT writes it. The session's sql_mode must not
    /// hold NO_BACKSLASH_ESCAPES (rowferry's sessions set their own).
    pub fn load_data_local(&self, table: &str, columns: &[LoadColumn]) -> String {
        let mut fields = Vec::with_capacity(columns.len());
        let mut sets = Vec::new();
        for c in columns {
            let placeholder = format!(":p{}", c.n);
            if c.value_sql == placeholder {
                fields.push(c.name.clone());
            } else {
                let var = format!("@rf{}", c.n);
                // wire_in writes exactly one placeholder per value.
                sets.push(format!(
                    "{} = {}",
                    c.name,
                    c.value_sql.replace(&placeholder, &var)
                ));
                fields.push(var);
            }
        }
        let mut sql = format!(
            "LOAD DATA LOCAL INFILE '{LOAD_DATA_FILE}' INTO TABLE {table} CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
             LINES STARTING BY '' TERMINATED BY '\\n' ({})",
            fields.join(", ")
        );
        if !sets.is_empty() {
            sql.push_str(&format!(" SET {}", sets.join(", ")));
        }
        sql
    }
}

/// One field as LOAD DATA reads it (`FIELDS ESCAPED BY '\\'`): the text
/// form PostgreSQL's COPY reads too.
pub use super::wire::tab_separated_field as load_data_field;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::test_support::key;
    use crate::dialect::{
        Presence, RangeShape, boundary_probe_sql, copy_chunk_sql, key_range, length_guard_sql,
        max_key_sql,
    };

    #[test]
    fn not_null_restates_the_column_from_show_create_table() {
        let def = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `flag` tinyint(1) DEFAULT NULL COMMENT 'a NULL, b',\n  \
                   `ts` timestamp NULL DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        assert_eq!(
            Mysql.set_not_null_steps("`d`.`t`", "flag", "x", Some(def)),
            Some(vec![
                "ALTER TABLE `d`.`t` MODIFY `flag` tinyint(1) COMMENT 'a NULL, b' NOT NULL, ALGORITHM=INPLACE, LOCK=NONE".to_string()
            ])
        );
        assert_eq!(
            Mysql.set_not_null_steps("`d`.`t`", "ts", "x", Some(def)),
            Some(vec![
                "ALTER TABLE `d`.`t` MODIFY `ts` timestamp NOT NULL, ALGORITHM=INPLACE, LOCK=NONE"
                    .to_string()
            ])
        );
        assert_eq!(
            Mysql.set_not_null_steps("`d`.`t`", "nope", "x", Some(def)),
            None
        );
    }

    #[test]
    fn load_data_names_plain_fields_and_sets_the_converted_ones() {
        let col = |name: &str, n: usize, value_sql: &str| LoadColumn {
            name: Mysql.quote_ident(name),
            value_sql: value_sql.into(),
            n,
        };
        let sql = Mysql.load_data_local(
            "`d`.`t`",
            &[
                col("id", 1, ":p1"),
                col("b`x", 2, "UNHEX(:p2)"),
                col("v", 3, ":p3"),
                col("g", 12, "UNHEX(:p12)"),
            ],
        );
        assert_eq!(
            sql,
            "LOAD DATA LOCAL INFILE 'rowferry-chunk' INTO TABLE `d`.`t` CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
             LINES STARTING BY '' TERMINATED BY '\\n' (`id`, @rf2, `v`, @rf12) \
             SET `b``x` = UNHEX(@rf2), `g` = UNHEX(@rf12)"
        );
        let plain = Mysql.load_data_local("`t`", &[col("id", 1, ":p1")]);
        assert!(plain.ends_with("(`id`)"), "{plain}");
    }

    #[test]
    fn load_data_fields_escape_what_load_data_reads_as_syntax() {
        let mut out = Vec::new();
        for value in [
            Some("a\tb\nc\rd\\e\0f"),
            None,
            Some(""),
            Some("NULL"),
            Some("\\N"),
            Some("Grüße 🚚"),
        ] {
            load_data_field(value, &mut out);
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\nc\\rd\\\\e\\0f|\\N||NULL|\\\\N|Grüße 🚚|"
        );
    }

    #[test]
    fn quotes_with_backticks() {
        assert_eq!(
            Mysql.quote_ident("a`b; DROP TABLE x;--"),
            "`a``b; DROP TABLE x;--`"
        );
        assert_eq!(Mysql.qualified("my db", "T.1"), "`my db`.`T.1`");
    }

    #[test]
    fn key_types_cross_exactly() {
        let k = key(&[
            ("i", "bigint(20) unsigned"),
            ("d", "decimal(30,10)"),
            ("t", "datetime(6)"),
            ("u", "binary(16)"),
            ("s", "varchar(20)"),
            ("n", "int(11)"),
        ]);
        let params: Vec<String> = k
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Mysql.key_param(i + 1, c))
            .collect();
        assert_eq!(
            params,
            vec![
                "CAST(:p1 AS UNSIGNED)",
                "CAST(:p2 AS DECIMAL(30,10))",
                "CAST(:p3 AS DATETIME(6))",
                "UNHEX(:p4)",
                ":p5",
                "CAST(:p6 AS SIGNED)"
            ]
        );
        assert_eq!(Mysql.key_text(&k.columns[3]), "HEX(`u`)");
        let status = key(&[("status", "enum('new','paid')")]);
        assert_eq!(
            Mysql.key_text(&status.columns[0]),
            "CAST(`status` + 0 AS CHAR)"
        );
        assert_eq!(
            Mysql.key_param(1, &status.columns[0]),
            "CAST(:p1 AS UNSIGNED)"
        );
        assert!(
            Mysql
                .unusable_key_reason(&key(&[("f", "double")]).columns[0])
                .is_some()
        );
        assert!(Mysql.unusable_key_reason(&k.columns[1]).is_none());
        assert_eq!(Mysql.key_text(&k.columns[0]), "CAST(`i` AS CHAR)");
    }

    #[test]
    fn composite_ranges_are_expanded() {
        let k = key(&[("tenant", "int(11)"), ("name", "varchar(10)")]);
        assert_eq!(
            key_range(
                &Mysql,
                &k,
                RangeShape {
                    has_lo: true,
                    has_hi: true
                }
            ),
            "(`tenant` > CAST(:p1 AS SIGNED) OR (`tenant` = CAST(:p1 AS SIGNED) AND `name` > :p2)) AND \
             (`tenant` < CAST(:p3 AS SIGNED) OR (`tenant` = CAST(:p3 AS SIGNED) AND `name` <= :p4))"
        );
        let three = ["a", "b", "c"].map(String::from);
        assert_eq!(
            crate::dialect::expanded_tuple_compare(
                &three,
                ">=",
                &["x", "y", "z"].map(String::from)
            ),
            "(a > x OR (a = x AND (b > y OR (b = y AND c >= z))))"
        );
    }

    #[test]
    fn probes_and_copy() {
        let k = key(&[("id", "bigint(20)")]);
        assert_eq!(
            max_key_sql(&Mysql, "`d`.`t`", &k),
            "SELECT CAST(`id` AS CHAR) FROM `d`.`t` rowferry_t ORDER BY rowferry_t.`id` DESC LIMIT 1 OFFSET 0"
        );
        assert_eq!(
            boundary_probe_sql(&Mysql, "`d`.`t`", &k, true, 500),
            "SELECT CAST(`id` AS CHAR) FROM `d`.`t` rowferry_t WHERE `id` > CAST(:p1 AS SIGNED) AND `id` <= CAST(:p2 AS SIGNED) ORDER BY rowferry_t.`id` LIMIT 2 OFFSET 499"
        );
        let copy = CopyStatement {
            source: "`d`.`src`".into(),
            target: "`d`.`dst`".into(),
            target_columns: vec!["`id`".into(), "`v`".into()],
            source_exprs: vec!["`id`".into(), "UPPER(v)".into()],
            key_match: vec![("`id`".into(), "`id`".into())],
            where_sql: Some("v <> ''".into()),
            overriding_identity: false,
            lock_source_rows: true,
            skip_key_conflicts: false,
        };
        assert_eq!(
            copy_chunk_sql(&Mysql, &copy, &k, true, Presence::MaySkip),
            "INSERT INTO `d`.`dst` (`id`, `v`) SELECT `id`, UPPER(v) FROM `d`.`src` WHERE (`id` > CAST(:p1 AS SIGNED) AND `id` <= CAST(:p2 AS SIGNED)) AND (v <> '') AND NOT EXISTS (SELECT 1 FROM `d`.`dst` rowferry_dst WHERE rowferry_dst.`id` = `d`.`src`.`id`) LOCK IN SHARE MODE"
        );
    }

    #[test]
    fn a_length_guard_fails_the_chunk_on_a_longer_value() {
        let k = key(&[("id", "bigint(20)")]);
        assert_eq!(
            length_guard_sql(&Mysql, "`v`", false, 5, 0, &k, Some("utf8mb4")),
            "CASE WHEN (CASE WHEN (LENGTH(`v`) > 5 AND CHAR_LENGTH(CONVERT(`v` USING utf8mb4)) > 5) THEN CAST(CONCAT('rowferry_too_long:0:', CHAR_LENGTH(CONVERT(`v` USING utf8mb4)), ':', CHAR_LENGTH(RTRIM(CONVERT(`v` USING utf8mb4))), ':', CAST(JSON_ARRAY(CAST(`id` AS CHAR)) AS CHAR)) AS SIGNED) ELSE 0 END) <> 0 THEN NULL ELSE `v` END"
        );
        // Keys as the planner reads them back (binary as hex).
        let k = key(&[("tenant", "int(11)"), ("h", "varbinary(16)")]);
        // A --map expression: evaluated once, into a variable of the
        // guard's own.
        let guard = length_guard_sql(&Mysql, "UPPER(v)", true, 20, 2, &k, Some("latin1"));
        assert_eq!(
            guard,
            "CASE WHEN (CASE WHEN (LENGTH((@rowferry_once_2 := (UPPER(v)))) > 20 AND CHAR_LENGTH(CONVERT(@rowferry_once_2 USING latin1)) > 20) THEN CAST(CONCAT('rowferry_too_long:2:', CHAR_LENGTH(CONVERT(@rowferry_once_2 USING latin1)), ':', CHAR_LENGTH(RTRIM(CONVERT(@rowferry_once_2 USING latin1))), ':', CAST(JSON_ARRAY(CAST(`tenant` AS CHAR), HEX(`h`)) AS CHAR)) AS SIGNED) ELSE 0 END) <> 0 THEN NULL ELSE @rowferry_once_2 END"
        );
        assert_eq!(guard.matches("UPPER(v)").count(), 1, "{guard}");
    }
}
