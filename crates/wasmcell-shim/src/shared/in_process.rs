//! One container in the manager: its prepared guest, its state, and the run as a task on the
//! manager's async executor.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{oneshot, watch};
use wasmcell_core::{GuestExit, Interrupt, RunPlan, Stdio, StdioStream, WasmBinary};
use wasmcell_wasmtime::{GuestMeter, PreparedGuest, WasmtimeEngine};

use crate::instance::{lock, Status};
use crate::shared::cpu_time::{CpuQuota, Metered};
use crate::shared::output::Outputs;
use crate::stdio::GuestStdio;
use crate::ShimError;

/// How a guest ended, as the Task API reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    pub(crate) code: u32,
    pub(crate) at: SystemTime,
    pub(crate) oom: bool,
}

/// What Create prepared and Start consumes.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) plan: RunPlan,
    pub(crate) wasm: WasmBinary,
    /// Compiled and linked at Create: Start neither reads, compiles nor links.
    pub(crate) guest: PreparedGuest,
    pub(crate) stdio: GuestStdio,
    /// Whether Create mounted the container's rootfs.
    pub(crate) mounted: bool,
    /// The container's CPU quota, enforced on the guest's polls.
    pub(crate) cpu_quota: Option<CpuQuota>,
}

/// A Wasm container run inside the manager process.
#[derive(Debug)]
pub(crate) struct SharedInstance {
    pub(crate) req: InstanceRequest,
    pub(crate) memory_limit: Option<u64>,
    prepared: Mutex<Option<Prepared>>,
    status: Mutex<Status>,
    kill: Mutex<Option<oneshot::Sender<i32>>>,
    exit: watch::Sender<Option<Exit>>,
    meter: GuestMeter,
    cpu_nanos: Arc<AtomicU64>,
    /// The host directories the guest may reach, where its blocked calls are looked for once
    /// it is killed (see unpin.rs).
    dirs: Arc<[PathBuf]>,
}

/// What Create was asked for.
#[derive(Debug)]
pub(crate) struct InstanceRequest {
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) bundle: PathBuf,
    pub(crate) stdin: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl SharedInstance {
    pub(crate) fn new(req: InstanceRequest, prepared: Prepared) -> Self {
        SharedInstance {
            memory_limit: prepared.plan.memory_limit,
            dirs: prepared
                .plan
                .preopens
                .iter()
                .map(|p| p.host.clone())
                .collect(),
            req,
            prepared: Mutex::new(Some(prepared)),
            status: Mutex::new(Status::Created),
            kill: Mutex::new(None),
            exit: watch::channel(None).0,
            meter: GuestMeter::new(),
            cpu_nanos: Arc::default(),
        }
    }

    pub(crate) fn status(&self) -> Status {
        *lock(&self.status)
    }

    pub(crate) fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Linear memory the guest holds, in bytes.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.meter.memory_bytes()
    }

    /// WASI resources (files, directories, streams) the guest holds: its share of the
    /// manager's descriptors, besides its stdio and its directories.
    pub(crate) fn resources(&self) -> u64 {
        self.meter.resources()
    }

    /// CPU time spent running the guest (and its host calls), in nanoseconds.
    pub(crate) fn cpu_nanos(&self) -> u64 {
        self.cpu_nanos.load(Ordering::Relaxed)
    }

    /// Start the guest on the executor `guests`; `started` runs once it counts as running,
    /// before any exit can be recorded, and `exited` runs when it has ended (watched from the
    /// current executor).
    pub(crate) fn start(
        self: &Arc<Self>,
        engine: Arc<WasmtimeEngine>,
        guests: &tokio::runtime::Handle,
        started: impl FnOnce(),
        exited: impl FnOnce(Exit) + Send + 'static,
    ) -> Result<(), ShimError> {
        let mut status = lock(&self.status);
        status.check_startable(&self.req.id)?;
        let prepared = lock(&self.prepared).take().ok_or_else(|| {
            ShimError::FailedPrecondition(format!(
                "container {} has no prepared guest",
                self.req.id
            ))
        })?;
        let (kill_tx, kill_rx) = oneshot::channel();
        *lock(&self.kill) = Some(kill_tx);
        *status = Status::Running;
        started();
        drop(status);

        let meter = self.meter.clone();
        let cpu = self.cpu_nanos.clone();
        let id = self.req.id.clone();
        // Kept until the output has been read (see output.rs); a trap or out-of-memory message
        // goes to the container's stderr through them, as in normal mode.
        let outputs = Outputs::hold(&prepared.stdio);
        let quota = prepared.cpu_quota;
        let run = guests.spawn(Metered::new(
            async move {
                let Prepared {
                    plan,
                    wasm,
                    guest,
                    stdio,
                    ..
                } = prepared;
                let stdio = Stdio {
                    stdin: StdioStream::File(stdio.stdin),
                    stdout: StdioStream::File(stdio.stdout),
                    stderr: StdioStream::File(stdio.stderr),
                };
                let interrupt = Interrupt::new();
                engine
                    .run_prepared(&guest, &plan, &wasm, stdio, &interrupt, &meter)
                    .await
            },
            cpu,
            quota,
        ));
        let this = self.clone();
        let dirs = self.dirs.clone();
        tokio::spawn(async move {
            let code = supervise(&id, run, kill_rx, outputs, dirs).await;
            let exit = this.set_exited(code.0, code.1);
            exited(exit);
        });
        Ok(())
    }

    /// Stop the guest with `signal` (its exit status becomes 128 + signal). Signals whose
    /// default action is to be ignored do nothing, as for a process that does not catch them.
    pub(crate) fn kill(&self, signal: u32) -> Result<Option<Exit>, ShimError> {
        let signal = i32::try_from(signal)
            .ok()
            .filter(|s| (1..=64).contains(s) || *s == 0)
            .ok_or_else(|| ShimError::InvalidArgument(format!("invalid signal {signal}")))?;
        let status = lock(&self.status);
        match *status {
            Status::Stopped => Err(ShimError::NotFound(format!(
                "process of container {} already finished",
                self.req.id
            ))),
            _ if signal == 0 || ignored_by_default(signal) => Ok(None),
            Status::Created => {
                drop(status);
                // Never started: the prepared guest is dropped with its stdio.
                lock(&self.prepared).take();
                Ok(Some(self.set_exited(128 + signal as u32, false)))
            }
            Status::Running => {
                if let Some(tx) = lock(&self.kill).take() {
                    let _ = tx.send(signal);
                }
                Ok(None)
            }
        }
    }

    /// Wait until the guest has ended.
    pub(crate) async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; this is not reached.
                return Exit {
                    code: 137,
                    at: SystemTime::now(),
                    oom: false,
                };
            }
        }
    }

    fn set_exited(&self, code: u32, oom: bool) -> Exit {
        let mut status = lock(&self.status);
        let exit = Exit {
            code,
            at: SystemTime::now(),
            oom,
        };
        *status = Status::Stopped;
        self.exit.send_replace(Some(exit));
        exit
    }
}

/// Await the guest's run or a kill, whichever comes first; a kill drops the run where it is
/// (at its next epoch yield when spinning, at once when waiting in a host call). Returns the
/// exit status and whether the guest ran out of memory.
async fn supervise(
    id: &str,
    mut run: tokio::task::JoinHandle<Result<GuestExit, wasmcell_core::EngineError>>,
    kill: oneshot::Receiver<i32>,
    mut outputs: Outputs,
    dirs: Arc<[PathBuf]>,
) -> (u32, bool) {
    let ended = tokio::select! {
        ended = &mut run => ended,
        Ok(signal) = kill => {
            run.abort();
            let _ = run.await;
            wake_blocked_calls(id, dirs);
            tracing::info!(container = %id, signal, "guest stopped by signal");
            // Killed: reported at once, as the kernel reports a killed process, without
            // waiting for a reader to take what it wrote (it stays in the pipe for one).
            drop(outputs);
            return (128 + signal as u32, false);
        }
    };
    let ended = ended_as(id, ended, &mut outputs);
    outputs.drained().await;
    ended
}

/// Interrupt the calls the killed guest left blocked on FIFOs, from a thread of its own (the
/// blocking pool may be what they hold).
fn wake_blocked_calls(id: &str, dirs: Arc<[PathBuf]>) {
    let id = id.to_string();
    let spawned = std::thread::Builder::new()
        .name("wasmcell-unpin".into())
        .spawn(move || crate::shared::unpin::wake_blocked_calls(&id, &dirs));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "failed to start the thread that wakes a killed guest's blocked calls");
    }
}

/// The exit status of a run that ended by itself, and whether it ran out of memory; a trap or
/// out-of-memory message goes to the container's stderr.
fn ended_as(
    id: &str,
    ended: Result<Result<GuestExit, wasmcell_core::EngineError>, tokio::task::JoinError>,
    outputs: &mut Outputs,
) -> (u32, bool) {
    match ended {
        Ok(Ok(exit)) => {
            if let Some(report) = exit.report() {
                tracing::info!(container = %id, %report, "guest ended");
                outputs.tell(&format!("wasmcell: {report}"));
            }
            let oom = matches!(exit, GuestExit::OutOfMemory(_));
            (exit.code() as u32, oom)
        }
        Ok(Err(e)) => {
            tracing::warn!(container = %id, error = %e, "guest failed to run");
            (e.exit_code() as u32, false)
        }
        Err(e) if e.is_panic() => {
            tracing::error!(container = %id, "the host panicked running this guest; only this container is affected");
            (wasmcell_core::EXIT_TRAP as u32, false)
        }
        Err(_) => (137, false),
    }
}

/// Signals a process that does not handle them ignores (SIGCHLD, SIGCONT, SIGURG, SIGWINCH).
fn ignored_by_default(signal: i32) -> bool {
    matches!(signal, 17 | 18 | 23 | 28)
}
