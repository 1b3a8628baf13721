use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};
use wasmcell_core::WasmBinary;

use crate::archive::ImageError;

/// crun's annotation: run the entrypoint as Wasm only when it ends in `.wasm`/`.wat`.
const WASM_VARIANT: (&str, &str) = ("module.wasm.image/variant", "compat-smart");

/// What to put in the image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The module or component to package.
    pub module: PathBuf,
    /// Image reference, e.g. `docker.io/library/hello:latest` (see [`crate::normalize_reference`]).
    pub reference: String,
    /// Absolute path of the module inside the image, also the entrypoint (default `/app.wasm`).
    pub entrypoint: String,
    /// Default arguments after the entrypoint (`Cmd`).
    pub args: Vec<String>,
    /// Environment variables, `KEY=VALUE`.
    pub env: Vec<String>,
}

/// A built image: its blobs by digest, and the descriptor of its manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub(crate) reference: String,
    pub(crate) manifest: Descriptor,
    pub(crate) config_digest: String,
    pub(crate) layer_digest: String,
    pub(crate) blobs: HashMap<String, Vec<u8>>,
}

impl ImageSpec {
    /// A spec with the default entrypoint `/app.wasm`, no args and no env.
    pub fn new(module: impl Into<PathBuf>, reference: impl Into<String>) -> Self {
        ImageSpec {
            module: module.into(),
            reference: reference.into(),
            entrypoint: "/app.wasm".into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Read the module (checking that it is Wasm) and build the image's blobs.
    pub fn build(&self) -> Result<Image, ImageError> {
        let wasm = WasmBinary::read(&self.module)?;
        let inside = self
            .entrypoint
            .strip_prefix('/')
            .filter(|p| !p.is_empty() && !p.split('/').any(|c| c == ".." || c.is_empty()))
            .ok_or_else(|| ImageError::Entrypoint(self.entrypoint.clone()))?;
        let layer = layer_tar(Path::new(inside), wasm.bytes()?)?;
        let layer_digest = sha256(&layer);

        let mut config = ConfigBuilder::default().entrypoint(vec![self.entrypoint.clone()]);
        if !self.args.is_empty() {
            config = config.cmd(self.args.clone());
        }
        if !self.env.is_empty() {
            config = config.env(self.env.clone());
        }
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::Wasm)
            .os(Os::Other("wasi".into()))
            .config(config.build()?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![layer_digest.clone()])
                    .build()?,
            )
            .build()?;
        let config = serde_json::to_vec(&config)?;
        let config_digest = sha256(&config);

        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, &config, &config_digest)?)
            .layers(vec![descriptor(
                MediaType::ImageLayer,
                &layer,
                &layer_digest,
            )?])
            .annotations(HashMap::from([(
                WASM_VARIANT.0.to_string(),
                WASM_VARIANT.1.to_string(),
            )]))
            .build()?;
        let manifest = serde_json::to_vec(&manifest)?;
        let manifest_digest = sha256(&manifest);

        let mut annotations = HashMap::from([(
            "io.containerd.image.name".to_string(),
            self.reference.clone(),
        )]);
        if let Some(tag) = crate::reference::tag_of(&self.reference) {
            annotations.insert("org.opencontainers.image.ref.name".into(), tag.into());
        }
        let manifest_desc = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .size(manifest.len() as u64)
            .digest(parse_digest(&manifest_digest)?)
            .annotations(annotations)
            .build()?;

        let blobs = HashMap::from([
            (layer_digest.clone(), layer),
            (config_digest.clone(), config),
            (manifest_digest, manifest),
        ]);
        Ok(Image {
            reference: self.reference.clone(),
            manifest: manifest_desc,
            config_digest,
            layer_digest,
            blobs,
        })
    }
}

impl Image {
    /// The image reference it is tagged with.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The manifest's digest, `sha256:...`.
    pub fn manifest_digest(&self) -> String {
        self.manifest.digest().to_string()
    }

    pub(crate) fn index_json(&self) -> Result<Vec<u8>, ImageError> {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![self.manifest.clone()])
            .build()?;
        Ok(serde_json::to_vec(&index)?)
    }
}

fn descriptor(media_type: MediaType, blob: &[u8], digest: &str) -> Result<Descriptor, ImageError> {
    Ok(Descriptor::new(
        media_type,
        blob.len() as u64,
        parse_digest(digest)?,
    ))
}

fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest, ImageError> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| ImageError::Spec(e))
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A reproducible tar holding one file (mode 0755, owned by root, mtime 0) and its parent dirs.
fn layer_tar(inside: &Path, bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut parents: Vec<&Path> = inside
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    parents.reverse();
    for dir in parents {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, dir, std::io::empty())
            .map_err(ImageError::Layer)?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    tar.append_data(&mut h, inside, bytes)
        .map_err(ImageError::Layer)?;
    tar.into_inner().map_err(ImageError::Layer)
}
