//! One container in the shim: its guest process, its state, and the transitions
//! created -> running -> stopped.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::artifact::Containerd;
use crate::cgroup::{Cgroup, Join};
use crate::guest::{ADDRESS_ENV, CONTROL_FD, NAMESPACE_ENV, PREPARE, START, SUBCOMMAND};
use crate::linux::Runc;
use crate::pidfd::PidFd;
use crate::reaper::Reaper;
use crate::stdio::GuestStdio;
use crate::ShimError;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    /// Only a created container can be started.
    pub(crate) fn check_startable(self, id: &str) -> Result<(), ShimError> {
        match self {
            Status::Created => Ok(()),
            Status::Running => Err(ShimError::FailedPrecondition(format!(
                "container {id} is already running"
            ))),
            Status::Stopped => Err(ShimError::FailedPrecondition(format!(
                "container {id} has already exited"
            ))),
        }
    }
}

/// What containerd asked for at Create.
#[derive(Debug, Clone)]
pub(crate) struct CreateRequest {
    pub(crate) id: String,
    pub(crate) bundle: PathBuf,
    pub(crate) stdin: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) status: Status,
    pub(crate) exit_code: u32,
    pub(crate) exited_at: Option<SystemTime>,
    pub(crate) oom: bool,
}

/// A container and its guest process.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) req: CreateRequest,
    pub(crate) pid: u32,
    /// Just before the process was spawned: an exit reaped earlier is another process's.
    pub(crate) spawned_at: Instant,
    /// The process `pid` named at Create: signals go through it, never to a reused pid.
    pidfd: Option<PidFd>,
    pub(crate) cgroup: Option<Cgroup>,
    /// Set for a Linux container run by runc; `None` for a Wasm guest.
    pub(crate) runc: Option<(Runc, Reaper)>,
    control: Mutex<Option<UnixStream>>,
    state: Mutex<State>,
    exited: Condvar,
}

impl Instance {
    /// Spawn the guest process, place it in the container's cgroup and wait until it has
    /// prepared the workload. A workload error ends the process and is returned.
    pub(crate) fn create(
        req: CreateRequest,
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
        let spawned = spawn_guest(&req, containerd, stdio, theirs, &join);
        let pid = spawned.inspect_err(|_| cgroup.remove())?;
        drop(spawn_span);

        if let Join::ByShim = join {
            let _span = tracing::debug_span!("cgroup_add", pid).entered();
            if let Err(e) = cgroup.add(pid as i32, resources) {
                abandon(pid, Some(&cgroup));
                return Err(e);
            }
        }
        let cgroup = Some(cgroup);
        // Until the guest process reports `ready`: namespaces, plan, module, compiled code.
        let _prepare_span = tracing::debug_span!("prepare", pid).entered();
        let instance = Instance::created(req, pid, spawned_at, cgroup, None);
        let told = (&ours).write_all(&[PREPARE]).map_err(|e| {
            ShimError::io(
                format!("failed to reach the guest process of {}", instance.req.id),
                e,
            )
        });
        let timeout = wasmcell_core::create_timeout();
        match told.and_then(|()| read_ready(&ours, &instance.req.id, timeout)) {
            Ok(()) => {
                *lock(&instance.control) = Some(ours);
                Ok(instance)
            }
            Err(e) => {
                abandon(pid, instance.cgroup.as_ref());
                Err(e)
            }
        }
    }

    fn created(
        req: CreateRequest,
        pid: u32,
        spawned_at: Instant,
        cgroup: Option<Cgroup>,
        runc: Option<(Runc, Reaper)>,
    ) -> Self {
        let pidfd = PidFd::open(pid)
            .inspect_err(|e| tracing::warn!(pid, error = %e, "no pidfd; signals go by pid"))
            .ok();
        Instance {
            req,
            pid,
            spawned_at,
            pidfd,
            cgroup,
            runc,
            control: Mutex::new(None),
            state: Mutex::new(State {
                status: Status::Created,
                exit_code: 0,
                exited_at: None,
                oom: false,
            }),
            exited: Condvar::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Create a Linux container with runc (its cgroup is runc's; the shim only reads it).
    pub(crate) fn create_linux(
        req: CreateRequest,
        spec: &Spec,
        runc: Runc,
        reaper: Reaper,
    ) -> Result<Self, ShimError> {
        let stdio = GuestStdio::open(&req.stdin, &req.stdout, &req.stderr)?;
        let spawned_at = Instant::now();
        let pid = runc.create(&reaper, &req.id, &req.bundle, stdio)?;
        let cgroup = Cgroup::for_spec(spec, &req.id).ok();
        Ok(Instance::created(
            req,
            pid,
            spawned_at,
            cgroup,
            Some((runc, reaper)),
        ))
    }

    /// Let the prepared guest run; `started` runs under the state lock once it is running, so
    /// that nothing about its exit can be reported before it.
    pub(crate) fn start(&self, started: impl FnOnce()) -> Result<(), ShimError> {
        let mut state = self.state();
        state.status.check_startable(&self.req.id)?;
        if let Some((runc, reaper)) = &self.runc {
            runc.start(reaper, &self.req.id, &self.req.bundle)?;
            state.status = Status::Running;
            started();
            return Ok(());
        }
        let mut control = lock(&self.control);
        let sent = control.as_mut().map(|c| c.write_all(&[START]));
        match sent {
            Some(Ok(())) => {
                state.status = Status::Running;
                started();
                Ok(())
            }
            Some(Err(e)) => Err(ShimError::io(
                format!("failed to start container {}", self.req.id),
                e,
            )),
            None => Err(ShimError::FailedPrecondition(format!(
                "container {} has no guest process",
                self.req.id
            ))),
        }
    }

    /// Send `signal` to the guest process.
    pub(crate) fn kill(&self, signal: u32) -> Result<(), ShimError> {
        let signal = Signal::try_from(signal as i32)
            .map_err(|_| ShimError::InvalidArgument(format!("invalid signal {signal}")))?;
        if self.state().status == Status::Stopped {
            return Err(ShimError::NotFound(format!(
                "process of container {} already finished",
                self.req.id
            )));
        }
        let sent = match &self.pidfd {
            Some(pidfd) => pidfd.signal(signal as i32),
            None => kill(Pid::from_raw(self.pid as i32), signal).map_err(Into::into),
        };
        sent.map_err(|e| ShimError::io(format!("failed to signal container {}", self.req.id), e))
    }

    /// Record the guest's exit (called by the reaper). Returns whether it ran out of memory.
    pub(crate) fn set_exited(&self, code: i32) -> bool {
        // Out of memory: the guest hit its Wasm memory limit, or the kernel killed it for the
        // cgroup's limit.
        let oom = self.read_oom()
            || (code == 137 && self.cgroup.as_ref().is_some_and(|cg| cg.oom_kills() > 0));
        let mut state = self.state();
        state.status = Status::Stopped;
        state.exit_code = code as u32;
        state.exited_at = Some(SystemTime::now());
        state.oom = oom;
        *lock(&self.control) = None;
        self.exited.notify_all();
        oom
    }

    /// Block until the guest has exited.
    pub(crate) fn wait(&self) -> MutexGuard<'_, State> {
        let mut state = self.state();
        while state.status != Status::Stopped {
            state = match self.exited.wait(state) {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
        }
        state
    }

    /// Block until the guest has exited or `timeout` passed; true when it exited.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        let state = self.state();
        match self
            .exited
            .wait_timeout_while(state, timeout, |s| s.status != Status::Stopped)
        {
            Ok((s, _)) => s.status == Status::Stopped,
            Err(_) => false,
        }
    }

    /// Release what the container holds: runc's state for a Linux container, the cgroup for a
    /// Wasm guest.
    pub(crate) fn cleanup(&self) {
        match &self.runc {
            Some((runc, reaper)) => {
                if let Err(e) = runc.delete(reaper, &self.req.id, &self.req.bundle) {
                    tracing::warn!(container = %self.req.id, error = %e, "runc delete failed");
                }
            }
            None => {
                if let Some(cg) = &self.cgroup {
                    cg.remove();
                }
            }
        }
    }

    /// The rootfs mount point when containerd passed rootfs mounts.
    pub(crate) fn rootfs(bundle: &Path) -> PathBuf {
        bundle.join("rootfs")
    }

    fn read_oom(&self) -> bool {
        let control = lock(&self.control);
        let Some(c) = control.as_ref() else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(50)));
        let mut line = String::new();
        let mut reader = BufReader::new(c);
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.trim() == "oom" {
                return true;
            }
            line.clear();
        }
        false
    }
}

/// Give up on a guest process that failed before it was ready: kill it, wait (bounded) until it
/// has left its cgroup, and remove the cgroup.
/// Start `containerd-shim-wasmcell-v1 guest` for `req` with the container's stdio as fds 0-2
/// and `control` at [`CONTROL_FD`]; returns its pid.
fn spawn_guest(
    req: &CreateRequest,
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

fn abandon(pid: u32, cgroup: Option<&Cgroup>) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while still_running(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(cg) = cgroup {
        cg.remove();
    }
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

/// Wait for `ready` or `error <code> <message>` from the guest process of container `id`, for
/// at most `timeout`; `step <what>` lines say how far it got, and name the step in the error
/// when the time runs out.
fn read_ready(control: &UnixStream, id: &str, timeout: Duration) -> Result<(), ShimError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut reader = BufReader::new(control);
    let mut step = String::from("starting");
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
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
                let msg = line
                    .trim_end()
                    .strip_prefix("error ")
                    .unwrap_or(line.trim_end());
                let msg = msg.split_once(' ').map_or(msg, |(_code, m)| m);
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        writeln!(theirs, "error 127 module /app.wasm not found").expect("write");
        let err = read_ready(&ours, "bad-1", Duration::from_secs(5)).expect_err("error");
        assert_eq!(
            err.to_string(),
            ShimError::Workload("module /app.wasm not found".into()).to_string()
        );

        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        drop(theirs);
        let err = read_ready(&ours, "gone-1", Duration::from_secs(5)).expect_err("closed");
        assert!(err.to_string().contains("container gone-1"), "{err}");
    }
}
