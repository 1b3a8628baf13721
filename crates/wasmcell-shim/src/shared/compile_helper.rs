//! Compiling a module for the manager in a process of its own.
//!
//! The first time a node sees a module, Cranelift compiles it: seconds of CPU and, for a hostile
//! or huge module, unbounded memory. In the manager that memory would be taken from every guest
//! of the node, and a crash in the compiler would end them all. So the manager runs the compile
//! in a helper (this binary, `compile ROOT MODULE`, started by `Command::spawn`: a fork followed
//! at once by exec, nothing of the manager runs in the child), which writes the code to the
//! node's precompile cache; the manager then maps it from there like any cached module.
//!
//! The helper's data memory is capped (`RLIMIT_DATA`, [`COMPILE_MEMORY_ENV`], default 2 GiB),
//! its OOM score is the highest (within the manager's cgroup it is the one the kernel stops),
//! and it is killed at the create timeout. Any of these fails only the Create, with a message
//! naming the module and the limit.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Instant;

use anyhow::Context as _;
use wasmcell_core::WasmBinary;
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine};

use crate::bootstrap::one_message;
use crate::reaper::Reaper;
use crate::ShimError;

/// The helper's subcommand: `containerd-shim-wasmcell-v1 compile ROOT MODULE`.
pub(crate) const SUBCOMMAND: &str = "compile";

/// Environment variable: the most data memory (bytes) a compile may use.
pub(crate) const COMPILE_MEMORY_ENV: &str = "WASMCELL_COMPILE_MEMORY_MAX";

/// [`COMPILE_MEMORY_ENV`], else 2 GiB.
fn compile_memory_max() -> u64 {
    std::env::var(COMPILE_MEMORY_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &u64| n > 0)
        .unwrap_or(2 << 30)
}

/// The helper: compile MODULE (a file inside directory ROOT) into the node's precompile cache.
/// Exits 0 when the code is there, 1 with the reason on stderr otherwise.
pub(crate) fn main(args: &[String]) -> i32 {
    let [root, module] = args else {
        eprintln!("usage: {SUBCOMMAND} ROOT MODULE");
        return 2;
    };
    match compile(Path::new(root), Path::new(module)) {
        Ok(()) => 0,
        Err(e) => {
            // The manager puts this line in the Create's error (`compile_in_helper`).
            eprintln!("{e:#}");
            1
        }
    }
}

/// The helper's work. The module's and the engine's errors already name the module and their
/// cause, and are passed on as they are.
fn compile(root: &Path, module: &Path) -> anyhow::Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    // The first the kernel stops if the manager's cgroup runs out of memory.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let max = compile_memory_max();
    setrlimit(Resource::RLIMIT_DATA, max, max).context("failed to cap the compile's memory")?;
    let wasm = WasmBinary::read_in_root(root, module).map_err(one_message)?;
    let cache = CompileCache::node();
    let engine = WasmtimeEngine::with_cache(cache).map_err(one_message)?;
    engine.precompile(&wasm).map_err(one_message)
}

/// In the manager (blocking): have a helper compile `module` (inside `root`) for container
/// `id` into the node's cache, waiting for it at most until the create timeout.
pub(crate) fn compile_in_helper(
    reaper: &Reaper,
    root: &Path,
    module: &Path,
    id: &str,
) -> Result<(), ShimError> {
    let failed = |why: String| {
        ShimError::Workload(format!(
            "container {id}: compiling {}: {why}",
            module.display()
        ))
    };
    let exe =
        std::env::current_exe().map_err(|e| failed(format!("cannot find the shim binary: {e}")))?;
    let timeout = wasmcell_core::create_timeout();
    let spawned = Instant::now();
    // A fork followed at once by exec (no pre_exec hook): the child runs nothing of ours.
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(root)
        .arg(module)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("failed to start the compile helper: {e}")))?;
    let pid = child.id();
    // Opened before it can have been reaped: the kill below reaches this process only.
    let pidfd = crate::pidfd::PidFd::open(pid).ok();
    let (tx, rx) = channel();
    reaper.on_exit(pid as i32, spawned, move |code| {
        let _ = tx.send(code);
    });
    let code = match rx.recv_timeout(timeout) {
        Ok(code) => code,
        Err(_) => {
            if let Some(fd) = &pidfd {
                let _ = fd.signal(libc::SIGKILL);
            }
            return Err(failed(format!(
                "the compile took more than {} s ({} sets the limit)",
                timeout.as_secs(),
                wasmcell_core::CREATE_TIMEOUT_ENV
            )));
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    // SIGKILL (the OOM killer), SIGABRT or Rust's own report of an allocation refused by
    // RLIMIT_DATA.
    let out_of_memory = code == 137 || code == 134 || stderr.contains("memory allocation");
    match code {
        0 => Ok(()),
        _ if out_of_memory => Err(failed(format!(
            "the compile ran out of memory (at most {} bytes; {COMPILE_MEMORY_ENV} sets it)",
            compile_memory_max()
        ))),
        code => Err(failed(format!(
            "the compile helper failed (exit {code}): {}",
            stderr.trim()
        ))),
    }
}
