//! Incoming requests read with a body limit (no host enforces one on real Spin, so every
//! component checks its own), and responses sent through the handler's response outparam,
//! which lets a handler keep working after its client has the answer.

use crate::problem;
use futures::StreamExt;
use http_problem::Problem;
use spin_sdk::http::{
    Fields, IncomingRequest, Method, OutgoingResponse, Response, ResponseOutparam,
};

/// A request with its body read.
#[derive(Debug)]
pub struct Incoming {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (without `?`), empty when there is none.
    pub query: String,
    /// The path below the component's route (`spin-path-info`), `/` when empty.
    pub path_info: String,
    headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Declared or found larger than the limit.
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client's body stream failed.
    #[error("the body could not be read: {0}")]
    Unreadable(String),
}

impl BodyError {
    /// The problem answer: 413 or 400.
    pub fn into_response(self) -> Response {
        match self {
            Self::TooLarge { limit } => problem(
                &Problem::new(413, "Content Too Large")
                    .with_type("/problems/body-too-large")
                    .with_detail(format!("the body must be at most {limit} bytes"))
                    .with("limit", limit),
            ),
            Self::Unreadable(detail) => problem(
                &Problem::new(400, "Bad Request")
                    .with_type("/problems/unreadable-body")
                    .with_detail(detail),
            ),
        }
    }
}

impl Incoming {
    /// Reads `request`, refusing a body over `max_body` bytes: from its declared length when
    /// there is one, before reading anything; otherwise as soon as the limit is passed.
    pub async fn read(request: IncomingRequest, max_body: usize) -> Result<Self, BodyError> {
        let mut incoming = Self::head(&request);
        incoming.read_body(request, max_body).await?;
        Ok(incoming)
    }

    /// Everything about `request` but its body (left empty), for a handler that decides
    /// something (a rate limit, a route) before reading the body with [`Incoming::read_body`].
    pub fn head(request: &IncomingRequest) -> Self {
        let headers: Vec<(String, Vec<u8>)> = request
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        let mut incoming = Self {
            method: request.method(),
            path: String::new(),
            query: String::new(),
            path_info: String::new(),
            headers,
            body: Vec::new(),
        };
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        incoming.path = path.to_owned();
        incoming.query = query.to_owned();
        incoming.path_info = guest_kit_core::path_info(incoming.header("spin-path-info"));
        incoming
    }

    /// Reads the body of `request` (whose [`Incoming::head`] this is), refusing one over
    /// `max_body` bytes as [`Incoming::read`] does.
    pub async fn read_body(
        &mut self,
        request: IncomingRequest,
        max_body: usize,
    ) -> Result<(), BodyError> {
        let declared = self
            .header("content-length")
            .and_then(|value| value.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > max_body as u64) {
            return Err(BodyError::TooLarge { limit: max_body });
        }
        let mut stream = request.into_body_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Unreadable(format!("{e:?}")))?;
            if self.body.len() + chunk.len() > max_body {
                return Err(BodyError::TooLarge { limit: max_body });
            }
            self.body.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// A request as [`Incoming::read`] would give it, for unit tests of handlers.
    #[cfg(test)]
    pub(crate) fn for_test(
        method: Method,
        path_info: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Self {
        Self {
            method,
            path: path_info.to_owned(),
            query: String::new(),
            path_info: path_info.to_owned(),
            headers: content_type
                .map(|value| ("content-type".to_owned(), value.as_bytes().to_vec()))
                .into_iter()
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The first value of header `name` (lower case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The body as a JSON object (an empty body is an empty object), or why it is not one.
    pub fn json_object(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice(&self.body) {
            Ok(serde_json::Value::Object(object)) => Ok(object),
            Ok(_) => Err("the body must be a JSON object".into()),
            Err(error) => Err(format!("the body is not JSON: {error}")),
        }
    }

    /// Whether the body is declared as JSON (`application/json` or `application/*+json`,
    /// any parameters). Requiring it keeps plain HTML forms on other sites from creating
    /// anything here: a browser sends those cross-site without asking.
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(guest_kit_core::is_json_media_type)
    }

    /// 415 unless the body is declared as JSON.
    pub fn require_json(&self) -> Result<(), Response> {
        if self.is_json() {
            return Ok(());
        }
        let mut response = problem(
            &Problem::new(415, "Unsupported Media Type")
                .with_type("/problems/unsupported-media-type")
                .with_detail(format!(
                    "send the body as JSON with Content-Type: application/json (got {})",
                    self.header("content-type").unwrap_or("no Content-Type")
                )),
        );
        response.set_header("accept", "application/json");
        Err(response)
    }
}

/// Serves one request: reads it with a body limit of `max_body` bytes (413 or 400 when that
/// fails), answers what `route` says, and sends the answer through `out`.
pub async fn serve(
    request: IncomingRequest,
    out: ResponseOutparam,
    max_body: usize,
    route: impl AsyncFnOnce(&Incoming) -> Response,
) {
    let response = match Incoming::read(request, max_body).await {
        Ok(request) => route(&request).await,
        Err(error) => error.into_response(),
    };
    send(out, response).await;
}

/// Sends `response` through `out`; the client has it when this returns, and the handler may
/// go on working.
pub async fn send(out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    for (name, value) in response.headers() {
        let _ = headers.append(name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(*response.status());
    if let Err(error) = out.set_with_body(outgoing, response.into_body()).await {
        eprintln!("could not send the response: {error:?}");
    }
}
