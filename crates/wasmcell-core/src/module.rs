use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

const WASM_MAGIC: [u8; 4] = *b"\0asm";
const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// Why an entrypoint cannot be loaded as Wasm.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The file does not exist.
    #[error("module {path} not found")]
    NotFound {
        /// The host path looked at.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("failed to read module {path}: {source}")]
    Read {
        /// The host path read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not WebAssembly.
    #[error("{path} is not a wasm module: {what}")]
    NotWasm {
        /// The host path read.
        path: PathBuf,
        /// What the file looks like instead.
        what: String,
    },
    /// The header says Wasm but the version is unknown or the file is cut short.
    #[error("{path} is not a usable wasm binary: {what}")]
    BadHeader {
        /// The host path read.
        path: PathBuf,
        /// What is wrong with the header.
        what: String,
    },
    /// The file is larger than a runtime reads ([`crate::max_module_bytes`]).
    #[error("module {path} is {size} bytes, more than the {max} bytes a module may have (set {env} to change it)", env = crate::MAX_MODULE_BYTES_ENV)]
    TooLarge {
        /// The host path looked at.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The file changed between computing its digest and reading it to compile.
    #[error("module {path} changed while it was being loaded")]
    Changed {
        /// The host path read.
        path: PathBuf,
    },
}

impl ModuleError {
    /// The exit status a host reports for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ModuleError::NotFound { .. } => crate::EXIT_NOT_FOUND,
            _ => crate::EXIT_NOT_RUNNABLE,
        }
    }
}

/// Which kind of Wasm binary a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A core module (WASI 0.1, `wasi_snapshot_preview1`).
    Core,
    /// A component (WASI 0.2 and later).
    Component,
}

/// A Wasm binary: its kind, told from its header, and its content digest.
///
/// [`WasmBinary::read`] streams the file through the hash once and keeps none of it: a host
/// that finds the compiled code in a cache never holds the module's bytes. They are read
/// again by [`WasmBinary::bytes`] only when needed (to compile), and checked against the
/// digest then. Clones share everything.
#[derive(Debug, Clone)]
pub struct WasmBinary {
    inner: Arc<Binary>,
}

#[derive(Debug)]
struct Binary {
    path: PathBuf,
    /// The directory `path` lies in that the file is opened within
    /// ([`WasmBinary::read_in_root`]); None: opened by path.
    root: Option<PathBuf>,
    kind: ModuleKind,
    digest: OnceLock<[u8; 32]>,
    bytes: OnceLock<Vec<u8>>,
    /// Where the bytes come from when they are not in [`Binary::path`].
    fetch: Option<Fetch>,
}

/// Where a module lies on the host before it is read (once read, its [`WasmBinary`] carries
/// its path): what [`RunPlan::resolve`](crate::RunPlan::resolve) found at the entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSource {
    /// Host path of the module.
    pub path: PathBuf,
    /// The host directory (the rootfs, or a mount's source) `path` was resolved in:
    /// [`ModuleSource::read`] opens it within that directory.
    pub root: PathBuf,
}

impl ModuleSource {
    /// Read the module ([`WasmBinary::read_in_root`]): a path component swapped for a symlink
    /// since it was resolved cannot lead out of the directory it was resolved in.
    pub fn read(&self) -> Result<WasmBinary, ModuleError> {
        WasmBinary::read_in_root(&self.root, &self.path)
    }
}

/// Fetches a module's bytes on demand, for [`WasmBinary::deferred`]; its error is a message.
pub type FetchBytes = Box<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>;

struct Fetch(FetchBytes);

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fetch")
    }
}

/// How much of a module is read and hashed at a time (a multiple of BLAKE3's parallel unit).
const READ_CHUNK: usize = 512 * 1024;

impl WasmBinary {
    /// Check that `path` is a core module or a component and compute its digest.
    pub fn read(path: &Path) -> Result<Self, ModuleError> {
        Self::read_opened(path, None)
    }

    /// [`WasmBinary::read`] of `path`, a file inside directory `root` (a rootfs, a volume),
    /// opened within it: `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` resolves every
    /// component, symlinks included, inside `root` at the moment of the open, so a component
    /// swapped for a symlink after the path was resolved still cannot lead out of `root`.
    /// Where the kernel has no `openat2`, the file is opened by path.
    pub fn read_in_root(root: &Path, path: &Path) -> Result<Self, ModuleError> {
        Self::read_opened(path, Some(root))
    }

    fn read_opened(path: &Path, root: Option<&Path>) -> Result<Self, ModuleError> {
        let read_err = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::NotFound => ModuleError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ModuleError::Read {
                path: path.to_path_buf(),
                source,
            },
        };
        let mut file = open_regular(path, root).map_err(read_err)??;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut hasher = blake3::Hasher::new();
        // The header is in the first chunk: a file that is not Wasm is not read further.
        let mut n = fill(&mut file, &mut buf).map_err(read_err)?;
        let kind = classify(&buf[..n]).map_err(|e| e.into_error(path))?;
        let (max, mut total) = (crate::max_module_bytes(), 0u64);
        loop {
            crate::digest::update(&mut hasher, &buf[..n]);
            total += n as u64;
            if total > max {
                // It grew past the cap after it was opened.
                return Err(ModuleError::TooLarge {
                    path: path.to_path_buf(),
                    size: total,
                    max,
                });
            }
            if n < buf.len() {
                break;
            }
            n = fill(&mut file, &mut buf).map_err(read_err)?;
        }
        Ok(WasmBinary {
            inner: Arc::new(Binary {
                path: path.to_path_buf(),
                root: root.map(Path::to_path_buf),
                kind,
                digest: OnceLock::from(*hasher.finalize().as_bytes()),
                bytes: OnceLock::new(),
                fetch: None,
            }),
        })
    }

    /// Check in-memory bytes; `path` only names them in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, ModuleError> {
        let kind = classify(&bytes).map_err(|e| e.into_error(path))?;
        Ok(WasmBinary {
            inner: Arc::new(Binary {
                path: path.to_path_buf(),
                root: None,
                kind,
                digest: OnceLock::new(),
                bytes: OnceLock::from(bytes),
                fetch: None,
            }),
        })
    }

    /// A binary known by its kind and digest alone, e.g. from an earlier read of the same
    /// content: a host that finds its compiled code in a cache never fetches it. `fetch` is
    /// called by [`WasmBinary::bytes`] only when the bytes are needed, and what it returns
    /// is checked against `kind` and `digest` then; `name` names the binary in errors.
    pub fn deferred(name: &Path, kind: ModuleKind, digest: [u8; 32], fetch: FetchBytes) -> Self {
        WasmBinary {
            inner: Arc::new(Binary {
                path: name.to_path_buf(),
                root: None,
                kind,
                digest: OnceLock::from(digest),
                bytes: OnceLock::new(),
                fetch: Some(Fetch(fetch)),
            }),
        }
    }

    /// Where the binary was read from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Core module or component.
    pub fn kind(&self) -> ModuleKind {
        self.inner.kind
    }

    /// The raw bytes, read from [`WasmBinary::path`] (or fetched, for
    /// [`WasmBinary::deferred`]) on first use unless given to [`WasmBinary::from_bytes`]. Fails
    /// when they can no longer be read or no longer have the digest they had.
    pub fn bytes(&self) -> Result<&[u8], ModuleError> {
        if let Some(bytes) = self.inner.bytes.get() {
            return Ok(bytes);
        }
        let path = &self.inner.path;
        let read = match &self.inner.fetch {
            Some(Fetch(fetch)) => fetch().map_err(std::io::Error::other),
            None => read_regular(path, self.inner.root.as_deref()),
        };
        let bytes = read.map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        let same_kind = classify(&bytes).is_ok_and(|kind| kind == self.inner.kind);
        if !same_kind || crate::digest::blake3(&bytes) != self.digest() {
            return Err(ModuleError::Changed { path: path.clone() });
        }
        Ok(self.inner.bytes.get_or_init(|| bytes))
    }

    /// The BLAKE3 digest of the bytes, the module's identity for caches (computed once).
    pub fn digest(&self) -> [u8; 32] {
        *self.inner.digest.get_or_init(|| {
            crate::digest::blake3(self.inner.bytes.get().map_or(&[][..], Vec::as_slice))
        })
    }
}

/// Open `path` for reading if it is a regular file. The open does not block (`O_NONBLOCK`: a
/// FIFO with no writer would otherwise wait forever) and the type is checked on the open file
/// (`fstat`), so what is read is what was checked. The outer error is the open's, the inner one
/// names what the path is instead.
fn open_regular(
    path: &Path,
    root: Option<&Path>,
) -> std::io::Result<Result<std::fs::File, ModuleError>> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let opened_in_root = match root {
        Some(root) => crate::open_in_root::open(root, path)?,
        None => None,
    };
    let file = match opened_in_root {
        Some(file) => file,
        None => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?,
    };
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        let max = crate::max_module_bytes();
        if meta.len() > max {
            return Ok(Err(ModuleError::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                max,
            }));
        }
        return Ok(Ok(file));
    } else if kind.is_dir() {
        "it is a directory"
    } else if kind.is_fifo() {
        "it is a FIFO (named pipe), not a regular file"
    } else if kind.is_socket() {
        "it is a socket, not a regular file"
    } else if kind.is_block_device() || kind.is_char_device() {
        "it is a device node, not a regular file"
    } else {
        "it is not a regular file"
    };
    Ok(Err(ModuleError::NotWasm {
        path: path.to_path_buf(),
        what: what.into(),
    }))
}

/// The whole of `path`, a regular file ([`open_regular`]).
fn read_regular(path: &Path, root: Option<&Path>) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = open_regular(path, root)?.map_err(std::io::Error::other)?;
    let mut bytes = Vec::new();
    // A file grown past the cap since it was hashed is cut here, and its digest then differs.
    file.take(crate::max_module_bytes().saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Read until `buf` is full or the file ends; the number of bytes read.
fn fill(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// True when `bytes` start with the Wasm magic `\0asm` (core module or component).
pub fn looks_like_wasm(bytes: &[u8]) -> bool {
    bytes.starts_with(&WASM_MAGIC)
}

enum Unfit {
    NotWasm(String),
    BadHeader(String),
}

impl Unfit {
    fn into_error(self, path: &Path) -> ModuleError {
        let path = path.to_path_buf();
        match self {
            Unfit::NotWasm(what) => ModuleError::NotWasm { path, what },
            Unfit::BadHeader(what) => ModuleError::BadHeader { path, what },
        }
    }
}

fn classify(bytes: &[u8]) -> Result<ModuleKind, Unfit> {
    if !looks_like_wasm(bytes) {
        return Err(Unfit::NotWasm(describe(bytes)));
    }
    match bytes.get(4..8) {
        Some(v) if v == CORE_VERSION => Ok(ModuleKind::Core),
        Some(v) if v == COMPONENT_VERSION => Ok(ModuleKind::Component),
        Some(v) => Err(Unfit::BadHeader(format!(
            "unknown version/layer bytes {v:02x?}"
        ))),
        None => Err(Unfit::BadHeader("truncated header".into())),
    }
}

fn describe(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "the file is empty".into()
    } else if bytes.starts_with(b"\x7fELF") {
        "it is an ELF executable (a Linux binary, not wasm)".into()
    } else if bytes.starts_with(b"#!") {
        "it is a script (starts with #!)".into()
    } else if bytes.starts_with(b"(module") || bytes.starts_with(b"(component") {
        "it is wasm text (.wat); compile it to a binary first".into()
    } else if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() {
        "it is a text file".into()
    } else {
        format!(
            "unknown format (starts with {:02x?})",
            &bytes[..bytes.len().min(4)]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> Result<ModuleKind, ModuleError> {
        WasmBinary::from_bytes(Path::new("/m.wasm"), bytes.to_vec()).map(|b| b.kind())
    }

    #[test]
    fn tells_core_from_component() {
        assert_eq!(check(b"\0asm\x01\0\0\0").expect("core"), ModuleKind::Core);
        assert_eq!(
            check(b"\0asm\x0d\0\x01\0").expect("component"),
            ModuleKind::Component
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once_not_waited_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("app.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        // No writer ever opens it: a blocking open would hang this test.
        let err = WasmBinary::read(&fifo).expect_err("a fifo is not a module");
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(err.to_string().contains("app.wasm"), "{err}");
        assert_eq!(err.exit_code(), crate::EXIT_NOT_RUNNABLE);
        let err = WasmBinary::read(dir.path()).expect_err("a directory is not a module");
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn names_what_a_non_wasm_file_is() {
        let msg = |b: &[u8]| check(b).expect_err("not wasm").to_string();
        assert!(msg(b"\x7fELF\x02\x01").contains("ELF executable"));
        assert!(msg(b"#!/bin/sh\necho hi").contains("script"));
        assert!(msg(b"hello world\n").contains("text file"));
        assert!(msg(b"").contains("empty"));
        assert!(msg(b"(module)").contains("wasm text"));
        assert!(msg(b"\0asm\x01").contains("truncated header"));
        assert!(msg(b"\0asm\x02\0\0\0").contains("unknown version"));
        assert!(msg(b"\x7fELF").starts_with("/m.wasm is not a wasm module"));
    }

    #[test]
    fn a_module_read_in_chunks_has_the_digest_of_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.wasm");
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend((0..READ_CHUNK * 2 + 123).map(|i| (i % 251) as u8));
        std::fs::write(&path, &bytes).expect("write");
        let wasm = WasmBinary::read(&path).expect("read");
        assert_eq!(wasm.digest(), *blake3::hash(&bytes).as_bytes());
        assert_eq!(wasm.bytes().expect("bytes"), bytes.as_slice());

        std::fs::write(&path, b"\0asm\x01\0\0\0changed").expect("rewrite");
        let read_before = WasmBinary::read(&path).expect("read");
        std::fs::write(&path, &bytes).expect("rewrite");
        assert!(
            matches!(read_before.bytes(), Err(ModuleError::Changed { .. })),
            "bytes that no longer match the digest are refused"
        );
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = WasmBinary::read(Path::new("/nonexistent/x.wasm")).expect_err("missing");
        assert_eq!(err.exit_code(), crate::EXIT_NOT_FOUND);
        assert_eq!(err.to_string(), "module /nonexistent/x.wasm not found");
    }

    #[test]
    fn a_deferred_binary_fetches_only_when_its_bytes_are_needed_and_checks_them() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let module = b"\0asm\x01\0\0\0".to_vec();
        let digest = *blake3::hash(&module).as_bytes();
        let calls = Arc::new(AtomicUsize::new(0));
        let deferred = |served: Vec<u8>| {
            let calls = calls.clone();
            let fetch: FetchBytes = Box::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(served.clone())
            });
            WasmBinary::deferred(
                Path::new("image a@sha256:1"),
                ModuleKind::Core,
                digest,
                fetch,
            )
        };

        let good = deferred(module.clone());
        assert_eq!((good.kind(), good.digest()), (ModuleKind::Core, digest));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing fetched for kind and digest"
        );
        assert_eq!(good.bytes().expect("bytes"), module.as_slice());
        assert_eq!(good.bytes().expect("bytes again"), module.as_slice());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fetched once");

        let other = deferred(b"\0asm\x01\0\0\0other".to_vec());
        assert!(matches!(other.bytes(), Err(ModuleError::Changed { .. })));
        let component = deferred(b"\0asm\x0d\0\x01\0".to_vec());
        assert!(matches!(
            component.bytes(),
            Err(ModuleError::Changed { .. })
        ));

        let failing: FetchBytes = Box::new(|| Err("containerd is gone".to_string()));
        let err = WasmBinary::deferred(Path::new("image b"), ModuleKind::Core, digest, failing)
            .bytes()
            .expect_err("fetch fails");
        assert_eq!(
            err.to_string(),
            "failed to read module image b: containerd is gone"
        );
    }
}
