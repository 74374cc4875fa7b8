//! The embedded backend: every store in one redb database file in the data
//! folder, one table per store.
//!
//! Reads run in their own read transactions, never waiting for writes:
//! point reads on the calling thread, reads of many keys on tokio's
//! blocking pool.
//! Writes go to one writer thread, which takes every write waiting (up to
//! [`MAX_BATCH`]), applies them in one write transaction and commits it
//! durably, one fsync for the whole batch (group commit), before it
//! acknowledges any of them. A write the guest saw succeed is on disk, and
//! concurrent requests share the fsync instead of queueing one each.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use anyhow::Context as _;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use tokio::sync::oneshot;

use super::{CounterError, KeyPage, LIST_PAGE};

/// The database's file in the data folder.
const FILE: &str = "kv.redb";

/// Most writes in one transaction; more wait for the next.
const MAX_BATCH: usize = 1024;

/// Most value bytes in one transaction, so a batch of large values does
/// not hold gigabytes: the writer stops taking writes past it.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// The embedded database, shared by every embedded store.
pub struct Embedded {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    path: PathBuf,
}

/// One write, with where to send its outcome.
struct Write {
    table: Arc<str>,
    op: WriteOp,
    done: oneshot::Sender<Result<Written, String>>,
}

/// What a write does.
pub enum WriteOp {
    Set(String, Vec<u8>),
    Delete(String),
    SetMany(Vec<(String, Vec<u8>)>),
    DeleteMany(Vec<String>),
    Increment(String, i64),
    /// Sets the key only if it still holds the first value (`None`: absent).
    Swap(String, Option<Vec<u8>>, Vec<u8>),
}

impl WriteOp {
    fn bytes(&self) -> usize {
        match self {
            WriteOp::Set(_, value) | WriteOp::Swap(_, _, value) => value.len(),
            WriteOp::SetMany(pairs) => pairs.iter().map(|(_, value)| value.len()).sum(),
            _ => 0,
        }
    }
}

/// What a write answered.
#[derive(Debug)]
enum Written {
    Done,
    Counter(Result<i64, CounterError>),
    Swapped(bool),
}

/// A store's table, read.
type Table = redb::ReadOnlyTable<&'static str, &'static [u8]>;

fn definition(table: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(table)
}

impl Embedded {
    /// Opens (or creates) the database in `dir`, which the caller has
    /// checked; fails when another process has it open.
    pub fn open(dir: &Path) -> anyhow::Result<Embedded> {
        let path = dir.join(FILE);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => anyhow::bail!(
                "the data folder {} is in use by another Wedge server: give each server its \
                 own --data-dir, or share state between servers through a store with \
                 backend = \"redis\" in --config",
                dir.display()
            ),
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot open the key-value database {}; if it is damaged, move it \
                         away (the server then starts with empty stores)",
                        path.display()
                    )
                });
            }
        };
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("wedge-kv-writer".into())
            .spawn(move || write_loop(&writer_db, &queue))
            .context("cannot start the key-value writer thread")?;
        Ok(Embedded { db, writes, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a write and waits until it is committed.
    async fn write(&self, table: &Arc<str>, op: WriteOp) -> Result<Written, String> {
        let (done, outcome) = oneshot::channel();
        let write = Write {
            table: table.clone(),
            op,
            done,
        };
        self.writes
            .send(write)
            .map_err(|_| "the key-value writer has stopped".to_owned())?;
        outcome
            .await
            .map_err(|_| "the key-value writer has stopped".to_owned())?
    }

    /// Applies `op`, a write that answers nothing (a set or a delete).
    pub async fn apply(&self, table: &Arc<str>, op: WriteOp) -> Result<(), String> {
        self.write(table, op).await.map(drop)
    }

    /// Adds `delta` to the counter at `key`, in the writer's transaction.
    pub async fn increment(
        &self,
        table: &Arc<str>,
        key: String,
        delta: i64,
    ) -> Result<Result<i64, CounterError>, String> {
        match self.write(table, WriteOp::Increment(key, delta)).await? {
            Written::Counter(counted) => Ok(counted),
            other => Err(format!("bug: an increment answered {other:?}")),
        }
    }

    /// Sets `key` to `value` if it still holds `expected`, in the writer's
    /// transaction; whether it did.
    pub async fn swap(
        &self,
        table: &Arc<str>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, String> {
        match self
            .write(table, WriteOp::Swap(key, expected, value))
            .await?
        {
            Written::Swapped(swapped) => Ok(swapped),
            other => Err(format!("bug: a swap answered {other:?}")),
        }
    }

    /// Runs `read` on the store's table in its own read transaction; a
    /// table never written reads as empty.
    fn read_now<T>(
        db: &Database,
        table: &str,
        read: impl FnOnce(Option<&Table>) -> Result<T, redb::Error>,
    ) -> Result<T, String> {
        let run = || {
            let transaction = db.begin_read()?;
            match transaction.open_table(definition(table)) {
                Ok(table) => read(Some(&table)),
                Err(TableError::TableDoesNotExist(_)) => read(None),
                Err(error) => Err(error.into()),
            }
        };
        run().map_err(|error: redb::Error| format!("key-value database: {error}"))
    }

    /// [`Embedded::read_now`] on tokio's blocking pool, for reads that
    /// walk many keys.
    async fn read_blocking<T: Send + 'static>(
        &self,
        table: &Arc<str>,
        read: impl FnOnce(Option<&Table>) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, String> {
        let (db, table) = (self.db.clone(), table.clone());
        match tokio::task::spawn_blocking(move || Embedded::read_now(&db, &table, read)).await {
            Ok(result) => result,
            Err(error) => Err(format!("key-value read failed: {error}")),
        }
    }

    /// Point reads run on the calling thread: a lookup in pages that redb
    /// and the kernel cache takes microseconds, less than a hop to another
    /// thread and back.
    pub fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        Embedded::read_now(&self.db, table, |table| {
            let Some(table) = table else { return Ok(None) };
            Ok(table.get(key)?.map(|value| value.value().to_vec()))
        })
    }

    pub fn exists(&self, table: &str, key: &str) -> Result<bool, String> {
        Embedded::read_now(&self.db, table, |table| {
            let Some(table) = table else { return Ok(false) };
            Ok(table.get(key)?.is_some())
        })
    }

    /// Many keys: on the blocking pool, like [`Embedded::list_keys`].
    pub async fn get_many(
        &self,
        table: &Arc<str>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.read_blocking(table, move |table| {
            let Some(table) = table else {
                return Ok(vec![None; keys.len()]);
            };
            keys.iter()
                .map(|key| Ok(table.get(key.as_str())?.map(|value| value.value().to_vec())))
                .collect()
        })
        .await
    }

    /// Keys in order, [`LIST_PAGE`] at a time; the cursor is the last key
    /// of the page before.
    pub async fn list_keys(
        &self,
        table: &Arc<str>,
        cursor: Option<String>,
    ) -> Result<KeyPage, String> {
        self.read_blocking(table, move |table| {
            let Some(table) = table else {
                return Ok(KeyPage::default());
            };
            let start = match &cursor {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Unbounded,
            };
            let mut keys = Vec::new();
            for entry in table.range::<&str>((start, Bound::Unbounded))? {
                let (key, _) = entry?;
                if keys.len() == LIST_PAGE {
                    let cursor = keys.last().cloned();
                    return Ok(KeyPage { keys, cursor });
                }
                keys.push(key.value().to_owned());
            }
            Ok(KeyPage { keys, cursor: None })
        })
        .await
    }
}

/// The writer thread: batches until the server exits (every sender gone).
fn write_loop(db: &Database, queue: &mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut bytes = first.op.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(write) => {
                    bytes += write.op.bytes();
                    batch.push(write);
                }
                Err(_) => break,
            }
        }
        match commit(db, &batch) {
            Ok(outcomes) => {
                for (write, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = write.done.send(Ok(outcome));
                }
            }
            Err(error) => {
                let message = format!("key-value database: {error}");
                tracing::error!("{message}; {} writes failed", batch.len());
                for write in batch {
                    let _ = write.done.send(Err(message.clone()));
                }
            }
        }
    }
}

/// Applies `batch` in one durable transaction.
fn commit(db: &Database, batch: &[Write]) -> Result<Vec<Written>, redb::Error> {
    let transaction = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        let mut table = transaction.open_table(definition(&write.table))?;
        let outcome = match &write.op {
            WriteOp::Set(key, value) => {
                table.insert(key.as_str(), value.as_slice())?;
                Written::Done
            }
            WriteOp::Delete(key) => {
                table.remove(key.as_str())?;
                Written::Done
            }
            WriteOp::SetMany(pairs) => {
                for (key, value) in pairs {
                    table.insert(key.as_str(), value.as_slice())?;
                }
                Written::Done
            }
            WriteOp::DeleteMany(keys) => {
                for key in keys {
                    table.remove(key.as_str())?;
                }
                Written::Done
            }
            WriteOp::Increment(key, delta) => {
                let current = table.get(key.as_str())?.map(|v| v.value().to_vec());
                let counter = super::add_to_counter(current.as_deref(), *delta);
                if let Ok(next) = counter {
                    table.insert(key.as_str(), next.to_string().as_bytes())?;
                }
                Written::Counter(counter)
            }
            WriteOp::Swap(key, expected, value) => {
                let current = table.get(key.as_str())?.map(|v| v.value().to_vec());
                let swapped = current == *expected;
                if swapped {
                    table.insert(key.as_str(), value.as_slice())?;
                }
                Written::Swapped(swapped)
            }
        };
        outcomes.push(outcome);
    }
    transaction.commit()?;
    Ok(outcomes)
}

/// Creates the data folder private (0700) if missing, and refuses one that
/// another user owns or others can write: its stores hold the routes'
/// state. Returns the folder's real path.
pub fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
    let metadata = std::fs::metadata(dir)
        .with_context(|| format!("cannot read --data-dir {}", dir.display()))?;
    anyhow::ensure!(
        metadata.is_dir(),
        "--data-dir {} is not a folder; pass another --data-dir",
        dir.display()
    );
    let (owner, me) = (metadata.uid(), crate::cache::effective_uid());
    anyhow::ensure!(
        owner == me || owner == 0,
        "--data-dir {} is owned by another user (uid {owner}), who could read and change \
         every store; pass a folder that you own",
        dir.display()
    );
    let mode = metadata.mode() & 0o777;
    anyhow::ensure!(
        mode & 0o022 == 0,
        "--data-dir {} is writable by other users (mode {mode:o}), who could change every \
         store: run `chmod 700 {}` or pass another --data-dir",
        dir.display(),
        dir.display()
    );
    dir.canonicalize()
        .with_context(|| format!("cannot resolve --data-dir {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Arc<Embedded>) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let data = prepare_dir(&dir.path().join("data")).expect("a private data folder");
        let db = Embedded::open(&data).expect("the database opens");
        (dir, Arc::new(db))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_all_committed_and_increments_are_exact() {
        let (_dir, db) = open();
        let table: Arc<str> = Arc::from("default");
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (db, table) = (db.clone(), table.clone());
            tasks.push(tokio::spawn(async move {
                db.write(&table, WriteOp::Set(format!("k{i:03}"), vec![1; 10]))
                    .await
                    .expect("set");
                db.write(&table, WriteOp::Increment("n".into(), 1))
                    .await
                    .expect("increment")
            }));
        }
        for task in tasks {
            task.await.expect("the task ran");
        }
        let count = db.get(&table, "n").expect("get");
        assert_eq!(count.as_deref(), Some(&b"200"[..]));
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = db.list_keys(&table, cursor).await.expect("list");
            keys.extend(page.keys);
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(keys.len(), 201, "200 keys and the counter");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_swap_applies_only_over_the_value_it_read() {
        let (_dir, db) = open();
        let table: Arc<str> = Arc::from("s");
        let swap = |expected: Option<&[u8]>, value: &[u8]| {
            WriteOp::Swap("k".into(), expected.map(<[u8]>::to_vec), value.to_vec())
        };
        let won = db.write(&table, swap(None, b"a")).await.expect("swap");
        assert!(matches!(won, Written::Swapped(true)));
        let lost = db.write(&table, swap(None, b"b")).await.expect("swap");
        assert!(matches!(lost, Written::Swapped(false)));
        let won = db
            .write(&table, swap(Some(b"a"), b"c"))
            .await
            .expect("swap");
        assert!(matches!(won, Written::Swapped(true)));
        let value = db.get(&table, "k").expect("get");
        assert_eq!(value.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let error = prepare_dir(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("writable by other users"), "{error}");
    }
}
