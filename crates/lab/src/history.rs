//! A load run's history: every attempt to create an order, with the key it went under, the
//! order it named and how it was answered, kept as JSON lines (`history.jsonl`) in the run's
//! folder so that `orderly lab verify` can later judge what became of each.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;

/// The file a run's history is kept in, inside its folder.
pub const HISTORY_FILE: &str = "history.jsonl";

/// How one attempt was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The API's success status: the order is the server's to keep.
    Acknowledged,
    /// Any other status.
    Refused {
        /// The status.
        status: u16,
    },
    /// No answer: the connection failed, broke, or the answer did not arrive whole.
    Transport,
}

/// One attempt to create an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The idempotency key: one logical request, which retries reuse.
    pub key: String,
    /// The order the attempt named or was answered with, if any.
    pub order_id: Option<String>,
    /// When it was sent, in ms since the run started.
    pub sent_ms: u64,
    /// How long its answer took, in µs (none without one).
    pub latency_us: Option<u64>,
    /// How it was answered.
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
}

/// Writes `attempts` to `path`, one JSON object per line.
pub fn write(path: &Path, attempts: &[Attempt]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for attempt in attempts {
        serde_json::to_writer(&mut out, attempt)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a history written by [`write`]; a line that does not parse is an error naming it.
pub fn read(path: &Path) -> anyhow::Result<Vec<Attempt>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut attempts = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let attempt = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: {line}", path.display(), number + 1))?;
        attempts.push(attempt);
    }
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_as_written() {
        let attempts = vec![
            Attempt {
                key: "k-1".into(),
                order_id: Some("o-1".into()),
                sent_ms: 3,
                latency_us: Some(1_200),
                outcome: AttemptOutcome::Acknowledged,
            },
            Attempt {
                key: "k-2".into(),
                order_id: None,
                sent_ms: 4,
                latency_us: None,
                outcome: AttemptOutcome::Transport,
            },
            Attempt {
                key: "k-3".into(),
                order_id: Some("k-3".into()),
                sent_ms: 5,
                latency_us: Some(900),
                outcome: AttemptOutcome::Refused { status: 503 },
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        write(&path, &attempts).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.contains(r#""outcome":"refused","status":503"#),
            "{text}"
        );
        assert_eq!(read(&path).unwrap(), attempts);
    }

    #[test]
    fn a_broken_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        std::fs::write(&path, "{\"key\": 1}\n").unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(error.contains("line 1"), "{error}");
    }
}
