//! Running a command with a deadline: stdin closed, stdout and stderr captured into a
//! [`CtrOutput`], the command killed once its deadline passes, so that no command can hang a
//! test. Also how the harness formats such an output and sends signals with `kill`.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The result of one `ctr` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrOutput {
    /// Exit code; `128 + signal` when `ctr` was killed by a signal.
    pub code: i32,
    /// Everything `ctr` wrote to stdout (lossily decoded).
    pub stdout: String,
    /// Everything `ctr` wrote to stderr (lossily decoded).
    pub stderr: String,
}

impl CtrOutput {
    /// Whether `ctr` exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

pub(crate) fn describe(out: &CtrOutput) -> String {
    format!(
        "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.code,
        out.stdout.trim_end(),
        out.stderr.trim_end()
    )
}

pub(crate) fn kill_command(signal: &str, pid: &str) -> Command {
    let program = if Path::new("/bin/kill").exists() {
        "/bin/kill"
    } else {
        "kill"
    };
    let mut cmd = Command::new(program);
    cmd.arg(signal).arg(pid);
    cmd
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => match buf.lock() {
                    Ok(mut b) => b.extend_from_slice(&chunk[..n]),
                    Err(_) => break,
                },
            }
        }
    })
}

fn take_string(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    match buf.lock() {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}

/// Run `cmd` with stdin closed and stdout/stderr captured; kill it after `timeout`.
/// Never panics: spawn failures and timeouts are errors.
pub(crate) fn run_with_deadline(mut cmd: Command, timeout: Duration) -> Result<CtrOutput, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let out_buf = Arc::new(Mutex::new(Vec::new()));
    let err_buf = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, Arc::clone(&out_buf)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, Arc::clone(&err_buf)));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            // 1 ms: the bench times commands with this, so the poll must not round them up.
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} did not finish within {timeout:?} and was killed\n--- stdout ---\n{}\n\
                     --- stderr ---\n{}",
                    take_string(&out_buf).trim_end(),
                    take_string(&err_buf).trim_end()
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {shown}: {e}"));
            }
        }
    };
    // A grandchild holding the pipes open must not hang us: give the readers a short grace.
    let grace = Instant::now() + Duration::from_secs(5);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < grace {
        thread::sleep(Duration::from_millis(1));
    }
    for reader in readers {
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(CtrOutput {
        code,
        stdout: take_string(&out_buf),
        stderr: take_string(&err_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_kills_slow_commands() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run_with_deadline(cmd, Duration::from_millis(200))
            .expect_err("sleep 30 must exceed a 200 ms deadline");
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_and_exit_code_are_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_with_deadline(cmd, Duration::from_secs(10)).expect("sh runs");
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }
}
