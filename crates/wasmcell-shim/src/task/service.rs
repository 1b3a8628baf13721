//! The Task service: every RPC's state check, event and error mapping, written once for every
//! backend. The mode ([`Mode`]) decides only how Create builds a container and what the shim
//! process does when containerd asks it to shut down.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim::api::{
    ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteResponse, PidsResponse,
    StateResponse, StatsResponse, WaitResponse,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::ProcessInfo;

use crate::events::Events;
use crate::reaper::Reaper;
use crate::rootfs::unmount_rootfs;
use crate::state_file::{remove_state_file, write_state_file};
use crate::task::container::{Container, Request};
use crate::task::life::Phase;
use crate::task::mode::Mode;
use crate::task::{lock, wire};
use crate::ShimError;

/// How long Delete waits for a created (never started) container to end after SIGKILL.
const DELETE_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A container's key: its containerd namespace and id.
type Key = (String, String);

/// containerd's Task API for every container this shim process runs.
#[derive(Debug)]
pub(crate) struct TaskService {
    containers: Mutex<HashMap<Key, Arc<Container>>>,
    /// Ids whose Create is under way: a second Create of the same id is refused at once.
    creating: Mutex<HashSet<Key>>,
    mode: Mode,
    /// The event queue (each container publishes in its own namespace).
    events: Events,
    reaper: Reaper,
}

impl TaskService {
    pub(crate) fn new(mode: Mode, events: Events, reaper: Reaper) -> Self {
        TaskService {
            containers: Mutex::default(),
            creating: Mutex::default(),
            mode,
            events,
            reaper,
        }
    }

    /// The container `id`, in `namespace` when the request names one; otherwise the one
    /// container of that id (the same id in two namespaces is then refused as ambiguous).
    pub(crate) fn get(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<Arc<Container>, ShimError> {
        let containers = lock(&self.containers);
        if let Some(ns) = namespace {
            return containers
                .get(&(ns.to_string(), id.to_string()))
                .cloned()
                .ok_or_else(|| ShimError::NotFound(id.to_string()));
        }
        let mut found = containers.values().filter(|c| c.req.id == id);
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one.clone()),
            (None, _) => Err(ShimError::NotFound(id.to_string())),
            (Some(_), Some(_)) => Err(ShimError::FailedPrecondition(format!(
                "container {id} exists in several namespaces and the request names none"
            ))),
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.containers).len()
    }

    pub(crate) async fn create(
        &self,
        namespace: Option<&str>,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse, ShimError> {
        let begun = Instant::now();
        let namespace = namespace_of(namespace, Path::new(&req.bundle));
        let key = (namespace.clone(), req.id.clone());
        let _reserved = self.reserve(&key, &req)?;
        let request = Request::new(&req, &namespace);
        let holders = || self.top_holders();
        let built = self
            .mode
            .build(request.clone(), req.clone(), &self.reaper, holders)
            .await;
        let backend = built.inspect_err(|e| {
            tracing::warn!(container = %req.id, namespace = %namespace, error = %e, "create failed");
        })?;
        let events = self.events.in_namespace(&namespace);
        let container = Arc::new(Container::new(request, backend, events.clone()));
        let pid = container.pid;
        write_state_file(
            &container.req.bundle,
            pid,
            container.backend.recorded_cgroup(),
        );
        let count = {
            let mut containers = lock(&self.containers);
            containers.insert(key, container.clone());
            containers.len()
        };
        self.mode.counted(count);
        events.created(&req, pid);
        container.watch_exit(&self.reaper);
        tracing::info!(
            container = %req.id,
            namespace = %namespace,
            pid,
            elapsed_ms = begun.elapsed().as_secs_f64() * 1000.0,
            "created"
        );
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Hold `key` for the Create under way: it is new, and the request asks for no terminal.
    fn reserve<'a>(
        &'a self,
        key: &Key,
        req: &CreateTaskRequest,
    ) -> Result<Reserved<'a>, ShimError> {
        if req.terminal {
            return Err(ShimError::InvalidArgument(format!(
                "container {}: a terminal (tty) is not supported for wasm containers",
                req.id
            )));
        }
        let known = lock(&self.containers).contains_key(key);
        if known || !lock(&self.creating).insert(key.clone()) {
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        Ok(Reserved {
            set: &self.creating,
            key: key.clone(),
        })
    }

    /// The containers holding the most WASI resources (descriptors of a shared manager), for a
    /// refusal's message: `"; most held by a (1000), b (12)"`, or nothing.
    fn top_holders(&self) -> String {
        let mut held: Vec<(u64, String)> = lock(&self.containers)
            .values()
            .map(|c| (c.backend.resources(), c.req.id.clone()))
            .filter(|(n, _)| *n > 0)
            .collect();
        held.sort_unstable_by_key(|(n, _)| std::cmp::Reverse(*n));
        let top: Vec<String> = held
            .iter()
            .take(3)
            .map(|(n, id)| format!("{id} ({n})"))
            .collect();
        if top.is_empty() {
            return String::new();
        }
        format!("; most held by {}", top.join(", "))
    }

    pub(crate) async fn start(
        &self,
        namespace: Option<&str>,
        id: &str,
        exec_id: &str,
    ) -> Result<u32, ShimError> {
        init_process_only(id, exec_id)?;
        let container = self.get(namespace, id)?;
        if container.backend.blocks() {
            let c = container.clone();
            off_executor(move || c.start()).await?;
        } else {
            container.start()?;
        }
        tracing::info!(container = %id, pid = container.pid, "started");
        Ok(container.pid)
    }

    pub(crate) fn state(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<StateResponse, ShimError> {
        Ok(wire::state_response(&*self.get(namespace, id)?))
    }

    pub(crate) fn kill(
        &self,
        namespace: Option<&str>,
        id: &str,
        exec_id: &str,
        signal: u32,
    ) -> Result<(), ShimError> {
        init_process_only(id, exec_id)?;
        // One process per container: `all` and the init process are the same target.
        self.get(namespace, id)?.kill(signal)?;
        tracing::info!(container = %id, signal, "killed");
        Ok(())
    }

    pub(crate) async fn wait(
        &self,
        namespace: Option<&str>,
        id: &str,
        exec_id: &str,
    ) -> Result<WaitResponse, ShimError> {
        init_process_only(id, exec_id)?;
        let exit = self.get(namespace, id)?.stopped().await;
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(wire::timestamp(exit.at)),
            ..Default::default()
        })
    }

    pub(crate) async fn delete(
        &self,
        namespace: Option<&str>,
        id: &str,
        exec_id: &str,
    ) -> Result<DeleteResponse, ShimError> {
        init_process_only(id, exec_id)?;
        let container = self.get(namespace, id)?;
        match container.phase() {
            Phase::Running => {
                return Err(ShimError::FailedPrecondition(format!(
                    "cannot delete running container {id}: kill it first"
                )))
            }
            Phase::Created => {
                let _ = container.kill(9);
                if container
                    .stopped_within(DELETE_KILL_TIMEOUT)
                    .await
                    .is_none()
                {
                    return Err(ShimError::FailedPrecondition(format!(
                        "the workload of container {id} did not end after SIGKILL"
                    )));
                }
            }
            Phase::Stopped(_) => {}
        }
        let exit = container.stopped().await;
        let released = container.clone();
        let _ = off_executor(move || {
            released.release();
            unmount_rootfs(&released.req.bundle);
            remove_state_file(&released.req.bundle);
            Ok(())
        })
        .await;
        let key = (container.req.namespace.clone(), id.to_string());
        let count = {
            let mut containers = lock(&self.containers);
            containers.remove(&key);
            containers.len()
        };
        self.mode.deleted(count);
        self.events
            .in_namespace(&container.req.namespace)
            .deleted(id, container.pid, exit);
        tracing::info!(container = %id, exit_status = exit.code, "deleted");
        Ok(DeleteResponse {
            pid: container.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(wire::timestamp(exit.at)),
            ..Default::default()
        })
    }

    pub(crate) fn pids(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<PidsResponse, ShimError> {
        let container = self.get(namespace, id)?;
        let mut processes = Vec::new();
        if !matches!(container.phase(), Phase::Stopped(_)) {
            processes.push(ProcessInfo {
                pid: container.pid,
                ..Default::default()
            });
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub(crate) fn stats(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<StatsResponse, ShimError> {
        let container = self.get(namespace, id)?;
        wire::stats_response(&container.backend.metrics(id)?)
    }

    pub(crate) fn connect(&self, namespace: Option<&str>, id: &str) -> ConnectResponse {
        ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.get(namespace, id).map_or(0, |c| c.pid),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }

    /// containerd asks the shim to go: see [`Mode::shutdown`].
    pub(crate) fn shutdown(&self) {
        self.mode.shutdown(self.len());
    }
}

/// Releases a Create's hold on its key when the Create ends, however it ends.
struct Reserved<'a> {
    set: &'a Mutex<HashSet<Key>>,
    key: Key,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.key);
    }
}

/// The shim runs no exec processes: a request naming one refers to nothing.
fn init_process_only(id: &str, exec_id: &str) -> Result<(), ShimError> {
    if exec_id.is_empty() {
        return Ok(());
    }
    Err(ShimError::NotFound(format!(
        "exec {exec_id} in container {id}"
    )))
}

/// The request's containerd namespace: as its ttrpc metadata names it, else the bundle's
/// parent directory (`<state>/io.containerd.runtime.v2.task/<namespace>/<id>`).
fn namespace_of(named: Option<&str>, bundle: &Path) -> String {
    if let Some(ns) = named {
        return ns.to_string();
    }
    bundle
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".into())
}

/// Run blocking work (runc, a guest process's preparation, unmounting) off the executor.
pub(crate) async fn off_executor<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ShimError> + Send + 'static,
) -> Result<T, ShimError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(ShimError::io(
            "blocking work of the task service failed",
            std::io::Error::other(e.to_string()),
        )),
    }
}
