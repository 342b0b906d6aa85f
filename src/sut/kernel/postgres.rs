//! The kernel on PostgreSQL and wire-compatible engines.
//!
//! Round trips are the lever (docs/design.md, "Measured"): a purchase is one (two when a
//! purchase the decline-only statement below was sent for can go through). One statement
//! with data-modifying CTEs (`sql::PURCHASE_SQL`) looks the key up, claims a bucket and
//! debits a shard by conditional updates, and writes claim, debit, ledger transaction, legs
//! and intent; the snapshot bytes of each outcome are made here and the statement stores
//! the one it reaches. The statement is its own transaction, at the isolation level each
//! pooled connection sets as its session default when it opens. No stored procedures:
//! everything is plain SQL that DSQL and CockroachDB accept.
//!
//! Declines are most of a sold-out run, and PostgreSQL opens and locks every table a
//! statement names whether it writes them or not. So once the statement has declined an
//! item (out of stock) or a mandate (cannot pay), the next purchase of it is sent
//! `PgSql::decline_only` first: the same lookup, plan and intent row, derived from the
//! statement's own text. It declines on its own snapshot exactly as the whole statement
//! would; when its plan says the purchase could go through it writes nothing, the owner
//! leaves the list and the whole statement runs at once, a second round trip. The list
//! keeps the smallest quantity (amount) each owner was declined for, so a smaller purchase
//! is sent the whole statement; it only chooses which statement is sent, never an outcome.
//!
//! It stays one file: the pooled session's setup, the commit loop, the decline-only list and
//! the reading of the statement's answers are one purchase's path (about 600 lines; its
//! tests against a real server are in `tests/kernel.rs`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{GenericClient, Object, Pool};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::catalog::{Catalog, ItemInfo, MandateInfo};
use super::sql::UNDONE;
use super::{
    Currency, FailureCode, KernelConfig, KernelError, Link, Outcome, PgSql, PurchaseRequest,
    Snapshot, StoredIntent, backoff, credit_account, cut_error, debit_account, new_id, now_ms,
};
use crate::sut::db::pg_pool_with;

pub struct PgKernel {
    pool: Pool,
    config: KernelConfig,
    /// The statement and what surrounds it (`config.sql.postgres`).
    sql: PgSql,
    /// `sql.decline_only()`: sent first for a purchase `declining` expects to decline.
    decline: Option<String>,
    declining: Declining,
    /// Purchases the decline-only statement answered (declined, replayed or refused as
    /// KEY_REUSED).
    declined_by_plan: AtomicU64,
}

/// Most items (and most mandates) a `Declining` list holds; one more empties it first.
const MAX_DECLINING: usize = 1 << 16;

/// The items the statement found out of stock and the mandates it found unable to pay,
/// each with the smallest quantity (amount) it was declined for: a purchase of at least
/// that much is expected to decline, a smaller one is not (a mandate near its cap can
/// still pay for a cheap item). A guess of which statement to send, never an outcome:
/// stock and funds can come back (a restock, a reseed), and the decline-only statement
/// takes an owner off when its plan says the purchase could go through.
#[derive(Default)]
struct Declining {
    items: RwLock<HashMap<Uuid, i64>>,
    mandates: RwLock<HashMap<Uuid, i64>>,
}

impl Declining {
    fn expects(&self, req: &PurchaseRequest) -> bool {
        let at_least = |list, owner, asked| read(list).get(owner).is_some_and(|&d| asked >= d);
        at_least(&self.items, &req.item_id, req.quantity)
            || at_least(&self.mandates, &req.mandate_id, req.amount_minor)
    }

    fn note(&self, req: &PurchaseRequest, code: FailureCode) {
        let (list, owner, asked) = match code {
            FailureCode::OutOfStock => (&self.items, req.item_id, req.quantity),
            FailureCode::MandateRejected => (&self.mandates, req.mandate_id, req.amount_minor),
        };
        if read(list).get(&owner).is_some_and(|&d| d <= asked) {
            return;
        }
        let mut list = list.write().unwrap_or_else(|p| p.into_inner());
        if list.len() >= MAX_DECLINING && !list.contains_key(&owner) {
            // Owners leave only when a purchase of them could go through: a full list
            // starts again rather than stop learning.
            list.clear();
        }
        let smallest = list.entry(owner).or_insert(asked);
        *smallest = (*smallest).min(asked);
    }

    fn forget(&self, req: &PurchaseRequest) {
        for (list, owner) in [(&self.items, req.item_id), (&self.mandates, req.mandate_id)] {
            if read(list).contains_key(&owner) {
                list.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&owner);
            }
        }
    }
}

fn read(list: &RwLock<HashMap<Uuid, i64>>) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, i64>> {
    list.read().unwrap_or_else(|p| p.into_inner())
}

/// Why one run of the transaction stopped.
enum Attempt {
    Done(Result<Snapshot, KernelError>),
    /// A serialization conflict or a lost race: rerun.
    Conflict,
    /// A concurrent twin inserted the key first: serve its snapshot.
    TwinWon,
    /// The decline-only statement found that the purchase could go through and wrote
    /// nothing: run the whole statement.
    Proceed,
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

/// The purchase statement undid its own claim: no shard could pay by the time it looked
/// (READ COMMITTED), so it failed on purpose (`sql::UNDONE`) and changed nothing.
fn is_undone(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == SqlState::INVALID_TEXT_REPRESENTATION && d.message().contains(UNDONE)
    })
}

fn is_key_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == SqlState::UNIQUE_VIOLATION && d.constraint() == Some("intent_idem_key")
    })
}

fn pool_error(e: deadpool_postgres::PoolError) -> KernelError {
    match e {
        deadpool_postgres::PoolError::Backend(e)
        | deadpool_postgres::PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)) => {
            db_error(e)
        }
        other => KernelError::Unavailable(format!("postgres pool: {other}")),
    }
}

/// `sql` as a simple query, or nothing.
async fn run_optional(client: &Object, sql: Option<&str>) -> Result<(), tokio_postgres::Error> {
    match sql {
        Some(sql) => client.batch_execute(sql).await,
        None => Ok(()),
    }
}

/// What the purchase statement answers: the key's stored fingerprint and snapshot, the
/// bucket claimed, the shard debited, the failure code of a decline.
type Answer = (
    Option<String>,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
);

fn answer(row: &tokio_postgres::Row) -> Result<Answer, tokio_postgres::Error> {
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    ))
}

impl PgKernel {
    pub async fn open(url: &str, config: &KernelConfig) -> Result<PgKernel, KernelError> {
        // The statement is its own transaction: its isolation level is the session's.
        let session = format!(
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {}",
            config.isolation.sql()
        );
        let pool = pg_pool_with(url, config.pool_size, Some(session)).map_err(db_error)?;
        // Fail now, with the server's words, rather than on the first purchase.
        drop(pool.get().await.map_err(pool_error)?);
        Ok(PgKernel {
            pool,
            decline: config.sql.postgres.decline_only(),
            sql: config.sql.postgres.clone(),
            config: config.clone(),
            declining: Declining::default(),
            declined_by_plan: AtomicU64::new(0),
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
        let mut decline_first = self.decline.is_some() && self.declining.expects(req);
        for attempt in 1..=self.config.max_attempts {
            if link.is_cut() {
                return Err(cut_error());
            }
            let client = self.client().await?;
            // At most twice: after a Proceed `decline_first` is false, and only the
            // decline-only statement answers Proceed.
            let ran = loop {
                let ran = self
                    .attempt(
                        &client,
                        req,
                        key,
                        fingerprint,
                        attempt,
                        link,
                        decline_first,
                        &mut rng,
                    )
                    .await;
                if !(decline_first && matches!(ran, Attempt::Proceed)) {
                    break ran;
                }
                // The decline-only statement found that the purchase could go through:
                // the whole statement runs now, in the same attempt.
                self.declining.forget(req);
                decline_first = false;
            };
            match ran {
                Attempt::Done(result) => return result,
                Attempt::Proceed => {
                    return Err(db_error(
                        "the whole purchase statement answered as the decline-only one",
                    ));
                }
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

    /// Purchases the decline-only statement answered: declined, replayed or refused as
    /// KEY_REUSED.
    pub fn declined_by_plan(&self) -> u64 {
        self.declined_by_plan.load(Ordering::Relaxed)
    }

    /// One run of one statement, one round trip. `decline_only`: send the
    /// decline-only statement (`Proceed` when it finds the purchase could go through).
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        client: &Object,
        req: &PurchaseRequest,
        key: &str,
        fingerprint: &str,
        attempts: u32,
        link: &Link,
        decline_only: bool,
        rng: &mut SmallRng,
    ) -> Attempt {
        let mut statement = match client.prepare_cached(&self.sql.purchase).await {
            Ok(s) => s,
            Err(e) => return Attempt::Done(Err(db_error(e))),
        };
        // The decline-only statement goes out only when asked for and derived: from here on
        // `decline_only` says which statement answered.
        let decline_only = decline_only && self.decline.is_some();
        if let (true, Some(decline)) = (decline_only, &self.decline) {
            // Its parameters are the whole statement's, some of them unused: typed alike.
            statement = match client
                .prepare_typed_cached(decline, statement.params())
                .await
            {
                Ok(s) => s,
                Err(e) => return Attempt::Done(Err(db_error(e))),
            };
        }
        let intent_id = new_id(rng);
        let ledger_txn_id = new_id(rng);
        let (leg_debit, leg_credit) = (new_id(rng), new_id(rng));
        let currency = req.currency.as_str();
        let amount = req.amount_minor;
        // The snapshot of every outcome: the statement stores the one it reaches (a
        // commit's with the bucket it claimed between the two halves).
        let (committed_before, committed_after) =
            Snapshot::committed_around_bucket(intent_id, ledger_txn_id, amount, currency, attempts);
        let declined = |code| {
            Snapshot::fresh(
                Outcome::Declined,
                intent_id,
                None,
                None,
                Some(code),
                amount,
                currency,
                attempts,
            )
        };
        let out_of_stock = declined(FailureCode::OutOfStock);
        let rejected = declined(FailureCode::MandateRejected);
        let debit = debit_account(&req.mandate_id);
        let credit = credit_account(&req.merchant_id);
        let attempts_i64 = i64::from(attempts);
        let created = now_ms();
        let params: [&(dyn ToSql + Sync); 21] = [
            &key,
            &req.item_id,
            &req.quantity,
            &req.mandate_id,
            &amount,
            &intent_id,
            &fingerprint,
            &req.merchant_id,
            &req.agent_id,
            &currency,
            &ledger_txn_id,
            &attempts_i64,
            &created,
            &leg_debit,
            &leg_credit,
            &debit,
            &credit,
            &committed_before,
            &committed_after,
            &out_of_stock.json,
            &rejected.json,
        ];
        if link.is_cut() {
            // The client left before the commit point: nothing was sent.
            return Attempt::Done(Err(cut_error()));
        }
        // The round trip: the statement (and whatever surrounds it) in one write.
        let (begun, row, finished) = tokio::join!(
            run_optional(client, self.sql.begin.as_deref()),
            client.query_one(&statement, &params),
            run_optional(client, self.sql.finish.as_deref()),
        );
        let read = match (begun, row, finished) {
            (Ok(()), Ok(row), Ok(())) => answer(&row),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        };
        let (existing_fp, existing_snapshot, bucket, shard, failure) = match read {
            Ok(answer) => answer,
            Err(e) => {
                if self.sql.begin.is_some() {
                    rollback(client).await;
                }
                return if is_key_violation(&e) {
                    Attempt::TwinWon
                } else if is_conflict(&e) || is_undone(&e) {
                    Attempt::Conflict
                } else {
                    Attempt::Done(Err(db_error(e)))
                };
            }
        };
        if decline_only && (failure.is_some() || existing_fp.is_some()) {
            self.declined_by_plan.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(fp), Some(snap)) = (existing_fp, existing_snapshot) {
            return Attempt::Done(if fp == fingerprint {
                Snapshot::replay_of(&snap).map_err(db_error)
            } else {
                Err(KernelError::KeyReused {
                    key: key.to_string(),
                })
            });
        }
        Attempt::Done(Ok(match (bucket, shard, failure.as_deref()) {
            (Some(bucket), Some(_), None) => {
                let s = Snapshot::fresh(
                    Outcome::Committed,
                    intent_id,
                    Some(ledger_txn_id),
                    Some(bucket),
                    None,
                    amount,
                    currency,
                    attempts,
                );
                debug_assert_eq!(
                    s.json,
                    format!("{committed_before}{bucket}{committed_after}")
                );
                s
            }
            (None, None, Some(code)) if code == FailureCode::OutOfStock.as_str() => {
                self.declining.note(req, FailureCode::OutOfStock);
                out_of_stock
            }
            (None, None, Some(code)) if code == FailureCode::MandateRejected.as_str() => {
                self.declining.note(req, FailureCode::MandateRejected);
                rejected
            }
            // The decline-only statement's plan could go through: nothing was written.
            (None, None, None) if decline_only => return Attempt::Proceed,
            // The chosen bucket went while the statement waited for it (READ COMMITTED
            // re-checks the condition on the newest row): nothing was written.
            (None, None, None) => return Attempt::Conflict,
            other => {
                return Attempt::Done(Err(db_error(format!(
                    "the purchase statement answered {other:?}"
                ))));
            }
        }))
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

/// Best effort: an explicit transaction (`PgSql::begin`) that failed is closed before the
/// connection goes back to the pool.
async fn rollback(client: &Object) {
    if let Err(e) = client.batch_execute("ROLLBACK").await {
        tracing::debug!("rollback failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(item: u128, mandate: u128, quantity: i64, amount_minor: i64) -> PurchaseRequest {
        PurchaseRequest {
            merchant_id: Uuid::from_u128(1),
            mandate_id: Uuid::from_u128(mandate),
            item_id: Uuid::from_u128(item),
            agent_id: "a".into(),
            quantity,
            amount_minor,
            currency: Currency::parse("USD").expect("currency"),
        }
    }

    #[test]
    fn the_declining_list_expects_a_decline_from_the_smallest_size_declined() {
        let list = Declining::default();
        assert!(!list.expects(&req(7, 9, 3, 100)));
        // Item 7 declined for 3 units, then for 2: from 2 units up a decline is expected.
        list.note(&req(7, 9, 3, 100), FailureCode::OutOfStock);
        list.note(&req(7, 9, 2, 100), FailureCode::OutOfStock);
        list.note(&req(7, 9, 5, 100), FailureCode::OutOfStock);
        assert!(list.expects(&req(7, 9, 2, 100)));
        assert!(
            !list.expects(&req(7, 9, 1, 100)),
            "one unit may still be there"
        );
        // Mandate 9 declined for 500: a cheaper purchase of another item is sent whole.
        list.note(&req(8, 9, 1, 500), FailureCode::MandateRejected);
        assert!(list.expects(&req(8, 9, 1, 500)));
        assert!(!list.expects(&req(8, 9, 1, 499)));
        // A purchase that could go through takes both its owners off.
        list.forget(&req(7, 9, 1, 1));
        assert!(!list.expects(&req(7, 9, 9, 9_999)));
    }

    #[test]
    fn a_full_declining_list_starts_again_instead_of_stopping() {
        let list = Declining::default();
        for i in 0..MAX_DECLINING as u128 {
            list.note(&req(i, 0, 1, 1), FailureCode::OutOfStock);
        }
        assert!(list.expects(&req(0, 0, 1, 1)));
        let newcomer = req(u128::MAX, 0, 1, 1);
        list.note(&newcomer, FailureCode::OutOfStock);
        assert!(list.expects(&newcomer), "a new owner is still learned");
        assert!(!list.expects(&req(0, 0, 1, 1)), "the old ones went");
        assert!(read(&list.items).len() <= MAX_DECLINING);
    }
}
