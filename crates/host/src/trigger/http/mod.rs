//! The HTTP trigger: a hyper server that routes each request to a fresh instance of the matched
//! component, with Spin's `spin-*` headers, graceful shutdown and one log line per request. It
//! also serves service-chained requests (`http://<component>.spin.internal`) in-process: it is
//! the [`ServiceChaining`] handed to the instances.
//!
//! At the edge, before any instance is made: the Host header is checked, the body is read whole
//! (size limit, timeout, minimum rate: [`edge`]), then the request takes a slot
//! ([`admission`]) or is refused at once. Every error the host answers itself is an
//! [`HttpError`], mapped to its status in one place ([`error`]).

mod admission;
mod edge;
mod error;
pub mod routes;

use super::{Binding, Call, Export, Runner, WhenPoolFull, export};
use crate::capability::{InstanceContext, ServiceChaining};
use crate::instance::InstanceState;
use crate::services::metrics::HostMetrics;
use crate::services::repeated_log::RepeatedLog;
use crate::settings::HttpSettings;
use admission::Admission;
use bytes::Bytes;
use edge::{BodyLimits, BodyMemory};
use error::HttpError;
use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use http_problem::Problem;
use hyper_util::rt::TokioIo;
use orderly_manifest::{App as Manifest, ComponentId, ConfigProblem, HttpRoute};
use routes::{RouteMatch, RoutePattern, Router};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio_util::task::TaskTracker;
use wasmtime::Store;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpView};

/// The client address Spin reports for service-chained requests.
const CHAINED_CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The application's name and version, for `/.well-known/spin/info`.
#[derive(Debug, Clone)]
struct AppInfo {
    name: String,
    version: Option<String>,
}

/// The HTTP trigger, planned from the manifest.
pub(crate) struct HttpPlan {
    router: Router<ComponentId>,
    /// `[[trigger.http]]` in the manifest's order, for the start-up listing.
    routes: Vec<(HttpRoute, ComponentId)>,
    /// Every component an HTTP trigger runs, private routes included.
    components: BTreeSet<ComponentId>,
    info: AppInfo,
}

impl HttpPlan {
    /// The routes of `manifest`; bad ones go to `problems`.
    pub(crate) fn new(manifest: &Manifest, problems: &mut Vec<ConfigProblem>) -> Self {
        let mut patterns = Vec::new();
        for trigger in &manifest.http_triggers {
            let HttpRoute::Path(route) = &trigger.route else {
                continue;
            };
            if route.starts_with("/.well-known/spin/") {
                tracing::warn!(%route, component = %trigger.component, "routes under /.well-known/spin/ are reserved and will never be reached");
            }
            match RoutePattern::parse(route) {
                Ok(pattern) => patterns.push((pattern, trigger.component.clone())),
                Err(error) => problems.push(ConfigProblem::new(
                    format!("[[trigger.http]] for `{}`", trigger.component),
                    error.to_string(),
                    "write routes as /exact, /prefix/... or /with/:name",
                )),
            }
        }
        let (router, replaced) = Router::new(patterns);
        for (pattern, component) in replaced {
            tracing::warn!(route = pattern.raw(), %component, "duplicate route: this trigger will never be used (a later one has the same route)");
        }
        Self {
            router,
            routes: manifest
                .http_triggers
                .iter()
                .map(|trigger| (trigger.route.clone(), trigger.component.clone()))
                .collect(),
            components: manifest
                .http_triggers
                .iter()
                .map(|trigger| trigger.component.clone())
                .collect(),
            info: AppInfo {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            },
        }
    }

    /// The routes, for the start-up listing: `(route, component)`.
    pub(crate) fn routes(&self) -> &[(HttpRoute, ComponentId)] {
        &self.routes
    }

    /// The trigger over the app: every component it runs must export
    /// `wasi:http/incoming-handler` (else a problem).
    pub(crate) fn bind(
        self,
        binding: &Binding<'_>,
        problems: &mut Vec<ConfigProblem>,
    ) -> Arc<HttpTrigger> {
        let app = binding.app;
        let handlers = self
            .components
            .iter()
            .filter_map(|id| app.component(id.as_str()))
            .filter_map(|component| {
                export::<ProxyPre<InstanceState>>(component, problems)
                    .map(|handler| (component.id.clone(), handler))
            })
            .collect();
        let settings = &binding.settings.http;
        Arc::new(HttpTrigger {
            // Admission keeps requests within the pool; a full pool (chained requests, other
            // triggers) is answered at once with 503.
            runner: binding.runner("http", WhenPoolFull::GiveUp),
            router: self.router,
            handlers,
            instances: TaskTracker::new(),
            info: self.info,
            admission: Admission::new(
                settings.max_in_flight,
                settings.max_waiting,
                settings.slot_wait,
            ),
            body_limits: BodyLimits::of(settings),
            body_memory: BodyMemory::new(settings.body_memory),
            closing: watch::channel(false).0,
            settings: settings.clone(),
            metrics: Arc::clone(binding.metrics),
            log: Arc::clone(binding.log),
        })
    }
}

impl Export for ProxyPre<InstanceState> {
    type Instance = Proxy;

    const WHAT: &'static str = "wasi:http/incoming-handler@0.2.x";
    const FIX: &'static str = "build it as an HTTP component (#[http_component] in spin-sdk)";

    fn prepare(pre: InstancePre<InstanceState>) -> wasmtime::Result<Self> {
        ProxyPre::new(pre)
    }

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<Proxy>> + Send {
        self.instantiate_async(store)
    }
}

/// The HTTP trigger, running over an app.
pub(crate) struct HttpTrigger {
    runner: Runner,
    router: Router<ComponentId>,
    /// The HTTP handler of every component an HTTP trigger runs.
    handlers: BTreeMap<ComponentId, ProxyPre<InstanceState>>,
    /// The instances serving requests: one may still run (and write) after its response went
    /// out, so shutdown waits for them before the stores close.
    instances: TaskTracker,
    info: AppInfo,
    admission: Admission,
    body_limits: BodyLimits,
    body_memory: BodyMemory,
    /// Turns true when shutdown begins.
    closing: watch::Sender<bool>,
    settings: HttpSettings,
    metrics: Arc<HostMetrics>,
    log: Arc<RepeatedLog>,
}

/// What the log line and the metrics of a request name.
#[derive(Default)]
struct Served {
    component: Option<ComponentId>,
    route: Option<String>,
}

/// One connection's requests, as its shutdown sees them.
#[derive(Default)]
struct ConnectionState {
    /// Requests being handled now.
    active: AtomicUsize,
    /// Told whenever a request starts.
    started: Notify,
}

/// Counts a request out of its connection's active ones when it ends (or is dropped).
struct Active(Arc<ConnectionState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpTrigger {
    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests (and the
    /// instances still running after their response) finish for up to `drain`. Connections
    /// already queued when shutdown begins, and requests whose bytes have already arrived,
    /// are still answered; a body still arriving gets the shutdown grace, no more.
    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) {
        let connections = TaskTracker::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, client)) => {
                        connections.spawn(Arc::clone(&self).connection(stream, client));
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(self.settings.accept_backoff).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
        self.closing.send_replace(true);
        // Connections the kernel has queued already were made before shutdown: serve them.
        while let Some(Ok((stream, client))) = futures::FutureExt::now_or_never(listener.accept()) {
            connections.spawn(Arc::clone(&self).connection(stream, client));
        }
        drop(listener);
        connections.close();
        let finished = async {
            connections.wait().await;
            self.instances.close();
            self.instances.wait().await;
        };
        if tokio::time::timeout(drain, finished).await.is_err() {
            tracing::warn!(
                seconds = drain.as_secs(),
                "in-flight requests did not finish in time"
            );
        }
    }

    /// Serves one connection until it closes, or until shutdown, after which it answers the
    /// request in progress, or the one whose bytes have arrived, then closes.
    async fn connection(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // A second handle on the socket, to see at shutdown whether a request has arrived
        // that hyper has not read yet.
        let peek = stream
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpStream::from)
            .ok();
        let state = Arc::new(ConnectionState::default());
        let service = hyper::service::service_fn({
            let (trigger, state) = (Arc::clone(&self), Arc::clone(&state));
            move |request| {
                let trigger = Arc::clone(&trigger);
                state.active.fetch_add(1, Ordering::AcqRel);
                state.started.notify_waiters();
                let active = Active(Arc::clone(&state));
                async move {
                    let response = trigger.handle(request, client).await;
                    drop(active);
                    Ok::<_, Infallible>(response)
                }
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // A client gets this long to send a request's headers: idle and trickling connections
        // cannot hold sockets (or a graceful shutdown) forever.
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.settings.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let mut closing = self.closing.subscribe();
        let ended = tokio::select! {
            ended = connection.as_mut() => Some(ended),
            _ = closing.wait_for(|closing| *closing) => None,
        };
        let ended = match ended {
            Some(ended) => ended,
            None => {
                // Shutting down. Between requests, with a request's bytes already here: let
                // hyper read it (up to the header timeout) before asking the connection to
                // close after the request in progress.
                let idle = state.active.load(Ordering::Acquire) == 0;
                if idle && peek.as_ref().is_some_and(has_pending_bytes) {
                    let started = state.started.notified();
                    tokio::select! {
                        ended = connection.as_mut() => return log_connection_end(ended, client),
                        () = started => {}
                        () = tokio::time::sleep(self.settings.header_read_timeout) => {}
                    }
                }
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        log_connection_end(ended, client);
    }

    /// Handles one request from a client; logs it and counts it.
    async fn handle(
        self: &Arc<Self>,
        request: Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> Response<WasiBody> {
        let started = self.runner.clock().now();
        let request_id =
            edge::client_request_id(request.headers()).map_or_else(new_request_id, str::to_owned);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut served = Served::default();
        let (mut response, quiet) =
            match self.serve(request, client, &request_id, &mut served).await {
                Ok(response) => (response, false),
                Err(error) => {
                    let quiet = matches!(error, HttpError::Busy | HttpError::BodyMemoryFull);
                    if matches!(error, HttpError::Busy)
                        && let Some(left_out) = self.log.admit("http busy")
                    {
                        tracing::warn!(
                            in_flight = self.admission.in_flight(),
                            waiting = self.admission.waiting(),
                            left_out,
                            "overloaded: refusing requests with 503 before making instances"
                        );
                    }
                    if matches!(error, HttpError::BodyMemoryFull)
                        && let Some(left_out) = self.log.admit("http body memory")
                    {
                        tracing::warn!(
                            budget = self.settings.body_memory,
                            left_out,
                            "request bodies fill --body-memory: refusing more with 503"
                        );
                    }
                    let response = error.response(&request_id, self.settings.busy_retry_after);
                    (response, quiet)
                }
            };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        let elapsed = self.runner.clock().now() - started;
        let status = response.status();
        let component = served.component.as_ref().map_or("-", |c| c.as_str());
        let route = served.route.as_deref().unwrap_or("-");
        self.metrics
            .http_requests
            .with_label_values(&[component, route, status.as_str()])
            .inc();
        self.metrics
            .http_duration
            .with_label_values(&[component, route])
            .observe(elapsed.as_secs_f64());
        // Requests refused while overloaded are counted above, not logged one by one.
        let ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1e3);
        if quiet {
            tracing::debug!(target: "orderly::http", request_id = ?request_id, %method, path = ?path, component, route, status = status.as_u16(), %ms, "request");
        } else {
            tracing::info!(target: "orderly::http", request_id = ?request_id, %method, path = ?path, component, route, status = status.as_u16(), %ms, "request");
        }
        response
    }

    /// Checks a request at the edge, reads its body, takes a slot, then has the routed
    /// component answer it; `served` learns the component and route.
    async fn serve(
        self: &Arc<Self>,
        request: Request<hyper::body::Incoming>,
        client: SocketAddr,
        request_id: &str,
        served: &mut Served,
    ) -> Result<Response<WasiBody>, HttpError> {
        let authority = edge::host_authority(request.headers(), request.version())?;
        let path = request.uri().path();
        if let Some(reserved) = path.strip_prefix("/.well-known/spin/") {
            return self.well_known(reserved);
        }
        let (id, found) = self
            .router
            .route(path)
            .ok_or_else(|| HttpError::NoRoute(path.to_owned()))?;
        served.component = Some(id.clone());
        served.route = Some(found.raw_route.clone());
        let (parts, body) = request.into_parts();
        let body = edge::read_body(
            body,
            self.body_limits,
            &self.body_memory,
            self.runner.clock().as_ref(),
            self.closing.subscribe(),
        )
        .await?;
        let slot = self.admission.enter().await?;
        let mut request = Request::from_parts(parts, body_of(body.bytes));
        set_spin_headers(&mut request, &found, client, authority);
        let response = self
            .respond(id.as_str(), request, request_id, Some(slot))
            .await;
        // The body's memory is counted until the instance has answered (it has the bytes).
        drop(body.memory);
        response
    }

    /// `/.well-known/spin/health` and `/.well-known/spin/info`, as in Spin; health answers 503
    /// while no instance slot is free.
    fn well_known(&self, path: &str) -> Result<Response<WasiBody>, HttpError> {
        match path {
            "health" if self.admission.has_free_slot() => Ok(text(StatusCode::OK, "OK")),
            "health" => Err(HttpError::NoSlotFree {
                in_flight: self.admission.in_flight(),
                waiting: self.admission.waiting(),
            }),
            "info" => {
                let info = serde_json::json!({
                    "name": self.info.name,
                    "version": self.info.version,
                    "host": "orderly",
                    "host_version": env!("CARGO_PKG_VERSION"),
                });
                let mut response = text(StatusCode::OK, &info.to_string());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(response)
            }
            _ => Err(HttpError::NotSpinEndpoint(path.to_owned())),
        }
    }

    /// Serves a service-chained request (`http://<component>.spin.internal/...`) in-process.
    /// It takes no request slot (its caller holds one; waiting for another could deadlock).
    async fn chained(
        self: &Arc<Self>,
        target: &str,
        mut request: Request<WasiBody>,
    ) -> Result<Response<WasiBody>, Error> {
        if self.runner.app().component(target).is_none() {
            tracing::warn!(
                component = target,
                "service chaining to an unknown component"
            );
            return Err(Error::DestinationNotFound);
        }
        let found = RouteMatch::chained(request.uri().path());
        set_spin_headers(
            &mut request,
            &found,
            CHAINED_CLIENT,
            Authority::from_static("localhost"),
        );
        let request_id =
            edge::client_request_id(request.headers()).map_or_else(new_request_id, str::to_owned);
        Ok(self
            .respond(target, request, &request_id, None)
            .await
            .unwrap_or_else(|error| error.response(&request_id, self.settings.busy_retry_after)))
    }

    /// Runs a fresh instance of component `id` on `request`, holding `slot` until the
    /// instance ends. Failures are logged once with the component (repeated ones thinned out).
    async fn respond(
        self: &Arc<Self>,
        id: &str,
        request: Request<WasiBody>,
        request_id: &str,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Response<WasiBody>, HttpError> {
        let (Some(component), Some(handler)) =
            (self.runner.app().component(id), self.handlers.get(id))
        else {
            // Only a chained request can reach one: every routed component has a handler.
            return Err(HttpError::NotHttp);
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (trigger, handler, id) = (Arc::clone(self), handler.clone(), component.id.clone());
        let instance_id = request_id.to_owned();
        let task = self.instances.spawn(async move {
            let component = trigger
                .runner
                .app()
                .component(id.as_str())
                .expect("handlers name loaded components");
            let context = InstanceContext {
                chaining: Some(Arc::clone(&trigger) as Arc<dyn ServiceChaining>),
            };
            let result = trigger
                .runner
                .run(
                    component,
                    &handler,
                    &context,
                    HandleRequest { request, sender },
                )
                .await;
            drop(slot);
            if let Err(error) = &result
                && let Some(left_out) = trigger.log.admit(&format!("http failed {id}"))
            {
                tracing::error!(component = %id, request_id = ?instance_id, left_out, "{error}");
            }
            result
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(HttpError::ComponentError(format!("{code:?}"))),
            Err(_) => match task.await {
                Ok(Err(error)) => Err(HttpError::Instance(error)),
                // The instance ended without a response and without an error, or its task
                // panicked: either way it failed.
                _ => Err(HttpError::Instance(super::InstanceError::Failed(
                    wasmtime::Error::msg("the component returned without a response"),
                ))),
            },
        }
    }
}

/// Whether bytes wait on the socket that no one has read (a request that has arrived).
fn has_pending_bytes(socket: &std::net::TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(socket.peek(&mut byte), Ok(1))
}

fn log_connection_end(ended: Result<(), hyper::Error>, client: SocketAddr) {
    if let Err(error) = ended {
        tracing::debug!(%error, %client, "connection ended with an error");
    }
}

/// Calls `wasi:http/incoming-handler` with a request; the response comes through `sender`.
struct HandleRequest {
    request: Request<WasiBody>,
    sender: ResponseSender,
}

type ResponseSender = tokio::sync::oneshot::Sender<
    Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
>;

impl Call<Proxy> for HandleRequest {
    type Output = ();

    async fn call(self, store: &mut Store<InstanceState>, proxy: Proxy) -> wasmtime::Result<()> {
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, self.request)?;
        let response = store.data_mut().http().new_response_outparam(self.sender)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(store, request, response)
            .await
    }
}

impl ServiceChaining for HttpTrigger {
    fn serve(
        self: Arc<Self>,
        component: String,
        request: Request<WasiBody>,
    ) -> BoxFuture<'static, Result<Response<WasiBody>, Error>> {
        Box::pin(async move { self.chained(&component, request).await })
    }
}

/// Sets Spin's request headers (dropping any a client sent) and makes the URI absolute at
/// `authority`, as Spin does before handing a request to a component. A parsed authority, not
/// text spliced into a URL: a Host header cannot change the path.
fn set_spin_headers<B>(
    request: &mut Request<B>,
    found: &RouteMatch,
    client: SocketAddr,
    authority: Authority,
) {
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    let uri = Uri::from_parts(parts).expect("scheme, authority and path make a valid URI");
    let full_url = uri.to_string();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(HeaderName::from_static("spin-full-url"), &full_url);
    set(HeaderName::from_static("spin-path-info"), &found.path_info);
    set(
        HeaderName::from_static("spin-matched-route"),
        &found.based_route,
    );
    set(
        HeaderName::from_static("spin-raw-component-route"),
        &found.raw_route,
    );
    set(
        HeaderName::from_static("spin-component-route"),
        &found.component_route,
    );
    set(HeaderName::from_static("spin-base-path"), "/");
    set(
        HeaderName::from_static("spin-client-addr"),
        &client.to_string(),
    );
    for (name, value) in &found.captures {
        let header = format!(
            "spin-path-match-{}",
            name.replace('_', "-").to_ascii_lowercase()
        );
        if let Ok(header) = HeaderName::from_bytes(header.as_bytes()) {
            set(header, value);
        }
    }
}

/// A new request id, unique to this process.
fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:x}-{}",
        process_tag(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A random tag distinguishing this process's request ids from another's.
fn process_tag() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static TAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish() as u32
    })
}

fn text(status: StatusCode, body: &str) -> Response<WasiBody> {
    let mut response = Response::new(body_of(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn problem(problem: Problem) -> Response<WasiBody> {
    let mut response = Response::new(body_of(Bytes::from(problem.to_json())));
    *response.status_mut() =
        StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(http_problem::CONTENT_TYPE),
    );
    response
}

fn body_of(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
