//! `copy --create-target`: the target table's definition from the
//! source's, with column types mapped between engines (the table in the
//! README). A type with no faithful counterpart maps to nothing, and the
//! copy is refused naming the column unless `--cast COL=TYPE` gives one.

use super::Dialect;
use crate::url::Engine;

/// The target type for a source column's type, or None where no type
/// holds every value exactly.
pub fn column_type(from: Engine, to: Engine, source_type: &str) -> Option<String> {
    if from == to {
        return Some(source_type.to_string());
    }
    let ty = source_type.trim().to_ascii_lowercase();
    match (from, to) {
        (Engine::Postgres, Engine::Mysql) => postgres_to_mysql(&ty),
        (Engine::Mysql, Engine::Postgres) => mysql_to_postgres(&ty),
        _ => None,
    }
}

/// `name(args)` split into the name and its arguments.
fn parts(ty: &str) -> (&str, Vec<u32>) {
    match ty.split_once('(') {
        Some((name, rest)) => {
            let args = rest
                .split(')')
                .next()
                .unwrap_or("")
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect();
            (name.trim(), args)
        }
        None => (ty, Vec::new()),
    }
}

fn postgres_to_mysql(ty: &str) -> Option<String> {
    let (name, args) = parts(ty);
    let fraction = |args: &[u32]| args.first().copied().unwrap_or(6).min(6);
    Some(match name {
        "smallint" => "smallint".into(),
        "integer" => "int".into(),
        "bigint" => "bigint".into(),
        "numeric" => match args[..] {
            [p, s] if p <= 65 && s <= 30 => format!("decimal({p},{s})"),
            [p] if p <= 65 => format!("decimal({p},0)"),
            // Unconstrained numeric holds any scale: no DECIMAL does.
            _ => return None,
        },
        "real" => "float".into(),
        "double precision" => "double".into(),
        "text" => "longtext".into(),
        "character varying" => match args[..] {
            [n] if n <= 16_383 => format!("varchar({n})"),
            _ => "longtext".into(),
        },
        "character" => match args[..] {
            [n] if n <= 255 => format!("char({n})"),
            _ => return None,
        },
        "bytea" => "longblob".into(),
        "boolean" => "tinyint(1)".into(),
        "date" => "date".into(),
        "json" | "jsonb" => "json".into(),
        "uuid" => "char(36)".into(),
        _ if name.starts_with("timestamp") && ty.ends_with("with time zone") => {
            // An instant, kept as its UTC time (TIMESTAMP stops in 2038).
            format!("datetime({})", fraction(&args))
        }
        _ if name.starts_with("timestamp") => format!("datetime({})", fraction(&args)),
        _ if name.starts_with("time") && ty.ends_with("without time zone") => {
            format!("time({})", fraction(&args))
        }
        _ => return None,
    })
}

fn mysql_to_postgres(ty: &str) -> Option<String> {
    let unsigned = ty.contains("unsigned");
    let (name, args) = parts(ty.trim_end_matches(" zerofill"));
    let name = name.trim_end_matches(" unsigned");
    Some(match name {
        "tinyint" if args.first() == Some(&1) && !unsigned => "boolean".into(),
        "tinyint" | "year" => "smallint".into(),
        "smallint" if unsigned => "integer".into(),
        "smallint" => "smallint".into(),
        "mediumint" | "int" | "integer" if unsigned => "bigint".into(),
        "mediumint" | "int" | "integer" => "integer".into(),
        "bigint" if unsigned => "numeric(20,0)".into(),
        "bigint" => "bigint".into(),
        "decimal" | "numeric" => match args[..] {
            [p, s] => format!("numeric({p},{s})"),
            [p] => format!("numeric({p},0)"),
            _ => "numeric(10,0)".into(),
        },
        "float" => "real".into(),
        "double" | "real" => "double precision".into(),
        "char" => format!("character({})", args.first().copied().unwrap_or(1)),
        "varchar" => format!(
            "character varying({})",
            args.first().copied().unwrap_or(255)
        ),
        "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => "text".into(),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "bytea".into(),
        "date" => "date".into(),
        "datetime" => format!(
            "timestamp({}) without time zone",
            args.first().unwrap_or(&0)
        ),
        "timestamp" => format!("timestamp({}) with time zone", args.first().unwrap_or(&0)),
        "json" => "jsonb".into(),
        "uuid" => "uuid".into(),
        // MySQL TIME spans ±838 hours; PostgreSQL's stops at 24.
        _ => return None,
    })
}

/// A target column to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// `CREATE TABLE t (columns, PRIMARY KEY (key))`.
pub fn create_table_sql(
    d: &dyn Dialect,
    table: &str,
    columns: &[NewColumn],
    primary_key: &[String],
) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                d.quote_ident(&c.name),
                c.data_type,
                if c.nullable { "" } else { " NOT NULL" }
            )
        })
        .collect();
    parts.push(format!(
        "PRIMARY KEY ({})",
        primary_key
            .iter()
            .map(|k| d.quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    format!("CREATE TABLE {table} ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mysql::Mysql;
    use crate::dialect::postgres::Postgres;

    fn to_my(ty: &str) -> Option<String> {
        column_type(Engine::Postgres, Engine::Mysql, ty)
    }

    fn to_pg(ty: &str) -> Option<String> {
        column_type(Engine::Mysql, Engine::Postgres, ty)
    }

    #[test]
    fn postgres_types_map_to_mysql_or_are_refused() {
        assert_eq!(to_my("numeric(30,10)").as_deref(), Some("decimal(30,10)"));
        assert_eq!(to_my("numeric"), None);
        assert_eq!(
            to_my("character varying(20)").as_deref(),
            Some("varchar(20)")
        );
        assert_eq!(
            to_my("timestamp(3) with time zone").as_deref(),
            Some("datetime(3)")
        );
        assert_eq!(
            to_my("timestamp with time zone").as_deref(),
            Some("datetime(6)")
        );
        assert_eq!(to_my("time without time zone").as_deref(), Some("time(6)"));
        assert_eq!(to_my("boolean").as_deref(), Some("tinyint(1)"));
        assert_eq!(to_my("uuid").as_deref(), Some("char(36)"));
        assert_eq!(to_my("interval"), None);
        assert_eq!(to_my("integer[]"), None);
    }

    #[test]
    fn mysql_types_map_to_postgres_or_are_refused() {
        assert_eq!(to_pg("tinyint(1)").as_deref(), Some("boolean"));
        assert_eq!(to_pg("int(10) unsigned").as_deref(), Some("bigint"));
        assert_eq!(
            to_pg("bigint(20) unsigned").as_deref(),
            Some("numeric(20,0)")
        );
        assert_eq!(to_pg("decimal(12,2)").as_deref(), Some("numeric(12,2)"));
        assert_eq!(
            to_pg("datetime(6)").as_deref(),
            Some("timestamp(6) without time zone")
        );
        assert_eq!(to_pg("varbinary(16)").as_deref(), Some("bytea"));
        assert_eq!(to_pg("enum('a','b')").as_deref(), Some("text"));
        assert_eq!(to_pg("time"), None);
        assert_eq!(to_pg("geometry"), None);
        assert_eq!(
            column_type(Engine::Postgres, Engine::Postgres, "interval").as_deref(),
            Some("interval")
        );
    }

    #[test]
    fn create_table_quotes_names_and_keeps_not_null() {
        let columns = [
            NewColumn {
                name: "id".into(),
                data_type: "bigint".into(),
                nullable: false,
            },
            NewColumn {
                name: "odd`name".into(),
                data_type: "longtext".into(),
                nullable: true,
            },
        ];
        assert_eq!(
            create_table_sql(&Mysql, "`s`.`t`", &columns, &["id".into()]),
            "CREATE TABLE `s`.`t` (`id` bigint NOT NULL, `odd``name` longtext, PRIMARY KEY (`id`))"
        );
        assert_eq!(
            create_table_sql(&Postgres, r#""s"."t""#, &columns[..1], &["id".into()]),
            r#"CREATE TABLE "s"."t" ("id" bigint NOT NULL, PRIMARY KEY ("id"))"#
        );
    }
}
