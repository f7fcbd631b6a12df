//! Connection URLs: which engine, and a form that is safe to print.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
    Mssql,
}

/// A parsed connection URL. `Display` never shows the password.
#[derive(Clone)]
pub struct DbUrl {
    pub engine: Engine,
    url: url::Url,
}

impl DbUrl {
    pub fn parse(text: &str) -> Result<Self> {
        let url = url::Url::parse(text).map_err(|e| {
            Error::input(format!(
                "malformed connection URL {}: {e}. Expected for example \
                 postgres://user:password@host:5432/database",
                redact_unparsed(text)
            ))
        })?;
        let engine = match url.scheme() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            "sqlserver" | "mssql" => Engine::Mssql,
            other => {
                return Err(Error::input(format!(
                    "unsupported URL scheme `{other}:` in {}; use postgres://, mysql:// or sqlserver://",
                    redact_url(&url)
                )));
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::input(format!(
                "connection URL {} has no host; write it as {}://user@host:port/database",
                // Without a host the parser may have put the password in
                // the path: redact the text as typed.
                redact_unparsed(text),
                url.scheme()
            )));
        }
        Ok(DbUrl { engine, url })
    }

    /// The full URL, password included: only for handing to a driver.
    pub fn secret_str(&self) -> &str {
        self.url.as_str()
    }

    pub fn password(&self) -> Option<&str> {
        self.url.password()
    }

    pub fn user(&self) -> &str {
        self.url.username()
    }

    /// `host:port`, for naming a server in progress and metrics.
    pub fn label(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or("")),
            None => self.url.host_str().unwrap_or("").to_string(),
        }
    }

    /// Identity of the server and database, without credentials: what the
    /// job fingerprint and the advisory lock key are built from.
    pub fn identity(&self) -> String {
        format!(
            "{:?}://{}@{}:{}{}",
            self.engine,
            self.url.username(),
            self.url.host_str().unwrap_or(""),
            self.url.port().map(|p| p.to_string()).unwrap_or_default(),
            self.url.path()
        )
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.url))
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    // Query parameters may carry a password too (`?password=`).
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// Redact text that did not parse as a usable URL: blank whatever stands
/// between the first `:` after the scheme and the last `@` (where a URL
/// keeps its password), and every `password=` value (libpq's key=value
/// form and query strings).
pub fn redact_unparsed(text: &str) -> String {
    let text = mask_password_values(text);
    let Some(at) = text.rfind('@') else {
        return text;
    };
    let start = text.find("://").map_or(0, |s| s + 3).min(at);
    match text[start..at].find(':') {
        Some(colon) => format!("{}***{}", &text[..start + colon + 1], &text[at..]),
        None => text,
    }
}

fn mask_password_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.to_ascii_lowercase().find("password=") {
        let value_start = pos + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value_len = rest[value_start..]
            .find(|c: char| c.is_whitespace() || c == '&')
            .unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

/// Remove a known password from any text (driver messages echo odd things).
pub fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_password() {
        let u = DbUrl::parse("postgres://alice:s3cr%40t@db.example:5432/app?password=x").unwrap();
        let shown = u.to_string();
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("alice:***@db.example:5432/app"), "{shown}");
        assert!(shown.contains("password=***"), "{shown}");
        assert!(!u.identity().contains("s3cr"));
        assert_eq!(u.engine, Engine::Postgres);
    }

    #[test]
    fn odd_input_never_panics_nor_leaks() {
        for text in [
            "",
            "@",
            "a@b://x",
            "://@",
            "postgres://@",
            "postgres://:@h",
            "p://u:pw@",
            "ö://ü:pw@ä/ß",
            "postgres://u:pw@h:99999/db",
            "postgres://u:pw@[::1/db",
            "postgres://u:pw@h/db?password",
        ] {
            if let Err(e) = DbUrl::parse(text) {
                assert_eq!(e.exit_code(), 2, "{text}");
                assert!(!e.message.contains("pw"), "{text}: {}", e.message);
            }
            let _ = redact_unparsed(text);
        }
    }

    #[test]
    fn engines_by_scheme() {
        assert_eq!(
            DbUrl::parse("mysql://root@h/db").unwrap().engine,
            Engine::Mysql
        );
        assert_eq!(
            DbUrl::parse("mssql://sa:p@h/db").unwrap().engine,
            Engine::Mssql
        );
        assert_eq!(
            DbUrl::parse("postgresql://h/db").unwrap().engine,
            Engine::Postgres
        );
    }

    #[test]
    fn bad_urls_are_input_errors_without_secrets() {
        let e = DbUrl::parse("oracle://u:hunter2@h/db").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = DbUrl::parse("postgres//u:hunter2@h").unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = DbUrl::parse("postgres://u:hunter2@:5432/x").unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }
}
