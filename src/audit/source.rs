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
    /// Behind a mutex so a `Source` can be held across awaits on any thread.
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
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
                Ok(Source::Sqlite(std::sync::Mutex::new(conn)))
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
            Source::Sqlite(conn) => tokio::task::block_in_place(|| {
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

    /// Stream the rows of `sql` through `f` without holding them all.
    pub async fn for_each(&self, sql: &str, mut f: impl FnMut(&[Val])) -> Result<(), DbError> {
        match self {
            Source::Sqlite(conn) => tokio::task::block_in_place(|| {
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
