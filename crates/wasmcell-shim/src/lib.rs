//! containerd shim v2 for wasmcell: `containerd-shim-wasmcell-v1`, runtime type
//! `io.containerd.wasmcell.v1`.
//!
//! containerd runs the binary with `start` (answer with a ttrpc address, starting the long-lived
//! shim server if needed), `delete` (clean up after a shim that died), or with no action (be the
//! server). The server answers containerd's Task API ([`task`]), written once over three
//! backends ([`backend`]): in normal mode each container's guest runs in its own process, a
//! re-exec of this binary as `guest` ([`guest`]), placed in the container's cgroup; in shared
//! mode ([`shared`]) it is an instance inside one manager process; Linux containers run by runc.
#![warn(missing_docs)]

mod artifact;
mod backend;
mod bootstrap;
mod cgroup;
mod cgroup_path;
mod confine;
mod container_root;
mod error;
mod events;
mod guest;
mod linux;
mod namespaces;
mod pidfd;
mod reaper;
mod rootfs;
mod shared;
mod state_file;
mod stdio;
mod task;

pub use error::ShimError;
pub use shared::{SHARED_BINARY_NAME, SHARED_RUNTIME_TYPE};

/// The runtime type containerd knows this shim by.
pub use wasmcell_core::names::RUNTIME_TYPE;

/// Entry point of `containerd-shim-wasmcell-v1`; returns the process exit status.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(guest::SUBCOMMAND) {
        return guest::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(shared::compile_helper::SUBCOMMAND) {
        return shared::compile_helper::main(&args[2..]);
    }
    bootstrap::main(&args)
}
