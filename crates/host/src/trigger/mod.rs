//! What runs components: the HTTP, Redis and cron triggers, above the app. Each trigger plans
//! its own state from the manifest (listing every problem), binds it to the loaded app
//! (checking that the components it runs export what it calls), then runs. Every trigger runs
//! an instance the same way, through a [`Runner`], and states what it does when every instance
//! slot is taken ([`WhenPoolFull`]).

pub(crate) mod cron;
pub(crate) mod http;
pub(crate) mod redis;

use crate::app::App;
use crate::capability::InstanceContext;
use crate::component::ComponentRuntime;
use crate::instance::InstanceState;
use crate::services::clock::HostClock;
use crate::services::metrics::HostMetrics;
use crate::services::repeated_log::RepeatedLog;
use crate::settings::{Backoff, HostSettings};
use orderly_manifest::{App as Manifest, ComponentId, ConfigProblem, ResolvedVariables};
use prometheus::{IntCounter, IntGauge};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// What a trigger bound to the loaded app is given.
pub(crate) struct Binding<'a> {
    pub(crate) app: &'a Arc<App>,
    pub(crate) settings: &'a HostSettings,
    pub(crate) clock: &'a Arc<dyn HostClock>,
    pub(crate) metrics: &'a Arc<HostMetrics>,
    /// Where repeated log lines are thinned out.
    pub(crate) log: &'a Arc<RepeatedLog>,
}

impl Binding<'_> {
    /// How the trigger named `trigger` runs instances, with `when_full` as its policy for a
    /// full pool.
    pub(crate) fn runner(&self, trigger: &str, when_full: WhenPoolFull) -> Runner {
        Runner::new(
            trigger,
            self.app,
            when_full,
            self.clock,
            self.settings.instances.deadline,
            self.metrics,
        )
    }
}

/// Refuses, as real Spin does, a manifest in which a component run by the `trigger` trigger
/// (Redis or cron) lists a service-chaining host (`*.spin.internal`, `<name>.spin.internal`)
/// in `allowed_outbound_hosts`: only HTTP-triggered instances may chain.
pub(crate) fn refuse_service_chaining<'a>(
    trigger: &str,
    components: impl IntoIterator<Item = &'a ComponentId>,
    manifest: &Manifest,
    variables: &ResolvedVariables,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for id in components {
        let Some(spec) = manifest.components.get(id).filter(|_| seen.insert(id)) else {
            continue;
        };
        let chaining = spec
            .allowed_outbound_hosts
            .iter()
            .map(|template| variables.render(template))
            .any(|entry| names_service_chaining(&entry));
        if chaining {
            problems.push(ConfigProblem::new(
                format!("[component.{id}] allowed_outbound_hosts"),
                format!(
                    "This application requires the following features that are not available in this version of the '{trigger}' trigger: local_service_chaining"
                ),
                format!(
                    "a {trigger}-triggered component cannot use service chaining (real Spin refuses the app too): remove the *.spin.internal entry and call the app's routes by full URL, e.g. from a variable"
                ),
            ));
        }
    }
}

/// Whether an `allowed_outbound_hosts` entry names a service-chaining host, as Spin reads it.
fn names_service_chaining(entry: &str) -> bool {
    let rest = entry.split_once("://").map_or(entry, |(_, rest)| rest);
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host.to_ascii_lowercase().ends_with(".spin.internal")
}

/// What a trigger does when every instance slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenPoolFull {
    /// Give up at once; the trigger answers for it (HTTP: 503 with `Retry-After`; cron: the
    /// run is logged and skipped).
    GiveUp,
    /// Try again after each wait of `backoff`, for up to `limit` in all, then give up (Redis:
    /// a message is not dropped while a slot may free up).
    Wait {
        /// The waits between attempts.
        backoff: Backoff,
        /// How long to keep trying.
        limit: Duration,
    },
}

/// Why an instance did not run to the end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstanceError {
    /// Every instance slot was taken, for as long as the trigger's policy waits.
    #[error("every instance slot is taken")]
    PoolFull(#[source] wasmtime::Error),
    /// Instantiating or calling the component failed (a trap, for one).
    #[error("the component failed: {}", .0.root_cause())]
    Failed(#[source] wasmtime::Error),
    /// The instance ran past its deadline and was stopped.
    #[error("the component ran past its deadline ({} s) and was stopped", .0.as_secs_f64())]
    DeadlineExceeded(Duration),
}

/// A component's export that a trigger calls, prepared from the linked component.
pub(crate) trait Export: Clone + Send + Sync + 'static {
    /// The instance whose export the trigger calls.
    type Instance: Send;

    /// What the export is, for a component that lacks it.
    const WHAT: &'static str;
    /// How to give a component the export.
    const FIX: &'static str;

    /// Finds the export in a linked component.
    fn prepare(pre: InstancePre<InstanceState>) -> wasmtime::Result<Self>;

    /// Instantiates the component in `store`.
    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;
}

/// `component`'s export `E`; a component a trigger runs without it is a problem.
pub(crate) fn export<E: Export>(
    component: &ComponentRuntime,
    problems: &mut Vec<ConfigProblem>,
) -> Option<E> {
    match E::prepare(component.pre.clone()) {
        Ok(export) => Some(export),
        Err(error) => {
            problems.push(ConfigProblem::new(
                format!("[component.{}] source", component.id),
                format!(
                    "a trigger runs it, but it does not export {}: {error:#}",
                    E::WHAT
                ),
                E::FIX,
            ));
            None
        }
    }
}

/// What a trigger does with a running instance: calls its export (with the request, the
/// message, the cron event).
pub(crate) trait Call<I>: Send {
    /// What the export returns.
    type Output: Send;

    /// Calls the export of `instance`, which runs in `store`.
    fn call(
        self,
        store: &mut Store<InstanceState>,
        instance: I,
    ) -> impl Future<Output = wasmtime::Result<Self::Output>> + Send;
}

/// How a trigger runs its instances: over the app, under the trigger's policy for a full pool,
/// each within the instance deadline, counted in the host's metrics. The one way every trigger
/// runs a component.
pub(crate) struct Runner {
    app: Arc<App>,
    when_full: WhenPoolFull,
    clock: Arc<dyn HostClock>,
    deadline: Duration,
    in_use: IntGauge,
    refused: IntCounter,
}

impl Runner {
    /// Runs instances of `app` for `trigger` (its metrics label).
    pub(crate) fn new(
        trigger: &str,
        app: &Arc<App>,
        when_full: WhenPoolFull,
        clock: &Arc<dyn HostClock>,
        deadline: Duration,
        metrics: &HostMetrics,
    ) -> Self {
        Self {
            app: Arc::clone(app),
            when_full,
            clock: Arc::clone(clock),
            deadline,
            in_use: metrics.instances_in_use.with_label_values(&[trigger]),
            refused: metrics.instances_refused.with_label_values(&[trigger]),
        }
    }

    /// The app the instances belong to.
    pub(crate) fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The clock.
    pub(crate) fn clock(&self) -> &Arc<dyn HostClock> {
        &self.clock
    }

    /// Runs one instance of `component`: a fresh store (given `context`), the component
    /// instantiated in it (under the trigger's policy for a full pool), then `call` on its
    /// export; all of it stopped at the deadline.
    pub(crate) async fn run<E: Export, C: Call<E::Instance>>(
        &self,
        component: &ComponentRuntime,
        export: &E,
        context: &InstanceContext,
        call: C,
    ) -> Result<C::Output, InstanceError> {
        let mut store = self.app.new_store(component, context);
        let running = async {
            let mut instantiate = Instantiate {
                export,
                store: &mut store,
            };
            let instance = with_free_slot(
                self.when_full,
                self.clock.as_ref(),
                is_pool_full,
                &mut instantiate,
            )
            .await?;
            self.in_use.inc();
            let _in_use = Decrement(&self.in_use);
            call.call(&mut store, instance)
                .await
                .map_err(InstanceError::Failed)
        };
        // A busy guest yields at every epoch tick (`App::new_store`), so the deadline stops a
        // loop as surely as a wait.
        let result = tokio::time::timeout(self.deadline, running)
            .await
            .unwrap_or(Err(InstanceError::DeadlineExceeded(self.deadline)));
        if matches!(result, Err(InstanceError::PoolFull(_))) {
            self.refused.inc();
        }
        result
    }
}

/// Takes one off a gauge when dropped (an instance ended, or was stopped).
struct Decrement<'a>(&'a IntGauge);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Whether instantiating failed because every instance slot is taken.
fn is_pool_full(error: &wasmtime::Error) -> bool {
    error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
}

/// Something that may find every instance slot taken: instantiating, or a test's stand-in.
trait Attempt: Send {
    /// What a successful attempt gives.
    type Output;

    /// One attempt.
    fn attempt(&mut self) -> impl Future<Output = wasmtime::Result<Self::Output>> + Send;
}

/// Instantiating `export` in `store`.
struct Instantiate<'a, E> {
    export: &'a E,
    store: &'a mut Store<InstanceState>,
}

impl<E: Export> Attempt for Instantiate<'_, E> {
    type Output = E::Instance;

    fn attempt(&mut self) -> impl Future<Output = wasmtime::Result<E::Instance>> + Send {
        self.export.instantiate(self.store)
    }
}

/// Attempts until one succeeds, fails for another reason than a full pool (`full`), or
/// `when_full` gives up.
async fn with_free_slot<A: Attempt>(
    when_full: WhenPoolFull,
    clock: &dyn HostClock,
    full: fn(&wasmtime::Error) -> bool,
    attempt: &mut A,
) -> Result<A::Output, InstanceError> {
    let started = clock.now();
    let mut wait = match when_full {
        WhenPoolFull::GiveUp => Duration::ZERO,
        WhenPoolFull::Wait { backoff, .. } => backoff.first,
    };
    loop {
        match attempt.attempt().await {
            Ok(output) => return Ok(output),
            Err(error) if full(&error) => match when_full {
                WhenPoolFull::Wait { backoff, limit } if clock.now() - started < limit => {
                    tokio::time::sleep(wait).await;
                    wait = backoff.after(wait);
                }
                _ => return Err(InstanceError::PoolFull(error)),
            },
            Err(error) => return Err(InstanceError::Failed(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::SystemClock;
    use tokio::time::Instant;

    fn full(error: &wasmtime::Error) -> bool {
        error.to_string() == "full"
    }

    /// A pool that stays full until `free_at` (from `started`), or fails otherwise with
    /// `trap`; the times of the attempts, in ms.
    struct Pool {
        started: Instant,
        free_at: Duration,
        trap: bool,
        times: Vec<u128>,
    }

    impl Attempt for Pool {
        type Output = ();

        fn attempt(&mut self) -> impl Future<Output = wasmtime::Result<()>> + Send {
            let elapsed = Instant::now() - self.started;
            self.times.push(elapsed.as_millis());
            let result = if self.trap {
                Err(wasmtime::Error::msg("trap"))
            } else if elapsed >= self.free_at {
                Ok(())
            } else {
                Err(wasmtime::Error::msg("full"))
            };
            std::future::ready(result)
        }
    }

    async fn attempts(
        when_full: WhenPoolFull,
        free_at: Duration,
        trap: bool,
    ) -> (Vec<u128>, &'static str) {
        let mut pool = Pool {
            started: Instant::now(),
            free_at,
            trap,
            times: Vec::new(),
        };
        let outcome = match with_free_slot(when_full, &SystemClock, full, &mut pool).await {
            Ok(()) => "ran",
            Err(InstanceError::PoolFull(_)) => "pool full",
            Err(InstanceError::Failed(_)) => "failed",
            Err(InstanceError::DeadlineExceeded(_)) => "deadline",
        };
        (pool.times, outcome)
    }

    fn redis_policy() -> WhenPoolFull {
        let redis = crate::settings::RedisSettings::default();
        WhenPoolFull::Wait {
            backoff: redis.pool_backoff,
            limit: redis.pool_wait,
        }
    }

    #[test]
    fn service_chaining_hosts_are_the_spin_internal_ones() {
        for entry in [
            "http://*.spin.internal",
            "http://orders.spin.internal",
            "https://Orders.Spin.Internal:8080",
            "*://*.spin.internal:*",
        ] {
            assert!(names_service_chaining(entry), "{entry}");
        }
        for entry in [
            "http://127.0.0.1:3000",
            "*://*:*",
            "redis://spin.internal.example.com",
        ] {
            assert!(!names_service_chaining(entry), "{entry}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn giving_up_tries_once() {
        let tried = attempts(WhenPoolFull::GiveUp, Duration::from_secs(1), false).await;
        assert_eq!(tried, (vec![0], "pool full"));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_backs_off_until_a_slot_frees_or_the_limit_passes() {
        let tried = attempts(redis_policy(), Duration::from_millis(700), false).await;
        assert_eq!(tried, (vec![0, 50, 150, 350, 750], "ran"));
        let (times, outcome) = attempts(redis_policy(), Duration::from_secs(3600), false).await;
        assert_eq!(outcome, "pool full", "gives up after the limit");
        assert_eq!(&times[..7], [0, 50, 150, 350, 750, 1550, 2550]);
        let last = *times.last().unwrap();
        assert!((30_000..31_000).contains(&last), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_are_not_retried() {
        let tried = attempts(redis_policy(), Duration::ZERO, true).await;
        assert_eq!(tried, (vec![0], "failed"));
    }
}
