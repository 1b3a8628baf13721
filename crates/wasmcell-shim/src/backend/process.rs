//! The normal-mode backend: each container's guest in a process of its own, a re-exec of the
//! shim binary as `guest` (see guest.rs), placed in the container's cgroup before it prepares
//! the workload.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use oci_spec::runtime::Spec;

use crate::artifact::Containerd;
use crate::backend::Process;
use crate::cgroup::{Cgroup, Join};
use crate::guest::{ADDRESS_ENV, CONTROL_FD, NAMESPACE_ENV, PREPARE, START, SUBCOMMAND};
use crate::stdio::GuestStdio;
use crate::task::{lock, Request};
use crate::ShimError;

/// A guest process, prepared (module read, compiled, linked) and waiting for its start byte.
#[derive(Debug)]
pub(crate) struct GuestProcess {
    pub(crate) process: Process,
    pub(crate) cgroup: Cgroup,
    /// The control socket: the start byte goes out on it, `oom` comes back before an
    /// out-of-memory exit. `None` once the process has exited.
    control: Mutex<Option<UnixStream>>,
}

impl GuestProcess {
    /// Spawn the guest process, place it in the container's cgroup and wait until it has
    /// prepared the workload. A workload error ends the process and is returned.
    pub(crate) fn spawn(
        req: &Request,
        spec: &Spec,
        containerd: &Containerd,
    ) -> Result<Self, ShimError> {
        let stdio = GuestStdio::open(&req.stdin, &req.stdout, &req.stderr)?;
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| ShimError::io("failed to create the guest control socket", e))?;

        let cgroup_span = tracing::debug_span!("cgroup").entered();
        let cgroup = Cgroup::for_spec(spec, &req.id)?;
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let join = cgroup
            .prepare_join(resources)
            .inspect_err(|_| cgroup.remove())?;
        drop(cgroup_span);

        let spawn_span = tracing::debug_span!("spawn_guest").entered();
        let spawned_at = Instant::now();
        let spawned = spawn_guest(req, containerd, stdio, theirs, &join);
        let pid = spawned.inspect_err(|_| cgroup.remove())?;
        drop(spawn_span);
        let process = Process::new(pid, spawned_at);

        if let Join::ByShim = join {
            let _span = tracing::debug_span!("cgroup_add", pid).entered();
            if let Err(e) = cgroup.add(pid as i32, resources) {
                abandon(&process, &cgroup);
                return Err(e);
            }
        }
        // Until the guest process reports `ready`: namespaces, plan, module, compiled code.
        let _prepare_span = tracing::debug_span!("prepare", pid).entered();
        let told = (&ours).write_all(&[PREPARE]).map_err(|e| {
            ShimError::io(
                format!("failed to reach the guest process of {}", req.id),
                e,
            )
        });
        let timeout = wasmcell_core::create_timeout();
        match told.and_then(|()| read_ready(&ours, &req.id, timeout)) {
            Ok(()) => Ok(GuestProcess {
                process,
                cgroup,
                control: Mutex::new(Some(ours)),
            }),
            Err(e) => {
                abandon(&process, &cgroup);
                Err(e)
            }
        }
    }

    /// Let the prepared guest run.
    pub(crate) fn start(&self, id: &str) -> Result<(), ShimError> {
        let mut control = lock(&self.control);
        match control.as_mut().map(|c| c.write_all(&[START])) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(ShimError::io(format!("failed to start container {id}"), e)),
            None => Err(ShimError::FailedPrecondition(format!(
                "the guest process of container {id} has exited"
            ))),
        }
    }

    /// The process has exited with `code`: whether it ran out of memory (it said so on the
    /// control socket, or the kernel killed it for its cgroup's limit).
    pub(crate) fn exited(&self, code: i32) -> bool {
        let said_oom = lock(&self.control).take().is_some_and(|c| said_oom(&c));
        said_oom || (code == wasmcell_core::EXIT_KILLED && self.cgroup.oom_kills() > 0)
    }
}

/// Whether the guest process said `oom` before it exited.
fn said_oom(control: &UnixStream) -> bool {
    let _ = control.set_read_timeout(Some(Duration::from_millis(50)));
    let mut line = String::new();
    let mut reader = BufReader::new(control);
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        if line.trim() == "oom" {
            return true;
        }
        line.clear();
    }
    false
}

/// Start `containerd-shim-wasmcell-v1 guest` for `req` with the container's stdio as fds 0-2
/// and `control` at [`CONTROL_FD`]; returns its pid.
fn spawn_guest(
    req: &Request,
    containerd: &Containerd,
    stdio: GuestStdio,
    control: UnixStream,
    join: &Join,
) -> Result<u32, ShimError> {
    let exe =
        std::env::current_exe().map_err(|e| ShimError::io("failed to find the shim binary", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg("--bundle")
        .arg(&req.bundle)
        .arg("--id")
        .arg(&req.id)
        .current_dir(&req.bundle)
        .env_clear()
        // In the environment, not on the command line, which names the guest's shim alone.
        .env(ADDRESS_ENV, &containerd.address)
        .env(NAMESPACE_ENV, &containerd.namespace)
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    if let Join::ByGuest(files) = join {
        for file in files {
            cmd.arg("--cgroup-tasks").arg(file);
        }
    }
    for var in ["RUST_LOG", wasmcell_wasmtime::CACHE_DIR_ENV] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: OwnedFd::from(control),
        child_fd: CONTROL_FD,
    }])
    .map_err(|e| {
        ShimError::io(
            "failed to map the guest control socket",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let child = cmd.spawn().map_err(|e| {
        ShimError::io(
            format!("failed to start the guest process for {}", req.id),
            e,
        )
    })?;
    // The reaper owns waiting; `child` is never waited on.
    Ok(child.id())
}

/// Give up on a guest process that failed before it was ready: kill it, wait (bounded) until it
/// has left its cgroup, and remove the cgroup.
fn abandon(process: &Process, cgroup: &Cgroup) {
    let _ = process.signal(nix::libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::pidfd::still_running(process.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    cgroup.remove();
}

/// Wait for `ready` or `error <message>` from the guest process of container `id`, for at most
/// `timeout`; `step <what>` lines say how far it got, and name the step in the error when the
/// time runs out.
fn read_ready(control: &UnixStream, id: &str, timeout: Duration) -> Result<(), ShimError> {
    let deadline = Instant::now() + timeout;
    let mut reader = BufReader::new(control);
    let mut step = String::from("starting");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "none" to the socket: past the deadline, wait a token 1 ms.
        let _ = control.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        match read {
            Ok(0) => {
                return Err(ShimError::Workload(format!(
                    "container {id}: the guest process exited before it was ready (it was {step})"
                )))
            }
            Ok(_) if line.starts_with("step ") => {
                step = line["step ".len()..].trim_end().to_string();
            }
            Ok(_) if line.starts_with("ready") => {
                let _ = control.set_read_timeout(None);
                tracing::debug!(
                    timings_ms = line.trim_end().trim_start_matches("ready").trim(),
                    "guest prepared"
                );
                return Ok(());
            }
            Ok(_) => {
                let line = line.trim_end();
                let msg = line.strip_prefix("error ").unwrap_or(line);
                return Err(ShimError::Workload(msg.to_string()));
            }
            Err(e) if timed_out(&e) => {
                return Err(ShimError::Workload(format!(
                    "container {id}: the guest process was not ready within {}s (it was {step}); \
                     it was killed",
                    timeout.as_secs()
                )))
            }
            Err(e) => return Err(ShimError::io("failed to hear from the guest process", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_guest_that_never_gets_ready_is_named_with_its_step() {
        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        writeln!(theirs, "step entering the namespaces").expect("write");
        writeln!(theirs, "step compiling the module").expect("write");
        // `theirs` stays open and silent, as a guest process stuck in a step.
        let err = read_ready(&ours, "stuck-1", Duration::from_secs(1)).expect_err("no ready");
        let msg = err.to_string();
        assert!(msg.contains("container stuck-1"), "{msg}");
        assert!(msg.contains("within 1s"), "{msg}");
        assert!(msg.contains("(it was compiling the module)"), "{msg}");
    }

    #[test]
    fn ready_after_steps_and_errors_are_read() {
        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        writeln!(theirs, "step reading the module").expect("write");
        writeln!(theirs, "ready module=0.10").expect("write");
        read_ready(&ours, "ok-1", Duration::from_secs(5)).expect("ready");

        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        writeln!(theirs, "error module /app.wasm not found").expect("write");
        let err = read_ready(&ours, "bad-1", Duration::from_secs(5)).expect_err("error");
        assert_eq!(err.to_string(), "module /app.wasm not found");

        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        drop(theirs);
        let err = read_ready(&ours, "gone-1", Duration::from_secs(5)).expect_err("closed");
        assert!(err.to_string().contains("container gone-1"), "{err}");
    }

    #[test]
    fn an_oom_said_before_the_exit_is_heard() {
        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        writeln!(theirs, "oom").expect("write");
        drop(theirs);
        assert!(said_oom(&ours));
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        drop(theirs);
        assert!(!said_oom(&ours));
    }
}
