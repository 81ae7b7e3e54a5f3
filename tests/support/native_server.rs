//! A small native HTTP server for tests that need a real outbound destination.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

/// Serves `body` on a free loopback port after waiting `delay`; returns the address.
pub async fn serve(body: &'static str, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |_request| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// A native keep-alive server that serves `body` and counts the TCP connections it accepts.
pub struct CountingServer {
    /// Where it listens.
    pub address: SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingServer {
    /// Starts serving `body` on a free loopback port.
    pub async fn start(body: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = Self {
            address: listener.local_addr().expect("address"),
            connections: std::sync::Arc::default(),
        };
        let connections = std::sync::Arc::clone(&server.connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |_request| async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            body.as_bytes(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a [`ScriptedServer`] answers right now.
#[derive(Debug, Clone)]
pub struct Script {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// A native server whose answer a test changes while it runs; it counts the requests it got.
#[derive(Clone)]
pub struct ScriptedServer {
    /// Where it listens.
    pub address: SocketAddr,
    script: std::sync::Arc<std::sync::Mutex<Script>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ScriptedServer {
    /// Starts answering `status` with `body` on a free loopback port.
    pub async fn start(status: u16, body: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = Self {
            address: listener.local_addr().expect("address"),
            script: std::sync::Arc::new(std::sync::Mutex::new(Script {
                status,
                body: body.to_owned(),
            })),
            requests: std::sync::Arc::default(),
        };
        let shared = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let shared = shared.clone();
                        async move {
                            shared
                                .requests
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let script = shared.script.lock().expect("script").clone();
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from(script.body)));
                            *response.status_mut() =
                                hyper::StatusCode::from_u16(script.status).expect("a valid status");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    /// Answers `status` with `body` from now on.
    pub fn answer(&self, status: u16, body: &str) {
        *self.script.lock().expect("script") = Script {
            status,
            body: body.to_owned(),
        };
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One request a [`RecordingServer`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The path (with the query, if any).
    pub path: String,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// A native server that answers every request with the status and JSON body `answer` gives
/// for its path and body, and records every request (to stand in for a service).
#[derive(Clone)]
pub struct RecordingServer {
    /// Where it listens.
    pub address: SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl RecordingServer {
    /// Starts answering with `answer` on a free loopback port.
    pub async fn start(answer: fn(&str, &[u8]) -> (u16, String)) -> Self {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = Self {
            address: listener.local_addr().expect("address"),
            requests: std::sync::Arc::default(),
        };
        let requests = std::sync::Arc::clone(&server.requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let requests = std::sync::Arc::clone(&requests);
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let requests = std::sync::Arc::clone(&requests);
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await?.to_bytes();
                                let path = parts
                                    .uri
                                    .path_and_query()
                                    .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string());
                                let (status, answer_body) = answer(&path, &body);
                                requests.lock().expect("requests").push(Recorded {
                                    path,
                                    headers: parts.headers,
                                    body,
                                });
                                let mut response =
                                    hyper::Response::new(Full::new(Bytes::from(answer_body)));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).expect("a valid status");
                                response.headers_mut().insert(
                                    hyper::header::CONTENT_TYPE,
                                    hyper::header::HeaderValue::from_static("application/json"),
                                );
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }
}

/// A TCP server that accepts connections and never answers (a hung dependency).
pub async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}
