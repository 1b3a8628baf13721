//! `wasmcell install containerd`: put the binaries in place and register the runtime in
//! containerd's config, idempotently.

pub(crate) mod config;
