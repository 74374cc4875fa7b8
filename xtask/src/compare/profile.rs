//! `cargo xtask bench profile`: where a request's CPU goes. Each route of
//! the comparison that runs a guest (WASI 0.2 fresh, WASI 0.2 reused, WASI
//! 0.3 reused), and the route answered from the response cache, is served by
//! one release `wedge serve` under `wrk -t1 -c32` (server on core 0, wrk on
//! core 1, as in the comparison) while `perf record` samples the server.
//! With `wasmtime serve` (`WASMTIME`), its reuse-128 row is profiled too,
//! the peer of Wedge's reuse-128 route. The samples' self time is grouped
//! by module and symbol name into one table: the kernel, libc,
//! instantiation, host calls, guest code, and so on. Each server's full
//! `perf report` is kept beside the table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Compare, Kind, cpu_seconds, program, run_wrk, wrk_program};

/// Samples a second: enough for a stable share in a few seconds.
const FREQUENCY: u32 = 4000;
/// Seconds sampled per route.
const RECORD_SECONDS: u64 = 4;
/// Seconds `wrk` runs before the sampling starts.
const LEAD_SECONDS: u64 = 1;

/// The routes profiled: the comparison's rows that differ in how the
/// guest runs, the one that runs none, and `wasmtime serve`'s peer of the
/// reuse-128 row (when there is a `wasmtime`).
const KINDS: [(Kind, &str); 5] = [
    (Kind::Wedge, "WASI 0.2, fresh"),
    (Kind::WedgeReuse, "WASI 0.2, reuse 128"),
    (Kind::Wedge03, "WASI 0.3, default reuse"),
    (Kind::Cached, "response cache hit"),
    (Kind::WasmtimeReuse, "`wasmtime serve`, WASI 0.2, reuse 128"),
];

/// Where self time is counted: the first group whose rule a symbol matches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    Kernel,
    Libc,
    Logging,
    Hyper,
    Concurrent,
    Instantiation,
    HostCalls,
    Guest,
    Tokio,
    Wedge,
    Other,
}

impl Group {
    /// The table's rows, in its order.
    const ALL: [Group; 11] = [
        Group::Kernel,
        Group::Libc,
        Group::Instantiation,
        Group::Guest,
        Group::HostCalls,
        Group::Hyper,
        Group::Concurrent,
        Group::Logging,
        Group::Tokio,
        Group::Wedge,
        Group::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Group::Kernel => "kernel: TCP over loopback, syscalls, scheduling",
            Group::Libc => "libc `malloc`/`free`, `memcpy`/`memset`",
            Group::Instantiation => "instantiation, pool, memory reset, fibers",
            Group::Guest => "guest code and trampolines (JIT)",
            Group::HostCalls => "WASI and wasi-http host calls, lifting and lowering",
            Group::Hyper => "hyper and `http`",
            Group::Concurrent => "wasmtime's concurrent-call machinery (tasks, `ProxyHandler`)",
            Group::Logging => "`tracing` and `core::fmt` (the access line, the request span)",
            Group::Tokio => "tokio",
            Group::Wedge => "Wedge's own code",
            Group::Other => "other (a long tail: futures, hashing, `bytes`, the vDSO clock)",
        }
    }

    /// The group of a symbol `symbol` (with perf's `[k]`/`[.]` mark) in the
    /// module `dso`. The rules are tried in this order; performance.md
    /// describes them under its profile table.
    fn of(dso: &str, symbol: &str) -> Group {
        let named = |words: &[&str]| words.iter().any(|word| symbol.contains(word));
        if symbol.starts_with("[k]") {
            Group::Kernel
        } else if dso.contains("libc") {
            Group::Libc
        } else if named(LOGGING) {
            Group::Logging
        } else if named(HYPER) || names_crate(symbol, "http") {
            Group::Hyper
        } else if named(CONCURRENT) {
            Group::Concurrent
        } else if named(INSTANTIATION) {
            Group::Instantiation
        } else if named(HOST_CALLS) {
            Group::HostCalls
        } else if dso.starts_with("[JIT]")
            || dso == "[unknown]"
            || dso.contains("perf-")
            || symbol.starts_with("[.] 0x")
        {
            Group::Guest
        } else if symbol.contains("tokio") {
            Group::Tokio
        } else if symbol.contains("wedge") {
            Group::Wedge
        } else {
            Group::Other
        }
    }
}

const LOGGING: &[&str] = &[
    "tracing",
    "nu_ansi",
    "log_format",
    "log_buffer",
    "sharded_slab",
    "core::fmt",
    "fmt::Write",
    "pad_integral",
    "flt2dec",
    "itoa",
    "humantime",
    "Formatter",
];
const HYPER: &[&str] = &["hyper", "httparse", "http_body", "h2::"];

const CONCURRENT: &[&str] = &[
    "component::concurrent",
    "wasmtime_wasi_http::handler",
    "GuestTask",
    "ProxyHandler",
    "futures_and_streams",
];
const INSTANTIATION: &[&str] = &[
    "instantiat",
    "pooling",
    "allocator",
    "Instance::new",
    "InstancePre",
    "OwnedImports",
    "func_loc",
    "store_invariant",
    "lookup_vmdef",
    "get_func_ref",
    "ModuleRegistry",
    "bforest",
    "fiber",
    "Fiber",
    "vm::instance",
    "memory_pool",
    "MemoryImage",
    "StoreOpaque::allocate",
    "drop_in_place<wasmtime::runtime::store",
    "FuncKey",
    "stack_pool",
    "deallocate",
    "Mmap",
    "mpk",
];
const HOST_CALLS: &[&str] = &[
    "wasmtime_wasi",
    "LowerContext",
    "LiftContext",
    "resource_table",
    "ResourceTable",
    "HandleTable",
    "ResourceTables",
    "typed::",
    "func::host",
    "component::func",
    "lift",
    "lower",
    "Lower",
    "Lift",
    "options_memory",
    "host_fn",
    "wasmtime::runtime::func",
    "Trampoline",
    "trampoline",
    "array_call",
    "VMFuncRef",
    "bindings::",
];

/// Whether `symbol` names an item of the crate `name` (`http::` but not
/// `wasmtime_wasi_http::`).
fn names_crate(symbol: &str, name: &str) -> bool {
    symbol.match_indices(name).any(|(at, _)| {
        let before = symbol[..at].chars().next_back();
        let after = &symbol[at + name.len()..];
        after.starts_with("::") && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// One route's profile: wrk's rate while perf sampled, the server's CPU
/// time per request over that run, and the share of self time of each
/// group, in [`Group::ALL`]'s order.
struct Shares {
    rps: f64,
    cpu_us: f64,
    percent: [f64; Group::ALL.len()],
}

impl Compare {
    /// Profiles each of [`KINDS`] once and prints the grouped table.
    pub fn profile(&self) -> anyhow::Result<()> {
        let perf = program("perf", "linux-perf", "the profile")?;
        let wrk = wrk_program()?;
        let pinned = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
        let dir = self.work.join("profile");
        std::fs::create_dir_all(&dir)?;
        let mut columns = Vec::new();
        for (kind, title) in KINDS {
            if kind.wasmtime() && self.wasmtime.is_none() {
                eprintln!(
                    "bench: no wasmtime: set WASMTIME=/path/to/wasmtime (48.0.x) or pass \
                     --with-wasmtime to profile `wasmtime serve` beside Wedge"
                );
                continue;
            }
            eprintln!("bench: profiling {title}");
            let component = if kind.wasi03() {
                &self.hello03
            } else {
                &self.hello
            };
            let server = self.start(kind, component, pinned)?;
            let path = kind.path();
            if kind.cached() {
                crate::cache::request(server.addr, path)?;
            }
            run_wrk(&wrk, pinned, server.addr, path, 32, 1)?;
            let addr = server.addr;
            let seconds = u32::try_from(LEAD_SECONDS + RECORD_SECONDS + 1)?;
            let pid = server.pid();
            let load = {
                let wrk = wrk.clone();
                std::thread::spawn(move || {
                    let before = cpu_seconds(pid)?;
                    let result = run_wrk(&wrk, pinned, addr, path, 32, seconds)?;
                    let cpu = cpu_seconds(pid)? - before;
                    anyhow::Ok((result.rps, cpu * 1e6 / result.requests.max(1) as f64))
                })
            };
            std::thread::sleep(Duration::from_secs(LEAD_SECONDS));
            let slug = kind
                .name()
                .split(|c: char| !c.is_alphanumeric() && c != '.')
                .filter(|word| !word.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            let data = dir.join(format!("{slug}.data"));
            let recorded = record(&perf, pid, &data);
            let (rps, cpu_us) = load.join().expect("the wrk thread does not panic")?;
            drop(server);
            recorded?;
            let report = report(&perf, &data)?;
            let text = dir.join(format!("{slug}.txt"));
            std::fs::write(&text, &report)?;
            columns.push((title, text, Shares::of(&report, rps, cpu_us)?));
        }
        print_table(&columns);
        Ok(())
    }
}

/// `perf record` of `pid` for [`RECORD_SECONDS`] into `data`.
fn record(perf: &Path, pid: u32, data: &Path) -> anyhow::Result<()> {
    let output = Command::new(perf)
        .args(["record", "-e", "cpu-clock", "-F", &FREQUENCY.to_string()])
        .args(["-p", &pid.to_string(), "-o"])
        .arg(data)
        .args(["--", "sleep", &RECORD_SECONDS.to_string()])
        .output()
        .context("run perf record")?;
    if !output.status.success() {
        bail!(
            "perf record failed: {}\n(an unprivileged user needs \
             /proc/sys/kernel/perf_event_paranoid at 1 or less: \
             sysctl kernel.perf_event_paranoid=1)",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `perf report`'s self time by module and symbol, without call graphs.
fn report(perf: &Path, data: &Path) -> anyhow::Result<String> {
    let output = Command::new(perf)
        .args(["report", "-i"])
        .arg(data)
        .args([
            "--no-children",
            "--sort",
            "dso,symbol",
            "-g",
            "none",
            "--stdio",
        ])
        .output()
        .context("run perf report")?;
    if !output.status.success() {
        bail!(
            "perf report failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Shares {
    /// Groups a `perf report --sort dso,symbol` text's lines.
    fn of(report: &str, rps: f64, cpu_us: f64) -> anyhow::Result<Shares> {
        let mut percent = [0.0; Group::ALL.len()];
        let mut total = 0.0;
        for (share, dso, symbol) in report.lines().filter_map(report_line) {
            let group = Group::of(dso, symbol);
            let row = Group::ALL
                .iter()
                .position(|g| *g == group)
                .expect("every group is a row");
            percent[row] += share;
            total += share;
        }
        if total <= 0.0 {
            bail!("perf report has no samples:\n{report}");
        }
        // Shares of what was listed, so that the column adds up to 100%.
        for share in &mut percent {
            *share *= 100.0 / total;
        }
        Ok(Shares {
            rps,
            cpu_us,
            percent,
        })
    }
}

/// A report line's share, module and symbol (with its `[k]` or `[.]`
/// mark): `  5.15%  libc.so.6  [.] __memmove_avx512_unaligned_erms  -  -`.
/// A module's name may hold spaces (`[JIT] tid 4242`); a symbol's columns
/// end at the first run of two spaces.
fn report_line(line: &str) -> Option<(f64, &str, &str)> {
    let (share, rest) = line.trim_start().split_once('%')?;
    let share: f64 = share.parse().ok()?;
    let mark = ["[k] ", "[.] "]
        .iter()
        .filter_map(|mark| rest.find(mark))
        .min()?;
    let dso = rest[..mark].trim();
    let symbol = &rest[mark..];
    let symbol = symbol
        .split_once("  ")
        .map_or(symbol, |(s, _)| s)
        .trim_end();
    Some((share, dso, symbol))
}

fn print_table(columns: &[(&str, PathBuf, Shares)]) {
    println!(
        "\nwhere the time goes: self time of one server (wedge serve with RUST_LOG=info) \
         under wrk -t1 -c32, perf record -e cpu-clock -F {FREQUENCY} for {RECORD_SECONDS} s \
         per route; in each heading, wrk's req/s and the server's CPU per request over that \
         run, perf's sampling included\n"
    );
    let mut head = "| share |".to_owned();
    let mut rule = "|---|".to_owned();
    for (title, _, shares) in columns {
        head.push_str(&format!(
            " {title} ({} req/s, {:.0} µs) |",
            thousands(shares.rps),
            shares.cpu_us
        ));
        rule.push_str("---|");
    }
    println!("{head}\n{rule}");
    for (row, group) in Group::ALL.iter().enumerate() {
        let mut line = format!("| {} |", group.label());
        for (_, _, shares) in columns {
            line.push_str(&format!(" {:.0}% |", shares.percent[row]));
        }
        println!("{line}");
    }
    println!();
    for (title, text, _) in columns {
        println!("  {title}: perf report in {}", text.display());
    }
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `perf report --sort dso,symbol -g none --stdio` writes them
    /// (trimmed of most of their padding), around its comment lines.
    const REPORT: &str = "\
# Samples: 15K of event 'cpu-clock'
#
     5.00%  libc.so.6          [.] __memmove_avx512_unaligned_erms      -      -
     4.00%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore          -      -
     3.00%  wedge              [.] wasmtime_environ::module_artifacts::CompiledFunctionsTable::func_loc      -      -
     2.00%  [JIT] tid 32530    [.] 0x00007fee06be04b8                   -      -
     2.00%  wedge              [.] wasmtime_wasi_http::handler::ProxyHandler<S>::spawn::{{closure}}      -      -
     2.00%  wedge              [.] <wasmtime_wasi_http::p2::body::HostOutgoingBody as core::ops::drop::Drop>::drop      -      -
     1.00%  wedge              [.] <tracing_subscriber::fmt::Layer<S,N,E,W> as tracing_subscriber::layer::Layer<S>>::on_event      -      -
     1.00%  wedge              [.] hyper::proto::h1::role::encode_headers      -      -
     1.00%  wedge              [.] <http::header::map::HeaderMap<T> as core::clone::Clone>::clone      -      -
     1.00%  wedge              [.] tokio::runtime::scheduler::current_thread::Context::run_task      -      -
     1.00%  wedge              [.] wedge::server::dispatch::run_guest::{{closure}}      -      -
     1.00%  [vdso]             [.] __vdso_clock_gettime                 -      -
     0.00%  wedge              [.] <bytes::bytes::Bytes as core::ops::drop::Drop>::drop      -      -
";

    #[test]
    fn report_lines_give_share_module_and_symbol() {
        let lines: Vec<_> = REPORT.lines().filter_map(report_line).collect();
        assert_eq!(lines.len(), 13, "the two comment lines are not samples");
        assert_eq!(lines[3], (2.0, "[JIT] tid 32530", "[.] 0x00007fee06be04b8"));
        assert_eq!(
            lines[1],
            (4.0, "[kernel.kallsyms]", "[k] _raw_spin_unlock_irqrestore")
        );
        assert_eq!(
            lines[5].2,
            "[.] <wasmtime_wasi_http::p2::body::HostOutgoingBody as core::ops::drop::Drop>::drop"
        );
    }

    #[test]
    fn symbols_count_in_the_first_group_that_names_them() {
        let group = |line: &str| {
            let (_, dso, symbol) = report_line(line).unwrap();
            Group::of(dso, symbol)
        };
        let groups: Vec<Group> = REPORT.lines().skip(2).map(group).collect();
        assert_eq!(
            groups,
            [
                Group::Libc,
                Group::Kernel,
                Group::Instantiation,
                Group::Guest,
                // wasmtime-wasi-http's handler is the scheduler, before
                // the host-call rule that would match its crate's name.
                Group::Concurrent,
                Group::HostCalls,
                // Named `tracing` and `fmt`: logging, before hyper or tokio.
                Group::Logging,
                Group::Hyper,
                // The `http` crate, where `wasmtime_wasi_http::` is not.
                Group::Hyper,
                Group::Tokio,
                Group::Wedge,
                Group::Other,
                Group::Other,
            ]
        );
    }

    #[test]
    fn shares_are_of_the_listed_samples_and_add_up_to_a_hundred() {
        let shares = Shares::of(REPORT, 12_345.6, 40.0).unwrap();
        let share =
            |group: Group| shares.percent[Group::ALL.iter().position(|g| *g == group).unwrap()];
        // 24% listed in all: libc's 5% of it is 20.8%.
        assert!((share(Group::Libc) - 500.0 / 24.0).abs() < 1e-9);
        assert!((share(Group::Hyper) - 200.0 / 24.0).abs() < 1e-9);
        assert!((shares.percent.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert!(Shares::of("# no samples\n", 1.0, 1.0).is_err());
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }
}
