//! Spin's `{{ variable }}` templates, used in component variables, `allowed_outbound_hosts` and
//! trigger settings.

use crate::ids::{IdError, VariableName};
use std::fmt;

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` without its closing `}}`.
    #[error("`{{{{` at byte {0} is never closed with `}}}}`")]
    Unclosed(usize),
    /// The text between the braces is not a variable name.
    #[error("`{{{{ {name} }}}}` does not name a variable: {reason}")]
    BadName {
        /// The text between the braces.
        name: String,
        /// Why it is not a variable name.
        reason: IdError,
    },
}

/// A string with `{{ name }}` placeholders for application variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(VariableName),
}

impl Template {
    /// Parses a template; text without `{{` is a plain literal.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after_open = &rest[open + 2..];
            let close = after_open
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            let name = after_open[..close].trim();
            let variable = VariableName::parse(name).map_err(|reason| TemplateError::BadName {
                name: name.to_owned(),
                reason,
            })?;
            parts.push(Part::Variable(variable));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The application variables this template refers to, in order of appearance.
    pub fn variables(&self) -> impl Iterator<Item = &VariableName> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name),
            Part::Literal(_) => None,
        })
    }

    /// Renders the template, asking `lookup` for each variable's value.
    pub fn render<E>(
        &self,
        mut lookup: impl FnMut(&VariableName) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(&lookup(name)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Variable(name) => write!(f, "{{{{ {name} }}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn render(template: &str) -> String {
        Template::parse(template)
            .unwrap()
            .render(|name| Ok::<_, Infallible>(format!("<{name}>")))
            .unwrap()
    }

    #[test]
    fn renders_literals_and_variables() {
        assert_eq!(render("plain"), "plain");
        assert_eq!(render("{{ host }}"), "<host>");
        assert_eq!(
            render("redis://{{host}}:{{ port }}/0"),
            "redis://<host>:<port>/0"
        );
        assert_eq!(render(""), "");
    }

    #[test]
    fn lists_variables_in_order() {
        let template = Template::parse("{{ a }}-{{ b_c }}").unwrap();
        let names: Vec<_> = template.variables().map(VariableName::as_str).collect();
        assert_eq!(names, ["a", "b_c"]);
    }

    #[test]
    fn refuses_unclosed_and_bad_names() {
        assert_eq!(
            Template::parse("x{{ a").unwrap_err(),
            TemplateError::Unclosed(1)
        );
        assert!(matches!(
            Template::parse("{{ Bad }}").unwrap_err(),
            TemplateError::BadName { .. }
        ));
        assert!(matches!(
            Template::parse("{{ }}").unwrap_err(),
            TemplateError::BadName { .. }
        ));
    }

    #[test]
    fn displays_in_canonical_form() {
        assert_eq!(Template::parse("a{{x}}b").unwrap().to_string(), "a{{ x }}b");
    }
}
