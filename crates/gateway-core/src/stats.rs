//! Traffic statistics, kept in the shared key-value store as per-minute counters so that every
//! instance and host adds to the same numbers: one request costs one increment (a write: the
//! store's writes are what the gateway costs most), and reading sums the counters of the last
//! minutes.
//!
//! One counter per kind of request and minute `m` (minutes since the epoch):
//! `gateway/stats/{m}/{route}/{status}/{bucket}/{limited}`, where `bucket` places its latency
//! in a histogram over [`LATENCY_BOUNDS_MS`] and `limited` is 1 for a request the rate limiter
//! refused, else 0. The store has no expiry: minutes older than the retention are deleted by
//! the first request of each kind in a minute ([`expired`]).

use serde::Serialize;
use std::collections::BTreeMap;

/// The prefix of every statistics key.
pub const PREFIX: &str = "gateway/stats/";

/// The upper bounds of the latency histogram's buckets, in ms (the last one is open).
pub const LATENCY_BOUNDS_MS: [u64; 14] = [
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    u64::MAX,
];

/// The minutes `/mesh/traffic-stats` sums, and the minutes kept.
pub const WINDOW_MINUTES: u64 = 15;

/// The minute (since the epoch) of a time in ms.
pub fn minute_of(now_ms: u64) -> u64 {
    now_ms / 60_000
}

/// One request, as the statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// When it arrived (ms since the epoch).
    pub at_ms: u64,
    /// The route's id (`unmatched` when none).
    pub route: &'a str,
    /// The status answered.
    pub status: u16,
    /// How long the gateway took, in ms.
    pub latency_ms: u64,
    /// Whether the rate limiter refused it.
    pub limited: bool,
}

impl Observation<'_> {
    /// The counter to increment by one for this request (its new value 1 means this is the
    /// first request of its kind this minute).
    pub fn counter_key(&self) -> String {
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| self.latency_ms <= *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len() - 1);
        format!(
            "{PREFIX}{}/{}/{}/{bucket}/{}",
            minute_of(self.at_ms),
            self.route,
            self.status,
            u8::from(self.limited)
        )
    }
}

/// A counter's key, read back: `(minute, route, status, bucket, limited)`. The route is
/// whatever lies between the minute and the last three parts, so a route id may hold `/`.
fn parse_key(key: &str) -> Option<(u64, &str, &str, usize, bool)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (minute, rest) = rest.split_once('/')?;
    let mut tail = rest.rsplitn(4, '/');
    let limited = match tail.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let bucket = tail.next()?.parse().ok()?;
    let status = tail.next()?;
    let route = tail.next()?;
    Some((minute.parse().ok()?, route, status, bucket, limited))
}

/// Whether statistics key `key` belongs to a minute older than the window at `now_ms` (or is
/// not a statistics key one can read a minute from).
pub fn expired(key: &str, now_ms: u64) -> bool {
    match parse_key(key) {
        Some((minute, ..)) => minute + WINDOW_MINUTES <= minute_of(now_ms),
        None => key.starts_with(PREFIX),
    }
}

/// What `/mesh/traffic-stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficStats {
    /// The minutes summed (the current one included).
    pub window_minutes: u64,
    /// Requests seen.
    pub total_requests: u64,
    /// Of which refused by the rate limiter.
    pub rate_limited: u64,
    /// Of which answered 5xx.
    pub server_errors: u64,
    /// Share of requests answered 2xx or 3xx (1 when there were none).
    pub success_rate: f64,
    /// Requests by route id, and by status within each.
    pub by_route: BTreeMap<String, RouteStats>,
    /// Requests by status.
    pub by_status: BTreeMap<String, u64>,
    /// Latency percentiles.
    pub latency_ms: Latency,
    /// Requests per minute, oldest first (minutes without requests left out).
    pub per_minute: Vec<MinuteCount>,
}

/// One route's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteStats {
    /// Requests.
    pub requests: u64,
    /// Requests by status.
    pub by_status: BTreeMap<String, u64>,
}

/// Latency percentiles from the histogram: each is the upper bound of the bucket holding it
/// (`None` without requests; the open last bucket reports its lower bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
}

/// One minute's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// The minute's start, in seconds since the epoch.
    pub minute_start: u64,
    /// Requests.
    pub requests: u64,
}

/// Sums the counters (`key`, value) read from the store into the view at `now_ms`; keys
/// outside the window or not understood are skipped.
pub fn aggregate(counters: &[(String, i64)], now_ms: u64) -> TrafficStats {
    let now = minute_of(now_ms);
    let mut stats = TrafficStats {
        window_minutes: WINDOW_MINUTES,
        total_requests: 0,
        rate_limited: 0,
        server_errors: 0,
        success_rate: 1.0,
        by_route: BTreeMap::new(),
        by_status: BTreeMap::new(),
        latency_ms: Latency::default(),
        per_minute: Vec::new(),
    };
    let mut histogram = [0u64; LATENCY_BOUNDS_MS.len()];
    let mut minutes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut successes = 0;
    for (key, value) in counters {
        let Ok(count) = u64::try_from(*value) else {
            continue;
        };
        let Some((minute, route, status, bucket, limited)) = parse_key(key) else {
            continue;
        };
        if minute + WINDOW_MINUTES <= now || minute > now {
            continue;
        }
        let Ok(code) = status.parse::<u16>() else {
            continue;
        };
        stats.total_requests += count;
        *minutes.entry(minute).or_default() += count;
        if limited {
            stats.rate_limited += count;
        }
        let entry = stats.by_route.entry(route.to_owned()).or_default();
        entry.requests += count;
        *entry.by_status.entry(status.to_owned()).or_default() += count;
        *stats.by_status.entry(status.to_owned()).or_default() += count;
        if code >= 500 {
            stats.server_errors += count;
        }
        if (200..400).contains(&code) {
            successes += count;
        }
        if let Some(slot) = histogram.get_mut(bucket) {
            *slot += count;
        }
    }
    let answered: u64 = stats.by_status.values().sum();
    if answered > 0 {
        stats.success_rate = successes as f64 / answered as f64;
    }
    stats.latency_ms = Latency {
        p50: percentile(&histogram, 0.50),
        p99: percentile(&histogram, 0.99),
    };
    stats.per_minute = minutes
        .into_iter()
        .map(|(minute, requests)| MinuteCount {
            minute_start: minute * 60,
            requests,
        })
        .collect();
    stats
}

/// The `q` quantile of a histogram over [`LATENCY_BOUNDS_MS`], as its bucket's bound.
fn percentile(histogram: &[u64; LATENCY_BOUNDS_MS.len()], q: f64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let bound = LATENCY_BOUNDS_MS[index];
            return Some(if bound == u64::MAX {
                LATENCY_BOUNDS_MS[index - 1]
            } else {
                bound
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000 * 60_000 + 30_000;

    fn observe(counters: &mut BTreeMap<String, i64>, observation: Observation<'_>) {
        *counters.entry(observation.counter_key()).or_default() += 1;
    }

    fn at(route: &str, status: u16, latency_ms: u64, minutes_ago: u64) -> Observation<'_> {
        Observation {
            at_ms: NOW - minutes_ago * 60_000,
            route,
            status,
            latency_ms,
            limited: status == 429,
        }
    }

    #[test]
    fn requests_add_up_by_route_status_and_minute() {
        let mut counters = BTreeMap::new();
        for _ in 0..97 {
            observe(&mut counters, at("orders", 202, 3, 0));
        }
        observe(&mut counters, at("orders", 503, 40, 1));
        observe(&mut counters, at("orders", 429, 1, 1));
        observe(&mut counters, at("payment", 200, 7_000, 2));
        // Outside the window: not counted.
        observe(&mut counters, at("payment", 200, 1, WINDOW_MINUTES));
        let counters: Vec<(String, i64)> = counters.into_iter().collect();
        let stats = aggregate(&counters, NOW);
        assert_eq!(stats.total_requests, 100);
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.server_errors, 1);
        assert!((stats.success_rate - 0.98).abs() < 1e-9);
        assert_eq!(stats.by_route["orders"].requests, 99);
        assert_eq!(stats.by_route["orders"].by_status["202"], 97);
        assert_eq!(stats.by_route["payment"].by_status["200"], 1);
        assert_eq!(stats.by_status["429"], 1);
        assert_eq!(
            stats.latency_ms,
            Latency {
                p50: Some(5),
                p99: Some(50)
            }
        );
        assert_eq!(
            stats.per_minute,
            vec![
                MinuteCount {
                    minute_start: 998 * 60,
                    requests: 1
                },
                MinuteCount {
                    minute_start: 999 * 60,
                    requests: 2
                },
                MinuteCount {
                    minute_start: 1_000 * 60,
                    requests: 97
                },
            ]
        );
    }

    #[test]
    fn no_requests_no_percentiles_and_slow_ones_land_in_the_open_bucket() {
        let empty = aggregate(&[], NOW);
        assert_eq!(
            (empty.total_requests, empty.latency_ms),
            (0, Latency::default())
        );
        assert_eq!(empty.success_rate, 1.0);
        let mut counters = BTreeMap::new();
        observe(&mut counters, at("orders", 200, 60_000, 0));
        let counters: Vec<(String, i64)> = counters.into_iter().collect();
        assert_eq!(aggregate(&counters, NOW).latency_ms.p99, Some(10_000));
    }

    #[test]
    fn a_counter_key_reads_back_whatever_its_route_holds() {
        let mut observation = at("api/orders", 429, 3, 0);
        let key = observation.counter_key();
        assert_eq!(key, format!("{PREFIX}1000/api/orders/429/2/1"));
        assert_eq!(parse_key(&key), Some((1_000, "api/orders", "429", 2, true)));
        observation.limited = false;
        assert_eq!(
            parse_key(&observation.counter_key()),
            Some((1_000, "api/orders", "429", 2, false))
        );
        for garbage in [
            "gateway/stats/1000/x/200/2/2",
            "gateway/stats/1000/200/2/0",
            "gateway/stats/m/x/200/2/0",
        ] {
            assert_eq!(parse_key(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn old_minutes_expire() {
        assert!(expired(
            &at("orders", 200, 1, WINDOW_MINUTES).counter_key(),
            NOW
        ));
        assert!(!expired(
            &at("orders", 200, 1, WINDOW_MINUTES - 1).counter_key(),
            NOW
        ));
        assert!(expired("gateway/stats/garbage", NOW));
        assert!(!expired("ratelimit/gateway/x/tat", NOW));
    }
}
