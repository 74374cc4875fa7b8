//! The HTTP server: one listener speaking HTTP/1.1 and h2c, served by one
//! event loop per thread, each request routed through the table to a fresh
//! sandboxed instance.

mod access;
mod connection;
mod cors;
mod dispatch;
mod methods;
mod page;
mod proxy;
mod request;
mod request_id;

pub mod tls;

pub(crate) use connection::{Connections, Deadlines};
use request_id::RequestIds;

pub use proxy::{TrustedProxies, parse_range};

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::kv::Stores;
use crate::live::LiveRoutes;
use crate::sandbox::Scheme;

/// How long a client may take from connecting (TLS handshake included) to
/// a complete request head, and how long a connection with no request in
/// flight stays open (HTTP/1.1 keep-alive and HTTP/2 alike): ample for a
/// slow mobile link, short enough that connections opened and left silent
/// (slowloris) are dropped.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests may run after SIGINT/SIGTERM before the
/// server exits anyway: within Kubernetes' default 30 s termination grace,
/// with room for the load balancer to stop sending traffic first.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) accepted: 64 KiB, as
/// common proxies allow; larger heads are refused by hyper.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 << 10;

/// Most open client connections; past it, new connections wait in the
/// kernel's accept queue. Far above what two cores serve, far below the
/// file-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Server-wide limits and modes.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`DEFAULT_MAX_HEADER_SIZE`].
    pub max_header_size: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// Most guest instances at once (`--max-instances`).
    pub max_instances: u32,
    /// Error responses carry the error's detail (`--dev`); never otherwise.
    pub dev: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_instances: crate::engine::DEFAULT_MAX_INSTANCES,
            dev: false,
        }
    }
}

/// Builds that requests wait for: `wedge dev` rebuilds routes from source,
/// and a request to a route being rebuilt answers once its build ends.
pub trait BuildWait: Send + Sync {
    /// Waits while the build of the route serving `path` is running or
    /// queued; then why its last build failed, if it did.
    fn settle<'a>(
        &'a self,
        path: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BuildFailed>> + Send + 'a>>;
}

/// A route whose last build failed (its working version, if any, is still
/// on disk).
pub struct BuildFailed {
    /// The route's `.wasm`, which a successful build replaces.
    pub target: PathBuf,
    /// The route's pattern.
    pub route: Arc<str>,
    /// Why: the error, then what the build command printed.
    pub output: Arc<str>,
}

/// What every connection shares: the route table being served, swapped
/// whole on reload, and the instance slots.
pub struct ServerState {
    routes: Arc<LiveRoutes>,
    /// The key-value stores guests open.
    stores: Arc<Stores>,
    /// One permit per instance of `--max-instances`, shared by the
    /// engines' pools.
    instances: Arc<Semaphore>,
    /// One permit per open client connection, on every serving thread.
    connections: Arc<Semaphore>,
    options: ServerOptions,
    request_ids: RequestIds,
    /// `wedge dev`'s builds, which requests wait for and report.
    builds: Option<Arc<dyn BuildWait>>,
    proxies: TrustedProxies,
    /// HTTPS: every connection's handshake, with the certificate served now.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl ServerState {
    /// Serve the tables published to `routes` under `options`, with
    /// `stores` for the guests.
    pub fn new(
        routes: Arc<LiveRoutes>,
        stores: Arc<Stores>,
        options: ServerOptions,
    ) -> ServerState {
        ServerState {
            routes,
            stores,
            instances: Arc::new(Semaphore::new(options.max_instances as usize)),
            connections: Arc::new(Semaphore::new(
                options.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            options,
            request_ids: RequestIds::new(),
            builds: None,
            proxies: TrustedProxies::default(),
            tls: None,
        }
    }

    /// Takes the client's address from `X-Forwarded-For`, and keeps its
    /// `x-request-id`, only when the peer is one of `proxies`.
    pub fn with_proxies(mut self, proxies: TrustedProxies) -> ServerState {
        self.proxies = proxies;
        self
    }

    /// Serves HTTPS: every connection starts with `acceptor`'s handshake.
    pub fn with_tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> ServerState {
        self.tls = Some(acceptor);
        self
    }

    /// How clients reach the server, as guests see it.
    fn scheme(&self) -> Scheme {
        if self.tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// `wedge dev`: requests to a route wait while `builds` rebuilds it,
    /// and get its build error while its last build failed.
    pub fn with_builds(mut self, builds: Arc<dyn BuildWait>) -> ServerState {
        self.builds = Some(builds);
        self
    }

    /// Guest instances running now.
    fn running(&self) -> usize {
        self.options.max_instances as usize - self.instances.available_permits()
    }
}

/// Serves `listener` on `threads` threads, each with its own
/// single-threaded event loop, until `shutdown` resolves; then lets
/// in-flight requests finish for up to the shutdown grace.
///
/// A connection and every request on it stay on the thread that accepted
/// it: its tasks wake and run where their data is, with no work stealing
/// or cross-thread wake-ups (docs/performance.md has the measured
/// A/B). The threads share one listening socket, each waiting on its own
/// handle: an idle thread takes the next connection, and no other process
/// can join the port, as it could with `SO_REUSEPORT`. Nothing else runs
/// on these threads: compiling and reloading happen on the caller's
/// runtime and its blocking pool.
pub async fn run_threads(
    listener: std::net::TcpListener,
    state: Arc<ServerState>,
    threads: NonZeroUsize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (finished, mut results) = tokio::sync::mpsc::unbounded_channel();
    for index in 0..threads.get() {
        let listener = listener.try_clone()?;
        let state = state.clone();
        let mut stopped = stopped.clone();
        let finished = finished.clone();
        let serve = move || -> std::io::Result<Option<usize>> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let listener = TcpListener::from_std(listener)?;
                let stop = async move {
                    // An error means the sender is gone: stop too.
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let graceful = accept(listener, &state, stop).await;
                Ok(drain(graceful, &state).await)
            })
        };
        std::thread::Builder::new()
            .name(format!("wedge-serve-{index}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve))
                    .unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
                let _ = finished.send(result);
            })?;
    }
    drop((listener, finished));
    tracing::info!("serving on {threads} thread(s)");
    tokio::pin!(shutdown);
    let mut early = None;
    tokio::select! {
        () = &mut shutdown => {}
        // A thread that ends before shutdown could not start (or panicked).
        result = results.recv() => early = Some(result),
    }
    log_shutdown(&state);
    let _ = stop.send(true);
    // Every thread's grace ends at about the same time; each counts the
    // instances still running then, before its runtime drops them.
    let mut running = None;
    let mut failure = None;
    let mut record = |result: Option<std::io::Result<Option<usize>>>| match result {
        Some(Ok(left)) => running = running.max(left),
        Some(Err(error)) => failure = Some(error),
        None => {}
    };
    if let Some(result) = early {
        record(result);
    }
    while let Some(result) = results.recv().await {
        record(Some(result));
    }
    if let Some(running) = running {
        log_grace_over(&state, running);
    }
    failure.map_or(Ok(()), Err)
}

/// Accepts connections until `shutdown`; what the connections are
/// watched by, to drain them.
async fn accept(
    listener: TcpListener,
    state: &Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown {
    let connections = Connections {
        builder: http_builder(state.options.header_timeout, state.options.max_header_size),
        tls: state.tls.clone(),
        deadlines: Deadlines {
            first_request: state.options.header_timeout,
            idle: state.options.header_timeout,
        },
    };
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = state.connections.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
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
        let handler = {
            let state = state.clone();
            move |request| {
                let state = state.clone();
                async move { dispatch::dispatch(&state, request, client).await }
            }
        };
        connections.spawn(stream, client, handler, graceful.watcher(), permit);
    }
    graceful
}

/// Waits up to the shutdown grace for `graceful`'s connections to finish;
/// if they did not, the guest instances still running (on every thread).
async fn drain(graceful: GracefulShutdown, state: &ServerState) -> Option<usize> {
    tokio::time::timeout(state.options.shutdown_grace, graceful.shutdown())
        .await
        .err()
        .map(|_| state.running())
}

fn log_shutdown(state: &ServerState) {
    let grace = state.options.shutdown_grace;
    tracing::info!("shutting down: no new connections; in-flight requests have {grace:?}");
}

fn log_grace_over(state: &ServerState, running: usize) {
    tracing::warn!(
        "shutdown grace of {:?} over with {running} guest instance(s) still running; \
         closing their connections",
        state.options.shutdown_grace,
    );
}

/// HTTP/1.1 and HTTP/2 as every listener serves them: request heads of at
/// most `max_header_size`, read within `header_timeout` (hyper's own clock,
/// for the heads after the first; [`Connections`] times the first), and
/// HTTP/2 peers pinged at that interval and dropped when they stop
/// answering.
pub(crate) fn http_builder(
    header_timeout: Duration,
    max_header_size: usize,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header_size.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout)
        .max_header_list_size(u32::try_from(max_header_size).unwrap_or(u32::MAX));
    builder
}
