//! What the container's init process runs once libcontainer has set the container up
//! (namespaces, cgroups, rootfs, mounts, pivot_root, capabilities, seccomp).
//!
//! A Linux container execs its entrypoint exactly as libcontainer's default executor does. A Wasm
//! container resolves its run plan as the guest sees the filesystem now (rootfs = `/`, each
//! bind mount at its destination), reads and compiles the module in `validate` (before `create`
//! returns, so a bad module fails `create` with a clear error), and in `exec` runs the guest
//! with the init process's stdio, then exits with [`GuestExit::code`]. Signals that would end a
//! process (SIGTERM, SIGINT, ...) interrupt the guest and end the init process with
//! `128 + signal`: as pid 1 of its pid namespace it would otherwise ignore them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use nix::sys::signal::Signal;
use wasmcell_core::{
    Engine, Interrupt, ModuleSource, RunPlan, Stdio, WasmBinary, WorkloadKind, WorkloadSpec,
};
use wasmcell_wasmtime::{CompiledCode, WasmtimeEngine};

use crate::fork::{ProgressWriter, Step};

/// Signals that end a guest (their default action terminates a process).
const STOP_SIGNALS: [i32; 7] = [
    Signal::SIGHUP as i32,
    Signal::SIGINT as i32,
    Signal::SIGQUIT as i32,
    Signal::SIGTERM as i32,
    Signal::SIGUSR1 as i32,
    Signal::SIGUSR2 as i32,
    Signal::SIGALRM as i32,
];

/// How long a guest has to stop after an interrupt before the process exits regardless (a guest
/// blocked in a host call does not see the interrupt).
const INTERRUPT_GRACE: Duration = Duration::from_millis(300);

/// A Wasm workload made ready in `validate`, run in `exec` (same init process).
struct Prepared {
    plan: RunPlan,
    wasm: WasmBinary,
    engine: WasmtimeEngine,
}

/// The executor of every container this runtime creates; the kind is decided on the host
/// before the container is built ([`wasmcell_core::workload_kind`]).
#[derive(Clone)]
pub struct WasmcellExecutor {
    kind: WorkloadKind,
    /// The module's code, compiled on the host before the container was built.
    code: Option<CompiledCode>,
    /// Where the init process reports how far it got ([`crate::fork::Progress`]).
    progress: Option<ProgressWriter>,
    prepared: Rc<RefCell<Option<Prepared>>>,
}

impl std::fmt::Debug for WasmcellExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmcellExecutor")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl WasmcellExecutor {
    /// An executor for a container of this kind.
    pub fn new(kind: WorkloadKind) -> Self {
        WasmcellExecutor {
            kind,
            code: None,
            progress: None,
            prepared: Rc::new(RefCell::new(None)),
        }
    }

    /// Report the init process's steps to `progress`.
    pub fn with_progress(mut self, progress: ProgressWriter) -> Self {
        self.progress = Some(progress);
        self
    }

    fn mark(&self, step: Step) {
        if let Some(p) = &self.progress {
            p.mark(step);
        }
    }

    /// Use `code` (from [`WasmtimeEngine::compiled_code`] in this same binary) for the module
    /// instead of compiling it inside the container.
    pub fn with_code(mut self, code: CompiledCode) -> Self {
        self.code = Some(code);
        self
    }
}

impl Executor for WasmcellExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match self.kind {
            WorkloadKind::Linux => DefaultExecutor {}.validate(spec),
            WorkloadKind::Wasm => {
                become_guest_process(spec).map_err(ExecutorValidationError::ArgValidationError)?;
                self.mark(Step::LoadingModule);
                // Reported by `create`, which receives this error from the init process.
                let prepared = prepare(spec, self.code.as_ref())
                    .map_err(ExecutorValidationError::ArgValidationError)?;
                *self.prepared.borrow_mut() = Some(prepared);
                self.mark(Step::Ready);
                Ok(())
            }
        }
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        match self.kind {
            WorkloadKind::Linux => DefaultExecutor {}.setup_envs(envs),
            // The guest's environment is the plan's, exactly; the process's own does not matter.
            WorkloadKind::Wasm => Ok(()),
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match self.kind {
            WorkloadKind::Linux => DefaultExecutor {}.exec(spec),
            WorkloadKind::Wasm => {
                let prepared = self.prepared.borrow_mut().take();
                let prepared = match prepared {
                    Some(p) => p,
                    None => {
                        become_guest_process(spec).map_err(ExecutorError::Other)?;
                        prepare(spec, self.code.as_ref()).map_err(ExecutorError::Other)?
                    }
                };
                let code = run(prepared);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().flush();
                std::process::exit(code)
            }
        }
    }
}

/// What the container's init process does before it touches the module: it was forked from
/// `create` without exec, so no thread pool from here on (crate::fork); its parent joined every
/// thread before the fork, so it has one thread (anything else is a bug to report, not to run
/// into); and it drops the capabilities `execve` would have dropped.
fn become_guest_process(spec: &Spec) -> Result<(), String> {
    wasmcell_core::fork::enter_forked_child();
    wasmcell_core::fork::ensure_single_threaded("wasm init process").map_err(|e| e.to_string())?;
    caps_as_after_execve(spec)
}

/// libcontainer sets the spec's capabilities and leaves the rest to `execve`, which, for a
/// process that is not root (running a file with no capabilities), makes permitted and
/// effective the ambient set. A Wasm guest runs in this very process, with no `execve`: do what
/// it would have done, so a `runAsUser` guest holds no more than a runc container's process.
fn caps_as_after_execve(spec: &Spec) -> Result<(), String> {
    use caps::CapSet;
    let uid = spec.process().as_ref().map_or(0, |p| p.user().uid());
    if uid == 0 {
        return Ok(());
    }
    let ambient = caps::read(None, CapSet::Ambient)
        .map_err(|e| format!("failed to read ambient capabilities: {e}"))?;
    caps::set(None, CapSet::Effective, &ambient)
        .and_then(|()| caps::set(None, CapSet::Permitted, &ambient))
        .map_err(|e| format!("failed to drop capabilities for uid {uid}: {e}"))
}

/// The run plan as the guest sees the filesystem from inside the container (the rootfs is `/`
/// and every bind mount is already at its destination), and where its module is.
pub fn plan_in_container(spec: &Spec) -> Result<(RunPlan, ModuleSource), wasmcell_core::Error> {
    let workload = WorkloadSpec::from_oci(spec)?.inside_root();
    Ok(RunPlan::resolve(&workload, Path::new("/"))?)
}

fn prepare(spec: &Spec, code: Option<&CompiledCode>) -> Result<Prepared, String> {
    let one = |e: wasmcell_core::Error| e.to_string();
    let (plan, source) = plan_in_container(spec).map_err(one)?;
    let wasm = source.read().map_err(|e| e.to_string())?;
    let engine = WasmtimeEngine::new().map_err(|e| e.to_string())?;
    if let Some(code) = code {
        // SAFETY: `code` was made by `compiled_code` of an engine built by this same binary
        // with the same configuration, in the `create` process this one was forked from, and
        // never left its memory; `adopt_compiled` checks it is the code of these very bytes.
        #[allow(unsafe_code)]
        let adopted = unsafe { engine.adopt_compiled(&wasm, code) };
        match adopted {
            Ok(true) => {}
            Ok(false) => tracing::warn!("module changed since create compiled it; compiling again"),
            Err(e) => tracing::warn!("cannot load the code compiled at create: {e}"),
        }
    }
    engine.prepare(&plan, &wasm).map_err(|e| e.to_string())?;
    Ok(Prepared { plan, wasm, engine })
}

/// Run the guest; returns the process exit status.
fn run(prepared: Prepared) -> i32 {
    let interrupt = Interrupt::new();
    forward_stop_signals(&interrupt, grace_after_stop(&prepared));
    let Prepared { plan, wasm, engine } = prepared;
    match engine.run(&plan, &wasm, Stdio::inherit(), &interrupt) {
        Ok(exit) => {
            if let Some(report) = exit.report() {
                eprintln!("wasmcell: {report}");
            }
            exit.code()
        }
        Err(e) => {
            eprintln!("wasmcell: {e}");
            e.exit_code()
        }
    }
}

/// How long the process may take to end once a stop signal came: a command gets
/// [`INTERRUPT_GRACE`] (a guest blocked in a host call does not see the interrupt); an HTTP
/// guest drains its requests first (its drain timeout, then the same grace).
fn grace_after_stop(prepared: &Prepared) -> Duration {
    let serves_http = prepared
        .engine
        .prepare_guest(&prepared.plan, &prepared.wasm)
        .is_ok_and(|p| p.serves_http());
    if !serves_http {
        return INTERRUPT_GRACE;
    }
    let drain = wasmcell_wasmtime::http::HttpOptions::from_env(&prepared.plan.env)
        .map(|o| o.drain_timeout)
        .unwrap_or_default();
    drain + INTERRUPT_GRACE
}

/// A thread that turns a stop signal into an interrupt of the guest, and ends the process with
/// `128 + signal` if the guest has not stopped within `grace` ([`grace_after_stop`]).
fn forward_stop_signals(interrupt: &Interrupt, grace: Duration) {
    let mut signals = match signal_hook::iterator::Signals::new(STOP_SIGNALS) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot handle stop signals in the wasm init process: {e}");
            return;
        }
    };
    let interrupt = interrupt.clone();
    let spawned = std::thread::Builder::new()
        .name("wasmcell-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                interrupt.trigger(signal);
                std::thread::sleep(grace);
                let _ = std::io::stdout().flush();
                std::process::exit(128 + signal);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the signal thread of the wasm init process: {e}");
    }
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};

    use super::*;

    #[test]
    fn plan_in_container_is_rooted_at_slash() {
        // `/` and `/tmp` exist on any host this runs on; a missing module is the error.
        let spec = SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(vec!["/nonexistent-wasmcell-test.wasm".to_string()])
                    .cwd("/tmp")
                    .build()
                    .expect("process"),
            )
            .root(
                RootBuilder::default()
                    .path("/some/host/rootfs")
                    .build()
                    .expect("root"),
            )
            .build()
            .expect("spec");
        let (plan, source) = plan_in_container(&spec).expect("plan");
        assert_eq!(plan.preopens[0].guest, "/");
        assert_eq!(plan.preopens[0].host, Path::new("/"));
        assert_eq!(source.path, Path::new("/nonexistent-wasmcell-test.wasm"));
    }
}
