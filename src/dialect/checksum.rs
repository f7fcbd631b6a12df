//! The shared shapes of `verify`: checksums of a key range on each side,
//! the rows of a small range for a row-by-row diff, one row by key, and
//! the split point that bisects a range. Each side is read through its
//! own key columns; bounds travel as text, as for the copy.

use super::{Dialect, PROBE_ALIAS, RangeShape, key_range, order_by};
use crate::table::Key;

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
    /// engines compute alike (see `WireSql::row_text`).
    pub neutral: bool,
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

fn filter(d: &dyn Dialect, side: &ChecksumSide, shape: RangeShape) -> String {
    let mut parts = vec![format!("({})", key_range(d, &side.key, shape))];
    parts.extend(side.where_sql.iter().map(|w| format!("({w})")));
    parts.join(" AND ")
}

/// `SELECT count, hash sum FROM table WHERE range`.
pub fn checksum_sql(d: &dyn Dialect, side: &ChecksumSide, shape: RangeShape) -> String {
    format!(
        "SELECT {}, {} FROM {} WHERE {}",
        d.text("COUNT(*)"),
        hash_sum(d, side),
        side.table,
        filter(d, side, shape)
    )
}

/// Both sides' checksums in one statement, so that on one server they
/// are read in one snapshot: a write that a trigger mirrors in the same
/// transaction is seen on both sides or on neither.
pub fn paired_checksum_sql(
    d: &dyn Dialect,
    source: &ChecksumSide,
    target: &ChecksumSide,
    shape: RangeShape,
) -> String {
    format!(
        "SELECT rowferry_s.*, rowferry_d.* FROM ({}) rowferry_s CROSS JOIN ({}) rowferry_d",
        checksum_sql(d, source, shape),
        checksum_sql(d, target, shape)
    )
}

/// Every row of a (small) range: key text, then the row's hash.
pub fn row_hashes_sql(d: &dyn Dialect, side: &ChecksumSide, shape: RangeShape) -> String {
    format!(
        "SELECT {}, MD5({}) FROM {} WHERE {}",
        side.key_text.join(", "),
        row_text(d, side),
        side.table,
        filter(d, side, shape)
    )
}

/// One row's hash by its exact key (no row: not there).
pub fn row_hash_by_key_sql(d: &dyn Dialect, side: &ChecksumSide) -> String {
    let mut parts: Vec<String> = side
        .key
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = {}", d.quote_ident(&c.name), d.key_param(i + 1, c)))
        .collect();
    parts.extend(side.where_sql.iter().map(|w| format!("({w})")));
    format!(
        "SELECT MD5({}) FROM {} WHERE {}",
        row_text(d, side),
        side.table,
        parts.join(" AND ")
    )
}

/// The key `offset` rows into a range: where to split it in two.
pub fn split_point_sql(
    d: &dyn Dialect,
    side: &ChecksumSide,
    shape: RangeShape,
    offset: u64,
) -> String {
    format!(
        "SELECT {} FROM {} {PROBE_ALIAS} WHERE {} ORDER BY {}{}",
        side.key_text.join(", "),
        side.table,
        key_range(d, &side.key, shape),
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
        let shape = RangeShape {
            has_lo: true,
            has_hi: true,
        };
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
        let tail = RangeShape {
            has_lo: true,
            has_hi: false,
        };
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
        let all = RangeShape {
            has_lo: false,
            has_hi: false,
        };
        let sql = row_hashes_sql(d, &side(d, "src", None), all);
        assert!(
            sql.starts_with("SELECT CAST(`id` AS CHAR), MD5(CONCAT_WS("),
            "{sql}"
        );
        assert!(sql.ends_with("FROM `s`.`src` WHERE (1 = 1)"), "{sql}");
    }
}
