//! Outbound HTTP (`wasi:http/outgoing-handler`): `allowed_outbound_hosts` enforced,
//! `http://<component>.spin.internal` served in-process by that component, other `http://`
//! requests sent on the application's pooled connections ([`pool`]), `https://` ones by
//! `wasmtime_wasi_http::default_send_request` (a new connection each), and the guest's
//! timeouts honoured.

mod pool;

pub use pool::{HttpConnectionPool, PoolLimits};

use crate::app::App;
use crate::services::allowed_hosts::AllowedHosts;
use crate::trigger::http as http_trigger;
use http_body_util::BodyExt;
use orderly_manifest::ComponentId;
use std::future::Future;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The suffix of service-chaining hosts.
const CHAINING_SUFFIX: &str = ".spin.internal";

/// The outbound HTTP policy of one instance.
pub struct OutboundHttp {
    app: Arc<App>,
    component: ComponentId,
    allowed: Arc<AllowedHosts>,
}

impl OutboundHttp {
    /// The policy for an instance of `component` in `app`.
    pub fn new(app: Arc<App>, component: ComponentId, allowed: Arc<AllowedHosts>) -> Self {
        Self {
            app,
            component,
            allowed,
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let app = Arc::clone(&self.app);
        let allowed = Arc::clone(&self.allowed);
        let caller = self.component.clone();
        Box::new(async move {
            let uri = request.uri();
            let scheme = uri.scheme_str().unwrap_or("http").to_owned();
            let host = uri.host().unwrap_or_default().to_owned();
            if !allowed.allows(&scheme, &host, uri.port_u16()) {
                tracing::warn!(
                    component = %caller,
                    url = %uri,
                    "outbound request denied: the host is not in allowed_outbound_hosts"
                );
                return Err(Error::HttpRequestDenied);
            }
            if let Some(target) = chained_component(&host) {
                request.headers_mut().remove(http::header::HOST);
                let served = http_trigger::serve_chained(&app, target, request);
                let response = match options.and_then(|o| o.first_byte_timeout) {
                    Some(limit) => tokio::time::timeout(limit, served)
                        .await
                        .map_err(|_| Error::ConnectionReadTimeout)??,
                    None => served.await?,
                };
                let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                    Box::new(async { Ok(()) });
                return Ok((response, done));
            }
            if request.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
                let response = app.outbound_connections.send(request, options).await?;
                // The pool drives its connections itself.
                let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                    Box::new(async { Ok(()) });
                return Ok((response, done));
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

/// The component a service-chaining host names (`orders.spin.internal` → `orders`).
fn chained_component(host: &str) -> Option<&str> {
    host.strip_suffix(CHAINING_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaining_hosts_name_one_component() {
        assert_eq!(chained_component("orders.spin.internal"), Some("orders"));
        assert_eq!(chained_component("a.b.spin.internal"), None);
        assert_eq!(chained_component(".spin.internal"), None);
        assert_eq!(chained_component("example.com"), None);
    }
}
