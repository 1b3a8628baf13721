//! Podman (through conmon) with `--runtime wasmcell-oci`: a Wasm image and a busybox image built
//! and loaded locally, `podman run`, `ps`, `stop`, `rm`. Podman runs with its own storage, run
//! and temporary directories under a temporary directory (vfs driver, cgroupfs, file events),
//! so nothing is shared with the host's Podman and nothing is left behind.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{busybox_archive, run_with_deadline, wait_for, wasm_image, Output, BIN};
use wasmcell_test_guests as guests;
use wasmcell_testing::parity::{check_parity, run_until_stopped, RO_DEST};
use wasmcell_testing::require_root;

const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);
/// `podman run` with the flags this machine needs (no network, ulimits within its own).
const RUN: [&str; 7] = [
    "run",
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];
/// conmon passes no `--root`: wasmcell-oci keeps Podman's containers in its default root.
const RUNTIME_ROOT: &str = "/run/wasmcell-oci";

/// The container id Podman wrote to `cidfile`, after checking that wasmcell-oci kept no state
/// for it.
fn assert_no_state(cidfile: &Path) {
    let id = std::fs::read_to_string(cidfile)
        .unwrap_or_else(|e| panic!("read {}: {e}", cidfile.display()));
    let id = id.trim();
    assert!(!id.is_empty(), "empty {}", cidfile.display());
    let state = Path::new(RUNTIME_ROOT).join(id);
    assert!(!state.exists(), "state left at {}", state.display());
}

/// A private Podman.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("wasmcell-podman-")
            .tempdir()
            .expect("tempdir");
        Podman { dir }
    }

    /// A fresh `--cidfile` path.
    fn cidfile(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.cid"))
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("XDG_RUNTIME_DIR", d.join("xdg"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_DATA_HOME", d.join("data"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .arg("--runtime")
            .arg(BIN);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run_with_deadline(cmd, PODMAN_TIMEOUT)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.success(), "podman {args:?}: {out:?}");
        out
    }

    fn load(&self, tar: &Path) {
        self.ok(&["load", "--input", &tar.display().to_string()]);
    }

    /// `podman run --rm` with the flags this machine needs.
    fn run_container(&self, extra: &[&str], image: &str, args: &[&str]) -> Output {
        let mut argv = RUN.to_vec();
        argv.extend_from_slice(extra);
        argv.push(image);
        argv.extend_from_slice(args);
        self.run(&argv)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        for mount in wasmcell_testing::mounts_under(self.dir.path()) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
    }
}

#[test]
fn podman_runs_wasm_and_linux_images() {
    let p = Podman::new();
    let (wasm, tar) = wasm_image(p.dir.path(), guests::HELLO_P1, "podman-hello");
    p.load(&tar);
    let (busybox, tar) = busybox_archive(p.dir.path(), "podman-busybox");
    p.load(&tar);

    let cid = p.cidfile("hello");
    let out = p.run_container(
        &["--rm", "--cidfile", &cid.display().to_string()],
        &wasm,
        &[],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );
    let out = p.run_container(
        &["--rm"],
        &busybox,
        &["/bin/busybox", "echo", "hello from busybox"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hello from busybox\n"),
        "{out:?}"
    );
    assert_no_state(&cid);
    // With a terminal: conmon hands wasmcell-oci a console socket; the guest writes to the pty.
    let out = p.run_container(&["--rm", "--tty"], &wasm, &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\r\n"),
        "{out:?}"
    );
    let cid = p.cidfile("exit-5");
    let out = p.run_container(
        &["--rm", "--cidfile", &cid.display().to_string()],
        &busybox,
        &["sh", "-c", "exit 5"],
    );
    assert_eq!(out.code, 5, "{out:?}");
    assert_no_state(&cid);
}

#[test]
fn podman_ps_stop_and_rm() {
    let p = Podman::new();
    let (busybox, tar) = busybox_archive(p.dir.path(), "podman-busybox");
    p.load(&tar);
    let (probe, tar) = wasm_image(p.dir.path(), guests::PROBE_P1, "podman-probe");
    p.load(&tar);

    for (name, image, args) in [
        (
            "linux-sleeper",
            busybox.as_str(),
            &["/bin/busybox", "sleep", "1000"][..],
        ),
        (
            "wasm-sleeper",
            probe.as_str(),
            &["/app.wasm", "sleep", "600000"][..],
        ),
    ] {
        let cid = p.cidfile(name);
        let cid_arg = cid.display().to_string();
        let mut argv = vec!["-d", "--name", name, "--cidfile", &cid_arg];
        argv.push("--entrypoint");
        argv.push(args[0]);
        let out = p.run_container(&argv, image, &args[1..]);
        assert!(out.success(), "{name}: {out:?}");
        let listed = || {
            p.run(&["ps", "--format", "{{.Names}} {{.Status}}"])
                .stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Up"))
        };
        assert!(
            wait_for(Duration::from_secs(10), listed),
            "{name} not in podman ps"
        );
        p.ok(&["pause", name]);
        let out = p.ok(&["ps", "--all", "--format", "{{.Names}} {{.Status}}"]);
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Paused")),
            "{name}: {out:?}"
        );
        p.ok(&["unpause", name]);
        if image == busybox {
            let out = p.ok(&["exec", name, "/bin/busybox", "echo", "exec works"]);
            assert_eq!(out.stdout, "exec works\n", "{out:?}");
        }
        p.ok(&["stop", "--time", "2", name]);
        let out = p.ok(&["ps", "--all", "--format", "{{.Names}} {{.Status}}"]);
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Exited")),
            "{name}: {out:?}"
        );
        p.ok(&["rm", name]);
        let out = p.ok(&["ps", "--all", "--format", "{{.Names}}"]);
        assert!(!out.stdout.contains(name), "{name}: {out:?}");
        assert_no_state(&cid);
    }
}

/// The parity table (`wasmcell_testing::parity`) through Podman: `podman run --rm --rootfs`,
/// the same guest behaviours, small and real-sized guests, with the stdout and exit status
/// every other path gives.
#[test]
fn the_parity_table_through_podman() {
    let p = Podman::new();
    let work = p.dir.path().join("parity");
    check_parity(
        "podman",
        &work,
        &[guests::PROBE_P1, guests::PROBE_P2],
        &[guests::PROBE_BIG_P1, guests::PROBE_BIG_P2],
        |c| {
            let mut argv: Vec<String> = RUN.iter().map(|a| a.to_string()).collect();
            argv.extend(["--rm".to_string(), "--name".to_string()]);
            argv.push(c.id.clone());
            for (k, v) in c.env {
                argv.extend(["--env".to_string(), format!("{k}={v}")]);
            }
            if let Some(src) = &c.ro_source {
                argv.extend([
                    "--volume".to_string(),
                    format!("{}:{RO_DEST}:ro", src.display()),
                ]);
            }
            if let Some(limit) = c.memory_limit {
                argv.extend(["--memory".to_string(), limit.to_string()]);
            }
            argv.extend(["--rootfs".to_string(), c.rootfs.display().to_string()]);
            argv.extend(c.args.iter().cloned());
            let mut cmd = p.command();
            cmd.args(&argv);
            let stop = c.stop.then_some(|_pid: u32| {
                p.ok(&["kill", "--signal", "TERM", &c.id]);
            });
            run_until_stopped(cmd, stop)
        },
    );
}
