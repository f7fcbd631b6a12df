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
            // Microseconds always, as MySQL's TIME_FORMAT prints them.
            Kind::Time => format!("to_char(date '2000-01-01' + ({expr}), 'HH24:MI:SS.US')"),
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
