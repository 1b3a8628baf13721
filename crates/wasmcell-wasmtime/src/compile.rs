//! Compiling a binary once: in memory per engine (by content digest), and on disk per node
//! through the [`CompileCache`].

use std::sync::Mutex;

use wasmcell_core::{EngineError, ModuleKind, WasmBinary};
use wasmtime::component::Component;
use wasmtime::Module;

use crate::cache::CompileCache;
use crate::run::Lru;

/// Compiled code of a core module or a component (cheap to clone).
#[derive(Clone)]
pub(crate) enum Compiled {
    Core(Module),
    Component(Component),
}

/// How many compiled binaries an engine keeps in memory.
const MEMO_ENTRIES: usize = 64;

/// Compiles binaries, remembering the results.
pub(crate) struct Compiler {
    memo: Mutex<Lru<[u8; 32], Compiled>>,
    cache: Option<CompileCache>,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Compiler {
    pub(crate) fn new(cache: Option<CompileCache>) -> Self {
        Compiler {
            memo: Mutex::new(Lru::new(MEMO_ENTRIES)),
            cache,
        }
    }

    /// The compiled code of `wasm` and its content digest.
    pub(crate) fn compile(
        &self,
        engine: &wasmtime::Engine,
        wasm: &WasmBinary,
    ) -> Result<(Compiled, [u8; 32]), EngineError> {
        let digest = wasm.digest();
        let _span =
            tracing::debug_span!("compiled_code", module = %wasm.path().display()).entered();
        if let Some(c) = self.memo.lock().ok().and_then(|mut m| m.get(&digest)) {
            return Ok((c, digest));
        }
        let compiled = match &self.cache {
            Some(cache) => cached(cache, engine, wasm, &digest)?,
            None => fresh(engine, wasm)?,
        };
        self.remember(digest, compiled.clone());
        Ok((compiled, digest))
    }

    /// Whether the code of `wasm` is in memory or in the on-disk cache (whose entry is checked
    /// as a load would check it).
    pub(crate) fn has(&self, engine: &wasmtime::Engine, wasm: &WasmBinary) -> bool {
        let digest = wasm.digest();
        if self
            .memo
            .lock()
            .ok()
            .and_then(|mut m| m.get(&digest))
            .is_some()
        {
            return true;
        }
        self.cache.as_ref().is_some_and(|cache| {
            cache
                .load(&CompileCache::key(engine, wasm.kind(), &digest))
                .is_some()
        })
    }

    /// Keep `compiled` as the code of the binary with content digest `digest`.
    pub(crate) fn remember(&self, digest: [u8; 32], compiled: Compiled) {
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(digest, compiled);
        }
    }
}

/// Compiled code in Wasmtime's serialized form, with the digest of the binary it came from.
#[derive(Clone)]
pub struct CompiledCode {
    digest: [u8; 32],
    kind: ModuleKind,
    code: Vec<u8>,
}

impl std::fmt::Debug for CompiledCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCode")
            .field("kind", &self.kind)
            .field("bytes", &self.code.len())
            .finish_non_exhaustive()
    }
}

impl CompiledCode {
    pub(crate) fn serialize(
        compiled: &Compiled,
        digest: [u8; 32],
        kind: ModuleKind,
    ) -> wasmtime::Result<Self> {
        let code = match compiled {
            Compiled::Core(m) => m.serialize()?,
            Compiled::Component(c) => c.serialize()?,
        };
        Ok(CompiledCode { digest, kind, code })
    }

    /// Whether this is the code of `wasm` (same content digest).
    pub(crate) fn is_code_of(&self, wasm: &WasmBinary) -> bool {
        self.kind == wasm.kind() && self.digest == wasm.digest()
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Load the code into `engine`.
    ///
    /// # Safety
    /// The code must come from [`CompiledCode::serialize`] in an engine of the same Wasmtime
    /// build and configuration (Wasmtime checks its header and version, not its integrity).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn load(&self, engine: &wasmtime::Engine) -> wasmtime::Result<Compiled> {
        // SAFETY: the caller promises the bytes are Wasmtime's serialized code for this engine.
        unsafe {
            Ok(match self.kind {
                ModuleKind::Core => Compiled::Core(Module::deserialize(engine, &self.code)?),
                ModuleKind::Component => {
                    Compiled::Component(Component::deserialize(engine, &self.code)?)
                }
            })
        }
    }
}

fn fresh(engine: &wasmtime::Engine, wasm: &WasmBinary) -> Result<Compiled, EngineError> {
    let compile_err = |e: wasmtime::Error| EngineError::Compile {
        module: wasm.path().display().to_string(),
        reason: format!("{e:#}"),
    };
    let bytes = wasm.bytes().map_err(|e| EngineError::Compile {
        module: wasm.path().display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(match wasm.kind() {
        ModuleKind::Core => Compiled::Core(Module::new(engine, bytes).map_err(compile_err)?),
        ModuleKind::Component => {
            Compiled::Component(Component::new(engine, bytes).map_err(compile_err)?)
        }
    })
}

fn cached(
    cache: &CompileCache,
    engine: &wasmtime::Engine,
    wasm: &WasmBinary,
    digest: &[u8; 32],
) -> Result<Compiled, EngineError> {
    let key = CompileCache::key(engine, wasm.kind(), digest);
    if let Some(file) = cache.load(&key) {
        match deserialize(engine, wasm.kind(), file) {
            Ok(c) => {
                tracing::debug!(module = %wasm.path().display(), %key, "compiled code from cache");
                return Ok(c);
            }
            Err(e) => {
                tracing::warn!(%key, error = %format!("{e:#}"), "discarding stale cache entry");
                cache.discard(&key);
            }
        }
    }
    let compiled = fresh(engine, wasm)?;
    let serialized = match &compiled {
        Compiled::Core(m) => m.serialize(),
        Compiled::Component(c) => c.serialize(),
    };
    match serialized.map_err(|e| std::io::Error::other(format!("{e:#}"))) {
        Ok(bytes) => {
            if let Err(e) = cache.store(&key, &bytes) {
                tracing::warn!(dir = %cache.dir().display(), error = %e, "failed to store compiled code");
            }
        }
        Err(e) => tracing::warn!(error = %e, "failed to serialize compiled code"),
    }
    Ok(compiled)
}

/// Memory-map a cache entry's code (shared, copy-on-write pages of the file).
fn deserialize(
    engine: &wasmtime::Engine,
    kind: ModuleKind,
    file: std::fs::File,
) -> wasmtime::Result<Compiled> {
    // SAFETY: the file was produced by `serialize` of an engine with the same compatibility
    // hash (it is part of the key) and written by this library into a root-owned cache
    // directory, and `CompileCache::load` has checked this very open file against its
    // checksum; entries are replaced by rename, never rewritten in place, so the mapped file
    // does not change under the module. Wasmtime also checks its own header and version.
    #[allow(unsafe_code)]
    let compiled = unsafe {
        match kind {
            ModuleKind::Core => Compiled::Core(Module::deserialize_open_file(engine, file)?),
            // Wasmtime 48 has no `Component::deserialize_open_file`: reopen the same open file
            // through its descriptor link, so that the file checked is the file mapped.
            ModuleKind::Component => {
                use std::os::fd::AsRawFd;
                let same_file = format!("/proc/self/fd/{}", file.as_raw_fd());
                let component = Component::deserialize_file(engine, &same_file);
                drop(file);
                Compiled::Component(component?)
            }
        }
    };
    Ok(compiled)
}
