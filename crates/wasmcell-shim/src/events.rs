//! Events published to containerd, in order, from one thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Events queued and not yet delivered (or given up on).
    pending: Arc<AtomicUsize>,
}

impl Events {
    /// Publish through `publisher` (connected to containerd at `address`) to `namespace` from a
    /// background thread. When containerd restarts, the connection is made again and the event
    /// retried, so no exit is lost across a restart.
    pub(crate) fn start(publisher: RemotePublisher, address: String, namespace: String) -> Self {
        let (tx, rx) = channel::<Queued>();
        let pending = Arc::new(AtomicUsize::new(0));
        let done = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("wasmcell-events".into())
            .spawn(move || {
                let mut publisher = Some(publisher);
                for (namespace, topic, event) in rx {
                    publish(&mut publisher, &address, &namespace, topic, event);
                    done.fetch_sub(1, Ordering::SeqCst);
                }
            });
        match spawned {
            Ok(_) => Events {
                tx: Some(tx),
                namespace,
                pending,
            },
            Err(e) => {
                tracing::error!(error = %e, "failed to start the event thread; events are dropped");
                Events {
                    tx: None,
                    namespace,
                    pending,
                }
            }
        }
    }

    /// The same queue, publishing to `namespace` (a shared-mode manager serves them all).
    pub(crate) fn in_namespace(&self, namespace: &str) -> Events {
        Events {
            tx: self.tx.clone(),
            namespace: namespace.to_string(),
            pending: self.pending.clone(),
        }
    }

    fn send(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        if let Some(tx) = &self.tx {
            self.pending.fetch_add(1, Ordering::SeqCst);
            if tx.send((self.namespace.clone(), topic, event)).is_err() {
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Wait (at most `timeout`) until every queued event is delivered: before the process exits.
    pub(crate) fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
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

/// How long apart the attempts to deliver one event are (containerd may be restarting).
const RETRY_DELAYS_MS: [u64; 6] = [0, 50, 200, 500, 1000, 2000];

fn publish(
    publisher: &mut Option<RemotePublisher>,
    address: &str,
    namespace: &str,
    topic: &'static str,
    event: Box<dyn MessageDyn>,
) {
    let mut last_error = String::new();
    for delay in RETRY_DELAYS_MS {
        std::thread::sleep(Duration::from_millis(delay));
        if publisher.is_none() {
            match RemotePublisher::new(address) {
                Ok(p) => *publisher = Some(p),
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_ref() else {
            continue;
        };
        match p.publish(
            context::with_timeout(0),
            topic,
            namespace,
            event.clone_box(),
        ) {
            Ok(()) => return,
            Err(e) => {
                last_error = e.to_string();
                *publisher = None;
            }
        }
    }
    tracing::warn!(topic, namespace, error = %last_error, "failed to publish event");
}
