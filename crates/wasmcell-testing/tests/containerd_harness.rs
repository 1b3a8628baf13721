//! Proves the harness against a real containerd: start/stop, restart, image import, a running
//! task surviving a restart, and cleanup on drop. Must run as root; never skipped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wasmcell_testing::{
    mounts_under, pids_with_cmdline_containing, require_root, Containerd, ImageBuilder,
    CRI_NAMESPACE, PAUSE_IMAGE,
};

const IMAGE: &str = "docker.io/library/harness-test:latest";

/// Drop `cd` and check nothing of it is left: no process mentioning its directory (containerd
/// itself, shims), no mount under it, no directory.
fn drop_and_check_clean(cd: Containerd) {
    let dir = cd.dir().to_path_buf();
    let needle = dir.to_string_lossy().into_owned();
    assert!(
        !pids_with_cmdline_containing(&needle).is_empty(),
        "containerd should be running before the drop"
    );
    drop(cd);
    let pids = pids_with_cmdline_containing(&needle);
    assert!(pids.is_empty(), "processes left for {needle}: {pids:?}");
    let mounts = mounts_under(&dir);
    assert!(mounts.is_empty(), "mounts left under {needle}: {mounts:?}");
    assert!(!dir.exists(), "{needle} was not removed");
}

fn assert_ctr_ok(cd: &Containerd, args: &[&str]) -> String {
    let out = cd.run_ctr(args);
    assert!(
        out.success(),
        "`ctr {}` failed: {out:?}\ncontainerd log tail:\n{}",
        args.join(" "),
        cd.log_tail(40)
    );
    out.stdout
}

#[test]
fn start_version_and_drop_cleans_up() {
    require_root();
    let cd = Containerd::start();
    let version = assert_ctr_ok(&cd, &["version"]);
    assert!(version.contains("Server:"), "{version}");
    assert!(cd.socket().starts_with(cd.dir()));
    assert!(cd.root_dir().is_dir() && cd.state_dir().is_dir());
    assert!(cd.namespace().starts_with("wasmcell-test-"));
    assert!(["overlayfs", "native"].contains(&cd.snapshotter()));
    assert!(cd.log().contains("containerd successfully booted"));

    // The namespace exists and names its default snapshotter.
    let namespaces = assert_ctr_ok(&cd, &["namespaces", "ls"]);
    let line = namespaces
        .lines()
        .find(|l| l.split_whitespace().next() == Some(cd.namespace()))
        .expect("our namespace is listed");
    assert!(
        line.contains(&format!(
            "containerd.io/defaults/snapshotter={}",
            cd.snapshotter()
        )),
        "{line}"
    );

    // Something still mounted under the directory (nested) is unmounted by the drop.
    let outer = cd.dir().join("leftover-mount");
    fs::create_dir(&outer).expect("create mount point");
    mount_tmpfs(&outer);
    let inner = outer.join("nested");
    fs::create_dir(&inner).expect("create nested mount point");
    mount_tmpfs(&inner);
    assert_eq!(mounts_under(cd.dir()), vec![inner, outer]);

    drop_and_check_clean(cd);
}

#[test]
fn instances_are_private() {
    require_root();
    let a = Containerd::start();
    let b = Containerd::start();
    assert_ne!(a.socket(), b.socket());
    assert_ne!(a.namespace(), b.namespace());
    assert_ctr_ok(&a, &["version"]);
    assert_ctr_ok(&b, &["version"]);
    drop_and_check_clean(a);
    // `b` is unaffected by the other's drop.
    assert_ctr_ok(&b, &["version"]);
    drop_and_check_clean(b);
}

#[test]
fn restart_works() {
    require_root();
    let mut cd = Containerd::start();
    let first = cd.pid().expect("containerd runs");
    cd.restart();
    let second = cd.pid().expect("containerd runs again");
    assert_ne!(first, second);
    assert!(
        !Path::new(&format!("/proc/{first}")).exists(),
        "old containerd {first} still exists"
    );
    assert_ctr_ok(&cd, &["version"]);
    // Metadata survives: our namespace is still there.
    let namespaces = assert_ctr_ok(&cd, &["namespaces", "ls", "-q"]);
    assert!(
        namespaces.lines().any(|l| l == cd.namespace()),
        "{namespaces}"
    );
    cd.restart();
    assert_ctr_ok(&cd, &["version"]);
    drop_and_check_clean(cd);
}

#[test]
fn import_oci_archive() {
    require_root();
    let cd = Containerd::start();
    let work = tempfile::tempdir().expect("temp dir for the archive");
    let archive = work.path().join("harness-test.tar");
    write_wasm_oci_archive(&archive);
    cd.import(&archive);
    eprintln!("imported into the {} snapshotter", cd.snapshotter());

    let images = assert_ctr_ok(&cd, &["images", "ls", "-q"]);
    assert!(images.lines().any(|l| l == IMAGE), "images: {images:?}");
    let check = assert_ctr_ok(&cd, &["images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with(IMAGE))
        .expect("image listed by `ctr images check`");
    assert!(line.contains("complete"), "{line}");
    // The import unpacked the layer into our snapshotter.
    let snapshots = assert_ctr_ok(&cd, &["snapshots", "--snapshotter", cd.snapshotter(), "ls"]);
    assert!(
        snapshots.lines().skip(1).any(|l| l.contains("Committed")),
        "no committed snapshot in {}: {snapshots}",
        cd.snapshotter()
    );
    drop_and_check_clean(cd);
}

#[test]
fn running_task_survives_restart_and_is_cleaned_up() {
    require_root();
    let mut cd = Containerd::start();
    let rootfs = tempfile::tempdir().expect("temp dir for the rootfs");
    copy_with_libraries(Path::new("/bin/sleep"), rootfs.path());
    let rootfs_arg = rootfs.path().to_str().expect("UTF-8 temp path");
    assert_ctr_ok(
        &cd,
        &[
            "run",
            "-d",
            "--rootfs",
            rootfs_arg,
            "sleeper",
            "/bin/sleep",
            "1000",
        ],
    );
    let shim_before = shim_pids(&cd);
    assert_eq!(shim_before.len(), 1, "one shim expected: {shim_before:?}");
    wait_for_status(&cd, "sleeper", "RUNNING");

    cd.restart();
    wait_for_status(&cd, "sleeper", "RUNNING");
    assert_eq!(shim_pids(&cd), shim_before, "the shim survives the restart");

    // A second container without a task is removed by the drop too.
    assert_ctr_ok(
        &cd,
        &[
            "containers",
            "create",
            "--rootfs",
            rootfs_arg,
            "idle",
            "/bin/sleep",
            "1",
        ],
    );
    let namespace = cd.namespace().to_string();
    drop_and_check_clean(cd);
    for pid in shim_before {
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()),
            "shim {pid} survived the drop"
        );
    }
    let runc_state = PathBuf::from("/run/containerd/runc").join(&namespace);
    assert!(!runc_state.exists(), "{} left behind", runc_state.display());
    // `ctr run` put the task in the cgroup /<namespace>/<id>; the empty parents are removed.
    let cgroups: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .expect("list /sys/fs/cgroup")
        .filter_map(Result::ok)
        .map(|e| e.path().join(&namespace))
        .chain([Path::new("/sys/fs/cgroup").join(&namespace)])
        .filter(|p| p.exists())
        .collect();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let sleepers = pids_with_cmdline_containing("/bin/sleep 1000");
    let ours: Vec<u32> = sleepers
        .into_iter()
        .filter(|pid| fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == rootfs.path()))
        .collect();
    assert!(ours.is_empty(), "container process survived: {ours:?}");
}

#[test]
fn extra_path_dirs_are_searched_for_shims() {
    require_root();
    // A fake shim that records how containerd invoked it, then fails.
    let bin = tempfile::tempdir().expect("temp dir for the fake shim");
    let marker = bin.path().join("invoked");
    let script = bin.path().join("containerd-shim-harnessfake-v1");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho 'fake shim refuses' >&2\nexit 1\n",
            marker.display()
        ),
    )
    .expect("write fake shim");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod fake shim");
    let rootfs = tempfile::tempdir().expect("temp dir for the rootfs");
    let rootfs_arg = rootfs.path().to_str().expect("UTF-8 temp path");
    let run = [
        "run",
        "--runtime",
        "io.containerd.harnessfake.v1",
        "--rootfs",
        rootfs_arg,
        "fake",
        "/none",
    ];

    let plain = Containerd::start();
    let out = plain.run_ctr(&run);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("containerd-shim-harnessfake-v1"),
        "{out:?}"
    );
    assert!(
        !marker.exists(),
        "the fake shim must not be found without the extra dir"
    );
    drop_and_check_clean(plain);

    let cd = Containerd::start_with_path(&[bin.path().to_path_buf()]);
    let out = cd.run_ctr(&run);
    assert!(!out.success(), "{out:?}");
    let invoked = fs::read_to_string(&marker).expect("containerd ran the fake shim");
    assert!(invoked.contains(cd.namespace()), "{invoked}");
    assert!(invoked.contains(" start"), "{invoked}");
    assert!(out.stderr.contains("fake shim refuses"), "{out:?}");
    drop_and_check_clean(cd);
}

#[test]
fn cri_mode_loads_the_cri_plugin_and_imports_into_k8s_io() {
    require_root();
    let cd = Containerd::start_cri_with_pause(&[]);
    assert!(cd.cri_enabled());
    assert_eq!(cd.sandbox_image(), Some(PAUSE_IMAGE));
    let config = fs::read_to_string(cd.config_path()).expect("read config");
    assert!(config.contains("runtimes.wasmcell]"), "{config}");
    assert!(config.contains("restrict_oom_score_adj = true"), "{config}");
    let plugins = assert_ctr_ok(&cd, &["plugins", "ls"]);
    assert!(
        plugins
            .lines()
            .any(|l| l.starts_with("io.containerd.grpc.v1")
                && l.contains(" cri ")
                && l.trim_end().ends_with("ok")),
        "{plugins}"
    );
    // The pause image sits in k8s.io, unpacked into the namespace's default snapshotter.
    let out = cd.run_ctr_in(CRI_NAMESPACE, &["images", "ls", "-q"]);
    assert!(out.stdout.lines().any(|l| l == PAUSE_IMAGE), "{out:?}");
    let namespaces = assert_ctr_ok(&cd, &["namespaces", "ls"]);
    assert!(
        namespaces.lines().any(|l| l.starts_with(CRI_NAMESPACE)
            && l.contains(&format!("snapshotter={}", cd.snapshotter()))),
        "{namespaces}"
    );
    let out = cd.run_ctr_in(
        CRI_NAMESPACE,
        &["snapshots", "--snapshotter", cd.snapshotter(), "ls"],
    );
    assert!(
        out.stdout.lines().skip(1).any(|l| l.contains("Committed")),
        "{out:?}"
    );
    // A pod cgroup parent lives under the instance's own top-level cgroup.
    assert_eq!(
        cd.pod_cgroup_parent("u1"),
        format!("/{}/podu1", cd.namespace())
    );
    // A plain task in k8s.io (not through CRI) is removed by the drop too.
    let rootfs = tempfile::tempdir().expect("temp dir for the rootfs");
    copy_with_libraries(Path::new("/bin/sleep"), rootfs.path());
    let rootfs_arg = rootfs.path().to_str().expect("UTF-8 temp path");
    let out = cd.run_ctr_in(
        CRI_NAMESPACE,
        &[
            "run",
            "-d",
            "--rootfs",
            rootfs_arg,
            "k8s-sleeper",
            "/bin/sleep",
            "1000",
        ],
    );
    assert!(out.success(), "{out:?}");
    drop_and_check_clean(cd);
    let _ = fs::remove_dir(Path::new("/run/containerd/runc").join(CRI_NAMESPACE));
}

/// Shim processes serving this containerd (their command line names its socket).
fn shim_pids(cd: &Containerd) -> Vec<u32> {
    let socket = cd.socket().to_string_lossy().into_owned();
    pids_with_cmdline_containing(&socket)
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("containerd-shim"))
        })
        .collect()
}

fn wait_for_status(cd: &Containerd, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cd.run_ctr(&["tasks", "ls"]);
        let found = out.stdout.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&id) && cols.last() == Some(&status)
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} not {status}: {out:?}\nlog tail:\n{}",
            cd.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mount_tmpfs(at: &Path) {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(at)
        .status()
        .expect("run mount");
    assert!(status.success(), "mount tmpfs on {}", at.display());
}

/// Copy `binary` and the shared libraries `ldd` lists into `rootfs`, at the same paths.
fn copy_with_libraries(binary: &Path, rootfs: &Path) {
    let ldd = Command::new("ldd").arg(binary).output().expect("run ldd");
    assert!(ldd.status.success(), "ldd {}: {ldd:?}", binary.display());
    let mut files = vec![binary.to_path_buf()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            files.push(PathBuf::from(path));
        }
    }
    for file in files {
        let target = rootfs.join(file.strip_prefix("/").expect("absolute path"));
        fs::create_dir_all(target.parent().expect("has a parent")).expect("create lib dir");
        fs::copy(&file, &target).expect("copy into rootfs");
    }
}

/// A minimal Wasm image archive: one layer holding `app.wasm`, the entrypoint.
fn write_wasm_oci_archive(path: &Path) {
    ImageBuilder::new(IMAGE)
        .platform("wasi", "wasm")
        .file("/app.wasm", b"\0asm\x01\0\0\0".to_vec(), 0o755)
        .entrypoint(["/app.wasm"])
        .write_archive(path)
        .expect("write archive");
}
