//! Who may call a route: the decisions behind `guest_kit::access`, from the values of a few
//! request headers and a variable, so they are unit-tested natively.
//!
//! Two guards share one rule, a secret when one is set and the same machine otherwise:
//!
//! - **admin** routes (operator controls) need `Authorization: Bearer <admin_token>` when the
//!   `admin_token` variable is set; without it they answer clients on this machine only (and
//!   service-chained calls, which Spin reports from `0.0.0.0:0`).
//! - **internal** routes (a service's public `/internal/<svc>/...` route, for callers that
//!   cannot use service chaining) need `x-orderly-internal-token: <internal_token>` when the
//!   `internal_token` variable is set, and answer clients on this machine only otherwise. A
//!   service-chained call (from the private route) needs neither: only the app's own
//!   components can make one.

use std::net::IpAddr;

/// The header internal callers present their token in.
pub const INTERNAL_TOKEN_HEADER: &str = "x-orderly-internal-token";

/// Why a caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A token is configured and the request does not carry it (or carries another): 401.
    Token,
    /// No token is configured and the client is not on this machine: 403.
    NotLocal,
}

/// Whether `spin-client-addr` (`ip:port`, `[v6]:port`) names this machine (a loopback
/// address) or a service-chained call (the unspecified address Spin reports for one).
pub fn client_is_local(client_addr: Option<&str>) -> bool {
    client_ip(client_addr).is_some_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Whether `spin-client-addr` is the one Spin reports for a service-chained call
/// (`0.0.0.0:0`): no TCP peer can have the unspecified address.
pub fn is_chained(client_addr: Option<&str>) -> bool {
    client_ip(client_addr).is_some_and(|ip| ip.is_unspecified())
}

/// The IP address in a `spin-client-addr` value (`ip:port`, `[v6]:port`, or a bare address).
pub fn client_ip(client_addr: Option<&str>) -> Option<IpAddr> {
    let client = client_addr?.trim();
    let host = client.rsplit_once(':').map_or(client, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Compares a presented secret with the expected one in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The admin guard: `token` is the `admin_token` variable (`None` when unset or empty),
/// `authorization` the request's `Authorization` header, `client_addr` its `spin-client-addr`.
pub fn check_admin(
    token: Option<&str>,
    authorization: Option<&str>,
    client_addr: Option<&str>,
) -> Result<(), Denied> {
    match token {
        Some(token) => {
            let given = authorization.and_then(|value| value.strip_prefix("Bearer "));
            if given.is_some_and(|given| tokens_match(given, token)) {
                Ok(())
            } else {
                Err(Denied::Token)
            }
        }
        None if client_is_local(client_addr) => Ok(()),
        None => Err(Denied::NotLocal),
    }
}

/// The internal guard: `token` is the `internal_token` variable (`None` when unset or
/// empty), `given` the request's [`INTERNAL_TOKEN_HEADER`], `client_addr` its
/// `spin-client-addr`. Service-chained calls pass.
pub fn check_internal(
    token: Option<&str>,
    given: Option<&str>,
    client_addr: Option<&str>,
) -> Result<(), Denied> {
    if is_chained(client_addr) {
        return Ok(());
    }
    match token {
        Some(token) if given.is_some_and(|given| tokens_match(given, token)) => Ok(()),
        Some(_) => Err(Denied::Token),
        None if client_is_local(client_addr) => Ok(()),
        None => Err(Denied::NotLocal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_clients_are_loopback_or_chained() {
        for local in ["127.0.0.1:5000", "[::1]:80", "0.0.0.0:0", "127.8.9.1:1"] {
            assert!(client_is_local(Some(local)), "{local}");
        }
        for remote in ["10.0.0.7:5000", "[2001:db8::1]:443", "", "localhost:80"] {
            assert!(!client_is_local(Some(remote)), "{remote}");
        }
        assert!(!client_is_local(None));
        assert!(is_chained(Some("0.0.0.0:0")));
        assert!(!is_chained(Some("127.0.0.1:0")));
        assert!(!is_chained(None));
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cret", "s3cre"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }

    #[test]
    fn admin_routes_need_the_bearer_token_when_one_is_set() {
        let token = Some("t0k");
        assert_eq!(
            check_admin(token, Some("Bearer t0k"), Some("10.0.0.7:1")),
            Ok(())
        );
        for wrong in [None, Some("Bearer nope"), Some("t0k"), Some("Basic t0k")] {
            assert_eq!(
                check_admin(token, wrong, Some("127.0.0.1:1")),
                Err(Denied::Token),
                "{wrong:?}"
            );
        }
        assert_eq!(check_admin(None, None, Some("127.0.0.1:9")), Ok(()));
        assert_eq!(check_admin(None, None, Some("0.0.0.0:0")), Ok(()));
        assert_eq!(
            check_admin(None, Some("Bearer anything"), Some("10.0.0.7:9")),
            Err(Denied::NotLocal)
        );
    }

    #[test]
    fn internal_routes_need_the_token_when_one_is_set_else_loopback() {
        let token = Some("inner");
        assert_eq!(
            check_internal(token, Some("inner"), Some("10.0.0.7:1")),
            Ok(())
        );
        assert_eq!(
            check_internal(token, None, Some("127.0.0.1:1")),
            Err(Denied::Token)
        );
        assert_eq!(
            check_internal(token, Some("outer"), Some("127.0.0.1:1")),
            Err(Denied::Token)
        );
        assert_eq!(check_internal(None, None, Some("[::1]:4")), Ok(()));
        assert_eq!(
            check_internal(None, Some("inner"), Some("192.168.1.2:4")),
            Err(Denied::NotLocal)
        );
        assert_eq!(check_internal(None, None, None), Err(Denied::NotLocal));
    }

    #[test]
    fn chained_calls_pass_the_internal_guard_without_a_token() {
        assert_eq!(
            check_internal(Some("inner"), None, Some("0.0.0.0:0")),
            Ok(())
        );
        assert_eq!(check_internal(None, None, Some("0.0.0.0:0")), Ok(()));
    }
}
