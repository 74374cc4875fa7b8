//! One request through one fresh instance.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::{PoolConcurrencyLimitError, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::body::{GuestBody, LimitedBody};
use super::{GuestError, GuestResponse, GuestState, RunStats};
use crate::settings::RouteSettings;

/// How a guest's run ended badly.
#[derive(Debug)]
pub(super) enum Failure {
    Trap(wasmtime::Error),
    Timeout(Duration),
    /// Instantiation found no free pool slot.
    PoolExhausted(wasmtime::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Trap(error) => write!(f, "trapped: {error:?}"),
            Failure::Timeout(timeout) => write!(f, "stopped at its timeout of {timeout:?}"),
            Failure::PoolExhausted(error) => write!(f, "no instance: {error:#}"),
        }
    }
}

/// Runs `request` through a fresh instance of `pre`, the component serving
/// `route` with `settings`. `slots` (the instance-slot permits) are held
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
    route: &Arc<str>,
    settings: &Arc<RouteSettings>,
    slots: impl Send + 'static,
    stats: &Arc<RunStats>,
    scheme: Scheme,
    request: hyper::Request<B>,
) -> Result<GuestResponse, GuestError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let body_exceeded = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        LimitedBody::new(
            body,
            settings.max_body,
            body_exceeded.clone(),
            stats.clone(),
        )
    });
    let mut store = Store::new(pre.engine(), GuestState::new(route, settings));
    store.limiter(|state| &mut state.limits);
    // Yield to the runtime at every epoch tick, so a busy guest cannot hold
    // a worker thread and can be stopped at its timeout.
    store.epoch_deadline_async_yield_and_update(1);
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
    let (pre, task_route, timeout) = (pre.clone(), route.clone(), settings.timeout);
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
                    Err(error) => return Err(Failure::Trap(error)),
                };
                stats.set_instantiation(started.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
                    .map_err(Failure::Trap)
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
    let response = response_receiver.await;
    if body_exceeded.load(Ordering::Acquire) {
        // The guest had not answered when the body passed the limit.
        task.abort();
        return Err(GuestError::BodyTooLarge(settings.max_body));
    }
    match response {
        Ok(Ok(response)) => Ok(response.map(|body| GuestBody { body, outcome }.boxed_unsync())),
        Ok(Err(code)) => Err(GuestError::ErrorCode(code)),
        Err(_) => match outcome.await {
            Ok(Ok(())) => Err(GuestError::NoResponse),
            Ok(Err(Failure::Trap(error))) => Err(GuestError::Trapped(error)),
            Ok(Err(Failure::Timeout(timeout))) => Err(GuestError::Timeout(timeout)),
            Ok(Err(Failure::PoolExhausted(error))) => Err(GuestError::PoolExhausted(error)),
            Err(_) => Err(GuestError::Trapped(wasmtime::Error::msg(
                "the guest's task ended without an outcome (the host panicked?)",
            ))),
        },
    }
}
