//! Reaps every child of the shim (it is a subreaper) and hands each exit to whoever registered
//! for that pid, even when the exit came before the registration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use signal_hook::consts::SIGCHLD;
use signal_hook::iterator::Signals;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

type ExitHandler = Box<dyn FnOnce(i32) + Send>;

#[derive(Default)]
struct Table {
    handlers: HashMap<i32, ExitHandler>,
    /// Exits seen before their handler was registered.
    /// Exits of children nobody had registered for yet, with when they were reaped.
    early: HashMap<i32, (i32, Instant)>,
}

/// The shim's one reaper thread.
#[derive(Clone, Default)]
pub(crate) struct Reaper {
    inner: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

impl Reaper {
    /// Start the reaper thread (it handles SIGCHLD for the whole process).
    pub(crate) fn start() -> std::io::Result<Self> {
        let signals = Signals::new([SIGCHLD])?;
        let reaper = Reaper::default();
        let r = reaper.clone();
        std::thread::Builder::new()
            .name("wasmcell-reaper".into())
            .spawn(move || r.run(signals))?;
        Ok(reaper)
    }

    /// Run `handler` with the exit status of `pid` (128 + signal for a signalled child).
    pub(crate) fn on_exit(
        &self,
        pid: i32,
        spawned: Instant,
        handler: impl FnOnce(i32) + Send + 'static,
    ) {
        let Ok(mut t) = self.inner.lock() else { return };
        match t.early.remove(&pid) {
            // Reaped after the spawn: this child's exit, come before its registration.
            Some((code, reaped)) if reaped >= spawned => {
                drop(t);
                handler(code);
            }
            // Reaped before this child was spawned: an earlier process that had the same pid.
            _ => {
                t.handlers.insert(pid, Box::new(handler));
            }
        }
    }

    fn run(&self, mut signals: Signals) {
        // Reap whatever is ready now, then again at every SIGCHLD.
        self.reap_ready();
        for _ in signals.forever() {
            self.reap_ready();
        }
    }

    fn reap_ready(&self) {
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::Exited(pid, code)) => self.deliver(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.deliver(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid failed");
                    return;
                }
            }
        }
    }

    fn deliver(&self, pid: i32, code: i32) {
        tracing::debug!(pid, code, "child exited");
        // Helpers forked by containerd-shim (e.g. its rootfs mount) wait through its monitor.
        let _ = containerd_shim::monitor::monitor_notify_by_pid(pid, code);
        let Ok(mut t) = self.inner.lock() else { return };
        match t.handlers.remove(&pid) {
            Some(handler) => {
                drop(t);
                run_handler(pid, handler, code);
            }
            None => {
                if t.early.len() >= MAX_EARLY {
                    t.early.clear();
                }
                t.early.insert(pid, (code, Instant::now()));
            }
        }
    }
}

/// Handlers run on their own thread: they may take locks that a thread waiting for another
/// child's exit (e.g. a runc call) holds, and the reaper must keep reaping meanwhile.
fn run_handler(pid: i32, handler: ExitHandler, code: i32) {
    let spawned = std::thread::Builder::new()
        .name("wasmcell-exit".into())
        .spawn(move || handler(code));
    if let Err(e) = spawned {
        tracing::error!(pid, error = %e, "failed to start an exit handler thread");
    }
}

/// Bound on remembered exits nobody claimed (helpers of other libraries, reparented orphans).
const MAX_EARLY: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn an_exit_seen_before_registration_is_delivered_on_registration() {
        let reaper = Reaper::default();
        let spawned = Instant::now();
        reaper.deliver(4242, 7);
        let (tx, rx) = channel();
        reaper.on_exit(4242, spawned, move |code| {
            let _ = tx.send(code);
        });
        assert_eq!(rx.try_recv(), Ok(7));
    }

    #[test]
    fn a_stale_exit_of_a_reused_pid_is_never_handed_to_a_new_child() {
        let reaper = Reaper::default();
        reaper.deliver(4444, 1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        // A new child got pid 4444 after the old one was reaped.
        let spawned = Instant::now();
        let (tx, rx) = channel();
        reaper.on_exit(4444, spawned, move |code| {
            let _ = tx.send(code);
        });
        assert!(
            rx.try_recv().is_err(),
            "the old process's exit was handed over"
        );
        reaper.deliver(4444, 0);
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(0));
    }

    #[test]
    fn a_registered_handler_gets_the_exit() {
        let reaper = Reaper::default();
        let (tx, rx) = channel();
        reaper.on_exit(4343, Instant::now(), move |code| {
            let _ = tx.send(code);
        });
        assert!(rx.try_recv().is_err());
        reaper.deliver(4343, 137);
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(137));
    }
}
