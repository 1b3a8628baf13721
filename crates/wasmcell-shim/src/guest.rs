//! The guest process: a re-exec of the shim binary as `guest`, one per container.
//!
//! Once it is in the container's cgroup (on cgroup v1 it joins by itself through the
//! `--cgroup-tasks` files, before anything else; then byte `p` on the control socket at fd 3),
//! it prepares the workload (bundle -> run plan, module read and compiled) and reports on the
//! control socket at fd 3: `step <what>` as each step begins, then `ready`, or
//! `error <message>` (and exits with the status the failure calls for). It then waits for the
//! shim's start byte, runs the guest with the container's stdio (its own fds 0-2), and exits
//! with the guest's status. `oom` is reported on the socket before an out-of-memory exit. If the
//! shim goes away before start, the socket reads end-of-file and the process exits unrun.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use wasmcell_core::{Engine, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary, WorkloadSpec};
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine};

use crate::artifact::{Containerd, LoadError};
use crate::ShimError;

/// argv\[1\] that selects the guest process.
pub(crate) const SUBCOMMAND: &str = "guest";
/// The fd the control socket is mapped to in the guest process.
pub(crate) const CONTROL_FD: i32 = 3;
/// The byte the shim writes once the guest process sits in the container's cgroup.
pub(crate) const PREPARE: u8 = b'p';
/// The byte the shim writes to start the guest.
pub(crate) const START: u8 = b's';

/// Environment variable holding containerd's gRPC address (`-address`), where the guest
/// process looks up an artifact image.
pub(crate) const ADDRESS_ENV: &str = "WASMCELL_CONTAINERD_ADDRESS";
/// Environment variable holding the container's containerd namespace.
pub(crate) const NAMESPACE_ENV: &str = "WASMCELL_CONTAINERD_NAMESPACE";

/// Exit status when the shim went away before starting the guest.
const EXIT_NOT_STARTED: i32 = wasmcell_core::EXIT_KILLED;

pub(crate) fn main(args: &[String]) -> i32 {
    let Some(bundle) = flag(args, "--bundle").map(PathBuf::from) else {
        eprintln!("containerd-shim-wasmcell-v1 guest: missing --bundle");
        return 2;
    };
    let id = flag(args, "--id").unwrap_or_default();
    close_inherited_fds();
    // SAFETY: the shim maps the child end of a fresh socket pair to CONTROL_FD when it spawns
    // this process (see backend/process.rs); nothing else in this process owns or closes that fd.
    #[allow(unsafe_code)]
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    let mut control = UnixStream::from(control);

    let mut timings = Timings::new();
    let set_up = set_up(args, &bundle, &id, &mut control, &mut timings);
    let ready = match set_up {
        Ok(Some(ready)) => ready,
        Ok(None) => return EXIT_NOT_STARTED,
        Err(e) => {
            // The error's own message: each error of the set-up already ends with its cause's,
            // which `{:#}` would repeat, and the shim reports this text as it is.
            let _ = writeln!(control, "error {}", one_line(&e.to_string()));
            return exit_status(&e);
        }
    };
    if writeln!(control, "ready {}", timings.report()).is_err() {
        return EXIT_NOT_STARTED;
    }
    let mut byte = [0u8; 1];
    match control.read(&mut byte) {
        Ok(1) if byte[0] == START => {}
        _ => return EXIT_NOT_STARTED,
    }
    tracing::debug!(container = %id, "guest starting");
    let interrupt = Interrupt::new();
    // An HTTP guest is served on an executor of its own, sized to the container's CPUs (the
    // engine runs on the executor it is called in).
    let serving = match ready.listener.is_some() {
        true => {
            drain_on_signals(&interrupt);
            log_http_to_stderr();
            serving_runtime(ready.workers)
        }
        false => None,
    };
    let _serving = serving.as_ref().map(tokio::runtime::Runtime::enter);
    let _span = tracing::info_span!("guest", container = %id).entered();
    let Ready {
        plan,
        wasm,
        engine,
        listener,
        ..
    } = ready;
    match engine.run_listening(&plan, &wasm, Stdio::inherit(), &interrupt, listener) {
        Ok(exit) => {
            if matches!(exit, GuestExit::OutOfMemory(_)) {
                let _ = writeln!(control, "oom");
            }
            if let Some(report) = exit.report() {
                eprintln!("wasmcell: {report}");
            }
            let _ = std::io::stdout().flush();
            exit.code()
        }
        Err(e) => {
            eprintln!("wasmcell: {e}");
            e.exit_code()
        }
    }
}

/// A multi-threaded executor of `workers` threads (started after the confinement, so they
/// inherit it); `None` leaves the engine to its default one.
fn serving_runtime(workers: usize) -> Option<tokio::runtime::Runtime> {
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("wasmcell-http")
        .build();
    built
        .inspect_err(|e| eprintln!("wasmcell: cannot build the http executor: {e}"))
        .ok()
}

/// An HTTP server's own log lines (where it listens and its limits, a request that trapped,
/// the drain) go to the container's stderr, its log, beside what the guest writes there.
fn log_http_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "wasmcell_wasmtime::http=info",
        ))
        .try_init();
}

/// SIGTERM and SIGINT ask an HTTP guest to drain (stop taking connections, finish what is in
/// flight) rather than end the process at once; a thread of its own waits for them (started
/// after the confinement, as the engine's threads are).
fn drain_on_signals(interrupt: &Interrupt) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wasmcell: cannot catch SIGTERM, the guest will not drain: {e}");
            return;
        }
    };
    let interrupt = interrupt.clone();
    let spawned = std::thread::Builder::new()
        .name("wasmcell-drain".into())
        .spawn(move || {
            for signal in signals.forever() {
                interrupt.trigger(signal);
            }
        });
    if let Err(e) = spawned {
        eprintln!("wasmcell: cannot catch SIGTERM, the guest will not drain: {e}");
    }
}

/// Close every descriptor above the control socket: whatever the shim's own parent left open
/// (containerd's, or its parent's) is none of the guest's business. Runs first, before
/// anything of this process opens a file, so each closed fd is one nothing here owns.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > CONTROL_FD)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list inherited descriptors");
            return;
        }
    };
    for fd in fds {
        // The listing's own descriptor is among them, already closed: EBADF, ignored.
        let _ = nix::unistd::close(fd);
    }
}

/// The exit status a failed set-up calls for: a module that could not be loaded or compiled
/// says which ([`LoadError::exit_code`]); anything else (a [`ShimError`] of the namespaces, the
/// root or the confinement) is the container's configuration that could not be applied.
fn exit_status(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<LoadError>()
        .map_or(wasmcell_core::EXIT_CONFIG_ERROR, LoadError::exit_code)
}

/// Everything between the spawn and `ready`, in this order: join the cgroup (v1) while this
/// process has one thread (cgroup.rs); wait for the shim's `p` (the process is in its cgroup, so
/// the rest is accounted to the container and the cgroup namespace is rooted there); enter the
/// namespaces; read and compile the module from the host's side (the node's cache); confine
/// what needs the host's `/proc`; pivot into the container's root; drop to the container's
/// user, capabilities and seccomp filter. `None`: the shim went away before `p`. An error is a
/// [`LoadError`] or a [`ShimError`] ([`exit_status`]).
fn set_up(
    args: &[String],
    bundle: &Path,
    id: &str,
    control: &mut UnixStream,
    timings: &mut Timings,
) -> anyhow::Result<Option<Ready>> {
    join_cgroup(args)?;
    let mut byte = [0u8; 1];
    match control.read(&mut byte) {
        Ok(1) if byte[0] == PREPARE => {}
        _ => return Ok(None),
    }
    let containerd = Containerd {
        address: std::env::var(ADDRESS_ENV).unwrap_or_default(),
        namespace: std::env::var(NAMESPACE_ENV).unwrap_or_default(),
    };
    step(control, "entering the namespaces");
    let spec = enter_namespaces(bundle)?;
    timings.mark("namespaces");
    // Hashing and compiling may use a thread pool: a joined one, so that this process is back
    // to one thread for its confinement (capabilities and seccomp are per thread).
    let (plan, wasm, engine, serves_http) = wasmcell_core::fork::with_joined_pool(|| {
        prepare(&spec, bundle, id, &containerd, timings, control)
    })?;
    // An HTTP guest's socket: bound here, in the container's network namespace and before the
    // capabilities are dropped (a port under 1024), so that a bad address or one in use fails
    // the Create, naming it.
    let listener = match serves_http {
        true => {
            step(control, "binding the http listen address");
            let bound = wasmcell_wasmtime::http::bind(&plan, &wasm);
            Some(bound.map_err(|e| ShimError::Workload(e.to_string()))?)
        }
        false => None,
    };
    step(control, "confining the process");
    crate::confine::prepare(&spec)?;
    step(control, "entering the container's root");
    let plan = enter_root(&spec, bundle, &plan)?;
    timings.mark("root");
    crate::confine::apply(&spec)?;
    timings.mark("confine");
    Ok(Some(Ready {
        plan,
        wasm,
        engine,
        listener,
        workers: serving_workers(&spec),
    }))
}

/// Threads serving an HTTP guest's requests: as many as the CPUs its container may use (its
/// CFS quota, rounded up), at most those of the node, as a process sized to its limit would.
fn serving_workers(spec: &Spec) -> usize {
    let node = std::thread::available_parallelism().map_or(1, |n| n.get());
    let quota = crate::shared::cpu_time::CpuQuota::of(spec).map(|q| q.whole_cpus());
    quota.unwrap_or(node).clamp(1, node)
}

/// A guest prepared and confined, waiting for its start.
struct Ready {
    plan: RunPlan,
    wasm: WasmBinary,
    engine: WasmtimeEngine,
    /// An HTTP guest's bound socket.
    listener: Option<std::net::TcpListener>,
    /// Threads to serve an HTTP guest with.
    workers: usize,
}

fn prepare(
    spec: &Spec,
    bundle: &Path,
    id: &str,
    containerd: &Containerd,
    timings: &mut Timings,
    control: &mut UnixStream,
) -> Result<(RunPlan, WasmBinary, WasmtimeEngine, bool), LoadError> {
    step(control, "reading the module");
    let crate::artifact::Loaded { plan, wasm, .. } =
        crate::artifact::load(spec, bundle, id, containerd)?;
    timings.mark("module");
    step(control, "compiling the module");
    let cache = CompileCache::node();
    let engine = WasmtimeEngine::with_cache(cache).map_err(wasmcell_core::Error::from)?;
    timings.mark("engine");
    engine
        .prepare(&plan, &wasm)
        .map_err(wasmcell_core::Error::from)?;
    timings.mark("compile");
    let serves_http = engine
        .prepare_guest(&plan, &wasm)
        .map_err(wasmcell_core::Error::from)?
        .serves_http();
    if !serves_http {
        return Ok((plan, wasm, engine, false));
    }
    // A server instantiates per request: the pooling allocator, sized for its concurrency,
    // when the host allows (the compiled code is the same; it is loaded again from the cache).
    let instances = wasmcell_wasmtime::http::HttpOptions::from_env(&plan.env)
        .map(|o| u32::try_from(o.max_concurrent).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let serving = WasmtimeEngine::for_serving(CompileCache::node(), instances)
        .and_then(|serving| serving.prepare(&plan, &wasm).map(|()| serving));
    let engine = match serving {
        Ok(serving) => serving,
        Err(e) => {
            tracing::warn!(error = %e, "no pooling allocator; instances are mapped per request");
            engine
        }
    };
    timings.mark("serving");
    Ok((plan, wasm, engine, true))
}

/// Pivot into the container's root ([`crate::container_root`]) and return the plan as the
/// guest sees the filesystem from there: rootfs `/`, each mount at its destination. The module
/// was read and compiled before, from the host's side.
fn enter_root(spec: &Spec, bundle: &Path, host_plan: &RunPlan) -> Result<RunPlan, ShimError> {
    // Only the root and the mounts are read from it: an artifact's spec may have no args, and
    // its argv is the host plan's anyway.
    let mut spec = spec.clone();
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(host_plan.args.clone()));
    }
    let workload = WorkloadSpec::from_oci(&spec).map_err(|e| ShimError::Workload(e.to_string()))?;
    let rootfs = host_plan
        .preopens
        .iter()
        .find(|p| p.guest == "/")
        .map(|p| p.host.clone())
        .ok_or_else(|| ShimError::Workload("the run plan has no rootfs".into()))?;
    let inside = crate::container_root::enter(&workload, bundle, &rootfs)?;
    let inside = RunPlan::resolve_without_entrypoint(&inside, Path::new("/"))
        .map_err(|e| ShimError::Workload(e.to_string()))?;
    // Only where the directories are changes: argv, env and grants stay the host plan's (an
    // artifact's argv, for one, is not the spec's).
    let mut plan = host_plan.clone();
    plan.preopens = inside.preopens;
    Ok(plan)
}

/// Tell the shim which step of the preparation starts now (`step <what>`), so that a
/// preparation that does not finish in time is reported with the step it was in.
fn step(control: &mut UnixStream, what: &str) {
    let _ = writeln!(control, "step {what}");
}

/// Where the guest process spent its preparation, reported to the shim with `ready`
/// (`ready namespaces=0.31 module=0.20 ...`, milliseconds) so the start path can be measured.
struct Timings {
    last: std::time::Instant,
    parts: Vec<(&'static str, f64)>,
}

impl Timings {
    fn new() -> Self {
        Timings {
            last: std::time::Instant::now(),
            parts: Vec::new(),
        }
    }

    fn mark(&mut self, what: &'static str) {
        let now = std::time::Instant::now();
        self.parts
            .push((what, (now - self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }

    fn report(&self) -> String {
        self.parts
            .iter()
            .map(|(k, ms)| format!("{k}={ms:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Load the bundle's spec and enter the namespaces it names; returns the spec.
fn enter_namespaces(bundle: &Path) -> Result<Spec, ShimError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path)
        .map_err(|e| ShimError::Workload(format!("failed to load {}: {e}", path.display())))?;
    crate::namespaces::enter(&spec)?;
    Ok(spec)
}

/// Move this process into its cgroup by writing `0` to each `--cgroup-tasks` file. Only the
/// calling thread moves, so this must run before any other thread starts.
fn join_cgroup(args: &[String]) -> Result<(), ShimError> {
    let files = args
        .windows(2)
        .filter(|w| w[0] == "--cgroup-tasks")
        .map(|w| Path::new(&w[1]));
    for file in files {
        std::fs::write(file, "0").map_err(|e| {
            ShimError::io(
                format!("failed to join cgroup through {}", file.display()),
                e,
            )
        })?;
    }
    Ok(())
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}
