//! Checks that need a second process: acknowledged writes survive `kill -9`,
//! and what redb says when a database file is opened twice.
//!
//! The binary re-runs itself as the second process (`--crash-child`,
//! `--lock-child`), so the checks need nothing but this crate.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use redb::{Database, ReadOnlyDatabase};

use crate::engine::{EngineKind, WriteOp};
use crate::group_commit::GroupCommit;

/// How long the crash child writes before it is killed.
const CRASH_AFTER: Duration = Duration::from_millis(1500);
/// The crash child stops by itself after this long, should the parent die
/// before killing it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Concurrent writers in the crash child, so that batches are in flight.
const CRASH_CLIENTS: usize = 8;

/// What the `kill -9` check found.
#[derive(Debug)]
pub struct CrashReport {
    /// Writes the child acknowledged (printed) before it was killed.
    pub acked: u64,
    /// Of those, how many were missing after reopening.
    pub missing: u64,
    /// How long reopening the database took, recovery included.
    pub reopen: Duration,
}

fn crash_key(client: usize, seq: u64) -> String {
    format!("crash-{client:02}-{seq:08}")
}

/// Runs the crash child on `dir`, kills it with SIGKILL mid-stream, reopens
/// the database and looks for every write the child acknowledged.
pub fn crash_check(kind: EngineKind, dir: &Path) -> Result<CrashReport> {
    std::fs::create_dir_all(dir)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--crash-child")
        .arg(kind.name())
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the crash child")?;
    let stdout = child.stdout.take().expect("bug: stdout was piped");
    // Collects the highest acknowledged sequence number of each client.
    let collector = thread::spawn(move || {
        let mut last: BTreeMap<usize, u64> = BTreeMap::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut fields = line.split(' ').map(str::parse::<u64>);
            if let (Some(Ok(client)), Some(Ok(seq))) = (fields.next(), fields.next()) {
                last.insert(usize::try_from(client).unwrap_or(usize::MAX), seq);
            }
        }
        last
    });
    thread::sleep(CRASH_AFTER);
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no close.
    child.kill().context("killing the crash child")?;
    child.wait()?;
    let last = collector.join().expect("the ack collector panicked");
    ensure!(!last.is_empty(), "the crash child acknowledged no write");

    let started = Instant::now();
    let engine = kind.open(dir)?;
    let reopen = started.elapsed();
    let mut reader = engine.reader()?;
    let mut report = CrashReport {
        acked: 0,
        missing: 0,
        reopen,
    };
    for (&client, &last_seq) in &last {
        for seq in 0..=last_seq {
            report.acked += 1;
            if reader.get(&crash_key(client, seq))?.is_none() {
                report.missing += 1;
            }
        }
    }
    Ok(report)
}

/// The crash child: writes through group commit and prints `client seq` for
/// every acknowledged write, until it is killed.
pub fn crash_child(kind: EngineKind, dir: &Path) -> Result<()> {
    let engine = kind.open(dir)?;
    let group = GroupCommit::start(engine.writer()?);
    let deadline = Instant::now() + CHILD_LIFETIME;
    thread::scope(|scope| {
        let handles: Vec<_> = (0..CRASH_CLIENTS)
            .map(|client| {
                let writer = group.client();
                scope.spawn(move || -> Result<()> {
                    let mut seq = 0;
                    while Instant::now() < deadline {
                        let key = crash_key(client, seq);
                        writer.submit(WriteOp::Set {
                            key,
                            value: vec![b'x'; 100],
                        })?;
                        // Printed only once acknowledged, in one pipe write
                        // (atomic below PIPE_BUF): a line is whole or absent.
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{client} {seq}")?;
                        out.flush()?;
                        seq += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|handle| handle.join().expect("a crash client panicked"))
    })?;
    group.finish()?;
    Ok(())
}

/// Opens the same redb file a second time, in this process and in another,
/// and prints what redb answers.
pub fn lock_check(dir: &Path) -> Result<()> {
    let path = dir.join("lock.redb");
    let first = Database::create(&path)?;
    println!("  first Database::create({}) : Ok", path.display());
    match Database::create(&path) {
        Ok(_) => println!("  same process, Database::create  : Ok (NOT locked)"),
        Err(err) => println!("  same process, Database::create  : Err({err:?}) \"{err}\""),
    }
    for mode in ["create", "read-only"] {
        let output = Command::new(std::env::current_exe()?)
            .arg("--lock-child")
            .arg(mode)
            .arg(&path)
            .output()
            .context("running the lock child")?;
        let answer = String::from_utf8_lossy(&output.stdout);
        println!("  other process, {mode:<16}: {}", answer.trim());
    }
    drop(first);
    let output = Command::new(std::env::current_exe()?)
        .arg("--lock-child")
        .arg("create")
        .arg(&path)
        .output()?;
    let answer = String::from_utf8_lossy(&output.stdout);
    println!("  other process after close, create: {}", answer.trim());
    Ok(())
}

/// The lock child: opens `path` as `mode` says and prints the outcome.
pub fn lock_child(mode: &str, path: &Path) -> Result<()> {
    let outcome = match mode {
        "create" => Database::create(path).map(drop),
        "read-only" => ReadOnlyDatabase::open(path).map(drop),
        _ => anyhow::bail!("unknown lock-child mode {mode}"),
    };
    match outcome {
        Ok(()) => println!("Ok"),
        Err(err) => println!("Err({err:?}) \"{err}\""),
    }
    Ok(())
}
