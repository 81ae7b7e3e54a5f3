//! `runtime-config.toml`: where key-value stores and SQLite databases live.

use crate::problem::{ConfigProblem, LoadError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where one key-value store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// `type = "spin"`: a SQLite file, or memory when there is no path (as in Spin).
    Spin {
        /// The database file (absolute), or `None` for an in-memory store.
        path: Option<PathBuf>,
    },
    /// `type = "redis"`: a Redis server.
    Redis {
        /// `redis://host:port[/db]`.
        url: String,
    },
}

/// Where one SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteDatabaseConfig {
    /// `type = "spin"`: a local file, or memory when there is no path.
    Spin {
        /// The database file (absolute), or `None` for an in-memory database.
        path: Option<PathBuf>,
    },
}

/// The runtime configuration: state folders, and backends for stores and databases by label.
/// Labels not configured here fall back to Spin's defaults (which exist for `default` only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `state_dir`: where default stores and logs live (the `--state-dir` flag wins).
    pub state_dir: Option<PathBuf>,
    /// `log_dir`: where component output is written (default `<state_dir>/logs`).
    pub log_dir: Option<PathBuf>,
    /// `[key_value_store.<label>]`.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// `[sqlite_database.<label>]`.
    pub sqlite_databases: BTreeMap<String, SqliteDatabaseConfig>,
}

#[derive(Deserialize)]
struct Raw {
    state_dir: Option<String>,
    log_dir: Option<String>,
    #[serde(default)]
    key_value_store: BTreeMap<String, toml::Table>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, toml::Table>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawStore {
    Spin { path: Option<String> },
    Redis { url: String },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawDatabase {
    Spin { path: Option<String> },
}

const KIND: &str = "runtime config (runtime-config.toml)";

impl RuntimeConfig {
    /// Reads a runtime config file. As in Spin, relative key-value paths are relative to the
    /// file's folder, and relative SQLite paths (and `state_dir`/`log_dir`) to the current folder.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
            fix: "check the --runtime-config-file path".into(),
        })?;
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let config_dir = absolute(path.parent().unwrap_or(Path::new(".")));
        let cwd = absolute(Path::new("."));
        Self::parse(&text, path, &config_dir, &cwd)
    }

    /// Parses runtime config text read from `path`; `config_dir` and `cwd` resolve relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        config_dir: &Path,
        cwd: &Path,
    ) -> Result<Self, LoadError> {
        let raw: Raw = toml::from_str(text).map_err(|e| LoadError::Syntax {
            path: path.to_owned(),
            kind: KIND,
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        for section in raw.other.keys() {
            problems.push(ConfigProblem::new(
                format!("[{section}]"),
                format!("`{section}` is not supported by orderly up"),
                "orderly reads state_dir, log_dir, [key_value_store.<label>] and [sqlite_database.<label>]; remove it or run with real Spin",
            ));
        }
        let mut config = RuntimeConfig {
            state_dir: raw
                .state_dir
                .filter(|dir| !dir.is_empty())
                .map(|dir| cwd.join(dir)),
            log_dir: raw
                .log_dir
                .filter(|dir| !dir.is_empty())
                .map(|dir| cwd.join(dir)),
            ..RuntimeConfig::default()
        };
        for (label, table) in raw.key_value_store {
            let location = format!("[key_value_store.{label}]");
            match table.try_into::<RawStore>() {
                Ok(RawStore::Spin { path }) => {
                    let path = path.map(|path| config_dir.join(path));
                    config
                        .key_value_stores
                        .insert(label, KeyValueStoreConfig::Spin { path });
                }
                Ok(RawStore::Redis { url }) => {
                    config
                        .key_value_stores
                        .insert(label, KeyValueStoreConfig::Redis { url });
                }
                Err(e) => problems.push(ConfigProblem::new(
                    location,
                    e.to_string(),
                    "use type = \"spin\" (optional path) or type = \"redis\" with url",
                )),
            }
        }
        for (label, table) in raw.sqlite_database {
            let location = format!("[sqlite_database.{label}]");
            match table.try_into::<RawDatabase>() {
                Ok(RawDatabase::Spin { path }) => {
                    let path = path.map(|path| cwd.join(path));
                    config
                        .sqlite_databases
                        .insert(label, SqliteDatabaseConfig::Spin { path });
                }
                Err(e) => problems.push(ConfigProblem::new(
                    location,
                    e.to_string(),
                    "use type = \"spin\" with an optional path",
                )),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(LoadError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The backend for a key-value label: configured, or Spin's default for `default`
    /// (`<state-dir>/sqlite_key_value.db`, in memory without a state dir).
    pub fn key_value_store(
        &self,
        label: &str,
        state_dir: Option<&Path>,
    ) -> Option<KeyValueStoreConfig> {
        self.key_value_stores.get(label).cloned().or_else(|| {
            (label == "default").then(|| KeyValueStoreConfig::Spin {
                path: state_dir.map(|dir| dir.join("sqlite_key_value.db")),
            })
        })
    }

    /// The database for a SQLite label: configured, or Spin's default for `default`
    /// (`<state-dir>/sqlite_db.db`, in memory without a state dir).
    pub fn sqlite_database(
        &self,
        label: &str,
        state_dir: Option<&Path>,
    ) -> Option<SqliteDatabaseConfig> {
        self.sqlite_databases.get(label).cloned().or_else(|| {
            (label == "default").then(|| SqliteDatabaseConfig::Spin {
                path: state_dir.map(|dir| dir.join("sqlite_db.db")),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig, LoadError> {
        RuntimeConfig::parse(
            text,
            Path::new("/app/runtime-config.toml"),
            Path::new("/app"),
            Path::new("/cwd"),
        )
    }

    #[test]
    fn reads_stores_databases_and_dirs_like_spin() {
        let config = parse(
            r#"
state_dir = "state"
[key_value_store.default]
type = "spin"
path = "data/kv.db"
[key_value_store.memory]
type = "spin"
[key_value_store.shared]
type = "redis"
url = "redis://127.0.0.1:6379"
[sqlite_database.default]
type = "spin"
path = "data/app.db"
[sqlite_database.audit]
type = "spin"
path = "/var/audit.db"
"#,
        )
        .unwrap();
        assert_eq!(config.state_dir, Some(PathBuf::from("/cwd/state")));
        let kv = |label| config.key_value_store(label, None);
        assert_eq!(
            kv("default"),
            Some(KeyValueStoreConfig::Spin {
                path: Some("/app/data/kv.db".into())
            })
        );
        assert_eq!(kv("memory"), Some(KeyValueStoreConfig::Spin { path: None }));
        assert_eq!(
            kv("shared"),
            Some(KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379".into()
            })
        );
        let db = |label| config.sqlite_database(label, None);
        assert_eq!(
            db("default"),
            Some(SqliteDatabaseConfig::Spin {
                path: Some("/cwd/data/app.db".into())
            })
        );
        assert_eq!(
            db("audit"),
            Some(SqliteDatabaseConfig::Spin {
                path: Some("/var/audit.db".into())
            })
        );
    }

    #[test]
    fn defaults_exist_only_for_the_default_label() {
        let config = RuntimeConfig::default();
        let state = Some(Path::new("/s"));
        assert_eq!(
            config.key_value_store("default", state),
            Some(KeyValueStoreConfig::Spin {
                path: Some("/s/sqlite_key_value.db".into())
            })
        );
        assert_eq!(
            config.key_value_store("default", None),
            Some(KeyValueStoreConfig::Spin { path: None })
        );
        assert_eq!(config.key_value_store("other", state), None);
        assert_eq!(
            config.sqlite_database("default", state),
            Some(SqliteDatabaseConfig::Spin {
                path: Some("/s/sqlite_db.db".into())
            })
        );
        assert_eq!(config.sqlite_database("other", state), None);
    }

    #[test]
    fn unknown_types_and_sections_are_problems() {
        let error = parse(
            r#"
[key_value_store.x]
type = "azure_cosmos"
[sqlite_database.y]
type = "libsql"
url = "https://db"
[llm_compute]
type = "spin"
"#,
        )
        .unwrap_err();
        let LoadError::Invalid { problems, .. } = error else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 3);
        assert!(problems[0].message.contains("llm_compute"));
        assert!(problems[1].message.contains("azure_cosmos"));
        assert!(problems[2].message.contains("libsql"));
    }
}
