//! One container of the Task service: what Create was asked for, its backend, and its life.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::CreateTaskRequest;

use crate::backend::Backend;
use crate::events::Events;
use crate::reaper::Reaper;
use crate::task::life::{Exit, Life, Phase};
use crate::ShimError;

/// What containerd asked for at Create, with the namespace it asked in.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) bundle: PathBuf,
    pub(crate) stdin: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Request {
    pub(crate) fn new(req: &CreateTaskRequest, namespace: &str) -> Self {
        Request {
            id: req.id.clone(),
            namespace: namespace.to_string(),
            bundle: PathBuf::from(&req.bundle),
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        }
    }
}

/// A container: its request, the backend running it, its life, and the events of its
/// namespace (its exit is reported from wherever the backend learns of it).
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) req: Request,
    pub(crate) backend: Backend,
    /// The task pid containerd is told (see [`Backend::pid`]).
    pub(crate) pid: u32,
    life: Life,
    events: Events,
}

impl Container {
    pub(crate) fn new(req: Request, backend: Backend, events: Events) -> Self {
        Container {
            pid: backend.pid(),
            req,
            backend,
            life: Life::new(),
            events,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.life.phase()
    }

    /// Have the reaper report the exit of the backend's process (if it has one).
    pub(crate) fn watch_exit(self: &Arc<Self>, reaper: &Reaper) {
        let Some(process) = self.backend.process() else {
            return;
        };
        let this = self.clone();
        reaper.on_exit(process.pid as i32, process.spawned_at, move |code| {
            let oom = match &this.backend {
                Backend::Process(p) => p.exited(code),
                Backend::Runc(r) => r.exited(code),
                Backend::InProcess(_) => false,
            };
            this.finish(Exit::now(code as u32, oom));
        });
    }

    /// Let the workload run (blocking for runc). TaskStart is queued under the life's lock,
    /// so a quick exit's TaskExit comes after it.
    pub(crate) fn start(self: &Arc<Self>) -> Result<(), ShimError> {
        let id = &self.req.id;
        self.life.start(
            id,
            || match &self.backend {
                Backend::Process(p) => p.start(id),
                Backend::Runc(r) => r.start(&self.req),
                Backend::InProcess(g) => {
                    let this = self.clone();
                    g.start(id, move |code, oom| this.finish(Exit::now(code, oom)))
                }
            },
            || self.events.started(id, self.pid),
        )
    }

    /// Send `signal` (0 to 64) to the workload.
    pub(crate) fn kill(&self, signal: u32) -> Result<(), ShimError> {
        let id = &self.req.id;
        let signal = i32::try_from(signal)
            .ok()
            .filter(|s| (0..=64).contains(s))
            .ok_or_else(|| ShimError::InvalidArgument(format!("invalid signal {signal}")))?;
        let phase = self.phase();
        if let Phase::Stopped(_) = phase {
            return Err(ShimError::NotFound(format!(
                "process of container {id} already finished"
            )));
        }
        let process = match &self.backend {
            Backend::Process(p) => &p.process,
            Backend::Runc(r) => &r.process,
            Backend::InProcess(g) => {
                if let Some(code) = g.kill(signal, phase == Phase::Running) {
                    self.finish(Exit::now(code, false));
                }
                return Ok(());
            }
        };
        process
            .signal(signal)
            .map_err(|e| ShimError::io(format!("failed to signal container {id}"), e))
    }

    /// Record the exit and report it (TaskOOM first when it ran out of memory); a second exit
    /// is neither recorded nor reported.
    pub(crate) fn finish(&self, exit: Exit) {
        self.life
            .stop(exit, || self.events.exited(&self.req.id, self.pid, exit));
    }

    /// Wait until the workload has ended.
    pub(crate) async fn stopped(&self) -> Exit {
        self.life.stopped().await
    }

    pub(crate) async fn stopped_within(&self, timeout: std::time::Duration) -> Option<Exit> {
        self.life.stopped_within(timeout).await
    }

    /// Release what the container holds (blocking): runc's state for a Linux container, the
    /// cgroup of a guest process.
    pub(crate) fn release(&self) {
        match &self.backend {
            Backend::Process(p) => p.cgroup.remove(),
            Backend::Runc(r) => r.release(&self.req),
            Backend::InProcess(_) => {}
        }
    }
}
