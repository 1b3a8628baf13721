//! The Linux-container backend: a pod's sandbox, or a container whose entrypoint is not Wasm,
//! run by runc (see linux.rs). Its init process is reparented to the shim (a subreaper), so
//! its exit reaches the same reaper as a guest process's.

use std::time::Instant;

use oci_spec::runtime::Spec;

use crate::backend::Process;
use crate::cgroup::Cgroup;
use crate::linux::Runc;
use crate::reaper::Reaper;
use crate::stdio::GuestStdio;
use crate::task::Request;
use crate::ShimError;

/// A Linux container created by runc.
#[derive(Debug)]
pub(crate) struct RuncContainer {
    pub(crate) process: Process,
    runc: Runc,
    reaper: Reaper,
    /// runc's cgroup for the container, read for stats and OOM kills (runc owns it).
    pub(crate) cgroup: Option<Cgroup>,
}

impl RuncContainer {
    /// `runc create` on the bundle (blocking).
    pub(crate) fn create(req: &Request, spec: &Spec, reaper: &Reaper) -> Result<Self, ShimError> {
        tracing::info!(container = %req.id, namespace = %req.namespace, "running as a Linux container");
        let runc = Runc::new(&req.namespace);
        let stdio = GuestStdio::open(&req.stdin, &req.stdout, &req.stderr)?;
        let spawned_at = Instant::now();
        let pid = runc.create(reaper, &req.id, &req.bundle, stdio)?;
        Ok(RuncContainer {
            process: Process::new(pid, spawned_at),
            runc,
            reaper: reaper.clone(),
            cgroup: Cgroup::for_spec(spec, &req.id).ok(),
        })
    }

    /// `runc start` (blocking).
    pub(crate) fn start(&self, req: &Request) -> Result<(), ShimError> {
        self.runc.start(&self.reaper, &req.id, &req.bundle)
    }

    /// Whether an exit with `code` was the kernel's OOM kill.
    pub(crate) fn exited(&self, code: i32) -> bool {
        code == wasmcell_core::EXIT_KILLED
            && self.cgroup.as_ref().is_some_and(|cg| cg.oom_kills() > 0)
    }

    /// `runc delete --force` (blocking): runc's state and cgroup go with it.
    pub(crate) fn release(&self, req: &Request) {
        if let Err(e) = self.runc.delete(&self.reaper, &req.id, &req.bundle) {
            tracing::warn!(container = %req.id, error = %e, "runc delete failed");
        }
    }
}
