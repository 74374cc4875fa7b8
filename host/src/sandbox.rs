//! Runs one request in a fresh, sandboxed instance of a route's component.
//!
//! Every WASI 0.2 interface is linked, because real guests import them
//! (Rust std: `cli/environment`, `exit`, `terminal-*`; componentize-py and
//! ComponentizeJS: filesystem and sockets too). Linked is not granted: no
//! preopened directories, no host environment, sockets refused by the
//! address check, outbound HTTP denied. A guest sees its request, writes its
//! response, reads clocks and random, and logs through stdout/stderr.
//!
//! Components built against any WASI 0.2.x link: wasmtime's linker matches
//! imports of `wasi:*@0.2.N` to the newer 0.2 implementations it holds.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::oneshot::{self, error::TryRecvError};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::guest_log::{GuestLog, GuestStream};

/// What a guest's instance answered, or why it did not.
pub type GuestResponse = hyper::Response<HyperOutgoingBody>;

/// Why a guest produced no response.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest trapped (panic, unreachable, out of bounds) or failed to instantiate.
    #[error("guest trapped: {0:?}")]
    Trapped(wasmtime::Error),
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("guest answered with error code {0:?}")]
    ErrorCode(ErrorCode),
    /// The guest returned from `handle` without setting a response.
    #[error("guest returned without sending a response")]
    NoResponse,
}

/// All state of one request's instance, lent to WASI through its view traits.
pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutbound,
}

impl GuestState {
    fn new(route: &Arc<str>) -> GuestState {
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(route.clone(), GuestStream::Stdout))
            .stderr(GuestLog::new(route.clone(), GuestStream::Stderr))
            .build();
        GuestState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutbound {
                route: route.clone(),
            },
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

/// Outbound `wasi:http` requests: denied, as no host is allowed yet.
struct DenyOutbound {
    route: Arc<str>,
}

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(
            route = %self.route,
            host = request.uri().authority().map_or("", |a| a.as_str()),
            "outbound request denied: no outbound host is allowed (per-route \
             `allowed_outbound_hosts` is not implemented yet)"
        );
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The linker every route's component is pre-instantiated against.
pub fn new_linker(engine: &Engine) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Runs `request` through a fresh instance of `pre`, the component serving `route`.
///
/// The guest runs in its own task so it can keep streaming the response
/// body after its headers are returned here. If it fails after that point,
/// the body ends in an error instead of cleanly, so the client sees a cut
/// response (HTTP/1.1: no last chunk and the connection closed; HTTP/2: the
/// stream reset), and the failure is logged.
pub async fn handle<B>(
    pre: &ProxyPre<GuestState>,
    route: &Arc<str>,
    request: hyper::Request<B>,
) -> Result<GuestResponse, GuestError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let mut store = Store::new(pre.engine(), GuestState::new(route));
    // Yield to the runtime at every epoch tick, so a busy guest cannot hold
    // a worker thread.
    store.epoch_deadline_async_yield_and_update(1);
    let (response_sender, response_receiver) = oneshot::channel();
    let responded = Arc::new(AtomicBool::new(false));
    let mut http = store.data_mut().http();
    let request = http
        .new_incoming_request(Scheme::Http, request)
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
    let pre = pre.clone();
    let task_route = route.clone();
    tokio::spawn(async move {
        let result = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        }
        .await;
        if let Err(error) = &result
            && responded.load(Ordering::Acquire)
        {
            tracing::error!(
                route = %task_route,
                "guest failed after sending its response headers; response cut: {error:?}"
            );
        }
        // Report while the store, which owns the response body's sender, is
        // alive, so the body learns the outcome before it sees its end.
        let _ = outcome_sender.send(result);
        drop(store);
    });
    match response_receiver.await {
        Ok(Ok(response)) => Ok(response.map(|body| GuestBody { body, outcome }.boxed_unsync())),
        Ok(Err(code)) => Err(GuestError::ErrorCode(code)),
        Err(_) => match outcome.await {
            Ok(Ok(())) => Err(GuestError::NoResponse),
            Ok(Err(error)) => Err(GuestError::Trapped(error)),
            Err(_) => Err(GuestError::Trapped(wasmtime::Error::msg(
                "the guest's task ended without an outcome (the host panicked?)",
            ))),
        },
    }
}

/// A guest's response body that ends in an error, not cleanly, when the
/// guest failed before finishing it. wasmtime-wasi-http ends a body whose
/// guest trapped as if it were complete, which would hand the client a
/// truncated response that looks whole.
struct GuestBody {
    body: HyperOutgoingBody,
    outcome: oneshot::Receiver<wasmtime::Result<()>>,
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            // Still running (it finished the body and works on) or done: a
            // clean end. Failed, or its task died: the body was never finished.
            Poll::Ready(None) => match self.outcome.try_recv() {
                Ok(Ok(())) | Err(TryRecvError::Empty) => Poll::Ready(None),
                Ok(Err(_)) | Err(TryRecvError::Closed) => {
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                }
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
