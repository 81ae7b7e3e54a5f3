//! Redis servers, real or embedded, behind one trait ([`RedisServer`]). [`RedisServers`] decides
//! once, at start-up, who serves each address the application configures (a Redis server, or
//! the embedded broker when none answers), and hands every user the same choice: the outbound
//! capability, the key-value backend and the trigger alike.
//!
//! An address's server is its `host:port` ([`RedisAddress::same_server`]): that is what the
//! choice is made for. The rest of the URL (credentials, database) says how to connect to a real
//! server, so each address (URL) gets its own connection.

mod address;
mod embedded;
mod real;

pub use address::RedisAddress;
pub(crate) use embedded::EmbeddedBroker;
pub(crate) use real::RealServer;

use crate::services::lock::lock;
use crate::settings::RedisSettings;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use redis::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A message delivered to a subscriber: its channel and payload.
pub type Delivery = (String, Bytes);

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

/// A Redis server: a real one at one address, or the embedded broker.
#[async_trait]
pub trait RedisServer: Send + Sync {
    /// Runs one command (`["GET", key]`).
    async fn command(&self, args: &[Vec<u8>]) -> Result<Value, RedisError>;
    /// Sets `key` to `value` only if it still holds `expected`, atomically on the server;
    /// returns whether it did.
    async fn swap_if(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<bool, RedisError>;
    /// Subscribes to `channels`; the stream ends when the connection drops.
    async fn subscribe(
        &self,
        channels: &[String],
    ) -> Result<BoxStream<'static, Delivery>, RedisError>;
}

/// Who serves each Redis address: chosen once per address, the same for every user.
pub struct RedisServers {
    mode: RedisMode,
    settings: RedisSettings,
    broker: Arc<EmbeddedBroker>,
    /// The servers the embedded broker stands in for (decided by [`RedisServers::choose`]).
    embedded: Mutex<Vec<RedisAddress>>,
    /// Each address's server once asked for, by URL.
    chosen: Mutex<HashMap<String, Arc<dyn RedisServer>>>,
}

impl Default for RedisServers {
    fn default() -> Self {
        Self::new(RedisMode::default(), &RedisSettings::default())
    }
}

impl RedisServers {
    /// Servers chosen in `mode`; until [`RedisServers::choose`], every address is a real server.
    pub fn new(mode: RedisMode, settings: &RedisSettings) -> Self {
        Self {
            mode,
            settings: settings.clone(),
            broker: Arc::new(EmbeddedBroker::with_capacity(
                settings.embedded_subscriber_capacity,
            )),
            embedded: Mutex::new(Vec::new()),
            chosen: Mutex::new(HashMap::new()),
        }
    }

    /// Decides who serves each of the `configured` addresses (probing in [`RedisMode::Auto`]),
    /// and logs the decision in one line per server. Call once, before anything uses Redis.
    pub async fn choose(&self, configured: &[RedisAddress]) {
        let mut servers: Vec<&RedisAddress> = Vec::new();
        for address in configured {
            if !servers.iter().any(|seen| seen.same_server(address)) {
                servers.push(address);
            }
        }
        let mut embedded = Vec::new();
        for address in servers {
            let use_broker = match self.mode {
                RedisMode::Embedded => true,
                RedisMode::Server => false,
                RedisMode::Auto => {
                    !RealServer::reachable(&address.url, self.settings.connect_timeout).await
                }
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
        *lock(&self.embedded) = embedded;
        lock(&self.chosen).clear();
    }

    /// Whether the embedded broker serves `address`.
    pub fn is_embedded(&self, address: &RedisAddress) -> bool {
        lock(&self.embedded)
            .iter()
            .any(|served| served.same_server(address))
    }

    /// The server at `address`.
    pub fn server(&self, address: &RedisAddress) -> Arc<dyn RedisServer> {
        if let Some(server) = lock(&self.chosen).get(&address.url) {
            return Arc::clone(server);
        }
        let server: Arc<dyn RedisServer> = if self.is_embedded(address) {
            Arc::clone(&self.broker) as Arc<dyn RedisServer>
        } else {
            Arc::new(RealServer::new(&address.url, &self.settings))
        };
        Arc::clone(
            lock(&self.chosen)
                .entry(address.url.clone())
                .or_insert(server),
        )
    }
}
