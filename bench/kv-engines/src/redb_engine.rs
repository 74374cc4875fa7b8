//! redb: one `Database` shared by every thread; reads through
//! `begin_read()`, batches through one `begin_write()` with
//! `Durability::Immediate`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::engine::{Applied, BatchWriter, Engine, Reader, WriteOp, decode_counter};

/// The table's name is built at run time, as the host would build one per
/// app, to show that `TableDefinition` takes a borrowed, non-`'static` name.
fn table_name() -> String {
    format!("kv/{}", "bench-app")
}

/// The table definition for a name that lives as long as `name`.
fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// A redb database file with one key-value table.
pub struct RedbEngine {
    db: Arc<Database>,
    table: String,
    quick_repair: bool,
}

impl RedbEngine {
    /// Opens or creates `dir/kv.redb` and its table.
    pub fn open(dir: &Path, quick_repair: bool) -> Result<RedbEngine> {
        let path = dir.join("kv.redb");
        let db = Database::create(&path)
            .with_context(|| format!("opening redb database {}", path.display()))?;
        let engine = RedbEngine {
            db: Arc::new(db),
            table: table_name(),
            quick_repair,
        };
        // Reading a table that was never created is `TableDoesNotExist`, so
        // create it up front with an empty batch.
        engine.writer()?.apply(&[], &mut Vec::new())?;
        Ok(engine)
    }
}

impl Engine for RedbEngine {
    fn reader(&self) -> Result<Box<dyn Reader>> {
        Ok(Box::new(RedbReader {
            db: Arc::clone(&self.db),
            table: self.table.clone(),
        }))
    }

    fn writer(&self) -> Result<Box<dyn BatchWriter>> {
        Ok(Box::new(RedbWriter {
            db: Arc::clone(&self.db),
            table: self.table.clone(),
            quick_repair: self.quick_repair,
        }))
    }
}

struct RedbReader {
    db: Arc<Database>,
    table: String,
}

impl Reader for RedbReader {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table(&self.table))?;
        Ok(table.get(key)?.map(|value| value.value().to_vec()))
    }
}

struct RedbWriter {
    db: Arc<Database>,
    table: String,
    quick_repair: bool,
}

impl BatchWriter for RedbWriter {
    fn apply(&mut self, ops: &[WriteOp], applied: &mut Vec<Applied>) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        // Immediate is the default; say so, since the whole design rests on it.
        txn.set_durability(Durability::Immediate)?;
        txn.set_quick_repair(self.quick_repair);
        {
            let mut table = txn.open_table(table(&self.table))?;
            for op in ops {
                match op {
                    WriteOp::Set { key, value } => {
                        table.insert(key.as_str(), value.as_slice())?;
                        applied.push(Applied::Stored);
                    }
                    WriteOp::Increment { key } => {
                        let old = table
                            .get(key.as_str())?
                            .map_or(0, |value| decode_counter(value.value()));
                        let new = old + 1;
                        table.insert(key.as_str(), new.to_le_bytes().as_slice())?;
                        applied.push(Applied::Counter(new));
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}
