//! The notification service, black-box through the shipped spin.toml with fake fulfilment
//! services (see `orderly_tests::saga`): every confirmed or cancelled order gets exactly one
//! notification, from the doorbell alone (the sweeper taken out of the manifest), from the
//! sweep alone (the doorbell's subscriber taken out: every doorbell is lost), and redelivered
//! doorbells create no duplicate.

use orderly_tests::native_server::RecordingServer;
use orderly_tests::redis_server::{private_redis, publish};
use orderly_tests::saga::{cancel_pending, create, fake_services, order_when, wire_services};
use orderly_tests::{HttpClient, TestApp, real_manifest};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The notification component's Redis trigger in spin.toml.
const DOORBELL_TRIGGER: &str =
    "[[trigger.redis]]\nchannel = \"orderly-events\"\ncomponent = \"notification\"\n";
/// The notification sweeper's cron trigger in spin.toml.
const SWEEPER_TRIGGER: &str =
    "[[trigger.cron]]\ncomponent = \"notification-sweeper\"\ncron_expression = \"* * * * * *\"\n";

/// The shipped app without `trigger` (which must be in it), its services at `server`, on the
/// Redis server at `redis` (`redis://host:port`) if given, else on its embedded broker.
async fn start_without(trigger: &str, server: &RecordingServer, redis: Option<&str>) -> TestApp {
    let manifest = real_manifest();
    assert!(manifest.contains(trigger), "spin.toml has {trigger}");
    let manifest = manifest.replace(trigger, "");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    TestApp::start_real_manifest_in(dir, &manifest, |options| {
        wire_services(options, server);
        if let Some(redis) = redis {
            options
                .variables
                .insert("redis_url".to_owned(), redis.to_owned());
        }
    })
    .await
}

/// The notification about `id` once there is one (or the 404 after 30 s), through `path`'s
/// prefix (`/notifications` or the gateway's `/api/notifications`).
async fn notification(client: &HttpClient, prefix: &str, id: &str) -> Value {
    let path = format!("{prefix}/{id}");
    let reply = client
        .wait_for(
            Duration::from_secs(30),
            async |c| c.get(&path).await,
            |reply| reply.status != 404,
        )
        .await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

/// Every notification listed, as (order id, kind).
async fn listed(client: &HttpClient) -> Vec<(String, String)> {
    let list = client.get("/notifications?limit=1000").await.json();
    assert_eq!(list["next"], Value::Null, "{list}");
    let mut pairs: Vec<(String, String)> = list["notifications"]
        .as_array()
        .expect("a list of notifications")
        .iter()
        .map(|entry| {
            let text = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
            (text("order_id"), text("kind"))
        })
        .collect();
    pairs.sort();
    pairs
}

/// A confirmed order and one cancelled by a refused step, both created now.
async fn finish_two(app: &TestApp, confirmed: &str, cancelled: &str) {
    create(
        app,
        confirmed,
        &format!(
            r#"{{"order_id": "{confirmed}", "customer": "Ada", "items": [
                {{"product": "Medicine A", "quantity": 2}}, {{"product": "Vaccine X", "quantity": 1}}]}}"#
        ),
    )
    .await;
    create(
        app,
        cancelled,
        &format!(r#"{{"order_id": "{cancelled}", "product": "Medicine B", "quantity": 1}}"#),
    )
    .await;
    order_when(app, confirmed, "confirmed").await;
    order_when(app, cancelled, "cancelled").await;
}

fn pair(id: &str, kind: &str) -> (String, String) {
    (id.to_owned(), kind.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doorbells_notify_every_final_order_once_even_when_redelivered() {
    // A real Redis, to deliver doorbells again from outside.
    let Some(redis_server) = private_redis() else {
        return;
    };
    let redis = redis_server.url();
    let server = RecordingServer::start(fake_services).await;
    // No sweeper: only doorbells can make notifications here.
    let app = start_without(SWEEPER_TRIGGER, &server, Some(&redis)).await;
    finish_two(&app, "note-ok", "note-stock").await;

    let confirmed = notification(&app, "/notifications", "note-ok").await;
    assert_eq!(confirmed["kind"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["customer"], "Ada", "{confirmed}");
    assert_eq!(
        confirmed["items"],
        serde_json::json!([{"product": "Medicine A", "quantity": 2},
                           {"product": "Vaccine X", "quantity": 1}])
    );
    assert_eq!(confirmed["reason"], Value::Null, "{confirmed}");
    let decided = confirmed["decided_at"].as_u64();
    let created = confirmed["created_at"].as_u64();
    assert!(decided.is_some_and(|at| Some(at) <= created), "{confirmed}");
    // Through the gateway too.
    let cancelled = notification(&app, "/api/notifications", "note-stock").await;
    assert_eq!(cancelled["kind"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["reason"], "reserve_refused", "{cancelled}");
    assert_eq!(cancelled["detail"], "Medicine B: 0 left", "{cancelled}");

    // A customer cancels an order still being validated: the orders API rings the doorbell.
    cancel_pending(&app, "note-pending").await;
    let pending = notification(&app, "/notifications", "note-pending").await;
    assert_eq!(pending["reason"], "cancelled_by_customer", "{pending}");

    // Doorbells delivered again, then a malformed message: messages are handled one at a
    // time, in order, so once it is dead-lettered the doorbells before it were handled.
    for doorbell in [r#"{"wake":"backlog"}"#, r#"{"order_id":"note-ok"}"#] {
        for _ in 0..2 {
            assert_eq!(publish(&redis, "orderly-events", doorbell.as_bytes()), 1);
        }
    }
    assert_eq!(publish(&redis, "orderly-events", b"not a doorbell"), 1);
    let letters = app
        .wait_for(
            Duration::from_secs(20),
            async |c| c.get("/admin/dlq").await.json(),
            |letters| letters["count"] == 1,
        )
        .await;
    assert_eq!(
        letters["dead_letters"][0]["channel"], "orderly-events",
        "{letters}"
    );
    assert_eq!(
        listed(&app).await,
        [
            pair("note-ok", "confirmed"),
            pair("note-pending", "cancelled"),
            pair("note-stock", "cancelled"),
        ]
    );
    let again = notification(&app, "/notifications", "note-ok").await;
    assert_eq!(again, confirmed, "the notification did not change");

    assert_eq!(app.get("/notifications/nobody").await.status, 404);
    assert_eq!(app.get("/notifications?limit=0").await.status, 400);
    assert_eq!(app.post("/notifications", "").await.status, 405);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_notifies_orders_whose_doorbell_was_lost() {
    let server = RecordingServer::start(fake_services).await;
    // Nobody subscribes to the doorbells: every one is lost.
    let app = start_without(DOORBELL_TRIGGER, &server, None).await;
    finish_two(&app, "lost-ok", "lost-stock").await;
    let confirmed = notification(&app, "/notifications", "lost-ok").await;
    assert_eq!(confirmed["kind"], "confirmed", "{confirmed}");
    let cancelled = notification(&app, "/notifications", "lost-stock").await;
    assert_eq!(cancelled["reason"], "reserve_refused", "{cancelled}");
    // Sweeps go on every second; nothing is recorded twice.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        listed(&app).await,
        [
            pair("lost-ok", "confirmed"),
            pair("lost-stock", "cancelled")
        ]
    );
    app.stop().await;
}
