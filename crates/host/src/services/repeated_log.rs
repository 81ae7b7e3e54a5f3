//! Log lines that repeat, written at most once per interval: a component failing on every
//! request, or requests refused while overloaded, must not write a line each (59 MB of log in
//! 20 s under load). The first line of a kind is written at once; the next ones within the
//! interval are counted, and the next line written says how many were left out.

use crate::services::clock::HostClock;
use crate::services::lock::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Decides which repeated log lines are written.
pub(crate) struct RepeatedLog {
    interval: Duration,
    clock: Arc<dyn HostClock>,
    /// Kind of line → when one was last written, and how many were left out since.
    kinds: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RepeatedLog {
    /// Lines of one kind at most once per `interval`.
    pub(crate) fn new(interval: Duration, clock: Arc<dyn HostClock>) -> Self {
        Self {
            interval,
            clock,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of `kind` (a fixed set: a component and what happened to it) is written
    /// now: `Some(n)` with the number of lines of that kind left out since the last one, or
    /// `None` to leave this one out.
    pub(crate) fn admit(&self, kind: &str) -> Option<u64> {
        let now = self.clock.now();
        let mut kinds = lock(&self.kinds);
        match kinds.get_mut(kind) {
            Some((last, left_out)) if now - *last < self.interval => {
                *left_out += 1;
                None
            }
            Some((last, left_out)) => {
                *last = now;
                Some(std::mem::take(left_out))
            }
            None => {
                kinds.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::SystemClock;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_per_kind_with_the_count_left_out() {
        let log = RepeatedLog::new(Duration::from_secs(1), Arc::new(SystemClock));
        assert_eq!(log.admit("a"), Some(0));
        assert_eq!(log.admit("a"), None);
        assert_eq!(log.admit("a"), None);
        assert_eq!(log.admit("b"), Some(0), "kinds are apart");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(log.admit("a"), Some(2));
        assert_eq!(log.admit("a"), None);
    }
}
