//! Identifiers with Spin's spelling rules, parsed once at the edge.

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text was empty.
    #[error("must not be empty")]
    Empty,
    /// The text broke the spelling rule described in the message.
    #[error("{0}")]
    Spelling(&'static str),
}

/// A component id (`[component.<id>]`): kebab-case, as Spin requires: lowercase ASCII letters and
/// digits in words joined by single hyphens, starting with a letter (`orders`, `external-sim`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(String);

impl ComponentId {
    /// Parses a component id, refusing anything Spin would refuse.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        check_words(
            text,
            '-',
            "use lowercase letters and digits in words joined by single hyphens, starting with a letter (e.g. `external-sim`)",
        )?;
        Ok(Self(text.to_owned()))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A variable name (application `[variables]` and component `[component.x.variables]` keys):
/// snake_case, as Spin requires: lowercase ASCII letters and digits in words joined by single
/// underscores, starting with a letter (`redis_url`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VariableName(String);

impl VariableName {
    /// Parses a variable name, refusing anything Spin would refuse.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        check_words(
            text,
            '_',
            "use lowercase letters and digits in words joined by single underscores, starting with a letter (e.g. `redis_url`)",
        )?;
        Ok(Self(text.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The environment variable Spin's environment provider reads for this name
    /// (`redis_url` → `SPIN_VARIABLE_REDIS_URL`).
    pub fn env_var(&self) -> String {
        format!("SPIN_VARIABLE_{}", self.0.to_ascii_uppercase())
    }
}

impl fmt::Display for VariableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_words(text: &str, separator: char, rule: &'static str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    let starts_with_letter = text.starts_with(|c: char| c.is_ascii_lowercase());
    let words_ok = text.split(separator).all(|word| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if starts_with_letter && words_ok {
        Ok(())
    } else {
        Err(IdError::Spelling(rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_follow_kebab_case() {
        for good in ["orders", "external-sim", "api2", "a-1-b"] {
            assert!(ComponentId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Orders", "-a", "a-", "a--b", "2fast", "a_b", "a b"] {
            assert!(ComponentId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn variable_names_follow_snake_case_and_map_to_env() {
        let name = VariableName::parse("redis_url").unwrap();
        assert_eq!(name.env_var(), "SPIN_VARIABLE_REDIS_URL");
        for bad in ["", "RedisUrl", "_a", "a_", "a__b", "a-b", "9a"] {
            assert!(VariableName::parse(bad).is_err(), "{bad}");
        }
    }
}
