//! The embedded broker: an in-process stand-in for a Redis server, used when none answers at
//! start-up. Pub/sub reaches every subscriber in this process; the data commands components and
//! the key-value backend use (strings, counters, sets, compare-and-swap) work on an in-memory
//! map. Nothing is shared with other processes and nothing survives a restart.
//!
//! Each subscriber's queue is bounded: a publisher waits while a subscriber's queue is full
//! (backpressure), so a subscriber that falls behind slows its publishers down instead of
//! growing without bound.

use super::{Delivery, RedisError, RedisServer};
use crate::services::lock::lock;
use crate::settings::RedisSettings;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// The in-process broker.
pub struct EmbeddedBroker {
    subscribers: Mutex<HashMap<String, Vec<mpsc::Sender<Delivery>>>>,
    /// Held while a message is delivered, so every subscriber sees messages in one order.
    publishing: tokio::sync::Mutex<()>,
    /// How many messages a subscriber may have waiting.
    capacity: usize,
    data: Mutex<BTreeMap<Vec<u8>, Entry>>,
}

impl Default for EmbeddedBroker {
    fn default() -> Self {
        Self::with_capacity(RedisSettings::default().embedded_subscriber_capacity)
    }
}

enum Entry {
    Bytes(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
}

impl EmbeddedBroker {
    /// A broker whose subscribers may each have `capacity` messages waiting (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            subscribers: Mutex::new(HashMap::new()),
            publishing: tokio::sync::Mutex::new(()),
            capacity: capacity.max(1),
            data: Mutex::new(BTreeMap::new()),
        }
    }

    /// Delivers `payload` to every subscriber of `channel`, waiting while a subscriber's queue
    /// is full; returns how many received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> usize {
        let _turn = self.publishing.lock().await;
        let subscribers = lock(&self.subscribers)
            .get(channel)
            .cloned()
            .unwrap_or_default();
        let payload = Bytes::copy_from_slice(payload);
        let mut received = 0;
        for subscriber in &subscribers {
            if subscriber
                .send((channel.to_owned(), payload.clone()))
                .await
                .is_ok()
            {
                received += 1;
            }
        }
        if received < subscribers.len()
            && let Some(list) = lock(&self.subscribers).get_mut(channel)
        {
            list.retain(|sender| !sender.is_closed());
        }
        received
    }

    /// Subscribes to `channels`; messages arrive on the returned receiver until it is dropped.
    pub fn subscribe(&self, channels: &[String]) -> mpsc::Receiver<Delivery> {
        let (sender, receiver) = mpsc::channel(self.capacity);
        let mut subscribers = lock(&self.subscribers);
        for channel in channels {
            subscribers
                .entry(channel.clone())
                .or_default()
                .push(sender.clone());
        }
        receiver
    }

    /// Runs one command (`["SET", key, value]`) as Redis would, for the commands components
    /// and the key-value backend use: GET, SET, MGET, MSET, INCR, INCRBY, DEL, EXISTS, KEYS,
    /// SADD, SMEMBERS, SREM, PUBLISH, PING.
    pub async fn command(&self, args: &[Vec<u8>]) -> Result<Value, RedisError> {
        if let Some((name, rest)) = args.split_first()
            && name.eq_ignore_ascii_case(b"PUBLISH")
            && rest.len() == 2
        {
            let channel = String::from_utf8_lossy(&rest[0]).into_owned();
            return Ok(Value::Int(self.publish(&channel, &rest[1]).await as i64));
        }
        self.data_command(args)
    }

    /// Sets `key` to `value` if it holds `expected`; returns whether it did.
    pub fn swap_if(&self, key: &[u8], expected: &[u8], value: &[u8]) -> bool {
        let mut data = lock(&self.data);
        match data.get_mut(key) {
            Some(Entry::Bytes(current)) if current.as_slice() == expected => {
                *current = value.to_vec();
                true
            }
            _ => false,
        }
    }

    /// Every command but PUBLISH.
    fn data_command(&self, args: &[Vec<u8>]) -> Result<Value, RedisError> {
        let (name, args) = args
            .split_first()
            .ok_or_else(|| RedisError::Other("empty command".into()))?;
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(RedisError::Other(format!(
                    "ERR wrong number of arguments for '{}' command",
                    name.to_ascii_lowercase()
                )))
            }
        };
        let at_least = |n: usize| {
            if args.len() >= n { Ok(()) } else { arity(n) }
        };
        let mut data = lock(&self.data);
        match name.as_str() {
            "PING" => Ok(Value::SimpleString("PONG".into())),
            "GET" => {
                arity(1)?;
                match data.get(&args[0]) {
                    None => Ok(Value::Nil),
                    Some(Entry::Bytes(bytes)) => Ok(Value::BulkString(bytes.clone())),
                    Some(Entry::Set(_)) => Err(wrong_type()),
                }
            }
            "SET" => {
                arity(2)?;
                data.insert(args[0].clone(), Entry::Bytes(args[1].clone()));
                Ok(Value::Okay)
            }
            "INCR" | "INCRBY" => {
                let delta = if name == "INCR" {
                    arity(1)?;
                    1
                } else {
                    arity(2)?;
                    integer(&args[1])?
                };
                let current = match data.get(&args[0]) {
                    None => 0,
                    Some(Entry::Bytes(bytes)) => integer(bytes)?,
                    Some(Entry::Set(_)) => return Err(wrong_type()),
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    RedisError::Other("ERR increment or decrement would overflow".into())
                })?;
                data.insert(args[0].clone(), Entry::Bytes(next.to_string().into_bytes()));
                Ok(Value::Int(next))
            }
            "DEL" | "EXISTS" => {
                at_least(1)?;
                let count = args
                    .iter()
                    .filter(|key| {
                        if name == "DEL" {
                            data.remove(*key).is_some()
                        } else {
                            data.contains_key(*key)
                        }
                    })
                    .count();
                Ok(Value::Int(count as i64))
            }
            "SADD" | "SREM" => {
                at_least(2)?;
                let entry = data
                    .entry(args[0].clone())
                    .or_insert_with(|| Entry::Set(BTreeSet::new()));
                let Entry::Set(set) = entry else {
                    return Err(wrong_type());
                };
                let changed = args[1..]
                    .iter()
                    .filter(|member| {
                        if name == "SADD" {
                            set.insert((*member).clone())
                        } else {
                            set.remove(*member)
                        }
                    })
                    .count();
                if set.is_empty() {
                    data.remove(&args[0]);
                }
                Ok(Value::Int(changed as i64))
            }
            "SMEMBERS" => {
                arity(1)?;
                match data.get(&args[0]) {
                    None => Ok(Value::Array(Vec::new())),
                    Some(Entry::Set(set)) => Ok(Value::Array(
                        set.iter().cloned().map(Value::BulkString).collect(),
                    )),
                    Some(Entry::Bytes(_)) => Err(wrong_type()),
                }
            }
            "MGET" => {
                at_least(1)?;
                Ok(Value::Array(
                    args.iter()
                        .map(|key| match data.get(key) {
                            Some(Entry::Bytes(bytes)) => Value::BulkString(bytes.clone()),
                            _ => Value::Nil,
                        })
                        .collect(),
                ))
            }
            "MSET" => {
                if args.is_empty() || args.len() % 2 != 0 {
                    return Err(RedisError::Other(
                        "ERR wrong number of arguments for 'mset' command".into(),
                    ));
                }
                for pair in args.chunks(2) {
                    data.insert(pair[0].clone(), Entry::Bytes(pair[1].clone()));
                }
                Ok(Value::Okay)
            }
            "KEYS" => {
                arity(1)?;
                Ok(Value::Array(
                    data.keys()
                        .filter(|key| glob_matches(&args[0], key))
                        .cloned()
                        .map(Value::BulkString)
                        .collect(),
                ))
            }
            "PUBLISH" => Err(RedisError::Other(
                "ERR wrong number of arguments for 'publish' command".into(),
            )),
            other => Err(RedisError::Other(format!(
                "ERR the embedded broker does not support '{other}'; run a Redis server for it"
            ))),
        }
    }
}

#[async_trait]
impl RedisServer for EmbeddedBroker {
    async fn command(&self, args: &[Vec<u8>]) -> Result<Value, RedisError> {
        EmbeddedBroker::command(self, args).await
    }

    async fn swap_if(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<bool, RedisError> {
        Ok(EmbeddedBroker::swap_if(
            self,
            key.as_bytes(),
            expected,
            value,
        ))
    }

    async fn subscribe(
        &self,
        channels: &[String],
    ) -> Result<BoxStream<'static, Delivery>, RedisError> {
        let mut receiver = EmbeddedBroker::subscribe(self, channels);
        Ok(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed())
    }
}

/// Whether `key` matches the KEYS `pattern`: `*` (any run), `?` (any one byte), `\` escaping
/// the next byte; other bytes match themselves.
fn glob_matches(pattern: &[u8], key: &[u8]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((b'*', rest)) => (0..=key.len()).any(|skip| glob_matches(rest, &key[skip..])),
        Some((b'?', rest)) => !key.is_empty() && glob_matches(rest, &key[1..]),
        Some((b'\\', [escaped, rest @ ..])) | Some((escaped, rest)) => {
            key.first() == Some(escaped) && glob_matches(rest, &key[1..])
        }
    }
}

fn wrong_type() -> RedisError {
    RedisError::Type("WRONGTYPE Operation against a key holding the wrong kind of value".into())
}

fn integer(bytes: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| RedisError::Type("ERR value is not an integer or out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn run(broker: &EmbeddedBroker, parts: &[&str]) -> Result<Value, RedisError> {
        let args: Vec<Vec<u8>> = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
        broker.command(&args).await
    }

    #[tokio::test]
    async fn strings_counters_and_sets_behave_like_redis() {
        let broker = EmbeddedBroker::default();
        assert_eq!(run(&broker, &["GET", "k"]).await.unwrap(), Value::Nil);
        assert_eq!(run(&broker, &["set", "k", "v"]).await.unwrap(), Value::Okay);
        assert_eq!(
            run(&broker, &["GET", "k"]).await.unwrap(),
            Value::BulkString(b"v".to_vec())
        );
        assert_eq!(run(&broker, &["INCR", "n"]).await.unwrap(), Value::Int(1));
        assert_eq!(
            run(&broker, &["INCRBY", "n", "41"]).await.unwrap(),
            Value::Int(42)
        );
        assert!(matches!(
            run(&broker, &["INCR", "k"]).await,
            Err(RedisError::Type(_))
        ));
        assert_eq!(
            run(&broker, &["SADD", "s", "a", "b", "a"]).await.unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            run(&broker, &["SMEMBERS", "s"]).await.unwrap(),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::BulkString(b"b".to_vec())
            ])
        );
        assert_eq!(
            run(&broker, &["SREM", "s", "a", "z"]).await.unwrap(),
            Value::Int(1)
        );
        assert!(matches!(
            run(&broker, &["GET", "s"]).await,
            Err(RedisError::Type(_))
        ));
        assert_eq!(
            run(&broker, &["DEL", "k", "n", "missing"]).await.unwrap(),
            Value::Int(2)
        );
        assert_eq!(run(&broker, &["EXISTS", "k"]).await.unwrap(), Value::Int(0));
        assert!(run(&broker, &["GET"]).await.is_err());
        assert!(run(&broker, &["FLUSHALL"]).await.is_err());
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_message() {
        let broker = EmbeddedBroker::default();
        let mut first = broker.subscribe(&["orders".into()]);
        let mut second = broker.subscribe(&["orders".into(), "other".into()]);
        assert_eq!(broker.publish("orders", b"hello").await, 2);
        assert_eq!(
            run(&broker, &["PUBLISH", "other", "x"]).await.unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            first.recv().await.unwrap(),
            ("orders".into(), Bytes::from_static(b"hello"))
        );
        assert_eq!(second.recv().await.unwrap().1, Bytes::from_static(b"hello"));
        assert_eq!(
            second.recv().await.unwrap(),
            ("other".into(), Bytes::from_static(b"x"))
        );
        drop(first);
        assert_eq!(
            broker.publish("orders", b"again").await,
            1,
            "dropped subscribers are forgotten"
        );
    }

    #[tokio::test]
    async fn the_key_value_backends_commands_work_too() {
        let broker = EmbeddedBroker::default();
        assert_eq!(
            run(&broker, &["MSET", "a", "1", "b", "2", "c:x", "3"])
                .await
                .unwrap(),
            Value::Okay
        );
        assert_eq!(
            run(&broker, &["MGET", "a", "missing", "b"]).await.unwrap(),
            Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::Nil,
                Value::BulkString(b"2".to_vec())
            ])
        );
        let keys = |pattern: &'static str| {
            let broker = &broker;
            async move {
                match run(broker, &["KEYS", pattern]).await.unwrap() {
                    Value::Array(keys) => keys.len(),
                    other => panic!("{other:?}"),
                }
            }
        };
        assert_eq!(keys("*").await, 3);
        assert_eq!(keys("c:*").await, 1);
        assert_eq!(keys("?").await, 2);
        assert!(run(&broker, &["MSET", "a"]).await.is_err());
        assert!(broker.swap_if(b"a", b"1", b"10"));
        assert!(!broker.swap_if(b"a", b"1", b"11"), "a no longer holds 1");
        assert!(
            !broker.swap_if(b"missing", b"", b"x"),
            "an absent key is never swapped"
        );
        assert_eq!(
            run(&broker, &["GET", "a"]).await.unwrap(),
            Value::BulkString(b"10".to_vec())
        );
    }

    #[tokio::test]
    async fn a_full_subscriber_queue_holds_the_publisher_back() {
        let broker = Arc::new(EmbeddedBroker::with_capacity(2));
        let mut subscriber = broker.subscribe(&["jobs".into()]);
        assert_eq!(broker.publish("jobs", b"1").await, 1);
        assert_eq!(broker.publish("jobs", b"2").await, 1);
        let third = tokio::spawn({
            let broker = Arc::clone(&broker);
            async move { broker.publish("jobs", b"3").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !third.is_finished(),
            "the queue is full: the publisher waits"
        );
        assert_eq!(subscriber.recv().await.unwrap().1, Bytes::from_static(b"1"));
        assert_eq!(third.await.unwrap(), 1, "delivered once there was room");
        assert_eq!(subscriber.recv().await.unwrap().1, Bytes::from_static(b"2"));
        assert_eq!(subscriber.recv().await.unwrap().1, Bytes::from_static(b"3"));
    }
}
