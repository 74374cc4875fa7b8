//! An `[env]` value's `${NAME}` references: checked when the sidecar is
//! read, filled in when the route is resolved against the host's
//! environment.

use std::fmt;
use std::mem;

use super::{Redacted, is_env_name};

/// An `[env]` value as written: text and `${NAME}` references, checked when
/// the file is read and filled in by [`EnvTemplate::render`].
#[derive(Clone, PartialEq)]
pub(super) struct EnvTemplate(Vec<Piece>);

#[derive(Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

impl EnvTemplate {
    /// Errors give a character position, never the text: it may be a secret.
    pub(super) fn parse(text: &str) -> Result<EnvTemplate, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let position = text[..text.len() - rest.len() + at].chars().count() + 1;
            let after = &rest[at + 1..];
            if let Some(after) = after.strip_prefix('$') {
                literal.push('$');
                rest = after;
            } else if let Some(after) = after.strip_prefix('{') {
                let name = after
                    .find('}')
                    .map(|end| &after[..end])
                    .filter(|name| is_env_name(name));
                let Some(name) = name else {
                    return Err(format!(
                        "the `${{` at character {position} must be followed by a variable name \
                         and `}}`, like `${{API_TOKEN}}`; write `$$` for a literal `$`"
                    ));
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Text(mem::take(&mut literal)));
                }
                pieces.push(Piece::Var(name.to_owned()));
                rest = &after[name.len() + 1..];
            } else {
                return Err(format!(
                    "the `$` at character {position} must start a `${{NAME}}` reference; \
                     write `$$` for a literal `$`"
                ));
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(EnvTemplate(pieces))
    }

    /// The variables it references, in order.
    pub(super) fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|piece| match piece {
            Piece::Var(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The value with every reference filled from `vars`, or the name of the
    /// first variable `vars` does not have.
    pub(super) fn render(&self, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut value = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => value.push_str(text),
                Piece::Var(name) => value.push_str(&vars(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(value)
    }
}

impl fmt::Debug for EnvTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Redacted, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_syntax_errors_never_echo_the_value() {
        let cases = [
            ("pa$s", "the `$` at character 3"),
            ("trailing$", "the `$` at character 9"),
            ("${UNCLOSED", "the `${` at character 1"),
            ("x${}", "the `${` at character 2"),
            ("${not-a-name}", "the `${` at character 1"),
        ];
        for (value, fragment) in cases {
            let message = EnvTemplate::parse(value).unwrap_err();
            assert!(
                message.contains(fragment) && message.contains("$$"),
                "{value}: {message}"
            );
            assert!(!message.contains(value), "{message}");
        }
    }
}
