use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINKS: usize = 40;

/// Join `path` onto `root` as if `root` were `/`: `..` stops at `root`, and symlinks met on the
/// way are followed with their absolute targets taken relative to `root`, so the result never
/// names anything outside `root`. Components that do not exist are joined as they are.
///
/// Fails with `ELOOP` after 40 symlinks.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(40)); // ELOOP
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                push_front(&mut pending, &target);
            }
            Ok(_) => resolved.push(part),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(part),
            Err(e) => return Err(e),
        }
    }
    Ok(join(root, &resolved))
}

fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => pending.push_front(n.to_os_string()),
            Component::ParentDir => pending.push_front(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn stays_inside_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("app/bin")).expect("mkdir");
        symlink("/app/bin", root.join("abs")).expect("symlink");
        symlink("../../../../..", root.join("app/up")).expect("symlink");
        symlink(dir.path(), root.join("host")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");

        let j = |p: &str| secure_join(&root, Path::new(p)).expect("join");
        assert_eq!(j("/app/bin/x.wasm"), root.join("app/bin/x.wasm"));
        assert_eq!(j("../../etc/passwd"), root.join("etc/passwd"));
        assert_eq!(j("/abs/x.wasm"), root.join("app/bin/x.wasm"));
        assert_eq!(j("/app/up/etc"), root.join("etc"));
        // An absolute link to a host directory is taken relative to the root.
        assert_eq!(
            j("/host/rootfs"),
            root.join(dir.path().strip_prefix("/").expect("abs"))
                .join("rootfs")
        );
        let err = secure_join(&root, Path::new("/loop")).expect_err("loop");
        assert_eq!(err.raw_os_error(), Some(40));
    }
}
