//! The HTTP trigger: a hyper server that routes each request to a fresh instance of the matched
//! component, with Spin's `spin-*` headers, graceful shutdown and one log line per request.

pub mod routes;

use crate::app::App;
use crate::capability::{InstanceContext, ServiceChaining};
use crate::component::ComponentRuntime;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use http_problem::Problem;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use routes::RouteMatch;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpView};

/// The client address Spin reports for service-chained requests.
const CHAINED_CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// for up to `drain`.
pub async fn serve(
    app: Arc<App>,
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
        .header_read_timeout(app.settings().http.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(app.settings().http.accept_backoff).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let service = hyper::service::service_fn(move |request| {
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(handle(app, request, client).await) }
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
        app.http_instances.close();
        app.http_instances.wait().await;
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
    app: Arc<App>,
    mut request: Request<hyper::body::Incoming>,
    client: SocketAddr,
) -> Response<WasiBody> {
    let started = app.clock().now();
    let request_id = request_id(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (response, component, route) = if let Some(reserved) =
        path.strip_prefix("/.well-known/spin/")
    {
        (well_known(&app, reserved), None, None)
    } else {
        match app.router.route(&path) {
            None => (
                problem(
                    Problem::new(404, "Not Found").with_detail(format!("no route matches {path}")),
                ),
                None,
                None,
            ),
            Some((id, found)) => {
                let component = app
                    .component(id.as_str())
                    .expect("routes name loaded components");
                let route = found.raw_route.clone();
                let response = match host_authority(request.headers()) {
                    Ok(authority) => {
                        set_spin_headers(&mut request, &found, client, authority);
                        respond(&app, component, request, &request_id).await
                    }
                    Err(bad) => problem(Problem::new(400, "Bad Request").with_detail(format!(
                        "the Host header {bad:?} is not a valid host[:port]"
                    ))),
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
        ms = format_args!("{:.2}", (app.clock().now() - started).as_secs_f64() * 1e3),
        "request"
    );
    response
}

/// Serves a service-chained request (`http://<component>.spin.internal/...`) in-process.
pub(crate) async fn serve_chained(
    app: &Arc<App>,
    target: &str,
    mut request: Request<WasiBody>,
) -> Result<Response<WasiBody>, Error> {
    let Some(component) = app.component(target) else {
        tracing::warn!(
            component = target,
            "service chaining to an unknown component"
        );
        return Err(Error::DestinationNotFound);
    };
    let found = RouteMatch::chained(request.uri().path());
    set_spin_headers(
        &mut request,
        &found,
        CHAINED_CLIENT,
        Authority::from_static("localhost"),
    );
    let request_id = request_id(request.headers());
    Ok(respond(app, component, request, &request_id).await)
}

/// Runs a fresh instance of `component` on `request`; failures become problem responses.
async fn respond<B>(
    app: &Arc<App>,
    component: &ComponentRuntime,
    request: Request<B>,
    request_id: &str,
) -> Response<WasiBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Error>,
{
    let Some(proxy) = component.http.clone() else {
        // Only a chained request can reach one: loading checks every routed component.
        return problem(
            Problem::new(500, "Internal Server Error")
                .with_detail("the component does not handle HTTP"),
        );
    };
    let mut store = app.new_store(component, &chaining(app));
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let id = component.id.clone();
    let instance_id = request_id.to_owned();
    let task = app.http_instances.spawn(async move {
        let result = async {
            let request = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request)?;
            let response = store.data_mut().http().new_response_outparam(sender)?;
            let proxy = proxy.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, response)
                .await
        }
        .await;
        if let Err(error) = &result {
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
            Ok(Err(error))
                if error
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                let mut response = problem(
                    Problem::new(503, "Service Unavailable")
                        .with_detail("too many requests in flight; retry shortly"),
                );
                let retry_after = app.settings().http.busy_retry_after.as_secs().max(1);
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
fn well_known(app: &App, path: &str) -> Response<WasiBody> {
    match path {
        "health" => text(StatusCode::OK, "OK"),
        "info" => {
            let info = serde_json::json!({
                "name": app.manifest.name,
                "version": app.manifest.version,
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

/// Service chaining through the HTTP trigger, for every instance of `app`.
pub(crate) fn chaining(app: &Arc<App>) -> InstanceContext {
    InstanceContext {
        chaining: Some(Arc::clone(app) as Arc<dyn ServiceChaining>),
    }
}

impl ServiceChaining for App {
    fn serve(
        self: Arc<Self>,
        component: String,
        request: Request<WasiBody>,
    ) -> futures::future::BoxFuture<'static, Result<Response<WasiBody>, Error>> {
        Box::pin(async move { serve_chained(&self, &component, request).await })
    }
}
