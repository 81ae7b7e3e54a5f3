//! `runtime-config.toml`: where key-value stores and SQLite databases live.

use crate::problem::{LoadError, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where one key-value store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// `type = "spin"`: a SQLite file.
    Spin {
        /// The database file (absolute).
        path: PathBuf,
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
    /// `type = "spin"`: a local file.
    Spin {
        /// The database file (absolute).
        path: PathBuf,
    },
}

/// The runtime configuration: backends for stores and databases, by label. Labels that are not
/// configured here fall back to the defaults (`default` only), as in Spin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `[key_value_store.<label>]`.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// `[sqlite_database.<label>]`.
    pub sqlite_databases: BTreeMap<String, SqliteDatabaseConfig>,
}

#[derive(Deserialize)]
struct Raw {
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
    /// Reads a runtime config file. Relative paths in it are relative to its folder; a `spin`
    /// store or database without a `path` lives in `state_dir`.
    pub fn load(path: &Path, state_dir: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
            fix: "check the --runtime-config-file path".into(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base, state_dir)
    }

    /// Parses runtime config text; `base` resolves relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        state_dir: &Path,
    ) -> Result<Self, LoadError> {
        let raw: Raw = toml::from_str(text).map_err(|e| LoadError::Syntax {
            path: path.to_owned(),
            kind: KIND,
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        for section in raw.other.keys() {
            problems.push(Problem::new(
                format!("[{section}]"),
                format!("section `{section}` is not supported by orderly up"),
                "orderly reads [key_value_store.<label>] and [sqlite_database.<label>]; remove the section or run with real Spin",
            ));
        }
        let mut config = RuntimeConfig::default();
        for (label, table) in raw.key_value_store {
            let location = format!("[key_value_store.{label}]");
            match table.try_into::<RawStore>() {
                Ok(RawStore::Spin { path }) => {
                    let path = file_path(path, base, state_dir, &format!("kv_{label}.db"));
                    config
                        .key_value_stores
                        .insert(label, KeyValueStoreConfig::Spin { path });
                }
                Ok(RawStore::Redis { url }) => {
                    config
                        .key_value_stores
                        .insert(label, KeyValueStoreConfig::Redis { url });
                }
                Err(e) => problems.push(Problem::new(
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
                    let path = file_path(path, base, state_dir, &format!("sqlite_{label}.db"));
                    config
                        .sqlite_databases
                        .insert(label, SqliteDatabaseConfig::Spin { path });
                }
                Err(e) => problems.push(Problem::new(
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
    /// (`<state-dir>/sqlite_key_value.db`).
    pub fn key_value_store(&self, label: &str, state_dir: &Path) -> Option<KeyValueStoreConfig> {
        self.key_value_stores.get(label).cloned().or_else(|| {
            (label == "default").then(|| KeyValueStoreConfig::Spin {
                path: state_dir.join("sqlite_key_value.db"),
            })
        })
    }

    /// The database for a SQLite label: configured, or Spin's default for `default`
    /// (`<state-dir>/sqlite_db.db`).
    pub fn sqlite_database(&self, label: &str, state_dir: &Path) -> Option<SqliteDatabaseConfig> {
        self.sqlite_databases.get(label).cloned().or_else(|| {
            (label == "default").then(|| SqliteDatabaseConfig::Spin {
                path: state_dir.join("sqlite_db.db"),
            })
        })
    }
}

fn file_path(path: Option<String>, base: &Path, state_dir: &Path, default_name: &str) -> PathBuf {
    match path {
        Some(path) => base.join(path),
        None => state_dir.join(default_name),
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
            Path::new("/app/.spin"),
        )
    }

    #[test]
    fn reads_stores_and_databases() {
        let config = parse(
            r#"
[key_value_store.default]
type = "spin"
path = "data/kv.db"
[key_value_store.shared]
type = "redis"
url = "redis://127.0.0.1:6379"
[sqlite_database.default]
type = "spin"
[sqlite_database.audit]
type = "spin"
path = "/var/audit.db"
"#,
        )
        .unwrap();
        assert_eq!(
            config.key_value_store("default", Path::new("/s")),
            Some(KeyValueStoreConfig::Spin {
                path: "/app/data/kv.db".into()
            })
        );
        assert_eq!(
            config.key_value_store("shared", Path::new("/s")),
            Some(KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379".into()
            })
        );
        assert_eq!(
            config.sqlite_database("default", Path::new("/s")),
            Some(SqliteDatabaseConfig::Spin {
                path: "/app/.spin/sqlite_default.db".into()
            })
        );
        assert_eq!(
            config.sqlite_database("audit", Path::new("/s")),
            Some(SqliteDatabaseConfig::Spin {
                path: "/var/audit.db".into()
            })
        );
    }

    #[test]
    fn defaults_exist_only_for_the_default_label() {
        let config = RuntimeConfig::default();
        assert_eq!(
            config.key_value_store("default", Path::new("/s")),
            Some(KeyValueStoreConfig::Spin {
                path: "/s/sqlite_key_value.db".into()
            })
        );
        assert_eq!(config.key_value_store("other", Path::new("/s")), None);
        assert_eq!(
            config.sqlite_database("default", Path::new("/s")),
            Some(SqliteDatabaseConfig::Spin {
                path: "/s/sqlite_db.db".into()
            })
        );
        assert_eq!(config.sqlite_database("other", Path::new("/s")), None);
    }

    #[test]
    fn unknown_types_and_sections_are_problems() {
        let error = parse(
            r#"
[key_value_store.x]
type = "azure_cosmos"
[llm_compute]
type = "spin"
"#,
        )
        .unwrap_err();
        let LoadError::Invalid { problems, .. } = error else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("llm_compute"));
        assert!(problems[1].message.contains("azure_cosmos"));
    }
}
