//! A validator gone wrong, on purpose: an HTTP proxy in front of the app's simulated validator
//! that relays every call, except calls about the orders it poisons, which get 200 with an
//! answer that is not a verdict about the order (not JSON, no verdict, an unknown verdict, a
//! verdict about another order, in turn) until it is healed. What a third-party validator
//! answering garbage looks like to Orderly; the simulator has no such mode.

use crate::app_http::Http;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::task::JoinHandle;

/// The proxy: where it listens, and what it has done.
pub struct ValidatorProxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
    server: JoinHandle<()>,
}

/// What every connection of the proxy shares.
struct ProxyState {
    /// The app whose simulator it relays to, once known.
    upstream: OnceLock<Http>,
    /// Garbage answers served, by poisoned order.
    poisoned: Mutex<HashMap<String, u32>>,
    /// Whether it has stopped poisoning.
    healed: AtomicBool,
}

impl ValidatorProxy {
    /// Starts the proxy on a free loopback port, poisoning the orders `poisoned`. It relays
    /// nothing until told where to ([`ValidatorProxy::relay_to`]): calls before that get 503.
    pub async fn start(poisoned: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(ProxyState {
            upstream: OnceLock::new(),
            poisoned: Mutex::new(poisoned.into_iter().map(|id| (id, 0)).collect()),
            healed: AtomicBool::new(false),
        });
        let serving = Arc::clone(&state);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            address,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`: the validator's origin to give the app.
    pub fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Relays calls to the app on `app` from now on.
    pub fn relay_to(&self, app: SocketAddr) {
        let _ = self.state.upstream.set(Http::new(app));
    }

    /// Stops poisoning: every call is relayed from now on.
    pub fn heal(&self) {
        self.state.healed.store(true, Ordering::SeqCst);
    }

    /// Garbage answers served so far, by poisoned order.
    pub fn garbage_served(&self) -> BTreeMap<String, u32> {
        self.state
            .poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, served)| (id.clone(), *served))
            .collect()
    }
}

impl Drop for ValidatorProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ProxyState {
    /// The answer to one call: garbage about a poisoned order, else the simulator's own.
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (head, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|body| body.to_bytes()) else {
            return respond(StatusCode::BAD_REQUEST, "text/plain", "unreadable body");
        };
        let order_id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|call| call["order_id"].as_str().map(str::to_owned));
        if let Some(order_id) = order_id
            && !self.healed.load(Ordering::SeqCst)
            && let Some(served) = self
                .poisoned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&order_id)
        {
            let (content_type, garbage) = garbage(&order_id, *served);
            *served += 1;
            return respond(StatusCode::OK, content_type, &garbage);
        }
        let Some(upstream) = self.upstream.get() else {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not relaying yet",
            );
        };
        let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
        let path = head.uri.path_and_query().map_or("/", |path| path.as_str());
        match upstream.send(head.method, path, &[], body).await {
            Ok(answer) => {
                let mut response = Response::new(Full::new(answer.body));
                *response.status_mut() =
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                *response.headers_mut() = answer.headers;
                response
            }
            Err(error) => respond(StatusCode::BAD_GATEWAY, "text/plain", &format!("{error:#}")),
        }
    }
}

/// An answer with `status`, `content_type` and `body`.
fn respond(status: StatusCode, content_type: &'static str, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The `served`-th garbage answer (from 0) about `order_id`, with its content type: each kind
/// of answer that is not a verdict about the order, in turn.
fn garbage(order_id: &str, served: u32) -> (&'static str, String) {
    match served % 4 {
        0 => (
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned(),
        ),
        1 => ("application/json", json!({"status": "ok"}).to_string()),
        2 => (
            "application/json",
            json!({"verdict": "maybe", "order_id": order_id}).to_string(),
        ),
        _ => (
            "application/json",
            json!({"verdict": "valid", "order_id": format!("{order_id}-someone-else")}).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use pipeline::{CallResult, ValidatorVerdict, interpret};
    use resilience::HttpAnswer;

    /// What Orderly makes of a 200 answer with `body` about `order_id`.
    fn read(body: &str, order_id: &str) -> CallResult {
        let answer = HttpAnswer {
            status: 200,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        };
        interpret(Ok(answer), order_id, 0)
    }

    #[test]
    fn every_kind_of_garbage_is_unreadable_to_orderly() {
        for served in 0..8 {
            let (_, body) = garbage("o-7", served);
            assert!(
                matches!(read(&body, "o-7"), CallResult::Unreadable(_)),
                "answer {served}: {body}"
            );
        }
        let kinds: std::collections::HashSet<String> =
            (0..8).map(|served| garbage("o-7", served).1).collect();
        assert_eq!(kinds.len(), 4, "four kinds, in turn");
        assert_eq!(
            read(r#"{"verdict": "valid", "order_id": "o-7"}"#, "o-7"),
            CallResult::Verdict(ValidatorVerdict::Valid),
            "a relayed verdict is readable"
        );
    }

    #[tokio::test]
    async fn poisoned_orders_get_garbage_until_healed_and_others_wait_for_the_relay() {
        let proxy = ValidatorProxy::start(["bad".to_owned()]).await.unwrap();
        let client = Http::new(proxy.address);
        let call = |order: &'static str| {
            let client = &client;
            async move {
                client
                    .send(
                        Method::POST,
                        "/external/validate",
                        &[],
                        Some(json!({"order_id": order}).to_string()),
                    )
                    .await
                    .unwrap()
            }
        };
        let poisoned = call("bad").await;
        assert_eq!(poisoned.status, 200);
        assert!(matches!(
            read(&String::from_utf8_lossy(&poisoned.body), "bad"),
            CallResult::Unreadable(_)
        ));
        assert_eq!(call("good").await.status, 503, "no upstream yet");
        assert_eq!(proxy.garbage_served()["bad"], 1);
        proxy.heal();
        assert_eq!(
            call("bad").await.status,
            503,
            "healed: relayed, no upstream"
        );
        assert_eq!(proxy.garbage_served()["bad"], 1);
    }
}
