use wasmcell_core::{EngineError, GuestExit, Interrupt, WasmBinary};
use wasmtime::{Store, UpdateDeadline};

use crate::limits::GuestLimits;
use crate::GuestMeter;

/// Error raised from the epoch callback when an [`Interrupt`] was triggered.
#[derive(Debug, thiserror::Error)]
#[error("guest interrupted by signal {0}")]
pub(crate) struct Interrupted(pub(crate) i32);

/// Check the interrupt at every epoch tick, and otherwise yield to the async executor, so that a
/// spinning guest shares its thread with others and a host that drops the run stops it there.
/// At each tick `held` counts the WASI resources the guest holds, for `meter`.
pub(crate) fn watch_interrupt<T: 'static>(
    store: &mut Store<T>,
    interrupt: &Interrupt,
    meter: &GuestMeter,
    held: fn(&mut T) -> usize,
) {
    let interrupt = interrupt.clone();
    let meter = meter.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        meter.set_resources(held(ctx.data_mut()));
        match interrupt.requested() {
            Some(signal) => Err(wasmtime::Error::new(Interrupted(signal))),
            None => Ok(UpdateDeadline::Yield(1)),
        }
    });
}

/// Turn the error that ended a guest call into how the guest ended.
pub(crate) fn classify(error: wasmtime::Error, cap: &GuestLimits) -> GuestExit {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return GuestExit::Exited(exit.0);
    }
    if let Some(Interrupted(signal)) = error.downcast_ref::<Interrupted>() {
        return GuestExit::Interrupted(*signal);
    }
    let what = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error
            .chain()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": "),
    };
    tracing::debug!(error = ?error, "guest trapped");
    if cap.refused {
        return GuestExit::OutOfMemory(match cap.budget() {
            Some(limit) => format!("memory limit of {limit} bytes reached ({what})"),
            None => format!("table element cap reached ({what})"),
        });
    }
    GuestExit::Trapped(what)
}

/// The module cannot be linked or lacks the export to call.
pub(crate) fn link_error(wasm: &WasmBinary, reason: impl Into<String>) -> EngineError {
    EngineError::Link {
        module: wasm.path().display().to_string(),
        reason: reason.into(),
    }
}
