//! Which embedded storage engine should back Wedge's key-value host: redb or
//! SQLite (rusqlite, bundled)? This binary measures both on this machine with
//! the design the host would use.
//!
//! # The design measured
//!
//! - **Durable commits.** An acknowledged write survives `kill -9` and power
//!   loss: redb commits with `Durability::Immediate`; SQLite runs in WAL mode
//!   with `synchronous=FULL`, which fsyncs the WAL at every commit (see
//!   `sqlite_engine` for why FULL and not NORMAL or EXTRA).
//! - **Group commit.** One writer thread receives write ops over a channel,
//!   drains whatever is queued (up to `group_commit::MAX_BATCH`), applies them
//!   all in one write transaction, commits once, then acknowledges each op, so
//!   concurrent requests share one fsync.
//! - **Direct reads.** Reads do not go through the writer: redb opens a read
//!   transaction per get (`db.begin_read()`); SQLite uses one read-only
//!   connection per client thread.
//!
//! # The workloads
//!
//! 1. Durable sets from 1 client that waits for each ack (one commit per set).
//! 2. Durable sets from 32 client threads (group commit): ops/s, average batch
//!    size, p50/p99 ack latency.
//! 3. The handler's mix: 32 clients each doing get(key) then set(key, 100 B)
//!    over 1000 keys; latency is the whole get+set.
//! 4. Point reads of existing keys from 2 threads.
//! 5. Increments (read-modify-write inside the writer's transaction) from 32
//!    clients, checked afterwards: the counters grew by exactly the number of
//!    acknowledged increments.
//!
//! Each workload runs for a fixed time, twice per engine by default, the
//! engines taking turns (A, B, A, B) so that noise on a shared machine falls
//! on both. Then two checks run in child processes: every write a child
//! acknowledged before it was killed with SIGKILL is there after reopening,
//! and what redb answers when its file is opened a second time. A SIGKILL
//! leaves the OS page cache intact, so that check proves recovery, not the
//! fsync; `strace -f -e trace=fsync,fdatasync` on a `--crash-child` shows
//! the one sync per commit that power-loss durability rests on.
//!
//! # Running
//!
//! ```text
//! cargo run --release --manifest-path bench/kv-engines/Cargo.toml \
//!     --target-dir /tmp/kv-engines-target -- [SECONDS [ROUNDS]] [ENGINE...]
//! ```
//!
//! `SECONDS` is each run's length (default 3); `ROUNDS` how many runs of each
//! workload each engine gets (default 2; more average out a noisy machine
//! better). `ENGINE` is any of `redb`, `sqlite`, `redb-quick-repair`,
//! `sqlite-wal-normal` (default: `redb sqlite`); the ratio column is the
//! first engine over the second. The databases live in a fresh folder under
//! the system temp dir (`TMPDIR`), removed at the end; its filesystem is
//! printed, since fsync cost is the disk's.

mod checks;
mod engine;
mod group_commit;
mod redb_engine;
mod report;
mod sqlite_engine;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::engine::{Engine, EngineKind};
use crate::report::Runs;
use crate::workload::Workload;

/// Each run's length when none is given: long enough for a few thousand
/// fsyncs, short enough that the whole benchmark takes about a minute.
const DEFAULT_SECONDS: f64 = 3.0;
/// Runs of each workload per engine when none is given, alternating
/// engines: the fewest that put each engine both before and after the other.
const DEFAULT_ROUNDS: usize = 2;

/// What the command line asks for.
struct Options {
    duration: Duration,
    rounds: usize,
    engines: Vec<EngineKind>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kv-engines: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--crash-child", engine, dir] => {
            checks::crash_child(parse_engine(engine)?, Path::new(dir))
        }
        ["--lock-child", mode, path] => checks::lock_child(mode, Path::new(path)),
        ["-h" | "--help"] => {
            println!(
                "usage: kv-engines [SECONDS [ROUNDS]] [ENGINE...]\nengines: {}",
                EngineKind::ALL.map(EngineKind::name).join(" ")
            );
            Ok(())
        }
        _ => {
            let options = parse_args(&args)?;
            benchmark(options.duration, options.rounds, &options.engines)
        }
    }
}

fn parse_engine(name: &str) -> Result<EngineKind> {
    EngineKind::parse(name).with_context(|| format!("unknown engine {name:?} (see --help)"))
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options {
        duration: Duration::from_secs_f64(DEFAULT_SECONDS),
        rounds: DEFAULT_ROUNDS,
        engines: Vec::new(),
    };
    for (index, arg) in args.iter().enumerate() {
        match (index, arg.parse::<f64>()) {
            (0, Ok(seconds)) => {
                options.duration = Duration::try_from_secs_f64(seconds)
                    .ok()
                    .filter(|duration| !duration.is_zero())
                    .with_context(|| format!("SECONDS must be positive, not {arg}"))?;
            }
            (1, Ok(_)) if options.engines.is_empty() => {
                options.rounds = arg
                    .parse()
                    .ok()
                    .filter(|&rounds| rounds > 0)
                    .with_context(|| format!("ROUNDS must be a whole number > 0, not {arg}"))?;
            }
            _ => options.engines.push(parse_engine(arg)?),
        }
    }
    if options.engines.is_empty() {
        options.engines = EngineKind::DEFAULT.to_vec();
    }
    if options.engines.len() < 2 {
        bail!("name at least two engines to compare");
    }
    Ok(options)
}

fn benchmark(duration: Duration, round_count: usize, engines: &[EngineKind]) -> Result<()> {
    let scratch = ScratchDir::create()?;
    println!(
        "kv-engines: {:.1} s per run, {round_count} rounds",
        duration.as_secs_f64()
    );
    println!(
        "databases in {} on {}",
        scratch.path.display(),
        filesystem_of(&scratch.path)
    );
    println!(
        "SQLite {} (bundled); {} cores",
        rusqlite::version(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let opened: Vec<Box<dyn Engine>> = engines
        .iter()
        .map(|kind| {
            let dir = scratch.path.join(kind.name());
            std::fs::create_dir_all(&dir)?;
            let engine = kind.open(&dir)?;
            workload::populate(engine.as_ref())?;
            Ok(engine)
        })
        .collect::<Result<_>>()?;

    let mut runs = Vec::new();
    for workload in Workload::ALL {
        eprintln!("{}", workload.title());
        let mut rounds = vec![Vec::new(); engines.len()];
        for round in 0..round_count {
            for (index, engine) in opened.iter().enumerate() {
                let figures = workload
                    .run(engine.as_ref(), duration)
                    .with_context(|| format!("{} on {}", workload.title(), engines[index]))?;
                eprintln!(
                    "  round {} {:<18} {:>10.0} ops/s",
                    round + 1,
                    engines[index].name(),
                    figures.ops_per_sec()
                );
                rounds[index].push(figures);
            }
        }
        runs.push(Runs { workload, rounds });
    }
    drop(opened);

    println!();
    report::print_table(engines, &runs);
    for kind in engines {
        let dir = scratch.path.join(kind.name());
        println!("{kind}: database files {}", describe_files(&dir)?);
    }

    println!("\nkill -9 check (child writes with 8 clients, killed after 1.5 s):");
    for kind in engines {
        let report = checks::crash_check(*kind, &scratch.path.join(format!("crash-{kind}")))?;
        println!(
            "  {kind:<18} acked {:>6}, missing after reopen {}, reopen took {:.1} ms",
            report.acked,
            report.missing,
            report.reopen.as_secs_f64() * 1e3
        );
    }
    println!("\nredb lock check (the same file opened twice):");
    checks::lock_check(&scratch.path)?;
    Ok(())
}

/// `dir`'s files and their sizes.
fn describe_files(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let size = entry.metadata()?.len();
        files.push(format!(
            "{} {:.1} MiB",
            entry.file_name().to_string_lossy(),
            size as f64 / (1024.0 * 1024.0)
        ));
    }
    files.sort();
    Ok(files.join(", "))
}

/// The filesystem holding `path`, from `/proc/mounts`: the entry with the
/// longest mount point that contains it.
fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "an unknown filesystem (no /proc/mounts)".to_owned();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                [device, mount_point, fs_type, options, ..] => {
                    Some((device, mount_point, fs_type, options))
                }
                _ => None,
            }
        })
        .filter(|(_, mount_point, _, _)| path.starts_with(mount_point))
        .max_by_key(|(_, mount_point, _, _)| mount_point.len())
        .map_or_else(
            || "an unknown filesystem".to_owned(),
            |(device, mount_point, fs_type, options)| {
                format!("{fs_type} ({device} mounted at {mount_point}, {options})")
            },
        )
}

/// A fresh folder for the databases, removed when dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create() -> Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!("kv-engines-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            eprintln!(
                "kv-engines: could not remove {}: {err}",
                self.path.display()
            );
        }
    }
}
