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

/// A Wasm binary read into memory, with its kind told from its header.
#[derive(Debug, Clone)]
pub struct WasmBinary {
    path: PathBuf,
    kind: ModuleKind,
    bytes: Arc<[u8]>,
    digest: Arc<OnceLock<[u8; 32]>>,
}

impl WasmBinary {
    /// Read `path` and check that it is a core module or a component.
    pub fn read(path: &Path) -> Result<Self, ModuleError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ModuleError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ModuleError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Check in-memory bytes; `path` only names them in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, ModuleError> {
        let kind = classify(&bytes).map_err(|e| e.into_error(path))?;
        Ok(WasmBinary {
            path: path.to_path_buf(),
            kind,
            bytes: bytes.into(),
            digest: Arc::default(),
        })
    }

    /// Where the binary was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Core module or component.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The BLAKE3 digest of the bytes, the module's identity for caches (computed once).
    pub fn digest(&self) -> [u8; 32] {
        *self
            .digest
            .get_or_init(|| *blake3::hash(&self.bytes).as_bytes())
    }
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
    fn missing_file_is_not_found() {
        let err = WasmBinary::read(Path::new("/nonexistent/x.wasm")).expect_err("missing");
        assert_eq!(err.exit_code(), crate::EXIT_NOT_FOUND);
        assert_eq!(err.to_string(), "module /nonexistent/x.wasm not found");
    }
}
