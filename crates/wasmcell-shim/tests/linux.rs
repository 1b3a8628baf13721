//! Containers whose entrypoint is not Wasm (ELF, script) run as Linux containers under runc in
//! the same shim: no "exec format error", correct output, exit codes, kill and delete.
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_clean, containerd, RUNTIME};
use wasmcell_testing::Containerd;

/// A rootfs holding Debian's static busybox (package busybox-static, installed by make test).
fn busybox_rootfs(c: &Containerd) -> String {
    let dir: PathBuf = c.dir().join("busybox");
    std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).expect("symlink sh");
    dir.display().to_string()
}

#[test]
fn elf_and_script_entrypoints_run_as_linux_containers() {
    let c = containerd();
    let rootfs = busybox_rootfs(&c);
    let run = |id: &str, args: &[&str]| {
        let mut argv = vec!["run", "--rm", "--runtime", RUNTIME, "--rootfs", &rootfs, id];
        argv.extend_from_slice(args);
        c.run_ctr(&argv)
    };
    let out = run("echo", &["/bin/busybox", "echo", "hello from linux"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hello from linux\n"),
        "{out:?}"
    );
    let out = run("script", &["/bin/sh", "-c", "echo from a script; exit 3"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "from a script\n"),
        "{out:?}"
    );
    let out = run("cgroup", &["/bin/busybox", "cat", "/proc/self/cgroup"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(c.namespace()),
        "not in the container's cgroup: {out:?}"
    );
    assert_clean(&c);
    let runc_state = PathBuf::from("/run/wasmcell/runc").join(c.namespace());
    let left: Vec<_> = std::fs::read_dir(&runc_state)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runc state left: {left:?}");
    let _ = std::fs::remove_dir(&runc_state);
}

#[test]
fn a_linux_container_is_killed_and_deleted() {
    let c = containerd();
    let rootfs = busybox_rootfs(&c);
    let out = c.run_ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--rootfs",
        &rootfs,
        "sleeper",
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    assert!(out.success(), "{out:?}");
    let out = c.run_ctr(&["tasks", "delete", "sleeper"]);
    assert!(
        !out.success(),
        "delete of a running task must be refused: {out:?}"
    );
    let out = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", "sleeper"]);
    assert!(out.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = c.run_ctr(&["tasks", "delete", "sleeper"]);
        if out.success() {
            assert!(out.stderr.contains("exit code 137"), "{out:?}");
            break;
        }
        assert!(Instant::now() < deadline, "task never stopped: {out:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.run_ctr(&["containers", "delete", "sleeper"]);
    assert!(out.success(), "{out:?}");
    assert_clean(&c);
    let _ = std::fs::remove_dir(PathBuf::from("/run/wasmcell/runc").join(c.namespace()));
}
