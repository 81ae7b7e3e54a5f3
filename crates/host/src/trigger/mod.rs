//! What runs components: the HTTP, Redis and cron triggers, above the app. Each trigger plans
//! its own state from the manifest (listing every problem), binds it to the loaded app
//! (checking that the components it runs export what it calls), then runs. Every trigger runs
//! an instance the same way, [`run_instance`], and states what it does when every instance slot
//! is taken ([`WhenPoolFull`]).

pub(crate) mod cron;
pub(crate) mod http;
pub(crate) mod redis;

use crate::app::App;
use crate::capability::InstanceContext;
use crate::component::ComponentRuntime;
use crate::instance::InstanceState;
use crate::services::clock::HostClock;
use crate::settings::Backoff;
use orderly_manifest::ConfigProblem;
use std::future::Future;
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::InstancePre;

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
#[derive(Debug)]
pub(crate) enum InstanceError {
    /// Every instance slot was taken, for as long as the trigger's policy waits.
    PoolFull(wasmtime::Error),
    /// Instantiating or calling the component failed (a trap, for one).
    Failed(wasmtime::Error),
}

impl InstanceError {
    /// The underlying error, for the log.
    pub(crate) fn error(&self) -> &wasmtime::Error {
        match self {
            Self::PoolFull(error) | Self::Failed(error) => error,
        }
    }
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

/// Runs one instance of `component`: a fresh store (given `context`), the component
/// instantiated in it (under the trigger's policy for a full pool, `when_full`), then `call`
/// on its export. The one way every trigger runs a component.
pub(crate) async fn run_instance<E: Export, C: Call<E::Instance>>(
    app: &App,
    component: &ComponentRuntime,
    export: &E,
    when_full: WhenPoolFull,
    context: &InstanceContext,
    clock: &dyn HostClock,
    call: C,
) -> Result<C::Output, InstanceError> {
    let mut store = app.new_store(component, context);
    let mut instantiate = Instantiate {
        export,
        store: &mut store,
    };
    let instance = with_free_slot(when_full, clock, is_pool_full, &mut instantiate).await?;
    call.call(&mut store, instance)
        .await
        .map_err(InstanceError::Failed)
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
