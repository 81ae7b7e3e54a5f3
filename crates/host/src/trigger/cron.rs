//! The cron trigger (`[[trigger.cron]]`, as the `spin-trigger-cron` plugin reads it): each
//! schedule runs its component in a fresh instance, calling `handle-cron-event`. A run that
//! would overlap the previous one of the same trigger is skipped and logged, not stacked.

use crate::app::App;
use crate::capability::bindings::fermyon::spin_cron::cron_types::{self, Metadata};
use crate::component::ComponentRuntime;
use crate::instance::InstanceState;
use chrono::{DateTime, Utc};
use orderly_manifest::ComponentId;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::component::{HasSelf, Linker};

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

/// Runs every cron job until `stop` changes, then waits (up to `drain`) for running jobs.
pub async fn run(app: Arc<App>, stop: watch::Receiver<()>, drain: Duration) {
    let jobs: Vec<_> = app
        .cron_jobs()
        .iter()
        .map(|job| tokio::spawn(schedule(Arc::clone(&app), job.clone(), stop.clone(), drain)))
        .collect();
    for job in jobs {
        let _ = job.await;
    }
}

async fn schedule(app: Arc<App>, job: CronJob, mut stop: watch::Receiver<()>, drain: Duration) {
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    // The last slot handled: a wall clock that steps back must not make it fire again.
    let mut last: Option<DateTime<Utc>> = None;
    tracing::info!(component = %job.component, "cron job scheduled");
    loop {
        let now = app.clock().wall();
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
            tracing::warn!(
                component = %job.component,
                scheduled = %next,
                "cron run skipped: the previous run is still going"
            );
            continue;
        }
        let (app, id) = (Arc::clone(&app), job.component.clone());
        current = Some(tokio::spawn(async move {
            if let Some(component) = app.component(id.as_str()) {
                fire(&app, component, next).await;
            }
        }));
    }
    if let Some(run) = current
        && tokio::time::timeout(drain, run).await.is_err()
    {
        tracing::warn!(component = %job.component, "a cron run did not finish in time");
    }
}

/// Runs one event in a fresh instance; failures are logged with the component.
async fn fire(app: &Arc<App>, component: &ComponentRuntime, scheduled: DateTime<Utc>) {
    let Some(pre) = component.cron.clone() else {
        return;
    };
    let started = app.clock().now();
    let timestamp = u64::try_from(app.clock().wall().timestamp()).unwrap_or(0);
    let mut store = app.new_store(component, &crate::trigger::http::chaining(app));
    let result = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance
            .call_handle_cron_event(&mut store, Metadata { timestamp })
            .await
    }
    .await;
    let ms = (app.clock().now() - started).as_secs_f64() * 1e3;
    match result {
        Ok(Ok(())) => {
            tracing::info!(target: "orderly::cron", component = %component.id, %scheduled, ms, "cron run")
        }
        Ok(Err(error)) => tracing::error!(
            target: "orderly::cron", component = %component.id, %scheduled, ?error,
            "the cron handler returned an error"
        ),
        Err(error) => tracing::error!(
            target: "orderly::cron", component = %component.id, %scheduled,
            "the cron handler failed: {error:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
}
