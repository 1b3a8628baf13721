//! A small builder of OCI image archives from files, for tests: one uncompressed layer, an image
//! config and a manifest, written as an OCI image layout in one tar that
//! `ctr images import --all-platforms` takes (see [`crate::Containerd::import_into`]).
//!
//! [`pause_image`] and [`busybox_image`] build the two Linux images the CRI tests need from the
//! host's static busybox (Debian package `busybox-static`), since nothing can be pulled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The reference [`crate::Containerd::start_cri_with_pause`] uses for the pod sandbox image.
pub const PAUSE_IMAGE: &str = "docker.io/wasmcell/pause:test";

/// Where the host's static busybox lives (Debian package `busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// One entry of the image's layer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { bytes: Vec<u8>, mode: u32 },
    HostFile { source: PathBuf, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// An OCI image made of files: build it with the methods below, then
/// [`ImageBuilder::write_archive`].
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    reference: String,
    os: String,
    architecture: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    working_dir: String,
    annotations: Vec<(String, String)>,
    entries: Vec<(String, Entry)>,
}

impl ImageBuilder {
    /// An empty image tagged `reference` (e.g. `docker.io/library/x:latest`) for the host's
    /// platform (`linux`, and `amd64`, `arm64`, ... from the host architecture).
    pub fn new(reference: impl Into<String>) -> Self {
        ImageBuilder {
            reference: reference.into(),
            os: "linux".into(),
            architecture: host_architecture().into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: String::new(),
            annotations: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// The image's platform (config `os` and `architecture`), e.g. `("wasi", "wasm")`.
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }

    /// The config's `Entrypoint`.
    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = args.into_iter().map(Into::into).collect();
        self
    }

    /// The config's `Cmd` (default arguments).
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Add `KEY=VALUE` to the config's `Env`.
    pub fn env(mut self, key_value: impl Into<String>) -> Self {
        self.env.push(key_value.into());
        self
    }

    /// The config's `WorkingDir`.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = dir.into();
        self
    }

    /// Add an annotation to the manifest.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    /// A regular file at `path` (absolute or relative to `/`) holding `bytes`.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        let bytes = bytes.into();
        self.entries
            .push((clean(path), Entry::File { bytes, mode }));
        self
    }

    /// A regular file at `path` copied from the host file `source` when the archive is written.
    pub fn host_file(mut self, path: &str, source: impl Into<PathBuf>, mode: u32) -> Self {
        let source = source.into();
        self.entries
            .push((clean(path), Entry::HostFile { source, mode }));
        self
    }

    /// A directory at `path`. Parent directories of every entry are added automatically (0755).
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push((clean(path), Entry::Dir { mode }));
        self
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let target = target.into();
        self.entries.push((clean(path), Entry::Symlink { target }));
        self
    }

    /// The image reference it is tagged with.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Write the image as an OCI image layout in one tar (the format of `ctr images import`).
    /// The image is named by the `io.containerd.image.name` annotation of its index entry.
    ///
    /// # Errors
    /// When a host file cannot be read or the archive cannot be written.
    pub fn write_archive(&self, path: &Path) -> io::Result<()> {
        let layer = self.layer_tar()?;
        let layer_digest = sha256_hex(&layer);
        let mut config = serde_json::Map::new();
        if !self.entrypoint.is_empty() {
            config.insert("Entrypoint".into(), self.entrypoint.clone().into());
        }
        if !self.cmd.is_empty() {
            config.insert("Cmd".into(), self.cmd.clone().into());
        }
        if !self.env.is_empty() {
            config.insert("Env".into(), self.env.clone().into());
        }
        if !self.working_dir.is_empty() {
            config.insert("WorkingDir".into(), self.working_dir.clone().into());
        }
        let config = to_json(&serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        }))?;
        let config_digest = sha256_hex(&config);
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer.len(),
            }],
        });
        if !self.annotations.is_empty() {
            let annotations: serde_json::Map<String, serde_json::Value> = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            manifest["annotations"] = annotations.into();
        }
        let manifest = to_json(&manifest)?;
        let manifest_digest = sha256_hex(&manifest);
        let mut annotations = serde_json::json!({ "io.containerd.image.name": self.reference });
        if let Some(tag) = tag_of(&self.reference) {
            annotations["org.opencontainers.image.ref.name"] = tag.into();
        }
        let index = to_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest.len(),
                "annotations": annotations,
            }],
        }))?;

        let mut archive = tar::Builder::new(Vec::new());
        append(
            &mut archive,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
            0o644,
        )?;
        append(&mut archive, "index.json", &index, 0o644)?;
        for dir in ["blobs", "blobs/sha256"] {
            append_dir(&mut archive, dir, 0o755)?;
        }
        for (digest, blob) in [
            (&layer_digest, &layer),
            (&config_digest, &config),
            (&manifest_digest, &manifest),
        ] {
            append(&mut archive, &format!("blobs/sha256/{digest}"), blob, 0o644)?;
        }
        fs::write(path, archive.into_inner()?)
    }

    /// The layer: every entry, parents first, each directory once.
    fn layer_tar(&self) -> io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dirs_done: Vec<String> = Vec::new();
        let mut add_parents = |tar: &mut tar::Builder<Vec<u8>>, path: &str| -> io::Result<()> {
            let parts: Vec<&str> = path.split('/').collect();
            for end in 1..parts.len() {
                let dir = parts[..end].join("/");
                if !dirs_done.contains(&dir) {
                    append_dir(tar, &dir, 0o755)?;
                    dirs_done.push(dir);
                }
            }
            Ok(())
        };
        for (path, entry) in &self.entries {
            add_parents(&mut tar, path)?;
            match entry {
                Entry::File { bytes, mode } => append(&mut tar, path, bytes, *mode)?,
                Entry::HostFile { source, mode } => {
                    let bytes = fs::read(source).map_err(|e| {
                        io::Error::new(e.kind(), format!("reading {}: {e}", source.display()))
                    })?;
                    append(&mut tar, path, &bytes, *mode)?;
                }
                Entry::Dir { mode } => append_dir(&mut tar, path, *mode)?,
                Entry::Symlink { target } => {
                    let mut header = tar::Header::new_ustar();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    header.set_mode(0o777);
                    header.set_mtime(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        tar.into_inner()
    }
}

/// A pod sandbox ("pause") image built from the host's static busybox: `/bin/busybox` and the
/// entrypoint `/bin/busybox sleep 2147483647`. A pod sandbox is stopped with SIGKILL, so the
/// process needs no signal handling.
pub fn pause_image(reference: &str) -> ImageBuilder {
    busybox_image(reference).entrypoint(["/bin/busybox", "sleep", "2147483647"])
}

/// A Linux image holding the host's static busybox at `/bin/busybox`, `/bin/sh` linking to it,
/// `PATH=/bin` and the usual empty directories; no entrypoint (set one, or give the command
/// when creating the container).
pub fn busybox_image(reference: &str) -> ImageBuilder {
    let mut image = ImageBuilder::new(reference)
        .host_file("/bin/busybox", HOST_BUSYBOX, 0o755)
        .symlink("/bin/sh", "busybox")
        .env("PATH=/bin")
        .working_dir("/");
    for dir in ["/dev", "/etc", "/proc", "/sys", "/tmp", "/root"] {
        image = image.dir(dir, if dir == "/tmp" { 0o1777 } else { 0o755 });
    }
    image
}

/// The OCI architecture name of the host.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `path` without leading `/` (tar entries are relative).
fn clean(path: &str) -> String {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    assert!(
        !trimmed.is_empty() && !trimmed.split('/').any(|c| c.is_empty() || c == ".."),
        "wasmcell-testing: invalid path {path:?} for an image entry"
    );
    trimmed.to_string()
}

/// The tag of `reference` (after the last `:` of its last path component), if any.
fn tag_of(reference: &str) -> Option<&str> {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag)
}

fn to_json(value: &serde_json::Value) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    builder.append_data(&mut header, path, bytes)
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(mode);
    header.set_mtime(0);
    builder.append_data(&mut header, format!("{path}/"), io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn tags_are_found() {
        assert_eq!(tag_of("docker.io/wasmcell/pause:test"), Some("test"));
        assert_eq!(tag_of("localhost:5000/x"), None);
        assert_eq!(tag_of("localhost:5000/x:1@sha256:00"), Some("1"));
    }

    #[test]
    fn archive_holds_layout_index_and_blobs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tar_path = dir.path().join("img.tar");
        ImageBuilder::new("docker.io/library/t:1")
            .file("/a/b.txt", "hi", 0o644)
            .symlink("/a/c", "b.txt")
            .dir("/tmp", 0o1777)
            .entrypoint(["/a/b.txt"])
            .write_archive(&tar_path)
            .expect("write archive");
        let mut archive = tar::Archive::new(fs::File::open(&tar_path).expect("open"));
        let mut index = String::new();
        let mut blobs = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read entry");
            if path == "index.json" {
                index = String::from_utf8(bytes).expect("utf-8 index");
            } else if let Some(digest) = path.strip_prefix("blobs/sha256/") {
                if !digest.is_empty() {
                    assert_eq!(sha256_hex(&bytes), digest, "blob digest");
                    blobs.push(bytes);
                }
            }
        }
        assert!(index.contains("docker.io/library/t:1"), "{index}");
        assert_eq!(blobs.len(), 3);
        let layer = blobs
            .iter()
            .find(|b| b.len() >= 512 && b.len() % 512 == 0)
            .expect("layer blob");
        let mut layer = tar::Archive::new(layer.as_slice());
        let names: Vec<String> = layer
            .entries()
            .expect("layer entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a/", "a/b.txt", "a/c", "tmp/"]);
    }
}
