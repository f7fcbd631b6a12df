//! Offline tests of the SQL Server dialect: golden SQL for each operation
//! and key shape, and every statement parsed by sqlparser's MsSql dialect
//! (no server here; `ROWFERRY_TEST_MSSQL` runs the live tests elsewhere).
//!
//! sqlparser 0.64 cannot parse a few valid T-SQL constructs. Where a
//! statement holds one, `parses_without` removes exactly that text (and
//! checks it was there) and parses the rest; each use says which:
//! - `CREATE TRIGGER ... WITH EXECUTE AS OWNER` (the trigger options);
//! - `CREATE INDEX ... WITH (...)` (index options) and `ON [filegroup]`;
//! - `ALTER TABLE t WITH NOCHECK ADD ...` / `WITH CHECK CHECK CONSTRAINT`;
//! - `DBCC CHECKIDENT` (no DBCC at all).

use super::index_sql::{list_sql_for_tests, with_option_for_tests};
use super::*;
use crate::dialect::checksum::{ChecksumSide, checksum_sql, split_point_sql};
use crate::dialect::indexes::IndexDefinition;
use crate::dialect::signals::NamedRow;
use crate::dialect::sync::trigger_insert_check;
use crate::dialect::test_support::{column, key};
use crate::dialect::types::{Fit, fit, narrowing};
use crate::dialect::wire::{Kind, WireSql};
use crate::dialect::{
    Presence, RangeShape, SwapSql, boundary_probe_sql, copy_chunk_sql, key_range, length_guard_sql,
    max_key_sql, state_exists_sql, state_mark_sql, update_chunk_sql,
};
use crate::table::Key;
use sqlparser::dialect::MsSqlDialect;
use sqlparser::parser::Parser;

const D: SqlServer = SqlServer;

/// `sql` is T-SQL that sqlparser's MsSql dialect reads (one or more
/// statements).
#[track_caller]
fn assert_parses(sql: &str) {
    if let Err(e) = Parser::parse_sql(&MsSqlDialect {}, sql) {
        panic!("sqlparser (MsSql) rejects: {e}\n{sql}");
    }
}

/// `sql` parses once `unsupported` (a construct sqlparser cannot read,
/// named at the call) is taken out; it must be there.
#[track_caller]
fn parses_without(sql: &str, unsupported: &str) {
    assert!(sql.contains(unsupported), "{unsupported:?} not in\n{sql}");
    assert_parses(&sql.replacen(unsupported, "", 1));
}

/// An expression parses inside a SELECT.
#[track_caller]
fn assert_expr_parses(expr: &str) {
    assert_parses(&format!("SELECT {expr}"));
}

fn shape(has_lo: bool) -> RangeShape {
    RangeShape {
        has_lo,
        has_hi: true,
    }
}

fn bigint_key() -> Key {
    key(&[("id", "bigint")])
}

fn copy() -> CopyStatement {
    CopyStatement {
        source: D.qualified("s", "src"),
        target: D.qualified("s", "dst"),
        target_columns: vec![D.quote_ident("id"), D.quote_ident("full name")],
        source_exprs: vec![D.quote_ident("id"), "first + N' ' + last".into()],
        key_match: vec![(D.quote_ident("id"), D.quote_ident("id"))],
        where_sql: None,
        overriding_identity: false,
        lock_source_rows: false,
        skip_key_conflicts: false,
    }
}

// ---------------------------------------------------------------- quoting

#[test]
fn quotes_hostile_identifiers_with_doubled_brackets() {
    assert_eq!(D.quote_ident("id"), "[id]");
    assert_eq!(D.quote_ident("a]b"), "[a]]b]");
    assert_eq!(
        D.quote_ident("we]]ird'; DROP TABLE x;--"),
        "[we]]]]ird'; DROP TABLE x;--]"
    );
    assert_eq!(D.qualified("My Schema", "T.1"), "[My Schema].[T.1]");
    let hostile = [
        "a]b",
        "it's",
        "say \"hi\"",
        "x; DROP TABLE y; --",
        "with space",
        "Grüße 🚚",
        "]",
        "[",
        "a].[b",
    ];
    for name in hostile {
        let table = D.qualified(name, name);
        let col = D.quote_ident(name);
        assert_eq!(
            unquote_qualified(&table),
            Some(vec![name.into(), name.into()])
        );
        let sql = format!(
            "SELECT {col} FROM {table} WHERE {col} > {}",
            D.placeholder(1)
        );
        assert_parses(&sql);
        if name.contains(']') {
            assert!(sql.contains("]]"), "{sql}");
        }
        // Names passed as data are N'' literals with quotes doubled.
        let renames = D.renames_sql(&[(&table, name)]);
        assert_parses(&renames[0]);
        assert!(renames[0].starts_with(&format!("EXEC sp_rename {}, ", nliteral(&table))));
        let ddl = D.state_table_ddl(&table);
        assert_parses(&ddl);
        assert!(ddl.contains(&nliteral(&table)), "{ddl}");
    }
    assert_eq!(nliteral("it's"), "N'it''s'");
    assert_eq!(
        unquote_qualified("[a]]b].[c]"),
        Some(vec!["a]b".into(), "c".into()])
    );
    assert_eq!(unquote_qualified("s.t"), None);
    assert_eq!(unquote_qualified("[a]b]"), None);
}

// -------------------------------------------------------------- key shapes

#[test]
fn key_types_cross_as_exact_text_and_come_back_as_the_column_type() {
    let k = key(&[
        ("i", "bigint"),
        ("t", "tinyint"),
        ("d", "decimal(18,4)"),
        ("m", "money"),
        ("f", "float"),
        ("dt", "datetime2(7)"),
        ("l", "datetime"),
        ("o", "datetimeoffset(3)"),
        ("day", "date"),
        ("tm", "time(0)"),
        ("u", "uniqueidentifier"),
        ("b", "binary(16)"),
        ("vb", "varbinary(64)"),
        ("n", "nvarchar(50)"),
        ("c", "char(3)"),
        ("h", "hierarchyid"),
        ("bit", "bit"),
    ]);
    let params: Vec<String> = k
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| D.key_param(i + 1, c))
        .collect();
    assert_eq!(
        params,
        [
            "CAST(@P1 AS bigint)",
            "CAST(@P2 AS tinyint)",
            "CAST(@P3 AS decimal(18,4))",
            "CAST(@P4 AS money)",
            "CAST(@P5 AS float)",
            "CONVERT(datetime2(7), @P6, 121)",
            "CONVERT(datetime, @P7, 121)",
            "CONVERT(datetimeoffset(3), @P8, 121)",
            "CONVERT(date, @P9, 23)",
            "CAST(@P10 AS time(0))",
            "CAST(@P11 AS uniqueidentifier)",
            "CONVERT(binary(16), @P12, 2)",
            "CONVERT(varbinary(8000), @P13, 2)",
            "@P14",
            "CAST(@P15 AS varchar(8000))",
            "CAST(@P16 AS hierarchyid)",
            "CAST(@P17 AS bit)",
        ]
    );
    let texts: Vec<String> = k.columns.iter().map(|c| D.key_text(c)).collect();
    assert_eq!(
        texts,
        [
            "CONVERT(nvarchar(64), [i])",
            "CONVERT(nvarchar(64), [t])",
            "CONVERT(nvarchar(64), [d])",
            "CONVERT(nvarchar(64), [m], 2)",
            "CONVERT(nvarchar(64), [f], 3)",
            "CONVERT(nvarchar(64), [dt], 121)",
            "CONVERT(nvarchar(64), [l], 121)",
            "CONVERT(nvarchar(64), [o], 121)",
            "CONVERT(nvarchar(64), [day], 23)",
            "CONVERT(nvarchar(64), [tm])",
            "LOWER(CONVERT(nvarchar(36), [u]))",
            "CONVERT(nvarchar(max), CONVERT(varbinary(max), [b]), 2)",
            "CONVERT(nvarchar(max), CONVERT(varbinary(max), [vb]), 2)",
            "[n]",
            "CONVERT(nvarchar(max), [c])",
            "CONVERT(nvarchar(max), [h])",
            "CONVERT(nvarchar(64), [bit])",
        ]
    );
    for (p, t) in params.iter().zip(&texts) {
        assert_expr_parses(&format!("{p}, {t}"));
    }
    // A target key printed as the source's type prints it.
    let text_as = D.key_text_as(&column("id", "decimal(20,0)"), &column("id", "bigint"));
    assert_eq!(text_as, "CONVERT(nvarchar(64), CAST([id] AS bigint))");
    assert_expr_parses(&text_as);
    assert_eq!(
        D.key_text_as(&column("k", "varchar(10)"), &column("k", "nvarchar(10)")),
        "CAST([k] AS nvarchar(max))"
    );
    for (ty, usable) in [
        ("real", false),
        ("float(24)", false),
        ("sql_variant", false),
        ("geography", false),
        ("float", true),
        ("hierarchyid", true),
        ("nvarchar(20)", true),
    ] {
        assert_eq!(
            D.unusable_key_reason(&column("k", ty)).is_none(),
            usable,
            "{ty}"
        );
    }
}

#[test]
fn one_bigint_key() {
    let k = bigint_key();
    let t = D.qualified("s", "t");
    let max = max_key_sql(&D, &t, &k);
    assert_eq!(
        max,
        "SELECT CONVERT(nvarchar(64), [id]) FROM [s].[t] rowferry_t ORDER BY rowferry_t.[id] DESC \
         OFFSET 0 ROWS FETCH NEXT 1 ROWS ONLY"
    );
    let first = boundary_probe_sql(&D, &t, &k, false, 1000);
    assert_eq!(
        first,
        "SELECT CONVERT(nvarchar(64), [id]) FROM [s].[t] rowferry_t WHERE [id] <= CAST(@P1 AS bigint) \
         ORDER BY rowferry_t.[id] OFFSET 999 ROWS FETCH NEXT 2 ROWS ONLY"
    );
    let later = boundary_probe_sql(&D, &t, &k, true, 1000);
    assert_eq!(
        later,
        "SELECT CONVERT(nvarchar(64), [id]) FROM [s].[t] rowferry_t WHERE [id] > CAST(@P1 AS bigint) \
         AND [id] <= CAST(@P2 AS bigint) ORDER BY rowferry_t.[id] OFFSET 999 ROWS FETCH NEXT 2 ROWS ONLY"
    );
    for sql in [max, first, later] {
        assert_parses(&sql);
    }
}

#[test]
fn composite_int_nvarchar_key_is_expanded() {
    let k = key(&[("tenant", "int"), ("name", "nvarchar(50)")]);
    assert_eq!(
        key_range(&D, &k, shape(true)),
        "([tenant] > CAST(@P1 AS int) OR ([tenant] = CAST(@P1 AS int) AND [name] > @P2)) AND \
         ([tenant] < CAST(@P3 AS int) OR ([tenant] = CAST(@P3 AS int) AND [name] <= @P4))"
    );
    let t = D.qualified("s", "t");
    let max = max_key_sql(&D, &t, &k);
    assert_eq!(
        max,
        "SELECT CONVERT(nvarchar(64), [tenant]), [name] FROM [s].[t] rowferry_t \
         ORDER BY rowferry_t.[tenant] DESC, rowferry_t.[name] DESC OFFSET 0 ROWS FETCH NEXT 1 ROWS ONLY"
    );
    let first = boundary_probe_sql(&D, &t, &k, false, 500);
    assert_eq!(
        first,
        "SELECT CONVERT(nvarchar(64), [tenant]), [name] FROM [s].[t] rowferry_t \
         WHERE ([tenant] < CAST(@P1 AS int) OR ([tenant] = CAST(@P1 AS int) AND [name] <= @P2)) \
         ORDER BY rowferry_t.[tenant], rowferry_t.[name] OFFSET 499 ROWS FETCH NEXT 2 ROWS ONLY"
    );
    let later = boundary_probe_sql(&D, &t, &k, true, 500);
    assert!(
        later.contains("WHERE ([tenant] > CAST(@P1 AS int) OR"),
        "{later}"
    );
    assert!(
        later.ends_with("OFFSET 499 ROWS FETCH NEXT 2 ROWS ONLY"),
        "{later}"
    );
    for sql in [max, first, later] {
        assert_parses(&sql);
    }
}

#[test]
fn uniqueidentifier_datetime2_and_binary_keys() {
    let t = D.qualified("s", "t");
    let cases = [
        (
            key(&[("u", "uniqueidentifier")]),
            "SELECT LOWER(CONVERT(nvarchar(36), [u])) FROM [s].[t] rowferry_t WHERE [u] > CAST(@P1 AS uniqueidentifier) \
             AND [u] <= CAST(@P2 AS uniqueidentifier) ORDER BY rowferry_t.[u] OFFSET 9 ROWS FETCH NEXT 2 ROWS ONLY",
        ),
        (
            key(&[("at", "datetime2(7)")]),
            "SELECT CONVERT(nvarchar(64), [at], 121) FROM [s].[t] rowferry_t WHERE [at] > CONVERT(datetime2(7), @P1, 121) \
             AND [at] <= CONVERT(datetime2(7), @P2, 121) ORDER BY rowferry_t.[at] OFFSET 9 ROWS FETCH NEXT 2 ROWS ONLY",
        ),
        (
            key(&[("b", "binary(16)")]),
            "SELECT CONVERT(nvarchar(max), CONVERT(varbinary(max), [b]), 2) FROM [s].[t] rowferry_t \
             WHERE [b] > CONVERT(binary(16), @P1, 2) AND [b] <= CONVERT(binary(16), @P2, 2) \
             ORDER BY rowferry_t.[b] OFFSET 9 ROWS FETCH NEXT 2 ROWS ONLY",
        ),
    ];
    for (k, expected) in cases {
        let later = boundary_probe_sql(&D, &t, &k, true, 10);
        assert_eq!(later, expected);
        let first = boundary_probe_sql(&D, &t, &k, false, 10);
        let max = max_key_sql(&D, &t, &k);
        assert!(
            max.ends_with("DESC OFFSET 0 ROWS FETCH NEXT 1 ROWS ONLY"),
            "{max}"
        );
        for sql in [later, first, max] {
            assert_parses(&sql);
        }
    }
}

// -------------------------------------------------------------------- copy

#[test]
fn copy_chunk_fast_path_and_anti_join() {
    let k = bigint_key();
    let absent = copy_chunk_sql(&D, &copy(), &k, true, Presence::Absent);
    assert_eq!(
        absent,
        "INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], first + N' ' + last FROM [s].[src] \
         WHERE ([id] > CAST(@P1 AS bigint) AND [id] <= CAST(@P2 AS bigint))"
    );
    let skip = copy_chunk_sql(&D, &copy(), &k, false, Presence::MaySkip);
    assert_eq!(
        skip,
        "INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], first + N' ' + last FROM [s].[src] \
         WHERE ([id] <= CAST(@P1 AS bigint)) AND NOT EXISTS (SELECT 1 FROM [s].[dst] rowferry_dst \
         WHERE rowferry_dst.[id] = [s].[src].[id])"
    );
    for sql in [absent, skip] {
        assert_parses(&sql);
    }
}

#[test]
fn copy_chunk_with_where_identity_and_share_locks() {
    let k = bigint_key();
    let mut c = copy();
    c.where_sql = Some("status = N'open' OR id < 5".into());
    c.lock_source_rows = true;
    c.skip_key_conflicts = true;
    let locked = copy_chunk_sql(&D, &c, &k, true, Presence::MaySkip);
    assert_eq!(
        locked,
        "INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], first + N' ' + last FROM [s].[src] \
         WITH (REPEATABLEREAD) WHERE ([id] > CAST(@P1 AS bigint) AND [id] <= CAST(@P2 AS bigint)) \
         AND (status = N'open' OR id < 5) AND NOT EXISTS (SELECT 1 FROM [s].[dst] rowferry_dst \
         WITH (READCOMMITTEDLOCK) WHERE rowferry_dst.[id] = [s].[src].[id])"
    );
    assert!(!locked.contains("IGNORE_DUP_KEY") && !locked.contains("MERGE"));
    c.overriding_identity = true;
    let identity = copy_chunk_sql(&D, &c, &k, false, Presence::Absent);
    assert_eq!(
        identity,
        "SET IDENTITY_INSERT [s].[dst] ON; INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], \
         first + N' ' + last FROM [s].[src] WITH (REPEATABLEREAD) WHERE ([id] <= CAST(@P1 AS bigint)) \
         AND (status = N'open' OR id < 5); SET IDENTITY_INSERT [s].[dst] OFF"
    );
    let statements = Parser::parse_sql(&MsSqlDialect {}, &identity).expect("identity batch");
    assert_eq!(statements.len(), 3, "one batch of three statements");
    assert_parses(&locked);
}

#[test]
fn a_length_guard_fails_the_chunk_on_a_longer_value() {
    // nvarchar(n) counts UTF-16 code units, trailing spaces included
    // (DATALENGTH; LEN ignores them), of any type's text.
    let guard = length_guard_sql(&D, "[v]", false, 5, 0, &bigint_key(), None);
    assert_eq!(
        guard,
        "CASE WHEN (CASE WHEN (DATALENGTH(CONVERT(nvarchar(max), [v])) / 2) > 5 THEN \
         CAST(CONCAT('rowferry_too_long:0:', (DATALENGTH(CONVERT(nvarchar(max), [v])) / 2), ':', \
         (DATALENGTH(CONVERT(nvarchar(max), RTRIM(CONVERT(nvarchar(max), [v])))) / 2), ':', \
         N'[' + COALESCE(N'\"' + STRING_ESCAPE(CONVERT(nvarchar(64), [id]), 'json') + N'\"', \
         N'null') + N']') AS INTEGER) ELSE 0 END) <> 0 THEN NULL ELSE [v] END"
    );
    assert_expr_parses(&guard);
    let composite = key(&[("tenant", "int"), ("name", "nvarchar(50)")]);
    assert_expr_parses(&length_guard_sql(
        &D,
        "first + N' ' + last",
        true,
        4000,
        7,
        &composite,
        None,
    ));

    let mut c = copy();
    c.source_exprs[1] = length_guard_sql(&D, &c.source_exprs[1], true, 5, 0, &bigint_key(), None);
    c.lock_source_rows = true;
    for presence in [Presence::Absent, Presence::MaySkip] {
        let sql = copy_chunk_sql(&D, &c, &bigint_key(), true, presence);
        assert!(
            sql.starts_with(
                "INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], CASE WHEN (CASE WHEN \
                 (DATALENGTH(CONVERT(nvarchar(max), first + N' ' + last)) / 2) > 5 THEN"
            ),
            "{sql}"
        );
        assert_parses(&sql);
    }
}

#[test]
fn composite_key_copy_matches_every_key_column() {
    let k = key(&[("tenant", "int"), ("name", "nvarchar(50)")]);
    let c = CopyStatement {
        target_columns: vec!["[tenant]".into(), "[name]".into()],
        source_exprs: vec!["[tenant]".into(), "[name]".into()],
        key_match: vec![
            ("[tenant]".into(), "[tenant]".into()),
            ("[name]".into(), "[name]".into()),
        ],
        ..copy()
    };
    let sql = copy_chunk_sql(&D, &c, &k, true, Presence::MaySkip);
    assert!(
        sql.ends_with(
            "NOT EXISTS (SELECT 1 FROM [s].[dst] rowferry_dst WHERE rowferry_dst.[tenant] = \
             [s].[src].[tenant] AND rowferry_dst.[name] = [s].[src].[name])"
        ),
        "{sql}"
    );
    assert_parses(&sql);
}

// ---------------------------------------------------------------- backfill

#[test]
fn backfill_chunk_and_state_table() {
    let k = bigint_key();
    let t = D.qualified("s", "t");
    let update = update_chunk_sql(&D, &t, "[n] = ([n] + 1)", &k, true, Some("flag = 1"));
    assert_eq!(
        update,
        "UPDATE [s].[t] SET [n] = ([n] + 1) WHERE ([id] > CAST(@P1 AS bigint) AND [id] <= \
         CAST(@P2 AS bigint)) AND (flag = 1)"
    );
    let state = D.qualified("s", "rowferry_bf_0123");
    let ddl = D.state_table_ddl(&state);
    assert_eq!(
        ddl,
        "IF OBJECT_ID(N'[s].[rowferry_bf_0123]', N'U') IS NULL CREATE TABLE [s].[rowferry_bf_0123] \
         (job nvarchar(64) NOT NULL, chunk nvarchar(64) NOT NULL, done_at datetime2(6) NOT NULL \
         DEFAULT SYSUTCDATETIME(), PRIMARY KEY (job, chunk))"
    );
    let mark = state_mark_sql(&D, &state);
    assert_eq!(
        mark,
        "INSERT INTO [s].[rowferry_bf_0123] (job, chunk) VALUES (@P1, @P2)"
    );
    let exists = state_exists_sql(&D, &state);
    assert_eq!(
        exists,
        "SELECT job FROM [s].[rowferry_bf_0123] WHERE job = @P1 AND chunk = @P2"
    );
    for sql in [update, ddl, mark, exists] {
        assert_parses(&sql);
    }
    // No online path to NOT NULL on SQL Server.
    assert_eq!(D.set_not_null_steps(&t, "n", "c", None), None);
    assert_eq!(D.no_statement_timeout(), None);
}

// ---------------------------------------------------------------- catalog

#[test]
fn catalog_queries_parse_and_return_text() {
    for sql in [
        D.default_schema_sql(),
        D.find_table_sql(),
        D.columns_sql(),
        D.unique_indexes_sql(),
        D.estimate_sql(),
        D.sync_catalog_sql(),
        D.unique_index_count_sql().unwrap_or_default(),
        IGNORE_DUP_KEY_INDEXES_SQL,
        D.referencing_foreign_keys_sql(),
        D.dependent_views_sql(),
        D.column_sequences_sql(),
        D.table_comment_sql(),
        D.shared_owned_sequences_sql(),
        D.signals().replica_status_sql(),
    ] {
        assert_parses(sql);
    }
    // The catalog id is the object_id as text, compared as an int.
    assert!(D.columns_sql().contains("c.object_id = CONVERT(int, @P1)"));
    assert!(
        D.find_table_sql()
            .contains("CONVERT(nvarchar(20), o.object_id)")
    );
    // The spelling contract.
    let columns = D.columns_sql();
    for piece in [
        "CASE WHEN c.max_length = -1 THEN N'max'",
        "c.max_length / 2",
        "CONVERT(nvarchar(10), c.precision) + N',' + CONVERT(nvarchar(10), c.scale)",
        "WHEN ty.name IN (N'datetime2', N'datetimeoffset', N'time')",
        "CASE WHEN c.is_identity = 1 THEN N'true' ELSE N'false' END",
        "ty.name = N'timestamp'",
    ] {
        assert!(columns.contains(piece), "{piece}");
    }
    assert_eq!(D.default_schema_sql(), "SELECT SCHEMA_NAME()");
}

#[test]
fn job_lock_is_a_session_applock_not_waited_for() {
    let sql = D.try_job_lock_sql();
    assert_eq!(
        squash(sql),
        squash(
            "DECLARE @rowferry_lock nvarchar(255) = N'rowferry:' + CONVERT(nvarchar(64), \
             HASHBYTES('SHA2_256', @P1), 2); EXEC sys.sp_getapplock @Resource = @rowferry_lock, \
             @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; SELECT CASE WHEN \
             APPLOCK_MODE(N'public', @rowferry_lock, N'Session') = N'Exclusive' THEN N'true' ELSE \
             N'false' END"
        )
    );
    assert_eq!(
        Parser::parse_sql(&MsSqlDialect {}, sql)
            .map(|s| s.len())
            .ok(),
        Some(3)
    );
}

/// Whitespace runs as one space (multi-line literals).
fn squash(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `sql` parses once `unsupported` is replaced by `stand_in` (a
/// statement sqlparser reads in the same position).
#[track_caller]
fn parses_replacing(sql: &str, unsupported: &str, stand_in: &str) {
    assert!(sql.contains(unsupported), "{unsupported:?} not in\n{sql}");
    assert_parses(&sql.replacen(unsupported, stand_in, 1));
}

// --------------------------------------------------------------- checksums

fn side(table: &str, where_sql: Option<&str>, neutral: bool) -> ChecksumSide {
    let id = column("id", "bigint");
    let values = if neutral {
        vec![
            D.wire_out("[id]", Kind::Integer, true),
            D.wire_out("[at]", Kind::Timestamp, true),
        ]
    } else {
        vec![
            D.canonical_value("[id]", &id, false),
            D.canonical_value("amount * 2", &column("doubled", "decimal(12,2)"), true),
            D.canonical_value("[code]", &column("code", "char(3)"), false),
        ]
    };
    ChecksumSide {
        table: D.qualified("s", table),
        key: bigint_key(),
        key_text: vec![D.key_text(&id)],
        values,
        where_sql: where_sql.map(String::from),
        neutral,
    }
}

#[test]
fn canonical_values_print_exactly_after_the_inserts_conversion() {
    let cases = [
        ("x", "int", false, "CONVERT(nvarchar(64), x)"),
        ("x", "int", true, "CONVERT(nvarchar(64), CONVERT(int, (x)))"),
        (
            "x",
            "decimal(12,2)",
            true,
            "CONVERT(nvarchar(64), CONVERT(decimal(12,2), (x)))",
        ),
        ("x", "money", false, "CONVERT(nvarchar(64), x, 2)"),
        ("x", "float", false, "CONVERT(nvarchar(64), x, 3)"),
        (
            "x",
            "datetime2(7)",
            true,
            "CONVERT(nvarchar(64), CONVERT(datetime2(7), (x)), 121)",
        ),
        ("x", "date", false, "CONVERT(nvarchar(64), x, 23)"),
        (
            "x",
            "uniqueidentifier",
            false,
            "LOWER(CONVERT(nvarchar(36), x))",
        ),
        (
            "x",
            "varbinary(max)",
            false,
            "CONVERT(nvarchar(max), CONVERT(varbinary(max), x), 2)",
        ),
        // Unbounded: an explicit conversion to nvarchar(10) would cut.
        (
            "x",
            "nvarchar(10)",
            true,
            "CONVERT(nvarchar(max), CONVERT(nvarchar(max), (x)))",
        ),
        ("x", "nchar(10)", false, "RTRIM(CONVERT(nvarchar(max), x))"),
        (
            "x",
            "varchar(10)",
            true,
            "CONVERT(nvarchar(max), CONVERT(varchar(max), (x)))",
        ),
        (
            "x",
            "geography",
            true,
            "CONVERT(nvarchar(max), CONVERT(varbinary(max), x), 2)",
        ),
        ("x", "hierarchyid", false, "CONVERT(nvarchar(max), x)"),
    ];
    for (expr, ty, cast, expected) in cases {
        let got = D.canonical_value(expr, &column("c", ty), cast);
        assert_eq!(got, expected, "{ty} cast={cast}");
        assert_expr_parses(&got);
    }
}

#[test]
fn same_engine_checksum() {
    let sql = checksum_sql(&D, &side("src", Some("x > 1"), false), shape(true));
    assert_eq!(
        sql,
        "SELECT CONVERT(nvarchar(max), COUNT(*)), CONVERT(nvarchar(64), COALESCE(SUM(CONVERT(decimal(38,0), \
         CONVERT(bigint, SUBSTRING(HASHBYTES('MD5', \
         COALESCE(CONVERT(nvarchar(max), DATALENGTH(CONVERT(nvarchar(64), [id])) / 2) + N':' + CONVERT(nvarchar(64), [id]), N'-') \
         + N',' + COALESCE(CONVERT(nvarchar(max), DATALENGTH(CONVERT(nvarchar(64), CONVERT(decimal(12,2), (amount * 2)))) / 2) \
         + N':' + CONVERT(nvarchar(64), CONVERT(decimal(12,2), (amount * 2))), N'-') \
         + N',' + COALESCE(CONVERT(nvarchar(max), DATALENGTH(RTRIM(CONVERT(nvarchar(max), [code]))) / 2) \
         + N':' + RTRIM(CONVERT(nvarchar(max), [code])), N'-')), 1, 8)))), 0)) \
         FROM [s].[src] WHERE ([id] > CAST(@P1 AS bigint) AND [id] <= CAST(@P2 AS bigint)) AND (x > 1)"
    );
    assert_parses(&sql);
    let split = split_point_sql(&D, &side("dst", None, false), shape(true), 128);
    assert_eq!(
        split,
        "SELECT CONVERT(nvarchar(64), [id]) FROM [s].[dst] rowferry_t WHERE [id] > CAST(@P1 AS bigint) \
         AND [id] <= CAST(@P2 AS bigint) ORDER BY rowferry_t.[id] OFFSET 128 ROWS FETCH NEXT 1 ROWS ONLY"
    );
    assert_parses(&split);
    // A row-by-row diff: the row's MD5 as every engine computes it.
    let row = Dialect::row_text(&D, &side("src", None, false).values);
    let md5 = D.row_md5(&row);
    assert!(
        md5.starts_with("LOWER(CONVERT(nvarchar(32), HASHBYTES('MD5', CAST(("),
        "{md5}"
    );
    assert!(
        md5.ends_with(") COLLATE Latin1_General_100_BIN2_UTF8 AS varchar(max))), 2))"),
        "{md5}"
    );
    assert_parses(&format!(
        "SELECT CONVERT(nvarchar(64), [id]), {md5} FROM [s].[src] WHERE [id] = CAST(@P1 AS bigint)"
    ));
    assert_eq!(Dialect::row_text(&D, &[]), "N''");
}

#[test]
fn cross_engine_checksum_is_postgres_and_mysqls_number() {
    let w = D.wire();
    assert_eq!(
        w.row_text(&["a".into(), "b".into()]),
        "COALESCE(CONVERT(nvarchar(max), LEN((a COLLATE Latin1_General_100_CS_AS_SC) + N'.') - 1) + N':' + a, N'-') \
         + N',' + COALESCE(CONVERT(nvarchar(max), LEN((b COLLATE Latin1_General_100_CS_AS_SC) + N'.') - 1) + N':' + b, N'-')"
    );
    assert_eq!(
        w.hash_sum("r"),
        "CONVERT(nvarchar(64), COALESCE(SUM(CONVERT(decimal(38,0), CONVERT(bigint, CONVERT(varbinary(8), '0' + \
         LEFT(CONVERT(varchar(32), HASHBYTES('MD5', CAST((r) COLLATE Latin1_General_100_BIN2_UTF8 AS varchar(max))), 2), 15), 2)))), 0))"
    );
    let sql = checksum_sql(&D, &side("src", None, true), shape(false));
    assert!(sql.contains("HASHBYTES('MD5', CAST((COALESCE("), "{sql}");
    assert_parses(&sql);
    assert_eq!(super::wire_sql::SC_COLLATION, "Latin1_General_100_CS_AS_SC");
    assert_eq!(UTF8_COLLATION, "Latin1_General_100_BIN2_UTF8");
}

// ------------------------------------------------------------ sync triggers

fn triggers(where_sql: Option<&str>, identity: bool) -> SyncTriggers {
    SyncTriggers {
        copy: CopyStatement {
            source: D.qualified("s", "src"),
            target: D.qualified("s", "dst"),
            target_columns: vec![D.quote_ident("id"), D.quote_ident("full name")],
            source_exprs: vec![D.quote_ident("id"), "first + last".into()],
            key_match: vec![(D.quote_ident("id"), D.quote_ident("id"))],
            where_sql: where_sql.map(String::from),
            overriding_identity: identity,
            lock_source_rows: true,
            skip_key_conflicts: false,
        },
        source: D.qualified("s", "src"),
        source_schema: "s".into(),
        source_name: "src".into(),
        source_columns: ["id", "first", "last"]
            .iter()
            .map(|c| column(c, "nvarchar(50)"))
            .collect(),
        update_columns: vec![D.quote_ident("full name")],
        name: "rowferry_sync_dst_0123abcd".into(),
        other_unique_indexes: false,
    }
}

#[test]
fn one_set_based_trigger_deletes_updates_then_inserts() {
    let objects = D.sync_objects(&triggers(None, false));
    assert_eq!(objects.len(), 1);
    let o = &objects[0];
    assert_eq!(
        (o.kind, o.name.as_str()),
        ("trigger", "rowferry_sync_dst_0123abcd")
    );
    let body = "-- rowferry sync body\nBEGIN\n  \
        SET NOCOUNT ON;\n  \
        IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;\n  \
        DELETE rowferry_dst FROM [s].[dst] AS rowferry_dst WHERE EXISTS (SELECT 1 FROM deleted AS [src] \
        WHERE rowferry_dst.[id] = [src].[id]) AND NOT EXISTS (SELECT 1 FROM inserted AS [src] WHERE \
        rowferry_dst.[id] = [src].[id]);\n  \
        UPDATE rowferry_dst SET [full name] = rowferry_new.[full name] FROM [s].[dst] AS rowferry_dst \
        INNER JOIN (SELECT [id] AS [id], first + last AS [full name] FROM inserted AS [src]) AS \
        rowferry_new ON rowferry_dst.[id] = rowferry_new.[id];\n  \
        INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], first + last FROM inserted AS [src] \
        WHERE NOT EXISTS (SELECT 1 FROM [s].[dst] AS rowferry_dst WHERE rowferry_dst.[id] = [src].[id]);\nEND";
    assert_eq!(o.body, body);
    assert_eq!(
        o.create,
        [format!(
            "CREATE TRIGGER [s].[rowferry_sync_dst_0123abcd] ON [s].[src] AFTER INSERT, UPDATE, DELETE AS\n{body}"
        )]
    );
    assert_eq!(
        o.replace,
        [format!(
            "CREATE OR ALTER TRIGGER [s].[rowferry_sync_dst_0123abcd] ON [s].[src] AFTER INSERT, UPDATE, DELETE AS\n{body}"
        )]
    );
    assert_parses(&o.create[0]);
    assert_parses(&o.replace[0]);
    // The catalog returns the definition from the marker on.
    assert!(o.body.starts_with(triggers::BODY_MARKER));
    assert!(triggers::catalog_agrees());
    let drop = D.sync_drop_sql("[s].[src]", "s", "rowferry_sync_dst_0123abcd");
    assert_eq!(
        drop,
        ["DROP TRIGGER IF EXISTS [s].[rowferry_sync_dst_0123abcd]"]
    );
    assert_parses(&drop[0]);
}

#[test]
fn trigger_honours_where_and_writes_identity_as_the_owner() {
    let o = &D.sync_objects(&triggers(Some("first <> N'x'"), true))[0];
    let body = &o.body;
    assert!(
        body.contains(
            "DELETE rowferry_dst FROM [s].[dst] AS rowferry_dst WHERE (EXISTS (SELECT 1 FROM deleted AS [src] \
             WHERE rowferry_dst.[id] = [src].[id]) OR EXISTS (SELECT 1 FROM inserted AS [src] WHERE \
             rowferry_dst.[id] = [src].[id])) AND NOT EXISTS (SELECT 1 FROM inserted AS [src] WHERE \
             rowferry_dst.[id] = [src].[id] AND (first <> N'x'));"
        ),
        "{body}"
    );
    assert!(
        body.contains("first + last AS [full name] FROM inserted AS [src] WHERE (first <> N'x')) AS rowferry_new"),
        "{body}"
    );
    assert!(
        body.contains(
            "SET IDENTITY_INSERT [s].[dst] ON; INSERT INTO [s].[dst] ([id], [full name]) SELECT [id], \
             first + last FROM inserted AS [src] WHERE (first <> N'x') AND NOT EXISTS (SELECT 1 FROM \
             [s].[dst] AS rowferry_dst WHERE rowferry_dst.[id] = [src].[id]); SET IDENTITY_INSERT [s].[dst] OFF;\nEND"
        ),
        "{body}"
    );
    assert!(
        o.create[0].starts_with(
            "CREATE TRIGGER [s].[rowferry_sync_dst_0123abcd] ON [s].[src] WITH EXECUTE AS OWNER AFTER INSERT"
        ),
        "{}",
        o.create[0]
    );
    // sqlparser reads no trigger options (WITH EXECUTE AS ...).
    parses_without(&o.create[0], " WITH EXECUTE AS OWNER");
    parses_without(&o.replace[0], " WITH EXECUTE AS OWNER");
    // Without updatable columns there is no UPDATE.
    let mut key_only = triggers(None, false);
    key_only.update_columns.clear();
    let o = &D.sync_objects(&key_only)[0];
    assert!(!o.body.contains("UPDATE rowferry_dst"), "{}", o.body);
    assert_parses(&o.create[0]);
}

#[test]
fn the_trigger_check_reads_a_row_of_typed_nulls() {
    let mut t = triggers(None, true);
    t.source_columns.push(column("rv", "timestamp"));
    let check = trigger_insert_check(&D, &t);
    assert!(
        check.contains(
            "FROM (SELECT CAST(NULL AS nvarchar(50)) AS [id], CAST(NULL AS nvarchar(50)) AS [first], \
             CAST(NULL AS nvarchar(50)) AS [last], CAST(NULL AS binary(8)) AS [rv]) AS [src] WHERE 1 = 1"
        ),
        "{check}"
    );
    assert!(
        check.starts_with("SET IDENTITY_INSERT [s].[dst] ON; "),
        "{check}"
    );
    assert_parses(&check);
}

/// The trigger's three statements, as sets (what the SQL above says):
/// the target ends holding exactly the source rows that pass `--where`,
/// whatever one statement did to the keys.
#[test]
fn set_based_sync_ends_exact_after_key_changes() {
    use std::collections::BTreeMap;
    type Rows = BTreeMap<i64, &'static str>;
    let pass = |v: &str| !v.starts_with('x');
    let visible = |rows: &Rows| -> Rows {
        rows.iter()
            .filter(|(_, v)| pass(v))
            .map(|(k, v)| (*k, *v))
            .collect()
    };
    let fire = |target: &mut Rows,
                deleted: &[(i64, &'static str)],
                inserted: &[(i64, &'static str)],
                with_where: bool| {
        let new: Vec<(i64, &str)> = inserted
            .iter()
            .copied()
            .filter(|(_, v)| !with_where || pass(v))
            .collect();
        let gone: Vec<i64> = target
            .keys()
            .copied()
            .filter(|k| {
                let touched = deleted.iter().any(|(d, _)| d == k)
                    || (with_where && inserted.iter().any(|(i, _)| i == k));
                touched && !new.iter().any(|(n, _)| n == k)
            })
            .collect();
        for k in gone {
            target.remove(&k);
        }
        for (k, v) in &new {
            if let Some(row) = target.get_mut(k) {
                *row = v;
            }
        }
        for (k, v) in new {
            target.entry(k).or_insert(v);
        }
    };
    // (before, deleted, inserted): one statement's effect on the source.
    type Versions = Vec<(i64, &'static str)>;
    let statements: Vec<(Versions, Versions, Versions)> = vec![
        // UPDATE t SET id = id + 1
        (
            vec![(1, "a"), (2, "b"), (3, "c")],
            vec![(1, "a"), (2, "b"), (3, "c")],
            vec![(2, "a"), (3, "b"), (4, "c")],
        ),
        // UPDATE t SET id = 3 - id WHERE id IN (1, 2): keys swapped
        (
            vec![(1, "a"), (2, "b"), (5, "e")],
            vec![(1, "a"), (2, "b")],
            vec![(2, "a"), (1, "b")],
        ),
        // DELETE, INSERT
        (vec![(1, "a"), (2, "b")], vec![(1, "a")], vec![]),
        (vec![(1, "a")], vec![], vec![(7, "g"), (8, "h")]),
        // rows that stop and start matching --where
        (
            vec![(1, "a"), (2, "xb")],
            vec![(1, "a"), (2, "xb")],
            vec![(1, "xa"), (2, "b")],
        ),
        // a key change into a row that does not match
        (vec![(1, "a"), (2, "b")], vec![(1, "a")], vec![(3, "xa")]),
    ];
    for with_where in [false, true] {
        for (before, deleted, inserted) in &statements {
            let mut source: Rows = before.iter().copied().collect();
            for (k, _) in deleted {
                source.remove(k);
            }
            source.extend(inserted.iter().copied());
            let show = |rows: &Rows| {
                if with_where {
                    visible(rows)
                } else {
                    rows.clone()
                }
            };
            let mut target = show(&before.iter().copied().collect());
            fire(&mut target, deleted, inserted, with_where);
            assert_eq!(
                target,
                show(&source),
                "{before:?} -{deleted:?} +{inserted:?}"
            );
        }
    }
}

// -------------------------------------------------------------------- swap

#[test]
fn swap_locks_renames_and_records_in_one_transaction() {
    let swap = D.swap().expect("sql server swaps");
    let lock = swap.lock_sql(&["[s].[a]".into(), "[s].[b]".into()]);
    assert_eq!(
        lock.as_deref(),
        Some(
            "SELECT TOP (1) 1 FROM [s].[a] WITH (TABLOCKX, HOLDLOCK) UNION ALL \
             SELECT TOP (1) 1 FROM [s].[b] WITH (TABLOCKX, HOLDLOCK)"
        )
    );
    assert_parses(&lock.unwrap_or_default());
    let renames = swap.renames_sql(&[("[s].[a]", "a_old"), ("[s].[b]", "a")]);
    assert_eq!(
        renames,
        [
            "EXEC sp_rename N'[s].[a]', N'a_old', N'OBJECT'",
            "EXEC sp_rename N'[s].[b]', N'a', N'OBJECT'"
        ]
    );
    let hostile = swap.renames_sql(&[("[s'].[a]]b]", "new'; DROP TABLE x; --")]);
    assert_eq!(
        hostile,
        ["EXEC sp_rename N'[s''].[a]]b]', N'new''; DROP TABLE x; --', N'OBJECT'"]
    );
    for sql in renames.iter().chain(&hostile) {
        assert_parses(sql);
    }
    assert!(!swap.renames_lock_in_name_order());
    assert!(D.transactional_ddl());

    let set = swap.comment_sql("[s].[a_old]", Some("rowferry cutover: {\"it's\": 1}"));
    assert_eq!(
        set,
        "DECLARE @rowferry_schema sysname = N's', @rowferry_table sysname = N'a_old'; \
         IF EXISTS (SELECT 1 FROM sys.extended_properties WHERE class = 1 AND major_id = \
         OBJECT_ID(N'[s].[a_old]') AND minor_id = 0 AND name = N'MS_Description') \
         EXEC sys.sp_updateextendedproperty @name = N'MS_Description', @value = N'rowferry cutover: {\"it''s\": 1}', \
         @level0type = N'SCHEMA', @level0name = @rowferry_schema, @level1type = N'TABLE', @level1name = @rowferry_table \
         ELSE EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'rowferry cutover: {\"it''s\": 1}', \
         @level0type = N'SCHEMA', @level0name = @rowferry_schema, @level1type = N'TABLE', @level1name = @rowferry_table"
    );
    let clear = swap.comment_sql("[my s].[we]]ird]", None);
    assert_eq!(
        clear,
        "DECLARE @rowferry_schema sysname = N'my s', @rowferry_table sysname = N'we]ird'; \
         IF EXISTS (SELECT 1 FROM sys.extended_properties WHERE class = 1 AND major_id = \
         OBJECT_ID(N'[my s].[we]]ird]') AND minor_id = 0 AND name = N'MS_Description') \
         EXEC sys.sp_dropextendedproperty @name = N'MS_Description', @level0type = N'SCHEMA', \
         @level0name = @rowferry_schema, @level1type = N'TABLE', @level1name = @rowferry_table"
    );
    let bare = swap.comment_sql("t", Some("x"));
    assert!(
        bare.starts_with(
            "DECLARE @rowferry_schema sysname = COALESCE(PARSENAME(N't', 2), SCHEMA_NAME())"
        ),
        "{bare}"
    );
    for sql in [&set, &clear, &bare] {
        assert_parses(sql);
    }

    let advance = swap.advance_sequence_sql("1001", "[s].[b]", "id", Some("1024"));
    assert_eq!(
        advance,
        "IF IDENT_CURRENT(N'[s].[b]') < 1024 DBCC CHECKIDENT (N'[s].[b]', RESEED, 1024)"
    );
    // sqlparser knows no DBCC: the condition is checked with a stand-in.
    parses_replacing(
        &advance,
        "DBCC CHECKIDENT (N'[s].[b]', RESEED, 1024)",
        "SELECT 1",
    );
    assert_eq!(
        swap.advance_sequence_sql("1", "[s].[b]", "id", Some("1; DROP TABLE x")),
        "DBCC CHECKIDENT (N'[s].[b]', RESEED)"
    );

    let fk_def =
        "FOREIGN KEY ([a_id]) REFERENCES [s].[a] ([id]) ON DELETE CASCADE ON UPDATE NO ACTION";
    let drop = swap.drop_constraint_sql("[s].[c]", "fk_c]a");
    assert_eq!(drop, "ALTER TABLE [s].[c] DROP CONSTRAINT [fk_c]]a]");
    assert_parses(&drop);
    let add = swap.add_constraint_not_valid_sql("[s].[c]", "fk", fk_def);
    assert_eq!(
        add,
        format!("ALTER TABLE [s].[c] WITH NOCHECK ADD CONSTRAINT [fk] {fk_def}")
    );
    // sqlparser reads no WITH NOCHECK / WITH CHECK after ALTER TABLE.
    parses_without(&add, " WITH NOCHECK");
    let validate = swap.validate_constraint_sql("[s].[c]", "fk");
    assert_eq!(
        validate,
        "ALTER TABLE [s].[c] WITH CHECK CHECK CONSTRAINT [fk]"
    );
    assert_eq!(
        swap.create_like_sql("[s].[c]", "[s].[a]"),
        "SELECT TOP (0) * INTO [s].[c] FROM [s].[a]"
    );
    assert_parses(&swap.create_like_sql("[s].[c]", "[s].[a]"));
    assert_eq!(swap.drop_table_sql("[s].[a_old]"), "DROP TABLE [s].[a_old]");
    assert_parses(&swap.drop_table_sql("[s].[a_old]"));
    assert_parses(&swap.disown_sequence_sql("x"));
}

// ----------------------------------------------------------------- indexes

fn def(name: &str, definition: &str) -> IndexDefinition {
    IndexDefinition {
        name: name.into(),
        definition: definition.into(),
        tablespace: None,
        comment: None,
    }
}

#[test]
fn indexes_build_online_with_their_options_and_place() {
    let isql = D.indexes().expect("sql server defers indexes");
    let mut a = def(
        "ix_a",
        "CREATE INDEX [ix_a] ON [s].[t] ([a] ASC, [b] DESC) INCLUDE ([c]) WHERE ([a]>(0)) WITH \
         (PAD_INDEX = OFF, FILLFACTOR = 90, ALLOW_ROW_LOCKS = ON, ALLOW_PAGE_LOCKS = ON, DATA_COMPRESSION = PAGE)",
    );
    a.tablespace = Some("fast fg".into());
    a.comment = Some("it's".into());
    let built = isql.build_sql("s", "t", &[&a]).expect("a definition");
    assert_eq!(
        built,
        [
            "CREATE INDEX [ix_a] ON [s].[t] ([a] ASC, [b] DESC) INCLUDE ([c]) WHERE ([a]>(0)) WITH \
             (PAD_INDEX = OFF, FILLFACTOR = 90, ALLOW_ROW_LOCKS = ON, ALLOW_PAGE_LOCKS = ON, \
             DATA_COMPRESSION = PAGE, ONLINE = ON) ON [fast fg]",
            "EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'it''s', \
             @level0type = N'SCHEMA', @level0name = N's', @level1type = N'TABLE', @level1name = N't', \
             @level2type = N'INDEX', @level2name = N'ix_a'"
        ]
    );
    // sqlparser reads no index options (WITH (...)) nor filegroups.
    let options = " WITH (PAD_INDEX = OFF, FILLFACTOR = 90, ALLOW_ROW_LOCKS = ON, ALLOW_PAGE_LOCKS = ON, \
                   DATA_COMPRESSION = PAGE, ONLINE = ON) ON [fast fg]";
    parses_without(&built[0], options);
    assert_parses(&built[1]);
    let private = isql.private_build_sql(
        "s",
        "t",
        &[&def(
            "ix",
            "CREATE INDEX [ix] ON [s].[t] ([a] ASC) WITH (PAD_INDEX = OFF)",
        )],
    );
    assert_eq!(
        private.ok(),
        Some(vec![
            "CREATE INDEX [ix] ON [s].[t] ([a] ASC) WITH (PAD_INDEX = OFF, ONLINE = OFF)"
                .to_string()
        ])
    );
    assert!(
        isql.build_sql("s", "t", &[&def("x", "DROP TABLE x")])
            .is_err()
    );
    assert!(
        isql.build_sql("s", "t", &[&def("x", "CREATE INDEX [x] ON [t] ([a])")])
            .is_err()
    );
    assert_eq!(
        with_option_for_tests("create index x on t (a) with (a = b)", "c"),
        Some("create index x on t (a) with (a = b, c)".into())
    );
    let drops = isql.drop_sql("my s", "t", &["ix]a", "b"]);
    assert_eq!(
        drops,
        [
            "DROP INDEX IF EXISTS [ix]]a] ON [my s].[t]",
            "DROP INDEX IF EXISTS [b] ON [my s].[t]"
        ]
    );
    for sql in &drops {
        assert_parses(sql);
    }
    assert!(!isql.builds_together());
    assert!(isql.build_settings(4).is_empty());
    let message = online_index_unavailable("s.t", &["ix_a", "ix_b"]);
    assert!(
        message.contains("ix_a, ix_b of s.t") && message.contains("error 1712"),
        "{message}"
    );
    assert_eq!(ONLINE_INDEX_UNAVAILABLE, "1712");
}

#[test]
fn indexes_are_listed_by_object_id_with_reasons_to_keep_them() {
    let isql = D.indexes().expect("sql server defers indexes");
    let (sql, params) = isql.list_indexes("245575913", "s", "t");
    assert_eq!(params, ["245575913"]);
    assert_eq!(sql, list_sql_for_tests());
    assert!(
        sql.contains("WHERE i.object_id = CONVERT(int, @P1)"),
        "{sql}"
    );
    assert!(sql.contains(crate::dialect::indexes::KEEP_PRIMARY), "{sql}");
    assert!(!sql.contains("KEEP_UNIQUE"), "{sql}");
    assert_parses(&sql);
    let row = |v: &[Option<&str>]| {
        v.iter()
            .map(|c| c.map(String::from))
            .collect::<crate::db::Row>()
    };
    let got = isql
        .read_indexes(&[
            row(&[Some("ix"), Some("CREATE INDEX [ix] ON [s].[t] ([a] ASC) WITH (PAD_INDEX = OFF)"), None, Some("true"), Some(""), None]),
            row(&[Some("pk"), Some("CREATE UNIQUE CLUSTERED INDEX [pk] ON [s].[t] ([id] ASC) WITH (PAD_INDEX = OFF)"), Some("primary key"), Some("true"), Some("fg2"), Some("c")]),
            row(&[Some("off"), Some("CREATE INDEX [off] ON [s].[t] ([b] ASC) WITH (PAD_INDEX = OFF)"), Some("disabled"), Some("false"), Some(""), None]),
        ])
        .expect("rows");
    assert_eq!(got[0].kept_because, None);
    assert!(got[0].valid && got[0].tablespace.is_none());
    assert_eq!(got[1].tablespace.as_deref(), Some("fg2"));
    assert_eq!(got[1].comment.as_deref(), Some("c"));
    assert!(!got[2].valid);
    assert!(isql.read_indexes(&[row(&[Some("x"), None])]).is_err());
}

// ----------------------------------------------------------------- signals

fn named(cells: &[(&str, Option<&str>)]) -> NamedRow {
    cells
        .iter()
        .map(|(n, v)| (n.to_string(), v.map(String::from)))
        .collect()
}

#[test]
fn replica_lag_from_the_local_secondary_fails_closed() {
    let s = D.signals();
    let secondary = |queue: Option<&str>, rate: Option<&str>, lag: Option<&str>| {
        named(&[
            ("role", Some("secondary")),
            ("sync_state", Some("SYNCHRONIZING")),
            ("suspended", Some("0")),
            ("suspend_reason", None),
            ("redo_queue_kb", queue),
            ("redo_rate_kb_s", rate),
            ("secondary_lag_s", lag),
        ])
    };
    assert_eq!(
        s.replica_lag(&[secondary(Some("0"), Some("0"), None)]),
        Ok(0.0)
    );
    assert_eq!(
        s.replica_lag(&[secondary(Some("500"), Some("100"), None)]),
        Ok(5.0)
    );
    assert_eq!(
        s.replica_lag(&[secondary(Some("500"), Some("100"), Some("12"))]),
        Ok(12.0)
    );
    assert!(
        s.replica_lag(&[secondary(Some("500"), Some("0"), None)])
            .unwrap_err()
            .contains("not progressing")
    );
    assert!(s.replica_lag(&[secondary(None, None, None)]).is_err());
    assert!(
        s.replica_lag(&[])
            .unwrap_err()
            .contains("not an availability-group replica")
    );
    let primary = named(&[
        ("role", Some("primary")),
        ("sync_state", Some("SYNCHRONIZED")),
    ]);
    assert!(s.replica_lag(&[primary]).unwrap_err().contains("primary"));
    let mut suspended = secondary(Some("0"), Some("0"), None);
    suspended[2].1 = Some("1".into());
    suspended[3].1 = Some("SUSPEND_FROM_USER".into());
    assert!(
        s.replica_lag(&[suspended])
            .unwrap_err()
            .contains("SUSPEND_FROM_USER")
    );
    let mut stopped = secondary(Some("0"), Some("0"), None);
    stopped[1].1 = Some("NOT SYNCHRONIZING".into());
    assert!(
        s.replica_lag(&[stopped])
            .unwrap_err()
            .contains("NOT SYNCHRONIZING")
    );

    assert_eq!(s.default_load_metric(), "active");
    for metric in ["active", "Waiting", "runnable"] {
        let sql = s.load_sql(metric).expect(metric);
        assert!(
            sql.contains("HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE')"),
            "{sql}"
        );
        assert!(sql.contains("AS value"), "{sql}");
        assert_parses(&sql);
    }
    assert_eq!(s.load_sql("Threads_running"), None);
    assert_eq!(s.load_sql("x' OR 1=1 --"), None);
}

// -------------------------------------------------------------------- wire

#[test]
fn kinds_from_sql_server_types() {
    let w = D.wire();
    let k = |t: &str| w.kind(&column("c", t));
    for (ty, kind) in [
        ("bigint", Kind::Integer),
        ("tinyint", Kind::Integer),
        ("bit", Kind::Bool),
        ("decimal(30,10)", Kind::Decimal),
        ("smallmoney", Kind::Decimal),
        ("float", Kind::Float),
        ("real", Kind::Float),
        ("nvarchar(max)", Kind::Text),
        ("char(3)", Kind::Text),
        ("xml", Kind::Text),
        ("varbinary(max)", Kind::Binary),
        ("timestamp", Kind::Binary),
        ("date", Kind::Date),
        ("time(3)", Kind::Time),
        ("datetime2(7)", Kind::Timestamp),
        ("datetime", Kind::Timestamp),
        ("smalldatetime", Kind::Timestamp),
        ("datetimeoffset(7)", Kind::TimestampTz),
        ("uniqueidentifier", Kind::Uuid),
        ("json", Kind::Json),
        ("sql_variant", Kind::Other),
        ("geography", Kind::Other),
    ] {
        assert_eq!(k(ty), kind, "{ty}");
    }
}

#[test]
fn neutral_forms_match_postgres_and_mysql() {
    let w = D.wire();
    let out = |kind| w.wire_out("[c]", kind, true);
    assert_eq!(
        out(Kind::Binary),
        "CONVERT(nvarchar(max), CONVERT(varbinary(max), [c]), 2)"
    );
    assert_eq!(out(Kind::Bool), "CONVERT(nvarchar(1), CONVERT(bit, [c]))");
    assert_eq!(out(Kind::Uuid), "LOWER(CONVERT(nvarchar(36), [c]))");
    assert_eq!(out(Kind::Date), "CONVERT(nvarchar(64), [c], 23)");
    assert_eq!(out(Kind::Decimal), "CONVERT(nvarchar(64), [c], 2)");
    let s = "CONVERT(nvarchar(64), [c], 121)";
    assert_eq!(
        out(Kind::Timestamp),
        format!(
            "LEFT({s} + N' 00:00:00', 19) + N'.' + LEFT(SUBSTRING({s}, 21, 7) + N'000000', 6) + \
             CASE WHEN SUBSTRING({s}, 27, 1) IN (N'', N'0') THEN N'' ELSE SUBSTRING({s}, 27, 1) END"
        )
    );
    let utc = "CONVERT(nvarchar(64), CONVERT(datetime2(7), SWITCHOFFSET([c], N'+00:00')), 121)";
    assert!(out(Kind::TimestampTz).starts_with(&format!("LEFT({utc} + N' 00:00:00', 19)")));
    let t = "CONVERT(nvarchar(16), CONVERT(time(7), [c]))";
    assert_eq!(
        out(Kind::Time),
        format!(
            "LEFT({t}, 15) + CASE WHEN SUBSTRING({t}, 16, 1) IN (N'', N'0') THEN N'' ELSE SUBSTRING({t}, 16, 1) END"
        )
    );
    // Own text between SQL Servers: the offset stays.
    assert_eq!(
        w.wire_out("[c]", Kind::TimestampTz, false),
        "CONVERT(nvarchar(64), [c], 121)"
    );
    for kind in [
        Kind::Integer,
        Kind::Decimal,
        Kind::Float,
        Kind::Text,
        Kind::Binary,
        Kind::Bool,
        Kind::Date,
        Kind::Time,
        Kind::Timestamp,
        Kind::TimestampTz,
        Kind::Json,
        Kind::Uuid,
        Kind::Other,
    ] {
        for neutral in [false, true] {
            assert_expr_parses(&w.wire_out("[c]", kind, neutral));
        }
    }
    assert_eq!(
        w.copy_text(&column("c", "varbinary(max)"), true),
        crate::dialect::wire::CopyText::AsSent
    );
}

#[test]
fn values_come_back_through_fixed_styles_and_assignment() {
    let w = D.wire();
    let cases = [
        ("varbinary(max)", true, "CONVERT(varbinary(max), @P3, 2)"),
        ("geography", false, "CONVERT(varbinary(max), @P3, 2)"),
        ("bit", true, "CAST(@P3 AS bit)"),
        ("date", true, "CONVERT(date, @P3, 23)"),
        ("datetime", true, "CONVERT(datetime2(7), @P3, 121)"),
        (
            "datetimeoffset(7)",
            true,
            "TODATETIMEOFFSET(CONVERT(datetime2(7), @P3, 121), N'+00:00')",
        ),
        (
            "datetimeoffset(7)",
            false,
            "CONVERT(datetimeoffset(7), @P3, 121)",
        ),
        ("time(3)", true, "CAST(@P3 AS time(7))"),
        ("uniqueidentifier", true, "CAST(@P3 AS uniqueidentifier)"),
        ("nvarchar(10)", true, "@P3"),
        ("decimal(10,2)", true, "@P3"),
        ("int", false, "@P3"),
    ];
    for (ty, neutral, expected) in cases {
        let got = w.wire_in(3, &column("c", ty), neutral);
        assert_eq!(got, expected, "{ty}");
        assert_parses(&format!("INSERT INTO [s].[t] ([c]) VALUES ({got})"));
    }
}

#[test]
fn cross_engine_verify_forms() {
    let w = D.wire();
    let trimmed = w.trim_decimal("t");
    let dotted = "t + CASE WHEN CHARINDEX(N'.', t) = 0 THEN N'.' ELSE N'' END";
    let zeros = format!("REPLACE(RTRIM(REPLACE({dotted}, N'0', N' ')), N' ', N'0')");
    let no_dot = format!("REPLACE(RTRIM(REPLACE({zeros}, N'.', N' ')), N' ', N'.')");
    assert_eq!(
        trimmed,
        format!("CASE WHEN {no_dot} = N'-0' THEN N'0' ELSE {no_dot} END")
    );
    assert_expr_parses(&trimmed);
    assert_eq!(
        w.float_bits("[f]"),
        "CONVERT(nvarchar(16), CONVERT(binary(8), CONVERT(float, [f]) + CONVERT(float, 0)), 2)"
    );
    assert_expr_parses(&w.float_bits("[f]"));
    assert_eq!(
        w.canonical_key_param(1, &column("d", "decimal(12,2)")),
        "CAST(@P1 AS decimal(38,28))"
    );
    assert_eq!(
        w.canonical_key_param(1, &column("d", "datetime2(3)")),
        "CONVERT(datetime2(7), @P1, 121)"
    );
    assert_eq!(
        w.canonical_key_param(2, &column("d", "bigint")),
        "CAST(@P2 AS bigint)"
    );
    assert_expr_parses(&w.canonical_key("[d]", Kind::Decimal));
}

// ------------------------------------------------------------------- types

#[test]
fn type_shapes_for_pre_flight() {
    use crate::dialect::types::{LengthUnit, TemporalKind, TypeShape as S};
    let cases = [
        (
            "nvarchar(50)",
            S::Text {
                max: 50,
                unit: LengthUnit::Chars,
            },
        ),
        (
            "nchar(10)",
            S::Text {
                max: 10,
                unit: LengthUnit::Chars,
            },
        ),
        ("nvarchar(max)", S::UnboundedText),
        ("ntext", S::UnboundedText),
        (
            "varchar(20)",
            S::Text {
                max: 20,
                unit: LengthUnit::Bytes,
            },
        ),
        (
            "char",
            S::Text {
                max: 1,
                unit: LengthUnit::Bytes,
            },
        ),
        ("varchar(max)", S::UnboundedText),
        (
            "decimal(18,4)",
            S::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        (
            "numeric",
            S::Decimal {
                precision: 18,
                scale: 0,
            },
        ),
        (
            "money",
            S::Decimal {
                precision: 19,
                scale: 4,
            },
        ),
        ("tinyint", S::Integer { min: 0, max: 255 }),
        ("smallint", TypeShape::integer(16, false)),
        ("int", TypeShape::integer(32, false)),
        ("bigint", TypeShape::integer(64, false)),
        ("bit", S::Integer { min: 0, max: 1 }),
        ("float", S::Float { bits: 53 }),
        ("float(24)", S::Float { bits: 24 }),
        ("real", S::Float { bits: 24 }),
        (
            "datetime2(3)",
            S::Temporal {
                kind: TemporalKind::Timestamp,
                fraction: 3,
            },
        ),
        (
            "datetimeoffset(7)",
            S::Temporal {
                kind: TemporalKind::TimestampTz,
                fraction: 7,
            },
        ),
        (
            "date",
            S::Temporal {
                kind: TemporalKind::Date,
                fraction: 0,
            },
        ),
        (
            "time(0)",
            S::Temporal {
                kind: TemporalKind::Time,
                fraction: 0,
            },
        ),
        ("datetime", S::Other),
        ("smalldatetime", S::Other),
        ("uniqueidentifier", S::Other),
    ];
    for (ty, expected) in cases {
        assert_eq!(D.type_shape(ty), expected, "{ty}");
    }
    let cond = |s: &str, t: &str| narrowing(&D, s, t, "e").map(|n| n.lossy_condition);
    assert_eq!(
        cond("nvarchar(100)", "nvarchar(10)").as_deref(),
        Some("(DATALENGTH(CONVERT(nvarchar(max), e)) / 2) > 10")
    );
    assert_eq!(
        cond("nvarchar(10)", "varchar(20)").as_deref(),
        Some("DATALENGTH(CONVERT(varchar(max), e)) > 20")
    );
    assert_eq!(cond("nvarchar(5)", "varchar(20)"), None);
    assert_eq!(
        cond("datetime2(7)", "datetime2(3)").as_deref(),
        Some(
            "(e IS NOT NULL AND ((TRY_CONVERT(datetime2(3), e)) IS NULL OR e <> (TRY_CONVERT(datetime2(3), e))))"
        )
    );
    assert_eq!(cond("datetime2(3)", "datetime2(7)"), None);
    assert_eq!(cond("int", "bigint"), None);
    assert_eq!(
        cond("bigint", "int").as_deref(),
        Some("(e < -2147483648 OR e > 2147483647)")
    );
    assert!(matches!(
        fit(&D, "datetime", "datetime2(7)", "e"),
        Fit::Unchecked(_)
    ));
    for c in [
        cond("nvarchar(100)", "nvarchar(10)"),
        cond("datetime2(7)", "datetime2(3)"),
        cond("decimal(12,3)", "decimal(10,2)"),
    ] {
        assert_parses(&format!(
            "SELECT COUNT(*) FROM [s].[t] e WHERE {}",
            c.unwrap_or_default()
        ));
    }
}

// -------------------------------------------------------------- the rest

#[test]
fn text_helpers_parse() {
    assert_eq!(D.json_text_array(&[]), "N'[]'");
    let arr = D.json_text_array(&["CONVERT(nvarchar(64), [id])".into(), "[name]".into()]);
    assert_eq!(
        arr,
        "N'[' + COALESCE(N'\"' + STRING_ESCAPE(CONVERT(nvarchar(64), [id]), 'json') + N'\"', N'null') + N',' \
         + COALESCE(N'\"' + STRING_ESCAPE([name], 'json') + N'\"', N'null') + N']'"
    );
    assert_expr_parses(&arr);
    assert_eq!(D.text("COUNT(*)"), "CONVERT(nvarchar(max), COUNT(*))");
    assert_eq!(D.typed_null("decimal(10,2)"), "CAST(NULL AS decimal(10,2))");
    assert_eq!(D.typed_null("timestamp"), "CAST(NULL AS binary(8))");
    assert_eq!(D.placeholder(12), "@P12");
    assert_eq!(D.name(), "sqlserver");
    assert!(
        D.session_dependent(&column("s", "varchar(30)"), &column("t", "datetime2(7)"))
            .is_some()
    );
    assert!(
        D.session_dependent(&column("s", "datetime2(7)"), &column("t", "datetime2(7)"))
            .is_none()
    );
    assert_eq!(D.untriggered_writes_sql(), None);
}
