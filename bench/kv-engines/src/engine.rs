//! What the benchmark asks of a storage engine, and the engines it knows.
//!
//! An engine hands out two kinds of handle, as the host would use them: any
//! number of [`Reader`]s (one per client thread, each `get` its own read
//! transaction) and one [`BatchWriter`] owned by the group-commit thread,
//! which applies a whole batch of [`WriteOp`]s in one durable transaction.

use std::fmt;
use std::path::Path;

use anyhow::Result;

use crate::{redb_engine, sqlite_engine};

/// One write a client asks the writer thread to apply.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Store `value` under `key`, replacing any old value.
    Set { key: String, value: Vec<u8> },
    /// Add one to the little-endian `u64` under `key` (absent counts as 0),
    /// reading and writing inside the writer's transaction.
    Increment { key: String },
}

/// What a [`WriteOp`] did, reported to its client once the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A `Set` was stored.
    Stored,
    /// An `Increment` left the counter at this value.
    Counter(u64),
}

/// A storage engine opened on one file, shared by all client threads.
pub trait Engine: Send + Sync {
    /// A read handle for one client thread.
    fn reader(&self) -> Result<Box<dyn Reader>>;
    /// The write handle for the group-commit thread; only one at a time.
    fn writer(&self) -> Result<Box<dyn BatchWriter>>;
}

/// Point reads, each in a read transaction of its own.
pub trait Reader {
    /// The value stored under `key`, if any.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>>;
}

/// Applies batches of writes, one durable transaction per batch.
pub trait BatchWriter: Send {
    /// Applies every op of `ops` in ONE write transaction and commits it
    /// durably; pushes one [`Applied`] per op onto `applied`, in order.
    fn apply(&mut self, ops: &[WriteOp], applied: &mut Vec<Applied>) -> Result<()>;
}

/// The engine configurations the benchmark can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// redb, every commit `Durability::Immediate` (its default), 1-phase commit.
    Redb,
    /// redb with quick-repair on: each commit also saves the allocator state
    /// and uses 2-phase commit, so reopening after a crash skips the full
    /// repair walk.
    RedbQuickRepair,
    /// SQLite in WAL mode with `synchronous=FULL`: each commit fsyncs the WAL.
    Sqlite,
    /// SQLite in WAL mode with `synchronous=NORMAL`: a commit survives a
    /// process crash but NOT a power loss or kernel crash. For comparison only.
    SqliteWalNormal,
}

impl EngineKind {
    /// The engines run when none is named: the two the brief compares.
    pub const DEFAULT: [EngineKind; 2] = [EngineKind::Redb, EngineKind::Sqlite];

    /// Every known configuration, for parsing and `--help`.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Redb,
        EngineKind::RedbQuickRepair,
        EngineKind::Sqlite,
        EngineKind::SqliteWalNormal,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::RedbQuickRepair => "redb-quick-repair",
            EngineKind::Sqlite => "sqlite",
            EngineKind::SqliteWalNormal => "sqlite-wal-normal",
        }
    }

    /// The configuration named `name`, if there is one.
    pub fn parse(name: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Opens (creating if needed) this engine's database in `dir`.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Engine>> {
        Ok(match self {
            EngineKind::Redb => Box::new(redb_engine::RedbEngine::open(dir, false)?),
            EngineKind::RedbQuickRepair => Box::new(redb_engine::RedbEngine::open(dir, true)?),
            EngineKind::Sqlite => Box::new(sqlite_engine::SqliteEngine::open(dir, true)?),
            EngineKind::SqliteWalNormal => Box::new(sqlite_engine::SqliteEngine::open(dir, false)?),
        })
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes a counter value: 8 little-endian bytes. Anything else is a bug in
/// the benchmark, since only `Increment` writes counter keys.
pub fn decode_counter(bytes: &[u8]) -> u64 {
    let bytes: [u8; 8] = bytes
        .try_into()
        .unwrap_or_else(|_| panic!("bug: counter value of {} bytes, not 8", bytes.len()));
    u64::from_le_bytes(bytes)
}
