//! Pooled HTTP/1.1 connections for outbound `http://` requests, as Spin pools them: one pool
//! per application, shared by all its instances, keeping idle keep-alive connections per
//! authority (`host:port`) for the next request.
//!
//! Everything else is as [`wasmtime_wasi_http::default_send_request`] does it, which still
//! sends `https://` requests: the connect timeout bounds establishing a new connection (TCP
//! connect, then the HTTP/1.1 handshake), the first-byte timeout the wait for the response
//! head, the between-bytes timeout each wait for the response body; failures map to the same
//! [`Error`]s; the request goes out in origin form.
//!
//! A connection goes back to the pool once its response body has been read to the end (and
//! hyper is ready for the next request on it): before the guest sees that end when the
//! request body has ended too, so that the guest's next request finds it. It is closed when
//! it has been idle for [`IDLE_TIMEOUT`], or when more than [`MAX_IDLE_PER_AUTHORITY`] are
//! idle for its authority (the oldest goes).
//!
//! A request that fails on a reused connection before hyper started writing it (hyper hands it
//! back unsent, typically because the server had closed the connection) goes once more on a
//! new connection, as hyper-util's client, Spin's, retries it. A request hyper has started
//! writing is never sent again (the server may have acted on it): it fails.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The most idle connections kept for one authority.
pub const MAX_IDLE_PER_AUTHORITY: usize = 64;

/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A timeout the guest did not set, as `default_send_request` has it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How many connections are kept idle, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// The most idle connections kept for one authority.
    pub max_idle_per_authority: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_idle_per_authority: MAX_IDLE_PER_AUTHORITY,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// The outbound `http://` connections of one application (see the module documentation).
/// Clones share the pool.
#[derive(Clone)]
pub struct HttpConnectionPool {
    shared: Arc<Shared>,
}

impl Default for HttpConnectionPool {
    fn default() -> Self {
        Self::with_limits(PoolLimits::default())
    }
}

struct Shared {
    limits: PoolLimits,
    idle: Mutex<Idle>,
}

/// The idle connections, by authority, oldest first.
#[derive(Default)]
struct Idle {
    by_authority: HashMap<String, Vec<IdleConnection>>,
    /// Whether a task is closing expired connections.
    sweeping: bool,
}

struct IdleConnection {
    connection: Connection,
    since: Instant,
}

/// One HTTP/1.1 connection.
struct Connection {
    sender: SendRequest<WasiBody>,
}

/// The timeouts of one request.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Timeouts {
    fn of(options: Option<RequestOptions>) -> Self {
        let or_default = |limit: Option<Duration>| limit.unwrap_or(DEFAULT_TIMEOUT);
        Self {
            connect: or_default(options.and_then(|o| o.connect_timeout)),
            first_byte: or_default(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: or_default(options.and_then(|o| o.between_bytes_timeout)),
        }
    }
}

/// A request that got no response.
struct Failed {
    error: Error,
    /// The request, when hyper handed it back unsent.
    unsent: Option<http::Request<WasiBody>>,
}

impl HttpConnectionPool {
    /// An empty pool with these limits.
    pub fn with_limits(limits: PoolLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                idle: Mutex::default(),
            }),
        }
    }

    /// Sends an `http://` request on an idle connection to its authority, or a new one.
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let timeouts = Timeouts::of(options);
        let authority = request
            .uri()
            .authority()
            .ok_or(Error::HttpRequestUriInvalid)?;
        let key = match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        let (mut parts, body) = request.into_parts();
        // The request line carries the origin form; scheme and authority are for proxies.
        parts.uri = http::Uri::builder()
            .path_and_query(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let (body, request_ended) = RequestBody::new(body);
        let request = http::Request::from_parts(parts, body.boxed_unsync());

        let (connection, reused) = match self.shared.checkout(&key) {
            Some(connection) => (connection, true),
            None => (connect(&key, timeouts.connect).await?, false),
        };
        let (response, connection) = match send_on(connection, request, timeouts.first_byte).await {
            Ok(sent) => sent,
            Err(Failed {
                error,
                unsent: Some(again),
            }) if reused => {
                tracing::debug!(authority = %key, %error, "a pooled connection failed before the request went out; sending it on a new one");
                let connection = connect(&key, timeouts.connect).await?;
                send_on(connection, again, timeouts.first_byte)
                    .await
                    .map_err(|failed| failed.error)?
            }
            Err(failed) => return Err(failed.error),
        };
        let between_bytes = if timeouts.between_bytes.is_zero() {
            // tokio's interval panics on zero, as `default_send_request` notes.
            Duration::new(0, 1)
        } else {
            timeouts.between_bytes
        };
        let mut timeout = tokio::time::interval(between_bytes);
        timeout.reset();
        let returning = Returning {
            pool: Arc::clone(&self.shared),
            key,
            connection,
            request_ended,
        };
        Ok(response.map(|incoming| {
            ResponseBody {
                incoming,
                timeout,
                ended: false,
                returning: Some(returning),
            }
            .boxed_unsync()
        }))
    }

    /// How many connections are idle for `authority` (`host:port`).
    #[cfg(test)]
    fn idle(&self, authority: &str) -> usize {
        self.shared
            .lock()
            .by_authority
            .get(authority)
            .map_or(0, Vec::len)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection to `key` that is still open.
    fn checkout(&self, key: &str) -> Option<Connection> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.by_authority.get_mut(key)?;
        let mut found = None;
        while let Some(entry) = list.pop() {
            if now.duration_since(entry.since) >= self.limits.idle_timeout {
                // The others are older still.
                list.clear();
                break;
            }
            let sender = &entry.connection.sender;
            if !sender.is_closed() && sender.is_ready() {
                found = Some(entry.connection);
                break;
            }
        }
        if list.is_empty() {
            idle.by_authority.remove(key);
        }
        found
    }

    /// Keeps `connection`, ready for a request, for the next request to `key`.
    fn checkin(self: &Arc<Self>, key: String, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let list = idle.by_authority.entry(key.clone()).or_default();
        list.push(IdleConnection {
            connection,
            since: Instant::now(),
        });
        let excess = list
            .len()
            .saturating_sub(self.limits.max_idle_per_authority);
        list.drain(..excess);
        if list.is_empty() {
            idle.by_authority.remove(&key);
            return;
        }
        if !idle.sweeping
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            idle.sweeping = true;
            runtime.spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Closes the connections idle too long (or closed by the server); returns when the next
    /// one expires, or `None` (and stops sweeping) when none is left.
    fn sweep(&self) -> Option<Instant> {
        let now = Instant::now();
        let timeout = self.limits.idle_timeout;
        let mut idle = self.lock();
        idle.by_authority.retain(|_, list| {
            list.retain(|entry| {
                now.duration_since(entry.since) < timeout && !entry.connection.sender.is_closed()
            });
            !list.is_empty()
        });
        let next = idle
            .by_authority
            .values()
            .flat_map(|list| list.first())
            .map(|entry| entry.since + timeout)
            .min();
        if next.is_none() {
            idle.sweeping = false;
        }
        next
    }
}

/// Closes idle connections as they expire, while the pool lives and has any.
async fn sweep(pool: Weak<Shared>) {
    loop {
        let next = match pool.upgrade() {
            Some(pool) => pool.sweep(),
            None => None,
        };
        match next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => return,
        }
    }
}

/// A new connection to `key` (`host:port`), as `default_send_request` makes one (without TLS).
async fn connect(key: &str, limit: Duration) -> Result<Connection, Error> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(key)).await {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let (sender, connection) = tokio::time::timeout(
        limit,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let authority = key.to_owned();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%authority, %error, "an outbound HTTP connection failed");
        }
    });
    Ok(Connection { sender })
}

/// Sends `request` on `connection`, waiting `first_byte` for the response head.
async fn send_on(
    mut connection: Connection,
    request: http::Request<WasiBody>,
    first_byte: Duration,
) -> Result<(http::Response<Incoming>, Connection), Failed> {
    let sent = tokio::time::timeout(first_byte, connection.sender.try_send_request(request)).await;
    match sent {
        Ok(Ok(response)) => Ok((response, connection)),
        // Dropping the connection closes it: its request is still out.
        Err(_) => Err(Failed {
            error: Error::ConnectionReadTimeout,
            unsent: None,
        }),
        Ok(Err(mut error)) => {
            let unsent = error.take_message();
            Err(Failed {
                error: Error::from(error.into_error()),
                unsent,
            })
        }
    }
}

/// A connection on its way back to the pool.
struct Returning {
    pool: Arc<Shared>,
    key: String,
    connection: Connection,
    /// Whether hyper has had all of the request's body.
    request_ended: Arc<AtomicBool>,
}

impl Returning {
    /// Returns the connection once hyper is ready for another request on it (never, if the
    /// connection closes instead).
    fn in_background(mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if self.connection.sender.ready().await.is_ok() {
                    self.pool.checkin(self.key, self.connection);
                }
            });
        }
    }
}

/// A response body: `default_send_request`'s between-bytes timeout, and the connection back to
/// the pool at its end.
struct ResponseBody {
    incoming: Incoming,
    timeout: Interval,
    /// `incoming` has ended.
    ended: bool,
    returning: Option<Returning>,
}

impl ResponseBody {
    /// Puts the connection back (see the module documentation), then ends.
    fn poll_return(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Some(returning) = self.returning.as_mut() else {
            return Poll::Ready(None);
        };
        match returning.connection.sender.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                if let Some(Returning {
                    pool,
                    key,
                    connection,
                    ..
                }) = self.returning.take()
                {
                    pool.checkin(key, connection);
                }
            }
            Poll::Ready(Err(_)) => self.returning = None,
            // hyper is about to be ready: the request has gone out whole.
            Poll::Pending if returning.request_ended.load(Ordering::Acquire) => {
                return Poll::Pending;
            }
            // hyper still sends the request's body.
            Poll::Pending => {
                if let Some(returning) = self.returning.take() {
                    returning.in_background();
                }
            }
        }
        Poll::Ready(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if !this.ended {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(Err(error))) => {
                    let error = if error.is_timeout() {
                        Error::HttpResponseTimeout
                    } else {
                        Error::from(error)
                    };
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    this.timeout.reset();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Pending => {
                    ready!(this.timeout.poll_tick(cx));
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
            }
        }
        this.poll_return(cx)
    }

    fn is_end_stream(&self) -> bool {
        // Not before the connection is back.
        self.returning.is_none() && (self.ended || self.incoming.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection unusable (hyper closes it).
        if (self.ended || self.incoming.is_end_stream())
            && let Some(returning) = self.returning.take()
        {
            returning.in_background();
        }
    }
}

/// A request body as hyper sends it: the guest's, telling the pool when hyper has had all of it.
struct RequestBody {
    body: WasiBody,
    ended: Arc<AtomicBool>,
}

impl RequestBody {
    /// Wraps the guest's `body`; the flag says whether it has ended.
    fn new(body: WasiBody) -> (Self, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
        let flag = Arc::clone(&ended);
        (Self { body, ended }, flag)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        let ended = match &frame {
            None => true,
            // Trailers come last.
            Some(Ok(frame)) => frame.is_trailers(),
            Some(Err(_)) => false,
        };
        if ended {
            self.ended.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.body.is_end_stream();
        if end {
            // hyper reads no further once a body says it ended.
            self.ended.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full, StreamBody};
    use hyper::service::service_fn;
    use std::io::ErrorKind;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
    use tokio::net::TcpListener;

    /// A loopback server; `accepted` counts its TCP connections.
    struct Server {
        address: SocketAddr,
        accepted: Arc<AtomicUsize>,
    }

    impl Server {
        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        fn authority(&self) -> String {
            self.address.to_string()
        }
    }

    /// Runs `handle` on every accepted connection.
    async fn serve<F, Fut>(handle: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(stream));
            }
        });
        Server { address, accepted }
    }

    /// A keep-alive HTTP/1.1 server answering `<n>:<request line target>:<body>`, `n` counting
    /// the requests on the connection. It drops the connection without an answer for request
    /// number `hang_up_on` of each connection, after reading it whole.
    async fn http_server(hang_up_on: Option<usize>) -> Server {
        serve(move |stream| async move {
            let served = Arc::new(AtomicUsize::new(0));
            let service = service_fn(move |request: http::Request<Incoming>| {
                let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let target = request.uri().to_string();
                    let host = request
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map_err(std::io::Error::other)?
                        .to_bytes();
                    if Some(n) == hang_up_on {
                        return Err(std::io::Error::other("hanging up"));
                    }
                    let body = format!("{n}:{target}:{host}:{}", String::from_utf8_lossy(&body));
                    Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from(body))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        })
        .await
    }

    /// Reads one request head (requests here have no body).
    async fn read_head(stream: &mut TcpStream) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    fn empty() -> WasiBody {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    }

    /// A body the way a guest's comes: frames through a stream, its end unknown beforehand.
    fn streamed(text: &'static str) -> WasiBody {
        let frame = Ok::<_, Error>(Frame::data(Bytes::from_static(text.as_bytes())));
        StreamBody::new(futures::stream::iter([frame])).boxed_unsync()
    }

    fn request(server: &Server, path: &str, body: WasiBody) -> http::Request<WasiBody> {
        http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("http://{}{path}", server.address))
            .header(http::header::HOST, server.authority())
            .body(body)
            .expect("a request")
    }

    fn first_byte(limit: Duration) -> Option<RequestOptions> {
        Some(RequestOptions {
            first_byte_timeout: Some(limit),
            ..RequestOptions::default()
        })
    }

    async fn text(response: http::Response<WasiBody>) -> Result<String, Error> {
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn fetch(pool: &HttpConnectionPool, request: http::Request<WasiBody>) -> String {
        let response = pool.send(request, None).await.expect("a response");
        text(response).await.expect("a body")
    }

    /// Waits until hyper has found every idle connection to `authority` closed.
    async fn until_idle_closed(pool: &HttpConnectionPool, authority: &str) {
        let closed = || {
            pool.shared
                .lock()
                .by_authority
                .get(authority)
                .is_none_or(|list| list.iter().all(|idle| idle.connection.sender.is_closed()))
        };
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while !closed() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        waited.await.expect("the idle connections closed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sequential_requests_share_one_connection() {
        let server = http_server(None).await;
        let pool = HttpConnectionPool::default();
        for n in 1..=5 {
            let reply = fetch(&pool, request(&server, "/a?b=1", streamed("hi"))).await;
            // Origin form on the request line; the Host header is the guest's.
            assert_eq!(reply, format!("{n}:/a?b=1:{}:hi", server.authority()));
        }
        assert_eq!(server.accepted(), 1);
        assert_eq!(pool.idle(&server.authority()), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clones_of_the_pool_share_its_connections() {
        // Every instance of an application holds the application's pool.
        let server = http_server(None).await;
        let pool = HttpConnectionPool::default();
        let instances = [pool.clone(), pool.clone(), pool];
        for (n, instance) in (1..).zip(&instances) {
            let reply = fetch(instance, request(&server, "/", empty())).await;
            assert_eq!(reply, format!("{n}:/:{}:", server.authority()));
        }
        assert_eq!(server.accepted(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_open_connections_and_keep_at_most_the_limit() {
        let server = http_server(None).await;
        let pool = HttpConnectionPool::with_limits(PoolLimits {
            max_idle_per_authority: 1,
            ..PoolLimits::default()
        });
        // Both responses are pending at once: two connections.
        let first = pool
            .send(request(&server, "/", empty()), None)
            .await
            .expect("a response");
        let second = pool
            .send(request(&server, "/", empty()), None)
            .await
            .expect("a response");
        assert_eq!(server.accepted(), 2);
        text(first).await.expect("a body");
        text(second).await.expect("a body");
        assert_eq!(pool.idle(&server.authority()), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_closing_idle_connections_does_not_fail_the_next_request() {
        // Answers one request per connection, keep-alive as far as the client can tell, then
        // closes it.
        let server = serve(|mut stream| async move {
            if read_head(&mut stream).await {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        })
        .await;
        let pool = HttpConnectionPool::default();
        for _ in 0..3 {
            let response = pool
                .send(request(&server, "/", empty()), None)
                .await
                .expect("a response");
            assert_eq!(text(response).await.expect("a body"), "ok");
            // The next request goes once hyper has seen the close: one written before would
            // fail (the server closing under it), one handed over just before is handed back
            // unsent and goes again (see below).
            until_idle_closed(&pool, &server.authority()).await;
        }
        assert_eq!(server.accepted(), 3);
    }

    /// The client end of a connection the server has hung up (`hung_up`), hyper not knowing yet:
    /// reads wait until then, without waking anyone when it comes, and are at their end after.
    /// `written` keeps what hyper wrote.
    struct HangingUp {
        hung_up: Arc<AtomicBool>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl AsyncRead for HangingUp {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.hung_up.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    impl AsyncWrite for HangingUp {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_hyper_gave_back_unsent_goes_again_on_a_new_one() {
        // A pooled connection the server closed just as it is reused, its end of stream there
        // before hyper picks up the request: hyper hands the request back unsent.
        let server = http_server(None).await;
        let pool = HttpConnectionPool::default();
        let authority = server.authority();
        let hung_up = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let io = HangingUp {
            hung_up: Arc::clone(&hung_up),
            written: Arc::clone(&written),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("a handshake");
        let driven = tokio::spawn(connection);
        sender.ready().await.expect("a ready connection");
        pool.shared
            .checkin(authority.clone(), Connection { sender });
        assert_eq!(pool.idle(&authority), 1);
        hung_up.store(true, Ordering::SeqCst);

        let reply = fetch(&pool, request(&server, "/two", streamed("body two"))).await;
        assert_eq!(reply, format!("1:/two:{authority}:body two"));
        assert_eq!(server.accepted(), 1);
        assert!(
            written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty(),
            "nothing went out on the closed connection"
        );
        driven
            .await
            .expect("the connection task")
            .expect("a connection closed at its end");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_written_request_on_a_connection_closed_under_it_is_not_sent_again() {
        // The server drops each connection at its second request, read whole but unanswered:
        // it may have acted on it, so the request must not go again.
        let server = http_server(Some(2)).await;
        let pool = HttpConnectionPool::default();
        let authority = server.authority();
        let first = fetch(&pool, request(&server, "/one", streamed("body one"))).await;
        assert_eq!(first, format!("1:/one:{authority}:body one"));
        assert_eq!(pool.idle(&authority), 1);
        let failed = pool
            .send(request(&server, "/two", streamed("body two")), None)
            .await;
        assert!(matches!(failed, Err(Error::Hyper(_))), "{failed:?}");
        assert_eq!(server.accepted(), 1);
        assert_eq!(pool.idle(&authority), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_byte_timeouts_fire_on_new_and_reused_connections() {
        // Answers the first request of a connection, never the second.
        let server = serve(|mut stream| async move {
            if read_head(&mut stream).await {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
            let _ = read_head(&mut stream).await;
            std::future::pending::<()>().await;
        })
        .await;
        let black_hole = serve(|stream| async move {
            let _held = stream;
            std::future::pending::<()>().await;
        })
        .await;
        let pool = HttpConnectionPool::default();
        let limit = first_byte(Duration::from_millis(100));
        let fresh = pool.send(request(&black_hole, "/", empty()), limit).await;
        assert!(
            matches!(fresh, Err(Error::ConnectionReadTimeout)),
            "{fresh:?}"
        );

        fetch(&pool, request(&server, "/", empty())).await;
        let reused = pool.send(request(&server, "/", empty()), limit).await;
        assert!(
            matches!(reused, Err(Error::ConnectionReadTimeout)),
            "{reused:?}"
        );
        // That connection has a request out: it is not kept.
        assert_eq!(pool.idle(&server.authority()), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn between_bytes_timeouts_fire() {
        let server = serve(|mut stream| async move {
            if read_head(&mut stream).await {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
                    .await;
            }
            std::future::pending::<()>().await;
        })
        .await;
        let pool = HttpConnectionPool::default();
        let options = RequestOptions {
            between_bytes_timeout: Some(Duration::from_millis(100)),
            ..RequestOptions::default()
        };
        let response = pool
            .send(request(&server, "/", empty()), Some(options))
            .await
            .expect("a response head");
        let failed = text(response).await;
        assert!(
            matches!(failed, Err(Error::ConnectionReadTimeout)),
            "{failed:?}"
        );
        assert_eq!(pool.idle(&server.authority()), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_refused_maps_as_default_send_request_maps_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let url = format!("http://{address}/");
        let pooled = HttpConnectionPool::default()
            .send(
                http::Request::get(&url).body(empty()).expect("a request"),
                None,
            )
            .await
            .map(drop);
        let default = wasmtime_wasi_http::default_send_request(
            http::Request::get(&url).body(empty()).expect("a request"),
            None,
        )
        .await
        .map(drop);
        for result in [pooled, default] {
            assert!(
                matches!(&result, Err(Error::Connect(e)) if e.kind() == ErrorKind::ConnectionRefused),
                "{result:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let server = http_server(None).await;
        let pool = HttpConnectionPool::with_limits(PoolLimits {
            idle_timeout: Duration::from_millis(50),
            ..PoolLimits::default()
        });
        fetch(&pool, request(&server, "/", empty())).await;
        assert_eq!(pool.idle(&server.authority()), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle(&server.authority()), 0);
        let reply = fetch(&pool, request(&server, "/", empty())).await;
        assert!(reply.starts_with("1:"), "{reply}");
        assert_eq!(server.accepted(), 2);
    }
}
