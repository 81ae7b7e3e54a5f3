//! Request ids and W3C Trace Context for Orderly's services: every request gets an
//! `x-request-id` (the caller's when it is a sensible one, else a new one) and a `traceparent`
//! (continuing the caller's trace when its header is valid, else starting one), and both go on
//! every downstream call, job and event, and into every log line.
//!
//! Ids come from an injected random source, `&mut impl FnMut() -> u64`, so tests are
//! deterministic and a component can pass the host's `wasi:random`.
//!
//! ```
//! use trace_context::TraceContext;
//!
//! let mut draws = 0u64;
//! let mut random = || {
//!     draws += 1;
//!     draws
//! };
//! let incoming = TraceContext::incoming(
//!     Some("order-42"),
//!     Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
//!     &mut random,
//! );
//! assert_eq!(incoming.request_id.as_str(), "order-42");
//! let call = incoming.child(&mut random);
//! assert_eq!(
//!     call.headers(),
//!     [
//!         ("x-request-id", "order-42".to_owned()),
//!         (
//!             "traceparent",
//!             "00-0af7651916cd43dd8448eb211c80319c-0000000000000002-01".to_owned()
//!         ),
//!     ]
//! );
//! ```

mod request_id;
mod traceparent;

pub use request_id::{MAX_REQUEST_ID_LEN, RequestId, RequestIdError};
pub use traceparent::{SpanId, TraceFlags, TraceId, TraceParent, TraceParentError};

/// The request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The W3C Trace Context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// What identifies a piece of work across services: its request id, and the span it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The request id, the same all the way down.
    pub request_id: RequestId,
    /// This work's span: the trace, and this span's id as the `parent-id` its callees see.
    pub span: TraceParent,
}

impl TraceContext {
    /// The context of a request received with these `x-request-id` and `traceparent` header
    /// values: the caller's request id or a new one, and a new span in the caller's trace (or in
    /// a new trace when the header is missing or malformed).
    pub fn incoming(
        request_id: Option<&str>,
        traceparent: Option<&str>,
        random: &mut impl FnMut() -> u64,
    ) -> Self {
        let request_id = RequestId::from_header(request_id, random);
        let span = match traceparent.and_then(|value| TraceParent::parse(value).ok()) {
            Some(caller) => caller.child(random),
            None => TraceParent::root(random, TraceFlags::SAMPLED),
        };
        Self { request_id, span }
    }

    /// The context of a call, job or event this work starts: the same request id and trace, a
    /// new span.
    pub fn child(&self, random: &mut impl FnMut() -> u64) -> Self {
        Self {
            request_id: self.request_id.clone(),
            span: self.span.child(random),
        }
    }

    /// The headers that carry this context to a downstream call (usually of a
    /// [`child`](Self::child)): `x-request-id` and `traceparent`.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (REQUEST_ID_HEADER, self.request_id.to_string()),
            (TRACEPARENT_HEADER, self.span.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    fn counter() -> impl FnMut() -> u64 {
        let mut next = 0;
        move || {
            next += 1;
            next
        }
    }

    #[test]
    fn an_incoming_request_continues_the_callers_trace_in_a_new_span() {
        let mut random = counter();
        let context = TraceContext::incoming(Some("req-1"), Some(CALLER), &mut random);
        assert_eq!(context.request_id.as_str(), "req-1");
        assert_eq!(
            context.span.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-00",
            "same trace and flags, new span"
        );
    }

    #[test]
    fn without_usable_headers_a_request_starts_its_own() {
        let mut random = counter();
        let context = TraceContext::incoming(Some(""), Some("00-nope"), &mut random);
        assert_eq!(
            context.request_id.as_str(),
            "00000000000000010000000000000002"
        );
        assert_eq!(
            context.span.to_string(),
            "00-00000000000000030000000000000004-0000000000000005-01"
        );
        let bare = TraceContext::incoming(None, None, &mut random);
        assert_ne!(bare.request_id, context.request_id);
        assert_ne!(bare.span.trace_id, context.span.trace_id);
    }

    #[test]
    fn downstream_calls_get_the_request_id_and_a_child_span() {
        let mut random = counter();
        let context = TraceContext::incoming(Some("req-1"), Some(CALLER), &mut random);
        let first = context.child(&mut random);
        let second = context.child(&mut random);
        assert_eq!(
            first.headers(),
            [
                ("x-request-id", "req-1".to_owned()),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000002-00".to_owned()
                ),
            ]
        );
        assert_ne!(first.span.parent_id, second.span.parent_id);
        // What the callee reads back is what was sent.
        let [(_, request_id), (_, traceparent)] = second.headers();
        let callee = TraceContext::incoming(Some(&request_id), Some(&traceparent), &mut random);
        assert_eq!(callee.request_id, second.request_id);
        assert_eq!(callee.span.trace_id, second.span.trace_id);
    }
}
