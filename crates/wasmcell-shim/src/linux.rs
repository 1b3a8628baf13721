//! Linux containers in the same shim: a pod's sandbox (pause) container and any container whose
//! entrypoint is not Wasm (an ELF or a script) run under runc, so they get namespaces, cgroups,
//! mounts and pivot_root exactly as runc gives them. Their init process is reparented to the
//! shim (a subreaper), so exits reach the same reaper as Wasm guests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use crate::reaper::Reaper;
use crate::stdio::GuestStdio;
use crate::ShimError;

const RUNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Where runc keeps the state of a namespace's Linux containers.
pub(crate) fn runc_root(namespace: &str) -> PathBuf {
    PathBuf::from("/run/wasmcell/runc").join(namespace)
}

/// runc, with its state under the shim's own root for the namespace.
#[derive(Debug, Clone)]
pub(crate) struct Runc {
    root: PathBuf,
}

impl Runc {
    pub(crate) fn new(namespace: &str) -> Self {
        Runc {
            root: runc_root(namespace),
        }
    }

    /// `runc create` with the container's stdio; returns the init pid.
    pub(crate) fn create(
        &self,
        reaper: &Reaper,
        id: &str,
        bundle: &Path,
        stdio: GuestStdio,
    ) -> Result<u32, ShimError> {
        let pid_file = bundle.join("init.pid");
        let mut cmd = self.command(bundle);
        cmd.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        self.run(reaper, cmd, bundle, &format!("create container {id}"))?;
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| ShimError::io(format!("failed to read {}", pid_file.display()), e))?;
        pid.trim().parse().map_err(|_| {
            ShimError::io(
                format!("invalid pid in {}", pid_file.display()),
                std::io::Error::other(pid.clone()),
            )
        })
    }

    pub(crate) fn start(&self, reaper: &Reaper, id: &str, bundle: &Path) -> Result<(), ShimError> {
        let mut cmd = self.command(bundle);
        cmd.arg("start").arg(id);
        self.run(reaper, cmd, bundle, &format!("start container {id}"))
    }

    pub(crate) fn delete(&self, reaper: &Reaper, id: &str, bundle: &Path) -> Result<(), ShimError> {
        let mut cmd = self.command(bundle);
        cmd.arg("delete").arg("--force").arg(id);
        self.run(reaper, cmd, bundle, &format!("delete container {id}"))
    }

    fn command(&self, bundle: &Path) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(bundle.join("runc.log"))
            .arg("--log-format")
            .arg("json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Run runc to its end through the shim's reaper (which owns every child's exit).
    fn run(
        &self,
        reaper: &Reaper,
        mut cmd: Command,
        bundle: &Path,
        what: &str,
    ) -> Result<(), ShimError> {
        let spawned = std::time::Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| ShimError::io(format!("failed to run runc to {what}"), e))?;
        let (tx, rx) = channel();
        reaper.on_exit(child.id() as i32, spawned, move |code| {
            let _ = tx.send(code);
        });
        drop(child);
        match rx.recv_timeout(RUNC_TIMEOUT) {
            Ok(0) => Ok(()),
            Ok(code) => Err(ShimError::Workload(format!(
                "runc failed to {what} (exit {code}): {}",
                last_runc_error(bundle)
            ))),
            Err(_) => Err(ShimError::Workload(format!(
                "runc did not {what} within {RUNC_TIMEOUT:?}"
            ))),
        }
    }
}

/// The last error message runc logged for this bundle.
fn last_runc_error(bundle: &Path) -> String {
    let log = std::fs::read_to_string(bundle.join("runc.log")).unwrap_or_default();
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| "no message in runc.log".into())
}
