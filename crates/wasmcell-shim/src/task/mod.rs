//! containerd's Task API, written once for both modes and all three backends.
//!
//! ```text
//!   containerd ──ttrpc──▶ rpc.rs ──▶ TaskService (service.rs)
//!                                      │  containers: (namespace, id) -> Container
//!                                      │  Create: Mode::build ─┬─ Normal: GuestProcess | RuncContainer
//!                                      │                       └─ Shared: InProcessGuest | RuncContainer
//!                                      ▼
//!                                  Container = Request + Backend + Life + Events
//!                                      Life: Created ──start──▶ Running ──exit──▶ Stopped(Exit)
//!                                            Created ──kill/exit──────────────────▶ Stopped(Exit)
//! ```
//!
//! The service owns every RPC's state check, wire shape (wire.rs), event and error; a backend
//! (crate::backend) only runs, signals, measures and releases its workload, and reports its
//! exit to its container, which records it once and publishes TaskOOM/TaskExit.

pub(crate) mod container;
pub(crate) mod life;
pub(crate) mod mode;
pub(crate) mod rpc;
pub(crate) mod service;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, MutexGuard};

pub(crate) use container::Request;
pub(crate) use life::Exit;

/// Lock `m`, taking the data of a lock poisoned by a panic elsewhere (the data is still
/// consistent: every writer here sets whole values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
