use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmcell_core::{Engine, EngineError, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary};

use crate::cache::CompileCache;
use crate::compile::{Compiled, CompiledCode, Compiler};
use crate::component::ComponentPres;
use crate::core_module::CorePres;
use crate::run::GuestRun;
use crate::GuestMeter;

/// How often the epoch advances; an interrupt is seen within about one tick of guest execution.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Wasmtime behind the [`Engine`] trait.
#[derive(Debug)]
pub struct WasmtimeEngine {
    engine: wasmtime::Engine,
    compiler: Compiler,
    core_pres: CorePres,
    component_pres: ComponentPres,
    http_pres: crate::http::host::HttpPres,
    /// Started by the first run, not before: a host may compile, then confine its process
    /// (capabilities, seccomp, uid) while it still has one thread, then run.
    ticker: std::sync::OnceLock<EpochTicker>,
}

impl WasmtimeEngine {
    /// Build the engine (Cranelift, component model, epoch interruption); its epoch ticker
    /// thread starts with the first run, so an engine that only compiles starts no thread.
    /// Compiled code is kept in memory only; see [`WasmtimeEngine::with_cache`].
    pub fn new() -> Result<Self, EngineError> {
        Self::build(None, None)
    }

    /// As [`WasmtimeEngine::new`], also keeping compiled code in an on-disk cache shared by
    /// every process on the node.
    pub fn with_cache(cache: CompileCache) -> Result<Self, EngineError> {
        Self::build(Some(cache), None)
    }

    /// As [`WasmtimeEngine::with_cache`], for a process that serves one HTTP guest: Wasmtime's
    /// pooling allocator, sized for `instances` live instances (the guest's concurrent
    /// requests), so that each request's instance takes a warm slot with copy-on-write memory
    /// rather than fresh mappings, as `wasmtime serve` does. Fails where the host cannot reserve
    /// the pool's address space; the caller then keeps the on-demand allocator. Compiled code
    /// is the same for both (one cache entry).
    pub fn for_serving(cache: CompileCache, instances: u32) -> Result<Self, EngineError> {
        Self::build(Some(cache), Some(instances.max(1)))
    }

    fn build(cache: Option<CompileCache>, pool: Option<u32>) -> Result<Self, EngineError> {
        let mut config = wasmtime::Config::new();
        if let Some(instances) = pool {
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
                serving_pool(instances),
            ));
        }
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // WASI 0.3 (async exports, streams and futures) is built on the component model's
        // async ABI.
        config.wasm_component_model_async(true);
        // rayon's pool has no threads in a forked child (`wasmcell_core::fork`): compile there
        // on the calling thread. Elsewhere a host that forks runs compiles inside
        // `wasmcell_core::fork::with_joined_pool`.
        config.parallel_compilation(!wasmcell_core::fork::in_forked_child());
        let engine = wasmtime::Engine::new(&config).map_err(|e| EngineError::Config {
            engine: "wasmtime",
            reason: format!("{e:#}"),
        })?;
        Ok(WasmtimeEngine {
            engine,
            compiler: Compiler::new(cache),
            core_pres: CorePres::default(),
            component_pres: ComponentPres::default(),
            http_pres: Default::default(),
            ticker: std::sync::OnceLock::new(),
        })
    }

    /// Start the epoch ticker unless it runs already.
    fn ensure_ticker(&self) -> Result<(), EngineError> {
        if self.ticker.get().is_some() {
            return Ok(());
        }
        let ticker = EpochTicker::start(self.engine.clone()).map_err(|e| EngineError::Config {
            engine: "wasmtime",
            reason: format!("failed to start the epoch ticker thread: {e}"),
        })?;
        if let Err(extra) = self.ticker.set(ticker) {
            // Another run started one first.
            extra.stop();
        }
        Ok(())
    }

    /// Compile `wasm` (through the cache when the engine has one) and return the code, to hand
    /// to an engine of the same build and configuration in another process, e.g. one forked
    /// into a container that cannot see the cache ([`WasmtimeEngine::adopt_compiled`]).
    pub fn compiled_code(&self, wasm: &WasmBinary) -> Result<CompiledCode, EngineError> {
        let (compiled, digest) = self.compiler.compile(&self.engine, wasm)?;
        CompiledCode::serialize(&compiled, digest, wasm.kind()).map_err(|e| EngineError::Compile {
            module: wasm.path().display().to_string(),
            reason: format!("failed to serialize compiled code: {e:#}"),
        })
    }

    /// Use `code` as the compiled form of `wasm`, so that running `wasm` does not compile it.
    /// Returns false, and changes nothing, when `code` is not the code of these bytes.
    ///
    /// # Safety
    /// `code` must come from [`WasmtimeEngine::compiled_code`] of an engine of this same build
    /// and configuration, unaltered: Wasmtime runs it as native code after checking only its
    /// header and version.
    #[allow(unsafe_code)]
    pub unsafe fn adopt_compiled(
        &self,
        wasm: &WasmBinary,
        code: &CompiledCode,
    ) -> Result<bool, EngineError> {
        if !code.is_code_of(wasm) {
            return Ok(false);
        }
        // SAFETY: forwarded from the caller's promise.
        let compiled = unsafe { code.load(&self.engine) }.map_err(|e| EngineError::Compile {
            module: wasm.path().display().to_string(),
            reason: format!("failed to load precompiled code: {e:#}"),
        })?;
        self.compiler.remember(code.digest(), compiled);
        Ok(true)
    }

    /// Whether compiled code of `wasm` is at hand, in memory or in the on-disk cache: preparing
    /// it then loads code and compiles nothing.
    pub fn has_compiled(&self, wasm: &WasmBinary) -> bool {
        self.compiler.has(&self.engine, wasm)
    }

    /// Compile `wasm` into the engine's cache (a host's helper process does this for another
    /// process, which then finds the code in the on-disk cache).
    pub fn precompile(&self, wasm: &WasmBinary) -> Result<(), EngineError> {
        self.compiler.compile(&self.engine, wasm).map(drop)
    }

    /// The underlying Wasmtime engine.
    pub fn inner(&self) -> &wasmtime::Engine {
        &self.engine
    }
}

impl Drop for WasmtimeEngine {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.stop();
        }
    }
}

impl Engine for WasmtimeEngine {
    fn name(&self) -> &'static str {
        "wasmtime"
    }

    fn prepare(&self, plan: &RunPlan, wasm: &WasmBinary) -> Result<(), EngineError> {
        match self.compiler.compile(&self.engine, wasm)?.0 {
            Compiled::Core(module) => crate::core_module::check_entry(&module, plan, wasm),
            Compiled::Component(component) => {
                crate::component::check_entry(&self.engine, &component, plan, wasm)
            }
        }
    }

    fn run(
        &self,
        plan: &RunPlan,
        wasm: &WasmBinary,
        stdio: Stdio,
        interrupt: &Interrupt,
    ) -> Result<GuestExit, EngineError> {
        self.run_listening(plan, wasm, stdio, interrupt, None)
    }
}

impl WasmtimeEngine {
    /// Compile `wasm` and resolve its imports for `plan`: what a host keeps between creating a
    /// container and starting it, so that the start neither compiles, nor reads the module,
    /// nor links. A module that cannot be linked is reported when it runs, as by
    /// [`Engine::run`].
    pub fn prepare_guest(
        &self,
        plan: &RunPlan,
        wasm: &WasmBinary,
    ) -> Result<PreparedGuest, EngineError> {
        let (compiled, digest) = self.compiler.compile(&self.engine, wasm)?;
        let linked = match compiled {
            Compiled::Core(module) => {
                crate::core_module::pre(&module, &self.core_pres, &digest, plan, wasm)
                    .map(Linked::Core)
            }
            Compiled::Component(component) => {
                match crate::component::entry(&self.engine, &component, plan, wasm) {
                    Ok(crate::component::Entry::Http(wasi)) => {
                        let pres = &self.http_pres;
                        let engine = &self.engine;
                        crate::http::host::proxy_pre(engine, &component, wasi, pres, &digest, wasm)
                            .map(Linked::Http)
                    }
                    Ok(entry) => {
                        let pres = &self.component_pres;
                        crate::component::pre(&self.engine, &component, pres, &digest, wasm)
                            .map(|pre| Linked::Component(pre, entry))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match linked {
            Ok(linked) => Ok(PreparedGuest { linked }),
            Err(EngineError::Link { reason, .. }) => Ok(PreparedGuest {
                linked: Linked::Unlinkable(reason),
            }),
            Err(e) => Err(e),
        }
    }

    /// Run a prepared guest as a future, for hosts that run many guests on one async executor
    /// (the shim's shared mode). The guest yields to the executor at every epoch tick, so a
    /// spinning guest cannot hold a thread; dropping the future stops the guest wherever it
    /// is, also inside a blocking host call such as a sleep. `meter` shows its memory while it
    /// runs.
    ///
    /// An HTTP guest ([`PreparedGuest::serves_http`]) is served on `with.listener` (see
    /// [`crate::http::bind`]) until `with.interrupt` asks it to stop, then drained.
    pub async fn run_prepared(
        &self,
        prepared: &PreparedGuest,
        plan: &RunPlan,
        wasm: &WasmBinary,
        with: RunWith<'_>,
    ) -> Result<GuestExit, EngineError> {
        self.ensure_ticker()?;
        let guest = GuestRun {
            stdio: with.stdio,
            interrupt: with.interrupt,
            meter: with.meter,
            may_block_thread: false,
            open_files: open_files(plan),
            listener: with.listener,
        };
        prepared.run(plan, wasm, guest).await
    }

    /// [`Engine::run`], with the socket an HTTP guest is served on bound beforehand by the
    /// caller ([`crate::http::bind`], e.g. before the process drops its capabilities); a
    /// command ignores it.
    pub fn run_listening(
        &self,
        plan: &RunPlan,
        wasm: &WasmBinary,
        stdio: Stdio,
        interrupt: &Interrupt,
        listener: Option<std::net::TcpListener>,
    ) -> Result<GuestExit, EngineError> {
        let guest = GuestRun {
            stdio,
            interrupt,
            meter: &GuestMeter::new(),
            may_block_thread: true,
            open_files: open_files(plan),
            listener,
        };
        wasmtime_wasi::runtime::in_tokio(self.run_guest(plan, wasm, guest))
    }

    async fn run_guest(
        &self,
        plan: &RunPlan,
        wasm: &WasmBinary,
        guest: GuestRun<'_>,
    ) -> Result<GuestExit, EngineError> {
        tracing::debug!(module = %wasm.path().display(), kind = ?wasm.kind(), "running guest");
        self.ensure_ticker()?;
        self.prepare_guest(plan, wasm)?.run(plan, wasm, guest).await
    }
}

/// A pool for `instances` live component instances, each with room for the several core
/// instances, memories and tables a component holds.
fn serving_pool(instances: u32) -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(16))
        .total_memories(instances.saturating_mul(4))
        .total_tables(instances.saturating_mul(16))
        .total_stacks(instances);
    pool
}

/// What a run of a prepared guest is given besides its plan and binary
/// ([`WasmtimeEngine::run_prepared`]).
#[derive(Debug)]
pub struct RunWith<'a> {
    /// The guest's stdin, stdout and stderr.
    pub stdio: Stdio,
    /// Stops the guest (an HTTP guest drains first).
    pub interrupt: &'a Interrupt,
    /// Shows the memory and resources the guest holds while it runs.
    pub meter: &'a GuestMeter,
    /// For an HTTP guest, the socket it is served on; `None` binds the address its env names.
    pub listener: Option<std::net::TcpListener>,
}

/// The guest's open-file limit: its plan's, or the usual default.
fn open_files(plan: &RunPlan) -> usize {
    plan.open_files_limit
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .unwrap_or(crate::run::DEFAULT_OPEN_FILES)
}

/// A guest compiled and linked against WASI, ready to instantiate (cheap to clone; made by
/// [`WasmtimeEngine::prepare_guest`]).
#[derive(Clone)]
pub struct PreparedGuest {
    linked: Linked,
}

#[derive(Clone)]
enum Linked {
    Core(wasmtime::InstancePre<crate::core_module::Host>),
    Component(
        wasmtime::component::InstancePre<crate::component::Host>,
        crate::component::Entry,
    ),
    /// A WASI 0.2 or 0.3 HTTP handler, served (see http/).
    Http(crate::http::host::HttpPre),
    /// Its imports cannot be satisfied: reported when it runs.
    Unlinkable(String),
}

impl std::fmt::Debug for PreparedGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.linked {
            Linked::Core(_) => "core module",
            Linked::Component(..) => "component",
            Linked::Http(_) => "http component",
            Linked::Unlinkable(_) => "unlinkable",
        };
        f.debug_struct("PreparedGuest")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl PreparedGuest {
    /// Whether the guest is an HTTP server (a `wasi:http` handler component, 0.2 or 0.3): it is
    /// served until asked to stop, and a host should turn SIGTERM into that request.
    pub fn serves_http(&self) -> bool {
        matches!(self.linked, Linked::Http(_))
    }

    async fn run(
        &self,
        plan: &RunPlan,
        wasm: &WasmBinary,
        guest: GuestRun<'_>,
    ) -> Result<GuestExit, EngineError> {
        match &self.linked {
            Linked::Core(pre) => crate::core_module::run(pre, plan, wasm, guest).await,
            Linked::Component(pre, entry) => {
                crate::component::run(pre, *entry, plan, wasm, guest).await
            }
            Linked::Http(pre) => crate::http::run(pre, plan, wasm, guest).await,
            Linked::Unlinkable(reason) => Err(crate::exit::link_error(wasm, reason.clone())),
        }
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`].
#[derive(Debug)]
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmcell-epoch".into())
            .spawn(move || {
                let mut next = std::time::Instant::now() + EPOCH_TICK;
                while !flag.load(Ordering::Acquire) {
                    // Parked rather than asleep, so that `stop` wakes it at once: a host that
                    // drops its engine (a guest process about to exit) does not wait a tick.
                    std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
                    if Instant::now() >= next {
                        engine.increment_epoch();
                        next = Instant::now() + EPOCH_TICK;
                    }
                }
            })?;
        Ok(EpochTicker { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}
