//! One request through one fresh instance.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::{PoolConcurrencyLimitError, Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::body::{CutAfterDrain, GuestBody, LimitedBody, Overflow, StopOnDrop};
use super::{GuestError, GuestResponse, GuestState, Route, RunStats};
use crate::engine::EPOCH_TICK;

/// How a guest's run ended badly.
#[derive(Debug)]
pub(super) enum Failure {
    Trap(wasmtime::Error),
    Timeout(Duration),
    CpuTime(Duration),
    /// Instantiation found no free pool slot.
    PoolExhausted(wasmtime::Error),
}

impl Failure {
    /// What a trap from running the guest means.
    fn of_trap(trap: wasmtime::Error) -> Failure {
        match trap.downcast_ref::<CpuTimeUsedUp>() {
            Some(CpuTimeUsedUp(budget)) => Failure::CpuTime(*budget),
            None => Failure::Trap(trap),
        }
    }
}

/// The trap that stops a guest which used up `budget`.
pub(super) fn cpu_time_used_up(budget: Duration) -> wasmtime::Error {
    CpuTimeUsedUp(budget).into()
}

/// The CPU-time budget a trap says was used up, if that is what it is.
pub(super) fn cpu_time_of(trap: &wasmtime::Error) -> Option<Duration> {
    trap.downcast_ref::<CpuTimeUsedUp>().map(|used| used.0)
}

/// The trap raised when a guest has used up its CPU-time budget.
#[derive(Debug, thiserror::Error)]
#[error("used up its CPU time of {0:?}")]
struct CpuTimeUsedUp(Duration);

/// Counts the epoch ticks at which the guest was running, yielding to the
/// event loop at each so that a busy guest cannot hold a serving thread;
/// past `budget`, stops the guest with [`CpuTimeUsedUp`]. A budget of at
/// least the route's `timeout` never stops it: the timeout comes first
/// (CPU time never exceeds the time elapsed), and the two racing at the
/// same instant would answer the same request either way.
///
/// The yield is tokio's own, which lets the event loop poll for I/O before
/// the guest runs again: a thread with busy guests still notices new
/// requests within a tick or two, rather than after a round of every task
/// it holds.
fn meter_cpu(store: &mut Store<GuestState>, budget: Duration, timeout: Duration) {
    let ticks = if budget >= timeout {
        u64::MAX
    } else {
        let ticks = (budget.as_micros() / EPOCH_TICK.as_micros()).max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    };
    let mut used = 0u64;
    store.epoch_deadline_callback(move |_| {
        used += 1;
        if used > ticks {
            return Err(CpuTimeUsedUp(budget).into());
        }
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
    store.set_epoch_deadline(1);
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Trap(error) => write!(f, "trapped: {error:?}"),
            Failure::Timeout(timeout) => write!(f, "stopped at its timeout of {timeout:?}"),
            Failure::CpuTime(budget) => write!(f, "stopped at its CPU time of {budget:?}"),
            Failure::PoolExhausted(error) => write!(f, "no instance: {error:#}"),
        }
    }
}

/// Runs `request` through a fresh instance of `pre`, the component serving
/// `route`. `slots` (the instance-slot permits) are held
/// until the instance is gone; what the run measures goes to `stats`.
/// `scheme` is how the client reached the server.
///
/// The guest runs in its own task so it can keep streaming the response
/// body after its headers are returned here. The route's timeout covers the
/// whole run, streamed body included. If the guest fails after its headers
/// went out, the body ends in an error instead of cleanly, so the client
/// sees a cut response, and the failure is logged.
pub async fn handle<B>(
    pre: &ProxyPre<GuestState>,
    route: Route<'_>,
    slots: impl Send + 'static,
    stats: &Arc<RunStats>,
    scheme: Scheme,
    request: hyper::Request<B>,
) -> Result<GuestResponse, GuestError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let settings = route.settings;
    let overflow = Arc::new(Overflow::default());
    let request = request
        .map(|body| LimitedBody::new(body, settings.max_body, overflow.clone(), stats.clone()));
    let mut store = Store::new(pre.engine(), GuestState::new(route));
    store.limiter(|state| &mut state.limits);
    meter_cpu(&mut store, settings.cpu_time, settings.timeout);
    let (response_sender, response_receiver) = oneshot::channel();
    let responded = Arc::new(AtomicBool::new(false));
    let mut http = store.data_mut().http();
    let request = http
        .new_incoming_request(scheme, request)
        .map_err(GuestError::Trapped)?;
    let out = http
        .new_response_outparam_from_callback({
            let responded = responded.clone();
            move |response| {
                responded.store(true, Ordering::Release);
                let _ = response_sender.send(response);
            }
        })
        .map_err(GuestError::Trapped)?;
    let (outcome_sender, outcome) = oneshot::channel();
    let (pre, task_route, timeout) = (pre.clone(), route.name.clone(), settings.timeout);
    let stats = stats.clone();
    let task = tokio::spawn(
        async move {
            let _slots = slots;
            let run = async {
                let started = Instant::now();
                let proxy = match pre.instantiate_async(&mut store).await {
                    Ok(proxy) => proxy,
                    Err(error) if error.is::<PoolConcurrencyLimitError>() => {
                        return Err(Failure::PoolExhausted(error));
                    }
                    Err(error) => return Err(Failure::of_trap(error)),
                };
                stats.set_instantiation(started.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
                    .map_err(Failure::of_trap)
            };
            let result = match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => Err(Failure::Timeout(timeout)),
            };
            if let Err(failure) = &result
                && responded.load(Ordering::Acquire)
            {
                tracing::error!(
                    route = %task_route,
                    "guest failed after sending its response headers; response cut: {failure}"
                );
            }
            // Report while the store, which owns the response body's sender, is
            // alive, so the body learns the outcome before it sees its end.
            let _ = outcome_sender.send(result);
            drop(store);
        }
        .in_current_span(),
    );
    // Whoever stops waiting (a client that leaves drops this future) stops
    // the guest too: it answers no one, and holds an instance slot.
    let mut guest = StopOnDrop(Some(task.abort_handle()));
    let response = response_receiver.await;
    if overflow.exceeded() {
        // The guest had not answered when the body passed the limit.
        return Err(GuestError::BodyTooLarge(settings.max_body));
    }
    match response {
        Ok(Ok(response)) => Ok(response.map(|body| {
            let guest = StopOnDrop(guest.0.take());
            CutAfterDrain::new(GuestBody::new(body, outcome, guest), overflow).boxed_unsync()
        })),
        Ok(Err(code)) => Err(GuestError::ErrorCode(code)),
        Err(_) => match outcome.await {
            Ok(Ok(())) => Err(GuestError::NoResponse),
            Ok(Err(Failure::Trap(error))) => Err(GuestError::Trapped(error)),
            Ok(Err(Failure::Timeout(timeout))) => Err(GuestError::Timeout(timeout)),
            Ok(Err(Failure::CpuTime(budget))) => Err(GuestError::CpuTime(budget)),
            Ok(Err(Failure::PoolExhausted(error))) => Err(GuestError::PoolExhausted(error)),
            Err(_) => Err(GuestError::Trapped(wasmtime::Error::msg(
                "the guest's task ended without an outcome (the host panicked?)",
            ))),
        },
    }
}
