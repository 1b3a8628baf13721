//! Helpers for the tests of shared mode: containers of `io.containerd.wasmcell-shared.v1`, all
//! run by one manager process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmcell_testing::{Containerd, CtrOutput};

use super::{shims_of, tasks, wait_exit};

pub const SHARED: &str = "io.containerd.wasmcell-shared.v1";
pub const HELLO: &str = "Hello from a wasmcell guest!\n";

pub fn containerd() -> (Containerd, tempfile::TempDir) {
    super::shared_containerd()
}

pub fn run(c: &Containerd, extra: &[&str], image: &str, id: &str, args: &[&str]) -> CtrOutput {
    let mut argv = vec!["run", "--rm", "--runtime", SHARED];
    argv.extend_from_slice(extra);
    argv.push(image);
    argv.push(id);
    argv.extend_from_slice(args);
    c.run_ctr(&argv)
}

pub fn run_detached(c: &Containerd, image: &str, id: &str, args: &[&str]) {
    let mut argv = vec!["run", "-d", "--runtime", SHARED, image, id];
    argv.extend_from_slice(args);
    let out = c.run_ctr(&argv);
    assert!(out.success(), "{out:?}");
}

/// Kill `id` with `signal`, wait until it stopped, delete it; returns its exit status.
pub fn kill_and_reap(c: &Containerd, id: &str, signal: &str) -> i32 {
    let out = c.run_ctr(&["tasks", "kill", "-s", signal, id]);
    assert!(out.success(), "{out:?}");
    wait_exit(c, id)
}

/// The one manager process of this containerd (its command line names the containerd socket).
pub fn manager(c: &Containerd) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = shims_of(c);
        if pids.len() == 1 {
            return pids[0];
        }
        assert!(
            Instant::now() < deadline,
            "want exactly one manager process, found {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

pub fn bundles_left(c: &Containerd) -> Vec<PathBuf> {
    let bundles = c
        .state_dir()
        .join("io.containerd.runtime.v2.task")
        .join(c.namespace());
    std::fs::read_dir(&bundles)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

pub fn assert_no_containers(c: &Containerd) {
    assert_eq!(tasks(c), Vec::<String>::new(), "tasks left behind");
    let out = c.run_ctr(&["containers", "ls", "-q"]);
    assert_eq!(out.stdout.trim(), "", "containers left behind");
    assert_eq!(
        bundles_left(c),
        Vec::<PathBuf>::new(),
        "bundles left behind"
    );
    let mounts = wasmcell_testing::mounts_under(c.state_dir());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
}
