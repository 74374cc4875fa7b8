//! The `wasi:keyvalue@0.2.0-draft2` imports, generated from the repository's
//! copy of the WIT (`wit/deps/keyvalue.wit`). Off wasm, each import compiles
//! to a stub that panics: nothing in the native tests calls one.

wit_bindgen::generate!({
    path: "../wit/deps/keyvalue.wit",
    world: "wasi:keyvalue/imports@0.2.0-draft2",
});

pub(crate) use wasi::keyvalue::{atomics, batch, store};
