//! `create --bundle B [--pid-file F] [--console-socket S] ID`: set the container up and leave its
//! init process waiting for `start`.

use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;
use wasmcell_core::{workload_kind, Engine, ModuleSource, RunPlan, WorkloadKind};
use wasmcell_wasmtime::{CompileCache, CompiledCode, WasmtimeEngine};

use crate::container::container_dir;
use crate::executor::WasmcellExecutor;
use crate::fork::{build_container, Progress};
use crate::{GlobalOpts, OciError};

/// `create` flags.
#[derive(Debug, clap::Args)]
pub struct Create {
    /// Path to the bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init process's pid (as seen from the host) to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pseudo-terminal's master fd (when process.terminal is set).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root to jail the process in the rootfs.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for compatibility; no session keyring is created.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra file descriptors (from fd 3) to the container's process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id.
    pub id: String,
}

impl Create {
    /// Run `create`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        create_container(&self, global).map(|_| ())
    }
}

/// Create the container of `args`; on failure nothing of it is left under `--root`.
pub(crate) fn create_container(args: &Create, global: &GlobalOpts) -> Result<Container, OciError> {
    let id = args.id.as_str();
    let dir = container_dir(&global.root, id)?;
    let (bundle, spec) = load_bundle(&args.bundle)?;
    std::fs::create_dir_all(&global.root).map_err(|source| OciError::Io {
        action: "create state root",
        path: global.root.clone(),
        source,
    })?;
    if dir.exists() {
        return Err(OciError::Exists { id: id.to_string() });
    }

    let kind = workload_kind(&spec, &bundle);
    tracing::info!(container = %id, kind = kind.as_str(), bundle = %bundle.display(), "creating");
    let progress = Progress::new(id)?;
    let mut executor = WasmcellExecutor::new(kind).with_progress(progress.writer());
    if kind == WorkloadKind::Wasm {
        executor = executor.with_code(compile_on_host(id, &bundle)?);
    }

    // The fork: see crate::fork for what happens on either side of it.
    let built = build_container(id, "create", &progress, || {
        builder(
            id,
            executor,
            &global.root,
            args.pid_file.as_ref(),
            args.console_socket.as_ref(),
            args.preserve_fds,
        )?
        .as_init(&bundle)
        .with_systemd(global.systemd_cgroup)
        .with_detach(true)
        .with_no_pivot(args.no_pivot)
        .build()
    });
    match built {
        Ok(container) => {
            tracing::info!(container = %id, pid = ?container.pid(), "created");
            Ok(container)
        }
        Err(e) => {
            remove_leftovers(&dir, id);
            Err(e)
        }
    }
}

/// libcontainer's builder for container `id`, with this runtime's executor and the flags
/// `create` and `exec` share.
pub(crate) fn builder(
    id: &str,
    executor: WasmcellExecutor,
    root: &Path,
    pid_file: Option<&PathBuf>,
    console_socket: Option<&PathBuf>,
    preserve_fds: i32,
) -> Result<ContainerBuilder, LibcontainerError> {
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(root)
        .and_then(|b| b.with_pid_file(pid_file))
        .map(|b| {
            b.with_console_socket(console_socket)
                .with_preserved_fds(preserve_fds)
        })
        .and_then(|b| b.validate_id())
}

/// The canonical bundle path and its parsed `config.json`.
fn load_bundle(bundle: &Path) -> Result<(PathBuf, Spec), OciError> {
    let invalid = |reason: String| OciError::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let canonical = bundle
        .canonicalize()
        .map_err(|e| invalid(format!("cannot open the directory: {e}")))?;
    let config = canonical.join("config.json");
    let spec = Spec::load(&config).map_err(|e| invalid(format!("cannot load config.json: {e}")))?;
    Ok((canonical, spec))
}

/// Before anything is set up, resolve the Wasm workload on the host and compile its module
/// through the node's precompile cache (which the container cannot see), so the usual mistakes
/// fail `create` with a message naming the module and the container's init process only loads
/// the code (it is handed over in memory across the fork into the container).
fn compile_on_host(id: &str, bundle: &Path) -> Result<CompiledCode, OciError> {
    let workload = |source: wasmcell_core::Error| OciError::Workload {
        id: id.to_string(),
        source,
    };
    let (plan, source) = RunPlan::from_bundle(bundle).map_err(workload)?;
    compile_plan_on_host(id, &plan, &source)
}

/// Compile the module at `source` for `plan` (host paths) through the node's precompile cache.
///
/// This process forks the container's init process next, so the work runs on a thread pool
/// that is joined before this returns, and the engine (with its epoch ticker thread) is dropped
/// here: nothing of this process but its one thread is left at the fork (see crate::fork).
pub(crate) fn compile_plan_on_host(
    id: &str,
    plan: &RunPlan,
    source: &ModuleSource,
) -> Result<CompiledCode, OciError> {
    let workload = |source: wasmcell_core::Error| OciError::Workload {
        id: id.to_string(),
        source,
    };
    wasmcell_core::fork::with_joined_pool(|| {
        let wasm = source.read().map_err(|e| workload(e.into()))?;
        let cache = CompileCache::node();
        let engine = WasmtimeEngine::with_cache(cache).map_err(|e| workload(e.into()))?;
        engine
            .prepare(plan, &wasm)
            .map_err(|e| workload(e.into()))?;
        engine.compiled_code(&wasm).map_err(|e| workload(e.into()))
    })
}

/// Make sure a failed create leaves no state: libcontainer cleans up after itself, this removes
/// anything it could not (the directory is ours: it did not exist before this create).
fn remove_leftovers(dir: &Path, id: &str) {
    if !dir.exists() {
        return;
    }
    if let Ok(mut container) = Container::load(dir.to_path_buf()) {
        if let Err(e) = container.delete(true) {
            tracing::warn!(container = %id, "cleanup after failed create: {e}");
        }
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(container = %id, dir = %dir.display(), "cleanup after failed create: {e}");
        }
    }
}
