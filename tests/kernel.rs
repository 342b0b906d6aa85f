//! The kernel contract on real databases: SQLite (group and optimistic) and PostgreSQL.

mod common;

use std::collections::HashSet;

use common::{ALL, Backend, Fixture, ISOLATIONS, catalog, mandates};
use swarm::sut::kernel::{FailureCode, Kernel, KernelError, Outcome, PurchaseRequest, Snapshot};

/// Commit as a well-behaved client would: retry the same key while the error is transient.
async fn commit_retrying(
    kernel: &Kernel,
    req: &PurchaseRequest,
    key: &str,
) -> Result<Snapshot, KernelError> {
    for _ in 0..200 {
        match kernel.commit(req, key).await {
            Err(e) if e.is_transient() => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await
            }
            other => return other,
        }
    }
    panic!("key {key} never settled");
}

async fn concurrent_same_key_settles_once_on(backend: Backend) {
    let fx = Fixture::new(backend, catalog(1000, 4), mandates(1, 1_000_000, 4)).await;
    let kernel = fx.kernel().await;
    let req = fx.request(0, "agent-1");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (k, r) = (kernel.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            commit_retrying(&k, &r, "one-key").await
        }));
    }
    let mut snapshots = Vec::new();
    for t in tasks {
        snapshots.push(t.await.expect("task").expect("commit"));
    }
    let originals: Vec<&Snapshot> = snapshots.iter().filter(|s| !s.replayed).collect();
    assert_eq!(originals.len(), 1, "{backend:?}: exactly one original");
    let original = originals[0];
    assert_eq!(original.outcome, Outcome::Committed);
    for s in &snapshots {
        assert_eq!(
            s.json.replace("\"replayed\":true}", "\"replayed\":false}"),
            original.json,
            "{backend:?}: every response carries the same bytes"
        );
    }
    let st = fx.state().await;
    assert_eq!(
        (st.intents, st.committed, st.ledger_txns),
        (1, 1, 1),
        "{backend:?}: {st:?}"
    );
    st.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_same_key_settles_once() {
    for backend in ALL {
        concurrent_same_key_settles_once_on(backend).await;
    }
}

async fn thousand_buyers_for_ten_units_on(backend: Backend) {
    let fx = Fixture::new(backend, catalog(10, 4), mandates(1000, 10_000, 4)).await;
    let kernel = fx.kernel().await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let k = kernel.clone();
        let r = fx.request(i, &format!("agent-{i}"));
        tasks.push(tokio::spawn(async move {
            commit_retrying(&k, &r, &format!("buyer-{i}")).await
        }));
    }
    let (mut committed, mut out_of_stock) = (0, 0);
    for t in tasks {
        let s = t.await.expect("task").expect("commit");
        match (s.outcome, s.failure_code) {
            (Outcome::Committed, None) => committed += 1,
            (Outcome::Declined, Some(FailureCode::OutOfStock)) => out_of_stock += 1,
            other => panic!("{backend:?}: unexpected {other:?}"),
        }
    }
    assert_eq!(committed, 10, "{backend:?}");
    assert_eq!(out_of_stock, 990, "{backend:?}");
    let st = fx.state().await;
    assert_eq!(
        st.initial_available - st.available,
        10,
        "{backend:?}: {st:?}"
    );
    assert_eq!(st.claimed_units, 10, "{backend:?}: {st:?}");
    st.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_buyers_for_ten_units_sell_exactly_ten() {
    for backend in ALL {
        thousand_buyers_for_ten_units_on(backend).await;
    }
}

async fn mandate_pays_for_exactly_three_on(backend: Backend) {
    // The cap pays for exactly 3 purchases of 2500, split over 4 shards.
    let fx = Fixture::new(backend, catalog(1000, 8), mandates(1, 7500, 4)).await;
    let kernel = fx.kernel().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let k = kernel.clone();
        let r = fx.request(0, &format!("agent-{i}"));
        tasks.push(tokio::spawn(async move {
            commit_retrying(&k, &r, &format!("spend-{i}")).await
        }));
    }
    let (mut committed, mut rejected) = (0, 0);
    for t in tasks {
        let s = t.await.expect("task").expect("commit");
        match (s.outcome, s.failure_code) {
            (Outcome::Committed, None) => committed += 1,
            (Outcome::Declined, Some(FailureCode::MandateRejected)) => rejected += 1,
            other => panic!("{backend:?}: unexpected {other:?}"),
        }
    }
    assert_eq!((committed, rejected), (3, 97), "{backend:?}");
    let st = fx.state().await;
    assert_eq!(st.debited, 7500, "{backend:?}: {st:?}");
    assert_eq!(
        st.claimed_units, 3,
        "{backend:?}: the rejected claims were not kept"
    );
    st.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mandate_cap_is_never_exceeded_at_any_isolation() {
    mandate_pays_for_exactly_three_on(Backend::SqliteGroup).await;
    mandate_pays_for_exactly_three_on(Backend::SqliteOptimistic).await;
    mandate_pays_for_exactly_three_on(Backend::SqliteOcc).await;
    for iso in ISOLATIONS {
        mandate_pays_for_exactly_three_on(Backend::Postgres(iso)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_buckets_stay_sound_at_every_isolation() {
    for iso in ISOLATIONS {
        thousand_buyers_for_ten_units_on(Backend::Postgres(iso)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_different_amount_is_key_reused_and_changes_nothing() {
    for backend in ALL {
        let fx = Fixture::new(backend, catalog(100, 4), mandates(2, 100_000, 4)).await;
        let kernel = fx.kernel().await;
        let req = fx.request(0, "agent-1");
        let first = kernel.commit(&req, "k-1").await.expect("first");
        assert_eq!(first.outcome, Outcome::Committed);
        let before = fx.state().await;
        let mut changed = req.clone();
        changed.quantity = 2;
        changed.amount_minor = 5000;
        let err = kernel.commit(&changed, "k-1").await.unwrap_err();
        assert!(
            matches!(err, KernelError::KeyReused { .. }),
            "{backend:?}: {err:?}"
        );
        assert_eq!(err.status(), 409);
        let mut other_agent = req.clone();
        other_agent.agent_id = "agent-2".into();
        assert!(matches!(
            kernel.commit(&other_agent, "k-1").await,
            Err(KernelError::KeyReused { .. })
        ));
        assert_eq!(fx.state().await, before, "{backend:?}: nothing changes");
        before.assert_sound();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_replays_as_declined_after_restock() {
    for backend in ALL {
        let fx = Fixture::new(backend, catalog(0, 4), mandates(1, 100_000, 4)).await;
        let kernel = fx.kernel().await;
        let req = fx.request(0, "agent-1");
        let first = kernel.commit(&req, "late").await.expect("first");
        assert_eq!(first.failure_code, Some(FailureCode::OutOfStock));
        assert_eq!(first.status(), 200);
        fx.execute("UPDATE bucket SET available = 5, initial_available = 5")
            .await;
        let again = kernel.commit(&req, "late").await.expect("replay");
        assert!(again.replayed, "{backend:?}");
        assert_eq!(again.outcome, Outcome::Declined);
        assert_eq!(again.failure_code, Some(FailureCode::OutOfStock));
        assert_eq!(again.intent_id, first.intent_id);
        assert_eq!(
            again
                .json
                .replace("\"replayed\":true}", "\"replayed\":false}"),
            first.json
        );
        // PostgreSQL answered the replay with its decline-only statement (the item was
        // found out of stock); SQLite has none.
        let by_plan = match backend {
            Backend::Postgres(_) => 1,
            _ => 0,
        };
        assert_eq!(kernel.declined_by_plan(), by_plan, "{backend:?}");
        // A new key does buy now: the restock is real. On PostgreSQL the decline-only
        // statement is sent first, finds stock, writes nothing, and the whole one buys.
        let fresh = kernel.commit(&req, "new").await.expect("fresh");
        assert_eq!(fresh.outcome, Outcome::Committed, "{backend:?}");
        assert_eq!(
            fresh.attempts, 1,
            "{backend:?}: the decline-only run is no attempt"
        );
        assert_eq!(kernel.declined_by_plan(), by_plan, "{backend:?}");
        let st = fx.state().await;
        assert_eq!((st.committed, st.declined), (1, 1));
        st.assert_sound();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_input_is_refused_by_field_and_stores_nothing() {
    use swarm::sut::db::seed::sandbox;
    for backend in ALL {
        let fx = Fixture::new(backend, catalog(100, 4), mandates(2, 100_000, 4)).await;
        let kernel = fx.kernel().await;
        let good = fx.request(0, "agent-1");
        let before = fx.state().await;
        let mut cases: Vec<(&str, PurchaseRequest, &str, u16, &str)> = Vec::new();
        let mut r = good.clone();
        r.quantity = 0;
        cases.push(("quantity 0", r, "k", 422, "quantity"));
        let mut r = good.clone();
        r.amount_minor = 0;
        cases.push(("amount 0", r, "k", 422, "amountMinor"));
        let mut r = good.clone();
        r.amount_minor = -2500;
        cases.push(("negative amount", r, "k", 422, "amountMinor"));
        let mut r = good.clone();
        r.amount_minor = 2499;
        cases.push(("own price", r, "k", 422, "amountMinor"));
        let mut r = good.clone();
        r.quantity = 2;
        cases.push(("quantity without amount", r, "k", 422, "amountMinor"));
        let mut r = good.clone();
        r.currency = swarm::sut::kernel::Currency::parse("EUR").expect("eur");
        cases.push(("currency mismatch", r, "k", 422, "currency"));
        let mut r = good.clone();
        r.item_id = uuid::Uuid::from_u128(99);
        cases.push(("unknown item", r, "k", 404, "itemId"));
        let mut r = good.clone();
        r.mandate_id = uuid::Uuid::from_u128(98);
        cases.push(("unknown mandate", r, "k", 404, "mandateId"));
        let mut r = good.clone();
        r.merchant_id = uuid::Uuid::from_u128(97);
        cases.push(("unknown merchant", r, "k", 404, "merchantId"));
        let mut r = good.clone();
        r.mandate_id = sandbox::MANDATE;
        cases.push(("mandate of another merchant", r, "k", 422, "mandateId"));
        let mut r = good.clone();
        r.item_id = sandbox::ITEM;
        cases.push(("item of another merchant", r, "k", 422, "itemId"));
        let mut r = good.clone();
        r.agent_id = String::new();
        cases.push(("empty agent", r, "k", 400, "agentId"));
        cases.push(("empty key", good.clone(), "", 400, "Idempotency-Key"));
        cases.push((
            "key with spaces",
            good.clone(),
            "a key",
            400,
            "Idempotency-Key",
        ));
        for (what, req, key, status, field) in cases {
            let err = kernel.commit(&req, key).await.expect_err(what);
            assert_eq!(err.status(), status, "{backend:?} {what}: {err}");
            assert_eq!(err.field(), Some(field), "{backend:?} {what}: {err}");
        }
        for (what, args) in [
            ("merchant", ["nope", "", ""]),
            ("mandate", [&good.merchant_id.to_string()[..], "nope", ""]),
        ] {
            let err = PurchaseRequest::from_wire(args[0], args[1], args[2], "a", 1, 1, "USD")
                .expect_err(what);
            assert_eq!(err.status(), 400);
        }
        let err = PurchaseRequest::from_wire(
            &good.merchant_id.to_string(),
            &good.mandate_id.to_string(),
            &good.item_id.to_string(),
            "a",
            1,
            2500,
            "US",
        )
        .expect_err("currency");
        assert_eq!(err.field(), Some("currency"));
        assert_eq!(fx.state().await, before, "{backend:?}: nothing stored");
        // And the good request still goes through.
        assert_eq!(
            kernel.commit(&good, "k").await.expect("good").outcome,
            Outcome::Committed
        );
        fx.state().await.assert_sound();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookups_find_the_stored_snapshot() {
    for backend in ALL {
        let fx = Fixture::new(backend, catalog(10, 2), mandates(1, 100_000, 2)).await;
        let kernel = fx.kernel().await;
        let s = kernel
            .commit(&fx.request(0, "a"), "look-me-up")
            .await
            .expect("commit");
        let by_key = kernel
            .lookup_key("look-me-up")
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(by_key.snapshot.json, s.json);
        let by_id = kernel
            .lookup_intent(s.intent_id)
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(by_id.idempotency_key, "look-me-up");
        assert!(kernel.lookup_key("absent").await.expect("lookup").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimistic_sqlite_and_postgres_surface_real_retries() {
    // Plenty of stock in few buckets, many concurrent buyers: conflicts must happen and be
    // counted in `attempts`, and every purchase still settles once.
    for backend in [
        Backend::SqliteOptimistic,
        Backend::SqliteOcc,
        Backend::Postgres(swarm::sut::kernel::Isolation::RepeatableRead),
    ] {
        let fx = Fixture::new(backend, catalog(10_000, 2), mandates(400, 1_000_000, 2)).await;
        let kernel = fx.kernel().await;
        let mut tasks = Vec::new();
        for i in 0..400 {
            let k = kernel.clone();
            let r = fx.request(i, &format!("a{i}"));
            tasks.push(tokio::spawn(async move {
                commit_retrying(&k, &r, &format!("hot-{i}")).await
            }));
        }
        let mut retried = 0;
        let mut keys = HashSet::new();
        for t in tasks {
            let s = t.await.expect("task").expect("commit");
            assert_eq!(s.outcome, Outcome::Committed);
            keys.insert(s.intent_id);
            if s.attempts > 1 {
                retried += 1;
            }
        }
        assert_eq!(keys.len(), 400);
        assert!(retried > 0, "{backend:?}: no conflict was ever retried");
        let st = fx.state().await;
        assert_eq!(st.committed, 400);
        st.assert_sound();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn init_and_seed_twice_change_nothing() {
    for backend in [
        Backend::SqliteGroup,
        Backend::Postgres(swarm::sut::kernel::Isolation::RepeatableRead),
    ] {
        let fx = Fixture::new(backend, catalog(100, 4), mandates(50, 10_000, 4)).await;
        let db = swarm::sut::db::Database::connect(&fx.url).expect("connect");
        let before = db.stats().await.expect("stats");
        db.init().await.expect("init again");
        db.seed(&fx.plan).await.expect("seed again");
        let after = db.stats().await.expect("stats");
        assert_eq!(before.counts, after.counts, "{backend:?}");
        assert_eq!(before.available_units, after.available_units);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_exhausted_commits_nothing() {
    // One attempt only, on two hot buckets: some purchases must give up with 503 and
    // leave no trace; the rest settle exactly once. (Two: on one bucket the OCC kernel
    // starts one buyer a round, and nobody loses.)
    for backend in [
        Backend::SqliteOptimistic,
        Backend::SqliteOcc,
        Backend::Postgres(swarm::sut::kernel::Isolation::RepeatableRead),
    ] {
        let fx = Fixture::new(backend, catalog(100_000, 2), mandates(300, 1_000_000, 1)).await;
        let mut config = fx.config();
        config.max_attempts = 1;
        let kernel = Kernel::open(&fx.url, config).await.expect("kernel");
        let mut tasks = Vec::new();
        for i in 0..300 {
            let k = kernel.clone();
            let r = fx.request(i, &format!("a{i}"));
            tasks.push(tokio::spawn(async move {
                k.commit(&r, &format!("once-{i}")).await
            }));
        }
        let (mut ok, mut exhausted) = (0, 0);
        for t in tasks {
            match t.await.expect("task") {
                Ok(s) => {
                    assert_eq!(s.outcome, Outcome::Committed);
                    ok += 1;
                }
                Err(KernelError::RetryExhausted { attempts: 1 }) => exhausted += 1,
                Err(e) => panic!("{backend:?}: {e}"),
            }
        }
        assert!(exhausted > 0, "{backend:?}: no conflict gave up");
        let st = fx.state().await;
        assert_eq!(
            st.committed, ok,
            "{backend:?}: only answered commits are stored"
        );
        assert_eq!(
            st.intents, ok,
            "{backend:?}: an exhausted purchase stores nothing"
        );
        st.assert_sound();
    }
}

/// A region counts its own requests in flight: from when a request enters it until it is
/// answered or its client drops it (a timeout, a crash), so the gauge is back at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_counts_requests_until_answered_or_dropped() {
    use swarm::gateway::{Region, Reply};
    use swarm::scenario::{Delay, FaultMode};
    let fx = Fixture::new(Backend::SqliteOcc, catalog(10, 2), mandates(1, 100_000, 2)).await;
    let region = Region::new("r".into(), 0, fx.kernel().await);
    let answered = region.commit(&fx.request(0, "a"), "answered").await;
    assert!(matches!(answered, Reply::Answer(_)), "{answered:?}");
    assert_eq!(region.in_flight(), 0, "an answered request has left");

    // A blackhole never answers: the request stays in flight until its client gives up.
    region.fail(FaultMode::Blackhole, Delay::default());
    let req = fx.request(0, "b");
    let mut held = Box::pin(region.commit(&req, "held"));
    let waited = tokio::time::timeout(std::time::Duration::from_millis(20), &mut held).await;
    assert!(waited.is_err(), "a blackhole answered");
    assert_eq!(
        region.in_flight(),
        1,
        "a request held by the region is in flight"
    );
    drop(held);
    assert_eq!(
        region.in_flight(),
        0,
        "a dropped request is no longer in flight"
    );
}
