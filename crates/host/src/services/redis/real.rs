//! A real Redis server at one address: one multiplexed connection, shared by every user and
//! reopened after it fails; plus a dedicated connection per subscription.

use super::{Delivery, RedisError, RedisServer};
use crate::services::lock::lock;
use crate::settings::RedisSettings;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Sets KEYS[1] to ARGV[2] if it holds ARGV[1]; returns 1 if it did.
static SWAP_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end",
    )
});

/// The server at one address (URL).
pub struct RealServer {
    url: String,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// How long connecting may take.
    connect_timeout: Duration,
    /// How long one command may take.
    response_timeout: Duration,
    /// How often a subscription is checked (see [`heartbeat`]).
    heartbeat: Duration,
}

impl RealServer {
    /// The server at `url`, connected on first use, with the timeouts of `settings`.
    pub fn new(url: &str, settings: &RedisSettings) -> Self {
        Self {
            url: url.to_owned(),
            connection: Mutex::new(None),
            connect_timeout: settings.connect_timeout,
            response_timeout: settings.response_timeout,
            heartbeat: settings.heartbeat,
        }
    }

    /// Whether a server is there at `url`: something accepted the connection within
    /// `connect_timeout`. A server that refuses the handshake or answers PING with an error
    /// (wrong password, still loading) is there too: the error is logged, and the server, not
    /// the embedded broker, is used.
    pub async fn reachable(url: &str, connect_timeout: Duration) -> bool {
        let Ok(client) = client(url) else {
            return false;
        };
        let config = AsyncConnectionConfig::new().set_connection_timeout(Some(connect_timeout));
        let connected = tokio::time::timeout(
            connect_timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let mut connection = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error))
                if !(error.is_io_error()
                    || error.is_connection_refusal()
                    || error.is_timeout()) =>
            {
                tracing::warn!(%url, %error, "a Redis server is there but refused the connection");
                return true;
            }
            _ => return false,
        };
        let answered: redis::RedisResult<Value> =
            redis::cmd("PING").query_async(&mut connection).await;
        if let Err(error) = answered {
            tracing::warn!(%url, %error, "the Redis server answered PING with an error");
        }
        true
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(connection) = lock(&self.connection).as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let connection = client(&self.url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(RedisError::from)?;
        Ok(lock(&self.connection).get_or_insert(connection).clone())
    }

    /// Drops the shared connection after a failure that may have broken it.
    fn failed(&self, error: redis::RedisError) -> RedisError {
        if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
            lock(&self.connection).take();
        }
        RedisError::from(error)
    }
}

#[async_trait]
impl RedisServer for RealServer {
    async fn command(&self, args: &[Vec<u8>]) -> Result<Value, RedisError> {
        let mut connection = self.connection().await?;
        let mut command = redis::Cmd::new();
        for arg in args {
            command.arg(arg.as_slice());
        }
        command
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))
    }

    async fn swap_if(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<bool, RedisError> {
        let mut connection = self.connection().await?;
        let mut invocation = SWAP_IF.prepare_invoke();
        invocation.key(key).arg(expected).arg(value);
        let reply: Value = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))?;
        match reply {
            Value::Int(swapped) => Ok(swapped == 1),
            other => Err(RedisError::Other(format!(
                "unexpected reply from Redis: {other:?}"
            ))),
        }
    }

    /// Subscribes on a connection of its own. The stream ends when the connection drops, or
    /// when the server stops answering the heartbeat PING (a connection that died without
    /// closing, e.g. behind a NAT or after a failover). The Redis client buffers what arrives
    /// until the stream is read.
    async fn subscribe(
        &self,
        channels: &[String],
    ) -> Result<BoxStream<'static, Delivery>, RedisError> {
        let url = &self.url;
        let timed_out = || RedisError::Other(format!("subscribing at {url} timed out"));
        let client = client(url)?;
        let pubsub = tokio::time::timeout(self.connect_timeout, client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())?
            .map_err(RedisError::from)?;
        let (mut sink, stream) = pubsub.split();
        for channel in channels {
            tokio::time::timeout(self.connect_timeout, sink.subscribe(channel))
                .await
                .map_err(|_| timed_out())?
                .map_err(RedisError::from)?;
        }
        let (dead, died) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(heartbeat(sink, dead, self.heartbeat));
        Ok(stream
            .map(|message| {
                (
                    message.get_channel_name().to_owned(),
                    Bytes::copy_from_slice(message.get_payload_bytes()),
                )
            })
            .take_until(died)
            .boxed())
    }
}

/// PINGs the subscription connection every `every`, allowing as long for the answer; reports
/// (through `dead`) the first PING that fails or goes unanswered, and stops when the
/// subscription is dropped.
async fn heartbeat(
    mut sink: redis::aio::PubSubSink,
    mut dead: tokio::sync::oneshot::Sender<()>,
    every: Duration,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = dead.closed() => return,
        }
        let answered = tokio::time::timeout(every, sink.ping::<Value>()).await;
        if !matches!(answered, Ok(Ok(_))) {
            let _ = dead.send(());
            return;
        }
    }
}

fn client(url: &str) -> Result<Client, RedisError> {
    Client::open(url).map_err(|_| RedisError::InvalidAddress(url.to_owned()))
}

impl From<redis::RedisError> for RedisError {
    fn from(error: redis::RedisError) -> Self {
        // Spin's contract: a value of the wrong kind, or a string that is not an integer for
        // INCR, is a type error.
        let message = error.to_string();
        if error.code() == Some("WRONGTYPE")
            || error.kind() == redis::ErrorKind::UnexpectedReturnType
            || message.contains("not an integer")
        {
            Self::Type(message)
        } else {
            Self::Other(message)
        }
    }
}
