//! What one instance may hold: its linear memory, counted across all its
//! memories, and the host-side resources that no memory limit sees.
//!
//! A guest's host-side state lives in its `ResourceTable` (headers, bodies,
//! streams, pollables, requests), so the table's capacity times the largest
//! entry bounds it. Per instance, a route's host memory is at most
//!
//! ```text
//! memory + MAX_RESOURCES × MAX_RESOURCE_BYTES + 2 × guest_log::MAX_LINE
//!        = memory + 1024 × 64 KiB + 32 KiB  ≈  memory + 64 MiB
//! ```
//!
//! and a route's at most `max_concurrency` (or `--max-instances`) times that.

use wasmtime::ResourceLimiter;

use crate::engine::{CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLES_PER_COMPONENT};

/// Live resources (handles) one instance may hold at once. A Rust handler
/// holds a dozen or two (request, headers, bodies, streams, pollables), one
/// outbound call about ten more; 1024 leaves room for a handler with dozens
/// of calls in flight while bounding what a leaking or hostile guest can pin
/// on the host (wasmtime's default is 1,000,000).
pub const MAX_RESOURCES: usize = 1024;

/// Most bytes one `fields` (headers or trailers) resource may hold, as
/// wasmtime-wasi-http counts them: names, values and 32 bytes per entry.
/// As large as `--max-header-size`'s default, so any head a client can send
/// a guest can build too; wasmtime's default is 128 KiB.
pub const MAX_FIELDS_BYTES: usize = 64 * 1024;

/// Largest write to an outgoing body (a response's or an outbound
/// request's). The host buffers [`OUTGOING_BODY_BUFFER_CHUNKS`] + 1 of
/// them per body until they are sent, so an unsent body holds at most
/// 64 KiB; wasmtime's default chunk is 1 MiB (2 MiB per body). 32 KiB keeps
/// streaming at a few host calls per 100 KiB.
pub const OUTGOING_BODY_CHUNK: usize = 32 * 1024;

/// Writes buffered per outgoing body beyond the one in flight (wasmtime's
/// default, and its minimum).
pub const OUTGOING_BODY_BUFFER_CHUNKS: usize = 1;

/// The largest host-side resource: a full `fields`, or an unsent outgoing
/// body's buffered chunks. It gives the per-instance bound above (the
/// figure the docs give; its test checks it).
#[cfg(test)]
const MAX_RESOURCE_BYTES: usize = {
    let body = (OUTGOING_BODY_BUFFER_CHUNKS + 1) * OUTGOING_BODY_CHUNK;
    if body > MAX_FIELDS_BYTES {
        body
    } else {
        MAX_FIELDS_BYTES
    }
};

/// Table elements (function references) across all of an instance's
/// tables: what the pool gives each table by default (20,000) times the
/// tables a component may have. A pointer each: at most 1.25 MiB.
const MAX_TABLE_ELEMENTS: usize = 20_000 * TABLES_PER_COMPONENT as usize;

/// The store limiter of one instance: the route's `memory` is the total of
/// all its linear memories (wasmtime's `StoreLimits` checks each memory on
/// its own, so N memories could take N times the limit), and the counts of
/// core instances, memories and tables are those the pool allows per
/// component, so they hold without the pool too.
#[derive(Debug)]
pub struct GuestLimits {
    memory_limit: usize,
    memory_used: usize,
    /// The growth last allowed, taken back if it then failed.
    memory_granted: usize,
    table_used: usize,
    table_granted: usize,
}

impl GuestLimits {
    /// At most `memory` bytes of linear memory in all.
    pub fn new(memory: usize) -> GuestLimits {
        GuestLimits {
            memory_limit: memory,
            memory_used: 0,
            memory_granted: 0,
            table_used: 0,
            table_granted: 0,
        }
    }
}

/// Whether growing one of several from `current` to `desired` keeps the
/// total `used` within `limit` (and `desired` within the item's own
/// `maximum`); the growth, if so.
fn grow(used: usize, limit: usize, current: usize, desired: usize, max: Option<usize>) -> usize {
    let growth = desired.saturating_sub(current);
    let within_item = max.is_none_or(|max| desired <= max);
    if within_item && used.saturating_add(growth) <= limit {
        growth
    } else {
        usize::MAX
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = grow(
            self.memory_used,
            self.memory_limit,
            current,
            desired,
            maximum,
        );
        if growth == usize::MAX {
            self.memory_granted = 0;
            return Ok(false);
        }
        self.memory_used += growth;
        self.memory_granted = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_used -= std::mem::take(&mut self.memory_granted);
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = grow(
            self.table_used,
            MAX_TABLE_ELEMENTS,
            current,
            desired,
            maximum,
        );
        if growth == usize::MAX {
            self.table_granted = 0;
            return Ok(false);
        }
        self.table_used += growth;
        self.table_granted = growth;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_used -= std::mem::take(&mut self.table_granted);
        Ok(())
    }

    fn instances(&self) -> usize {
        CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_COMPONENT as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memory_limit_counts_every_memory() {
        let mut limits = GuestLimits::new(16 * MIB);
        assert!(limits.memory_growing(0, 12 * MIB, None).expect("no trap"));
        assert!(!limits.memory_growing(0, 12 * MIB, None).expect("no trap"));
        assert!(limits.memory_growing(0, 4 * MIB, None).expect("no trap"));
        assert!(
            !limits
                .memory_growing(4 * MIB, 5 * MIB, None)
                .expect("no trap")
        );
    }

    #[test]
    fn failed_growth_is_given_back() {
        let mut limits = GuestLimits::new(16 * MIB);
        assert!(limits.memory_growing(0, 16 * MIB, None).expect("no trap"));
        limits
            .memory_grow_failed(wasmtime::Error::msg("out of memory"))
            .expect("no trap");
        assert!(limits.memory_growing(0, 16 * MIB, None).expect("no trap"));
    }

    #[test]
    fn growth_past_a_memorys_own_maximum_is_refused() {
        let mut limits = GuestLimits::new(16 * MIB);
        assert!(
            !limits
                .memory_growing(0, 2 * MIB, Some(MIB))
                .expect("no trap")
        );
        assert!(limits.memory_growing(0, 16 * MIB, None).expect("no trap"));
    }

    #[test]
    fn the_largest_resource_is_a_full_fields() {
        assert_eq!(MAX_RESOURCE_BYTES, 64 * 1024);
    }
}
