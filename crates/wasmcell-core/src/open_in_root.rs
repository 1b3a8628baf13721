//! Opening a file inside a directory tree with `openat2(RESOLVE_IN_ROOT)`, so that what is
//! opened lies inside that tree whatever its symlinks say at the moment of the open.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Open `path` (a path under `root`, as [`crate::secure_join`] gives it, or relative to `root`)
/// read-only, non-blocking, close-on-exec, with every component resolved inside `root` and no
/// magic link (`/proc/.../fd/...`) followed. `Ok(None)` when the kernel has no `openat2`: the
/// caller then opens by path.
pub(crate) fn open(root: &Path, path: &Path) -> io::Result<Option<File>> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    let name = std::ffi::CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `dir` is an open directory descriptor alive for the call, `name` a NUL-terminated
    // string alive for the call, `how` a valid `open_how` whose size is passed with it.
    #[allow(unsafe_code)]
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS) => Ok(None),
            _ => Err(err),
        };
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: `fd` was just returned by openat2 and is owned by nothing else.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Some(File::from(owned)))
}

/// The kernel's `struct open_how` (linux/openat2.h), version 0.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_out_of_the_root_resolves_inside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/hostname"), "inside\n").expect("write");
        // An absolute symlink and a climbing one, both aimed at the host's /etc/hostname.
        std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../../../../etc/hostname", root.join("up"))
            .expect("symlink");
        for link in ["abs", "up"] {
            let mut file = open(&root, &root.join(link))
                .expect("open")
                .expect("openat2");
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).expect("read");
            assert_eq!(text, "inside\n", "{link} led out of the root");
        }
    }
}
