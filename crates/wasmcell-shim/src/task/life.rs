//! A container's life as one state machine: `Created -> Running -> Stopped(exit)`, under one
//! lock (a watch channel's), which waiters watch.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::ShimError;

/// How a container's task ended, as the Task API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The exit status (128 + signal for a killed task).
    pub(crate) code: u32,
    pub(crate) at: SystemTime,
    /// Whether it ran out of memory (its Wasm memory limit, or the kernel's for its cgroup).
    pub(crate) oom: bool,
}

impl Exit {
    pub(crate) fn now(code: u32, oom: bool) -> Self {
        Exit {
            code,
            at: SystemTime::now(),
            oom,
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created and not started: its workload is prepared, nothing of it runs.
    Created,
    Running,
    Stopped(Exit),
}

impl Phase {
    pub(crate) fn exit(self) -> Option<Exit> {
        match self {
            Phase::Stopped(exit) => Some(exit),
            _ => None,
        }
    }
}

/// The phase of one container.
#[derive(Debug)]
pub(crate) struct Life {
    phase: watch::Sender<Phase>,
}

impl Life {
    pub(crate) fn new() -> Self {
        Life {
            phase: watch::channel(Phase::Created).0,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// `Created -> Running`: `start` lets the workload run and, once it has, `started` reports
    /// it. Both run under the lock, so no exit is recorded (or reported) before the start.
    pub(crate) fn start(
        &self,
        id: &str,
        start: impl FnOnce() -> Result<(), ShimError>,
        started: impl FnOnce(),
    ) -> Result<(), ShimError> {
        let mut result = Ok(());
        self.phase.send_if_modified(|phase| {
            result = match phase {
                Phase::Created => start(),
                Phase::Running => Err(ShimError::FailedPrecondition(format!(
                    "container {id} is already running"
                ))),
                Phase::Stopped(_) => Err(ShimError::FailedPrecondition(format!(
                    "container {id} has already exited"
                ))),
            };
            if result.is_err() {
                return false;
            }
            *phase = Phase::Running;
            started();
            true
        });
        result
    }

    /// `-> Stopped(exit)`, from either phase, and `stopped` reports it, under the lock: the
    /// report is queued before any waiter wakes. False (and no report) when it had stopped
    /// already: the first exit recorded is the one reported.
    pub(crate) fn stop(&self, exit: Exit, stopped: impl FnOnce()) -> bool {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Stopped(_) => false,
            _ => {
                *phase = Phase::Stopped(exit);
                stopped();
                true
            }
        })
    }

    /// Wait until the container has stopped.
    pub(crate) async fn stopped(&self) -> Exit {
        let mut rx = self.phase.subscribe();
        let exit = match rx.wait_for(|p| matches!(p, Phase::Stopped(_))).await {
            Ok(phase) => phase.exit(),
            // The sender is `self`, alive while this borrows it: not reached.
            Err(_) => None,
        };
        exit.unwrap_or_else(|| Exit::now(wasmcell_core::EXIT_KILLED as u32, false))
    }

    /// Wait until the container has stopped, at most `timeout`.
    pub(crate) async fn stopped_within(&self, timeout: Duration) -> Option<Exit> {
        tokio::time::timeout(timeout, self.stopped()).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_container_goes_created_running_stopped_once() {
        let life = Life::new();
        assert_eq!(life.phase(), Phase::Created);
        let mut told = 0;
        life.start("c1", || Ok(()), || told += 1).expect("start");
        assert_eq!((life.phase(), told), (Phase::Running, 1));
        let err = life.start("c1", || Ok(()), || {}).expect_err("twice");
        assert_eq!(err.to_string(), "container c1 is already running");

        let first = Exit::now(3, false);
        assert!(life.stop(first, || told += 1));
        let second = life.stop(Exit::now(137, true), || told += 1);
        assert!(!second, "a second exit is not recorded");
        assert_eq!(told, 2, "the first exit alone is reported");
        assert_eq!(life.stopped().await, first);
        let err = life.start("c1", || Ok(()), || {}).expect_err("stopped");
        assert_eq!(err.to_string(), "container c1 has already exited");
    }

    #[tokio::test]
    async fn a_failed_start_leaves_the_container_created_and_unreported() {
        let life = Life::new();
        let mut told = false;
        let err = life
            .start(
                "c2",
                || Err(ShimError::FailedPrecondition("no".into())),
                || told = true,
            )
            .expect_err("refused");
        assert_eq!(err.to_string(), "no");
        assert_eq!((life.phase(), told), (Phase::Created, false));
    }

    #[tokio::test]
    async fn waiters_wake_when_the_container_stops() {
        let life = std::sync::Arc::new(Life::new());
        assert_eq!(life.stopped_within(Duration::from_millis(20)).await, None);
        let waiter = tokio::spawn({
            let life = life.clone();
            async move { life.stopped().await }
        });
        let exit = Exit::now(0, false);
        life.stop(exit, || {});
        assert_eq!(waiter.await.expect("waiter"), exit);
    }
}
