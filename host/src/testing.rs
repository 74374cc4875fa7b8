//! What unit tests share: components written as text, and a loader for
//! them.

use crate::cache::CompileCache;
use crate::engine::{EngineOptions, Engines};
use crate::loader::{Loader, SettingsSource};

/// A `wasi:http` component whose handler returns without answering;
/// `version` sets its memory's initial pages, so that versions differ in
/// content.
pub(crate) fn component(version: u32) -> Vec<u8> {
    component_with_handler(version, "")
}

/// A `wasi:http` component with one memory of `pages` 64 KiB pages, whose
/// handler's body is `body` (core wasm text; empty: return at once).
pub(crate) fn component_with_handler(pages: u32, body: &str) -> Vec<u8> {
    let text = format!(
        r#"(component
            (import "wasi:http/types@0.2.0" (instance $types
                (export "incoming-request" (type (sub resource)))
                (export "response-outparam" (type (sub resource)))))
            (alias export $types "incoming-request" (type $request))
            (alias export $types "response-outparam" (type $outparam))
            (core module $main
                (memory {pages})
                (func (export "handle") (param i32 i32) {body}))
            (core instance $main (instantiate $main))
            (type $handle (func (param "request" (own $request))
                                (param "response-out" (own $outparam))))
            (func $handle (type $handle) (canon lift (core func $main "handle")))
            (instance $handler (export "handle" (func $handle)))
            (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))"#
    );
    wat::parse_str(text).expect("the component text is valid")
}

/// A loader on small engines of its own, with no compile cache.
pub(crate) fn loader() -> Loader {
    loader_with_cache(None)
}

/// A loader on small engines of its own, compiling through `cache`.
pub(crate) fn loader_with_cache(cache: Option<CompileCache>) -> Loader {
    let options = EngineOptions {
        max_instances: 4,
        max_instance_memory: 16 << 20,
        ..EngineOptions::default()
    };
    let engines = Engines::new(options).expect("the engines");
    let settings = SettingsSource {
        max_memory: 16 << 20,
        ..SettingsSource::default()
    };
    Loader::new(&engines, cache, settings).expect("WASI links")
}
