//! Package a Wasm module or component as an OCI image that every containerd, Docker and Podman
//! can import: one ordinary tar layer holding the module, the entrypoint set to it, platform
//! `wasi/wasm`.
//!
//! [`ImageSpec::build`] makes the blobs; [`Image::write_archive`] writes them as one tar holding
//! both an OCI image layout (`index.json`, for `ctr images import`) and a Docker `manifest.json`
//! (for `docker load` / `podman load`); [`Image::write_layout`] writes an OCI layout directory.
#![warn(missing_docs)]

mod archive;
mod blobs;
mod reference;

pub use archive::ImageError;
pub use blobs::{Image, ImageSpec};
pub use reference::normalize_reference;
