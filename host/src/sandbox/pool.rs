//! Instances that serve more than one request: every WASI 0.3 route, and
//! WASI 0.2 routes whose sidecar turns `reuse` on.
//!
//! Built on wasmtime-wasi-http's [`ProxyHandler`], the scheduler `wasmtime
//! serve` uses: it hands each request to an instance of the route's
//! version that can take one, or starts a new instance. Wedge's part is
//! [`PoolState`]: what an instance is given (the route's sandbox, as for a
//! fresh instance), when it takes another request (the route's `[reuse]`),
//! and when it is retired (idle, past its timeout, trapped).
//!
//! What reuse means:
//! - an instance's statics persist across the requests it serves; a pool
//!   belongs to one version of one route, so nothing crosses routes or
//!   versions, and a reload sends new requests to the new version's pool
//!   while the old instances finish what they hold;
//! - a request that does not answer within the route's `timeout` gets 504;
//!   a guest that the timeout cannot interrupt (busy on the CPU) is
//!   retired with its instance once the newest request on it is past the
//!   timeout, and the other requests on it are cut and logged;
//! - a trap retires the instance and fails only the requests it was serving;
//! - `--max-instances` counts instances (a reused one holds one slot) and
//!   `max_concurrency` counts requests.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime::component::GuestTaskId;
use wasmtime::{PoolConcurrencyLimitError, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};

use super::body::{CutAfterDrain, LimitedBody, Overflow};
use super::{GuestError, GuestResponse, GuestState, Route, RunStats};
use crate::engine::EPOCH_TICK;
use crate::kv::Stores;
use crate::settings::{ReuseLimits, RouteSettings};

/// Takes one of the server's instance slots for a new instance, or says the
/// server is full (`None`). What it returns is held until the instance ends.
pub type SlotTaker = Arc<dyn Fn() -> Option<Box<dyn Send + Sync>> + Send + Sync>;

/// The instances of one version of one route that serve several requests.
pub struct Pool {
    handler: ProxyHandler<PoolState>,
}

/// Why a pool could give a request no instance.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every instance slot of the server is taken.
    #[error("no free instance slot")]
    Full,
    /// The guest failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
}

impl Pool {
    /// A pool for `route`, running `pre` as `limits` allow.
    pub fn new(
        pre: &super::Pre,
        route: Route<'_>,
        limits: ReuseLimits,
        take_slot: SlotTaker,
    ) -> Pool {
        Pool {
            handler: ProxyHandler::new(PoolState {
                pre: pre.for_handler(),
                route: route.name.clone(),
                settings: route.settings.clone(),
                stores: route.stores.clone(),
                limits,
                take_slot,
            }),
        }
    }

    /// Runs `request`, which reached the server over `scheme`, on one of
    /// the pool's instances. `hold` (the route's concurrency slot) is kept
    /// until the response body ends.
    pub async fn handle<B>(
        &self,
        request: hyper::Request<B>,
        scheme: super::Scheme,
        stats: &Arc<RunStats>,
        hold: impl Send + 'static,
    ) -> Result<GuestResponse, PoolError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let state = self.handler.state();
        let settings = &state.settings;
        let overflow = Arc::new(Overflow::default());
        let request = absolute(request, scheme);
        let request = request.map(|body| {
            LimitedBody::new(body, settings.max_body, overflow.clone(), stats.clone())
                .boxed_unsync()
        });
        let fate: Arc<OnceLock<Arc<Fate>>> = Arc::default();
        let data = RequestData {
            stats: stats.clone(),
            fate: fate.clone(),
        };
        let started = Instant::now();
        let result = self.handler.handle(data, request).await;
        if overflow.exceeded() {
            return Err(GuestError::BodyTooLarge(settings.max_body).into());
        }
        match result {
            Ok(response) => Ok(response.map(|body| {
                let body = PooledBody {
                    body,
                    fate,
                    _hold: Box::new(hold),
                };
                CutAfterDrain::new(body, overflow).boxed_unsync()
            })),
            Err(error) => Err(state.failure(error, fate.get(), started.elapsed())),
        }
    }
}

/// `request` with its URI absolute: the scheme the client used and the
/// authority it named (its `Host`), which is where a WASI 0.3 guest reads
/// them. A request whose `Host` is not a valid authority keeps its URI.
fn absolute<B>(mut request: hyper::Request<B>, scheme: super::Scheme) -> hyper::Request<B> {
    let uri = request.uri();
    if uri.scheme().is_some() {
        return request;
    }
    let authority = match uri.authority() {
        Some(authority) => Some(authority.clone()),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok()),
    };
    let Some(authority) = authority else {
        return request;
    };
    let scheme = match scheme {
        super::Scheme::Https => http::uri::Scheme::HTTPS,
        _ => http::uri::Scheme::HTTP,
    };
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Ok(absolute) = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        *request.uri_mut() = absolute;
    }
    request
}

/// What a request carries to the instance that takes it.
pub struct RequestData {
    stats: Arc<RunStats>,
    /// Set when an instance takes the request: that instance's fate.
    fate: Arc<OnceLock<Arc<Fate>>>,
}

/// How an instance ended, for the requests it held.
#[derive(Debug, Default)]
struct Fate {
    /// [`ALIVE`], [`TRAPPED`] or [`TIMED_OUT`].
    state: AtomicU8,
    /// The trap, for the requests it failed.
    trap: Mutex<Option<String>>,
}

const ALIVE: u8 = 0;
const TRAPPED: u8 = 1;
const TIMED_OUT: u8 = 2;
const CPU_USED_UP: u8 = 3;

impl Fate {
    fn failed(&self) -> bool {
        self.state.load(Ordering::Acquire) != ALIVE
    }
}

/// The route a pool serves and how.
pub struct PoolState {
    pre: ProxyPre<GuestState>,
    route: Arc<str>,
    settings: Arc<RouteSettings>,
    stores: Arc<Stores>,
    limits: ReuseLimits,
    take_slot: SlotTaker,
}

impl PoolState {
    /// What `error`, from the handler after `took`, means for the request.
    fn failure(
        &self,
        error: wasmtime::Error,
        fate: Option<&Arc<Fate>>,
        took: Duration,
    ) -> PoolError {
        let timeout = self.settings.timeout;
        // A request that failed at its timeout was stopped by it, whether
        // the handler saw it expire or the instance was retired for it
        // (which the request may learn before the instance's fate is set).
        if error.is::<ExpirationError>() || took >= timeout {
            return GuestError::Timeout(timeout).into();
        }
        if let Some(instantiation) = error.downcast_ref::<InstantiationError<RequestData>>() {
            if instantiation.error.is::<NoSlot>() {
                return PoolError::Full;
            }
            if instantiation.error.is::<PoolConcurrencyLimitError>() {
                return GuestError::PoolExhausted(wasmtime::Error::msg(format!(
                    "{:#}",
                    instantiation.error
                )))
                .into();
            }
            return GuestError::Trapped(wasmtime::Error::msg(format!(
                "instantiation failed: {:#}",
                instantiation.error
            )))
            .into();
        }
        if error.is::<TrapOrPanicError>()
            && let Some(fate) = fate
        {
            match fate.state.load(Ordering::Acquire) {
                TIMED_OUT => return GuestError::Timeout(timeout).into(),
                CPU_USED_UP => return GuestError::CpuTime(self.settings.cpu_time).into(),
                _ => {}
            }
            if let Some(trap) = fate.trap.lock().ok().and_then(|trap| trap.clone()) {
                return GuestError::Trapped(wasmtime::Error::msg(trap)).into();
            }
        }
        GuestError::Trapped(error).into()
    }
}

/// The instance slot was refused: the server is full.
#[derive(Debug, thiserror::Error)]
#[error("no free instance slot")]
struct NoSlot;

impl HandlerState for PoolState {
    type StoreData = GuestState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<GuestState, Expiry, Worker>> {
        let slot = (self.take_slot)().ok_or(NoSlot)?;
        let route = Route {
            name: &self.route,
            settings: &self.settings,
            stores: &self.stores,
        };
        let mut store = Store::new(self.pre_engine(), GuestState::new(route));
        store.limiter(|state| &mut state.limits);
        meter_cpu(&mut store, self.settings.cpu_time, self.settings.timeout);
        let started = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        let timeout = self.settings.timeout;
        Ok(Instance {
            store,
            proxy,
            view: <GuestState as WasiHttpView>::http,
            expiration: Expiry {
                timeout,
                idle: self.limits.idle_timeout,
                sleep: Box::pin(tokio::time::sleep(timeout)),
                deadline: None,
            },
            state: Worker {
                route: self.route.clone(),
                limits: self.limits,
                timeout,
                fate: Arc::default(),
                instantiation: Mutex::new(Some(started.elapsed())),
                _slot: slot,
            },
        })
    }
}

impl PoolState {
    fn pre_engine(&self) -> &wasmtime::Engine {
        match &self.pre {
            ProxyPre::P2(pre) => pre.engine(),
            ProxyPre::P3(pre) => pre.engine(),
        }
    }
}

/// Yields to the event loop at every epoch tick, so that a busy guest
/// cannot hold a serving thread, and stops an instance whose guest used
/// more CPU than `budget` per request it took (a budget of at least the
/// timeout never stops it: the timeout comes first).
fn meter_cpu(store: &mut Store<GuestState>, budget: Duration, timeout: Duration) {
    let per_request = if budget >= timeout {
        None
    } else {
        let ticks = (budget.as_micros() / EPOCH_TICK.as_micros()).max(1);
        Some(u64::try_from(ticks).unwrap_or(u64::MAX))
    };
    store.data_mut().cpu = CpuBudget {
        per_request,
        left: 0,
    };
    store.epoch_deadline_callback(move |mut store| {
        let cpu = &mut store.data_mut().cpu;
        if cpu.per_request.is_some() {
            if cpu.left == 0 {
                return Err(super::run::cpu_time_used_up(budget));
            }
            cpu.left -= 1;
        }
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
    store.set_epoch_deadline(1);
}

/// The CPU an instance may still use, in epoch ticks: each request it
/// takes adds its route's `cpu_time`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBudget {
    per_request: Option<u64>,
    left: u64,
}

/// One instance's reuse: how many requests it takes, and what became of it.
pub struct Worker {
    route: Arc<str>,
    limits: ReuseLimits,
    timeout: Duration,
    fate: Arc<Fate>,
    /// How long the instance took to create, until its first request
    /// reports it.
    instantiation: Mutex<Option<Duration>>,
    _slot: Box<dyn Send + Sync>,
}

impl WorkerState for Worker {
    type StoreData = GuestState;
    type RequestData = RequestData;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if self.fate.failed() || total >= self.limits.max_requests as usize {
            ShouldAccept::Never
        } else if concurrent >= self.limits.max_concurrent as usize {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, GuestState>,
        data: RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let _ = data.fate.set(self.fate.clone());
        if let Some(took) = self.instantiation.lock().ok().and_then(|mut i| i.take()) {
            data.stats.set_instantiation(took);
        }
        let cpu = &mut store.data_mut().cpu;
        if let Some(per_request) = cpu.per_request {
            cpu.left = cpu.left.saturating_add(per_request);
        }
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<GuestState>, result: wasmtime::Result<()>) {
        // The handler reports a worker dropped before it ended as "worker
        // panicked"; outside a panic that is the runtime shutting down.
        let cancelled = matches!(&result, Err(error) if error.to_string() == "worker panicked")
            && !std::thread::panicking();
        if cancelled {
            tracing::debug!(route = %self.route, "instance dropped at shutdown");
        } else if let Err(error) = result {
            // wasmtime-wasi-http says so in text only.
            let timed_out = error.to_string() == "guest timed out";
            let cpu = super::run::cpu_time_of(&error);
            let trap = format!("{error:?}");
            if let Ok(mut slot) = self.fate.trap.lock() {
                *slot = Some(trap.clone());
            }
            let state = match (timed_out, cpu) {
                (true, _) => TIMED_OUT,
                (false, Some(_)) => CPU_USED_UP,
                (false, None) => TRAPPED,
            };
            self.fate.state.store(state, Ordering::Release);
            if let Some(budget) = cpu {
                tracing::error!(
                    route = %self.route,
                    "instance retired: its guest used up its CPU time ({budget:?} per request); \
                     requests still on it are cut"
                );
            } else if timed_out {
                tracing::error!(
                    route = %self.route,
                    "instance retired: a request on it ran past its timeout of {:?} and the \
                     guest could not be interrupted; requests still on it are cut",
                    self.timeout
                );
            } else {
                tracing::error!(
                    route = %self.route,
                    "instance retired: guest trapped; requests still on it are cut: {trap}"
                );
            }
        }
        // Report before the store (which owns the response bodies' senders)
        // goes, so that a body cut by it learns why.
        drop(store);
    }
}

/// When an instance is retired: idle past `idle`, or with a request (or
/// the work after one) past `timeout`.
pub struct Expiry {
    timeout: Duration,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Option<Instant>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let after = match status {
            WorkerStatus::Idle => self.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.timeout,
        };
        let deadline = start + after;
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        if self.deadline != Some(deadline) {
            self.deadline = Some(deadline);
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// A pooled guest's response body: ends in an error, not cleanly, when
/// its instance was retired (trap, timeout) before finishing it, and holds
/// the route's concurrency slot until it ends.
struct PooledBody {
    body: wasmtime_wasi_http::WasiBody,
    fate: Arc<OnceLock<Arc<Fate>>>,
    _hold: Box<dyn Send>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) if self.fate.get().is_some_and(|fate| fate.failed()) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
