//! The wasmtime [`Engine`]s a server runs, and the epoch ticker they need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Concurrent instances the pool holds when not told otherwise; the same
/// order as `wasmtime serve`'s pool, and far more than two cores can keep busy.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;

/// Linear memory one instance may grow to (DESIGN.md `--max-instance-memory`).
pub const DEFAULT_MAX_INSTANCE_MEMORY: u64 = 256 << 20;

/// How often the epoch advances. A running guest yields to the async
/// runtime at every tick, so no guest holds a worker thread for longer and
/// a busy-looping neighbour delays other requests by about a tick per turn
/// (at 10 ms a well-behaved route slowed to ~300 ms per request beside four
/// busy loops on two cores). A tick costs one atomic increment; a yield,
/// a fiber switch of about a microsecond.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Pool slots per instance. A component holds several core instances
/// (Rust: main module, shims, fixups; componentize-py: one per shared
/// library) but usually one memory; these bounds fit the toolchains in use.
/// They are per-component limits too: a component that needs more fails to
/// load, so that no instance takes more than its share of the pool (the pool
/// holds `--max-instances` times each).
pub const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Linear memories per component; see [`CORE_INSTANCES_PER_COMPONENT`].
pub const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables per component; see [`CORE_INSTANCES_PER_COMPONENT`].
pub const TABLES_PER_COMPONENT: u32 = 8;

/// Whether `error`, from compiling a component, says that one instance of
/// it needs more than the pool gives an instance (the per-component limits
/// above, or the size of its instance state).
pub fn over_component_limits(error: &wasmtime::Error) -> bool {
    // Wasmtime's pooling allocator says so in text only.
    format!("{error:#}").contains("exceeds the configured maximum")
}

/// Bytes of each linear memory (and table) kept mapped when an instance
/// ends, reset in place instead of handed back to the kernel: the next
/// request in that pool slot then takes no page faults for them. A Rust
/// guest dirties its 1 MiB stack at the bottom of memory and some heap, so
/// 2 MiB covers what a small handler writes. With `pagemap_scan` only the
/// pages actually written are reset. It costs resident memory per warm slot.
const KEEP_RESIDENT: usize = 2 << 20;

/// How the engine's instance pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Most component instances alive at once.
    pub max_instances: u32,
    /// Most linear memory per instance, in bytes.
    pub max_instance_memory: u64,
    /// wasmtime's support for concurrent execution: WASI 0.3 components
    /// and instance reuse need it; without it a WASI 0.2 call takes
    /// wasmtime's plain path, without that bookkeeping.
    pub concurrency: bool,
}

/// The engines a server compiles for: one without wasmtime's concurrency
/// support, for WASI 0.2 routes with a fresh instance per request (the
/// default, and the cheaper path: every host call of an engine with that
/// support pays for its task bookkeeping), and one with it, for WASI 0.3
/// routes and reused instances, unless `--no-wasi-0-3` leaves it out.
///
/// Each has its own instance pool, sized by the same [`EngineOptions`];
/// the server's instance-slot permits bound the instances of both together
/// to `--max-instances`.
#[derive(Clone)]
pub struct Engines {
    /// Without concurrency support.
    pub plain: Engine,
    /// With it; `None` under `--no-wasi-0-3`.
    pub concurrent: Option<Engine>,
}

impl Engines {
    /// Builds both engines, or only the plain one if `options.concurrency`
    /// is off.
    pub fn new(options: EngineOptions) -> anyhow::Result<Engines> {
        let plain = new_engine(EngineOptions {
            concurrency: false,
            ..options
        })?;
        let concurrent = if options.concurrency {
            Some(new_engine(options)?)
        } else {
            None
        };
        Ok(Engines { plain, concurrent })
    }

    /// Every engine, to tick.
    pub fn all(&self) -> impl Iterator<Item = &Engine> {
        std::iter::once(&self.plain).chain(&self.concurrent)
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_instance_memory: DEFAULT_MAX_INSTANCE_MEMORY,
            concurrency: true,
        }
    }
}

/// Builds the engine: pooling allocator and epoch interruption on.
///
/// Where the pool's address-space reservation fails (a container with a low
/// `ulimit -v`), falls back to on-demand allocation with a warning.
pub fn new_engine(options: EngineOptions) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // WASI 0.3: async exports, native streams and futures, and the
    // concurrent calls instance reuse is built on.
    config.concurrency_support(options.concurrency);
    config.wasm_component_model_async(options.concurrency);
    // Guest backtraces in trap logs name the guest's functions.
    config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);

    let mut pool = PoolingAllocationConfig::default();
    let instances = options.max_instances;
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(usize::try_from(options.max_instance_memory)?)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Linux 6.7 and later; elsewhere `Auto` falls back to the plain reset.
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(error) => {
            tracing::warn!(
                "pooling allocator unavailable ({error:#}); falling back to on-demand \
                 allocation, which is slower per request. Raise `ulimit -v` or lower \
                 --max-instances to get the pool back."
            );
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok(Engine::new(&config)?)
        }
    }
}

/// Advances the engines' epochs every [`EPOCH_TICK`] until dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engines`.
    pub fn start<'a>(
        engines: impl IntoIterator<Item = &'a Engine>,
    ) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engines: Vec<_> = engines.into_iter().map(Engine::weak).collect();
        let thread = std::thread::Builder::new()
            .name("wedge-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let mut alive = false;
                        for engine in engines.iter().filter_map(|engine| engine.upgrade()) {
                            engine.increment_epoch();
                            alive = true;
                        }
                        if !alive {
                            return;
                        }
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
