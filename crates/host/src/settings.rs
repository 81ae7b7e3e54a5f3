//! The host's policies, as settings with defaults: how long shutdown waits, how the triggers
//! back off and queue, how long Redis may take, what a request and an instance may use.
//! [`HostSettings::default`] is what `orderly up` runs with.

use std::time::Duration;

/// Every setting of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// How long shutdown waits for in-flight requests, messages and cron runs (30 s).
    pub drain_timeout: Duration,
    /// A log line that repeats (the same failure of the same component, requests refused
    /// while overloaded) is written at most once per this interval, with the count of those
    /// left out (1 s).
    pub repeated_log_interval: Duration,
    /// The HTTP trigger and outbound HTTP.
    pub http: HttpSettings,
    /// The Redis trigger and Redis servers.
    pub redis: RedisSettings,
    /// Component instances: the pool of slots and what one instance may use.
    pub instances: InstanceSettings,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            repeated_log_interval: Duration::from_secs(1),
            http: HttpSettings::default(),
            redis: RedisSettings::default(),
            instances: InstanceSettings::default(),
        }
    }
}

/// Component instances: the pooling allocator's slots, and the limits of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSettings {
    /// Instance slots in the pool: the most instances alive at once, every trigger together
    /// (1,000).
    pub slots: u32,
    /// How much of a slot's linear memory stays resident once its instance ends, reset with
    /// `memset` for the next one instead of being given back (1 MiB). Bigger is faster for
    /// guests that dirty more, but every slot ever used keeps up to this much.
    pub memory_keep_resident: usize,
    /// The same for a slot's tables (64 KiB).
    pub table_keep_resident: usize,
    /// How much of an instance's stack stays resident once it ends (64 KiB): stacks are
    /// zeroed between instances, this much with `memset`, the rest given back.
    pub stack_keep_resident: usize,
    /// Slots used before and free now that are kept warm beyond those in use (16); past
    /// that, free warm slots are reused before cold ones are touched, so the set of slots
    /// (and the memory they keep) follows the peak of instances in use.
    pub warm_slots: u32,
    /// The most linear memory one instance may have (256 MiB).
    pub max_memory: usize,
    /// How long one instance may run: a request, a message or a cron run (30 s; `--deadline`).
    pub deadline: Duration,
    /// What one instance may write to each of stdout and stderr (4 MiB); past it the instance
    /// is stopped.
    pub max_output: usize,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        Self {
            slots: 1000,
            memory_keep_resident: 1 << 20,
            table_keep_resident: 64 << 10,
            stack_keep_resident: 64 << 10,
            warm_slots: 16,
            max_memory: 256 << 20,
            deadline: Duration::from_secs(30),
            max_output: 4 << 20,
        }
    }
}

/// The HTTP trigger's and outbound HTTP's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long a client may take to send a request's headers (10 s).
    pub header_read_timeout: Duration,
    /// The largest request body accepted (10 MiB; `--max-body-size`): a longer declared
    /// `Content-Length` is refused before reading, a longer streamed body once it passes it.
    pub max_body_size: u64,
    /// The memory all request bodies read and not yet answered may take together (128 MiB;
    /// `--body-memory`): past it, bodies wait unread for their share (up to their time to
    /// arrive, then 503).
    pub body_memory: u64,
    /// A request body gets this long, plus [`HttpSettings::body_min_rate`] for its bytes, to
    /// arrive (10 s; `--body-timeout`).
    pub body_timeout: Duration,
    /// The slowest a request body may arrive after [`HttpSettings::body_timeout`], in bytes per
    /// second (16 KiB/s): a body of N bytes must be in within `body_timeout + N / body_min_rate`.
    pub body_min_rate: u64,
    /// Once shutdown begins, how long a body still arriving is waited for before the request
    /// is refused (1 s).
    pub shutdown_body_grace: Duration,
    /// Requests whose instances run at once (128; `--max-in-flight`). A request takes its slot
    /// only once its body has arrived.
    pub max_in_flight: usize,
    /// Requests waiting for one of those slots, at most (512); beyond it they are refused with
    /// 503 at once, before any instance is made.
    pub max_waiting: usize,
    /// How long a request waits for a slot before it is refused with 503 (2 s).
    pub slot_wait: Duration,
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
            max_body_size: 10 << 20,
            body_memory: 128 << 20,
            body_timeout: Duration::from_secs(10),
            body_min_rate: 16 << 10,
            shutdown_body_grace: Duration::from_secs(1),
            max_in_flight: 128,
            max_waiting: 512,
            slot_wait: Duration::from_secs(2),
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
