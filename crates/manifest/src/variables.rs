//! Application variables: declarations, where values come from, and resolution at start-up.

use crate::ids::VariableName;
use crate::problem::ConfigProblem;
use crate::template::Template;
use std::collections::BTreeMap;
use std::convert::Infallible;

/// An application variable as declared under `[variables]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    /// The value used when no source provides one.
    pub default: Option<String>,
    /// Whether start-up fails when no source provides a value.
    pub required: bool,
    /// Whether the value must be kept out of logs.
    pub secret: bool,
}

/// Where variable values come from besides manifest defaults, highest priority first:
/// `--variable name=value` overrides, then `SPIN_VARIABLE_<NAME>` from the environment, then
/// the same names from a `.env` file (Spin's environment provider reads both).
#[derive(Debug, Clone, Default)]
pub struct VariableSources {
    /// Values given on the command line, by variable name.
    pub overrides: BTreeMap<String, String>,
    /// Environment entries (only `SPIN_VARIABLE_*` ones are consulted).
    pub environment: BTreeMap<String, String>,
    /// Entries of the `.env` file, consulted after `environment`.
    pub dotenv: BTreeMap<String, String>,
}

impl VariableSources {
    /// Sources with the given command-line overrides, this process's environment, and the
    /// `.env` file in the current folder if there is one.
    pub fn with_process_env(overrides: BTreeMap<String, String>) -> Self {
        Self {
            overrides,
            environment: std::env::vars()
                .filter(|(key, _)| key.starts_with("SPIN_VARIABLE_"))
                .collect(),
            dotenv: std::fs::read_to_string(".env")
                .map(|text| parse_dotenv(&text))
                .unwrap_or_default(),
        }
    }
}

/// Reads `KEY=VALUE` lines (optionally `export KEY=VALUE`, values optionally quoted); blank lines
/// and `#` comments are skipped.
fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(open, close)| value.strip_prefix(*open)?.strip_suffix(*close))
                .unwrap_or(value);
            Some((key.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

/// The value of every application variable, resolved once at start-up.
#[derive(Debug, Clone, Default)]
pub struct ResolvedVariables {
    values: BTreeMap<VariableName, String>,
}

impl ResolvedVariables {
    /// Resolves every declared variable from `sources`, then defaults. Reports each required
    /// variable without a value and each override that names no declared variable.
    pub(crate) fn resolve(
        declared: &BTreeMap<VariableName, VariableDecl>,
        sources: &VariableSources,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        for name in sources.overrides.keys() {
            let known = VariableName::parse(name)
                .map(|name| declared.contains_key(&name))
                .unwrap_or(false);
            if !known {
                problems.push(ConfigProblem::new(
                    format!("--variable {name}"),
                    format!("the manifest declares no variable `{name}`"),
                    "check the spelling, or declare it under [variables] in spin.toml",
                ));
            }
        }
        let mut values = BTreeMap::new();
        for (name, decl) in declared {
            let value = sources
                .overrides
                .get(name.as_str())
                .or_else(|| sources.environment.get(&name.env_var()))
                .or_else(|| sources.dotenv.get(&name.env_var()))
                .or(decl.default.as_ref());
            match value {
                Some(value) => {
                    values.insert(name.clone(), value.clone());
                }
                None => problems.push(ConfigProblem::new(
                    format!("[variables] {name}"),
                    format!("variable `{name}` is required but has no value"),
                    format!(
                        "set the environment variable {}=..., or pass --variable {name}=...",
                        name.env_var()
                    ),
                )),
            }
        }
        if problems.is_empty() {
            Ok(Self { values })
        } else {
            Err(problems)
        }
    }

    /// The value of a declared variable.
    pub fn get(&self, name: &VariableName) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Renders a template whose variables were checked against the declarations when the
    /// manifest was loaded (an undeclared one renders as empty, which cannot happen for
    /// templates from a loaded [`crate::App`]).
    pub fn render(&self, template: &Template) -> String {
        let rendered: Result<String, Infallible> =
            template.render(|name| Ok(self.get(name).unwrap_or_default().to_owned()));
        match rendered {
            Ok(text) => text,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> BTreeMap<VariableName, VariableDecl> {
        let mut map = BTreeMap::new();
        map.insert(
            VariableName::parse("with_default").unwrap(),
            VariableDecl {
                default: Some("d".into()),
                required: false,
                secret: false,
            },
        );
        map.insert(
            VariableName::parse("api_key").unwrap(),
            VariableDecl {
                default: None,
                required: true,
                secret: true,
            },
        );
        map
    }

    #[test]
    fn overrides_beat_environment_beats_default() {
        let mut sources = VariableSources::default();
        sources
            .environment
            .insert("SPIN_VARIABLE_API_KEY".into(), "from-env".into());
        sources
            .environment
            .insert("SPIN_VARIABLE_WITH_DEFAULT".into(), "env".into());
        let resolved = ResolvedVariables::resolve(&declared(), &sources).unwrap();
        assert_eq!(
            resolved.get(&VariableName::parse("api_key").unwrap()),
            Some("from-env")
        );
        assert_eq!(
            resolved.get(&VariableName::parse("with_default").unwrap()),
            Some("env")
        );

        sources.overrides.insert("api_key".into(), "cli".into());
        let resolved = ResolvedVariables::resolve(&declared(), &sources).unwrap();
        assert_eq!(
            resolved.get(&VariableName::parse("api_key").unwrap()),
            Some("cli")
        );
    }

    #[test]
    fn dotenv_comes_after_the_environment() {
        let mut sources = VariableSources {
            dotenv: parse_dotenv(
                "# comment\nexport SPIN_VARIABLE_API_KEY=\"dot\"\n\nSPIN_VARIABLE_WITH_DEFAULT='x'\n",
            ),
            ..VariableSources::default()
        };
        let resolved = ResolvedVariables::resolve(&declared(), &sources).unwrap();
        assert_eq!(
            resolved.get(&VariableName::parse("api_key").unwrap()),
            Some("dot")
        );
        assert_eq!(
            resolved.get(&VariableName::parse("with_default").unwrap()),
            Some("x")
        );
        sources
            .environment
            .insert("SPIN_VARIABLE_API_KEY".into(), "env".into());
        let resolved = ResolvedVariables::resolve(&declared(), &sources).unwrap();
        assert_eq!(
            resolved.get(&VariableName::parse("api_key").unwrap()),
            Some("env")
        );
    }

    #[test]
    fn missing_required_and_unknown_override_are_reported_together() {
        let mut sources = VariableSources::default();
        sources.overrides.insert("nope".into(), "x".into());
        let problems = ResolvedVariables::resolve(&declared(), &sources).unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("no variable `nope`"));
        assert!(problems[1].message.contains("`api_key` is required"));
        assert!(problems[1].fix.contains("SPIN_VARIABLE_API_KEY"));
    }

    #[test]
    fn renders_templates_with_resolved_values() {
        let resolved = ResolvedVariables::resolve(
            &declared(),
            &VariableSources {
                overrides: [("api_key".to_string(), "k".to_string())].into(),
                ..VariableSources::default()
            },
        )
        .unwrap();
        let template = Template::parse("{{ with_default }}/{{ api_key }}").unwrap();
        assert_eq!(resolved.render(&template), "d/k");
    }
}
