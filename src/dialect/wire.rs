//! How values travel between servers: each column's value is read from
//! the source as text in a form the target can take back exactly, and
//! written with the conversion back. Between two servers of one engine
//! that is the engine's own text form; between engines it is a neutral
//! form per kind of value (hex bytes, 0/1 booleans, UTC timestamps with
//! microseconds). A kind with no faithful counterpart is refused.

use super::mysql::Mysql;
use super::postgres::Postgres;
use crate::table::Column;

/// What a column holds, in terms both engines share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Decimal,
    Float,
    Text,
    Binary,
    Bool,
    Date,
    Time,
    /// Without a time zone (PostgreSQL timestamp, MySQL DATETIME).
    Timestamp,
    /// An instant (PostgreSQL timestamptz, MySQL TIMESTAMP): travels as UTC.
    TimestampTz,
    Json,
    Uuid,
    /// Anything else (arrays, intervals, ranges, geometry, user types):
    /// only between servers of one engine.
    Other,
}

pub trait WireSql: Send + Sync {
    /// The kind of a column, from its type as the catalog prints it.
    fn kind(&self, column: &Column) -> Kind;

    /// `expr` (of `kind`) as text to send: the neutral form when the
    /// target is another engine, else this engine's own text.
    fn wire_out(&self, expr: &str, kind: Kind, neutral: bool) -> String;

    /// Parameter `n` (1-based) turned back into `column`'s type on this
    /// engine, from text sent by `wire_out` (neutral or not).
    fn wire_in(&self, n: usize, column: &Column, neutral: bool) -> String;

    /// How a value sent by `wire_out` is rewritten, on the client, into
    /// the text `column`'s input function reads (PostgreSQL COPY text):
    /// the same conversion `wire_in` makes with SQL.
    fn copy_text(&self, column: &Column, neutral: bool) -> CopyText;

    /// One text per row from neutral values, the same on every engine:
    /// each value prefixed with its length in characters, NULL as `-`.
    fn row_text(&self, values: &[String]) -> String;

    /// The sum of each row text's first 60 bits of MD5 (and so the same
    /// number on every engine), as text.
    fn hash_sum(&self, row_text: &str) -> String;

    // Verify across engines only (copies never use these): forms that
    // both engines print alike for equal values, where their neutral
    // forms may differ (`1.50` and `1.500`; `1e-05` and `0.00001`).

    /// `expr` (of `kind`) as text equal on both engines for equal values:
    /// the neutral form, except decimals trimmed (`trim_decimal`) and
    /// doubles as their bits (`float_bits`).
    fn canonical(&self, expr: &str, kind: Kind) -> String {
        match kind {
            Kind::Float => self.float_bits(expr),
            _ => self.canonical_key(expr, kind),
        }
    }

    /// A key column as text both engines print alike and read back
    /// exactly with `canonical_key_param`: how a cross-engine verify's
    /// chunk bounds and row keys travel. (Floating-point keys have no
    /// such form: a verify across engines refuses them.)
    fn canonical_key(&self, expr: &str, kind: Kind) -> String {
        let text = self.wire_out(expr, kind, true);
        match kind {
            Kind::Decimal => self.trim_decimal(&text),
            _ => text,
        }
    }

    /// Parameter `n` (1-based), a key in `canonical_key`'s form, as
    /// `column`'s type for a range comparison that uses its index.
    fn canonical_key_param(&self, n: usize, column: &Column) -> String;

    /// Decimal text (never an exponent) without trailing fractional zeros
    /// or a trailing dot, and `-0` as `0`: `1.500` and `1.5` alike.
    fn trim_decimal(&self, text: &str) -> String;

    /// A double (a float widened exactly) as its IEEE-754 bits in 16
    /// upper-case hex digits, zero of either sign as `0000000000000000`.
    /// The engines print some doubles with other digits (PostgreSQL
    /// `5.2990648348713776e+16`, MariaDB `5.299064834871378e16`) and
    /// switch to exponents at other magnitudes, so no text of theirs is
    /// common; the bits are.
    fn float_bits(&self, expr: &str) -> String;
}

/// The kind both sides of a cross-engine verify print a column as, for
/// `canonical`: the same kind, or a number written into a wider number
/// kind (as the INSERT converts it). None: each side prints its own
/// neutral form, as the copy sends it (a number into a text column).
pub fn shared_kind(source: Kind, target: Kind) -> Option<Kind> {
    use Kind::*;
    match (source, target) {
        (a, b) if a == b && a != Other => Some(a),
        (Integer | Decimal, Float) | (Float, Integer | Decimal) => Some(Float),
        (Integer, Decimal) | (Decimal, Integer) => Some(Decimal),
        _ => None,
    }
}

/// A client-side rewrite of one value's wire text for COPY's text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyText {
    AsSent,
    /// Neutral hex digits into bytea's `\x` form.
    HexBytes,
    /// A neutral UTC instant (no offset) with `+00` appended.
    Utc,
}

impl CopyText {
    /// `value` as the column's input function reads it.
    pub fn apply(self, value: &str) -> std::borrow::Cow<'_, str> {
        match self {
            CopyText::AsSent => value.into(),
            CopyText::HexBytes => format!("\\x{value}").into(),
            CopyText::Utc => format!("{value}+00").into(),
        }
    }
}

/// Append `value` as one field of a tab-separated row, as MySQL's LOAD
/// DATA (`load_data_local`) and PostgreSQL's COPY text both read it:
/// backslash, tab, newline, carriage return and NUL escaped (`\\`, `\t`,
/// `\n`, `\r`, `\0`), NULL as `\N`. (PostgreSQL text holds no NUL: COPY
/// refuses `\0` as an INSERT refuses the byte.)
pub fn tab_separated_field(value: Option<&str>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    // UTF-8 continuation bytes are >= 0x80: never one of these.
    let bytes = value.as_bytes();
    let mut start = 0;
    for (at, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"\\0",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(escaped);
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether a value of `from` can be written into a column of `to` on
/// another engine without loss (same-engine copies always can).
pub fn faithful(from: Kind, to: Kind) -> bool {
    use Kind::*;
    from == to && from != Other
        || matches!(
            (from, to),
            (Integer, Decimal | Float | Text)
                | (Decimal | Float, Text)
                | (Bool, Integer | Text)
                | (Integer, Bool)
                | (Date | Time | Timestamp | TimestampTz | Json | Uuid, Text)
                | (Text, Json | Uuid)
                | (Timestamp, TimestampTz)
                | (TimestampTz, Timestamp)
        )
}

fn base(ty: &str) -> String {
    let ty = ty.to_ascii_lowercase();
    match ty.find('(') {
        Some(at) => ty[..at].trim().to_string(),
        None => ty.trim().to_string(),
    }
}

impl WireSql for Postgres {
    fn kind(&self, column: &Column) -> Kind {
        let ty = column.data_type.to_ascii_lowercase();
        if ty.ends_with("[]") {
            return Kind::Other;
        }
        match base(&ty).as_str() {
            "smallint" | "integer" | "bigint" => Kind::Integer,
            "numeric" => Kind::Decimal,
            "real" | "double precision" => Kind::Float,
            "text" | "character varying" | "character" | "\"char\"" | "citext" | "name" => {
                Kind::Text
            }
            "bytea" => Kind::Binary,
            "boolean" => Kind::Bool,
            "date" => Kind::Date,
            "json" | "jsonb" => Kind::Json,
            "uuid" => Kind::Uuid,
            _ if ty.starts_with("time") && ty.ends_with("without time zone") => {
                if ty.starts_with("timestamp") {
                    Kind::Timestamp
                } else {
                    Kind::Time
                }
            }
            _ if ty.starts_with("timestamp") && ty.ends_with("with time zone") => Kind::TimestampTz,
            _ => Kind::Other,
        }
    }

    fn wire_out(&self, expr: &str, kind: Kind, neutral: bool) -> String {
        if !neutral {
            return format!("({expr})::text");
        }
        match kind {
            // Upper case, as MySQL's HEX() prints it.
            Kind::Binary => format!("upper(encode(({expr}), 'hex'))"),
            Kind::Bool => format!("(({expr})::int)::text"),
            // Every bit, as double precision (MySQL prints FLOAT so too),
            // with the exponent written as MySQL writes it (e308, e-5).
            Kind::Float => format!(
                "regexp_replace(replace((({expr})::float8)::text, 'e+', 'e'), 'e(-?)0+([0-9])', 'e\\1\\2')"
            ),
            // Infinities and years BC have no neutral form: they travel as
            // PostgreSQL prints them, which the other engine refuses.
            Kind::Timestamp => format!(
                "CASE WHEN isfinite({expr}) AND ({expr}) >= timestamp '0001-01-01' \
                 THEN to_char(({expr}), 'YYYY-MM-DD HH24:MI:SS.US') ELSE ({expr})::text END"
            ),
            Kind::TimestampTz => format!(
                "CASE WHEN isfinite({expr}) AND ({expr}) >= timestamptz '0001-01-01 00:00:00+00' \
                 THEN to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
                 ELSE ({expr})::text END"
            ),
            // Microseconds always, as MySQL's TIME_FORMAT prints them;
            // 24:00:00 (a date plus it is the next midnight) spelled out.
            Kind::Time => format!(
                "CASE WHEN ({expr}) = time '24:00:00' THEN '24:00:00.000000' \
                 ELSE to_char(date '2000-01-01' + ({expr}), 'HH24:MI:SS.US') END"
            ),
            _ => format!("({expr})::text"),
        }
    }

    fn row_text(&self, values: &[String]) -> String {
        let parts: Vec<String> = values
            .iter()
            .map(|v| format!("coalesce(length({v})::text || ':' || {v}, '-')"))
            .collect();
        format!("concat_ws(',', {})", parts.join(", "))
    }

    fn hash_sum(&self, row_text: &str) -> String {
        format!("coalesce(sum(('x' || left(md5({row_text}), 15))::bit(60)::bigint), 0)::text")
    }

    fn wire_in(&self, n: usize, column: &Column, neutral: bool) -> String {
        let ty = &column.data_type;
        match (neutral, self.kind(column)) {
            (true, Kind::Binary) => format!("decode(${n}::text, 'hex')"),
            // Neutral instants are UTC without an offset.
            (true, Kind::TimestampTz) => format!("(${n}::text || '+00')::{ty}"),
            // Text is assigned, not cast: an explicit cast to varchar(n)
            // would cut a longer value, the INSERT's assignment refuses it.
            (_, Kind::Text) => format!("${n}::text"),
            _ => format!("${n}::text::{ty}"),
        }
    }

    fn copy_text(&self, column: &Column, neutral: bool) -> CopyText {
        match (neutral, self.kind(column)) {
            (true, Kind::Binary) => CopyText::HexBytes,
            (true, Kind::TimestampTz) => CopyText::Utc,
            _ => CopyText::AsSent,
        }
    }

    fn canonical_key_param(&self, n: usize, column: &Column) -> String {
        match self.kind(column) {
            Kind::Binary => format!("decode(${n}::text, 'hex')"),
            Kind::TimestampTz => format!("(${n}::text || '+00')::timestamp with time zone"),
            // Without the column's modifier, so that a bound from the
            // other engine is compared as it is, never rounded or cut.
            Kind::Decimal | Kind::Timestamp | Kind::Time | Kind::Text => {
                format!("${n}::text::{}", unmodified(&column.data_type))
            }
            _ => crate::dialect::Dialect::key_param(self, n, column),
        }
    }

    fn trim_decimal(&self, text: &str) -> String {
        format!(
            "regexp_replace(regexp_replace({text}, '(\\.[0-9]*[1-9])0+$|\\.0+$', '\\1'), '^-0$', '0')"
        )
    }

    fn float_bits(&self, expr: &str) -> String {
        // Adding +0 turns -0 into 0 (IEEE 754), as MariaDB prints it.
        format!("upper(encode(float8send((({expr})::float8) + float8 '0'), 'hex'))")
    }
}

/// A PostgreSQL type without its modifier: `numeric(20,4)` → `numeric`,
/// `timestamp(3) without time zone` → `timestamp without time zone`;
/// `character(n)` → `bpchar` (plain `character` is `character(1)`).
fn unmodified(ty: &str) -> String {
    let bare = match (ty.find('('), ty.find(')')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{}", ty[..open].trim_end(), &ty[close + 1..])
        }
        _ => ty.to_string(),
    };
    if bare == "character" {
        "bpchar".into()
    } else {
        bare
    }
}

impl WireSql for Mysql {
    fn kind(&self, column: &Column) -> Kind {
        let ty = column.data_type.to_ascii_lowercase();
        if ty.starts_with("tinyint(1)") {
            return Kind::Bool;
        }
        match base(&ty).as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
                Kind::Integer
            }
            "decimal" | "numeric" => Kind::Decimal,
            "float" | "double" | "real" => Kind::Float,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" => Kind::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Kind::Binary
            }
            "bool" | "boolean" => Kind::Bool,
            "date" => Kind::Date,
            "time" => Kind::Time,
            "datetime" => Kind::Timestamp,
            "timestamp" => Kind::TimestampTz,
            "json" => Kind::Json,
            "uuid" => Kind::Uuid,
            _ => Kind::Other,
        }
    }

    fn wire_out(&self, expr: &str, kind: Kind, _neutral: bool) -> String {
        // Sessions run in UTC, so a TIMESTAMP reads as its UTC instant.
        match kind {
            // Other kinds (BIT, geometry, ...) only travel between MySQL
            // servers: as their bytes, like mysqldump --hex-blob.
            Kind::Binary | Kind::Other => format!("HEX({expr})"),
            Kind::Timestamp | Kind::TimestampTz => {
                format!("DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')")
            }
            Kind::Time => format!("TIME_FORMAT({expr}, '%H:%i:%s.%f')"),
            // FLOAT prints 6 digits; as DOUBLE every bit shows.
            Kind::Float => format!("CAST(CAST({expr} AS DOUBLE) AS CHAR)"),
            _ => format!("CAST({expr} AS CHAR)"),
        }
    }

    fn row_text(&self, values: &[String]) -> String {
        let parts: Vec<String> = values
            .iter()
            .map(|v| format!("IFNULL(CONCAT(CHAR_LENGTH({v}), ':', {v}), '-')"))
            .collect();
        format!("CONCAT_WS(',', {})", parts.join(", "))
    }

    fn hash_sum(&self, row_text: &str) -> String {
        format!(
            "CAST(COALESCE(SUM(CAST(CONV(LEFT(MD5({row_text}), 15), 16, 10) AS UNSIGNED)), 0) AS CHAR)"
        )
    }

    fn wire_in(&self, n: usize, column: &Column, _neutral: bool) -> String {
        match self.kind(column) {
            Kind::Binary | Kind::Other => format!("UNHEX(:p{n})"),
            // A string converts to the column's type on assignment (strict
            // mode refuses what does not fit).
            _ => format!(":p{n}"),
        }
    }

    fn copy_text(&self, _column: &Column, _neutral: bool) -> CopyText {
        CopyText::AsSent
    }

    fn canonical_key_param(&self, n: usize, column: &Column) -> String {
        match base(&column.data_type).as_str() {
            // The other engine's bound is the label (ENUM and SET compare
            // with a string as strings).
            "enum" | "set" => crate::dialect::Dialect::placeholder(self, n),
            _ => crate::dialect::Dialect::key_param(self, n, column),
        }
    }

    fn trim_decimal(&self, text: &str) -> String {
        // A dot is appended to a whole number first, so that only
        // fractional zeros are trimmed (no regex: MySQL and MariaDB
        // spell back-references differently).
        let trimmed = format!(
            "TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CONCAT({text}, IF(LOCATE('.', {text}) > 0, '', '.'))))"
        );
        format!("IF({trimmed} = '-0', '0', {trimmed})")
    }

    fn float_bits(&self, expr: &str) -> String {
        // MySQL has no way to read a double's bits: they are computed,
        // each step exact. e: the binary exponent, from LOG2 (which may
        // be an ulp off at a power of two: corrected by comparing with
        // exact powers of two, never computing 2^1024). g: clamped at the
        // subnormal exponent. m: the significand as an integer (< 2^53),
        // exact as a division by a power of two. Then sign, biased
        // exponent and fraction are put together as a 64-bit integer; for
        // a normal m carries the hidden bit, which the exponent field
        // absorbs (+1022 instead of +1023).
        let x = format!("CAST(({expr}) AS DOUBLE)");
        let a = format!("ABS({x})");
        let e0 = format!("LEAST(FLOOR(LOG2({a})), 1023)");
        let e = format!(
            "({e0} - ({a} < POW(2, {e0})) + ({a} >= POW(2, LEAST({e0} + 1, 1023)) AND {e0} < 1023))"
        );
        let g = format!("GREATEST({e}, -1022)");
        let m = format!("({a} / POW(2, {g} - 52))");
        format!(
            "IF({x} = 0, '0000000000000000', LPAD(HEX((({x} < 0) << 63) | \
             ((CAST({g} + 1022 AS UNSIGNED) << 52) + CAST({m} AS UNSIGNED))), 16, '0'))"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::test_support::column;

    #[test]
    fn postgres_kinds_and_forms() {
        let pg = Postgres;
        let k = |t: &str| pg.kind(&column("c", t));
        assert_eq!(k("bigint"), Kind::Integer);
        assert_eq!(k("numeric(30,10)"), Kind::Decimal);
        assert_eq!(k("character varying(20)"), Kind::Text);
        assert_eq!(k("timestamp(3) without time zone"), Kind::Timestamp);
        assert_eq!(k("timestamp with time zone"), Kind::TimestampTz);
        assert_eq!(k("time without time zone"), Kind::Time);
        assert_eq!(k("jsonb"), Kind::Json);
        assert_eq!(k("integer[]"), Kind::Other);
        assert_eq!(k("interval"), Kind::Other);
        assert_eq!(
            pg.wire_out("\"b\"", Kind::Binary, true),
            "upper(encode((\"b\"), 'hex'))"
        );
        assert_eq!(pg.wire_out("\"b\"", Kind::Binary, false), "(\"b\")::text");
        assert_eq!(
            pg.wire_in(2, &column("c", "timestamp with time zone"), true),
            "($2::text || '+00')::timestamp with time zone"
        );
        assert_eq!(
            pg.wire_in(1, &column("c", "bytea"), true),
            "decode($1::text, 'hex')"
        );
        assert_eq!(
            pg.wire_in(1, &column("c", "bytea"), false),
            "$1::text::bytea"
        );
    }

    #[test]
    fn mysql_kinds_and_forms() {
        let my = Mysql;
        let k = |t: &str| my.kind(&column("c", t));
        assert_eq!(k("tinyint(1)"), Kind::Bool);
        assert_eq!(k("tinyint(4)"), Kind::Integer);
        assert_eq!(k("bigint(20) unsigned"), Kind::Integer);
        assert_eq!(k("varbinary(16)"), Kind::Binary);
        assert_eq!(k("datetime(6)"), Kind::Timestamp);
        assert_eq!(k("timestamp(6)"), Kind::TimestampTz);
        assert_eq!(k("geometry"), Kind::Other);
        assert_eq!(my.wire_out("`b`", Kind::Binary, true), "HEX(`b`)");
        assert_eq!(my.wire_in(3, &column("c", "blob"), true), "UNHEX(:p3)");
        assert_eq!(my.wire_in(3, &column("c", "int(11)"), true), ":p3");
    }

    #[test]
    fn verify_forms_are_canonical_on_postgres() {
        let pg = Postgres;
        assert_eq!(
            pg.canonical("\"d\"", Kind::Decimal),
            "regexp_replace(regexp_replace((\"d\")::text, '(\\.[0-9]*[1-9])0+$|\\.0+$', '\\1'), '^-0$', '0')"
        );
        assert_eq!(
            pg.canonical("\"x\"", Kind::Float),
            "upper(encode(float8send(((\"x\")::float8) + float8 '0'), 'hex'))"
        );
        // Other kinds as the copy sends them.
        assert_eq!(
            pg.canonical("\"b\"", Kind::Binary),
            pg.wire_out("\"b\"", Kind::Binary, true)
        );
        assert_eq!(
            pg.canonical_key("\"k\"", Kind::Decimal),
            pg.canonical("\"k\"", Kind::Decimal)
        );
        let p = |t: &str| pg.canonical_key_param(2, &column("k", t));
        assert_eq!(p("bytea"), "decode($2::text, 'hex')");
        assert_eq!(
            p("timestamp(3) with time zone"),
            "($2::text || '+00')::timestamp with time zone"
        );
        assert_eq!(p("numeric(20,4)"), "$2::text::numeric");
        assert_eq!(
            p("timestamp(3) without time zone"),
            "$2::text::timestamp without time zone"
        );
        assert_eq!(p("character varying(20)"), "$2::text::character varying");
        assert_eq!(p("character(5)"), "$2::text::bpchar");
        assert_eq!(p("bigint"), "$2::text::bigint");
        assert_eq!(p("uuid"), "$2::text::uuid");
    }

    #[test]
    fn verify_forms_are_canonical_on_mysql() {
        let my = Mysql;
        assert_eq!(
            my.canonical("`d`", Kind::Decimal),
            "IF(TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CONCAT(CAST(`d` AS CHAR), \
             IF(LOCATE('.', CAST(`d` AS CHAR)) > 0, '', '.')))) = '-0', '0', \
             TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CONCAT(CAST(`d` AS CHAR), \
             IF(LOCATE('.', CAST(`d` AS CHAR)) > 0, '', '.')))))"
        );
        let bits = my.canonical("`x`", Kind::Float);
        assert!(
            bits.starts_with("IF(CAST((`x`) AS DOUBLE) = 0, '0000000000000000', LPAD(HEX(((CAST((`x`) AS DOUBLE) < 0) << 63) | "),
            "{bits}"
        );
        assert!(bits.ends_with(", 16, '0'))"), "{bits}");
        // 2^1024 is never computed: MySQL raises an error on overflow.
        assert!(!bits.contains("POW(2, LEAST(FLOOR(LOG2(ABS(CAST((`x`) AS DOUBLE)))), 1023) + 1)"));
        assert_eq!(my.canonical("`b`", Kind::Binary), "HEX(`b`)");
        let p = |t: &str| my.canonical_key_param(1, &column("k", t));
        assert_eq!(p("varbinary(16)"), "UNHEX(:p1)");
        assert_eq!(p("enum('a','b')"), ":p1");
        assert_eq!(p("decimal(20,6)"), "CAST(:p1 AS DECIMAL(20,6))");
        assert_eq!(p("bigint(20)"), "CAST(:p1 AS SIGNED)");
    }

    #[test]
    fn numbers_of_two_kinds_compare_as_the_wider() {
        use Kind::*;
        assert_eq!(shared_kind(Decimal, Decimal), Some(Decimal));
        assert_eq!(shared_kind(Integer, Decimal), Some(Decimal));
        assert_eq!(shared_kind(Integer, Float), Some(Float));
        assert_eq!(shared_kind(Decimal, Float), Some(Float));
        assert_eq!(shared_kind(Float, Text), None);
        assert_eq!(shared_kind(Bool, Integer), None);
        assert_eq!(shared_kind(Other, Other), None);
    }

    #[test]
    fn only_faithful_pairs_cross_engines() {
        use Kind::*;
        assert!(faithful(Bool, Integer));
        assert!(faithful(TimestampTz, Timestamp));
        assert!(faithful(Json, Text));
        assert!(!faithful(Text, Integer));
        assert!(!faithful(Binary, Text));
        assert!(!faithful(Other, Other));
        assert!(!faithful(Float, Decimal));
    }
}
