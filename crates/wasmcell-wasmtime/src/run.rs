use std::collections::HashMap;
use std::sync::Mutex;

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

/// How many pre-instantiated binaries an engine keeps per WASI flavour.
const PRE_ENTRIES: usize = 64;

/// A WASI linker `L`, built on first use and kept for the engine's life, and each binary's
/// imports resolved against it once per content digest (`P`, an `InstancePre`), so that a
/// repeated run only instantiates.
pub(crate) struct Pres<L, P> {
    linker: Mutex<Option<L>>,
    pres: Mutex<HashMap<[u8; 32], P>>,
}

impl<L, P> Default for Pres<L, P> {
    fn default() -> Self {
        Pres {
            linker: Mutex::new(None),
            pres: Mutex::new(HashMap::new()),
        }
    }
}

impl<L, P> std::fmt::Debug for Pres<L, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pres").finish_non_exhaustive()
    }
}

impl<L, P: Clone> Pres<L, P> {
    /// The pre-instantiated binary of `digest`: from memory, or made with `pre` on the linker
    /// (made with `new_linker` the first time).
    pub(crate) fn get(
        &self,
        digest: &[u8; 32],
        new_linker: impl FnOnce() -> wasmtime::Result<L>,
        pre: impl FnOnce(&mut L) -> wasmtime::Result<P>,
    ) -> wasmtime::Result<P> {
        if let Some(p) = self.pres.lock().ok().and_then(|p| p.get(digest).cloned()) {
            return Ok(p);
        }
        let made = {
            let mut linker = self
                .linker
                .lock()
                .map_err(|_| wasmtime::Error::msg("wasi linker lock poisoned"))?;
            let linker = match &mut *linker {
                Some(l) => l,
                None => linker.insert(new_linker()?),
            };
            pre(linker)?
        };
        if let Ok(mut pres) = self.pres.lock() {
            if pres.len() >= PRE_ENTRIES {
                pres.clear();
            }
            pres.insert(*digest, made.clone());
        }
        Ok(made)
    }
}
