//! Copies into SQL Server from another server (`copy --target
//! sqlserver://`): each chunk's rows go by TDS bulk load (`INSERT BULK`,
//! tiberius' `bulk_insert`) into a staging table of text columns, then
//! into the target with `INSERT ... SELECT` that converts every value
//! exactly as the parameterized INSERT path does (`assigned`, what
//! `wire_in` writes). The server does every conversion, with the same
//! rules and the same errors as that path (a value too long, a duplicate
//! key); the client never encodes a typed TDS value.
//!
//! The stage numbers its rows (`rf_n`, an identity), and they move into
//! the target `SLICE_ROWS` at a time: one statement that takes 5,000 row
//! locks on a table or index makes SQL Server try to lock the whole
//! table instead, which would hold the other workers' chunks up.
//!
//! The staging table is a local temporary table. It must be created by a
//! batch of its own (a temporary table created inside `sp_executesql`
//! is dropped when the call ends), and it lives in the chunk's
//! transaction: a rollback, or the connection closed after an error,
//! takes it away with the chunk's rows.

use super::SqlServer;
use crate::dialect::Dialect;
use crate::table::Column;

/// The staging table's name, as `INSERT BULK` and the statements take it.
pub const STAGE: &str = "#rowferry_stage";

/// Rows per INSERT from the stage: under the 5,000 locks on one table or
/// index at which SQL Server escalates a statement's locks.
pub const SLICE_ROWS: u64 = 4_000;

/// The statements of one chunk written by bulk load (see the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedInsert {
    /// A batch: drops a stage left by an earlier chunk on this session,
    /// creates it with its row number and one `nvarchar(max) NULL` column
    /// per target column.
    pub create_stage: String,
    /// The table `INSERT BULK` loads (`STAGE`).
    pub stage: &'static str,
    /// The columns `INSERT BULK` loads (quoted), one per value of a row;
    /// the server numbers the rows.
    pub stage_columns: Vec<String>,
    /// Where an identity column is written: batches that set
    /// `IDENTITY_INSERT` on for the target before the INSERT, and off
    /// after it. They are batches of their own (the setting lasts for the
    /// session; a failed chunk closes its connection), so that the
    /// INSERT's call reports the INSERT's row count last, after any its
    /// triggers report.
    pub identity_insert: Option<(String, String)>,
    /// `INSERT INTO target (...) SELECT <converted stage columns> FROM
    /// stage WHERE rf_n > @P1 AND rf_n <= @P2`: the rows of one slice.
    pub insert: String,
    /// A batch that drops the stage.
    pub drop_stage: String,
}

impl SqlServer {
    /// The statements that write `columns` of `target` (quoted) from a
    /// bulk-loaded stage; `identity`: one of them is an identity column.
    pub fn staged_insert(
        &self,
        target: &str,
        columns: &[Column],
        neutral: bool,
        identity: bool,
    ) -> StagedInsert {
        let stage_columns: Vec<String> = (0..columns.len())
            .map(|i| self.quote_ident(&format!("c{}", i + 1)))
            .collect();
        let definitions = stage_columns
            .iter()
            .map(|c| format!(", {c} nvarchar(max) NULL"))
            .collect::<String>();
        let names = columns
            .iter()
            .map(|c| self.quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let values = columns
            .iter()
            .zip(&stage_columns)
            .map(|(c, staged)| self.assigned(staged, c, neutral))
            .collect::<Vec<_>>()
            .join(", ");
        StagedInsert {
            create_stage: format!(
                "DROP TABLE IF EXISTS {STAGE}; CREATE TABLE {STAGE} ([rf_n] int IDENTITY(1, 1) \
                 NOT NULL PRIMARY KEY{definitions})"
            ),
            stage: STAGE,
            stage_columns,
            identity_insert: identity.then(|| {
                (
                    format!("SET IDENTITY_INSERT {target} ON"),
                    format!("SET IDENTITY_INSERT {target} OFF"),
                )
            }),
            insert: format!(
                "INSERT INTO {target} ({names}) SELECT {values} FROM {STAGE} WHERE [rf_n] > {} \
                 AND [rf_n] <= {}",
                self.placeholder(1),
                self.placeholder(2)
            ),
            drop_stage: format!("DROP TABLE {STAGE}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::test_support::column;
    use sqlparser::dialect::MsSqlDialect;
    use sqlparser::parser::Parser;

    #[track_caller]
    fn assert_parses(sql: &str) {
        if let Err(e) = Parser::parse_sql(&MsSqlDialect {}, sql) {
            panic!("sqlparser (MsSql) rejects: {e}\n{sql}");
        }
    }

    fn columns() -> Vec<Column> {
        vec![
            column("id", "bigint"),
            column("na]me", "nvarchar(20)"),
            column("payload", "varbinary(max)"),
            column("at", "datetimeoffset(7)"),
            column("born", "date"),
            column("flag", "bit"),
        ]
    }

    #[test]
    fn a_stage_has_one_text_column_per_target_column() {
        let load = SqlServer.staged_insert("[s].[dst]", &columns(), true, false);
        assert_eq!(
            load.create_stage,
            "DROP TABLE IF EXISTS #rowferry_stage; CREATE TABLE #rowferry_stage ([rf_n] int \
             IDENTITY(1, 1) NOT NULL PRIMARY KEY, [c1] nvarchar(max) NULL, [c2] nvarchar(max) \
             NULL, [c3] nvarchar(max) NULL, [c4] nvarchar(max) NULL, [c5] nvarchar(max) NULL, \
             [c6] nvarchar(max) NULL)"
        );
        assert_eq!(load.stage, "#rowferry_stage");
        assert_eq!(
            load.stage_columns,
            ["[c1]", "[c2]", "[c3]", "[c4]", "[c5]", "[c6]"]
        );
        assert_eq!(load.drop_stage, "DROP TABLE #rowferry_stage");
        for sql in [&load.create_stage, &load.insert, &load.drop_stage] {
            assert_parses(sql);
        }
    }

    #[test]
    fn the_stage_is_converted_as_parameters_are() {
        let columns = columns();
        let load = SqlServer.staged_insert("[s].[dst]", &columns, true, false);
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| SqlServer.assigned(&format!("[c{}]", i + 1), c, true))
            .collect();
        assert_eq!(
            load.insert,
            format!(
                "INSERT INTO [s].[dst] ([id], [na]]me], [payload], [at], [born], [flag]) SELECT \
                 {} FROM #rowferry_stage WHERE [rf_n] > @P1 AND [rf_n] <= @P2",
                values.join(", ")
            )
        );
        // The same conversions as the INSERT path's parameters.
        assert_eq!(
            values,
            [
                "[c1]",
                "[c2]",
                "CONVERT(varbinary(max), [c3], 2)",
                "TODATETIMEOFFSET(CONVERT(datetime2(7), [c4], 121), N'+00:00')",
                "CONVERT(date, [c5], 23)",
                "CAST([c6] AS bit)",
            ]
        );
        for (i, c) in columns.iter().enumerate() {
            use crate::dialect::wire::WireSql;
            assert_eq!(
                SqlServer.wire_in(i + 1, c, true),
                values[i].replace(&format!("[c{}]", i + 1), &format!("@P{}", i + 1))
            );
        }
        // Between two SQL Servers, a datetimeoffset keeps its own offset.
        let same_engine = SqlServer.staged_insert("[dst]", &columns, false, false);
        assert!(
            same_engine
                .insert
                .contains("CONVERT(datetimeoffset(7), [c4], 121)"),
            "{}",
            same_engine.insert
        );
    }

    #[test]
    fn an_identity_column_is_written_with_identity_insert_around_the_insert() {
        let load = SqlServer.staged_insert("[dbo].[t]", &[column("id", "int")], false, true);
        assert_eq!(
            load.identity_insert,
            Some((
                "SET IDENTITY_INSERT [dbo].[t] ON".to_string(),
                "SET IDENTITY_INSERT [dbo].[t] OFF".to_string()
            ))
        );
        assert_eq!(
            load.insert,
            "INSERT INTO [dbo].[t] ([id]) SELECT [c1] FROM #rowferry_stage WHERE [rf_n] > @P1 \
             AND [rf_n] <= @P2"
        );
        let (on, off) = load.identity_insert.unwrap();
        for sql in [on, load.insert, off] {
            assert_parses(&sql);
        }
        let plain = SqlServer.staged_insert("[dbo].[t]", &[column("v", "int")], false, false);
        assert_eq!(plain.identity_insert, None);
    }
}
