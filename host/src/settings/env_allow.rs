//! The operator's allow-list of host variables a sidecar's `${NAME}` may
//! read: `--env-allow PATTERN` and `env_allow = [...]` in `--config`.

use std::collections::BTreeMap;
use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{SettingsError, Source};

/// Which host variables (and `--env-file` variables) a sidecar's `${NAME}`
/// may read: names matching one of the globs (`WEATHER_*`, `DB_?`,
/// `API_TOKEN`), case-sensitively, as variable names are. An empty list
/// allows none.
#[derive(Clone)]
pub struct EnvAllow {
    patterns: Vec<String>,
    set: GlobSet,
}

impl EnvAllow {
    /// The list of `patterns`; the first that is not a glob is the error.
    pub fn new(patterns: &[String]) -> Result<EnvAllow, InvalidEnvPattern> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let invalid = |reason: String| InvalidEnvPattern {
                pattern: pattern.clone(),
                reason,
            };
            if pattern.is_empty() {
                return Err(invalid("it is empty".to_owned()));
            }
            if let Some(c) = pattern
                .chars()
                .find(|&c| !(c == '_' || c.is_ascii_alphanumeric() || "*?[]!-".contains(c)))
            {
                return Err(invalid(format!(
                    "{c:?} is not in variable names (letters, digits, _) nor a glob's `*`, `?` \
                     or `[...]`"
                )));
            }
            set.add(Glob::new(pattern).map_err(|error| invalid(error.kind().to_string()))?);
        }
        let set = set.build().map_err(|error| InvalidEnvPattern {
            pattern: patterns.join(", "),
            reason: error.to_string(),
        })?;
        Ok(EnvAllow {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// Whether `${name}` may be read.
    pub fn allows(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl PartialEq for EnvAllow {
    fn eq(&self, other: &EnvAllow) -> bool {
        self.patterns == other.patterns
    }
}

impl fmt::Debug for EnvAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EnvAllow").field(&self.patterns).finish()
    }
}

/// An `--env-allow` or `env_allow` pattern that is not a glob of names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid variable pattern {pattern:?}: {reason}; write a name or a glob like \"WEATHER_*\""
)]
pub struct InvalidEnvPattern {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Every layer's `[env]`, a more specific layer's name replacing a lower
/// one's, with `${NAME}` filled from `vars`. A sidecar's references must be
/// in `allow`, if the operator gave one; `[defaults.env]` is the operator's
/// own file and is not checked.
pub(super) fn resolve_env(
    sources: &[Source<'_>],
    allow: Option<&EnvAllow>,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, SettingsError> {
    // Lowest layer first, so a more specific layer's name replaces it.
    let mut templates = BTreeMap::new();
    for source in sources.iter().rev() {
        for (name, template) in &source.layer.env {
            templates.insert(name.as_str(), (template, source));
        }
    }
    templates
        .into_iter()
        .map(|(name, (template, source))| {
            let key = format!("env.{name}");
            if let Some(allow) = allow
                && source.prefix.is_empty()
                && let Some(var) = template.vars().find(|var| !allow.allows(var))
            {
                return Err(source.error(&key, not_allowed(var, allow)));
            }
            let value = template.render(vars).map_err(|var| {
                source.error(
                    &key,
                    format!(
                        "`${{{var}}}` is not set: set {var} in the host's environment \
                         or in an --env-file"
                    ),
                )
            })?;
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// Why `${var}` may not be read, and how the operator would allow it.
fn not_allowed(var: &str, allow: &EnvAllow) -> String {
    let listed = if allow.patterns().is_empty() {
        "none".to_owned()
    } else {
        allow.patterns().join(", ")
    };
    format!(
        "`${{{var}}}` is not in the operator's allow-list of host variables (--env-allow, or \
         env_allow in --config; allowed: {listed}); the operator can allow it with \
         --env-allow {var}, or remove the reference"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(patterns: &[&str]) -> EnvAllow {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        EnvAllow::new(&patterns).unwrap()
    }

    #[test]
    fn names_match_globs_case_sensitively() {
        let list = allow(&["WEATHER_*", "DB_?", "API_TOKEN", "REGION_[AB]"]);
        let cases = [
            ("WEATHER_KEY", true),
            ("WEATHER_", true),
            ("weather_key", false),
            ("MY_WEATHER_KEY", false),
            ("DB_1", true),
            ("DB_12", false),
            ("API_TOKEN", true),
            ("API_TOKEN_2", false),
            ("REGION_A", true),
            ("REGION_C", false),
            ("AWS_SECRET_ACCESS_KEY", false),
        ];
        for (name, allowed) in cases {
            assert_eq!(list.allows(name), allowed, "{name}");
        }
        assert!(!allow(&[]).allows("ANY"), "an empty list allows none");
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (pattern, fragment) in [
            ("", "empty"),
            ("A B", "' ' is not in variable names"),
            ("WEATHER_{A,B}", "'{' is not in variable names"),
            ("A/B", "'/' is not in variable names"),
            ("DB_[", "unclosed"),
        ] {
            let error = EnvAllow::new(&[pattern.to_owned()]).unwrap_err();
            assert_eq!(error.pattern, pattern);
            assert!(error.to_string().contains(fragment), "{pattern}: {error}");
        }
    }
}
