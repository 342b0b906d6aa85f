//! Row-level optimistic concurrency on embedded SQLite: the way PostgreSQL at REPEATABLE
//! READ and Aurora DSQL behave, with SQLite's one writer.
//!
//! The writer takes a batch of purchases and, inside one `BEGIN IMMEDIATE`, first reads
//! every purchase's plan on the snapshot the batch starts from (is the key known, which
//! bucket and shard it would take and the value each had), as concurrent transactions
//! that began together would. It then writes them in order, each in its own savepoint:
//! a purchase commits only if the bucket and the shard it read still hold the values it
//! read (first committer wins per row); otherwise it is a conflict, undone, and rerun in a
//! later batch after a jittered backoff, counted in `attempts`, up to `max_attempts` →
//! RETRY_EXHAUSTED. New intents never conflict with each other (a twin of the same key in
//! the batch is answered with the winner's snapshot), and a decline that found no stock
//! does not retry: stock only goes down. One COMMIT answers the whole batch (group commit).
//!
//! Invariant: the rows a purchase moves are still conditional updates (the `Sql` value's
//! `take` statements, so the selftest's sabotage reaches this mode too); the version
//! check only decides who goes first.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::sql::{SqliteSql, Take};
use super::sqlite_steps::{
    Failure, Job, candidates, db_error, known, record_declined, undo_purchase, write_rows,
};
use super::{
    FailureCode, KernelConfig, KernelError, Outcome, Snapshot, backoff, cut_error, new_id,
};

/// What a purchase read on its batch's snapshot.
enum Plan {
    /// Decided by the key alone: a replay, or the key reused for another payload.
    Known(Result<Snapshot, KernelError>),
    /// Nothing to take from (no stock, or no shard that could pay).
    Decline(FailureCode),
    /// The rows it would take from, and the values it read there.
    Buy {
        bucket: String,
        available: i64,
        shard: String,
        remaining: i64,
    },
}

/// How one purchase of a batch ended.
enum Ended {
    Done(Result<Snapshot, KernelError>),
    /// A row it read was changed by an earlier purchase of the batch: run it again.
    Conflict,
}

/// A purchase and the run it is on.
struct Queued {
    job: Job,
    attempt: u32,
    /// Not before (a conflict's backoff).
    ready_at: Instant,
}

pub(super) fn writer(conn: Connection, mut rx: mpsc::Receiver<Job>, config: KernelConfig) {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut waiting: Vec<Queued> = Vec::new();
    let mut batch: Vec<Queued> = Vec::with_capacity(config.group_max);
    let mut open = true;
    while open || !waiting.is_empty() {
        // Reruns whose backoff is over go first; then new purchases, up to `group_max`.
        let now = Instant::now();
        let mut i = 0;
        while i < waiting.len() && batch.len() < config.group_max {
            if waiting[i].ready_at <= now {
                batch.push(waiting.swap_remove(i));
            } else {
                i += 1;
            }
        }
        while open && batch.len() < config.group_max {
            match rx.try_recv() {
                Ok(job) => batch.push(Queued {
                    job,
                    attempt: 1,
                    ready_at: now,
                }),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if batch.is_empty() {
            match waiting.iter().map(|q| q.ready_at).min() {
                // Only reruns in backoff: sleep until the first is due (a few ms at most).
                Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
                None => match rx.blocking_recv() {
                    Some(job) => batch.push(Queued {
                        job,
                        attempt: 1,
                        ready_at: Instant::now(),
                    }),
                    None => open = false,
                },
            }
            continue;
        }
        run_batch(&conn, &mut batch, &mut waiting, &config, &mut rng);
    }
}

/// Read every plan on the batch's snapshot, write them in order, commit, answer; conflicts
/// go back to `waiting` with their backoff.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<Queued>,
    waiting: &mut Vec<Queued>,
    config: &KernelConfig,
    rng: &mut SmallRng,
) {
    let sql = &config.sql.sqlite;
    let mut ended: Vec<Ended> = Vec::with_capacity(batch.len());
    // Keys this batch has written an intent for: only a twin of one of them needs the key
    // looked up again before it writes.
    let mut written: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(batch.len());
    let committed = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
        let plans: Vec<Result<Plan, Failure>> =
            batch.iter().map(|q| plan(conn, &q.job, sql, rng)).collect();
        for (q, plan) in batch.iter().zip(plans) {
            let twin = written.contains(q.job.key.as_str());
            let end = plan.and_then(|p| write(conn, &q.job, q.attempt, p, twin, sql, rng));
            if matches!(end, Ok(Ended::Done(Ok(_)))) {
                written.insert(q.job.key.as_str());
            }
            ended.push(match end {
                Ok(e) => e,
                Err(Failure::Kernel(e)) => Ended::Done(Err(e)),
                Err(Failure::Db(e)) => Ended::Done(Err(db_error(e))),
            });
        }
        conn.execute_batch("COMMIT")
    });
    if let Err(e) = committed {
        // Nothing in this batch is durable: every caller may retry the same key.
        let _ = conn.execute_batch("ROLLBACK");
        tracing::warn!("occ group commit failed: {e}");
        for q in batch.drain(..) {
            let _ = q.job.reply.send(Err(KernelError::Unavailable(format!(
                "group commit failed: {e}"
            ))));
        }
        return;
    }
    for (q, end) in batch.drain(..).zip(ended) {
        match end {
            Ended::Done(result) => {
                let _ = q.job.reply.send(result);
            }
            Ended::Conflict if q.attempt >= config.max_attempts => {
                let _ = q.job.reply.send(Err(KernelError::RetryExhausted {
                    attempts: q.attempt,
                }));
            }
            Ended::Conflict => {
                let pause = backoff(
                    q.attempt,
                    config.backoff_base_ms,
                    config.backoff_cap_ms,
                    rng,
                );
                waiting.push(Queued {
                    ready_at: Instant::now() + pause,
                    attempt: q.attempt + 1,
                    job: q.job,
                });
            }
        }
    }
}

/// A row that could give, chosen at random among `take`'s candidates, and its value.
fn choose(
    conn: &Connection,
    take: &Take,
    owner: &Uuid,
    amount: i64,
    version_sql: &str,
    rng: &mut SmallRng,
) -> Result<Option<(String, i64)>, Failure> {
    let Some(row) = candidates(conn, take, owner, amount, rng)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let value: i64 = conn
        .prepare_cached(version_sql)?
        .query_row([&row], |r| r.get(0))?;
    Ok(Some((row, value)))
}

const BUCKET_VALUE: &str = "SELECT available FROM bucket WHERE bucket_id = ?1";
const SHARD_VALUE: &str = "SELECT remaining FROM mandate_shard WHERE shard_id = ?1";

/// What the purchase reads on the snapshot (nothing is written yet).
fn plan(
    conn: &Connection,
    job: &Job,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Plan, Failure> {
    if let Some(answer) = known(conn, job, sql)? {
        return Ok(Plan::Known(answer));
    }
    let req = &job.req;
    let Some((bucket, available)) = choose(
        conn,
        &sql.stock,
        &req.item_id,
        req.quantity,
        BUCKET_VALUE,
        rng,
    )?
    else {
        return Ok(Plan::Decline(FailureCode::OutOfStock));
    };
    let Some((shard, remaining)) = choose(
        conn,
        &sql.funds,
        &req.mandate_id,
        req.amount_minor,
        SHARD_VALUE,
        rng,
    )?
    else {
        return Ok(Plan::Decline(FailureCode::MandateRejected));
    };
    Ok(Plan::Buy {
        bucket,
        available,
        shard,
        remaining,
    })
}

/// Whether `row` still holds `value` and `take` gives `amount` from it.
fn still_gives(
    conn: &Connection,
    take: &Take,
    version_sql: &str,
    row: &str,
    value: i64,
    amount: i64,
) -> Result<bool, Failure> {
    let now: i64 = conn
        .prepare_cached(version_sql)?
        .query_row([row], |r| r.get(0))?;
    Ok(now == value
        && conn
            .prepare_cached(&take.take)?
            .execute(params![row, amount])?
            == 1)
}

/// Validate the plan against what earlier purchases of the batch wrote, and write it.
/// `twin`: an earlier purchase of the batch wrote an intent under the same key.
#[allow(clippy::too_many_arguments)]
fn write(
    conn: &Connection,
    job: &Job,
    attempt: u32,
    plan: Plan,
    twin: bool,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Ended, Failure> {
    let plan = match plan {
        Plan::Known(answer) => return Ok(Ended::Done(answer)),
        other => other,
    };
    // A twin of this key earlier in the batch has written: answer with its snapshot.
    if twin && let Some(answer) = known(conn, job, sql)? {
        return Ok(Ended::Done(answer));
    }
    if job.link.is_cut() {
        return Ok(Ended::Done(Err(cut_error())));
    }
    let intent_id = new_id(rng);
    // A decline writes one row, in one statement: nothing to undo, no savepoint.
    if let Plan::Decline(code) = plan {
        let declined = record_declined(conn, job, intent_id, code, attempt, sql)?;
        return Ok(Ended::Done(Ok(declined)));
    }
    conn.prepare_cached("SAVEPOINT purchase")?.execute([])?;
    let written = match plan {
        Plan::Decline(_) => unreachable!("written above"),
        Plan::Buy {
            bucket,
            available,
            shard,
            remaining,
        } => {
            let req = &job.req;
            let won = still_gives(
                conn,
                &sql.stock,
                BUCKET_VALUE,
                &bucket,
                available,
                req.quantity,
            )
            .and_then(|won| {
                Ok(won
                    && still_gives(
                        conn,
                        &sql.funds,
                        SHARD_VALUE,
                        &shard,
                        remaining,
                        req.amount_minor,
                    )?)
            });
            match won {
                Ok(true) => {
                    write_rows(conn, job, intent_id, &bucket, &shard, attempt, sql, rng).map(Some)
                }
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Plan::Known(_) => unreachable!("answered above"),
    };
    match written {
        Ok(Some(s)) if s.outcome == Outcome::Committed => {
            for end in &sql.keep_committed {
                conn.prepare_cached(end)?.execute([])?;
            }
            Ok(Ended::Done(Ok(s)))
        }
        Ok(Some(s)) => {
            conn.prepare_cached("RELEASE purchase")?.execute([])?;
            Ok(Ended::Done(Ok(s)))
        }
        Ok(None) => {
            undo_purchase(conn)?;
            Ok(Ended::Conflict)
        }
        Err(e) => {
            let _ = undo_purchase(conn);
            Err(e)
        }
    }
}
