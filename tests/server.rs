//! `swarm serve` on real sockets (loopback): the kernel contract over HTTP, auth, every bad
//! input, and the OpenAPI document against the server.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{Backend, Fixture, catalog, mandates};
use swarm::sut::kernel::Isolation;
use swarm::sut::kernel::PurchaseRequest;
use swarm::sut::server::{ServerConfig, router, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// A server under test: its address, and the TLS connector when it speaks HTTPS.
#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl From<SocketAddr> for Server {
    fn from(addr: SocketAddr) -> Server {
        Server { addr, tls: None }
    }
}

impl From<&Server> for Server {
    fn from(s: &Server) -> Server {
        s.clone()
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP/1.1 request on a fresh connection; a reset connection is retried as a client
/// would (every request here is safe to repeat: purchases carry their key).
async fn http(
    server: impl Into<Server>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let server = server.into();
    let mut last = None;
    for _ in 0..20 {
        match try_http(&server, method, path, headers, body).await {
            Ok(r) => return r,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    panic!("{method} {path}: {last:?}");
}

async fn try_http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let addr = server.addr;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut s: Box<dyn Io> = match &server.tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Box::new(tls.connect(name, tcp).await?)
        }
        None => Box::new(tcp),
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status == 0 {
        return Err(std::io::Error::other("no status line"));
    }
    Ok(Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

fn body_of(r: &PurchaseRequest) -> String {
    serde_json::json!({
        "merchantId": r.merchant_id, "mandateId": r.mandate_id, "itemId": r.item_id,
        "agentId": r.agent_id, "quantity": r.quantity, "amountMinor": r.amount_minor,
        "currency": r.currency.as_str(),
    })
    .to_string()
}

async fn commit(
    addr: impl Into<Server>,
    r: &PurchaseRequest,
    key: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Idempotency-Key", key),
    ];
    h.extend_from_slice(extra);
    http(
        addr,
        "POST",
        "/v1/purchases/commit",
        &h,
        body_of(r).as_bytes(),
    )
    .await
}

/// Embedded SQLite: 100 units over 4 buckets, two mandates of 1000.00.
async fn small_fixture() -> Fixture {
    Fixture::new(
        Backend::SqliteGroup,
        catalog(100, 4),
        mandates(2, 100_000, 2),
    )
    .await
}

async fn start(fx: &Fixture, config: ServerConfig) -> SocketAddr {
    start_on(fx, config, false).await.addr
}

/// `swarm serve`'s router on a loopback port, over TLS when `tls` (a certificate made now,
/// trusted by the returned client).
async fn start_on(fx: &Fixture, config: ServerConfig, tls: bool) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(fx.kernel().await, config);
    let drain = std::time::Duration::from_secs(5);
    if !tls {
        tokio::spawn(
            async move { serve(listener, app, None, std::future::pending(), drain).await },
        );
        return addr.into();
    }
    let made = swarm::sut::server::tls::SelfSigned::loopback().expect("certificate");
    let server_config = made.server_config().expect("server config");
    tokio::spawn(async move {
        serve(
            listener,
            app,
            Some(server_config),
            std::future::pending(),
            drain,
        )
        .await
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.ca).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(swarm::sut::server::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Server {
        addr,
        tls: Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
            client,
        ))),
    }
}

const BACKENDS: [Backend; 2] = [
    Backend::SqliteGroup,
    Backend::Postgres(Isolation::RepeatableRead),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_holds_over_http() {
    idempotency_cases(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_holds_over_https() {
    idempotency_cases(true).await;
}

/// The kernel's idempotency cases through `swarm serve`, over TLS when `tls`.
async fn idempotency_cases(tls: bool) {
    for backend in BACKENDS {
        // One key, many concurrent requests: one intent, the same bytes every time.
        let fx = Fixture::new(backend, catalog(1000, 4), mandates(400, 1_000_000, 4)).await;
        let addr = start_on(&fx, ServerConfig::default(), tls).await;
        let req = fx.request(0, "agent-1");
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let r = req.clone();
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                commit(addr, &r, "http-one", &[]).await
            }));
        }
        let mut bodies = BTreeSet::new();
        for t in tasks {
            let reply = t.await.expect("task");
            assert_eq!(reply.status, 201, "{backend:?}: {}", reply.body);
            bodies.insert(
                reply
                    .body
                    .replace("\"replayed\":true}", "\"replayed\":false}"),
            );
        }
        assert_eq!(
            bodies.len(),
            1,
            "{backend:?}: every answer carries the same snapshot"
        );
        let st = fx.state().await;
        assert_eq!((st.intents, st.committed), (1, 1));

        // Same key, another amount: 409 and nothing changes.
        let mut changed = req.clone();
        changed.quantity = 2;
        changed.amount_minor = 5000;
        let reply = commit(&addr, &changed, "http-one", &[]).await;
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert!(reply.body.contains("KEY_REUSED"));
        assert_eq!(fx.state().await, st);

        // Many buyers for little stock: exactly the stock sells.
        let fx = Fixture::new(backend, catalog(10, 4), mandates(300, 100_000, 4)).await;
        let addr = start_on(&fx, ServerConfig::default(), tls).await;
        let mut tasks = Vec::new();
        for i in 0..300 {
            let r = fx.request(i, &format!("a{i}"));
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let reply = commit(&addr, &r, &format!("buy-{i}"), &[]).await;
                    if reply.status != 503 {
                        return reply.status;
                    }
                }
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.expect("task"));
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            10,
            "{backend:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            290,
            "{backend:?}"
        );
        fx.state().await.assert_sound();

        // A mandate that pays for exactly three.
        let fx = Fixture::new(backend, catalog(1000, 4), mandates(1, 7500, 4)).await;
        let addr = start_on(&fx, ServerConfig::default(), tls).await;
        let mut tasks = Vec::new();
        for i in 0..60 {
            let r = fx.request(0, &format!("a{i}"));
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                commit(addr, &r, &format!("spend-{i}"), &[]).await
            }));
        }
        let mut committed = 0;
        for t in tasks {
            let reply = t.await.expect("task");
            if reply.status == 201 {
                committed += 1;
            } else {
                assert!(reply.body.contains("MANDATE_REJECTED"), "{}", reply.body);
            }
        }
        assert_eq!(committed, 3, "{backend:?}");

        // A decline replays as the same decline after a restock.
        let fx = Fixture::new(backend, catalog(0, 2), mandates(1, 100_000, 2)).await;
        let addr = start_on(&fx, ServerConfig::default(), tls).await;
        let req = fx.request(0, "late");
        let first = commit(&addr, &req, "late-key", &[]).await;
        assert_eq!(first.status, 200);
        fx.execute("UPDATE bucket SET available = 5, initial_available = 5")
            .await;
        let again = commit(&addr, &req, "late-key", &[]).await;
        assert_eq!(again.status, 200);
        assert_eq!(
            again
                .body
                .replace("\"replayed\":true}", "\"replayed\":false}"),
            first.body
        );
        fx.state().await.assert_sound();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_every_bad_input_get_their_status_and_store_nothing() {
    use swarm::sut::db::seed::sandbox;
    let fx = small_fixture().await;
    let addr = start(
        &fx,
        ServerConfig {
            api_keys: vec!["k-123".into()],
            body_limit_bytes: 2048,
            ..Default::default()
        },
    )
    .await;
    let good = fx.request(0, "agent");
    let auth = ("Authorization", "Bearer k-123");
    let before = fx.state().await;
    let json = ("Content-Type", "application/json");
    let key = ("Idempotency-Key", "bad-1");
    let body = body_of(&good);
    let swap = |from: &str, to: &str| body.replace(from, to);
    let mut other = good.clone();
    other.mandate_id = sandbox::MANDATE;
    // (what, headers, body, status, error code, field)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "no key",
            vec![json, key],
            body.clone(),
            401,
            "UNAUTHORIZED",
            Some("Authorization"),
        ),
        (
            "wrong key",
            vec![json, key, ("Authorization", "Bearer nope")],
            body.clone(),
            401,
            "UNAUTHORIZED",
            Some("Authorization"),
        ),
        (
            "malformed json",
            vec![json, key, auth],
            "{\"merchantId\":".into(),
            400,
            "MALFORMED_JSON",
            None,
        ),
        (
            "a field twice (the last would win)",
            vec![json, key, auth],
            swap("\"quantity\":1", "\"quantity\":2,\"quantity\":1"),
            400,
            "DUPLICATE_FIELD",
            Some("quantity"),
        ),
        (
            "two idempotency keys",
            vec![json, key, ("Idempotency-Key", "bad-2"), auth],
            body.clone(),
            400,
            "DUPLICATE_HEADER",
            Some("Idempotency-Key"),
        ),
        (
            "missing field",
            vec![json, key, auth],
            swap("\"agentId\":\"agent\",", ""),
            400,
            "MISSING_FIELD",
            Some("agentId"),
        ),
        (
            "wrong type",
            vec![json, key, auth],
            swap("\"quantity\":1", "\"quantity\":\"1\""),
            400,
            "WRONG_TYPE",
            Some("quantity"),
        ),
        (
            "float money",
            vec![json, key, auth],
            swap("\"amountMinor\":2500", "\"amountMinor\":25.0"),
            422,
            "NOT_AN_INTEGER",
            Some("amountMinor"),
        ),
        (
            "own price",
            vec![json, key, auth],
            swap("\"amountMinor\":2500", "\"amountMinor\":1"),
            422,
            "INVALID_FIELD",
            Some("amountMinor"),
        ),
        (
            "unknown item",
            vec![json, key, auth],
            swap(
                &good.item_id.to_string(),
                "00000000-0000-4000-8000-000000000099",
            ),
            404,
            "NOT_FOUND",
            Some("itemId"),
        ),
        (
            "another merchant's mandate",
            vec![json, key, auth],
            body_of(&other),
            422,
            "INVALID_FIELD",
            Some("mandateId"),
        ),
        (
            "no idempotency key",
            vec![json, auth],
            body.clone(),
            400,
            "MISSING_FIELD",
            Some("Idempotency-Key"),
        ),
        (
            "wrong content type",
            vec![("Content-Type", "text/plain"), key, auth],
            body.clone(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
        (
            "oversized",
            vec![json, key, auth],
            format!("{{\"pad\":\"{}\"}}", "x".repeat(4096)),
            413,
            "PAYLOAD_TOO_LARGE",
            None,
        ),
    ];
    for (what, headers, body, status, code, field) in cases {
        let r = http(
            addr,
            "POST",
            "/v1/purchases/commit",
            &headers,
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        let e: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{what}: {}", r.body));
        assert_eq!(e["error"]["code"], code, "{what}");
        assert_eq!(e["error"]["field"].as_str(), field, "{what}");
    }
    assert_eq!(fx.state().await, before, "nothing stored");
    // The body's idempotencyKey is accepted when the header is absent.
    let with_key = body.replace(
        "\"currency\":\"USD\"",
        "\"currency\":\"USD\",\"idempotencyKey\":\"from-body\"",
    );
    let r = http(
        addr,
        "POST",
        "/v1/purchases/commit",
        &[json, auth],
        with_key.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(
        addr,
        "GET",
        "/v1/purchases?idempotencyKey=from-body",
        &[auth],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let intent: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let path = format!("/v1/purchases/{}", intent["intentId"].as_str().expect("id"));
    assert_eq!(http(addr, "GET", &path, &[auth], b"").await.status, 200);
    assert_eq!(http(addr, "GET", &path, &[], b"").await.status, 401);
    fx.state().await.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_health_metrics_and_overload() {
    let fx = small_fixture().await;
    let addr = start(&fx, ServerConfig::default()).await;
    let h = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "sandbox-1"),
    ];
    let first = http(addr, "POST", "/v1/sandbox/commit", &h, b"{}").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = http(addr, "POST", "/v1/sandbox/commit", &h, b"{}").await;
    assert_eq!(again.status, 201);
    assert!(again.body.ends_with("\"replayed\":true}"));
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.status, 200);
    let m = http(addr, "GET", "/metrics", &[], b"").await;
    assert!(
        m.body.contains("swarm_commits_total 1") && m.body.contains("swarm_replays_total 1"),
        "{}",
        m.body
    );

    // One slot: a burst is shed with 503 + Retry-After rather than queued.
    let addr = start(
        &fx,
        ServerConfig {
            max_in_flight: 1,
            ..Default::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let r = fx.request(i % 2, "burst");
        tasks.push(tokio::spawn(async move {
            commit(addr, &r, &format!("burst-{i}"), &[]).await
        }));
    }
    let mut shed = 0;
    for t in tasks {
        let r = t.await.expect("task");
        if r.status == 503 {
            assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
            assert!(r.body.contains("OVERLOADED"));
            shed += 1;
        }
    }
    assert!(shed > 0, "nothing was shed");
    fx.state().await.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_server() {
    let fx = small_fixture().await;
    let addr = start(&fx, ServerConfig::default()).await;
    let served = http(addr, "GET", "/openapi.json", &[], b"").await;
    assert_eq!(served.status, 200);
    let file = std::fs::read_to_string(common::repo().join("openapi/openapi.json")).expect("file");
    assert_eq!(served.body, file);
    let doc: serde_json::Value = serde_json::from_str(&file).expect("json");
    let req = fx.request(0, "doc");
    // The sandbox document names the stocked sandbox, with every field the schema requires.
    let sandbox = http(addr, "GET", "/v1/sandbox", &[], b"").await;
    let sandbox_doc: serde_json::Value = serde_json::from_str(&sandbox.body).expect("json");
    let sandbox_schema = &doc["components"]["schemas"]["Sandbox"];
    for k in sandbox_schema["required"].as_array().expect("required") {
        assert!(sandbox_doc.get(k.as_str().expect("name")).is_some(), "{k}");
    }
    assert_eq!(
        sandbox_doc.as_object().map(|o| o.len()),
        sandbox_schema["properties"].as_object().map(|o| o.len())
    );
    // A representative call per documented operation: its status must be documented.
    let commit_ok = commit(addr, &req, "doc-1", &[]).await;
    // Zinc's shape: the same key again answers already_exists with the order's id.
    let order = body_of(&req).replace(
        "\"currency\":\"USD\"",
        "\"currency\":\"USD\",\"idempotency_key\":\"doc-1\"",
    );
    let zinc = http(
        addr,
        "POST",
        "/orders",
        &[("Content-Type", "application/json")],
        order.as_bytes(),
    )
    .await;
    assert!(
        zinc.body.contains("already_exists") && zinc.body.contains("order_id"),
        "{}",
        zinc.body
    );
    let order_id =
        serde_json::from_str::<serde_json::Value>(&zinc.body).expect("json")["error"]["order_id"]
            .as_str()
            .expect("order id")
            .to_string();
    let order_lookup = http(addr, "GET", &format!("/orders/{order_id}"), &[], b"").await;
    assert_eq!(
        order_lookup.body, commit_ok.body,
        "the order is the stored snapshot"
    );
    let calls: Vec<(&str, &str, u16)> = vec![
        ("/v1/purchases/commit", "post", commit_ok.status),
        (
            "/v1/sandbox/commit",
            "post",
            http(
                addr,
                "POST",
                "/v1/sandbox/commit",
                &[
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", "doc-s"),
                ],
                b"{}",
            )
            .await
            .status,
        ),
        (
            "/v1/purchases/{intentId}",
            "get",
            http(
                addr,
                "GET",
                "/v1/purchases/00000000-0000-4000-8000-000000000001",
                &[],
                b"",
            )
            .await
            .status,
        ),
        (
            "/v1/purchases",
            "get",
            http(addr, "GET", "/v1/purchases?idempotencyKey=doc-1", &[], b"")
                .await
                .status,
        ),
        ("/orders", "post", zinc.status),
        ("/orders/{orderId}", "get", order_lookup.status),
        ("/v1/sandbox", "get", sandbox.status),
        (
            "/healthz",
            "get",
            http(addr, "GET", "/healthz", &[], b"").await.status,
        ),
        (
            "/metrics",
            "get",
            http(addr, "GET", "/metrics", &[], b"").await.status,
        ),
        ("/openapi.json", "get", served.status),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(
        paths.len(),
        calls.len(),
        "every documented route is exercised"
    );
    for (path, method, status) in calls {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(
            op["responses"].get(status.to_string()).is_some(),
            "{method} {path} answered {status}, undocumented"
        );
    }
    // Every field of a real snapshot is in the schema, and every required one is present.
    let schema = &doc["components"]["schemas"]["Snapshot"];
    let snap: serde_json::Value = serde_json::from_str(&commit_ok.body).expect("snapshot");
    for k in snap.as_object().expect("object").keys() {
        assert!(
            schema["properties"].get(k).is_some(),
            "field {k} is undocumented"
        );
    }
    for k in schema["required"].as_array().expect("required") {
        assert!(
            snap.get(k.as_str().expect("name")).is_some(),
            "required {k} missing"
        );
    }
    // Every documented request field is one the server reads.
    let purchase = &doc["components"]["schemas"]["Purchase"]["properties"];
    for k in purchase.as_object().expect("object").keys() {
        assert!(
            k == "idempotencyKey" || body_of(&req).contains(&format!("\"{k}\"")),
            "{k}"
        );
    }
    // An unknown route is a JSON 404.
    assert_eq!(http(addr, "GET", "/nope", &[], b"").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_proxy_refuses_hangs_resets_and_loses_acks_on_real_sockets() {
    use swarm::gateway::proxy::FaultProxy;
    use swarm::scenario::{Delay, FaultMode};
    let fx = Fixture::new(
        Backend::SqliteGroup,
        catalog(100, 4),
        mandates(4, 100_000, 2),
    )
    .await;
    let server = start(&fx, ServerConfig::default()).await;
    let proxy = FaultProxy::start(server).await.expect("proxy");
    let addr = proxy.addr();
    let req = fx.request(0, "p");
    assert_eq!(
        commit(addr, &req, "p-1", &[]).await.status,
        201,
        "up: bytes pass"
    );

    proxy.fail(FaultMode::Outage, Delay::default()).await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "outage: connection refused");
    proxy.heal().await;
    assert_eq!(commit(addr, &req, "p-1", &[]).await.status, 201, "healed");

    proxy.fail(FaultMode::Blackhole, Delay::default()).await;
    let hung = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        try_http(&addr.into(), "GET", "/healthz", &[], b""),
    )
    .await;
    assert!(hung.is_err(), "blackhole: no answer before the timeout");
    proxy.heal().await;

    proxy.fail(FaultMode::LostAck, Delay::default()).await;
    let before = fx.state().await.committed;
    let lost = try_http(
        &addr.into(),
        "POST",
        "/v1/purchases/commit",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "p-2"),
        ],
        body_of(&fx.request(1, "q")).as_bytes(),
    )
    .await;
    assert!(lost.is_err(), "lost ack: the client hears a reset");
    assert_eq!(
        fx.state().await.committed,
        before + 1,
        "…but the server committed"
    );
    proxy.heal().await;
    let replay = commit(addr, &fx.request(1, "q"), "p-2", &[]).await;
    assert!(
        replay.body.ends_with("\"replayed\":true}"),
        "{}",
        replay.body
    );

    proxy.fail(FaultMode::Crash, Delay::default()).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "crash: refused until healed"
    );
    proxy.heal().await;
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.status, 200);

    // Latency: every answer arrives, none sooner than latency - jitter.
    let delay = Delay {
        latency_ms: 400,
        jitter_ms: 100,
    };
    proxy.fail(FaultMode::Latency, delay).await;
    for i in 0..3 {
        let sent = std::time::Instant::now();
        let slow = commit(addr, &fx.request(2, "r"), &format!("p-3-{i}"), &[]).await;
        let took = sent.elapsed();
        assert!(slow.status == 200 || slow.status == 201, "{}", slow.body);
        assert!(
            took >= std::time::Duration::from_millis(300),
            "latency: answered after {took:?}, expected at least 300 ms"
        );
    }
    proxy.heal().await;
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.status, 200);
}

/// `swarm serve` as a process, stopped by SIGTERM while a request is half sent: the
/// listener closes at once, the request still completes (and commits), the idle
/// keep-alive connection is closed, and the process exits 0.
#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    use std::io::{Read, Write};
    use std::process::Command;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", tmp.path().join("serve.db").display());
    let seeded = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["db", "seed", "--db", &db])
        .arg(common::repo().join("scenarios/smoke.toml"))
        .output()
        .expect("seed");
    assert!(seeded.status.success(), "{seeded:?}");
    let mut server = common::ServeProcess::start(&db, common::free_port(), &[], &[]);
    let port = server.port;
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port));
    let timeout = Some(std::time::Duration::from_secs(10));
    // An idle keep-alive connection: one request answered, then nothing.
    let mut idle = connect().expect("idle");
    idle.set_read_timeout(timeout).expect("timeout");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A request in flight: headers and half the body sent.
    let mut busy = connect().expect("busy");
    busy.set_read_timeout(timeout).expect("timeout");
    busy.write_all(
        b"POST /v1/sandbox/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Idempotency-Key: drain-1\r\nContent-Length: 2\r\n\r\n{",
    )
    .expect("write");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // New connections are refused once the server stops listening.
    let mut refused = false;
    for _ in 0..200 {
        if connect().is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(refused, "still accepting after SIGTERM");
    // The idle connection is closed by the server: end of stream, no answer.
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "idle keep-alive closed"
    );
    // The request in flight finishes and gets its answer.
    busy.write_all(b"}").expect("rest of the body");
    let mut answer = Vec::new();
    let _ = busy.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("\"outcome\":\"COMMITTED\""), "{answer}");
    let status = server.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    if let Some(mut e) = server.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(err.contains("draining"), "{err}");
    // It committed before the process went away.
    let conn = rusqlite::Connection::open(tmp.path().join("serve.db")).expect("db");
    let stored: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM intent WHERE idem_key = 'drain-1' AND outcome = 'COMMITTED'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(stored, 1);
}
