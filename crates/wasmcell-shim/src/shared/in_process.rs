//! The shared-mode backend: a Wasm container run as an instance inside the manager process,
//! its prepared guest started as a task on the guests' executor.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics,
};
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmcell_core::{GuestExit, Interrupt, RunPlan, Stdio, StdioStream, WasmBinary};
use wasmcell_wasmtime::{GuestMeter, PreparedGuest, RunWith, WasmtimeEngine};

use crate::shared::cpu_time::{CpuQuota, Metered};
use crate::shared::output::Outputs;
use crate::stdio::GuestStdio;
use crate::task::lock;
use crate::ShimError;

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
    /// For an HTTP guest, its socket, bound at Create in the container's network namespace.
    pub(crate) listener: Option<std::net::TcpListener>,
}

/// A Wasm container run inside the manager process.
#[derive(Debug)]
pub(crate) struct InProcessGuest {
    engine: Arc<WasmtimeEngine>,
    /// The executor guests run on (not the one serving requests).
    guests: tokio::runtime::Handle,
    memory_limit: Option<u64>,
    /// Taken by Start (or dropped by a kill before it).
    prepared: Mutex<Option<Box<Prepared>>>,
    kill: Mutex<Option<oneshot::Sender<i32>>>,
    /// Asks an HTTP guest to stop taking requests and drain.
    drain: Interrupt,
    /// Whether it serves HTTP: SIGTERM and SIGINT drain it rather than stop it at once.
    serves_http: bool,
    meter: GuestMeter,
    cpu_nanos: Arc<AtomicU64>,
    /// The host directories the guest may reach, where its blocked calls are looked for once
    /// it is killed (see unpin.rs).
    dirs: Arc<[PathBuf]>,
}

impl InProcessGuest {
    pub(crate) fn new(
        prepared: Box<Prepared>,
        engine: Arc<WasmtimeEngine>,
        guests: tokio::runtime::Handle,
    ) -> Self {
        InProcessGuest {
            engine,
            guests,
            memory_limit: prepared.plan.memory_limit,
            dirs: prepared
                .plan
                .preopens
                .iter()
                .map(|p| p.host.clone())
                .collect(),
            serves_http: prepared.guest.serves_http(),
            prepared: Mutex::new(Some(prepared)),
            kill: Mutex::new(None),
            drain: Interrupt::new(),
            meter: GuestMeter::new(),
            cpu_nanos: Arc::default(),
        }
    }

    /// The guest's usage: its linear memory (against its limit) and CPU time.
    pub(crate) fn metrics(&self) -> Metrics {
        let memory_bytes = self.meter.memory_bytes();
        let cpu_nanos = self.cpu_nanos.load(Ordering::Relaxed);
        let mut metrics = Metrics::new();
        let mut memory = MemoryStat::new();
        let mut usage = MemoryEntry::new();
        usage.usage = memory_bytes;
        usage.limit = self.memory_limit.unwrap_or_default();
        memory.usage = Some(usage).into();
        memory.rss = memory_bytes;
        metrics.memory = Some(memory).into();
        let mut cpu = CPUStat::new();
        let mut cpu_usage = CPUUsage::new();
        cpu_usage.total = cpu_nanos;
        cpu_usage.user = cpu_nanos;
        cpu.usage = Some(cpu_usage).into();
        metrics.cpu = Some(cpu).into();
        metrics
    }

    /// WASI resources (files, directories, streams) the guest holds: its share of the
    /// manager's descriptors, besides its stdio and its directories.
    pub(crate) fn resources(&self) -> u64 {
        self.meter.resources()
    }

    /// Start the guest on the guests' executor; `exited` runs with its exit status, and
    /// whether it ran out of memory, when it has ended (watched from the current executor).
    pub(crate) fn start(
        &self,
        id: &str,
        exited: impl FnOnce(u32, bool) + Send + 'static,
    ) -> Result<(), ShimError> {
        let prepared = lock(&self.prepared).take().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("container {id} has no prepared guest"))
        })?;
        let (kill_tx, kill_rx) = oneshot::channel();
        *lock(&self.kill) = Some(kill_tx);

        let (engine, meter, drain) = (self.engine.clone(), self.meter.clone(), self.drain.clone());
        // Kept until the output has been read (see output.rs); a trap or out-of-memory message
        // goes to the container's stderr through them, as the guest process writes it there.
        let outputs = Outputs::hold(&prepared.stdio);
        let quota = prepared.cpu_quota;
        let span = tracing::info_span!("guest", container = %id);
        let run = self.guests.spawn(Metered::new(
            async move {
                let Prepared {
                    plan,
                    wasm,
                    guest,
                    stdio,
                    listener,
                    ..
                } = *prepared;
                let stdio = Stdio {
                    stdin: StdioStream::File(stdio.stdin),
                    stdout: StdioStream::File(stdio.stdout),
                    stderr: StdioStream::File(stdio.stderr),
                };
                let with = RunWith {
                    stdio,
                    interrupt: &drain,
                    meter: &meter,
                    listener,
                };
                engine.run_prepared(&guest, &plan, &wasm, with).await
            }
            .instrument(span),
            self.cpu_nanos.clone(),
            quota,
        ));
        let (id, dirs) = (id.to_string(), self.dirs.clone());
        tokio::spawn(async move {
            let (code, oom) = supervise(&id, run, kill_rx, outputs, dirs).await;
            exited(code, oom);
        });
        Ok(())
    }

    /// Stop the guest with `signal` (0 to 64); returns the exit status when that ended a guest
    /// that never started (nothing runs to report it later). Signals whose default action is
    /// to be ignored do nothing, as for a process that does not catch them.
    pub(crate) fn kill(&self, signal: i32, started: bool) -> Option<u32> {
        if signal == 0 || ignored_by_default(signal) {
            return None;
        }
        if !started {
            // The prepared guest is dropped with its stdio.
            lock(&self.prepared).take();
            return Some(128 + signal as u32);
        }
        if self.serves_http && matches!(signal, SIGINT | SIGTERM) {
            // Stop taking requests and drain; the run then ends by itself (0, or 128 + signal
            // if the drain timeout cut requests off).
            self.drain.trigger(signal);
            return None;
        }
        if let Some(tx) = lock(&self.kill).take() {
            let _ = tx.send(signal);
        }
        None
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
        Err(_) => (wasmcell_core::EXIT_KILLED as u32, false),
    }
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Signals a process that does not handle them ignores (SIGCHLD, SIGCONT, SIGURG, SIGWINCH).
fn ignored_by_default(signal: i32) -> bool {
    matches!(signal, 17 | 18 | 23 | 28)
}
