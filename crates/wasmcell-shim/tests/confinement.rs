//! The guest process is confined as runc confines a container's process for the same spec:
//! `ctr run --config` hands the shim a whole spec, and the guest process's
//! `/proc/<pid>/status` must show its uid, gids, capability sets, `NoNewPrivs` and seccomp
//! mode, `/proc/<pid>/limits` its rlimits; a non-root guest cannot read a root-only file of
//! its volume; a spec the shim cannot honour (a user namespace) fails Create, saying why.
mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::RUNTIME;
use wasmcell_test_guests as guests;
use wasmcell_testing::parity::{run_until_stopped, run_with_deadline, Outcome};
use wasmcell_testing::Containerd;

/// Capability names and their numbers (linux/capability.h).
const CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The `/proc/<pid>/status` mask of capability names (`CAP_KILL`, ...).
fn mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, name| {
        let bare = name.trim_start_matches("CAP_");
        let bit = CAPS
            .iter()
            .position(|c| *c == bare)
            .unwrap_or_else(|| panic!("unknown capability {name}"));
        m | 1 << bit
    })
}

/// A spec as `runc spec` makes it, for `rootfs` and `args`, changed by `edit`; written to
/// `dir/config.json`.
fn spec(
    dir: &Path,
    rootfs: &Path,
    args: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir spec dir");
    let out = std::process::Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()
        .expect("runc spec");
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).expect("read config.json");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("config.json");
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = args
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .into();
    config["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
    path
}

fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir rootfs");
    std::fs::copy(guests::PROBE_P1, root.join("app.wasm")).expect("copy guest");
    root
}

/// `ctr run [--rm|-d] --runtime R --config SPEC ID` (the spec names the rootfs).
fn ctr_run(c: &Containerd, mode: &str, config: &Path, id: &str) -> Outcome {
    let mut cmd = c.ctr();
    cmd.args(["run", mode, "--runtime", RUNTIME, "--config"])
        .arg(config)
        .arg(id);
    if mode == "-d" {
        run_with_deadline(cmd, std::time::Duration::from_secs(60))
    } else {
        run_until_stopped(cmd, None::<fn(u32)>)
    }
}

/// The pid `ctr task ls` shows for `id`.
fn task_pid(c: &Containerd, id: &str) -> u32 {
    let out = c.run_ctr(&["task", "ls"]);
    out.stdout
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(id)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no task {id}: {out:?}"))
}

/// The value of `key:` in `/proc/<pid>/status`, whitespace folded.
fn status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn hex(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status(pid, key), 16).expect("hex mask")
}

const BOUNDING: [&str; 4] = [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_CHOWN",
];
const EFFECTIVE: [&str; 2] = ["CAP_KILL", "CAP_CHOWN"];

/// Capabilities, a seccomp filter (everything allowed but `mount`), an OOM score and a file
/// limit, the same for every guest of this test.
fn confine(config: &mut serde_json::Value) {
    config["process"]["capabilities"] = serde_json::json!({
        "bounding": BOUNDING, "effective": EFFECTIVE, "permitted": EFFECTIVE,
        "inheritable": [], "ambient": [],
    });
    config["process"]["noNewPrivileges"] = true.into();
    config["process"]["oomScoreAdj"] = 500.into();
    config["process"]["rlimits"] =
        serde_json::json!([{ "type": "RLIMIT_NOFILE", "hard": 512, "soft": 256 }]);
    config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_ERRNO" }],
    });
}

#[test]
fn guest_process_has_the_specs_user_capabilities_and_filters() {
    let c = common::containerd();
    let dir = c.dir().join("confined");
    let root = rootfs(&dir);
    for (id, uid, gid, groups) in [
        ("as-user", 1000, 1000, vec![1001, 1002]),
        ("as-root", 0, 0, vec![]),
    ] {
        let config = spec(
            &dir.join(id),
            &root,
            &["/app.wasm", "sleep", "600000"],
            |cfg| {
                confine(cfg);
                cfg["process"]["user"] =
                    serde_json::json!({ "uid": uid, "gid": gid, "additionalGids": groups });
            },
        );
        let out = ctr_run(&c, "-d", &config, id);
        assert!(out.success(), "{id}: {out:?}\n{}", c.log_tail(20));
        let pid = task_pid(&c, id);
        assert_eq!(
            status(pid, "Uid"),
            format!("{uid} {uid} {uid} {uid}"),
            "{id}"
        );
        assert_eq!(
            status(pid, "Gid"),
            format!("{gid} {gid} {gid} {gid}"),
            "{id}"
        );
        let want_groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        assert_eq!(status(pid, "Groups"), want_groups.join(" "), "{id}");
        assert_eq!(hex(pid, "CapBnd"), mask(&BOUNDING), "{id}");
        // As runc's execve leaves them: a non-root process keeps only its ambient set (none).
        let effective = if uid == 0 { mask(&EFFECTIVE) } else { 0 };
        assert_eq!(hex(pid, "CapEff"), effective, "{id}");
        assert_eq!(hex(pid, "CapPrm"), effective, "{id}");
        assert_eq!(hex(pid, "CapInh"), 0, "{id}");
        assert_eq!(status(pid, "NoNewPrivs"), "1", "{id}");
        assert_eq!(status(pid, "Seccomp"), "2", "{id}");
        let score = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).expect("read");
        assert_eq!(score.trim(), "500", "{id}");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read");
        let files = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("limit");
        assert_eq!(
            files.split_whitespace().collect::<Vec<_>>()[3..5],
            ["256", "512"],
            "{id}"
        );
        let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", id]);
        assert!(out.success(), "{out:?}");
    }
}

#[test]
fn a_non_root_guest_cannot_read_a_root_only_file_of_its_volume() {
    let c = common::containerd();
    let dir = c.dir().join("volume");
    let root = rootfs(&dir);
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).expect("mkdir volume");
    let secret = volume.join("secret.txt");
    std::fs::write(&secret, "root only\n").expect("write secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for (id, uid, expect) in [
        ("reader-root", 0, (0, "root only\n")),
        // WASI's EACCES (2): the kernel refused the open to uid 1000.
        (
            "reader-user",
            1000,
            (1, "error: PermissionDenied (errno 2)\n"),
        ),
    ] {
        let config = spec(
            &dir.join(id),
            &root,
            &["/app.wasm", "read", "/vol/secret.txt"],
            |cfg| {
                confine(cfg);
                cfg["process"]["user"] = serde_json::json!({ "uid": uid, "gid": uid });
                if let Some(mounts) = cfg["mounts"].as_array_mut() {
                    mounts.push(serde_json::json!({
                        "destination": "/vol", "type": "bind", "source": volume,
                        "options": ["rbind", "rw"],
                    }));
                }
            },
        );
        let out = ctr_run(&c, "--rm", &config, id);
        assert_eq!((out.code, out.stdout.as_str()), expect, "{id}: {out:?}");
    }
}

#[test]
fn a_user_namespace_is_refused_with_the_reason() {
    let c = common::containerd();
    let dir = c.dir().join("userns");
    let root = rootfs(&dir);
    let config = spec(&dir.join("spec"), &root, &["/app.wasm", "hello"], |cfg| {
        if let Some(ns) = cfg["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({ "type": "user" }));
        }
        cfg["linux"]["uidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        cfg["linux"]["gidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    });
    let out = ctr_run(&c, "--rm", &config, "userns-1");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("user namespace"), "{out:?}");
}

/// `mknod PATH c 1 3` (a copy of /dev/null).
fn device_node(path: &Path) {
    let made = std::process::Command::new("mknod")
        .arg(path)
        .args(["c", "1", "3"])
        .status()
        .expect("run mknod");
    assert!(made.success(), "mknod {}", path.display());
}

#[test]
fn the_guest_lives_in_its_rootfs_and_opens_no_device() {
    let c = common::containerd();
    let dir = c.dir().join("root");
    let root = rootfs(&dir);
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).expect("mkdir volume");
    // One node shipped in the image, one made in a volume it shares (as a sidecar would).
    device_node(&root.join("null-copy"));
    device_node(&volume.join("null-copy"));
    let add_volume = |cfg: &mut serde_json::Value| {
        if let Some(mounts) = cfg["mounts"].as_array_mut() {
            mounts.push(serde_json::json!({
                "destination": "/vol", "type": "bind", "source": volume,
                "options": ["rbind", "rw"],
            }));
        }
    };

    let config = spec(
        &dir.join("sleeper"),
        &root,
        &["/app.wasm", "sleep", "600000"],
        add_volume,
    );
    let out = ctr_run(&c, "-d", &config, "rooted");
    assert!(out.success(), "{out:?}");
    let pid = task_pid(&c, "rooted");
    let guest_root = std::fs::metadata(format!("/proc/{pid}/root/")).expect("stat guest root");
    let rootfs = std::fs::metadata(&root).expect("stat rootfs");
    let host_root = std::fs::metadata("/").expect("stat /");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        (guest_root.dev(), guest_root.ino()),
        (rootfs.dev(), rootfs.ino())
    );
    assert_ne!(
        (guest_root.dev(), guest_root.ino()),
        (host_root.dev(), host_root.ino())
    );
    let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", "rooted"]);
    assert!(out.success(), "{out:?}");

    for (id, node) in [
        ("node-image", "/null-copy"),
        ("node-volume", "/vol/null-copy"),
    ] {
        let config = spec(
            &dir.join(id),
            &root,
            &["/app.wasm", "read", node],
            add_volume,
        );
        let out = ctr_run(&c, "--rm", &config, id);
        // nodev: the kernel refuses to open it (EACCES, WASI errno 2).
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (1, "error: PermissionDenied (errno 2)\n"),
            "{id}: {out:?}"
        );
    }
}

/// A "sidecar" swaps the guest's working directory in a shared volume for a symlink to `/`
/// and back, as fast as it can, while Wasm containers with that working directory start and
/// list it: no guest ever lists the host's root.
#[test]
fn a_working_directory_swapped_for_a_symlink_never_reaches_the_host() {
    let c = common::containerd();
    let dir = c.dir().join("race");
    let root = rootfs(&dir);
    let volume = dir.join("volume");
    let work = volume.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    std::fs::write(work.join("mine.txt"), "x").expect("write");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, volume) = (stop.clone(), volume.clone());
        std::thread::spawn(move || {
            let (work, real, link) = (
                volume.join("work"),
                volume.join("real"),
                volume.join("link"),
            );
            let _ = std::os::unix::fs::symlink("/", &link);
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // work is a directory -> work is a symlink to / -> back.
                if std::fs::rename(&work, &real).is_ok() {
                    let _ = std::os::unix::fs::symlink("/", &work);
                    let _ = std::fs::remove_file(&work);
                    let _ = std::fs::rename(&real, &work);
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let mut ran = 0;
    for i in 0..200 {
        let id = format!("race-{i}");
        let config = spec(&dir.join(&id), &root, &["/app.wasm", "ls", "."], |cfg| {
            cfg["process"]["cwd"] = "/vol/work".into();
            if let Some(mounts) = cfg["mounts"].as_array_mut() {
                mounts.push(serde_json::json!({
                    "destination": "/vol", "type": "bind", "source": volume,
                    "options": ["rbind", "rw"],
                }));
            }
        });
        let out = ctr_run(&c, "--rm", &config, &id);
        ran += 1;
        // What a guest may see: its working directory; the rootfs, where the swap left a link
        // to `/` (the container's root, in there); or the volume itself while the directory
        // was moved away. Never the host's root.
        // (A guest that found no working directory at all says so: `error: NotFound`.)
        for name in out.stdout.lines().filter(|l| !l.starts_with("error: ")) {
            assert!(
                ["mine.txt", "app.wasm", "vol", "link", "work", "real"].contains(&name),
                "{id} listed {name:?} of the host: {out:?}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    assert!(ran == 200 && swaps > 0, "ran {ran}, swaps {swaps}");
}
