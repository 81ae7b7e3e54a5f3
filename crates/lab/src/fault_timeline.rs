//! What an experiment did to the app and when (faults injected and cleared), and what it saw
//! happen (the breaker opening, the backlog drained), in seconds since the load began: drawn
//! on the run's charts, listed in its report, and cutting the load into phases.

use crate::charts::Mark;
use crate::orders_load::{OrdersReport, Window, format_ms};
use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

/// Whether a fault is in force after an action, until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// A fault is in force (`validator down`).
    Faulty,
    /// None is (`validator normal`).
    Healthy,
}

/// Something the experiment did to the app.
#[derive(Debug, Clone)]
struct Action {
    at: Instant,
    label: String,
    condition: Condition,
}

/// The load between two actions, as it was answered.
pub struct Phase {
    /// The action that began it (`validator down`), or `baseline` before the first.
    pub label: String,
    /// Whether a fault was in force.
    pub faulty: bool,
    /// When it began, in seconds since the load began (the first: when counting began).
    pub from_secs: f64,
    /// When it ended.
    pub to_secs: f64,
    /// The answers that arrived in its seconds (each second counted in the phase it mostly
    /// lies in).
    pub window: Window,
}

/// One run's actions and observations, timed from its start.
pub struct FaultTimeline {
    origin: Instant,
    origin_wall: SystemTime,
    actions: Vec<Action>,
    observations: Vec<(f64, String)>,
}

impl FaultTimeline {
    /// A timeline starting now: start the load right after.
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
            origin_wall: SystemTime::now(),
            actions: Vec::new(),
            observations: Vec::new(),
        }
    }

    /// Records that the experiment did `label` now, leaving the app in `condition`; returns
    /// when.
    pub fn act(&mut self, label: &str, condition: Condition) -> Instant {
        let at = Instant::now();
        self.actions.push(Action {
            at,
            label: label.to_owned(),
            condition,
        });
        at
    }

    /// Records that the run saw `label` happen `at_secs` seconds after the start.
    pub fn observe(&mut self, at_secs: f64, label: impl Into<String>) {
        self.observations.push((at_secs, label.into()));
    }

    /// `at` in seconds since the start (negative before it).
    pub fn secs(&self, at: Instant) -> f64 {
        match at.checked_duration_since(self.origin) {
            Some(after) => after.as_secs_f64(),
            None => -self.origin.duration_since(at).as_secs_f64(),
        }
    }

    /// The wall-clock time `at` (as the app reports times) in seconds since the start.
    pub fn wall_secs(&self, at: SystemTime) -> f64 {
        match at.duration_since(self.origin_wall) {
            Ok(after) => after.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        }
    }

    /// The actions, as marks on a chart.
    pub fn marks(&self) -> Vec<Mark> {
        self.actions
            .iter()
            .map(|action| Mark {
                at_secs: self.secs(action.at),
                label: action.label.clone(),
                faulty: action.condition == Condition::Faulty,
            })
            .collect()
    }

    /// `load` (started with this timeline) cut into phases at the actions.
    pub fn phases(&self, load: &OrdersReport) -> Vec<Phase> {
        let offset = self.secs(load.measured_from);
        // Each phase's start, in seconds and as the first of the load's seconds it holds
        // (rounding gives each second to the phase it mostly lies in); the first one starts
        // when counting did, the last one ends with the load, its last (partial) second
        // included.
        let mut starts = vec![("baseline".to_owned(), false, offset, 0)];
        starts.extend(self.actions.iter().map(|action| {
            let at_secs = self.secs(action.at);
            let second = (at_secs - offset).round().max(0.0) as usize;
            let faulty = action.condition == Condition::Faulty;
            (action.label.clone(), faulty, at_secs, second)
        }));
        let ends: Vec<(f64, usize)> = starts
            .iter()
            .skip(1)
            .map(|start| (start.2, start.3))
            .chain([(offset + load.elapsed.as_secs_f64(), load.by_second.len())])
            .collect();
        starts
            .into_iter()
            .zip(ends)
            .map(
                |((label, faulty, from_secs, first), (to_secs, end))| Phase {
                    label,
                    faulty,
                    from_secs,
                    to_secs,
                    window: load.window(first..end),
                },
            )
            .collect()
    }

    /// The actions and observations in order, as a markdown table.
    pub fn markdown(&self) -> String {
        let mut rows: Vec<(f64, String)> = self
            .actions
            .iter()
            .map(|action| (self.secs(action.at), action.label.clone()))
            .chain(self.observations.iter().cloned())
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out = String::from("| s since the load began | what |\n|---:|---|\n");
        for (at_secs, label) in rows {
            // Writing into a String cannot fail.
            let _ = writeln!(out, "| {at_secs:.2} | {label} |");
        }
        out
    }
}

/// The acceptance of each phase, as a markdown table.
pub fn phases_markdown(phases: &[Phase]) -> String {
    let mut out = String::from(
        "| phase | span (s) | acknowledged | per s | not acknowledged | p50 ms | p99 ms | max ms |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for phase in phases {
        let window = &phase.window;
        let seconds = (phase.to_secs - phase.from_secs).max(f64::EPSILON);
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {:.1}–{:.1} | {} | {:.0} | {} | {} | {} | {} |",
            phase.label,
            phase.from_secs,
            phase.to_secs,
            window.acknowledged,
            window.acknowledged as f64 / seconds,
            window.errors,
            format_ms(window.latency_ms(0.5)),
            format_ms(window.latency_ms(0.99)),
            format_ms(window.max_ms()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A timeline of 40 s: the validator down from 5.2 s to 25.4 s, the breaker seen opening
    /// at 5.25 s.
    fn outage() -> FaultTimeline {
        let origin = Instant::now();
        let action = |secs: f64, label: &str, condition| Action {
            at: origin + Duration::from_secs_f64(secs),
            label: label.to_owned(),
            condition,
        };
        FaultTimeline {
            origin,
            origin_wall: SystemTime::now(),
            actions: vec![
                action(5.2, "validator down", Condition::Faulty),
                action(25.4, "validator normal", Condition::Healthy),
            ],
            observations: vec![(5.25, "breaker opened".to_owned())],
        }
    }

    #[test]
    fn actions_become_marks_and_everything_is_listed_in_order() {
        let timeline = outage();
        let marks = timeline.marks();
        assert_eq!(marks.len(), 2);
        assert!((marks[0].at_secs - 5.2).abs() < 1e-6);
        assert!(marks[0].faulty && !marks[1].faulty);
        assert_eq!(marks[1].label, "validator normal");
        assert_eq!(
            timeline.markdown(),
            "| s since the load began | what |\n|---:|---|\n| 5.20 | validator down |\n\
             | 5.25 | breaker opened |\n| 25.40 | validator normal |\n"
        );
    }

    #[test]
    fn the_load_is_cut_into_phases_at_the_actions() {
        let timeline = outage();
        // Ten orders a second for 40 s, each answered in 2 ms (2.01 to the seconds' 2
        // significant figures).
        let answered: Vec<Instant> = (0..400)
            .map(|n| timeline.origin + Duration::from_millis(n * 100 + 50))
            .collect();
        let load =
            OrdersReport::acknowledged_at(timeline.origin, Duration::from_millis(2), &answered);
        let phases = timeline.phases(&load);
        let summary: Vec<(&str, bool, u64)> = phases
            .iter()
            .map(|phase| {
                (
                    phase.label.as_str(),
                    phase.faulty,
                    phase.window.acknowledged,
                )
            })
            .collect();
        // 5.2 s rounds to second 5, 25.4 s to second 25: 5, 20 and 15 whole seconds.
        assert_eq!(
            summary,
            [
                ("baseline", false, 50),
                ("validator down", true, 200),
                ("validator normal", false, 150)
            ]
        );
        assert!((phases[2].to_secs - 39.95).abs() < 1e-6, "the last answer");
        let table = phases_markdown(&phases);
        assert!(
            table.contains("| validator down | 5.2–25.4 | 200 | 10 | 0 | 2.01 | 2.01 | 2.01 |"),
            "{table}"
        );
    }

    #[test]
    fn times_before_the_start_are_negative() {
        let timeline = outage();
        assert!((timeline.secs(timeline.origin) - 0.0).abs() < 1e-9);
        let earlier = timeline.origin_wall - Duration::from_millis(1_500);
        assert!((timeline.wall_secs(earlier) + 1.5).abs() < 1e-9);
    }
}
