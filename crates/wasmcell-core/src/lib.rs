//! wasmcell-core: what a Wasm container host links to.
//!
//! The library turns a workload description into a [`RunPlan`] that an [`Engine`] executes:
//!
//! 1. [`WorkloadSpec::from_oci`] parses and validates an OCI runtime spec (`config.json`) with no
//!    I/O: entrypoint, args, env, cwd, mounts, memory limit.
//! 2. [`RunPlan::resolve`] resolves that spec against the filesystem: the entrypoint inside the
//!    rootfs (symlinks cannot leave it; a [`ModuleSource`]), and one [`Preopen`] per directory
//!    the guest may reach.
//!    [`RunPlan::for_module`] builds a plan for a bare module plus explicit grants instead.
//! 3. [`ModuleSource::read`] ([`WasmBinary::read`] for a bare module) tells a core module from a component by its header and computes the
//!    module's digest, without keeping its bytes (an engine that finds compiled code needs none).
//! 4. An [`Engine`] runs the plan with the given [`Stdio`] and returns a [`GuestExit`].
//!
//! Nothing is granted by default: the guest sees the rootfs and the bind mounts of the bundle, each
//! read-only where the bundle says so, and nothing else of the host.
#![warn(missing_docs)]

mod digest;
mod engine;
mod error;
pub mod fork;
mod module;
pub mod names;
mod open_in_root;
mod plan;
mod rootfs_module;
mod secure_join;
mod spec;
mod stdio;
mod workload_kind;

pub use engine::{Engine, EngineError, GuestExit, Interrupt};
pub use error::Error;
pub use module::{looks_like_wasm, FetchBytes, ModuleError, ModuleKind, ModuleSource, WasmBinary};
pub use plan::{Access, DirGrant, Preopen, ResolveError, RunPlan};
pub use rootfs_module::RootfsModule;
pub use secure_join::secure_join;
pub use spec::{MountSpec, SpecError, WorkloadSpec, NETWORK_ANNOTATION};
pub use stdio::{Stdio, StdioStream};
pub use workload_kind::{
    workload_kind, WorkloadKind, CONTAINER_TYPE_ANNOTATION, CRUN_HANDLER_ANNOTATION,
    WASM_VARIANT_ANNOTATION,
};

/// Environment variable: how many seconds a runtime waits for a container to be set up (the
/// module read and compiled, the process ready) before its create fails, naming the step.
pub const CREATE_TIMEOUT_ENV: &str = "WASMCELL_CREATE_TIMEOUT";

/// How long a runtime waits for a container's set-up: [`CREATE_TIMEOUT_ENV`] when it holds a
/// whole number of seconds above zero, else 120 s (kubelet's own runtime request timeout).
pub fn create_timeout() -> std::time::Duration {
    std::env::var(CREATE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(
            std::time::Duration::from_secs(120),
            std::time::Duration::from_secs,
        )
}

/// Environment variable: the largest module (bytes) a runtime reads.
pub const MAX_MODULE_BYTES_ENV: &str = "WASMCELL_MAX_MODULE_BYTES";

/// The largest module a runtime reads, compiles and holds: [`MAX_MODULE_BYTES_ENV`] when it holds
/// a whole number above zero, else 512 MiB (the cap on an artifact's Wasm layer).
pub fn max_module_bytes() -> u64 {
    std::env::var(MAX_MODULE_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(512 << 20)
}

/// Exit status reported when the workload could not be prepared (bad bundle or config).
pub const EXIT_CONFIG_ERROR: i32 = 125;
/// Exit status reported when the entrypoint exists but cannot run (not Wasm, invalid, no export).
pub const EXIT_NOT_RUNNABLE: i32 = 126;
/// Exit status reported when the entrypoint does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status reported when the guest trapped (as a process killed by SIGABRT would).
pub const EXIT_TRAP: i32 = 134;
/// Exit status reported when the guest hit its memory limit (as for a container the kernel
/// OOM-killed: 128 + SIGKILL).
pub const EXIT_OOM: i32 = EXIT_KILLED;
/// Exit status of a workload killed (128 + SIGKILL), or ended before it started.
pub const EXIT_KILLED: i32 = 128 + 9;
