use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};
use wasmcell_core::WasmBinary;

use crate::archive::ImageError;
use crate::layer::{inside, layer_tar, LayerEntry};

/// crun's annotation: run the entrypoint as Wasm only when it ends in `.wasm`/`.wat`.
const WASM_VARIANT: (&str, &str) = ("module.wasm.image/variant", "compat-smart");

/// What to put in a Wasm image: one module, run as the entrypoint.
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

/// What to put in an image made of files: one layer of entries, and the config to run it.
///
/// For Wasm modules [`ImageSpec`] is the short way; this is for any other content (e.g. a Linux
/// image of a static binary: `os` `linux`, `architecture` `amd64`).
#[derive(Debug, Clone)]
pub struct FilesSpec {
    /// Image reference, e.g. `docker.io/library/hello:latest` (see [`crate::normalize_reference`]).
    pub reference: String,
    /// The platform's OS (config `os`), e.g. `wasi` or `linux`.
    pub os: String,
    /// The platform's architecture (config `architecture`), e.g. `wasm` or `amd64`.
    pub architecture: String,
    /// The config's `Entrypoint`; left out when empty.
    pub entrypoint: Vec<String>,
    /// The config's `Cmd` (default arguments); left out when empty.
    pub cmd: Vec<String>,
    /// The config's `Env`, `KEY=VALUE`; left out when empty.
    pub env: Vec<String>,
    /// The config's `WorkingDir`.
    pub working_dir: Option<String>,
    /// The manifest's annotations; left out when empty. Every JSON blob is written with its
    /// keys sorted, so the same spec always gives the same digests.
    pub annotations: BTreeMap<String, String>,
    /// The layer's entries, in order.
    pub entries: Vec<LayerEntry>,
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

    /// Read the module (checking that it is Wasm) and build the image's blobs: a [`FilesSpec`]
    /// for `wasi/wasm` holding the module alone (mode 0755) at its entrypoint, annotated
    /// `module.wasm.image/variant=compat-smart`.
    pub fn build(&self) -> Result<Image, ImageError> {
        self.build_with_module(&WasmBinary::read(&self.module)?)
    }

    /// [`ImageSpec::build`] with a module already in hand (e.g. from
    /// [`crate::read_artifact`]); [`ImageSpec::module`] is not read.
    pub fn build_with_module(&self, wasm: &WasmBinary) -> Result<Image, ImageError> {
        if !self.entrypoint.starts_with('/') || inside(&self.entrypoint).is_none() {
            return Err(ImageError::Entrypoint(self.entrypoint.clone()));
        }
        let mut files = FilesSpec::new(&self.reference);
        files.entrypoint = vec![self.entrypoint.clone()];
        files.cmd = self.args.clone();
        files.env = self.env.clone();
        files
            .annotations
            .insert(WASM_VARIANT.0.into(), WASM_VARIANT.1.into());
        files.entries = vec![LayerEntry::File {
            path: self.entrypoint.clone(),
            bytes: wasm.bytes()?.to_vec(),
            mode: 0o755,
        }];
        files.build()
    }
}

impl FilesSpec {
    /// An empty `wasi/wasm` image tagged `reference`: no entries, no entrypoint.
    pub fn new(reference: impl Into<String>) -> Self {
        FilesSpec {
            reference: reference.into(),
            os: "wasi".into(),
            architecture: "wasm".into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            annotations: BTreeMap::new(),
            entries: Vec::new(),
        }
    }

    /// Build the image's blobs: the layer, the config and the manifest.
    pub fn build(&self) -> Result<Image, ImageError> {
        let layer = layer_tar(&self.entries)?;
        let layer_digest = sha256(&layer);

        let mut config = ConfigBuilder::default();
        if !self.entrypoint.is_empty() {
            config = config.entrypoint(self.entrypoint.clone());
        }
        if !self.cmd.is_empty() {
            config = config.cmd(self.cmd.clone());
        }
        if !self.env.is_empty() {
            config = config.env(self.env.clone());
        }
        if let Some(dir) = &self.working_dir {
            config = config.working_dir(dir.clone());
        }
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::from(self.architecture.as_str()))
            .os(Os::from(self.os.as_str()))
            .config(config.build()?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![layer_digest.clone()])
                    .build()?,
            )
            .build()?;
        let config = canonical_json(&config)?;
        let config_digest = sha256(&config);

        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, &config, &config_digest)?)
            .layers(vec![descriptor(
                MediaType::ImageLayer,
                &layer,
                &layer_digest,
            )?]);
        if !self.annotations.is_empty() {
            let annotations: HashMap<_, _> = self.annotations.clone().into_iter().collect();
            manifest = manifest.annotations(annotations);
        }
        let manifest = canonical_json(&manifest.build()?)?;
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
        canonical_json(&index)
    }
}

/// `value` as JSON with the keys of every object sorted, so that a blob's bytes (and so its
/// digest) do not depend on a `HashMap`'s order, e.g. of annotations.
fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>, ImageError> {
    // serde_json's `Value` keeps object keys in a `BTreeMap` (no `preserve_order` feature).
    Ok(serde_json::to_vec(&serde_json::to_value(value)?)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn blob_json(image: &Image, digest: &str) -> Value {
        serde_json::from_slice(&image.blobs[digest]).expect("blob is json")
    }

    #[test]
    fn files_spec_sets_platform_config_and_annotations() {
        let mut spec = FilesSpec::new("docker.io/library/t:1");
        spec.os = "linux".into();
        spec.architecture = "amd64".into();
        spec.entrypoint = vec!["/bin/sh".into()];
        spec.cmd = vec!["-c".into(), "true".into()];
        spec.env = vec!["PATH=/bin".into()];
        spec.working_dir = Some("/".into());
        spec.annotations.insert("a".into(), "1".into());
        spec.entries = vec![LayerEntry::Symlink {
            path: "/bin/sh".into(),
            target: "busybox".into(),
        }];
        let image = spec.build().expect("build");

        let config = blob_json(&image, &image.config_digest);
        assert_eq!(
            (&config["os"], &config["architecture"]),
            (&json!("linux"), &json!("amd64"))
        );
        assert_eq!(
            config["config"],
            json!({
                "Entrypoint": ["/bin/sh"],
                "Cmd": ["-c", "true"],
                "Env": ["PATH=/bin"],
                "WorkingDir": "/",
            })
        );
        assert_eq!(config["rootfs"]["diff_ids"], json!([image.layer_digest]));
        let manifest = blob_json(&image, &image.manifest_digest());
        assert_eq!(manifest["annotations"], json!({ "a": "1" }));
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar"
        );
        for (digest, blob) in &image.blobs {
            assert_eq!(&sha256(blob), digest);
        }
    }

    #[test]
    fn the_same_spec_gives_the_same_bytes_whatever_the_hash_order() {
        let mut spec = FilesSpec::new("docker.io/library/t:1");
        for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            spec.annotations
                .insert(format!("dev.wasmcell.{key}"), key.into());
        }
        let first = spec.build().expect("build");
        let index = first.index_json().expect("index");
        // Each build fills new `HashMap`s with new random seeds.
        for _ in 0..16 {
            let again = spec.build().expect("build");
            assert_eq!(again.manifest_digest(), first.manifest_digest());
            assert_eq!(again.index_json().expect("index"), index);
        }
        let index = String::from_utf8(index).expect("utf-8");
        let name = index.find("io.containerd.image.name").expect("name");
        let tag = index
            .find("org.opencontainers.image.ref.name")
            .expect("tag");
        assert!(name < tag, "annotation keys sorted: {index}");
    }

    #[test]
    fn an_empty_files_spec_leaves_out_config_and_annotations() {
        let image = FilesSpec::new("x").build().expect("build");
        let config = blob_json(&image, &image.config_digest);
        assert_eq!(
            (&config["os"], &config["architecture"]),
            (&json!("wasi"), &json!("wasm"))
        );
        assert_eq!(config["config"], json!({}));
        let manifest = blob_json(&image, &image.manifest_digest());
        assert_eq!(manifest.get("annotations"), None);
    }
}
