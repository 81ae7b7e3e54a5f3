//! When to retry an outbound call: which failures are worth retrying, honouring `Retry-After`,
//! and exponential backoff with full jitter. (The deadline retries stop at belongs to the work
//! retried: callers compare the next attempt's time with it.)

use crate::random::Random;
use crate::settings::SettingError;
use std::time::UNIX_EPOCH;

/// The longest `Retry-After` taken seriously; longer values are capped to this.
const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1_000;

/// How retries are spaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff cap of the first retry; it doubles with every attempt.
    pub base_ms: u64,
    /// The largest backoff cap.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_ms: 250,
            max_delay_ms: 30_000,
        }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The body (bounded by the caller).
    pub body: Vec<u8>,
}

/// What went wrong with one outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The connection could not be made.
    Connect(String),
    /// The call took too long.
    Timeout(String),
    /// The dependency answered with an unsuccessful status.
    Status {
        /// The HTTP status code.
        code: u16,
        /// Its `Retry-After`, already parsed (see [`parse_retry_after`]).
        retry_after_ms: Option<u64>,
    },
    /// Another transport or protocol error.
    Other(String),
}

/// Whether a failure is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again, but not within `not_before_ms` from now if given.
    Retryable {
        /// The dependency's `Retry-After`, in milliseconds from now.
        not_before_ms: Option<u64>,
    },
    /// Trying again would fail the same way.
    Permanent,
}

/// Retry connect errors, timeouts, other transport errors, 5xx and 429 (honouring the
/// `Retry-After` of 429 and 503); every other status is permanent.
pub fn classify(failure: &CallFailure) -> FailureClass {
    match failure {
        CallFailure::Connect(_) | CallFailure::Timeout(_) | CallFailure::Other(_) => {
            FailureClass::Retryable {
                not_before_ms: None,
            }
        }
        CallFailure::Status {
            code: 429 | 503,
            retry_after_ms,
        } => FailureClass::Retryable {
            not_before_ms: *retry_after_ms,
        },
        CallFailure::Status {
            code: 500..=599, ..
        } => FailureClass::Retryable {
            not_before_ms: None,
        },
        CallFailure::Status { .. } => FailureClass::Permanent,
    }
}

/// A `Retry-After` value (delta-seconds or an HTTP-date) as milliseconds from `now_ms`: 0 for a
/// date in the past, at most 24 hours; `None` if it is neither form.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1_000).min(MAX_RETRY_AFTER_MS));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let date_ms = date.duration_since(UNIX_EPOCH).ok()?.as_millis();
    let date_ms = u64::try_from(date_ms).unwrap_or(u64::MAX);
    Some(date_ms.saturating_sub(now_ms).min(MAX_RETRY_AFTER_MS))
}

impl RetryPolicy {
    /// Checks every field; an error names the setting variable that sets the field.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.base_ms == 0 {
            return Err(SettingError::invalid(
                "retry_base_ms",
                self.base_ms,
                "must be at least 1",
            ));
        }
        if self.max_delay_ms < self.base_ms {
            return Err(SettingError::invalid(
                "retry_max_delay_ms",
                self.max_delay_ms,
                format!("must be at least retry_base_ms ({})", self.base_ms),
            ));
        }
        Ok(())
    }

    /// The backoff before retry number `attempt` (from 1; 0 counts as 1): full jitter, uniform
    /// in `[0, min(max_delay_ms, base_ms * 2^(attempt - 1))]`. Never overflows.
    pub fn backoff_ms(&self, attempt: u32, rng: &mut impl Random) -> u64 {
        let doublings = attempt.saturating_sub(1);
        let factor = 1_u64.checked_shl(doublings).unwrap_or(u64::MAX);
        let cap = self.base_ms.saturating_mul(factor).min(self.max_delay_ms);
        rng.below(cap.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;
    use proptest::prelude::*;

    fn status(code: u16, retry_after_ms: Option<u64>) -> CallFailure {
        CallFailure::Status {
            code,
            retry_after_ms,
        }
    }

    #[test]
    fn transport_failures_are_retryable() {
        for failure in [
            CallFailure::Connect("refused".into()),
            CallFailure::Timeout("5 s".into()),
            CallFailure::Other("reset".into()),
        ] {
            assert_eq!(
                classify(&failure),
                FailureClass::Retryable {
                    not_before_ms: None
                }
            );
        }
    }

    #[test]
    fn server_errors_and_429_are_retryable() {
        assert_eq!(
            classify(&status(503, Some(2_000))),
            FailureClass::Retryable {
                not_before_ms: Some(2_000)
            }
        );
        assert_eq!(
            classify(&status(429, Some(1_000))),
            FailureClass::Retryable {
                not_before_ms: Some(1_000)
            }
        );
        assert_eq!(
            classify(&status(500, Some(9_000))),
            FailureClass::Retryable {
                not_before_ms: None
            }
        );
        assert_eq!(
            classify(&status(599, None)),
            FailureClass::Retryable {
                not_before_ms: None
            }
        );
    }

    #[test]
    fn other_statuses_are_permanent() {
        for code in [400, 401, 404, 409, 422, 499, 200, 302, 600] {
            assert_eq!(
                classify(&status(code, None)),
                FailureClass::Permanent,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(0));
        assert_eq!(
            parse_retry_after("999999999999999999999999", 0),
            Some(MAX_RETRY_AFTER_MS)
        );
        assert_eq!(parse_retry_after("-5", 0), None);
        assert_eq!(parse_retry_after("1.5", 0), None);
        assert_eq!(parse_retry_after("", 0), None);
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn retry_after_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let at_ms = 784_111_777_000;
        assert_eq!(parse_retry_after(date, at_ms - 3_000), Some(3_000));
        assert_eq!(parse_retry_after(date, at_ms + 3_000), Some(0));
        assert_eq!(parse_retry_after(date, 0), Some(MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn backoff_caps_double_then_stop() {
        // A generator that always returns the largest number shows the cap itself.
        struct Largest;
        impl Random for Largest {
            fn next_u64(&mut self) -> u64 {
                u64::MAX
            }
        }
        let policy = RetryPolicy::default();
        let caps: Vec<u64> = [1, 2, 3, 8, 9, 200, u32::MAX]
            .iter()
            .map(|attempt| policy.backoff_ms(*attempt, &mut Largest))
            .collect();
        assert_eq!(caps, vec![250, 500, 1_000, 30_000, 30_000, 30_000, 30_000]);
        assert_eq!(policy.backoff_ms(0, &mut Largest), 250);
    }

    #[test]
    fn validate_checks_each_field() {
        RetryPolicy::default().validate().unwrap();
        let bad = [
            (
                RetryPolicy {
                    base_ms: 0,
                    ..Default::default()
                },
                "retry_base_ms",
            ),
            (
                RetryPolicy {
                    max_delay_ms: 10,
                    ..Default::default()
                },
                "retry_max_delay_ms",
            ),
        ];
        for (policy, name) in bad {
            let SettingError::Invalid { name: reported, .. } = policy.validate().unwrap_err();
            assert_eq!(reported, name);
        }
    }

    proptest! {
        #[test]
        fn backoff_stays_under_the_cap_and_is_deterministic(
            base_ms in 1u64..=u64::MAX / 4,
            extra in 0u64..=u64::MAX / 4,
            attempt in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let policy = RetryPolicy { base_ms, max_delay_ms: base_ms + extra };
            let first = policy.backoff_ms(attempt, &mut SplitMix64::new(seed));
            let again = policy.backoff_ms(attempt, &mut SplitMix64::new(seed));
            prop_assert_eq!(first, again);
            prop_assert!(first <= policy.max_delay_ms);
            let doublings = attempt.saturating_sub(1).min(63);
            let exponential = u128::from(base_ms) << doublings;
            prop_assert!(u128::from(first) <= exponential);
        }
    }
}
