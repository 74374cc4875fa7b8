//! A sidecar's `reuse`: whether one instance of the route serves more than
//! one request, as `wasmtime serve`'s `--max-instance-reuse-count`,
//! `--max-instance-concurrent-reuse-count` and `--idle-instance-timeout`.
//!
//! `reuse = false` gives every request a fresh instance; `reuse = true`, or
//! a `[reuse]` table, reuses instances. Unset, the component's world
//! decides: WASI 0.3 components reuse (wasmtime serve's and Spin's default),
//! WASI 0.2 ones do not.

use std::time::Duration;

use toml::{Table, Value};

use super::SettingsError;
use super::layer::{Ctx, wrong_type};
use super::limits::Shown;

/// The keys of `[reuse]`.
const REUSE_KEYS: &[&str] = &["max_requests", "max_concurrent", "idle_timeout"];

/// Requests one instance serves before it is retired: wasmtime serve's default.
pub const DEFAULT_MAX_REQUESTS: u32 = 128;
/// Requests one WASI 0.3 instance serves at once: wasmtime serve's default.
pub const DEFAULT_MAX_CONCURRENT: u32 = 16;
/// How long an instance with nothing to do is kept: wasmtime serve's default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The most requests one instance may serve: past that, a leak in a guest
/// lives too long.
pub const MAX_MAX_REQUESTS: u32 = 1_000_000;
/// The most requests one instance may serve at once.
pub const MAX_MAX_CONCURRENT: u32 = 1_000;
/// The longest `idle_timeout`: an idle instance holds a pool slot.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// What a sidecar says about reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// `reuse = false`: a fresh instance per request.
    Off,
    /// `reuse = true` or `[reuse]`: instances serve several requests.
    On(ReuseLimits),
}

/// How far one instance is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseLimits {
    /// Requests an instance serves before it is retired.
    pub max_requests: u32,
    /// Requests it serves at once (always 1 for a WASI 0.2 component).
    pub max_concurrent: u32,
    /// How long it is kept with nothing to do.
    pub idle_timeout: Duration,
}

impl Default for ReuseLimits {
    fn default() -> ReuseLimits {
        ReuseLimits {
            max_requests: DEFAULT_MAX_REQUESTS,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// `reuse = true | false`, or the `[reuse]` table.
pub(super) fn parse_reuse(ctx: &Ctx<'_>, value: Value) -> Result<Reuse, SettingsError> {
    const EXPECTED: &str = "true, false, or a table ([reuse]) with max_requests, \
                            max_concurrent and idle_timeout";
    let mut table: Table = match value {
        Value::Boolean(false) => return Ok(Reuse::Off),
        Value::Boolean(true) => return Ok(Reuse::On(ReuseLimits::default())),
        Value::Table(table) => table,
        other => return Err(ctx.error("reuse", wrong_type(EXPECTED, &other))),
    };
    let ctx = ctx.nested("reuse");
    ctx.reject_unknown(&table, REUSE_KEYS)?;
    let defaults = ReuseLimits::default();
    Ok(Reuse::On(ReuseLimits {
        max_requests: ctx
            .take(&mut table, "max_requests", |v| bounded(v, MAX_MAX_REQUESTS))?
            .unwrap_or(defaults.max_requests),
        max_concurrent: ctx
            .take(&mut table, "max_concurrent", |v| {
                bounded(v, MAX_MAX_CONCURRENT)
            })?
            .unwrap_or(defaults.max_concurrent),
        idle_timeout: ctx
            .take(&mut table, "idle_timeout", idle_timeout)?
            .unwrap_or(defaults.idle_timeout),
    }))
}

fn bounded(value: Value, most: u32) -> Result<u32, String> {
    let expected = format!("an integer from 1 to {most}");
    match value {
        Value::Integer(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=most).contains(n))
            .ok_or_else(|| format!("must be {expected}; found {n}")),
        other => Err(wrong_type(&expected, &other)),
    }
}

fn idle_timeout(value: Value) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration like \"1s\" or \"500ms\"";
    let Value::String(text) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    match humantime::parse_duration(&text) {
        Ok(duration) if duration.is_zero() => Err(format!(
            "must be more than 0, {EXPECTED} (reuse = false gives a fresh instance per request)"
        )),
        Ok(duration) if duration > MAX_IDLE_TIMEOUT => Err(format!(
            "{text:?} is more than the most allowed, {}",
            MAX_IDLE_TIMEOUT.shown()
        )),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{text:?} is not a duration ({error}); write {EXPECTED}"
        )),
    }
}
