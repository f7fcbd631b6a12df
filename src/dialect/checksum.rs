//! The shared shapes of `verify`: checksums of a key range on each side,
//! the rows of a small range for a row-by-row diff, one row by key, and
//! the split point that bisects a range. Each side is read through its
//! own key columns; bounds travel as text, as for the copy. Across
//! engines they travel in the form both engines print and read alike
//! (`WireSql::canonical_key`), never in one engine's own text.

use super::{Dialect, PROBE_ALIAS, RangeShape, order_by};
use crate::table::{Column, Key};

/// The bounds of a range: every key `> ` each of `lower` keys and `<=`
/// each of `upper` keys, parameters numbered from 1, the lower bounds'
/// first. A range bisected is its parent's bounds plus one: where the
/// sides order keys otherwise (text under two collations), the halves
/// still split the parent's rows on both sides, so bisecting ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub lower: usize,
    pub upper: usize,
}

/// A chunk's `(lo, hi]`: at most one bound of each.
impl From<RangeShape> for Bounds {
    fn from(shape: RangeShape) -> Bounds {
        Bounds {
            lower: usize::from(shape.has_lo),
            upper: usize::from(shape.has_hi),
        }
    }
}

/// One side of a comparison: a table, its key, and the values compared.
#[derive(Debug, Clone)]
pub struct ChecksumSide {
    /// Quoted table name.
    pub table: String,
    /// This side's key columns (the target's receive the source's key).
    pub key: Key,
    /// The key columns as text, printed alike on both sides.
    pub key_text: Vec<String>,
    /// Canonical value expressions, the same columns in the same order on
    /// both sides.
    pub values: Vec<String>,
    /// The copy's `--where` (source side only).
    pub where_sql: Option<String>,
    /// The other side is another engine: rows are hashed in a form both
    /// engines compute alike (see `WireSql::row_text`), and key bounds
    /// are read in `WireSql::canonical_key`'s form.
    pub neutral: bool,
}

/// Parameter `n` as the key column `column` of `side`.
fn key_param(d: &dyn Dialect, side: &ChecksumSide, n: usize, column: &Column) -> String {
    if side.neutral {
        d.wire().canonical_key_param(n, column)
    } else {
        d.key_param(n, column)
    }
}

/// The range's bounds on `side`: the dialect's own key parameters, or
/// across engines parameters in the canonical form.
fn side_range(d: &dyn Dialect, side: &ChecksumSide, bounds: Bounds) -> String {
    let cols: Vec<String> = side
        .key
        .columns
        .iter()
        .map(|c| d.quote_ident(&c.name))
        .collect();
    let width = side.key.columns.len();
    let params = |bound: usize| -> Vec<String> {
        side.key
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| key_param(d, side, bound * width + i + 1, c))
            .collect()
    };
    let parts: Vec<String> = (0..bounds.lower + bounds.upper)
        .map(|bound| {
            let op = if bound < bounds.lower { ">" } else { "<=" };
            d.tuple_compare(&cols, op, &params(bound))
        })
        .collect();
    if parts.is_empty() {
        "1 = 1".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// `bounds` keys, each given as the planner reads them (this engine's own
/// key text, parameters numbered from 1), printed in the canonical form a
/// cross-engine verify bounds both sides with. Read on the source, with
/// no table: the same value, only spelled otherwise.
pub fn canonical_bounds_sql(d: &dyn Dialect, key: &Key, bounds: usize) -> String {
    let width = key.columns.len();
    let list: Vec<String> = (0..bounds * width)
        .map(|i| {
            let column = &key.columns[i % width];
            d.wire()
                .canonical_key(&d.key_param(i + 1, column), d.wire().kind(column))
        })
        .collect();
    format!("SELECT {}", list.join(", "))
}

fn row_text(d: &dyn Dialect, side: &ChecksumSide) -> String {
    if side.neutral {
        d.wire().row_text(&side.values)
    } else {
        d.row_text(&side.values)
    }
}

fn hash_sum(d: &dyn Dialect, side: &ChecksumSide) -> String {
    if side.neutral {
        d.wire().hash_sum(&row_text(d, side))
    } else {
        d.hash_sum(&row_text(d, side))
    }
}

fn filter(d: &dyn Dialect, side: &ChecksumSide, bounds: Bounds) -> String {
    let mut parts = vec![format!("({})", side_range(d, side, bounds))];
    parts.extend(side.where_sql.iter().map(|w| format!("({w})")));
    parts.join(" AND ")
}

/// `SELECT count, hash sum FROM table WHERE range`.
pub fn checksum_sql(d: &dyn Dialect, side: &ChecksumSide, bounds: impl Into<Bounds>) -> String {
    let bounds = bounds.into();
    format!(
        "SELECT {}, {} FROM {} WHERE {}",
        d.text("COUNT(*)"),
        hash_sum(d, side),
        side.table,
        filter(d, side, bounds)
    )
}

/// Both sides' checksums in one statement, so that on one server they
/// are read in one snapshot: a write that a trigger mirrors in the same
/// transaction is seen on both sides or on neither.
pub fn paired_checksum_sql(
    d: &dyn Dialect,
    source: &ChecksumSide,
    target: &ChecksumSide,
    bounds: impl Into<Bounds>,
) -> String {
    let bounds = bounds.into();
    format!(
        "SELECT rowferry_s.*, rowferry_d.* FROM ({}) rowferry_s CROSS JOIN ({}) rowferry_d",
        named_checksum_sql(d, source, bounds),
        named_checksum_sql(d, target, bounds)
    )
}

/// `checksum_sql` with its columns named: a derived table's columns must
/// have names on SQL Server (error 8155).
fn named_checksum_sql(d: &dyn Dialect, side: &ChecksumSide, bounds: Bounds) -> String {
    format!(
        "SELECT {} AS rowferry_n, {} AS rowferry_h FROM {} WHERE {}",
        d.text("COUNT(*)"),
        hash_sum(d, side),
        side.table,
        filter(d, side, bounds)
    )
}

/// Every row of a (small) range: key text, then the row's hash.
pub fn row_hashes_sql(d: &dyn Dialect, side: &ChecksumSide, bounds: impl Into<Bounds>) -> String {
    let bounds = bounds.into();
    format!(
        "SELECT {}, {} FROM {} WHERE {}",
        side.key_text.join(", "),
        d.row_md5(&row_text(d, side)),
        side.table,
        filter(d, side, bounds)
    )
}

/// One row's hash by its exact key (no row: not there).
pub fn row_hash_by_key_sql(d: &dyn Dialect, side: &ChecksumSide) -> String {
    let mut parts: Vec<String> = side
        .key
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} = {}",
                d.quote_ident(&c.name),
                key_param(d, side, i + 1, c)
            )
        })
        .collect();
    parts.extend(side.where_sql.iter().map(|w| format!("({w})")));
    format!(
        "SELECT {} FROM {} WHERE {}",
        d.row_md5(&row_text(d, side)),
        side.table,
        parts.join(" AND ")
    )
}

/// The key `offset` rows into a range: where to split it in two.
pub fn split_point_sql(
    d: &dyn Dialect,
    side: &ChecksumSide,
    bounds: impl Into<Bounds>,
    offset: u64,
) -> String {
    let bounds = bounds.into();
    format!(
        "SELECT {} FROM {} {PROBE_ALIAS} WHERE {} ORDER BY {}{}",
        side.key_text.join(", "),
        side.table,
        side_range(d, side, bounds),
        order_by(d, &side.key, false),
        d.rows_at_offset(1, offset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;
    use crate::dialect::test_support::{column, key};
    use crate::dialect::wire::Kind;

    fn side(d: &dyn Dialect, table: &str, where_sql: Option<&str>) -> ChecksumSide {
        ChecksumSide {
            table: d.qualified("s", table),
            key: key(&[("id", "bigint")]),
            key_text: vec![d.key_text(&column("id", "bigint"))],
            values: vec![
                d.canonical_value(&d.quote_ident("id"), &column("id", "bigint"), false),
                d.canonical_value("amount * 2", &column("doubled", "numeric(12,2)"), true),
            ],
            where_sql: where_sql.map(String::from),
            neutral: false,
        }
    }

    #[test]
    fn postgres_checksums_cast_like_the_insert_and_share_one_snapshot() {
        let d = &Postgres;
        let shape = Bounds { lower: 1, upper: 1 };
        assert_eq!(
            checksum_sql(d, &side(d, "src", Some("x > 1")), shape),
            r#"SELECT (COUNT(*))::text, coalesce(sum(hashtextextended(ROW("id", CAST((amount * 2) AS numeric(12,2)))::text, 0)::numeric), 0)::text FROM "s"."src" WHERE ("id" > $1::text::bigint AND "id" <= $2::text::bigint) AND (x > 1)"#
        );
        let paired = paired_checksum_sql(d, &side(d, "src", None), &side(d, "dst", None), shape);
        assert!(
            paired.starts_with("SELECT rowferry_s.*, rowferry_d.* FROM (SELECT"),
            "{paired}"
        );
        assert_eq!(paired.matches("$2::text::bigint").count(), 2, "{paired}");
    }

    #[test]
    fn open_ranges_and_lookups() {
        let d = &Postgres;
        let tail = Bounds { lower: 1, upper: 0 };
        assert_eq!(
            split_point_sql(d, &side(d, "dst", None), tail, 128),
            r#"SELECT "id"::text FROM "s"."dst" rowferry_t WHERE "id" > $1::text::bigint ORDER BY rowferry_t."id" LIMIT 1 OFFSET 128"#
        );
        assert_eq!(
            row_hash_by_key_sql(d, &side(d, "src", Some("x > 1"))),
            r#"SELECT MD5(ROW("id", CAST((amount * 2) AS numeric(12,2)))::text) FROM "s"."src" WHERE "id" = $1::text::bigint AND (x > 1)"#
        );
    }

    #[test]
    fn mysql_rows_are_length_prefixed_and_bytes_hexed() {
        let d = &Mysql;
        assert_eq!(
            d.canonical_value("`b`", &column("b", "varbinary(16)"), false),
            "HEX(`b`)"
        );
        assert_eq!(
            d.canonical_value("a * 2", &column("d", "decimal(12,2)"), true),
            "CAST(CAST((a * 2) AS DECIMAL(12,2)) AS CHAR)"
        );
        assert_eq!(
            d.row_text(&["x".into(), "y".into()]),
            "CONCAT_WS(',', IFNULL(CONCAT(LENGTH(x), ':', x), '-'), IFNULL(CONCAT(LENGTH(y), ':', y), '-'))"
        );
        let all = Bounds { lower: 0, upper: 0 };
        let sql = row_hashes_sql(d, &side(d, "src", None), all);
        assert!(
            sql.starts_with("SELECT CAST(`id` AS CHAR), MD5(CONCAT_WS("),
            "{sql}"
        );
        assert!(sql.ends_with("FROM `s`.`src` WHERE (1 = 1)"), "{sql}");
    }

    fn neutral_bytes_side(d: &dyn Dialect) -> ChecksumSide {
        let k = column(
            "k",
            if d.name() == "postgres" {
                "bytea"
            } else {
                "varbinary(16)"
            },
        );
        ChecksumSide {
            table: d.qualified("s", "t"),
            key: Key {
                columns: vec![k.clone()],
            },
            key_text: vec![
                d.wire()
                    .canonical_key(&d.quote_ident("k"), d.wire().kind(&k)),
            ],
            values: vec![d.wire().canonical(&d.quote_ident("x"), Kind::Float)],
            where_sql: None,
            neutral: true,
        }
    }

    #[test]
    fn across_engines_bounds_are_read_in_the_canonical_form() {
        let pg = &Postgres;
        // A bisected range: its chunk's bounds and the split keys.
        let halves = Bounds { lower: 2, upper: 1 };
        assert_eq!(
            split_point_sql(pg, &neutral_bytes_side(pg), halves, 7),
            r#"SELECT upper(encode(("k"), 'hex')) FROM "s"."t" rowferry_t WHERE "k" > decode($1::text, 'hex') AND "k" > decode($2::text, 'hex') AND "k" <= decode($3::text, 'hex') ORDER BY rowferry_t."k" LIMIT 1 OFFSET 7"#
        );
        assert_eq!(
            row_hash_by_key_sql(pg, &neutral_bytes_side(pg)),
            r#"SELECT MD5(concat_ws(',', coalesce(length(upper(encode(float8send((("x")::float8) + float8 '0'), 'hex')))::text || ':' || upper(encode(float8send((("x")::float8) + float8 '0'), 'hex')), '-'))) FROM "s"."t" WHERE "k" = decode($1::text, 'hex')"#
        );
        let my = &Mysql;
        let sql = checksum_sql(my, &neutral_bytes_side(my), Bounds { lower: 1, upper: 2 });
        assert!(
            sql.ends_with("WHERE (`k` > UNHEX(:p1) AND `k` <= UNHEX(:p2) AND `k` <= UNHEX(:p3))"),
            "{sql}"
        );
        // A chunk (lo, hi] is one bound of each, as the planner's shape.
        assert_eq!(
            Bounds::from(RangeShape {
                has_lo: false,
                has_hi: true
            }),
            Bounds { lower: 0, upper: 1 }
        );
    }

    #[test]
    fn planner_bounds_are_printed_again_in_the_canonical_form() {
        let k = Key {
            columns: vec![column("k", "bytea"), column("n", "numeric(20,4)")],
        };
        assert_eq!(
            canonical_bounds_sql(&Postgres, &k, 2),
            "SELECT upper(encode(($1::text::bytea), 'hex')), \
             regexp_replace(regexp_replace(($2::text::numeric(20,4))::text, '(\\.[0-9]*[1-9])0+$|\\.0+$', '\\1'), '^-0$', '0'), \
             upper(encode(($3::text::bytea), 'hex')), \
             regexp_replace(regexp_replace(($4::text::numeric(20,4))::text, '(\\.[0-9]*[1-9])0+$|\\.0+$', '\\1'), '^-0$', '0')"
        );
        let k = Key {
            columns: vec![column("k", "binary(16)")],
        };
        assert_eq!(
            canonical_bounds_sql(&Mysql, &k, 1),
            "SELECT HEX(UNHEX(:p1))"
        );
    }
}
