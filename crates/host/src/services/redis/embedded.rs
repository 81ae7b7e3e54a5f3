//! The embedded broker: an in-process stand-in for a Redis server, used when none answers at
//! start-up. Pub/sub reaches every subscriber in this process; the data commands components use
//! (strings, counters, sets) work on an in-memory map. Nothing is shared with other processes
//! and nothing survives a restart.

use super::RedisError;
use crate::services::lock::lock;
use bytes::Bytes;
use redis::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// A message delivered to a subscriber: its channel and payload.
pub type Delivery = (String, Bytes);

/// The in-process broker.
#[derive(Default)]
pub struct EmbeddedBroker {
    subscribers: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Delivery>>>>,
    data: Mutex<BTreeMap<Vec<u8>, Entry>>,
}

enum Entry {
    Bytes(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
}

impl EmbeddedBroker {
    /// Delivers `payload` to every subscriber of `channel`; returns how many received it.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> usize {
        let mut subscribers = lock(&self.subscribers);
        let Some(list) = subscribers.get_mut(channel) else {
            return 0;
        };
        let payload = Bytes::copy_from_slice(payload);
        list.retain(|sender| sender.send((channel.to_owned(), payload.clone())).is_ok());
        list.len()
    }

    /// Subscribes to `channels`; messages arrive on the returned receiver until it is dropped.
    pub fn subscribe(&self, channels: &[String]) -> mpsc::UnboundedReceiver<Delivery> {
        let (sender, receiver) = mpsc::unbounded_channel();
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
    /// use: GET, SET, INCR, INCRBY, DEL, EXISTS, SADD, SMEMBERS, SREM, PUBLISH, PING.
    pub fn command(&self, args: &[Vec<u8>]) -> Result<Value, RedisError> {
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
            "PUBLISH" => {
                arity(2)?;
                drop(data);
                let channel = String::from_utf8_lossy(&args[0]).into_owned();
                Ok(Value::Int(self.publish(&channel, &args[1]) as i64))
            }
            other => Err(RedisError::Other(format!(
                "ERR the embedded broker does not support '{other}'; run a Redis server for it"
            ))),
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

    fn run(broker: &EmbeddedBroker, parts: &[&str]) -> Result<Value, RedisError> {
        let args: Vec<Vec<u8>> = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
        broker.command(&args)
    }

    #[test]
    fn strings_counters_and_sets_behave_like_redis() {
        let broker = EmbeddedBroker::default();
        assert_eq!(run(&broker, &["GET", "k"]).unwrap(), Value::Nil);
        assert_eq!(run(&broker, &["set", "k", "v"]).unwrap(), Value::Okay);
        assert_eq!(
            run(&broker, &["GET", "k"]).unwrap(),
            Value::BulkString(b"v".to_vec())
        );
        assert_eq!(run(&broker, &["INCR", "n"]).unwrap(), Value::Int(1));
        assert_eq!(
            run(&broker, &["INCRBY", "n", "41"]).unwrap(),
            Value::Int(42)
        );
        assert!(matches!(
            run(&broker, &["INCR", "k"]),
            Err(RedisError::Type(_))
        ));
        assert_eq!(
            run(&broker, &["SADD", "s", "a", "b", "a"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            run(&broker, &["SMEMBERS", "s"]).unwrap(),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::BulkString(b"b".to_vec())
            ])
        );
        assert_eq!(
            run(&broker, &["SREM", "s", "a", "z"]).unwrap(),
            Value::Int(1)
        );
        assert!(matches!(
            run(&broker, &["GET", "s"]),
            Err(RedisError::Type(_))
        ));
        assert_eq!(
            run(&broker, &["DEL", "k", "n", "missing"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(run(&broker, &["EXISTS", "k"]).unwrap(), Value::Int(0));
        assert!(run(&broker, &["GET"]).is_err());
        assert!(run(&broker, &["FLUSHALL"]).is_err());
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_message() {
        let broker = EmbeddedBroker::default();
        let mut first = broker.subscribe(&["orders".into()]);
        let mut second = broker.subscribe(&["orders".into(), "other".into()]);
        assert_eq!(broker.publish("orders", b"hello"), 2);
        assert_eq!(
            run(&broker, &["PUBLISH", "other", "x"]).unwrap(),
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
            broker.publish("orders", b"again"),
            1,
            "dropped subscribers are forgotten"
        );
    }
}
