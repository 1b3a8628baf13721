//! Events published to containerd, in order, from one thread.

use std::sync::mpsc::{channel, Sender};

use containerd_shim::api::CreateTaskRequest;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::publisher::RemotePublisher;

type Queued = (String, &'static str, Box<dyn MessageDyn>);

/// A handle that queues events for containerd, in one containerd namespace.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: Option<Sender<Queued>>,
    namespace: String,
}

impl Events {
    /// Publish through `publisher` to `namespace` from a background thread.
    pub(crate) fn start(publisher: RemotePublisher, namespace: String) -> Self {
        let (tx, rx) = channel::<Queued>();
        let spawned = std::thread::Builder::new()
            .name("wasmcell-events".into())
            .spawn(move || {
                for (namespace, topic, event) in rx {
                    if let Err(e) =
                        publisher.publish(context::with_timeout(0), topic, &namespace, event)
                    {
                        tracing::warn!(topic, error = %e, "failed to publish event");
                    }
                }
            });
        match spawned {
            Ok(_) => Events {
                tx: Some(tx),
                namespace,
            },
            Err(e) => {
                tracing::error!(error = %e, "failed to start the event thread; events are dropped");
                Events {
                    tx: None,
                    namespace,
                }
            }
        }
    }

    /// The same queue, publishing to `namespace` (a shared-mode manager serves them all).
    pub(crate) fn in_namespace(&self, namespace: &str) -> Events {
        Events {
            tx: self.tx.clone(),
            namespace: namespace.to_string(),
        }
    }

    fn send(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((self.namespace.clone(), topic, event));
        }
    }

    /// `TaskCreate` for the container `req` created, its task pid `pid`.
    pub(crate) fn create(&self, req: &CreateTaskRequest, pid: u32) {
        let event = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: false,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        };
        self.send("/tasks/create", Box::new(event));
    }
    pub(crate) fn start_task(&self, e: TaskStart) {
        self.send("/tasks/start", Box::new(e));
    }
    pub(crate) fn exit(&self, e: TaskExit) {
        self.send("/tasks/exit", Box::new(e));
    }
    pub(crate) fn delete(&self, e: TaskDelete) {
        self.send("/tasks/delete", Box::new(e));
    }
    pub(crate) fn oom(&self, e: TaskOOM) {
        self.send("/tasks/oom", Box::new(e));
    }
}
