//! `fermyon:spin/redis@2.0.0`: outbound Redis for components, gated by
//! `allowed_outbound_hosts` (`redis://host:port`), served by whichever server
//! [`RedisServers`] chose for the address (a real server, or the embedded broker).

use crate::capability::bindings::fermyon::spin2_0_0::redis as wit;
use crate::capability::{
    Capability, GrantContext, Has, InstanceContext, OpenContext, View, ViewOf,
};
use crate::services::allowed_hosts::AllowedHosts;
use crate::services::redis::{RedisAddress, RedisError, RedisServer, RedisServers};
use orderly_manifest::ConfigProblem;
use redis::Value;
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

/// Outbound Redis for the application: the servers it reaches.
#[derive(Default)]
pub struct OutboundRedis {
    servers: Arc<RedisServers>,
}

/// What one component (and each of its instances) may reach.
#[derive(Clone)]
pub struct RedisAccess {
    servers: Arc<RedisServers>,
    allowed: Arc<AllowedHosts>,
}

/// An open connection (the `connection` resource): the server at its address.
pub struct RedisConnection(Arc<dyn RedisServer>);

/// What the Redis host functions see of an instance.
pub type RedisView<'a> = View<'a, RedisAccess>;

impl Capability for OutboundRedis {
    type Grant = RedisAccess;
    type Instance = RedisAccess;

    fn open(cx: &OpenContext<'_>) -> Result<Self, Vec<ConfigProblem>> {
        Ok(Self {
            servers: Arc::clone(cx.redis),
        })
    }

    fn grant(self: &Arc<Self>, cx: &GrantContext<'_>) -> Result<RedisAccess, Vec<ConfigProblem>> {
        Ok(RedisAccess {
            servers: Arc::clone(&self.servers),
            allowed: Arc::clone(cx.allowed_hosts),
        })
    }

    fn instance(grant: &RedisAccess, _: &InstanceContext) -> RedisAccess {
        grant.clone()
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<RedisAccess>>(linker, <T as Has<Self>>::part)
    }
}

impl From<RedisError> for wit::Error {
    fn from(error: RedisError) -> Self {
        match error {
            RedisError::InvalidAddress(_) => Self::InvalidAddress,
            RedisError::Type(_) => Self::TypeError,
            RedisError::Other(message) => Self::Other(message),
        }
    }
}

type WasmResult<T> = wasmtime::Result<Result<T, wit::Error>>;

impl RedisView<'_> {
    /// Runs a command on the connection's server (the view is not held across the call).
    fn run(
        &self,
        connection: &Resource<RedisConnection>,
        args: Vec<Vec<u8>>,
    ) -> wasmtime::Result<impl Future<Output = Result<Value, RedisError>> + Send + use<>> {
        let server = Arc::clone(&self.table.get(connection)?.0);
        Ok(async move { server.command(&args).await })
    }
}

impl RedisView<'_> {
    /// `SADD` or `SREM`: the number of members added or removed (`&mut self`, so the future
    /// stays `Send`).
    async fn members(
        &mut self,
        command: &str,
        connection: &Resource<RedisConnection>,
        key: &str,
        values: &[String],
    ) -> WasmResult<u32> {
        let args = [bytes(command), bytes(key)]
            .into_iter()
            .chain(values.iter().map(|v| bytes(v)))
            .collect();
        let reply = self.run(connection, args)?;
        Ok(reply.await.map_err(Into::into).and_then(count))
    }
}

/// Why `execute` refuses a command: connections are shared by every instance, so commands that
/// change a connection's state, or block it, would reach other components.
fn refused(command: &str) -> Option<&'static str> {
    const STATEFUL: &[&str] = &[
        "SELECT",
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH",
        "UNWATCH",
        "AUTH",
        "HELLO",
        "CLIENT",
        "RESET",
        "QUIT",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        "MONITOR",
        "SYNC",
        "PSYNC",
        "READONLY",
        "READWRITE",
    ];
    const BLOCKING: &[&str] = &[
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BLMOVE",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "WAIT",
        "WAITAOF",
    ];
    let command = command.to_ascii_uppercase();
    if STATEFUL.contains(&command.as_str()) {
        Some("it changes the state of a connection that other instances share")
    } else if BLOCKING.contains(&command.as_str()) {
        Some("it blocks a connection that other instances share")
    } else {
        None
    }
}

fn bytes(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

fn integer(value: Value) -> Result<i64, wit::Error> {
    match value {
        Value::Int(n) => Ok(n),
        _ => Err(wit::Error::TypeError),
    }
}

fn count(value: Value) -> Result<u32, wit::Error> {
    integer(value).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn text(value: Value) -> Result<String, wit::Error> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| wit::Error::TypeError),
        Value::SimpleString(s) => Ok(s),
        _ => Err(wit::Error::TypeError),
    }
}

/// Flattens a reply into `execute`'s result list.
fn results(value: Value, out: &mut Vec<wit::RedisResult>) {
    match value {
        Value::Nil => out.push(wit::RedisResult::Nil),
        Value::Int(n) => out.push(wit::RedisResult::Int64(n)),
        Value::BulkString(b) => out.push(wit::RedisResult::Binary(b)),
        Value::SimpleString(s) => out.push(wit::RedisResult::Status(s)),
        Value::Okay => out.push(wit::RedisResult::Status("OK".into())),
        Value::Boolean(b) => out.push(wit::RedisResult::Int64(i64::from(b))),
        Value::Double(d) => out.push(wit::RedisResult::Binary(d.to_string().into_bytes())),
        Value::Array(items) | Value::Set(items) => items.into_iter().for_each(|v| results(v, out)),
        Value::Map(pairs) => pairs.into_iter().for_each(|(k, v)| {
            results(k, out);
            results(v, out);
        }),
        Value::VerbatimString { text, .. } => out.push(wit::RedisResult::Binary(text.into_bytes())),
        Value::Attribute { data, .. } => results(*data, out),
        other => out.push(wit::RedisResult::Binary(format!("{other:?}").into_bytes())),
    }
}

impl wit::Host for RedisView<'_> {}

impl wit::HostConnection for RedisView<'_> {
    async fn open(&mut self, address: String) -> WasmResult<Resource<RedisConnection>> {
        let Some(parsed) = RedisAddress::parse(&address) else {
            return Ok(Err(wit::Error::InvalidAddress));
        };
        if !self
            .access
            .allowed
            .allows("redis", &parsed.host, Some(parsed.port))
        {
            tracing::warn!(%address, "outbound Redis denied: the address is not in allowed_outbound_hosts");
            return Ok(Err(wit::Error::InvalidAddress));
        }
        let server = self.access.servers.server(&parsed);
        Ok(Ok(self.table.push(RedisConnection(server))?))
    }

    async fn publish(
        &mut self,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> WasmResult<()> {
        let reply = self
            .run(
                &connection,
                vec![bytes("PUBLISH"), bytes(&channel), payload],
            )?
            .await;
        Ok(reply.map(drop).map_err(Into::into))
    }

    async fn get(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> WasmResult<Option<Vec<u8>>> {
        Ok(
            match self
                .run(&connection, vec![bytes("GET"), bytes(&key)])?
                .await
            {
                Ok(Value::Nil) => Ok(None),
                Ok(Value::BulkString(value)) => Ok(Some(value)),
                Ok(_) => Err(wit::Error::TypeError),
                Err(error) => Err(error.into()),
            },
        )
    }

    async fn set(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> WasmResult<()> {
        let reply = self
            .run(&connection, vec![bytes("SET"), bytes(&key), value])?
            .await;
        Ok(reply.map(drop).map_err(Into::into))
    }

    async fn incr(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> WasmResult<i64> {
        let reply = self
            .run(&connection, vec![bytes("INCR"), bytes(&key)])?
            .await;
        Ok(reply.map_err(Into::into).and_then(integer))
    }

    async fn del(
        &mut self,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> WasmResult<u32> {
        let args = std::iter::once(bytes("DEL"))
            .chain(keys.iter().map(|k| bytes(k)))
            .collect();
        Ok(self
            .run(&connection, args)?
            .await
            .map_err(Into::into)
            .and_then(count))
    }

    async fn sadd(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> WasmResult<u32> {
        self.members("SADD", &connection, &key, &values).await
    }

    async fn smembers(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> WasmResult<Vec<String>> {
        Ok(
            match self
                .run(&connection, vec![bytes("SMEMBERS"), bytes(&key)])?
                .await
            {
                Ok(Value::Array(items) | Value::Set(items)) => {
                    items.into_iter().map(text).collect()
                }
                Ok(_) => Err(wit::Error::TypeError),
                Err(error) => Err(error.into()),
            },
        )
    }

    async fn srem(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> WasmResult<u32> {
        self.members("SREM", &connection, &key, &values).await
    }

    async fn execute(
        &mut self,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<wit::RedisParameter>,
    ) -> WasmResult<Vec<wit::RedisResult>> {
        if let Some(reason) = refused(&command) {
            return Ok(Err(wit::Error::Other(format!(
                "{command} is not available through orderly up's outbound Redis: {reason}"
            ))));
        }
        let args = std::iter::once(bytes(&command))
            .chain(arguments.into_iter().map(|argument| match argument {
                wit::RedisParameter::Int64(n) => n.to_string().into_bytes(),
                wit::RedisParameter::Binary(b) => b,
            }))
            .collect();
        Ok(self
            .run(&connection, args)?
            .await
            .map_err(Into::into)
            .map(|value| {
                let mut out = Vec::new();
                results(value, &mut out);
                out
            }))
    }

    async fn drop(&mut self, connection: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}
