//! `cargo xtask bench`: Wedge beside a native hyper server and `wasmtime
//! serve`, serving the same hello-world components under `wrk` in another
//! process: the WASI 0.2 `hello_v1` with a fresh instance per request and
//! with instances reused 128 times, and the WASI 0.3 `wasi03_probe` with
//! each server's default reuse (and, for Wedge, `reuse = false`). Wedge runs
//! with its default logging (the access log on, to a file) unless a row
//! says otherwise. With two cores or
//! more, servers run on core 0 and `wrk` on core 1. The servers take turns
//! (A B C A B C …) for several rounds, so that the machine's drift touches
//! them alike; every ratio compares figures from the same run.
//!
//! Two more rows run the same `wedge` binary on a route its response cache
//! answers (the `cache_probe` fixture, asked for `s-maxage=3600`): warmed
//! by one request, then the same `wrk` runs, with and without the access
//! log. The server's `/metrics` before and after show that no request
//! under `wrk` instantiated the guest.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod profile;

/// Connections for the throughput figure, and for the tail latency one.
const CONNECTIONS: [u32; 2] = [32, 128];
/// Seconds `wrk` runs per measurement; one more to warm up first.
const SECONDS: u32 = 5;
/// The streamed echo's size.
const ECHO_BYTES: usize = 50 * 1024 * 1024;
/// The cached route, and the request that makes its answer cacheable for
/// an hour: `cc=public, s-maxage=3600` (the query is part of the cache key).
const CACHED_ROUTE: &str = "/cached";
const CACHED_PATH: &str = "/cached?cc=public%2C%20s-maxage%3D3600";
/// The cached row's target: this share of native hyper's req/s.
const CACHED_TARGET: f64 = 0.7;

/// What the comparison runs.
pub struct Compare {
    /// The release `wedge`.
    pub wedge: PathBuf,
    /// The release `native-hello`.
    pub native: PathBuf,
    /// `wasmtime` of the pinned version, if there is one.
    pub wasmtime: Option<PathBuf>,
    /// Another `wedge` build to measure beside this one, in the same run
    /// (`WEDGE_BASELINE`): an A/B of a change.
    pub baseline: Option<PathBuf>,
    /// The `hello_v1`, `wasi03_probe`, `echo_stream` and `cache_probe`
    /// components.
    pub hello: PathBuf,
    pub hello03: PathBuf,
    pub echo: PathBuf,
    pub cache_probe: PathBuf,
    /// Scratch space, and where `compare.json` goes.
    pub work: PathBuf,
    pub rounds: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Native,
    /// WASI 0.2, a fresh instance per request (Wedge's default).
    Wedge,
    /// The same without the access log (`RUST_LOG=warn`).
    WedgeQuiet,
    /// The same as `Wedge` with `--no-wasi-0-3` (wasmtime's concurrency
    /// support off).
    WedgeNoP3,
    /// WASI 0.2, `[reuse] max_requests = 128` (one request at a time).
    WedgeReuse,
    /// WASI 0.3, Wedge's default reuse (128 requests, 16 at once).
    Wedge03,
    /// WASI 0.3, `reuse = false`.
    Wedge03Fresh,
    /// The `WEDGE_BASELINE` build, as `Wedge`.
    Baseline,
    Wasmtime,
    /// `--max-instance-reuse-count 128`.
    WasmtimeReuse,
    /// WASI 0.3 with `wasmtime serve`'s default reuse.
    Wasmtime03,
    /// `wedge serve` answering from its response cache.
    Cached,
    /// The same without the access log (`RUST_LOG=warn`).
    CachedQuiet,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Native => "native hyper",
            Kind::Wedge => "wedge 0.2 fresh",
            Kind::WedgeQuiet => "  same, RUST_LOG=warn",
            Kind::WedgeNoP3 => "  same, --no-wasi-0-3",
            Kind::WedgeReuse => "wedge 0.2 reuse 128",
            Kind::Wedge03 => "wedge 0.3 reuse 128x16",
            Kind::Wedge03Fresh => "wedge 0.3 reuse = false",
            Kind::Baseline => "wedge 0.2 fresh (baseline)",
            Kind::Wasmtime => "wasmtime serve 0.2 fresh",
            Kind::WasmtimeReuse => "wasmtime serve 0.2 reuse 128",
            Kind::Wasmtime03 => "wasmtime serve 0.3 default",
            Kind::Cached => "wedge, cached route",
            Kind::CachedQuiet => "  cached, RUST_LOG=warn",
        }
    }

    fn cached(self) -> bool {
        matches!(self, Kind::Cached | Kind::CachedQuiet)
    }

    fn wasmtime(self) -> bool {
        matches!(
            self,
            Kind::Wasmtime | Kind::WasmtimeReuse | Kind::Wasmtime03
        )
    }

    fn wasi03(self) -> bool {
        matches!(self, Kind::Wedge03 | Kind::Wedge03Fresh | Kind::Wasmtime03)
    }

    /// The `wasmtime serve` row this one is compared with.
    fn peer(self) -> Option<Kind> {
        match self {
            Kind::Wedge | Kind::WedgeQuiet | Kind::WedgeNoP3 | Kind::Baseline => {
                Some(Kind::Wasmtime)
            }
            Kind::WedgeReuse => Some(Kind::WasmtimeReuse),
            Kind::Wedge03 | Kind::Wedge03Fresh => Some(Kind::Wasmtime03),
            _ => None,
        }
    }

    /// Whether the streamed echo is measured: on the fresh WASI 0.2 rows.
    fn echoes(self) -> bool {
        matches!(
            self,
            Kind::Native
                | Kind::Wedge
                | Kind::WedgeQuiet
                | Kind::WedgeNoP3
                | Kind::Baseline
                | Kind::Wasmtime
        )
    }

    /// What `wrk` requests.
    fn path(self) -> &'static str {
        if self.cached() { CACHED_PATH } else { "/hello" }
    }

    /// `RUST_LOG` for a Wedge server: its default, `info`, unless the row
    /// measures it without the access log.
    fn log(self) -> &'static str {
        if matches!(self, Kind::WedgeQuiet | Kind::CachedQuiet) {
            "warn"
        } else {
            "info"
        }
    }

    /// The route's sidecar.
    fn sidecar(self) -> &'static str {
        match self {
            Kind::WedgeReuse => "max_body = \"64MiB\"\n[reuse]\nmax_requests = 128\n",
            Kind::Wedge03Fresh => "max_body = \"64MiB\"\nreuse = false\n",
            _ => "max_body = \"64MiB\"\n",
        }
    }
}

/// One server's figures over all rounds.
#[derive(Default)]
struct Figures {
    rps: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    p99_ms_c128: Vec<f64>,
    cpu_us: Vec<f64>,
    /// Peak RSS by the end of the c32 run, and by the end of the c128 one.
    peak_rss_mb: Vec<f64>,
    peak_rss_mb_c128: Vec<f64>,
    start_ms: Vec<f64>,
    echo_mb_s: Vec<f64>,
    /// Echoes that failed, and why: reported, not fatal, so that one
    /// server's failure still leaves the other figures.
    echo_errors: Vec<String>,
    /// The cached rows: over each round's `wrk` runs (warm-up, c32, c128),
    /// the route's instantiations, its cache hits and misses, and wrk's
    /// requests.
    instantiations: Vec<f64>,
    hits: Vec<f64>,
    misses: Vec<f64>,
    wrk_requests: Vec<u64>,
}

impl Compare {
    pub fn run(&self) -> anyhow::Result<()> {
        let wrk = wrk_program()?;
        let pinned = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
        let mut kinds = vec![
            Kind::Native,
            Kind::Wedge,
            Kind::WedgeQuiet,
            Kind::WedgeNoP3,
            Kind::WedgeReuse,
            Kind::Wedge03,
            Kind::Wedge03Fresh,
            Kind::Cached,
            Kind::CachedQuiet,
        ];
        if self.baseline.is_some() {
            kinds.push(Kind::Baseline);
        }
        if self.wasmtime.is_some() {
            kinds.extend([Kind::Wasmtime, Kind::WasmtimeReuse, Kind::Wasmtime03]);
        } else {
            eprintln!(
                "bench: no wasmtime: set WASMTIME=/path/to/wasmtime (48.0.x) or pass \
                 --with-wasmtime to compare with `wasmtime serve`"
            );
        }
        // Every Wedge build starts on the same warm compile cache (the
        // builds share one, keyed by wasmtime's engine): whichever ran
        // first would otherwise compile in its first round.
        for component in [&self.hello, &self.hello03, &self.echo] {
            drop(self.start(Kind::Wedge, component, pinned)?);
        }
        // And the cached route's component.
        drop(self.start(Kind::Cached, &self.hello, pinned)?);
        let mut figures: Vec<Figures> = kinds.iter().map(|_| Figures::default()).collect();
        for round in 1..=self.rounds {
            for (kind, figures) in kinds.iter().zip(&mut figures) {
                eprintln!("bench: round {round}/{}: {}", self.rounds, kind.name());
                self.measure(*kind, &wrk, pinned, figures)?;
            }
        }
        self.report(&kinds, &figures, pinned)
    }

    /// One round of one server: start-up, throughput and latency at each
    /// connection count, CPU per request, peak memory, the streamed echo.
    fn measure(
        &self,
        kind: Kind,
        wrk: &Path,
        pinned: bool,
        into: &mut Figures,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let hello = if kind.wasi03() {
            &self.hello03
        } else {
            &self.hello
        };
        let server = self.start(kind, hello, pinned)?;
        into.start_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let path = kind.path();
        // The cached route: one request stores the answer, then the
        // counters are read before and after every `wrk` run.
        let before = match server.admin {
            Some(admin) => {
                let first = crate::cache::request(server.addr, path)?;
                anyhow::ensure!(
                    first.status == 200 && first.cache == "MISS",
                    "the first GET {path} answered {} with x-wedge-cache {}",
                    first.status,
                    first.cache
                );
                Some(crate::cache::metrics_at(admin)?)
            }
            None => None,
        };
        let mut requests = run_wrk(wrk, pinned, server.addr, path, 32, 1)?.requests;
        for connections in CONNECTIONS {
            let before = cpu_seconds(server.pid())?;
            let result = run_wrk(wrk, pinned, server.addr, path, connections, SECONDS)?;
            let cpu = cpu_seconds(server.pid())? - before;
            requests += result.requests;
            if connections == CONNECTIONS[0] {
                into.rps.push(result.rps);
                into.p50_ms.push(result.p50_ms);
                into.p99_ms.push(result.p99_ms);
                into.cpu_us.push(cpu * 1e6 / result.requests.max(1) as f64);
                into.peak_rss_mb
                    .push(peak_rss_kib(server.pid())? as f64 / 1024.0);
            } else {
                into.p99_ms_c128.push(result.p99_ms);
                into.peak_rss_mb_c128
                    .push(peak_rss_kib(server.pid())? as f64 / 1024.0);
            }
        }
        if let (Some(before), Some(admin)) = (before, server.admin) {
            let after = crate::cache::metrics_at(admin)?;
            let counted = |result: &str| {
                let labels = [("route", CACHED_ROUTE), ("result", result)];
                crate::cache::metric(&after, "wedge_cache_requests_total", &labels)
                    - crate::cache::metric(&before, "wedge_cache_requests_total", &labels)
            };
            into.instantiations.push(
                crate::cache::instantiations(&after, CACHED_ROUTE)
                    - crate::cache::instantiations(&before, CACHED_ROUTE),
            );
            into.hits.push(counted("hit"));
            into.misses.push(counted("miss"));
            into.wrk_requests.push(requests);
            // The echo is the hello rows' figure: a POST is not cached.
            return Ok(());
        }
        drop(server);
        if !kind.echoes() {
            return Ok(());
        }

        let server = self.start(kind, &self.echo, pinned)?;
        let body = self.work.join("compare/echo-50mb.bin");
        if std::fs::metadata(&body).map_or(true, |m| m.len() as usize != ECHO_BYTES) {
            std::fs::create_dir_all(self.work.join("compare"))?;
            std::fs::write(&body, vec![b'x'; ECHO_BYTES])?;
        }
        match echo(server.addr, &body) {
            Ok(mb_s) => into.echo_mb_s.push(mb_s),
            Err(error) => into.echo_errors.push(format!("{error:#}")),
        }
        Ok(())
    }

    fn start(&self, kind: Kind, component: &Path, pinned: bool) -> anyhow::Result<Server> {
        let mut command = if pinned {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", "0"]);
            taskset
        } else {
            Command::new("env")
        };
        let dir = self.work.join("compare");
        match kind {
            Kind::Native => {
                command.arg(&self.native).arg("127.0.0.1:0");
                Server::printing_address(command, Stdio::null())
            }
            _ if !kind.wasmtime() => {
                let wedge = match kind {
                    Kind::Baseline => self.baseline.as_ref().context("no baseline")?,
                    _ => &self.wedge,
                };
                let routes = dir.join("routes");
                if routes.exists() {
                    std::fs::remove_dir_all(&routes)?;
                }
                std::fs::create_dir_all(&routes)?;
                std::fs::copy(component, routes.join("hello.wasm"))?;
                std::fs::write(routes.join("hello.toml"), kind.sidecar())?;
                if kind.cached() {
                    std::fs::copy(&self.cache_probe, routes.join("cached.wasm"))
                        .context("copy cache_probe.wasm")?;
                }
                command
                    .arg(wedge)
                    .arg("serve")
                    .arg(&routes)
                    .args(["--listen", "127.0.0.1:0", "--no-watch", "--cache-dir"])
                    .arg(dir.join("cache"))
                    .env("RUST_LOG", kind.log());
                // The access log goes to a file, as a service's log does.
                let log = Stdio::from(std::fs::File::create(dir.join("wedge.log"))?);
                if kind != Kind::Baseline {
                    // An earlier build (the baseline) may not know the flag.
                    command.arg("--data-dir").arg(dir.join("data"));
                }
                if kind == Kind::WedgeNoP3 {
                    command.arg("--no-wasi-0-3");
                }
                if kind.cached() {
                    Server::printing_addresses(command, log)
                } else {
                    Server::printing_address(command, log)
                }
            }
            _ => {
                let wasmtime = self.wasmtime.as_ref().context("no wasmtime")?;
                let addr = free_port()?;
                command.arg(wasmtime).args(["serve", "-Scli"]);
                match kind {
                    Kind::WasmtimeReuse => {
                        command.args(["--max-instance-reuse-count", "128"]);
                    }
                    Kind::Wasmtime03 => {
                        command.args(["-Sp3", "-Wcomponent-model-async"]);
                    }
                    _ => {}
                }
                command.arg("--addr").arg(addr.to_string()).arg(component);
                Server::polled(command, addr)
            }
        }
    }

    fn report(&self, kinds: &[Kind], figures: &[Figures], pinned: bool) -> anyhow::Result<()> {
        let index = |kind: Kind| kinds.iter().position(|k| *k == kind);
        let native_rps = median(&figures[0].rps);
        let peer_rps = |kind: Kind| {
            let peer = kind.peer()?;
            index(peer).map(|i| median(&figures[i].rps))
        };
        println!(
            "\nhello world; wrk -t1 -c32 -d{SECONDS}s (p99 also at -c128); {} rounds{}; wedge \
             with its default logging (access log on, to a file) unless a row says; x wasmtime: \
             against the wasmtime serve row of the same world and reuse",
            self.rounds,
            if pinned {
                "; server on core 0, wrk on core 1"
            } else {
                ""
            }
        );
        println!(
            "  {:26} {:>28} {:>9} {:>9} {:>13} {:>12} {:>9} {:>10} {:>10} {:>11} {:>9} {:>10}",
            "server",
            "req/s median [min-max]",
            "p50 ms",
            "p99 ms",
            "p99 ms c128",
            "CPU us/req",
            "RSS MB",
            "RSS c128",
            "start ms",
            "echo MB/s",
            "x native",
            "x wasmtime"
        );
        let mut json = Vec::new();
        for (kind, f) in kinds.iter().zip(figures) {
            let rps = median(&f.rps);
            let versus_wasmtime =
                peer_rps(*kind).map_or("-".to_owned(), |w| format!("{:.2}", rps / w));
            println!(
                "  {:26} {:>28} {:>9.3} {:>9.3} {:>13.3} {:>12.1} {:>9.1} {:>10.1} {:>10.0} {:>11} {:>9.2} {:>10}",
                kind.name(),
                format!("{rps:.0} [{:.0}-{:.0}]", min(&f.rps), max(&f.rps)),
                median(&f.p50_ms),
                median(&f.p99_ms),
                median(&f.p99_ms_c128),
                median(&f.cpu_us),
                max(&f.peak_rss_mb),
                max(&f.peak_rss_mb_c128),
                median(&f.start_ms),
                if kind.echoes() {
                    echo_figure(f)
                } else {
                    "-".to_owned()
                },
                rps / native_rps,
                versus_wasmtime
            );
            json.push(serde_json::json!({
                "server": kind.name(),
                "rps": f.rps, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms,
                "p99_ms_c128": f.p99_ms_c128, "cpu_us_per_request": f.cpu_us,
                "peak_rss_mb": f.peak_rss_mb, "peak_rss_mb_c128": f.peak_rss_mb_c128,
                "start_ms": f.start_ms,
                "echo_mb_per_s": f.echo_mb_s, "echo_errors": f.echo_errors,
                "rust_log": (*kind != Kind::Native && !kind.wasmtime()).then(|| kind.log()),
                "path": kind.path(),
                "instantiations_under_wrk": f.instantiations,
                "cache_hits_under_wrk": f.hits, "cache_misses_under_wrk": f.misses,
                "wrk_requests": f.wrk_requests,
            }));
        }
        if let (Some(wedge), Some(baseline)) = (index(Kind::Wedge), index(Kind::Baseline)) {
            let ratio = |figure: fn(&Figures) -> &Vec<f64>| {
                median(figure(&figures[wedge])) / median(figure(&figures[baseline]))
            };
            println!(
                "\n  wedge / baseline (same run): req/s {:.3}, CPU us/req {:.3}, p50 {:.3}, \
                 p99 {:.3}, p99 c128 {:.3}",
                ratio(|f| &f.rps),
                ratio(|f| &f.cpu_us),
                ratio(|f| &f.p50_ms),
                ratio(|f| &f.p99_ms),
                ratio(|f| &f.p99_ms_c128),
            );
        }
        // Each round measures a row and its `wasmtime serve` peer minutes
        // apart, so a round's own ratio is spared the drift between rounds.
        let mut by_round = Vec::new();
        for (kind, f) in kinds.iter().zip(figures) {
            let Some(peer) = kind.peer().and_then(index) else {
                continue;
            };
            let ratios: Vec<String> = f
                .rps
                .iter()
                .zip(&figures[peer].rps)
                .map(|(rps, peer)| format!("{:.2}", rps / peer))
                .collect();
            by_round.push(format!(
                "    {:26} {}",
                kind.name().trim(),
                ratios.join(", ")
            ));
        }
        if !by_round.is_empty() {
            println!("\n  x wasmtime in each round (the row's req/s over its peer's, same round):");
            println!("{}", by_round.join("\n"));
        }
        for (kind, f) in kinds.iter().zip(figures) {
            if kind.cached() {
                cached_summary(*kind, f, &figures[0]);
            }
        }
        for (kind, f) in kinds.iter().zip(figures) {
            for error in &f.echo_errors {
                println!("  {}: a 50 MB echo failed: {error}", kind.name());
            }
        }
        let file = self.work.join("compare.json");
        let report = serde_json::json!({
            "seconds": SECONDS, "rounds": self.rounds, "pinned": pinned, "servers": json,
        });
        std::fs::write(&file, serde_json::to_vec_pretty(&report)?)?;
        println!("\n  every round's figures: {}", file.display());
        Ok(())
    }
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Its admin listener, if it was started with one.
    admin: Option<SocketAddr>,
}

impl Server {
    /// Starts `command`, which prints `listening on http://ADDR` first,
    /// its log to `stderr`.
    fn printing_address(mut command: Command, stderr: Stdio) -> anyhow::Result<Server> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {command:?}"))?;
        let addr = crate::bench::listening_address(&mut child)?;
        let server = Server {
            addr,
            child,
            admin: None,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts `command`, a `wedge serve`, with an admin listener: it prints
    /// `listening on http://ADDR`, then `admin on http://ADDR`.
    fn printing_addresses(mut command: Command, stderr: Stdio) -> anyhow::Result<Server> {
        command.stderr(stderr);
        let (child, addr, admin) = crate::cache::spawn_with_admin(command)?;
        let server = Server {
            child,
            addr,
            admin: Some(admin),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts `command` and polls `addr` until it answers.
    fn polled(mut command: Command, addr: SocketAddr) -> anyhow::Result<Server> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {command:?}"))?;
        let server = Server {
            child,
            addr,
            admin: None,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let request = "GET /hello HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
                let mut answer = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.1 200")
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("the server on {} never answered 200", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cached row's verdicts: its req/s against native hyper's (the median,
/// and round by round), and what its `/metrics` counted under `wrk`.
fn cached_summary(kind: Kind, cached: &Figures, native: &Figures) {
    let ratio = median(&cached.rps) / median(&native.rps);
    let rounds: Vec<String> = cached
        .rps
        .iter()
        .zip(&native.rps)
        .map(|(c, n)| format!("{:.2}", c / n))
        .collect();
    println!(
        "\n  cached route, RUST_LOG={} (GET {CACHED_PATH}, warmed by one request): \
         {:.0} req/s, {ratio:.2}x native hyper's in the same run (rounds: {}); \
         target >= {CACHED_TARGET}x: {}",
        kind.log(),
        median(&cached.rps),
        rounds.join(", "),
        if ratio >= CACHED_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    let instantiated: f64 = cached.instantiations.iter().sum();
    let hits: f64 = cached.hits.iter().sum();
    let misses: f64 = cached.misses.iter().sum();
    let requests: u64 = cached.wrk_requests.iter().sum();
    println!(
        "    /metrics before and after the wrk runs, {} rounds: {instantiated} instantiations \
         of {CACHED_ROUTE} ({}), {hits} cache hits and {misses} misses for wrk's {requests} \
         requests (hits / requests {:.4})",
        cached.rps.len(),
        if instantiated == 0.0 {
            "unchanged: no hit instantiated"
        } else {
            "CHANGED"
        },
        hits / requests.max(1) as f64
    );
}

/// `wrk` on the PATH, installed with apt-get when missing and possible.
pub(crate) fn wrk_program() -> anyhow::Result<PathBuf> {
    program("wrk", "wrk", "the benchmark")
}

/// `name` on the PATH, installed with apt-get (Debian's `package`) when
/// missing and possible; otherwise an error saying that `user` needs it.
pub(crate) fn program(name: &str, package: &str, user: &str) -> anyhow::Result<PathBuf> {
    let found = |name: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    if let Some(program) = found(name) {
        return Ok(program);
    }
    if found("apt-get").is_some() {
        eprintln!("bench: installing {package} with apt-get");
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .status()?;
        if status.success()
            && let Some(program) = found(name)
        {
            return Ok(program);
        }
    }
    bail!("{user} needs {name}: install it (Debian: apt-get install {package}) and run again")
}

pub(crate) struct WrkResult {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    requests: u64,
}

/// `wrk -t1 -cN -dSs --latency http://ADDR{path}`; any non-2xx answer or
/// socket error is an error.
pub(crate) fn run_wrk(
    wrk: &Path,
    pinned: bool,
    addr: SocketAddr,
    path: &str,
    connections: u32,
    seconds: u32,
) -> anyhow::Result<WrkResult> {
    let mut command = if pinned {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "1"]).arg(wrk);
        taskset
    } else {
        Command::new(wrk)
    };
    let output = command
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .arg(format!("http://{addr}{path}"))
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk reported errors:\n{text}");
    }
    parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkResult> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let rps = field("Requests/sec:")?.parse().ok()?;
    let p50_ms = latency_ms(field("50%")?)?;
    let p99_ms = latency_ms(field("99%")?)?;
    let requests = text
        .lines()
        .find(|line| line.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(WrkResult {
        rps,
        p50_ms,
        p99_ms,
        requests,
    })
}

/// `1.23ms`, `456.00us`, `1.02s` in milliseconds.
fn latency_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// POSTs 50 MB with curl and reads the echo as it comes: MB/s through
/// the server. (curl, not a client of our own: `wasmtime serve` 48 stalls,
/// spinning, when a client writes 256 KiB chunks while reading the echo,
/// and curl's pattern is the one a comparison should use.)
fn echo(addr: SocketAddr, body: &Path) -> anyhow::Result<f64> {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "30",
            "--output",
            "/dev/null",
        ])
        .args(["--write-out", "%{http_code} %{size_download} %{time_total}"])
        .args(["--header", "content-type: application/octet-stream"])
        // No `Expect: 100-continue` (curl's default for a large body): its
        // handshake paces curl's upload, and the figure is the server's.
        .args(["--header", "expect:"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("http://{addr}/hello"))
        .output()
        .context("run curl (install it: apt-get install curl)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let (Some(status), Some(size), Some(seconds)) = (fields.next(), fields.next(), fields.next())
    else {
        bail!("curl: {}", String::from_utf8_lossy(&output.stderr));
    };
    let (size, seconds): (usize, f64) = (size.parse()?, seconds.parse()?);
    if status != "200" || size != ECHO_BYTES {
        bail!("the echo answered {status} with {size} of {ECHO_BYTES} bytes");
    }
    Ok(ECHO_BYTES as f64 / 1e6 / seconds)
}

/// User plus system CPU time of `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces, in parens).
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/PID/status")
}

/// A loopback port nothing listens on now (for a server that takes a port,
/// not port 0).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The echo's median MB/s, or how many of its runs failed.
fn echo_figure(figures: &Figures) -> String {
    match (figures.echo_mb_s.is_empty(), figures.echo_errors.len()) {
        (false, 0) => format!("{:.0}", median(&figures.echo_mb_s)),
        (false, failed) => format!("{:.0} ({failed} failed)", median(&figures.echo_mb_s)),
        (true, _) => "failed".to_owned(),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 5s test @ http://127.0.0.1:3000/hello\n  1 threads and 32 connections\n\
                    \x20 Latency Distribution\n     50%    1.20ms\n     75%    1.50ms\n     90%    \
                    2.00ms\n     99%  850.00us\n  123456 requests in 5.00s, 10.00MB read\n\
                    Requests/sec:  24691.20\nTransfer/sec:      2.00MB\n";
        let result = parse_wrk(text).unwrap();
        assert_eq!(result.rps, 24691.2);
        assert_eq!(result.p50_ms, 1.2);
        assert_eq!(result.p99_ms, 0.85);
        assert_eq!(result.requests, 123456);
    }
}
