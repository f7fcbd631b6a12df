//! SQL of deferred secondary indexes: list a table's indexes with what
//! each one guarantees, drop the deferrable ones, and build them again
//! online. Definitions are the server's own text (PostgreSQL
//! `pg_get_indexdef`, MySQL's `SHOW CREATE TABLE` lines), never rebuilt
//! from parts, so the index that comes back is the one that was dropped.

use super::Dialect;
use super::mysql::Mysql;
use super::postgres::Postgres;
use crate::db::Row;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// One index of a table, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogIndex {
    pub name: String,
    /// The server's text for it (what a rebuild runs and compares).
    pub definition: String,
    /// Why it stays in place during a copy; None: it can be deferred.
    pub kept_because: Option<String>,
    /// False for what a failed or unfinished concurrent build left
    /// (PostgreSQL `indisvalid`); MySQL indexes are always valid.
    pub valid: bool,
    /// A tablespace other than the database's default (PostgreSQL).
    pub tablespace: Option<String>,
    /// COMMENT ON INDEX (PostgreSQL; MySQL's comment is in the definition).
    pub comment: Option<String>,
}

/// What an index is made of, as far as building it elsewhere goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct IndexShape {
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub unique: bool,
    /// The key parts in order (an expression part has no column name).
    #[serde(default)]
    pub parts: Vec<KeyPart>,
    /// What the other engine cannot build alike (an expression, a
    /// partial index, a method, a prefix length...): empty when a plain
    /// list of columns, each ascending or descending, says it all.
    #[serde(default)]
    pub engine_specific: Vec<String>,
    /// Why even the same engine cannot build it again from its definition
    /// online (an exclusion constraint, MySQL FULLTEXT/SPATIAL).
    #[serde(default)]
    pub not_rebuildable: Option<String>,
    /// PostgreSQL: the definition up to and with its table's name
    /// (`CREATE UNIQUE INDEX name ON [ONLY] schema.table`), to put another
    /// name and table in its place.
    #[serde(default)]
    pub head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct KeyPart {
    /// Empty for an expression.
    #[serde(default)]
    pub column: String,
    #[serde(default)]
    pub descending: bool,
    /// MySQL: an index of the first N characters (bytes) only.
    #[serde(default)]
    pub prefix: Option<u32>,
}

/// The facts the PostgreSQL catalog query gives, before judging them.
#[derive(Debug, Deserialize)]
struct PgIndexFacts {
    primary: bool,
    unique: bool,
    method: String,
    expressions: bool,
    partial: bool,
    include: bool,
    exclusion: bool,
    head: String,
    parts: Vec<PgPartFacts>,
}

#[derive(Debug, Deserialize)]
struct PgPartFacts {
    column: Option<String>,
    descending: bool,
    /// The column's default operator class and collation.
    plain: bool,
}

impl PgIndexFacts {
    fn shape(self) -> IndexShape {
        let mut engine_specific = Vec::new();
        if self.method != "btree" {
            engine_specific.push(format!("the {} method", self.method));
        }
        if self.expressions {
            engine_specific.push("an expression".to_string());
        }
        if self.partial {
            engine_specific.push("a WHERE clause (a partial index)".to_string());
        }
        if self.include {
            engine_specific.push("INCLUDE columns".to_string());
        }
        for p in &self.parts {
            if let (Some(c), false) = (&p.column, p.plain) {
                engine_specific.push(format!(
                    "an operator class or collation of its own on {}",
                    Postgres.quote_ident(c)
                ));
            }
        }
        IndexShape {
            primary: self.primary,
            unique: self.unique,
            parts: self
                .parts
                .into_iter()
                .map(|p| KeyPart {
                    column: p.column.unwrap_or_default(),
                    descending: p.descending,
                    prefix: None,
                })
                .collect(),
            engine_specific,
            not_rebuildable: self.exclusion.then(|| {
                "an exclusion constraint: CREATE INDEX would build its index without the                  constraint"
                    .to_string()
            }),
            head: Some(self.head),
        }
    }
}

/// What a rebuild needs to create one index again exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDefinition {
    pub name: String,
    pub definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl From<&CatalogIndex> for IndexDefinition {
    fn from(c: &CatalogIndex) -> Self {
        IndexDefinition {
            name: c.name.clone(),
            definition: c.definition.clone(),
            tablespace: c.tablespace.clone(),
            comment: c.comment.clone(),
        }
    }
}

/// The engine-specific pieces. `schema` and `table` are raw names; the
/// dialect quotes them.
pub trait IndexSql: Send + Sync {
    /// The query (and its parameters) whose rows `read_indexes` turns
    /// into the table's indexes; `table_id` is the catalog id `inspect`
    /// read.
    fn list_indexes(&self, table_id: &str, schema: &str, table: &str) -> (String, Vec<String>);

    fn read_indexes(&self, rows: &[Row]) -> Result<Vec<CatalogIndex>>;

    /// What each index of the same rows is made of, by name: to build it
    /// on another table, server or engine (`copy --create-target`). An
    /// engine without these facts gives none.
    fn read_shapes(&self, _rows: &[Row]) -> Vec<(String, IndexShape)> {
        Vec::new()
    }

    /// Statements that drop these indexes, without blocking writers.
    fn drop_sql(&self, schema: &str, table: &str, names: &[&str]) -> Vec<String>;

    /// Statements that build these indexes again without blocking
    /// writers, run in order on one session.
    fn build_sql(
        &self,
        schema: &str,
        table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>>;

    /// Statements that build these indexes on a table nothing else
    /// writes: without the online machinery where that costs time
    /// (PostgreSQL's CONCURRENTLY reads the table twice).
    fn private_build_sql(
        &self,
        schema: &str,
        table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>> {
        self.build_sql(schema, table, indexes)
    }

    /// Whether one statement builds all of a table's indexes (MySQL's one
    /// ALTER TABLE, one scan) rather than one statement each.
    fn builds_together(&self) -> bool;

    /// Session settings for a build with `jobs` processes, where the
    /// server has them; a server that refuses one just builds with fewer.
    fn build_settings(&self, _jobs: usize) -> Vec<String> {
        Vec::new()
    }
}

// Pasted into a SQL string literal below: no quotes in them.
pub(super) const KEEP_PRIMARY: &str = "primary key: it guarantees one row per key, and a copy \
                            (insert-if-absent) relies on it";
pub(super) const KEEP_UNIQUE: &str = "dropping it would let duplicates in meanwhile, and a copy \
                           (insert-if-absent) may rely on it";

impl IndexSql for Postgres {
    fn list_indexes(&self, table_id: &str, _schema: &str, _table: &str) -> (String, Vec<String>) {
        // The first matching reason wins: constraints before plain
        // uniqueness, and what a concurrent build cannot reproduce
        // (partitioned parents) or what other features point at.
        let sql = format!(
            "SELECT ic.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid), \
                    CASE WHEN i.indisprimary THEN '{KEEP_PRIMARY}' \
                         WHEN con.contype = 'x' THEN 'exclusion constraint ' || quote_ident(con.conname) \
                              || ': dropping it would lose the guarantee it enforces' \
                         WHEN con.contype = 'u' THEN 'unique constraint ' || quote_ident(con.conname) \
                              || ': {KEEP_UNIQUE}' \
                         WHEN i.indisunique THEN 'unique index: {KEEP_UNIQUE}' \
                         WHEN i.indisexclusion THEN 'exclusion: dropping it would lose the guarantee it enforces' \
                         WHEN NOT i.indisvalid OR NOT i.indisready THEN 'invalid: left by a failed or \
                              unfinished concurrent build; drop it or REINDEX it yourself' \
                         WHEN ic.relkind = 'I' THEN 'on a partitioned table: CREATE INDEX CONCURRENTLY \
                              cannot build it again' \
                         WHEN i.indisreplident THEN 'replica identity: logical replication identifies \
                              rows by it' \
                         WHEN i.indisclustered THEN 'clustered: CLUSTER orders the table by it' \
                    END, \
                    i.indisvalid::text, coalesce(ts.spcname::text, ''), \
                    pg_catalog.obj_description(i.indexrelid, 'pg_class'), \
                    pg_catalog.json_build_object( \
                      'primary', i.indisprimary, 'unique', i.indisunique, 'method', am.amname::text, \
                      'expressions', i.indexprs IS NOT NULL, 'partial', i.indpred IS NOT NULL, \
                      'include', i.indnkeyatts < i.indnatts, 'exclusion', i.indisexclusion, \
                      'head', 'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END \
                              || 'INDEX ' || quote_ident(ic.relname) || ' ON ' \
                              || CASE WHEN ic.relkind = 'I' THEN 'ONLY ' ELSE '' END \
                              || i.indrelid::regclass::text, \
                      'parts', (SELECT json_agg(json_build_object( \
                                  'column', a.attname::text, \
                                  'descending', (i.indoption[(k.ord - 1)::int] & 1) = 1, \
                                  'plain', coalesce(opc.opcdefault, false) AND \
                                           coalesce(i.indcollation[(k.ord - 1)::int] \
                                                    IN (0, a.attcollation), true)) ORDER BY k.ord) \
                                FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                                LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid \
                                     AND a.attnum = k.attnum AND k.attnum <> 0 \
                                LEFT JOIN pg_catalog.pg_opclass opc ON opc.oid = i.indclass[(k.ord - 1)::int] \
                                WHERE k.ord <= i.indnkeyatts))::text \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
             LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid \
                  AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') \
             LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = ic.reltablespace \
             WHERE i.indrelid = $1::text::oid \
             ORDER BY ic.relname"
        );
        (sql, vec![table_id.to_string()])
    }

    fn read_indexes(&self, rows: &[Row]) -> Result<Vec<CatalogIndex>> {
        catalog_rows(rows)
    }

    fn read_shapes(&self, rows: &[Row]) -> Vec<(String, IndexShape)> {
        rows.iter()
            .filter_map(|r| {
                let text = |i: usize| r.get(i).cloned().flatten();
                let facts = serde_json::from_str::<PgIndexFacts>(&text(6)?).ok()?;
                Some((text(0)?, facts.shape()))
            })
            .collect()
    }

    fn drop_sql(&self, schema: &str, _table: &str, names: &[&str]) -> Vec<String> {
        // IF EXISTS is fine for a drop (a rerun after a crash finds some
        // gone); never for a build.
        names
            .iter()
            .map(|n| {
                format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    self.qualified(schema, n)
                )
            })
            .collect()
    }

    fn build_sql(
        &self,
        schema: &str,
        _table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>> {
        pg_build(self, schema, indexes, true)
    }

    fn private_build_sql(
        &self,
        schema: &str,
        _table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>> {
        pg_build(self, schema, indexes, false)
    }

    fn builds_together(&self) -> bool {
        false
    }

    fn build_settings(&self, jobs: usize) -> Vec<String> {
        vec![
            // Parallel workers for each build, beside the leader. (Two
            // concurrent builds on one table would not help: each holds a
            // self-conflicting lock, and they deadlock.)
            format!(
                "SET max_parallel_maintenance_workers = {}",
                jobs.saturating_sub(1)
            ),
            // PostgreSQL 14+: a build whose client died is cancelled within
            // a second instead of running on to the end unseen.
            "SET client_connection_check_interval = '1s'".into(),
        ]
    }
}

/// Catalog rows of the shape (name, definition, kept because, valid,
/// tablespace, comment), where the engine's list query prints them so.
pub(super) fn catalog_rows(rows: &[Row]) -> Result<Vec<CatalogIndex>> {
    rows.iter()
        .map(|r| {
            let text = |i: usize| r.get(i).cloned().flatten();
            let name = text(0).unwrap_or_default();
            Ok(CatalogIndex {
                definition: text(1).ok_or_else(|| {
                    Error::fatal(format!("internal: no definition for index {name}"))
                })?,
                name,
                kept_because: text(2),
                valid: text(3).as_deref() == Some("true"),
                tablespace: text(4).filter(|t| !t.is_empty()),
                comment: text(5),
            })
        })
        .collect()
}

/// PostgreSQL index builds from recorded definitions: `online` with
/// CONCURRENTLY (writers go on), else as recorded (one scan; blocks writes).
fn pg_build(
    d: &Postgres,
    schema: &str,
    indexes: &[&IndexDefinition],
    online: bool,
) -> Result<Vec<String>> {
    let mut out = Vec::new();

    for index in indexes {
        // pg_get_indexdef leaves the tablespace out; the session's
        // default_tablespace puts the index back where it was ('' is
        // the database's default).
        out.push(format!(
            "SET default_tablespace = {}",
            match &index.tablespace {
                Some(t) => d.quote_ident(t),
                None => "''".into(),
            }
        ));
        let statement = if online {
            concurrently(&index.definition)
        } else {
            plain(&index.definition)
        };
        out.push(statement.ok_or_else(|| {
            Error::fatal(format!(
                "the recorded definition of index {} is not a CREATE INDEX statement: {}",
                index.name, index.definition
            ))
        })?);
        if let Some(comment) = &index.comment {
            out.push(format!(
                "COMMENT ON INDEX {} IS {}",
                d.qualified(schema, &index.name),
                pg_literal(comment)
            ));
        }
    }
    Ok(out)
}

/// A recorded `CREATE [UNIQUE] INDEX ...` as it stands, checked to be one.
fn plain(definition: &str) -> Option<String> {
    definition
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("CREATE ")
        .then(|| definition.to_string())
}

/// `CREATE [UNIQUE] INDEX name ...` as `CREATE [UNIQUE] INDEX CONCURRENTLY name ...`.
fn concurrently(definition: &str) -> Option<String> {
    ["CREATE INDEX ", "CREATE UNIQUE INDEX "]
        .iter()
        .find_map(|prefix| {
            definition
                .strip_prefix(prefix)
                .map(|rest| format!("{prefix}CONCURRENTLY {rest}"))
        })
}

/// A string literal, as quote_literal writes it: E'' when it holds a
/// backslash, so it reads the same whatever standard_conforming_strings says.
fn pg_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

impl IndexSql for Mysql {
    fn list_indexes(&self, _table_id: &str, schema: &str, table: &str) -> (String, Vec<String>) {
        (
            format!("SHOW CREATE TABLE {}", self.qualified(schema, table)),
            vec![],
        )
    }

    fn read_indexes(&self, rows: &[Row]) -> Result<Vec<CatalogIndex>> {
        let text = rows
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .ok_or_else(|| Error::fatal("internal: SHOW CREATE TABLE returned no definition"))?;
        Ok(mysql_indexes(&text))
    }

    fn read_shapes(&self, rows: &[Row]) -> Vec<(String, IndexShape)> {
        let text = rows.first().and_then(|r| r.get(1).cloned().flatten());
        mysql_index_lines(text.as_deref().unwrap_or_default())
            .into_iter()
            .filter_map(|(index, shape)| Some((index.name, shape?)))
            .collect()
    }

    fn drop_sql(&self, schema: &str, table: &str, names: &[&str]) -> Vec<String> {
        if names.is_empty() {
            return Vec::new();
        }
        // One statement: the server refuses (rather than locking) if it
        // cannot do it online.
        let drops: Vec<String> = names
            .iter()
            .map(|n| format!("DROP INDEX {}", self.quote_ident(n)))
            .collect();
        vec![format!(
            "ALTER TABLE {} {}, ALGORITHM=INPLACE, LOCK=NONE",
            self.qualified(schema, table),
            drops.join(", ")
        )]
    }

    fn build_sql(
        &self,
        schema: &str,
        table: &str,
        indexes: &[&IndexDefinition],
    ) -> Result<Vec<String>> {
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        // The SHOW CREATE TABLE line is valid after ADD as it stands
        // (prefix lengths, DESC, USING, COMMENT and all). One ALTER reads
        // the table once for all of them.
        let adds: Vec<String> = indexes
            .iter()
            .map(|i| format!("ADD {}", i.definition))
            .collect();
        Ok(vec![format!(
            "ALTER TABLE {} {}, ALGORITHM=INPLACE, LOCK=NONE",
            self.qualified(schema, table),
            adds.join(", ")
        )])
    }

    fn builds_together(&self) -> bool {
        true
    }

    fn build_settings(&self, jobs: usize) -> Vec<String> {
        // MySQL 8.0.27+ sorts and builds with this many threads; MariaDB
        // has no such setting and refuses it (harmlessly).
        vec![format!("SET SESSION innodb_ddl_threads = {}", jobs.max(1))]
    }
}

/// The indexes in a `SHOW CREATE TABLE` text, with why each one stays.
pub fn mysql_indexes(create_table: &str) -> Vec<CatalogIndex> {
    mysql_index_lines(create_table)
        .into_iter()
        .map(|(index, _)| index)
        .collect()
}

/// The indexes in a `SHOW CREATE TABLE` text, each with what it is made of.
fn mysql_index_lines(create_table: &str) -> Vec<(CatalogIndex, Option<IndexShape>)> {
    let lines: Vec<&str> = create_table
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .collect();
    // InnoDB needs an index whose first columns are a foreign key's, and
    // refuses to drop the one it uses.
    let foreign_keys: Vec<(String, Vec<String>)> = lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("CONSTRAINT ")?;
            let (name, rest) = backquoted(rest)?;
            let rest = rest.trim_start().strip_prefix("FOREIGN KEY ")?;
            Some((name, column_list(rest)?))
        })
        .collect();
    let mut out = Vec::new();
    for line in lines {
        let kinds = [
            ("PRIMARY KEY ", "primary"),
            ("UNIQUE KEY ", "unique"),
            ("FULLTEXT KEY ", "fulltext"),
            ("SPATIAL KEY ", "spatial"),
            ("VECTOR KEY ", "vector"),
            ("KEY ", "plain"),
        ];
        let Some((kind, rest)) = kinds
            .iter()
            .find_map(|(prefix, kind)| line.strip_prefix(prefix).map(|r| (*kind, r)))
        else {
            continue;
        };
        let (name, parts) = if kind == "primary" {
            ("PRIMARY".to_string(), key_parts(rest))
        } else {
            let Some((name, after)) = backquoted(rest) else {
                continue;
            };
            (name, key_parts(after.trim_start()))
        };
        let columns: Vec<String> = parts.iter().flatten().map(|p| p.column.clone()).collect();
        let kept_because = match kind {
            "primary" => Some(KEEP_PRIMARY.to_string()),
            "unique" => Some(format!("unique index: {KEEP_UNIQUE}")),
            "fulltext" | "spatial" | "vector" => Some(format!(
                "{} index: the server cannot build it again without blocking writes \
                 (LOCK=NONE is refused for it)",
                kind.to_uppercase()
            )),
            _ => foreign_keys
                .iter()
                .find(|(_, fk)| columns.len() >= fk.len() && columns[..fk.len()] == fk[..])
                .map(|(fk, _)| {
                    format!(
                        "supports foreign key {}: the server refuses to drop the index a \
                         foreign key uses",
                        Mysql.quote_ident(fk)
                    )
                }),
        };
        out.push((
            CatalogIndex {
                name,
                definition: line.to_string(),
                kept_because,
                valid: true,
                tablespace: None,
                comment: None,
            },
            parts.map(|parts| mysql_shape(kind, parts)),
        ));
    }
    out
}

/// An index line's kind ("primary", "unique", "fulltext", ...) and key
/// parts, judged for building elsewhere.
fn mysql_shape(kind: &str, parts: Vec<KeyPart>) -> IndexShape {
    let mut engine_specific = Vec::new();
    let special = matches!(kind, "fulltext" | "spatial" | "vector");
    if special {
        engine_specific.push(format!("a {} index", kind.to_uppercase()));
    }
    for p in &parts {
        match (p.column.as_str(), p.prefix) {
            ("", _) => engine_specific.push("an expression".to_string()),
            (c, Some(n)) => engine_specific.push(format!(
                "a prefix length ({} of {} only)",
                n,
                Mysql.quote_ident(c)
            )),
            _ => {}
        }
    }
    IndexShape {
        primary: kind == "primary",
        unique: matches!(kind, "primary" | "unique"),
        parts,
        engine_specific,
        not_rebuildable: special.then(|| {
            format!(
                "a {} index: the server cannot build it without blocking writes (LOCK=NONE is \
                 refused for it)",
                kind.to_uppercase()
            )
        }),
        head: None,
    }
}

/// A leading `` `name` `` (backquotes doubled inside) and what follows.
fn backquoted(text: &str) -> Option<(String, &str)> {
    let rest = text.strip_prefix('`')?;
    let mut name = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().map(|(_, d)| *d) == Some('`') {
                chars.next();
                name.push('`');
            } else {
                return Some((name, &rest[i + 1..]));
            }
        } else {
            name.push(c);
        }
    }
    None
}

/// The column names of a leading `(`a`(10),`b` DESC)`; a functional key
/// part (MySQL 8) reads as an empty name, which matches no column.
fn column_list(text: &str) -> Option<Vec<String>> {
    key_parts(text).map(|parts| parts.into_iter().map(|p| p.column).collect())
}

/// The key parts of a leading `(`a`(10),`b` DESC,(lower(`c`)))`: column,
/// prefix length, direction; a functional key part (MySQL 8) has an
/// empty column name.
fn key_parts(text: &str) -> Option<Vec<KeyPart>> {
    let mut rest = text.strip_prefix('(')?;
    let mut parts = Vec::new();
    loop {
        rest = rest.trim_start();
        let (column, after) = match backquoted(rest) {
            Some((name, after)) => (name, after),
            None => (String::new(), rest),
        };
        // Skip to the next top-level comma or the closing parenthesis.
        let mut depth = 0;
        let mut quote: Option<char> = None;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '`') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') if depth > 0 => depth -= 1,
                (None, ')' | ',') => {
                    end = Some((i, c));
                    break;
                }
                _ => {}
            }
        }
        let (i, c) = end?;
        // What follows a column's name: `(10)`, ` DESC`, ` ASC`.
        let tail = after[..i].trim();
        let prefix = match column.is_empty() {
            true => None,
            false => tail
                .strip_prefix('(')
                .and_then(|t| t.split(')').next())
                .and_then(|n| n.trim().parse().ok()),
        };
        let descending = !column.is_empty() && tail.to_ascii_uppercase().ends_with("DESC");
        parts.push(KeyPart {
            column,
            descending,
            prefix,
        });
        rest = &after[i + 1..];
        if c == ')' {
            return Some(parts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, definition: &str) -> IndexDefinition {
        IndexDefinition {
            name: name.into(),
            definition: definition.into(),
            tablespace: None,
            comment: None,
        }
    }

    #[test]
    fn postgres_builds_concurrently_where_the_index_was() {
        let mut a = def(
            "orders_customer_idx",
            "CREATE INDEX orders_customer_idx ON s.orders USING btree (customer_id) WHERE (note IS NOT NULL)",
        );
        a.tablespace = Some("fast disk".into());
        a.comment = Some(r"it's a \ comment".into());
        let b = def(
            "Odd \"name\"",
            "CREATE INDEX \"Odd \"\"name\"\"\" ON s.orders USING btree (lower(status) DESC)",
        );
        assert_eq!(
            Postgres.build_sql("s", "orders", &[&a, &b]).unwrap(),
            vec![
                r#"SET default_tablespace = "fast disk""#.to_string(),
                "CREATE INDEX CONCURRENTLY orders_customer_idx ON s.orders USING btree (customer_id) WHERE (note IS NOT NULL)".into(),
                r#"COMMENT ON INDEX "s"."orders_customer_idx" IS E'it''s a \\ comment'"#.into(),
                "SET default_tablespace = ''".into(),
                "CREATE INDEX CONCURRENTLY \"Odd \"\"name\"\"\" ON s.orders USING btree (lower(status) DESC)".into(),
            ]
        );
        assert!(
            Postgres
                .build_sql("s", "t", &[&def("x", "ALTER TABLE x")])
                .is_err()
        );
        assert_eq!(pg_literal("plain"), "'plain'");
        // A table nothing else writes: the recorded statement, one scan.
        assert_eq!(
            Postgres.private_build_sql("s", "orders", &[&b]).unwrap()[1],
            "CREATE INDEX \"Odd \"\"name\"\"\" ON s.orders USING btree (lower(status) DESC)"
        );
        assert!(
            Postgres
                .private_build_sql("s", "t", &[&def("x", "ALTER TABLE x")])
                .is_err()
        );
    }

    #[test]
    fn reasons_pasted_into_sql_hold_no_quotes() {
        for reason in [KEEP_PRIMARY, KEEP_UNIQUE] {
            assert!(!reason.contains('\''), "{reason}");
        }
    }

    #[test]
    fn postgres_drops_concurrently_and_lists_by_table_id() {
        assert_eq!(
            Postgres.drop_sql("my s", "t", &["a", "b\"c"]),
            vec![
                r#"DROP INDEX CONCURRENTLY IF EXISTS "my s"."a""#.to_string(),
                r#"DROP INDEX CONCURRENTLY IF EXISTS "my s"."b""c""#.into(),
            ]
        );
        let (sql, params) = Postgres.list_indexes("16384", "s", "t");
        assert!(sql.contains("pg_get_indexdef(i.indexrelid)"), "{sql}");
        assert!(sql.contains("WHERE i.indrelid = $1::text::oid"), "{sql}");
        assert_eq!(params, vec!["16384"]);
        assert_eq!(
            Postgres.build_settings(3),
            vec![
                "SET max_parallel_maintenance_workers = 2".to_string(),
                "SET client_connection_check_interval = '1s'".into()
            ]
        );
    }

    #[test]
    fn postgres_reads_catalog_rows() {
        let row = |v: &[Option<&str>]| v.iter().map(|c| c.map(String::from)).collect::<Row>();
        let got = Postgres
            .read_indexes(&[
                row(&[
                    Some("a_idx"),
                    Some("CREATE INDEX a_idx ON s.t USING btree (a)"),
                    None,
                    Some("true"),
                    Some(""),
                    None,
                ]),
                row(&[
                    Some("t_pkey"),
                    Some("CREATE UNIQUE INDEX t_pkey ON s.t USING btree (id)"),
                    Some("primary key"),
                    Some("false"),
                    Some("ts1"),
                    Some("c"),
                ]),
            ])
            .unwrap();
        assert_eq!(got[0].kept_because, None);
        assert!(got[0].valid && got[0].tablespace.is_none());
        assert_eq!(got[1].kept_because.as_deref(), Some("primary key"));
        assert!(!got[1].valid);
        assert_eq!(
            (got[1].tablespace.as_deref(), got[1].comment.as_deref()),
            (Some("ts1"), Some("c"))
        );
    }

    const CREATE: &str = "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL,\n  `a` varchar(100) DEFAULT NULL,\n  \
        `b` int(11) DEFAULT NULL,\n  `pid` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `ua` (`a`),\n  \
        KEY `kb` (`b` DESC,`a`(10)) COMMENT 'hi, (there)',\n  KEY `kp` (`pid`,`b`),\n  KEY `we``ird` (`b`) USING BTREE,\n  \
        FULLTEXT KEY `ft` (`a`),\n  SPATIAL KEY `sg` (`g`),\n  \
        CONSTRAINT `fkp` FOREIGN KEY (`pid`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

    #[test]
    fn mysql_reads_index_lines_and_keeps_what_carries_a_guarantee() {
        let got = mysql_indexes(CREATE);
        let names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["PRIMARY", "ua", "kb", "kp", "we`ird", "ft", "sg"]
        );
        let deferred: Vec<&str> = got
            .iter()
            .filter(|i| i.kept_because.is_none())
            .map(|i| i.definition.as_str())
            .collect();
        assert_eq!(
            deferred,
            vec![
                "KEY `kb` (`b` DESC,`a`(10)) COMMENT 'hi, (there)'",
                "KEY `we``ird` (`b`) USING BTREE"
            ]
        );
        let reason = |n: &str| {
            got.iter()
                .find(|i| i.name == n)
                .and_then(|i| i.kept_because.clone())
                .unwrap_or_default()
        };
        assert!(reason("PRIMARY").starts_with("primary key"));
        assert!(reason("ua").starts_with("unique"));
        assert!(
            reason("kp").contains("foreign key `fkp`"),
            "{}",
            reason("kp")
        );
        assert!(reason("ft").starts_with("FULLTEXT"));
        assert!(reason("sg").starts_with("SPATIAL"));
    }

    #[test]
    fn mysql_drops_and_builds_in_one_online_alter() {
        assert_eq!(
            Mysql.drop_sql("d", "t", &["kb", "we`ird"]),
            vec!["ALTER TABLE `d`.`t` DROP INDEX `kb`, DROP INDEX `we``ird`, ALGORITHM=INPLACE, LOCK=NONE".to_string()]
        );
        assert!(Mysql.drop_sql("d", "t", &[]).is_empty());
        let a = def("kb", "KEY `kb` (`b` DESC,`a`(10)) COMMENT 'hi'");
        let b = def("x", "KEY `x` (`b`)");
        assert_eq!(
            Mysql.build_sql("d", "t", &[&a, &b]).unwrap(),
            vec!["ALTER TABLE `d`.`t` ADD KEY `kb` (`b` DESC,`a`(10)) COMMENT 'hi', ADD KEY `x` (`b`), ALGORITHM=INPLACE, LOCK=NONE".to_string()]
        );
        assert_eq!(
            Mysql.list_indexes("[\"d\",\"t\"]", "d", "t"),
            ("SHOW CREATE TABLE `d`.`t`".to_string(), vec![])
        );
    }

    #[test]
    fn column_lists_skip_prefixes_directions_and_expressions() {
        assert_eq!(
            column_list("(`a`(10),`b` DESC,(lower(`c`)),`d,e`) COMMENT 'x'"),
            Some(vec!["a".into(), "b".into(), "".into(), "d,e".into()])
        );
        assert_eq!(column_list("no list"), None);
        assert_eq!(backquoted("`a``b` rest"), Some(("a`b".into(), " rest")));
    }

    #[test]
    fn mysql_lines_give_shapes_for_other_engines() {
        let row: Row = vec![Some("t".into()), Some(CREATE.into())];
        let got = Mysql.read_shapes(&[row]);
        let shape = |n: &str| {
            got.iter()
                .find(|(name, _)| name == n)
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        };
        assert!(shape("PRIMARY").primary && shape("PRIMARY").unique);
        assert!(shape("ua").unique && shape("ua").engine_specific.is_empty());
        let kb = shape("kb");
        assert_eq!(
            kb.parts,
            vec![
                KeyPart {
                    column: "b".into(),
                    descending: true,
                    prefix: None
                },
                KeyPart {
                    column: "a".into(),
                    descending: false,
                    prefix: Some(10)
                }
            ]
        );
        assert_eq!(kb.engine_specific, vec!["a prefix length (10 of `a` only)"]);
        assert!(kb.not_rebuildable.is_none());
        let ft = shape("ft");
        assert_eq!(ft.engine_specific, vec!["a FULLTEXT index"]);
        assert!(ft.not_rebuildable.is_some_and(|w| w.contains("LOCK=NONE")));
        assert_eq!(
            key_parts("((lower(`c`)) DESC,`d` ASC)").map(|p| p
                .into_iter()
                .map(|p| (p.column, p.descending))
                .collect::<Vec<_>>()),
            Some(vec![("".into(), false), ("d".into(), false)])
        );
    }

    #[test]
    fn postgres_catalog_facts_give_shapes() {
        let facts = |json: &str| {
            let row: Row = vec![
                Some("i".into()),
                Some("CREATE INDEX i ON s.t USING btree (a)".into()),
                None,
                Some("true".into()),
                Some("".into()),
                None,
                Some(json.into()),
            ];
            Postgres
                .read_shapes(&[row])
                .pop()
                .map(|(_, s)| s)
                .unwrap_or_default()
        };
        let plain = facts(
            r#"{"primary": false, "unique": true, "method": "btree", "expressions": false,
                "partial": false, "include": false, "exclusion": false,
                "head": "CREATE UNIQUE INDEX i ON s.t",
                "parts": [{"column": "a", "descending": true, "plain": true}]}"#,
        );
        assert!(plain.unique && plain.engine_specific.is_empty());
        assert_eq!(plain.parts[0].column, "a");
        assert!(plain.parts[0].descending);
        assert_eq!(plain.head.as_deref(), Some("CREATE UNIQUE INDEX i ON s.t"));
        let odd = facts(
            r#"{"primary": false, "unique": false, "method": "gist", "expressions": true,
                "partial": true, "include": true, "exclusion": true, "head": "CREATE INDEX i ON s.t",
                "parts": [{"column": null, "descending": false, "plain": true},
                          {"column": "b", "descending": false, "plain": false}]}"#,
        );
        assert_eq!(
            odd.engine_specific,
            vec![
                "the gist method",
                "an expression",
                "a WHERE clause (a partial index)",
                "INCLUDE columns",
                "an operator class or collation of its own on \"b\""
            ]
        );
        assert!(odd.not_rebuildable.is_some());
        assert_eq!(odd.parts[0].column, "");
    }
}
