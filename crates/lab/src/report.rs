//! An experiment's report, as a person and a program read it: what was run where (identity and
//! configuration), what was claimed before the run (hypotheses with their thresholds), what
//! was seen (the findings, in markdown, the figures behind them, and charts over time), and the
//! verdict. Written as `report.md` and `report.json` into the run's folder, with the charts as
//! SVG files beside them.

use crate::charts::Chart;
use anyhow::Context as _;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What an experiment found, before the runner adds who ran it, where and how long.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    /// The settings the run used, by name.
    pub configuration: BTreeMap<String, String>,
    /// The claims the run checks, each with its verdict.
    pub hypotheses: Vec<Hypothesis>,
    /// The findings in markdown: tables and notes a person reads.
    pub body: String,
    /// The figures the verdicts and tables come from, by name, for programs.
    pub figures: BTreeMap<String, f64>,
    /// Charts of the run over time, shown after the findings.
    pub charts: Vec<Chart>,
}

impl Findings {
    /// Records one setting.
    pub fn configure(&mut self, name: &str, value: impl ToString) {
        self.configuration
            .insert(name.to_owned(), value.to_string());
    }

    /// Records one figure.
    pub fn figure(&mut self, name: &str, value: f64) {
        self.figures.insert(name.to_owned(), value);
    }

    /// Records one hypothesis: the claim (with its threshold), what was observed, and whether
    /// it held.
    pub fn check(&mut self, claim: impl Into<String>, observed: impl Into<String>, held: bool) {
        self.hypotheses.push(Hypothesis {
            claim: claim.into(),
            observed: observed.into(),
            held,
        });
    }
}

/// Items listed per [`write_list`]; the rest are counted.
const SHOWN_ITEMS: usize = 10;

/// Writes the first items of `items` (those that went wrong, typically) under `title` into a
/// findings body, and how many more there are; nothing when there are none.
pub fn write_list(out: &mut String, title: &str, items: &[String]) -> std::fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}:\n")?;
    for item in items.iter().take(SHOWN_ITEMS) {
        writeln!(out, "- {item}")?;
    }
    if items.len() > SHOWN_ITEMS {
        writeln!(out, "- ... and {} more", items.len() - SHOWN_ITEMS)?;
    }
    Ok(())
}

/// A claim stated before the run, and how the run judged it.
#[derive(Debug, Clone, Serialize)]
pub struct Hypothesis {
    /// The claim, with its threshold.
    pub claim: String,
    /// What the run saw.
    pub observed: String,
    /// Whether the claim held.
    pub held: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every hypothesis held.
    Pass,
    /// At least one hypothesis did not hold.
    Fail,
    /// The run could not finish (its error), so nothing was judged.
    Error {
        /// What went wrong.
        error: String,
    },
}

impl Verdict {
    /// The verdict of findings, or of the error that stopped the run.
    pub fn of(findings: &anyhow::Result<Findings>) -> Self {
        match findings {
            Ok(findings) if findings.hypotheses.iter().all(|check| check.held) => Self::Pass,
            Ok(_) => Self::Fail,
            Err(error) => Self::Error {
                error: format!("{error:#}"),
            },
        }
    }

    /// `PASS`, `FAIL` or `ERROR`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Error { .. } => "ERROR",
        }
    }
}

/// Where and by what a run was made.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    /// The repository's git revision (with `-dirty` when the tree had changes), or `unknown`.
    pub revision: String,
    /// The `orderly` version.
    pub version: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The command line that ran it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
}

impl Identity {
    /// This process's identity, read now.
    pub fn current(repository: &Path) -> Self {
        Self {
            revision: revision(repository),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: Machine::current(),
        }
    }
}

/// The machine a run was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Its operating system (`PRETTY_NAME` of `/etc/os-release`, or the target OS).
    pub os: String,
    /// Its kernel release.
    pub kernel: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Its memory, in MiB (0 when unknown).
    pub memory_mib: u64,
}

impl Machine {
    fn current() -> Self {
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                    .map(|name| name.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024)
            })
            .unwrap_or(0);
        Self {
            os,
            kernel,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_mib,
        }
    }
}

fn revision(repository: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(repository)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(revision) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{revision}-dirty"),
            _ => revision,
        },
        None => "unknown".to_owned(),
    }
}

/// One experiment's whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The experiment's name (`orderly lab experiment <name>`).
    pub experiment: String,
    /// Its title.
    pub title: String,
    /// What it sets out to show, in a sentence or two.
    pub purpose: String,
    /// Who ran it, where.
    pub identity: Identity,
    /// How long it took, in seconds.
    pub elapsed_secs: f64,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What it found (empty when it stopped on an error).
    pub findings: Findings,
}

impl Report {
    /// The report of a run of `experiment` that took `elapsed` and found `findings`.
    pub fn new(
        experiment: &str,
        title: &str,
        purpose: &str,
        identity: Identity,
        elapsed: Duration,
        findings: anyhow::Result<Findings>,
    ) -> Self {
        let verdict = Verdict::of(&findings);
        Self {
            experiment: experiment.to_owned(),
            title: title.to_owned(),
            purpose: purpose.to_owned(),
            identity,
            elapsed_secs: elapsed.as_secs_f64(),
            verdict,
            findings: findings.unwrap_or_default(),
        }
    }

    /// How many hypotheses held, of how many.
    pub fn held(&self) -> (usize, usize) {
        let checks = &self.findings.hypotheses;
        (
            checks.iter().filter(|check| check.held).count(),
            checks.len(),
        )
    }

    /// The report in markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let (held, claims) = self.held();
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# {}\n", self.title);
        if claims == 0 && self.verdict == Verdict::Pass {
            let _ = writeln!(
                out,
                "A measurement, with no hypotheses to judge, in {:.0} s.\n",
                self.elapsed_secs
            );
        } else {
            let _ = writeln!(
                out,
                "**{}**: {held} of {claims} hypotheses held, in {:.0} s.\n",
                self.verdict.label(),
                self.elapsed_secs
            );
        }
        if let Verdict::Error { error } = &self.verdict {
            let _ = writeln!(
                out,
                "The run stopped on an error:\n\n```text\n{error}\n```\n"
            );
        }
        let _ = writeln!(out, "{}\n", self.purpose);
        if claims > 0 {
            let _ = writeln!(out, "## Hypotheses\n");
            let _ = writeln!(out, "| # | claim (threshold) | observed | verdict |");
            let _ = writeln!(out, "|---|---|---|---|");
        }
        for (number, check) in self.findings.hypotheses.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                number + 1,
                check.claim,
                check.observed,
                if check.held {
                    "held"
                } else {
                    "**did not hold**"
                }
            );
        }
        let _ = writeln!(out, "\n{}\n", self.findings.body.trim_end());
        if !self.findings.charts.is_empty() {
            let _ = writeln!(out, "## Charts\n");
        }
        for chart in &self.findings.charts {
            let _ = writeln!(
                out,
                "![{}]({})\n\n{}\n",
                chart.title, chart.file, chart.caption
            );
        }
        let _ = writeln!(out, "## Run\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let identity = &self.identity;
        let machine = &identity.machine;
        for (name, value) in [
            ("command", format!("`{}`", identity.command)),
            ("revision", identity.revision.clone()),
            ("orderly", identity.version.clone()),
            ("started", identity.started_at.clone()),
            (
                "machine",
                format!(
                    "{} CPUs, {} MiB, {} (kernel {})",
                    machine.cpus, machine.memory_mib, machine.os, machine.kernel
                ),
            ),
        ] {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        for (name, value) in &self.findings.configuration {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out
    }

    /// Writes `report.md`, `report.json` and the charts into `folder` (created if needed).
    pub fn write(&self, folder: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        for chart in &self.findings.charts {
            std::fs::write(folder.join(&chart.file), &chart.svg)?;
        }
        std::fs::write(folder.join("report.md"), self.markdown())?;
        std::fs::write(
            folder.join("report.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        Ok(())
    }
}

/// The run folder for `name` started now: `runs/<UTC timestamp>-<name>` under `base`.
pub fn run_folder(base: &Path, name: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "")
        .trim_end_matches('Z')
        .to_owned();
    base.join("runs").join(format!("{stamp}-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(held: &[bool]) -> Findings {
        let mut findings = Findings::default();
        for (number, held) in held.iter().enumerate() {
            findings.check(format!("claim {number}"), "seen", *held);
        }
        findings.configure("orders", 100);
        findings.figure("p99_ms", 6.7);
        findings.body = "## Latency\n\n| a | b |\n|---|---|\n".to_owned();
        findings.charts.push(Chart {
            file: "latency.svg".to_owned(),
            title: "Latency".to_owned(),
            caption: "Latency per second.".to_owned(),
            svg: "<svg></svg>".to_owned(),
        });
        findings
    }

    fn report(findings: anyhow::Result<Findings>) -> Report {
        Report::new(
            "demo",
            "A demonstration",
            "Shows the report.",
            Identity::current(Path::new(".")),
            Duration::from_secs(3),
            findings,
        )
    }

    #[test]
    fn the_verdict_is_pass_only_when_every_hypothesis_held() {
        assert_eq!(report(Ok(findings(&[true, true]))).verdict, Verdict::Pass);
        assert_eq!(report(Ok(findings(&[true, false]))).verdict, Verdict::Fail);
        let failed = report(Err(anyhow::anyhow!("no server")));
        assert_eq!(
            failed.verdict,
            Verdict::Error {
                error: "no server".to_owned()
            }
        );
        assert!(failed.markdown().contains("no server"));
    }

    #[test]
    fn the_markdown_states_claims_findings_and_the_run() {
        let text = report(Ok(findings(&[true, false]))).markdown();
        assert!(text.starts_with("# A demonstration\n\n**FAIL**: 1 of 2 hypotheses held"));
        assert!(text.contains("| 2 | claim 1 | seen | **did not hold** |"));
        assert!(text.contains("## Latency"));
        assert!(text.contains("| orders | 100 |"));
        assert!(text.contains("## Charts\n\n![Latency](latency.svg)\n\nLatency per second.\n"));
    }

    #[test]
    fn writing_puts_the_charts_beside_the_report() {
        let folder = tempfile::tempdir().unwrap();
        report(Ok(findings(&[true]))).write(folder.path()).unwrap();
        let svg = std::fs::read_to_string(folder.path().join("latency.svg")).unwrap();
        assert_eq!(svg, "<svg></svg>");
        let json = std::fs::read_to_string(folder.path().join("report.json")).unwrap();
        assert!(json.contains("\"file\": \"latency.svg\""), "{json}");
        assert!(!json.contains("<svg>"), "the SVG is left out of the JSON");
    }

    #[test]
    fn the_json_carries_the_verdict_figures_and_configuration() {
        let json = serde_json::to_value(report(Ok(findings(&[true])))).unwrap();
        assert_eq!(json["verdict"], "pass");
        assert_eq!(json["findings"]["figures"]["p99_ms"], 6.7);
        assert_eq!(json["findings"]["configuration"]["orders"], "100");
        assert_eq!(json["experiment"], "demo");
    }

    #[test]
    fn lists_show_their_first_items_and_count_the_rest() {
        let mut out = String::new();
        write_list(&mut out, "Missing", &[]).unwrap();
        assert_eq!(out, "", "an empty list writes nothing");
        let items: Vec<String> = (0..12).map(|n| format!("o-{n}")).collect();
        write_list(&mut out, "Missing", &items).unwrap();
        assert!(out.starts_with("\nMissing:\n\n- o-0\n"), "{out}");
        assert!(out.contains("- o-9\n- ... and 2 more\n"), "{out}");
        assert!(!out.contains("o-10"), "{out}");
    }

    #[test]
    fn run_folders_sort_by_time_and_name_the_experiment() {
        let folder = run_folder(Path::new("/tmp/x"), "saga");
        let name = folder.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(folder.starts_with("/tmp/x/runs"));
        assert!(name.ends_with("-saga"), "{name}");
        assert!(!name.contains(':'), "{name}");
    }
}
