//! Dual-write sync on SQL Server: one set-based AFTER INSERT, UPDATE,
//! DELETE trigger per source table. SQL Server fires it once per
//! statement with every changed row in `inserted` (new versions) and
//! `deleted` (old versions); read under the source's name (`inserted AS
//! [orders]`), those are the tables the copy's own `--map` and `--where`
//! apply to. Three statements bring the target's rows for every key in
//! either table to the new versions:
//!
//! 1. DELETE the target rows whose key was in `deleted` (or, with
//!    `--where`, in `inserted`) and is not a key of a new version that
//!    passes `--where`: deleted rows, old keys of a key change, and rows
//!    that stopped matching `--where`;
//! 2. UPDATE the target rows whose key is a new version's (passing
//!    `--where`) to that version;
//! 3. INSERT the new versions (passing `--where`) whose key is not in the
//!    target yet.
//!
//! Keys are unique in `deleted` and in `inserted`, so the result is
//! exact whatever one statement did: `UPDATE t SET id = id + 1` over keys
//! 1..3 deletes 1, updates 2 and 3 to the rows that were 1 and 2, and
//! inserts 4. The UPDATE reads the new versions through a derived table
//! of target columns, so a source column name that the target also has
//! is never ambiguous.
//!
//! Limits: an AFTER trigger cannot read text/ntext/image columns from
//! `inserted` (SQL Server refuses to create it; nvarchar(max) and
//! varbinary(max) are fine). A trigger that writes an identity column
//! turns IDENTITY_INSERT on for the target, which a session can have on
//! for one table only: an application statement run while that session
//! has IDENTITY_INSERT on for another table fails (error 8107) instead of
//! being mirrored. Bulk loads without FIRE_TRIGGERS, TRUNCATE and
//! partition SWITCH are never seen by any trigger.

use super::SqlServer;
use crate::dialect::sync::{SyncObject, SyncTriggers};
use crate::dialect::{CopyStatement, Dialect};

/// Where the trigger's body starts in its definition: `sync_catalog_sql`
/// returns the definition from here, whatever the header says (SQL
/// Server stores the text of the CREATE as it was sent).
pub(super) const BODY_MARKER: &str = "-- rowferry sync body";

/// (schema, table, base name) -> (kind, name, body): every trigger named
/// `rowferry_sync_...` on the table, its body from the marker on, or
/// "disabled" (`sync install` then replaces it).
pub(super) const CATALOG_SQL: &str = "SELECT N'trigger', tr.name, \
            CASE WHEN tr.is_disabled = 1 THEN N'disabled' \
                 ELSE SUBSTRING(m.definition, NULLIF(CHARINDEX(N'-- rowferry sync body', m.definition), 0), 2147483647) END \
     FROM sys.triggers tr \
     JOIN sys.sql_modules m ON m.object_id = tr.object_id \
     JOIN sys.tables t ON t.object_id = tr.parent_id \
     JOIN sys.schemas s ON s.schema_id = t.schema_id \
     WHERE s.name = @P1 AND t.name = @P2 AND tr.name LIKE N'rowferry[_]sync[_]%' \
     ORDER BY 1, 2";

pub(super) fn sync_objects(d: &SqlServer, s: &SyncTriggers) -> Vec<SyncObject> {
    let body = body(d, s);
    // IDENTITY_INSERT needs ALTER on the target (or owning it); the
    // application's user rarely has it, so a trigger that writes an
    // identity column runs as the table's owner (as PostgreSQL's function
    // is SECURITY DEFINER). Plain DML reaches a target of the same owner
    // through ownership chaining without it.
    let execute_as = if s.copy.overriding_identity {
        " WITH EXECUTE AS OWNER"
    } else {
        ""
    };
    let statement = |verb: &str| {
        format!(
            "{verb} TRIGGER {} ON {}{execute_as} AFTER INSERT, UPDATE, DELETE AS\n{body}",
            d.qualified(&s.source_schema, &s.name),
            s.source
        )
    };
    vec![SyncObject {
        kind: "trigger",
        name: s.name.clone(),
        create: vec![statement("CREATE")],
        // Atomic, and keeps the trigger's permissions (2016 SP1+).
        replace: vec![statement("CREATE OR ALTER")],
        body,
    }]
}

/// The trigger's body, from `BODY_MARKER` to its END.
pub(super) fn body(d: &SqlServer, s: &SyncTriggers) -> String {
    let copy = &s.copy;
    let src = d.quote_ident(&s.source_name);
    let matches_where = |prefix: &str| match &copy.where_sql {
        Some(w) => format!("{prefix}({w})"),
        None => String::new(),
    };
    // rowferry_dst.[target key] = [source].[source key]
    let on_source = copy
        .key_match
        .iter()
        .map(|(t, k)| format!("rowferry_dst.{t} = {src}.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let in_table = |table: &str, extra: &str| {
        format!("SELECT 1 FROM {table} AS {src} WHERE {on_source}{extra}")
    };

    let gone = if copy.where_sql.is_some() {
        format!(
            "(EXISTS ({}) OR EXISTS ({}))",
            in_table("deleted", ""),
            in_table("inserted", "")
        )
    } else {
        format!("EXISTS ({})", in_table("deleted", ""))
    };
    let delete = format!(
        "DELETE rowferry_dst FROM {} AS rowferry_dst WHERE {gone} AND NOT EXISTS ({})",
        copy.target,
        in_table("inserted", &matches_where(" AND "))
    );

    let mut statements = vec![
        "SET NOCOUNT ON".to_string(),
        "IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN"
            .to_string(),
        delete,
    ];
    if !s.update_columns.is_empty() {
        let new_rows = format!(
            "SELECT {} FROM inserted AS {src}{}",
            copy.source_exprs
                .iter()
                .zip(&copy.target_columns)
                .map(|(e, t)| format!("{e} AS {t}"))
                .collect::<Vec<_>>()
                .join(", "),
            matches_where(" WHERE ")
        );
        let set = s
            .update_columns
            .iter()
            .map(|c| format!("{c} = rowferry_new.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let on_new = copy
            .key_match
            .iter()
            .map(|(t, _)| format!("rowferry_dst.{t} = rowferry_new.{t}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        statements.push(format!(
            "UPDATE rowferry_dst SET {set} FROM {} AS rowferry_dst INNER JOIN ({new_rows}) AS \
             rowferry_new ON {on_new}",
            copy.target
        ));
    }
    let absent = format!(
        "NOT EXISTS (SELECT 1 FROM {} AS rowferry_dst WHERE {on_source})",
        copy.target
    );
    let insert = CopyStatement {
        source: format!("inserted AS {src}"),
        lock_source_rows: false,
        skip_key_conflicts: false,
        ..copy.clone()
    };
    let filter = match &copy.where_sql {
        Some(w) => format!("({w}) AND {absent}"),
        None => absent,
    };
    statements.push(d.insert_select(&insert, &filter));
    format!("{BODY_MARKER}\nBEGIN\n  {};\nEND", statements.join(";\n  "))
}

/// The catalog query's LIKE pattern matches `SYNC_PREFIX` (checked by a
/// test), and its marker is `BODY_MARKER`.
#[cfg(test)]
pub(super) fn catalog_agrees() -> bool {
    use super::nliteral;
    use crate::dialect::sync::SYNC_PREFIX;
    CATALOG_SQL.contains(&format!("LIKE N'{}%'", SYNC_PREFIX.replace('_', "[_]")))
        && CATALOG_SQL.contains(&nliteral(BODY_MARKER))
}
