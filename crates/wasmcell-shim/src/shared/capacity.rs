//! How many more containers a manager can hold, and several managers for one containerd.
//!
//! A manager holds about seven descriptors per container (its stdio FIFOs, its rootfs,
//! containerd's connection), so its open-file limit (20,000 on hosts where it cannot raise its
//! hard limit) caps it at a few thousand containers. A node holds more by running more
//! managers: `start` gives a new container to the first manager, in order, that has not said it
//! is full ([`is_full`]). A manager says so with a file beside its socket (`<socket>.full`)
//! while fewer than [`FULL_BELOW`] of its descriptors are free, and refuses a container
//! outright, naming the limit, when fewer than [`RESERVE`] are (a burst of starts that all
//! chose it before it said so).

use std::path::{Path, PathBuf};

use crate::bootstrap::with_suffix;
use crate::ShimError;

/// Free descriptors under which a manager takes no new container from `start`.
pub(crate) const FULL_BELOW: u64 = 512;
/// Free descriptors under which a manager refuses a new container: what its running
/// containers keep for their own files, FIFOs and connections.
pub(crate) const RESERVE: u64 = 64;

/// Whether the manager serving on `socket` has said it is full.
pub(crate) fn is_full(socket: &Path) -> bool {
    marker(socket).exists()
}

fn marker(socket: &Path) -> PathBuf {
    with_suffix(socket, ".full")
}

/// The descriptors of this manager, and the file that tells `start` when it is full.
#[derive(Debug)]
pub(crate) struct Capacity {
    marker: PathBuf,
    /// Whether the manager said it is full, as of the last count.
    full: std::sync::atomic::AtomicBool,
}

impl Capacity {
    /// For the manager serving on `socket`.
    pub(crate) fn new(socket: &Path) -> Self {
        Capacity {
            marker: marker(socket),
            full: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Take container `id`, or refuse it naming the limit and `holders` (which containers hold
    /// the most; blocking: counts open files).
    pub(crate) fn admit(&self, id: &str, holders: &str) -> Result<(), ShimError> {
        let Some((open, limit)) = descriptors() else {
            return Ok(());
        };
        self.mark(open, limit);
        if open.saturating_add(RESERVE) > limit {
            return Err(ShimError::Workload(format!(
                "container {id} refused: the shared-mode manager holds {open} open files of its limit of {limit} (RLIMIT_NOFILE) and keeps {RESERVE} for the containers it runs{holders}"
            )));
        }
        Ok(())
    }

    /// Say whether the manager is full, after containers left (blocking: counts open files).
    /// Leaving only frees descriptors: a manager that was not full is not full now, and is not
    /// counted again.
    pub(crate) fn refresh(&self) {
        if !self.nearly_full() {
            return;
        }
        if let Some((open, limit)) = descriptors() {
            self.mark(open, limit);
        }
    }

    /// Whether the manager said it is full at its last count (nearly out of descriptors).
    pub(crate) fn nearly_full(&self) -> bool {
        self.full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remove the mark (the manager is exiting).
    pub(crate) fn clear(&self) {
        let _ = std::fs::remove_file(&self.marker);
    }

    fn mark(&self, open: u64, limit: u64) {
        let full = open.saturating_add(FULL_BELOW) > limit;
        self.full.store(full, std::sync::atomic::Ordering::Relaxed);
        if full == self.marker.exists() {
            return;
        }
        let marked = if full {
            std::fs::write(&self.marker, format!("{open} of {limit} open files\n"))
        } else {
            std::fs::remove_file(&self.marker)
        };
        match marked {
            Ok(()) => tracing::info!(full, open, limit, "manager capacity changed"),
            Err(e) => {
                tracing::warn!(marker = %self.marker.display(), error = %e, "failed to mark the manager's capacity")
            }
        }
    }
}

/// Descriptors this process holds, and its soft limit.
fn descriptors() -> Option<(u64, u64)> {
    use nix::sys::resource::{getrlimit, Resource};
    let (limit, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((open, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_marks_itself_full_and_not_full_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("manager");
        let c = Capacity::new(&socket);
        c.mark(100, 10_000);
        assert!(!is_full(&socket));
        c.mark(9_600, 10_000);
        assert!(is_full(&socket));
        c.mark(9_000, 10_000);
        assert!(!is_full(&socket));
        c.mark(9_900, 10_000);
        c.clear();
        assert!(!is_full(&socket));
    }
}
