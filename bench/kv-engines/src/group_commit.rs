//! Group commit: one writer thread turns whatever writes are queued into one
//! durable transaction, so concurrent clients share its fsync.
//!
//! The writer blocks for the first request, drains up to [`MAX_BATCH`] more
//! without waiting, applies them all in one transaction, commits, and only
//! then acknowledges each. A client's write is acknowledged once it is
//! durable, and never earlier.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::engine::{Applied, BatchWriter, WriteOp};

/// The most ops one transaction takes. Bounds how long the first op of a
/// batch waits behind the others; with 32 clients a batch never reaches it,
/// so it does not shape the figures.
pub const MAX_BATCH: usize = 256;

/// A write and where to send its acknowledgement.
struct Request {
    op: WriteOp,
    reply: Sender<Applied>,
}

/// What the writer thread did, counted over its whole life.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitCounts {
    /// Write transactions committed (one fsync-bearing commit each).
    pub commits: u64,
    /// Ops applied across them.
    pub ops: u64,
    /// Time spent in `BatchWriter::apply`, commit included.
    pub busy: Duration,
}

/// The writer thread and the channel that feeds it. Dropping it without
/// [`GroupCommit::finish`] still stops the thread.
pub struct GroupCommit {
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<Result<CommitCounts>>>,
}

impl GroupCommit {
    /// Starts the writer thread around `writer`.
    pub fn start(writer: Box<dyn BatchWriter>) -> GroupCommit {
        let (requests, queue) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("kv-writer".into())
            .spawn(move || write_loop(writer, &queue))
            .expect("spawning the writer thread");
        GroupCommit {
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    /// A handle for one client; each client owns one.
    pub fn client(&self) -> WriteClient {
        let requests = self.requests.clone().expect("bug: client() after finish()");
        let (reply, acks) = mpsc::channel();
        WriteClient {
            requests,
            reply,
            acks,
        }
    }

    /// Stops the writer once every client is gone and reports its counts.
    pub fn finish(mut self) -> Result<CommitCounts> {
        self.stop()
    }

    fn stop(&mut self) -> Result<CommitCounts> {
        // Closing our sender ends the loop once the clients' senders are gone.
        self.requests = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow!("the writer thread panicked"))?,
            None => Ok(CommitCounts::default()),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // The error, if any, was reported to the clients as a lost ack.
        let _ = self.stop();
    }
}

/// One client's way to the writer: submit an op, wait for its ack.
pub struct WriteClient {
    requests: Sender<Request>,
    reply: Sender<Applied>,
    acks: Receiver<Applied>,
}

impl WriteClient {
    /// Sends `op` and waits until it is durable.
    pub fn submit(&self, op: WriteOp) -> Result<Applied> {
        let request = Request {
            op,
            reply: self.reply.clone(),
        };
        self.requests
            .send(request)
            .map_err(|_| anyhow!("the writer thread has stopped"))?;
        self.acks
            .recv()
            .map_err(|_| anyhow!("the writer thread failed before acknowledging the write"))
    }
}

fn write_loop(mut writer: Box<dyn BatchWriter>, queue: &Receiver<Request>) -> Result<CommitCounts> {
    let mut counts = CommitCounts::default();
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    let mut applied = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(Request { op, reply }) = next {
            ops.push(op);
            replies.push(reply);
            next = if ops.len() < MAX_BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        applied.clear();
        let started = Instant::now();
        // On an error the batch's reply senders are dropped unanswered, so
        // each of its clients sees the failure instead of an ack.
        writer.apply(&ops, &mut applied)?;
        counts.busy += started.elapsed();
        counts.commits += 1;
        counts.ops += ops.len() as u64;
        assert_eq!(applied.len(), ops.len(), "bug: one Applied per op");
        ops.clear();
        for (reply, result) in replies.drain(..).zip(&applied) {
            // A client that gave up waiting is no reason to stop.
            let _ = reply.send(*result);
        }
    }
    Ok(counts)
}
