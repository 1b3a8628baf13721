use wasmtime::ResourceLimiter;

use crate::GuestMeter;

/// Most instances one guest may create (a component is several core instances).
pub(crate) const MAX_INSTANCES: usize = 1_000;
/// Most linear memories one guest may hold, over all its instances.
pub(crate) const MAX_MEMORIES: usize = 100;
/// Most tables one guest may hold, over all its instances.
pub(crate) const MAX_TABLES: usize = 1_000;
/// Most elements of one table, whatever the budget: a table is host memory allocated at once,
/// and a refused allocation aborts the process rather than failing.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 10_000_000;
/// What the budget counts for each table element (a pointer in Wasmtime's tables).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// One memory budget for everything a guest allocates: every linear memory and every table
/// (elements x pointer size) of every instance counts against it, so a guest cannot pass it by
/// spreading across many memories, tables or core instances. Also caps how many of those it
/// may create, and remembers a refused growth, so that a trap that follows is reported as
/// running out of memory.
#[derive(Debug, Default)]
pub(crate) struct GuestLimits {
    budget: Option<usize>,
    used: usize,
    pub(crate) refused: bool,
    meter: GuestMeter,
}

impl GuestLimits {
    pub(crate) fn new(budget: Option<u64>, meter: GuestMeter) -> Self {
        GuestLimits {
            budget: budget.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            used: 0,
            refused: false,
            meter,
        }
    }

    pub(crate) fn budget(&self) -> Option<usize> {
        self.budget
    }

    /// Grant `from -> to` bytes of one memory or table if the total stays within the budget.
    fn grow(&mut self, what: &'static str, from: usize, to: usize) -> bool {
        let added = to.saturating_sub(from);
        let total = self.used.saturating_add(added);
        if self.budget.is_some_and(|budget| total > budget) {
            tracing::debug!(what, added, used = self.used, budget = ?self.budget, "refusing growth past the guest's memory budget");
            self.refused = true;
            return false;
        }
        self.used = total;
        self.meter.grew(from, to);
        true
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.grow("memory", current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        if desired > MAX_TABLE_ELEMENTS {
            tracing::debug!(desired, "refusing table growth past the element cap");
            self.refused = true;
            return Ok(false);
        }
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow("table", bytes(current), bytes(desired)))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let meter = GuestMeter::new();
        let mut l = GuestLimits::new(Some(1 << 20), meter.clone());
        assert!(l.memory_growing(0, 600 << 10, None).expect("ok"));
        // A second memory of the same size passes the budget, although it is under it alone.
        assert!(!l.memory_growing(0, 600 << 10, None).expect("ok"));
        assert!(l.refused);
        // A table's elements count too: 300 KiB of budget is left, 8 bytes an element.
        let mut l = GuestLimits::new(Some(1 << 20), GuestMeter::new());
        assert!(l.memory_growing(0, 700 << 10, None).expect("ok"));
        assert!(!l.table_growing(0, 64 << 10, None).expect("ok"));
        assert!(l.table_growing(0, 1 << 10, None).expect("ok"));
        assert_eq!(meter.memory_bytes(), 600 << 10);
    }

    #[test]
    fn a_huge_table_is_refused_without_a_budget() {
        let mut l = GuestLimits::new(None, GuestMeter::new());
        assert!(!l.table_growing(0, 1 << 31, None).expect("ok"));
        assert!(l.refused);
        assert!(l.memory_growing(0, 1 << 30, None).expect("ok"));
    }

    #[test]
    fn a_declared_maximum_refuses_without_blaming_the_budget() {
        let mut l = GuestLimits::new(Some(1 << 30), GuestMeter::new());
        assert!(!l.memory_growing(0, 2 << 16, Some(1 << 16)).expect("ok"));
        assert!(!l.refused);
    }
}
