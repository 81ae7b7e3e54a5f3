//! The Redis trigger: every message on a subscribed channel runs each component listening on it,
//! each in a fresh instance. Unlike Spin, messages are handled concurrently (up to a bound), and
//! a lost connection is re-established with backoff instead of ending the trigger. A message
//! that finds every instance slot taken waits for one (with backoff, up to a limit) rather than
//! being dropped.

use super::{Binding, Call, Export, Runner, WhenPoolFull, export, refuse_service_chaining};
use crate::capability::InstanceContext;
use crate::capability::bindings::fermyon::spin::redis_types;
use crate::instance::InstanceState;
use crate::services::clock::HostClock;
use crate::services::metrics::HostMetrics;
use crate::services::redis::{RedisAddress, RedisServer, RedisServers};
use crate::services::repeated_log::RepeatedLog;
use crate::settings::{Backoff, RedisSettings};
use bindings::{RedisHandler, RedisHandlerPre};
use bytes::Bytes;
use futures::StreamExt;
use orderly_manifest::{App as Manifest, ComponentId, ConfigProblem, ResolvedVariables, Template};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

/// The Redis trigger's world: Spin's (unversioned) `fermyon:spin/inbound-redis` export.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "orderly:app/redis-handler",
        exports: { default: async },
        with: { "fermyon:spin/redis-types": crate::capability::bindings::fermyon::spin::redis_types },
    });
}

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

/// The Redis trigger, planned from the manifest.
pub(crate) struct RedisPlan {
    subscriptions: Vec<Subscription>,
    /// Every address the application configures: the triggers' and
    /// `[application.trigger.redis]`'s.
    addresses: Vec<RedisAddress>,
}

impl RedisPlan {
    /// Resolves each `[[trigger.redis]]` (address and channel templates); bad addresses, and
    /// components that list service-chaining hosts, go to `problems`.
    pub(crate) fn new(
        manifest: &Manifest,
        variables: &ResolvedVariables,
        problems: &mut Vec<ConfigProblem>,
    ) -> Self {
        refuse_service_chaining(
            "redis",
            manifest
                .redis_triggers
                .iter()
                .map(|trigger| &trigger.component),
            manifest,
            variables,
            problems,
        );
        let parse = |template: &Template, location: String, problems: &mut Vec<ConfigProblem>| {
            let url = variables.render(template);
            let parsed = RedisAddress::parse(&url);
            if parsed.is_none() {
                problems.push(ConfigProblem::new(
                    location,
                    format!("{url:?} is not a Redis address"),
                    "write it as redis://host:port, e.g. redis://127.0.0.1:6379 (rediss://, Redis over TLS, is not supported)",
                ));
            }
            parsed
        };
        let app_address = manifest.redis_address.as_ref().and_then(|template| {
            parse(
                template,
                "[application.trigger.redis] address".into(),
                problems,
            )
        });
        let mut addresses: Vec<RedisAddress> = app_address.iter().cloned().collect();
        let mut subscriptions = Vec::new();
        for trigger in &manifest.redis_triggers {
            let location = format!("[[trigger.redis]] for `{}`", trigger.component);
            let address = match &trigger.address {
                Some(template) => parse(template, format!("{location} address"), problems),
                None if app_address.is_some() => app_address.clone(),
                None => {
                    problems.push(ConfigProblem::new(
                        location.clone(),
                        "has no Redis address".to_owned(),
                        "set address on the trigger, or [application.trigger.redis] address = \"redis://127.0.0.1:6379\"",
                    ));
                    None
                }
            };
            if let Some(address) = address {
                addresses.push(address.clone());
                subscriptions.push(Subscription {
                    address,
                    channel: variables.render(&trigger.channel),
                    component: trigger.component.clone(),
                });
            }
        }
        Self {
            subscriptions,
            addresses,
        }
    }

    /// Every Redis address the application configures (for choosing who serves each).
    pub(crate) fn addresses(&self) -> &[RedisAddress] {
        &self.addresses
    }

    /// The trigger over the app: every component it runs must export `inbound-redis` (else a
    /// problem).
    pub(crate) fn bind(
        self,
        binding: &Binding<'_>,
        problems: &mut Vec<ConfigProblem>,
    ) -> RedisTrigger {
        let app = binding.app;
        let settings = &binding.settings.redis;
        let mut handlers = BTreeMap::new();
        for subscription in &self.subscriptions {
            let id = &subscription.component;
            if handlers.contains_key(id) {
                continue;
            }
            if let Some(component) = app.component(id.as_str())
                && let Some(handler) = export::<RedisHandlerPre<InstanceState>>(component, problems)
            {
                handlers.insert(id.clone(), handler);
            }
        }
        RedisTrigger {
            // Every slot taken: wait for one instead of dropping the message.
            runner: binding.runner(
                "redis",
                WhenPoolFull::Wait {
                    backoff: settings.pool_backoff,
                    limit: settings.pool_wait,
                },
            ),
            slots: binding.settings.instances.slots,
            subscriptions: self.subscriptions,
            handlers,
            metrics: Arc::clone(binding.metrics),
            log: Arc::clone(binding.log),
        }
    }
}

impl Export for RedisHandlerPre<InstanceState> {
    type Instance = RedisHandler;

    const WHAT: &'static str = "fermyon:spin/inbound-redis";
    const FIX: &'static str = "build it as a Redis component (#[redis_component] in spin-sdk)";

    fn prepare(pre: InstancePre<InstanceState>) -> wasmtime::Result<Self> {
        RedisHandlerPre::new(pre)
    }

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<RedisHandler>> + Send {
        self.instantiate_async(store)
    }
}

/// The Redis trigger, over an app.
pub(crate) struct RedisTrigger {
    runner: Runner,
    /// Instance slots in the pool: the most messages handled at once.
    slots: u32,
    subscriptions: Vec<Subscription>,
    /// The Redis handler of every component a Redis trigger runs.
    handlers: BTreeMap<ComponentId, RedisHandlerPre<InstanceState>>,
    metrics: Arc<HostMetrics>,
    log: Arc<RepeatedLog>,
}

/// What the trigger runs when it starts.
pub(crate) struct RedisStart<'a> {
    /// Who serves each address (chosen already).
    pub(crate) servers: &'a RedisServers,
    pub(crate) settings: &'a RedisSettings,
    pub(crate) clock: &'a Arc<dyn HostClock>,
    /// How long shutdown waits for messages received and handlers running.
    pub(crate) drain: Duration,
}

struct Message {
    channel: String,
    payload: Bytes,
    components: Arc<[ComponentId]>,
}

impl RedisTrigger {
    /// The subscriptions, for the start-up listing.
    pub(crate) fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// Starts the trigger: subscribes to every channel (waiting for each address's first
    /// attempt, so messages published once this returns are not missed while Redis is up),
    /// then handles messages until `stop` changes. The returned task ends after the messages
    /// already received are handled and running handlers finish (up to `start.drain`).
    pub(crate) async fn start(
        self,
        start: RedisStart<'_>,
        stop: watch::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        let settings = start.settings;
        let concurrency = settings.concurrency.clamp(1, self.slots as usize);
        let (queue, received) = mpsc::channel::<Message>(settings.queue_capacity.max(1));
        // One subscription connection per address (URL), for all its channels.
        let mut by_address: BTreeMap<&str, (&RedisAddress, BTreeMap<String, Vec<ComponentId>>)> =
            BTreeMap::new();
        for subscription in &self.subscriptions {
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
                server: start.servers.server(address),
                address: address.clone(),
                channels,
                reconnect: settings.reconnect,
                clock: Arc::clone(start.clock),
                reconnects: self
                    .metrics
                    .redis_reconnects
                    .with_label_values(&[address.url.as_str()]),
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
        let handlers = Arc::new(Handlers {
            runner: self.runner,
            handlers: self.handlers,
            // As in Spin, a Redis-triggered instance gets no service chaining.
            context: InstanceContext::default(),
            metrics: self.metrics,
            log: self.log,
        });
        tokio::spawn(dispatch(
            handlers,
            received,
            listeners,
            concurrency,
            stop,
            start.drain,
        ))
    }
}

/// Calls `fermyon:spin/inbound-redis` with a message.
struct HandleMessage {
    payload: Vec<u8>,
}

impl Call<RedisHandler> for HandleMessage {
    type Output = Result<(), redis_types::Error>;

    async fn call(
        self,
        store: &mut Store<InstanceState>,
        handler: RedisHandler,
    ) -> wasmtime::Result<Self::Output> {
        handler
            .fermyon_spin_inbound_redis()
            .call_handle_message(store, &self.payload)
            .await
    }
}

/// What handling a message needs.
struct Handlers {
    runner: Runner,
    handlers: BTreeMap<ComponentId, RedisHandlerPre<InstanceState>>,
    context: InstanceContext,
    metrics: Arc<HostMetrics>,
    log: Arc<RepeatedLog>,
}

impl Handlers {
    /// Runs component `id`'s handler on one message in a fresh instance; failures are logged
    /// with the component, channel and message size (repeated ones thinned out).
    async fn deliver(&self, id: &ComponentId, channel: &str, payload: Bytes) {
        let (Some(component), Some(handler)) = (
            self.runner.app().component(id.as_str()),
            self.handlers.get(id),
        ) else {
            return;
        };
        let labels = [id.as_str(), channel];
        self.metrics.redis_messages.with_label_values(&labels).inc();
        let clock = self.runner.clock();
        let started = clock.now();
        let result = self
            .runner
            .run(
                component,
                handler,
                &self.context,
                HandleMessage {
                    payload: payload.to_vec(),
                },
            )
            .await;
        let ms = (clock.now() - started).as_secs_f64() * 1e3;
        let failure = match result {
            Ok(Ok(())) => {
                tracing::debug!(
                    target: "orderly::redis",
                    component = %id, channel, bytes = payload.len(), ms, "message handled"
                );
                return;
            }
            Ok(Err(error)) => format!("the Redis handler returned an error: {error:?}"),
            Err(error) => format!("the Redis handler failed: {error}"),
        };
        self.metrics.redis_errors.with_label_values(&labels).inc();
        if let Some(left_out) = self.log.admit(&format!("redis failed {id} {channel}")) {
            tracing::error!(
                target: "orderly::redis",
                component = %id, channel, bytes = payload.len(), left_out, "{failure}"
            );
        }
    }
}

/// Runs handlers for received messages, at most `concurrency` at once, until the queue closes
/// (every listener stopped). From `stop` on, it has `drain` in all to handle what was already
/// received and let running handlers finish; what is left then is counted and logged.
async fn dispatch(
    handlers: Arc<Handlers>,
    mut received: mpsc::Receiver<Message>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    concurrency: usize,
    mut stop: watch::Receiver<()>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let clock = Arc::clone(handlers.runner.clock());
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
            let (handlers, id, channel, payload) = (
                Arc::clone(&handlers),
                id.clone(),
                message.channel.clone(),
                message.payload.clone(),
            );
            tokio::spawn(async move {
                handlers.deliver(&id, &channel, payload).await;
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
    /// Subscriptions re-established after a lost connection.
    reconnects: prometheus::IntCounter,
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
            reconnects,
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
                        Some(since) => {
                            reconnects.inc();
                            tracing::info!(
                            address = %address.url,
                            channels = ?names,
                            ms = (clock.now() - since).as_millis() as u64,
                            "reconnected to Redis"
                            )
                        }
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
            reconnects: prometheus::IntCounter::new("reconnects", "reconnects").unwrap(),
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
