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

    /// The hosts of a multi-host PostgreSQL URL (`postgres://u@h1:p1,h2:p2/db`), in order.
    pub fn hosts(&self) -> Vec<&str> {
        match self {
            DbUrl::Sqlite(_) => Vec::new(),
            DbUrl::Postgres(url) => {
                let (_, list, _) = split_hosts(url);
                list.split(',').filter(|h| !h.is_empty()).collect()
            }
        }
    }

    /// The same database with the URL's hosts tried in `order` (1-based positions, each
    /// host at most once; hosts left out are tried after, in their own order).
    pub fn with_host_order(&self, order: &[u8]) -> Result<DbUrl, String> {
        let DbUrl::Postgres(url) = self else {
            return Err("only a PostgreSQL URL has hosts to order".into());
        };
        let hosts = self.hosts();
        let mut ordered: Vec<&str> = Vec::with_capacity(hosts.len());
        for p in order {
            let host = usize::from(*p)
                .checked_sub(1)
                .and_then(|i| hosts.get(i))
                .ok_or_else(|| {
                    format!("host {p}: the database URL names {} host(s)", hosts.len())
                })?;
            ordered.push(host);
        }
        let rest: Vec<&str> = hosts
            .iter()
            .copied()
            .filter(|h| !ordered.contains(h))
            .collect();
        ordered.extend(rest);
        let (head, _, tail) = split_hosts(url);
        Ok(DbUrl::Postgres(format!(
            "{head}{}{tail}",
            ordered.join(",")
        )))
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

/// A PostgreSQL URL as (scheme and user, host list, path and query).
fn split_hosts(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let after_scheme = &url[start..];
    let end_of_authority = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..end_of_authority];
    let hosts_from = authority.rfind('@').map_or(0, |i| i + 1);
    let a = start + hosts_from;
    let b = start + end_of_authority;
    (&url[..a], &url[a..b], &url[b..])
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
    fn a_region_orders_the_hosts_of_a_multi_host_url() {
        let url: DbUrl =
            "postgres://u:pw@127.0.0.1:1,127.0.0.1:2,[::1]:3/db?target_session_attrs=read-write"
                .parse()
                .expect("url");
        assert_eq!(url.hosts(), vec!["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"]);
        let DbUrl::Postgres(third_first) = url.with_host_order(&[3, 1]).expect("order") else {
            panic!("still PostgreSQL");
        };
        assert_eq!(
            third_first,
            "postgres://u:pw@[::1]:3,127.0.0.1:1,127.0.0.1:2/db?target_session_attrs=read-write"
        );
        assert!(
            url.with_host_order(&[4])
                .unwrap_err()
                .contains("names 3 host(s)")
        );
        let single: DbUrl = "postgres://h:5432".parse().expect("url");
        assert_eq!(single.hosts(), vec!["h:5432"]);
        assert!(DbUrl::sqlite("x.db").with_host_order(&[1]).is_err());
    }

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
