//! Wedge: a WebAssembly edge-function runtime.
//!
//! Drop `wasi:http/proxy` components (`wasm32-wasip2`) into a routes folder and
//! Wedge serves each at the URL its path names, the way Next.js Route Handlers
//! turn `app/api/users/[id]/route.js` into `/api/users/42`: every request runs
//! in a fresh sandboxed instance.
//!
//! Data flows one way: [`cli`] → [`loader`] (find, compile through the
//! [`cache`], link) → [`routing`] (the route table) → [`server`] (hyper) →
//! [`sandbox`] (store, WASI, wasi:http) → guest. The [`reload`] watcher
//! only ever builds a new table and swaps it in; in `wedge dev`, [`dev`]
//! rebuilds routes from source and lets the watcher pick them up.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wedge::{engine, loader::Loader, sandbox, server};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let engine = engine::new_engine(engine::EngineOptions::default())?;
//! let _ticker = engine::EpochTicker::start(&engine)?;
//! let settings = wedge::loader::SettingsSource {
//!     max_memory: engine::DEFAULT_MAX_INSTANCE_MEMORY,
//!     ..Default::default()
//! };
//! let loader = Loader::new(engine.clone(), sandbox::new_linker(&engine)?, None, settings);
//! let loaded = loader.load_dir("routes".as_ref(), None);
//! for error in &loaded.errors {
//!     eprintln!("{error}");
//! }
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let state = Arc::new(server::ServerState::new(loaded.table, Default::default()));
//! server::run(listener, state, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod dev;
pub mod engine;
mod guest_log;
pub mod loader;
pub mod metrics;
pub mod outbound;
pub mod reload;
pub mod routing;
pub mod sandbox;
pub mod server;
pub mod settings;
