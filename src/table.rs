//! What rowferry knows about a table: names, columns, unique keys. Filled
//! from the catalog by the inspector (`ops::inspect`); engine-neutral.

use crate::error::{Error, Result};

/// A table as named on the command line: `schema.table` or a bare `table`
/// (the connection's default schema). Parts may be double-quoted to carry
/// dots, quotes or spaces: `"my.schema"."Odd ""name"""`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<Self> {
        let parts = split_qualified(text).ok_or_else(|| {
            Error::input(format!(
                "cannot read the table name `{text}`: write it as schema.table or table, \
                 double-quoting a part that contains dots or quotes (\"my.schema\".\"t\")"
            ))
        })?;
        match parts.as_slice() {
            [name] => Ok(TableName {
                schema: None,
                name: name.clone(),
            }),
            [schema, name] => Ok(TableName {
                schema: Some(schema.clone()),
                name: name.clone(),
            }),
            _ => Err(Error::input(format!(
                "table name `{text}` has {} parts; write it as schema.table (quote a part \
                 that contains a dot)",
                parts.len()
            ))),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Split `a.b` / `"a.b"."c"` into unquoted parts; None if malformed.
fn split_qualified(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    /// The type as the server spells it, with modifiers (`character(4)`:
    /// a bare `character` is char(1) and would cut keys); used for casts.
    pub data_type: String,
    pub nullable: bool,
    /// Computed by the server (GENERATED ... STORED): never written.
    pub generated: bool,
    /// GENERATED ALWAYS AS IDENTITY: writing it needs an override clause.
    pub identity_always: bool,
    /// An INSERT that leaves it out still fills it: a DEFAULT, an identity
    /// or serial, AUTO_INCREMENT, or a generated column.
    #[serde(default)]
    pub has_default: bool,
    /// A PostgreSQL domain's base type (`character varying(5)` for a
    /// domain over varchar(5), through nested domains): what its values
    /// can hold. `data_type` still names the domain, for casts and DDL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_base: Option<String>,
    /// The character set of a MySQL text column (`utf8mb4`, `latin1`):
    /// what its characters are counted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
}

impl Column {
    /// The type whose shape bounds the column's values: a domain's base
    /// type, else `data_type`.
    pub fn shape_type(&self) -> &str {
        self.domain_base.as_deref().unwrap_or(&self.data_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    pub name: String,
    pub columns: Vec<String>,
    pub primary: bool,
}

/// A table found in the catalog, with its exact schema and name.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The catalog's id for the table (an oid on PostgreSQL).
    pub id: String,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Valid, immediate, non-partial unique indexes on plain columns.
    pub unique_indexes: Vec<UniqueIndex>,
    /// From the catalog's statistics, never from count(*).
    pub estimated_rows: u64,
    pub estimated_row_bytes: u64,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Find a column by the name the operator typed: exact first, then the
    /// only case-insensitive match (operators type `id` for `"ID"` rarely,
    /// `Customer_Id` for `customer_id` often).
    pub fn column_named(&self, typed: &str) -> Result<&Column> {
        if let Some(c) = self.column(typed) {
            return Ok(c);
        }
        let folded: Vec<&Column> = self
            .columns
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case(typed))
            .collect();
        match folded.as_slice() {
            [one] => Ok(one),
            _ => Err(Error::input(format!(
                "table {} has no column `{typed}`; its columns are: {}",
                self.display_name(),
                self.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// The columns chunks are cut on, in order: the primary key or `--key`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub columns: Vec<Column>,
}

impl Key {
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Choose the key: `--key` if given (NOT NULL and covered by a unique
    /// index), else the primary key. A nullable key is refused: NULLs fall
    /// outside every keyset range and would be skipped silently.
    pub fn resolve(table: &TableInfo, requested: Option<&[String]>) -> Result<Key> {
        let Some(requested) = requested else {
            let pk = table
                .unique_indexes
                .iter()
                .find(|i| i.primary)
                .ok_or_else(|| {
                    let candidates: Vec<String> = table
                        .unique_indexes
                        .iter()
                        .map(|i| format!("{} ({})", i.name, i.columns.join(", ")))
                        .collect();
                    Error::input(format!(
                        "no usable key: table {} has no primary key. Pass --key with NOT NULL \
                     column(s) covered by a unique index{}",
                        table.display_name(),
                        if candidates.is_empty() {
                            "; it has no unique index either, so add one first".to_string()
                        } else {
                            format!("; unique indexes: {}", candidates.join("; "))
                        }
                    ))
                })?;
            let columns = pk
                .columns
                .iter()
                .map(|n| table.column_named(n).cloned())
                .collect::<Result<_>>()?;
            return Ok(Key { columns });
        };
        let columns: Vec<Column> = requested
            .iter()
            .map(|n| table.column_named(n.trim()).cloned())
            .collect::<Result<_>>()
            .map_err(|e| e.context("--key"))?;
        if let Some(c) = columns.iter().find(|c| c.nullable) {
            return Err(Error::input(format!(
                "--key column `{}` of {} is nullable; rows where it is NULL fall outside every \
                 key range and would never be copied. Choose NOT NULL column(s), or run \
                 ALTER TABLE ... ALTER COLUMN ... SET NOT NULL first",
                c.name,
                table.display_name()
            )));
        }
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let mut seen = std::collections::HashSet::new();
        if !names.iter().all(|n| seen.insert(*n)) {
            return Err(Error::input(format!(
                "--key ({}) names a column twice",
                names.join(", ")
            )));
        }
        let unique = table.unique_indexes.iter().find(|i| {
            i.columns.len() == names.len() && i.columns.iter().all(|c| names.contains(&c.as_str()))
        });
        let Some(index) = unique else {
            return Err(Error::input(format!(
                "--key ({}) is not unique on {}: no valid unique index covers exactly these \
                 columns, so chunks could split duplicates. Create one (CREATE UNIQUE INDEX \
                 CONCURRENTLY ...) or choose another key",
                names.join(", "),
                table.display_name()
            )));
        };
        // Walk the key in the index's column order, so that every probe and
        // chunk is an index range scan rather than a sort.
        let columns = index
            .columns
            .iter()
            .filter_map(|n| columns.iter().find(|c| &c.name == n).cloned())
            .collect();
        Ok(Key { columns })
    }
}

/// A key value in the server's own exact text form, one entry per key
/// column. Rust never orders or compares these; it only hands them back to
/// the server as parameters.
pub type KeyValue = Vec<String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, nullable: bool) -> Column {
        Column {
            name: name.into(),
            data_type: "bigint".into(),
            nullable,
            generated: false,
            identity_always: false,
            has_default: false,
            domain_base: None,
            charset: None,
        }
    }

    fn table() -> TableInfo {
        TableInfo {
            id: "1".into(),
            schema: "s".into(),
            name: "t".into(),
            columns: vec![
                col("id", false),
                col("a", false),
                col("b", true),
                col("Mixed", false),
            ],
            unique_indexes: vec![
                UniqueIndex {
                    name: "t_pkey".into(),
                    columns: vec!["id".into()],
                    primary: true,
                },
                UniqueIndex {
                    name: "t_a_mixed".into(),
                    columns: vec!["Mixed".into(), "a".into()],
                    primary: false,
                },
                UniqueIndex {
                    name: "t_b".into(),
                    columns: vec!["b".into()],
                    primary: false,
                },
            ],
            estimated_rows: 0,
            estimated_row_bytes: 0,
        }
    }

    #[test]
    fn parses_table_names() {
        assert_eq!(
            TableName::parse("t").unwrap(),
            TableName {
                schema: None,
                name: "t".into()
            }
        );
        assert_eq!(
            TableName::parse("s.t").unwrap(),
            TableName {
                schema: Some("s".into()),
                name: "t".into()
            }
        );
        assert_eq!(
            TableName::parse(r#""my.s"."we""ird; x""#).unwrap(),
            TableName {
                schema: Some("my.s".into()),
                name: r#"we"ird; x"#.into()
            }
        );
        assert_eq!(TableName::parse("schéma.Tàble").unwrap().name, "Tàble");
        for bad in [
            "",
            "a.b.c",
            "a.",
            ".b",
            r#""unterminated"#,
            r#""a"x"#,
            "\"",
            "\"\"",
            ".",
            "..",
            "\"é",
        ] {
            assert_eq!(TableName::parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn key_defaults_to_primary_key() {
        assert_eq!(Key::resolve(&table(), None).unwrap().names(), vec!["id"]);
    }

    #[test]
    fn explicit_key_must_be_unique_and_not_null() {
        let t = table();
        // In the unique index's column order, whatever order was typed.
        let k = Key::resolve(&t, Some(&["a".into(), "mixed".into()])).unwrap();
        assert_eq!(k.names(), vec!["Mixed", "a"]);
        let e = Key::resolve(&t, Some(&["b".into()])).unwrap_err();
        assert!(e.message.contains("nullable"), "{e}");
        let e = Key::resolve(&t, Some(&["a".into()])).unwrap_err();
        assert!(e.message.contains("not unique"), "{e}");
        let e = Key::resolve(&t, Some(&["nope".into()])).unwrap_err();
        assert!(e.message.contains("no column `nope`"), "{e}");
    }

    #[test]
    fn no_primary_key_is_refused_with_candidates() {
        let mut t = table();
        t.unique_indexes.retain(|i| !i.primary);
        let e = Key::resolve(&t, None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.message.contains("no usable key") && e.message.contains("t_a_mixed"),
            "{e}"
        );
    }
}
