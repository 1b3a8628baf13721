use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a running guest holds, readable from another thread while it runs (a host's stats).
///
/// Counts the bytes of the guest's linear memories and tables (elements x pointer size) as the
/// engine grants them; it is the Wasm view of memory, not the process's RSS, and is the figure a
/// memory limit is checked against.
#[derive(Debug, Clone, Default)]
pub struct GuestMeter {
    memory: Arc<AtomicU64>,
    resources: Arc<AtomicU64>,
}

impl GuestMeter {
    /// A meter reading zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of linear memory and tables the guest holds now.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// WASI resources (open files and directories, streams, pollables) the guest held at its
    /// last epoch tick: what it holds of its host's descriptors, counted while it runs.
    pub fn resources(&self) -> u64 {
        self.resources.load(Ordering::Relaxed)
    }

    pub(crate) fn set_resources(&self, n: usize) {
        self.resources.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn grew(&self, from: usize, to: usize) {
        let added = to.saturating_sub(from) as u64;
        self.memory.fetch_add(added, Ordering::Relaxed);
    }
}
