//! CNCF Wasm OCI artifacts written by hand, for the tests of `wasmcell_image::read_artifact`
//! and `wasmcell image convert`: an OCI image layout whose manifest has a Wasm config
//! (`application/vnd.wasm.config.v0+json`) and the module as a raw `application/wasm` layer,
//! as `oras` and `wkg` push them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// An OCI image layout directory being written: blobs first, then `index.json`.
#[derive(Debug, Clone)]
pub struct ArtifactLayout {
    dir: PathBuf,
}

impl ArtifactLayout {
    /// Create the layout in `dir` (made if missing) with its `oci-layout` file.
    ///
    /// # Panics
    /// When the files cannot be written, as every method here.
    pub fn new(dir: &Path) -> ArtifactLayout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create the layout's blobs dir");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        ArtifactLayout {
            dir: dir.to_path_buf(),
        }
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store `bytes` as a blob; its descriptor (`mediaType`, `digest`, `size`).
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let hex = format!("{:x}", Sha256::digest(bytes));
        fs::write(self.blob_path(&hex), bytes).expect("write blob");
        json!({ "mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len() })
    }

    /// Store `value` as a JSON blob; its descriptor.
    pub fn json_blob(&self, media_type: &str, value: &Value) -> Value {
        self.blob(media_type, value.to_string().as_bytes())
    }

    /// Where the blob of `digest` (`sha256:<hex>` or `<hex>`) is, e.g. to damage it.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// A manifest of `layers` (descriptors) with a Wasm config for `os` (`wasip1`, `wasip2`),
    /// as a manifest descriptor with platform `os/wasm`.
    pub fn manifest(&self, os: &str, layers: Vec<Value>) -> Value {
        let digests: Vec<_> = layers.iter().map(|l| l["digest"].clone()).collect();
        let config = self.json_blob(
            "application/vnd.wasm.config.v0+json",
            &json!({ "architecture": "wasm", "os": os, "layerDigests": digests }),
        );
        let mut desc = self.json_blob(
            "application/vnd.oci.image.manifest.v1+json",
            &json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.wasm.config.v0+json",
                "config": config,
                "layers": layers,
            }),
        );
        desc["platform"] = json!({ "architecture": "wasm", "os": os });
        desc
    }

    /// A manifest holding `module` as its one `application/wasm` layer (see
    /// [`ArtifactLayout::manifest`]).
    pub fn wasm_manifest(&self, os: &str, module: &[u8]) -> Value {
        let layer = self.blob("application/wasm", module);
        self.manifest(os, vec![layer])
    }

    /// Write `index.json` listing `manifests` (descriptors).
    pub fn write_index(&self, manifests: Vec<Value>) {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        fs::write(self.dir.join("index.json"), index.to_string()).expect("write index.json");
    }

    /// Write the layout as a tar at `path` (as `skopeo copy ... oci-archive:` does).
    pub fn write_tar(&self, path: &Path) {
        let file = fs::File::create(path).expect("create layout tar");
        let mut tar = tar::Builder::new(file);
        tar.append_dir_all(".", &self.dir).expect("tar the layout");
        tar.into_inner().expect("finish layout tar");
    }
}

/// A complete artifact layout in `dir`: `module` as the one layer of one manifest for `os`.
pub fn wasm_artifact(dir: &Path, os: &str, module: &[u8]) -> ArtifactLayout {
    let layout = ArtifactLayout::new(dir);
    let manifest = layout.wasm_manifest(os, module);
    layout.write_index(vec![manifest]);
    layout
}
