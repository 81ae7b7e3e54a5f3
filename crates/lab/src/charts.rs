//! Charts of a run over time, drawn as SVG for its report: lines over the seconds since the
//! load began, with the experiment's actions on top (a dashed line and its label where a fault
//! was injected or cleared; the spans with a fault in force shaded). [`render`] draws any such
//! chart; the functions after it make the charts the experiments share.

use crate::control::{AdminStats, Breaker, BreakerState};
use crate::fault_timeline::FaultTimeline;
use crate::orders_load::{OrdersReport, Window};
use plotters::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// A chart's size, in pixels.
const SIZE: (u32, u32) = (960, 400);
/// The height of the band above the plot holding the title and the legend.
const HEADER_HEIGHT: u32 = 34;
/// The font family of every text.
const FONT: &str = "sans-serif";
/// The colours of a chart's lines, in order.
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// Space above the highest point, as a share of it, for the marks' labels.
const HEADROOM: f64 = 0.2;
/// The breaker's states as the breaker chart's levels, bottom up.
const BREAKER_LEVELS: [&str; 3] = ["closed", "half-open", "open"];

/// A chart in a report: an SVG file in the run folder and the caption that explains it.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// Its file name in the run folder (`latency.svg`).
    pub file: String,
    /// Its title, as drawn on it.
    pub title: String,
    /// What it shows, in a sentence or two.
    pub caption: String,
    /// The SVG document (written to `file`, left out of report.json).
    #[serde(skip)]
    pub svg: String,
}

/// One line of a chart: its name in the legend, and its points (seconds, value).
#[derive(Debug, Clone)]
pub struct Line {
    /// Its name in the legend.
    pub name: String,
    /// Its points, in seconds since the load began and the chart's unit.
    pub points: Vec<(f64, f64)>,
}

/// Something the experiment did during the run, drawn on its charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// When, in seconds since the load began.
    pub at_secs: f64,
    /// What (`validator down`).
    pub label: String,
    /// Whether a fault is in force from it until the next mark (that span is shaded).
    pub faulty: bool,
}

/// A chart's y axis.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// A quantity from 0, with its description (`ms`).
    Quantity(&'static str),
    /// Named levels 0, 1, 2, … (a state machine's states).
    Levels(&'static [&'static str]),
}

/// A chart over time, ready to draw.
#[derive(Debug, Clone, Copy)]
pub struct TimeChart<'a> {
    /// Its title, above the plot.
    pub title: &'a str,
    /// Its y axis.
    pub scale: Scale,
    /// Its lines.
    pub lines: &'a [Line],
    /// The experiment's actions.
    pub marks: &'a [Mark],
}

/// Draws `chart` as an SVG document, from 0 to its last point or mark.
pub fn render(chart: &TimeChart) -> anyhow::Result<String> {
    let points = || chart.lines.iter().flat_map(|line| line.points.iter());
    let x_end = points()
        .map(|point| point.0)
        .chain(chart.marks.iter().map(|mark| mark.at_secs))
        .fold(1.0, f64::max);
    let (y_start, y_end) = match chart.scale {
        Scale::Quantity(_) => {
            let highest = points().map(|point| point.1).fold(0.0, f64::max);
            (0.0, (highest * (1.0 + HEADROOM)).max(1.0))
        }
        Scale::Levels(names) => (-0.25, names.len() as f64 - 0.25),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER_HEIGHT);
        let title_font = TextStyle::from((FONT, 18).into_font());
        header.draw(&Text::new(
            chart.title.to_owned(),
            (12, 10),
            title_font.clone(),
        ))?;
        let legend_font = TextStyle::from((FONT, 14).into_font());
        let mut x = 12 + i32::try_from(header.estimate_text_size(chart.title, &title_font)?.0)?;
        for (line, color) in chart.lines.iter().zip(PALETTE.iter().cycle()) {
            x += 28;
            header.draw(&PathElement::new(
                vec![(x, 20), (x + 22, 20)],
                color.stroke_width(3),
            ))?;
            header.draw(&Text::new(
                line.name.clone(),
                (x + 28, 13),
                legend_font.clone(),
            ))?;
            x += 28 + i32::try_from(header.estimate_text_size(&line.name, &legend_font)?.0)?;
        }

        let mut plot = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..x_end, y_start..y_end)?;
        let name_of_level = |value: &f64| level_name(chart.scale, *value);
        let mut mesh = plot.configure_mesh();
        mesh.x_desc("seconds since the load began")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14));
        match chart.scale {
            Scale::Quantity(unit) => mesh.y_desc(unit),
            Scale::Levels(names) => mesh
                .y_labels(names.len() * 4)
                .y_label_formatter(&name_of_level),
        };
        mesh.draw()?;

        for (index, mark) in chart.marks.iter().enumerate() {
            if mark.faulty {
                let until = chart
                    .marks
                    .get(index + 1)
                    .map_or(x_end, |next| next.at_secs);
                plot.draw_series(std::iter::once(Rectangle::new(
                    [(mark.at_secs, y_start), (until, y_end)],
                    RED.mix(0.12).filled(),
                )))?;
            }
            plot.draw_series(DashedLineSeries::new(
                [(mark.at_secs, y_start), (mark.at_secs, y_end)],
                6,
                4,
                BLACK.stroke_width(1),
            ))?;
            plot.draw_series(std::iter::once(
                EmptyElement::at((mark.at_secs, y_end))
                    + Text::new(mark.label.clone(), (5, 4), (FONT, 13).into_font()),
            ))?;
        }
        for (line, color) in chart.lines.iter().zip(PALETTE.iter().cycle()) {
            plot.draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// The name of the level `value` is on, or nothing between levels.
fn level_name(scale: Scale, value: f64) -> String {
    match scale {
        Scale::Levels(names) if (value - value.round()).abs() < 1e-6 && value >= 0.0 => names
            .get(value.round() as usize)
            .map_or_else(String::new, |name| (*name).to_owned()),
        _ => String::new(),
    }
}

/// `chart` drawn, to be saved as `file` with `caption`.
fn chart(file: &str, caption: &str, chart: &TimeChart) -> anyhow::Result<Chart> {
    Ok(Chart {
        file: file.to_owned(),
        title: chart.title.to_owned(),
        caption: caption.to_owned(),
        svg: render(chart)?,
    })
}

/// The acceptance of `load` (started with `timeline`) second by second: its latency (p50 and
/// p99) and its answers (acknowledged or not) per second. The last second, cut short by the
/// load's end, is left out.
pub fn acceptance(load: &OrdersReport, timeline: &FaultTimeline) -> anyhow::Result<[Chart; 2]> {
    let offset = timeline.secs(load.measured_from);
    let whole_seconds = usize::try_from(load.elapsed.as_secs())?.min(load.by_second.len());
    let seconds = || {
        load.by_second[..whole_seconds]
            .iter()
            .enumerate()
            .map(|(index, second)| (offset + index as f64 + 0.5, second))
    };
    let quantile = |name: &str, quantile: f64| Line {
        name: name.to_owned(),
        points: seconds()
            .filter_map(|(at, second)| second.latency_ms(quantile).map(|ms| (at, ms)))
            .collect(),
    };
    let count = |name: &str, counted: fn(&Window) -> u64| Line {
        name: name.to_owned(),
        points: seconds()
            .map(|(at, second)| (at, counted(second) as f64))
            .collect(),
    };
    let marks = timeline.marks();
    let latency = chart(
        "latency.svg",
        "Acceptance latency of `POST /orders`, second by second: the median (p50) and p99 of \
         the orders answered 202 in each second, from each order's intended send time.",
        &TimeChart {
            title: "Acceptance latency per second",
            scale: Scale::Quantity("ms"),
            lines: &[quantile("p50", 0.5), quantile("p99", 0.99)],
            marks: &marks,
        },
    )?;
    let throughput = chart(
        "throughput.svg",
        "Orders answered per second: acknowledged (202), and not (another status, or no \
         answer).",
        &TimeChart {
            title: "Orders answered per second",
            scale: Scale::Quantity("orders per second"),
            lines: &[
                count("acknowledged (202)", |second| second.acknowledged),
                count("not acknowledged", |second| second.errors),
            ],
            marks: &marks,
        },
    )?;
    Ok([latency, throughput])
}

/// The breaker's state over the run, from `polls`: each change drawn when the breaker says it
/// happened (its `since`), and a round trip between two polls (a probe failed, the circuit
/// opened again) as a tick to half-open.
pub fn breaker(polls: &[(Instant, Breaker)], timeline: &FaultTimeline) -> anyhow::Result<Chart> {
    let level = |state: BreakerState| match state {
        BreakerState::Closed | BreakerState::Disabled => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open | BreakerState::ForcedOpen => 2.0,
    };
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut last: Option<&Breaker> = None;
    for (polled, breaker) in polls {
        let now = level(breaker.state);
        let polled_secs = timeline.secs(*polled).max(0.0);
        let changed_secs = timeline.wall_secs(breaker.since).clamp(0.0, polled_secs);
        match last {
            None => points.push((changed_secs, now)),
            Some(before) if before.since != breaker.since => {
                let was = level(before.state);
                let changed_secs = changed_secs.max(points.last().map_or(0.0, |point| point.0));
                points.push((changed_secs, was));
                if was == now {
                    points.push((changed_secs, level(BreakerState::HalfOpen)));
                }
                points.push((changed_secs, now));
            }
            Some(_) => {}
        }
        points.push((polled_secs, now));
        last = Some(breaker);
    }
    chart(
        "breaker.svg",
        "The validator's circuit breaker, polled every few hundred ms: open while calls are held \
         back, half-open while a probe is out, closed when calls flow; each change is drawn when \
         the breaker says it happened. A tick to half-open is a round trip between two polls: \
         a probe that failed, so the circuit opened again.",
        &TimeChart {
            title: "Circuit breaker state",
            scale: Scale::Levels(&BREAKER_LEVELS),
            lines: &[Line {
                name: "breaker".to_owned(),
                points,
            }],
            marks: &timeline.marks(),
        },
    )
}

/// The orders waiting for validation over the run, from `polls` of the pipeline's counters.
pub fn backlog(polls: &[(Instant, AdminStats)], timeline: &FaultTimeline) -> anyhow::Result<Chart> {
    let points = polls
        .iter()
        .map(|(polled, stats)| (timeline.secs(*polled), stats.orders.processing as f64))
        .collect();
    chart(
        "backlog.svg",
        "The backlog: orders accepted and not yet validated (status `processing`), polled \
         from `GET /admin/stats`.",
        &TimeChart {
            title: "Orders waiting for validation",
            scale: Scale::Quantity("orders processing"),
            lines: &[Line {
                name: "processing".to_owned(),
                points,
            }],
            marks: &timeline.marks(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `svg` has a text element saying exactly `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    fn marks() -> Vec<Mark> {
        vec![
            Mark {
                at_secs: 5.0,
                label: "validator down".to_owned(),
                faulty: true,
            },
            Mark {
                at_secs: 25.0,
                label: "validator normal".to_owned(),
                faulty: false,
            },
        ]
    }

    #[test]
    fn a_chart_draws_its_lines_marks_and_labels() {
        let lines = [
            Line {
                name: "p50".to_owned(),
                points: (0..40).map(|second| (f64::from(second), 3.0)).collect(),
            },
            Line {
                name: "p99".to_owned(),
                points: (0..40).map(|second| (f64::from(second), 12.5)).collect(),
            },
        ];
        let svg = render(&TimeChart {
            title: "Acceptance latency per second",
            scale: Scale::Quantity("ms"),
            lines: &lines,
            marks: &marks(),
        })
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "Acceptance latency per second",
            "p50",
            "p99",
            "validator down",
            "validator normal",
            "seconds since the load began",
            "ms",
        ] {
            assert!(has_text(&svg, text), "{text} missing");
        }
        assert!(svg.contains("<polyline"), "the lines are drawn");
        assert!(svg.contains("<rect"), "the outage is shaded");
    }

    #[test]
    fn a_chart_of_levels_names_them_on_its_axis() {
        let svg = render(&TimeChart {
            title: "Circuit breaker state",
            scale: Scale::Levels(&BREAKER_LEVELS),
            lines: &[Line {
                name: "breaker".to_owned(),
                points: vec![(0.0, 0.0), (5.1, 0.0), (5.1, 2.0), (26.0, 2.0), (26.0, 0.0)],
            }],
            marks: &marks(),
        })
        .unwrap();
        for level in BREAKER_LEVELS {
            assert!(has_text(&svg, level), "{level} missing");
        }
    }

    #[test]
    fn only_whole_levels_are_named() {
        let scale = Scale::Levels(&BREAKER_LEVELS);
        assert_eq!(level_name(scale, 0.0), "closed");
        assert_eq!(level_name(scale, 2.0), "open");
        assert_eq!(level_name(scale, 0.5), "");
        assert_eq!(level_name(scale, -1.0), "");
        assert_eq!(level_name(scale, 3.0), "");
        assert_eq!(level_name(Scale::Quantity("ms"), 1.0), "");
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let svg = render(&TimeChart {
            title: "Nothing yet",
            scale: Scale::Quantity("orders"),
            lines: &[],
            marks: &[],
        })
        .unwrap();
        assert!(has_text(&svg, "Nothing yet"));
    }
}
