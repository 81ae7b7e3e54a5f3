//! Connections to real Redis servers: one multiplexed connection per URL, shared by every
//! instance and reopened after it fails; plus dedicated connections for subscriptions.

use super::RedisError;
use super::embedded::Delivery;
use crate::services::lock::lock;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long connecting to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pooled connections, by URL.
#[derive(Default)]
pub struct ConnectionPool {
    connections: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl ConnectionPool {
    /// Runs one command on the server at `url`.
    pub async fn command(&self, url: &str, args: &[Vec<u8>]) -> Result<Value, RedisError> {
        let mut connection = self.connection(url).await?;
        let mut command = redis::Cmd::new();
        for arg in args {
            command.arg(arg.as_slice());
        }
        command
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failed(url, error))
    }

    /// Runs a Lua script on the server at `url`.
    pub async fn script(
        &self,
        url: &str,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let mut connection = self.connection(url).await?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.failed(url, error))
    }

    /// Subscribes to `channels` on a connection of its own. The stream ends when the
    /// connection drops, or when the server stops answering the heartbeat PING (a connection
    /// that died without closing, e.g. behind a NAT or after a failover).
    pub async fn subscribe(
        url: &str,
        channels: &[String],
    ) -> Result<impl Stream<Item = Delivery> + Send + use<>, RedisError> {
        let timed_out = || RedisError::Other(format!("subscribing at {url} timed out"));
        let client = client(url)?;
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())?
            .map_err(RedisError::from)?;
        let (mut sink, stream) = pubsub.split();
        for channel in channels {
            tokio::time::timeout(CONNECT_TIMEOUT, sink.subscribe(channel))
                .await
                .map_err(|_| timed_out())?
                .map_err(RedisError::from)?;
        }
        let (dead, died) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(heartbeat(sink, dead));
        Ok(stream
            .map(|message| {
                (
                    message.get_channel_name().to_owned(),
                    Bytes::copy_from_slice(message.get_payload_bytes()),
                )
            })
            .take_until(died))
    }

    /// Whether a server is there at `url`: something accepted the connection within
    /// [`CONNECT_TIMEOUT`]. A server that refuses the handshake or answers PING with an error
    /// (wrong password, still loading) is there too: the error is logged, and the server, not
    /// the embedded broker, is used.
    pub async fn reachable(&self, url: &str) -> bool {
        let Ok(client) = client(url) else {
            return false;
        };
        let config = AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT));
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
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

    async fn connection(&self, url: &str) -> Result<MultiplexedConnection, RedisError> {
        if let Some(connection) = lock(&self.connections).get(url) {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = client(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(RedisError::from)?;
        Ok(lock(&self.connections)
            .entry(url.to_owned())
            .or_insert(connection)
            .clone())
    }

    /// Drops the pooled connection after a failure that may have broken it.
    fn failed(&self, url: &str, error: redis::RedisError) -> RedisError {
        if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
            lock(&self.connections).remove(url);
        }
        RedisError::from(error)
    }
}

/// How often a subscription connection is checked, and how long the answer may take.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// PINGs the subscription connection every [`HEARTBEAT`]; reports (through `dead`) the first
/// PING that fails or goes unanswered, and stops when the subscription is dropped.
async fn heartbeat(mut sink: redis::aio::PubSubSink, mut dead: tokio::sync::oneshot::Sender<()>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = dead.closed() => return,
        }
        let answered = tokio::time::timeout(HEARTBEAT, sink.ping::<Value>()).await;
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
