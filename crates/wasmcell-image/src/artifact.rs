//! Reading a CNCF Wasm OCI artifact: an OCI image layout (a directory, or a tar of one as
//! `skopeo copy ... oci-archive:x.tar` and `oras` write) whose manifest carries the module as a
//! raw Wasm layer (`application/wasm`, ...) instead of a tar layer.
//!
//! [`read_artifact`] finds the manifest (through nested indexes, the entry for architecture
//! `wasm`), checks its config is for `wasm`, and returns the first Wasm layer. Every blob read
//! is checked against its descriptor's size and sha256 digest, and capped in size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::de::DeserializeOwned;
use wasmcell_core::WasmBinary;

use crate::archive::ImageError;
use crate::blobs::{sha256, ImageSpec};

/// Layer media types that hold a raw Wasm module or component.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];
/// The config media type of the CNCF Wasm OCI artifact format.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest `index.json`, manifest or config read.
const MAX_JSON: u64 = 4 << 20;
/// Largest Wasm layer read.
const MAX_MODULE: u64 = 512 << 20;
/// How many indexes deep the manifest may be nested.
const MAX_INDEX_DEPTH: usize = 4;

/// Why a Wasm OCI artifact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The layout or one of its files could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The layout (directory or tar) or the file in it.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file the layout must hold is not there.
    #[error("{layout} is not an oci image layout: it has no {file}")]
    Missing {
        /// The layout (directory or tar).
        layout: PathBuf,
        /// The file looked for, e.g. `index.json` or `blobs/sha256/<hex>`.
        file: String,
    },
    /// `index.json`, a manifest or a config is not valid JSON of its kind.
    #[error("invalid {what} {name} in {from}: {source}")]
    Json {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// `index`, `manifest` or `config`.
        what: &'static str,
        /// The file or digest.
        name: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A descriptor's digest is not sha256.
    #[error("unsupported digest {digest} in {from}: only sha256 is supported")]
    Digest {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// The digest as given.
        digest: String,
    },
    /// A blob or file is larger than its descriptor says, or than wasmcell reads.
    #[error("{name} in {from} is too large: {size} bytes, at most {limit} accepted")]
    TooLarge {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// The file or digest.
        name: String,
        /// Its size, as declared or found.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A blob's size differs from its descriptor's.
    #[error("blob {digest} in {from} is {actual} bytes, its descriptor says {expected}")]
    Size {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// The blob's digest.
        digest: String,
        /// The descriptor's size.
        expected: u64,
        /// The blob's size.
        actual: u64,
    },
    /// A blob's content does not hash to its digest.
    #[error("blob {digest} in {from} does not match its digest (its content is {actual})")]
    Mismatch {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// The blob's digest.
        digest: String,
        /// The digest of its content.
        actual: String,
    },
    /// No manifest for architecture `wasm` in an index.
    #[error("no manifest for architecture wasm in {index} of {from}")]
    NoWasmManifest {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// `index.json` or the nested index's digest.
        index: String,
    },
    /// A blob could not be read from its source.
    #[error("failed to read blob {digest} of {from}: {source}")]
    Blob {
        /// Where the blobs come from.
        from: String,
        /// The blob's digest.
        digest: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Indexes nested deeper than wasmcell follows.
    #[error("indexes in {from} are nested more than {MAX_INDEX_DEPTH} deep")]
    TooDeep {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
    },
    /// The manifest's config names another architecture.
    #[error("config {digest} in {from} has architecture {architecture:?}, not wasm")]
    NotWasm {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// The config's digest.
        digest: String,
        /// Its architecture.
        architecture: String,
    },
    /// The manifest has no layer of a Wasm media type.
    #[error(
        "manifest {digest} in {from} has no wasm layer (media type application/wasm, \
         application/vnd.bytecodealliance.wasm.component.layer.v0+wasm or \
         application/vnd.wasm.content.layer.v1+wasm)"
    )]
    NoWasmLayer {
        /// Where the blobs come from: a layout's path, an image in containerd.
        from: String,
        /// The manifest's digest.
        digest: String,
    },
}

/// The entrypoint module of a Wasm OCI artifact, as [`read_artifact`] found it.
#[derive(Debug, Clone)]
pub struct WasmArtifact {
    /// The module or component (checked to be Wasm); its path names the layout and the layer's
    /// digest, for errors.
    pub module: WasmBinary,
    /// The layer's media type, e.g. `application/wasm`.
    pub media_type: String,
    /// The config's `os`, e.g. `wasip1` or `wasip2` (empty when the config has none).
    pub os: String,
    /// The digest of the manifest the module came from.
    pub manifest_digest: String,
}

impl WasmArtifact {
    /// The standard Wasm image of the module (see [`ImageSpec`]): the module at `/app.wasm`
    /// as the entrypoint, platform `wasi/wasm`, tagged `reference`.
    pub fn to_image(&self, reference: &str) -> Result<crate::Image, ImageError> {
        ImageSpec::new(self.module.path(), reference).build_with_module(&self.module)
    }
}

/// Where the blobs of an image come from: an OCI image layout, or a content store such as
/// containerd's. [`find_artifact_layer`] and [`ArtifactLayer::read`] check every blob they
/// read against its descriptor.
pub trait BlobSource {
    /// Names the source in errors, e.g. a layout's path or `image app:1 in containerd`.
    fn name(&self) -> String;

    /// The blob `digest` (`sha256:<hex>`), or its first `max` bytes when it is longer.
    fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, ArtifactError>;
}

/// Read the Wasm OCI artifact at `path`: an OCI image layout directory, or a tar of one.
///
/// `index.json` (and any nested index) may list several manifests: the one whose platform
/// architecture is `wasm` is taken, or the only one. Its config must be a Wasm config
/// (`application/vnd.wasm.config.v0+json`) or an OCI config, with architecture `wasm`; the
/// first layer of a Wasm media type ([`WASM_LAYER_MEDIA_TYPES`]) is the module.
pub fn read_artifact(path: &Path) -> Result<WasmArtifact, ImageError> {
    let meta = std::fs::metadata(path).map_err(|source| ArtifactError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let layout = Layout {
        path: path.to_path_buf(),
        is_tar: !meta.is_dir(),
    };
    layout.file("oci-layout", MAX_JSON)?;
    let index = layout.file("index.json", MAX_JSON)?;
    let reader = Reader { source: &layout };
    let index: ImageIndex = reader.json("index", "index.json", &index)?;
    let manifest = reader.manifest_of(&index, "index.json", 0)?;
    reader.artifact(&manifest)
}

/// The Wasm layer of an artifact, found by [`find_artifact_layer`] but not read.
#[derive(Debug, Clone)]
pub struct ArtifactLayer {
    /// The layer's descriptor: its digest and size.
    pub descriptor: Descriptor,
    /// The layer's media type, e.g. `application/wasm`.
    pub media_type: String,
    /// The config's `os`, e.g. `wasip1` or `wasip2` (empty when the config has none).
    pub os: String,
    /// The digest of the manifest the layer is in.
    pub manifest_digest: String,
}

impl ArtifactLayer {
    /// The layer's bytes from `source`, checked against its size and sha256 digest.
    pub fn read(&self, source: &dyn BlobSource) -> Result<Vec<u8>, ArtifactError> {
        Reader { source }.blob(&self.descriptor, MAX_MODULE)
    }
}

/// The Wasm layer of the artifact that `target` (an image manifest, or an index to pick the
/// `wasm` manifest from) names in `source`, found as [`read_artifact`] finds it (manifest,
/// index and config read and checked) but not read: for a host that may already know its
/// content ([`ArtifactLayer::read`] reads it).
pub fn find_artifact_layer(
    source: &dyn BlobSource,
    target: &Descriptor,
) -> Result<ArtifactLayer, ImageError> {
    let reader = Reader { source };
    let manifest = reader.manifest_or_index(target, 0)?;
    Ok(reader.layer(&manifest)?)
}

/// The checked reads and the manifest selection, over any blob source.
struct Reader<'a> {
    source: &'a dyn BlobSource,
}

impl Reader<'_> {
    fn artifact(&self, desc: &Descriptor) -> Result<WasmArtifact, ImageError> {
        let layer = self.layer(desc)?;
        let bytes = self.blob(&layer.descriptor, MAX_MODULE)?;
        let name = format!("{}@{}", self.source.name(), layer.descriptor.digest());
        Ok(WasmArtifact {
            module: WasmBinary::from_bytes(Path::new(&name), bytes)?,
            media_type: layer.media_type,
            os: layer.os,
            manifest_digest: layer.manifest_digest,
        })
    }

    /// The Wasm layer of the manifest `desc` names, its config checked to be for `wasm`.
    fn layer(&self, desc: &Descriptor) -> Result<ArtifactLayer, ArtifactError> {
        let from = self.source.name();
        let digest = desc.digest().to_string();
        let manifest: ImageManifest =
            self.json("manifest", &digest, &self.blob(desc, MAX_JSON)?)?;

        // A Wasm config (`application/vnd.wasm.config.v0+json`) or an OCI config: both name
        // the architecture and the os.
        let config_desc = manifest.config();
        let config_digest = config_desc.digest().to_string();
        let config = self.blob(config_desc, MAX_JSON)?;
        let config: serde_json::Value = self.json("config", &config_digest, &config)?;
        let field = |name: &str| config[name].as_str().unwrap_or_default().to_string();
        let architecture = field("architecture");
        if architecture != "wasm" {
            return Err(ArtifactError::NotWasm {
                from,
                digest: config_digest,
                architecture,
            });
        }

        let layer = manifest
            .layers()
            .iter()
            .find(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type().to_string().as_str()))
            .ok_or_else(|| ArtifactError::NoWasmLayer {
                from: from.clone(),
                digest: digest.clone(),
            })?;
        Ok(ArtifactLayer {
            descriptor: layer.clone(),
            media_type: layer.media_type().to_string(),
            os: field("os"),
            manifest_digest: digest,
        })
    }

    /// `desc` if it names a manifest; the manifest to use in it if it names an index.
    fn manifest_or_index(
        &self,
        desc: &Descriptor,
        depth: usize,
    ) -> Result<Descriptor, ArtifactError> {
        let is_index = match desc.media_type() {
            MediaType::ImageIndex => true,
            other => other.to_string() == DOCKER_MANIFEST_LIST,
        };
        if !is_index {
            return Ok(desc.clone());
        }
        let digest = desc.digest().to_string();
        let nested: ImageIndex = self.json("index", &digest, &self.blob(desc, MAX_JSON)?)?;
        self.manifest_of(&nested, &digest, depth + 1)
    }

    /// The descriptor of the manifest to use in `index` (named `name`), following nested
    /// indexes: the entry for architecture `wasm`, or the only entry.
    fn manifest_of(
        &self,
        index: &ImageIndex,
        name: &str,
        depth: usize,
    ) -> Result<Descriptor, ArtifactError> {
        if depth > MAX_INDEX_DEPTH {
            return Err(ArtifactError::TooDeep {
                from: self.source.name(),
            });
        }
        let entries = index.manifests();
        let wasm = entries.iter().find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| *p.architecture() == Arch::Wasm)
        });
        match (wasm, entries.as_slice()) {
            (Some(desc), _) | (None, [desc]) => self.manifest_or_index(desc, depth),
            (None, _) => Err(ArtifactError::NoWasmManifest {
                from: self.source.name(),
                index: name.to_string(),
            }),
        }
    }

    /// The blob `desc` names, checked against its size (at most `limit`) and sha256 digest.
    fn blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, ArtifactError> {
        let digest = desc.digest().to_string();
        if desc.as_digest_sha256().is_none() {
            return Err(ArtifactError::Digest {
                from: self.source.name(),
                digest,
            });
        }
        let expected = desc.size();
        if expected > limit {
            return Err(ArtifactError::TooLarge {
                from: self.source.name(),
                name: digest,
                size: expected,
                limit,
            });
        }
        // Read one byte more than declared, to tell a longer blob from a matching one.
        let bytes = self.source.read_blob(&digest, expected + 1)?;
        if bytes.len() as u64 != expected {
            return Err(ArtifactError::Size {
                from: self.source.name(),
                digest,
                expected,
                actual: bytes.len() as u64,
            });
        }
        let actual = sha256(&bytes);
        if actual != digest {
            return Err(ArtifactError::Mismatch {
                from: self.source.name(),
                digest,
                actual,
            });
        }
        Ok(bytes)
    }

    fn json<T: DeserializeOwned>(
        &self,
        what: &'static str,
        name: &str,
        bytes: &[u8],
    ) -> Result<T, ArtifactError> {
        serde_json::from_slice(bytes).map_err(|source| ArtifactError::Json {
            from: self.source.name(),
            what,
            name: name.to_string(),
            source,
        })
    }
}

/// An OCI image layout, a directory or a tar.
struct Layout {
    path: PathBuf,
    is_tar: bool,
}

impl BlobSource for Layout {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, ArtifactError> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.read(&format!("blobs/sha256/{hex}"), max)
    }
}

impl Layout {
    /// The file `name` of the layout, at most `limit` bytes.
    fn file(&self, name: &str, limit: u64) -> Result<Vec<u8>, ArtifactError> {
        let bytes = self.read(name, limit + 1)?;
        if bytes.len() as u64 > limit {
            return Err(ArtifactError::TooLarge {
                from: self.name(),
                name: name.to_string(),
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }

    /// Up to `max` bytes of the file `name` (a relative path free of `..`) of the layout.
    fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, ArtifactError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArtifactError::Read { path, source }
        };
        let missing = || ArtifactError::Missing {
            layout: self.path.clone(),
            file: name.to_string(),
        };
        let mut bytes = Vec::new();
        if !self.is_tar {
            let path = self.path.join(name);
            let file = match File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                file => file.map_err(read_err(&path))?,
            };
            file.take(max)
                .read_to_end(&mut bytes)
                .map_err(read_err(&path))?;
            return Ok(bytes);
        }
        let err = |source| ArtifactError::Read {
            path: self.path.clone(),
            source,
        };
        let mut tar = tar::Archive::new(File::open(&self.path).map_err(err)?);
        for entry in tar.entries_with_seek().map_err(err)? {
            let entry = entry.map_err(err)?;
            let path = entry.path().map_err(err)?;
            let path = path.to_string_lossy();
            let path = path.trim_start_matches("./").trim_start_matches('/');
            if path != name || !entry.header().entry_type().is_file() {
                continue;
            }
            entry.take(max).read_to_end(&mut bytes).map_err(err)?;
            return Ok(bytes);
        }
        Err(missing())
    }
}
