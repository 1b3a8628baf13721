//! Whether the precompile cache may be trusted, as ssh's `StrictModes` decides for a key file:
//! the code in it is run as native code after checking only its header, so the directory and
//! every file of an entry must be owned by the user running this process and writable by no
//! one else. A directory that fails is not used at all (modules are compiled in memory); an
//! entry that fails is removed and compiled afresh, never run.
//!
//! Files are opened `O_NOFOLLOW | O_CLOEXEC` (a planted symlink is not followed) and checked on
//! the open file (`fstat`); temporary files are created exclusively (`O_EXCL`), mode 0600.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Group- or other-writable.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// Create `dir` (and missing parents) mode 0700 if it does not exist.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Whether `dir` may be read from; when it may not, the reason is logged (unless it does not
/// exist, which only means nothing was stored yet). `what` names the directory in the log.
pub(crate) fn usable_dir(dir: &Path, what: &str) -> bool {
    match dir_problem(dir) {
        None => true,
        Some(problem) => {
            if dir.exists() {
                tracing::warn!(dir = %dir.display(), %problem, "not using the {what}");
            }
            false
        }
    }
}

/// Create `dir` if missing ([`create_dir`]) and fail unless it may be written to.
pub(crate) fn writable_dir(dir: &Path, what: &str) -> io::Result<()> {
    create_dir(dir)?;
    match dir_problem(dir) {
        None => Ok(()),
        Some(problem) => Err(io::Error::other(format!(
            "the {what} {} is not trusted: {problem}",
            dir.display()
        ))),
    }
}

/// Why `dir` cannot be trusted as a cache directory, if it cannot.
pub(crate) fn dir_problem(dir: &Path) -> Option<String> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) => return Some(format!("cannot stat it: {e}")),
    };
    if !meta.file_type().is_dir() {
        return Some("it is not a directory (a symlink is not followed)".into());
    }
    owner_problem(&meta)
}

/// Why an entry file with metadata `meta` (from the open file) cannot be trusted, if it cannot.
pub(crate) fn file_problem(meta: &Metadata) -> Option<String> {
    if !meta.file_type().is_file() {
        return Some("it is not a regular file".into());
    }
    owner_problem(meta)
}

fn owner_problem(meta: &Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Some(format!("it is owned by uid {}, not {me}", meta.uid()));
    }
    if meta.mode() & WRITABLE_BY_OTHERS != 0 {
        return Some(format!(
            "it is writable by its group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Open an entry file for reading without following a symlink.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

/// Create a new file for writing, mode 0600; fails if anything exists at `path`.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_directory_writable_by_others_or_a_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        create_dir(&cache).expect("create");
        let mode = std::fs::metadata(&cache).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(dir_problem(&cache), None);
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o775)).expect("chmod");
        let problem = dir_problem(&cache).expect("group-writable");
        assert!(
            problem.contains("writable by its group or others"),
            "{problem}"
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&cache, &link).expect("symlink");
        assert!(dir_problem(&link).expect("symlink").contains("symlink"));
    }
}
