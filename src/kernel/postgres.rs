//! The kernel on PostgreSQL and wire-compatible engines.
//!
//! Round trips are the lever (DESIGN.md): a purchase is two of them. The first pipelines
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
    Currency, FailureCode, KernelConfig, KernelError, Link, Outcome, PurchaseRequest, Sabotage,
    Snapshot, StoredIntent, backoff, credit_account, cut_error, debit_account, new_id, now_ms,
};
use crate::db::pg_pool;

/// Key lookup, candidate counts, claim and debit in one statement. The claim only happens
/// when the key is new and some shard could pay; the debit only when the claim happened.
const PROBE_SQL: &str = "\
WITH existing AS (
    SELECT fingerprint, snapshot FROM intent WHERE idem_key = $1
), stock AS (
    SELECT count(*) AS n FROM bucket WHERE item_id = $2 AND available >= $3
), funds AS (
    SELECT count(*) AS n FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5
), claim AS (
    UPDATE bucket SET available = available - $3
    WHERE bucket_id = (SELECT bucket_id FROM bucket
                       WHERE item_id = $2 AND available >= $3 ORDER BY random() LIMIT 1)
      AND available >= $3
      AND NOT EXISTS (SELECT 1 FROM existing)
      AND EXISTS (SELECT 1 FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5)
    RETURNING bucket_id
), debit AS (
    UPDATE mandate_shard SET remaining = remaining - $5
    WHERE shard_id = (SELECT shard_id FROM mandate_shard
                      WHERE mandate_id = $4 AND remaining >= $5 ORDER BY random() LIMIT 1)
      AND remaining >= $5
      AND EXISTS (SELECT 1 FROM claim)
    RETURNING shard_id
)
SELECT (SELECT fingerprint FROM existing), (SELECT snapshot FROM existing),
       (SELECT n FROM stock), (SELECT n FROM funds),
       (SELECT bucket_id FROM claim), (SELECT shard_id FROM debit)";

/// Claim, debit, ledger transaction, two legs and the intent in one statement.
const SETTLE_SQL: &str = "\
WITH claim AS (
    INSERT INTO stock_claim (intent_id, bucket_id, item_id, quantity) VALUES ($1, $17, $6, $8)
), debit AS (
    INSERT INTO mandate_debit (intent_id, shard_id, mandate_id, amount_minor) VALUES ($1, $18, $5, $9)
), txn AS (
    INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) VALUES ($13, $1, $9, $10)
), legs AS (
    INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)
    VALUES ($19, $13, $21, -$9::BIGINT, $10), ($20, $13, $22, $9, $10)
)
INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id,
    quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot,
    created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

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
    /// How a settled purchase ends: `COMMIT` (or, sabotaged, `ROLLBACK`).
    finish_sql: &'static str,
}

/// `sql` with `from` replaced by `to`; the pattern must be there (a sabotage that silently
/// changes nothing would let the selftest pass for the wrong reason).
fn rewrite(sql: String, from: &str, to: &str) -> String {
    assert!(sql.contains(from), "sabotage pattern missing: {from}");
    sql.replace(from, to)
}

/// The statements a (possibly sabotaged) kernel runs.
fn statements(sabotage: Sabotage) -> (String, String, &'static str) {
    let mut probe = PROBE_SQL.to_string();
    let mut settle = SETTLE_SQL.to_string();
    let mut finish = "COMMIT";
    match sabotage {
        Sabotage::None => {}
        Sabotage::SkipKeyCheck => {
            probe = rewrite(
                probe,
                "WHERE idem_key = $1",
                "WHERE idem_key = $1 AND 1 = 0",
            );
        }
        Sabotage::SkipStockCondition => {
            probe = rewrite(
                probe,
                "UPDATE bucket SET available = available - $3",
                "UPDATE bucket SET available = CASE WHEN available >= $3 THEN available - $3 ELSE 0 END",
            );
            probe = rewrite(
                probe,
                "WHERE item_id = $2 AND available >= $3 ORDER BY",
                "WHERE item_id = $2 ORDER BY",
            );
            probe = rewrite(
                probe,
                "      AND available >= $3\n      AND NOT EXISTS",
                "      AND NOT EXISTS",
            );
        }
        Sabotage::SkipCapCondition => {
            probe = rewrite(
                probe,
                "      AND EXISTS (SELECT 1 FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5)\n",
                "",
            );
            probe = rewrite(
                probe,
                "UPDATE mandate_shard SET remaining = remaining - $5",
                "UPDATE mandate_shard SET remaining = CASE WHEN remaining >= $5 THEN remaining - $5 ELSE 0 END",
            );
            probe = rewrite(
                probe,
                "WHERE mandate_id = $4 AND remaining >= $5 ORDER BY",
                "WHERE mandate_id = $4 ORDER BY",
            );
            probe = rewrite(
                probe,
                "      AND remaining >= $5\n      AND EXISTS (SELECT 1 FROM claim)",
                "      AND EXISTS (SELECT 1 FROM claim)",
            );
        }
        Sabotage::OneLedgerLeg => {
            // The credit leg is gone; its parameters stay typed so the statement prepares.
            settle = rewrite(
                settle,
                ", ($20, $13, $22, $9, $10)\n)",
                "\n), unused AS (SELECT $20::uuid, $22::text)",
            );
        }
        Sabotage::NoLedgerRows => {
            settle = rewrite(
                settle,
                "), txn AS (\n    INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) VALUES ($13, $1, $9, $10)\n), legs AS (\n    INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)\n    VALUES ($19, $13, $21, -$9::BIGINT, $10), ($20, $13, $22, $9, $10)\n)",
                "), unused AS (SELECT $19::uuid, $20::uuid, $21::text, $22::text)",
            );
        }
        Sabotage::AckThenRollback => finish = "ROLLBACK",
    }
    (probe, settle, finish)
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
        let (probe_sql, settle_sql, finish_sql) = statements(config.sabotage);
        Ok(PgKernel {
            pool,
            begin_sql: format!("BEGIN ISOLATION LEVEL {}", config.isolation.sql()),
            probe_sql,
            settle_sql,
            finish_sql,
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
        let existing_fp: Option<String> = row.get(0);
        let existing_snapshot: Option<String> = row.get(1);
        let stock_n: i64 = row.get(2);
        let funds_n: i64 = row.get(3);
        let bucket: Option<Uuid> = row.get(4);
        let shard: Option<Uuid> = row.get(5);

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
            self.finish_sql
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
            c.merchants.insert(row.get(0));
        }
        for row in client
            .query(
                "SELECT item_id, merchant_id, unit_price_minor, currency FROM item",
                &[],
            )
            .await
            .map_err(db_error)?
        {
            if let Some(info) = item_info(row.get(1), row.get(2), row.get(3)) {
                c.items.insert(row.get(0), info);
            }
        }
        for row in client
            .query("SELECT mandate_id, merchant_id, currency FROM mandate", &[])
            .await
            .map_err(db_error)?
        {
            if let Some(info) = mandate_info(row.get(1), row.get(2)) {
                c.mandates.insert(row.get(0), info);
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
            .and_then(|r| item_info(r.get(0), r.get(1), r.get(2)));
        let mandate = client
            .query_opt(
                "SELECT merchant_id, currency FROM mandate WHERE mandate_id = $1",
                &[&req.mandate_id],
            )
            .await
            .map_err(db_error)?
            .and_then(|r| mandate_info(r.get(0), r.get(1)));
        Ok((known, item, mandate))
    }
}

fn item_info(merchant_id: Uuid, unit_price_minor: i64, currency: String) -> Option<ItemInfo> {
    Some(ItemInfo {
        merchant_id,
        unit_price_minor,
        currency: Currency::parse(&currency).ok()?,
    })
}

fn mandate_info(merchant_id: Uuid, currency: String) -> Option<MandateInfo> {
    Some(MandateInfo {
        merchant_id,
        currency: Currency::parse(&currency).ok()?,
    })
}

fn stored_from_row(row: Option<tokio_postgres::Row>) -> Result<Option<StoredIntent>, KernelError> {
    row.map(|r| {
        let snap: String = r.get(2);
        Ok(StoredIntent {
            idempotency_key: r.get(0),
            fingerprint: r.get(1),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sabotage_rewrites_something() {
        let clean = statements(Sabotage::None);
        for s in Sabotage::ALL {
            assert_ne!(statements(s), clean, "{s:?}");
        }
    }
}
