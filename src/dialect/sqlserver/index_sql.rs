//! Deferred secondary indexes on SQL Server. SQL Server prints no index
//! definition, so the catalog query writes one (`CREATE [UNIQUE]
//! [CLUSTERED] INDEX [name] ON [s].[t] (keys) INCLUDE (...) WHERE filter
//! WITH (options)`) deterministically: read again after a rebuild it is
//! the same text, which is how a rebuild is recognised. The filegroup
//! travels as the definition's "tablespace", the description as its
//! comment (an `MS_Description` extended property).
//!
//! Online builds (`ONLINE = ON`) need Enterprise or Developer edition
//! (or Azure SQL); other editions refuse with error 1712 and never fall
//! back on their own. rowferry does not fall back either: an offline
//! build blocks the table's writers for the whole build, which is what
//! deferring indexes exists to avoid. The caller explains the refusal
//! with `online_index_unavailable` and builds offline
//! (`private_build_sql`) only where the user allowed it.

use super::{SqlServer, nliteral};
use crate::db::Row;
use crate::dialect::Dialect;
use crate::dialect::indexes::{
    CatalogIndex, IndexDefinition, IndexSql, KEEP_PRIMARY, KEEP_UNIQUE, catalog_rows,
};
use crate::error::{Error, Result};

/// The server error of an online index operation on an edition without
/// them ("Online index operations can only be performed in Enterprise
/// edition of SQL Server").
pub const ONLINE_INDEX_UNAVAILABLE: &str = "1712";

/// What to tell the user when a build was refused with
/// `ONLINE_INDEX_UNAVAILABLE`, naming the table and the indexes.
pub fn online_index_unavailable(table: &str, indexes: &[&str]) -> String {
    format!(
        "this SQL Server edition cannot build indexes online (ONLINE = ON needs Enterprise or \
         Developer edition, or Azure SQL; error {ONLINE_INDEX_UNAVAILABLE}), so {} of {table} \
         was not built. Building it offline blocks every write to {table} until the build \
         ends. Build it in a quiet period (the recorded definition with ONLINE = OFF), or rerun \
         allowing offline builds; it stays recorded as deferred until then",
        indexes.join(", ")
    )
}

/// The indexes of a table: (name, definition, why it stays, valid,
/// filegroup, description). Heaps and hypothetical indexes are not
/// indexes here.
const LIST_SQL: &str = "SELECT i.name, \
        CASE WHEN i.is_unique = 1 THEN N'CREATE UNIQUE ' ELSE N'CREATE ' END \
        + CASE WHEN i.type = 1 THEN N'CLUSTERED ' WHEN i.type = 2 THEN N'' ELSE i.type_desc + N' ' END \
        + N'INDEX ' + QUOTENAME(i.name) + N' ON ' + QUOTENAME(s.name) + N'.' + QUOTENAME(t.name) + N' (' \
        + COALESCE((SELECT STRING_AGG(CONVERT(nvarchar(max), QUOTENAME(c.name) \
                           + CASE WHEN ic.is_descending_key = 1 THEN N' DESC' ELSE N' ASC' END), N', ') \
                           WITHIN GROUP (ORDER BY ic.key_ordinal) \
                    FROM sys.index_columns ic \
                    JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
                    WHERE ic.object_id = i.object_id AND ic.index_id = i.index_id AND ic.key_ordinal > 0), N'') + N')' \
        + COALESCE(N' INCLUDE (' + (SELECT STRING_AGG(CONVERT(nvarchar(max), QUOTENAME(c.name)), N', ') \
                                           WITHIN GROUP (ORDER BY ic.index_column_id) \
                                    FROM sys.index_columns ic \
                                    JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
                                    WHERE ic.object_id = i.object_id AND ic.index_id = i.index_id \
                                      AND ic.is_included_column = 1) + N')', N'') \
        + CASE WHEN i.has_filter = 1 THEN N' WHERE ' + i.filter_definition ELSE N'' END \
        + N' WITH (PAD_INDEX = ' + CASE WHEN i.is_padded = 1 THEN N'ON' ELSE N'OFF' END \
        + CASE WHEN i.fill_factor > 0 THEN N', FILLFACTOR = ' + CONVERT(nvarchar(3), i.fill_factor) ELSE N'' END \
        + N', ALLOW_ROW_LOCKS = ' + CASE WHEN i.allow_row_locks = 1 THEN N'ON' ELSE N'OFF' END \
        + N', ALLOW_PAGE_LOCKS = ' + CASE WHEN i.allow_page_locks = 1 THEN N'ON' ELSE N'OFF' END \
        + N', DATA_COMPRESSION = ' + COALESCE((SELECT TOP (1) p.data_compression_desc FROM sys.partitions p \
                                              WHERE p.object_id = i.object_id AND p.index_id = i.index_id \
                                              ORDER BY p.partition_number), N'NONE') + N')', \
        CASE WHEN i.is_primary_key = 1 THEN N'KEEP_PRIMARY' \
             WHEN i.is_unique_constraint = 1 THEN N'unique constraint ' + QUOTENAME(i.name) + N': KEEP_UNIQUE' \
             WHEN i.is_unique = 1 THEN N'unique index: KEEP_UNIQUE' \
             WHEN i.type = 1 THEN N'clustered: the table is stored in it; without it the table \
                  would be rebuilt as a heap' \
             WHEN i.type <> 2 THEN LOWER(i.type_desc) + N' index: only nonclustered rowstore indexes \
                  are rebuilt online here' \
             WHEN i.is_disabled = 1 THEN N'disabled: rebuild it (ALTER INDEX ... REBUILD) or drop it \
                  yourself' \
             WHEN ds.type <> 'FG' THEN N'partitioned: its partition scheme is not rebuilt here' \
        END, \
        CASE WHEN i.is_disabled = 1 THEN N'false' ELSE N'true' END, \
        CASE WHEN ds.type = 'FG' AND ds.is_default = 0 THEN ds.name ELSE N'' END, \
        CONVERT(nvarchar(max), ep.value) \
     FROM sys.indexes i \
     JOIN sys.objects t ON t.object_id = i.object_id \
     JOIN sys.schemas s ON s.schema_id = t.schema_id \
     LEFT JOIN sys.data_spaces ds ON ds.data_space_id = i.data_space_id \
     LEFT JOIN sys.extended_properties ep ON ep.class = 7 AND ep.major_id = i.object_id \
          AND ep.minor_id = i.index_id AND ep.name = N'MS_Description' \
     WHERE i.object_id = CONVERT(int, @P1) AND i.type > 0 AND i.is_hypothetical = 0 \
     ORDER BY i.name";

/// `definition` (as `LIST_SQL` writes it) with one more option in its
/// final `WITH (...)`; None if it is not such a definition.
fn with_option(definition: &str, option: &str) -> Option<String> {
    let upper = definition.to_ascii_uppercase();
    if !upper.starts_with("CREATE ") || !definition.ends_with(')') || !upper.contains(" WITH (") {
        return None;
    }
    Some(format!(
        "{}, {option})",
        &definition[..definition.len() - 1]
    ))
}

impl SqlServer {
    fn build(
        &self,
        schema: &str,
        table: &str,
        indexes: &[&IndexDefinition],
        option: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for index in indexes {
            let mut statement = with_option(&index.definition, option).ok_or_else(|| {
                Error::fatal(format!(
                    "the recorded definition of index {} is not a CREATE INDEX statement with \
                     options: {}",
                    index.name, index.definition
                ))
            })?;
            if let Some(filegroup) = &index.tablespace {
                statement.push_str(&format!(" ON {}", self.quote_ident(filegroup)));
            }
            out.push(statement);
            if let Some(comment) = &index.comment {
                out.push(format!(
                    "EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = {}, \
                     @level0type = N'SCHEMA', @level0name = {}, @level1type = N'TABLE', \
                     @level1name = {}, @level2type = N'INDEX', @level2name = {}",
                    nliteral(comment),
                    nliteral(schema),
                    nliteral(table),
                    nliteral(&index.name)
                ));
            }
        }
        Ok(out)
    }
}

impl IndexSql for SqlServer {
    fn list_indexes(&self, table_id: &str, _schema: &str, _table: &str) -> (String, Vec<String>) {
        let sql = LIST_SQL
            .replace("KEEP_PRIMARY", KEEP_PRIMARY)
            .replace("KEEP_UNIQUE", KEEP_UNIQUE);
        (sql, vec![table_id.to_string()])
    }

    fn read_indexes(&self, rows: &[Row]) -> Result<Vec<CatalogIndex>> {
        catalog_rows(rows)
    }

    fn drop_sql(&self, schema: &str, table: &str, names: &[&str]) -> Vec<String> {
        // A nonclustered index goes at once (a brief schema modification
        // lock); IF EXISTS for a rerun after a crash, never for a build.
        names
            .iter()
            .map(|n| {
                format!(
                    "DROP INDEX IF EXISTS {} ON {}",
                    self.quote_ident(n),
                    self.qualified(schema, table)
                )
            })
            .collect()
    }

    fn build_sql(
        &self,
        schema: &str,
        table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>> {
        self.build(schema, table, indexes, "ONLINE = ON")
    }

    fn private_build_sql(
        &self,
        schema: &str,
        table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>> {
        // A table nothing else writes, or a build the user allowed to
        // block writers (see `online_index_unavailable`).
        self.build(schema, table, indexes, "ONLINE = OFF")
    }

    fn builds_together(&self) -> bool {
        false
    }

    // build_settings: none. Parallelism is an index option (MAXDOP), not
    // a session setting; the server's own default applies.
}

#[cfg(test)]
pub(super) fn list_sql_for_tests() -> String {
    SqlServer.list_indexes("1", "s", "t").0
}

#[cfg(test)]
pub(super) fn with_option_for_tests(definition: &str, option: &str) -> Option<String> {
    with_option(definition, option)
}
