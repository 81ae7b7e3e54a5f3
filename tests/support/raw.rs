//! Raw HTTP/1.1 over TCP, for requests no well-behaved client sends: stalled and oversized
//! bodies, malformed chunks, odd Host headers.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to the app at `base` (`http://host:port`).
pub async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("the host accepts connections")
}

/// Sends `bytes` on a new connection to `base` and reads the answer ([`read_response`]).
pub async fn exchange(base: &str, bytes: &[u8]) -> RawResponse {
    let mut stream = connect(base).await;
    stream.write_all(bytes).await.expect("send");
    read_response(&mut stream, Duration::from_secs(30)).await
}

/// A response as read off the wire.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// The status code (0 when nothing came back).
    pub status: u16,
    /// The status line and headers, as text.
    pub head: String,
    /// The body (de-chunked).
    pub body: String,
}

impl RawResponse {
    /// The body as JSON (panics, showing the response, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Reads one response from `stream`, giving up after `limit` (status 0 if none came): the head,
/// then a body by `Content-Length`, chunks, or up to the end of the connection.
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> RawResponse {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 8192];
        loop {
            if let Some(response) = parse(&raw) {
                return Some(response);
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return parse_at_end(&raw),
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().flatten().unwrap_or_default()
}

fn split(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        &raw[end + 4..],
    ))
}

fn response(head: String, body: &[u8]) -> RawResponse {
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        head,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// A complete response in `raw`, if there is one yet.
fn parse(raw: &[u8]) -> Option<RawResponse> {
    let (head, rest) = split(raw)?;
    let probe = response(head.clone(), b"");
    if let Some(length) = probe.header("content-length") {
        let length: usize = length.parse().ok()?;
        return (rest.len() >= length).then(|| response(head, &rest[..length]));
    }
    if probe
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        return dechunk(rest).map(|body| response(head, &body));
    }
    None
}

fn parse_at_end(raw: &[u8]) -> Option<RawResponse> {
    parse(raw).or_else(|| split(raw).map(|(head, rest)| response(head, rest)))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&rest[..line_end])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
