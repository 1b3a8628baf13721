use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::{RunPlan, Stdio, WasmBinary};

/// Why an engine could not run a guest. Traps and exits are not errors: see [`GuestExit`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine itself could not be set up.
    #[error("failed to configure engine {engine}: {reason}")]
    Config {
        /// Engine name.
        engine: &'static str,
        /// What failed.
        reason: String,
    },
    /// The binary is Wasm but not valid, or uses features the engine does not support.
    #[error("failed to compile {module}: {reason}")]
    Compile {
        /// The module's path.
        module: String,
        /// The engine's message.
        reason: String,
    },
    /// The module imports something the host does not provide, or lacks the export to call.
    #[error("cannot run {module}: {reason}")]
    Link {
        /// The module's path.
        module: String,
        /// What is missing.
        reason: String,
    },
    /// A preopened directory or stdio stream could not be handed to the guest.
    #[error("failed to set up the guest's wasi context: {reason}")]
    Wasi {
        /// What failed, naming the path.
        reason: String,
    },
    /// An HTTP guest could not be served: its listen address or limits are invalid, or the
    /// address cannot be bound (in use).
    #[error("cannot serve {module}: {reason}")]
    Serve {
        /// The module's path.
        module: String,
        /// What failed, naming the address or the variable.
        reason: String,
    },
}

impl EngineError {
    /// The exit status a host reports for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Config { .. } | EngineError::Wasi { .. } | EngineError::Serve { .. } => {
                crate::EXIT_CONFIG_ERROR
            }
            EngineError::Compile { .. } | EngineError::Link { .. } => crate::EXIT_NOT_RUNNABLE,
        }
    }
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// Returned from its entry, or called `proc_exit` / `wasi:cli/exit`, with this status.
    Exited(i32),
    /// Trapped; the message names the trap.
    Trapped(String),
    /// Trapped after its memory limit refused a growth; the message says which limit.
    OutOfMemory(String),
    /// Stopped from outside through an [`Interrupt`], carrying the signal number asked for.
    Interrupted(i32),
}

impl GuestExit {
    /// The process exit status for this ending: the guest's own status,
    /// [`EXIT_TRAP`](crate::EXIT_TRAP) for a trap, [`EXIT_OOM`](crate::EXIT_OOM) when the memory
    /// limit was hit (as for a container the kernel OOM-killed), `128 + signal` for an interrupt.
    pub fn code(&self) -> i32 {
        match self {
            GuestExit::Exited(code) => *code,
            GuestExit::Trapped(_) => crate::EXIT_TRAP,
            GuestExit::OutOfMemory(_) => crate::EXIT_OOM,
            GuestExit::Interrupted(signal) => 128 + signal,
        }
    }

    /// What a host tells the container's stderr about this ending, if anything: `"guest
    /// trapped: ..."` or `"guest ran out of memory: ..."`; nothing for an exit or an interrupt.
    /// Every host words it the same way.
    pub fn report(&self) -> Option<String> {
        match self {
            GuestExit::Trapped(m) => Some(format!("guest trapped: {m}")),
            GuestExit::OutOfMemory(m) => Some(format!("guest ran out of memory: {m}")),
            GuestExit::Exited(_) | GuestExit::Interrupted(_) => None,
        }
    }
}

/// A handle that stops a running guest from another thread: the engine checks it at least every
/// few milliseconds of guest execution and ends the run with [`GuestExit::Interrupted`].
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicI32>);

impl Interrupt {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the guest to stop, recording `signal` as the reason (e.g. 9 for SIGKILL).
    pub fn trigger(&self, signal: i32) {
        self.0.store(signal.max(1), Ordering::SeqCst);
    }

    /// The signal asked for, if any.
    pub fn requested(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

/// A Wasm engine: compiles and runs one guest per call to [`Engine::run`].
///
/// Implementations are cheap to share across threads; an engine built once serves many runs.
pub trait Engine: Send + Sync {
    /// A short name for logs and errors, e.g. `wasmtime`.
    fn name(&self) -> &'static str;

    /// Compile `wasm` and check that it has the entry `plan` will call, so that a broken binary
    /// or a missing export is reported before the guest is started. Engines may cache the
    /// compiled code.
    fn prepare(&self, plan: &RunPlan, wasm: &WasmBinary) -> Result<(), EngineError>;

    /// Run the guest described by `plan` to its end on the calling thread.
    fn run(
        &self,
        plan: &RunPlan,
        wasm: &WasmBinary,
        stdio: Stdio,
        interrupt: &Interrupt,
    ) -> Result<GuestExit, EngineError>;
}
