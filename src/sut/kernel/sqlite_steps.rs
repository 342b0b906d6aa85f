//! The steps of one purchase on embedded SQLite, run inside the caller's transaction by
//! every writer (`sqlite`'s group writer and optimistic pool, `occ`'s batches): the key
//! lookup, the claim and debit by conditional updates, the ledger and intent rows, each
//! purchase in its own savepoint so a failure leaves nothing behind.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::sql::{SqliteSql, Take};
use super::{
    FailureCode, KernelError, Link, Outcome, PurchaseRequest, Snapshot, credit_account, cut_error,
    debit_account, new_id, now_ms,
};

/// One purchase on its way to a writer.
pub(super) struct Job {
    pub(super) req: PurchaseRequest,
    pub(super) key: String,
    pub(super) fingerprint: String,
    pub(super) link: Link,
    pub(super) reply: oneshot::Sender<Result<Snapshot, KernelError>>,
}

/// Why one run of the transaction stopped.
#[derive(Debug)]
pub(super) enum Failure {
    Db(rusqlite::Error),
    Kernel(KernelError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Db(e)
    }
}

pub(super) fn db_error(e: impl std::fmt::Display) -> KernelError {
    KernelError::Database(e.to_string())
}

/// One run of the purchase inside the caller's transaction, wrapped in a savepoint so a
/// failure leaves nothing behind.
pub(super) fn execute(
    conn: &Connection,
    job: &Job,
    attempts: u32,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Snapshot, Failure> {
    if let Some(answer) = known(conn, job, sql)? {
        return answer.map_err(Failure::Kernel);
    }
    if job.link.is_cut() {
        return Err(Failure::Kernel(cut_error()));
    }
    conn.prepare_cached("SAVEPOINT purchase")?.execute([])?;
    let settled = settle(conn, job, attempts, sql, rng);
    end_purchase(conn, job, sql, settled)
}

/// Close the savepoint of a purchase that ran to `settled`: a committed purchase is kept
/// by `keep_committed` (and undone if that fails, so the batch's COMMIT cannot keep rows
/// whose caller heard an error), a declined one released, a failed one rolled back. A
/// client that left before this, the commit point, has its purchase rolled back.
pub(super) fn end_purchase(
    conn: &Connection,
    job: &Job,
    sql: &SqliteSql,
    settled: Result<Snapshot, Failure>,
) -> Result<Snapshot, Failure> {
    let settled = settled.and_then(|s| match job.link.is_cut() {
        true => Err(Failure::Kernel(cut_error())),
        false => Ok(s),
    });
    match settled {
        Ok(s) if s.outcome == Outcome::Committed => {
            for end in &sql.keep_committed {
                if let Err(e) = conn.prepare_cached(end).and_then(|mut st| st.execute([])) {
                    let _ = undo_purchase(conn);
                    return Err(e.into());
                }
            }
            Ok(s)
        }
        Ok(s) => {
            conn.prepare_cached("RELEASE purchase")?.execute([])?;
            Ok(s)
        }
        Err(e) => {
            let _ = undo_purchase(conn);
            Err(e)
        }
    }
}

/// The key's stored answer, if the key is known: its snapshot replayed, or KEY_REUSED for
/// another payload.
pub(super) fn known(
    conn: &Connection,
    job: &Job,
    sql: &SqliteSql,
) -> Result<Option<Result<Snapshot, KernelError>>, Failure> {
    let stored = conn
        .prepare_cached(&sql.lookup)?
        .query_row([&job.key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(stored.map(|(fingerprint, snapshot)| {
        if fingerprint == job.fingerprint {
            Snapshot::replay_of(&snapshot).map_err(db_error)
        } else {
            Err(KernelError::KeyReused {
                key: job.key.clone(),
            })
        }
    }))
}

/// The owner's rows that could give `amount` (`take`'s candidates), each with the value it
/// holds, in random order.
pub(super) fn candidates(
    conn: &Connection,
    pool: &Take,
    owner: &Uuid,
    amount: i64,
    rng: &mut SmallRng,
) -> Result<Vec<(String, i64)>, Failure> {
    let mut rows: Vec<(String, i64)> = conn
        .prepare_cached(&pool.candidates)?
        .query_map(params![owner.to_string(), amount], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.shuffle(rng);
    Ok(rows)
}

/// Roll the purchase's savepoint back and close it.
pub(super) fn undo_purchase(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("ROLLBACK TO purchase")?.execute([])?;
    conn.prepare_cached("RELEASE purchase")?.execute([])?;
    Ok(())
}

/// Claim, debit, ledger, intent: steps 2 to 5 of the transaction in docs/design.md.
fn settle(
    conn: &Connection,
    job: &Job,
    attempts: u32,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Snapshot, Failure> {
    let req = &job.req;
    let intent_id = new_id(rng);
    let Some(bucket) = claim_one(conn, &sql.stock, &req.item_id, req.quantity, rng)? else {
        return record_declined(conn, job, intent_id, FailureCode::OutOfStock, attempts, sql);
    };
    let Some(shard) = claim_one(conn, &sql.funds, &req.mandate_id, req.amount_minor, rng)? else {
        // The claim is not kept.
        conn.prepare_cached("ROLLBACK TO purchase")?.execute([])?;
        return record_declined(
            conn,
            job,
            intent_id,
            FailureCode::MandateRejected,
            attempts,
            sql,
        );
    };
    write_rows(conn, job, intent_id, &bucket, &shard, attempts, sql, rng)
}

/// Steps 2 to 5 once the bucket and shard have given: the claim, debit, ledger and intent
/// rows, and the snapshot the client is answered with.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_rows(
    conn: &Connection,
    job: &Job,
    intent_id: Uuid,
    bucket: &str,
    shard: &str,
    attempts: u32,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Snapshot, Failure> {
    let req = &job.req;
    let bucket_id = Uuid::parse_str(bucket).map_err(|e| Failure::Kernel(db_error(e)))?;
    let ledger_txn_id = new_id(rng);
    let currency = req.currency.as_str();
    let ledger = ledger_txn_id.to_string();
    let intent = intent_id.to_string();
    conn.prepare_cached(&sql.claim)?.execute(params![
        intent,
        bucket,
        req.item_id.to_string(),
        req.quantity
    ])?;
    conn.prepare_cached(&sql.debit)?.execute(params![
        intent,
        shard,
        req.mandate_id.to_string(),
        req.amount_minor
    ])?;
    conn.prepare_cached(&sql.ledger_txn)?.execute(params![
        ledger,
        intent,
        req.amount_minor,
        currency
    ])?;
    conn.prepare_cached(&sql.debit_leg)?.execute(params![
        new_id(rng).to_string(),
        ledger,
        debit_account(&req.mandate_id),
        -req.amount_minor,
        currency
    ])?;
    conn.prepare_cached(&sql.credit_leg)?.execute(params![
        new_id(rng).to_string(),
        ledger,
        credit_account(&req.merchant_id),
        req.amount_minor,
        currency
    ])?;
    let snapshot = Snapshot::fresh(
        Outcome::Committed,
        intent_id,
        Some(ledger_txn_id),
        Some(bucket_id),
        None,
        req.amount_minor,
        currency,
        attempts,
    );
    // The answer names what was charged: the request's own amount, nothing else.
    assert_eq!(snapshot.amount_minor, req.amount_minor, "{intent}");
    insert_intent(conn, job, &snapshot, Some(&ledger), sql)?;
    Ok(snapshot)
}

/// Try the owner's rows in random order; the first conditional decrement that takes wins.
/// `None`: no row could give `amount`.
fn claim_one(
    conn: &Connection,
    pool: &Take,
    owner: &Uuid,
    amount: i64,
    rng: &mut SmallRng,
) -> Result<Option<String>, Failure> {
    let candidates = candidates(conn, pool, owner, amount, rng)?;
    let mut take = conn.prepare_cached(&pool.take)?;
    for (row, _) in candidates {
        if take.execute(params![row, amount])? == 1 {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

pub(super) fn record_declined(
    conn: &Connection,
    job: &Job,
    intent_id: Uuid,
    code: FailureCode,
    attempts: u32,
    sql: &SqliteSql,
) -> Result<Snapshot, Failure> {
    let snapshot = Snapshot::fresh(
        Outcome::Declined,
        intent_id,
        None,
        None,
        Some(code),
        job.req.amount_minor,
        job.req.currency.as_str(),
        attempts,
    );
    insert_intent(conn, job, &snapshot, None, sql)?;
    Ok(snapshot)
}

fn insert_intent(
    conn: &Connection,
    job: &Job,
    snapshot: &Snapshot,
    ledger_txn_id: Option<&str>,
    sql: &SqliteSql,
) -> Result<(), Failure> {
    let req = &job.req;
    conn.prepare_cached(&sql.intent)?.execute(params![
        snapshot.intent_id.to_string(),
        job.key,
        job.fingerprint,
        req.merchant_id.to_string(),
        req.mandate_id.to_string(),
        req.item_id.to_string(),
        req.agent_id,
        req.quantity,
        req.amount_minor,
        req.currency.as_str(),
        snapshot.outcome.as_str(),
        snapshot.failure_code.map(|c| c.as_str()),
        ledger_txn_id,
        snapshot.attempts,
        snapshot.json,
        now_ms(),
    ])?;
    Ok(())
}
