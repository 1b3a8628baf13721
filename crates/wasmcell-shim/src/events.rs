//! Events published to containerd, in order, from one thread.

use std::sync::mpsc::{channel, Sender};

use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::publisher::RemotePublisher;

/// A handle that queues events for containerd.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: Option<Sender<(&'static str, Box<dyn MessageDyn>)>>,
}

impl Events {
    /// Publish through `publisher` to `namespace` from a background thread.
    pub(crate) fn start(publisher: RemotePublisher, namespace: String) -> Self {
        let (tx, rx) = channel::<(&'static str, Box<dyn MessageDyn>)>();
        let spawned = std::thread::Builder::new()
            .name("wasmcell-events".into())
            .spawn(move || {
                for (topic, event) in rx {
                    if let Err(e) =
                        publisher.publish(context::with_timeout(0), topic, &namespace, event)
                    {
                        tracing::warn!(topic, error = %e, "failed to publish event");
                    }
                }
            });
        match spawned {
            Ok(_) => Events { tx: Some(tx) },
            Err(e) => {
                tracing::error!(error = %e, "failed to start the event thread; events are dropped");
                Events { tx: None }
            }
        }
    }

    fn send(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((topic, event));
        }
    }

    pub(crate) fn create(&self, e: TaskCreate) {
        self.send("/tasks/create", Box::new(e));
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
