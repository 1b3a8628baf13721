//! What runs a container's workload, one of three backends behind one [`Backend`] enum: a
//! guest process of its own (normal mode, [`process`]), an instance inside the manager process
//! (shared mode, [`crate::shared::in_process`]), or runc (Linux containers, [`runc`]).
//!
//! The Task service (crate::task) decides everything the Task API says; a backend only runs,
//! signals, measures and releases its workload. What differs between them by design:
//! - the task pid: the guest's or runc init's own pid, or the manager's for an instance;
//! - signals: a process gets the signal from the kernel (and handles it as it likes); an
//!   instance is stopped by any signal but those a process ignores by default (see
//!   `in_process.rs`);
//! - where a trap message goes: the container's stderr for both Wasm backends (the guest
//!   process writes it itself; the manager writes it for an instance), runc's own for Linux;
//! - stats: the container's cgroup for a process, the manager's meters for an instance.

pub(crate) mod process;
pub(crate) mod runc;

use std::time::Instant;

use containerd_shim::protos::cgroups::metrics::Metrics;

use crate::pidfd::PidFd;
use crate::shared::in_process::InProcessGuest;
use crate::ShimError;

pub(crate) use process::GuestProcess;
pub(crate) use runc::RuncContainer;

/// What runs a container.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A guest process of its own, in the container's cgroup (normal mode).
    Process(GuestProcess),
    /// An instance inside the manager process (shared mode).
    InProcess(InProcessGuest),
    /// A Linux container, run by runc (both modes).
    Runc(RuncContainer),
}

impl Backend {
    /// The task's pid, as containerd is told.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Backend::Process(p) => p.process.pid,
            Backend::Runc(r) => r.process.pid,
            Backend::InProcess(_) => std::process::id(),
        }
    }

    /// The process whose exit the reaper reports, for the backends that have one.
    pub(crate) fn process(&self) -> Option<&Process> {
        match self {
            Backend::Process(p) => Some(&p.process),
            Backend::Runc(r) => Some(&r.process),
            Backend::InProcess(_) => None,
        }
    }

    /// The cgroup recorded in the bundle's state file, removed by `delete` after a dead shim.
    pub(crate) fn recorded_cgroup(&self) -> Option<&std::path::Path> {
        match self {
            Backend::Process(p) => Some(p.cgroup.path()),
            Backend::Runc(r) => r.cgroup.as_ref().map(|c| c.path()),
            Backend::InProcess(_) => None,
        }
    }

    /// Whether its calls wait on another program (runc): they are made off the executor.
    pub(crate) fn blocks(&self) -> bool {
        matches!(self, Backend::Runc(_))
    }

    /// The container's resource usage.
    pub(crate) fn metrics(&self, id: &str) -> Result<Metrics, ShimError> {
        match self {
            Backend::Process(p) => p.cgroup.metrics(),
            Backend::Runc(r) => match &r.cgroup {
                Some(cgroup) => cgroup.metrics(),
                None => Err(ShimError::FailedPrecondition(format!(
                    "container {id} has no cgroup"
                ))),
            },
            Backend::InProcess(g) => Ok(g.metrics()),
        }
    }

    /// WASI resources (files, directories, streams) an instance holds: its share of the
    /// manager's descriptors; 0 for the others.
    pub(crate) fn resources(&self) -> u64 {
        match self {
            Backend::InProcess(g) => g.resources(),
            _ => 0,
        }
    }
}

/// A process the shim started (or runc did), signalled through a pidfd so that a signal never
/// reaches another process that got its pid after it was reaped.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// Just before the process was spawned: an exit reaped earlier is another process's.
    pub(crate) spawned_at: Instant,
    pidfd: Option<PidFd>,
}

impl Process {
    pub(crate) fn new(pid: u32, spawned_at: Instant) -> Self {
        let pidfd = PidFd::open(pid)
            .inspect_err(|e| tracing::warn!(pid, error = %e, "no pidfd; signals go by pid"))
            .ok();
        Process {
            pid,
            spawned_at,
            pidfd,
        }
    }

    /// Send `signal` (0 checks that the process exists).
    pub(crate) fn signal(&self, signal: i32) -> std::io::Result<()> {
        match &self.pidfd {
            Some(pidfd) => pidfd.signal(signal),
            None => {
                let pid = nix::libc::pid_t::try_from(self.pid).map_err(std::io::Error::other)?;
                // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
                #[allow(unsafe_code)]
                let sent = unsafe { nix::libc::kill(pid, signal) };
                if sent < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
        }
    }
}
