//! Where this runtime forks, and what may happen on either side of it.
//!
//! `create` and `exec` call libcontainer's `build`, which clones the container's processes
//! (intermediate, then init) from this process **without exec**: the init process goes on
//! running this binary's code ([`crate::executor::WasmcellExecutor`]) inside the container. So:
//! - before the fork, every thread this process started is gone: the module is hashed and
//!   compiled inside [`wasmcell_core::fork::with_joined_pool`] (its threads joined when it
//!   returns), the engine that compiled it has been dropped (its epoch ticker joined), and
//!   [`build_container`] checks the process has one thread
//!   ([`wasmcell_core::fork::ensure_single_threaded`]) and refuses to fork otherwise;
//! - in the init process, the executor calls [`wasmcell_core::fork::enter_forked_child`]
//!   first: it hashes and compiles on its one thread, starts only threads of its own (the
//!   engine's epoch ticker, the signal thread) and touches no lock a thread of the parent could
//!   have held (logging writes with a mutex that no other thread of the parent used);
//! - `create` waits for the init process's ready message for at most
//!   [`wasmcell_core::create_timeout`]: past it, the wait is interrupted (SIGALRM without `SA_RESTART`),
//!   libcontainer removes the container (killing what runs in its cgroup), and the error names
//!   the container and the step the init process had reached ([`Progress`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libcontainer::error::LibcontainerError;
use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::OciError;

/// A step the init process reached, reported through a pipe to the process that forked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The container is set up; the module is being read and its code loaded.
    LoadingModule,
    /// The module is loaded; the init process is about to report ready.
    Ready,
}

impl Step {
    fn byte(self) -> u8 {
        match self {
            Step::LoadingModule => b'm',
            Step::Ready => b'r',
        }
    }

    fn describe(last: Option<Step>) -> &'static str {
        match last {
            None => "setting up the container (namespaces, mounts, hooks)",
            Some(Step::LoadingModule) => "loading the module",
            Some(Step::Ready) => "reporting ready",
        }
    }
}

/// The two ends of the progress pipe: [`Progress::writer`] goes to the init process (inherited
/// across the fork), the reader stays here.
#[derive(Debug)]
pub struct Progress {
    reader: OwnedFd,
    writer: ProgressWriter,
}

/// The init process's end of the progress pipe.
#[derive(Debug, Clone)]
pub struct ProgressWriter(Arc<OwnedFd>);

impl ProgressWriter {
    /// Report `step` (best effort: a full or closed pipe only loses the report).
    pub fn mark(&self, step: Step) {
        let _ = nix::unistd::write(self.0.as_fd(), &[step.byte()]);
    }
}

impl Progress {
    /// A new pipe for container `id`, both ends close-on-exec and non-blocking.
    pub fn new(id: &str) -> Result<Self, OciError> {
        let (reader, writer) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| OciError::Io {
                action: "create the progress pipe of container",
                path: id.into(),
                source: e.into(),
            })?;
        Ok(Progress {
            reader,
            writer: ProgressWriter(Arc::new(writer)),
        })
    }

    /// The end to hand to the init process.
    pub fn writer(&self) -> ProgressWriter {
        self.writer.clone()
    }

    /// The last step reported so far.
    fn last(&self) -> Option<Step> {
        let mut buf = [0u8; 16];
        let mut last = None;
        while let Ok(n) = nix::unistd::read(self.reader.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            for b in &buf[..n] {
                last = match b {
                    b'm' => Some(Step::LoadingModule),
                    b'r' => Some(Step::Ready),
                    _ => last,
                };
            }
        }
        last
    }
}

/// Run libcontainer's `build` (which forks the container's processes) for container `id`:
/// refuse if this process has threads, and give up, naming the step reached, when the init
/// process is not ready within [`wasmcell_core::create_timeout`].
pub fn build_container<T>(
    id: &str,
    action: &'static str,
    progress: &Progress,
    build: impl FnOnce() -> Result<T, LibcontainerError>,
) -> Result<T, OciError> {
    let deadline = wasmcell_core::create_timeout();
    wasmcell_core::fork::ensure_single_threaded("fork of the container's init process").map_err(
        |source| OciError::Fork {
            id: id.to_string(),
            source,
        },
    )?;
    let alarm = Alarm::arm(deadline);
    let built = build();
    let timed_out = alarm.disarm();
    match built {
        Ok(v) => Ok(v),
        Err(_) if timed_out => Err(OciError::Deadline {
            id: id.to_string(),
            action,
            after: deadline,
            step: Step::describe(progress.last()),
        }),
        Err(e) => Err(OciError::container(action, id, e)),
    }
}

/// Set by the SIGALRM handler once the deadline has passed.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);
/// The process that armed the alarm: a child that inherited the handler does not re-arm it.
static ARMED_BY: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_alarm(_: nix::libc::c_int) {
    // Only async-signal-safe work: an atomic store, getpid and alarm.
    if nix::unistd::getpid().as_raw() == ARMED_BY.load(Ordering::Relaxed) {
        TIMED_OUT.store(true, Ordering::Relaxed);
        // Fire again in a second: the signal may have come between two blocking calls, and
        // the next one must be interrupted too.
        nix::unistd::alarm::set(1);
    }
}

/// SIGALRM after the deadline, every second after it, interrupting blocking system calls.
struct Alarm {
    previous: Option<SigAction>,
}

impl Alarm {
    fn arm(deadline: Duration) -> Alarm {
        TIMED_OUT.store(false, Ordering::Relaxed);
        ARMED_BY.store(nix::unistd::getpid().as_raw(), Ordering::Relaxed);
        // No SA_RESTART: a `recvmsg` waiting for the init process returns EINTR.
        let action = SigAction::new(
            SigHandler::Handler(on_alarm),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: `on_alarm` does only async-signal-safe work (see there), and this process is
        // single-threaded (checked before), so no other thread observes the change.
        #[allow(unsafe_code)]
        let previous = unsafe { nix::sys::signal::sigaction(Signal::SIGALRM, &action) };
        match previous {
            Ok(previous) => {
                let secs = deadline.as_secs().clamp(1, u64::from(u32::MAX));
                nix::unistd::alarm::set(u32::try_from(secs).unwrap_or(u32::MAX));
                Alarm {
                    previous: Some(previous),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot bound the wait for the init process");
                Alarm { previous: None }
            }
        }
    }

    /// Stop the alarm and restore the previous handler; whether the deadline had passed.
    fn disarm(self) -> bool {
        if let Some(previous) = self.previous {
            nix::unistd::alarm::cancel();
            // SAFETY: restores the handler that was in place before `arm`.
            #[allow(unsafe_code)]
            let _ = unsafe { nix::sys::signal::sigaction(Signal::SIGALRM, &previous) };
        }
        ARMED_BY.store(0, Ordering::Relaxed);
        TIMED_OUT.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_the_last_step() {
        let progress = Progress::new("test").expect("pipe");
        assert_eq!(progress.last(), None);
        let writer = progress.writer();
        writer.mark(Step::LoadingModule);
        assert_eq!(progress.last(), Some(Step::LoadingModule));
        writer.mark(Step::Ready);
        assert_eq!(progress.last(), Some(Step::Ready));
    }
}
