//! Every answer the gateway gives in a service's place, mapped to its status and problem body
//! in one place.

use http_problem::Problem;

/// Why the gateway answers instead of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No route: 404.
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The route takes other methods: 405 (with `Allow`).
    MethodNotAllowed {
        /// The methods it takes.
        allow: &'static str,
    },
    /// The client is over its limit: 429 (with `Retry-After` and `RateLimit-*`).
    RateLimited {
        /// Seconds until the request would be allowed.
        retry_after_secs: u64,
    },
    /// The service did not answer in time: 504.
    UpstreamTimeout {
        /// The service's component.
        service: &'static str,
        /// The timeout, in ms.
        timeout_ms: u64,
    },
    /// The service cannot be reached: 503.
    UpstreamUnavailable {
        /// The service's component.
        service: &'static str,
        /// What the transport said.
        detail: String,
    },
    /// The service's answer could not be relayed (or the call was refused locally): 502.
    BadGateway {
        /// The service's component.
        service: &'static str,
        /// What went wrong.
        detail: String,
    },
}

impl GatewayError {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::NotFound { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::BadGateway { .. } => 502,
            GatewayError::UpstreamUnavailable { .. } => 503,
            GatewayError::UpstreamTimeout { .. } => 504,
        }
    }

    /// The problem body (`application/problem+json`).
    pub fn problem(&self) -> Problem {
        let problem = |title: &str, kind: &str| {
            Problem::new(self.status(), title).with_type(format!("/problems/{kind}"))
        };
        match self {
            GatewayError::NotFound { path } => problem("Not Found", "no-route").with_detail(
                format!("the gateway has no route for {path}; see /mesh/route-info"),
            ),
            GatewayError::MethodNotAllowed { allow } => {
                problem("Method Not Allowed", "method-not-allowed")
                    .with_detail(format!("use {allow}"))
            }
            GatewayError::RateLimited { retry_after_secs } => {
                problem("Too Many Requests", "rate-limited")
                    .with_detail(format!(
                        "this client is over its rate limit; try again in {retry_after_secs} s"
                    ))
                    .with("retry_after_secs", *retry_after_secs)
            }
            GatewayError::UpstreamTimeout {
                service,
                timeout_ms,
            } => problem("Gateway Timeout", "upstream-timeout")
                .with_detail(format!("{service} did not answer within {timeout_ms} ms"))
                .with("service", *service),
            GatewayError::UpstreamUnavailable { service, detail } => {
                problem("Service Unavailable", "upstream-unavailable")
                    .with_detail(format!("{service} cannot be reached: {detail}"))
                    .with("service", *service)
            }
            GatewayError::BadGateway { service, detail } => problem("Bad Gateway", "bad-gateway")
                .with_detail(format!("{service}: {detail}"))
                .with("service", *service),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status_and_type() {
        let cases = [
            (
                GatewayError::NotFound {
                    path: "/api/x".into(),
                },
                404,
                "/problems/no-route",
            ),
            (
                GatewayError::MethodNotAllowed { allow: "GET" },
                405,
                "/problems/method-not-allowed",
            ),
            (
                GatewayError::RateLimited {
                    retry_after_secs: 2,
                },
                429,
                "/problems/rate-limited",
            ),
            (
                GatewayError::BadGateway {
                    service: "orders",
                    detail: "x".into(),
                },
                502,
                "/problems/bad-gateway",
            ),
            (
                GatewayError::UpstreamUnavailable {
                    service: "orders",
                    detail: "refused".into(),
                },
                503,
                "/problems/upstream-unavailable",
            ),
            (
                GatewayError::UpstreamTimeout {
                    service: "orders",
                    timeout_ms: 5,
                },
                504,
                "/problems/upstream-timeout",
            ),
        ];
        for (error, status, kind) in cases {
            let problem = error.problem();
            assert_eq!((error.status(), problem.status), (status, status));
            assert_eq!(problem.kind, kind);
            assert!(problem.detail.is_some());
        }
        let timeout = GatewayError::UpstreamTimeout {
            service: "inventory",
            timeout_ms: 300,
        }
        .problem();
        assert_eq!(timeout.extensions["service"], "inventory");
    }
}
