//! Reading raw rows for the auditor, from SQLite or PostgreSQL, as plain values.
//!
//! Queries name their columns' shapes with `CAST(… AS TEXT)` / `CAST(… AS BIGINT)`, so one
//! SQL text serves both dialects and rows come back as `Val`s.

use futures_util::{StreamExt, pin_mut};
use rusqlite::types::ValueRef;
use tokio_postgres::types::Type;

use crate::addr::DbUrl;
use crate::sut::db::{DbError, open_sqlite};

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub fn int(&self) -> i64 {
        match self {
            Val::Int(i) => *i,
            Val::Text(t) => t.parse().unwrap_or(0),
            Val::Null => 0,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Val::Int(i) => i.to_string(),
            Val::Text(t) => t.clone(),
            Val::Null => String::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Val::Text(t) => t,
            _ => "",
        }
    }
}

/// One row read in place: text borrows the driver's buffer, so a scan of a million rows
/// allocates nothing per cell.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `i` as text (`None`: NULL).
    pub fn text(&self, i: usize) -> Result<Option<&str>, DbError> {
        match self {
            Row::Sqlite(r) => match r.get_ref(i)? {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
                    .map(Some)
                    .map_err(|e| DbError::Other(format!("column {i} is not UTF-8: {e}"))),
                ValueRef::Integer(_) | ValueRef::Real(_) => Err(DbError::Other(format!(
                    "column {i} is a number where text was expected"
                ))),
            },
            Row::Postgres(r) => Ok(r.try_get::<_, Option<&str>>(i)?),
        }
    }

    /// Column `i` as an integer (`None`: NULL).
    pub fn int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self {
            Row::Sqlite(r) => match r.get_ref(i)? {
                ValueRef::Null => Ok(None),
                ValueRef::Integer(v) => Ok(Some(v)),
                _ => Err(DbError::Other(format!("column {i} is not an integer"))),
            },
            Row::Postgres(r) => {
                let t = r.columns().get(i).map(|c| c.type_().clone());
                match t {
                    Some(Type::INT8) => Ok(r.try_get::<_, Option<i64>>(i)?),
                    Some(Type::INT4) => Ok(r.try_get::<_, Option<i32>>(i)?.map(i64::from)),
                    Some(Type::INT2) => Ok(r.try_get::<_, Option<i16>>(i)?.map(i64::from)),
                    other => Err(DbError::Other(format!(
                        "column {i} is {other:?}, not an integer"
                    ))),
                }
            }
        }
    }
}

pub enum Source {
    /// Behind a mutex so a `Source` can be held across awaits on any thread; with the
    /// file's path, for scans split across connections.
    Sqlite(std::sync::Mutex<rusqlite::Connection>, std::path::PathBuf),
    Postgres(tokio_postgres::Client),
}

impl Source {
    pub async fn open(url: &DbUrl) -> Result<Source, DbError> {
        match url {
            DbUrl::Sqlite(path) => {
                if !path.exists() {
                    return Err(DbError::Other(format!(
                        "{}: no such database file",
                        path.display()
                    )));
                }
                // Read with system calls, not through a memory map: a map made the audit of
                // a million intents about 10 % faster but counted every page of the file in
                // the run's resident memory (667 MiB instead of 126 for the audit alone).
                let conn = open_sqlite(path)?;
                Ok(Source::Sqlite(std::sync::Mutex::new(conn), path.clone()))
            }
            DbUrl::Postgres(u) => {
                let (client, conn) = tokio_postgres::connect(u, tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("audit connection closed: {e}");
                    }
                });
                Ok(Source::Postgres(client))
            }
        }
    }

    /// All rows of `sql`.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Vec<Val>>, DbError> {
        let mut out = Vec::new();
        self.for_each(sql, |row| out.push(row.to_vec())).await?;
        Ok(out)
    }

    /// Stream the rows of `sql` through `f`, read in place; `f`'s error stops the scan.
    pub async fn for_each_row(
        &self,
        sql: &str,
        mut f: impl FnMut(&Row<'_>) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        match self {
            Source::Sqlite(conn, _) => tokio::task::block_in_place(|| {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = conn.prepare(sql)?;
                let mut rows = st.query([])?;
                while let Some(row) = rows.next()? {
                    f(&Row::Sqlite(row))?;
                }
                Ok(())
            }),
            Source::Postgres(client) => {
                let params: [&str; 0] = [];
                let stream = client.query_raw(sql, params).await?;
                pin_mut!(stream);
                while let Some(row) = stream.next().await {
                    f(&Row::Postgres(&row?))?;
                }
                Ok(())
            }
        }
    }

    /// SQLite only: stream the rows of `sql`, whose `?1` and `?2` bound `rowid`, through
    /// `f` once per state at the same time, each state on its own connection and thread
    /// over an even share of `table`'s rowids, in rowid order within each share (the
    /// shares in `states`' order). `Ok(false)`: not SQLite, or `table` has no rowids to
    /// split (empty, or a `WITHOUT ROWID` table), and nothing was read.
    pub async fn for_each_row_split<S: Send>(
        &self,
        table: &str,
        sql: &str,
        states: &mut [S],
        f: impl Fn(&mut S, &Row<'_>) -> Result<(), DbError> + Sync,
    ) -> Result<bool, DbError> {
        let Source::Sqlite(conn, path) = self else {
            return Ok(false);
        };
        let bounds = {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.query_row(
                &format!("SELECT min(rowid), max(rowid) FROM {table}"),
                [],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
        };
        let (Ok((Some(low), Some(high))), true) = (bounds, !states.is_empty()) else {
            return Ok(false);
        };
        let shares = rowid_shares(low, high, states.len());
        let f = &f;
        tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let running: Vec<_> = states
                    .iter_mut()
                    .zip(shares)
                    .map(|(state, (from, to))| {
                        scope.spawn(move || -> Result<(), DbError> {
                            let conn = open_sqlite(path)?;
                            let mut st = conn.prepare(sql)?;
                            let mut rows = st.query([from, to])?;
                            while let Some(row) = rows.next()? {
                                f(state, &Row::Sqlite(row))?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                // Every thread joined before any error is returned.
                let joined: Vec<Result<(), DbError>> = running
                    .into_iter()
                    .map(|r| {
                        r.join().unwrap_or_else(|_| {
                            Err(DbError::Other("a scanning thread panicked".into()))
                        })
                    })
                    .collect();
                joined.into_iter().collect::<Result<(), DbError>>()?;
                Ok(true)
            })
        })
    }

    /// Stream the rows of `sql` through `f` without holding them all.
    pub async fn for_each(&self, sql: &str, mut f: impl FnMut(&[Val])) -> Result<(), DbError> {
        match self {
            Source::Sqlite(conn, _) => tokio::task::block_in_place(|| {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = conn.prepare(sql)?;
                let n = st.column_count();
                let mut rows = st.query([])?;
                let mut buf = Vec::with_capacity(n);
                while let Some(row) = rows.next()? {
                    buf.clear();
                    for i in 0..n {
                        buf.push(match row.get_ref(i)? {
                            ValueRef::Null => Val::Null,
                            ValueRef::Integer(v) => Val::Int(v),
                            ValueRef::Real(v) => Val::Int(v as i64),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Val::Text(String::from_utf8_lossy(t).into_owned())
                            }
                        });
                    }
                    f(&buf);
                }
                Ok(())
            }),
            Source::Postgres(client) => {
                let params: [&str; 0] = [];
                let stream = client.query_raw(sql, params).await?;
                pin_mut!(stream);
                let mut buf = Vec::new();
                while let Some(row) = stream.next().await {
                    let row = row?;
                    buf.clear();
                    for (i, col) in row.columns().iter().enumerate() {
                        let t = col.type_();
                        buf.push(if *t == Type::INT8 {
                            row.try_get::<_, Option<i64>>(i)?
                                .map_or(Val::Null, Val::Int)
                        } else if *t == Type::INT4 {
                            row.try_get::<_, Option<i32>>(i)?
                                .map_or(Val::Null, |v| Val::Int(i64::from(v)))
                        } else if *t == Type::INT2 {
                            row.try_get::<_, Option<i16>>(i)?
                                .map_or(Val::Null, |v| Val::Int(i64::from(v)))
                        } else if *t == Type::NUMERIC {
                            return Err(DbError::Other(format!(
                                "audit query returned NUMERIC; cast it to BIGINT: {sql}"
                            )));
                        } else {
                            row.try_get::<_, Option<String>>(i)?
                                .map_or(Val::Null, Val::Text)
                        });
                    }
                    f(&buf);
                }
                Ok(())
            }
        }
    }
}

/// `[low, high]` cut into `n` contiguous, inclusive ranges of nearly equal width that
/// cover it exactly (some empty when there are fewer rowids than ranges).
fn rowid_shares(low: i64, high: i64, n: usize) -> Vec<(i64, i64)> {
    let width = i128::from(high) - i128::from(low) + 1;
    let n128 = n.max(1) as i128;
    (0..n128)
        .map(|k| {
            let from = i128::from(low) + width * k / n128;
            let to = i128::from(low) + width * (k + 1) / n128 - 1;
            (from as i64, to as i64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rowid_shares_cover_the_range_exactly_once() {
        for (low, high, n) in [
            (1, 1_000_000, 2),
            (1, 1, 2),
            (-5, 7, 3),
            (i64::MIN, i64::MAX, 2),
        ] {
            let shares = rowid_shares(low, high, n);
            assert_eq!(shares.len(), n);
            assert_eq!(shares[0].0, low);
            assert_eq!(shares[n - 1].1, high);
            for w in shares.windows(2) {
                assert_eq!(w[0].1.checked_add(1), Some(w[1].0), "{shares:?}");
            }
        }
    }
}
