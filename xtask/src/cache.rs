//! `cargo xtask bench cache`: the response cache under a burst. A route
//! answers with `stale-while-revalidate`; once its cached answer is stale,
//! 1,000 requests arrive at once (50 clients × 20 requests), and the
//! server's `/metrics` tell how many times the guest ran for them: once,
//! the one background refresh, however many requests wait for it.
//!
//! Also the helpers the comparison's cached row uses: a `wedge serve` with
//! an admin listener, and reading counters from its `/metrics`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Concurrent clients in the burst, and requests each sends.
const CLIENTS: usize = 50;
const PER_CLIENT: usize = 20;
/// The route's path and the query that makes its answer cacheable for 1 s,
/// then servable stale for 600 s while one refresh (200 ms) runs:
/// `cc=public, s-maxage=1, stale-while-revalidate=600&ms=200`.
const ROUTE: &str = "/cached";
const STALE_QUERY: &str = "cc=public%2C%20s-maxage%3D1%2C%20stale-while-revalidate%3D600&ms=200";

/// What the burst runs.
pub struct CacheBench {
    pub wedge: PathBuf,
    pub guests: PathBuf,
    pub work: PathBuf,
}

impl CacheBench {
    /// The stale-while-revalidate burst; an error if the guest ran other
    /// than once for it.
    pub fn burst(&self) -> anyhow::Result<()> {
        let dir = self.work.join("cache");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let routes = dir.join("routes");
        std::fs::create_dir_all(&routes)?;
        std::fs::copy(
            self.guests.join("cache_probe.wasm"),
            routes.join("cached.wasm"),
        )
        .context("copy cache_probe.wasm")?;
        let mut command = Command::new(&self.wedge);
        command
            .arg("serve")
            .arg(&routes)
            .args(["--listen", "127.0.0.1:0", "--no-watch", "--cache-dir"])
            .arg(dir.join("compile-cache"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RUST_LOG", "warn");
        let server = AdminServer::start(command)?;
        let path = format!("{ROUTE}?{STALE_QUERY}");

        let first = request(server.addr, &path)?;
        ensure!(first.status == 200, "GET {path} answered {}", first.status);
        // s-maxage=1: stale after a second, and for 600 s more servable.
        std::thread::sleep(Duration::from_millis(1_500));
        let before = server.metrics()?;

        let barrier = Arc::new(Barrier::new(CLIENTS));
        let started = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (barrier, addr, path) = (barrier.clone(), server.addr, path.clone());
                std::thread::spawn(move || -> anyhow::Result<Vec<Answer>> {
                    barrier.wait();
                    (0..PER_CLIENT).map(|_| request(addr, &path)).collect()
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(CLIENTS * PER_CLIENT);
        for client in clients {
            answers.extend(
                client
                    .join()
                    .map_err(|_| anyhow::anyhow!("a client panicked"))??,
            );
        }
        let took = started.elapsed();
        // The refresh runs in the background: give it time to finish and
        // be counted (the guest sleeps 200 ms).
        std::thread::sleep(Duration::from_millis(1_000));
        let after = server.metrics()?;
        // The refresh stored its answer: the next request is a hit on it.
        let next = request(server.addr, &path)?;

        let route = [("route", ROUTE)];
        let instantiations = instantiations(&after, ROUTE) - instantiations(&before, ROUTE);
        let revalidations = metric(&after, "wedge_cache_revalidations_total", &route)
            - metric(&before, "wedge_cache_revalidations_total", &route);
        let answered = metric(
            &after,
            "wedge_cache_revalidations_total",
            &[("route", ROUTE), ("outcome", "answered")],
        ) - metric(
            &before,
            "wedge_cache_revalidations_total",
            &[("route", ROUTE), ("outcome", "answered")],
        );
        let mut statuses = BTreeMap::new();
        let mut results = BTreeMap::new();
        let mut runs = BTreeMap::new();
        for answer in &answers {
            *statuses.entry(answer.status).or_insert(0) += 1;
            *results.entry(answer.cache.clone()).or_insert(0) += 1;
            *runs.entry(answer.run.clone()).or_insert(0) += 1;
        }
        let counted = |result: &str| {
            metric(
                &after,
                "wedge_cache_requests_total",
                &[("route", ROUTE), ("result", result)],
            ) - metric(
                &before,
                "wedge_cache_requests_total",
                &[("route", ROUTE), ("result", result)],
            )
        };
        let all_ok = statuses.get(&200) == Some(&answers.len());
        let stale_or_hit = results.get("STALE").unwrap_or(&0) + results.get("HIT").unwrap_or(&0);
        // A guest runs for a miss, a bypass (in the foreground) and for a
        // refresh (in the background). The instantiation histogram counts
        // the foreground ones, and may count the refresh: 0 or 1.
        let guest_runs = counted("miss") + counted("bypass") + revalidations;
        let refreshed = next.cache == "HIT" && next.run != first.run;
        let passed = all_ok
            && guest_runs == 1.0
            && revalidations == 1.0
            && instantiations <= 1.0
            && stale_or_hit == answers.len()
            && refreshed;
        let list = |map: &BTreeMap<String, usize>| {
            map.iter()
                .map(|(key, n)| format!("{key} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        crate::bench::print_rows(
            &format!(
                "stale-while-revalidate burst: GET {path} once, then stale (1.5 s later) \
                 {} requests from {CLIENTS} clients at once (a new connection each); \
                 RUST_LOG=warn",
                CLIENTS * PER_CLIENT
            ),
            &[
                (
                    "answers".into(),
                    format!(
                        "{} in {:.0} ms, status {}",
                        answers.len(),
                        crate::bench::ms(took),
                        statuses
                            .iter()
                            .map(|(status, n)| format!("{status} x{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                ("x-wedge-cache".into(), list(&results.into_iter().collect())),
                (
                    "wedge_cache_requests_total delta".into(),
                    format!(
                        "stale {}, hit {}, miss {}, bypass {}",
                        counted("stale"),
                        counted("hit"),
                        counted("miss"),
                        counted("bypass")
                    ),
                ),
                (
                    "wedge_cache_revalidations_total delta".into(),
                    format!("{revalidations} (answered {answered}; expected 1)"),
                ),
                (
                    "guest runs (misses + bypasses + refreshes)".into(),
                    format!("{guest_runs} (expected 1)"),
                ),
                (
                    "wedge_instantiation_duration_seconds_count delta".into(),
                    format!(
                        "{instantiations} ({})",
                        if instantiations == 0.0 {
                            "no request instantiated; the background refresh is not counted here"
                        } else {
                            "expected at most 1: the refresh"
                        }
                    ),
                ),
                (
                    "distinct bodies in the burst".into(),
                    format!(
                        "{} (the first run's; the refresh's too if it ended mid-burst)",
                        runs.len()
                    ),
                ),
                (
                    "the next GET".into(),
                    format!(
                        "{} with {} body (the refresh's: expected HIT with a new one)",
                        next.cache,
                        if next.run == first.run {
                            "the first run's"
                        } else {
                            "a new"
                        }
                    ),
                ),
                ("result".into(), if passed { "PASS" } else { "FAIL" }.into()),
            ],
        );
        ensure!(
            passed,
            "the burst ran the guest {guest_runs} times ({revalidations} refreshes, \
             {instantiations} instantiations counted), expected once"
        );
        Ok(())
    }
}

/// `wedge serve` with `--admin 127.0.0.1:0` added: both addresses read from
/// its stdout; killed when dropped.
struct AdminServer {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl AdminServer {
    /// Starts `command` (a `wedge serve` without `--admin`) and waits for
    /// both addresses.
    fn start(mut command: Command) -> anyhow::Result<AdminServer> {
        command.stderr(Stdio::null());
        let (child, addr, admin) = spawn_with_admin(command)?;
        Ok(AdminServer { child, addr, admin })
    }

    /// The admin listener's `/metrics`.
    fn metrics(&self) -> anyhow::Result<String> {
        metrics_at(self.admin)
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command`, a `wedge serve` without `--admin`, with `--admin
/// 127.0.0.1:0` added: the child, its address and its admin address, read
/// from its stdout (the rest of which is read and dropped).
pub(crate) fn spawn_with_admin(
    mut command: Command,
) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    // Its log goes where the caller sent stderr (nowhere if it did not:
    // `Command` inherits by default, so callers that want it say so).
    let mut child = command
        .args(["--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {command:?}"))?;
    let mut stdout = BufReader::new(child.stdout.take().context("piped stdout")?);
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        stdout.read_line(line)?;
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let (Some(addr), Some(admin)) = (
        lines[0].trim().strip_prefix("listening on http://"),
        lines[1].trim().strip_prefix("admin on http://"),
    ) else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the server printed {lines:?} instead of its addresses");
    };
    Ok((child, addr.parse()?, admin.parse()?))
}

/// `/metrics` from the admin listener at `admin`.
pub(crate) fn metrics_at(admin: SocketAddr) -> anyhow::Result<String> {
    let answer = request(admin, "/metrics")?;
    ensure!(answer.status == 200, "/metrics answered {}", answer.status);
    Ok(answer.body)
}

/// One answer: its status, `x-wedge-cache`, the fixture's `x-run`, its body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) cache: String,
    pub(crate) run: String,
    body: String,
}

/// `GET path` over a new connection (`Connection: close`), with the
/// `Host` that `wrk` and curl send (the host is part of the cache key).
pub(crate) fn request(addr: SocketAddr, path: &str) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map_or("-".to_owned(), |(_, value)| value.trim().to_owned())
    };
    Ok(Answer {
        status,
        cache: header("x-wedge-cache"),
        run: header("x-run"),
        body: body.to_owned(),
    })
}

/// `wedge_instantiation_duration_seconds_count` of `route`: how many
/// instances the route has had.
pub(crate) fn instantiations(metrics: &str, route: &str) -> f64 {
    metric(
        metrics,
        "wedge_instantiation_duration_seconds_count",
        &[("route", route)],
    )
}

/// The sum of the samples of `name` whose labels include `labels`, in
/// Prometheus' text format (0 if there is none).
pub(crate) fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(key, value)| {
                    series_labels
                        .split(',')
                        .any(|label| label == format!("{key}=\"{value}\""))
                });
            matches.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read() {
        let text = "# HELP wedge_cache_requests Requests.\n\
                    # TYPE wedge_cache_requests counter\n\
                    wedge_cache_requests_total{route=\"/cached\",result=\"hit\"} 41\n\
                    wedge_cache_requests_total{route=\"/cached\",result=\"stale\"} 2\n\
                    wedge_cache_requests_total{route=\"/other\",result=\"hit\"} 7\n\
                    wedge_instantiation_duration_seconds_count{route=\"/cached\"} 3\n\
                    wedge_instantiation_duration_seconds_sum{route=\"/cached\"} 0.01\n";
        let hits = [("route", "/cached"), ("result", "hit")];
        assert_eq!(metric(text, "wedge_cache_requests_total", &hits), 41.0);
        assert_eq!(
            metric(text, "wedge_cache_requests_total", &[("route", "/cached")]),
            43.0
        );
        assert_eq!(instantiations(text, "/cached"), 3.0);
        assert_eq!(instantiations(text, "/missing"), 0.0);
    }
}
