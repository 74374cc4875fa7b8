//! A route's `[cors]`, done by the host: preflights answered without a
//! guest, and the `Access-Control-*` headers on the route's responses
//! (the guest's, the cache's, and the host's errors) to the allowed
//! origins. The rules are the Fetch standard's: no `*` with credentials
//! (refused when the sidecar loads), `Vary: Origin` whenever the answer
//! depends on it.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::settings::{CorsSettings, Origins, RouteSettings};

/// The methods a preflight allows for a route that lists none.
const SAFELISTED_METHODS: &str = "GET, HEAD, POST";

/// The CORS work a request to a route with `[cors]` calls for.
pub struct Cors {
    settings: Arc<CorsSettings>,
    /// The request's `Origin`, if the route allows it; `None`: no CORS
    /// headers for it (a browser then refuses the answer to its page).
    origin: Option<HeaderValue>,
}

impl Cors {
    /// What `[cors]` asks for a request with `headers`: nothing if the
    /// route has no `[cors]` or the request no `Origin`.
    pub fn for_request(settings: &RouteSettings, headers: &HeaderMap) -> Option<Cors> {
        let cors = settings.cors.as_ref()?;
        let origin = headers.get(header::ORIGIN)?;
        Some(Cors {
            settings: cors.clone(),
            origin: cors
                .allow_origins
                .allows(origin.as_bytes())
                .then(|| origin.clone()),
        })
    }

    /// Whether the request is a preflight: `OPTIONS` with
    /// `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight for a route whose `methods` are `methods`:
    /// `204` with what the route allows, or without any
    /// `Access-Control-Allow-*` header for an origin it does not.
    pub fn preflight<B: Default>(&self, methods: Option<&[Method]>) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        if self.origin.is_none() {
            return response;
        }
        self.allow_origin(headers);
        let cors = &self.settings;
        let methods = match cors.allow_methods.as_deref().or(methods) {
            Some(methods) => join(methods.iter().map(Method::as_str)),
            None => SAFELISTED_METHODS.to_owned(),
        };
        insert(headers, header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        if !cors.allow_headers.is_empty() {
            let allowed = join(cors.allow_headers.iter().map(String::as_str));
            insert(headers, header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
        }
        if let Some(max_age) = cors.max_age {
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(max_age.as_secs()),
            );
        }
        response
    }

    /// Adds the headers an actual (not preflight) response carries.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        if self.settings.allow_origins != Origins::Any || self.settings.allow_credentials {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.origin.is_none() {
            return;
        }
        self.allow_origin(headers);
        if !self.settings.expose_headers.is_empty() {
            let exposed = join(self.settings.expose_headers.iter().map(String::as_str));
            insert(headers, header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
        }
    }

    /// `Access-Control-Allow-Origin` (and `-Credentials`).
    fn allow_origin(&self, headers: &mut HeaderMap) {
        let cors = &self.settings;
        let origin = match (&cors.allow_origins, &self.origin) {
            (Origins::Any, _) if !cors.allow_credentials => HeaderValue::from_static("*"),
            (_, Some(origin)) => origin.clone(),
            (_, None) => return,
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if cors.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: String) {
    let value = HeaderValue::try_from(value)
        .expect("bug: methods and header names checked at load are valid header values");
    headers.insert(name, value);
}
