use wasmcell_core::{Interrupt, Stdio};

use crate::GuestMeter;

/// What one guest run is given besides its plan and binary.
pub(crate) struct GuestRun<'a> {
    pub(crate) stdio: Stdio,
    pub(crate) interrupt: &'a Interrupt,
    pub(crate) meter: &'a GuestMeter,
    /// Whether host calls may block the calling thread (faster file I/O and sleeps for a
    /// thread that runs only this guest); false when guests share an executor's threads.
    pub(crate) may_block_thread: bool,
}
