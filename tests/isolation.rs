//! The isolation experiment, small: `swarm selftest --isolation-matrix` on PostgreSQL. The
//! reference kernel is valid at every level; each naive kernel lets its violation through
//! at READ COMMITTED and is stopped at REPEATABLE READ and SERIALIZABLE (PostgreSQL's
//! first-updater-wins turns the lost update into a serialization failure, retried).

mod common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isolation_matrix_shows_what_each_level_lets_through() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Few mandates and buckets, so purchases collide on the same rows.
    let hot = tmp.path().join("hot.toml");
    std::fs::write(
        &hot,
        "name = \"hot\"\nseed = 5\n\
         catalog = { items = 1, stock = 100000, buckets = 2, price_minor = 2500, currency = \"USD\" }\n\
         mandates = { count = 4, cap_minor = 1000000, shards = 2 }\n\
         agents = { count = 800, in_flight = 64, arrival = \"burst\" }\n\
         mix = { well_behaved = 1.0 }\n\
         retry = { timeout_ms = 5000, max_attempts = 8, backoff_ms = [5, 200] }\n",
    )
    .expect("write");
    let server = common::pg_server_url();
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["selftest", "--isolation-matrix", "--json", "--db", &server])
        .args(["--scenario", &hot.display().to_string()])
        .env("RUST_LOG", "error")
        .output()
        .expect("swarm");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cells.len(), 9, "3 levels × 3 kernels");
    let cell = |level: &str, kernel: &str| {
        cells
            .iter()
            .find(|c| {
                c["isolation"] == level
                    && c["kernel"].as_str().is_some_and(|k| k.starts_with(kernel))
            })
            .unwrap_or_else(|| panic!("no cell {level} {kernel}"))
    };
    let n = |c: &serde_json::Value, k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    for level in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] {
        let reference = cell(level, "reference");
        assert_eq!(reference["validity"], "valid", "{reference}");
        assert_eq!(
            (n(reference, "oversells"), n(reference, "mandate_breaches")),
            (0, 0)
        );
    }
    let stock = cell("READ COMMITTED", "naive stock");
    assert!(n(stock, "oversells") > 0, "a lost update on stock: {stock}");
    assert_eq!(stock["validity"], "invalid");
    let cap = cell("READ COMMITTED", "naive cap");
    assert!(
        n(cap, "mandate_breaches") > 0,
        "a lost update on a shard: {cap}"
    );
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        for kernel in ["naive stock", "naive cap"] {
            let c = cell(level, kernel);
            assert_eq!(c["validity"], "valid", "{level} stops {kernel}: {c}");
            assert!(
                n(c, "occ_retries") > 0,
                "{level} {kernel}: the conflicts were retried: {c}"
            );
        }
    }
}
