//! Length guards: which values rowferry checks against their column's
//! limit because a server would store a longer one changed without an
//! error (trailing spaces cut, or, MariaDB, a TEXT value's length cut),
//! how a copy's chunk statement checks them, and how a failed check is
//! told. The copy to another server checks the same values on the client
//! (`transfer::char_limit`).

use super::copy::names_column;
use crate::checkpoint::Chunk;
use crate::dialect::types::{LengthUnit, TypeShape};
use crate::dialect::wire::Kind;
use crate::dialect::{CopyStatement, Dialect, TOO_LONG, length_guard_sql};
use crate::error::Error;
use crate::pool::describe_chunk;
use crate::table::{Column, Key, TableInfo};

/// A written column whose values each chunk statement checks for length
/// (see `length_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LengthGuard {
    /// Position among the written columns.
    pub(super) at: usize,
    pub(super) column: String,
    pub(super) data_type: String,
    /// The limit, checked in characters whatever its unit.
    pub(super) max: u64,
    pub(super) unit: LengthUnit,
    /// What the advice's `--map COL=rtrim(...)` takes: the source
    /// column's name, or the `--map` expression.
    pub(super) value: String,
    /// The value is a `--map` expression (evaluated once per row).
    pub(super) mapped: bool,
    /// The column's character set (MySQL), characters are counted in.
    pub(super) charset: Option<String>,
}

/// A column's name as a `--map` expression takes it: quoted where a
/// bare name would not do (capitals, spaces, punctuation).
fn as_written(d: &dyn Dialect, name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        d.quote_ident(name)
    }
}

/// The limit that each chunk statement checks the values written into
/// `target` against: `text_limit` within one database.
pub(crate) fn length_limit(
    d: &dyn Dialect,
    from: Option<&Column>,
    target: &Column,
) -> Option<TextLimit> {
    // A binary string assigned to a text column (MySQL) is its bytes read
    // as text: they may end in spaces like any text.
    let kind = from.map(|s| match d.wire().kind(s) {
        Kind::Binary => Kind::Text,
        kind => kind,
    });
    text_limit(d, d, from, kind, target.shape_type())
}

/// The most bytes one character takes in any character set a limit in
/// bytes counts in (UTF-8, MySQL's utf8mb4).
const MAX_BYTES_PER_CHAR: u64 = 4;

/// A text column's limit, which rowferry checks values against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextLimit {
    pub max: u64,
    pub unit: LengthUnit,
}

impl TextLimit {
    /// `5 characters`, `255 bytes`.
    pub(crate) fn told(&self) -> String {
        match self.unit {
            LengthUnit::Chars => format!("{} characters", self.max),
            LengthUnit::Bytes => format!("{} bytes", self.max),
        }
    }
}

/// The limit that values written into a column of `target_type` (on
/// `td`'s engine) are checked against by rowferry, where the server would
/// not refuse every longer value itself: a `varchar(n)` (SQL Server:
/// `nvarchar(n)`) limited in characters, or a type limited in bytes
/// (MySQL's TEXT types, SQL Server's varchar(n)), whose values are
/// checked in characters (more characters than its bytes never fit).
/// The servers assign a longer value whose excess is all spaces by
/// cutting the spaces, without an error (the SQL standard; at most a
/// note), which would change the value; and MariaDB 10.11 stores a TEXT
/// column's value copied into a shorter TEXT column with its length cut
/// modulo 256 (300 characters into tinytext: 44), without a warning, where
/// the value is a column and not an expression. Not checked:
/// - a blank-padded `char(n)` (`Dialect::pads_blanks`): its trailing
///   spaces are no part of its value (PostgreSQL pads every value and
///   ignores them in comparisons; MySQL strips them on read), so cutting
///   them changes nothing, and a longer value with other characters is
///   refused by the server;
/// - values of a `kind` whose text has no trailing spaces (numbers,
///   dates), or from `from`, a source column (on `d`'s engine) whose
///   declared length bounds every value: no longer than the target's,
///   counting 4 bytes a character where the target's is in bytes.
///
/// A value of unknown kind (a `--map` expression) is checked whatever it
/// computes. Left unchecked: a value of no more characters than a bytes
/// limit, but more bytes, whose excess is all spaces.
pub(crate) fn text_limit(
    d: &dyn Dialect,
    td: &dyn Dialect,
    from: Option<&Column>,
    kind: Option<Kind>,
    target_type: &str,
) -> Option<TextLimit> {
    let TypeShape::Text { max, unit } = td.type_shape(target_type) else {
        return None;
    };
    // MySQL's LONGTEXT: no value a server sends (max_allowed_packet is
    // at most 1 GB) is longer.
    if td.pads_blanks(target_type) || max >= u64::from(u32::MAX) {
        return None;
    }
    if kind.is_some_and(|k| !matches!(k, Kind::Text | Kind::Json | Kind::Other)) {
        return None;
    }
    if let Some(s) = from
        && let TypeShape::Text {
            max: m,
            unit: source_unit,
        } = d.type_shape(s.shape_type())
    {
        // The most bytes a value of the source can take: a character
        // takes at most 4 (UTF-8).
        let bound = match (source_unit, unit) {
            (LengthUnit::Chars, LengthUnit::Bytes) => m.saturating_mul(MAX_BYTES_PER_CHAR),
            _ => m,
        };
        if bound <= max {
            return None;
        }
    }
    Some(TextLimit { max, unit })
}

/// The written columns (`columns`: target column, source expression)
/// whose values each chunk statement checks for length.
pub(super) fn length_guards(
    d: &dyn Dialect,
    source: &TableInfo,
    target: &TableInfo,
    columns: &[(String, String)],
) -> Vec<LengthGuard> {
    columns
        .iter()
        .enumerate()
        .filter_map(|(at, (name, expr))| {
            let column = target.column(name)?;
            let from = source
                .columns
                .iter()
                .find(|s| names_column(d, expr, &s.name));
            length_limit(d, from, column).map(|limit| LengthGuard {
                at,
                column: column.name.clone(),
                data_type: column.data_type.clone(),
                max: limit.max,
                unit: limit.unit,
                value: from.map_or_else(|| expr.clone(), |s| as_written(d, &s.name)),
                mapped: from.is_none(),
                charset: column.charset.clone(),
            })
        })
        .collect()
}

/// `copy` with each guarded column's expression wrapped in its length
/// guard (`dialect::length_guard_sql`), the guard's number its position
/// in `guards`.
pub(super) fn guard_lengths(
    d: &dyn Dialect,
    copy: &CopyStatement,
    guards: &[LengthGuard],
    key: &Key,
) -> CopyStatement {
    let mut guarded = copy.clone();
    for (n, g) in guards.iter().enumerate() {
        if let Some(expr) = guarded.source_exprs.get_mut(g.at) {
            *expr = length_guard_sql(d, expr, g.mapped, g.max, n, key, g.charset.as_deref());
        }
    }
    guarded
}

/// What the error of a failed length guard says (`dialect::TOO_LONG`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TooLong {
    guard: usize,
    chars: u64,
    /// Characters without the trailing spaces.
    trimmed: u64,
    /// The row's key, where the server quoted all of it.
    key: Option<Vec<String>>,
}

fn too_long(message: &str) -> Option<TooLong> {
    let (_, rest) = message.split_once(TOO_LONG)?;
    let mut parts = rest.splitn(4, ':');
    let guard = parts.next()?.parse().ok()?;
    let chars = parts.next()?.parse().ok()?;
    let trimmed = parts.next()?.parse().ok()?;
    // The JSON array, then whatever the server's message goes on with.
    let key = parts.next().and_then(|json| {
        serde_json::Deserializer::from_str(json)
            .into_iter::<Vec<Option<String>>>()
            .next()?
            .ok()
    });
    Some(TooLong {
        guard,
        chars,
        trimmed,
        key: key.map(|k| {
            k.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect()
        }),
    })
}

/// The failure of a copy's chunk whose length guard found a value
/// longer than its column holds (`synced`: sync triggers write into the
/// target too), told like the copy to another server tells it; None for
/// any other error.
pub(super) fn refusal(
    guards: &[LengthGuard],
    synced: bool,
    target: &str,
    key: &[String],
    chunk: &Chunk,
    error: &Error,
) -> Option<Error> {
    let found = too_long(&error.message)?;
    let guard = guards.get(found.guard)?;
    let row = match &found.key {
        Some(values) if values.len() == 1 && key.len() == 1 => {
            format!("the row with key {} = {}", key[0], values[0])
        }
        Some(values) => format!(
            "the row with key ({}) = ({})",
            key.join(", "),
            values.join(", ")
        ),
        None => "a row".into(),
    };
    let head = format!(
        "{}: {} column {} ({}) holds at most {}, but the value of {row} is {} characters \
         long",
        describe_chunk(chunk),
        target,
        guard.column,
        guard.data_type,
        TextLimit {
            max: guard.max,
            unit: guard.unit
        }
        .told(),
        found.chars
    );
    let told = if found.trimmed <= guard.max {
        format!(
            "{head}, its last {} trailing spaces, which the server would cut without an \
             error (rowferry copies every value exactly): nothing of this chunk was \
             written. Widen the column, or --map {}=rtrim({}) if its trailing spaces do not \
             matter, then rerun the same command to resume",
            found.chars.saturating_sub(guard.max),
            guard.column,
            guard.value
        )
    } else {
        format!(
            "{head} ({} without trailing spaces): nothing of this chunk was written. Widen \
             the column, or --map {}=<expression> with values that fit, then rerun the same \
             command to resume",
            found.trimmed, guard.column
        )
    };
    Some(Error::fatal(if synced {
        format!(
            "{told}. The sync triggers check no length: a value the application wrote \
             since they exist may already be stored cut; after the copy, `rowferry verify` \
             finds such rows"
        )
    } else {
        told
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::postgres::Postgres;
    use crate::dialect::test_support::column;

    #[test]
    fn lengths_are_guarded_where_a_server_would_cut_trailing_spaces() {
        use crate::dialect::mysql::Mysql;
        use crate::dialect::sqlserver::SqlServer;
        let limit_in = |unit: LengthUnit| {
            move |d: &dyn Dialect, source: Option<&str>, target: &str| {
                let from = source.map(|t| column("v", t));
                length_limit(d, from.as_ref(), &column("v", target)).map(|l| {
                    assert_eq!(l.unit, unit, "{target}");
                    l.max
                })
            }
        };
        let (limit, bytes) = (limit_in(LengthUnit::Chars), limit_in(LengthUnit::Bytes));
        let pg = &Postgres;
        assert_eq!(limit(pg, Some("text"), "character varying(5)"), Some(5));
        assert_eq!(
            limit(pg, Some("character varying"), "character varying(5)"),
            Some(5)
        );
        assert_eq!(
            limit(pg, Some("character varying(9)"), "character varying(5)"),
            Some(5)
        );
        assert_eq!(limit(pg, Some("json"), "character varying(5)"), Some(5));
        // A --map expression: any length, any type.
        assert_eq!(limit(pg, None, "character varying(5)"), Some(5));
        // Its declared length bounds every value.
        assert_eq!(
            limit(pg, Some("character varying(5)"), "character varying(5)"),
            None
        );
        assert_eq!(
            limit(pg, Some("character(3)"), "character varying(5)"),
            None
        );
        // Text without trailing spaces; a blank-padded or unbounded target.
        assert_eq!(limit(pg, Some("bigint"), "character varying(5)"), None);
        assert_eq!(limit(pg, Some("date"), "character varying(5)"), None);
        assert_eq!(limit(pg, Some("text"), "character(5)"), None);
        assert_eq!(limit(pg, None, "character(5)"), None);
        assert_eq!(limit(pg, None, "text"), None);
        assert_eq!(limit(pg, None, "bigint"), None);
        let my = &Mysql;
        assert_eq!(limit(my, Some("longtext"), "varchar(5)"), Some(5));
        assert_eq!(limit(my, None, "varchar(5)"), Some(5));
        assert_eq!(limit(my, Some("tinytext"), "varchar(255)"), None);
        assert_eq!(limit(my, Some("varchar(3)"), "varchar(5)"), None);
        assert_eq!(limit(my, Some("int(11)"), "varchar(5)"), None);
        assert_eq!(limit(my, Some("longtext"), "char(5)"), None);
        assert_eq!(limit(my, Some("varbinary(20)"), "varchar(5)"), Some(5));
        assert_eq!(limit(my, Some("blob"), "varchar(5)"), Some(5));
        // Limited in bytes: checked (in characters), unless the source's
        // own limit in bytes fits.
        assert_eq!(bytes(my, None, "text"), Some(65_535));
        assert_eq!(bytes(my, Some("longtext"), "tinytext"), Some(255));
        assert_eq!(bytes(my, Some("varchar(100)"), "tinytext"), Some(255));
        assert_eq!(bytes(my, Some("varchar(63)"), "tinytext"), None);
        assert_eq!(bytes(my, Some("varchar(255)"), "text"), None);
        assert_eq!(bytes(my, Some("tinytext"), "text"), None);
        let ms = &SqlServer;
        assert_eq!(limit(ms, Some("nvarchar(max)"), "nvarchar(5)"), Some(5));
        assert_eq!(limit(ms, Some("varchar(10)"), "nvarchar(5)"), Some(5));
        assert_eq!(limit(ms, Some("varchar(5)"), "nvarchar(5)"), None);
        assert_eq!(bytes(ms, None, "varchar(5)"), Some(5));
        assert_eq!(limit(ms, None, "nchar(5)"), None);
    }

    #[test]
    fn a_column_name_in_the_advice_is_quoted_where_needed() {
        assert_eq!(as_written(&Postgres, "note_2"), "note_2");
        assert_eq!(as_written(&Postgres, "Full Name"), r#""Full Name""#);
    }

    #[test]
    fn a_failed_guard_is_read_from_each_server_s_error() {
        let pg = r#"invalid input syntax for type integer: "rowferry_too_long:0:10:3:["6"]" (SQLSTATE 22P02)"#;
        assert_eq!(
            too_long(pg),
            Some(TooLong {
                guard: 0,
                chars: 10,
                trimmed: 3,
                key: Some(vec!["6".into()])
            })
        );
        let my = r#"Truncated incorrect INTEGER value: 'rowferry_too_long:2:8:8:["a:\"b'","7"]'"#;
        assert_eq!(
            too_long(my).and_then(|t| t.key),
            Some(vec![r#"a:"b'"#.into(), "7".into()])
        );
        // MySQL quotes 128 characters at most: the key may be cut.
        let cut = "Truncated incorrect INTEGER value: 'rowferry_too_long:1:300:12:[\"zzzzzz...'";
        assert_eq!(
            too_long(cut),
            Some(TooLong {
                guard: 1,
                chars: 300,
                trimmed: 12,
                key: None
            })
        );
        let ms = "Conversion failed when converting the nvarchar value 'rowferry_too_long:0:6:5:[\"1\",\"x\"]' to data type int.";
        assert_eq!(too_long(ms).map(|t| t.chars), Some(6));
        assert_eq!(
            too_long("value too long for type character varying(5)"),
            None
        );
        assert_eq!(too_long("rowferry_too_long:x:1:1:[]"), None);
    }
}
