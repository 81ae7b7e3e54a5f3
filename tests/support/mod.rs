//! Test support: start a Spin app from a manifest in the real host, in-process, and talk to it
//! over HTTP.

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use orderly_host::{LoadOptions, LoadedApp, RunningApp, StartError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

pub mod logs;
pub mod native_server;
pub mod process;
pub mod raw;
pub mod redis_server;
pub mod saga;

/// Where the components under test were built.
pub fn wasm_dir() -> PathBuf {
    PathBuf::from(env!("ORDERLY_TEST_WASM_DIR"))
}

/// The repository root (for the real `spin.toml`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("ORDERLY_REPO_ROOT"))
}

/// Fills `{wasm}` in a manifest with the folder of built components.
pub fn manifest(text: &str) -> String {
    text.replace("{wasm}", &wasm_dir().display().to_string())
}

/// The repository's `spin.toml`, with its sources pointed at the components built for tests.
pub fn real_manifest() -> String {
    let text =
        std::fs::read_to_string(repo_root().join("spin.toml")).expect("spin.toml at the root");
    text.replace(
        "target/wasm32-wasip2/release",
        &wasm_dir().display().to_string(),
    )
}

/// The statuses of an order that passed validation: `validated`, then the fulfilment saga's,
/// which takes every validated order further when the services are wired (as in
/// [`TestApp::start_real`]).
pub const VALIDATED_OR_LATER: [&str; 5] = ["validated", "reserved", "paid", "shipped", "confirmed"];

/// Whether an order's `status` (as JSON) is one of [`VALIDATED_OR_LATER`], in any case (the
/// MediSupply seed capitalises them).
pub fn passed_validation(status: &serde_json::Value) -> bool {
    status.as_str().is_some_and(|status| {
        VALIDATED_OR_LATER
            .iter()
            .any(|passed| passed.eq_ignore_ascii_case(status))
    })
}

/// The orders past validation in an `/admin/stats` body (its `orders` by status).
pub fn validated_count(stats: &serde_json::Value) -> u64 {
    VALIDATED_OR_LATER
        .iter()
        .map(|status| stats["orders"][status].as_u64().unwrap_or(0))
        .sum()
}

/// A name no other test uses (for channels and keys on a shared server or store).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Load options for a manifest written into `dir`, with the shared compile cache.
pub fn options(dir: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(dir.join("spin.toml"));
    options.cache_dir = Some(PathBuf::from(env!("ORDERLY_TEST_CACHE_DIR")));
    options.echo_component_output = false;
    options
}

/// A running application and a client for it (`TestApp` derefs to its [`HttpClient`]).
/// Dropping it without [`TestApp::stop`] stops the triggers but leaves the stores unclosed.
pub struct TestApp {
    /// A client for the app.
    pub client: HttpClient,
    /// The folder holding the manifest and the state dir (`.spin`).
    pub dir: Arc<TempDir>,
    running: RunningApp,
}

impl std::ops::Deref for TestApp {
    type Target = HttpClient;

    fn deref(&self) -> &HttpClient {
        &self.client
    }
}

/// An HTTP client bound to one app's address; cheap to clone into tasks.
#[derive(Clone)]
pub struct HttpClient {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics, showing the body, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is a problem (`application/problem+json`) with `status` and type `kind`,
    /// and returns its body.
    pub fn problem(&self, status: u16, kind: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["type"], kind, "{body}");
        body
    }
}

impl TestApp {
    /// Writes `manifest` (see [`manifest`]) into a new folder and starts it.
    pub async fn start(manifest_text: &str) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, manifest_text, |_| {})
            .await
            .unwrap_or_else(|e| panic!("start failed: {e}"))
    }

    /// Starts the repository's `spin.toml` (see [`real_manifest`]) in a new folder, wired to
    /// itself (see [`TestApp::start_real_in`]).
    pub async fn start_real() -> Self {
        Self::start_real_in(Arc::new(tempfile::tempdir().expect("temp dir")), |_| {}).await
    }

    /// Starts the repository's `spin.toml` (see [`TestApp::start_real_in`]) in a new folder,
    /// with `variables` set.
    pub async fn start_real_with(variables: &[(&str, &str)]) -> Self {
        let variables: Vec<(String, String)> = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_real_in(dir, move |options| options.variables.extend(variables)).await
    }

    /// Starts the repository's `spin.toml` in `dir` on a port chosen first, so that the
    /// variables the Redis- and cron-triggered components use to reach the app
    /// (`app_url`, `validator_url`, `validator_origin`) name it; `redis_url` names a port where
    /// nothing answers, so the embedded broker serves it (private to this app). The
    /// fulfilment services are on another port where nothing answers (see [`services_at`]):
    /// validated orders stay `validated`, their first step retried. `adjust` may override any
    /// of it (e.g. put the services at the app's own `app_url`, to run the sagas).
    pub async fn start_real_in(dir: Arc<TempDir>, adjust: impl FnOnce(&mut LoadOptions)) -> Self {
        Self::start_real_manifest_in(dir, &real_manifest(), adjust).await
    }

    /// Starts `manifest_text` (the repository's `spin.toml` as a test edited it, see
    /// [`real_manifest`]) in `dir`, wired as [`TestApp::start_real_in`] wires it.
    pub async fn start_real_manifest_in(
        dir: Arc<TempDir>,
        manifest_text: &str,
        adjust: impl FnOnce(&mut LoadOptions),
    ) -> Self {
        let listen = free_address();
        let origin = format!("http://{listen}");
        let unused_redis = format!("redis://{}", free_address());
        let unused_services = format!("http://{}", free_address());
        let result = Self::start_on(dir, manifest_text, listen, |options| {
            services_at(options, &unused_services);
            for (name, value) in [
                ("app_url", origin.clone()),
                ("validator_origin", origin.clone()),
                ("validator_url", format!("{origin}/external/validate")),
                ("redis_url", unused_redis),
            ] {
                options.variables.insert(name.to_owned(), value);
            }
            adjust(options);
        })
        .await;
        result.unwrap_or_else(|e| panic!("start failed: {e}"))
    }

    /// Writes `manifest` into `dir` and starts it, after `adjust` edits the options.
    pub async fn start_in(
        dir: Arc<TempDir>,
        manifest_text: &str,
        adjust: impl FnOnce(&mut LoadOptions),
    ) -> Result<Self, StartError> {
        Self::start_on(
            dir,
            manifest_text,
            "127.0.0.1:0".parse().expect("address"),
            adjust,
        )
        .await
    }

    async fn start_on(
        dir: Arc<TempDir>,
        manifest_text: &str,
        listen: std::net::SocketAddr,
        adjust: impl FnOnce(&mut LoadOptions),
    ) -> Result<Self, StartError> {
        std::fs::write(dir.path().join("spin.toml"), manifest(manifest_text))
            .expect("write manifest");
        let mut options = options(dir.path());
        adjust(&mut options);
        let app = LoadedApp::load(&options).await?;
        let running = RunningApp::start(app, listen).await?;
        Ok(Self {
            client: HttpClient::new(format!("http://{}", running.address())),
            dir,
            running,
        })
    }

    /// Writes `runtime_config` beside the manifest and starts with it (`--runtime-config-file`).
    pub async fn start_with_runtime_config(
        dir: Arc<TempDir>,
        manifest_text: &str,
        runtime_config: &str,
    ) -> Self {
        let config = dir.path().join("runtime-config.toml");
        std::fs::write(&config, runtime_config).expect("write runtime config");
        Self::start_in(dir, manifest_text, |options| {
            options.runtime_config = Some(config)
        })
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"))
    }

    /// Where the host's metrics are served, when the options asked for them.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.running.metrics_address()
    }

    /// Stops the app gracefully (closing its databases).
    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

impl HttpClient {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: String) -> Self {
        Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Whether `path` answers 200 (connection errors are `false`).
    pub async fn answers(&self, path: &str) -> bool {
        let Ok(request) =
            Request::get(format!("{}{path}", self.base)).body(Full::new(Bytes::new()))
        else {
            return false;
        };
        matches!(self.client.request(request).await, Ok(response) if response.status() == 200)
    }

    /// Polls `probe` every 50 ms until `done` accepts its value or `limit` passes; returns
    /// the last value.
    pub async fn wait_for<T>(
        &self,
        limit: std::time::Duration,
        mut probe: impl AsyncFnMut(&HttpClient) -> T,
        done: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let value = probe(self).await;
            if done(&value) || std::time::Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The counter at `key` in the `default` key-value store, read through the probe
    /// (`/probe/wasi-kv/increment` with `delta=0`); -1 if the reply carries no integer.
    pub async fn counter(&self, key: &str) -> i64 {
        let reply = self
            .post(
                &format!("/probe/wasi-kv/increment?label=default&key={key}&delta=0"),
                "",
            )
            .await
            .json();
        reply["value"].as_i64().unwrap_or(-1)
    }

    /// Like [`HttpClient::create_order`], but `None` when the host does not answer (it was
    /// killed) instead of a panic.
    pub async fn try_create_order(&self, key: &str, body: &str) -> Option<Reply> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/orders", self.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = self.client.request(request).await.ok()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Reply {
            status,
            headers,
            body,
        })
    }

    /// Order `id` once it has a final status (or as it is after 30 s), as JSON.
    pub async fn settled_order(&self, id: &str) -> serde_json::Value {
        let path = format!("/orders/{id}");
        self.wait_for(
            std::time::Duration::from_secs(30),
            async |client| client.get(&path).await.json(),
            |order| order["status"] != "processing",
        )
        .await
    }

    /// The kinds of order `id`'s events, in order.
    pub async fn event_kinds(&self, id: &str) -> Vec<String> {
        self.get(&format!("/orders/{id}/events")).await.json()["events"]
            .as_array()
            .expect("a list of events")
            .iter()
            .map(|event| event["kind"].as_str().expect("a kind").to_owned())
            .collect()
    }

    /// The kinds of order `id`'s events up to its validation's decision (`validated`,
    /// `rejected` or `failed`), which ends the list if there is one: fulfilment's events
    /// follow it.
    pub async fn validation_kinds(&self, id: &str) -> Vec<String> {
        let mut kinds = self.event_kinds(id).await;
        if let Some(decision) = kinds
            .iter()
            .position(|kind| ["validated", "rejected", "failed"].contains(&kind.as_str()))
        {
            kinds.truncate(decision + 1);
        }
        kinds
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], "").await
    }

    /// POST `body` to `path`, as JSON (`content-type: application/json`).
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// POST an order `body` to `/orders` under Idempotency-Key `key`.
    pub async fn create_order(&self, key: &str, body: &str) -> Reply {
        self.send(
            Method::POST,
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            body,
        )
        .await
    }

    /// Sends a request with extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = self
            .client
            .request(request)
            .await
            .expect("the host answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// Two hosts sharing one store must never lose an update. Through `clients` (taken in turn):
/// seeds `counter` with 0 through the first client; runs `workers` compare-and-swap workers at
/// once, each adding 1 to `counter` `times` times; then `increments` increments of `hits` at
/// once. No reply may carry an error; then the second client must read `counter` as
/// `workers × times`, and the first `hits` as `increments`.
pub async fn cas_and_increments_lose_nothing(
    clients: [&HttpClient; 2],
    counter: &str,
    hits: &str,
    workers: usize,
    times: usize,
    increments: usize,
) {
    clients[0]
        .post(&format!("/probe/kv/set?label=default&key={counter}"), "0")
        .await;
    let cas_path = format!("/probe/wasi-kv/cas-add?label=default&key={counter}&times={times}");
    let increment_path = format!("/probe/wasi-kv/increment?label=default&key={hits}");
    let mut replies = Vec::new();
    for (count, path) in [(workers, &cas_path), (increments, &increment_path)] {
        let tasks: Vec<_> = clients
            .into_iter()
            .cycle()
            .take(count)
            .map(|client| {
                let (client, path) = (client.clone(), path.clone());
                tokio::spawn(async move { client.post(&path, "").await })
            })
            .collect();
        for task in tasks {
            replies.push(task.await.expect("the request task"));
        }
    }
    for reply in replies {
        assert!(reply.json().get("error").is_none(), "{}", reply.text());
    }
    let total = clients[1]
        .get(&format!("/probe/kv/get?label=default&key={counter}"))
        .await
        .json();
    assert_eq!(total["value"], (workers * times).to_string());
    assert_eq!(clients[0].counter(hits).await, increments as i64);
}

/// Points the fulfilment worker at inventory, payment and shipping services on `origin`
/// (`http://host:port`), under `/internal/<service>` as the app serves them.
pub fn services_at(options: &mut LoadOptions, origin: &str) {
    options.variables.extend(services_variables(origin));
}

/// The variables (name, value) that put the fulfilment services on `origin`, as
/// [`services_at`] sets them.
pub fn services_variables(origin: &str) -> Vec<(String, String)> {
    let mut variables = vec![("services_origin".to_owned(), origin.to_owned())];
    for service in ["inventory", "payment", "shipping"] {
        variables.push((
            format!("{service}_url"),
            format!("{origin}/internal/{service}"),
        ));
    }
    variables
}

/// A loopback address with a port that was free a moment ago.
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// Expects loading `manifest_text` to fail, and returns the error message.
pub async fn start_error(manifest_text: &str) -> String {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    match TestApp::start_in(dir, manifest_text, |_| {}).await {
        Ok(_) => panic!("expected the app to fail to start"),
        Err(error) => error.to_string(),
    }
}

/// `promtool check metrics` must accept `text`. Skipped when promtool is not installed, unless
/// `ORDERLY_REQUIRE_PROMTOOL` is set (as in CI).
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("ORDERLY_REQUIRE_PROMTOOL").is_none(),
                "promtool is required but cannot run: {error}"
            );
            eprintln!("SKIPPED: promtool is not installed");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the text");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
