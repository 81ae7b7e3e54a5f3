//! The pipeline across processes: `orderly up` killed with SIGKILL mid-burst loses no
//! acknowledged order; a worker killed mid-job loses its jobs only until its lease expires;
//! two hosts sharing a Redis key-value store see one circuit breaker.

use futures::future::join_all;
use orderly_tests::process::HostProcess;
use orderly_tests::redis_server::private_redis;
use orderly_tests::{HttpClient, Reply, passed_validation, validated_count};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const ORDERLY: &str = env!("CARGO_BIN_EXE_orderly-under-test");

async fn create(client: &HttpClient, key: &str) -> Reply {
    client
        .create_order(key, r#"{"product": "Medicine A", "quantity": 3}"#)
        .await
}

/// Waits until no order is processing; returns the stats.
async fn drained(client: &HttpClient) -> Value {
    let stats = client
        .wait_for(
            Duration::from_secs(60),
            async |c| c.get("/admin/stats").await.json(),
            |s| s["orders"]["processing"] == 0,
        )
        .await;
    assert_eq!(stats["orders"]["processing"], 0, "not drained: {stats}");
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = HostProcess::start_real(ORDERLY, dir.path(), "state", &[]).await;
    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    // 16 clients send orders until the host dies under them.
    let clients = (0..16).map(|client_number| {
        let (client, acknowledged, answered) = (
            host.client.clone(),
            Arc::clone(&acknowledged),
            Arc::clone(&answered),
        );
        tokio::spawn(async move {
            for n in 0.. {
                let key = format!("burst-{client_number}-{n}");
                let body =
                    format!(r#"{{"order_id": "{key}", "product": "Medicine A", "quantity": 1}}"#);
                match client.try_create_order(&key, &body).await {
                    Some(reply) if reply.status == 202 => {
                        acknowledged.lock().unwrap().insert(key);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(reply) => panic!("{key}: {} {}", reply.status, reply.text()),
                    None => return,
                }
            }
        })
    });
    let clients: Vec<_> = clients.collect();
    while answered.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill();
    join_all(clients).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300);
    let host = HostProcess::start_real(ORDERLY, dir.path(), "state", &[]).await;
    let stats = drained(&host.client).await;
    for key in &acknowledged {
        let order = host.client.get(&format!("/orders/{key}")).await;
        assert_eq!(order.status, 200, "acknowledged order {key} was lost");
        assert!(passed_validation(&order.json()["status"]), "{key}");
    }
    assert!(
        validated_count(&stats) >= acknowledged.len() as u64,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_its_jobs_only_until_the_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "--variable",
        "worker_lease_ms=1500",
        "--variable",
        "validator_timeout_ms=20000",
    ];
    let mut host = HostProcess::start_real(ORDERLY, dir.path(), "state", &settings).await;
    // The validator hangs: every call takes 15 s.
    let slow = host
        .client
        .post(
            "/external/configure",
            r#"{"mode": "slow", "delay_ms": 15000}"#,
        )
        .await;
    assert_eq!(slow.status, 200);
    for n in 0..3 {
        assert_eq!(
            create(&host.client, &format!("leased-{n}")).await.status,
            202
        );
    }
    let leased = host
        .client
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get("/admin/stats").await.json(),
            |s| s["jobs_leased"] == 3,
        )
        .await;
    assert_eq!(leased["jobs_leased"], 3, "{leased}");
    host.kill();
    let host = HostProcess::start_real(ORDERLY, dir.path(), "state", &settings).await;
    host.client
        .post("/external/configure", r#"{"mode": "normal"}"#)
        .await;
    let stats = drained(&host.client).await;
    assert_eq!(stats["orders"]["validated"], 3, "{stats}");
    let listed = host.client.get("/orders").await.json();
    for order in listed["orders"].as_array().unwrap() {
        let id = order["id"].as_str().unwrap();
        let kinds = host.client.validation_kinds(id).await;
        assert!(
            kinds.iter().any(|k| k == "lease_expired"),
            "{id}: {kinds:?}"
        );
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("validated"),
            "{id}: {kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sharing_a_redis_store_see_one_breaker() {
    let Some(redis) = private_redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("runtime-config.toml"),
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    // Long open periods: once open, the circuit stays open for the whole test.
    let flags = [
        "--runtime-config-file",
        "runtime-config.toml",
        "--variable",
        "breaker_open_ms=60000",
        "--variable",
        "breaker_open_max_ms=60000",
    ];
    let one = HostProcess::start_real(ORDERLY, dir.path(), "state-one", &flags).await;
    let two = HostProcess::start_real(ORDERLY, dir.path(), "state-two", &flags).await;
    // The simulator's mode lives in the shared store too: both validators fail.
    one.client
        .post("/external/configure", r#"{"mode": "error"}"#)
        .await;
    assert_eq!(
        two.client.get("/external/configure").await.json()["mode"],
        "error"
    );
    // Failures seen by host one only...
    for n in 0..10 {
        assert_eq!(create(&one.client, &format!("one-{n}")).await.status, 202);
    }
    // ...open the circuit for host two.
    let open = two
        .client
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get("/admin/breaker").await.json(),
            |b| b["state"] == "open",
        )
        .await;
    assert_eq!(open["state"], "open", "{open}");
    let created = create(&two.client, "two-0").await;
    let id = created.json()["order"]["id"].as_str().unwrap().to_owned();
    let events = two
        .client
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get(&format!("/orders/{id}/events")).await.json(),
            |e| {
                e["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == "deferred")
            },
        )
        .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["accepted", "deferred"],
        "host two never called: {events}"
    );
}
