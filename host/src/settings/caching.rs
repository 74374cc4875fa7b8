//! `dynamic` and `revalidate`: whether the host's response cache may keep
//! a route's `GET` answers, as Next.js's route segment config says it.

use std::fmt;
use std::time::Duration;

use toml::Value;

use super::layer::wrong_type;
use super::limits::Shown;

/// The longest `revalidate`: a year, as Next.js's default `expireTime`.
pub const MAX_REVALIDATE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A route's `dynamic`: who decides whether its answers are cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dynamic {
    /// The guest's `Cache-Control` decides; a route that sets none is
    /// cached for its `revalidate`, if it has one, and otherwise not.
    #[default]
    Auto,
    /// Never cached, whatever the guest says.
    ForceDynamic,
    /// Cached for `revalidate` (until purged if unset), whatever
    /// `Cache-Control` the guest sends; `Set-Cookie` answers still are not.
    ForceStatic,
}

impl Dynamic {
    /// The sidecar's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Dynamic::Auto => "auto",
            Dynamic::ForceDynamic => "force-dynamic",
            Dynamic::ForceStatic => "force-static",
        }
    }
}

impl fmt::Display for Dynamic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `dynamic = "auto" | "force-dynamic" | "force-static"`.
pub(super) fn dynamic(value: Value) -> Result<Dynamic, String> {
    const EXPECTED: &str = "\"auto\", \"force-dynamic\" or \"force-static\"";
    let Value::String(text) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    [Dynamic::Auto, Dynamic::ForceDynamic, Dynamic::ForceStatic]
        .into_iter()
        .find(|mode| mode.as_str() == text)
        .ok_or_else(|| format!("is {text:?}; must be {EXPECTED}"))
}

/// `revalidate = "60s"`: from a second to [`MAX_REVALIDATE`].
pub(super) fn revalidate(value: Value) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration like \"60s\", \"10m\" or \"1h\"";
    let Value::String(text) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    match humantime::parse_duration(&text) {
        Ok(duration) if duration < Duration::from_secs(1) => Err(format!(
            "{text:?} is less than a second; write {EXPECTED}, or dynamic = \"force-dynamic\" \
             for a route that is never cached"
        )),
        Ok(duration) if duration > MAX_REVALIDATE => Err(format!(
            "{text:?} is more than the most allowed, {}",
            MAX_REVALIDATE.shown()
        )),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{text:?} is not a duration ({error}); write {EXPECTED}"
        )),
    }
}
