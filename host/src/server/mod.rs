//! The HTTP server: one listener speaking HTTP/1.1 and h2c, each request
//! routed through the table to a fresh sandboxed instance.

mod dispatch;
mod methods;
mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::loader::LoadedRoute;
use crate::routing::RouteTable;

pub use dispatch::DispatchError;

/// How long a client may take to send a request's headers: ample for a slow
/// mobile link, short enough that connections opened and left silent
/// (slowloris) are dropped rather than held.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests may run after SIGINT/SIGTERM before the
/// server exits anyway: within Kubernetes' default 30 s termination grace,
/// with room for the load balancer to stop sending traffic first.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every connection shares: the route table being served, swapped
/// whole on reload.
pub struct ServerState {
    routes: ArcSwap<RouteTable<LoadedRoute>>,
    /// One permit per instance slot of the engine's pool.
    instances: Arc<Semaphore>,
}

impl ServerState {
    /// Serve `routes` with at most `max_instances` guests at once.
    pub fn new(routes: RouteTable<LoadedRoute>, max_instances: u32) -> ServerState {
        ServerState {
            routes: ArcSwap::from_pointee(routes),
            instances: Arc::new(Semaphore::new(max_instances as usize)),
        }
    }

    /// The table being served now; a request keeps the one it started with.
    pub fn routes(&self) -> Arc<RouteTable<LoadedRoute>> {
        self.routes.load_full()
    }

    /// Serves `routes` from the next request on.
    pub fn swap_routes(&self, routes: RouteTable<LoadedRoute>) {
        self.routes.store(Arc::new(routes));
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn run(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        serve_connection(&builder, &graceful, stream, client, state.clone());
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after {SHUTDOWN_GRACE:?}; exiting");
    }
    Ok(())
}

fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    client: SocketAddr,
    state: Arc<ServerState>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%client, "cannot set TCP_NODELAY: {error}");
    }
    let service = service_fn(move |request| {
        let state = state.clone();
        async move {
            Ok::<_, std::convert::Infallible>(dispatch::dispatch(&state, request, client).await)
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%client, "connection ended: {error}");
        }
    });
}
