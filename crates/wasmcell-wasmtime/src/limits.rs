use wasmtime::ResourceLimiter;

use crate::GuestMeter;

/// Caps each linear memory at the container's memory limit and remembers whether a growth was
/// refused, so that a trap that follows can be reported as running out of memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryCap {
    limit: Option<usize>,
    pub(crate) refused: bool,
    meter: GuestMeter,
}

impl MemoryCap {
    pub(crate) fn new(limit: Option<u64>, meter: GuestMeter) -> Self {
        MemoryCap {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            refused: false,
            meter,
        }
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.limit.is_some_and(|limit| desired > limit) {
            tracing::debug!(desired, limit = ?self.limit, "refusing memory growth");
            self.refused = true;
            return Ok(false);
        }
        let allowed = maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.meter.grew(current, desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}
