//! Outbound HTTP (`wasi:http/outgoing-handler`): `allowed_outbound_hosts` enforced,
//! `http://<component>.spin.internal` served in-process by that component (through the
//! [`ServiceChaining`] the trigger hands each instance), other `http://`
//! requests sent on the application's pooled connections ([`pool`]), `https://` ones by
//! `wasmtime_wasi_http::default_send_request` (a new connection each), and the guest's
//! timeouts honoured.

mod pool;

pub use pool::{HttpConnectionPool, PoolLimits};

use crate::capability::{Capability, GrantContext, Has, InstanceContext, OpenContext, View};
use crate::services::allowed_hosts::AllowedHosts;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use orderly_manifest::{ComponentId, ConfigProblem};
use std::future::Future;
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::{LinkOptions, http as wit};
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
};

/// The suffix of service-chaining hosts.
const CHAINING_SUFFIX: &str = ".spin.internal";

/// Serves `http://<component>.spin.internal` requests in-process. The HTTP trigger implements
/// it and hands it to the instances it creates (as Spin's outbound-HTTP interceptor); the
/// capability only calls it.
pub(crate) trait ServiceChaining: Send + Sync {
    /// `component`'s response to `request` (whose `Host` header is already removed).
    fn serve(
        self: Arc<Self>,
        component: String,
        request: http::Request<WasiBody>,
    ) -> BoxFuture<'static, Result<http::Response<WasiBody>, Error>>;
}

/// Outbound HTTP for the application: its pooled `http://` connections.
#[derive(Default)]
pub struct OutboundHttp {
    connections: HttpConnectionPool,
}

/// What one component may reach.
#[derive(Clone)]
pub struct OutboundGrant {
    component: ComponentId,
    allowed: Arc<AllowedHosts>,
    connections: HttpConnectionPool,
}

/// One instance's `wasi:http` state, and its outbound policy.
pub struct OutboundInstance {
    ctx: WasiHttpCtx,
    hooks: OutboundHooks,
}

impl Capability for OutboundHttp {
    type Grant = OutboundGrant;
    type Instance = OutboundInstance;

    fn open(cx: &OpenContext<'_>) -> Result<Self, Vec<ConfigProblem>> {
        Ok(Self {
            connections: HttpConnectionPool::with_limits(PoolLimits {
                max_idle_per_authority: cx.settings.http.outbound_max_idle_per_authority,
                idle_timeout: cx.settings.http.outbound_idle_timeout,
            }),
        })
    }

    fn grant(self: &Arc<Self>, cx: &GrantContext<'_>) -> Result<OutboundGrant, Vec<ConfigProblem>> {
        Ok(OutboundGrant {
            component: cx.spec.id.clone(),
            allowed: Arc::clone(cx.allowed_hosts),
            connections: self.connections.clone(),
        })
    }

    fn instance(grant: &OutboundGrant, cx: &InstanceContext) -> OutboundInstance {
        OutboundInstance {
            ctx: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                grant: grant.clone(),
                chaining: cx.chaining.clone(),
            },
        }
    }

    /// `wasi:http/outgoing-handler` and `wasi:http/types` (which incoming requests use too).
    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        let options = LinkOptions::default();
        wit::outgoing_handler::add_to_linker::<T, WasiHttp>(linker, http_view::<T>)?;
        wit::types::add_to_linker::<T, WasiHttp>(linker, &options.into(), http_view::<T>)?;
        Ok(())
    }
}

/// An instance's `wasi:http` view: its context, table and outbound policy.
pub(crate) fn http_view<T: Has<OutboundHttp>>(state: &mut T) -> WasiHttpCtxView<'_> {
    let View { table, access } = state.part();
    WasiHttpCtxView {
        ctx: &mut access.ctx,
        table,
        hooks: &mut access.hooks,
    }
}

/// The outbound HTTP policy of one instance.
struct OutboundHooks {
    grant: OutboundGrant,
    /// Where service-chained requests go (from the trigger that runs the instance).
    chaining: Option<Arc<dyn ServiceChaining>>,
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

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let grant = self.grant.clone();
        let chaining = self.chaining.clone();
        Box::new(async move {
            let uri = request.uri();
            let scheme = uri.scheme_str().unwrap_or("http").to_owned();
            let host = uri.host().unwrap_or_default().to_owned();
            if !grant.allowed.allows(&scheme, &host, uri.port_u16()) {
                tracing::warn!(
                    component = %grant.component,
                    url = %uri,
                    "outbound request denied: the host is not in allowed_outbound_hosts"
                );
                return Err(Error::HttpRequestDenied);
            }
            if let Some(target) = chained_component(&host) {
                let Some(chaining) = chaining else {
                    // As in Spin: only HTTP-triggered instances may chain.
                    tracing::warn!(
                        component = %grant.component,
                        target,
                        "service chaining is denied: only HTTP-triggered instances may chain"
                    );
                    return Err(Error::HttpRequestDenied);
                };
                request.headers_mut().remove(http::header::HOST);
                let served = chaining.serve(target.to_owned(), request);
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
                let response = grant.connections.send(request, options).await?;
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
