//! SQLite through rusqlite: one write connection owned by the group-commit
//! thread, one read-only connection per client thread, WAL mode.
//!
//! Durability: in WAL mode a commit appends its pages and a commit frame to
//! the `-wal` file. With `synchronous=FULL` SQLite fsyncs the WAL before the
//! commit returns, so a committed transaction survives power loss as well as
//! `kill -9`. With `synchronous=NORMAL` the WAL is fsynced only at
//! checkpoints: a commit survives a process crash (its frames are already in
//! the OS page cache) but the last commits can roll back after a power loss or
//! kernel crash. `EXTRA` adds only a directory fsync after deleting a rollback
//! journal, which WAL mode never does, so FULL is the durable setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::engine::{Applied, BatchWriter, Engine, Reader, WriteOp, decode_counter};

/// How long a connection waits on a lock before failing. Only a WAL reset or
/// recovery makes a reader wait; the single writer never waits on another.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID";
const SELECT: &str = "SELECT value FROM kv WHERE key = ?1";
const UPSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) \
                      ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// A SQLite database file with one key-value table.
pub struct SqliteEngine {
    path: PathBuf,
    /// `synchronous=FULL` when true, `NORMAL` when false.
    full_sync: bool,
}

impl SqliteEngine {
    /// Opens or creates `dir/kv.sqlite3`, switches it to WAL mode and
    /// creates its table.
    pub fn open(dir: &Path, full_sync: bool) -> Result<SqliteEngine> {
        let engine = SqliteEngine {
            path: dir.join("kv.sqlite3"),
            full_sync,
        };
        let conn =
            engine.connect(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        // The journal mode is stored in the file: set once, every later
        // connection is in WAL mode too.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        ensure!(
            mode == "wal",
            "SQLite refused WAL mode; journal_mode is {mode}"
        );
        conn.execute(CREATE_TABLE, [])?;
        Ok(engine)
    }

    fn connect(&self, flags: OpenFlags) -> Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("opening SQLite database {}", self.path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A per-connection setting: every connection needs it, since any of
        // them may run a checkpoint.
        let synchronous = if self.full_sync { "FULL" } else { "NORMAL" };
        conn.pragma_update(None, "synchronous", synchronous)?;
        Ok(conn)
    }
}

impl Engine for SqliteEngine {
    fn reader(&self) -> Result<Box<dyn Reader>> {
        let conn = self.connect(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Box::new(SqliteReader { conn }))
    }

    fn writer(&self) -> Result<Box<dyn BatchWriter>> {
        let conn = self.connect(OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        Ok(Box::new(SqliteWriter { conn }))
    }
}

struct SqliteReader {
    conn: Connection,
}

impl Reader for SqliteReader {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        // Outside an explicit transaction the statement is its own read
        // transaction: a WAL snapshot, as `begin_read()` is for redb.
        let value = self
            .conn
            .prepare_cached(SELECT)?
            .query_row([key], |row| row.get(0))
            .optional()?;
        Ok(value)
    }
}

struct SqliteWriter {
    conn: Connection,
}

impl BatchWriter for SqliteWriter {
    fn apply(&mut self, ops: &[WriteOp], applied: &mut Vec<Applied>) -> Result<()> {
        // IMMEDIATE takes the write lock up front, as a writer that will
        // write anyway should.
        let txn = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut select = txn.prepare_cached(SELECT)?;
            let mut upsert = txn.prepare_cached(UPSERT)?;
            for op in ops {
                match op {
                    WriteOp::Set { key, value } => {
                        upsert.execute(rusqlite::params![key, value])?;
                        applied.push(Applied::Stored);
                    }
                    WriteOp::Increment { key } => {
                        let old: Option<Vec<u8>> =
                            select.query_row([key], |row| row.get(0)).optional()?;
                        let new = old.map_or(0, |bytes| decode_counter(&bytes)) + 1;
                        upsert.execute(rusqlite::params![key, new.to_le_bytes().as_slice()])?;
                        applied.push(Applied::Counter(new));
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}
