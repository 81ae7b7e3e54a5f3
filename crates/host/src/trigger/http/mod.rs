//! The HTTP trigger: a hyper server that routes each request to a fresh instance of the matched
//! component, with Spin's `spin-*` headers, graceful shutdown and one log line per request. It
//! also serves service-chained requests (`http://<component>.spin.internal`) in-process: it is
//! the [`ServiceChaining`] handed to the instances.

pub mod routes;

use super::{Call, Export, InstanceError, WhenPoolFull, export, run_instance};
use crate::app::App;
use crate::capability::{InstanceContext, ServiceChaining};
use crate::instance::InstanceState;
use crate::services::clock::HostClock;
use crate::settings::HttpSettings;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use http_problem::Problem;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use orderly_manifest::{App as Manifest, ComponentId, ConfigProblem, HttpRoute};
use routes::{RouteMatch, RoutePattern, Router};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
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

    /// The trigger over `app`: every component it runs must export `wasi:http/incoming-handler`
    /// (else a problem).
    pub(crate) fn bind(
        self,
        app: &Arc<App>,
        settings: &HttpSettings,
        clock: &Arc<dyn HostClock>,
        problems: &mut Vec<ConfigProblem>,
    ) -> Arc<HttpTrigger> {
        let handlers = self
            .components
            .iter()
            .filter_map(|id| app.component(id.as_str()))
            .filter_map(|component| {
                export::<ProxyPre<InstanceState>>(component, problems)
                    .map(|handler| (component.id.clone(), handler))
            })
            .collect();
        Arc::new(HttpTrigger {
            app: Arc::clone(app),
            router: self.router,
            handlers,
            instances: TaskTracker::new(),
            info: self.info,
            settings: settings.clone(),
            clock: Arc::clone(clock),
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
    app: Arc<App>,
    router: Router<ComponentId>,
    /// The HTTP handler of every component an HTTP trigger runs.
    handlers: BTreeMap<ComponentId, ProxyPre<InstanceState>>,
    /// The instances serving requests: one may still run (and write) after its response went
    /// out, so shutdown waits for them before the stores close.
    instances: TaskTracker,
    info: AppInfo,
    settings: HttpSettings,
    clock: Arc<dyn HostClock>,
}

impl HttpTrigger {
    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests (and the
    /// instances still running after their response) finish for up to `drain`.
    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        // A client gets this long to send a request's headers: idle and trickling connections
        // cannot hold sockets (or a graceful shutdown) forever.
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.settings.header_read_timeout);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, client) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: back off rather than spin.
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(self.settings.accept_backoff).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let trigger = Arc::clone(&self);
                    let service = hyper::service::service_fn(move |request| {
                        let trigger = Arc::clone(&trigger);
                        async move { Ok::<_, Infallible>(trigger.handle(request, client).await) }
                    });
                    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, %client, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: finishing in-flight requests");
        let finished = async {
            graceful.shutdown().await;
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

    /// Handles one request from a client.
    async fn handle(
        self: &Arc<Self>,
        mut request: Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> Response<WasiBody> {
        let started = self.clock.now();
        let request_id = request_id(request.headers());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let (response, component, route) =
            if let Some(reserved) = path.strip_prefix("/.well-known/spin/") {
                (well_known(&self.info, reserved), None, None)
            } else {
                match self.router.route(&path) {
                    None => (
                        problem(
                            Problem::new(404, "Not Found")
                                .with_detail(format!("no route matches {path}")),
                        ),
                        None,
                        None,
                    ),
                    Some((id, found)) => {
                        let route = found.raw_route.clone();
                        let response = match host_authority(request.headers()) {
                            Ok(authority) => {
                                set_spin_headers(&mut request, &found, client, authority);
                                self.respond(id.as_str(), request, &request_id).await
                            }
                            Err(bad) => problem(Problem::new(400, "Bad Request").with_detail(
                                format!("the Host header {bad:?} is not a valid host[:port]"),
                            )),
                        };
                        (response, Some(id.clone()), Some(route))
                    }
                }
            };
        let mut response = response;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        tracing::info!(
            target: "orderly::http",
            request_id = %request_id,
            %method,
            %path,
            component = component.as_ref().map(|c| c.as_str()).unwrap_or("-"),
            route = route.as_deref().unwrap_or("-"),
            status = response.status().as_u16(),
            ms = format_args!("{:.2}", (self.clock.now() - started).as_secs_f64() * 1e3),
            "request"
        );
        response
    }

    /// Serves a service-chained request (`http://<component>.spin.internal/...`) in-process.
    async fn chained(
        self: &Arc<Self>,
        target: &str,
        mut request: Request<WasiBody>,
    ) -> Result<Response<WasiBody>, Error> {
        if self.app.component(target).is_none() {
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
        let request_id = request_id(request.headers());
        Ok(self.respond(target, request, &request_id).await)
    }

    /// Runs a fresh instance of component `id` on `request`; failures become problem
    /// responses. A full instance pool is answered at once with 503 and `Retry-After`.
    async fn respond<B>(
        self: &Arc<Self>,
        id: &str,
        request: Request<B>,
        request_id: &str,
    ) -> Response<WasiBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Error>,
    {
        let (Some(component), Some(handler)) = (self.app.component(id), self.handlers.get(id))
        else {
            // Only a chained request can reach one: every routed component has a handler.
            return problem(
                Problem::new(500, "Internal Server Error")
                    .with_detail("the component does not handle HTTP"),
            );
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (trigger, handler, id) = (Arc::clone(self), handler.clone(), component.id.clone());
        let instance_id = request_id.to_owned();
        let task = self.instances.spawn(async move {
            let component = trigger
                .app
                .component(id.as_str())
                .expect("handlers name loaded components");
            let context = InstanceContext {
                chaining: Some(Arc::clone(&trigger) as Arc<dyn ServiceChaining>),
            };
            let result = run_instance(
                &trigger.app,
                component,
                &handler,
                WhenPoolFull::GiveUp,
                &context,
                trigger.clock.as_ref(),
                HandleRequest { request, sender },
            )
            .await;
            if let Err(error) = &result {
                let error = error.error();
                tracing::error!(component = %id, request_id = %instance_id, "component failed: {error:?}");
            }
            result
        });
        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => problem(
                Problem::new(500, "Internal Server Error")
                    .with_detail(format!("the component reported an error: {code:?}")),
            ),
            Err(_) => match task.await {
                Ok(Err(InstanceError::PoolFull(_))) => {
                    let mut response = problem(
                        Problem::new(503, "Service Unavailable")
                            .with_detail("too many requests in flight; retry shortly"),
                    );
                    let retry_after = self.settings.busy_retry_after.as_secs().max(1);
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
                    response
                }
                _ => problem(
                    Problem::new(500, "Internal Server Error")
                        .with_detail("the component failed before responding; see the host log")
                        .with("request_id", request_id),
                ),
            },
        }
    }
}

/// Calls `wasi:http/incoming-handler` with a request; the response comes through `sender`.
struct HandleRequest<B> {
    request: Request<B>,
    sender: ResponseSender,
}

type ResponseSender = tokio::sync::oneshot::Sender<
    Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
>;

impl<B> Call<Proxy> for HandleRequest<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Error>,
{
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

/// The request's Host header as an authority (`localhost` without one); the header's text when
/// it is not a valid `host[:port]`.
fn host_authority(headers: &HeaderMap) -> Result<Authority, String> {
    let Some(value) = headers.get(http::header::HOST) else {
        return Ok(Authority::from_static("localhost"));
    };
    let host = value
        .to_str()
        .map_err(|_| String::from_utf8_lossy(value.as_bytes()).into_owned())?;
    host.parse().map_err(|_| host.to_owned())
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

/// `/.well-known/spin/health` and `/.well-known/spin/info`, as in Spin.
fn well_known(app: &AppInfo, path: &str) -> Response<WasiBody> {
    match path {
        "health" => text(StatusCode::OK, "OK"),
        "info" => {
            let info = serde_json::json!({
                "name": app.name,
                "version": app.version,
                "host": "orderly",
                "host_version": env!("CARGO_PKG_VERSION"),
            });
            let mut response = text(StatusCode::OK, &info.to_string());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        _ => problem(
            Problem::new(404, "Not Found")
                .with_detail(format!("/.well-known/spin/{path} is not a Spin endpoint")),
        ),
    }
}

/// The request id: the client's `x-request-id` when it sent a sane one, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{}",
                process_tag(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        })
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
