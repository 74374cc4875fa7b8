//! `cargo xtask bench hostile`: a well-behaved route beside everything the
//! threat model says Wedge withstands, in one release server, over loopback
//! only, each loop bounded in count and time.
//!
//! 1. Fairness: `GET /ok` alone, then beside four clients looping on a
//!    busy guest (`cpu_time = "200ms"`, `timeout = "1s"`).
//! 2. Soak: for [`SOAK`], `GET /ok` from two clients beside silent sockets,
//!    slowloris heads, resource-bomb and memory-bomb guests, a log flood and
//!    a route file rewritten every 100 ms. Reported: the well-behaved
//!    route's latency and failures, the server's peak RSS and most open
//!    file descriptors.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::{Bench, get, listening_address, ms, print_rows, summary};

/// How long the soak runs.
const SOAK: Duration = Duration::from_secs(60);
/// Silent sockets held open (reopened as the server closes them).
const SILENT: usize = 200;
/// Slowloris clients, each sending one header byte every 500 ms.
const SLOWLORIS: usize = 50;
/// Clients looping on busy guests in the fairness run.
const BUSY: usize = 4;

/// The hostile neighbours, by file name in the routes folder and fixture.
const ROUTES: [(&str, &str, &str); 5] = [
    ("ok.wasm", "hello_v1", ""),
    (
        "spin.wasm",
        "busy_loop",
        "timeout = \"1s\"\ncpu_time = \"200ms\"\n",
    ),
    ("bomb.wasm", "memory_bomb", "memory = \"32MiB\"\n"),
    ("resources.wasm", "resource_bomb", "timeout = \"2s\"\n"),
    ("flood.wasm", "log_flood", "timeout = \"2s\"\n"),
];

impl Bench {
    pub fn hostile(&self) -> anyhow::Result<()> {
        let dir = self.fresh_dir("hostile")?;
        let (routes, cache) = (dir.join("routes"), dir.join("cache"));
        std::fs::create_dir_all(&routes)?;
        for (file, fixture, sidecar) in ROUTES {
            let wasm = self.guests.join(format!("{fixture}.wasm"));
            std::fs::copy(&wasm, routes.join(file))
                .with_context(|| format!("copy {}", wasm.display()))?;
            if !sidecar.is_empty() {
                std::fs::write(routes.join(file).with_extension("toml"), sidecar)?;
            }
        }
        let server = Hostile::start(&self.wedge, &routes, &cache)?;
        crate::bench::wait_ok(server.addr, "/ok")?;
        fairness(&server)?;
        soak(&server, &routes, &self.guests.join("hello_v2.wasm"))
    }
}

/// The server under attack: its address, and what its log and `/proc` say.
struct Hostile {
    child: Child,
    addr: SocketAddr,
    log_lines: Arc<AtomicU64>,
}

impl Hostile {
    fn start(wedge: &Path, routes: &Path, cache: &Path) -> anyhow::Result<Hostile> {
        let mut child = Command::new(wedge)
            .arg("serve")
            .arg(routes)
            .args(["--listen", "127.0.0.1:0", "--header-timeout", "2s"])
            .arg("--cache-dir")
            .arg(cache)
            .arg("--data-dir")
            .arg(cache.with_extension("data"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", wedge.display()))?;
        let addr = listening_address(&mut child)?;
        let log_lines = Arc::new(AtomicU64::new(0));
        let stderr = BufReader::new(child.stderr.take().context("piped stderr")?);
        std::thread::spawn({
            let log_lines = log_lines.clone();
            move || {
                for _ in stderr.split(b'\n').map_while(Result::ok) {
                    log_lines.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Hostile {
            child,
            addr,
            log_lines,
        })
    }

    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /ok` 10 ms apart: its latencies, and how many failed.
fn measure(addr: SocketAddr, samples: usize) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(samples);
    let mut failed = 0;
    for _ in 0..samples {
        std::thread::sleep(Duration::from_millis(10));
        let started = Instant::now();
        match get(addr, "/ok") {
            Ok((200, _)) => latencies.push(started.elapsed()),
            _ => failed += 1,
        }
    }
    (latencies, failed)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Runs `work` on `n` threads until `stop`; how many times it ran.
fn looping(
    n: usize,
    stop: &Arc<AtomicBool>,
    work: impl Fn() + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<usize>> {
    let work = Arc::new(work);
    (0..n)
        .map(|_| {
            let (stop, work) = (stop.clone(), work.clone());
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(Ordering::Relaxed) {
                    work();
                    runs += 1;
                }
                runs
            })
        })
        .collect()
}

fn fairness(server: &Hostile) -> anyhow::Result<()> {
    const SAMPLES: usize = 300;
    let (alone, failed_alone) = measure(server.addr, SAMPLES);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let busy = looping(BUSY, &stop, move || {
        let _ = get(addr, "/spin");
    });
    std::thread::sleep(Duration::from_millis(200));
    let (beside, failed_beside) = measure(server.addr, SAMPLES);
    stop.store(true, Ordering::Relaxed);
    let spins: usize = busy.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    print_rows(
        &format!(
            "fairness: GET /ok ({SAMPLES} requests, 10 ms apart), alone and beside {BUSY} clients \
             looping on a busy guest (cpu_time 200 ms)"
        ),
        &[
            (format!("alone ({failed_alone} failed)"), summary(&alone)),
            (
                format!("beside busy guests ({spins} busy requests, {failed_beside} failed)"),
                summary(&beside),
            ),
            (
                "median ratio beside / alone".into(),
                format!("{:.1}x", ms(median(&beside)) / ms(median(&alone))),
            ),
        ],
    );
    Ok(())
}

/// Holds `SILENT` sockets that send nothing, reopening each the server closes.
fn silent_sockets(addr: SocketAddr, stop: Arc<AtomicBool>, reopened: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        let mut sockets: Vec<Option<TcpStream>> = (0..SILENT).map(|_| None).collect();
        while !stop.load(Ordering::Relaxed) {
            for socket in &mut sockets {
                let closed = socket.as_ref().is_none_or(|stream| {
                    let mut byte = [0u8; 1];
                    match stream.peek(&mut byte) {
                        Ok(_) => true,
                        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
                    }
                });
                if closed
                    && let Ok(stream) = TcpStream::connect(addr)
                    && stream.set_nonblocking(true).is_ok()
                {
                    *socket = Some(stream);
                    reopened.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// A slowloris client: a request head one byte every 500 ms, never done.
fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut stream) = TcpStream::connect(addr) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let _ = stream.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            while !stop.load(Ordering::Relaxed) && stream.write_all(b"a").is_ok() {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    });
}

fn soak(server: &Hostile, routes: &Path, other: &Path) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let reopened = Arc::new(AtomicUsize::new(0));
    silent_sockets(addr, stop.clone(), reopened.clone());
    for _ in 0..SLOWLORIS {
        slowloris(addr, stop.clone());
    }
    let mut neighbours = Vec::new();
    for path in [
        "/bomb",
        "/resources?mode=fields&mb=512",
        "/resources?mode=bodies&mb=512",
        "/resources?mode=stdout&mb=512",
        "/flood?mb=16",
    ] {
        neighbours.extend(looping(1, &stop, move || {
            let _ = get(addr, path);
        }));
    }
    let churn = {
        let (stop, routes) = (stop.clone(), routes.to_owned());
        let versions = [
            std::fs::read(other)?,
            std::fs::read(routes.join("ok.wasm"))?,
        ];
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let temporary = routes.join(".churn.wasm.tmp");
                let written = std::fs::write(&temporary, &versions[n % 2])
                    .and_then(|()| std::fs::rename(&temporary, routes.join("churn.wasm")));
                if written.is_ok() {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };
    let well_behaved: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut latencies, mut failed) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let (l, f) = measure(addr, 10);
                    latencies.extend(l);
                    failed += f;
                }
                (latencies, failed)
            })
        })
        .collect();
    let started = Instant::now();
    let mut most_fds = 0;
    while started.elapsed() < SOAK {
        most_fds = most_fds.max(server.open_fds());
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for client in well_behaved {
        let (l, f) = client
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))?;
        latencies.extend(l);
        failed += f;
    }
    let hostile: usize = neighbours.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let versions = churn.join().unwrap_or(0);
    let peak_rss = server.proc_status("VmHWM:");
    anyhow::ensure!(!latencies.is_empty(), "no well-behaved request succeeded");
    print_rows(
        &format!(
            "soak, {}s: GET /ok from 2 clients beside {SILENT} silent sockets, {SLOWLORIS} \
             slowloris heads, bomb / resource / log-flood guests and a route rewritten every 100 ms",
            SOAK.as_secs()
        ),
        &[
            (
                format!("GET /ok ({} ok, {failed} failed)", latencies.len()),
                summary(&latencies),
            ),
            (
                "hostile requests / silent sockets opened / route versions".into(),
                format!(
                    "{hostile} / {} / {versions}",
                    reopened.load(Ordering::Relaxed)
                ),
            ),
            ("server peak RSS".into(), format!("{} MiB", peak_rss / 1024)),
            ("server most open fds".into(), most_fds.to_string()),
            (
                "server log lines".into(),
                server.log_lines.load(Ordering::Relaxed).to_string(),
            ),
        ],
    );
    Ok(())
}
