//! Shared mode: one manager process per containerd runs every Wasm container in process.
//!
//! containerd knows the shared runtime as `io.containerd.wasmcell-shared.v1`, so it runs this
//! binary as `containerd-shim-wasmcell-shared-v1` (a link to it). Its `start` makes sure the
//! manager for this containerd runs (starting it under a lock, so never two) and answers with
//! the manager's address; no process exists per container. The manager serves the Task API on
//! an async executor: each container is an instance with its own Wasmtime store, WASI context
//! and stdio, its memory capped by the container's limit, its CPU time metered, yielding at
//! every epoch tick so a spinning guest cannot starve the others ([`in_process`]). A module is
//! compiled once per digest and shared by every instance that runs it.
//!
//! If the manager dies, containerd's ttrpc connections close and it runs `delete` for every
//! task, which reports each as killed (137) and removes its rootfs mount and state file; the
//! next `start` launches a fresh manager. The manager leaves on its own after
//! [`IDLE_EXIT`] without containers, and only then: it outlives containerd's restarts and
//! stops, keeping its guests' events until containerd takes them.

pub(crate) mod capacity;
pub(crate) mod compile_helper;
pub(crate) mod cpu_time;
mod create;
mod http_listener;
pub(crate) mod in_process;
mod manager;
mod output;
mod own_cgroup;
mod prepare;
mod unpin;

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) use create::SharedMode;
pub(crate) use manager::{serve, start};

use crate::task::lock;

/// Set in the environment of the manager process `start` launches.
pub(crate) const MANAGER_ENV: &str = "WASMCELL_SHIM_MANAGER";

/// The runtime type of shared mode.
pub use wasmcell_core::names::SHARED_RUNTIME_TYPE;

/// The binary name containerd derives from [`SHARED_RUNTIME_TYPE`].
pub use wasmcell_core::names::SHARED_SHIM_BINARY as SHARED_BINARY_NAME;

/// How long the manager stays without containers before it exits;
/// `WASMCELL_MANAGER_IDLE_SECS` overrides it.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(60);

/// True when the binary was run under the shared runtime's name.
pub(crate) fn invoked_as_shared(argv0: &str) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(SHARED_BINARY_NAME))
}

/// How many containers the manager holds and since when that number is what it is.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            state: Mutex::new((0, Instant::now())),
        }
    }

    pub(crate) fn changed(&self, containers: usize) {
        *lock(&self.state) = (containers, Instant::now());
    }

    /// True once the manager has held no container for `idle`.
    pub(crate) fn idle_for(&self, idle: Duration) -> bool {
        let (count, since) = *lock(&self.state);
        count == 0 && since.elapsed() >= idle
    }
}
