//! What this node found when it read and checked a piece of content itself, kept beside the
//! compiled code: e.g. that image layer `sha256:...` holds the core module with BLAKE3 digest
//! `...`, so that a later start can find that module's compiled code without reading the layer
//! again. Only a reader that checked the content writes here; the index lives in the cache
//! directory under the same trust rules ([`crate::cache_trust`]: owned by the running user,
//! writable by no one else, no symlink followed), unlike a label on containerd's blob, which any
//! client of containerd may set.

use std::io;
use std::path::PathBuf;

use crate::cache_trust;
use crate::CompileCache;

/// The index's directory inside the cache.
const DIR: &str = "contents";
/// Longest value kept.
const MAX_VALUE: u64 = 4096;

impl CompileCache {
    /// What [`CompileCache::remember_content`] recorded for content `digest` (`algo:hex`), or
    /// None: not recorded, not a digest, or not trusted (then it is logged).
    pub fn recall_content(&self, digest: &str) -> Option<String> {
        let path = self.content_path(digest)?;
        if !cache_trust::usable_dir(&self.dir().join(DIR), "content index") {
            return None;
        }
        let file = cache_trust::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if let Some(problem) = cache_trust::file_problem(&meta) {
            tracing::warn!(entry = %path.display(), %problem, "refusing a content index entry");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let mut value = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, MAX_VALUE), &mut value).ok()?;
        Some(value)
    }

    /// Record `value` as what content `digest` (`algo:hex`) was found to hold, after the
    /// caller read it and checked it against `digest`.
    pub fn remember_content(&self, digest: &str, value: &str) -> io::Result<()> {
        let path = self
            .content_path(digest)
            .ok_or_else(|| io::Error::other(format!("{digest:?} is not a content digest")))?;
        cache_trust::writable_dir(&self.dir().join(DIR), "content index")?;
        self.write_atomically(&path, value.as_bytes())
    }

    /// `contents/<algo>-<hex>`, for a digest of the form `algo:hex` (lowercase letters and
    /// digits only).
    fn content_path(&self, digest: &str) -> Option<PathBuf> {
        let (algo, hex) = digest.split_once(':')?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (plain(algo) && plain(hex)).then(|| self.dir().join(DIR).join(format!("{algo}-{hex}")))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use crate::{CompileCache, DEFAULT_MAX_BYTES};

    const LAYER: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn remembers_what_was_checked_and_refuses_what_others_could_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path().join("cache"), DEFAULT_MAX_BYTES);
        assert_eq!(cache.recall_content(LAYER), None);
        cache
            .remember_content(LAYER, "core:abcd")
            .expect("remember");
        assert_eq!(cache.recall_content(LAYER).as_deref(), Some("core:abcd"));
        for bad in ["sha256:../../etc", "sha256", "SHA256:AB", ""] {
            assert_eq!(cache.recall_content(bad), None, "{bad}");
            assert!(cache.remember_content(bad, "x").is_err(), "{bad}");
        }
        // A group-writable index: anyone in the group could forge an entry.
        let index = cache.dir().join("contents");
        std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o770)).expect("chmod");
        assert_eq!(cache.recall_content(LAYER), None);
    }
}
