//! Connections to real Redis servers: one multiplexed connection per URL, shared by every
//! instance and reopened after it fails; plus dedicated connections for subscriptions.

use super::RedisError;
use super::broker::Delivery;
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

    /// Subscribes to `channels` on a connection of its own; the stream ends when the
    /// connection drops.
    pub async fn subscribe(
        url: &str,
        channels: &[String],
    ) -> Result<impl Stream<Item = Delivery> + Send + use<>, RedisError> {
        let client = client(url)?;
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| RedisError::Other(format!("connecting to {url} timed out")))?
            .map_err(RedisError::from)?;
        for channel in channels {
            pubsub.subscribe(channel).await.map_err(RedisError::from)?;
        }
        Ok(pubsub.into_on_message().map(|message| {
            (
                message.get_channel_name().to_owned(),
                Bytes::copy_from_slice(message.get_payload_bytes()),
            )
        }))
    }

    /// Whether a server answers PING at `url` within [`CONNECT_TIMEOUT`].
    pub async fn answers(&self, url: &str) -> bool {
        let ping = [b"PING".to_vec()];
        matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, self.command(url, &ping)).await,
            Ok(Ok(_))
        )
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

fn client(url: &str) -> Result<Client, RedisError> {
    Client::open(url).map_err(|_| RedisError::InvalidAddress(url.to_owned()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map is only read or replaced whole; a poisoned lock still holds a valid map.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl From<redis::RedisError> for RedisError {
    fn from(error: redis::RedisError) -> Self {
        // Spin's contract: a value of the wrong kind, or a string that is not an integer for
        // INCR, is a type error.
        let not_an_integer = error.to_string().contains("not an integer");
        if error.code() == Some("WRONGTYPE")
            || error.kind() == redis::ErrorKind::UnexpectedReturnType
            || not_an_integer
        {
            Self::Type(error.to_string())
        } else {
            Self::Other(error.to_string())
        }
    }
}
