//! Wedge: a WebAssembly edge-function runtime.
//!
//! Drop `wasi:http/proxy` components (`wasm32-wasip2`) into a routes folder and
//! Wedge serves each at the URL its path names, the way Next.js Route Handlers
//! turn `app/api/users/[id]/route.js` into `/api/users/42`: every request runs
//! in a fresh sandboxed instance.
//!
//! The binary is [`cli::main`]; the rest of the crate is private to it,
//! except the sidecar format ([`settings`]) and the admin listener's
//! connection cap, which the end-to-end tests read.
//!
//! Modules depend one way: `cli` → {`server`, `reload`, `dev`, `admin`};
//! `dev` → `reload` → `loader` (find, compile through the `cache`, link)
//! → `routing`; `server` → `sandbox` (store, WASI, wasi:http) → guest.
//! The table being served is a `live::LiveRoutes`, held by the server
//! (which reads it per request), the reloader (which publishes new ones)
//! and the admin listener (which shows it). `wedge dev`'s builds reach the
//! request path only through the server's `BuildWait` trait.

#![deny(missing_docs)]

mod admin;
mod cache;
pub mod cli;
mod dev;
mod engine;
mod guest_log;
mod kv;
mod live;
mod loader;
mod log_buffer;
mod log_format;
mod metrics;
mod outbound;
mod reload;
mod response_cache;
mod routing;
mod sandbox;
mod server;
pub mod settings;
#[cfg(test)]
mod testing;

pub use admin::ADMIN_MAX_CONNECTIONS;
