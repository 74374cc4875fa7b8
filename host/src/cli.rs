//! The `wedge` command line: `serve`, `dev` and `routes`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;

use crate::admin::{self, Admin, Phase};
use crate::cache::{CompileCache, DEFAULT_CACHE_MAX_BYTES};
use crate::dev::{Builds, DevWatch};
use crate::engine::{
    DEFAULT_MAX_INSTANCE_MEMORY, DEFAULT_MAX_INSTANCES, EngineOptions, Engines, EpochTicker,
};
use crate::kv::{DEFAULT_DATA_DIR, KvMetrics, Stores};
use crate::live::LiveRoutes;
use crate::loader::{
    Cap, ConfigReread, DEFAULT_MAX_SIDECAR_SIZE, DEFAULT_MAX_WASM_SIZE, LoadError, LoadedRoute,
    Loader, SettingsSource, SizeCaps, read_text_capped,
};
use crate::log_buffer::LogBuffer;
use crate::log_format::TextFormat;
use crate::metrics::Metrics;
use crate::reload::{Reloader, RouteWatch};
use crate::response_cache::DEFAULT_CACHE_MEMORY;
use crate::routing::RouteTable;
use crate::server::tls::{Certificate, CertificateWatch, TlsFiles};
use crate::server::{
    self, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_SHUTDOWN_GRACE, ServerOptions, ServerState, TrustedProxies,
};
use crate::settings::{ConfigFile, Policy, StoreConfig, env_allow_list};

/// Wedge: serve a folder of wasi:http components at the URLs their paths name.
#[derive(Debug, Parser)]
#[command(name = "wedge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines for people (`pretty`) or for log collectors (`json`, one
    /// object per line); `RUST_LOG` filters either.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Pretty,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's fields, and the request span's `id`.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the routes folder over HTTP/1.1 and HTTP/2.
    Serve(ServeArgs),
    /// `serve --dev`, and rebuild each route from source with its sidecar's [build].
    Dev(ServeArgs),
    /// Print the route table and compile every route; exits non-zero if any fails.
    Routes(RoutesArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The routes folder: each `.wasm` under it serves the URL its path names.
    #[arg(default_value = DEFAULT_ROUTES_DIR)]
    routes_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve /healthz, /readyz, /metrics and /routes on this address (off
    /// unless given; never on --listen).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); re-read
    /// when it changes.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Peers whose X-Forwarded-For gives the client's address (and whose
    /// x-request-id is kept): CIDR ranges or addresses, repeated or
    /// comma-separated.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = server::parse_range)]
    trust_proxy: Vec<ipnet::IpNet>,
    /// Do not watch the routes folder: serve what was there at start-up.
    #[arg(long)]
    no_watch: bool,
    /// Error responses carry the trap or load error in full (never without
    /// this flag; always with `wedge dev`).
    #[arg(long)]
    dev: bool,
    /// How long in-flight requests may finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_SHUTDOWN_GRACE))]
    shutdown_grace: Duration,
    /// After SIGINT/SIGTERM, keep accepting this long with /readyz at 503,
    /// so load balancers stop sending before connections are refused; then
    /// drain within --shutdown-grace.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_SHUTDOWN_DELAY))]
    shutdown_delay: Duration,
    /// How long a client may take from connecting (TLS handshake included)
    /// to a complete request head, and a connection with no request in
    /// flight (HTTP/1.1 keep-alive or HTTP/2) may stay open.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_HEADER_TIMEOUT))]
    header_timeout: Duration,
    /// Largest request head (request line and headers).
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value = size_text(DEFAULT_MAX_HEADER_SIZE as u64))]
    max_header_size: u64,
    /// Most open client connections; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Serving threads, each with its own event loop [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
    /// Where embedded key-value stores keep their data: created private
    /// (0700); refused if others can write it, if it is inside the routes
    /// folder, or if another Wedge server has it open.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Memory for the response cache (cached GET answers, least recently
    /// used dropped first); an answer over an eighth of it is not cached.
    /// 0 turns the cache off.
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value = size_text(DEFAULT_CACHE_MEMORY))]
    cache_memory: u64,
    /// Print the settings these flags resolve to, as JSON, and exit without
    /// binding or reading any file (what `cargo xtask deploy-check` reads).
    #[arg(long, hide = true)]
    print_config: bool,
    #[command(flatten)]
    load: LoadArgs,
}

/// The routes folder when none is named.
const DEFAULT_ROUTES_DIR: &str = "routes";

/// The address `serve` and `dev` listen on when no `--listen` is given:
/// loopback, so a first run is not reachable from the network.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// How long the server keeps accepting after the shutdown signal, with
/// `/readyz` at 503: none unless asked for (`--shutdown-delay`).
const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::ZERO;

/// A duration flag: `500ms`, `10s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e}; write e.g. 10s or 500ms"))
}

/// A duration as flags take it: `10s`, `500ms`.
fn duration_text(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A size as flags take it, in the largest binary unit that holds it
/// whole: `64KiB`, `256MiB`, `1000` (bytes).
fn size_text(bytes: u64) -> String {
    let units = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    units
        .into_iter()
        .find(|&(_, shift)| bytes != 0 && bytes.trailing_zeros() >= shift)
        .map_or_else(
            || bytes.to_string(),
            |(unit, shift)| format!("{}{unit}", bytes >> shift),
        )
}

#[derive(Debug, clap::Args)]
struct RoutesArgs {
    /// The routes folder.
    #[arg(default_value = DEFAULT_ROUTES_DIR)]
    routes_dir: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
}

/// How routes are loaded: shared by `serve` and `routes`.
#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Where compiled components are cached [default: wedge/ in the user's cache folder].
    /// Created private (0700); refused if others can write it.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Server config file; its `[defaults]` table holds sidecar keys that
    /// every route gets unless its sidecar sets them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// `.env` file of variables that `${NAME}` in sidecars may use, after
    /// the host's environment; re-read when it changes.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Host variables (and --env-file variables) that `${NAME}` in a sidecar
    /// may read: a name or a glob such as `WEATHER_*`; repeatable, and added
    /// to `env_allow` in --config. Without either, any variable may be read.
    #[arg(long, value_name = "PATTERN")]
    env_allow: Vec<String>,
    /// Most guest instances running at once; more requests get 503.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_INSTANCES,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_instances: u32,
    /// Most linear memory one instance may have; sizes the instance pool.
    /// A route's `memory` may not exceed it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value = size_text(DEFAULT_MAX_INSTANCE_MEMORY))]
    max_instance_memory: u64,
    /// Serve WASI 0.2 components only, each request in a fresh instance:
    /// no engine with wasmtime's support for concurrent execution (WASI
    /// 0.3, instance reuse) is created. A WASI 0.3 route then fails to
    /// load, and `reuse` is ignored with a warning.
    #[arg(long)]
    no_wasi_0_3: bool,
    /// Largest `.wasm` route file; a larger one is a load error.
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value = size_text(DEFAULT_MAX_WASM_SIZE))]
    max_wasm_size: u64,
    /// Largest sidecar, --config and --env-file; a larger one is an error.
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value = size_text(DEFAULT_MAX_SIDECAR_SIZE))]
    max_sidecar_size: u64,
}

/// A size flag: bytes, or `KiB`/`MiB`/`GiB` (binary), `KB`/`MB`/`GB` (decimal).
fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("{e}; write e.g. 256MiB"))
}

impl LoadArgs {
    /// How routes' settings are read, and `--config`'s `[key_value]` stores.
    fn settings(&self) -> anyhow::Result<(SettingsSource, BTreeMap<String, StoreConfig>)> {
        let config = match &self.config {
            Some(file) => {
                let cap = Cap {
                    bytes: self.max_sidecar_size,
                    flag: "--max-sidecar-size",
                };
                let text =
                    read_text_capped(file, cap).map_err(|e| anyhow::anyhow!("--config {}", e))?;
                Some((file.clone(), ConfigFile::parse(file, &text)?))
            }
            None => None,
        };
        let policy = self.policy(config.as_ref())?;
        let key_value = config
            .as_ref()
            .map(|(_, config)| config.key_value.clone())
            .unwrap_or_default();
        let config = config.map(|(file, config)| (file, config.defaults));
        if let Some(file) = &self.env_file {
            std::fs::metadata(file)
                .with_context(|| format!("cannot read --env-file {}", file.display()))?;
        }
        let reread = self.config.clone().map(|path| ConfigReread {
            path,
            env_allow_flags: self.env_allow.clone(),
            key_value: key_value.clone(),
        });
        let source = SettingsSource {
            config,
            reread,
            env_file: self.env_file.clone(),
            max_memory: self.max_instance_memory,
            policy,
        };
        Ok((source, key_value))
    }

    /// `[limits]`, and `--env-allow` with `env_allow`: a list if either
    /// gives one.
    fn policy(&self, config: Option<&(PathBuf, ConfigFile)>) -> anyhow::Result<Policy> {
        let from_config = config.and_then(|(_, config)| config.env_allow.as_deref());
        let env_allow = env_allow_list(&self.env_allow, from_config).context("--env-allow")?;
        Ok(Policy {
            limits: config.map(|(file, config)| (file.clone(), config.limits.clone())),
            env_allow,
        })
    }

    fn open_cache(&self) -> anyhow::Result<Option<CompileCache>> {
        let Some(dir) = self.cache_dir.clone().or_else(CompileCache::default_dir) else {
            tracing::warn!(
                "no user cache folder (is $HOME set?); compile cache off; pass --cache-dir to enable it"
            );
            return Ok(None);
        };
        Ok(Some(CompileCache::open(&dir, DEFAULT_CACHE_MAX_BYTES)?))
    }
}

/// Where log lines go: straight to stderr until the server serves, so
/// start-up lines are never dropped and are out before the address is
/// printed; then through the log buffer ([`LogBuffer`]).
#[derive(Clone)]
struct LogSink {
    serving: Arc<AtomicBool>,
    queue: LogBuffer,
}

impl LogSink {
    /// Serving threads start: from now on, log through the queue.
    fn serving(&self) {
        self.serving.store(true, Ordering::Release);
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = EitherWriter<LogBuffer, std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        if self.serving.load(Ordering::Acquire) {
            EitherWriter::A(self.queue.clone())
        } else {
            EitherWriter::B(std::io::stderr())
        }
    }
}

/// Runs the command line; exit code 0 on success, 1 on failure, 2 on usage errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Once serving, log lines go to stderr from a thread of their own, so
    // a slow log pipe never stalls a serving thread, in batches, so that a
    // busy server makes one write for many lines; past `MAX_PENDING` bytes
    // waiting, lines are dropped and counted (`wedge_log_lines_dropped_total`).
    // The guard writes what waits when `main` returns.
    let (queue, log_flush) = match LogBuffer::start(std::io::stderr()) {
        Ok(started) => started,
        Err(error) => {
            eprintln!("error: cannot start the log thread: {error}");
            return ExitCode::FAILURE;
        }
    };
    let dropped = queue.clone();
    crate::metrics::count_log_drops(move || dropped.dropped_lines());
    let sink = LogSink {
        serving: Arc::new(AtomicBool::new(false)),
        queue,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone());
    match cli.log_format {
        LogFormat::Pretty => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .event_format(TextFormat::default())
            .init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let result = match cli.command {
        Command::Serve(args) => serve_or_print(args, Mode::Serve, cli.log_format, &sink),
        Command::Dev(args) => serve_or_print(args, Mode::Dev, cli.log_format, &sink),
        Command::Routes(args) => routes(args),
    };
    // Every log line out before the final error, in order.
    drop(log_flush);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_routes_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "routes folder `{}` is not a folder; pass the folder that holds your .wasm routes",
            dir.display()
        ),
        Err(e) => bail!(
            "routes folder `{}` cannot be read ({e}); create it or pass another ROUTES_DIR",
            dir.display()
        ),
    }
}

fn new_loader(args: &LoadArgs, settings: SettingsSource) -> anyhow::Result<(Engines, Loader)> {
    let cache = args.open_cache()?;
    let options = EngineOptions {
        max_instances: args.max_instances,
        max_instance_memory: args.max_instance_memory,
        concurrency: !args.no_wasi_0_3,
    };
    let engines = Engines::new(options).context("cannot create the wasm engines")?;
    let caps = SizeCaps {
        wasm: args.max_wasm_size,
        sidecar: args.max_sidecar_size,
    };
    let loader = Loader::new(&engines, cache, settings)
        .map_err(anyhow::Error::from)
        .context("cannot link WASI into the engines")?
        .with_size_caps(caps);
    Ok((engines, loader))
}

/// Whether `serve` also builds routes from source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `wedge serve`: `[build]` is never read.
    Serve,
    /// `wedge dev`: dev error pages, and every route's `[build]`.
    Dev,
}

/// What `serve` and `dev` run with, resolved from their flags before
/// anything is bound or read: what `--print-config` prints.
#[derive(Debug)]
struct ServeConfig {
    mode: Mode,
    log_format: LogFormat,
    routes_dir: PathBuf,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    tls: Option<TlsFiles>,
    trust_proxy: Vec<ipnet::IpNet>,
    watch: bool,
    shutdown_delay: Duration,
    /// Serving threads; `None`: one per core.
    threads: Option<NonZeroUsize>,
    data_dir: PathBuf,
    /// `--cache-memory`.
    cache_memory: u64,
    server: ServerOptions,
    load: LoadArgs,
}

impl ServeConfig {
    fn new(args: ServeArgs, mode: Mode, log_format: LogFormat) -> ServeConfig {
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        };
        let server = ServerOptions {
            header_timeout: args.header_timeout,
            max_header_size: usize::try_from(args.max_header_size).unwrap_or(usize::MAX),
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            shutdown_grace: args.shutdown_grace,
            max_instances: args.load.max_instances,
            dev: args.dev || mode == Mode::Dev,
        };
        ServeConfig {
            mode,
            log_format,
            routes_dir: args.routes_dir,
            listen: args.listen,
            admin: args.admin,
            tls,
            trust_proxy: args.trust_proxy,
            watch: !args.no_watch,
            shutdown_delay: args.shutdown_delay,
            threads: args.threads,
            data_dir: args.data_dir,
            cache_memory: args.cache_memory,
            server,
            load: args.load,
        }
    }

    /// The settings as one JSON object: durations in milliseconds, sizes
    /// in bytes, paths as given.
    fn to_json(&self) -> serde_json::Value {
        let ms = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let path = |path: Option<&PathBuf>| path.map(|path| path.display().to_string());
        let tls = self.tls.as_ref();
        serde_json::json!({
            "command": match self.mode { Mode::Serve => "serve", Mode::Dev => "dev" },
            "log_format": match self.log_format { LogFormat::Pretty => "pretty", LogFormat::Json => "json" },
            "routes_dir": self.routes_dir.display().to_string(),
            "listen": self.listen.to_string(),
            "admin": self.admin.map(|addr| addr.to_string()),
            "tls_cert": path(tls.map(|tls| &tls.cert)),
            "tls_key": path(tls.map(|tls| &tls.key)),
            "trust_proxy": self.trust_proxy.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "watch": self.watch,
            "dev": self.server.dev,
            "shutdown_grace_ms": ms(self.server.shutdown_grace),
            "shutdown_delay_ms": ms(self.shutdown_delay),
            "header_timeout_ms": ms(self.server.header_timeout),
            "max_header_size": self.server.max_header_size,
            "max_connections": self.server.max_connections,
            "threads": self.threads,
            "cache_dir": path(self.load.cache_dir.as_ref()),
            "data_dir": self.data_dir.display().to_string(),
            "cache_memory": self.cache_memory,
            "config": path(self.load.config.as_ref()),
            "env_file": path(self.load.env_file.as_ref()),
            "env_allow": self.load.env_allow,
            "max_instances": self.load.max_instances,
            "max_instance_memory": self.load.max_instance_memory,
            "wasi_0_3": !self.load.no_wasi_0_3,
            "max_wasm_size": self.load.max_wasm_size,
            "max_sidecar_size": self.load.max_sidecar_size,
        })
    }
}

/// The sockets `serve` answers on.
struct Listeners {
    public: std::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
}

impl Listeners {
    async fn bind(config: &ServeConfig) -> anyhow::Result<Listeners> {
        let public = std::net::TcpListener::bind(config.listen).with_context(|| {
            format!(
                "cannot listen on {}; pick another address with --listen",
                config.listen
            )
        })?;
        let admin = match config.admin {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for --admin; pick another address")
            })?),
            None => None,
        };
        Ok(Listeners { public, admin })
    }
}

/// Serves, or with `--print-config` prints what it would serve with.
fn serve_or_print(
    args: ServeArgs,
    mode: Mode,
    log_format: LogFormat,
    log: &LogSink,
) -> anyhow::Result<ExitCode> {
    let print = args.print_config;
    let config = ServeConfig::new(args, mode, log_format);
    if print {
        let json = serde_json::to_string_pretty(&config.to_json())?;
        let _ = writeln!(std::io::stdout(), "{json}");
        return Ok(ExitCode::SUCCESS);
    }
    serve(config, log)
}

fn serve(config: ServeConfig, log: &LogSink) -> anyhow::Result<ExitCode> {
    // This runtime loads, reloads, builds, watches and answers the admin
    // listener; requests are served on their own threads
    // (`server::run_threads`), which never compile.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    check_routes_dir(&config.routes_dir)?;
    let certificate = match &config.tls {
        Some(files) => Some(Certificate::load(files.clone())?),
        None => None,
    };
    runtime.block_on(run(config, certificate, log))?;
    Ok(ExitCode::SUCCESS)
}

/// Binds, loads the first table, then serves it and watches for changes
/// until the shutdown signal.
async fn run(
    config: ServeConfig,
    certificate: Option<Arc<Certificate>>,
    log: &LogSink,
) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let (settings, key_value) = config.load.settings()?;
    let env_listed = settings.policy.env_allow.is_some();
    let kv_metrics = KvMetrics::default();
    let stores = Arc::new(open_stores(&config, &key_value, kv_metrics.clone())?);
    let (engines, loader) = new_loader(&config.load, settings)?;
    warn_if_env_unlisted(&config, env_listed);
    let metrics = Arc::new(Metrics::new(loader.cache_stats(), &kv_metrics));
    let live = Arc::new(LiveRoutes::new(metrics).with_response_cache(config.cache_memory));
    let admin = Admin::new(live.clone(), &config.routes_dir).with_stores(stores.clone());
    let admin = Arc::new(admin);
    tokio::spawn({
        let stores = stores.clone();
        async move { stores.reach_redis().await }
    });
    // Probes are answered while the first table loads (a cold cache can
    // take seconds): alive, not ready.
    let admin_addr = match listeners.admin {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let header_timeout = config.server.header_timeout;
            tokio::spawn(admin::serve(listener, admin.clone(), header_timeout));
            Some(addr)
        }
        None => None,
    };
    let loader = Arc::new(loader);
    let errors = first_load(&loader, &config.routes_dir, &live).await?;
    let _ticker = EpochTicker::start(engines.all()).context("cannot start the epoch thread")?;
    let public_addr = listeners.public.local_addr()?;
    announce(&config, public_addr, admin_addr, &live);
    log.serving();
    let builds = (config.mode == Mode::Dev).then(|| discover_builds(&config.routes_dir));
    let (state, _certificate_watch) =
        server_state(&config, &live, stores, certificate.as_ref(), builds.clone())?;
    admin.set_phase(Phase::Serving);
    let settings_files = [&config.load.config, &config.load.env_file];
    let settings_files = settings_files.into_iter().flatten().cloned().collect();
    let reloader = Reloader::new(loader, config.routes_dir.clone(), settings_files, live);
    let reloader = Arc::new(reloader.reported(&errors));
    let _watchers = Watchers::start(&config, &reloader, builds)?;
    let shutdown = after_shutdown_signal(admin, config.shutdown_delay);
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN));
    server::run_threads(listeners.public, Arc::new(state), threads, shutdown).await?;
    Ok(())
}

/// Prints where the server listens, then the route table.
fn announce(
    config: &ServeConfig,
    public: SocketAddr,
    admin: Option<SocketAddr>,
    live: &LiveRoutes,
) {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // stdout may be closed (a supervisor that read the address and left):
    // that must not stop the server, so print errors are ignored.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {scheme}://{public}");
    if let Some(addr) = admin {
        let _ = writeln!(out, "admin on http://{addr}");
    }
    print_table(&config.routes_dir, &live.current());
}

/// What the serving threads share, and the TLS files' watch if it could
/// start.
fn server_state(
    config: &ServeConfig,
    live: &Arc<LiveRoutes>,
    stores: Arc<Stores>,
    certificate: Option<&Arc<Certificate>>,
    builds: Option<Arc<Builds>>,
) -> anyhow::Result<(ServerState, Option<CertificateWatch>)> {
    let mut state = ServerState::new(live.clone(), stores, config.server.clone())
        .with_proxies(TrustedProxies::new(config.trust_proxy.clone()));
    let mut watch = None;
    if let Some(certificate) = certificate {
        let acceptor = certificate.acceptor().context("cannot configure TLS")?;
        state = state.with_tls(acceptor);
        watch = watch_certificate(certificate);
    }
    if let Some(builds) = builds {
        state = state.with_builds(builds);
    }
    Ok((state, watch))
}

/// Opens the key-value stores: the data folder (refused inside the routes
/// folder, whose files are served and watched) and `[key_value]`'s stores.
fn open_stores(
    config: &ServeConfig,
    key_value: &BTreeMap<String, StoreConfig>,
    metrics: KvMetrics,
) -> anyhow::Result<Stores> {
    let data_dir = std::path::absolute(&config.data_dir)
        .with_context(|| format!("--data-dir {}", config.data_dir.display()))?;
    let routes_dir = config.routes_dir.canonicalize().with_context(|| {
        format!(
            "cannot resolve the routes folder {}",
            config.routes_dir.display()
        )
    })?;
    let inside = |dir: &Path| dir.starts_with(&routes_dir);
    if inside(&data_dir) || data_dir.canonicalize().is_ok_and(|dir| inside(&dir)) {
        bail!(
            "--data-dir {} is inside the routes folder {}: stores would be served and \
             watched as routes; pass a --data-dir outside it",
            config.data_dir.display(),
            config.routes_dir.display()
        );
    }
    let stores = Stores::open(&data_dir, key_value, metrics)?;
    tracing::info!(
        "embedded key-value stores in {}",
        stores.database_file().display()
    );
    for (name, address) in stores.redis_stores() {
        tracing::info!("key-value store {name:?} on Redis at {address}");
    }
    Ok(stores)
}

/// Resolves after SIGINT or SIGTERM, once `/readyz` has answered 503 for
/// `delay`: not ready first, so that load balancers stop sending; only
/// then does the server stop accepting.
async fn after_shutdown_signal(admin: Arc<Admin>, delay: Duration) {
    shutdown_signal().await;
    admin.set_phase(Phase::Draining);
    if !delay.is_zero() {
        tracing::info!(
            "shutdown signal: /readyz now 503; still accepting for {delay:?} (--shutdown-delay)"
        );
        tokio::time::sleep(delay).await;
    }
}

/// `wedge serve` without an `--env-allow` list lets every sidecar read
/// every host variable: said once, at start-up.
fn warn_if_env_unlisted(config: &ServeConfig, env_listed: bool) {
    if config.mode == Mode::Serve && !config.server.dev && !env_listed {
        tracing::warn!(
            "every host variable is readable by every sidecar: `${{NAME}}` in any route's \
             [env] may read any variable of the server's environment or --env-file, \
             including credentials meant for other routes; list the ones sidecars may read \
             with --env-allow PATTERN (e.g. --env-allow 'WEATHER_*') or env_allow in --config"
        );
    }
}

/// Loads `dir` off the runtime and publishes it; the load errors, which
/// are logged.
async fn first_load(
    loader: &Arc<Loader>,
    dir: &Path,
    live: &LiveRoutes,
) -> anyhow::Result<Vec<Arc<LoadError>>> {
    let loaded = tokio::task::spawn_blocking({
        let (loader, dir) = (loader.clone(), dir.to_owned());
        move || loader.load_dir(&dir, None)
    })
    .await?;
    for error in &loaded.errors {
        tracing::error!("{error}");
    }
    live.publish(loaded.table);
    Ok(loaded.errors)
}

/// Re-reads the certificate when its files change; without a watch, a
/// renewed certificate needs a restart, which is said.
fn watch_certificate(certificate: &Arc<Certificate>) -> Option<CertificateWatch> {
    match certificate.watch() {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(
                "cannot watch the TLS files ({error}); a renewed certificate needs a restart"
            );
            None
        }
    }
}

/// The routes folder's watch and `wedge dev`'s builds; dropping it stops
/// both.
struct Watchers {
    _routes: Option<RouteWatch>,
    _builds: Option<DevWatch>,
}

impl Watchers {
    fn start(
        config: &ServeConfig,
        reloader: &Arc<Reloader>,
        builds: Option<Arc<Builds>>,
    ) -> anyhow::Result<Watchers> {
        let routes = if config.watch {
            let watch = reloader.clone().watch().with_context(|| {
                format!(
                    "cannot watch {} for changes; pass --no-watch to serve without hot reload",
                    config.routes_dir.display()
                )
            })?;
            Some(watch)
        } else {
            None
        };
        let builds = match builds {
            Some(builds) => Some(builds.start(reloader.clone(), config.watch).context(
                "cannot watch the build sources; pass --no-watch to build once at start",
            )?),
            None => None,
        };
        Ok(Watchers {
            _routes: routes,
            _builds: builds,
        })
    }
}

/// Every route's `[build]` under `dir`; what is wrong with any is logged.
fn discover_builds(dir: &Path) -> Arc<Builds> {
    let (builds, errors) = Builds::discover(dir);
    for error in &errors {
        tracing::error!("{error}; that route is not built");
    }
    tracing::info!("wedge dev: {} route(s) build from source", builds.len());
    Arc::new(builds)
}

fn routes(args: RoutesArgs) -> anyhow::Result<ExitCode> {
    check_routes_dir(&args.routes_dir)?;
    let (settings, _) = args.load.settings()?;
    let (_engines, loader) = new_loader(&args.load, settings)?;
    let loaded = loader.load_dir(&args.routes_dir, None);
    print_table(&args.routes_dir, &loaded.table);
    for error in &loaded.errors {
        eprintln!("error: {error}");
    }
    if loaded.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} route file(s) failed; fix them and run `wedge routes` again",
            loaded.errors.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// One line per route: pattern, file, and whether it loaded.
fn print_table(dir: &Path, table: &RouteTable<LoadedRoute>) {
    let routes = table.routes();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "routes ({}):", routes.len());
    let width = routes.iter().map(|r| r.value.name.len()).max().unwrap_or(0);
    for route in routes {
        let file = route.file.strip_prefix(dir).unwrap_or(&route.file);
        let state = if route.value.state.is_ok() {
            ""
        } else {
            "  (failed to load)"
        };
        let _ = writeln!(
            out,
            "  {:width$}  {}{state}",
            route.value.name,
            file.display()
        );
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!("cannot watch SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_config(args: &[&str]) -> ServeConfig {
        let cli = Cli::try_parse_from(args).expect("valid arguments");
        match cli.command {
            Command::Serve(args) => ServeConfig::new(args, Mode::Serve, cli.log_format),
            Command::Dev(args) => ServeConfig::new(args, Mode::Dev, cli.log_format),
            Command::Routes(_) => panic!("parsed as `routes`"),
        }
    }

    #[test]
    fn flags_default_to_the_named_constants() {
        let config = serve_config(&["wedge", "serve"]);
        let defaults = ServerOptions::default();
        let server = &config.server;
        assert_eq!(server.header_timeout, defaults.header_timeout);
        assert_eq!(server.max_header_size, defaults.max_header_size);
        assert_eq!(server.max_connections, defaults.max_connections);
        assert_eq!(server.shutdown_grace, defaults.shutdown_grace);
        assert_eq!(server.max_instances, defaults.max_instances);
        assert_eq!(config.shutdown_delay, DEFAULT_SHUTDOWN_DELAY);
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.routes_dir, Path::new(DEFAULT_ROUTES_DIR));
        assert_eq!(config.data_dir, Path::new(DEFAULT_DATA_DIR));
        assert_eq!(config.cache_memory, DEFAULT_CACHE_MEMORY);
        let load = &config.load;
        assert_eq!(load.max_instances, DEFAULT_MAX_INSTANCES);
        assert_eq!(load.max_instance_memory, DEFAULT_MAX_INSTANCE_MEMORY);
        assert_eq!(load.max_wasm_size, DEFAULT_MAX_WASM_SIZE);
        assert_eq!(load.max_sidecar_size, DEFAULT_MAX_SIDECAR_SIZE);
    }

    #[test]
    fn sizes_print_as_flags_take_them() {
        for (bytes, text) in [
            (64 << 10, "64KiB"),
            (256 << 20, "256MiB"),
            (1 << 20, "1MiB"),
            (2 << 30, "2GiB"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(size_text(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn print_config_shows_what_the_flags_resolve_to() {
        let config = serve_config(&[
            "wedge",
            "--log-format",
            "json",
            "dev",
            "/srv/routes",
            "--listen=0.0.0.0:8080",
            "--admin",
            "0.0.0.0:9090",
            "--no-watch",
            "--shutdown-grace",
            "25s",
            "--max-instance-memory",
            "64MiB",
            "--env-allow",
            "API_*",
            "--trust-proxy",
            "10.0.0.0/8,192.168.0.1",
        ]);
        let json = config.to_json();
        assert_eq!(json["command"], "dev");
        assert_eq!(json["log_format"], "json");
        assert_eq!(json["routes_dir"], "/srv/routes");
        assert_eq!(json["listen"], "0.0.0.0:8080");
        assert_eq!(json["admin"], "0.0.0.0:9090");
        assert_eq!(json["watch"], false);
        assert_eq!(json["dev"], true, "wedge dev serves dev error pages");
        assert_eq!(json["shutdown_grace_ms"], 25_000);
        assert_eq!(json["shutdown_delay_ms"], 0);
        assert_eq!(json["max_instance_memory"], 64 << 20);
        assert_eq!(json["env_allow"], serde_json::json!(["API_*"]));
        assert_eq!(
            json["trust_proxy"],
            serde_json::json!(["10.0.0.0/8", "192.168.0.1/32"])
        );
        assert_eq!(json["cache_dir"], serde_json::Value::Null);
        assert_eq!(json["data_dir"], DEFAULT_DATA_DIR);
        assert_eq!(json["threads"], serde_json::Value::Null);
    }
}
