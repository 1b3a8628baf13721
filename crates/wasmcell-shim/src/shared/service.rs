//! containerd's Task API in the manager: every Wasm container of every namespace that uses the
//! shared runtime, each an instance inside this one process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, StatsRequest, StatsResponse, Status, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics,
};
use containerd_shim::protos::events::task::{TaskDelete, TaskExit, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::shim::{CheckpointTaskRequest, PauseRequest, ResumeRequest};
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim_protos::shim_async::Task;
use tracing::Instrument;
use wasmcell_wasmtime::WasmtimeEngine;

use crate::artifact::Containerd;
use crate::events::Events;
use crate::instance::{lock, Status as InstanceStatus};
use crate::reaper::Reaper;
use crate::rootfs::unmount_rootfs;
use crate::service::{
    init_process_only, timestamp, write_state_file, ExitSignal, TaskService, STATE_FILE,
};
use crate::shared::capacity::Capacity;
use crate::shared::instance::{Exit, InstanceRequest, SharedInstance};
use crate::shared::prepare::{inspect, Inspected};
use crate::shared::Activity;
use crate::ShimError;

/// ttrpc metadata key containerd puts the namespace of a request in.
const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";

/// The manager's Task service.
#[derive(Debug)]
pub(crate) struct SharedService {
    instances: Mutex<HashMap<String, Arc<SharedInstance>>>,
    /// Linux containers (pod sandboxes, ELF or script entrypoints), run by runc as in normal
    /// mode: one normal-mode task service per containerd namespace.
    linux: Mutex<HashMap<String, Arc<TaskService>>>,
    reaper: Reaper,
    engine: Arc<WasmtimeEngine>,
    /// The executor guests run on (not the one serving requests).
    guests: tokio::runtime::Handle,
    /// Whether the manager can take more containers.
    capacity: Arc<Capacity>,
    events: Events,
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

impl SharedService {
    pub(crate) fn new(
        engine: Arc<WasmtimeEngine>,
        guests: tokio::runtime::Handle,
        capacity: Arc<Capacity>,
        events: Events,
        reaper: Reaper,
        activity: Arc<Activity>,
        containerd_address: String,
    ) -> Self {
        SharedService {
            instances: Mutex::default(),
            linux: Mutex::default(),
            reaper,
            engine,
            guests,
            capacity,
            events,
            activity,
            containerd_address,
            prepare_slots: Arc::new(tokio::sync::Semaphore::new(prepare_slots())),
        }
    }

    /// containerd's API for `namespace`.
    fn containerd(&self, namespace: &str) -> Containerd {
        Containerd {
            address: self.containerd_address.clone(),
            namespace: namespace.to_string(),
        }
    }

    /// The normal-mode service running namespace `namespace`'s Linux containers.
    fn linux_service(&self, namespace: &str) -> Arc<TaskService> {
        lock(&self.linux)
            .entry(namespace.to_string())
            .or_insert_with(|| {
                Arc::new(TaskService::new(
                    self.events.in_namespace(namespace),
                    self.reaper.clone(),
                    self.containerd(namespace),
                    Arc::new(ExitSignal::default()),
                ))
            })
            .clone()
    }

    /// The service running Linux container `id`, if it is one.
    fn linux_for(&self, ctx: &TtrpcContext, id: &str) -> Option<Arc<TaskService>> {
        let linux = lock(&self.linux);
        match ctx.metadata.get(NAMESPACE_KEY).and_then(|v| v.first()) {
            Some(ns) => linux.get(ns).filter(|s| s.holds(id)).cloned(),
            None => linux.values().find(|s| s.holds(id)).cloned(),
        }
    }

    /// The containers holding the most WASI resources (descriptors of the manager), for a
    /// refusal's message: `"; most held by a (1000), b (12)"`, or nothing.
    fn top_holders(&self) -> String {
        let mut held: Vec<(u64, String)> = lock(&self.instances)
            .values()
            .map(|i| (i.resources(), i.req.id.clone()))
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

    /// Tell the idle timer how many containers (Wasm and Linux) the manager runs.
    fn count_containers(&self) {
        let linux: usize = lock(&self.linux).values().map(|s| s.len()).sum();
        self.activity.changed(lock(&self.instances).len() + linux);
    }

    /// The container `id`, in the request's namespace when containerd names it; otherwise the
    /// one container of that id (the same id in two namespaces is then refused as ambiguous).
    fn get(&self, ctx: &TtrpcContext, id: &str) -> Result<Arc<SharedInstance>, ShimError> {
        let instances = lock(&self.instances);
        if let Some(ns) = ctx.metadata.get(NAMESPACE_KEY).and_then(|v| v.first()) {
            return instances
                .get(&key(ns, id))
                .cloned()
                .ok_or_else(|| ShimError::NotFound(id.to_string()));
        }
        let mut found = instances.values().filter(|i| i.req.id == id);
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one.clone()),
            (None, _) => Err(ShimError::NotFound(id.to_string())),
            (Some(_), Some(_)) => Err(ShimError::FailedPrecondition(format!(
                "container {id} exists in several namespaces and the request names none"
            ))),
        }
    }

    async fn do_create(
        &self,
        ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse, ShimError> {
        let begun = std::time::Instant::now();
        let bundle = PathBuf::from(&req.bundle);
        let namespace = namespace(ctx, &bundle);
        let key = key(&namespace, &req.id);
        if lock(&self.instances).contains_key(&key) || self.linux_for(ctx, &req.id).is_some() {
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        if req.terminal {
            return Err(ShimError::InvalidArgument(format!(
                "container {}: a terminal (tty) is not supported for wasm containers",
                req.id
            )));
        }
        let created = self.inspect_and_prepare(&req, &namespace).await;
        let prepared = match created {
            Ok(Inspected::Wasm(prepared)) => *prepared,
            Ok(Inspected::Linux { mounted }) => {
                // Decided with the rootfs in place: the entrypoint is looked at. A Linux
                // container is created on that same rootfs.
                tracing::info!(container = %req.id, namespace = %namespace, "running as a Linux container");
                let service = self.linux_service(&namespace);
                let created = blocking(move || service.create_on_rootfs(req, mounted)).await;
                self.count_containers();
                return created;
            }
            Err(e) => {
                tracing::warn!(container = %req.id, namespace = %namespace, error = %e, "create failed");
                return Err(e);
            }
        };
        let instance = Arc::new(SharedInstance::new(
            InstanceRequest {
                id: req.id.clone(),
                namespace: namespace.clone(),
                bundle: bundle.clone(),
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
            },
            prepared,
        ));
        let pid = std::process::id();
        write_state_file(&bundle, pid, None);
        lock(&self.instances).insert(key, instance);
        self.count_containers();
        self.events.in_namespace(&namespace).create(&req, pid);
        tracing::info!(
            container = %req.id,
            namespace = %namespace,
            elapsed_ms = begun.elapsed().as_secs_f64() * 1000.0,
            "created"
        );
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Mount the rootfs, read the spec, decide Wasm or Linux and, for Wasm, read, compile and
    /// link the module and open its stdio: all of it file work, done off the executor on one
    /// of the [`prepare_slots`] (so that a burst of Creates, or a module slow to compile, cannot
    /// take every blocking thread), within the create timeout. A Create that passes the timeout
    /// fails naming it; its work, still running, cleans up after itself when it ends.
    async fn inspect_and_prepare(
        &self,
        req: &CreateTaskRequest,
        namespace: &str,
    ) -> Result<Inspected, ShimError> {
        let timeout = wasmcell_core::create_timeout();
        let (engine, containerd, request) =
            (self.engine.clone(), self.containerd(namespace), req.clone());
        let capacity = self.capacity.clone();
        let reaper = self.reaper.clone();
        // Who holds the most, named if this Create is refused (looked up only when it may be).
        let holders = if self.capacity.nearly_full() {
            self.top_holders()
        } else {
            String::new()
        };
        let id = req.id.clone();
        let bundle = PathBuf::from(&req.bundle);
        // Waiting for a slot counts against the timeout too.
        let deadline = tokio::time::Instant::now() + timeout;
        let too_long = || {
            ShimError::Workload(format!(
                "container {id}: preparing the guest (reading, compiling and linking its module) took more than {} s ({} sets the limit)",
                timeout.as_secs(),
                wasmcell_core::CREATE_TIMEOUT_ENV
            ))
        };
        let slot =
            match tokio::time::timeout_at(deadline, self.prepare_slots.clone().acquire_owned())
                .await
            {
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
                capacity.admit(&request.id, &holders)?;
                inspect(&engine, &containerd, &reaper, &request)
            })
        });
        match tokio::time::timeout_at(deadline, &mut work).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => Err(ShimError::Workload(format!(
                "container {id}: preparing the guest failed: {e}"
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

    fn do_start(&self, ctx: &TtrpcContext, req: StartRequest) -> Result<StartResponse, ShimError> {
        init_process_only(&req.id, &req.exec_id)?;
        let _span = tracing::debug_span!("start", container = %req.id).entered();
        let instance = self.get(ctx, &req.id)?;
        let events = self.events.in_namespace(&instance.req.namespace);
        let pid = std::process::id();
        let exit_events = events.clone();
        let id = req.id.clone();
        instance.start(
            self.engine.clone(),
            &self.guests,
            || {
                events.start_task(TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                })
            },
            move |exit| publish_exit(&exit_events, &id, pid, exit),
        )?;
        tracing::info!(container = %req.id, "started");
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_kill(&self, ctx: &TtrpcContext, req: KillRequest) -> Result<(), ShimError> {
        init_process_only(&req.id, &req.exec_id)?;
        let instance = self.get(ctx, &req.id)?;
        if let Some(exit) = instance.kill(req.signal)? {
            // Killed before it started: nothing runs, so the exit is reported here.
            publish_exit(
                &self.events.in_namespace(&instance.req.namespace),
                &req.id,
                std::process::id(),
                exit,
            );
        }
        tracing::info!(container = %req.id, signal = req.signal, "killed");
        Ok(())
    }

    fn do_delete(
        &self,
        ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> Result<DeleteResponse, ShimError> {
        init_process_only(&req.id, &req.exec_id)?;
        let instance = self.get(ctx, &req.id)?;
        match instance.status() {
            InstanceStatus::Running => {
                return Err(ShimError::FailedPrecondition(format!(
                    "cannot delete running container {}: kill it first",
                    req.id
                )))
            }
            InstanceStatus::Created => {
                if let Some(exit) = instance.kill(9)? {
                    publish_exit(
                        &self.events.in_namespace(&instance.req.namespace),
                        &req.id,
                        std::process::id(),
                        exit,
                    );
                }
            }
            InstanceStatus::Stopped => {}
        }
        unmount_rootfs(&instance.req.bundle);
        let _ = std::fs::remove_file(instance.req.bundle.join(STATE_FILE));
        lock(&self.instances).remove(&key(&instance.req.namespace, &req.id));
        self.count_containers();
        let capacity = self.capacity.clone();
        tokio::task::spawn_blocking(move || capacity.refresh());
        let exit = instance.exit();
        let exit_status = exit.map(|e| e.code).unwrap_or(137);
        let exited_at = timestamp(exit.map(|e| e.at));
        let pid = std::process::id();
        self.events
            .in_namespace(&instance.req.namespace)
            .delete(TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid,
                exit_status,
                exited_at: MessageField::some(exited_at.clone()),
                ..Default::default()
            });
        tracing::info!(container = %req.id, exit_status, "deleted");
        Ok(DeleteResponse {
            pid,
            exit_status,
            exited_at: MessageField::some(exited_at),
            ..Default::default()
        })
    }

    fn do_stats(&self, ctx: &TtrpcContext, req: StatsRequest) -> Result<StatsResponse, ShimError> {
        let instance = self.get(ctx, &req.id)?;
        let mut metrics = Metrics::new();
        let mut memory = MemoryStat::new();
        let mut usage = MemoryEntry::new();
        usage.usage = instance.memory_bytes();
        usage.limit = instance.memory_limit.unwrap_or_default();
        memory.usage = Some(usage).into();
        memory.rss = instance.memory_bytes();
        metrics.memory = Some(memory).into();
        let mut cpu = CPUStat::new();
        let mut cpu_usage = CPUUsage::new();
        cpu_usage.total = instance.cpu_nanos();
        cpu_usage.user = instance.cpu_nanos();
        cpu.usage = Some(cpu_usage).into();
        metrics.cpu = Some(cpu).into();
        let value = metrics.write_to_bytes().map_err(|e| {
            ShimError::io(
                "failed to encode metrics",
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok(StatsResponse {
            stats: MessageField::some(Any {
                type_url: "io.containerd.cgroups.v1.Metrics".into(),
                value,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

fn publish_exit(events: &Events, id: &str, pid: u32, exit: Exit) {
    if exit.oom {
        events.oom(TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        });
    }
    events.exit(TaskExit {
        container_id: id.to_string(),
        id: id.to_string(),
        pid,
        exit_status: exit.code,
        exited_at: MessageField::some(timestamp(Some(exit.at))),
        ..Default::default()
    });
}

/// Run a normal-mode service call (it may block on runc or on an exit) off the executor.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ShimError> + Send + 'static,
) -> Result<T, ShimError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) => Err(ShimError::io(
            "a Linux container's request failed",
            std::io::Error::other(e.to_string()),
        )),
    }
}

/// The request's containerd namespace: from its ttrpc metadata, else the bundle's parent
/// directory (`<state>/io.containerd.runtime.v2.task/<namespace>/<id>`).
fn namespace(ctx: &TtrpcContext, bundle: &Path) -> String {
    if let Some(ns) = ctx.metadata.get(NAMESPACE_KEY).and_then(|v| v.first()) {
        return ns.clone();
    }
    bundle
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".into())
}

fn key(namespace: &str, id: &str) -> String {
    format!("{namespace}/{id}")
}

#[async_trait]
impl Task for SharedService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let span = tracing::debug_span!("create", container = %req.id);
        Ok(self.do_create(ctx, req).instrument(span).await?)
    }

    async fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(blocking(move || service.start_task(req)).await?);
        }
        Ok(self.do_start(ctx, req)?)
    }

    async fn state(&self, ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(service.task_state(req)?);
        }
        let instance = self.get(ctx, &req.id)?;
        let status = match instance.status() {
            InstanceStatus::Created => Status::CREATED,
            InstanceStatus::Running => Status::RUNNING,
            InstanceStatus::Stopped => Status::STOPPED,
        };
        let exit = instance.exit();
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: instance.req.bundle.display().to_string(),
            pid: std::process::id(),
            status: status.into(),
            stdin: instance.req.stdin.clone(),
            stdout: instance.req.stdout.clone(),
            stderr: instance.req.stderr.clone(),
            terminal: false,
            exit_status: exit.map(|e| e.code).unwrap_or_default(),
            exited_at: match exit {
                Some(e) => MessageField::some(timestamp(Some(e.at))),
                None => MessageField::none(),
            },
            ..Default::default()
        })
    }

    async fn kill(&self, ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(blocking(move || service.kill_task(req)).await?);
        }
        self.do_kill(ctx, req)?;
        Ok(Empty::new())
    }

    async fn wait(&self, ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(blocking(move || service.wait_task(req)).await?);
        }
        init_process_only(&req.id, &req.exec_id)?;
        let instance = self.get(ctx, &req.id)?;
        let exit = instance.wait().await;
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(Some(exit.at))),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            let deleted = blocking(move || service.do_delete(req)).await;
            self.count_containers();
            return Ok(deleted?);
        }
        Ok(self.do_delete(ctx, req)?)
    }

    async fn pids(&self, ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(service.task_pids(req)?);
        }
        let instance = self.get(ctx, &req.id)?;
        let mut processes = Vec::new();
        if instance.status() != InstanceStatus::Stopped {
            processes.push(ProcessInfo {
                pid: std::process::id(),
                ..Default::default()
            });
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn stats(&self, ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(service.task_stats(req)?);
        }
        Ok(self.do_stats(ctx, req)?)
    }

    async fn connect(
        &self,
        ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        if let Some(service) = self.linux_for(ctx, &req.id) {
            return Ok(service.connect_task(req));
        }
        let known = self.get(ctx, &req.id).is_ok();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: if known { std::process::id() } else { 0 },
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        // The manager outlives its containers: it leaves on its own once idle (see Activity).
        Ok(Empty::new())
    }

    async fn close_io(&self, ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        if self.linux_for(ctx, &req.id).is_some() {
            return Ok(Empty::new());
        }
        self.get(ctx, &req.id)?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::FailedPrecondition(format!(
            "ResizePty: container {} has no terminal",
            req.id
        ))
        .into())
    }

    async fn exec(&self, _ctx: &TtrpcContext, _req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Exec").into())
    }

    async fn pause(&self, _ctx: &TtrpcContext, _req: PauseRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Pause").into())
    }

    async fn resume(&self, _ctx: &TtrpcContext, _req: ResumeRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Resume").into())
    }

    async fn update(&self, _ctx: &TtrpcContext, _req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Update").into())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Checkpoint").into())
    }
}
