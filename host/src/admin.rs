//! The admin listener (`--admin ADDR`): health, readiness, metrics and the
//! route table, for probes, Prometheus and operators. It has its own
//! address, so it is never reachable through the public listener, and it
//! runs on the control runtime, so a saturated server still answers probes.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 once the first route table is loaded; 503 while
//!   loading, while a Redis key-value store has not answered since
//!   start-up, and from the shutdown signal on.
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//! - `GET /routes`: the route table as JSON.
//! - `POST /cache/purge[?route=PATTERN|?path=/PATH]`: drops cached
//!   responses ([`crate::response_cache`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::kv::Stores;
use crate::live::LiveRoutes;
use crate::loader::LoadedRoute;
use crate::metrics;
use crate::routing::Route;
use crate::server::{Connections, DEFAULT_MAX_HEADER_SIZE, Deadlines, http_builder};
use crate::settings::{CorsSettings, Origins, RouteSettings};

/// Where the server is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Loading the first route table: not ready.
    Loading = 0,
    /// Serving: ready.
    Serving = 1,
    /// Shutting down (draining, or waiting out `--shutdown-delay`): not ready.
    Draining = 2,
}

/// What the admin endpoints report; shared with the command that runs the
/// server, which moves the phase along.
pub struct Admin {
    phase: AtomicU8,
    routes: Arc<LiveRoutes>,
    routes_dir: PathBuf,
    /// The key-value stores, whose Redis ones `/readyz` waits for.
    stores: Option<Arc<Stores>>,
}

impl Admin {
    /// An admin in the [`Phase::Loading`] phase, reporting `routes` and
    /// their metrics; route files are shown relative to `routes_dir`.
    pub fn new(routes: Arc<LiveRoutes>, routes_dir: &Path) -> Admin {
        Admin {
            phase: AtomicU8::new(Phase::Loading as u8),
            routes,
            routes_dir: routes_dir.to_owned(),
            stores: None,
        }
    }

    /// `/readyz` answers 503 while a Redis store of `stores` has not
    /// answered since start-up.
    pub fn with_stores(mut self, stores: Arc<Stores>) -> Admin {
        self.stores = Some(stores);
        self
    }

    /// Why the server is not ready though serving: Redis stores not reached.
    fn unreached(&self) -> Vec<String> {
        self.stores
            .as_ref()
            .map_or_else(Vec::new, |stores| stores.unreached())
    }

    /// Sets the phase; `/readyz` answers by it from the next probe on.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Loading,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    fn answer(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        if path == "/cache/purge" {
            return self.purge(method, query);
        }
        if !matches!(*method, Method::GET | Method::HEAD) {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = HeaderValue::from_static("GET, HEAD");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.phase() {
                Phase::Serving => match self.unreached() {
                    unreached if unreached.is_empty() => text(StatusCode::OK, "ready\n"),
                    unreached => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{}\n", unreached.join("\n")),
                    ),
                },
                Phase::Loading => text(StatusCode::SERVICE_UNAVAILABLE, "loading routes\n"),
                Phase::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            },
            "/metrics" => {
                let metrics = self.routes.metrics().render();
                let mut response = Response::new(Full::new(Bytes::from(metrics)));
                let content_type = HeaderValue::from_static(metrics::CONTENT_TYPE);
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
                response
            }
            "/routes" if self.routes.is_loaded() => {
                let table = self.routes.current();
                let routes: Vec<Value> = table
                    .routes()
                    .iter()
                    .map(|route| route_json(route, &self.routes_dir))
                    .collect();
                let body =
                    serde_json::to_vec_pretty(&routes).expect("bug: JSON values always serialize");
                let mut response = Response::new(Full::new(Bytes::from(body)));
                let content_type = HeaderValue::from_static("application/json");
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
                response
            }
            "/routes" => text(StatusCode::SERVICE_UNAVAILABLE, "loading routes\n"),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: the admin listener serves /healthz, /readyz, /metrics, /routes \
                 and POST /cache/purge\n",
            ),
        }
    }

    /// `POST /cache/purge`: drops cached responses, those of one route
    /// (`?route=/api/users/[id]`), of one path whatever its query
    /// (`?path=/api/users/42`, Next.js's `revalidatePath`), or all.
    fn purge(&self, method: &Method, query: Option<&str>) -> Response<Full<Bytes>> {
        if *method != Method::POST {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = HeaderValue::from_static("POST");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
        let mut route = None;
        let mut path = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "route" if route.is_none() => route = Some(value.into_owned()),
                "path" if path.is_none() => path = Some(value.into_owned()),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unexpected `{key}`: give ?route=PATTERN, ?path=/PATH, or nothing \
                             to purge everything, once\n"
                        ),
                    );
                }
            }
        }
        let cache = self.routes.response_cache();
        let (purged, what) = match (route, path) {
            (Some(_), Some(_)) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "give ?route= or ?path=, not both\n",
                );
            }
            (Some(route), None) => (cache.purge_route(&route), format!("route {route}")),
            (None, Some(path)) => (cache.purge_path(&path), format!("path {path}")),
            (None, None) => (cache.purge_all(), "everything".to_owned()),
        };
        tracing::info!("response cache purged ({what}): {purged} key(s)");
        let body = json!({ "purged": purged }).to_string() + "\n";
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static("text/plain; charset=utf-8");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// One route of `/routes`.
fn route_json(route: &Route<LoadedRoute>, routes_dir: &Path) -> Value {
    let loaded = &route.value;
    let file = route.file.strip_prefix(routes_dir).unwrap_or(&route.file);
    let loaded_at = humantime::format_rfc3339_millis(loaded.loaded_at).to_string();
    let (state, settings, world) = match &loaded.state {
        Ok(ready) => {
            let mut settings = settings_json(&ready.settings);
            // The reuse in effect, which the world decides when unset.
            settings["reuse"] = match ready.reuse {
                None => Value::Bool(false),
                Some(reuse) => json!({
                    "max_requests": reuse.max_requests,
                    "max_concurrent": reuse.max_concurrent,
                    "idle_timeout": humantime::format_duration(reuse.idle_timeout).to_string(),
                }),
            };
            ("serving", settings, Value::from(ready.world().as_str()))
        }
        Err(_) => ("failed", Value::Null, Value::Null),
    };
    json!({
        "pattern": &*loaded.name,
        "file": file.display().to_string(),
        "hash": loaded.hash,
        "loaded_at": loaded_at,
        "state": state,
        "world": world,
        "last_error": loaded.last_error.as_ref().map(ToString::to_string),
        "settings": settings,
    })
}

/// A route's settings; of its environment only the names, since the
/// values are its secrets.
fn settings_json(settings: &RouteSettings) -> Value {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    json!({
        "methods": settings
            .methods
            .as_ref()
            .map(|methods| methods.iter().map(Method::as_str).collect::<Vec<_>>()),
        "max_concurrency": settings.max_concurrency,
        "timeout": duration(settings.timeout),
        "memory": settings.memory,
        "max_body": settings.max_body,
        "cpu_time": duration(settings.cpu_time),
        "max_outbound_connections": settings.outbound_connections.max(),
        "allowed_outbound_hosts": settings
            .allowed_outbound_hosts
            .entries()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        "key_value_stores": settings.key_value_stores,
        "dynamic": settings.dynamic.as_str(),
        "revalidate": settings.revalidate.map(duration),
        "cors": settings.cors.as_deref().map(|cors| cors_json(cors, duration)),
        "env": settings.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
    })
}

/// A route's `[cors]`, as its sidecar would say it.
fn cors_json(cors: &CorsSettings, duration: impl Fn(Duration) -> String) -> Value {
    let origins = match &cors.allow_origins {
        Origins::Any => vec!["*".to_owned()],
        Origins::List(list) => list.clone(),
    };
    json!({
        "allow_origins": origins,
        "allow_methods": cors
            .allow_methods
            .as_ref()
            .map(|methods| methods.iter().map(Method::as_str).collect::<Vec<_>>()),
        "allow_headers": cors.allow_headers,
        "expose_headers": cors.expose_headers,
        "allow_credentials": cors.allow_credentials,
        "max_age": cors.max_age.map(duration),
    })
}

/// Most open connections on the admin listener: probes, a Prometheus
/// scraper and an operator need a handful; the cap keeps idle sockets there
/// from using up the process's file descriptors. Past it, new connections
/// wait in the kernel's accept queue.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves the admin endpoints on `listener` until the task is dropped,
/// with the public listener's `header_timeout` (for the first request and
/// for idleness) and at most [`ADMIN_MAX_CONNECTIONS`] connections.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, header_timeout: Duration) {
    let connections = Connections {
        builder: http_builder(header_timeout, DEFAULT_MAX_HEADER_SIZE),
        tls: None,
        deadlines: Deadlines {
            first_request: header_timeout,
            idle: header_timeout,
        },
    };
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    // Never shut down: the admin listener answers until the process exits.
    let graceful = GracefulShutdown::new();
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("admin listener: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        let handler = move |request: Request<Incoming>| {
            let uri = request.uri();
            let response = admin.answer(request.method(), uri.path(), uri.query());
            async move { response }
        };
        connections.spawn(stream, peer, handler, graceful.watcher(), permit);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::metrics::Metrics;
    use crate::testing::{component, loader};

    /// An admin over live routes loaded from a folder holding `a.wasm`, and
    /// the live routes, not yet published.
    fn admin() -> (tempfile::TempDir, Arc<LiveRoutes>, Admin) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("a.wasm"), component(1)).unwrap();
        let live = Arc::new(LiveRoutes::new(Arc::new(Metrics::new(
            &Default::default(),
            &Default::default(),
        ))));
        let admin = Admin::new(live.clone(), dir.path());
        (dir, live, admin)
    }

    async fn get(admin: &Admin, path: &str) -> (StatusCode, String) {
        let response = admin.answer(&Method::GET, path, None);
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_phase() {
        let (_dir, _live, admin) = admin();
        assert_eq!(get(&admin, "/healthz").await.0, StatusCode::OK);
        let not_ready = (StatusCode::SERVICE_UNAVAILABLE, "loading routes\n".into());
        assert_eq!(get(&admin, "/readyz").await, not_ready);
        admin.set_phase(Phase::Serving);
        assert_eq!(get(&admin, "/readyz").await.0, StatusCode::OK);
        admin.set_phase(Phase::Draining);
        let draining = (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
        assert_eq!(get(&admin, "/readyz").await, draining);
    }

    #[tokio::test]
    async fn routes_shows_the_published_table() {
        let (dir, live, admin) = admin();
        assert_eq!(
            get(&admin, "/routes").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        live.publish(loader().load_dir(dir.path(), None).table);
        let (status, body) = get(&admin, "/routes").await;
        assert_eq!(status, StatusCode::OK);
        let routes: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(routes[0]["pattern"], "/a");
        assert_eq!(routes[0]["file"], "a.wasm");
        assert_eq!(routes[0]["state"], "serving");
        let (_, metrics) = get(&admin, "/metrics").await;
        assert!(metrics.contains("wedge_"), "{metrics}");
    }

    #[test]
    fn only_get_and_head_are_answered() {
        let (_dir, _live, admin) = admin();
        let response = admin.answer(&Method::POST, "/healthz", None);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        let missing = admin.answer(&Method::GET, "/nope", None);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
