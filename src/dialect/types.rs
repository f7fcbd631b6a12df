//! A small model of column types, shared by the engines: enough to tell
//! whether a target column holds every value of a source column exactly
//! and, where it may not, the SQL condition that finds the source rows
//! whose values would be cut, rounded or refused. Pure: no I/O.

use super::Dialect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    Chars,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalKind {
    Date,
    Timestamp,
    /// PostgreSQL's timestamptz, MySQL's TIMESTAMP (stored in UTC).
    TimestampTz,
    Time,
    TimeTz,
}

/// What values a column type holds, as far as narrowing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeShape {
    Text {
        max: u64,
        unit: LengthUnit,
    },
    UnboundedText,
    Decimal {
        precision: u32,
        scale: u32,
    },
    UnboundedDecimal,
    Integer {
        min: i128,
        max: i128,
    },
    /// Binary floating point with this many significand bits (24 or 53).
    Float {
        bits: u32,
    },
    Temporal {
        kind: TemporalKind,
        fraction: u32,
    },
    Other,
}

impl TypeShape {
    pub fn integer(bits: u32, unsigned: bool) -> TypeShape {
        let bits = bits.min(64);
        if unsigned {
            TypeShape::Integer {
                min: 0,
                max: (1i128 << bits) - 1,
            }
        } else {
            TypeShape::Integer {
                min: -(1i128 << (bits - 1)),
                max: (1i128 << (bits - 1)) - 1,
            }
        }
    }
}

/// A source value that may not survive the write exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    /// What is lost, e.g. `varchar(100) -> varchar(10): values longer than
    /// 10 characters`.
    pub description: String,
    /// SQL over the source row, true where the value would not survive.
    /// Never raises an error itself (no overflowing casts).
    pub lossy_condition: String,
}

/// How a source type fits a target type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The target provably holds every source value.
    Exact,
    /// Some values may not fit; the condition finds them.
    Lossy(Narrowing),
    /// No portable check exists for this pair of types; the reason.
    Unchecked(String),
}

/// The narrowing check for writing `expr` (of `source_type`) into a column
/// of `target_type`, or None where the target holds every source value (or
/// no check exists: see `fit` to tell those apart).
pub fn narrowing(
    d: &dyn Dialect,
    source_type: &str,
    target_type: &str,
    expr: &str,
) -> Option<Narrowing> {
    match fit(d, source_type, target_type, expr) {
        Fit::Lossy(n) => Some(n),
        Fit::Exact | Fit::Unchecked(_) => None,
    }
}

/// Decimal digits of `n` (1 for 0).
fn digits(n: u128) -> u32 {
    n.checked_ilog10().map_or(1, |d| d + 1)
}

/// Longest text form of an integer in [min, max].
fn integer_text_len(min: i128, max: i128) -> u64 {
    let neg = u64::from(min < 0);
    u64::from(digits(max.unsigned_abs())).max(u64::from(digits(min.unsigned_abs())) + neg)
}

/// Whether [min, max] holds every number with `int_digits` integer digits
/// (|x| < 10^int_digits), fraction aside.
fn holds_digits(min: i128, max: i128, int_digits: u32) -> bool {
    10i128
        .checked_pow(int_digits)
        .is_some_and(|p| p - 1 <= max && -(p - 1) >= min)
}

/// Whether every integer in [min, max] has at most `int_digits` digits.
fn within_digits(min: i128, max: i128, int_digits: u32) -> bool {
    10i128
        .checked_pow(int_digits)
        .is_none_or(|p| max < p && min > -p)
}

/// `(e <= -10^k OR e >= 10^k)`: the value has more than k integer digits.
/// Spelled as plain literals: no ABS (which overflows on the smallest
/// bigint) and no POWER (a float).
fn beyond_digits(expr: &str, k: u32) -> String {
    let limit = format!("1{}", "0".repeat(k as usize));
    format!("({expr} <= -{limit} OR {expr} >= {limit})")
}

fn unit_word(unit: LengthUnit) -> &'static str {
    match unit {
        LengthUnit::Chars => "characters",
        LengthUnit::Bytes => "bytes",
    }
}

/// Whether a text type of `m` `from` units always fits `n` `to` units.
/// A character takes at most 4 bytes (utf8mb4), and at least one.
fn text_fits(m: u64, from: LengthUnit, n: u64, to: LengthUnit) -> bool {
    match (from, to) {
        (LengthUnit::Chars, LengthUnit::Bytes) => m.saturating_mul(4) <= n,
        _ => m <= n,
    }
}

/// How `expr` (a source value of `source_type`) fits a `target_type`
/// column on this engine. Types are as the catalog spells them.
pub fn fit(d: &dyn Dialect, source_type: &str, target_type: &str, expr: &str) -> Fit {
    if source_type.trim().eq_ignore_ascii_case(target_type.trim()) {
        return Fit::Exact;
    }
    let (s, t) = (d.type_shape(source_type), d.type_shape(target_type));
    let lossy = |what: String, cond: String| {
        Fit::Lossy(Narrowing {
            description: format!("{source_type} -> {target_type}: {what}"),
            lossy_condition: cond,
        })
    };
    let unchecked = || Fit::Unchecked(format!("{source_type} -> {target_type}: not checked"));
    use TypeShape as S;
    match t {
        S::UnboundedText => Fit::Exact,
        S::Text { max: n, unit } => {
            let fits = match s {
                S::Text { max: m, unit: u } => text_fits(m, u, n, unit),
                S::Integer { min, max } => integer_text_len(min, max) <= n,
                // Sign, point, and a leading zero when all digits are
                // fractional.
                S::Decimal { precision, scale } => {
                    u64::from(precision) + 1 + u64::from(scale > 0) + u64::from(scale >= precision)
                        <= n
                }
                _ => false,
            };
            if fits {
                return Fit::Exact;
            }
            // Non-text values are written as their text form.
            let text = match s {
                S::Text { .. } | S::UnboundedText => expr.to_string(),
                _ => d.text(expr),
            };
            lossy(
                format!("values longer than {n} {}", unit_word(unit)),
                format!("{} > {n}", d.length_sql(&text, unit)),
            )
        }
        S::Decimal { precision, scale } => {
            if scale > precision {
                return unchecked();
            }
            let int_digits = precision - scale;
            let (round, range, float) = match s {
                S::Decimal {
                    precision: p,
                    scale: sc,
                } => (sc > scale, p.saturating_sub(sc) > int_digits, false),
                S::UnboundedDecimal => (true, true, false),
                S::Integer { min, max } => (false, !within_digits(min, max, int_digits), false),
                S::Float { .. } => (true, true, true),
                _ => return unchecked(),
            };
            let mut what = Vec::new();
            let mut cond = Vec::new();
            if round {
                // A float is written as the decimal the server converts it
                // to; that conversion is what gets rounded.
                let x = if float {
                    d.float_as_decimal_sql(expr)
                } else {
                    expr.to_string()
                };
                what.push(format!(
                    "values with more than {scale} decimal places are rounded"
                ));
                cond.push(format!("{x} <> ROUND({x}, {scale})"));
            }
            if range {
                what.push(format!(
                    "values of 1e{int_digits} or more (in magnitude) do not fit"
                ));
                cond.push(beyond_digits(expr, int_digits));
            }
            if cond.is_empty() {
                Fit::Exact
            } else {
                lossy(what.join("; "), cond.join(" OR "))
            }
        }
        S::UnboundedDecimal => match s {
            S::Integer { .. } | S::Decimal { .. } | S::UnboundedDecimal => Fit::Exact,
            _ => unchecked(),
        },
        S::Integer { min, max } => {
            let (fraction, range) = match s {
                S::Integer {
                    min: smin,
                    max: smax,
                } => (false, smin < min || smax > max),
                S::Decimal {
                    precision: p,
                    scale: sc,
                } => (sc > 0, !holds_digits(min, max, p.saturating_sub(sc))),
                S::UnboundedDecimal | S::Float { .. } => (true, true),
                _ => return unchecked(),
            };
            let mut what = Vec::new();
            let mut cond = Vec::new();
            if fraction {
                what.push("values with a fraction are rounded".to_string());
                cond.push(format!("{expr} <> ROUND({expr})"));
            }
            if range {
                what.push(format!("values outside [{min}, {max}] do not fit"));
                cond.push(format!("({expr} < {min} OR {expr} > {max})"));
            }
            if cond.is_empty() {
                Fit::Exact
            } else {
                lossy(what.join("; "), cond.join(" OR "))
            }
        }
        S::Float { bits } => match s {
            S::Float { bits: b } if b <= bits => Fit::Exact,
            S::Integer { min, max }
                if max.unsigned_abs() <= 1u128 << bits && min.unsigned_abs() <= 1u128 << bits =>
            {
                Fit::Exact
            }
            _ => unchecked(),
        },
        S::Temporal { kind, fraction } => {
            let S::Temporal {
                kind: skind,
                fraction: sfraction,
            } = s
            else {
                return unchecked();
            };
            // A date is a timestamp at midnight. Into a timestamptz it is
            // checked all the same: MySQL's TIMESTAMP holds 1970..2038 only.
            let widening =
                skind == kind || (skind == TemporalKind::Date && kind == TemporalKind::Timestamp);
            if widening && sfraction <= fraction {
                return Fit::Exact;
            }
            let Some(cast) = d.temporal_cast_sql(expr, target_type) else {
                return unchecked();
            };
            // The cast is NULL where the target type cannot hold the value.
            let what = if skind == kind {
                format!("fractional seconds beyond {fraction} digits are lost")
            } else {
                "values the target type changes or cannot hold".to_string()
            };
            lossy(
                what,
                format!("({expr} IS NOT NULL AND (({cast}) IS NULL OR {expr} <> ({cast})))"),
            )
        }
        S::Other => unchecked(),
    }
}

/// The numbers inside the first parentheses of a type: `numeric(10,2)`
/// gives [10, 2]; None if one is not a plain number.
pub fn modifiers(data_type: &str) -> Option<Vec<u64>> {
    let open = data_type.find('(')?;
    let close = open + data_type[open..].find(')')?;
    data_type[open + 1..close]
        .split(',')
        .map(|n| n.trim().parse::<u64>().ok())
        .collect()
}

/// The type without its parenthesized modifiers, lowercase, spaces
/// collapsed: `timestamp(3) without time zone` gives `timestamp without
/// time zone`.
pub fn base_name(data_type: &str) -> String {
    let lower = data_type.trim().to_ascii_lowercase();
    let name = match (lower.find('('), lower.find(')')) {
        (Some(open), Some(close)) if close > open => {
            format!("{}{}", &lower[..open], &lower[close + 1..])
        }
        _ => lower,
    };
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the type has exactly this many numeric modifiers (or none).
fn u32_mod(m: &Option<Vec<u64>>, i: usize) -> Option<u32> {
    m.as_ref()?.get(i).and_then(|v| u32::try_from(*v).ok())
}

/// Shared parsing of `name(p,s)` decimals; None modifiers means the
/// engine's default applies (`dflt`).
pub fn decimal_shape(data_type: &str, dflt: Option<(u32, u32)>) -> TypeShape {
    let m = modifiers(data_type);
    if data_type.contains('(') && m.is_none() {
        // Negative scale and the like: not modelled.
        return TypeShape::Other;
    }
    match (u32_mod(&m, 0), u32_mod(&m, 1), dflt) {
        (Some(precision), Some(scale), _) => TypeShape::Decimal { precision, scale },
        (Some(precision), None, _) => TypeShape::Decimal {
            precision,
            scale: 0,
        },
        (None, _, Some((precision, scale))) => TypeShape::Decimal { precision, scale },
        (None, _, None) => TypeShape::UnboundedDecimal,
    }
}

/// The first modifier as a u32 (a length, a fractional precision).
pub fn first_modifier(data_type: &str) -> Option<u32> {
    u32_mod(&modifiers(data_type), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;

    fn cond(d: &dyn Dialect, s: &str, t: &str) -> Option<String> {
        narrowing(d, s, t, "e").map(|n| n.lossy_condition)
    }

    #[test]
    fn postgres_shapes() {
        let d = Postgres;
        use TypeShape as S;
        assert_eq!(
            d.type_shape("character varying(20)"),
            S::Text {
                max: 20,
                unit: LengthUnit::Chars
            }
        );
        assert_eq!(d.type_shape("character varying"), S::UnboundedText);
        assert_eq!(
            d.type_shape("character(3)"),
            S::Text {
                max: 3,
                unit: LengthUnit::Chars
            }
        );
        assert_eq!(d.type_shape("text"), S::UnboundedText);
        assert_eq!(
            d.type_shape("numeric(10,2)"),
            S::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(d.type_shape("numeric"), S::UnboundedDecimal);
        assert_eq!(d.type_shape("numeric(3,-1)"), S::Other);
        assert_eq!(d.type_shape("smallint"), TypeShape::integer(16, false));
        assert_eq!(
            d.type_shape("integer"),
            S::Integer {
                min: -2147483648,
                max: 2147483647
            }
        );
        assert_eq!(d.type_shape("bigint"), TypeShape::integer(64, false));
        assert_eq!(d.type_shape("real"), S::Float { bits: 24 });
        assert_eq!(d.type_shape("double precision"), S::Float { bits: 53 });
        assert_eq!(
            d.type_shape("timestamp(3) without time zone"),
            S::Temporal {
                kind: TemporalKind::Timestamp,
                fraction: 3
            }
        );
        assert_eq!(
            d.type_shape("timestamp with time zone"),
            S::Temporal {
                kind: TemporalKind::TimestampTz,
                fraction: 6
            }
        );
        assert_eq!(
            d.type_shape("time(0) with time zone"),
            S::Temporal {
                kind: TemporalKind::TimeTz,
                fraction: 0
            }
        );
        assert_eq!(
            d.type_shape("date"),
            S::Temporal {
                kind: TemporalKind::Date,
                fraction: 0
            }
        );
        assert_eq!(d.type_shape("integer[]"), S::Other);
        assert_eq!(d.type_shape("uuid"), S::Other);
    }

    #[test]
    fn mysql_shapes() {
        let d = Mysql;
        use TypeShape as S;
        assert_eq!(
            d.type_shape("varchar(20)"),
            S::Text {
                max: 20,
                unit: LengthUnit::Chars
            }
        );
        assert_eq!(
            d.type_shape("char(3)"),
            S::Text {
                max: 3,
                unit: LengthUnit::Chars
            }
        );
        assert_eq!(
            d.type_shape("tinytext"),
            S::Text {
                max: 255,
                unit: LengthUnit::Bytes
            }
        );
        assert_eq!(
            d.type_shape("text"),
            S::Text {
                max: 65535,
                unit: LengthUnit::Bytes
            }
        );
        assert_eq!(
            d.type_shape("longtext"),
            S::Text {
                max: 4294967295,
                unit: LengthUnit::Bytes
            }
        );
        assert_eq!(
            d.type_shape("decimal(10,2)"),
            S::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(d.type_shape("int(11)"), TypeShape::integer(32, false));
        assert_eq!(
            d.type_shape("int(10) unsigned"),
            S::Integer {
                min: 0,
                max: 4294967295
            }
        );
        assert_eq!(
            d.type_shape("tinyint(1)"),
            S::Integer {
                min: -128,
                max: 127
            }
        );
        assert_eq!(
            d.type_shape("bigint(20) unsigned"),
            S::Integer {
                min: 0,
                max: 18446744073709551615
            }
        );
        assert_eq!(
            d.type_shape("mediumint(9)"),
            S::Integer {
                min: -8388608,
                max: 8388607
            }
        );
        assert_eq!(
            d.type_shape("datetime(6)"),
            S::Temporal {
                kind: TemporalKind::Timestamp,
                fraction: 6
            }
        );
        assert_eq!(
            d.type_shape("timestamp"),
            S::Temporal {
                kind: TemporalKind::TimestampTz,
                fraction: 0
            }
        );
        assert_eq!(
            d.type_shape("time(3)"),
            S::Temporal {
                kind: TemporalKind::Time,
                fraction: 3
            }
        );
        assert_eq!(d.type_shape("double"), S::Float { bits: 53 });
        assert_eq!(d.type_shape("float"), S::Float { bits: 24 });
        assert_eq!(d.type_shape("enum('a','b')"), S::Other);
        assert_eq!(d.type_shape("varbinary(16)"), S::Other);
    }

    #[test]
    fn text_into_shorter_text() {
        let pg = Postgres;
        assert_eq!(
            cond(&pg, "character varying(100)", "character varying(10)").as_deref(),
            Some("char_length(e) > 10")
        );
        assert_eq!(
            cond(&pg, "text", "character(3)").as_deref(),
            Some("char_length(e) > 3")
        );
        assert_eq!(
            cond(&pg, "character varying(10)", "character varying(100)"),
            None
        );
        assert_eq!(cond(&pg, "character varying(100)", "text"), None);
        // Integers fit when their longest text does.
        assert_eq!(cond(&pg, "integer", "character varying(11)"), None);
        assert_eq!(
            cond(&pg, "integer", "character varying(10)").as_deref(),
            Some("char_length((e)::text) > 10")
        );
        assert_eq!(cond(&pg, "numeric(5,2)", "character varying(7)"), None);
        assert!(cond(&pg, "numeric(5,2)", "character varying(6)").is_some());

        let my = Mysql;
        assert_eq!(
            cond(&my, "varchar(100)", "varchar(10)").as_deref(),
            Some("CHAR_LENGTH(CONVERT(e USING utf8mb4)) > 10")
        );
        // 100 utf8mb4 characters may need 400 bytes.
        assert_eq!(
            cond(&my, "varchar(100)", "tinytext").as_deref(),
            Some("LENGTH(e) > 255")
        );
        assert_eq!(cond(&my, "varchar(60)", "tinytext"), None);
        assert_eq!(
            cond(&my, "text", "varchar(300)").as_deref(),
            Some("CHAR_LENGTH(CONVERT(e USING utf8mb4)) > 300")
        );
        assert_eq!(cond(&my, "tinytext", "varchar(255)"), None);
        assert_eq!(
            cond(&my, "datetime(6)", "varchar(10)").as_deref(),
            Some("CHAR_LENGTH(CONVERT(CAST(e AS CHAR) USING utf8mb4)) > 10")
        );
    }

    #[test]
    fn decimals_and_integers() {
        let pg = Postgres;
        assert_eq!(
            cond(&pg, "numeric(12,3)", "numeric(10,2)").as_deref(),
            Some("e <> ROUND(e, 2) OR (e <= -100000000 OR e >= 100000000)")
        );
        assert_eq!(
            cond(&pg, "numeric(10,3)", "numeric(10,2)").as_deref(),
            Some("e <> ROUND(e, 2)")
        );
        assert_eq!(cond(&pg, "numeric(8,2)", "numeric(10,2)"), None);
        assert_eq!(cond(&pg, "numeric(8,2)", "numeric"), None);
        assert_eq!(cond(&pg, "integer", "numeric(10,0)"), None);
        assert_eq!(cond(&pg, "integer", "numeric(12,2)"), None);
        assert_eq!(
            cond(&pg, "bigint", "numeric(12,2)").as_deref(),
            Some("(e <= -10000000000 OR e >= 10000000000)")
        );
        assert_eq!(
            cond(&pg, "numeric", "numeric(4,4)").as_deref(),
            Some("e <> ROUND(e, 4) OR (e <= -1 OR e >= 1)")
        );
        // A float is compared as the decimal the server makes of it.
        assert_eq!(
            cond(&pg, "double precision", "numeric(6,2)").as_deref(),
            Some(
                "CAST(e AS numeric) <> ROUND(CAST(e AS numeric), 2) OR (e <= -10000 OR e >= 10000)"
            )
        );
        assert_eq!(cond(&pg, "smallint", "integer"), None);
        assert_eq!(
            cond(&pg, "bigint", "integer").as_deref(),
            Some("(e < -2147483648 OR e > 2147483647)")
        );
        assert_eq!(
            cond(&pg, "numeric(12,2)", "bigint").as_deref(),
            Some("e <> ROUND(e)")
        );
        assert_eq!(cond(&pg, "numeric(18,0)", "bigint"), None);
        assert_eq!(
            cond(&pg, "numeric(20,0)", "bigint").as_deref(),
            Some("(e < -9223372036854775808 OR e > 9223372036854775807)")
        );
        assert_eq!(
            cond(&pg, "real", "integer").as_deref(),
            Some("e <> ROUND(e) OR (e < -2147483648 OR e > 2147483647)")
        );
        assert_eq!(cond(&pg, "integer", "double precision"), None);
        assert!(matches!(
            fit(&pg, "bigint", "double precision", "e"),
            Fit::Unchecked(_)
        ));
        assert!(matches!(
            fit(&pg, "text", "integer", "e"),
            Fit::Unchecked(_)
        ));

        let my = Mysql;
        assert_eq!(
            cond(&my, "decimal(10,3)", "decimal(10,2)").as_deref(),
            Some("e <> ROUND(e, 2)")
        );
        assert_eq!(cond(&my, "int(10) unsigned", "bigint(20)"), None);
        assert_eq!(
            cond(&my, "int(11)", "int(10) unsigned").as_deref(),
            Some("(e < 0 OR e > 4294967295)")
        );
        assert_eq!(
            cond(&my, "bigint(20) unsigned", "bigint(20)").as_deref(),
            Some("(e < -9223372036854775808 OR e > 9223372036854775807)")
        );
        assert_eq!(
            cond(&my, "double", "decimal(6,2)").as_deref(),
            Some("e <> ROUND(e, 2) OR (e <= -10000 OR e >= 10000)")
        );
        assert_eq!(cond(&my, "tinyint(1)", "smallint(6)"), None);
    }

    #[test]
    fn temporal_precision() {
        let pg = Postgres;
        assert_eq!(
            cond(
                &pg,
                "timestamp without time zone",
                "timestamp(3) without time zone"
            )
            .as_deref(),
            Some(
                "(e IS NOT NULL AND ((CAST(e AS timestamp(3) without time zone)) IS NULL OR \
                 e <> (CAST(e AS timestamp(3) without time zone))))"
            )
        );
        assert_eq!(
            cond(
                &pg,
                "timestamp(3) without time zone",
                "timestamp without time zone"
            ),
            None
        );
        assert_eq!(cond(&pg, "date", "timestamp without time zone"), None);
        assert!(cond(&pg, "timestamp with time zone", "date").is_some());

        let my = Mysql;
        assert_eq!(
            cond(&my, "datetime(6)", "datetime(3)").as_deref(),
            Some(
                "(e IS NOT NULL AND ((CAST(e AS DATETIME(3))) IS NULL OR e <> (CAST(e AS DATETIME(3)))))"
            )
        );
        assert_eq!(cond(&my, "datetime(3)", "datetime(6)"), None);
        assert_eq!(cond(&my, "time", "time(3)"), None);
        // TIMESTAMP holds 1970..2038 only: the cast is NULL outside.
        let c = cond(&my, "datetime", "timestamp").unwrap();
        assert!(c.contains("e < '2038-01-19 03:14:08'"), "{c}");
        // MySQL's TIMESTAMP cannot hold every DATE.
        assert!(cond(&my, "date", "timestamp").is_some());
        assert_eq!(cond(&my, "date", "datetime"), None);
    }

    #[test]
    fn identical_or_unknown_types() {
        let pg = Postgres;
        assert_eq!(fit(&pg, "uuid", "uuid", "e"), Fit::Exact);
        assert_eq!(fit(&pg, "jsonb", "text", "e"), Fit::Exact);
        assert!(matches!(fit(&pg, "jsonb", "json", "e"), Fit::Unchecked(_)));
        assert_eq!(
            fit(&Mysql, "enum('a','b')", "enum('a','b')", "e"),
            Fit::Exact
        );
    }
}
