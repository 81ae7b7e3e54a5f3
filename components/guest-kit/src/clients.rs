//! HTTP clients of the validator and of the inventory, payment and shipping services, for the
//! native workers' traits. Two ways to reach them: by full URL with the internal token (the
//! Redis- and cron-triggered workers, which Spin gives no service chaining), or by service
//! chaining (`http://<component>.spin.internal`, HTTP-triggered components only) with every
//! call cut short at a request's deadline.

use crate::{BadMillis, Timeouts, WallClock};
use fulfilment::{ServiceClient, ServiceRequest};
use pipeline::ValidatorClient;
use resilience::{CallFailure, Clock, HttpAnswer};
use saga::Service;
use spin_sdk::http::Method;
use std::time::Duration;

/// The largest answer read from a service or the validator.
const MAX_ANSWER: usize = 64 * 1024;

/// The header that proves a call comes from inside the app (the services check it).
const TOKEN_HEADER: &str = "x-orderly-internal-token";

/// The validator's chained URL (the `external-sim` component).
const CHAINED_VALIDATOR: &str = "http://external-sim.spin.internal/validate";

/// How long calls may take: fixed timeouts, or what is left before a deadline.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Fixed(Timeouts),
    /// Until this wall-clock millisecond, connecting within at most the given time.
    Until {
        deadline_ms: u64,
        connect: Duration,
    },
}

impl Budget {
    /// The timeouts of a call made now; `None` when no time is left.
    fn timeouts(self) -> Option<Timeouts> {
        match self {
            Budget::Fixed(timeouts) => Some(timeouts),
            Budget::Until {
                deadline_ms,
                connect,
            } => {
                let left = deadline_ms
                    .checked_sub(WallClock.now_ms())
                    .filter(|left| *left > 0)?;
                let left = Duration::from_millis(left);
                Some(Timeouts {
                    connect: connect.min(left),
                    first_byte: left,
                    between_bytes: left,
                })
            }
        }
    }
}

/// POSTs `body` as JSON to `url` within `budget`.
async fn post(
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
    budget: Budget,
) -> Result<HttpAnswer, CallFailure> {
    let Some(timeouts) = budget.timeouts() else {
        return Err(CallFailure::Timeout("the request's deadline passed".into()));
    };
    let mut headers = vec![("content-type", "application/json")];
    if let Some(token) = token {
        headers.push((TOKEN_HEADER, token));
    }
    crate::call(Method::Post, url, &headers, body, timeouts, MAX_ANSWER).await
}

/// The inventory, payment and shipping services over HTTP.
pub struct HttpServices {
    inventory: String,
    payment: String,
    shipping: String,
    token: Option<String>,
    budget: Budget,
}

impl HttpServices {
    /// By full URL, for the Redis- and cron-triggered workers: `inventory_url`, `payment_url`
    /// and `shipping_url` (default `<app_url>/internal/<service>`), with the `internal_token`
    /// when set and the `service_connect_timeout_ms` and `service_timeout_ms` timeouts.
    pub fn by_url() -> Result<Self, BadMillis> {
        let app = crate::variable_or("app_url", "http://127.0.0.1:3000");
        let base = |service: Service| {
            let name = service.as_str();
            let url = crate::variable(&format!("{name}_url"))
                .unwrap_or_else(|| format!("{}/internal/{name}", app.trim_end_matches('/')));
            url.trim_end_matches('/').to_owned()
        };
        Ok(Self {
            inventory: base(Service::Inventory),
            payment: base(Service::Payment),
            shipping: base(Service::Shipping),
            token: crate::variable("internal_token"),
            budget: Budget::Fixed(crate::timeouts_from_variables(
                ("service_connect_timeout_ms", 1_000),
                ("service_timeout_ms", 5_000),
            )?),
        })
    }

    /// By service chaining (`http://<service>.spin.internal`), for an HTTP-triggered
    /// component: every call ends by `deadline_ms` (wall clock), connecting within
    /// `service_connect_timeout_ms`. Chained calls need no token.
    pub fn chained(deadline_ms: u64) -> Result<Self, BadMillis> {
        let origin = |service: Service| format!("http://{}.spin.internal", service.as_str());
        Ok(Self {
            inventory: origin(Service::Inventory),
            payment: origin(Service::Payment),
            shipping: origin(Service::Shipping),
            token: None,
            budget: Budget::Until {
                deadline_ms,
                connect: crate::millis_variable("service_connect_timeout_ms", 1_000)?,
            },
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
        let url = format!("{base}{}", request.path);
        let body = request.body.clone();
        post(&url, self.token.as_deref(), body, self.budget).await
    }
}

/// The external validator over HTTP.
pub struct HttpValidator {
    url: String,
    budget: Budget,
}

impl HttpValidator {
    /// By full URL, for the validation workers: `validator_url` with the
    /// `validator_connect_timeout_ms` and `validator_timeout_ms` timeouts.
    pub fn by_url() -> Result<Self, BadMillis> {
        Ok(Self {
            url: crate::variable_or("validator_url", "http://127.0.0.1:3000/external/validate"),
            budget: Budget::Fixed(crate::timeouts_from_variables(
                ("validator_connect_timeout_ms", 1_000),
                ("validator_timeout_ms", 5_000),
            )?),
        })
    }

    /// By service chaining (the `external-sim` component's `/validate`), for an
    /// HTTP-triggered component: the call ends by `deadline_ms`, connecting within
    /// `validator_connect_timeout_ms`.
    pub fn chained(deadline_ms: u64) -> Result<Self, BadMillis> {
        Ok(Self {
            url: CHAINED_VALIDATOR.to_owned(),
            budget: Budget::Until {
                deadline_ms,
                connect: crate::millis_variable("validator_connect_timeout_ms", 1_000)?,
            },
        })
    }
}

impl ValidatorClient for HttpValidator {
    async fn validate(&self, body: Vec<u8>) -> Result<HttpAnswer, CallFailure> {
        post(&self.url, None, body, self.budget).await
    }
}
