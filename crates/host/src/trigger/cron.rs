//! The cron trigger (`[[trigger.cron]]`, as the `spin-trigger-cron` plugin reads it): each
//! schedule runs its component in a fresh instance, calling `handle-cron-event`. A run that
//! would overlap the previous one of the same trigger is skipped and logged, not stacked; a
//! run that finds every instance slot taken is logged and skipped too. Time comes from the
//! host's clock, so the schedule is tested on paused time.

use super::{
    Binding, Call, Export, InstanceError, Runner, WhenPoolFull, export, refuse_service_chaining,
};
use crate::capability::InstanceContext;
use crate::capability::bindings::fermyon::spin_cron::cron_types::{self, Metadata};
use crate::instance::InstanceState;
use crate::services::clock::HostClock;
use crate::services::metrics::HostMetrics;
use crate::services::repeated_log::RepeatedLog;
use bindings::{SpinCron, SpinCronPre};
use chrono::{DateTime, Utc};
use orderly_manifest::{App as Manifest, ComponentId, ConfigProblem, ResolvedVariables};
use prometheus::IntCounter;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

/// The cron trigger's world: the `handle-cron-event` export of the `spin-trigger-cron` plugin.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron",
        exports: { default: async },
        with: { "fermyon:spin-cron/cron-types": crate::capability::bindings::fermyon::spin_cron::cron_types },
    });
}

/// Adds the interface the cron trigger's export uses (`fermyon:spin-cron/cron-types`, types
/// only) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    cron_types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

// An interface of types only has no functions to implement.
impl cron_types::Host for InstanceState {}

/// A parsed schedule: six fields, seconds first (`*/5 * * * * *`); a seventh, the year, is
/// allowed.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "{expression:?} has {fields} fields; a cron expression has six, seconds first (e.g. \"*/5 * * * * *\")"
            ));
        }
        cron::Schedule::from_str(expression)
            .map(|schedule| Self { schedule })
            .map_err(|error| format!("{expression:?} is not a cron expression: {error}"))
    }
}

impl CronSchedule {
    /// The first time strictly after `now` the schedule fires, if it ever does again.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&now).next()
    }
}

/// One `[[trigger.cron]]`, with its schedule parsed.
#[derive(Debug, Clone)]
pub struct CronJob {
    /// The component run on schedule.
    pub component: ComponentId,
    /// When.
    pub schedule: CronSchedule,
}

/// The cron trigger, planned from the manifest.
pub(crate) struct CronPlan {
    jobs: Vec<CronJob>,
    /// `(expression, component)` for every `[[trigger.cron]]`, for the start-up listing.
    schedules: Vec<(String, ComponentId)>,
}

impl CronPlan {
    /// The jobs of `manifest`; bad expressions, and components that list service-chaining
    /// hosts, go to `problems`.
    pub(crate) fn new(
        manifest: &Manifest,
        variables: &ResolvedVariables,
        problems: &mut Vec<ConfigProblem>,
    ) -> Self {
        refuse_service_chaining(
            "cron",
            manifest
                .cron_triggers
                .iter()
                .map(|trigger| &trigger.component),
            manifest,
            variables,
            problems,
        );
        let jobs = manifest
            .cron_triggers
            .iter()
            .filter_map(
                |trigger| match trigger.cron_expression.parse::<CronSchedule>() {
                    Ok(schedule) => Some(CronJob {
                        component: trigger.component.clone(),
                        schedule,
                    }),
                    Err(reason) => {
                        problems.push(ConfigProblem::new(
                            format!("[[trigger.cron]] for `{}` cron_expression", trigger.component),
                            reason,
                            "use six fields, seconds first: sec min hour day-of-month month day-of-week",
                        ));
                        None
                    }
                },
            )
            .collect();
        let schedules = manifest
            .cron_triggers
            .iter()
            .map(|trigger| (trigger.cron_expression.clone(), trigger.component.clone()))
            .collect();
        Self { jobs, schedules }
    }

    /// The schedules, for the start-up listing: `(expression, component)`.
    pub(crate) fn schedules(&self) -> &[(String, ComponentId)] {
        &self.schedules
    }

    /// The trigger over the app: every component it runs must export `handle-cron-event`
    /// (else a problem).
    pub(crate) fn bind(
        self,
        binding: &Binding<'_>,
        problems: &mut Vec<ConfigProblem>,
    ) -> CronTrigger {
        let app = binding.app;
        let mut checked = std::collections::BTreeMap::new();
        let mut jobs = Vec::new();
        for job in self.jobs {
            let Some(component) = app.component(job.component.as_str()) else {
                continue;
            };
            let handler = checked
                .entry(job.component.clone())
                .or_insert_with(|| export::<SpinCronPre<InstanceState>>(component, problems))
                .clone();
            if let Some(handler) = handler {
                jobs.push((job, handler));
            }
        }
        CronTrigger {
            // A run that finds every slot taken is logged and skipped, as an overlapping one is.
            runner: Arc::new(binding.runner("cron", WhenPoolFull::GiveUp)),
            jobs,
            metrics: Arc::clone(binding.metrics),
            log: Arc::clone(binding.log),
        }
    }
}

impl Export for SpinCronPre<InstanceState> {
    type Instance = SpinCron;

    const WHAT: &'static str = "handle-cron-event (world fermyon:spin-cron/spin-cron)";
    const FIX: &'static str =
        "export handle-cron-event as the spin-trigger-cron plugin's world declares it";

    fn prepare(pre: InstancePre<InstanceState>) -> wasmtime::Result<Self> {
        SpinCronPre::new(pre)
    }

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<SpinCron>> + Send {
        self.instantiate_async(store)
    }
}

/// The cron trigger, over an app.
pub(crate) struct CronTrigger {
    runner: Arc<Runner>,
    jobs: Vec<(CronJob, SpinCronPre<InstanceState>)>,
    metrics: Arc<HostMetrics>,
    log: Arc<RepeatedLog>,
}

impl CronTrigger {
    /// Runs every job until `stop` changes, then waits (up to `drain`) for running jobs. As in
    /// Spin, a cron-triggered instance gets no service chaining.
    pub(crate) async fn run(
        self,
        clock: Arc<dyn HostClock>,
        stop: watch::Receiver<()>,
        drain: Duration,
    ) {
        let runs: Vec<_> = self
            .jobs
            .into_iter()
            .map(|(job, handler)| {
                let component = job.component.as_str();
                let run = CronRun {
                    runner: Arc::clone(&self.runner),
                    component: job.component.clone(),
                    handler,
                    context: InstanceContext::default(),
                    runs: self.metrics.cron_runs.with_label_values(&[component]),
                    no_slot: self
                        .metrics
                        .cron_skips
                        .with_label_values(&[component, "no_slot"]),
                    log: Arc::clone(&self.log),
                };
                let overlap = self
                    .metrics
                    .cron_skips
                    .with_label_values(&[component, "overlap"]);
                let (clock, stop) = (Arc::clone(&clock), stop.clone());
                tokio::spawn(async move {
                    let run = Arc::new(run);
                    schedule(&job, clock.as_ref(), stop, drain, &overlap, |slot| {
                        tokio::spawn(Arc::clone(&run).fire(slot))
                    })
                    .await;
                })
            })
            .collect();
        for run in runs {
            let _ = run.await;
        }
    }
}

/// Fires `job` on its schedule until `stop` changes: `fire(slot)` starts the run for a slot
/// and hands back its task. A slot fires once, even when the wall clock steps back; a slot
/// that comes while the previous run is still going is skipped, logged and counted in
/// `skipped`. Once stopped, waits (up to `drain`) for the last run.
async fn schedule(
    job: &CronJob,
    clock: &dyn HostClock,
    mut stop: watch::Receiver<()>,
    drain: Duration,
    skipped: &IntCounter,
    mut fire: impl FnMut(DateTime<Utc>) -> tokio::task::JoinHandle<()>,
) {
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    // The last slot handled: a wall clock that steps back must not make it fire again.
    let mut last: Option<DateTime<Utc>> = None;
    tracing::info!(component = %job.component, "cron job scheduled");
    loop {
        let now = clock.wall();
        let Some(next) = job
            .schedule
            .next_after(last.map_or(now, |last| last.max(now)))
        else {
            tracing::info!(component = %job.component, "the cron schedule has no further runs");
            break;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        last = Some(next);
        if current.as_ref().is_some_and(|run| !run.is_finished()) {
            skipped.inc();
            tracing::warn!(
                component = %job.component,
                scheduled = %next,
                "cron run skipped: the previous run is still going"
            );
            continue;
        }
        current = Some(fire(next));
    }
    if let Some(run) = current
        && tokio::time::timeout(drain, run).await.is_err()
    {
        tracing::warn!(component = %job.component, "a cron run did not finish in time");
    }
}

/// Calls `handle-cron-event`.
struct HandleCronEvent(Metadata);

impl Call<SpinCron> for HandleCronEvent {
    type Output = Result<(), cron_types::Error>;

    async fn call(
        self,
        store: &mut Store<InstanceState>,
        cron: SpinCron,
    ) -> wasmtime::Result<Self::Output> {
        cron.call_handle_cron_event(store, self.0).await
    }
}

/// What one job's runs need.
struct CronRun {
    runner: Arc<Runner>,
    component: ComponentId,
    handler: SpinCronPre<InstanceState>,
    context: InstanceContext,
    /// Runs started.
    runs: IntCounter,
    /// Runs skipped for want of an instance slot.
    no_slot: IntCounter,
    log: Arc<RepeatedLog>,
}

impl CronRun {
    /// Runs one event in a fresh instance; failures are logged with the component (repeated
    /// ones thinned out).
    async fn fire(self: Arc<Self>, scheduled: DateTime<Utc>) {
        let Some(component) = self.runner.app().component(self.component.as_str()) else {
            return;
        };
        self.runs.inc();
        let clock = self.runner.clock();
        let started = clock.now();
        let timestamp = u64::try_from(clock.wall().timestamp()).unwrap_or(0);
        let result = self
            .runner
            .run(
                component,
                &self.handler,
                &self.context,
                HandleCronEvent(Metadata { timestamp }),
            )
            .await;
        let ms = (clock.now() - started).as_secs_f64() * 1e3;
        let id = &component.id;
        let failure = match result {
            Ok(Ok(())) => {
                tracing::info!(target: "orderly::cron", component = %id, %scheduled, ms, "cron run");
                return;
            }
            Ok(Err(error)) => format!("the cron handler returned an error: {error:?}"),
            Err(error @ InstanceError::PoolFull(_)) => {
                self.no_slot.inc();
                format!("cron run skipped: {error}")
            }
            Err(error) => format!("the cron handler failed: {error}"),
        };
        if let Some(left_out) = self.log.admit(&format!("cron failed {id}")) {
            tracing::error!(target: "orderly::cron", component = %id, %scheduled, left_out, "{failure}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::TestClock;
    use crate::services::lock::lock;
    use chrono::{TimeDelta, TimeZone};
    use std::sync::Mutex;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap()
    }

    #[test]
    fn six_fields_seconds_first() {
        let every_five: CronSchedule = "*/5 * * * * *".parse().unwrap();
        assert_eq!(every_five.next_after(at(10, 0, 3)), Some(at(10, 0, 5)));
        assert_eq!(every_five.next_after(at(10, 0, 5)), Some(at(10, 0, 10)));
        let odd: CronSchedule = "1/2 * * * * *".parse().unwrap();
        assert_eq!(odd.next_after(at(10, 0, 0)), Some(at(10, 0, 1)));
        let daily: CronSchedule = "0 30 9 * * *".parse().unwrap();
        assert_eq!(
            daily.next_after(at(10, 0, 0)),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap())
        );
    }

    #[test]
    fn refuses_five_field_and_malformed_expressions() {
        assert!(
            "* * * * *"
                .parse::<CronSchedule>()
                .unwrap_err()
                .contains("six")
        );
        assert!("61 * * * * *".parse::<CronSchedule>().is_err());
        assert!("every minute".parse::<CronSchedule>().is_err());
    }

    /// What `schedule` fires, on paused time, over `for_ms` milliseconds from 12:00:00.400;
    /// each run takes `run_ms`; `during` runs beside it (to step the clock).
    async fn fired(
        clock: Arc<TestClock>,
        run_ms: u64,
        for_ms: u64,
        during: impl Future<Output = ()>,
    ) -> Vec<DateTime<Utc>> {
        let job = CronJob {
            component: ComponentId::parse("ticker").unwrap(),
            schedule: "* * * * * *".parse().unwrap(),
        };
        let fired = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(());
        let scheduler = tokio::spawn({
            let (clock, fired) = (Arc::clone(&clock), Arc::clone(&fired));
            async move {
                let skipped = IntCounter::new("skipped", "runs skipped").unwrap();
                schedule(
                    &job,
                    clock.as_ref(),
                    stopped,
                    Duration::ZERO,
                    &skipped,
                    |slot| {
                        lock(&fired).push(slot);
                        tokio::spawn(tokio::time::sleep(Duration::from_millis(run_ms)))
                    },
                )
                .await
            }
        });
        tokio::join!(tokio::time::sleep(Duration::from_millis(for_ms)), during);
        stop.send(()).unwrap();
        scheduler.await.unwrap();
        lock(&fired).clone()
    }

    fn noon_and(ms: i64) -> DateTime<Utc> {
        at(12, 0, 0) + TimeDelta::milliseconds(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn fires_every_slot_on_time() {
        let clock = Arc::new(TestClock::starting_at(noon_and(400)));
        let slots = fired(clock, 10, 3_800, async {}).await;
        assert_eq!(
            slots,
            [at(12, 0, 1), at(12, 0, 2), at(12, 0, 3), at(12, 0, 4)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_would_overlap_the_last_is_skipped() {
        // Each run takes 2.5 s on a once-a-second schedule: two of every three slots overlap.
        let clock = Arc::new(TestClock::starting_at(noon_and(400)));
        let slots = fired(clock, 2_500, 6_800, async {}).await;
        assert_eq!(slots, [at(12, 0, 1), at(12, 0, 4), at(12, 0, 7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_stepping_back_never_fires_a_slot_twice() {
        let clock = Arc::new(TestClock::starting_at(noon_and(400)));
        let step_back = async {
            tokio::time::sleep(Duration::from_millis(2_100)).await;
            clock.step(TimeDelta::seconds(-2));
        };
        // Slots 1 and 2 fire; the wall clock then reads 12:00:00.5 again, and the next slots
        // are 3 (already waited for) and 4, never 1 or 2 again.
        let slots = fired(Arc::clone(&clock), 10, 6_500, step_back).await;
        assert_eq!(
            slots,
            [at(12, 0, 1), at(12, 0, 2), at(12, 0, 3), at(12, 0, 4)]
        );
    }
}
