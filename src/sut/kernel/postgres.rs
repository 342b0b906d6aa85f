//! The kernel on PostgreSQL and wire-compatible engines.
//!
//! Round trips are the lever (docs/design.md, "Measured"): a purchase is two of them. The first pipelines
//! `BEGIN` with one statement that looks the key up, counts buckets and shards that could
//! serve, and claims and debits by conditional updates in data-modifying CTEs; the second
//! pipelines one statement writing claim, debit, ledger and intent rows with `COMMIT`.
//! No stored procedures: everything is plain SQL that DSQL and CockroachDB accept.

use deadpool_postgres::{Object, Pool};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::catalog::{Catalog, ItemInfo, MandateInfo};
use super::{
    Currency, FailureCode, KernelConfig, KernelError, Link, Outcome, PurchaseRequest, Snapshot,
    StoredIntent, backoff, credit_account, cut_error, debit_account, new_id, now_ms,
};
use crate::sut::db::pg_pool;

const DECLINE_SQL: &str = "\
INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id,
    quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot,
    created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

pub struct PgKernel {
    pool: Pool,
    config: KernelConfig,
    begin_sql: String,
    probe_sql: String,
    settle_sql: String,
    /// How a settled purchase ends (`COMMIT` in the reference statements).
    finish_sql: String,
}

/// Why one run of the transaction stopped.
enum Attempt {
    Done(Result<Snapshot, KernelError>),
    /// A serialization conflict or a lost race: roll back and rerun.
    Conflict,
    /// A concurrent twin inserted the key first: serve its snapshot.
    TwinWon,
}

fn db_error(e: impl std::fmt::Display) -> KernelError {
    KernelError::Database(e.to_string())
}

/// 40001 (PostgreSQL, CockroachDB), 40P01 (deadlock), DSQL's OC000/OC001.
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || c.code() == "OC000"
            || c.code() == "OC001"
    })
}

fn is_key_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == SqlState::UNIQUE_VIOLATION && d.constraint() == Some("intent_idem_key")
    })
}

fn pool_error(e: deadpool_postgres::PoolError) -> KernelError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => KernelError::Unavailable(format!("postgres pool: {other}")),
    }
}

impl PgKernel {
    pub async fn open(url: &str, config: &KernelConfig) -> Result<PgKernel, KernelError> {
        let pool = pg_pool(url, config.pool_size).map_err(db_error)?;
        // Fail now, with the server's words, rather than on the first purchase.
        drop(pool.get().await.map_err(pool_error)?);
        let sql = &config.sql.postgres;
        Ok(PgKernel {
            pool,
            begin_sql: format!("BEGIN ISOLATION LEVEL {}", config.isolation.sql()),
            probe_sql: sql.probe.clone(),
            settle_sql: sql.settle.clone(),
            finish_sql: sql.finish.clone(),
            config: config.clone(),
        })
    }

    async fn client(&self) -> Result<Object, KernelError> {
        self.pool.get().await.map_err(pool_error)
    }

    pub async fn commit(
        &self,
        req: &PurchaseRequest,
        key: &str,
        fingerprint: &str,
        link: &Link,
    ) -> Result<Snapshot, KernelError> {
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        for attempt in 1..=self.config.max_attempts {
            if link.is_cut() {
                return Err(cut_error());
            }
            let client = self.client().await?;
            match self
                .attempt(&client, req, key, fingerprint, attempt, link, &mut rng)
                .await
            {
                Attempt::Done(result) => return result,
                Attempt::TwinWon => {
                    return match self.stored_by_key(&client, key).await? {
                        Some(stored) if stored.fingerprint == fingerprint => {
                            Snapshot::replay_of(&stored.snapshot.json).map_err(db_error)
                        }
                        Some(_) => Err(KernelError::KeyReused {
                            key: key.to_string(),
                        }),
                        None => Err(db_error("the key's winner vanished")),
                    };
                }
                Attempt::Conflict => {
                    drop(client);
                    if attempt < self.config.max_attempts {
                        tokio::time::sleep(backoff(
                            attempt,
                            self.config.backoff_base_ms,
                            self.config.backoff_cap_ms,
                            &mut rng,
                        ))
                        .await;
                    }
                }
            }
        }
        Err(KernelError::RetryExhausted {
            attempts: self.config.max_attempts,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        client: &Object,
        req: &PurchaseRequest,
        key: &str,
        fingerprint: &str,
        attempts: u32,
        link: &Link,
        rng: &mut SmallRng,
    ) -> Attempt {
        let probe = match client.prepare_cached(&self.probe_sql).await {
            Ok(s) => s,
            Err(e) => return Attempt::Done(Err(db_error(e))),
        };
        // Round trip 1: BEGIN and the probe, pipelined.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &key,
            &req.item_id,
            &req.quantity,
            &req.mandate_id,
            &req.amount_minor,
        ];
        let (begun, row) = tokio::join!(
            client.batch_execute(&self.begin_sql),
            client.query_one(&probe, &params)
        );
        let row = match (begun, row) {
            (Ok(()), Ok(row)) => row,
            (Err(e), _) | (_, Err(e)) => {
                rollback(client).await;
                return if is_conflict(&e) {
                    Attempt::Conflict
                } else {
                    Attempt::Done(Err(db_error(e)))
                };
            }
        };
        type Probe = (
            Option<String>,
            Option<String>,
            i64,
            i64,
            Option<Uuid>,
            Option<Uuid>,
        );
        let read = || -> Result<Probe, tokio_postgres::Error> {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
            ))
        };
        let (existing_fp, existing_snapshot, stock_n, funds_n, bucket, shard) = match read() {
            Ok(probe) => probe,
            Err(e) => {
                rollback(client).await;
                return Attempt::Done(Err(db_error(e)));
            }
        };

        if let (Some(fp), Some(snap)) = (existing_fp, existing_snapshot) {
            rollback(client).await;
            return Attempt::Done(if fp == fingerprint {
                Snapshot::replay_of(&snap).map_err(db_error)
            } else {
                Err(KernelError::KeyReused {
                    key: key.to_string(),
                })
            });
        }
        let intent_id = new_id(rng);
        let currency = req.currency.as_str();
        let (snapshot, sql, extra): (Snapshot, &str, Option<(Uuid, Uuid)>) = match (bucket, shard) {
            (Some(b), Some(s)) => {
                let ledger = new_id(rng);
                (
                    Snapshot::fresh(
                        Outcome::Committed,
                        intent_id,
                        Some(ledger),
                        Some(b),
                        None,
                        req.amount_minor,
                        currency,
                        attempts,
                    ),
                    self.settle_sql.as_str(),
                    Some((b, s)),
                )
            }
            (None, _) if stock_n == 0 || funds_n == 0 => {
                let code = if stock_n == 0 {
                    FailureCode::OutOfStock
                } else {
                    FailureCode::MandateRejected
                };
                (
                    Snapshot::fresh(
                        Outcome::Declined,
                        intent_id,
                        None,
                        None,
                        Some(code),
                        req.amount_minor,
                        currency,
                        attempts,
                    ),
                    DECLINE_SQL,
                    None,
                )
            }
            // A bucket or shard that looked available was taken by a concurrent commit
            // (READ COMMITTED re-checks the condition and updates nothing): rerun.
            _ => {
                rollback(client).await;
                return Attempt::Conflict;
            }
        };
        if link.is_cut() {
            // The client left before the commit point: the server rolls back.
            rollback(client).await;
            return Attempt::Done(Err(cut_error()));
        }
        let statement = match client.prepare_cached(sql).await {
            Ok(s) => s,
            Err(e) => {
                rollback(client).await;
                return Attempt::Done(Err(db_error(e)));
            }
        };
        let attempts_i64 = i64::from(attempts);
        let failure = snapshot.failure_code.map(|c| c.as_str());
        let created = now_ms();
        let outcome = snapshot.outcome.as_str();
        // Round trip 2: the rows and COMMIT, pipelined. If the insert fails, the
        // transaction is aborted and COMMIT rolls it back.
        let insert = async {
            match extra {
                Some((bucket_id, shard_id)) => {
                    let leg_debit = new_id(&mut rand::rng());
                    let leg_credit = new_id(&mut rand::rng());
                    let debit = debit_account(&req.mandate_id);
                    let credit = credit_account(&req.merchant_id);
                    client
                        .execute(
                            &statement,
                            &[
                                &intent_id,
                                &key,
                                &fingerprint,
                                &req.merchant_id,
                                &req.mandate_id,
                                &req.item_id,
                                &req.agent_id,
                                &req.quantity,
                                &req.amount_minor,
                                &currency,
                                &outcome,
                                &failure,
                                &snapshot.ledger_txn_id,
                                &attempts_i64,
                                &snapshot.json,
                                &created,
                                &bucket_id,
                                &shard_id,
                                &leg_debit,
                                &leg_credit,
                                &debit,
                                &credit,
                            ],
                        )
                        .await
                }
                None => {
                    client
                        .execute(
                            &statement,
                            &[
                                &intent_id,
                                &key,
                                &fingerprint,
                                &req.merchant_id,
                                &req.mandate_id,
                                &req.item_id,
                                &req.agent_id,
                                &req.quantity,
                                &req.amount_minor,
                                &currency,
                                &outcome,
                                &failure,
                                &snapshot.ledger_txn_id,
                                &attempts_i64,
                                &snapshot.json,
                                &created,
                            ],
                        )
                        .await
                }
            }
        };
        let finish = if extra.is_some() {
            self.finish_sql.as_str()
        } else {
            "COMMIT"
        };
        let (inserted, committed) = tokio::join!(insert, client.batch_execute(finish));
        match (inserted, committed) {
            (Ok(_), Ok(())) => Attempt::Done(Ok(snapshot)),
            (Err(e), _) if is_key_violation(&e) => Attempt::TwinWon,
            (Err(e), _) | (_, Err(e)) => {
                rollback(client).await;
                if is_conflict(&e) {
                    Attempt::Conflict
                } else {
                    Attempt::Done(Err(db_error(e)))
                }
            }
        }
    }

    async fn stored_by_key(
        &self,
        client: &Object,
        key: &str,
    ) -> Result<Option<StoredIntent>, KernelError> {
        let row = client
            .query_opt(
                "SELECT idem_key, fingerprint, snapshot FROM intent WHERE idem_key = $1",
                &[&key],
            )
            .await
            .map_err(db_error)?;
        stored_from_row(row)
    }

    pub async fn lookup_key(&self, key: &str) -> Result<Option<StoredIntent>, KernelError> {
        let client = self.client().await?;
        self.stored_by_key(&client, key).await
    }

    pub async fn lookup_intent(
        &self,
        intent_id: Uuid,
    ) -> Result<Option<StoredIntent>, KernelError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT idem_key, fingerprint, snapshot FROM intent WHERE intent_id = $1",
                &[&intent_id],
            )
            .await
            .map_err(db_error)?;
        stored_from_row(row)
    }

    pub async fn load_catalog(&self) -> Result<Catalog, KernelError> {
        let client = self.client().await?;
        let mut c = Catalog::default();
        for row in client
            .query("SELECT merchant_id FROM merchant", &[])
            .await
            .map_err(db_error)?
        {
            c.merchants.insert(row.try_get(0).map_err(db_error)?);
        }
        for row in client
            .query(
                "SELECT item_id, merchant_id, unit_price_minor, currency FROM item",
                &[],
            )
            .await
            .map_err(db_error)?
        {
            let id = row.try_get(0).map_err(db_error)?;
            if let Some(info) = item_info(&row, 1)? {
                c.items.insert(id, info);
            }
        }
        for row in client
            .query("SELECT mandate_id, merchant_id, currency FROM mandate", &[])
            .await
            .map_err(db_error)?
        {
            let id = row.try_get(0).map_err(db_error)?;
            if let Some(info) = mandate_info(&row, 1)? {
                c.mandates.insert(id, info);
            }
        }
        Ok(c)
    }

    pub async fn fetch_catalog(
        &self,
        req: &PurchaseRequest,
    ) -> Result<(bool, Option<ItemInfo>, Option<MandateInfo>), KernelError> {
        let client = self.client().await?;
        let known = client
            .query_opt(
                "SELECT 1 FROM merchant WHERE merchant_id = $1",
                &[&req.merchant_id],
            )
            .await
            .map_err(db_error)?
            .is_some();
        let item = client
            .query_opt(
                "SELECT merchant_id, unit_price_minor, currency FROM item WHERE item_id = $1",
                &[&req.item_id],
            )
            .await
            .map_err(db_error)?
            .map_or(Ok(None), |r| item_info(&r, 0))?;
        let mandate = client
            .query_opt(
                "SELECT merchant_id, currency FROM mandate WHERE mandate_id = $1",
                &[&req.mandate_id],
            )
            .await
            .map_err(db_error)?
            .map_or(Ok(None), |r| mandate_info(&r, 0))?;
        Ok((known, item, mandate))
    }
}

/// `(merchant_id, unit_price_minor, currency)` from column `at` on; `None` for a currency
/// that is no ISO-4217 code (such an item cannot be bought).
fn item_info(row: &tokio_postgres::Row, at: usize) -> Result<Option<ItemInfo>, KernelError> {
    let merchant_id = row.try_get(at).map_err(db_error)?;
    let unit_price_minor = row.try_get(at + 1).map_err(db_error)?;
    let currency: String = row.try_get(at + 2).map_err(db_error)?;
    Ok(Currency::parse(&currency).ok().map(|currency| ItemInfo {
        merchant_id,
        unit_price_minor,
        currency,
    }))
}

/// `(merchant_id, currency)` from column `at` on.
fn mandate_info(row: &tokio_postgres::Row, at: usize) -> Result<Option<MandateInfo>, KernelError> {
    let merchant_id = row.try_get(at).map_err(db_error)?;
    let currency: String = row.try_get(at + 1).map_err(db_error)?;
    Ok(Currency::parse(&currency).ok().map(|currency| MandateInfo {
        merchant_id,
        currency,
    }))
}

fn stored_from_row(row: Option<tokio_postgres::Row>) -> Result<Option<StoredIntent>, KernelError> {
    row.map(|r| {
        let snap: String = r.try_get(2).map_err(db_error)?;
        Ok(StoredIntent {
            idempotency_key: r.try_get(0).map_err(db_error)?,
            fingerprint: r.try_get(1).map_err(db_error)?,
            snapshot: Snapshot::stored(&snap).map_err(db_error)?,
        })
    })
    .transpose()
}

/// Best effort: an aborted or finished transaction is closed before the connection goes
/// back to the pool.
async fn rollback(client: &Object) {
    if let Err(e) = client.batch_execute("ROLLBACK").await {
        tracing::debug!("rollback failed: {e}");
    }
}
