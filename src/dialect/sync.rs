//! The shared shapes of dual-write sync triggers. A trigger sees one row
//! (`NEW`, `OLD`); turned into a one-row table named like the source, the
//! copy's own `--map` expressions and `--where` apply to it unchanged, so
//! the trigger writes exactly what the copy would.

use super::{CopyStatement, Dialect};
use crate::table::Column;

/// Everything a sync needs, resolved and (where SQL) quoted.
#[derive(Debug, Clone)]
pub struct SyncTriggers {
    /// The copy's shape: target, written columns and their expressions,
    /// key match and `--where`.
    pub copy: CopyStatement,
    /// The source table, quoted, and its schema and name as the catalog has them.
    pub source: String,
    pub source_schema: String,
    pub source_name: String,
    /// Every source column (what a trigger row carries).
    pub source_columns: Vec<Column>,
    /// Quoted target columns refreshed when the key is already in the
    /// target (written columns, minus the key and GENERATED ALWAYS ones).
    pub update_columns: Vec<String>,
    /// Base name of every object (`rowferry_sync_...`).
    pub name: String,
    /// The target has unique indexes besides the key's: an upsert that
    /// fires on any unique index (MySQL's ON DUPLICATE KEY) could then
    /// overwrite an unrelated row.
    pub other_unique_indexes: bool,
}

/// One database object a sync installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncObject {
    /// "trigger" or "function".
    pub kind: &'static str,
    pub name: String,
    /// What `sync_catalog_sql` shows of a current object; anything else
    /// is stale and gets replaced.
    pub body: String,
    /// Statements that create it where it is absent, or replace a stale one.
    pub create: Vec<String>,
    pub replace: Vec<String>,
}

/// Prefix of every sync object; `LIKE` patterns escape its underscores.
pub const SYNC_PREFIX: &str = "rowferry_sync_";

/// `(SELECT NEW.a AS a, NEW.b AS b) AS source_name`: the trigger's row as
/// a table that the copy's expressions can read.
pub fn trigger_row(d: &dyn Dialect, s: &SyncTriggers, record: &str) -> String {
    one_row(d, s, |c| format!("{record}.{}", d.quote_ident(&c.name)))
}

fn one_row(d: &dyn Dialect, s: &SyncTriggers, value: impl Fn(&Column) -> String) -> String {
    let columns = s
        .source_columns
        .iter()
        .map(|c| format!("{} AS {}", value(c), d.quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("(SELECT {columns}) AS {}", d.quote_ident(&s.source_name))
}

/// INSERT of the trigger's row into the target, if it passes `--where`.
pub fn trigger_insert(d: &dyn Dialect, s: &SyncTriggers, record: &str) -> String {
    insert_from(d, s, trigger_row(d, s, record))
}

/// The trigger's INSERT over a row of typed NULLs, for the server to
/// check before any trigger exists: `--map` and `--where` must work on a
/// one-row table named like the source, with the trigger's search path.
pub fn trigger_insert_check(d: &dyn Dialect, s: &SyncTriggers) -> String {
    insert_from(d, s, one_row(d, s, |c| d.typed_null(&c.data_type)))
}

fn insert_from(d: &dyn Dialect, s: &SyncTriggers, row: String) -> String {
    let copy = CopyStatement {
        source: row,
        lock_source_rows: false,
        skip_key_conflicts: false,
        ..s.copy.clone()
    };
    let filter = match &s.copy.where_sql {
        Some(w) => format!("({w})"),
        None => "1 = 1".into(),
    };
    d.insert_select(&copy, &filter)
}

/// DELETE of the target row whose key is the record's key.
pub fn trigger_delete(s: &SyncTriggers, record: &str) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        s.copy.target,
        key_equals(s, record)
    )
}

/// `target_key = RECORD.source_key AND ...`
pub fn key_equals(s: &SyncTriggers, record: &str) -> String {
    s.copy
        .key_match
        .iter()
        .map(|(t, src)| format!("{t} = {record}.{src}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The key columns of a record, comma-separated (`OLD.a, OLD.b`).
pub fn record_key(s: &SyncTriggers, record: &str) -> String {
    s.copy
        .key_match
        .iter()
        .map(|(_, src)| format!("{record}.{src}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whitespace-insensitive comparison of an object's body with the catalog's.
pub fn same_body(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;

    fn triggers(d: &dyn Dialect, where_sql: Option<&str>) -> SyncTriggers {
        SyncTriggers {
            copy: CopyStatement {
                source: d.qualified("s", "src"),
                target: d.qualified("s", "dst"),
                target_columns: vec![d.quote_ident("id"), d.quote_ident("full name")],
                source_exprs: vec![d.quote_ident("id"), "first || last".into()],
                key_match: vec![(d.quote_ident("id"), d.quote_ident("id"))],
                where_sql: where_sql.map(String::from),
                overriding_identity: false,
                lock_source_rows: true,
                skip_key_conflicts: false,
            },
            source: d.qualified("s", "src"),
            source_schema: "s".into(),
            source_name: "src".into(),
            source_columns: ["id", "first", "last"]
                .iter()
                .map(|c| crate::dialect::test_support::column(c, "text"))
                .collect(),
            update_columns: vec![d.quote_ident("full name")],
            name: "rowferry_sync_dst_0123abcd".into(),
            other_unique_indexes: false,
        }
    }

    #[test]
    fn a_trigger_row_is_a_table_named_like_the_source() {
        let t = triggers(&Postgres, None);
        assert_eq!(
            trigger_insert(&Postgres, &t, "NEW"),
            r#"INSERT INTO "s"."dst" ("id", "full name") SELECT "id", first || last FROM (SELECT NEW."id" AS "id", NEW."first" AS "first", NEW."last" AS "last") AS "src" WHERE 1 = 1"#
        );
        assert_eq!(
            trigger_delete(&t, "OLD"),
            r#"DELETE FROM "s"."dst" WHERE "id" = OLD."id""#
        );
    }

    #[test]
    fn postgres_function_upserts_deletes_old_keys_and_honours_where() {
        let objects = Postgres.sync_objects(&triggers(&Postgres, Some("first <> 'x'")));
        let kinds: Vec<&str> = objects.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, ["function", "trigger"]);
        let body = &objects[0].body;
        assert!(body.contains(
            r#"IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND ROW(OLD."id") IS DISTINCT FROM ROW(NEW."id")) THEN"#
        ), "{body}");
        assert!(
            body.contains(r#"DELETE FROM "s"."dst" WHERE "id" = OLD."id";"#),
            "{body}"
        );
        assert!(body.contains(r#"AS "src" WHERE (first <> 'x') ON CONFLICT ("id") DO UPDATE SET "full name" = EXCLUDED."full name";"#), "{body}");
        assert!(
            body.contains(r#"IF EXISTS (SELECT 1 FROM (SELECT NEW."id" AS "id", NEW."first" AS "first", NEW."last" AS "last") AS "src" WHERE (first <> 'x')) THEN"#),
            "{body}"
        );
        assert!(
            body.contains(
                r#"ELSE
      DELETE FROM "s"."dst" WHERE "id" = NEW."id";"#
            ),
            "{body}"
        );
        // Under REPEATABLE READ a probe makes an invisible copied row a
        // serialization failure rather than a row left behind.
        assert!(
            body.contains(r#"IF current_setting('transaction_isolation') <> 'read committed' THEN
      INSERT INTO "s"."dst" ("id", "full name") SELECT "id", first || last FROM (SELECT OLD."id" AS "id""#),
            "{body}"
        );
        let create = &objects[0].create[0];
        assert!(create.starts_with(r#"CREATE OR REPLACE FUNCTION "s"."rowferry_sync_dst_0123abcd"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET TimeZone = 'UTC' SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 AS $rowferry_sync$"#), "{create}");
        assert_eq!(
            objects[1].create,
            [
                r#"CREATE TRIGGER "rowferry_sync_dst_0123abcd" AFTER INSERT OR UPDATE OR DELETE ON "s"."src" FOR EACH ROW EXECUTE FUNCTION "s"."rowferry_sync_dst_0123abcd"()"#
            ]
        );
        assert_eq!(
            objects[1].replace.len(),
            2,
            "drop and create, in one transaction"
        );
        assert_eq!(
            Postgres.sync_drop_sql(r#""s"."src""#, "s", "rowferry_sync_dst_0123abcd"),
            [
                r#"DROP TRIGGER IF EXISTS "rowferry_sync_dst_0123abcd" ON "s"."src""#,
                r#"DROP FUNCTION IF EXISTS "s"."rowferry_sync_dst_0123abcd"()"#
            ]
        );
    }

    #[test]
    fn postgres_key_only_target_does_nothing_on_conflict() {
        let mut t = triggers(&Postgres, None);
        t.update_columns.clear();
        let body = &Postgres.sync_objects(&t)[0].body;
        assert!(body.contains(r#"ON CONFLICT ("id") DO NOTHING;"#), "{body}");
    }

    #[test]
    fn postgres_body_quote_never_occurs_in_the_body() {
        let mut t = triggers(&Postgres, None);
        t.source_columns[1].name = "$rowferry_sync$".into();
        let create = &Postgres.sync_objects(&t)[0].create[0];
        assert!(create.contains("AS $rowferry_sync_1$"), "{create}");
        assert!(create.ends_with("$rowferry_sync_1$"), "{create}");
    }

    #[test]
    fn the_check_statement_reads_a_row_of_typed_nulls() {
        let t = triggers(&Postgres, None);
        assert!(
            trigger_insert_check(&Postgres, &t).contains(
                r#"FROM (SELECT CAST(NULL AS text) AS "id", CAST(NULL AS text) AS "first""#
            )
        );
        assert!(
            trigger_insert_check(&Mysql, &triggers(&Mysql, None))
                .contains("FROM (SELECT NULL AS `id`, NULL AS `first`")
        );
    }

    #[test]
    fn mysql_has_one_trigger_per_event_that_upserts_on_the_key() {
        let objects = Mysql.sync_objects(&triggers(&Mysql, None));
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rowferry_sync_dst_0123abcd_ins",
                "rowferry_sync_dst_0123abcd_upd",
                "rowferry_sync_dst_0123abcd_del"
            ]
        );
        assert_eq!(
            objects[1].create[0],
            "CREATE TRIGGER `s`.`rowferry_sync_dst_0123abcd_upd` AFTER UPDATE ON `s`.`src` FOR EACH ROW BEGIN\n  \
             IF NOT (OLD.`id` <=> NEW.`id`) THEN\n    DELETE FROM `s`.`dst` WHERE `id` = OLD.`id`;\n  END IF;\n  \
             INSERT INTO `s`.`dst` (`id`, `full name`) SELECT `id`, first || last FROM (SELECT NEW.`id` AS `id`, NEW.`first` AS `first`, NEW.`last` AS `last`) AS `src` WHERE 1 = 1 \
             ON DUPLICATE KEY UPDATE `full name` = VALUES(`full name`);\nEND"
        );
        assert!(objects[0].replace[0].starts_with("CREATE OR REPLACE TRIGGER"));
        assert_eq!(
            Mysql
                .sync_drop_sql("`s`.`src`", "s", "rowferry_sync_x")
                .len(),
            3
        );
    }

    #[test]
    fn mysql_deletes_then_inserts_where_other_unique_indexes_exist() {
        let mut t = triggers(&Mysql, Some("first <> 'x'"));
        t.other_unique_indexes = true;
        let objects = Mysql.sync_objects(&t);
        assert!(
            !objects
                .iter()
                .any(|o| o.create[0].contains("ON DUPLICATE KEY"))
        );
        let insert = &objects[0].body;
        assert!(
            insert.contains("IF EXISTS (SELECT 1 FROM (SELECT NEW.`id` AS `id`")
                && insert.contains(") AS `src` WHERE (first <> 'x')) THEN\n    DELETE FROM `s`.`dst` WHERE `id` = NEW.`id`;\n  INSERT INTO")
                && insert.contains("ELSE\n    DELETE FROM `s`.`dst` WHERE `id` = NEW.`id`;\n  END IF"),
            "{insert}"
        );
    }

    #[test]
    fn bodies_compare_without_whitespace() {
        assert!(same_body("BEGIN\n  x;\nEND", " BEGIN x; END "));
        assert!(!same_body("BEGIN x; END", "BEGIN y; END"));
    }
}

#[cfg(test)]
mod swap_tests {
    use crate::dialect::Dialect;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;

    #[test]
    fn postgres_swaps_in_one_transaction_of_renames_under_a_lock() {
        let swap = Postgres.swap().expect("postgres swaps");
        assert_eq!(
            swap.lock_sql(&[r#""s"."a""#.into(), r#""s"."b""#.into()]),
            Some(r#"LOCK TABLE "s"."a", "s"."b" IN ACCESS EXCLUSIVE MODE"#.into())
        );
        assert_eq!(
            swap.renames_sql(&[(r#""s"."a""#, "a_old"), (r#""s"."b""#, "a")]),
            [
                r#"ALTER TABLE "s"."a" RENAME TO "a_old""#,
                r#"ALTER TABLE "s"."b" RENAME TO "a""#
            ]
        );
        assert_eq!(
            swap.comment_sql(r#""s"."a_old""#, Some("it's")),
            r#"COMMENT ON TABLE "s"."a_old" IS 'it''s'"#
        );
        assert_eq!(
            swap.advance_sequence_sql(
                r#""s"."b_id_seq""#,
                r#""s"."b""#,
                "id",
                Some(r#""s"."a_id_seq""#)
            ),
            r#"SELECT setval('"s"."b_id_seq"', greatest(coalesce((SELECT max("id") FROM "s"."b"), 1), (SELECT last_value FROM "s"."a_id_seq"), 1))"#
        );
        assert_eq!(
            swap.create_like_sql(r#""s"."c""#, r#""s"."a""#),
            r#"CREATE TABLE "s"."c" (LIKE "s"."a" INCLUDING ALL)"#
        );
    }

    #[test]
    fn mysql_swaps_with_one_atomic_rename() {
        let swap = Mysql.swap().expect("mysql swaps");
        assert_eq!(swap.lock_sql(&["`s`.`a`".into()]), None);
        assert_eq!(
            swap.renames_sql(&[
                ("`s`.`a_old`", "trash"),
                ("`s`.`a`", "a_old"),
                ("`s`.`b`", "a"),
                ("`s`.`stand-in`", "b")
            ]),
            [
                "RENAME TABLE `s`.`a_old` TO `s`.`trash`, `s`.`a` TO `s`.`a_old`, `s`.`b` TO `s`.`a`, `s`.`stand-in` TO `s`.`b`"
            ]
        );
        assert_eq!(
            swap.comment_sql("`s`.`a`", Some(r"it's a \ path")),
            r"ALTER TABLE `s`.`a` COMMENT = 'it''s a \\ path'"
        );
        assert_eq!(
            swap.advance_sequence_sql("1001", "`s`.`b`", "id", Some("1024")),
            "ALTER TABLE `s`.`b` AUTO_INCREMENT = 1024"
        );
        assert_eq!(
            swap.create_like_sql("`s`.`c`", "`s`.`a`"),
            "CREATE TABLE `s`.`c` LIKE `s`.`a`"
        );
    }
}
