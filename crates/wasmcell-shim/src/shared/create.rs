//! Shared mode's part of the Task service: how the manager builds a container (a Wasm guest
//! prepared in process, or a Linux container by runc), and what it does as containers come
//! and go.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::CreateTaskRequest;
use wasmcell_wasmtime::WasmtimeEngine;

use crate::artifact::Containerd;
use crate::backend::{Backend, RuncContainer};
use crate::reaper::Reaper;
use crate::rootfs::unmount_rootfs;
use crate::shared::capacity::Capacity;
use crate::shared::in_process::InProcessGuest;
use crate::shared::prepare::{inspect, Inspected};
use crate::shared::Activity;
use crate::task::container::Request;
use crate::task::service::off_executor;
use crate::ShimError;

/// The manager's mode: its engine and guests' executor, and the limits on its Creates.
#[derive(Debug)]
pub(crate) struct SharedMode {
    engine: Arc<WasmtimeEngine>,
    /// The executor guests run on (not the one serving requests).
    guests: tokio::runtime::Handle,
    /// Whether the manager can take more containers.
    capacity: Arc<Capacity>,
    activity: Arc<Activity>,
    /// containerd's gRPC socket, where artifact images are looked up.
    containerd_address: String,
    /// Creates preparing at once (see [`prepare_slots`]).
    prepare_slots: Arc<tokio::sync::Semaphore>,
}

/// How many Creates may prepare their guest at once: four per CPU, at least eight. Each holds a
/// blocking thread while it mounts, reads and compiles; the rest wait (within the create
/// timeout), so that guests' file I/O and Linux containers keep threads of the blocking pool.
fn prepare_slots() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (4 * cpus).max(8)
}

impl SharedMode {
    pub(crate) fn new(
        engine: Arc<WasmtimeEngine>,
        guests: tokio::runtime::Handle,
        capacity: Arc<Capacity>,
        activity: Arc<Activity>,
        containerd_address: String,
    ) -> Self {
        SharedMode {
            engine,
            guests,
            capacity,
            activity,
            containerd_address,
            prepare_slots: Arc::new(tokio::sync::Semaphore::new(prepare_slots())),
        }
    }

    /// Tell the idle timer how many containers (Wasm and Linux) the manager runs.
    pub(crate) fn counted(&self, count: usize) {
        self.activity.changed(count);
    }

    /// A container left: count again, and look again whether the manager has room.
    pub(crate) fn deleted(&self, count: usize) {
        self.activity.changed(count);
        let capacity = self.capacity.clone();
        tokio::task::spawn_blocking(move || capacity.refresh());
    }

    /// Build the container: a Wasm guest prepared within the create timeout, or a Linux
    /// container created by runc on the rootfs the decision was made on.
    pub(crate) async fn build(
        &self,
        req: Request,
        create: CreateTaskRequest,
        reaper: &Reaper,
        holders: impl FnOnce() -> String,
    ) -> Result<Backend, ShimError> {
        // Who holds the most, named if this Create is refused (looked up only when it may be).
        let holders = if self.capacity.nearly_full() {
            holders()
        } else {
            String::new()
        };
        match self
            .inspect_and_prepare(&req, create, reaper, holders)
            .await?
        {
            Inspected::Wasm(prepared) => Ok(Backend::InProcess(InProcessGuest::new(
                prepared,
                self.engine.clone(),
                self.guests.clone(),
            ))),
            Inspected::Linux { mounted, spec } => {
                let reaper = reaper.clone();
                off_executor(move || {
                    let created = RuncContainer::create(&req, &spec, &reaper);
                    if created.is_err() && mounted {
                        unmount_rootfs(&req.bundle);
                    }
                    created.map(Backend::Runc)
                })
                .await
            }
        }
    }

    /// Mount the rootfs, read the spec, decide Wasm or Linux and, for Wasm, read, compile and
    /// link the module and open its stdio: all of it file work, done off the executor on one
    /// of the [`prepare_slots`] (so that a burst of Creates, or a module slow to compile, cannot
    /// take every blocking thread), within the create timeout. A Create that passes the timeout
    /// fails naming it; its work, still running, cleans up after itself when it ends.
    async fn inspect_and_prepare(
        &self,
        req: &Request,
        create: CreateTaskRequest,
        reaper: &Reaper,
        holders: String,
    ) -> Result<Inspected, ShimError> {
        let timeout = wasmcell_core::create_timeout();
        let engine = self.engine.clone();
        let containerd = Containerd {
            address: self.containerd_address.clone(),
            namespace: req.namespace.clone(),
        };
        let (capacity, reaper) = (self.capacity.clone(), reaper.clone());
        let bundle = PathBuf::from(&req.bundle);
        // Waiting for a slot counts against the timeout too.
        let deadline = tokio::time::Instant::now() + timeout;
        let too_long = || {
            ShimError::Workload(format!(
                "preparing the guest (reading, compiling and linking its module) took more than {} s ({} sets the limit)",
                timeout.as_secs(),
                wasmcell_core::CREATE_TIMEOUT_ENV
            ))
        };
        let slot = tokio::time::timeout_at(deadline, self.prepare_slots.clone().acquire_owned());
        let slot = match slot.await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => {
                return Err(ShimError::FailedPrecondition(
                    "the manager is shutting down".into(),
                ))
            }
            Err(_) => return Err(too_long()),
        };
        let span = tracing::debug_span!("prepare");
        let mut work = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            span.in_scope(|| {
                capacity.admit(&create.id, &holders)?;
                inspect(&engine, &containerd, &reaper, &create)
            })
        });
        match tokio::time::timeout_at(deadline, &mut work).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => Err(ShimError::Workload(format!(
                "preparing the guest failed: {e}"
            ))),
            Err(_) => {
                // Left to finish on its own; what it made is undone when it does.
                tokio::spawn(async move {
                    if let Ok(Ok(done)) = work.await {
                        if done.mounted() {
                            unmount_rootfs(&bundle);
                        }
                    }
                });
                Err(too_long())
            }
        }
    }
}
