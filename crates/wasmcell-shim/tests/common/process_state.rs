//! What `/proc` and the cgroup filesystem tell about a process (in tenancy.rs, the shared-mode
//! manager): its memory, descriptors, blocked threads, cgroup and log. Only tenancy.rs
//! includes this module (with `#[path]`), so nothing in it is unused in another test binary.

use std::path::{Path, PathBuf};

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Set process `pid`'s open-file limit (soft and hard) to `limit`.
pub fn limit_open_files(pid: u32, limit: usize) {
    let nofile = format!("--nofile={limit}:{limit}");
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &nofile])
        .status()
        .expect("run prlimit");
    assert!(lowered.success(), "prlimit");
}

/// How many descriptors process `pid` has open.
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        .count()
}

/// Threads of `pid` waiting in the open of a FIFO for its other end.
pub fn threads_opening_a_fifo(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("wchan"))
                        .is_ok_and(|w| w.trim() == "wait_for_partner")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Process `pid`'s cgroup directory in the hierarchy of `controller` (v1), or in the unified one.
pub fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let wanted = if v2 {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == controller)
            };
            wanted.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {cgroups}"));
    let root = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        std::fs::read_dir("/sys/fs/cgroup")
            .expect("cgroup mounts")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == controller))
            })
            .unwrap_or_else(|| panic!("no {controller} hierarchy"))
    };
    root.join(path.trim_start_matches('/'))
}

/// The contents of `path`, without surrounding whitespace; panics when it cannot be read.
pub fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// What process `pid` wrote to its stderr, where the manager logs (empty if unreadable).
pub fn manager_log(pid: u32) -> String {
    let path = std::fs::read_link(format!("/proc/{pid}/fd/2")).expect("manager stderr");
    std::fs::read_to_string(&path).unwrap_or_default()
}
