//! Blocking calls a killed guest leaves behind.
//!
//! Wasmtime's WASI runs a guest's file calls (open, read, write) on the executor's blocking
//! threads. Dropping a guest drops its future, not those calls: a guest that opened a FIFO with
//! no peer, or read one nobody writes, would hold a thread for ever, and enough such guests
//! would leave no thread for anyone's file I/O or Create. So when a guest is killed, the
//! manager looks for threads of its own process blocked in such a call on a FIFO inside the
//! killed guest's directories (from `/proc/self/task/*/syscall`) and interrupts each with
//! [`wake_signal`], whose handler does nothing and is installed without `SA_RESTART`: the call
//! fails with `EINTR` and the thread returns to the pool. Only calls on FIFOs are interrupted;
//! a regular file's I/O ends by itself.
//!
//! The signal goes to a thread id read a moment before: if that thread has moved on to another
//! call meanwhile, that call sees `EINTR` once (a FIFO call of another guest fails with
//! "interrupted"; any other call restarts or is not interruptible).

use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often, and how many times, a killed guest's blocked calls are looked for and woken.
const ROUND: Duration = Duration::from_millis(50);
const ROUNDS: usize = 40;

/// The signal that interrupts a blocked call (a real-time signal nothing else here uses).
pub(crate) fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

/// Install the do-nothing handler of [`wake_signal`] (once, at the manager's start, before any
/// guest runs).
pub(crate) fn install_wake_handler() -> std::io::Result<()> {
    extern "C" fn wake(_: libc::c_int) {}
    // SAFETY: `action` is fully initialised (zeroed, then handler and empty mask set); the
    // handler is async-signal-safe (it does nothing). No SA_RESTART: interrupted calls fail
    // with EINTR rather than being restarted.
    #[allow(unsafe_code)]
    let installed = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = wake as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = 0;
        libc::sigaction(wake_signal(), &action, std::ptr::null_mut())
    };
    if installed != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Wake every thread blocked on a FIFO under `dirs` (the killed guest's directories), until
/// none is left or about two seconds have passed. Returns how many calls were interrupted and
/// how many still block. Blocking: run it off the executor.
pub(crate) fn wake_blocked_calls(container: &str, dirs: &[PathBuf]) -> (usize, usize) {
    let mut woken = 0;
    for round in 0..ROUNDS {
        let blocked = blocked_on_fifos(dirs);
        if blocked.is_empty() {
            break;
        }
        if round + 1 == ROUNDS {
            tracing::warn!(
                container,
                still_blocked = blocked.len(),
                "blocking calls of a killed guest still hold threads"
            );
            return (woken, blocked.len());
        }
        for tid in blocked {
            if signal_thread(tid) {
                woken += 1;
            }
        }
        std::thread::sleep(ROUND);
    }
    if woken > 0 {
        tracing::info!(
            container,
            interrupted = woken,
            "interrupted the blocking calls a killed guest left"
        );
    }
    (woken, 0)
}

fn signal_thread(tid: i32) -> bool {
    // SAFETY: tgkill with this process's id only signals one of its own threads.
    #[allow(unsafe_code)]
    let sent = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            tid,
            wake_signal() as libc::c_long,
        )
    };
    sent == 0
}

/// Thread ids of this process blocked in an open, read or write of a FIFO under `dirs`.
fn blocked_on_fifos(dirs: &[PathBuf]) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mem = std::fs::File::open("/proc/self/mem").ok();
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        .filter(|tid| {
            let syscall = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                .unwrap_or_default();
            blocked_file(&syscall, mem.as_ref())
                .is_some_and(|path| is_fifo(&path) && dirs.iter().any(|d| path.starts_with(d)))
        })
        .collect()
}

/// The file a thread's current system call (a line of `/proc/PID/task/TID/syscall`) waits on,
/// when it is one that can wait on a FIFO: the path an open names, or the file of a descriptor
/// read or written.
fn blocked_file(syscall: &str, mem: Option<&std::fs::File>) -> Option<PathBuf> {
    let mut fields = syscall.split_whitespace();
    let nr: libc::c_long = fields.next()?.parse().ok()?;
    let arg = |s: Option<&str>| u64::from_str_radix(s?.trim_start_matches("0x"), 16).ok();
    let (a0, a1) = (arg(fields.next())?, arg(fields.next())?);
    match nr {
        libc::SYS_openat | libc::SYS_openat2 => {
            let name = read_c_string(mem?, a1)?;
            let name = Path::new(&name);
            if name.is_absolute() {
                return Some(name.to_path_buf());
            }
            let dir = match a0 as i32 {
                libc::AT_FDCWD => std::fs::read_link("/proc/self/cwd").ok()?,
                fd => std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?,
            };
            Some(dir.join(name))
        }
        libc::SYS_read
        | libc::SYS_write
        | libc::SYS_readv
        | libc::SYS_writev
        | libc::SYS_pread64
        | libc::SYS_pwrite64 => std::fs::read_link(format!("/proc/self/fd/{}", a0 as i32)).ok(),
        _ => None,
    }
}

/// A NUL-terminated string at `addr` of this process's memory (read through `/proc/self/mem`,
/// so a bad address is an error, never a fault).
fn read_c_string(mem: &std::fs::File, addr: u64) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStringExt;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = mem.read_at(&mut buf, addr).ok()?;
    let end = buf[..n].iter().position(|&b| b == 0)?;
    buf.truncate(end);
    Some(std::ffi::OsString::from_vec(buf))
}

fn is_fifo(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_blocked_opening_a_fifo_is_found_and_woken() {
        install_wake_handler().expect("handler");
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let opening = fifo.clone();
        // Opening a FIFO for reading blocks until a writer comes: none will. (std's open
        // retries on EINTR; Wasmtime's, like this one, does not.)
        let blocked = std::thread::spawn(move || {
            nix::fcntl::open(
                &opening,
                nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            )
            .map(drop)
        });
        let dirs = vec![dir.path().canonicalize().expect("canonical")];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while blocked_on_fifos(&dirs).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the blocked open was not found"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Not the guest's directories: nothing is touched.
        assert!(blocked_on_fifos(&[PathBuf::from("/nonexistent")]).is_empty());
        let (woken, left) = wake_blocked_calls("test", &dirs);
        assert_eq!((woken >= 1, left), (true, 0));
        let err = blocked.join().expect("join").expect_err("open interrupted");
        assert_eq!(err, nix::errno::Errno::EINTR);
    }

    #[test]
    fn syscall_lines_that_wait_on_no_file_name_none() {
        assert_eq!(blocked_file("running", None), None);
        assert_eq!(blocked_file("-1 0x7ffd 0x0", None), None);
        let sleep = format!(
            "{} 0x1 0x2 0x0 0x0 0x0 0x0 0x7ff 0x7ff",
            libc::SYS_nanosleep
        );
        assert_eq!(blocked_file(&sleep, None), None);
    }
}
