//! Real databases for integration tests: a SQLite file in a temporary directory, or a
//! fresh database on the PostgreSQL cluster `scripts/pg-up.sh` runs (started on demand).
#![allow(dead_code)]

pub mod certs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use swarm::addr::DbUrl;
use swarm::sut::db::seed::{CatalogSpec, MandateSpec};
use swarm::sut::db::{Database, SeedPlan};

/// The tests' PostgreSQL server (a URL that may create and drop databases).
pub fn pg_server_url() -> String {
    pg_admin_url().to_string()
}

/// Where the tests' PostgreSQL cluster lives, started once per test binary.
fn pg_admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SWARM_TEST_PG_URL") {
            return url;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-up.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "PostgreSQL tests need a server and {} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A new, empty PostgreSQL database on the test cluster.
pub async fn fresh_pg() -> DbUrl {
    let admin = pg_admin_url();
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {admin}: {e}"));
    tokio::spawn(conn);
    let name = format!("swarm_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}").parse().expect("url")
}

/// Drop a database `fresh_pg` made (its connections first).
pub async fn drop_pg(url: &DbUrl) {
    let DbUrl::Postgres(u) = url else { return };
    let Some((_, name)) = u.rsplit_once('/') else {
        return;
    };
    let (client, conn) = tokio_postgres::connect(pg_admin_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop database");
}

/// A SQLite file in a temporary directory (kept alive by the returned guard).
pub fn fresh_sqlite() -> (tempfile::TempDir, DbUrl) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = DbUrl::sqlite(dir.path().join("swarm.db"));
    (dir, url)
}

/// The backends and modes every kernel test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SqliteGroup,
    SqliteOptimistic,
    SqliteOcc,
    Postgres(swarm::sut::kernel::Isolation),
}

pub const ALL: [Backend; 4] = [
    Backend::SqliteGroup,
    Backend::SqliteOptimistic,
    Backend::SqliteOcc,
    Backend::Postgres(swarm::sut::kernel::Isolation::RepeatableRead),
];

pub const ISOLATIONS: [swarm::sut::kernel::Isolation; 3] = [
    swarm::sut::kernel::Isolation::ReadCommitted,
    swarm::sut::kernel::Isolation::RepeatableRead,
    swarm::sut::kernel::Isolation::Serializable,
];

/// A database of `backend`, initialised and seeded, with its plan; `_guard` keeps a
/// SQLite directory alive.
pub struct Fixture {
    pub _guard: Option<tempfile::TempDir>,
    pub url: DbUrl,
    pub plan: SeedPlan,
    pub backend: Backend,
}

impl Fixture {
    pub async fn new(backend: Backend, catalog: CatalogSpec, mandates: MandateSpec) -> Fixture {
        let (guard, url) = match backend {
            Backend::Postgres(_) => (None, fresh_pg().await),
            _ => {
                let (g, u) = fresh_sqlite();
                (Some(g), u)
            }
        };
        let db = Database::connect(&url).expect("connect");
        db.init().await.expect("init");
        let plan = SeedPlan::new(7, &catalog, &mandates);
        db.seed(&plan).await.expect("seed");
        Fixture {
            _guard: guard,
            url,
            plan,
            backend,
        }
    }

    pub fn config(&self) -> swarm::sut::kernel::KernelConfig {
        let mut c = swarm::sut::kernel::KernelConfig {
            max_attempts: 64,
            ..Default::default()
        };
        match self.backend {
            Backend::SqliteGroup => c.sqlite_mode = swarm::sut::kernel::SqliteMode::Group,
            Backend::SqliteOptimistic => {
                c.sqlite_mode = swarm::sut::kernel::SqliteMode::Optimistic;
                c.pool_size = 8;
            }
            Backend::SqliteOcc => c.sqlite_mode = swarm::sut::kernel::SqliteMode::Occ,
            Backend::Postgres(iso) => {
                c.isolation = iso;
                c.pool_size = 16;
            }
        }
        c
    }

    pub async fn kernel(&self) -> swarm::sut::kernel::Kernel {
        swarm::sut::kernel::Kernel::open(&self.url, self.config())
            .await
            .expect("open kernel")
    }

    /// A valid request for catalog item 0 on mandate `m`.
    pub fn request(&self, m: usize, agent: &str) -> swarm::sut::kernel::PurchaseRequest {
        let item = self.plan.catalog_items().next().expect("an item");
        let mandate = self.plan.catalog_mandates().nth(m).expect("a mandate");
        swarm::sut::kernel::PurchaseRequest {
            merchant_id: item.merchant_id,
            mandate_id: mandate.mandate_id,
            item_id: item.item_id,
            agent_id: agent.to_string(),
            quantity: 1,
            amount_minor: item.unit_price_minor,
            currency: swarm::sut::kernel::Currency::parse(&item.currency).expect("currency"),
        }
    }

    /// Every figure the tests assert on, read from raw rows.
    pub async fn state(&self) -> State {
        read_state(&self.url).await
    }

    /// Run a statement (test set-up, e.g. a restock).
    pub async fn execute(&self, sql: &str) {
        match &self.url {
            DbUrl::Sqlite(p) => {
                let conn = rusqlite::Connection::open(p).expect("open");
                conn.execute_batch(sql).expect("execute");
            }
            DbUrl::Postgres(u) => {
                let (client, conn) = tokio_postgres::connect(u, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                client.batch_execute(sql).await.expect("execute");
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub intents: i64,
    pub committed: i64,
    pub declined: i64,
    pub ledger_txns: i64,
    pub legs: i64,
    pub ledger_sum: i64,
    pub min_available: i64,
    pub available: i64,
    pub initial_available: i64,
    pub claimed_units: i64,
    pub min_remaining: i64,
    pub remaining: i64,
    pub initial_remaining: i64,
    pub debited: i64,
    pub claims: i64,
    pub debits: i64,
}

const STATE_SQL: &str = "SELECT \
  (SELECT count(*) FROM intent), \
  (SELECT count(*) FROM intent WHERE outcome = 'COMMITTED'), \
  (SELECT count(*) FROM intent WHERE outcome = 'DECLINED'), \
  (SELECT count(*) FROM ledger_txn), \
  (SELECT count(*) FROM ledger_leg), \
  (SELECT COALESCE(SUM(signed_amount_minor), 0) FROM ledger_leg), \
  (SELECT COALESCE(MIN(available), 0) FROM bucket), \
  (SELECT COALESCE(SUM(available), 0) FROM bucket), \
  (SELECT COALESCE(SUM(initial_available), 0) FROM bucket), \
  (SELECT COALESCE(SUM(quantity), 0) FROM stock_claim), \
  (SELECT COALESCE(MIN(remaining), 0) FROM mandate_shard), \
  (SELECT COALESCE(SUM(remaining), 0) FROM mandate_shard), \
  (SELECT COALESCE(SUM(initial_remaining_minor), 0) FROM mandate_shard), \
  (SELECT COALESCE(SUM(amount_minor), 0) FROM mandate_debit), \
  (SELECT count(*) FROM stock_claim), \
  (SELECT count(*) FROM mandate_debit)";

pub async fn read_state(url: &DbUrl) -> State {
    let v: Vec<i64> = match url {
        DbUrl::Sqlite(p) => {
            let conn = rusqlite::Connection::open(p).expect("open");
            conn.query_row(STATE_SQL, [], |r| (0..16).map(|i| r.get(i)).collect())
                .expect("state")
        }
        DbUrl::Postgres(u) => {
            let (client, conn) = tokio_postgres::connect(u, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            let sql = STATE_SQL.replace("), 0)", ")::BIGINT, 0)");
            let row = client.query_one(&sql, &[]).await.expect("state");
            (0..16).map(|i| row.get::<_, i64>(i)).collect()
        }
    };
    State {
        intents: v[0],
        committed: v[1],
        declined: v[2],
        ledger_txns: v[3],
        legs: v[4],
        ledger_sum: v[5],
        min_available: v[6],
        available: v[7],
        initial_available: v[8],
        claimed_units: v[9],
        min_remaining: v[10],
        remaining: v[11],
        initial_remaining: v[12],
        debited: v[13],
        claims: v[14],
        debits: v[15],
    }
}

impl State {
    /// The invariants every test ends on: nothing negative, everything conserved, the
    /// ledger balanced, one claim, debit and ledger transaction per commit.
    pub fn assert_sound(&self) {
        assert_eq!(self.ledger_sum, 0, "ledger drift: {self:?}");
        assert_eq!(self.legs, 2 * self.ledger_txns, "legs: {self:?}");
        assert_eq!(
            self.ledger_txns, self.committed,
            "ledger per commit: {self:?}"
        );
        assert_eq!(self.claims, self.committed, "claims per commit: {self:?}");
        assert_eq!(self.debits, self.committed, "debits per commit: {self:?}");
        assert!(self.min_available >= 0, "negative bucket: {self:?}");
        assert!(self.min_remaining >= 0, "negative shard: {self:?}");
        assert_eq!(
            self.initial_available,
            self.available + self.claimed_units,
            "stock not conserved: {self:?}"
        );
        assert_eq!(
            self.initial_remaining,
            self.remaining + self.debited,
            "mandate not conserved: {self:?}"
        );
    }
}

/// The repository root, for running scripts and the binary.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first column of the first row of `sql`, as text.
pub async fn query_text(url: &DbUrl, sql: &str) -> String {
    match url {
        DbUrl::Sqlite(p) => {
            let conn = rusqlite::Connection::open(p).expect("open");
            conn.query_row(sql, [], |r| r.get::<_, String>(0))
                .expect(sql)
        }
        DbUrl::Postgres(u) => {
            let (client, conn) = tokio_postgres::connect(u, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            let rows = client.simple_query(sql).await.expect(sql);
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .expect("a row")
        }
    }
}

/// Run statements outside any kernel (corruption by hand).
pub async fn execute(url: &DbUrl, sql: &str) {
    match url {
        DbUrl::Sqlite(p) => {
            let conn = rusqlite::Connection::open(p).expect("open");
            conn.execute_batch(sql).expect(sql);
        }
        DbUrl::Postgres(u) => {
            let (client, conn) = tokio_postgres::connect(u, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect(sql);
        }
    }
}

/// One check of a summary.json, by name.
pub fn check<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// `swarm serve --db DB --listen 127.0.0.1:PORT ARGS…` as a process, listening when this
/// returns; killed when dropped, so a failing test never leaves it holding its output.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl ServeProcess {
    pub fn start(db: &str, port: u16, args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(["serve", "--db", db, "--listen", &listen])
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("swarm serve");
        let server = ServeProcess { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("swarm serve never listened on {listen}");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One item of `stock` units at 2500 USD minor units, over `buckets` buckets.
pub fn catalog(stock: i64, buckets: u32) -> CatalogSpec {
    CatalogSpec {
        items: 1,
        stock,
        buckets,
        price_minor: 2500,
        currency: "USD".into(),
    }
}

/// `count` mandates capped at `cap_minor`, over `shards` shards each.
pub fn mandates(count: u32, cap_minor: i64, shards: u32) -> MandateSpec {
    MandateSpec {
        count,
        cap_minor,
        shards,
    }
}

/// A Ctrl-C to `child`.
pub fn interrupt(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Wait until the run reporting to `dir` has its history file (it is made once the run's
/// Ctrl-C handler is in place and just before its agents start), then `ms` more: a Ctrl-C
/// after that stops a running run, however slow the machine was to start it.
pub fn wait_running(dir: &Path, ms: u64) {
    let history = dir.join("history.bin");
    let waited = std::time::Instant::now();
    while !history.exists() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "{} never appeared",
            history.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
}
