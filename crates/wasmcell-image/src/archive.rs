use std::io::Write;
use std::path::{Path, PathBuf};

use crate::layer::header;
use crate::Image;

/// Why an image could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The module is missing or not Wasm.
    #[error(transparent)]
    Module(#[from] wasmcell_core::ModuleError),
    /// A Wasm OCI artifact could not be read.
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    /// The entrypoint is not an absolute path inside the image.
    #[error("invalid entrypoint {0:?}: must be an absolute path such as /app.wasm")]
    Entrypoint(String),
    /// A layer entry's path is empty or has an empty, `.` or `..` component.
    #[error(
        "invalid path {0:?} for an image entry: must be a path inside the image such as /bin/app"
    )]
    EntryPath(String),
    /// The layer tar could not be assembled.
    #[error("failed to build the image layer: {0}")]
    Layer(std::io::Error),
    /// An OCI object failed to build.
    #[error("failed to build OCI metadata: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// An OCI object failed to serialize.
    #[error("failed to serialize OCI metadata: {0}")]
    Json(#[from] serde_json::Error),
    /// The output could not be written.
    #[error("failed to write {path}: {source}")]
    Write {
        /// The path being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

impl Image {
    /// Write the image as one tar: an OCI image layout plus a Docker `manifest.json`, so that
    /// `ctr images import`, `docker load` and `podman load` all take it.
    pub fn write_archive(&self, path: &Path) -> Result<(), ImageError> {
        let werr = |source| ImageError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(werr)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("oci-layout".into(), OCI_LAYOUT.to_vec()),
            ("index.json".into(), self.index_json()?),
            ("manifest.json".into(), self.docker_manifest()?),
        ];
        let mut digests: Vec<_> = self.blobs.keys().collect();
        digests.sort();
        for d in digests {
            entries.push((blob_path(d), self.blobs[d].clone()));
        }
        let mut dirs_done = false;
        for (name, bytes) in entries {
            if name.starts_with("blobs/") && !dirs_done {
                for dir in ["blobs", "blobs/sha256"] {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0);
                    tar.append_data(&mut h, dir, std::io::empty())
                        .map_err(werr)?;
                }
                dirs_done = true;
            }
            let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
            tar.append_data(&mut h, &name, bytes.as_slice())
                .map_err(werr)?;
        }
        let mut out = tar.into_inner().map_err(werr)?;
        out.flush().map_err(werr)
    }

    /// Write the image as an OCI image layout directory (created if missing).
    pub fn write_layout(&self, dir: &Path) -> Result<(), ImageError> {
        let write = |rel: &str, bytes: &[u8]| {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| ImageError::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, bytes).map_err(|source| ImageError::Write { path, source })
        };
        write("oci-layout", OCI_LAYOUT)?;
        write("index.json", &self.index_json()?)?;
        for (digest, bytes) in &self.blobs {
            write(&blob_path(digest), bytes)?;
        }
        Ok(())
    }

    fn docker_manifest(&self) -> Result<Vec<u8>, ImageError> {
        let manifest = serde_json::json!([{
            "Config": blob_path(&self.config_digest),
            "RepoTags": [self.reference],
            "Layers": [blob_path(&self.layer_digest)],
        }]);
        Ok(serde_json::to_vec(&manifest)?)
    }
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSpec;

    fn module(dir: &Path) -> PathBuf {
        let path = dir.join("m.wasm");
        std::fs::write(&path, b"\0asm\x01\0\0\0").expect("write module");
        path
    }

    #[test]
    fn archive_holds_layout_docker_manifest_and_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = ImageSpec::new(module(dir.path()), "docker.io/library/t:1")
            .build()
            .expect("build");
        let out = dir.path().join("img.tar");
        image.write_archive(&out).expect("write");

        let mut names = Vec::new();
        let mut ar = tar::Archive::new(std::fs::File::open(&out).expect("open"));
        let mut index = String::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            if name == "index.json" {
                std::io::Read::read_to_string(&mut e, &mut index).expect("read index");
            }
            names.push(name);
        }
        for expected in ["oci-layout", "index.json", "manifest.json"] {
            assert!(names.contains(&expected.to_string()), "{names:?}");
        }
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("blobs/sha256/"))
                .count(),
            3
        );
        assert!(
            index.contains("\"io.containerd.image.name\":\"docker.io/library/t:1\""),
            "{index}"
        );
        assert!(
            index.contains("\"org.opencontainers.image.ref.name\":\"1\""),
            "{index}"
        );

        let config = &image.blobs[&image.config_digest];
        let config = String::from_utf8_lossy(config);
        assert!(config.contains("\"architecture\":\"wasm\""), "{config}");
        assert!(config.contains("\"os\":\"wasi\""), "{config}");
        assert!(
            config.contains("\"Entrypoint\":[\"/app.wasm\"]"),
            "{config}"
        );
    }

    #[test]
    fn layer_holds_the_module_at_the_entrypoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = ImageSpec::new(module(dir.path()), "x");
        spec.entrypoint = "/bin/app.wasm".into();
        let image = spec.build().expect("build");
        let layer = &image.blobs[&image.layer_digest];
        let mut ar = tar::Archive::new(layer.as_slice());
        let names: Vec<_> = ar
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, vec!["bin", "bin/app.wasm"]);
    }

    #[test]
    fn rejects_non_wasm_and_bad_entrypoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "hello").expect("write");
        let err = ImageSpec::new(&text, "x").build().expect_err("not wasm");
        assert!(err.to_string().contains("not a wasm module"), "{err}");

        for bad in ["app.wasm", "/", "/../x.wasm", "/a//b.wasm"] {
            let mut spec = ImageSpec::new(module(dir.path()), "x");
            spec.entrypoint = bad.into();
            let err = spec.build().expect_err("bad entrypoint");
            assert!(
                err.to_string().contains("invalid entrypoint"),
                "{bad}: {err}"
            );
        }
    }
}
