//! `exec [--process FILE | COMMAND...] ID`: run a new process in a running container's
//! namespaces and cgroup (what `podman exec`, `ctr task exec` and `kubectl exec` use). What runs
//! is decided as for the container itself ([`wasmcell_core::workload_kind`] on the exec'd
//! command): a Wasm module of the rootfs runs as a second guest (compiled on the host through
//! the precompile cache), an ELF or script is exec'd.

use std::collections::HashMap;
use std::path::PathBuf;

use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::{Process, Spec};
use wasmcell_core::{workload_kind, RunPlan, WorkloadKind, WorkloadSpec};

use crate::commands::create::{builder, compile_plan_on_host};
use crate::executor::WasmcellExecutor;
use crate::fork::{build_container, Progress};
use crate::{container, GlobalOpts, OciError};

/// `exec` flags.
#[derive(Debug, clap::Args)]
pub struct Exec {
    /// JSON file with the OCI `process` to run (overrides the command and the flags below).
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Do not wait for the process; print nothing and exit 0 once it runs.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the new process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pseudo-terminal's master fd.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables `KEY=VALUE` (repeatable).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Set no_new_privileges for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many extra file descriptors (from fd 3) to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id.
    pub id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl Exec {
    /// Run `exec`; returns the process's exit status when not detached.
    pub fn execute(self, global: &GlobalOpts) -> Result<i32, OciError> {
        // Fail early with a clear message for an unknown id.
        container::load(&global.root, &self.id)?;
        if self.process.is_none() && self.command.is_empty() {
            return Err(OciError::Invalid {
                field: "exec arguments",
                value: String::new(),
                reason: "give --process FILE or a command".into(),
            });
        }
        let env = self
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => Err(OciError::Invalid {
                    field: "--env",
                    value: kv.clone(),
                    reason: "must be KEY=VALUE".into(),
                }),
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let id = self.id.as_str();
        let progress = Progress::new(id)?;
        let executor = self.executor(global)?.with_progress(progress.writer());
        // The fork: see crate::fork for what happens on either side of it.
        let pid = build_container(id, "exec in", &progress, || {
            builder(
                id,
                executor,
                &global.root,
                self.pid_file.as_ref(),
                self.console_socket.as_ref(),
                self.preserve_fds,
            )?
            .as_tenant()
            .with_detach(self.detach)
            .with_cwd(self.cwd.as_ref())
            .with_env(env)
            .with_process(self.process.as_ref())
            .with_no_new_privs(self.no_new_privs)
            .with_container_args(self.command.clone())
            .build()
        })?;
        tracing::info!(container = %id, pid = pid.as_raw(), tty = self.tty, "exec started");
        wait_exec(id, pid, self.detach)
    }

    /// The executor for the exec'd command: Wasm or Linux, decided on the host from the
    /// container's spec with the exec's process in place of its own.
    fn executor(&self, global: &GlobalOpts) -> Result<WasmcellExecutor, OciError> {
        let loaded = container::load(&global.root, &self.id)?;
        let bundle = loaded.bundle().clone();
        let config = bundle.join("config.json");
        let invalid = |reason: String| OciError::Bundle {
            path: bundle.clone(),
            reason,
        };
        let mut spec =
            Spec::load(&config).map_err(|e| invalid(format!("cannot load config.json: {e}")))?;
        let mut process = spec.process().clone().unwrap_or_default();
        match &self.process {
            Some(file) => {
                let invalid = |reason: String| OciError::Invalid {
                    field: "--process",
                    value: file.display().to_string(),
                    reason,
                };
                let text = std::fs::read(file).map_err(|e| invalid(e.to_string()))?;
                process =
                    serde_json::from_slice::<Process>(&text).map_err(|e| invalid(e.to_string()))?;
            }
            None => {
                process.set_args(Some(self.command.clone()));
                if let Some(cwd) = &self.cwd {
                    process.set_cwd(cwd.clone());
                }
            }
        }
        spec.set_process(Some(process));
        let kind = workload_kind(&spec, &bundle);
        tracing::info!(container = %self.id, kind = kind.as_str(), "exec");
        let executor = WasmcellExecutor::new(kind);
        if kind == WorkloadKind::Linux {
            return Ok(executor);
        }
        let workload = |source: wasmcell_core::Error| OciError::Workload {
            id: self.id.clone(),
            source,
        };
        let (plan, source) = WorkloadSpec::from_oci(&spec)
            .map_err(|e| workload(e.into()))
            .and_then(|w| RunPlan::resolve(&w, &bundle).map_err(|e| workload(e.into())))?;
        Ok(executor.with_code(compile_plan_on_host(&self.id, &plan, &source)?))
    }
}

/// Wait for the exec'd process unless detached; its exit status.
fn wait_exec(id: &str, pid: nix::unistd::Pid, detach: bool) -> Result<i32, OciError> {
    {
        if detach {
            return Ok(0);
        }
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(OciError::Io {
                        action: "wait for exec process in",
                        path: id.into(),
                        source: e.into(),
                    })
                }
            }
        }
    }
}
