//! Test harness that starts a **real, private containerd** for integration tests.
//!
//! [`Containerd::start`] (or [`Containerd::start_with_path`], to let containerd find a
//! `containerd-shim-*` binary such as `containerd-shim-wasmcell-v1`) creates a temporary
//! directory holding containerd's root and state directories, its gRPC and ttrpc sockets, a
//! generated `config.toml` and its log, starts `containerd --config <file>` and waits until it
//! answers. Every instance uses its own namespace (`wasmcell-test-<pid>-<n>`), because the runc
//! shim keeps its runc state under `/run/containerd/runc/<namespace>` whatever containerd's
//! state directory is; instances are therefore fully independent and can run concurrently.
//!
//! [`Containerd::ctr`] and [`Containerd::run_ctr`] drive that containerd through `ctr`; every
//! `ctr` run has a deadline and never hangs a test. Dropping a [`Containerd`] kills and deletes
//! every task and container of its namespace, stops containerd, kills any process still
//! referring to its socket (a stray shim), unmounts whatever is still mounted under the
//! temporary directory and removes it.
//!
//! The snapshotter is `overlayfs` when an overlay mount works on the filesystem holding the
//! temporary directory (and containerd's overlayfs plugin loaded), `native` otherwise; it can be
//! forced with the environment variable `WASMCELL_TEST_SNAPSHOTTER`. It is set both as the
//! namespace's default snapshotter (label `containerd.io/defaults/snapshotter`) and as
//! `CONTAINERD_SNAPSHOTTER` in the environment of every `ctr` command.
//!
//! [`Containerd::start_cri`] starts one with containerd's **CRI plugin** enabled instead (for
//! CRI-level tests, the calls kubelet makes): a runtime handler `wasmcell` of type
//! `io.containerd.wasmcell.v1`, the given pod sandbox image, no CNI configuration (host-network
//! pods need none), its streaming server on a random loopback port, and everything under the
//! temporary directory. [`Containerd::start_cri_with_pod_network`] adds a private CNI network
//! ([`PodNetwork`]: a bridge and a `10.217.<n>.0/24` subnet of its own, `host-local` state
//! under the temporary directory), so pods with their own network namespace get an address.
//! CRI works in the fixed namespace [`CRI_NAMESPACE`] (`k8s.io`): images for it are imported
//! with [`Containerd::import_into`], and the drop also stops and removes every pod sandbox,
//! task and container there (containerd then removes the pods' network namespaces).
//! [`ImageBuilder`], [`pause_image`] and [`busybox_image`] build Linux images from files, since
//! nothing can be pulled. [`ArtifactLayout`] and [`wasm_artifact`] write CNCF Wasm OCI
//! artifacts (OCI layouts with a raw Wasm layer) by hand. With the cargo feature `cri`,
//! [`Containerd::cri`] returns a blocking CRI client ([`cri::CriClient`]).
//!
//! The tests using this harness must run as root; they are never skipped (see [`require_root`]).
#![warn(missing_docs)]

mod artifact;
mod cni;
mod command;
mod containerd;
#[cfg(feature = "cri")]
pub mod cri;
pub mod hostile;
mod http_client;
mod image;
pub mod parity;
mod procfs;

pub use artifact::{wasm_artifact, ArtifactLayout};
pub use cni::{PodNetwork, CNI_PLUGINS, CNI_PLUGIN_DIRS, POD_SUBNET_PREFIX};
pub use command::CtrOutput;
pub use containerd::{
    Containerd, CRI_NAMESPACE, CRI_RUNTIME_HANDLER, CRI_RUNTIME_TYPE, CRI_SHARED_RUNTIME_HANDLER,
    CRI_SHARED_RUNTIME_TYPE, DEFAULT_CTR_TIMEOUT, SNAPSHOTTER_ENV, START_TIMEOUT, STOP_TIMEOUT,
};
pub use http_client::{free_port, http_get, http_request, wait_listening};
pub use image::{
    busybox_image, host_architecture, pause_image, ImageBuilder, HOST_BUSYBOX, PAUSE_IMAGE,
};
pub use procfs::{mounts_under, pids_with_cmdline_containing, require_root};
