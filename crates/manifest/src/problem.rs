//! Errors from loading a manifest or runtime config: each says what is wrong, where, and how
//! to fix it.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a file: where it is, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where in the file, in TOML terms (`[component.orders] source`).
    pub location: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl ConfigProblem {
    /// A problem at `location`.
    pub fn new(
        location: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\n    fix: {}",
            self.location, self.message, self.fix
        )
    }
}

/// Why a manifest or runtime config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}\n    fix: {fix}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
        /// How to fix it.
        fix: String,
    },
    /// The file is not TOML of the expected shape (the message points at the line).
    #[error("{} is not a valid {kind}:\n{message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What kind of file it should be.
        kind: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed, but its content is wrong; every problem found is listed.
    #[error("{} has {} problem{}:\n{}", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" }, list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Everything wrong with it.
        problems: Vec<ConfigProblem>,
    },
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  - {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}
