//! The hostile-workload checks (`wasmcell_testing::hostile`) through the shim's normal mode:
//! the guest process is confined as runc confines a container's process for the same spec.
//! Also here: what the shim refuses instead of dropping it silently (a user namespace).
mod common;

use common::RUNTIME;
use wasmcell_test_guests as guests;
use wasmcell_testing::hostile::{
    check_root_only_file, check_rootfs_and_devices, check_symlink_race,
    check_user_capabilities_and_filters, ctr_run, rootfs, spec,
};

fn runtime() -> Vec<String> {
    vec!["--runtime".to_string(), RUNTIME.to_string()]
}

#[test]
fn guest_process_has_the_specs_user_capabilities_and_filters() {
    check_user_capabilities_and_filters(&common::containerd(), &runtime(), guests::PROBE_P1);
}

#[test]
fn a_non_root_guest_cannot_read_a_root_only_file_of_its_volume() {
    check_root_only_file(&common::containerd(), &runtime(), guests::PROBE_P1);
}

#[test]
fn the_guest_lives_in_its_rootfs_and_opens_no_device() {
    check_rootfs_and_devices(&common::containerd(), &runtime(), guests::PROBE_P2);
}

#[test]
fn a_working_directory_swapped_for_a_symlink_never_reaches_the_host() {
    check_symlink_race(&common::containerd(), &runtime(), guests::PROBE_P1, 200);
}

#[test]
fn a_user_namespace_is_refused_with_the_reason() {
    let c = common::containerd();
    let dir = c.dir().join("userns");
    let root = rootfs(&dir, guests::PROBE_P1);
    let config = spec(&dir.join("spec"), &root, &["/app.wasm", "hello"], |cfg| {
        if let Some(ns) = cfg["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({ "type": "user" }));
        }
        cfg["linux"]["uidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        cfg["linux"]["gidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    });
    let out = ctr_run(&c, &runtime(), "--rm", &config, "userns-1");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("user namespace"), "{out:?}");
}

/// The guest process inherits none of the shim's descriptors: not its ttrpc socket (fd 3 of
/// the shim's server), only its stdio and its control socket.
#[test]
fn the_guest_holds_no_descriptor_of_the_shim() {
    let c = common::containerd();
    let dir = c.dir().join("fds");
    let root = rootfs(&dir, guests::PROBE_P1);
    let config = spec(
        &dir.join("spec"),
        &root,
        &["/app.wasm", "sleep", "600000"],
        |_| {},
    );
    let out = ctr_run(&c, &runtime(), "-d", &config, "fds-1");
    assert!(out.success(), "{out:?}");
    let guest = wasmcell_testing::hostile::task_pid(&c, "fds-1");
    let links = |pid: u32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| {
                    let path = e.ok()?.path();
                    let link = std::fs::read_link(&path).ok()?;
                    Some(format!(
                        "{} -> {}",
                        path.file_name()?.to_string_lossy(),
                        link.display()
                    ))
                })
                .collect()
            })
            .unwrap_or_default()
    };
    let shims = common::shims_of(&c);
    assert!(!shims.is_empty(), "no shim process");
    let listener = std::fs::read_link(format!("/proc/{}/fd/3", shims[0]))
        .expect("the shim's fd 3")
        .display()
        .to_string();
    assert!(listener.starts_with("socket:"), "{listener}");
    let held = links(guest);
    assert!(
        !held.contains(&listener),
        "the guest holds the shim's socket: {held:?}"
    );
    // Nothing the shim holds that the guest did not open itself: only its stdio FIFOs are
    // shared with the shim (the shim opened them for it). Compared by open file (kcmp), not
    // by name: both processes have epoll and eventfd descriptors of their own.
    let shim_held = links(shims[0]);
    let fd_and_target = |l: &String| {
        let (fd, target) = l.split_once(" -> ")?;
        Some((fd.parse::<i32>().ok()?, target.to_string()))
    };
    let leaked: Vec<&String> = held
        .iter()
        .filter(|l| {
            let Some((fd, target)) = fd_and_target(l) else {
                return false;
            };
            let shared = shim_held
                .iter()
                .filter_map(fd_and_target)
                .any(|(shim_fd, _)| same_open_file((guest, fd), (shims[0], shim_fd)));
            shared && !target.contains("/fifo/") && target != "/dev/null" && target != "/"
        })
        .collect();
    assert!(leaked.is_empty(), "the guest holds the shim's {leaked:?}");
    let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", "fds-1"]);
    assert!(out.success(), "{out:?}");
}

/// Whether fd `a.1` of process `a.0` and fd `b.1` of process `b.0` are the same open file
/// (kcmp(2) with KCMP_FILE).
fn same_open_file(a: (u32, i32), b: (u32, i32)) -> bool {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: kcmp takes two pids, a type and two descriptor numbers; no memory is passed.
    #[allow(unsafe_code)]
    let same = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a.0 as libc::pid_t,
            b.0 as libc::pid_t,
            KCMP_FILE,
            a.1 as libc::c_ulong,
            b.1 as libc::c_ulong,
        )
    };
    same == 0
}

/// With containerd's systemd cgroup driver, `cgroupsPath` is `slice:prefix:name`: the guest
/// lands in the scope systemd would create for it, under its slices, in every hierarchy (not
/// in a directory named after the whole string at the root).
#[test]
fn a_systemd_cgroups_path_is_placed_where_systemd_puts_it() {
    let c = common::containerd();
    let dir = c.dir().join("systemd-cgroup");
    let root = rootfs(&dir, guests::PROBE_P1);
    let top = format!("wcltest{}", std::process::id());
    let slice = format!("{top}-pod1.slice");
    let config = spec(
        &dir.join("spec"),
        &root,
        &["/app.wasm", "sleep", "600000"],
        |cfg| {
            cfg["linux"]["cgroupsPath"] = format!("{slice}:cri-containerd:sd1").into();
        },
    );
    let out = ctr_run(&c, &runtime(), "-d", &config, "sd-1");
    assert!(out.success(), "{out:?}\n{}", c.log_tail(20));
    let pid = wasmcell_testing::hostile::task_pid(&c, "sd-1");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    let want = format!("/{top}.slice/{slice}/cri-containerd-sd1.scope");
    let memory = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory"))
        .unwrap_or_else(|| panic!("no memory hierarchy in {cgroups}"));
    assert!(memory.ends_with(&want), "{memory} (want {want})");
    let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", "sd-1"]);
    assert!(out.success(), "{out:?}");
    // The scope goes with the container; the slices are the test's to remove.
    let deleted = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        c.run_ctr(&["task", "delete", "sd-1"]).success()
    });
    assert!(deleted, "task sd-1 was not deleted");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .expect("list hierarchies")
        .flatten()
    {
        let base = hierarchy.path().join(format!("{top}.slice"));
        let _ = std::fs::remove_dir(base.join(&slice).join("cri-containerd-sd1.scope"));
        let _ = std::fs::remove_dir(base.join(&slice));
        let _ = std::fs::remove_dir(&base);
    }
}

/// `linux.sysctl` is set in the container's own namespaces (here its network namespace), never
/// on the host; a key no namespace of the container holds fails Create, naming it.
#[test]
fn sysctls_are_set_in_the_containers_namespaces_only() {
    let c = common::containerd();
    let dir = c.dir().join("sysctl");
    let root = rootfs(&dir, guests::PROBE_P1);
    let host = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    let before = host().expect("read host sysctl");
    let config = spec(
        &dir.join("net"),
        &root,
        &["/app.wasm", "sleep", "600000"],
        |cfg| {
            cfg["linux"]["sysctl"] =
                serde_json::json!({ "net.ipv4.ip_unprivileged_port_start": "80" });
        },
    );
    let out = ctr_run(&c, &runtime(), "-d", &config, "sysctl-1");
    assert!(out.success(), "{out:?}\n{}", c.log_tail(20));
    let pid = wasmcell_testing::hostile::task_pid(&c, "sysctl-1");
    let inside = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        ])
        .output()
        .expect("run nsenter");
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).trim(),
        "80",
        "{inside:?}"
    );
    assert_eq!(
        host().expect("read host sysctl"),
        before,
        "the host's value changed"
    );
    let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", "sysctl-1"]);
    assert!(out.success(), "{out:?}");

    let config = spec(&dir.join("host"), &root, &["/app.wasm", "hello"], |cfg| {
        cfg["linux"]["sysctl"] = serde_json::json!({ "vm.swappiness": "10" });
    });
    let out = ctr_run(&c, &runtime(), "--rm", &config, "sysctl-2");
    assert!(
        out.code != 0 && out.stderr.contains("vm.swappiness") && out.stderr.contains("host"),
        "{out:?}"
    );
}

/// A spec with no seccomp filter still gets one in normal mode: the default for Wasm guests
/// (system calls no guest process makes are denied), visible as seccomp mode 2.
#[test]
fn a_spec_without_seccomp_gets_the_default_filter_for_wasm_guests() {
    let c = common::containerd();
    let dir = c.dir().join("default-seccomp");
    let root = rootfs(&dir, guests::PROBE_P2);
    let config = spec(
        &dir.join("spec"),
        &root,
        &["/app.wasm", "sleep", "600000"],
        |cfg| {
            cfg["linux"]
                .as_object_mut()
                .map(|linux| linux.remove("seccomp"));
        },
    );
    let out = ctr_run(&c, &runtime(), "-d", &config, "seccomp-1");
    assert!(out.success(), "{out:?}");
    let pid = wasmcell_testing::hostile::task_pid(&c, "seccomp-1");
    assert_eq!(wasmcell_testing::hostile::status(pid, "Seccomp"), "2");
    let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", "seccomp-1"]);
    assert!(out.success(), "{out:?}");
}

/// A FIFO as entrypoint (no writer will ever open it) fails Create at once with a message
/// naming it; nothing waits on it, and no guest process is left behind.
#[test]
fn a_fifo_entrypoint_fails_create_at_once() {
    let c = common::containerd();
    let dir = c.dir().join("fifo");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir rootfs");
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("app.wasm"))
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let config = spec(&dir.join("spec"), &root, &["/app.wasm"], |_| {});
    // The run's own deadline (wasmcell_testing::parity::CASE_TIMEOUT) fails a hang.
    let out = ctr_run(&c, &runtime(), "--rm", &config, "fifo-1");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("app.wasm") && out.stderr.contains("FIFO"),
        "{out:?}"
    );
    let guests = wasmcell_testing::pids_with_cmdline_containing("guest --bundle");
    let ours: Vec<u32> = guests
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).contains("fifo-1"))
                .unwrap_or(false)
        })
        .collect();
    assert!(ours.is_empty(), "guest processes left: {ours:?}");
}
