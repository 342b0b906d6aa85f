//! Parsing of `--db` URLs: `sqlite://PATH` or `postgres://…`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::AddrError;

/// Where the one shared logical database lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL (or wire-compatible) server; the full libpq-style URL.
    Postgres(String),
}

/// The SQL dialect a URL speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl DbUrl {
    pub fn dialect(&self) -> Dialect {
        match self {
            DbUrl::Sqlite(_) => Dialect::Sqlite,
            DbUrl::Postgres(_) => Dialect::Postgres,
        }
    }

    /// An embedded database at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        DbUrl::Sqlite(path.into())
    }
}

impl FromStr for DbUrl {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(AddrError::BadUrl {
                    url: s.to_string(),
                    reason: "sqlite:// needs a file path, e.g. sqlite://swarm.db".into(),
                });
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("sqlite:")
            && !path.is_empty()
        {
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(s.to_string()));
        }
        Err(AddrError::BadUrl {
            url: redact(s),
            reason: "expected sqlite://PATH or postgres://USER@HOST:PORT/DB".into(),
        })
    }
}

/// Hide a password in a URL before it reaches a log or an error message.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DbUrl::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(
            "sqlite://a/b.db".parse::<DbUrl>().ok(),
            Some(DbUrl::Sqlite("a/b.db".into()))
        );
        assert_eq!(
            "sqlite:///tmp/x.db".parse::<DbUrl>().ok(),
            Some(DbUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(matches!(
            "postgres://u@127.0.0.1:5432/d".parse::<DbUrl>(),
            Ok(DbUrl::Postgres(_))
        ));
        assert!("mysql://x".parse::<DbUrl>().is_err());
        assert!("sqlite://".parse::<DbUrl>().is_err());
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact("postgres://bob:secret@h:1/d"),
            "postgres://bob:***@h:1/d"
        );
        assert_eq!(redact("postgres://bob@h/d"), "postgres://bob@h/d");
    }
}
