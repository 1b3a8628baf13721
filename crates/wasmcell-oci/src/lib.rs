//! wasmcell-oci: a runc-compatible OCI runtime. High-level runtimes (containerd's runc shim,
//! Podman through conmon, CRI-O, Docker) drive it with the runc command line; each container
//! runs either as Wasm, through wasmcell-core and Wasmtime inside a fully set-up Linux container,
//! or as an ordinary Linux container, decided per container by
//! [`wasmcell_core::workload_kind`].
//!
//! Containers are built, started, signalled and deleted by youki's `libcontainer` (namespaces,
//! cgroups, rootfs, mounts, pivot_root, seccomp, console socket, pid file); the
//! [`executor::WasmcellExecutor`] decides what the container's init process runs. Each verb is a
//! file in `src/commands/`.

pub mod commands;
pub mod container;
mod error;
pub mod executor;
pub mod fork;
pub mod logging;

use std::path::PathBuf;

use clap::Parser;

pub use error::OciError;

/// Options every verb takes, as runc's global flags.
#[derive(Debug, clap::Args)]
pub struct GlobalOpts {
    /// Directory holding the containers' state.
    #[arg(long, global = true, default_value = container::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (runc's JSON lines).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: logging::LogFormat,
    /// Manage cgroups through systemd (`slice:prefix:name` cgroup paths).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Log at debug level.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility (`true`, `false` or `auto`); wasmcell-oci runs as root.
    #[arg(long, global = true, hide = true)]
    pub rootless: Option<String>,
}

/// The runc command line.
#[derive(Debug, Parser)]
#[command(
    name = wasmcell_core::names::OCI_BINARY,
    version,
    about = "runc-compatible OCI runtime that runs Wasm and Linux containers"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: commands::Command,
}

/// Parse the command line, run the verb, report an error once; returns the process exit status.
///
/// First, as runc and youki do against CVE-2019-5736, the process re-executes itself from a
/// sealed anonymous copy of its binary, so that a container process (which the init process
/// becomes, and which a Wasm container's init process stays) can never reach the host's binary
/// through `/proc/<pid>/exe`.
pub fn main() -> i32 {
    if let Err(e) = pentacle::ensure_sealed() {
        eprintln!("wasmcell-oci: failed to re-execute from a sealed copy of the binary: {e}");
        return 1;
    }
    let cli = Cli::parse();
    let to_stderr = match logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        Ok(to_stderr) => to_stderr,
        Err(e) => {
            eprintln!("wasmcell-oci: {}", e.chain());
            return 1;
        }
    };
    tracing::debug!(args = ?std::env::args().collect::<Vec<_>>(), "invoked");
    match cli.command.execute(&cli.global) {
        Ok(code) => code,
        Err(e) => {
            let message = e.chain();
            tracing::error!("{message}");
            if !to_stderr {
                eprintln!("wasmcell-oci: {message}");
            }
            1
        }
    }
}
