//! A sidecar's `[cors]` table: which other origins' pages may call the
//! route from a browser. The host answers their preflights and adds the
//! `Access-Control-*` headers, so a route in any language gets CORS
//! without code, and a preflight never starts a guest.

use std::time::Duration;

use http::{HeaderName, Method};
use toml::{Table, Value};

use super::SettingsError;
use super::layer::{Ctx, methods, wrong_type};
use super::limits::Shown;

/// The keys of `[cors]`.
const CORS_KEYS: &[&str] = &[
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
];

/// The longest `max_age`: a day, what Firefox allows (Chromium caps
/// preflights at two hours).
pub const MAX_CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A route's `[cors]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    /// The origins whose pages may call the route.
    pub allow_origins: Origins,
    /// The methods a preflight allows; `None`: the route's `methods`, or
    /// `GET, HEAD, POST` when it lists none.
    pub allow_methods: Option<Vec<Method>>,
    /// Request headers a preflight allows beyond the CORS-safelisted ones;
    /// `["*"]` (without credentials): any.
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read beyond the safelisted ones.
    pub expose_headers: Vec<String>,
    /// Whether pages may send cookies and read the answer
    /// (`Access-Control-Allow-Credentials: true`).
    pub allow_credentials: bool,
    /// How long a browser may keep a preflight's answer.
    pub max_age: Option<Duration>,
}

/// `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `["*"]`: any origin.
    Any,
    /// These origins, each `scheme://host[:port]` in lowercase, the
    /// scheme's default port left out; a host `*.example.com` matches its
    /// subdomains.
    List(Vec<String>),
}

impl Origins {
    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Origins::List(list) = self else {
            return true;
        };
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        list.iter().any(|allowed| origin_matches(allowed, origin))
    }
}

/// Whether `origin` (as a browser sends it) is `allowed`, which may have a
/// `*.` host wildcard.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    if allowed.eq_ignore_ascii_case(origin) {
        return true;
    }
    let Some((scheme, rest)) = allowed.split_once("://*.") else {
        return false;
    };
    let Some(host) = origin
        .get(..scheme.len() + 3)
        .filter(|prefix| prefix.eq_ignore_ascii_case(&format!("{scheme}://")))
        .map(|_| &origin[scheme.len() + 3..])
    else {
        return false;
    };
    // `host` is `sub.example.com[:port]`; `rest` is `example.com[:port]`.
    host.len() > rest.len() + 1
        && host[host.len() - rest.len()..].eq_ignore_ascii_case(rest)
        && host.as_bytes()[host.len() - rest.len() - 1] == b'.'
}

pub(super) fn parse_cors(ctx: &Ctx<'_>, mut table: Table) -> Result<CorsSettings, SettingsError> {
    ctx.reject_unknown(&table, CORS_KEYS)?;
    let allow_origins = ctx
        .take(&mut table, "allow_origins", origins)?
        .ok_or_else(|| {
            ctx.error(
                "allow_origins",
                "is required: the origins whose pages may call this route, like \
                 [\"https://app.example.com\"], or [\"*\"] for any",
            )
        })?;
    let allow_methods = ctx.take(&mut table, "allow_methods", methods)?;
    let allow_headers = ctx
        .take(&mut table, "allow_headers", |value| {
            header_names(value, true)
        })?
        .unwrap_or_default();
    let expose_headers = ctx
        .take(&mut table, "expose_headers", |value| {
            header_names(value, false)
        })?
        .unwrap_or_default();
    let allow_credentials = ctx
        .take(&mut table, "allow_credentials", |value| match value {
            Value::Boolean(flag) => Ok(flag),
            other => Err(wrong_type("true or false", &other)),
        })?
        .unwrap_or(false);
    let max_age = ctx.take(&mut table, "max_age", max_age)?;
    if allow_credentials {
        if allow_origins == Origins::Any {
            return Err(ctx.error(
                "allow_origins",
                "[\"*\"] with allow_credentials = true would let any site act with a \
                 visitor's cookies (browsers refuse it too); list the origins",
            ));
        }
        if allow_headers.iter().any(|name| name == "*") {
            return Err(ctx.error(
                "allow_headers",
                "[\"*\"] is not allowed with allow_credentials = true (browsers take it as \
                 a header named `*`); list the headers",
            ));
        }
    }
    Ok(CorsSettings {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        allow_credentials,
        max_age,
    })
}

fn origins(value: Value) -> Result<Origins, String> {
    const EXPECTED: &str = "a list of origins like [\"https://app.example.com\", \"http://localhost:5173\"], or [\"*\"]";
    let Value::Array(items) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    let items = items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Ok(text),
            other => Err(wrong_type(EXPECTED, &other)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match items.as_slice() {
        [] => Err(format!("is empty; must be {EXPECTED}")),
        [any] if any == "*" => Ok(Origins::Any),
        _ => items
            .iter()
            .map(|item| origin(item))
            .collect::<Result<_, _>>()
            .map(Origins::List),
    }
}

/// One `allow_origins` entry, normalized as browsers send `Origin`.
fn origin(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "{text:?} is not an origin ({why}); write scheme://host[:port], like \"https://app.example.com\""
        )
    };
    if text == "*" {
        return Err("\"*\" must be alone in the list: any origin".into());
    }
    let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return Err(bad("the scheme must be http or https")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(bad("an origin has no path, query or user"));
    }
    let (wildcard, host) = match rest.strip_prefix("*.") {
        Some(host) => (true, host),
        None => (false, rest),
    };
    let authority: http::uri::Authority = host.parse().map_err(|_| bad("bad host"))?;
    if authority.host().contains('*') {
        return Err(bad(
            "`*` only as the first label, as in https://*.example.com",
        ));
    }
    let mut host = authority.as_str().to_ascii_lowercase();
    if let Some(bare) = host.strip_suffix(default_port) {
        host = bare.to_owned();
    }
    let star = if wildcard { "*." } else { "" };
    Ok(format!("{scheme}://{star}{host}"))
}

fn header_names(value: Value, wildcard: bool) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "a list of header names, like [\"content-type\", \"authorization\"]";
    let Value::Array(items) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(name) if wildcard && name == "*" => Ok(name),
            Value::String(name) => HeaderName::from_bytes(name.as_bytes())
                .map(|name| name.as_str().to_owned())
                .map_err(|_| format!("{name:?} is not a header name")),
            other => Err(wrong_type(EXPECTED, &other)),
        })
        .collect()
}

fn max_age(value: Value) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration like \"10m\" or \"1h\"";
    let Value::String(text) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    match humantime::parse_duration(&text) {
        Ok(duration) if duration > MAX_CORS_MAX_AGE => Err(format!(
            "{text:?} is more than browsers keep a preflight, {}",
            MAX_CORS_MAX_AGE.shown()
        )),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{text:?} is not a duration ({error}); write {EXPECTED}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<CorsSettings, String> {
        let top = Ctx::top(Path::new("r.toml"));
        parse_cors(&top.nested("cors"), text.parse::<Table>().unwrap())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        let cors =
            parse("allow_origins = [\"HTTPS://App.Example.com:443/\", \"http://localhost:5173\"]")
                .unwrap();
        assert_eq!(
            cors.allow_origins,
            Origins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:5173".into()
            ])
        );
        assert!(cors.allow_origins.allows(b"https://app.example.com"));
        assert!(cors.allow_origins.allows(b"http://localhost:5173"));
        assert!(!cors.allow_origins.allows(b"http://app.example.com"));
        assert!(
            !cors
                .allow_origins
                .allows(b"https://app.example.com.evil.test")
        );
        assert!(!cors.allow_origins.allows(b"null"));
    }

    #[test]
    fn a_wildcard_host_matches_subdomains_only() {
        let cors = parse("allow_origins = [\"https://*.example.com\"]").unwrap();
        assert!(cors.allow_origins.allows(b"https://preview-1.example.com"));
        assert!(cors.allow_origins.allows(b"https://a.b.example.com"));
        assert!(!cors.allow_origins.allows(b"https://example.com"));
        assert!(!cors.allow_origins.allows(b"https://evilexample.com"));
        assert!(!cors.allow_origins.allows(b"http://a.example.com"));
    }

    #[test]
    fn bad_tables_say_what_is_wrong() {
        for (text, says) in [
            ("", "`cors.allow_origins`: is required"),
            ("allow_origins = []", "is empty"),
            ("allow_origins = [\"app.example.com\"]", "no scheme"),
            ("allow_origins = [\"ftp://a.example\"]", "http or https"),
            ("allow_origins = [\"https://a.example/path\"]", "no path"),
            (
                "allow_origins = [\"*\", \"https://a.example\"]",
                "must be alone",
            ),
            (
                "allow_origins = [\"*\"]\nallow_credentials = true",
                "would let any site act with a visitor's cookies",
            ),
            (
                "allow_origins = [\"https://a.example\"]\nallow_credentials = true\nallow_headers = [\"*\"]",
                "not allowed with allow_credentials",
            ),
            (
                "allow_origins = [\"*\"]\nallow_headers = [\"bad header\"]",
                "not a header name",
            ),
            (
                "allow_origins = [\"*\"]\nmax_age = \"2d\"",
                "more than browsers keep",
            ),
            (
                "allow_origins = [\"*\"]\nallow_methods = [\"get\"]",
                "case-sensitive",
            ),
            (
                "allow_origins = [\"*\"]\norigin = 1",
                "`cors.origin`: unknown key",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
            assert!(error.starts_with("r.toml: "), "{error}");
        }
    }
}
