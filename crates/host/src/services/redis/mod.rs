//! Redis: outbound connections (`fermyon:spin/redis@2.0.0`), the Redis trigger, and the
//! embedded broker that stands in for a Redis server when none answers at start-up.

mod address;
mod embedded;
mod real;

pub use address::RedisAddress;
pub use real::ConnectionPool;

use embedded::{Delivery, EmbeddedBroker};
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::Value;
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

/// A Redis failure, as components see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// The address is not a Redis URL, or not allowed.
    #[error("invalid Redis address {0}")]
    InvalidAddress(String),
    /// A value had the wrong type for the command.
    #[error("{0}")]
    Type(String),
    /// Anything else (connection, server error).
    #[error("{0}")]
    Other(String),
}

/// Who serves the Redis addresses the triggers and `[application.trigger.redis]` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// A Redis server when one answers at start-up, else the embedded broker.
    #[default]
    Auto,
    /// Always a Redis server (the trigger keeps retrying while none answers).
    Server,
    /// Always the embedded broker.
    Embedded,
}

impl FromStr for RedisMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "server" => Ok(Self::Server),
            "embedded" => Ok(Self::Embedded),
            other => Err(format!(
                "unknown Redis mode {other:?}; expected auto, server or embedded"
            )),
        }
    }
}

/// Routes every Redis call to a real server or to the embedded broker.
pub struct RedisHub {
    pool: Arc<ConnectionPool>,
    broker: EmbeddedBroker,
    /// The servers the embedded broker stands in for.
    embedded: Vec<RedisAddress>,
}

impl RedisHub {
    /// Decides, for each configured address, who serves it (probing in [`RedisMode::Auto`]),
    /// and logs the decision in one line per address.
    pub async fn start(
        mode: RedisMode,
        configured: &[RedisAddress],
        pool: Arc<ConnectionPool>,
    ) -> Self {
        let mut embedded = Vec::new();
        let servers: BTreeSet<&RedisAddress> = configured.iter().collect();
        for address in servers {
            let use_broker = match mode {
                RedisMode::Embedded => true,
                RedisMode::Server => false,
                RedisMode::Auto => !pool.reachable(&address.url).await,
            };
            if use_broker {
                tracing::info!(
                    address = %address.url,
                    "no Redis server in use at this address: the embedded broker serves it (in-process pub/sub and data; nothing is shared with other processes)"
                );
                embedded.push(address.clone());
            } else {
                tracing::info!(address = %address.url, "using the Redis server at this address");
            }
        }
        Self {
            pool,
            broker: EmbeddedBroker::default(),
            embedded,
        }
    }

    /// Whether the embedded broker serves `address`.
    pub fn is_embedded(&self, address: &RedisAddress) -> bool {
        self.embedded
            .iter()
            .any(|served| served.same_server(address))
    }

    /// Runs one command (`["GET", key]`) at `address`.
    pub async fn command(
        &self,
        address: &RedisAddress,
        args: &[Vec<u8>],
    ) -> Result<Value, RedisError> {
        if self.is_embedded(address) {
            self.broker.command(args)
        } else {
            self.pool.command(&address.url, args).await
        }
    }

    /// Subscribes to `channels` at `address`; the stream ends when the connection drops.
    pub async fn subscribe(
        &self,
        address: &RedisAddress,
        channels: &[String],
    ) -> Result<BoxStream<'static, Delivery>, RedisError> {
        if self.is_embedded(address) {
            let mut receiver = self.broker.subscribe(channels);
            Ok(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed())
        } else {
            Ok(ConnectionPool::subscribe(&address.url, channels)
                .await?
                .boxed())
        }
    }
}
