//! The hostile-workload checks: each runs real containers through a real containerd with a
//! whole spec (`ctr run --config`), for any runtime (`--runtime io.containerd.wasmcell.v1`, or
//! containerd's runc shim driving `wasmcell-oci`), and asserts what the kernel shows of the
//! guest process: the spec's uid, gids, capability sets, `NoNewPrivs`, seccomp mode, OOM score
//! and rlimits (`/proc/<pid>/status`, `limits`), its root, and what it can open: a root-only
//! file as another user, device nodes of the image or a shared volume, the host's root through
//! a working directory swapped for a symlink.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::parity::{run_until_stopped, run_with_deadline, Outcome};
use crate::Containerd;

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
pub fn mask(names: &[&str]) -> u64 {
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
pub fn spec(
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

/// `dir/rootfs` holding `guest` at `/app.wasm`.
pub fn rootfs(dir: &Path, guest: &str) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir rootfs");
    std::fs::copy(guest, root.join("app.wasm")).expect("copy guest");
    root
}

/// `ctr run [--rm|-d] RUNTIME... --config SPEC ID` (the spec names the rootfs).
pub fn ctr_run(c: &Containerd, runtime: &[String], mode: &str, config: &Path, id: &str) -> Outcome {
    let mut cmd = c.ctr();
    cmd.args(["run", mode])
        .args(runtime)
        .arg("--config")
        .arg(config)
        .arg(id);
    if mode == "-d" {
        run_with_deadline(cmd, Duration::from_secs(60))
    } else {
        run_until_stopped(cmd, None::<fn(u32)>)
    }
}

/// The pid `ctr task ls` shows for `id`.
pub fn task_pid(c: &Containerd, id: &str) -> u32 {
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
pub fn status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn hex(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status(pid, key), 16).expect("hex mask")
}

/// The bounding set [`confine`] gives.
pub const BOUNDING: [&str; 4] = [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_CHOWN",
];
/// The effective and permitted sets [`confine`] gives.
pub const EFFECTIVE: [&str; 2] = ["CAP_KILL", "CAP_CHOWN"];

/// Capabilities, a seccomp filter (everything allowed but `mount`), an OOM score and a file
/// limit, the same for every guest of these checks.
pub fn confine(config: &mut serde_json::Value) {
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

/// Add `source` as a read-write bind mount at `/vol`.
fn with_volume(config: &mut serde_json::Value, source: &Path) {
    if let Some(mounts) = config["mounts"].as_array_mut() {
        mounts.push(serde_json::json!({
            "destination": "/vol", "type": "bind", "source": source, "options": ["rbind", "rw"],
        }));
    }
}

/// The guest process of a spec with a user, capabilities, `noNewPrivileges`, a seccomp filter,
/// an OOM score and a file limit shows each of them in `/proc/<pid>/status` and `limits`, for a
/// non-root and a root user. A non-root process keeps only its ambient capabilities (none), as
/// runc's `execve` leaves them.
pub fn check_user_capabilities_and_filters(c: &Containerd, runtime: &[String], guest: &str) {
    let dir = c.dir().join("confined");
    let root = rootfs(&dir, guest);
    for (id, uid, groups) in [("as-user", 1000, vec![1001, 1002]), ("as-root", 0, vec![])] {
        let config = spec(
            &dir.join(id),
            &root,
            &["/app.wasm", "sleep", "600000"],
            |cfg| {
                confine(cfg);
                cfg["process"]["user"] =
                    serde_json::json!({ "uid": uid, "gid": uid, "additionalGids": groups });
            },
        );
        let out = ctr_run(c, runtime, "-d", &config, id);
        assert!(out.success(), "{id}: {out:?}\n{}", c.log_tail(20));
        let pid = task_pid(c, id);
        let ids = format!("{uid} {uid} {uid} {uid}");
        assert_eq!(
            (status(pid, "Uid"), status(pid, "Gid")),
            (ids.clone(), ids),
            "{id}"
        );
        let want_groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        assert_eq!(status(pid, "Groups"), want_groups.join(" "), "{id}");
        assert_eq!(hex(pid, "CapBnd"), mask(&BOUNDING), "{id}");
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
        let words: Vec<&str> = files.split_whitespace().collect();
        assert_eq!(words[3..5], ["256", "512"], "{id}: {files}");
        let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", id]);
        assert!(out.success(), "{out:?}");
    }
}

/// A non-root guest cannot read a root-only (0600) file of its volume; a root guest can.
pub fn check_root_only_file(c: &Containerd, runtime: &[String], guest: &str) {
    let dir = c.dir().join("volume");
    let root = rootfs(&dir, guest);
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).expect("mkdir volume");
    let secret = volume.join("secret.txt");
    std::fs::write(&secret, "root only\n").expect("write secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // WASI's EACCES (2): the kernel refused the open to uid 1000.
    let refused = (1, "error: PermissionDenied (errno 2)\n");
    for (id, uid, expect) in [
        ("reader-root", 0, (0, "root only\n")),
        ("reader-user", 1000, refused),
    ] {
        let args = ["/app.wasm", "read", "/vol/secret.txt"];
        let config = spec(&dir.join(id), &root, &args, |cfg| {
            confine(cfg);
            cfg["process"]["user"] = serde_json::json!({ "uid": uid, "gid": uid });
            with_volume(cfg, &volume);
        });
        let out = ctr_run(c, runtime, "--rm", &config, id);
        assert_eq!((out.code, out.stdout.as_str()), expect, "{id}: {out:?}");
    }
}

/// `mknod PATH b MAJOR MINOR` of the block device that holds the host's `/` (8:0, the first
/// disk, where `/` is on no block device): the host's disk, if anything lets a guest open it.
pub fn host_disk_node(path: &Path) {
    let dev = std::fs::metadata("/").expect("stat /").dev();
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let (major, minor) = if major == 0 { (8, 0) } else { (major, minor) };
    let made = std::process::Command::new("mknod")
        .arg(path)
        .args(["b", &major.to_string(), &minor.to_string()])
        .status()
        .expect("run mknod");
    assert!(made.success(), "mknod {}", path.display());
}

/// The guest's root is its rootfs, not the host's `/`; a block device node shipped in the image
/// or made in a volume it shares (as a sidecar would) cannot be opened.
pub fn check_rootfs_and_devices(c: &Containerd, runtime: &[String], guest: &str) {
    let dir = c.dir().join("root");
    let root = rootfs(&dir, guest);
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).expect("mkdir volume");
    host_disk_node(&root.join("disk"));
    host_disk_node(&volume.join("disk"));

    let args = ["/app.wasm", "sleep", "600000"];
    let config = spec(&dir.join("sleeper"), &root, &args, |cfg| {
        with_volume(cfg, &volume)
    });
    let out = ctr_run(c, runtime, "-d", &config, "rooted");
    assert!(out.success(), "{out:?}");
    let pid = task_pid(c, "rooted");
    let guest_root = std::fs::metadata(format!("/proc/{pid}/root/")).expect("stat guest root");
    let rootfs = std::fs::metadata(&root).expect("stat rootfs");
    let host_root = std::fs::metadata("/").expect("stat /");
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    assert_eq!(
        id(&guest_root),
        id(&rootfs),
        "the guest's root is its rootfs"
    );
    assert_ne!(
        id(&guest_root),
        id(&host_root),
        "the guest's root is the host's"
    );
    let out = c.run_ctr(&["task", "kill", "-s", "SIGKILL", "rooted"]);
    assert!(out.success(), "{out:?}");

    for (id, node) in [("node-image", "/disk"), ("node-volume", "/vol/disk")] {
        let config = spec(&dir.join(id), &root, &["/app.wasm", "open", node], |cfg| {
            with_volume(cfg, &volume)
        });
        let out = ctr_run(c, runtime, "--rm", &config, id);
        // The kernel refuses the open: nodev (EACCES) or the device cgroup (EPERM).
        assert!(
            out.code == 1 && out.stdout.starts_with("error: PermissionDenied"),
            "{id}: {out:?}"
        );
    }
}

/// A "sidecar" swaps the guest's working directory in a shared volume for a symlink to `/` and
/// back, as fast as it can, while `rounds` Wasm containers with that working directory start
/// and list it: no guest ever lists the host's root.
pub fn check_symlink_race(c: &Containerd, runtime: &[String], guest: &str, rounds: usize) {
    let dir = c.dir().join("race");
    let root = rootfs(&dir, guest);
    let volume = dir.join("volume");
    let work = volume.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    std::fs::write(work.join("mine.txt"), "x").expect("write");
    let stop = Arc::new(AtomicBool::new(false));
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
            while !stop.load(Ordering::Relaxed) {
                // work is a directory -> a symlink to / -> the directory again.
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
    for i in 0..rounds {
        let id = format!("race-{i}");
        let config = spec(&dir.join(&id), &root, &["/app.wasm", "ls", "."], |cfg| {
            cfg["process"]["cwd"] = "/vol/work".into();
            with_volume(cfg, &volume);
        });
        let out = ctr_run(c, runtime, "--rm", &config, &id);
        // What a guest may see: its working directory; the rootfs, where the swap left a link
        // to `/` (the container's root, in there: a runtime may have made mount points in
        // it); the volume while the directory was moved away; or no working directory at all
        // (`error: NotFound`). Never anything only the host's root holds.
        let mut allowed = names(&root);
        allowed.extend(names(&volume));
        allowed.extend(["mine.txt", "link", "work", "real"].map(String::from));
        for name in out.stdout.lines().filter(|l| !l.starts_with("error: ")) {
            assert!(
                allowed.iter().any(|a| a == name),
                "{id} listed {name:?}, which only the host's root holds: {out:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    assert!(swaps > 0, "the sidecar never swapped");
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
