//! Package a Wasm module or component as an OCI image that every containerd, Docker and Podman
//! can import: one ordinary tar layer holding the module, the entrypoint set to it, platform
//! `wasi/wasm`.
//!
//! [`ImageSpec::build`] makes the blobs of such an image. It builds on [`FilesSpec`], the
//! general form: one layer of [`LayerEntry`]s (files, directories, symbolic links) and a config
//! (platform, entrypoint, cmd, env, working directory) with manifest annotations.
//!
//! [`Image::write_archive`] writes the blobs as one tar holding both an OCI image layout
//! (`index.json`, for `ctr images import`) and a Docker `manifest.json` (for `docker load` /
//! `podman load`); [`Image::write_layout`] writes an OCI layout directory.
//!
//! [`read_artifact`] reads a CNCF Wasm OCI artifact (an OCI image layout whose layer is the raw
//! module); [`WasmArtifact::to_image`] turns it into the image [`ImageSpec::build`] makes.
#![warn(missing_docs)]

mod archive;
mod artifact;
mod blobs;
mod layer;
mod reference;

pub use archive::ImageError;
pub use artifact::{
    find_artifact_layer, read_artifact, ArtifactError, ArtifactLayer, BlobSource, WasmArtifact,
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPES,
};
pub use blobs::{FilesSpec, Image, ImageSpec};
pub use layer::LayerEntry;
pub use reference::normalize_reference;
