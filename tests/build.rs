//! Builds the guest components the end-to-end tests serve, from source, for
//! `wasm32-wasip2`: the fixtures in `tests/fixtures/` and the examples in
//! `examples/`. They get their own target dir, since a nested cargo on this
//! build's target dir would wait forever for its lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ lives in the workspace root");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: the guests go to
    // <target>/wasm-guests, where `cargo xtask` builds them too, so they are
    // compiled once and survive changes to this script.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR has the usual shape")
        .join("wasm-guests");

    // wit/: the SDK's `kv` bindings are generated from wit/deps/keyvalue.wit.
    for workspace in ["tests/fixtures", "examples", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(workspace).display());
    }
    build_guests(&root.join("tests/fixtures/Cargo.toml"), &target_dir);
    // Its own workspace: see its Cargo.toml.
    build_guests(
        &root.join("tests/fixtures/sdk_probe_wasi03/Cargo.toml"),
        &target_dir,
    );
    build_guests(&root.join("examples/Cargo.toml"), &target_dir);
    let guests = target_dir.join("wasm32-wasip2/release");
    println!("cargo:rustc-env=WEDGE_GUESTS_DIR={}", guests.display());
}

fn build_guests(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host build must not reach the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the guest components");
    assert!(
        status.success(),
        "building the guests in {} failed (see above). If the wasm32-wasip2 target \
         is missing, run `rustup target add wasm32-wasip2` or use `cargo xtask test`.",
        manifest.display()
    );
}
