//! The `redis` key-value backend (`type = "redis"`, `url`): several hosts share one store, so
//! breaker and rate-limit state holds across a fleet. As in Spin, every label on one server
//! shares its keyspace, and counters are Redis integers (`INCRBY`). Compare-and-swap is atomic
//! on the server (one Lua script on a real one). The server is the one chosen for the address:
//! the embedded broker when it serves that address for the Redis trigger.

use super::backend::{Backend, StoreError};
use crate::services::redis::{RedisAddress, RedisError, RedisServer, RedisServers};
use async_trait::async_trait;
use redis::Value;
use std::sync::{Arc, OnceLock};

/// A store on a Redis server (or on the embedded broker, when it serves the address).
pub struct RedisStore {
    servers: Arc<RedisServers>,
    address: RedisAddress,
    /// The server, once first used (the choice is made at start-up, before any instance runs).
    server: OnceLock<Arc<dyn RedisServer>>,
}

impl RedisStore {
    /// The store at `address`, served by whichever server `servers` chose for it.
    pub fn new(servers: Arc<RedisServers>, address: RedisAddress) -> Self {
        Self {
            servers,
            address,
            server: OnceLock::new(),
        }
    }

    fn server(&self) -> &Arc<dyn RedisServer> {
        self.server
            .get_or_init(|| self.servers.server(&self.address))
    }

    async fn run(&self, args: Vec<Vec<u8>>) -> Result<Value, StoreError> {
        self.server().command(&args).await.map_err(backend)
    }
}

fn backend(error: RedisError) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn arg(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn optional_bytes(value: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        other => Err(unexpected(&other)),
    }
}

fn integer(value: Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(n) => Ok(n),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(value: &Value) -> StoreError {
    StoreError::Backend(format!("unexpected reply from Redis: {value:?}"))
}

#[async_trait]
impl Backend for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        optional_bytes(self.run(vec![arg("GET"), arg(key)]).await?)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.run(vec![arg("SET"), arg(key), value.to_vec()])
            .await
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(vec![arg("DEL"), arg(key)]).await.map(drop)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(integer(self.run(vec![arg("EXISTS"), arg(key)]).await?)? > 0)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        match self.run(vec![arg("KEYS"), arg("*")]).await? {
            Value::Array(items) | Value::Set(items) => {
                let mut keys: Vec<String> = items
                    .into_iter()
                    .map(|item| match item {
                        Value::BulkString(bytes) => String::from_utf8(bytes)
                            .map_err(|_| StoreError::Backend("a key is not UTF-8".into())),
                        other => Err(unexpected(&other)),
                    })
                    .collect::<Result<_, _>>()?;
                keys.sort();
                Ok(keys)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let args = std::iter::once(arg("MGET"))
            .chain(keys.iter().map(|k| arg(k)))
            .collect();
        match self.run(args).await? {
            Value::Array(items) => items.into_iter().map(optional_bytes).collect(),
            other => Err(unexpected(&other)),
        }
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut args = vec![arg("MSET")];
        for (key, value) in pairs {
            args.push(arg(key));
            args.push(value.clone());
        }
        self.run(args).await.map(drop)
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let args = std::iter::once(arg("DEL"))
            .chain(keys.iter().map(|k| arg(k)))
            .collect();
        self.run(args).await.map(drop)
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let args = [arg("INCRBY"), arg(key), arg(&delta.to_string())];
        match self.server().command(&args).await {
            Err(RedisError::Type(_)) => Err(StoreError::NotACounter {
                key: key.to_owned(),
            }),
            other => integer(other.map_err(backend)?),
        }
    }

    async fn swap_if(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        self.server()
            .swap_if(key, expected, value)
            .await
            .map_err(backend)
    }
}
