//! The five workloads, each run for a fixed time against one engine.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::engine::{Applied, Engine, WriteOp, decode_counter};
use crate::group_commit::{CommitCounts, GroupCommit, WriteClient};

/// Concurrent clients in the group-commit workloads: a server's worth of
/// requests in flight.
pub const CLIENTS: usize = 32;
/// Threads in the point-read workload: one per core of this machine.
pub const READ_THREADS: usize = 2;
/// Distinct keys the set, mixed and read workloads touch.
pub const KEYS: usize = 1000;
/// Distinct counters the increment workload touches: fewer than the keys,
/// so that a batch often increments one counter twice.
pub const COUNTERS: usize = 100;
/// Bytes in each stored value: a small JSON document.
pub const VALUE_LEN: usize = 100;

/// What one run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One client: set, wait for the ack, repeat. One fsync per write.
    SerialSet,
    /// [`CLIENTS`] clients doing set then wait for the ack: group commit.
    GroupSet,
    /// [`CLIENTS`] clients doing a handler's get then set of one key.
    Mixed,
    /// [`READ_THREADS`] threads doing gets of existing keys.
    PointRead,
    /// [`CLIENTS`] clients incrementing counters inside the writer's
    /// transaction.
    Increment,
}

impl Workload {
    /// Every workload, in the order they are reported.
    pub const ALL: [Workload; 5] = [
        Workload::SerialSet,
        Workload::GroupSet,
        Workload::Mixed,
        Workload::PointRead,
        Workload::Increment,
    ];

    /// A line saying what the workload is.
    pub fn title(self) -> &'static str {
        match self {
            Workload::SerialSet => "1. durable sets, 1 client (one commit per write)",
            Workload::GroupSet => "2. durable sets, 32 clients (group commit)",
            Workload::Mixed => {
                "3. handler mix, 32 clients: get(key) then set(key, 100 B), 1000 keys"
            }
            Workload::PointRead => "4. point reads, 2 threads",
            Workload::Increment => {
                "5. increments (read-modify-write in the writer txn), 32 clients"
            }
        }
    }

    /// Runs this workload against `engine` for about `duration`.
    pub fn run(self, engine: &dyn Engine, duration: Duration) -> Result<Figures> {
        match self {
            Workload::SerialSet => run_writes(engine, 1, duration, self),
            Workload::GroupSet | Workload::Mixed => run_writes(engine, CLIENTS, duration, self),
            Workload::PointRead => run_reads(engine, duration),
            Workload::Increment => run_increments(engine, duration),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Operations completed (acknowledged writes, mixed requests or reads).
    pub ops: u64,
    /// Wall time from the first op to the last client's end.
    pub elapsed: Duration,
    /// The writer thread's counts, for workloads that write.
    pub commits: Option<CommitCounts>,
    /// Every op's latency, sorted; empty for the read workload.
    pub latencies: Vec<Duration>,
}

impl Figures {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Ops per write transaction.
    pub fn avg_batch(&self) -> Option<f64> {
        self.commits
            .filter(|counts| counts.commits > 0)
            .map(|counts| counts.ops as f64 / counts.commits as f64)
    }

    /// Average time the writer spent applying and committing one batch.
    pub fn avg_commit(&self) -> Option<Duration> {
        self.commits
            .filter(|counts| counts.commits > 0)
            .map(|counts| counts.busy / u32::try_from(counts.commits).unwrap_or(u32::MAX))
    }

    /// The latency below which `percent` of the ops finished.
    pub fn percentile(&self, percent: usize) -> Option<Duration> {
        let last = self.latencies.len().checked_sub(1)?;
        Some(self.latencies[last * percent / 100])
    }
}

/// Stores [`KEYS`] keys, so that reads find them, in one transaction.
pub fn populate(engine: &dyn Engine) -> Result<()> {
    let ops: Vec<WriteOp> = (0..KEYS)
        .map(|index| WriteOp::Set {
            key: key_name(index),
            value: value_bytes(0, 0),
        })
        .collect();
    engine.writer()?.apply(&ops, &mut Vec::new())
}

fn key_name(index: usize) -> String {
    format!("key-{index:04}")
}

fn counter_name(index: usize) -> String {
    format!("counter-{index:03}")
}

/// A value of [`VALUE_LEN`] bytes that says who wrote it and when.
fn value_bytes(client: usize, seq: u64) -> Vec<u8> {
    let mut value = vec![b'.'; VALUE_LEN];
    value[..8].copy_from_slice(&seq.to_le_bytes());
    value[8] = client.to_le_bytes()[0];
    value
}

/// One client's tally.
#[derive(Default)]
struct Tally {
    ops: u64,
    latencies: Vec<Duration>,
}

fn run_writes(
    engine: &dyn Engine,
    clients: usize,
    duration: Duration,
    workload: Workload,
) -> Result<Figures> {
    let group = GroupCommit::start(engine.writer()?);
    let started = Instant::now();
    let deadline = started + duration;
    let tallies = thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|index| {
                let client = group.client();
                scope.spawn(move || write_client(engine, &client, index, deadline, workload))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a client thread panicked"))
            .collect::<Result<Vec<Tally>>>()
    })?;
    let elapsed = started.elapsed();
    let counts = group.finish()?;
    Ok(merge(tallies, elapsed, counts))
}

fn merge(tallies: Vec<Tally>, elapsed: Duration, counts: CommitCounts) -> Figures {
    let mut figures = Figures {
        elapsed,
        commits: Some(counts),
        ..Figures::default()
    };
    for tally in tallies {
        figures.ops += tally.ops;
        figures.latencies.extend(tally.latencies);
    }
    figures.latencies.sort_unstable();
    figures
}

/// One client of the set, mixed or increment workloads.
fn write_client(
    engine: &dyn Engine,
    client: &WriteClient,
    index: usize,
    deadline: Instant,
    workload: Workload,
) -> Result<Tally> {
    let mut reader = match workload {
        Workload::Mixed => Some(engine.reader()?),
        _ => None,
    };
    let mut rng = Rng::new(index);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let op = match workload {
            Workload::Increment => WriteOp::Increment {
                key: counter_name(rng.below(COUNTERS)),
            },
            _ => {
                let key = key_name(rng.below(KEYS));
                if let Some(reader) = reader.as_mut() {
                    let old = reader.get(&key)?;
                    ensure!(old.is_some(), "populated key {key} is missing");
                }
                WriteOp::Set {
                    key,
                    value: value_bytes(index, tally.ops),
                }
            }
        };
        let applied = client.submit(op)?;
        tally.latencies.push(started.elapsed());
        tally.ops += 1;
        if let Applied::Counter(value) = applied {
            ensure!(value >= 1, "an increment left its counter at {value}");
        }
    }
    Ok(tally)
}

/// Increments, then checks that the counters grew by exactly the number of
/// acknowledged increments: no lost update, no double apply.
fn run_increments(engine: &dyn Engine, duration: Duration) -> Result<Figures> {
    let before = sum_counters(engine)?;
    let figures = run_writes(engine, CLIENTS, duration, Workload::Increment)?;
    let after = sum_counters(engine)?;
    ensure!(
        after == before + figures.ops,
        "counters went from {before} to {after} but {} increments were acknowledged",
        figures.ops
    );
    Ok(figures)
}

fn sum_counters(engine: &dyn Engine) -> Result<u64> {
    let mut reader = engine.reader()?;
    let mut sum = 0;
    for index in 0..COUNTERS {
        if let Some(bytes) = reader.get(&counter_name(index))? {
            sum += decode_counter(&bytes);
        }
    }
    Ok(sum)
}

fn run_reads(engine: &dyn Engine, duration: Duration) -> Result<Figures> {
    let started = Instant::now();
    let deadline = started + duration;
    let counts = thread::scope(|scope| {
        let handles: Vec<_> = (0..READ_THREADS)
            .map(|index| scope.spawn(move || read_client(engine, index, deadline)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a reader thread panicked"))
            .collect::<Result<Vec<u64>>>()
    })?;
    Ok(Figures {
        ops: counts.iter().sum(),
        elapsed: started.elapsed(),
        ..Figures::default()
    })
}

fn read_client(engine: &dyn Engine, index: usize, deadline: Instant) -> Result<u64> {
    /// Reads between looks at the clock, which would otherwise cost a
    /// noticeable share of a read that takes a microsecond or two.
    const READS_PER_CLOCK: u64 = 64;
    let mut reader = engine.reader()?;
    let mut rng = Rng::new(index);
    let mut ops = 0;
    while Instant::now() < deadline {
        for _ in 0..READS_PER_CLOCK {
            let key = key_name(rng.below(KEYS));
            let value = reader.get(&key)?;
            ensure!(
                value.is_some_and(|value| value.len() == VALUE_LEN),
                "populated key {key} is missing or has the wrong length"
            );
        }
        ops += READS_PER_CLOCK;
    }
    Ok(ops)
}

/// xorshift64*: enough to spread keys, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: usize) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 32) as usize % bound
    }
}
