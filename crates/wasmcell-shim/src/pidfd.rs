//! Processes held by pidfd: a signal sent through one reaches the process it was opened for or
//! fails with `ESRCH`, never another process that got its pid after it was reaped.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// A pidfd of one process.
#[derive(Debug)]
pub(crate) struct PidFd(OwnedFd);

impl PidFd {
    /// `pidfd_open(pid)`: the process that has `pid` now.
    pub(crate) fn open(pid: u32) -> io::Result<Self> {
        let pid = nix::libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        #[allow(unsafe_code)]
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nothing else.
        #[allow(unsafe_code)]
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PidFd(owned))
    }

    /// `pidfd_send_signal`: signal the process, if it has not been reaped.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: the descriptor is a pidfd owned by `self`; a null siginfo is allowed.
        #[allow(unsafe_code)]
        let sent = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// When `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22): with the pid,
/// the identity of a process across pid reuse.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True while `pid` exists and is not a zombie (a zombie has already left its cgroup).
pub(crate) fn still_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_process_is_never_signalled_again() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pidfd = PidFd::open(child.id()).expect("pidfd_open");
        assert!(start_time(child.id()).is_some_and(|t| t > 0));
        pidfd.signal(0).expect("signal 0 to a live process");
        pidfd.signal(9).expect("SIGKILL");
        let _ = child.wait();
        let err = pidfd.signal(9).expect_err("reaped");
        assert_eq!(err.raw_os_error(), Some(nix::libc::ESRCH));
    }
}
