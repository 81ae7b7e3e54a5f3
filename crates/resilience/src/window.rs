//! Time-bucketed call counters in the store. Every bucket has its own counter keys, so the hot
//! path only ever increments (no instance fights another over one value), and a sliding window is
//! the sum of a few buckets.

use crate::kv::KvStore;

/// The counters kept per bucket, in key order.
const COUNTER_NAMES: [&str; 4] = ["calls", "failures", "slow", "retries"];

/// What a batch of calls did, for [`CallWindow::record`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTally {
    /// Calls made.
    pub calls: u32,
    /// Calls that failed.
    pub failures: u32,
    /// Calls that were slow (whether or not they failed).
    pub slow: u32,
}

/// Sums over a window's buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls that were slow.
    pub slow: u64,
    /// Retries granted by the retry budget.
    pub retries: u64,
}

/// A sliding window of call counters: `buckets` buckets of `window_ms / buckets` milliseconds,
/// counter keys `{prefix}/w/{bucket}/{calls|failures|slow|retries}` where `bucket` is
/// `now_ms / bucket_ms`.
pub struct CallWindow<'a, S: KvStore> {
    store: &'a S,
    prefix: String,
    window_ms: u64,
    bucket_ms: u64,
}

impl<'a, S: KvStore> CallWindow<'a, S> {
    /// A window over `store` with keys under `{prefix}/w/`. A zero `window_ms` or `buckets` is
    /// treated as 1 (policies validate them before they get here).
    pub fn new(store: &'a S, prefix: &str, window_ms: u64, buckets: u32) -> Self {
        let window_ms = window_ms.max(1);
        Self {
            store,
            prefix: prefix.to_owned(),
            window_ms,
            bucket_ms: (window_ms / u64::from(buckets.max(1))).max(1),
        }
    }

    /// The store the counters live in.
    pub(crate) fn store(&self) -> &'a S {
        self.store
    }

    /// The window's length in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Adds a batch of calls to the bucket of `now_ms`: one increment per non-zero field.
    pub fn record(&self, now_ms: u64, tally: &CallTally) -> Result<(), S::Error> {
        let bucket = self.bucket_of(now_ms);
        for (name, count) in [
            ("calls", tally.calls),
            ("failures", tally.failures),
            ("slow", tally.slow),
        ] {
            if count > 0 {
                self.store
                    .increment(&self.key(bucket, name), i64::from(count))?;
            }
        }
        Ok(())
    }

    /// Adds `delta` (negative to give retries back) to the retries of the bucket of `now_ms`;
    /// returns that bucket's new value.
    pub fn add_retries(&self, now_ms: u64, delta: i64) -> Result<i64, S::Error> {
        self.store
            .increment(&self.key(self.bucket_of(now_ms), "retries"), delta)
    }

    /// Sums over the buckets that overlap the last `window_ms`, that is `(now_ms - window_ms,
    /// now_ms]`: the oldest bucket may be only partly inside, so this can count up to one bucket
    /// more than the window. One `counters` call.
    pub fn totals(&self, now_ms: u64) -> Result<WindowTotals, S::Error> {
        self.totals_over(now_ms, self.window_ms)
    }

    /// Like [`CallWindow::totals`] over the last `span_ms` instead of the whole window. The span
    /// is capped at two windows, the history [`CallWindow::prune`] keeps; 0 gives zeros without
    /// reading.
    pub fn totals_over(&self, now_ms: u64, span_ms: u64) -> Result<WindowTotals, S::Error> {
        let span_ms = span_ms.min(self.window_ms.saturating_mul(2));
        if span_ms == 0 {
            return Ok(WindowTotals::default());
        }
        let first = self.bucket_of(now_ms.saturating_add(1).saturating_sub(span_ms));
        self.sum_buckets(first, self.bucket_of(now_ms))
    }

    /// Like [`CallWindow::totals`], but only over the buckets that start at or after
    /// `since_ms`: none of the calls counted were recorded before `since_ms` (a bucket that
    /// began earlier is left out whole, so recent calls may be left out too). Zeros without
    /// reading when no such bucket overlaps the window.
    pub(crate) fn totals_since(
        &self,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<WindowTotals, S::Error> {
        let first_in_window =
            self.bucket_of(now_ms.saturating_add(1).saturating_sub(self.window_ms));
        let first_since = since_ms.div_ceil(self.bucket_ms);
        self.sum_buckets(first_in_window.max(first_since), self.bucket_of(now_ms))
    }

    /// Sums buckets `first..=last` (zeros without reading when the range is empty). One
    /// `counters` call.
    fn sum_buckets(&self, first: u64, last: u64) -> Result<WindowTotals, S::Error> {
        if first > last {
            return Ok(WindowTotals::default());
        }
        let keys: Vec<String> = (first..=last)
            .flat_map(|bucket| COUNTER_NAMES.map(|name| self.key(bucket, name)))
            .collect();
        let values = self.store.counters(&keys)?;
        let mut totals = WindowTotals::default();
        for per_bucket in values.chunks(COUNTER_NAMES.len()) {
            let [calls, failures, slow, retries] = per_bucket else {
                continue;
            };
            let non_negative = |value: &i64| u64::try_from(*value).unwrap_or(0);
            totals.calls += non_negative(calls);
            totals.failures += non_negative(failures);
            totals.slow += non_negative(slow);
            totals.retries += non_negative(retries);
        }
        Ok(totals)
    }

    /// Deletes this window's bucket keys that ended two windows or more before `now_ms`; returns
    /// how many keys it deleted. Keys under the prefix that are not bucket counters are
    /// left alone.
    pub fn prune(&self, now_ms: u64) -> Result<usize, S::Error> {
        let cutoff_bucket =
            now_ms.saturating_sub(self.window_ms.saturating_mul(2)) / self.bucket_ms;
        let bucket_prefix = format!("{}/w/", self.prefix);
        let old: Vec<String> = self
            .store
            .keys_with_prefix(&bucket_prefix)?
            .into_iter()
            .filter(|key| {
                parse_bucket(&key[bucket_prefix.len()..])
                    .is_some_and(|bucket| bucket < cutoff_bucket)
            })
            .collect();
        if !old.is_empty() {
            self.store.delete_many(&old)?;
        }
        Ok(old.len())
    }

    fn bucket_of(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms
    }

    fn key(&self, bucket: u64, counter: &str) -> String {
        format!("{}/w/{bucket}/{counter}", self.prefix)
    }
}

/// The bucket number of a key's `{bucket}/{counter}` tail, if it is one of ours.
fn parse_bucket(tail: &str) -> Option<u64> {
    let (bucket, counter) = tail.split_once('/')?;
    if !COUNTER_NAMES.contains(&counter) {
        return None;
    }
    bucket.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryStore;
    use proptest::prelude::*;

    fn tally(calls: u32, failures: u32, slow: u32) -> CallTally {
        CallTally {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn records_into_the_bucket_of_now() {
        let store = MemoryStore::new();
        let window = CallWindow::new(&store, "dep", 10_000, 10);
        window.record(12_345, &tally(3, 1, 0)).unwrap();
        assert_eq!(store.counter("dep/w/12/calls").unwrap(), 3);
        assert_eq!(store.counter("dep/w/12/failures").unwrap(), 1);
        // Zero fields are not written at all.
        assert_eq!(store.get("dep/w/12/slow").unwrap(), None);
        assert_eq!(window.add_retries(12_999, 2).unwrap(), 2);
        assert_eq!(window.add_retries(12_000, -1).unwrap(), 1);
    }

    #[test]
    fn totals_cover_the_buckets_overlapping_the_window() {
        let store = MemoryStore::new();
        let window = CallWindow::new(&store, "dep", 10_000, 10);
        window.record(1_500, &tally(1, 1, 0)).unwrap(); // bucket 1
        window.record(5_000, &tally(2, 0, 1)).unwrap(); // bucket 5
        window.add_retries(11_000, 4).unwrap(); // bucket 11
        let at_11_400 = window.totals(11_400).unwrap();
        assert_eq!(
            at_11_400,
            WindowTotals {
                calls: 3,
                failures: 1,
                slow: 1,
                retries: 4
            }
        );
        // At 12_000 the window is (2_000, 12_000]: bucket 1 has left it.
        let at_12_000 = window.totals(12_000).unwrap();
        assert_eq!(at_12_000.calls, 2);
        assert_eq!(at_12_000.failures, 0);
        assert_eq!(
            window.totals_over(11_400, 0).unwrap(),
            WindowTotals::default()
        );
        assert_eq!(window.totals_over(11_400, 1_000).unwrap().retries, 4);
    }

    #[test]
    fn totals_since_leave_out_buckets_that_began_earlier() {
        let store = MemoryStore::new();
        let window = CallWindow::new(&store, "dep", 10_000, 10);
        window.record(5_100, &tally(4, 4, 0)).unwrap(); // bucket 5, before the close
        window.record(5_900, &tally(1, 0, 0)).unwrap(); // bucket 5, after it
        window.record(6_000, &tally(2, 1, 0)).unwrap(); // bucket 6
        // A close at 5_500: bucket 5 began before it and is left out whole.
        assert_eq!(window.totals_since(6_500, 5_500).unwrap().calls, 2);
        assert_eq!(
            window.totals_since(5_950, 5_500).unwrap(),
            WindowTotals::default()
        );
        // A close on a bucket's start keeps that bucket.
        assert_eq!(window.totals_since(6_500, 5_000).unwrap().calls, 7);
        // A close long ago: the whole window, as `totals`.
        assert_eq!(
            window.totals_since(14_000, 0).unwrap(),
            window.totals(14_000).unwrap()
        );
        assert_eq!(window.totals_since(15_500, 5_500).unwrap().calls, 2);
    }

    #[test]
    fn negative_buckets_count_as_zero() {
        let store = MemoryStore::new();
        let window = CallWindow::new(&store, "dep", 1_000, 1);
        window.add_retries(0, -3).unwrap();
        assert_eq!(window.totals(0).unwrap().retries, 0);
    }

    #[test]
    fn prune_deletes_only_old_bucket_keys() {
        let store = MemoryStore::new();
        let window = CallWindow::new(&store, "dep", 10_000, 10);
        window.record(0, &tally(1, 1, 1)).unwrap();
        window.add_retries(0, 1).unwrap();
        window.record(15_000, &tally(1, 0, 0)).unwrap();
        store.set("dep/w/notes", b"keep").unwrap();
        store.increment("dep/w/7/other", 1).unwrap();
        // Two windows after bucket 0 ended it is still kept ...
        assert_eq!(window.prune(20_999).unwrap(), 0);
        // ... and goes once it ended two windows ago.
        assert_eq!(window.prune(21_000).unwrap(), 4);
        assert_eq!(store.counter("dep/w/15/calls").unwrap(), 1);
        assert!(store.get("dep/w/notes").unwrap().is_some());
        assert_eq!(store.counter("dep/w/7/other").unwrap(), 1);
    }

    #[test]
    fn another_prefix_is_not_pruned() {
        let store = MemoryStore::new();
        let inner = CallWindow::new(&store, "dep/w", 1_000, 1);
        inner.record(0, &tally(1, 0, 0)).unwrap();
        let outer = CallWindow::new(&store, "dep", 1_000, 1);
        assert_eq!(outer.prune(100_000).unwrap(), 0);
        assert_eq!(inner.prune(100_000).unwrap(), 1);
    }

    proptest! {
        /// The window's totals equal a straightforward model: every call recorded at a time
        /// whose bucket overlaps the window counts.
        #[test]
        fn totals_match_a_model(
            events in proptest::collection::vec((0u64..40_000, 0u32..5, 0u32..3), 0..40),
            now in 0u64..50_000,
        ) {
            let store = MemoryStore::new();
            let window = CallWindow::new(&store, "p", 10_000, 10);
            for (at, calls, failures) in &events {
                window.record(*at, &tally(*calls, *failures, 0)).unwrap();
            }
            let first_bucket = (now + 1).saturating_sub(10_000) / 1_000;
            let inside = |at: &u64| (first_bucket..=now / 1_000).contains(&(at / 1_000));
            let calls: u64 = events.iter().filter(|e| inside(&e.0)).map(|e| u64::from(e.1)).sum();
            let failures: u64 = events.iter().filter(|e| inside(&e.0)).map(|e| u64::from(e.2)).sum();
            let totals = window.totals(now).unwrap();
            prop_assert_eq!(totals.calls, calls);
            prop_assert_eq!(totals.failures, failures);
        }
    }
}
