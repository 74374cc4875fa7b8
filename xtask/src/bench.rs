//! `cargo xtask bench reload`: how fast a changed route serves, how fast a
//! server with many routes starts, with a cold and a warm compile cache, and
//! what a reload costs with thousands of route files. Runs the release `wedge` binary against components built from
//! `tests/fixtures`, over loopback only, with bounded loops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Swaps measured per run: enough for a stable median on a noisy machine.
const SWAPS: usize = 50;
/// Routes in the start-up measurement.
const ROUTES: usize = 100;
/// Route files in the many-routes case, one run each: a reload's cost
/// should grow about linearly from one to the next.
const MANY_ROUTES: [usize; 2] = [1_000, 10_000];
/// Rescans and swaps measured per many-routes run.
const MANY_SAMPLES: usize = 10;
/// Longest wait for one swap or one start before the bench gives up.
const DEADLINE: Duration = Duration::from_secs(120);

/// The components and the binary the benchmark runs.
pub struct Bench {
    pub wedge: PathBuf,
    pub guests: PathBuf,
    pub work: PathBuf,
}

impl Bench {
    pub fn reload(&self) -> anyhow::Result<()> {
        let v1 = std::fs::read(self.guests.join("hello_v1.wasm")).context("read hello_v1.wasm")?;
        let v2 = std::fs::read(self.guests.join("hello_v2.wasm")).context("read hello_v2.wasm")?;
        // Each swap gets content never seen before, so a cold cache must
        // compile it: v2 and v1 alternate, each with a unique custom section.
        let variants: Vec<(Vec<u8>, &str)> = (0..SWAPS)
            .map(|i| {
                let (base, body) = if i % 2 == 0 { (&v2, "v2") } else { (&v1, "v1") };
                (with_custom_section(base, &format!("bench-{i}")), body)
            })
            .collect();

        let dir = self.fresh_dir("reload")?;
        let (routes, cache) = (dir.join("routes"), dir.join("cache"));
        std::fs::create_dir_all(&routes)?;
        let mut rows = Vec::new();
        for run in ["cold cache", "warm cache"] {
            std::fs::write(routes.join("r.wasm"), &v1)?;
            let server = Server::start(&self.wedge, &routes, &cache)?;
            wait_for(server.addr, "/r", "v1")?;
            let baseline = sample(SWAPS, || {
                let started = Instant::now();
                get(server.addr, "/r")?;
                Ok(started.elapsed())
            })?;
            let mut swaps = Vec::with_capacity(SWAPS);
            for (bytes, body) in &variants {
                let temporary = routes.join(".r.wasm.tmp");
                std::fs::write(&temporary, bytes)?;
                let started = Instant::now();
                std::fs::rename(&temporary, routes.join("r.wasm"))?;
                wait_for(server.addr, "/r", body)?;
                swaps.push(started.elapsed());
            }
            // Give the last swap's log line a moment to arrive.
            std::thread::sleep(Duration::from_millis(200));
            let loads: Vec<Duration> = server.load_ms.lock().expect("not poisoned")[1..]
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect();
            rows.push((format!("request, no swap ({run})"), summary(&baseline)));
            rows.push((
                format!("rename -> first new response ({run})"),
                summary(&swaps),
            ));
            rows.push((
                format!("  of which compile or cache load ({run})"),
                summary(&loads),
            ));
        }
        print_rows(
            &format!("hot reload, hello component, {SWAPS} swaps each"),
            &rows,
        );

        let dir = self.fresh_dir("startup")?;
        let (routes, cache) = (dir.join("routes"), dir.join("cache"));
        for i in 0..ROUTES {
            let folder = routes.join(format!("r{i}"));
            std::fs::create_dir_all(&folder)?;
            std::fs::write(
                folder.join("index.wasm"),
                with_custom_section(&v1, &format!("route-{i}")),
            )?;
        }
        let mut rows = Vec::new();
        for run in ["cold cache", "warm cache"] {
            let started = Instant::now();
            let server = Server::start(&self.wedge, &routes, &cache)?;
            wait_for(server.addr, &format!("/r{}", ROUTES - 1), "v1")?;
            rows.push((
                format!("start -> first 200 ({run})"),
                format!("{:.0} ms", ms(started.elapsed())),
            ));
        }
        print_rows(&format!("start-up, {ROUTES} distinct routes"), &rows);
        self.many_routes(&v1, &v2)
    }

    /// One small component at thousands of paths (`r/00042/[id].wasm`), so
    /// that it compiles once and what is measured is Wedge's own work per
    /// file: the first load, a rescan that finds nothing changed (the
    /// server's own figure), and one file changed until its new version
    /// serves.
    fn many_routes(&self, v1: &[u8], v2: &[u8]) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        for count in MANY_ROUTES {
            let dir = self.fresh_dir(&format!("routes-{count}"))?;
            let (routes, cache) = (dir.join("routes"), dir.join("cache"));
            for i in 0..count {
                let folder = routes.join(format!("r/{i:05}"));
                std::fs::create_dir_all(&folder)?;
                std::fs::write(folder.join("[id].wasm"), v1)?;
            }
            let started = Instant::now();
            let server = Server::start(&self.wedge, &routes, &cache)?;
            wait_for(server.addr, &format!("/r/{:05}/x", count - 1), "v1")?;
            let first_load = started.elapsed();
            let mut round = 0;
            let rescans = sample(MANY_SAMPLES, || {
                round += 1;
                let before = server.rescan_ms.lock().expect("not poisoned").len();
                // Not a route: the folder changed, no route did.
                std::fs::write(routes.join("notes.txt"), format!("{round}"))?;
                let deadline = Instant::now() + DEADLINE;
                while Instant::now() < deadline {
                    if let Some(&ms) = server.rescan_ms.lock().expect("not poisoned").get(before) {
                        return Ok(Duration::from_millis(ms));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                bail!("no rescan within {DEADLINE:?}")
            })?;
            let file = routes.join("r/00000/[id].wasm");
            let mut round = 0;
            let swaps = sample(MANY_SAMPLES, || {
                round += 1;
                let (bytes, body) = if round % 2 == 1 {
                    (v2, "v2")
                } else {
                    (v1, "v1")
                };
                let temporary = routes.join("r/00000/.new.tmp");
                std::fs::write(&temporary, bytes)?;
                let started = Instant::now();
                std::fs::rename(&temporary, &file)?;
                wait_for(server.addr, "/r/00000/x", body)?;
                Ok(started.elapsed())
            })?;
            rows.push((
                format!("{count} routes: start -> last route 200 (cold cache)"),
                format!("{:.0} ms", ms(first_load)),
            ));
            rows.push((
                format!("{count} routes: rescan, nothing changed"),
                summary(&rescans),
            ));
            rows.push((
                format!("{count} routes: one file renamed -> new version served"),
                summary(&swaps),
            ));
        }
        print_rows(
            "many routes: one component at N paths (r/NNNNN/[id].wasm)",
            &rows,
        );
        Ok(())
    }

    /// Latency of a well-behaved route, alone and beside busy-looping
    /// requests that run into their timeout, in the same server and run.
    pub fn noisy(&self) -> anyhow::Result<()> {
        const SAMPLES: usize = 200;
        const NOISE: usize = 4;
        let dir = self.fresh_dir("noisy")?;
        let (routes, cache) = (dir.join("routes"), dir.join("cache"));
        std::fs::create_dir_all(&routes)?;
        std::fs::copy(self.guests.join("hello_v1.wasm"), routes.join("ok.wasm"))?;
        std::fs::copy(self.guests.join("busy_loop.wasm"), routes.join("spin.wasm"))?;
        std::fs::write(routes.join("spin.toml"), "timeout = \"1s\"\n")?;
        let server = Server::start(&self.wedge, &routes, &cache)?;
        wait_for(server.addr, "/ok", "v1")?;
        // Spaced 10 ms apart, so the samples span the neighbours' activity.
        let measure = || {
            sample(SAMPLES, || {
                std::thread::sleep(Duration::from_millis(10));
                let started = Instant::now();
                let (status, _) = get(server.addr, "/ok")?;
                anyhow::ensure!(status == 200, "GET /ok answered {status}");
                Ok(started.elapsed())
            })
        };
        let quiet = measure()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let noise: Vec<_> = (0..NOISE)
            .map(|_| {
                let (stop, addr) = (stop.clone(), server.addr);
                std::thread::spawn(move || {
                    let mut timeouts = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok((504, _)) = get(addr, "/spin") {
                            timeouts += 1;
                        }
                    }
                    timeouts
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let noisy = measure();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let timeouts: usize = noise.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        let noisy = noisy?;

        // Another route rewritten every 100 ms with content never seen
        // before, so the server compiles back to back, off the threads that
        // serve /ok.
        let big =
            std::fs::read(self.guests.join("sdk_probe.wasm")).context("read sdk_probe.wasm")?;
        stop.store(false, std::sync::atomic::Ordering::Relaxed);
        let rewriter = {
            let (stop, routes) = (stop.clone(), routes.clone());
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let mut versions = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let temporary = routes.join(".big.wasm.tmp");
                    std::fs::write(
                        &temporary,
                        with_custom_section(&big, &format!("noisy-{versions}")),
                    )?;
                    std::fs::rename(&temporary, routes.join("big.wasm"))?;
                    versions += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(versions)
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let compiling = measure();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let versions = rewriter
            .join()
            .map_err(|_| anyhow::anyhow!("the rewriter panicked"))??;
        let compiling = compiling?;
        let median = |samples: &[Duration]| {
            let mut sorted = samples.to_vec();
            sorted.sort();
            sorted[sorted.len() / 2]
        };
        print_rows(
            &format!(
                "GET /ok ({SAMPLES} requests, 10 ms apart): alone, beside {NOISE} clients looping on a busy \
                 guest (timeout 1 s), beside a route recompiling"
            ),
            &[
                ("alone".into(), summary(&quiet)),
                (
                    format!("beside the noise ({timeouts} x 504)"),
                    summary(&noisy),
                ),
                (
                    "median ratio noisy / alone".into(),
                    format!("{:.1}x", ms(median(&noisy)) / ms(median(&quiet))),
                ),
                (
                    format!("beside a route recompiling ({versions} versions)"),
                    summary(&compiling),
                ),
                (
                    "median ratio compiling / alone".into(),
                    format!("{:.1}x", ms(median(&compiling)) / ms(median(&quiet))),
                ),
            ],
        );
        Ok(())
    }

    /// `wedge dev`: from saving a handler's source to the first response
    /// from the rebuilt route, split into the build command's time and
    /// Wedge's own (detection, copy, reload and compile).
    pub fn dev(&self, sdk: &Path, lockfile: &Path) -> anyhow::Result<()> {
        const EDITS: usize = 10;
        let dir = self.fresh_dir("dev")?;
        let (krate, routes, cache) = (dir.join("hello"), dir.join("routes"), dir.join("cache"));
        // Kept between runs: only the first builds the SDK's dependencies.
        let target = self.work.join("dev-target");
        std::fs::create_dir_all(krate.join("src"))?;
        std::fs::create_dir_all(&routes)?;
        // The examples' release profile, as `cargo xtask serve` builds them.
        let manifest = format!(
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nwedge-sdk = {{ path = \"{}\" }}\n\n\
             [profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\ndebug = false\n\n\
             [workspace]\n",
            sdk.display()
        );
        std::fs::write(krate.join("Cargo.toml"), manifest)?;
        std::fs::copy(lockfile, krate.join("Cargo.lock"))?;
        let write = |body: &str| {
            let source = format!(
                "#[wedge_sdk::handler]\nasync fn handler() -> &'static str {{\n    \"{body}\"\n}}\n"
            );
            std::fs::write(krate.join("src/main.rs"), source)
        };
        write("v0")?;
        let sidecar = format!(
            "[build]\nworkdir = \"../hello\"\n\
             command = \"cargo build --release --target wasm32-wasip2 --target-dir {}\"\n\
             watch = [\"src/**/*.rs\"]\noutput = \"{}\"\n",
            target.display(),
            target.join("wasm32-wasip2/release/hello.wasm").display()
        );
        std::fs::write(routes.join("hello.toml"), sidecar)?;

        let server = Server::start_as("dev", &self.wedge, &routes, &cache)?;
        wait_for(server.addr, "/hello", "v0")?;
        let (mut served, mut builds, mut loads, mut wedge_share) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for edit in 1..=EDITS {
            server.build_ms.lock().expect("not poisoned").clear();
            server.load_ms.lock().expect("not poisoned").clear();
            let body = format!("v{edit}");
            let started = Instant::now();
            write(&body)?;
            wait_for(server.addr, "/hello", &body)?;
            let total = started.elapsed();
            // The build's and the reload's log lines for this edit.
            std::thread::sleep(Duration::from_millis(100));
            let logged = |figures: &Mutex<Vec<u64>>| {
                Duration::from_millis(figures.lock().expect("not poisoned").iter().sum())
            };
            let build = logged(&server.build_ms);
            served.push(total);
            builds.push(build);
            loads.push(logged(&server.load_ms));
            wedge_share.push(total.saturating_sub(build));
        }
        print_rows(
            &format!("wedge dev, hello handler on wedge-sdk, {EDITS} edits each"),
            &[
                ("save -> first new response".into(), summary(&served)),
                ("  the build command (cargo)".into(), summary(&builds)),
                (
                    "  Wedge: detect, copy, reload".into(),
                    summary(&wedge_share),
                ),
                ("    of which the compile".into(), summary(&loads)),
            ],
        );
        Ok(())
    }

    /// What a JavaScript or Python component costs next to a Rust one:
    /// size, compile at start with a cold cache, start with a warm one,
    /// and per request (a fresh instance each), all in one run.
    pub fn languages(&self, js: &Path, py: &Path) -> anyhow::Result<()> {
        const ROUNDS: usize = 3;
        const PER_ROUND: usize = 100;
        let components = [
            (
                "Rust (hello_v1)",
                self.guests.join("hello_v1.wasm"),
                "r.wasm",
                "/r",
            ),
            (
                "JavaScript (examples/js)",
                js.to_owned(),
                "js/[name].wasm",
                "/js/x",
            ),
            (
                "Python (examples/python)",
                py.to_owned(),
                "py/[name].wasm",
                "/py/x",
            ),
        ];
        let dir = self.fresh_dir("languages")?;
        let mut rows = Vec::new();
        for (name, wasm, file, path) in &components {
            let size = std::fs::metadata(wasm)?.len();
            let routes = dir.join(format!("routes-{}", rows.len()));
            let cache = dir.join(format!("cache-{}", rows.len()));
            let target = routes.join(file);
            std::fs::create_dir_all(target.parent().context("a route has a folder")?)?;
            std::fs::copy(wasm, &target)?;
            let mut starts = Vec::new();
            for _cache in ["cold", "warm"] {
                let started = Instant::now();
                let server = Server::start(&self.wedge, &routes, &cache)?;
                wait_ok(server.addr, path)?;
                let first = started.elapsed();
                std::thread::sleep(Duration::from_millis(100));
                let load = server
                    .load_ms
                    .lock()
                    .expect("not poisoned")
                    .iter()
                    .sum::<u64>();
                starts.push((first, load));
            }
            let [(cold, compile), (warm, cache_load)] = starts[..] else {
                unreachable!("two starts")
            };
            rows.push((
                name.to_string(),
                format!(
                    "{:5.1} MB   cold start {:6.0} ms (compile {compile} ms)   warm start {:4.0} ms (cache {cache_load} ms)",
                    size as f64 / 1e6,
                    ms(cold),
                    ms(warm),
                ),
            ));
        }
        print_rows("size and start-up (release wedge, one route each)", &rows);

        // Per request, the three interleaved on one server.
        let routes = dir.join("routes-all");
        for (_, wasm, file, _) in &components {
            let target = routes.join(file);
            std::fs::create_dir_all(target.parent().context("a route has a folder")?)?;
            std::fs::copy(wasm, target)?;
        }
        let server = Server::start(&self.wedge, &routes, &dir.join("cache-all"))?;
        let mut samples = vec![Vec::new(); components.len()];
        for (_, _, _, path) in &components {
            wait_ok(server.addr, path)?;
        }
        for _ in 0..ROUNDS {
            for (samples, (_, _, _, path)) in samples.iter_mut().zip(&components) {
                for _ in 0..PER_ROUND {
                    let started = Instant::now();
                    let (status, _) = get(server.addr, path)?;
                    anyhow::ensure!(status == 200, "GET {path} answered {status}");
                    samples.push(started.elapsed());
                }
            }
        }
        let median = |samples: &[Duration]| {
            let mut sorted = samples.to_vec();
            sorted.sort();
            sorted[sorted.len() / 2]
        };
        let baseline = median(&samples[0]);
        let rows: Vec<(String, String)> = components
            .iter()
            .zip(&samples)
            .map(|((name, ..), samples)| {
                let ratio = ms(median(samples)) / ms(baseline);
                (
                    name.to_string(),
                    format!("{}   {ratio:5.1}x Rust", summary(samples)),
                )
            })
            .collect();
        print_rows(
            &format!(
                "per request, fresh instance each ({ROUNDS} rounds of {PER_ROUND}, interleaved)"
            ),
            &rows,
        );
        Ok(())
    }

    pub(crate) fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// `wedge serve` (or `wedge dev`) on a free loopback port; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The "compiled in N ms" / "from cache in N ms" figures its log reported.
    load_ms: Arc<Mutex<Vec<u64>>>,
    /// The "build ok in N ms" figures (`wedge dev`).
    build_ms: Arc<Mutex<Vec<u64>>>,
    /// The "rescanned in N ms" figures of the reloader.
    rescan_ms: Arc<Mutex<Vec<u64>>>,
}

impl Server {
    fn start(wedge: &Path, routes: &Path, cache: &Path) -> anyhow::Result<Server> {
        Server::start_as("serve", wedge, routes, cache)
    }

    fn start_as(
        subcommand: &str,
        wedge: &Path,
        routes: &Path,
        cache: &Path,
    ) -> anyhow::Result<Server> {
        let mut child = Command::new(wedge)
            .arg(subcommand)
            .arg(routes)
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(cache)
            // Beside the cache, so that no two benchmarks share one.
            .arg("--data-dir")
            .arg(cache.with_extension("data"))
            .env("RUST_LOG", "warn,wedge::reload=debug,wedge::dev=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", wedge.display()))?;
        let load_ms = Arc::new(Mutex::new(Vec::new()));
        let build_ms = Arc::new(Mutex::new(Vec::new()));
        let rescan_ms = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().context("piped stderr")?);
        std::thread::spawn({
            let (load_ms, build_ms) = (load_ms.clone(), build_ms.clone());
            let rescan_ms = rescan_ms.clone();
            move || {
                for line in stderr.lines().map_while(Result::ok) {
                    let rescan = line
                        .split_once("rescanned in ")
                        .and_then(|(_, rest)| rest.split_once(" ms"))
                        .and_then(|(ms, _)| ms.parse().ok());
                    if let Some(ms) = rescan {
                        rescan_ms.lock().expect("not poisoned").push(ms);
                        continue;
                    }
                    let load = line
                        .split_once(" in ")
                        .and_then(|(_, rest)| rest.split_once(" ms)"))
                        .and_then(|(ms, _)| ms.parse().ok());
                    let build = line
                        .split_once("build ok in ")
                        .and_then(|(_, rest)| rest.split_once(" ms"))
                        .and_then(|(ms, _)| ms.parse().ok());
                    match (load, build) {
                        (Some(ms), _) => load_ms.lock().expect("not poisoned").push(ms),
                        (_, Some(ms)) => build_ms.lock().expect("not poisoned").push(ms),
                        _ if line.contains("ERROR") || line.contains("WARN") => {
                            eprintln!("{line}")
                        }
                        _ => {}
                    }
                }
            }
        });
        // Only now: the log is read from the start, or a first load that
        // logs more than a pipe holds (thousands of routes) would block.
        let addr = listening_address(&mut child)?;
        Ok(Server {
            child,
            addr,
            load_ms,
            build_ms,
            rescan_ms,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a server started with piped stdout prints first, as
/// `listening on http://ADDR` (`wedge serve`, `native-hello`). The rest of
/// its stdout is read and dropped, so it never writes to a closed pipe; a
/// server that prints something else is killed.
pub fn listening_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let mut stdout = BufReader::new(child.stdout.take().context("piped stdout")?);
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let Some(addr) = first.trim().strip_prefix("listening on http://") else {
        let _ = child.kill();
        bail!("the server printed {first:?} instead of its address");
    };
    Ok(addr.parse()?)
}

/// `GET path` over a fresh HTTP/1.1 connection: (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One short chunk: its size line, then its data.
        body.lines().nth(1).unwrap_or("")
    } else {
        body
    };
    Ok((status, body.to_owned()))
}

/// Polls `GET path` until it answers 200.
pub(crate) fn wait_ok(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Ok((200, _)) = get(addr, path) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("GET {path} did not answer 200 within {DEADLINE:?}")
}

/// Polls `GET path` until it answers 200 with `body`.
fn wait_for(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Ok((200, answer)) = get(addr, path)
            && answer == body
        {
            return Ok(());
        }
        // 1 ms resolution; a tight loop would take CPU from the compile it waits for.
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("GET {path} did not answer {body:?} within {DEADLINE:?}")
}

fn sample(
    n: usize,
    mut once: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    (0..n).map(|_| once()).collect()
}

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Median, p99 (with 50 samples: the largest but none), min and max.
pub(crate) fn summary(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:7.2} ms   p99 {:7.2} ms   min {:7.2} ms   max {:7.2} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1])
    )
}

pub(crate) fn print_rows(title: &str, rows: &[(String, String)]) {
    println!("\n{title}");
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        println!("  {name:width$}  {value}");
    }
}

/// `component` with a custom section appended: the same behaviour, new content.
fn with_custom_section(component: &[u8], name: &str) -> Vec<u8> {
    [component, &wedge_toolchains::custom_section(name, &[])].concat()
}
