//! The host's policies, as settings with defaults: how long shutdown waits, how the triggers
//! back off and queue, how long Redis may take. [`HostSettings::default`] is what `orderly up`
//! runs with.

use std::time::Duration;

/// Every setting of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// How long shutdown waits for in-flight requests, messages and cron runs (30 s).
    pub drain_timeout: Duration,
    /// The HTTP trigger and outbound HTTP.
    pub http: HttpSettings,
    /// The Redis trigger and Redis servers.
    pub redis: RedisSettings,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            http: HttpSettings::default(),
            redis: RedisSettings::default(),
        }
    }
}

/// The HTTP trigger's and outbound HTTP's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long a client may take to send a request's headers (10 s).
    pub header_read_timeout: Duration,
    /// How long the listener waits after a failed accept, e.g. out of file descriptors (50 ms).
    pub accept_backoff: Duration,
    /// What a request refused because every instance slot is busy is told to wait
    /// (`Retry-After`, in whole seconds: 1 s).
    pub busy_retry_after: Duration,
    /// Idle outbound connections kept per `host:port` (64).
    pub outbound_max_idle_per_authority: usize,
    /// How long an outbound connection may stay idle before it is closed (30 s).
    pub outbound_idle_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            accept_backoff: Duration::from_millis(50),
            busy_retry_after: Duration::from_secs(1),
            outbound_max_idle_per_authority: 64,
            outbound_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Redis messages handled at once, unless configured.
pub const DEFAULT_REDIS_CONCURRENCY: usize = 64;

/// The Redis trigger's and the Redis servers' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Messages handled at once (`--redis-concurrency`; 64).
    pub concurrency: usize,
    /// Messages received but not yet handled, at most; beyond it the subscriptions wait
    /// (10,000).
    pub queue_capacity: usize,
    /// The wait between attempts to (re)subscribe: 50 ms doubling to 1 s.
    pub reconnect: Backoff,
    /// How long a message waits for a free instance slot before it is given up and logged
    /// (30 s).
    pub pool_wait: Duration,
    /// The wait between attempts to get an instance slot: 50 ms doubling to 1 s.
    pub pool_backoff: Backoff,
    /// How long connecting to a Redis server may take (2 s; also the start-up probe's limit).
    pub connect_timeout: Duration,
    /// How long one command may take (10 s).
    pub response_timeout: Duration,
    /// How often a subscription connection is checked with PING, and how long the answer may
    /// take (10 s).
    pub heartbeat: Duration,
    /// Messages one subscriber of the embedded broker may have waiting; publishers wait
    /// beyond it (1,024).
    pub embedded_subscriber_capacity: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        let backoff = Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_secs(1),
        };
        Self {
            concurrency: DEFAULT_REDIS_CONCURRENCY,
            queue_capacity: 10_000,
            reconnect: backoff,
            pool_wait: Duration::from_secs(30),
            pool_backoff: backoff,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(10),
            embedded_subscriber_capacity: 1024,
        }
    }
}

/// Waits that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after `wait`: twice as long, at most [`Backoff::max`].
    pub fn after(&self, wait: Duration) -> Duration {
        (wait * 2).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let backoff = RedisSettings::default().reconnect;
        let waits: Vec<u128> =
            std::iter::successors(Some(backoff.first), |w| Some(backoff.after(*w)))
                .take(7)
                .map(|w| w.as_millis())
                .collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
    }
}
