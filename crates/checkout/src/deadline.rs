//! When a synchronous request must be answered: the app's `sync_deadline_ms`, or sooner if
//! the client asks with `Prefer: wait=N` (RFC 7240, seconds).

/// `sync_deadline_ms` when the variable is not set.
pub const DEFAULT_SYNC_DEADLINE_MS: u64 = 5_000;

/// The deadline (wall-clock milliseconds) of a request that arrived at `now_ms`: at most
/// `limit_ms` later, sooner when its `Prefer` header (`prefer`) holds a `wait=N` preference
/// for fewer seconds. Other preferences and malformed values are ignored.
pub fn deadline_ms(now_ms: u64, limit_ms: u64, prefer: Option<&str>) -> u64 {
    let asked_ms = prefer
        .into_iter()
        .flat_map(|header| header.split(','))
        .filter_map(|preference| {
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let seconds: u64 = value.trim().trim_matches('"').parse().ok()?;
            Some(seconds.saturating_mul(1_000))
        })
        .min();
    now_ms.saturating_add(asked_ms.map_or(limit_ms, |asked| asked.min(limit_ms)))
}

#[cfg(test)]
mod tests {
    use super::deadline_ms;

    #[test]
    fn the_limit_applies_unless_the_client_asks_for_less() {
        assert_eq!(deadline_ms(1_000, 5_000, None), 6_000);
        assert_eq!(deadline_ms(1_000, 5_000, Some("wait=2")), 3_000);
        assert_eq!(
            deadline_ms(1_000, 5_000, Some("respond-async, wait=3")),
            4_000
        );
        assert_eq!(deadline_ms(1_000, 5_000, Some("Wait = \"1\"; x")), 2_000);
        // More than the limit, nonsense, or other preferences: the limit.
        assert_eq!(deadline_ms(1_000, 5_000, Some("wait=60")), 6_000);
        assert_eq!(deadline_ms(1_000, 5_000, Some("wait=soon")), 6_000);
        assert_eq!(deadline_ms(1_000, 5_000, Some("return=minimal")), 6_000);
    }
}
