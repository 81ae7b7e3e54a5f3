//! What the HTTP trigger checks of a request before any instance is made: its Host header, its
//! request id, and its body, read whole under a size limit, a timeout and a minimum transfer
//! rate (so that a client that stalls holds a connection, never an instance slot).

use super::error::HttpError;
use crate::services::clock::HostClock;
use crate::settings::HttpSettings;
use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// What is wrong with a request's Host header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadHost {
    /// An HTTP/1.1 request without one (RFC 9112 §3.2).
    #[error("the request has no Host header")]
    Missing,
    /// More than one.
    #[error("the request has more than one Host header")]
    Repeated,
    /// Not a `host[:port]` (user info, a port past 65535, stray characters).
    #[error("the Host header {0:?} is not a valid host[:port]")]
    Invalid(String),
}

/// The request's Host header as an authority: exactly one, a plain `host[:port]`. An HTTP/1.0
/// request may have none (`localhost` then).
pub(crate) fn host_authority(headers: &HeaderMap, version: Version) -> Result<Authority, BadHost> {
    let mut values = headers.get_all(http::header::HOST).iter();
    let Some(value) = values.next() else {
        return match version {
            Version::HTTP_09 | Version::HTTP_10 => Ok(Authority::from_static("localhost")),
            _ => Err(BadHost::Missing),
        };
    };
    if values.next().is_some() {
        return Err(BadHost::Repeated);
    }
    let invalid = || BadHost::Invalid(String::from_utf8_lossy(value.as_bytes()).into_owned());
    let text = value.to_str().map_err(|_| invalid())?;
    let authority: Authority = text.parse().map_err(|_| invalid())?;
    let host = authority.host();
    let host_ok = if let Some(ip) = host.strip_prefix('[') {
        ip.strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    // `Authority` takes user info (`user@host`), and a port it cannot read as a number (it
    // then reports none): read the port from the text.
    let port_text = match text.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => text.rsplit_once(':').map(|(_, port)| port),
    };
    let port_ok = port_text
        .is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok());
    if host_ok && port_ok && !text.contains('@') {
        Ok(authority)
    } else {
        Err(invalid())
    }
}

/// The longest request id kept from a client.
const MAX_REQUEST_ID: usize = 128;

/// The client's `x-request-id` when it is a plain token (letters, digits and `-_.:/+=@`, at
/// most 128), else `None`: an id with spaces, quotes or control characters could forge fields
/// in the log line that carries it.
pub(crate) fn client_request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@')
                })
        })
}

/// How a request body is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// The longest body, in bytes.
    pub(crate) max: u64,
    /// The time a body gets beyond its bytes at the minimum rate.
    pub(crate) timeout: Duration,
    /// Bytes per second; 0: the whole body within `timeout`.
    pub(crate) min_rate: u64,
    /// Once shutdown begins, the time left to a body still arriving.
    pub(crate) shutdown_grace: Duration,
}

impl BodyLimits {
    /// The limits `settings` set.
    pub(crate) fn of(settings: &HttpSettings) -> Self {
        Self {
            max: settings.max_body_size,
            timeout: settings.body_timeout,
            min_rate: settings.body_min_rate,
            shutdown_grace: settings.shutdown_body_grace,
        }
    }

    /// How long a body may take to arrive, given `received` bytes so far.
    fn allowance(&self, received: usize) -> Duration {
        let at_min_rate = match self.min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(received as f64 / rate as f64),
        };
        self.timeout + at_min_rate
    }
}

/// The memory every request body read but not yet answered may take together. A body takes its
/// share before it is read (a declared length at once, a streamed body frame by frame), so a
/// burst of large uploads waits, unread (the clients slowed by TCP), instead of taking the
/// host's memory; and what it took is reused by the next burst rather than grown.
#[derive(Debug, Clone)]
pub(crate) struct BodyMemory {
    bytes: Arc<Semaphore>,
    total: u64,
}

impl BodyMemory {
    /// A budget of `total` bytes (at least 1).
    pub(crate) fn new(total: u64) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS as u64);
        Self {
            bytes: Arc::new(Semaphore::new(usize::try_from(total).unwrap_or(usize::MAX))),
            total,
        }
    }

    /// `bytes` of the budget (all of it, for a body larger than the budget), once free, or
    /// [`HttpError::BodyMemoryFull`] if that takes past `deadline`.
    async fn take(&self, bytes: u64, deadline: Instant) -> Result<OwnedSemaphorePermit, HttpError> {
        let wanted = u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX);
        let taking = Arc::clone(&self.bytes).acquire_many_owned(wanted);
        match tokio::time::timeout_at(deadline, taking).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(HttpError::BodyMemoryFull),
        }
    }
}

/// A body read whole, and the share of [`BodyMemory`] it holds until it is dropped.
pub(crate) struct ReadBody {
    /// The bytes.
    pub(crate) bytes: Bytes,
    /// Its share of the budget: keep it while the bytes may still be in memory.
    pub(crate) memory: Option<OwnedSemaphorePermit>,
}

/// Reads `body` whole. A declared `Content-Length` over the limit is refused before a byte is
/// read; a streamed body is counted as it comes. A body must arrive within its allowance
/// ([`BodyLimits`]); once `closing` turns true (shutdown), within the shutdown grace as well.
/// Its bytes are taken from `memory` before they are read.
pub(crate) async fn read_body(
    mut body: Incoming,
    limits: BodyLimits,
    memory: &BodyMemory,
    clock: &dyn HostClock,
    mut closing: watch::Receiver<bool>,
) -> Result<ReadBody, HttpError> {
    let too_large = HttpError::BodyTooLarge { limit: limits.max };
    let declared = body.size_hint();
    if declared.lower() > limits.max {
        return Err(too_large);
    }
    if body.is_end_stream() {
        return Ok(ReadBody {
            bytes: Bytes::new(),
            memory: None,
        });
    }
    let started = clock.now();
    let capacity = declared.exact().unwrap_or(0).min(limits.max);
    // A declared length takes its whole share at once: a body never holds part of the budget
    // while it waits for the rest.
    let mut held = match capacity {
        0 => None,
        bytes => Some(memory.take(bytes, started + limits.allowance(0)).await?),
    };
    let mut buffer = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut shutdown_deadline: Option<Instant> = None;
    loop {
        if shutdown_deadline.is_none() && *closing.borrow_and_update() {
            shutdown_deadline = Some(clock.now() + limits.shutdown_grace);
        }
        let own_deadline = started + limits.allowance(buffer.len());
        let deadline = shutdown_deadline.map_or(own_deadline, |d| d.min(own_deadline));
        let frame = tokio::select! {
            frame = tokio::time::timeout_at(deadline, body.frame()) => frame,
            // Any change (or the trigger gone) means shutdown has begun.
            _ = closing.changed(), if shutdown_deadline.is_none() => {
                shutdown_deadline = Some(clock.now() + limits.shutdown_grace);
                continue;
            }
        };
        let frame = match frame {
            Err(_) if deadline < own_deadline => return Err(HttpError::ShuttingDown),
            Err(_) => return Err(HttpError::BodyTimeout),
            Ok(None) => {
                return Ok(ReadBody {
                    bytes: buffer.freeze(),
                    memory: held,
                });
            }
            Ok(Some(Err(error))) => return Err(HttpError::BodyAborted(error)),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            let after = (buffer.len() + data.len()) as u64;
            if after > limits.max {
                return Err(too_large);
            }
            // A body larger than the whole budget holds all of it, no more.
            let needed = after.min(memory.total);
            let covered = held
                .as_ref()
                .map_or(0, |permit| permit.num_permits() as u64);
            if needed > covered {
                let more = memory.take(needed - covered, deadline).await?;
                match held.as_mut() {
                    Some(permit) => permit.merge(more),
                    None => held = Some(more),
                }
            }
            buffer.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(values: &[&str], version: Version) -> Result<String, BadHost> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(http::header::HOST, value.parse().unwrap());
        }
        host_authority(&headers, version).map(|a| a.to_string())
    }

    #[test]
    fn a_host_header_is_one_plain_host_and_port() {
        let ok = |value: &str| host(&[value], Version::HTTP_11);
        assert_eq!(ok("example.com").unwrap(), "example.com");
        assert_eq!(ok("127.0.0.1:3000").unwrap(), "127.0.0.1:3000");
        assert_eq!(ok("[::1]:3000").unwrap(), "[::1]:3000");
        for bad in [
            "user@evil.com",
            "evil.com:99999",
            "evil.com:",
            "evil.com:80x",
            "evil.com/x",
            "[::1",
            "a b",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            host(&["a.com", "b.com"], Version::HTTP_11),
            Err(BadHost::Repeated)
        );
        assert_eq!(host(&[], Version::HTTP_11), Err(BadHost::Missing));
        assert_eq!(host(&[], Version::HTTP_10).unwrap(), "localhost");
    }

    #[test]
    fn request_ids_are_plain_tokens() {
        let id = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-request-id", value.parse().unwrap());
            client_request_id(&headers).map(str::to_owned)
        };
        assert_eq!(
            id("trace-me_1.2:3/4+5=6@x").as_deref(),
            Some("trace-me_1.2:3/4+5=6@x")
        );
        assert_eq!(id("x status=200 forged=yes"), None);
        assert_eq!(id("\"quoted\""), None);
        assert_eq!(id(&"a".repeat(129)), None);
    }

    #[test]
    fn a_body_gets_its_timeout_plus_its_bytes_at_the_minimum_rate() {
        let limits = BodyLimits {
            max: 1 << 20,
            timeout: Duration::from_secs(2),
            min_rate: 1000,
            shutdown_grace: Duration::from_secs(1),
        };
        assert_eq!(limits.allowance(0), Duration::from_secs(2));
        assert_eq!(limits.allowance(3000), Duration::from_secs(5));
        let whole = BodyLimits {
            min_rate: 0,
            ..limits
        };
        assert_eq!(whole.allowance(1 << 20), Duration::from_secs(2));
    }
}
