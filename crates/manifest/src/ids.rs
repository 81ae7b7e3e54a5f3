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
        check_spin_id(text, '-', '_')?;
        Ok(Self(text.to_owned()))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a key-value store or SQLite database label: Spin accepts kebab-case or snake_case.
pub fn check_label(text: &str) -> Result<(), IdError> {
    check_spin_id(text, '-', '_').or_else(|_| check_spin_id(text, '_', '-'))
}

/// Spin's id rule (`spin_serde::id::Id`): words separated by `delimiter`, the first starting with
/// an ASCII letter, each made of ASCII letters, digits and `:`, and each word either all
/// lowercase or all uppercase.
fn check_spin_id(text: &str, delimiter: char, wrong_delimiter: char) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.contains(wrong_delimiter) {
        return Err(IdError::Spelling(if delimiter == '-' {
            "words must be separated with '-', not '_'"
        } else {
            "words must be separated with '_', not '-'"
        }));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(IdError::Spelling("must start with an ASCII letter"));
    }
    for word in text.split(delimiter) {
        if word.is_empty() {
            return Err(IdError::Spelling(
                "words must not be empty (no leading, trailing or doubled separators)",
            ));
        }
        if !word.chars().all(|c| c.is_ascii_alphanumeric() || c == ':') {
            return Err(IdError::Spelling(
                "may contain only ASCII letters, digits, ':' and separators",
            ));
        }
        let lower = word.chars().any(|c| c.is_ascii_lowercase());
        let upper = word.chars().any(|c| c.is_ascii_uppercase());
        if lower && upper {
            return Err(IdError::Spelling(
                "each word must be all lowercase or all uppercase",
            ));
        }
    }
    Ok(())
}

impl std::borrow::Borrow<str> for ComponentId {
    fn borrow(&self) -> &str {
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
        for good in [
            "orders",
            "external-sim",
            "api2",
            "a-1-b",
            "HTTP-api",
            "ns:name",
        ] {
            assert!(ComponentId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Orders", "-a", "a-", "a--b", "2fast", "a_b", "a b"] {
            assert!(ComponentId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_may_be_kebab_or_snake_case() {
        for good in ["default", "order-cache", "order_cache"] {
            assert!(check_label(good).is_ok(), "{good}");
        }
        for bad in ["", "a-b_c", "Mixed", "1x"] {
            assert!(check_label(bad).is_err(), "{bad}");
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
