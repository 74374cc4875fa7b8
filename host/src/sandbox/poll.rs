//! `wasi:io/poll` for WASI 0.2 guests, as wasmtime implements it, except
//! that a `poll` whose answer is ready at once lets the serving thread's
//! other tasks run before the guest goes on.
//!
//! A guest that calls `poll` in a loop on a pollable that stays ready while
//! it waits for another one never blocks, so the connection tasks that
//! would make the other one ready (hyper sending the response body the
//! guest has filled, reading the next piece of the request body) do not
//! run until the epoch tick interrupts the guest, a millisecond later.
//! wstd 0.6.8, the async runtime of most Rust guests, polls like this when
//! a handler writes a response while a request body it reads through wstd
//! has data waiting: each 64 KiB of an echoed body then waited for the next
//! tick, and a 50 MB echo ran at 68 MB/s instead of about 1 GB/s. Yielding
//! once after such a `poll` lets those tasks run, so the guest finds its
//! stream ready on its next turn; a `poll` that waits costs nothing more.

use std::future::Future;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{self, Host, HostPollable};

use super::GuestState;

/// Replaces `wasi:io/poll` in `linker` (which must already hold wasmtime's)
/// with [`YieldingPoll`].
pub(super) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added =
        poll::add_to_linker::<GuestState, Yielding>(linker, |state| YieldingPoll(&mut state.table));
    linker.allow_shadowing(false);
    added
}

struct Yielding;

impl HasData for Yielding {
    type Data<'a> = YieldingPoll<'a>;
}

/// wasmtime's `wasi:io/poll` on a guest's table, yielding after a `poll`
/// that did not wait.
pub(super) struct YieldingPoll<'a>(&'a mut ResourceTable);

impl Host for YieldingPoll<'_> {
    async fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let mut ready = std::pin::pin!(Host::poll(self.0, pollables));
        let mut waited = false;
        let ready = std::future::poll_fn(|cx| {
            let poll = ready.as_mut().poll(cx);
            waited |= poll.is_pending();
            poll
        })
        .await;
        if !waited {
            tokio::task::yield_now().await;
        }
        ready
    }
}

impl HostPollable for YieldingPoll<'_> {
    async fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        HostPollable::block(self.0, pollable).await
    }

    async fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        HostPollable::ready(self.0, pollable).await
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        HostPollable::drop(self.0, pollable)
    }
}
