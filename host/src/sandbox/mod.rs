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
//! `memory` (all its memories together), its run time by `timeout`, its
//! request body by `max_body`, its host-side resources and output by
//! [`limits`] and [`crate::guest_log`]. `wasi:keyvalue` is linked too; a
//! guest opens only the stores its route's `key_value_stores` grants
//! ([`crate::kv`]).
//!
//! Components built against any WASI 0.2.x link: wasmtime's linker matches
//! imports of `wasi:*@0.2.N` to the newer 0.2 implementations it holds.
//! WASI 0.3 components (`wasi:http/handler@0.3.0`) link against wasmtime's
//! p3 interfaces, in the same sandbox; a component may import both.
//!
//! A WASI 0.2 route runs each request in a fresh instance ([`handle`])
//! unless its sidecar turns `reuse` on; a WASI 0.3 route, and a 0.2 one
//! with `reuse`, runs on a [`Pool`] of instances that serve several requests.

mod body;
pub mod limits;
mod poll;
mod pool;
mod run;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::guest_log::{GuestOutput, GuestStream};
use crate::kv::{KvCtx, KvView, Stores};
use crate::outbound::send_request;
use crate::settings::{Reuse, ReuseLimits, RouteSettings};
use limits::{
    GuestLimits, MAX_FIELDS_BYTES, MAX_RESOURCES, OUTGOING_BODY_BUFFER_CHUNKS, OUTGOING_BODY_CHUNK,
};

pub use body::linger;
pub use pool::{Pool, PoolError, SlotTaker};
pub use run::handle;
pub use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// The `wasi:http` world a component serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// WASI 0.2: exports `wasi:http/incoming-handler@0.2.x`.
    Http02,
    /// WASI 0.3: exports `wasi:http/handler@0.3.0`.
    Http03,
}

impl World {
    /// How `/routes` and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Http02 => "wasi-0.2",
            World::Http03 => "wasi-0.3",
        }
    }

    /// How a route of this world with `settings` reuses instances; `None`:
    /// a fresh instance per request. Unset, WASI 0.3 reuses (as `wasmtime
    /// serve` and Spin do) and WASI 0.2 does not; a WASI 0.2 instance takes
    /// one request at a time whatever `max_concurrent` says.
    pub fn reuse(self, settings: &RouteSettings) -> Option<ReuseLimits> {
        let limits = match (settings.reuse, self) {
            (Some(Reuse::Off), _) | (None, World::Http02) => return None,
            (Some(Reuse::On(limits)), _) => limits,
            (None, World::Http03) => ReuseLimits::default(),
        };
        Some(match self {
            World::Http02 => ReuseLimits {
                max_concurrent: 1,
                ..limits
            },
            World::Http03 => limits,
        })
    }
}

/// A route's component, linked and checked, ready to instantiate.
#[derive(Clone)]
pub enum Pre {
    /// A WASI 0.2 component.
    Http02(wasmtime_wasi_http::p2::bindings::ProxyPre<GuestState>),
    /// A WASI 0.3 component.
    Http03(wasmtime_wasi_http::p3::bindings::ServicePre<GuestState>),
}

impl Pre {
    /// Tells the worlds apart: a component exporting `wasi:http/handler@0.3.0`
    /// is WASI 0.3, else one exporting `wasi:http/incoming-handler@0.2.x`
    /// is WASI 0.2; anything else is refused with what it lacks.
    pub fn new(pre: wasmtime::component::InstancePre<GuestState>) -> wasmtime::Result<Pre> {
        if let Ok(p3) = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
            return Ok(Pre::Http03(p3));
        }
        Ok(Pre::Http02(
            wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)?,
        ))
    }

    /// Its world.
    pub fn world(&self) -> World {
        match self {
            Pre::Http02(_) => World::Http02,
            Pre::Http03(_) => World::Http03,
        }
    }

    /// Whether its engine runs concurrent calls, which instance reuse
    /// needs: the concurrent engine's components do, the plain engine's
    /// do not (see [`crate::engine::Engines`]).
    pub fn can_reuse(&self) -> bool {
        match self {
            Pre::Http02(pre) => pre.engine().get_concurrency_support(),
            Pre::Http03(pre) => pre.engine().get_concurrency_support(),
        }
    }

    /// As wasmtime-wasi-http's handler takes it.
    fn for_handler(&self) -> wasmtime_wasi_http::handler::ProxyPre<GuestState> {
        match self {
            Pre::Http02(pre) => wasmtime_wasi_http::handler::ProxyPre::P2(pre.clone()),
            Pre::Http03(pre) => wasmtime_wasi_http::handler::ProxyPre::P3(pre.clone()),
        }
    }
}

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
    /// The instance pool had no free slot (memories, tables, core instances
    /// or stacks) for the instance: the server is full, not the guest at fault.
    #[error("instance pool exhausted ({0:#}); raise --max-instances if this persists")]
    PoolExhausted(wasmtime::Error),
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

/// The route a request runs for: its pattern, its settings, and the
/// server's key-value stores, of which the settings grant some.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    /// The route's pattern, for logs.
    pub name: &'a Arc<str>,
    /// The route's resolved settings.
    pub settings: &'a Arc<RouteSettings>,
    /// Every store; the guest opens those `settings` grant.
    pub stores: &'a Arc<Stores>,
}

/// All state of one request's instance, lent to WASI through its view traits.
pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: KvCtx,
    table: ResourceTable,
    hooks: OutboundPolicy,
    limits: GuestLimits,
    /// A reused instance's CPU budget ([`pool`]).
    cpu: pool::CpuBudget,
}

impl GuestState {
    fn new(route: Route<'_>) -> GuestState {
        let Route {
            name,
            settings,
            stores,
        } = route;
        let mut wasi = WasiCtx::builder();
        // One output per request, shared by every stdout and stderr handle
        // the guest opens, so its buffers and budget are per request.
        let output = GuestOutput::new(name.clone());
        wasi.stdout(output.stream(GuestStream::Stdout))
            .stderr(output.stream(GuestStream::Stderr));
        for (name, value) in &settings.env {
            wasi.env(name, value);
        }
        let memory = usize::try_from(settings.memory).unwrap_or(usize::MAX);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        GuestState {
            wasi: wasi.build(),
            http,
            kv: KvCtx::new(stores.clone(), name.clone(), settings.clone()),
            table,
            hooks: OutboundPolicy {
                route: name.clone(),
                settings: settings.clone(),
            },
            limits: GuestLimits::new(memory),
            cpu: pool::CpuBudget::default(),
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
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK
    }

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
    poll::add_to_linker(&mut linker)?;
    if engine.get_concurrency_support() {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    }
    crate::kv::add_to_linker(&mut linker, |state: &mut GuestState| KvView {
        ctx: &mut state.kv,
        table: &mut state.table,
    })?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use wasmtime::component::Component;
    use wasmtime_wasi_http::p2::bindings::ProxyPre;

    use super::*;
    use crate::engine::{EngineOptions, EpochTicker, new_engine};

    fn request() -> hyper::Request<http_body_util::Empty<bytes::Bytes>> {
        hyper::Request::builder()
            .uri("http://localhost/spin")
            .body(http_body_util::Empty::new())
            .expect("a valid request")
    }

    #[test]
    fn wasi_0_3_reuses_unless_told_not_to_and_wasi_0_2_only_when_told_one_at_a_time() {
        let with = |reuse| RouteSettings {
            reuse,
            ..RouteSettings::default()
        };
        let on = ReuseLimits {
            max_requests: 7,
            max_concurrent: 16,
            idle_timeout: Duration::from_secs(2),
        };
        assert_eq!(World::Http02.reuse(&with(None)), None);
        assert_eq!(World::Http02.reuse(&with(Some(Reuse::Off))), None);
        assert_eq!(
            World::Http02.reuse(&with(Some(Reuse::On(on)))),
            Some(ReuseLimits {
                max_concurrent: 1,
                ..on
            })
        );
        assert_eq!(
            World::Http03.reuse(&with(None)),
            Some(ReuseLimits::default())
        );
        assert_eq!(World::Http03.reuse(&with(Some(Reuse::Off))), None);
        assert_eq!(World::Http03.reuse(&with(Some(Reuse::On(on)))), Some(on));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_that_finds_the_pool_full_is_pool_exhausted_not_a_trap() {
        let options = EngineOptions {
            max_instances: 1,
            max_instance_memory: 1 << 20,
            ..EngineOptions::default()
        };
        let engine = new_engine(options).expect("an engine");
        let _ticker = EpochTicker::start([&engine]).expect("the epoch thread");
        let linker = new_linker(&engine).expect("WASI links");
        // A handler that spins until stopped.
        let bytes = crate::testing::component_with_handler(1, "(loop $spin (br $spin))");
        let component = Component::new(&engine, bytes).expect("compiles");
        let pre = linker.instantiate_pre(&component).expect("links");
        let pre = ProxyPre::new(pre).expect("exports the handler");
        let route: Arc<str> = Arc::from("/spin");
        let data = tempfile::tempdir().expect("a temporary folder");
        let stores = Stores::open(
            &data.path().join("data"),
            &Default::default(),
            Default::default(),
        )
        .expect("the embedded store opens");
        let stores = Arc::new(stores);
        let settings = Arc::new(RouteSettings {
            timeout: Duration::from_secs(1),
            memory: 1 << 20,
            ..RouteSettings::default()
        });
        // The first request takes the pool's only instance and spins.
        let first = Arc::new(RunStats::default());
        let spinning = tokio::spawn({
            let (pre, route, settings, first, stores) = (
                pre.clone(),
                route.clone(),
                settings.clone(),
                first.clone(),
                stores.clone(),
            );
            async move {
                let route = Route {
                    name: &route,
                    settings: &settings,
                    stores: &stores,
                };
                handle(&pre, route, (), &first, Scheme::Http, request()).await
            }
        });
        let started = Instant::now();
        while first.instantiation().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never instantiated"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = Arc::new(RunStats::default());
        let route = Route {
            name: &route,
            settings: &settings,
            stores: &stores,
        };
        let result = handle(&pre, route, (), &second, Scheme::Http, request()).await;
        let error = result.err();
        assert!(
            matches!(error, Some(GuestError::PoolExhausted(_))),
            "{error:?}"
        );
        // The spinning guest ends at its timeout, while the epoch still ticks.
        let first = spinning.await.expect("the first request ran");
        assert!(matches!(first, Err(GuestError::Timeout(_))));
    }
}
