//! The two modes of the shim, as the Task service sees them: how Create builds a container's
//! backend, and what the process does as containers come and go and containerd asks it to
//! shut down. Everything else is the same in both.

use std::sync::Arc;

use containerd_shim::api::CreateTaskRequest;
use tokio::sync::Notify;
use wasmcell_core::WorkloadKind;

use crate::artifact::Containerd;
use crate::backend::{Backend, GuestProcess, RuncContainer};
use crate::reaper::Reaper;
use crate::rootfs::on_rootfs;
use crate::shared::SharedMode;
use crate::task::container::Request;
use crate::task::service::off_executor;
use crate::ShimError;

/// How the shim process runs its containers.
#[derive(Debug)]
pub(crate) enum Mode {
    /// One shim per pod (or container), each Wasm guest in a process of its own.
    Normal(NormalMode),
    /// One manager per containerd, each Wasm guest an instance inside it.
    Shared(SharedMode),
}

/// Normal mode's part.
#[derive(Debug)]
pub(crate) struct NormalMode {
    /// containerd's gRPC socket, where a guest process looks up an artifact image.
    pub(crate) containerd_address: String,
    /// Notified when containerd asks the shim to shut down and no container is left.
    pub(crate) exit: Arc<Notify>,
}

impl Mode {
    /// Build the backend of the container `req` asks for (blocking work runs off the executor);
    /// `holders` names who holds most of a shared manager, should it refuse.
    pub(crate) async fn build(
        &self,
        req: Request,
        create: CreateTaskRequest,
        reaper: &Reaper,
        holders: impl FnOnce() -> String,
    ) -> Result<Backend, ShimError> {
        let id = req.id.clone();
        let built = match self {
            Mode::Normal(normal) => normal.build(req, create, reaper).await,
            Mode::Shared(shared) => shared.build(req, create, reaper, holders).await,
        };
        built.map_err(|e| name_container(&id, e))
    }

    /// The service now holds `count` containers.
    pub(crate) fn counted(&self, count: usize) {
        if let Mode::Shared(shared) = self {
            shared.counted(count);
        }
    }

    /// A container was deleted; `count` are left.
    pub(crate) fn deleted(&self, count: usize) {
        if let Mode::Shared(shared) = self {
            shared.deleted(count);
        }
    }

    /// containerd's Shutdown, with `count` containers left: a normal-mode shim leaves once it
    /// has none; a manager outlives its containers and leaves on its own once idle.
    pub(crate) fn shutdown(&self, count: usize) {
        match self {
            Mode::Normal(normal) if count == 0 => {
                tracing::info!("no container left; shutting down");
                normal.exit.notify_one();
            }
            Mode::Normal(_) | Mode::Shared(_) => {}
        }
    }
}

impl NormalMode {
    /// Mount the rootfs, read the spec, then start a guest process and wait until it has
    /// prepared the workload, or have runc create a Linux container.
    async fn build(
        &self,
        req: Request,
        create: CreateTaskRequest,
        reaper: &Reaper,
    ) -> Result<Backend, ShimError> {
        let containerd = Containerd {
            address: self.containerd_address.clone(),
            namespace: req.namespace.clone(),
        };
        let reaper = reaper.clone();
        let span = tracing::Span::current();
        off_executor(move || {
            let _entered = span.enter();
            on_rootfs(&create, |bundle| match bundle.kind {
                WorkloadKind::Linux => {
                    RuncContainer::create(&req, bundle.spec, &reaper).map(Backend::Runc)
                }
                WorkloadKind::Wasm => {
                    GuestProcess::spawn(&req, bundle.spec, &containerd).map(Backend::Process)
                }
            })
        })
        .await
    }
}

/// A workload error names its container (once).
fn name_container(id: &str, e: ShimError) -> ShimError {
    match e {
        ShimError::Workload(msg) if !msg.starts_with(&format!("container {id}")) => {
            ShimError::Workload(format!("container {id}: {msg}"))
        }
        other => other,
    }
}
