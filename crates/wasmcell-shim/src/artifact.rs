//! Where a container's module comes from: its rootfs, or the Wasm layer of a CNCF Wasm OCI
//! artifact in containerd's content store.
//!
//! An artifact image (config `application/vnd.wasm.config.v0+json`, a raw `application/wasm`
//! layer) unpacks to an empty rootfs: CRI (containerd 1.6.25, 1.7.7, 2.0 and later) pulls it
//! and gives the container an empty snapshot, and config.json does not name the image. So the
//! module is looked up in containerd over its gRPC API (`-address`): container -> image ->
//! manifest (the `wasm` entry of an index) -> layer, every blob checked against its digest
//! and size by [`wasmcell_image::find_artifact_layer`] and [`wasmcell_image::ArtifactLayer::read`].
//!
//! This happens only when the rootfs cannot answer: the annotation [`IMAGE_ANNOTATION`] names
//! an image, or the spec has no args, or its entrypoint is not in the rootfs. A container
//! whose module is in its rootfs never talks to containerd.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    GetContainerRequest, GetImageRequest, Info, ReadContentRequest, UpdateRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use oci_spec::image::{Descriptor, Digest, MediaType};
use oci_spec::runtime::Spec;
use wasmcell_core::{
    FetchBytes, ModuleKind, ModuleSource, RootfsModule, RunPlan, WasmBinary, WorkloadSpec,
};
use wasmcell_image::{find_artifact_layer, ArtifactError, ArtifactLayer, BlobSource, ImageError};
use wasmcell_wasmtime::CompileCache;

/// Annotation naming the image whose Wasm layer a container runs, e.g. for
/// `ctr run --rootfs <empty dir> --annotation wasmcell.dev/image=<ref>` (ctr cannot unpack an
/// artifact image, so it cannot name it as the container's image).
pub(crate) const IMAGE_ANNOTATION: &str = "wasmcell.dev/image";

/// Label on a Wasm layer blob in containerd's content store: the kind and BLAKE3 digest of
/// its module (`core:<hex>` or `component:<hex>`), written after the layer was read and
/// checked against its sha256 digest, so later starts can find its compiled code without
/// reading the layer.
pub(crate) const MODULE_LABEL: &str = "dev.wasmcell.module";

/// How long one call to containerd may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a container's module could not be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The bundle or its module in the rootfs is unusable.
    #[error(transparent)]
    Core(#[from] wasmcell_core::Error),
    /// The rootfs has no entrypoint, and the container's image has no module to run instead.
    #[error("{rootfs}; and the container's image has no wasm layer to run instead: {image}")]
    NoModule {
        /// Why the rootfs could not answer.
        rootfs: wasmcell_core::Error,
        /// Why the image could not.
        image: String,
    },
    /// The image the container names could not be read.
    #[error("image {image}: {cause}")]
    Image {
        /// The image reference.
        image: String,
        /// What went wrong.
        cause: Lookup,
    },
}

/// Why an image could not be read from containerd.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Lookup {
    /// containerd could not be reached or refused a call.
    #[error(transparent)]
    Containerd(#[from] CallError),
    /// The image is not a usable Wasm artifact.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl LoadError {
    /// The exit status the guest process reports for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            LoadError::Core(e) => e.exit_code(),
            LoadError::NoModule { rootfs, .. } => rootfs.exit_code(),
            LoadError::Image { .. } => wasmcell_core::EXIT_NOT_FOUND,
        }
    }
}

/// A call to containerd that failed: it could not be reached, did not answer in time, or
/// refused; the message names the address or what was asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CallError(String);

/// containerd's gRPC API for one namespace: where the shim looks up artifact images.
#[derive(Debug, Clone)]
pub(crate) struct Containerd {
    /// containerd's gRPC socket, as `-address` gave it.
    pub(crate) address: String,
    /// The containerd namespace of the container.
    pub(crate) namespace: String,
}

/// A container's run plan and module, and where the module lies when it came from the rootfs
/// (`None` for an image's Wasm layer, whose bytes come from containerd).
pub(crate) struct Loaded {
    pub(crate) plan: RunPlan,
    pub(crate) wasm: WasmBinary,
    pub(crate) source: Option<ModuleSource>,
}

/// The run plan and module of container `id` (bundle `bundle`, runtime spec `spec`).
pub(crate) fn load(
    spec: &Spec,
    bundle: &Path,
    id: &str,
    containerd: &Containerd,
) -> Result<Loaded, LoadError> {
    if let Some(image) = annotated_image(spec) {
        let client = containerd.connect().map_err(|e| LoadError::Image {
            image: image.clone(),
            cause: Lookup::Containerd(e),
        })?;
        return from_image(spec, bundle, &client, &image);
    }
    let rootfs_error = match RootfsModule::find(spec, bundle)? {
        RootfsModule::Found { plan, source, wasm } => {
            return Ok(Loaded {
                plan,
                wasm,
                source: Some(source),
            })
        }
        RootfsModule::Absent { why } => why,
    };
    tracing::debug!(container = %id, error = %rootfs_error, "no module in the rootfs, asking containerd for the image");
    let found = containerd.connect().and_then(|client| {
        let image = client.image_of(id)?;
        Ok((client, image))
    });
    let (client, image) = match found {
        Ok((client, Some(image))) => (client, image),
        // No image (e.g. `ctr run --rootfs`): the rootfs was the only place to look.
        Ok((_, None)) => return Err(rootfs_error.into()),
        Err(e) => {
            return Err(LoadError::NoModule {
                rootfs: rootfs_error,
                image: e.to_string(),
            })
        }
    };
    match from_image(spec, bundle, &client, &image) {
        Ok(found) => Ok(found),
        // An ordinary image whose entrypoint is wrong: say only that.
        Err(LoadError::Image {
            cause:
                Lookup::Image(ImageError::Artifact(
                    ArtifactError::NotWasm { .. } | ArtifactError::NoWasmLayer { .. },
                )),
            ..
        }) => Err(rootfs_error.into()),
        Err(LoadError::Image { image, cause }) => Err(LoadError::NoModule {
            rootfs: rootfs_error,
            image: format!("image {image}: {cause}"),
        }),
        Err(other) => Err(other),
    }
}

/// The image [`IMAGE_ANNOTATION`] names, if any.
fn annotated_image(spec: &Spec) -> Option<String> {
    spec.annotations()
        .as_ref()?
        .get(IMAGE_ANNOTATION)
        .filter(|v| !v.is_empty())
        .cloned()
}

/// The plan and module of a container that runs the Wasm layer of `image`. The spec's args
/// are the guest's argv; with none, argv is the image reference alone.
fn from_image(
    spec: &Spec,
    bundle: &Path,
    client: &Client,
    image: &str,
) -> Result<Loaded, LoadError> {
    let (wasm, layer) = client.artifact(image).map_err(|cause| LoadError::Image {
        image: image.to_string(),
        cause,
    })?;
    let mut spec = spec.clone();
    if let Some(process) = spec.process_mut() {
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            process.set_args(Some(vec![image.to_string()]));
        }
    }
    let workload = WorkloadSpec::from_oci(&spec).map_err(wasmcell_core::Error::from)?;
    let plan = RunPlan::resolve_without_entrypoint(&workload, bundle)
        .map_err(wasmcell_core::Error::from)?;
    tracing::info!(
        image,
        manifest = %layer.manifest_digest,
        layer = %layer.descriptor.digest(),
        media_type = %layer.media_type,
        "module from the image's wasm layer"
    );
    Ok(Loaded {
        plan,
        wasm,
        source: None,
    })
}

impl Containerd {
    fn connect(&self) -> Result<Client, CallError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                CallError(format!(
                    "failed to start a runtime to reach containerd: {e}"
                ))
            })?;
        let path = self
            .address
            .strip_prefix("unix://")
            .unwrap_or(&self.address)
            .to_string();
        let channel = runtime
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, containerd_client::connect(&path)).await
            })
            .map_err(|_| {
                CallError(format!(
                    "containerd at {path} did not answer in {CALL_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| CallError(format!("failed to connect to containerd at {path}: {e}")))?;
        let namespace = self.namespace.parse().map_err(|_| {
            CallError(format!(
                "namespace {:?} is not a valid header",
                self.namespace
            ))
        })?;
        Ok(Client {
            origin: self.clone(),
            runtime,
            channel,
            namespace,
            address: path,
        })
    }
}

/// One connection to containerd, used from blocking code.
struct Client {
    /// What it is connected to, to connect again later.
    origin: Containerd,
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    namespace: containerd_client::tonic::metadata::MetadataValue<
        containerd_client::tonic::metadata::Ascii,
    >,
    address: String,
}

impl Client {
    /// The image container `id` was created from, or `None` if it names none.
    fn image_of(&self, id: &str) -> Result<Option<String>, CallError> {
        let container = self.call(async {
            ContainersClient::new(self.channel.clone())
                .get(self.request(GetContainerRequest { id: id.to_string() }))
                .await
        });
        let container = container
            .map_err(|e| {
                CallError(format!(
                    "failed to look up container {id} in containerd: {e}"
                ))
            })?
            .container
            .ok_or_else(|| CallError(format!("containerd returned no container {id}")))?;
        Ok(Some(container.image).filter(|i| !i.is_empty()))
    }

    /// The Wasm module of the artifact image `image`, and its layer. A layer this node has read
    /// before is known by the label [`MODULE_LABEL`] on its blob: its module is then
    /// [deferred](WasmBinary::deferred), fetched only if its compiled code is not cached.
    fn artifact(&self, image: &str) -> Result<(WasmBinary, ArtifactLayer), Lookup> {
        let target = self.image_target(image)?;
        let store = ContentStore {
            client: self,
            image,
        };
        let layer = find_artifact_layer(&store, &target)?;
        let digest = layer.descriptor.digest().to_string();
        let name = PathBuf::from(format!("image {image}@{digest}"));
        if let Some((kind, module_digest)) = self.known_module(&digest) {
            let (containerd, image, found) =
                (self.origin.clone(), image.to_string(), layer.clone());
            let fetch: FetchBytes = Box::new(move || {
                let client = containerd.connect().map_err(|e| e.to_string())?;
                let store = ContentStore {
                    client: &client,
                    image: &image,
                };
                found.read(&store).map_err(|e| e.to_string())
            });
            let wasm = WasmBinary::deferred(&name, kind, module_digest, fetch);
            return Ok((wasm, layer));
        }
        let bytes = layer.read(&store).map_err(|e| Lookup::Image(e.into()))?;
        let wasm = WasmBinary::from_bytes(&name, bytes).map_err(|e| Lookup::Image(e.into()))?;
        self.remember_module(&digest, &wasm);
        Ok((wasm, layer))
    }

    /// The descriptor image `image` points at (a manifest or an index).
    fn image_target(&self, image: &str) -> Result<Descriptor, Lookup> {
        let invalid = |m: String| Lookup::Containerd(CallError(m));
        let found = self.call(async {
            ImagesClient::new(self.channel.clone())
                .get(self.request(GetImageRequest {
                    name: image.to_string(),
                }))
                .await
        });
        let target = found
            .map_err(|e| invalid(format!("failed to look it up in containerd: {e}")))?
            .image
            .and_then(|i| i.target)
            .ok_or_else(|| invalid("containerd returned no target for it".to_string()))?;
        let digest = Digest::from_str(&target.digest).map_err(|e| {
            invalid(format!(
                "its target digest {:?} is invalid: {e}",
                target.digest
            ))
        })?;
        let size = u64::try_from(target.size)
            .map_err(|_| invalid(format!("its target size {} is invalid", target.size)))?;
        Ok(Descriptor::new(
            MediaType::from(target.media_type.as_str()),
            size,
            digest,
        ))
    }

    /// The kind and BLAKE3 digest of the module in blob `digest`, if this node read and checked
    /// that blob before: the binding is kept in the precompile cache's content index, which
    /// only a reader that checked the blob writes ([`CompileCache::remember_content`]). The
    /// [`MODULE_LABEL`] label on the blob is a hint for people (`ctr content ls`), never
    /// trusted: any client of containerd may set it.
    fn known_module(&self, digest: &str) -> Option<(ModuleKind, [u8; 32])> {
        let recorded = node_cache().recall_content(digest)?;
        let known = parse_module_label(&recorded);
        if known.is_none() {
            tracing::warn!(
                blob = digest,
                recorded,
                "ignoring a malformed content index entry"
            );
        }
        known
    }

    /// Record the kind and digest of `wasm`, read from blob `digest` and checked against it,
    /// in the content index, and as [`MODULE_LABEL`] on the blob for people to see. Best
    /// effort: a start without them reads the layer again.
    fn remember_module(&self, digest: &str, wasm: &WasmBinary) {
        let label = module_label(wasm.kind(), &wasm.digest());
        if let Err(e) = node_cache().remember_content(digest, &label) {
            tracing::warn!(blob = digest, error = %e, "failed to record the wasm layer");
        }
        let update = self.call(async {
            ContentClient::new(self.channel.clone())
                .update(self.request(UpdateRequest {
                    info: Some(Info {
                        digest: digest.to_string(),
                        labels: HashMap::from([(MODULE_LABEL.to_string(), label)]),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec![format!("labels.{MODULE_LABEL}")],
                    }),
                }))
                .await
        });
        if let Err(e) = update {
            tracing::warn!(blob = digest, error = %e, "failed to label the wasm layer");
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    /// Run one call to completion, within [`CALL_TIMEOUT`].
    fn call<T>(
        &self,
        call: impl Future<
            Output = Result<
                containerd_client::tonic::Response<T>,
                containerd_client::tonic::Status,
            >,
        >,
    ) -> Result<T, CallError> {
        self.runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
            .map_err(|_| {
                CallError(format!(
                    "containerd at {} did not answer in {CALL_TIMEOUT:?}",
                    self.address
                ))
            })?
            .map(|r| r.into_inner())
            .map_err(|status| CallError(status.message().to_string()))
    }
}

/// The node's precompile cache, where the content index lives.
fn node_cache() -> CompileCache {
    CompileCache::node()
}

/// `core:<blake3 hex>` or `component:<blake3 hex>`.
fn module_label(kind: ModuleKind, digest: &[u8; 32]) -> String {
    let kind = match kind {
        ModuleKind::Core => "core",
        ModuleKind::Component => "component",
    };
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

fn parse_module_label(label: &str) -> Option<(ModuleKind, [u8; 32])> {
    let (kind, hex) = label.split_once(':')?;
    let kind = match kind {
        "core" => ModuleKind::Core,
        "component" => ModuleKind::Component,
        _ => return None,
    };
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((kind, digest))
}

/// The blobs of one image in containerd's content store.
struct ContentStore<'a> {
    client: &'a Client,
    image: &'a str,
}

impl BlobSource for ContentStore<'_> {
    fn name(&self) -> String {
        format!("image {}", self.image)
    }

    fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, ArtifactError> {
        let blob_error = |message: String| ArtifactError::Blob {
            from: self.name(),
            digest: digest.to_string(),
            source: std::io::Error::other(message),
        };
        let client = self.client;
        let read = async {
            let mut stream = ContentClient::new(client.channel.clone())
                .read(client.request(ReadContentRequest {
                    digest: digest.to_string(),
                    offset: 0,
                    size: 0,
                }))
                .await
                .map_err(|status| status.message().to_string())?
                .into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream
                .message()
                .await
                .map_err(|status| status.message().to_string())?
            {
                bytes.extend_from_slice(&chunk.data);
                // Longer than asked for: the caller only needs to see that it is.
                if bytes.len() as u64 >= max {
                    bytes.truncate(usize::try_from(max).unwrap_or(usize::MAX));
                    break;
                }
            }
            Ok::<_, String>(bytes)
        };
        client
            .runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, read).await })
            .map_err(|_| {
                blob_error(format!(
                    "containerd at {} did not answer in {CALL_TIMEOUT:?}",
                    client.address
                ))
            })?
            .map_err(blob_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_labels_round_trip_and_malformed_ones_are_refused() {
        let digest: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        for kind in [ModuleKind::Core, ModuleKind::Component] {
            let label = module_label(kind, &digest);
            assert_eq!(parse_module_label(&label), Some((kind, digest)), "{label}");
        }
        let hex = "ab".repeat(32);
        for bad in [
            String::new(),
            hex.clone(),
            format!("module:{hex}"),
            format!("core:{}", &hex[..62]),
            format!("core:{hex}00"),
            format!("core:{}zz", &hex[..62]),
        ] {
            assert_eq!(parse_module_label(&bad), None, "{bad:?}");
        }
    }
}
