//! The containerd process itself: spawned with its output appended to its log, waited for
//! until `ctr version` answers, stopped (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and
//! restarted; and the check that its CRI plugin loaded.

use std::fs::{self, OpenOptions};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Containerd, LOG_TAIL_LINES, START_TIMEOUT, STOP_TIMEOUT};
use crate::command::{describe, kill_command, run_with_deadline};

impl Containerd {
    /// Stop containerd (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and start it again with
    /// the same configuration, waiting until it answers. Shims are separate processes and keep
    /// running; the new containerd reconnects to them.
    ///
    /// # Panics
    /// When containerd does not answer again within [`START_TIMEOUT`].
    pub fn restart(&mut self) {
        if let Err(e) = self.stop() {
            panic!("wasmcell-testing: stopping containerd for a restart: {e}");
        }
        self.spawn_and_wait();
    }

    /// Stop containerd, keep it stopped for `down`, then start it again with the same
    /// configuration (shims keep running meanwhile, as in [`Containerd::restart`]).
    ///
    /// # Panics
    /// As [`Containerd::restart`].
    pub fn stop_for(&mut self, down: Duration) {
        if let Err(e) = self.stop() {
            panic!("wasmcell-testing: stopping containerd: {e}");
        }
        std::thread::sleep(down);
        self.spawn_and_wait();
    }

    /// Panic unless `ctr plugins ls` shows the CRI plugin loaded (containerd only logs a
    /// warning when its configuration is refused).
    pub(super) fn check_cri_loaded(&self) {
        let out = self.run_ctr(&["plugins", "ls"]);
        let loaded = out.stdout.lines().any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.first() == Some(&"io.containerd.grpc.v1")
                && cols.get(1) == Some(&"cri")
                && cols.last() == Some(&"ok")
        });
        if !loaded {
            let log = self.log();
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("io.containerd.grpc.v1.cri") && l.contains("level=warn"))
                .collect();
            panic!(
                "wasmcell-testing: containerd's CRI plugin did not load:\n{}\n`ctr plugins ls`:\n{}",
                why.join("\n"),
                describe(&out)
            );
        }
    }

    pub(super) fn spawn_and_wait(&mut self) {
        // A previous containerd killed with SIGKILL leaves its sockets behind.
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_file(&self.ttrpc_socket);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| {
                panic!("wasmcell-testing: cannot open {}: {e}", self.log.display())
            });
        let log_err = log
            .try_clone()
            .expect("wasmcell-testing: cannot duplicate the log file handle");
        let child = Command::new("containerd")
            .env("PATH", &self.path_env)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "wasmcell-testing: cannot start `containerd` (is the Debian package \
                     `containerd` installed?): {e}"
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        let mut last_error = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "wasmcell-testing: containerd exited during startup ({status}); log \
                         tail:\n{}",
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
            if self.socket.exists() {
                let probe = self.ctr_with(&["--connect-timeout", "2s", "version"]);
                match run_with_deadline(probe, Duration::from_secs(5)) {
                    Ok(out) if out.success() => return,
                    Ok(out) => last_error = describe(&out),
                    Err(e) => last_error = e,
                }
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = self.stop();
                panic!(
                    "wasmcell-testing: containerd did not answer on {} within {:?} (last \
                     `ctr version`: {last_error}); log tail:\n{}",
                    self.socket.display(),
                    START_TIMEOUT,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Never panics.
    pub(super) fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        let pid = child.id().to_string();
        let _ = run_with_deadline(kill_command("-TERM", &pid), Duration::from_secs(5));
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for containerd (pid {pid}): {e}")),
            }
        }
        eprintln!(
            "wasmcell-testing: containerd (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?}; \
             sending SIGKILL"
        );
        child
            .kill()
            .map_err(|e| format!("SIGKILL to containerd (pid {pid}): {e}"))?;
        child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("waiting for containerd (pid {pid}): {e}"))
    }
}
