//! Runs one request in a fresh, sandboxed instance of a route's component.
//!
//! Every WASI 0.2 interface is linked, because real guests import them
//! (Rust std: `cli/environment`, `exit`, `terminal-*`; componentize-py and
//! ComponentizeJS: filesystem and sockets too). Linked is not granted: no
//! preopened directories, no host environment (only the route's `[env]`),
//! sockets refused by the address check, outbound HTTP only to the route's
//! `allowed_outbound_hosts`. A guest sees
//! its request, writes its response, reads clocks and random, and logs
//! through stdout/stderr. Its linear memory is capped by the route's
//! `memory`, its run time by `timeout`, its request body by `max_body`.
//!
//! Components built against any WASI 0.2.x link: wasmtime's linker matches
//! imports of `wasi:*@0.2.N` to the newer 0.2 implementations it holds.

mod body;
mod run;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::guest_log::{GuestLog, GuestStream};
use crate::outbound::send_request;
use crate::settings::RouteSettings;

pub use body::{LINGER_BYTES, LINGER_TIME, linger};
pub use run::handle;
pub use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// What a guest's instance answered.
pub type GuestResponse = hyper::Response<HyperOutgoingBody>;

/// Why a guest produced no response.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest trapped (panic, unreachable, out of bounds, memory growth
    /// failed) or failed to instantiate.
    #[error("guest trapped: {0:?}")]
    Trapped(wasmtime::Error),
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("guest answered with error code {0:?}")]
    ErrorCode(ErrorCode),
    /// The guest returned from `handle` without setting a response.
    #[error("guest returned without sending a response")]
    NoResponse,
    /// The guest ran past the route's `timeout` and was stopped.
    #[error("guest did not answer within its timeout of {0:?}; instance stopped")]
    Timeout(Duration),
    /// The guest ran on the CPU past the route's `cpu_time` and was stopped.
    #[error(
        "guest used up its CPU time of {0:?}; instance stopped (raise `cpu_time` in its sidecar)"
    )]
    CpuTime(Duration),
    /// The request body passed the route's `max_body` before the guest answered.
    #[error("request body over the route's max_body of {0} bytes")]
    BodyTooLarge(u64),
}

/// What one request's run measured, for the access log and metrics.
#[derive(Debug, Default)]
pub struct RunStats {
    body_read: AtomicU64,
    /// Nanoseconds to instantiate, plus one; 0: no instance was made.
    instantiation: AtomicU64,
}

impl RunStats {
    /// Request body bytes the guest read so far.
    pub fn body_read(&self) -> u64 {
        self.body_read.load(Ordering::Relaxed)
    }

    /// How long the instance took to create, once it has been.
    pub fn instantiation(&self) -> Option<Duration> {
        match self.instantiation.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }

    fn add_body_read(&self, bytes: u64) {
        self.body_read.fetch_add(bytes, Ordering::Relaxed);
    }

    fn set_instantiation(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        self.instantiation.store(nanos + 1, Ordering::Relaxed);
    }
}

/// All state of one request's instance, lent to WASI through its view traits.
pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundPolicy,
    limits: StoreLimits,
}

impl GuestState {
    fn new(route: &Arc<str>, settings: &Arc<RouteSettings>) -> GuestState {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestLog::new(route.clone(), GuestStream::Stdout))
            .stderr(GuestLog::new(route.clone(), GuestStream::Stderr));
        for (name, value) in &settings.env {
            wasi.env(name, value);
        }
        let memory = usize::try_from(settings.memory).unwrap_or(usize::MAX);
        GuestState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundPolicy {
                route: route.clone(),
                settings: settings.clone(),
            },
            limits: StoreLimitsBuilder::new().memory_size(memory).build(),
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound `wasi:http` requests: only to the route's
/// `allowed_outbound_hosts`, through the SSRF guard, within its timeout.
struct OutboundPolicy {
    route: Arc<str>,
    settings: Arc<RouteSettings>,
}

type OutboundResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = OutboundResult> + Send> {
        let (route, settings) = (self.route.clone(), self.settings.clone());
        Box::new(async move {
            let (allow, connections) = (
                &settings.allowed_outbound_hosts,
                &settings.outbound_connections,
            );
            let (response, connection) = send_request(
                request,
                options,
                allow,
                connections,
                &route,
                settings.timeout,
            )
            .await?;
            Ok((
                response,
                Box::new(connection) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The linker every route's component is pre-instantiated against.
pub fn new_linker(engine: &Engine) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}
