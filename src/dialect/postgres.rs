//! PostgreSQL SQL. Keys travel as text (`col::text`) and come back through
//! `$n::text::type`, which round-trips every key type exactly under the
//! session settings the driver pins (UTC, ISO dates, extra_float_digits=3).

use super::sync::{
    SyncObject, SyncTriggers, record_key, trigger_delete, trigger_insert, trigger_row,
};
use super::types::{LengthUnit, TemporalKind, TypeShape, base_name, decimal_shape, first_modifier};
use super::{CopyStatement, Dialect, target_lookup};
use crate::table::Column;

pub struct Postgres;

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn quote_ident(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    fn key_param(&self, n: usize, column: &Column) -> String {
        // Parameters are declared text; the cast back gives the column's
        // type, and comparisons take the column's collation (implicit
        // beats default), so ordering is the index's own.
        format!("${n}::text::{}", column.data_type)
    }

    fn key_text(&self, column: &Column) -> String {
        format!("{}::text", self.quote_ident(&column.name))
    }

    fn key_text_as(&self, column: &Column, like: &Column) -> String {
        format!(
            "(CAST({} AS {}))::text",
            self.quote_ident(&column.name),
            like.data_type
        )
    }

    fn rows_at_offset(&self, limit: u64, offset: u64) -> String {
        format!(" LIMIT {limit} OFFSET {offset}")
    }

    fn insert_select(&self, copy: &CopyStatement, filter: &str) -> String {
        let overriding = if copy.overriding_identity {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let share = if copy.lock_source_rows {
            " FOR SHARE"
        } else {
            ""
        };
        let on_conflict = if copy.skip_key_conflicts {
            let key: Vec<&str> = copy.key_match.iter().map(|(t, _)| t.as_str()).collect();
            format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
        } else {
            String::new()
        };
        format!(
            "INSERT INTO {} ({}){overriding} SELECT {} FROM {} WHERE {filter}{share}{on_conflict}",
            copy.target,
            copy.target_columns.join(", "),
            copy.source_exprs.join(", "),
            copy.source,
        )
    }

    fn absent_from_target(&self, copy: &CopyStatement) -> String {
        // OFFSET 0 keeps the sublink a per-row index probe. Pulled up into
        // an anti-join, the planner (with stale statistics on a target that
        // is filling up) picks a hash join over a full scan of the target:
        // every chunk would then read the whole table.
        format!("NOT EXISTS ({} OFFSET 0)", target_lookup(copy))
    }

    fn default_schema_sql(&self) -> &'static str {
        "SELECT current_schema()::text"
    }

    fn find_table_sql(&self) -> &'static str {
        "SELECT n.nspname::text, c.relname::text, \
                CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' \
                     WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
                     WHEN 'f' THEN 'foreign table' ELSE 'relation' END, \
                c.oid::text \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    }

    fn columns_sql(&self) -> &'static str {
        // The 7th column: a domain's base type, through nested domains
        // (the innermost domain's typtypmod is its base type's modifier).
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), (NOT a.attnotnull)::text, \
                (a.attgenerated <> '')::text, (a.attidentity = 'a')::text, \
                (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '')::text, \
                (WITH RECURSIVE base(oid, typmod, depth) AS ( \
                     SELECT t.typbasetype, t.typtypmod, 1 FROM pg_catalog.pg_type t \
                     WHERE t.oid = a.atttypid AND t.typtype = 'd' \
                     UNION ALL \
                     SELECT t.typbasetype, t.typtypmod, base.depth + 1 \
                     FROM base JOIN pg_catalog.pg_type t ON t.oid = base.oid \
                     WHERE t.typtype = 'd') \
                 SELECT format_type(oid, typmod) FROM base ORDER BY depth DESC LIMIT 1) \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = $1::text::oid AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum"
    }

    fn type_shape(&self, data_type: &str) -> TypeShape {
        // format_type() spellings: `character varying(20)`,
        // `timestamp(3) without time zone`, `numeric(10,2)`.
        let fraction = first_modifier(data_type);
        let temporal = |kind| TypeShape::Temporal {
            kind,
            fraction: fraction.unwrap_or(6),
        };
        match base_name(data_type).as_str() {
            "text" => TypeShape::UnboundedText,
            "character varying" => match first_modifier(data_type) {
                Some(n) => TypeShape::Text {
                    max: n.into(),
                    unit: LengthUnit::Chars,
                },
                None => TypeShape::UnboundedText,
            },
            "character" => TypeShape::Text {
                max: first_modifier(data_type).unwrap_or(1).into(),
                unit: LengthUnit::Chars,
            },
            "numeric" => decimal_shape(data_type, None),
            "smallint" => TypeShape::integer(16, false),
            "integer" => TypeShape::integer(32, false),
            "bigint" => TypeShape::integer(64, false),
            "real" => TypeShape::Float { bits: 24 },
            "double precision" => TypeShape::Float { bits: 53 },
            "timestamp without time zone" => temporal(TemporalKind::Timestamp),
            "timestamp with time zone" => temporal(TemporalKind::TimestampTz),
            "time without time zone" => temporal(TemporalKind::Time),
            "time with time zone" => temporal(TemporalKind::TimeTz),
            "date" => TypeShape::Temporal {
                kind: TemporalKind::Date,
                fraction: 0,
            },
            _ => TypeShape::Other,
        }
    }

    fn length_sql(&self, expr: &str, unit: LengthUnit) -> String {
        match unit {
            LengthUnit::Chars => format!("char_length({expr})"),
            LengthUnit::Bytes => format!("octet_length({expr})"),
        }
    }

    fn evaluated_once(
        &self,
        expr: &str,
        slot: usize,
        body: &dyn Fn(&str, &str) -> String,
    ) -> String {
        // A subquery the planner cannot flatten (OFFSET 0) computes it
        // once. It runs again for each row because `body` names the row's
        // key (the guard's message quotes it): a correlated subquery.
        // VALUES refuses a window or set-returning function, which a
        // subquery of its own would compute over this one row. The names
        // are the slot's own, so that no source column is taken for them.
        let (alias, column) = (
            format!("rowferry_once_{slot}"),
            format!("rowferry_value_{slot}"),
        );
        let value = format!("{alias}.{column}");
        format!(
            "(SELECT {} FROM (SELECT * FROM (VALUES ({expr})) AS rowferry_values_{slot}({column}) \
             OFFSET 0) AS {alias})",
            body(&value, &value)
        )
    }

    fn char_count_sql(&self, expr: &str, trimmed: bool, _charset: Option<&str>) -> String {
        // A varchar(n) column takes any type's text (json, a number, a
        // character(n) value without its padding): count that.
        if trimmed {
            format!("char_length(rtrim(CAST({expr} AS text)))")
        } else {
            format!("char_length(CAST({expr} AS text))")
        }
    }

    fn temporal_cast_sql(&self, expr: &str, data_type: &str) -> Option<String> {
        // The catalog's own spelling is a valid type name.
        Some(format!("CAST({expr} AS {data_type})"))
    }

    fn float_as_decimal_sql(&self, expr: &str) -> String {
        // round(double precision, int) does not exist; the INSERT converts
        // through numeric too.
        format!("CAST({expr} AS numeric)")
    }

    fn json_text_array(&self, items: &[String]) -> String {
        format!("json_build_array({})::text", items.join(", "))
    }

    fn unique_indexes_sql(&self) -> &'static str {
        // Only indexes that can arbitrate ON CONFLICT and prove uniqueness:
        // valid, immediate, not partial, plain columns.
        "SELECT ic.relname::text, i.indisprimary::text, \
                (SELECT json_agg(a.attname ORDER BY k.ord) \
                 FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE k.ord <= i.indnkeyatts)::text \
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
         WHERE i.indrelid = $1::text::oid AND i.indisunique AND i.indisvalid AND i.indimmediate \
           AND i.indpred IS NULL AND NOT (0 = ANY (i.indkey::int2[])) \
         ORDER BY NOT i.indisprimary, ic.relname"
    }

    fn estimate_sql(&self) -> &'static str {
        // reltuples is -1 before the first ANALYZE/VACUUM: fall back to the
        // table's size at an assumed 100 bytes a row.
        "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint \
                     ELSE pg_relation_size(c.oid) / 100 END::text, \
                CASE WHEN c.reltuples > 0 \
                     THEN greatest(1, (pg_relation_size(c.oid) / c.reltuples)::bigint) \
                     ELSE 100 END::text \
         FROM pg_catalog.pg_class c WHERE c.oid = $1::text::oid"
    }

    fn state_table_ddl(&self, table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (job text NOT NULL, chunk text NOT NULL, \
             done_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, chunk))"
        )
    }

    fn no_statement_timeout(&self) -> Option<&'static str> {
        Some("SET LOCAL statement_timeout = 0")
    }

    fn undo_not_null(&self, table: &str, constraint: &str) -> Option<String> {
        Some(format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
            self.quote_ident(constraint)
        ))
    }

    fn set_not_null_steps(
        &self,
        table: &str,
        column: &str,
        constraint: &str,
        _definition: Option<&str>,
    ) -> Option<Vec<String>> {
        // A NOT VALID check takes a brief lock; VALIDATE scans without
        // blocking writers; SET NOT NULL then trusts the validated check
        // instead of scanning under an exclusive lock (PostgreSQL 12+).
        let (c, k) = (self.quote_ident(column), self.quote_ident(constraint));
        Some(vec![
            format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {k}"),
            format!("ALTER TABLE {table} ADD CONSTRAINT {k} CHECK ({c} IS NOT NULL) NOT VALID"),
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {k}"),
            format!("ALTER TABLE {table} ALTER COLUMN {c} SET NOT NULL"),
            format!("ALTER TABLE {table} DROP CONSTRAINT {k}"),
        ])
    }

    fn try_job_lock_sql(&self) -> &'static str {
        // A 64-bit advisory lock key derived from the job's name, in SQL.
        "SELECT pg_try_advisory_lock(('x' || left(md5($1), 16))::bit(64)::bigint)::text"
    }

    fn sync_objects(&self, s: &SyncTriggers) -> Vec<SyncObject> {
        let function = self.qualified(&s.source_schema, &s.name);
        let trigger = self.quote_ident(&s.name);
        let body = sync_function_body(self, s);
        let quote = dollar_quote(&body);
        // SECURITY DEFINER: the application's role writes the source, the
        // installer's role writes the target. The search_path is the
        // installing session's, under which --map and --where were checked;
        // the other settings are the ones the copy's sessions pin, so a
        // mirrored value converts exactly as a copied one, whatever the
        // application's session says.
        let create_function = format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
             SECURITY DEFINER SET search_path FROM CURRENT SET TimeZone = 'UTC' \
             SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 \
             AS {quote}{body}{quote}"
        );
        let create_trigger = format!(
            "CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW \
             EXECUTE FUNCTION {function}()",
            s.source
        );
        vec![
            SyncObject {
                kind: "function",
                name: s.name.clone(),
                body,
                create: vec![create_function.clone()],
                replace: vec![create_function],
            },
            SyncObject {
                kind: "trigger",
                name: s.name.clone(),
                // The catalog shows which function an enabled trigger calls.
                body: s.name.clone(),
                create: vec![create_trigger.clone()],
                replace: vec![
                    format!("DROP TRIGGER IF EXISTS {trigger} ON {}", s.source),
                    create_trigger,
                ],
            },
        ]
    }

    fn sync_catalog_sql(&self) -> &'static str {
        "SELECT 'function', p.proname::text, p.prosrc \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = $1 AND p.proname = $3 \
         UNION ALL \
         SELECT 'trigger', t.tgname::text, \
                CASE WHEN t.tgenabled = 'D' THEN 'disabled' ELSE p.proname::text END \
         FROM pg_catalog.pg_trigger t \
         JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
         WHERE n.nspname = $1 AND c.relname = $2 AND NOT t.tgisinternal \
           AND t.tgname LIKE 'rowferry\\_sync\\_%' \
         ORDER BY 1, 2"
    }

    fn sync_drop_sql(&self, source: &str, source_schema: &str, name: &str) -> Vec<String> {
        vec![
            format!(
                "DROP TRIGGER IF EXISTS {} ON {source}",
                self.quote_ident(name)
            ),
            format!(
                "DROP FUNCTION IF EXISTS {}()",
                self.qualified(source_schema, name)
            ),
        ]
    }

    fn transactional_ddl(&self) -> bool {
        true
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

    fn swap(&self) -> Option<&dyn super::SwapSql> {
        Some(self)
    }

    fn typed_null(&self, data_type: &str) -> String {
        format!("CAST(NULL AS {data_type})")
    }

    fn canonical_value(&self, expr: &str, column: &Column, cast: bool) -> String {
        // ROW(...)::text prints every value with its type's output
        // function, under the session's pinned UTC/ISO/float settings.
        // Casts follow what the INSERT's assignment does, except that an
        // explicit cast to a length silently cuts text the INSERT would
        // refuse: a value too long for the target must compare different.
        let ty = column.data_type.as_str();
        if ty.starts_with("character(") || ty == "character" {
            // char(n) pads; compared without its trailing spaces, as PostgreSQL does.
            format!("rtrim(CAST(({expr}) AS text), ' ')")
        } else if !cast {
            expr.to_string()
        } else if ty.starts_with("character varying") || ty.starts_with("bit varying") {
            format!("CAST(({expr}) AS text)")
        } else {
            format!("CAST(({expr}) AS {ty})")
        }
    }

    fn row_text(&self, values: &[String]) -> String {
        // ROW(NULL)::text is `()`, ROW('')::text is `("")`.
        format!("ROW({})::text", values.join(", "))
    }

    fn text(&self, expr: &str) -> String {
        format!("({expr})::text")
    }

    fn hash_sum(&self, row_text: &str) -> String {
        "coalesce(sum(hashtextextended(ROW_TEXT, 0)::numeric), 0)::text"
            .replace("ROW_TEXT", row_text)
    }
}

impl super::SwapSql for Postgres {
    fn referencing_foreign_keys_sql(&self) -> &'static str {
        "SELECT c.conname::text, c.conrelid::regclass::text, pg_get_constraintdef(c.oid) \
         FROM pg_catalog.pg_constraint c \
         WHERE c.confrelid = $1::text::oid AND c.contype = 'f' AND c.conrelid <> c.confrelid \
         ORDER BY 2, 1"
    }

    fn dependent_views_sql(&self) -> &'static str {
        "SELECT DISTINCT v.oid::regclass::text FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
         JOIN pg_catalog.pg_class v ON v.oid = r.ev_class \
         WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refobjid = $1::text::oid \
           AND v.oid <> $1::text::oid \
         ORDER BY 1"
    }

    fn column_sequences_sql(&self) -> &'static str {
        // Every sequence a column default calls (owned or not), and the
        // sequences behind identity columns.
        "SELECT a.attname::text, s.oid::regclass::text \
         FROM pg_catalog.pg_attrdef ad \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass \
              AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass \
         JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' \
         WHERE ad.adrelid = $1::text::oid AND NOT a.attisdropped \
         UNION \
         SELECT a.attname::text, pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = $1::text::oid AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attidentity <> ''"
    }

    fn table_comment_sql(&self) -> &'static str {
        "SELECT obj_description($1::text::oid, 'pg_class')"
    }

    fn lock_sql(&self, tables: &[String]) -> Option<String> {
        Some(format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            tables.join(", ")
        ))
    }

    fn renames_sql(&self, renames: &[(&str, &str)]) -> Vec<String> {
        // In the swap's transaction: nobody sees one without the other.
        renames
            .iter()
            .map(|(table, to)| format!("ALTER TABLE {table} RENAME TO {}", self.quote_ident(to)))
            .collect()
    }

    fn renames_lock_in_name_order(&self) -> bool {
        // LOCK TABLE takes both first, in the swap's transaction.
        false
    }

    fn create_like_sql(&self, table: &str, like: &str) -> String {
        format!("CREATE TABLE {table} (LIKE {like} INCLUDING ALL)")
    }

    fn comment_sql(&self, table: &str, comment: Option<&str>) -> String {
        match comment {
            Some(c) => format!("COMMENT ON TABLE {table} IS {}", quote_literal(c)),
            None => format!("COMMENT ON TABLE {table} IS NULL"),
        }
    }

    fn advance_sequence_sql(
        &self,
        sequence: &str,
        table: &str,
        column: &str,
        old_sequence: Option<&str>,
    ) -> String {
        let old = old_sequence
            .map(|s| format!("(SELECT last_value FROM {s})"))
            .unwrap_or_else(|| "1".into());
        format!(
            "SELECT setval({}, greatest(coalesce((SELECT max({}) FROM {table}), 1), {old}, 1))",
            quote_literal(sequence),
            self.quote_ident(column)
        )
    }

    fn drop_constraint_sql(&self, table: &str, constraint: &str) -> String {
        format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
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
            "ALTER TABLE {table} ADD CONSTRAINT {} {definition} NOT VALID",
            self.quote_ident(constraint)
        )
    }

    fn validate_constraint_sql(&self, table: &str, constraint: &str) -> String {
        format!(
            "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
            self.quote_ident(constraint)
        )
    }

    fn shared_owned_sequences_sql(&self) -> &'static str {
        // Sequences owned by the table's columns (dependency type 'a')
        // that a column default of another table uses.
        "SELECT DISTINCT s.oid::regclass::text FROM pg_catalog.pg_class t \
         JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_catalog.pg_depend own ON own.refobjid = t.oid AND own.deptype = 'a' \
              AND own.classid = 'pg_catalog.pg_class'::regclass \
         JOIN pg_catalog.pg_class s ON s.oid = own.objid AND s.relkind = 'S' \
         JOIN pg_catalog.pg_depend used ON used.refobjid = s.oid \
              AND used.classid = 'pg_catalog.pg_attrdef'::regclass \
         JOIN pg_catalog.pg_attrdef ad ON ad.oid = used.objid AND ad.adrelid <> t.oid \
         WHERE n.nspname = $1 AND t.relname = $2"
    }

    fn disown_sequence_sql(&self, sequence: &str) -> String {
        format!("ALTER SEQUENCE {sequence} OWNED BY NONE")
    }

    fn drop_table_sql(&self, table: &str) -> String {
        format!("DROP TABLE {table}")
    }
}

/// A string literal: quotes doubled, backslashes literal
/// (standard_conforming_strings is on since PostgreSQL 9.1).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A dollar quote that does not occur in `body` (column names and --map
/// expressions are free to contain anything).
fn dollar_quote(body: &str) -> String {
    (0..)
        .map(|n| match n {
            0 => "$rowferry_sync$".to_string(),
            n => format!("$rowferry_sync_{n}$"),
        })
        .find(|q| !body.contains(q.as_str()))
        .unwrap_or_default()
}

/// One function for all three events. An UPDATE that keeps the key is an
/// upsert; one that changes it deletes the old key first. With `--where`,
/// a row that stops matching leaves the target.
fn sync_function_body(d: &Postgres, s: &SyncTriggers) -> String {
    let target_key = s
        .copy
        .key_match
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let on_conflict = if s.update_columns.is_empty() {
        format!("ON CONFLICT ({target_key}) DO NOTHING")
    } else {
        format!(
            "ON CONFLICT ({target_key}) DO UPDATE SET {}",
            s.update_columns
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let upsert = format!("{} {on_conflict};", trigger_insert(d, s, "NEW"));
    let write_new = match &s.copy.where_sql {
        Some(w) => format!(
            "IF EXISTS (SELECT 1 FROM {} WHERE ({w})) THEN\n      {upsert}\n    ELSE\n      \
             {};\n    END IF;",
            trigger_row(d, s, "NEW"),
            trigger_delete(s, "NEW")
        ),
        None => upsert,
    };
    // Under REPEATABLE READ or SERIALIZABLE the DELETE below cannot see a
    // row that the copy committed after the application's snapshot, and
    // would leave it behind. An insert of the same key can: it raises a
    // serialization failure, which such applications retry.
    let see_committed = format!(
        "IF current_setting('transaction_isolation') <> 'read committed' THEN\n      \
         {} ON CONFLICT ({target_key}) DO NOTHING;\n    END IF;",
        trigger_insert(d, s, "OLD")
    );
    format!(
        "\nBEGIN\n  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND ROW({old}) IS DISTINCT FROM ROW({new})) THEN\n    \
         {see_committed}\n    {delete};\n  END IF;\n  IF TG_OP <> 'DELETE' THEN\n    {write_new}\n  END IF;\n  \
         RETURN NULL;\nEND\n",
        old = record_key(s, "OLD"),
        new = record_key(s, "NEW"),
        delete = trigger_delete(s, "OLD"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::test_support::key;
    use crate::dialect::{
        Presence, RangeShape, boundary_probe_sql, copy_chunk_sql, key_range, length_guard_sql,
        max_key_sql,
    };

    #[test]
    fn quotes_hostile_identifiers() {
        let d = Postgres;
        assert_eq!(d.quote_ident("id"), r#""id""#);
        assert_eq!(
            d.quote_ident(r#"we"ird; DROP TABLE x;--"#),
            r#""we""ird; DROP TABLE x;--""#
        );
        assert_eq!(d.qualified("My Schema", "T.1"), r#""My Schema"."T.1""#);
    }

    #[test]
    fn single_column_range() {
        let k = key(&[("id", "bigint")]);
        assert_eq!(
            key_range(
                &Postgres,
                &k,
                RangeShape {
                    has_lo: true,
                    has_hi: true
                }
            ),
            r#""id" > $1::text::bigint AND "id" <= $2::text::bigint"#
        );
        assert_eq!(
            key_range(
                &Postgres,
                &k,
                RangeShape {
                    has_lo: false,
                    has_hi: true
                }
            ),
            r#""id" <= $1::text::bigint"#
        );
    }

    #[test]
    fn composite_range_uses_row_values() {
        let k = key(&[("tenant", "integer"), ("name", "text")]);
        assert_eq!(
            key_range(
                &Postgres,
                &k,
                RangeShape {
                    has_lo: true,
                    has_hi: true
                }
            ),
            r#"("tenant", "name") > ($1::text::integer, $2::text::text) AND ("tenant", "name") <= ($3::text::integer, $4::text::text)"#
        );
    }

    #[test]
    fn probes() {
        let k = key(&[("a", "uuid"), ("b", "timestamp with time zone")]);
        assert_eq!(
            max_key_sql(&Postgres, r#""s"."t""#, &k),
            r#"SELECT "a"::text, "b"::text FROM "s"."t" rowferry_t ORDER BY rowferry_t."a" DESC, rowferry_t."b" DESC LIMIT 1 OFFSET 0"#
        );
        assert_eq!(
            boundary_probe_sql(&Postgres, r#""s"."t""#, &k, true, 1000),
            r#"SELECT "a"::text, "b"::text FROM "s"."t" rowferry_t WHERE ("a", "b") > ($1::text::uuid, $2::text::timestamp with time zone) AND ("a", "b") <= ($3::text::uuid, $4::text::timestamp with time zone) ORDER BY rowferry_t."a", rowferry_t."b" LIMIT 2 OFFSET 999"#
        );
        assert_eq!(
            boundary_probe_sql(&Postgres, "t", &key(&[("id", "int")]), false, 1),
            r#"SELECT "id"::text FROM t rowferry_t WHERE "id" <= $1::text::int ORDER BY rowferry_t."id" LIMIT 2 OFFSET 0"#
        );
    }

    fn copy() -> CopyStatement {
        CopyStatement {
            source: r#""s"."src""#.into(),
            target: r#""s"."dst""#.into(),
            target_columns: vec![r#""id""#.into(), r#""full name""#.into()],
            source_exprs: vec![r#""id""#.into(), "first || ' ' || last".into()],
            key_match: vec![(r#""id""#.into(), r#""id""#.into())],
            where_sql: None,
            overriding_identity: false,
            lock_source_rows: false,
            skip_key_conflicts: false,
        }
    }

    #[test]
    fn copy_chunk_fast_path_and_anti_join() {
        let k = key(&[("id", "bigint")]);
        assert_eq!(
            copy_chunk_sql(&Postgres, &copy(), &k, true, Presence::Absent),
            r#"INSERT INTO "s"."dst" ("id", "full name") SELECT "id", first || ' ' || last FROM "s"."src" WHERE ("id" > $1::text::bigint AND "id" <= $2::text::bigint)"#
        );
        assert_eq!(
            copy_chunk_sql(&Postgres, &copy(), &k, true, Presence::MaySkip),
            r#"INSERT INTO "s"."dst" ("id", "full name") SELECT "id", first || ' ' || last FROM "s"."src" WHERE ("id" > $1::text::bigint AND "id" <= $2::text::bigint) AND NOT EXISTS (SELECT 1 FROM "s"."dst" rowferry_dst WHERE rowferry_dst."id" = "s"."src"."id" OFFSET 0)"#
        );
    }

    #[test]
    fn copy_chunk_with_where_identity_and_share_lock() {
        let k = key(&[("id", "bigint")]);
        let mut c = copy();
        c.where_sql = Some("status = 'open' OR id < 5".into());
        c.overriding_identity = true;
        c.lock_source_rows = true;
        c.skip_key_conflicts = true;
        assert_eq!(
            copy_chunk_sql(&Postgres, &c, &k, false, Presence::MaySkip),
            r#"INSERT INTO "s"."dst" ("id", "full name") OVERRIDING SYSTEM VALUE SELECT "id", first || ' ' || last FROM "s"."src" WHERE ("id" <= $1::text::bigint) AND (status = 'open' OR id < 5) AND NOT EXISTS (SELECT 1 FROM "s"."dst" rowferry_dst WHERE rowferry_dst."id" = "s"."src"."id" OFFSET 0) FOR SHARE ON CONFLICT ("id") DO NOTHING"#
        );
    }

    #[test]
    fn a_length_guard_fails_the_chunk_on_a_longer_value_of_any_type() {
        let k = key(&[("id", "bigint")]);
        // A --map expression: evaluated once, in a subquery the planner
        // keeps.
        let guard = length_guard_sql(&Postgres, "lower(v)", true, 5, 0, &k, None);
        assert_eq!(
            guard,
            r#"(SELECT CASE WHEN (CASE WHEN char_length(CAST(rowferry_once_0.rowferry_value_0 AS text)) > 5 THEN CAST(CONCAT('rowferry_too_long:0:', char_length(CAST(rowferry_once_0.rowferry_value_0 AS text)), ':', char_length(rtrim(CAST(rowferry_once_0.rowferry_value_0 AS text))), ':', json_build_array("id"::text)::text) AS INTEGER) ELSE 0 END) <> 0 THEN NULL ELSE rowferry_once_0.rowferry_value_0 END FROM (SELECT * FROM (VALUES (lower(v))) AS rowferry_values_0(rowferry_value_0) OFFSET 0) AS rowferry_once_0)"#
        );
        assert_eq!(guard.matches("lower(v)").count(), 1, "{guard}");
        // The whole key, in its order; the guard's number.
        let k = key(&[("tenant", "integer"), ("name", "text")]);
        // A column: read at each use, no subquery.
        let guard = length_guard_sql(&Postgres, r#""v""#, false, 255, 3, &k, None);
        assert!(
            guard.contains(
                r#"'rowferry_too_long:3:', char_length(CAST("v" AS text)), ':', char_length(rtrim(CAST("v" AS text))), ':', json_build_array("tenant"::text, "name"::text)::text"#
            ),
            "{guard}"
        );
        assert!(
            guard.starts_with(r#"CASE WHEN (CASE WHEN char_length(CAST("v" AS text)) > 255 THEN"#),
            "{guard}"
        );
        let mut c = copy();
        c.source_exprs[1] = length_guard_sql(
            &Postgres,
            &c.source_exprs[1],
            false,
            5,
            0,
            &key(&[("id", "bigint")]),
            None,
        );
        assert_eq!(
            copy_chunk_sql(
                &Postgres,
                &c,
                &key(&[("id", "bigint")]),
                false,
                Presence::Absent
            ),
            r#"INSERT INTO "s"."dst" ("id", "full name") SELECT "id", CASE WHEN (CASE WHEN char_length(CAST(first || ' ' || last AS text)) > 5 THEN CAST(CONCAT('rowferry_too_long:0:', char_length(CAST(first || ' ' || last AS text)), ':', char_length(rtrim(CAST(first || ' ' || last AS text))), ':', json_build_array("id"::text)::text) AS INTEGER) ELSE 0 END) <> 0 THEN NULL ELSE first || ' ' || last END FROM "s"."src" WHERE ("id" <= $1::text::bigint)"#
        );
    }
}
