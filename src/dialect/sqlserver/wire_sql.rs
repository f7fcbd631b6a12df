//! How SQL Server values travel to and from other servers (`--target`),
//! and the forms a cross-engine verify compares.
//!
//! Between two SQL Servers a value travels in its exact own text
//! (`SqlType::text`: datetimeoffset keeps its offset, money its four
//! places, CLR values their bytes). Towards another engine it travels in
//! the neutral form PostgreSQL and MySQL print: upper-case hex bytes, 0/1
//! for bit, lower-case uuids, `YYYY-MM-DD HH:MM:SS.ffffff` for date-times
//! (datetimeoffset as its UTC time, no offset), `HH:MM:SS.ffffff` for
//! times. SQL Server keeps 100 ns (seven digits): a value whose seventh
//! digit is not 0 is sent with all seven, which the other engines round
//! to microseconds on input, and a verify then reports the row (it is
//! never cut silently here). `datetime` ticks are 1/300 s: they travel as
//! SQL Server prints them (`.003`), which reads back into datetime as the
//! same tick.

use super::{SqlServer, SqlType, join_row, utf8_bytes};
use crate::dialect::Dialect;
use crate::dialect::wire::{CopyText, Kind, WireSql};
use crate::table::Column;

/// An SC collation: LEN counts a surrogate pair as one character (a code
/// point), as PostgreSQL's length and MySQL's CHAR_LENGTH do.
pub(super) const SC_COLLATION: &str = "Latin1_General_100_CS_AS_SC";

/// `YYYY-MM-DD HH:MM:SS.ffffff[f]` from `s`, the style-121 text of a
/// date, date-time or datetime2 (whatever digits it has): six fractional
/// digits, and the seventh only where it is not 0.
fn neutral_datetime(s: &str) -> String {
    format!(
        "LEFT({s} + N' 00:00:00', 19) + N'.' + LEFT(SUBSTRING({s}, 21, 7) + N'000000', 6) \
         + CASE WHEN SUBSTRING({s}, 27, 1) IN (N'', N'0') THEN N'' ELSE SUBSTRING({s}, 27, 1) END"
    )
}

impl WireSql for SqlServer {
    fn kind(&self, column: &Column) -> Kind {
        match SqlType::of(&column.data_type) {
            SqlType::Integer(_) => Kind::Integer,
            SqlType::Bit => Kind::Bool,
            SqlType::Decimal { .. } | SqlType::Money(_) => Kind::Decimal,
            SqlType::Float | SqlType::Real => Kind::Float,
            SqlType::Date => Kind::Date,
            SqlType::DateTime(_) => Kind::Timestamp,
            SqlType::DateTimeOffset(_) => Kind::TimestampTz,
            SqlType::Time(_) => Kind::Time,
            SqlType::Uuid => Kind::Uuid,
            SqlType::Binary(_) => Kind::Binary,
            // xml travels as its text (the target's xml parses it again).
            SqlType::Unicode { .. } | SqlType::Ansi { .. } | SqlType::Xml => Kind::Text,
            SqlType::Json => Kind::Json,
            // sql_variant travels as its value's bytes, without its base
            // type (a SQL Server target stores them as varbinary).
            SqlType::Variant | SqlType::Other(_) => Kind::Other,
        }
    }

    fn wire_out(&self, expr: &str, kind: Kind, neutral: bool) -> String {
        let as_type = |t: SqlType| t.text(expr);
        match (kind, neutral) {
            (Kind::Integer, _) => as_type(SqlType::Integer("bigint")),
            (Kind::Bool, _) => format!("CONVERT(nvarchar(1), CONVERT(bit, {expr}))"),
            // Style 2: money with its four places; ignored by decimal.
            (Kind::Decimal, _) => as_type(SqlType::Money("money")),
            (Kind::Float, _) => as_type(SqlType::Float),
            (Kind::Date, _) => as_type(SqlType::Date),
            (Kind::Uuid, _) => as_type(SqlType::Uuid),
            (Kind::Binary | Kind::Other, _) => as_type(SqlType::Binary(None)),
            (Kind::Timestamp, false) | (Kind::TimestampTz, false) => {
                as_type(SqlType::DateTime("datetime2(7)".into()))
            }
            (Kind::Time, false) => as_type(SqlType::Time(7)),
            (Kind::Timestamp, true) => {
                neutral_datetime(&format!("CONVERT(nvarchar(64), {expr}, 121)"))
            }
            (Kind::TimestampTz, true) => neutral_datetime(&format!(
                "CONVERT(nvarchar(64), CONVERT(datetime2(7), SWITCHOFFSET({expr}, N'+00:00')), 121)"
            )),
            (Kind::Time, true) => {
                let s = format!("CONVERT(nvarchar(16), CONVERT(time(7), {expr}))");
                format!(
                    "LEFT({s}, 15) + CASE WHEN SUBSTRING({s}, 16, 1) IN (N'', N'0') THEN N'' \
                     ELSE SUBSTRING({s}, 16, 1) END"
                )
            }
            (Kind::Text | Kind::Json, _) => format!("CONVERT(nvarchar(max), {expr})"),
        }
    }

    fn wire_in(&self, n: usize, column: &Column, neutral: bool) -> String {
        self.assigned(&self.placeholder(n), column, neutral)
    }

    fn copy_text(&self, _column: &Column, _neutral: bool) -> CopyText {
        CopyText::AsSent
    }

    fn row_text(&self, values: &[String]) -> String {
        // Each value prefixed with its length in code points.
        let parts: Vec<String> = values
            .iter()
            .map(|v| {
                format!(
                    "COALESCE(CONVERT(nvarchar(max), LEN(({v} COLLATE {SC_COLLATION}) + N'.') - 1) \
                     + N':' + {v}, N'-')"
                )
            })
            .collect();
        join_row(&parts)
    }

    fn hash_sum(&self, row_text: &str) -> String {
        // SQL Server 2019+ (UTF-8 bytes, as the other engines hash). The
        // first 15 hex digits of the MD5, behind a 0 digit, are 8 bytes
        // of a bigint that is never negative.
        format!(
            "CONVERT(nvarchar(64), COALESCE(SUM(CONVERT(decimal(38,0), CONVERT(bigint, \
             CONVERT(varbinary(8), '0' + LEFT(CONVERT(varchar(32), HASHBYTES('MD5', {}), 2), 15), 2)))), 0))",
            utf8_bytes(row_text)
        )
    }

    fn canonical_key_param(&self, n: usize, column: &Column) -> String {
        let p = self.placeholder(n);
        match SqlType::of(&column.data_type) {
            // Bounds from the other engine compared as they are, never
            // rounded to the column's scale or fractional digits first.
            SqlType::Decimal { precision, scale } => {
                let whole = precision.saturating_sub(scale);
                format!("CAST({p} AS decimal(38,{}))", 38u32.saturating_sub(whole))
            }
            SqlType::Money(_) => format!("CAST({p} AS decimal(38,23))"),
            SqlType::DateTime(_) => format!("CONVERT(datetime2(7), {p}, 121)"),
            SqlType::DateTimeOffset(_) => {
                format!("TODATETIMEOFFSET(CONVERT(datetime2(7), {p}, 121), N'+00:00')")
            }
            SqlType::Time(_) => format!("CAST({p} AS time(7))"),
            _ => self.key_param(n, column),
        }
    }

    fn trim_decimal(&self, text: &str) -> String {
        // No regular expressions in T-SQL; the text has one dot at most
        // and no spaces. A dot is appended to a whole number; zeros turned
        // into spaces and trimmed from the right lose the trailing ones
        // only (the rest turn back), and the dot does the same.
        let dotted =
            format!("{text} + CASE WHEN CHARINDEX(N'.', {text}) = 0 THEN N'.' ELSE N'' END");
        let zeros = format!("REPLACE(RTRIM(REPLACE({dotted}, N'0', N' ')), N' ', N'0')");
        let trimmed = format!("REPLACE(RTRIM(REPLACE({zeros}, N'.', N' ')), N' ', N'.')");
        format!("CASE WHEN {trimmed} = N'-0' THEN N'0' ELSE {trimmed} END")
    }

    fn float_bits(&self, expr: &str) -> String {
        // A float converts to binary(8) as its IEEE-754 bits, most
        // significant byte first; adding 0 turns -0 into 0.
        format!(
            "CONVERT(nvarchar(16), CONVERT(binary(8), CONVERT(float, {expr}) + CONVERT(float, 0)), 2)"
        )
    }
}

impl SqlServer {
    /// `value`, the text a value travelled in (`wire_out`; a parameter,
    /// or a staging table's nvarchar column), as `column` takes it in an
    /// INSERT: what `wire_in` writes for a parameter.
    pub(super) fn assigned(&self, value: &str, column: &Column, neutral: bool) -> String {
        match (self.kind(column), neutral) {
            (Kind::Binary | Kind::Other, _) => format!("CONVERT(varbinary(max), {value}, 2)"),
            (Kind::Bool, _) => format!("CAST({value} AS bit)"),
            (Kind::Date, _) => format!("CONVERT(date, {value}, 23)"),
            // Through datetime2(7) with a fixed style (never the
            // session's DATEFORMAT; datetime itself refuses more than
            // three fractional digits); the INSERT's assignment rounds to
            // the column's type.
            (Kind::Timestamp, _) => format!("CONVERT(datetime2(7), {value}, 121)"),
            (Kind::TimestampTz, true) => {
                format!("TODATETIMEOFFSET(CONVERT(datetime2(7), {value}, 121), N'+00:00')")
            }
            (Kind::TimestampTz, false) => format!("CONVERT(datetimeoffset(7), {value}, 121)"),
            (Kind::Time, _) => format!("CAST({value} AS time(7))"),
            (Kind::Uuid, _) => format!("CAST({value} AS uniqueidentifier)"),
            // Numbers and text are assigned, not cast: the INSERT refuses
            // a value that does not fit (an explicit cast to varchar(n)
            // would cut it).
            (Kind::Integer | Kind::Decimal | Kind::Float | Kind::Text | Kind::Json, _) => {
                value.to_string()
            }
        }
    }
}
