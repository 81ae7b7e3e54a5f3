//! Which headers go downstream with a request, and which come back with the answer.
//!
//! Downstream, only an allow-list passes: `content-type`, `idempotency-key`, `accept`, and on
//! admin routes `authorization`. So the internal token (`x-orderly-internal-token`), the
//! client's credentials on public routes, hop-by-hop headers and `spin-*` headers never reach a
//! service; the gateway adds `x-request-id` and `traceparent` itself.

use crate::routes::Access;

/// The client's headers passed on to every route.
pub const FORWARDED: [&str; 3] = ["content-type", "idempotency-key", "accept"];

/// The client's headers passed on to a route with `access`.
pub fn forwarded(access: Access) -> &'static [&'static str] {
    const ADMIN: [&str; 4] = ["content-type", "idempotency-key", "accept", "authorization"];
    match access {
        Access::Public => &FORWARDED,
        Access::Admin => &ADMIN,
    }
}

/// Headers of an answer the gateway does not pass back: hop-by-hop ones, the length (the
/// gateway's own response sets it), and those the gateway sets itself.
const NOT_RETURNED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-request-id",
    "traceparent",
];

/// Whether an upstream answer's header `name` (lower case) goes back to the client.
pub fn returned(name: &str) -> bool {
    !NOT_RETURNED.contains(&name) && !name.starts_with("ratelimit-") && !name.starts_with("spin-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_hop_by_hop_headers_never_go_downstream() {
        for access in [Access::Public, Access::Admin] {
            for name in [
                "x-orderly-internal-token",
                "connection",
                "transfer-encoding",
                "spin-client-addr",
                "spin-path-info",
                "x-api-key",
                "cookie",
                "host",
            ] {
                assert!(!forwarded(access).contains(&name), "{name}");
            }
            for name in FORWARDED {
                assert!(forwarded(access).contains(&name), "{name}");
            }
        }
        assert!(!forwarded(Access::Public).contains(&"authorization"));
        assert!(forwarded(Access::Admin).contains(&"authorization"));
    }

    #[test]
    fn answers_keep_their_own_headers_only() {
        for name in [
            "content-type",
            "location",
            "retry-after",
            "allow",
            "www-authenticate",
        ] {
            assert!(returned(name), "{name}");
        }
        for name in [
            "connection",
            "transfer-encoding",
            "content-length",
            "x-request-id",
            "ratelimit-remaining",
            "spin-anything",
        ] {
            assert!(!returned(name), "{name}");
        }
    }
}
