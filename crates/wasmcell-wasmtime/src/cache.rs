//! The on-disk precompile cache: Wasmtime's compiled code for a module, keyed by the module's
//! content digest and the engine's compatibility hash, so a node compiles each module once.
//!
//! An entry is two files: `<key>.cwasm`, Wasmtime's serialized code as it is (loaded by
//! memory-mapping the file: no copy, and its pages are shared by every process that runs the
//! module), and `<key>.sum`: `WCSUM003`, the BLAKE3 hash of the `.cwasm`, and the identity
//! (device, inode, size, modification and change times) of the `.cwasm` file whose hash was
//! last checked. The hash is checked whenever the file's identity differs from the one
//! recorded: any write, truncation, replacement or `touch` of the file through the file system
//! changes its change time (ctime), which no caller can set, so an entry modified after it was
//! checked is hashed again, and one verified unchanged is loaded without re-reading tens of
//! megabytes on every start. A check only vouches for a file last changed at least two
//! seconds before it, since file systems may keep coarse times. An entry whose hash does not match, or that Wasmtime refuses, is
//! deleted and recompiled, never run. The file that was checked is the file that is mapped
//! (one open file, no second lookup by path). Each file is written to a temporary file and
//! renamed into place (code first, checksum last, so a half-written entry fails its check);
//! the least recently used entries are evicted past the size bound. The `.sum` file's layout
//! is in `cache_record`.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmcell_core::ModuleKind;

use crate::cache_record::{now_ns, Record, Stamp, HASH_LEN};
use crate::cache_trust;

const EXTENSION: &str = "cwasm";
const SUM_EXTENSION: &str = "sum";
/// Bumped whenever the entry format or key derivation changes.
const FORMAT_VERSION: &str = "wasmcell-cache-v4";
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

/// What [`CompileCache::verify`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries whose code matched its checksum.
    pub good: usize,
    /// Entries removed: code that did not match, or that could not be read.
    pub removed: usize,
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

    /// The node's cache, shared by every runtime of the node: in [`CompileCache::default_dir`],
    /// at most [`DEFAULT_MAX_BYTES`].
    pub fn node() -> Self {
        Self::new(Self::default_dir(), DEFAULT_MAX_BYTES)
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

    /// The open code file of an entry that matches its checksum, or None (a bad entry is
    /// deleted).
    pub(crate) fn load(&self, key: &str) -> Option<std::fs::File> {
        if !cache_trust::usable_dir(&self.dir, "precompile cache") {
            return None;
        }
        let opened = self.open_entry(key)?;
        if opened.record.vouches_for(&opened.stamp) {
            // Mark as recently used for eviction (on the checksum file: the code file's times
            // are part of its identity); failing to do so only ages the entry.
            let _ = std::fs::File::options()
                .write(true)
                .open(self.sum_path(key))
                .and_then(|f| f.set_modified(SystemTime::now()));
        } else if let Ok(false) = self.recheck(key, &opened) {
            // Not the file version checked last time, and its hash does not match. (Failing
            // to record a good check only means hashing again next time.)
            return None;
        }
        Some(opened.file)
    }

    /// Hash every entry's code in full, whatever its record vouches for, and remove those that
    /// do not match (e.g. after a disk fault, which changes no file time). An entry that matches
    /// is recorded as checked now.
    pub fn verify(&self) -> io::Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for entry in self.entries()? {
            let good = match self.open_entry(&entry.key) {
                Some(opened) => self.recheck(&entry.key, &opened)?,
                None => false,
            };
            if good {
                report.good += 1;
            } else {
                report.removed += 1;
            }
        }
        Ok(report)
    }

    /// Entry `key`'s open code file, its record and the file's identity now; None when there is
    /// no such entry, or it was half-written or unreadable (then it is discarded).
    fn open_entry(&self, key: &str) -> Option<OpenEntry> {
        let path = self.path(key);
        let sum_file = cache_trust::open(&self.sum_path(key)).ok();
        let file = cache_trust::open(&path).ok();
        for (f, name) in [(&sum_file, SUM_EXTENSION), (&file, EXTENSION)] {
            let problem = f
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .and_then(|m| cache_trust::file_problem(&m));
            if let Some(problem) = problem {
                tracing::warn!(entry = %path.display(), file = name, %problem, "refusing cache entry; it is removed and compiled afresh");
                self.discard(key);
                return None;
            }
        }
        let sum = sum_file.and_then(|mut f| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes)
                .ok()
                .map(|_| bytes)
        });
        let (sum, file) = match (sum, file) {
            (Some(sum), Some(file)) => (sum, file),
            (None, None) => return None,
            _ => {
                tracing::warn!(entry = %path.display(), "discarding half-written cache entry");
                self.discard(key);
                return None;
            }
        };
        let stamp = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| Stamp::of(&m));
        let record = Record::parse(&sum);
        let (Some(stamp), Some(record)) = (stamp, record) else {
            tracing::warn!(entry = %path.display(), "discarding unreadable cache entry");
            self.discard(key);
            return None;
        };
        Some(OpenEntry {
            file,
            record,
            stamp,
        })
    }

    /// Hash an opened entry's code against its record. On a match, record this check (an error
    /// only says that this write failed) and return true; otherwise discard the entry.
    fn recheck(&self, key: &str, opened: &OpenEntry) -> io::Result<bool> {
        if hash_file(&opened.file).as_ref() != Some(&opened.record.hash) {
            tracing::warn!(entry = %self.path(key).display(), "discarding corrupt cache entry");
            self.discard(key);
            return Ok(false);
        }
        let checked = Record {
            hash: opened.record.hash,
            stamp: opened.stamp,
            checked_at_ns: now_ns(),
        };
        self.write_atomically(&self.sum_path(key), &checked.to_bytes())?;
        Ok(true)
    }

    /// Remove an entry (e.g. one Wasmtime refused to load).
    pub(crate) fn discard(&self, key: &str) {
        let _ = std::fs::remove_file(self.sum_path(key));
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Store an entry atomically, then evict past the size bound.
    pub(crate) fn store(&self, key: &str, code: &[u8]) -> io::Result<()> {
        cache_trust::writable_dir(&self.dir, "cache directory")?;
        let mut hasher = blake3::Hasher::new();
        if wasmcell_core::fork::in_forked_child() {
            hasher.update(code);
        } else {
            hasher.update_rayon(code);
        }
        let path = self.path(key);
        self.write_atomically(&path, code)?;
        // The stamp of the file just written: its bytes are `code`, hashed above.
        let record = Record {
            hash: *hasher.finalize().as_bytes(),
            stamp: Stamp::of(&std::fs::metadata(&path)?),
            checked_at_ns: now_ns(),
        };
        self.write_atomically(&self.sum_path(key), &record.to_bytes())?;
        self.prune(self.max_bytes)?;
        Ok(())
    }

    /// Write `path` (in the cache directory or below it) through an exclusively created
    /// temporary file renamed into place.
    pub(crate) fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = cache_trust::create_new(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
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
            // A load marks the checksum file, so its time is the last use.
            let sum = std::fs::metadata(self.sum_path(&key)).ok();
            let last_used = sum
                .as_ref()
                .and_then(|m| m.modified().ok())
                .or_else(|| meta.modified().ok())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push(CacheEntry {
                key,
                size: meta.len() + sum.map_or(0, |m| m.len()),
                last_used,
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

/// An entry as [`CompileCache::open_entry`] found it.
struct OpenEntry {
    file: std::fs::File,
    record: Record,
    stamp: Stamp,
}

/// BLAKE3 of an open file (read from its start, left at its start), or None if it cannot be read. Only run when
/// the file differs from the one last checked, so read rather than mapped: a file truncated
/// meanwhile yields a short read, never a fault.
fn hash_file(mut file: &std::fs::File) -> Option<[u8; HASH_LEN]> {
    use std::io::Seek;
    file.rewind().ok()?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).ok()?;
    file.rewind().ok()?;
    Some(*hasher.finalize().as_bytes())
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
    use crate::cache_record::{MAGIC, SUM_LEN};

    #[test]
    fn stores_loads_and_rejects_corrupt_entries() {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
        cache.store("k1", b"payload").expect("store");
        let mut loaded = String::new();
        cache
            .load("k1")
            .expect("stored entry loads")
            .read_to_string(&mut loaded)
            .expect("read");
        assert_eq!(loaded, "payload");

        let path = cache.path("k1");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
        assert!(cache.load("k1").is_none(), "a corrupt entry must not load");
        assert!(!path.exists(), "a corrupt entry is deleted");
        assert!(!cache.sum_path("k1").exists(), "with its checksum");

        // Code without a checksum (a write cut short) is not trusted.
        std::fs::write(cache.path("k2"), b"code").expect("write");
        assert!(cache.load("k2").is_none());
        assert!(!cache.path("k2").exists());
    }

    #[test]
    fn a_planted_entry_is_never_loaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path().join("cache"), DEFAULT_MAX_BYTES);
        cache.store("k", b"good code").expect("store");
        assert!(cache.load("k").is_some());

        // A group-writable directory: anyone in the group could plant code; nothing is loaded.
        let perms = |mode| std::fs::Permissions::from_mode(mode);
        std::fs::set_permissions(cache.dir(), perms(0o770)).expect("chmod");
        assert!(
            cache.load("k").is_none(),
            "loaded from a group-writable dir"
        );
        assert!(
            cache.store("k2", b"x").is_err(),
            "stored into a group-writable dir"
        );
        std::fs::set_permissions(cache.dir(), perms(0o700)).expect("chmod");

        // An entry someone else owns, with a checksum that matches it: refused and removed.
        let stranger = nix::unistd::Uid::from_raw(nix::unistd::geteuid().as_raw() + 4242);
        nix::unistd::chown(&cache.path("k"), Some(stranger), None).expect("chown");
        assert!(
            cache.load("k").is_none(),
            "loaded an entry owned by another user"
        );
        assert!(!cache.path("k").exists(), "the planted entry is removed");

        // A symlink in place of the code is not followed.
        cache.store("k3", b"good code").expect("store");
        let elsewhere = dir.path().join("elsewhere.cwasm");
        std::fs::write(&elsewhere, b"good code").expect("write");
        std::fs::remove_file(cache.path("k3")).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, cache.path("k3")).expect("symlink");
        assert!(cache.load("k3").is_none(), "followed a symlink");
    }

    #[test]
    fn a_file_changed_after_its_check_is_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
        cache.store("k", b"original").expect("store");
        assert!(cache.load("k").is_some());

        // Same size, and the modification time put back as it was: only the change time,
        // which no caller can set, tells the new bytes from the checked ones.
        let path = cache.path("k");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&path, b"tampered").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        assert!(cache.load("k").is_none(), "changed bytes must not load");
        assert!(!path.exists(), "and are deleted");
    }

    #[test]
    fn an_entry_checked_by_hash_records_the_file_it_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
        cache.store("k", b"code").expect("store");
        // A checksum file without a recorded identity (as copied from another machine).
        let mut sum = std::fs::read(cache.sum_path("k")).expect("sum");
        let recorded = MAGIC.len() + HASH_LEN;
        sum[recorded..].fill(0);
        let before = now_ns();
        std::fs::write(cache.sum_path("k"), &sum).expect("write");

        assert!(cache.load("k").is_some(), "a matching hash loads");
        let sum = std::fs::read(cache.sum_path("k")).expect("sum");
        let record = Record::parse(&sum).expect("record");
        let meta = std::fs::metadata(cache.path("k")).expect("meta");
        assert_eq!(
            record.stamp,
            Stamp::of(&meta),
            "the checked file is recorded"
        );
        assert!(record.checked_at_ns >= before, "with the time of the check");
    }

    #[test]
    fn verify_hashes_every_entry_and_removes_bad_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
        cache.store("good", b"good code").expect("store");
        cache.store("bad", b"bad code").expect("store");
        // Bytes changed under a record that vouches for the file: what a disk fault could do,
        // which `load` would not see (the record is rewritten with the new file's identity).
        std::fs::write(cache.path("bad"), b"bad c0de").expect("write");
        let meta = std::fs::metadata(cache.path("bad")).expect("meta");
        let mut sum = std::fs::read(cache.sum_path("bad")).expect("sum");
        let stamp_at = MAGIC.len() + HASH_LEN;
        sum[stamp_at..stamp_at + Stamp::LEN].copy_from_slice(&Stamp::of(&meta).to_bytes());
        std::fs::write(cache.sum_path("bad"), &sum).expect("write");

        let report = cache.verify().expect("verify");
        assert_eq!(
            report,
            VerifyReport {
                good: 1,
                removed: 1
            }
        );
        assert!(!cache.path("bad").exists(), "the bad entry is gone");
        let record =
            Record::parse(&std::fs::read(cache.sum_path("good")).expect("sum")).expect("record");
        let meta = std::fs::metadata(cache.path("good")).expect("meta");
        assert_eq!(
            record.stamp,
            Stamp::of(&meta),
            "the good entry is recorded as checked"
        );
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
