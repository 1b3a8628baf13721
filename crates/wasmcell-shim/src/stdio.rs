use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::ShimError;

/// The container's stdio as containerd gave it: FIFO paths, or empty for none.
#[derive(Debug)]
pub(crate) struct GuestStdio {
    pub(crate) stdin: File,
    pub(crate) stdout: File,
    pub(crate) stderr: File,
}

impl GuestStdio {
    /// Open containerd's FIFOs without blocking on a missing peer: stdout and stderr read-write
    /// (so opening never waits for a reader), stdin read-only (switched back to blocking reads).
    pub(crate) fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<Self, ShimError> {
        Ok(GuestStdio {
            stdin: open_input(stdin)?,
            stdout: open_output(stdout)?,
            stderr: open_output(stderr)?,
        })
    }
}

fn open_input(path: &str) -> Result<File, ShimError> {
    if path.is_empty() {
        return File::open("/dev/null").map_err(|e| ShimError::io("failed to open /dev/null", e));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(Path::new(path))
        .map_err(|e| ShimError::io(format!("failed to open stdin {path}"), e))?;
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)
        .map_err(|e| ShimError::io(format!("failed to read flags of stdin {path}"), e.into()))?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags))
        .map_err(|e| ShimError::io(format!("failed to set flags of stdin {path}"), e.into()))?;
    Ok(file)
}

fn open_output(path: &str) -> Result<File, ShimError> {
    let path = if path.is_empty() { "/dev/null" } else { path };
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ShimError::io(format!("failed to open {path}"), e))
}
