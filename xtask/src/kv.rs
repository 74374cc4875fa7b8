//! `cargo xtask bench kv`: a route that does one `get` and one `set` per
//! request, on the embedded store (durable writes, group commit) and on a
//! real `redis-server` on loopback, beside the plain hello route, all in
//! one server, measured in turns under `wrk -t1 -c32`: req/s, p50, p99, and
//! each route's req/s as a ratio of hello's in the same round.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::bench::{listening_address, print_rows, wait_ok};
use crate::compare::{WrkResult, run_wrk, wrk_program};

/// Seconds per measurement.
const SECONDS: u32 = 5;
/// Rounds; each measures every route once.
const ROUNDS: usize = 3;

/// What the benchmark runs with.
pub struct KvBench {
    pub wedge: PathBuf,
    pub guests: PathBuf,
    pub work: PathBuf,
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KvBench {
    pub fn run(&self) -> anyhow::Result<()> {
        let wrk = wrk_program()?;
        let dir = &self.work;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        let routes = dir.join("routes");
        std::fs::create_dir_all(routes.join("kv"))?;
        std::fs::copy(self.guests.join("hello_v1.wasm"), routes.join("hello.wasm"))?;
        std::fs::copy(
            self.guests.join("kv_probe.wasm"),
            routes.join("kv/[...op].wasm"),
        )?;
        std::fs::write(
            routes.join("kv/[...op].toml"),
            "key_value_stores = [\"default\", \"shared\"]\n",
        )?;
        let (redis, port) = redis_server(dir)?;
        let config = dir.join("wedge.toml");
        std::fs::write(
            &config,
            format!(
                "[key_value.shared]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\n"
            ),
        )?;
        let mut child = Command::new(&self.wedge)
            .arg("serve")
            .arg(&routes)
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(dir.join("cache"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", self.wedge.display()))?;
        let addr = listening_address(&mut child)?;
        let server = Killed(child);
        let paths = [
            ("hello (no store)", "/hello"),
            ("get + set, embedded", "/kv/default/bench?touch"),
            ("get + set, Redis on loopback", "/kv/shared/bench?touch"),
        ];
        for (_, path) in paths {
            wait_ok(addr, path)?;
        }
        let mut results: Vec<Vec<WrkResult>> = paths.iter().map(|_| Vec::new()).collect();
        for round in 1..=ROUNDS {
            for ((name, path), into) in paths.iter().zip(&mut results) {
                eprintln!("bench kv: round {round}/{ROUNDS}: {name}");
                run_wrk(&wrk, false, addr, path, 32, 1)?;
                into.push(run_wrk(&wrk, false, addr, path, 32, SECONDS)?);
            }
        }
        drop(server);
        drop(redis);
        let hello = &results[0];
        let rows: Vec<(String, String)> = paths
            .iter()
            .zip(&results)
            .map(|((name, _), runs)| {
                let ratios: Vec<f64> = runs
                    .iter()
                    .zip(hello)
                    .map(|(run, hello)| run.rps / hello.rps)
                    .collect();
                let rps: Vec<f64> = runs.iter().map(|run| run.rps).collect();
                let p50: Vec<f64> = runs.iter().map(|run| run.p50_ms).collect();
                let p99: Vec<f64> = runs.iter().map(|run| run.p99_ms).collect();
                (
                    (*name).to_owned(),
                    format!(
                        "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; {:.2}x hello's req/s (rounds: {})",
                        median(&rps),
                        median(&p50),
                        median(&p99),
                        median(&ratios),
                        ratios
                            .iter()
                            .map(|ratio| format!("{ratio:.2}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
            .collect();
        print_rows(
            &format!(
                "one get and one set per request, wrk -t1 -c32 -d{SECONDS}s, median of \
                 {ROUNDS} rounds; ratios against hello in the same round"
            ),
            &rows,
        );
        Ok(())
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// `redis-server` on a free loopback port, keeping nothing on disk.
fn redis_server(dir: &Path) -> anyhow::Result<(Killed, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context(
            "start redis-server: install the Debian package redis-server \
             (apt-get install redis-server)",
        )?;
    let redis = Killed(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok((redis, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("redis-server did not listen on {addr}")
}
