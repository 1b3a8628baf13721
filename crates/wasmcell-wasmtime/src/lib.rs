//! The Wasmtime engine for wasmcell: runs core modules on WASI 0.1 and components on WASI 0.2.
//!
//! Build one [`WasmtimeEngine`] per process and share it: it owns the compiler configuration and
//! the epoch ticker that lets an [`Interrupt`](wasmcell_core::Interrupt) stop a spinning guest.
#![warn(missing_docs)]

mod cache;
mod cache_record;
mod cache_trust;
mod compile;
mod component;
mod content_index;
mod core_module;
mod engine;
mod exit;
pub mod http;
mod limits;
mod meter;
mod run;
mod wasi;

pub use cache::{
    CacheEntry, CompileCache, PruneReport, VerifyReport, CACHE_DIR_ENV, DEFAULT_MAX_BYTES,
};
pub use compile::CompiledCode;
pub use engine::{PreparedGuest, RunWith, WasmtimeEngine};
pub use meter::GuestMeter;
