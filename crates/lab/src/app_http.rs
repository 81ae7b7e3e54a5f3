//! A keep-alive HTTP/1.1 client for one running app, as the experiments drive it: requests
//! retried when lost in transport, answers with their headers, JSON answers, paged listings,
//! and the `saga_audit` reader over it.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use saga_audit::state::Reader;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The longest one request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per request lost in transport (every request the lab sends this way is idempotent).
const TRANSPORT_TRIES: u32 = 3;
/// Items asked for per page of a listing (the most `/orders` and `/notifications` give).
const PAGE_SIZE: usize = 1000;

type Sender = SendRequest<Full<Bytes>>;

/// One answer: its status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "{}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The status and body, for an error message.
    pub fn describe(&self) -> String {
        format!("{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

/// A keep-alive HTTP/1.1 client for one app, its idle connections pooled.
pub struct Http {
    /// Where the app listens.
    pub address: SocketAddr,
    idle: Mutex<Vec<Sender>>,
}

impl Http {
    /// A client of the app on `address`, no connection open yet.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// One request (JSON `body`, if any), its status and body; a request lost in transport is
    /// sent again, up to [`TRANSPORT_TRIES`] times.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let answer = self.send(method, path, headers, body).await?;
        Ok((answer.status, answer.body))
    }

    /// One request like [`Http::call`]; the whole answer, headers included.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<Answer> {
        let mut last_error = None;
        for _ in 0..TRANSPORT_TRIES {
            let attempt = self.once(method.clone(), path, headers, body.clone());
            match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(error)) => last_error = Some(error),
                Err(_) => last_error = Some(anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}")),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("not sent"))
            .context(format!("{method} {path} on {}", self.address)))
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<Answer> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut sender = match pooled {
            Some(sender) if !sender.is_closed() => sender,
            _ => crate::load::connect(self.address).await?,
        };
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.address.to_string());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let (head, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        Ok(Answer {
            status: head.status.as_u16(),
            headers: head.headers,
            body,
        })
    }

    /// A request that must succeed; its JSON answer.
    pub async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self
            .call(method.clone(), path, &[], body.map(|body| body.to_string()))
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
        serde_json::from_slice(&answer)
            .with_context(|| format!("{method} {path}: {}", String::from_utf8_lossy(&answer)))
    }

    /// Every item of a paged listing such as `/orders` or `/notifications`: the items under
    /// `member` of each page, following its `next` cursor (`after=`) to the end.
    pub async fn every_page(&self, path: &str, member: &str) -> anyhow::Result<Vec<Value>> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page_path = match &after {
                Some(cursor) => format!("{path}{separator}limit={PAGE_SIZE}&after={cursor}"),
                None => format!("{path}{separator}limit={PAGE_SIZE}"),
            };
            let page = self.expect_ok(Method::GET, &page_path, None).await?;
            let listed = page[member]
                .as_array()
                .with_context(|| format!("GET {page_path}: no `{member}` list"))?;
            items.extend(listed.iter().cloned());
            match page["next"].as_str() {
                Some(next) if !listed.is_empty() => after = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }
}

impl Reader for Http {
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.call(Method::GET, path, &[], None)
            .await
            .map(|(status, body)| (status, body.to_vec()))
            .map_err(|error| format!("{error:#}"))
    }
}
