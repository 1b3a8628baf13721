//! The cleanup when a [`Containerd`] is dropped: pods (with CRI), tasks and containers
//! removed, containerd stopped, stray shims killed (and what a killed shared-mode manager
//! leaves behind removed), whatever is mounted under the temporary directory unmounted, and the
//! namespace's runc directory and cgroups removed when empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{Containerd, CRI_NAMESPACE, LOG_TAIL_LINES};
use crate::command::{describe, kill_command, run_with_deadline, CtrOutput};
#[cfg(feature = "cri")]
use crate::cri;
use crate::procfs::{mounts_under, pids_with_cmdline_containing};

/// Deadline of each `ctr` command run while cleaning up in `Drop`.
const CLEANUP_CTR_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the drop keeps trying to remove the instance's cgroups.
const CGROUP_REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

impl Containerd {
    /// Kill and delete every task, delete every container of `namespace`. Never panics.
    fn delete_tasks_and_containers(&self, namespace: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for id in self.cleanup_list(namespace, &["tasks", "ls", "-q"], &mut problems) {
            // Fails harmlessly when the task already stopped: the result is not checked.
            let _ = self.try_run_ctr_in(
                namespace,
                &["tasks", "kill", "--all", "-s", "SIGKILL", &id],
                CLEANUP_CTR_TIMEOUT,
            );
            self.cleanup_run(
                namespace,
                &["tasks", "delete", "--force", &id],
                &mut problems,
            );
        }
        for id in self.cleanup_list(namespace, &["containers", "ls", "-q"], &mut problems) {
            self.cleanup_run(namespace, &["containers", "delete", &id], &mut problems);
        }
        problems
    }

    fn cleanup_run(
        &self,
        namespace: &str,
        args: &[&str],
        problems: &mut Vec<String>,
    ) -> Option<CtrOutput> {
        match self.try_run_ctr_in(namespace, args, CLEANUP_CTR_TIMEOUT) {
            Ok(out) if out.success() => Some(out),
            // Gone meanwhile (CRI reacting to the same exits): nothing left to do.
            Ok(out) if out.stderr.contains("not found") => None,
            Ok(out) => {
                problems.push(format!(
                    "`ctr --namespace {namespace} {}`: {}",
                    args.join(" "),
                    describe(&out)
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "`ctr --namespace {namespace} {}`: {e}",
                    args.join(" ")
                ));
                None
            }
        }
    }

    fn cleanup_list(
        &self,
        namespace: &str,
        args: &[&str],
        problems: &mut Vec<String>,
    ) -> Vec<String> {
        self.cleanup_run(namespace, args, problems)
            .map(|out| {
                out.stdout
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kill what still refers to our socket once containerd is stopped (a shim that outlived
    /// its task), then remove what a killed shared-mode manager leaves behind.
    fn kill_stray_processes(&self, problems: &mut Vec<String>) {
        // Anything still referring to our socket is a shim that outlived its task.
        let needle = self.socket.to_string_lossy().into_owned();
        let strays = pids_with_cmdline_containing(&needle);
        // A shared-mode manager (a stray once containerd is gone) leaves its own cgroup and
        // its capacity mark behind when killed: noted here, removed once it is gone.
        let manager_leftovers: Vec<(Vec<String>, Option<PathBuf>)> =
            strays.iter().map(|pid| manager_leftovers(*pid)).collect();
        if !strays.is_empty() {
            problems.push(format!("killed stray processes {strays:?}"));
            for pid in &strays {
                let _ = run_with_deadline(
                    kill_command("-KILL", &pid.to_string()),
                    Duration::from_secs(5),
                );
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !pids_with_cmdline_containing(&needle).is_empty() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        for (cgroups, socket) in manager_leftovers {
            for cgroup in cgroups {
                remove_empty_cgroups(&cgroup);
            }
            if let Some(socket) = socket {
                let mut full = socket.into_os_string();
                full.push(".full");
                let _ = fs::remove_file(full);
            }
        }
    }

    /// Lazily unmount whatever is still mounted under the temporary directory.
    fn unmount_everything(&self, problems: &mut Vec<String>) {
        for mount in mounts_under(self.dir.path()) {
            let mut umount = Command::new("umount");
            umount.arg("-l").arg(&mount);
            match run_with_deadline(umount, Duration::from_secs(10)) {
                Ok(out) if out.success() => {}
                Ok(out) => problems.push(format!(
                    "`umount -l {}`: {}",
                    mount.display(),
                    describe(&out)
                )),
                Err(e) => problems.push(format!("`umount -l {}`: {e}", mount.display())),
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if thread::panicking() {
            eprintln!(
                "wasmcell-testing: containerd log tail ({}):\n{}",
                self.log.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            if self.cri_enabled() {
                // Pods first, the way kubelet removes them, so CRI unmounts and forgets them.
                #[cfg(feature = "cri")]
                problems.extend(cri::remove_all_pods(&self.socket));
                problems.extend(self.delete_tasks_and_containers(CRI_NAMESPACE));
            }
            problems.extend(self.delete_tasks_and_containers(&self.namespace));
        }
        if let Err(e) = self.stop() {
            problems.push(e);
        }
        self.kill_stray_processes(&mut problems);
        self.unmount_everything(&mut problems);
        // Per-namespace leftovers outside the temporary directory; removed only when empty.
        let _ = fs::remove_dir(Path::new("/run/containerd/runc").join(&self.namespace));
        remove_empty_cgroups(&self.namespace);
        if !problems.is_empty() {
            eprintln!(
                "wasmcell-testing: cleanup of containerd in {}:\n  {}",
                self.dir.path().display(),
                problems.join("\n  ")
            );
        }
        // `self.dir` (the TempDir) is removed when the fields are dropped, right after this.
    }
}

/// What a wasmcell shared-mode manager `pid` would leave when killed: its own cgroup (relative
/// to each hierarchy) and its socket path (whose `.full` mark it keeps beside it).
fn manager_leftovers(pid: u32) -> (Vec<String>, Option<PathBuf>) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let socket = args
        .iter()
        .position(|a| a == "-socket")
        .and_then(|i| args.get(i + 1))
        .map(|s| PathBuf::from(s.trim_start_matches("unix://")));
    let mut cgroups: Vec<String> = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|path| path.contains("/wasmcell/manager-"))
        .map(|path| path.trim_start_matches('/').to_string())
        .collect();
    cgroups.sort();
    cgroups.dedup();
    (cgroups, socket)
}

/// Remove `/sys/fs/cgroup/<namespace>` and `/sys/fs/cgroup/<controller>/<namespace>` with
/// every cgroup below them, deepest first; a cgroup still holding a process stays. Processes
/// killed a moment ago may still be leaving: tries again for up to [`CGROUP_REMOVE_TIMEOUT`].
fn remove_empty_cgroups(namespace: &str) {
    let base = Path::new("/sys/fs/cgroup");
    let deadline = Instant::now() + CGROUP_REMOVE_TIMEOUT;
    loop {
        let mut dirs = vec![base.join(namespace)];
        if let Ok(entries) = fs::read_dir(base) {
            dirs.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path().join(namespace)),
            );
        }
        dirs.retain(|d| d.exists());
        for dir in &dirs {
            remove_cgroup_tree(dir, 0);
        }
        if dirs.iter().all(|d| !d.exists()) || Instant::now() > deadline {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn remove_cgroup_tree(dir: &Path, depth: usize) {
    if depth > 16 {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path(), depth + 1);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
