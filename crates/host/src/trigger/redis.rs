//! The Redis trigger: every message on a subscribed channel runs each component listening on it,
//! each in a fresh instance. Unlike Spin, messages are handled concurrently (up to a bound), and
//! a lost connection is re-established with backoff instead of ending the trigger.

use crate::app::App;
use crate::capability::bindings::fermyon::spin::redis_types;
use crate::component::ComponentRuntime;
use crate::instance::InstanceState;
use crate::services::clock::HostClock;
use crate::services::redis::{RedisAddress, RedisServer};
use crate::settings::Backoff;
use bytes::Bytes;
use futures::StreamExt;
use orderly_manifest::ComponentId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use wasmtime::component::{HasSelf, Linker};

/// Adds the interface the Redis trigger's export uses (`fermyon:spin/redis-types`, types
/// only) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    redis_types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

// An interface of types only has no functions to implement.
impl redis_types::Host for InstanceState {}

/// One `[[trigger.redis]]`, with its address and channel resolved.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The server.
    pub address: RedisAddress,
    /// The channel.
    pub channel: String,
    /// The component run for each message.
    pub component: ComponentId,
}

struct Message {
    channel: String,
    payload: Bytes,
    components: Arc<[ComponentId]>,
}

/// Starts the trigger: subscribes to every channel (waiting for each address's first attempt,
/// so messages published once this returns are not missed while Redis is up), then handles
/// messages until `stop` changes. The returned task ends after the messages already received
/// are handled and running handlers finish (up to `drain`).
pub async fn start(
    app: Arc<App>,
    stop: watch::Receiver<()>,
    drain: Duration,
) -> tokio::task::JoinHandle<()> {
    let concurrency = app.redis_concurrency();
    let settings = &app.settings().redis;
    let (queue, received) = mpsc::channel::<Message>(settings.queue_capacity.max(1));
    // One subscription connection per address (URL), for all its channels.
    let mut by_address: BTreeMap<&str, (&RedisAddress, BTreeMap<String, Vec<ComponentId>>)> =
        BTreeMap::new();
    for subscription in app.redis_subscriptions() {
        by_address
            .entry(subscription.address.url.as_str())
            .or_insert_with(|| (&subscription.address, BTreeMap::new()))
            .1
            .entry(subscription.channel.clone())
            .or_default()
            .push(subscription.component.clone());
    }
    let mut listeners = Vec::new();
    let mut attempts = Vec::new();
    for (address, channels) in by_address.into_values() {
        let channels = channels
            .into_iter()
            .map(|(channel, components)| (channel, Arc::from(components)))
            .collect();
        let (attempted, first_attempt) = oneshot::channel();
        attempts.push(first_attempt);
        let listener = Listener {
            server: app.redis_servers().server(address),
            address: address.clone(),
            channels,
            reconnect: settings.reconnect,
            clock: Arc::clone(app.clock()),
        };
        listeners.push(tokio::spawn(listener.run(
            queue.clone(),
            stop.clone(),
            attempted,
        )));
    }
    drop(queue);
    for attempt in attempts {
        let _ = attempt.await;
    }
    tokio::spawn(dispatch(app, received, listeners, concurrency, stop, drain))
}

/// Runs handlers for received messages, at most `concurrency` at once, until the queue closes
/// (every listener stopped). From `stop` on, it has `drain` in all to handle what was already
/// received and let running handlers finish; what is left then is counted and logged.
async fn dispatch(
    app: Arc<App>,
    mut received: mpsc::Receiver<Message>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    concurrency: usize,
    mut stop: watch::Receiver<()>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let clock = Arc::clone(app.clock());
    let far_future = clock.now() + Duration::from_secs(3600 * 24 * 365);
    let mut deadline = far_future;
    loop {
        let message = tokio::select! {
            message = received.recv() => message,
            _ = stop.changed(), if deadline == far_future => {
                deadline = clock.now() + drain;
                continue;
            }
        };
        let Some(message) = message else { break };
        for id in message.components.iter() {
            let Ok(Ok(permit)) =
                tokio::time::timeout_at(deadline, Arc::clone(&permits).acquire_owned()).await
            else {
                let left = received.len() + 1;
                tracing::warn!(
                    left,
                    "shutdown deadline: Redis messages received but not handled"
                );
                return;
            };
            let (app, id, channel, payload) = (
                Arc::clone(&app),
                id.clone(),
                message.channel.clone(),
                message.payload.clone(),
            );
            tokio::spawn(async move {
                if let Some(component) = app.component(id.as_str()) {
                    deliver(&app, component, &channel, payload).await;
                }
                drop(permit);
            });
        }
    }
    for listener in listeners {
        let _ = listener.await;
    }
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline.min(clock.now() + drain), permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = drain.as_secs(),
            "Redis handlers did not finish in time"
        );
    }
}

/// The subscription to one address's channels.
struct Listener {
    server: Arc<dyn RedisServer>,
    address: RedisAddress,
    /// Channel → the components that get its messages.
    channels: BTreeMap<String, Arc<[ComponentId]>>,
    /// The waits between attempts to (re)subscribe.
    reconnect: Backoff,
    clock: Arc<dyn HostClock>,
}

impl Listener {
    /// Subscribes and forwards every message to `queue`, reconnecting with backoff whenever the
    /// connection is lost, until `stop` changes. `attempted` hears of the first attempt.
    async fn run(
        self,
        queue: mpsc::Sender<Message>,
        mut stop: watch::Receiver<()>,
        attempted: oneshot::Sender<()>,
    ) {
        let Self {
            server,
            address,
            channels,
            reconnect,
            clock,
        } = self;
        let mut attempted = Some(attempted);
        let names: Vec<String> = channels.keys().cloned().collect();
        let mut backoff = reconnect.first;
        let mut down_since: Option<tokio::time::Instant> = None;
        loop {
            let subscribed = tokio::select! {
                subscribed = server.subscribe(&names) => subscribed,
                _ = stop.changed() => return,
            };
            if let Some(attempted) = attempted.take() {
                let _ = attempted.send(());
            }
            match subscribed {
                Ok(mut stream) => {
                    match down_since.take() {
                        Some(since) => tracing::info!(
                            address = %address.url,
                            channels = ?names,
                            ms = (clock.now() - since).as_millis() as u64,
                            "reconnected to Redis"
                        ),
                        None => {
                            tracing::info!(address = %address.url, channels = ?names, "subscribed")
                        }
                    }
                    backoff = reconnect.first;
                    loop {
                        let next = tokio::select! {
                            next = stream.next() => next,
                            _ = stop.changed() => return,
                        };
                        let Some((channel, payload)) = next else {
                            break;
                        };
                        if let Some(components) = channels.get(&channel) {
                            let message = Message {
                                channel,
                                payload,
                                components: Arc::clone(components),
                            };
                            // A full queue holds the subscription back rather than growing
                            // without bound (the embedded broker's publishers wait; a real
                            // server's messages wait in the Redis client).
                            let sent = tokio::select! {
                                sent = queue.send(message) => sent.is_ok(),
                                _ = stop.changed() => false,
                            };
                            if !sent {
                                return;
                            }
                        }
                    }
                    tracing::warn!(address = %address.url, "lost the connection to Redis; reconnecting");
                    down_since = Some(clock.now());
                }
                Err(error) => {
                    if down_since.is_none() {
                        tracing::warn!(address = %address.url, %error, "cannot subscribe; retrying with backoff");
                        down_since = Some(clock.now());
                    } else {
                        tracing::debug!(address = %address.url, %error, "still cannot subscribe");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = reconnect.after(backoff);
        }
    }
}

/// Runs `component`'s handler on one message in a fresh instance; failures are logged with the
/// component, channel and message size.
async fn deliver(app: &Arc<App>, component: &ComponentRuntime, channel: &str, payload: Bytes) {
    let Some(pre) = component.redis.clone() else {
        return;
    };
    let settings = &app.settings().redis;
    let started = app.clock().now();
    let mut backoff = settings.pool_backoff.first;
    let mut store = app.new_store(component, &crate::trigger::http::chaining(app));
    let result = loop {
        let handler = match pre.instantiate_async(&mut store).await {
            Ok(handler) => handler,
            // Every instance slot is busy: wait for one instead of dropping the message.
            Err(error)
                if error
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some()
                    && app.clock().now() - started < settings.pool_wait =>
            {
                tokio::time::sleep(backoff).await;
                backoff = settings.pool_backoff.after(backoff);
                continue;
            }
            Err(error) => break Err(error),
        };
        break handler
            .fermyon_spin_inbound_redis()
            .call_handle_message(&mut store, &payload.to_vec())
            .await;
    };
    let ms = (app.clock().now() - started).as_secs_f64() * 1e3;
    match result {
        Ok(Ok(())) => tracing::debug!(
            target: "orderly::redis",
            component = %component.id, channel, bytes = payload.len(), ms, "message handled"
        ),
        Ok(Err(error)) => tracing::error!(
            target: "orderly::redis",
            component = %component.id, channel, bytes = payload.len(), ?error,
            "the Redis handler returned an error"
        ),
        Err(error) => tracing::error!(
            target: "orderly::redis",
            component = %component.id, channel, bytes = payload.len(),
            "the Redis handler failed: {error:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::SystemClock;
    use crate::services::lock::lock;
    use crate::services::redis::{Delivery, RedisError};
    use futures::stream::BoxStream;
    use redis::Value;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// A server whose subscriptions fail, but for the ones `up` lists (by attempt number),
    /// which succeed and end at once (a connection lost right away).
    struct Flaky {
        up: Vec<usize>,
        attempts: Mutex<Vec<Instant>>,
    }

    #[async_trait::async_trait]
    impl RedisServer for Flaky {
        async fn command(&self, _: &[Vec<u8>]) -> Result<Value, RedisError> {
            unreachable!("the trigger only subscribes")
        }

        async fn swap_if(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool, RedisError> {
            unreachable!("the trigger only subscribes")
        }

        async fn subscribe(
            &self,
            _: &[String],
        ) -> Result<BoxStream<'static, Delivery>, RedisError> {
            let mut attempts = lock(&self.attempts);
            attempts.push(Instant::now());
            if self.up.contains(&attempts.len()) {
                Ok(futures::stream::empty().boxed())
            } else {
                Err(RedisError::Other("connection refused".into()))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resubscribing_backs_off_50_ms_doubling_to_1_s_and_starts_over_once_up() {
        let server = Arc::new(Flaky {
            up: vec![8],
            attempts: Mutex::new(Vec::new()),
        });
        let listener = Listener {
            server: Arc::clone(&server) as Arc<dyn RedisServer>,
            address: RedisAddress::parse("redis://127.0.0.1:1").unwrap(),
            channels: BTreeMap::new(),
            reconnect: crate::settings::RedisSettings::default().reconnect,
            clock: Arc::new(SystemClock),
        };
        let (queue, _received) = mpsc::channel(1);
        let (stop, stopped) = watch::channel(());
        let (attempted, _) = oneshot::channel();
        let running = tokio::spawn(listener.run(queue, stopped, attempted));
        tokio::time::sleep(Duration::from_millis(3_800)).await;
        stop.send(()).unwrap();
        running.await.unwrap();
        let attempts = lock(&server.attempts).clone();
        let gaps: Vec<u128> = attempts
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_millis())
            .collect();
        // Down for seven attempts, up at the eighth (and lost at once), down again.
        assert_eq!(gaps, [50, 100, 200, 400, 800, 1000, 1000, 50, 100]);
    }
}
