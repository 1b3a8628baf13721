//! containerd's Task API, answered for every container this shim runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, StatsRequest, StatsResponse, Status, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use containerd_shim::protos::events::task::{TaskDelete, TaskExit, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::shim::{CheckpointTaskRequest, PauseRequest, ResumeRequest};
use containerd_shim::protos::ttrpc::{self, TtrpcContext};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::Task;
use oci_spec::runtime::Spec;

use crate::artifact::Containerd;
use crate::events::Events;
use crate::instance::{lock, CreateRequest, Instance, Status as InstanceStatus};
use crate::linux::Runc;
use crate::reaper::Reaper;
use crate::rootfs::{mount_rootfs, unmount_rootfs};
use crate::ShimError;

/// Name of the file in the bundle that records the guest pid and cgroup, so that
/// `containerd-shim-wasmcell-v1 delete` can clean up after a shim that died.
pub(crate) const STATE_FILE: &str = "wasmcell-shim.json";

/// Signalled when the shim should exit (Shutdown with no container left).
#[derive(Debug, Default)]
pub(crate) struct ExitSignal {
    done: Mutex<bool>,
    cv: Condvar,
}

impl ExitSignal {
    pub(crate) fn signal(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }

    pub(crate) fn wait(&self) {
        let mut done = lock(&self.done);
        while !*done {
            done = match self.cv.wait(done) {
                Ok(d) => d,
                Err(p) => p.into_inner(),
            };
        }
    }
}

/// The Task service of one shim process.
#[derive(Debug)]
pub(crate) struct TaskService {
    instances: Arc<Mutex<HashMap<String, Arc<Instance>>>>,
    events: Events,
    reaper: Reaper,
    runc: Runc,
    containerd: Containerd,
    exit: Arc<ExitSignal>,
}

impl TaskService {
    pub(crate) fn new(
        events: Events,
        reaper: Reaper,
        containerd: Containerd,
        exit: Arc<ExitSignal>,
    ) -> Self {
        TaskService {
            instances: Arc::default(),
            events,
            reaper,
            runc: Runc::new(&containerd.namespace),
            containerd,
            exit,
        }
    }

    /// Whether this service runs container `id`.
    pub(crate) fn holds(&self, id: &str) -> bool {
        lock(&self.instances).contains_key(id)
    }

    /// How many containers this service runs.
    pub(crate) fn len(&self) -> usize {
        lock(&self.instances).len()
    }

    fn get(&self, id: &str) -> Result<Arc<Instance>, ShimError> {
        lock(&self.instances)
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(id.to_string()))
    }

    pub(crate) fn do_create(
        &self,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse, ShimError> {
        let _span = tracing::debug_span!("create", container = %req.id).entered();
        self.check_creatable(&req)?;
        let bundle = PathBuf::from(&req.bundle);
        let mounted = tracing::debug_span!("rootfs").in_scope(|| mount_rootfs(&bundle, &req))?;
        self.create_on_rootfs(req, mounted)
    }

    /// The container can be created here: its id is new and it asks for no terminal.
    fn check_creatable(&self, req: &CreateTaskRequest) -> Result<(), ShimError> {
        if lock(&self.instances).contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        if req.terminal {
            return Err(ShimError::InvalidArgument(format!(
                "container {}: a terminal (tty) is not supported for wasm containers",
                req.id
            )));
        }
        Ok(())
    }

    /// Create the container whose rootfs is already in place at `<bundle>/rootfs` (the shared
    /// manager mounts it to tell a Linux container from a Wasm one); `mounted`: whether it was
    /// mounted for this container, and so is unmounted if the create fails.
    pub(crate) fn create_on_rootfs(
        &self,
        req: CreateTaskRequest,
        mounted: bool,
    ) -> Result<CreateTaskResponse, ShimError> {
        let begun = std::time::Instant::now();
        let id = req.id.clone();
        let bundle = PathBuf::from(&req.bundle);
        let checked = self.check_creatable(&req);
        let result = checked.and_then(|()| self.create_instance(&req, &bundle));
        let instance = match result {
            Ok(i) => i,
            Err(e) => {
                if mounted {
                    unmount_rootfs(&bundle);
                }
                tracing::warn!(container = %id, error = %e, "create failed");
                return Err(e);
            }
        };
        let pid = instance.pid;
        write_state_file(&bundle, pid, instance.cgroup.as_ref().map(|c| c.path()));
        lock(&self.instances).insert(id.clone(), instance.clone());

        self.events.create(&req, pid);

        let events = self.events.clone();
        let exited = instance.clone();
        self.reaper
            .on_exit(pid as i32, instance.spawned_at, move |code| {
                let oom = exited.set_exited(code);
                let state = exited.state();
                if oom {
                    events.oom(TaskOOM {
                        container_id: exited.req.id.clone(),
                        ..Default::default()
                    });
                }
                events.exit(TaskExit {
                    container_id: exited.req.id.clone(),
                    id: exited.req.id.clone(),
                    pid,
                    exit_status: state.exit_code,
                    exited_at: MessageField::some(timestamp(state.exited_at)),
                    ..Default::default()
                });
            });
        tracing::info!(
            container = %id,
            pid,
            elapsed_ms = begun.elapsed().as_secs_f64() * 1000.0,
            "created"
        );
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn create_instance(
        &self,
        req: &CreateTaskRequest,
        bundle: &Path,
    ) -> Result<Arc<Instance>, ShimError> {
        let spec_span = tracing::debug_span!("spec").entered();
        let spec = Spec::load(bundle.join("config.json")).map_err(|e| {
            ShimError::Workload(format!(
                "failed to load {}: {e}",
                bundle.join("config.json").display()
            ))
        })?;
        let create = CreateRequest {
            id: req.id.clone(),
            bundle: bundle.to_path_buf(),
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        drop(spec_span);
        let created = if crate::linux::is_linux_workload(&spec, bundle) {
            tracing::info!(container = %req.id, "running as a Linux container");
            Instance::create_linux(create, &spec, self.runc.clone(), self.reaper.clone())
        } else {
            Instance::create(create, &spec, &self.containerd)
        };
        created.map(Arc::new).map_err(|e| match e {
            ShimError::Workload(msg) => ShimError::Workload(format!("container {}: {msg}", req.id)),
            other => other,
        })
    }

    pub(crate) fn do_delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ShimError> {
        init_process_only(&req.id, &req.exec_id)?;
        let instance = self.get(&req.id)?;
        let status = instance.state().status;
        match status {
            InstanceStatus::Running => {
                return Err(ShimError::FailedPrecondition(format!(
                    "cannot delete running container {}: kill it first",
                    req.id
                )))
            }
            InstanceStatus::Created => {
                let _ = instance.kill(9);
                if !instance.wait_timeout(Duration::from_secs(10)) {
                    return Err(ShimError::FailedPrecondition(format!(
                        "the guest process of container {} did not exit after SIGKILL",
                        req.id
                    )));
                }
            }
            InstanceStatus::Stopped => {}
        }
        instance.cleanup();
        let bundle = instance.req.bundle.clone();
        unmount_rootfs(&bundle);
        let _ = std::fs::remove_file(bundle.join(STATE_FILE));
        lock(&self.instances).remove(&req.id);
        let state = instance.state();
        let exited_at = timestamp(state.exited_at);
        self.events.delete(TaskDelete {
            container_id: req.id.clone(),
            id: req.id.clone(),
            pid: instance.pid,
            exit_status: state.exit_code,
            exited_at: MessageField::some(exited_at.clone()),
            ..Default::default()
        });
        tracing::info!(container = %req.id, exit_status = state.exit_code, "deleted");
        Ok(DeleteResponse {
            pid: instance.pid,
            exit_status: state.exit_code,
            exited_at: MessageField::some(exited_at),
            ..Default::default()
        })
    }

    pub(crate) fn start_task(&self, req: StartRequest) -> Result<StartResponse, ShimError> {
        if !req.exec_id.is_empty() {
            return Err(ShimError::Unimplemented("Exec"));
        }
        let _span = tracing::debug_span!("start", container = %req.id).entered();
        let instance = self.get(&req.id)?;
        // TaskStart is queued under the state lock, so a quick exit's TaskExit comes after it.
        instance.start(|| {
            self.events.start_task(TaskStart {
                container_id: req.id.clone(),
                pid: instance.pid,
                ..Default::default()
            })
        })?;
        tracing::info!(container = %req.id, pid = instance.pid, "started");
        Ok(StartResponse {
            pid: instance.pid,
            ..Default::default()
        })
    }

    pub(crate) fn task_state(&self, req: StateRequest) -> Result<StateResponse, ShimError> {
        let instance = self.get(&req.id)?;
        let state = instance.state();
        let status = match state.status {
            InstanceStatus::Created => Status::CREATED,
            InstanceStatus::Running => Status::RUNNING,
            InstanceStatus::Stopped => Status::STOPPED,
        };
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: instance.req.bundle.display().to_string(),
            pid: instance.pid,
            status: status.into(),
            stdin: instance.req.stdin.clone(),
            stdout: instance.req.stdout.clone(),
            stderr: instance.req.stderr.clone(),
            terminal: false,
            exit_status: state.exit_code,
            exited_at: match state.exited_at {
                Some(t) => MessageField::some(timestamp(Some(t))),
                None => MessageField::none(),
            },
            ..Default::default()
        })
    }

    pub(crate) fn kill_task(&self, req: KillRequest) -> Result<Empty, ShimError> {
        init_process_only(&req.id, &req.exec_id)?;
        let instance = self.get(&req.id)?;
        // One process per container: `all` and the init process are the same target.
        instance.kill(req.signal)?;
        tracing::info!(container = %req.id, signal = req.signal, all = req.all, "killed");
        Ok(Empty::new())
    }

    pub(crate) fn wait_task(&self, req: WaitRequest) -> Result<WaitResponse, ShimError> {
        init_process_only(&req.id, &req.exec_id)?;
        let instance = self.get(&req.id)?;
        let state = instance.wait();
        Ok(WaitResponse {
            exit_status: state.exit_code,
            exited_at: MessageField::some(timestamp(state.exited_at)),
            ..Default::default()
        })
    }

    pub(crate) fn task_pids(&self, req: PidsRequest) -> Result<PidsResponse, ShimError> {
        let instance = self.get(&req.id)?;
        let mut processes = Vec::new();
        if instance.state().status != InstanceStatus::Stopped {
            processes.push(ProcessInfo {
                pid: instance.pid,
                ..Default::default()
            });
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub(crate) fn task_stats(&self, req: StatsRequest) -> Result<StatsResponse, ShimError> {
        let instance = self.get(&req.id)?;
        let cgroup = instance.cgroup.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("container {} has no cgroup", req.id))
        })?;
        let metrics = cgroup.metrics()?;
        let value = metrics.write_to_bytes().map_err(|e| {
            ShimError::io(
                "failed to encode metrics",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let any = Any {
            type_url: "io.containerd.cgroups.v1.Metrics".into(),
            value,
            ..Default::default()
        };
        Ok(StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    pub(crate) fn connect_task(&self, req: ConnectRequest) -> ConnectResponse {
        let task_pid = self.get(&req.id).map(|i| i.pid).unwrap_or_default();
        ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }
}

impl Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        Ok(self.do_create(req)?)
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        Ok(self.start_task(req)?)
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        Ok(self.task_state(req)?)
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        Ok(self.kill_task(req)?)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Ok(self.wait_task(req)?)
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        Ok(self.do_delete(req)?)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        Ok(self.task_pids(req)?)
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        Ok(self.task_stats(req)?)
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        Ok(self.connect_task(req))
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        if lock(&self.instances).is_empty() {
            tracing::info!("no container left; shutting down");
            self.exit.signal();
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        // The guest process holds its stdin FIFO itself; it sees end of file when containerd
        // closes the writing side, so there is nothing for the shim to close.
        self.get(&req.id)?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::FailedPrecondition(format!(
            "ResizePty: container {} has no terminal",
            req.id
        ))
        .into())
    }

    fn exec(&self, _ctx: &TtrpcContext, _req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Exec").into())
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: PauseRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Pause").into())
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: ResumeRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Resume").into())
    }

    fn update(&self, _ctx: &TtrpcContext, _req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Update").into())
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        Err(ShimError::Unimplemented("Checkpoint").into())
    }
}

/// The shim runs no exec processes: a request naming one refers to nothing.
pub(crate) fn init_process_only(id: &str, exec_id: &str) -> Result<(), ShimError> {
    if exec_id.is_empty() {
        return Ok(());
    }
    Err(ShimError::NotFound(format!(
        "exec {exec_id} in container {id}"
    )))
}

pub(crate) fn timestamp(t: Option<SystemTime>) -> Timestamp {
    let d = t
        .unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StateRecord {
    pub(crate) pid: u32,
    /// When `pid` started (`crate::pidfd::start_time`): `delete` kills only that process.
    #[serde(default)]
    pub(crate) start_time: Option<u64>,
    pub(crate) cgroup: Option<PathBuf>,
}

pub(crate) fn write_state_file(bundle: &Path, pid: u32, cgroup: Option<&Path>) {
    let record = StateRecord {
        pid,
        start_time: crate::pidfd::start_time(pid),
        cgroup: cgroup.map(Path::to_path_buf),
    };
    let path = bundle.join(STATE_FILE);
    let tmp = bundle.join(format!("{STATE_FILE}.tmp"));
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "failed to record shim state");
    }
}
