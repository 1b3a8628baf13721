//! Kill, wait, delete, containerd restarts and shim crashes, against a real containerd.
mod common;

use std::time::{Duration, Instant};

use common::{
    assert_clean, containerd, events_during, import_image, shims_of, task_status, tasks, wait_exit,
    RUNTIME,
};
use wasmcell_test_guests as guests;
use wasmcell_testing::Containerd;

fn run_detached(c: &Containerd, image: &str, id: &str, args: &[&str]) {
    let mut argv = vec!["run", "-d", "--runtime", RUNTIME, image, id];
    argv.extend_from_slice(args);
    let out = c.run_ctr(&argv);
    assert!(out.success(), "{out:?}");
}

#[test]
fn sigkill_ends_a_spinning_guest_promptly() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "spin", &["/app.wasm", "spin"]);
    assert_eq!(task_status(&c, "spin").as_deref(), Some("RUNNING"));
    let started = Instant::now();
    let out = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", "spin"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(wait_exit(&c, "spin"), 137);
    let took = started.elapsed();
    eprintln!("spinning guest gone {took:?} after SIGKILL (including two ctr round trips)");
    assert!(took < Duration::from_secs(5), "kill took {took:?}");
    assert_clean(&c);
}

#[test]
fn sigterm_gives_143_and_kill_all_is_honoured() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "sleeper", &["/app.wasm", "sleep", "600000"]);
    let out = c.run_ctr(&["tasks", "kill", "sleeper"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(wait_exit(&c, "sleeper"), 143);

    run_detached(&c, &probe, "sleeper-all", &["/app.wasm", "sleep", "600000"]);
    let out = c.run_ctr(&["tasks", "kill", "--all", "-s", "SIGKILL", "sleeper-all"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(wait_exit(&c, "sleeper-all"), 137);
    assert_clean(&c);
}

#[test]
fn attach_shows_the_output_of_a_running_task() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "late", &["/app.wasm", "sleep", "2000"]);
    let out = c.run_ctr(&["tasks", "attach", "late"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "slept 2000 ms\n"),
        "{out:?}"
    );
    // `ctr tasks attach` deletes the task once it has exited.
    if task_status(&c, "late").is_some() {
        assert_eq!(wait_exit(&c, "late"), 0);
    } else {
        let out = c.run_ctr(&["containers", "delete", "late"]);
        assert!(out.success(), "{out:?}");
    }
    assert_clean(&c);
}

#[test]
fn delete_of_a_running_task_is_refused() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "busy", &["/app.wasm", "sleep", "600000"]);
    let out = c.run_ctr(&["tasks", "delete", "busy"]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("running"), "{out:?}");
    assert_eq!(task_status(&c, "busy").as_deref(), Some("RUNNING"));
    let out = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", "busy"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(wait_exit(&c, "busy"), 137);
    assert_clean(&c);
}

#[test]
fn metrics_pids_and_namespaces_are_the_guest_process_own() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "metered", &["/app.wasm", "sleep", "600000"]);
    let out = c.run_ctr(&["tasks", "metrics", "metered"]);
    assert!(out.success(), "{out:?}");
    let usage: u64 = out
        .stdout
        .lines()
        .find(|l| l.starts_with("memory.usage_in_bytes") || l.starts_with("memory.usage "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory usage in {out:?}"));
    assert!(usage > 0, "{out:?}");

    let pid_line = tasks(&c)
        .into_iter()
        .find(|l| l.starts_with("metered"))
        .expect("task listed");
    let pid: u32 = pid_line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("guest process exists");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("guest"),
        "pid {pid} is not the guest"
    );
    // Every thread of the guest process sits in the container's cgroup in every hierarchy
    // (on cgroup v1 the process joins by itself, one thread, before it starts others).
    let want = format!("/{}/metered", c.namespace());
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).expect("guest threads");
    let mut checked = 0;
    for thread in threads {
        let path = thread.expect("thread").path().join("cgroup");
        let text = std::fs::read_to_string(&path).expect("thread cgroups");
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (controllers, cgroup) = (parts.nth(1).unwrap_or(""), parts.next().unwrap_or(""));
            let ours = [
                "memory",
                "pids",
                "cpu,cpuacct",
                "cpu",
                "cpuset",
                "devices",
                "freezer",
            ];
            if ours.contains(&controllers) || (controllers.is_empty() && cgroup != "/") {
                assert_eq!(cgroup, want, "{} says {line}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no cgroup of the guest's threads was checked");
    // ctr's default spec asks for mount, network, uts and ipc namespaces.
    for ns in ["mnt", "net", "uts", "ipc"] {
        let guest = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("guest ns");
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("host ns");
        assert_ne!(guest, host, "guest shares the host's {ns} namespace");
    }
    let out = c.run_ctr(&["tasks", "ps", "metered"]);
    assert!(out.stdout.contains(&pid.to_string()), "{out:?}");

    let out = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", "metered"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(wait_exit(&c, "metered"), 137);
    assert_clean(&c);
}

#[test]
fn tasks_survive_a_containerd_restart() {
    let mut c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "survivor", &["/app.wasm", "sleep", "600000"]);
    c.restart();
    assert_eq!(task_status(&c, "survivor").as_deref(), Some("RUNNING"));
    // The exit reaches the restarted containerd as an event (what CRI waits for).
    let seen = events_during(&c, || {
        let out = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", "survivor"]);
        assert!(out.success(), "{out:?}");
        assert_eq!(wait_exit(&c, "survivor"), 137);
    });
    assert!(
        seen.lines()
            .any(|l| l.contains("/tasks/exit") && l.contains("survivor")),
        "no exit event after the restart: {seen}"
    );
    assert_clean(&c);
}

#[test]
fn a_killed_shim_is_cleaned_up_by_delete() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "orphan", &["/app.wasm", "sleep", "600000"]);
    let shims = shims_of(&c);
    assert_eq!(shims.len(), 1, "one shim for one container");
    let pid_line = tasks(&c)
        .into_iter()
        .find(|l| l.starts_with("orphan"))
        .expect("listed");
    let guest_pid: u32 = pid_line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("pid");

    let status = std::process::Command::new("kill")
        .args(["-KILL", &shims[0].to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    // containerd notices the dead shim, runs `shim delete`, and reports the task stopped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while task_status(&c, "orphan").as_deref() == Some("RUNNING") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = task_status(&c, "orphan");
    assert!(
        status.is_none() || status.as_deref() == Some("STOPPED"),
        "{status:?}"
    );
    if status.is_some() {
        let out = c.run_ctr(&["tasks", "delete", "orphan"]);
        assert!(out.success(), "{out:?}");
    }
    let out = c.run_ctr(&["containers", "delete", "orphan"]);
    assert!(out.success(), "{out:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{guest_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{guest_pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true),
        "guest process {guest_pid} outlived its shim"
    );
    assert_clean(&c);
}

/// `delete` after a shim death kills only the guest process it recorded: a pid that now
/// belongs to another program (here a `sleep`, as after pid reuse) is left alone.
#[test]
fn delete_never_kills_a_process_that_only_has_the_recorded_pid() {
    let bundle = tempfile::tempdir().expect("bundle dir");
    let mut other = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let record = serde_json::json!({ "pid": other.id(), "start_time": null, "cgroup": null });
    std::fs::write(bundle.path().join("wasmcell-shim.json"), record.to_string()).expect("write");
    let out = std::process::Command::new(common::SHIM)
        .args([
            "-namespace",
            "default",
            "-id",
            "reused",
            "-address",
            "/nonexistent.sock",
        ])
        .arg("delete")
        .current_dir(bundle.path())
        .output()
        .expect("run shim delete");
    assert!(out.status.success(), "{out:?}");
    assert!(
        other.try_wait().expect("try_wait").is_none(),
        "delete killed another program"
    );
    let _ = other.kill();
    let _ = other.wait();
}
