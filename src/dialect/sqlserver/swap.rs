//! The blue-green swap on SQL Server: DDL is transactional, so the
//! cutover is one transaction (run by the driver under the session's
//! LOCK_TIMEOUT): both tables locked exclusively, identity moved on, the
//! forward trigger dropped, two `sp_rename`s, the reverse trigger created,
//! the record written. SQL Server has no table comments: the record is
//! the table's `MS_Description` extended property (what SSMS shows as its
//! description), at most 3750 characters.

use super::{SqlServer, nliteral, unquote_qualified};
use crate::dialect::{Dialect, SwapSql};

const DESCRIPTION: &str = "MS_Description";

/// The extended-property procedures name a table by its schema and name,
/// as constants or variables: declared first from a quoted `[schema].[table]`
/// (a bare `[t]` is in the session's default schema).
fn declare_table(table: &str) -> String {
    let (schema, name) = match unquote_qualified(table).as_deref() {
        Some([schema, name]) => (nliteral(schema), nliteral(name)),
        Some([name]) => ("SCHEMA_NAME()".into(), nliteral(name)),
        // Not a name quote_ident wrote: the server takes it apart.
        _ => (
            format!("COALESCE(PARSENAME({}, 2), SCHEMA_NAME())", nliteral(table)),
            format!("PARSENAME({}, 1)", nliteral(table)),
        ),
    };
    format!("DECLARE @rowferry_schema sysname = {schema}, @rowferry_table sysname = {name}; ")
}

const LEVELS: &str = "@level0type = N'SCHEMA', @level0name = @rowferry_schema, \
                      @level1type = N'TABLE', @level1name = @rowferry_table";

impl SwapSql for SqlServer {
    fn referencing_foreign_keys_sql(&self) -> &'static str {
        // The definition names the referenced table, which after the swap
        // is the new one under the old name; actions and NOT FOR
        // REPLICATION are kept.
        "SELECT fk.name, \
                QUOTENAME(OBJECT_SCHEMA_NAME(fk.parent_object_id)) + N'.' + QUOTENAME(OBJECT_NAME(fk.parent_object_id)), \
                N'FOREIGN KEY (' \
                + (SELECT STRING_AGG(CONVERT(nvarchar(max), QUOTENAME(c.name)), N', ') WITHIN GROUP (ORDER BY fkc.constraint_column_id) \
                   FROM sys.foreign_key_columns fkc \
                   JOIN sys.columns c ON c.object_id = fkc.parent_object_id AND c.column_id = fkc.parent_column_id \
                   WHERE fkc.constraint_object_id = fk.object_id) \
                + N') REFERENCES ' + QUOTENAME(OBJECT_SCHEMA_NAME(fk.referenced_object_id)) + N'.' \
                + QUOTENAME(OBJECT_NAME(fk.referenced_object_id)) + N' (' \
                + (SELECT STRING_AGG(CONVERT(nvarchar(max), QUOTENAME(c.name)), N', ') WITHIN GROUP (ORDER BY fkc.constraint_column_id) \
                   FROM sys.foreign_key_columns fkc \
                   JOIN sys.columns c ON c.object_id = fkc.referenced_object_id AND c.column_id = fkc.referenced_column_id \
                   WHERE fkc.constraint_object_id = fk.object_id) \
                + N') ON DELETE ' + REPLACE(fk.delete_referential_action_desc, N'_', N' ') \
                + N' ON UPDATE ' + REPLACE(fk.update_referential_action_desc, N'_', N' ') \
                + CASE WHEN fk.is_not_for_replication = 1 THEN N' NOT FOR REPLICATION' ELSE N'' END \
         FROM sys.foreign_keys fk \
         WHERE fk.referenced_object_id = CONVERT(int, @P1) AND fk.parent_object_id <> fk.referenced_object_id \
         ORDER BY 2, 1"
    }

    fn dependent_views_sql(&self) -> &'static str {
        // Views read tables by name: after the swap they read the new
        // one (a `SELECT *` view keeps its old column list until
        // sp_refreshview). Schema-bound views are bound to the table
        // itself, and stand in the way of the swap.
        "SELECT DISTINCT QUOTENAME(OBJECT_SCHEMA_NAME(d.referencing_id)) + N'.' + QUOTENAME(OBJECT_NAME(d.referencing_id)) \
         FROM sys.sql_expression_dependencies d \
         JOIN sys.views v ON v.object_id = d.referencing_id \
         JOIN sys.sql_modules m ON m.object_id = v.object_id \
         WHERE d.referenced_id = CONVERT(int, @P1) AND m.is_schema_bound = 1 \
         ORDER BY 1"
    }

    fn column_sequences_sql(&self) -> &'static str {
        // The identity column and its current value stand for a column's
        // sequence (sequences named in defaults are left alone).
        "SELECT ic.name, CONVERT(nvarchar(40), IDENT_CURRENT(QUOTENAME(OBJECT_SCHEMA_NAME(ic.object_id)) \
                + N'.' + QUOTENAME(OBJECT_NAME(ic.object_id)))) \
         FROM sys.identity_columns ic WHERE ic.object_id = CONVERT(int, @P1)"
    }

    fn table_comment_sql(&self) -> &'static str {
        "SELECT CONVERT(nvarchar(max), ep.value) FROM sys.extended_properties ep \
         WHERE ep.class = 1 AND ep.major_id = CONVERT(int, @P1) AND ep.minor_id = 0 \
           AND ep.name = N'MS_Description'"
    }

    fn lock_sql(&self, tables: &[String]) -> Option<String> {
        // No LOCK TABLE in T-SQL: reading one row with TABLOCKX takes the
        // table's exclusive lock (held to the end of the transaction,
        // under the session's LOCK_TIMEOUT) in the order listed; sp_rename
        // then adds its schema modification lock. (TOP (0) would never
        // open the table.)
        if tables.is_empty() {
            return None;
        }
        Some(
            tables
                .iter()
                .map(|t| format!("SELECT TOP (1) 1 FROM {t} WITH (TABLOCKX, HOLDLOCK)"))
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
        )
    }

    fn renames_sql(&self, renames: &[(&str, &str)]) -> Vec<String> {
        // One statement each, in the swap's transaction. sp_rename reads
        // the current name as a (quoted) multi-part name and takes the new
        // one literally, within the same schema: never quoted or qualified
        // (brackets would become part of the name).
        renames
            .iter()
            .map(|(table, to)| {
                format!(
                    "EXEC sp_rename {}, {}, N'OBJECT'",
                    nliteral(table),
                    nliteral(to)
                )
            })
            .collect()
    }

    fn renames_lock_in_name_order(&self) -> bool {
        // lock_sql takes both tables first, in the swap's transaction.
        false
    }

    fn create_like_sql(&self, table: &str, like: &str) -> String {
        // No CREATE TABLE LIKE: the columns (identity included), without
        // indexes or constraints. Used only where DDL is not
        // transactional, which SQL Server's is.
        format!("SELECT TOP (0) * INTO {table} FROM {like}")
    }

    fn comment_sql(&self, table: &str, comment: Option<&str>) -> String {
        let declare = declare_table(table);
        let exists = format!(
            "IF EXISTS (SELECT 1 FROM sys.extended_properties WHERE class = 1 \
             AND major_id = OBJECT_ID({}) AND minor_id = 0 AND name = N'{DESCRIPTION}')",
            nliteral(table)
        );
        match comment {
            Some(text) => {
                let args = format!(
                    "@name = N'{DESCRIPTION}', @value = {}, {LEVELS}",
                    nliteral(text)
                );
                format!(
                    "{declare}{exists} EXEC sys.sp_updateextendedproperty {args} \
                     ELSE EXEC sys.sp_addextendedproperty {args}"
                )
            }
            None => format!(
                "{declare}{exists} EXEC sys.sp_dropextendedproperty @name = N'{DESCRIPTION}', {LEVELS}"
            ),
        }
    }

    fn advance_sequence_sql(
        &self,
        _sequence: &str,
        table: &str,
        _column: &str,
        old_sequence: Option<&str>,
    ) -> String {
        // The old table's current identity value (from the catalog, and
        // checked to be a number before it goes into SQL), if the new
        // table's is behind it; else DBCC's own rule: up to the largest
        // value in the column. (For identities that count upwards.)
        let name = nliteral(table);
        match old_sequence.and_then(|v| v.trim().parse::<i128>().ok()) {
            Some(old) => {
                format!("IF IDENT_CURRENT({name}) < {old} DBCC CHECKIDENT ({name}, RESEED, {old})")
            }
            None => format!("DBCC CHECKIDENT ({name}, RESEED)"),
        }
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
        // WITH NOCHECK: enforced from now on, existing rows not checked
        // (the constraint is "not trusted" until validated).
        format!(
            "ALTER TABLE {table} WITH NOCHECK ADD CONSTRAINT {} {definition}",
            self.quote_ident(constraint)
        )
    }

    fn validate_constraint_sql(&self, table: &str, constraint: &str) -> String {
        // Unlike PostgreSQL's VALIDATE, this checks the referencing rows
        // under a schema modification lock on `table`: its readers and
        // writers wait for the scan. (The session's LOCK_TIMEOUT bounds
        // only the wait for the lock.)
        format!(
            "ALTER TABLE {table} WITH CHECK CHECK CONSTRAINT {}",
            self.quote_ident(constraint)
        )
    }

    fn shared_owned_sequences_sql(&self) -> &'static str {
        // Identity values belong to their table; nothing is shared.
        "SELECT CONVERT(nvarchar(max), NULL) WHERE 1 = 0"
    }

    fn disown_sequence_sql(&self, _sequence: &str) -> String {
        "SELECT 1 WHERE 1 = 0".into()
    }

    fn drop_table_sql(&self, table: &str) -> String {
        format!("DROP TABLE {table}")
    }
}
