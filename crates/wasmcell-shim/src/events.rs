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
use containerd_shim::protos::ttrpc::{self, context};
use containerd_shim::publisher::RemotePublisher;

use crate::task::wire::timestamp;
use crate::task::Exit;

/// An event, its namespace and topic, and when it was queued.
pub(crate) type Queued = (String, &'static str, Box<dyn MessageDyn>, Instant);

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
                for (namespace, topic, event, queued) in rx {
                    publish(&mut publisher, &address, &namespace, topic, event);
                    let waited = queued.elapsed();
                    if waited > LATE {
                        tracing::info!(
                            topic,
                            namespace,
                            waited_ms = waited.as_millis() as u64,
                            "event delivered late, after waiting for containerd"
                        );
                    }
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
            if tx
                .send((self.namespace.clone(), topic, event, Instant::now()))
                .is_err()
            {
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
    pub(crate) fn created(&self, req: &CreateTaskRequest, pid: u32) {
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

    /// `TaskStart` for container `id`.
    pub(crate) fn started(&self, id: &str, pid: u32) {
        let event = TaskStart {
            container_id: id.to_string(),
            pid,
            ..Default::default()
        };
        self.send("/tasks/start", Box::new(event));
    }

    /// `TaskExit` for container `id`, after `TaskOOM` when it ran out of memory.
    pub(crate) fn exited(&self, id: &str, pid: u32, exit: Exit) {
        if exit.oom {
            let event = TaskOOM {
                container_id: id.to_string(),
                ..Default::default()
            };
            self.send("/tasks/oom", Box::new(event));
        }
        let event = TaskExit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        };
        self.send("/tasks/exit", Box::new(event));
    }

    /// `TaskDelete` for container `id`, which ended with `exit`.
    pub(crate) fn deleted(&self, id: &str, pid: u32, exit: Exit) {
        let event = TaskDelete {
            container_id: id.to_string(),
            id: id.to_string(),
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        };
        self.send("/tasks/delete", Box::new(event));
    }

    /// A queue whose events are handed to the returned receiver instead of containerd: the
    /// fake sink of the Task service's unit tests.
    #[cfg(test)]
    pub(crate) fn recording(namespace: &str) -> (Self, std::sync::mpsc::Receiver<Queued>) {
        let (tx, rx) = channel::<Queued>();
        let events = Events {
            tx: Some(tx),
            namespace: namespace.to_string(),
            pending: Arc::default(),
        };
        (events, rx)
    }
}

/// An event delivered this long after it was queued is logged (it waited for containerd).
const LATE: Duration = Duration::from_secs(1);
/// The first wait before delivering an event again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between two attempts while containerd cannot be reached.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long one attempt may take: a hung containerd holds the queue this long, then the
/// attempt counts as failed (and is tried again), so the publisher never hangs.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times an event containerd answered with an error is offered before it is given up
/// (containerd refuses it: it will not take it later either).
const REFUSED_ATTEMPTS: u32 = 5;

/// Deliver one event. While containerd cannot be reached (stopped, restarting, hung), the event
/// is kept and tried again with backoff, for as long as it takes: an exit is never dropped
/// because containerd was down. The queue holds a few events per container (create, start,
/// exit, oom, delete), so what it keeps meanwhile is bounded by the containers of the node.
fn publish(
    publisher: &mut Option<RemotePublisher>,
    address: &str,
    namespace: &str,
    topic: &'static str,
    event: Box<dyn MessageDyn>,
) {
    let mut delay = FIRST_RETRY_DELAY;
    let mut refusals = 0;
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        if publisher.is_none() {
            match RemotePublisher::new(address) {
                Ok(p) => *publisher = Some(p),
                Err(e) => {
                    backoff(&mut delay, attempts, topic, namespace, &e.to_string());
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_ref() else {
            continue;
        };
        let timeout = i64::try_from(PUBLISH_TIMEOUT.as_nanos()).unwrap_or(i64::MAX);
        match p.publish(
            context::with_timeout(timeout),
            topic,
            namespace,
            event.clone_box(),
        ) {
            Ok(()) => {
                if attempts > 1 {
                    tracing::info!(
                        topic,
                        namespace,
                        attempts,
                        "event delivered after containerd came back"
                    );
                }
                return;
            }
            Err(containerd_shim::Error::Ttrpc(ttrpc::Error::RpcStatus(status)))
                if !unreachable(status.code()) =>
            {
                refusals += 1;
                if refusals >= REFUSED_ATTEMPTS {
                    tracing::warn!(topic, namespace, error = %status.message(), "containerd refused the event; dropped");
                    return;
                }
                std::thread::sleep(FIRST_RETRY_DELAY);
            }
            Err(e) => {
                *publisher = None;
                backoff(&mut delay, attempts, topic, namespace, &e.to_string());
            }
        }
    }
}

/// Whether a status says containerd was not there to answer (rather than refused).
fn unreachable(code: ttrpc::Code) -> bool {
    matches!(
        code,
        ttrpc::Code::UNAVAILABLE | ttrpc::Code::DEADLINE_EXCEEDED
    )
}

/// Wait before the next attempt, twice as long as the last time (at most [`MAX_RETRY_DELAY`]).
fn backoff(delay: &mut Duration, attempts: u64, topic: &str, namespace: &str, error: &str) {
    if attempts == 3 || attempts.is_multiple_of(60) {
        tracing::warn!(
            topic,
            namespace,
            attempts,
            error,
            "containerd cannot be reached; keeping the event"
        );
    }
    std::thread::sleep(*delay);
    *delay = (*delay * 2).min(MAX_RETRY_DELAY);
}
