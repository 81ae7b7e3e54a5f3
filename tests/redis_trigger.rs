//! The Redis trigger and outbound Redis: fan-out to every subscriber, bursts with nothing lost,
//! reconnection after a Redis restart, handler errors, and the same results from the embedded
//! broker as from a real server.

use orderly_tests::redis_server::{private_redis, redis};
use orderly_tests::{HttpClient, TestApp, logs, unique};
use std::sync::Arc;
use std::time::Duration;

/// A publisher (the probe) and two subscribers on one channel.
fn fan_out_app(address: &str, channel: &str, names: [&str; 2]) -> String {
    format!(
        r#"
spin_manifest_version = 2
[application]
name = "redis"
[application.trigger.redis]
address = "{address}"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[[trigger.redis]]
channel = "{channel}"
component = "first"
[[trigger.redis]]
channel = "{channel}"
component = "second"
[component.probe]
source = "{{wasm}}/probe.wasm"
allowed_outbound_hosts = ["{address}"]
key_value_stores = ["default"]
[component.first]
source = "{{wasm}}/subscriber.wasm"
key_value_stores = ["default"]
[component.first.variables]
name = "{first}"
[component.second]
source = "{{wasm}}/subscriber.wasm"
key_value_stores = ["default"]
[component.second.variables]
name = "{second}"
"#,
        first = names[0],
        second = names[1],
    )
}

async fn start(manifest: &str, mode: orderly_host::RedisMode) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    TestApp::start_in(dir, manifest, |options| options.redis_mode = mode)
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"))
}

/// The counter a subscriber keeps (`<name>:count`).
async fn count(client: &HttpClient, name: &str) -> i64 {
    client.counter(&format!("{name}:count")).await
}

async fn wait_for_count(client: &HttpClient, name: &str, expected: i64) -> i64 {
    client
        .wait_for(
            Duration::from_secs(60),
            async |c| count(c, name).await,
            |n| *n >= expected,
        )
        .await
}

async fn publish(client: &HttpClient, address: &str, channel: &str, payload: &str) {
    let reply = client
        .post(
            &format!("/probe/redis/publish?address={address}&channel={channel}"),
            payload,
        )
        .await
        .json();
    assert_eq!(reply["value"], "published", "{reply}");
}

async fn fan_out(address: &str, mode: orderly_host::RedisMode) {
    let channel = unique("orders");
    let names = [unique("a"), unique("b")];
    let app = start(
        &fan_out_app(address, &channel, [&names[0], &names[1]]),
        mode,
    )
    .await;
    publish(&app, address, &channel, "hello").await;
    for name in &names {
        assert_eq!(wait_for_count(&app, name, 1).await, 1, "{name}");
        let last = app
            .get(&format!("/probe/kv/get?label=default&key={name}:last"))
            .await
            .json();
        assert_eq!(last["value"], "hello");
    }
    app.stop().await;
}

async fn burst(address: &str, mode: orderly_host::RedisMode) {
    let channel = unique("burst");
    let names = [unique("a"), unique("b")];
    let app = start(
        &fan_out_app(address, &channel, [&names[0], &names[1]]),
        mode,
    )
    .await;
    let sent = app
        .post(
            &format!("/probe/redis/burst?address={address}&channel={channel}&count=1000"),
            "",
        )
        .await
        .json();
    assert_eq!(sent["value"], 1000, "{sent}");
    for name in &names {
        assert_eq!(
            wait_for_count(&app, name, 1000).await,
            1000,
            "{name} handled every message once"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in &names {
        assert_eq!(
            count(&app, name).await,
            1000,
            "{name}: no message handled twice"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_subscriber_through_redis() {
    let Some(redis) = redis() else { return };
    fan_out(&redis.url(), orderly_host::RedisMode::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_subscriber_through_the_embedded_broker() {
    // Nothing listens on this port: the embedded broker serves the address.
    fan_out("redis://127.0.0.1:1", orderly_host::RedisMode::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_messages_loses_none_through_redis() {
    let Some(redis) = redis() else { return };
    burst(&redis.url(), orderly_host::RedisMode::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_messages_loses_none_through_the_embedded_broker() {
    burst("redis://127.0.0.1:1", orderly_host::RedisMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_reconnects_when_redis_restarts() {
    let logs = logs::capture();
    let Some(mut server) = private_redis() else {
        return;
    };
    let address = server.url();
    let channel = unique("restart");
    let names = [unique("a"), unique("b")];
    let app = start(
        &fan_out_app(&address, &channel, [&names[0], &names[1]]),
        orderly_host::RedisMode::Server,
    )
    .await;
    publish(&app, &address, &channel, "before").await;
    assert_eq!(wait_for_count(&app, &names[0], 1).await, 1);

    server.restart().expect("redis-server restarts");
    // Messages published before the trigger has resubscribed are lost (that is Redis pub/sub);
    // keep publishing until one is handled.
    let handled = app
        .wait_for(
            Duration::from_secs(30),
            async |client| {
                let _ = client
                    .post(
                        &format!("/probe/redis/publish?address={address}&channel={channel}"),
                        "after",
                    )
                    .await;
                count(client, &names[0]).await
            },
            |n| *n >= 2,
        )
        .await;
    assert!(handled >= 2, "a message after the restart was handled");
    let last = app
        .get(&format!(
            "/probe/kv/get?label=default&key={}:last",
            names[0]
        ))
        .await
        .json();
    assert_eq!(last["value"], "after");
    assert!(
        !logs
            .lines_with(&["lost the connection to Redis", &address])
            .is_empty(),
        "the disconnect is logged"
    );
    assert!(
        !logs
            .lines_with(&["reconnected to Redis", &address])
            .is_empty(),
        "the reconnect is logged"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_are_logged_and_later_messages_still_handled() {
    let logs = logs::capture();
    let address = "redis://127.0.0.1:1";
    let channel = unique("errors");
    let names = [unique("a"), unique("b")];
    let app = start(
        &fan_out_app(address, &channel, [&names[0], &names[1]]),
        orderly_host::RedisMode::Embedded,
    )
    .await;
    publish(&app, address, &channel, "fail").await;
    publish(&app, address, &channel, "fine").await;
    assert_eq!(wait_for_count(&app, &names[0], 2).await, 2);
    let logged = app
        .wait_for(
            Duration::from_secs(10),
            async |_| logs.lines_with(&["the Redis handler returned an error", &channel]),
            |l| !l.is_empty(),
        )
        .await;
    assert!(
        logged
            .iter()
            .any(|line| line.contains("bytes=4") && line.contains("component=first")),
        "{logged:?}"
    );
    app.stop().await;
}

async fn outbound_commands(address: &str, mode: orderly_host::RedisMode) {
    let channel = unique("unused");
    let app = start(&fan_out_app(address, &channel, ["x", "y"]), mode).await;
    let key = unique("key");
    let set = unique("set");
    let call = |op: &str, key: &str, body: &str| {
        let path = format!("/probe/redis/cmd?address={address}&op={op}&key={key}");
        let (client, body) = (app.client.clone(), body.to_owned());
        async move { client.post(&path, &body).await.json() }
    };
    assert_eq!(
        call("get", &key, "").await["value"],
        serde_json::Value::Null
    );
    assert_eq!(call("set", &key, "v1").await["value"], "ok");
    assert_eq!(call("get", &key, "").await["value"], "v1");
    assert_eq!(call("incr", &key, "").await["error"], "Error::TypeError");
    assert_eq!(call("del", &key, "").await["value"], 1);
    assert_eq!(call("incr", &key, "").await["value"], 1);
    assert_eq!(call("sadd", &set, "a b c").await["value"], 3);
    assert_eq!(call("srem", &set, "b").await["value"], 1);
    let mut members: Vec<String> =
        serde_json::from_value(call("smembers", &set, "").await["value"].clone()).unwrap();
    members.sort();
    assert_eq!(members, ["a", "c"]);
    let executed = call("execute", "", &format!("INCRBY {key} 41")).await;
    assert_eq!(executed["value"], serde_json::json!([42]), "{executed}");
    let denied = app
        .post(
            "/probe/redis/cmd?address=redis://10.1.2.3:6379&op=get&key=k",
            "",
        )
        .await
        .json();
    assert_eq!(denied["error"], "Error::InvalidAddress");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_redis_commands_work_on_a_server() {
    let Some(redis) = redis() else { return };
    outbound_commands(&redis.url(), orderly_host::RedisMode::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_redis_commands_work_on_the_embedded_broker() {
    outbound_commands("redis://127.0.0.1:1", orderly_host::RedisMode::Embedded).await;
}
