use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// How long Create waits for the reader of an output FIFO that is still opening it.
const READER_WAIT: Duration = Duration::from_secs(1);

/// Open an output FIFO read-write (so that a write never fails or blocks on a reader that went
/// away, e.g. `ctr run -d` once it has exited), but only once its reader (ctr, containerd's CRI
/// log copier) holds it too: from then on the pipe lives as long as that reader, so a guest that
/// writes and ends before the reader's own open has returned loses nothing. The reader is
/// normally there before Create; one still opening is waited for up to [`READER_WAIT`].
fn open_output(path: &str) -> Result<File, ShimError> {
    let path = if path.is_empty() { "/dev/null" } else { path };
    let failed = |e| ShimError::io(format!("failed to open {path}"), e);
    let deadline = Instant::now() + READER_WAIT;
    // Write-only and non-blocking: ENXIO while no reader has the FIFO open. Kept open until the
    // read-write descriptor is: were the FIFO left with no writer for a moment, the reader
    // would read end-of-file and stop.
    let _probe = loop {
        let probe = OpenOptions::new()
            .write(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(Path::new(path));
        match probe {
            Ok(probe) => break Some(probe),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                if Instant::now() >= deadline {
                    tracing::debug!(fifo = path, "no reader on the output FIFO yet");
                    break None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(failed(e)),
        }
    };
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(failed)
}
