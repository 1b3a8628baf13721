//! The container's output FIFOs as the manager holds them around the end of a guest's run.
//!
//! A guest in shared mode can be created, started and ended within a millisecond, before the
//! reader (ctr, containerd's CRI log copier) has finished opening the FIFO on its side; if the
//! exit were reported then, the reader would give up on a FIFO it never read, and the output
//! would be lost. So the manager keeps a copy of both output descriptors, and reports the exit
//! only once what the guest wrote has been read (the pipe holds no unread byte), or after
//! [`DRAIN_LIMIT`] when nobody reads. Normal mode needs none of this: its guest process starts
//! in milliseconds, long after the reader's open.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::stdio::GuestStdio;

/// How long the exit of a guest waits for its output to be read.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// How often the pipes are looked at meanwhile.
const DRAIN_POLL: Duration = Duration::from_millis(1);

nix::ioctl_read_bad!(fionread, nix::libc::FIONREAD, nix::libc::c_int);

/// Copies of a container's stdout and stderr descriptors.
#[derive(Debug)]
pub(crate) struct Outputs {
    stdout: Option<File>,
    stderr: Option<File>,
}

impl Outputs {
    /// Copies of `stdio`'s output descriptors (none where they cannot be copied).
    pub(crate) fn hold(stdio: &GuestStdio) -> Self {
        Outputs {
            stdout: stdio.stdout.try_clone().ok(),
            stderr: stdio.stderr.try_clone().ok(),
        }
    }

    /// Write one line to the container's stderr without blocking the executor: the run has
    /// ended, so this is the only writer left, and a full FIFO (nobody reading) only loses the
    /// line.
    pub(crate) fn tell(&mut self, line: &str) {
        let Some(stderr) = &mut self.stderr else {
            return;
        };
        let fd = stderr.as_raw_fd();
        let nonblocking = fcntl(fd, FcntlArg::F_GETFL).and_then(|f| {
            let flags = OFlag::from_bits_truncate(f) | OFlag::O_NONBLOCK;
            fcntl(fd, FcntlArg::F_SETFL(flags))
        });
        if nonblocking.is_ok() {
            let _ = writeln!(stderr, "{line}");
        }
    }

    /// Wait until the reader has taken everything written to both outputs (or
    /// [`DRAIN_LIMIT`] passed), then let go of them.
    pub(crate) async fn drained(self) {
        let until = Instant::now() + DRAIN_LIMIT;
        for file in [&self.stdout, &self.stderr].into_iter().flatten() {
            while unread(file) > 0 && Instant::now() < until {
                tokio::time::sleep(DRAIN_POLL).await;
            }
        }
    }
}

/// Bytes written to the pipe behind `file` and not read yet (0 for what is not a pipe).
fn unread(file: &File) -> usize {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `n`, alive for
    // the call; `file` is an open descriptor owned by `self` for the call's duration.
    #[allow(unsafe_code)]
    let asked = unsafe { fionread(file.as_raw_fd(), &mut n) };
    match asked {
        Ok(_) => usize::try_from(n).unwrap_or(0),
        Err(_) => 0,
    }
}
