//! Orderly's control endpoints, as the lab drives and reads them: the simulated validator's
//! fault mode and call count, the pipeline's counters, the circuit breaker, clearing orders.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The longest one control call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The fault modes of the simulated validator (and of every service's fault controls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// Answers at once.
    Normal,
    /// Answers after a delay.
    Slow,
    /// Unreachable.
    Down,
    /// Answers with errors.
    Error,
}

impl FaultMode {
    /// The name the simulator knows it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Slow => "slow",
            Self::Down => "down",
            Self::Error => "error",
        }
    }
}

/// `GET /admin/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AdminStats {
    /// Orders by status.
    pub orders: OrderCounts,
    /// Validation jobs due now.
    pub jobs_due: u64,
    /// Validation jobs waiting for a later attempt.
    pub jobs_deferred: u64,
    /// Validation jobs a worker holds.
    pub jobs_leased: u64,
    /// How long the oldest due job has waited (absent or null when none is due).
    #[serde(default)]
    pub oldest_due_age_ms: Option<u64>,
    /// Jobs given up on.
    pub dead_letters: u64,
}

/// Orders by how their validation ended, from `GET /admin/stats`'s orders by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "BTreeMap<String, u64>")]
pub struct OrderCounts {
    /// Accepted, not yet decided.
    pub processing: u64,
    /// Found valid: `validated`, or any status fulfilment moved it on to (`reserved` to
    /// `confirmed`, `cancelling`, `cancelled`; a customer's cancellation before validation
    /// counts here too, and the lab's loads never cancel).
    pub validated: u64,
    /// Found invalid.
    pub rejected: u64,
    /// Given up on.
    pub failed: u64,
}

impl From<BTreeMap<String, u64>> for OrderCounts {
    fn from(by_status: BTreeMap<String, u64>) -> Self {
        let count = |status: &str| by_status.get(status).copied().unwrap_or(0);
        let (processing, rejected, failed) =
            (count("processing"), count("rejected"), count("failed"));
        Self {
            processing,
            validated: by_status.values().sum::<u64>() - processing - rejected - failed,
            rejected,
            failed,
        }
    }
}

impl OrderCounts {
    /// Orders the pipeline is done with: validated, rejected or failed.
    pub fn settled(&self) -> u64 {
        self.validated + self.rejected + self.failed
    }
}

/// The circuit breaker's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are held back.
    Open,
    /// A few probe calls go through.
    HalfOpen,
    /// Held open by an operator.
    ForcedOpen,
    /// Switched off by an operator.
    Disabled,
}

/// `GET /admin/breaker`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Breaker {
    /// Its state.
    pub state: BreakerState,
    /// When it entered that state.
    #[serde(deserialize_with = "rfc3339")]
    pub since: SystemTime,
    /// How often it has opened since it last closed (each trip in a row doubles the open
    /// time); 0 once closed.
    pub trips: u64,
}

/// Parses an RFC 3339 UTC timestamp such as `2026-11-30T10:00:00.123Z`.
pub fn parse_timestamp(text: &str) -> Result<SystemTime, humantime::TimestampError> {
    humantime::parse_rfc3339(text)
}

fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_timestamp(&text).map_err(|error| serde::de::Error::custom(format!("{text:?}: {error}")))
}

/// The control endpoints of one Orderly.
#[derive(Debug, Clone, Copy)]
pub struct Control {
    address: SocketAddr,
}

impl Control {
    /// Orderly on `address`.
    pub fn new(address: SocketAddr) -> Self {
        Self { address }
    }

    /// Sets the simulated validator's fault mode (and its delay, for `slow`).
    pub async fn configure(&self, mode: FaultMode, delay: Option<Duration>) -> anyhow::Result<()> {
        let mut settings = serde_json::json!({ "mode": mode.as_str() });
        if let Some(delay) = delay {
            settings["delay_ms"] = u64::try_from(delay.as_millis())?.into();
        }
        self.call(
            Method::POST,
            "/external/configure",
            Some(settings.to_string()),
        )
        .await?;
        Ok(())
    }

    /// Validation calls that reached the simulator, all time.
    pub async fn validator_calls(&self) -> anyhow::Result<u64> {
        let body = self.call(Method::GET, "/external/stats", None).await?;
        parse_validator_calls(&body)
    }

    /// The pipeline's counters.
    pub async fn stats(&self) -> anyhow::Result<AdminStats> {
        let body = self.call(Method::GET, "/admin/stats", None).await?;
        parse(&body)
    }

    /// The circuit breaker.
    pub async fn breaker(&self) -> anyhow::Result<Breaker> {
        let body = self.call(Method::GET, "/admin/breaker", None).await?;
        parse(&body)
    }

    /// Deletes every order.
    pub async fn clear_orders(&self) -> anyhow::Result<()> {
        self.call(Method::DELETE, "/admin/orders", None).await?;
        Ok(())
    }

    /// One request on a fresh connection; the body of a 2xx answer, an error otherwise.
    async fn call(
        &self,
        method: Method,
        path: &'static str,
        json: Option<String>,
    ) -> anyhow::Result<Bytes> {
        let exchange = async {
            let mut sender = crate::load::connect(self.address).await?;
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.address.to_string());
            if json.is_some() {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            let request = request.body(Full::new(Bytes::from(json.unwrap_or_default())))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                bail!("{status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(body)
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .with_context(|| format!("no answer within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {path} on {}", self.address))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body)
        .with_context(|| format!("unexpected answer: {}", String::from_utf8_lossy(body)))
}

fn parse_validator_calls(body: &[u8]) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    struct ValidatorStats {
        calls: u64,
    }
    Ok(parse::<ValidatorStats>(body)?.calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps_parse_to_the_millisecond() {
        let since = parse_timestamp("2026-11-30T10:00:00.123Z").unwrap();
        assert_eq!(
            since.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_796_032_800_123)
        );
        let later = parse_timestamp("2026-11-30T10:00:01.5Z").unwrap();
        assert_eq!(
            later.duration_since(since).unwrap(),
            Duration::from_millis(1_377)
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z").unwrap(), UNIX_EPOCH);
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for text in [
            "",
            "2026-11-30",
            "2026-11-30 10:00:00",
            "2026-11-30T10:00:00.123+02:00",
            "2026-13-30T10:00:00Z",
            "yesterday",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text}");
        }
    }

    #[test]
    fn stats_parse() {
        let stats: AdminStats = parse(
            br#"{"orders": {"processing": 12, "validated": 30, "rejected": 4, "failed": 1},
                "jobs_due": 10, "jobs_deferred": 2, "jobs_leased": 3,
                "oldest_due_age_ms": 850, "dead_letters": 1, "added_later": true}"#,
        )
        .unwrap();
        assert_eq!(
            stats,
            AdminStats {
                orders: OrderCounts {
                    processing: 12,
                    validated: 30,
                    rejected: 4,
                    failed: 1
                },
                jobs_due: 10,
                jobs_deferred: 2,
                jobs_leased: 3,
                oldest_due_age_ms: Some(850),
                dead_letters: 1,
            }
        );
        assert_eq!(stats.orders.settled(), 35);

        let idle: AdminStats = parse(
            br#"{"orders": {"processing": 0, "validated": 0, "rejected": 0, "failed": 0},
                "jobs_due": 0, "jobs_deferred": 0, "jobs_leased": 0,
                "oldest_due_age_ms": null, "dead_letters": 0}"#,
        )
        .unwrap();
        assert_eq!(idle.oldest_due_age_ms, None);

        let moved_on: AdminStats = parse(
            br#"{"orders": {"processing": 2, "validated": 1, "reserved": 3, "paid": 4,
                "shipped": 5, "confirmed": 60, "cancelling": 1, "cancelled": 7, "rejected": 8,
                "failed": 9}, "jobs_due": 0, "jobs_deferred": 0, "jobs_leased": 0,
                "dead_letters": 0}"#,
        )
        .unwrap();
        assert_eq!(
            moved_on.orders,
            OrderCounts {
                processing: 2,
                validated: 81,
                rejected: 8,
                failed: 9
            },
            "fulfilment's statuses come after validation"
        );
        assert_eq!(moved_on.orders.settled(), 98);

        let error = parse::<AdminStats>(br#"{"orders": {}}"#).unwrap_err();
        assert!(
            format!("{error:#}").contains(r#"{"orders": {}}"#),
            "{error:#}"
        );
    }

    #[test]
    fn breaker_parses_with_its_since() {
        let breaker: Breaker = parse(
            br#"{"state": "half_open", "since": "2026-11-30T10:00:00.123Z", "trips": 3,
                "failure_rate": 0.7}"#,
        )
        .unwrap();
        assert_eq!(breaker.state, BreakerState::HalfOpen);
        assert_eq!(breaker.trips, 3);
        assert_eq!(
            breaker.since,
            parse_timestamp("2026-11-30T10:00:00.123Z").unwrap()
        );
        for (name, state) in [
            ("closed", BreakerState::Closed),
            ("open", BreakerState::Open),
            ("forced_open", BreakerState::ForcedOpen),
            ("disabled", BreakerState::Disabled),
        ] {
            let body =
                format!(r#"{{"state": "{name}", "since": "2026-11-30T10:00:00Z", "trips": 0}}"#);
            assert_eq!(parse::<Breaker>(body.as_bytes()).unwrap().state, state);
        }
        let error =
            parse::<Breaker>(br#"{"state": "open", "since": "soon", "trips": 0}"#).unwrap_err();
        assert!(format!("{error:#}").contains("soon"), "{error:#}");
    }

    #[test]
    fn validator_calls_parse() {
        assert_eq!(
            parse_validator_calls(br#"{"calls": 10042, "mode": "down"}"#).unwrap(),
            10_042
        );
        assert!(parse_validator_calls(b"calls: 3").is_err());
    }
}
