//! The Task service on the wire: containerd's ttrpc methods (under the v3 and v2 names), each
//! reading the request's namespace and answering through [`TaskService`].

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::shim::shim::{CheckpointTaskRequest, PauseRequest, ResumeRequest};
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::ttrpc::asynchronous::{Server, Service};
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::shim_async::{create_task, Task};
use tracing::Instrument;

use crate::task::service::TaskService;
use crate::ShimError;

/// ttrpc metadata key containerd puts the namespace of a request in.
const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";

/// The namespace the request names, if it names one.
fn namespace(ctx: &TtrpcContext) -> Option<&str> {
    ctx.metadata
        .get(NAMESPACE_KEY)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// The executor that serves the Task API: two workers; Create's preparation and runc's calls
/// run on its blocking pool, so a slow Create never holds another container's requests.
pub(crate) fn serving_runtime(thread_name: &str) -> Result<tokio::runtime::Runtime, ShimError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(thread_name)
        .build()
        .map_err(|e| ShimError::io("failed to start the async runtime", e))
}

/// Serve `service` on the listening socket `listener` (call within the executor).
pub(crate) async fn serve(
    listener: OwnedFd,
    service: Arc<TaskService>,
) -> Result<Server, ShimError> {
    let failed = |e| ShimError::io("failed to use the shim socket", e);
    let listener = UnixListener::from(listener);
    listener.set_nonblocking(true).map_err(failed)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(failed)?;
    let mut server = Server::new()
        .add_listener(listener.into())
        .register_service(task_methods(service));
    server.start().await.map_err(|e| {
        ShimError::io(
            "failed to start the ttrpc server",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(server)
}

/// The Task service under both names containerd uses: `containerd.task.v3.Task` (containerd
/// 2.x) and `containerd.task.v2.Task` (containerd 1.6 and 1.7); the messages are the same.
fn task_methods(service: Arc<TaskService>) -> HashMap<String, Service> {
    let service: Arc<dyn Task + Send + Sync> = service;
    let mut methods = create_task(service.clone());
    let v2: Vec<(String, Service)> = create_task(service)
        .into_iter()
        .map(|(name, svc)| {
            (
                name.replace("containerd.task.v3.Task", "containerd.task.v2.Task"),
                svc,
            )
        })
        .collect();
    methods.extend(v2);
    methods
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let span = tracing::debug_span!("create", container = %req.id);
        Ok(TaskService::create(self, namespace(ctx), req)
            .instrument(span)
            .await?)
    }

    async fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let span = tracing::debug_span!("start", container = %req.id);
        let pid = TaskService::start(self, namespace(ctx), &req.id, &req.exec_id)
            .instrument(span)
            .await?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        Ok(TaskService::state(self, namespace(ctx), &req.id)?)
    }

    async fn kill(&self, ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        TaskService::kill(self, namespace(ctx), &req.id, &req.exec_id, req.signal)?;
        Ok(Empty::new())
    }

    async fn wait(&self, ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Ok(TaskService::wait(self, namespace(ctx), &req.id, &req.exec_id).await?)
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        Ok(TaskService::delete(self, namespace(ctx), &req.id, &req.exec_id).await?)
    }

    async fn pids(&self, ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        Ok(TaskService::pids(self, namespace(ctx), &req.id)?)
    }

    async fn stats(&self, ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        Ok(TaskService::stats(self, namespace(ctx), &req.id)?)
    }

    async fn connect(
        &self,
        ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        Ok(TaskService::connect(self, namespace(ctx), &req.id))
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        TaskService::shutdown(self);
        Ok(Empty::new())
    }

    async fn close_io(&self, ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        // The workload holds its stdin FIFO itself; it sees end of file when containerd closes
        // the writing side, so there is nothing for the shim to close.
        self.get(namespace(ctx), &req.id)?;
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
