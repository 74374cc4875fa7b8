//! End-to-end tests: the real `wedge` process on `127.0.0.1:0`, real
//! components built from source by `build.rs`, real HTTP/1.1 and HTTP/2.

mod harness;

mod caching;
mod cli;
mod dev;
mod errors;
mod examples;
mod handlers;
mod hostile_clients;
mod hostile_files;
mod hostile_guests;
mod languages;
mod limits;
mod ops;
mod outbound;
mod policy;
mod reload;
mod routing;
mod sdk;
mod server;
mod state;
mod streaming;
mod tls;
mod worlds;
