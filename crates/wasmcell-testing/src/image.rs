//! A small builder of OCI image archives from files, for tests: a thin wrapper over
//! [`wasmcell_image::FilesSpec`] (one uncompressed layer, an image config and a manifest, written
//! as one tar that `ctr images import --all-platforms` takes, see
//! [`crate::Containerd::import_into`], and `docker load` / `podman load` too).
//!
//! [`pause_image`] and [`busybox_image`] build the two Linux images the CRI tests need from the
//! host's static busybox (Debian package `busybox-static`), since nothing can be pulled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wasmcell_image::{FilesSpec, LayerEntry};

/// The reference [`crate::Containerd::start_cri_with_pause`] uses for the pod sandbox image.
pub const PAUSE_IMAGE: &str = "docker.io/wasmcell/pause:test";

/// Where the host's static busybox lives (Debian package `busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// One entry of the image's layer, as given to the builder.
#[derive(Debug, Clone)]
enum Entry {
    Layer(LayerEntry),
    /// A regular file whose bytes are read from the host file `source` at write time.
    HostFile {
        path: String,
        source: PathBuf,
        mode: u32,
    },
}

/// An OCI image made of files: build it with the methods below, then
/// [`ImageBuilder::write_archive`]. Paths are absolute or relative to `/`.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    /// Everything but the entries, which are `entries`.
    spec: FilesSpec,
    entries: Vec<Entry>,
}

impl ImageBuilder {
    /// An empty image tagged `reference` (e.g. `docker.io/library/x:latest`) for the host's
    /// platform (`linux`, and `amd64`, `arm64`, ... from the host architecture).
    pub fn new(reference: impl Into<String>) -> Self {
        let mut spec = FilesSpec::new(reference);
        spec.os = "linux".into();
        spec.architecture = host_architecture().into();
        ImageBuilder {
            spec,
            entries: Vec::new(),
        }
    }

    /// The image's platform (config `os` and `architecture`), e.g. `("wasi", "wasm")`.
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.spec.os = os.into();
        self.spec.architecture = architecture.into();
        self
    }

    /// The config's `Entrypoint`.
    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.spec.entrypoint = args.into_iter().map(Into::into).collect();
        self
    }

    /// The config's `Cmd` (default arguments).
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.spec.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Add `KEY=VALUE` to the config's `Env`.
    pub fn env(mut self, key_value: impl Into<String>) -> Self {
        self.spec.env.push(key_value.into());
        self
    }

    /// The config's `WorkingDir`.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.spec.working_dir = Some(dir.into());
        self
    }

    /// Add an annotation to the manifest.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.annotations.insert(key.into(), value.into());
        self
    }

    /// A regular file at `path` holding `bytes`.
    pub fn file(self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        let bytes = bytes.into();
        self.with(Entry::Layer(LayerEntry::File {
            path: path.into(),
            bytes,
            mode,
        }))
    }

    /// A regular file at `path` copied from the host file `source` when the archive is written.
    pub fn host_file(self, path: &str, source: impl Into<PathBuf>, mode: u32) -> Self {
        let source = source.into();
        self.with(Entry::HostFile {
            path: path.into(),
            source,
            mode,
        })
    }

    /// A directory at `path`. Parent directories of every entry are added automatically (0755).
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.with(Entry::Layer(LayerEntry::Dir {
            path: path.into(),
            mode,
        }))
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.with(Entry::Layer(LayerEntry::Symlink {
            path: path.into(),
            target: target.into(),
        }))
    }

    /// The image reference it is tagged with.
    pub fn reference(&self) -> &str {
        &self.spec.reference
    }

    /// Write the image as one tar holding an OCI image layout (the format of `ctr images
    /// import`) and a Docker `manifest.json`; see [`wasmcell_image::Image::write_archive`].
    /// The image is named by the `io.containerd.image.name` annotation of its index entry.
    ///
    /// # Errors
    /// When a host file cannot be read, a path is not inside the image, or the archive cannot
    /// be written.
    pub fn write_archive(&self, path: &Path) -> io::Result<()> {
        let mut spec = self.spec.clone();
        spec.entries = self
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Layer(entry) => Ok(entry.clone()),
                Entry::HostFile { path, source, mode } => {
                    let bytes = fs::read(source).map_err(|e| {
                        io::Error::new(e.kind(), format!("reading {}: {e}", source.display()))
                    })?;
                    Ok(LayerEntry::File {
                        path: path.clone(),
                        bytes,
                        mode: *mode,
                    })
                }
            })
            .collect::<io::Result<_>>()?;
        spec.build()
            .and_then(|image| image.write_archive(path))
            .map_err(io::Error::other)
    }

    fn with(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::io::Read;

    /// Every entry of the tar read from `reader`, in order: its name and bytes.
    fn tar_entries(reader: impl Read) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().expect("entries");
        entries
            .map(|entry| {
                let mut entry = entry.expect("entry");
                let name = entry.path().expect("path").display().to_string();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).expect("read entry");
                (name, bytes)
            })
            .collect()
    }

    #[test]
    fn archive_holds_the_entries_and_the_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = dir.path().join("host.txt");
        fs::write(&host, "from host").expect("write host file");
        let tar_path = dir.path().join("img.tar");
        ImageBuilder::new("docker.io/library/t:1")
            .file("/a/b.txt", "hi", 0o644)
            .host_file("a/h.txt", &host, 0o600)
            .symlink("/a/c", "b.txt")
            .dir("/tmp", 0o1777)
            .entrypoint(["/a/b.txt"])
            .cmd(["x"])
            .env("K=V")
            .working_dir("/a")
            .annotation("k", "v")
            .write_archive(&tar_path)
            .expect("write archive");

        let files: HashMap<String, Vec<u8>> = tar_entries(fs::File::open(&tar_path).expect("open"))
            .into_iter()
            .collect();
        let index = String::from_utf8_lossy(&files["index.json"]);
        assert!(index.contains("docker.io/library/t:1"), "{index}");
        let docker: Value = serde_json::from_slice(&files["manifest.json"]).expect("json");
        let blob = |path: &Value| &files[path.as_str().expect("blob path")];
        let config: Value = serde_json::from_slice(blob(&docker[0]["Config"])).expect("json");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], host_architecture());
        assert_eq!(
            config["config"],
            json!({
                "Entrypoint": ["/a/b.txt"],
                "Cmd": ["x"],
                "Env": ["K=V"],
                "WorkingDir": "/a",
            })
        );
        let layer = tar_entries(blob(&docker[0]["Layers"][0]).as_slice());
        let names: Vec<&str> = layer.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "a/b.txt", "a/h.txt", "a/c", "tmp"]);
        assert_eq!(layer[2].1, b"from host");
    }

    #[test]
    fn a_missing_host_file_or_a_bad_path_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tar_path = dir.path().join("img.tar");
        let err = ImageBuilder::new("x")
            .host_file("/b", dir.path().join("missing"), 0o755)
            .write_archive(&tar_path)
            .expect_err("missing host file");
        assert!(err.to_string().contains("missing"), "{err}");
        let err = ImageBuilder::new("x")
            .file("/a/../b", "", 0o644)
            .write_archive(&tar_path)
            .expect_err("path outside the image");
        assert!(err.to_string().contains("invalid path"), "{err}");
    }
}
