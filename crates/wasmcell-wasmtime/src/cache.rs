//! The on-disk precompile cache: Wasmtime's compiled code for a module, keyed by the module's
//! content digest and the engine's compatibility hash, so a node compiles each module once.
//!
//! An entry is two files: `<key>.cwasm`, Wasmtime's serialized code as it is (so it is loaded
//! by memory-mapping the file: no copy, and its pages are shared by every process that runs the
//! module), and `<key>.sum`, `WCSUM002` + BLAKE3 of the `.cwasm` (a hash fast enough to check
//! tens of megabytes on every load). An entry whose checksum does not
//! match, or that Wasmtime refuses, is deleted and recompiled, never run. Each file is written to
//! a temporary file and renamed into place (code first, checksum last, so a half-written entry
//! fails its check); the least recently used entries are evicted past the size bound.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmcell_core::ModuleKind;

const MAGIC: &[u8; 8] = b"WCSUM002";
const SUM_LEN: usize = MAGIC.len() + 32;
const EXTENSION: &str = "cwasm";
const SUM_EXTENSION: &str = "sum";
/// Bumped whenever the entry format or key derivation changes.
const FORMAT_VERSION: &str = "wasmcell-cache-v3";
/// Default size bound: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Environment variable overriding the cache directory.
pub const CACHE_DIR_ENV: &str = "WASMCELL_CACHE_DIR";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of precompiled modules.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// One cache entry, as `wasmcell cache ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// File name (the key).
    pub key: String,
    /// Size on disk in bytes.
    pub size: u64,
    /// Last time the entry was written or used.
    pub last_used: SystemTime,
}

/// What [`CompileCache::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed.
    pub removed: usize,
    /// Bytes freed.
    pub freed: u64,
}

impl CompileCache {
    /// A cache in `dir` (created on first store) bounded to `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        CompileCache {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// `$WASMCELL_CACHE_DIR`, or `/var/lib/wasmcell/cache`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os(CACHE_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/wasmcell/cache"))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key for a module: stable across processes and wasmcell releases for the same
    /// Wasmtime version and configuration (it hashes the engine's compatibility hash, never a
    /// process-local hasher state).
    pub(crate) fn key(engine: &wasmtime::Engine, kind: ModuleKind, digest: &[u8; 32]) -> String {
        let mut h = ShaHasher(Sha256::new());
        h.0.update(FORMAT_VERSION.as_bytes());
        engine.precompile_compatibility_hash().hash(&mut h);
        h.0.update(match kind {
            ModuleKind::Core => b"core".as_slice(),
            ModuleKind::Component => b"component".as_slice(),
        });
        h.0.update(digest);
        hex(&h.0.finalize())
    }

    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{EXTENSION}"))
    }

    fn sum_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{SUM_EXTENSION}"))
    }

    /// The path of an entry whose code matches its checksum, or None (a bad entry is deleted).
    pub(crate) fn load(&self, key: &str) -> Option<PathBuf> {
        let path = self.path(key);
        let sum = std::fs::read(self.sum_path(key)).ok();
        let code = path.is_file().then_some(());
        let sum = match (sum, code) {
            (Some(sum), Some(())) => sum,
            (None, None) => return None,
            _ => {
                tracing::warn!(entry = %path.display(), "discarding half-written cache entry");
                self.discard(key);
                return None;
            }
        };
        // Hashed through a memory map of the file: no copy, and the same page-cache pages the
        // engine maps next.
        let mut hasher = blake3::Hasher::new();
        let hashed = hasher.update_mmap(&path).is_ok();
        let valid = hashed
            && sum.len() == SUM_LEN
            && &sum[..MAGIC.len()] == MAGIC
            && hasher.finalize().as_bytes().as_slice() == &sum[MAGIC.len()..];
        if !valid {
            tracing::warn!(entry = %path.display(), "discarding corrupt cache entry");
            self.discard(key);
            return None;
        }
        // Mark as recently used for eviction; failing to do so only ages the entry.
        let _ = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        Some(path)
    }

    /// Remove an entry (e.g. one Wasmtime refused to load).
    pub(crate) fn discard(&self, key: &str) {
        let _ = std::fs::remove_file(self.sum_path(key));
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Store an entry atomically, then evict past the size bound.
    pub(crate) fn store(&self, key: &str, code: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut sum = Vec::with_capacity(SUM_LEN);
        sum.extend_from_slice(MAGIC);
        sum.extend_from_slice(blake3::hash(code).as_bytes());
        self.write_atomically(&self.path(key), code)?;
        self.write_atomically(&self.sum_path(key), &sum)?;
        self.prune(self.max_bytes)?;
        Ok(())
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Every entry, most recently used first.
    pub fn entries(&self) -> io::Result<Vec<CacheEntry>> {
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        for e in dir {
            let e = e?;
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some(EXTENSION) {
                continue;
            }
            let meta = e.metadata()?;
            let key = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sum_size = std::fs::metadata(self.sum_path(&key)).map_or(0, |m| m.len());
            entries.push(CacheEntry {
                key,
                size: meta.len() + sum_size,
                last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(entries)
    }

    /// Remove the least recently used entries until the cache holds at most `max_bytes`.
    pub fn prune(&self, max_bytes: u64) -> io::Result<PruneReport> {
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut report = PruneReport::default();
        for e in entries.iter().rev() {
            if total <= max_bytes {
                break;
            }
            let _ = std::fs::remove_file(self.sum_path(&e.key));
            match std::fs::remove_file(self.path(&e.key)) {
                Ok(()) => {
                    total -= e.size;
                    report.removed += 1;
                    report.freed += e.size;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => total -= e.size,
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }
}

struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_rejects_corrupt_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
        cache.store("k1", b"payload").expect("store");
        let path = cache.load("k1").expect("stored entry loads");
        assert_eq!(std::fs::read(&path).expect("read"), b"payload");

        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(cache.load("k1"), None, "a corrupt entry must not load");
        assert!(!path.exists(), "a corrupt entry is deleted");
        assert!(!cache.sum_path("k1").exists(), "with its checksum");

        // Code without a checksum (a write cut short) is not trusted.
        std::fs::write(cache.path("k2"), b"code").expect("write");
        assert_eq!(cache.load("k2"), None);
        assert!(!cache.path("k2").exists());
    }

    #[test]
    fn evicts_least_recently_used_past_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), 3 * (SUM_LEN as u64 + 100));
        for k in ["a", "b", "c"] {
            cache.store(k, &[0u8; 100]).expect("store");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(cache.load("a").is_some(), "touch a");
        cache.store("d", &[0u8; 100]).expect("store");
        let mut keys: Vec<_> = cache
            .entries()
            .expect("entries")
            .into_iter()
            .map(|e| e.key)
            .collect();
        keys.sort();
        assert_eq!(keys, vec!["a", "c", "d"], "b was least recently used");

        let report = cache.prune(0).expect("prune");
        assert_eq!(report.removed, 3);
        assert!(cache.entries().expect("entries").is_empty());
    }
}
