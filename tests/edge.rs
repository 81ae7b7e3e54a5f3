//! Hardening at the edge: what a careless or hostile client, or a misbehaving guest, can do to
//! the host, each driven from outside with short configured limits: stalled and oversized
//! bodies, broken bodies, odd Host headers, forged request ids, overload, guests that loop, run
//! out of memory or write without end, shutdown with requests and uploads in flight, Spin's
//! refusal of service chaining outside HTTP, and the host's metrics.

use orderly_host::LoadOptions;
use orderly_tests::raw::{self, RawResponse};
use orderly_tests::{TestApp, logs, start_error};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "edge"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[[trigger.http]]
route = "/looper/..."
component = "looper"
[[trigger.http]]
route = "/hog/..."
component = "hog"
[[trigger.http]]
route = "/spewer/..."
component = "spewer"
[component.probe]
source = "{wasm}/probe.wasm"
[component.looper]
source = "{wasm}/probe.wasm"
[component.hog]
source = "{wasm}/probe.wasm"
[component.spewer]
source = "{wasm}/probe.wasm"
"#;

async fn start(adjust: impl FnOnce(&mut LoadOptions)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    TestApp::start_in(dir, APP, adjust)
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"))
}

/// A POST to `path` declaring `length` bytes of body, and `sent` of them.
fn post_head(path: &str, length: u64) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {length}\r\n\r\n")
}

fn assert_problem(response: &RawResponse, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/problem+json"),
        "{response:?}"
    );
    assert_eq!(response.json()["status"], status, "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_hold_no_instance_slot_and_time_out() {
    let app = start(|options| {
        options.settings.http.max_in_flight = 2;
        options.settings.http.body_timeout = Duration::from_millis(1500);
        options.settings.http.body_min_rate = 1000;
    })
    .await;
    // Far more stalled uploads than slots: each declares 100 bytes and sends 10.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = raw::connect(&app.base).await;
        stream
            .write_all(format!("{}0123456789", post_head("/probe/echo", 100)).as_bytes())
            .await
            .unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every slot is still free: other requests are served, and health says so.
    let echo = app.post("/probe/echo", "still served").await;
    assert_eq!(echo.status, 200, "{}", echo.text());
    assert_eq!(echo.json()["body"], "still served");
    assert_eq!(app.get("/.well-known/spin/health").await.status, 200);
    // The stalled ones are answered 408 once their time is up, and closed.
    for stream in &mut stalled {
        let response = raw::read_response(stream, Duration::from_secs(20)).await;
        assert_problem(&response, 408);
        assert_eq!(response.header("connection").as_deref(), Some("close"));
    }
    // A body sent at the minimum rate is fine: 3 chunks of 1,000 bytes, a second apart,
    // are within 1.5 s + 3,000 bytes at 1,000 bytes/s.
    let mut slow = raw::connect(&app.base).await;
    slow.write_all(post_head("/probe/echo", 3000).as_bytes())
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        slow.write_all(&[b'a'; 1000]).await.unwrap();
    }
    let response = raw::read_response(&mut slow, Duration::from_secs(20)).await;
    assert_eq!(response.status, 200, "{response:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_wait_unread_for_their_share_of_the_body_memory() {
    let app = start(|options| {
        options.settings.http.body_memory = 1000;
        options.settings.http.body_timeout = Duration::from_millis(1500);
        options.settings.http.body_min_rate = 1000;
    })
    .await;
    // The first upload takes 800 of the 1,000 bytes and is slow to arrive ...
    let mut first = raw::connect(&app.base).await;
    first
        .write_all(format!("{}{}", post_head("/probe/echo", 800), "a".repeat(100)).as_bytes())
        .await
        .unwrap();
    // Time for the host to read its head and take its share.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ... so a second one, sent whole, waits for its share, unanswered ...
    let mut second = raw::connect(&app.base).await;
    second
        .write_all(format!("{}{}", post_head("/probe/echo", 800), "b".repeat(800)).as_bytes())
        .await
        .unwrap();
    let early = raw::read_response(&mut second, Duration::from_millis(400)).await;
    assert_eq!(
        early.status, 0,
        "answered before its share was free: {early:?}"
    );
    // ... and is served once the first is done.
    first.write_all("a".repeat(700).as_bytes()).await.unwrap();
    let response = raw::read_response(&mut first, Duration::from_secs(10)).await;
    assert_eq!(response.status, 200, "{response:?}");
    let response = raw::read_response(&mut second, Duration::from_secs(10)).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["body"], "b".repeat(800));
    // A body larger than the whole budget (but within the size limit) takes all of it.
    let large = app.post("/probe/echo", &"c".repeat(2000)).await;
    assert_eq!(large.status, 200, "{}", large.text());
    // A body that cannot get its share in its time to arrive is refused with 503 (the holder
    // sent 900 bytes, so it may take 1.5 s + 0.9 s; the waiter gets 1.5 s).
    let mut holder = raw::connect(&app.base).await;
    holder
        .write_all(format!("{}{}", post_head("/probe/echo", 1000), "d".repeat(900)).as_bytes())
        .await
        .unwrap();
    // Time for the host to read its head and take its share.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = raw::exchange(
        &app.base,
        format!("{}{}", post_head("/probe/echo", 10), "e".repeat(10)).as_bytes(),
    )
    .await;
    assert_problem(&waiting, 503);
    assert_eq!(waiting.header("connection").as_deref(), Some("close"));
    assert_problem(
        &raw::read_response(&mut holder, Duration::from_secs(20)).await,
        408,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_when_no_instance_slot_is_free() {
    let app = start(|options| options.settings.http.max_in_flight = 2).await;
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let client = app.client.clone();
            tokio::spawn(async move { client.get("/probe/sleep?ms=1500").await })
        })
        .collect();
    let log = app.dir.path().join(".spin/logs/probe_stdout.txt");
    let started = app
        .wait_for(
            Duration::from_secs(20),
            async |_| {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .matches("sleep started")
                    .count()
            },
            |count| *count >= 2,
        )
        .await;
    assert_eq!(started, 2);
    let health = app.get("/.well-known/spin/health").await;
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.json()["type"], "/problems/overloaded");
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap().status, 200);
    }
    assert_eq!(app.get("/.well-known/spin/health").await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_problems() {
    let app = start(|options| options.settings.http.max_body_size = 1024).await;
    // Declared far too long, 1 KB sent: refused from the declared length, without waiting.
    let mut stream = raw::connect(&app.base).await;
    stream
        .write_all(
            format!(
                "{}{}",
                post_head("/probe/echo", 1_000_000_000_000),
                "x".repeat(1024)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let response = raw::read_response(&mut stream, Duration::from_secs(5)).await;
    assert_problem(&response, 413);
    assert_eq!(response.json()["type"], "/problems/body-too-large");
    // Streamed (chunked) past the limit: counted as it comes.
    let chunk = "y".repeat(600);
    let chunked = format!(
        "POST /probe/echo HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    assert_problem(&raw::exchange(&app.base, chunked.as_bytes()).await, 413);
    // At the limit: served.
    let full = app.post("/probe/echo", &"z".repeat(1024)).await;
    assert_eq!(full.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies_are_400_problems() {
    let app = start(|_| {}).await;
    // A malformed chunk size.
    let bad_chunk = "POST /probe/echo HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    assert_problem(&raw::exchange(&app.base, bad_chunk.as_bytes()).await, 400);
    // The client stops sending mid-body (closes its side).
    let mut stream = raw::connect(&app.base).await;
    stream
        .write_all(format!("{}0123456789", post_head("/probe/echo", 100)).as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let response = raw::read_response(&mut stream, Duration::from_secs(10)).await;
    assert_problem(&response, 400);
    assert_eq!(response.json()["type"], "/problems/bad-body");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_headers_are_one_plain_host_and_port() {
    let app = start(|_| {}).await;
    let get = |host_lines: &str, version: &str| {
        format!("GET /probe/echo HTTP/{version}\r\n{host_lines}connection: close\r\n\r\n")
    };
    for host_lines in [
        "host: user@evil.com\r\n",
        "host: evil.com:99999\r\n",
        "host: a.example\r\nhost: b.example\r\n",
        "",
    ] {
        let response = raw::exchange(&app.base, get(host_lines, "1.1").as_bytes()).await;
        assert_problem(&response, 400);
        assert_eq!(
            response.json()["type"],
            "/problems/bad-host",
            "{host_lines:?}"
        );
    }
    let fine = raw::exchange(
        &app.base,
        get("host: example.com:8080\r\n", "1.1").as_bytes(),
    )
    .await;
    assert_eq!(fine.status, 200, "{fine:?}");
    assert_eq!(fine.json()["uri"], "http://example.com:8080/probe/echo");
    let old = raw::exchange(&app.base, get("", "1.0").as_bytes()).await;
    assert_eq!(old.status, 200, "HTTP/1.0 needs no Host: {old:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_cannot_forge_log_fields() {
    let logs = logs::capture();
    let app = start(|_| {}).await;
    let forged = app
        .send(
            http::Method::GET,
            "/probe/echo?forgery",
            &[("x-request-id", "x status=200 forged=yes")],
            "",
        )
        .await;
    let id = forged.header("x-request-id").unwrap().to_owned();
    assert!(!id.contains(' '), "a new id replaces the forged one: {id}");
    let kept = app
        .send(
            http::Method::GET,
            "/probe/echo?kept",
            &[("x-request-id", "trace-42")],
            "",
        )
        .await;
    assert_eq!(kept.header("x-request-id"), Some("trace-42"));
    assert!(
        logs.lines_with(&["forged=yes"]).is_empty(),
        "{}",
        logs.text()
    );
    assert_eq!(
        logs.lines_with(&["request_id=\"trace-42\"", "status=200"])
            .len(),
        1,
        "the id is quoted in the log line"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_that_loop_hog_memory_or_spew_output_are_stopped_and_logged_once() {
    let logs = logs::capture();
    let app = start(|options| {
        options.settings.instances.deadline = Duration::from_secs(1);
        options.settings.instances.max_memory = 32 << 20;
        options.settings.instances.max_output = 64 << 10;
    })
    .await;
    for (path, status, kind) in [
        ("/looper/loop", 504, "/problems/deadline-exceeded"),
        ("/looper/sleep?ms=60000", 504, "/problems/deadline-exceeded"),
        ("/hog/oom", 500, "/problems/component-failed"),
        ("/spewer/spew", 500, "/problems/component-failed"),
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert_eq!(reply.json()["type"], kind, "{path}");
        assert!(reply.json()["request_id"].is_string(), "{path}");
    }
    // The host is fine, and each failure was logged once with its component.
    assert_eq!(app.get("/probe/echo").await.status, 200);
    assert_eq!(app.get("/.well-known/spin/health").await.status, 200);
    let text = logs.text();
    // One line per failure (the two deadlines came a second apart, so neither is thinned out).
    assert_eq!(
        logs.lines_with(&["ERROR", "component=looper", "deadline"])
            .len(),
        2,
        "{text}"
    );
    assert_eq!(
        logs.lines_with(&["ERROR", "component=hog"]).len(),
        1,
        "{text}"
    );
    assert_eq!(
        logs.lines_with(&["ERROR", "component=spewer", "more than 65536 bytes"])
            .len(),
        1,
        "{text}"
    );
    let spewed = std::fs::metadata(app.dir.path().join(".spin/logs/spewer_stdout.txt")).unwrap();
    assert!(spewed.len() <= 64 << 10, "{} bytes written", spewed.len());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_early_and_logged_once_per_interval() {
    let logs = logs::capture();
    let app = start(|options| {
        options.settings.http.max_in_flight = 1;
        options.settings.http.max_waiting = 1;
        options.settings.repeated_log_interval = Duration::from_secs(3600);
    })
    .await;
    let client = app.client.clone();
    let busy = tokio::spawn(async move { client.get("/looper/sleep?ms=2000").await });
    let log = app.dir.path().join(".spin/logs/looper_stdout.txt");
    app.wait_for(
        Duration::from_secs(20),
        async |_| std::fs::read_to_string(&log).unwrap_or_default(),
        |text| text.contains("sleep started"),
    )
    .await;
    let refused: Vec<_> = (0..30)
        .map(|_| {
            let client = app.client.clone();
            tokio::spawn(async move { client.get("/probe/echo?refused").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for reply in refused {
        let reply = reply.await.unwrap();
        if reply.status == 503 {
            assert_eq!(reply.header("retry-after"), Some("1"));
            assert_eq!(reply.json()["type"], "/problems/overloaded");
        }
        statuses.push(reply.status);
    }
    assert!(
        statuses.iter().filter(|s| **s == 503).count() >= 28,
        "one slot and one waiting place: {statuses:?}"
    );
    assert_eq!(busy.await.unwrap().status, 200);
    let text = logs.text();
    assert_eq!(
        logs.lines_with(&["overloaded: refusing"]).len(),
        1,
        "{text}"
    );
    assert!(
        logs.lines_with(&["ERROR", "/probe/echo?refused"])
            .is_empty()
            && logs
                .lines_with(&["method=GET", "path=\"/probe/echo\"", "status=503"])
                .is_empty(),
        "no line per refused request: {text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_requests_received_and_does_not_wait_for_stalled_uploads() {
    let app = start(|options| {
        options.settings.http.shutdown_body_grace = Duration::from_millis(200);
    })
    .await;
    let mut stalled = raw::connect(&app.base).await;
    stalled
        .write_all(format!("{}0123456789", post_head("/probe/echo", 100)).as_bytes())
        .await
        .unwrap();
    // Requests sent, on new connections, just before shutdown begins.
    let mut received = Vec::new();
    for n in 0..20 {
        let mut stream = raw::connect(&app.base).await;
        let request = format!("GET /probe/echo?n={n} HTTP/1.1\r\nhost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        received.push(stream);
    }
    let started = std::time::Instant::now();
    app.stop().await;
    let took = started.elapsed();
    for (n, stream) in received.iter_mut().enumerate() {
        let response = raw::read_response(stream, Duration::from_secs(5)).await;
        assert_eq!(response.status, 200, "request {n}: {response:?}");
    }
    let response = raw::read_response(&mut stalled, Duration::from_secs(5)).await;
    assert_problem(&response, 503);
    assert!(
        took < Duration::from_secs(20),
        "the stalled upload held shutdown for {took:?} (the drain is 30 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_cron_components_may_not_list_service_chaining_hosts() {
    for (trigger, component, wasm, host) in [
        (
            "[[trigger.redis]]\naddress = \"redis://127.0.0.1:1\"\nchannel = \"c\"",
            "subscriber",
            "subscriber",
            "http://*.spin.internal",
        ),
        (
            "[[trigger.cron]]\ncron_expression = \"* * * * * *\"",
            "ticker",
            "ticker",
            "http://orders.spin.internal",
        ),
    ] {
        let manifest = format!(
            "spin_manifest_version = 2\n[application]\nname = \"chaining\"\n{trigger}\ncomponent = \"{component}\"\n[component.{component}]\nsource = \"{{wasm}}/{wasm}.wasm\"\nallowed_outbound_hosts = [\"{host}\"]\n"
        );
        let error = start_error(&manifest).await;
        let kind = if component == "ticker" {
            "cron"
        } else {
            "redis"
        };
        assert!(
            error.contains(&format!(
                "This application requires the following features that are not available in this version of the '{kind}' trigger: local_service_chaining"
            )),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_are_served_when_asked_for() {
    let app = start(|options| {
        options.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    assert_eq!(app.get("/probe/echo").await.status, 200);
    assert_eq!(app.get("/nowhere").await.status, 404);
    let metrics = orderly_tests::HttpClient::new(format!(
        "http://{}",
        app.metrics_address().expect("metrics are served")
    ));
    let reply = metrics.get("/metrics").await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    for line in [
        "orderly_host_http_requests_total{component=\"probe\",route=\"/probe/...\",status=\"200\"} 1",
        "orderly_host_http_requests_total{component=\"-\",route=\"-\",status=\"404\"} 1",
        "orderly_host_http_request_duration_seconds_count{component=\"probe\",route=\"/probe/...\"} 1",
        "orderly_host_instances_in_use{trigger=\"http\"} 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    orderly_tests::promtool_check(&text);
    app.stop().await;
}
