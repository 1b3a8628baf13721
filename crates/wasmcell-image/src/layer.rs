use std::collections::HashSet;

use crate::archive::ImageError;

/// One entry of an image's layer.
///
/// A path names a place inside the image, absolute or relative to `/` (`/bin/app.wasm` and
/// `bin/app.wasm` are the same), with no empty, `.` or `..` component. Missing parent
/// directories are added (mode 0755); every entry is owned by root with mtime 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A regular file.
    File {
        /// Where the file is.
        path: String,
        /// What it holds.
        bytes: Vec<u8>,
        /// Its permission bits, e.g. `0o755`.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Where the directory is.
        path: String,
        /// Its permission bits, e.g. `0o1777` for `/tmp`.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where the link is.
        path: String,
        /// What it points to, as given (relative to the link's directory, or absolute).
        target: String,
    },
}

impl LayerEntry {
    /// The entry's path, as given.
    pub fn path(&self) -> &str {
        match self {
            LayerEntry::File { path, .. }
            | LayerEntry::Dir { path, .. }
            | LayerEntry::Symlink { path, .. } => path,
        }
    }
}

/// `path` relative to `/`, or `None` when it does not name a place inside the image.
pub(crate) fn inside(path: &str) -> Option<&str> {
    let relative = path.strip_prefix('/').unwrap_or(path);
    let valid = !relative.is_empty()
        && !relative
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    valid.then_some(relative)
}

/// A reproducible tar of `entries` in their order, each missing parent directory first and
/// once.
pub(crate) fn layer_tar(entries: &[LayerEntry]) -> Result<Vec<u8>, ImageError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: HashSet<&str> = HashSet::new();
    for entry in entries {
        let path =
            inside(entry.path()).ok_or_else(|| ImageError::EntryPath(entry.path().to_string()))?;
        for (end, _) in path.match_indices('/') {
            let parent = &path[..end];
            if dirs.insert(parent) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, parent, std::io::empty())
                    .map_err(ImageError::Layer)?;
            }
        }
        match entry {
            LayerEntry::File { bytes, mode, .. } => {
                let mut h = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
                tar.append_data(&mut h, path, bytes.as_slice())
            }
            LayerEntry::Dir { mode, .. } => {
                dirs.insert(path);
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                tar.append_data(&mut h, path, std::io::empty())
            }
            LayerEntry::Symlink { target, .. } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, path, target)
            }
        }
        .map_err(ImageError::Layer)?;
    }
    tar.into_inner().map_err(ImageError::Layer)
}

/// A GNU tar header owned by root with mtime 0.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_modes(layer: &[u8]) -> Vec<(String, u32)> {
        let mut ar = tar::Archive::new(layer);
        ar.entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let name = e.path().expect("path").display().to_string();
                (name, e.header().mode().expect("mode"))
            })
            .collect()
    }

    #[test]
    fn parents_come_first_and_once() {
        let layer = layer_tar(&[
            LayerEntry::Dir {
                path: "/tmp".into(),
                mode: 0o1777,
            },
            LayerEntry::File {
                path: "/tmp/a/b.txt".into(),
                bytes: b"hi".to_vec(),
                mode: 0o644,
            },
            LayerEntry::Symlink {
                path: "tmp/a/c".into(),
                target: "b.txt".into(),
            },
        ])
        .expect("layer");
        assert_eq!(
            names_and_modes(&layer),
            [
                ("tmp".to_string(), 0o1777),
                ("tmp/a".to_string(), 0o755),
                ("tmp/a/b.txt".to_string(), 0o644),
                ("tmp/a/c".to_string(), 0o777),
            ]
        );
        let mut ar = tar::Archive::new(layer.as_slice());
        let link = ar
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry"))
            .find(|e| e.header().entry_type() == tar::EntryType::Symlink)
            .expect("symlink");
        assert_eq!(
            link.link_name().expect("link name").expect("target"),
            std::path::Path::new("b.txt")
        );
    }

    #[test]
    fn paths_must_stay_inside_the_image() {
        assert_eq!(inside("/bin/app"), Some("bin/app"));
        assert_eq!(inside("bin/app"), Some("bin/app"));
        for bad in ["", "/", "//x", "/a//b", "/a/", "/../x", "/a/./b"] {
            assert_eq!(inside(bad), None, "{bad:?}");
            let err = layer_tar(&[LayerEntry::Dir {
                path: bad.into(),
                mode: 0o755,
            }])
            .expect_err("bad path");
            assert!(err.to_string().contains("invalid path"), "{bad:?}: {err}");
        }
    }
}
