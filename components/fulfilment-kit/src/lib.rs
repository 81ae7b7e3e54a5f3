//! The fulfilment worker on Spin, shared by its two components: the Redis-triggered
//! `fulfilment` (a doorbell woke it) and the cron-triggered `fulfilment-sweeper` (for the
//! same reason as the validator and its sweeper, each trigger type has its own component).
//! This crate adapts Spin's SQLite, key-value store and outbound HTTP (with timeouts) to
//! [`fulfilment::FulfilmentWorker`]. A Redis- or cron-triggered component cannot use service
//! chaining on Spin, so the services are reached by full URL: `inventory_url`, `payment_url`
//! and `shipping_url`, by default `<app_url>/internal/<service>`. Orders that end ring the
//! notification service's doorbell on the app's Redis (`redis_url`).

use fulfilment::{
    FULFILMENT_CHANNEL, FulfilmentParts, FulfilmentReport, FulfilmentSettings, FulfilmentWorker,
    ServiceClient, ServiceRequest,
};
use guest_kit::{RedisDoorbells, SpinKv, SpinSql, Timeouts, WallClock};
use ledger::Ledger;
use resilience::{CallFailure, HttpAnswer, SplitMix64};
use saga::Service;
use spin_sdk::http::Method;

/// The largest service answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The header that proves a call comes from inside the app (the services check it).
const TOKEN_HEADER: &str = "x-orderly-internal-token";

/// Why the worker runs.
pub enum Invocation<'a> {
    /// A message on the fulfilment channel.
    Message(&'a [u8]),
    /// The cron sweep.
    Sweep,
}

/// Builds a worker over Spin's stores and runs it.
pub async fn run(invocation: Invocation<'_>) -> anyhow::Result<FulfilmentReport> {
    let settings = FulfilmentSettings::read(guest_kit::variable)?;
    let ledger = Ledger::new(SpinSql::open_default()?);
    let store = SpinKv::open("default")?;
    let services = HttpServices::from_variables()?;
    let prices = guest_kit::catalog()?;
    let publisher = RedisDoorbells::from_variables();
    let seed = guest_kit::random_seed();
    let parts = FulfilmentParts {
        ledger: &ledger,
        store: &store,
        clock: &WallClock,
        services: &services,
        prices: &prices,
        publisher: &publisher,
        settings: &settings,
    };
    let worker = FulfilmentWorker::new(parts, SplitMix64::new(seed), format!("f-{seed:016x}"));
    let report = match invocation {
        Invocation::Message(message) => worker.on_message(FULFILMENT_CHANNEL, message).await?,
        Invocation::Sweep => worker.sweep().await?,
    };
    Ok(report)
}

/// The inventory, payment and shipping services over HTTP, with the configured timeouts and
/// the internal token (when one is set).
struct HttpServices {
    inventory: String,
    payment: String,
    shipping: String,
    token: Option<String>,
    timeouts: Timeouts,
}

impl HttpServices {
    fn from_variables() -> anyhow::Result<Self> {
        let app = guest_kit::variable_or("app_url", "http://127.0.0.1:3000");
        let base = |service: Service| {
            let name = service.as_str();
            let url = guest_kit::variable(&format!("{name}_url"))
                .unwrap_or_else(|| format!("{}/internal/{name}", app.trim_end_matches('/')));
            url.trim_end_matches('/').to_owned()
        };
        Ok(Self {
            inventory: base(Service::Inventory),
            payment: base(Service::Payment),
            shipping: base(Service::Shipping),
            token: guest_kit::variable("internal_token"),
            timeouts: guest_kit::timeouts_from_variables(
                ("service_connect_timeout_ms", 1_000),
                ("service_timeout_ms", 5_000),
            )?,
        })
    }
}

impl ServiceClient for HttpServices {
    async fn send(&self, request: &ServiceRequest) -> Result<HttpAnswer, CallFailure> {
        let base = match request.service {
            Service::Inventory => &self.inventory,
            Service::Payment => &self.payment,
            Service::Shipping => &self.shipping,
        };
        let mut headers = vec![("content-type", "application/json")];
        if let Some(token) = &self.token {
            headers.push((TOKEN_HEADER, token.as_str()));
        }
        guest_kit::call(
            Method::Post,
            &format!("{base}{}", request.path),
            &headers,
            request.body.clone(),
            self.timeouts,
            MAX_ANSWER,
        )
        .await
    }
}
