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

use std::sync::Arc;

use bytes::Bytes;
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
            "outbound request denied: Wedge does not allow outbound HTTP from guests yet"
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
/// body after its headers are returned here; a failure after that point
/// cuts the body and is logged.
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
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let mut http = store.data_mut().http();
    let request = http
        .new_incoming_request(Scheme::Http, request)
        .map_err(GuestError::Trapped)?;
    let out = http
        .new_response_outparam(sender)
        .map_err(GuestError::Trapped)?;
    let pre = pre.clone();
    let task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => {
            let route = route.clone();
            tokio::spawn(async move {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(
                        %route,
                        "guest failed after sending its response headers; response cut: {error:?}"
                    ),
                    Err(join) => tracing::error!(%route, "guest task failed: {join}"),
                }
            });
            Ok(response)
        }
        Ok(Err(code)) => Err(GuestError::ErrorCode(code)),
        Err(_) => match task.await {
            Ok(Ok(())) => Err(GuestError::NoResponse),
            Ok(Err(error)) => Err(GuestError::Trapped(error)),
            Err(join) => Err(GuestError::Trapped(wasmtime::Error::msg(format!(
                "guest task failed: {join}"
            )))),
        },
    }
}
