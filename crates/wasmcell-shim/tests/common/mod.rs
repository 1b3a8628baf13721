//! Shared set-up for the shim's integration tests: a private containerd that finds the freshly
//! built `containerd-shim-wasmcell-v1`, and Wasm images built from the test guests.
#![allow(dead_code)]

pub mod api;
pub mod shared_mode;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmcell_image::ImageSpec;
use wasmcell_testing::{Containerd, CtrOutput};

pub const RUNTIME: &str = "io.containerd.wasmcell.v1";
pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-wasmcell-v1");

/// A private containerd whose PATH holds the shim under test.
pub fn containerd() -> Containerd {
    let dir = Path::new(SHIM).parent().expect("shim dir").to_path_buf();
    Containerd::start_with_path(&[dir])
}

/// A private containerd whose PATH holds the shim under its shared-mode name (a link, as the
/// installer makes it) in the returned directory, and under its own name.
pub fn shared_containerd() -> (Containerd, tempfile::TempDir) {
    shared_containerd_with_env(&[])
}

/// [`shared_containerd`] with `env` added to containerd's environment (its shims and the
/// manager inherit it).
pub fn shared_containerd_with_env(env: &[(&str, &str)]) -> (Containerd, tempfile::TempDir) {
    let bin = tempfile::tempdir().expect("bin dir");
    std::os::unix::fs::symlink(SHIM, bin.path().join(wasmcell_shim::SHARED_BINARY_NAME))
        .expect("link shared shim");
    let shim_dir = Path::new(SHIM).parent().expect("shim dir").to_path_buf();
    let c = Containerd::start_with_env(&[bin.path().to_path_buf(), shim_dir], env);
    (c, bin)
}

/// Build an image holding `module` at /app.wasm and import it; returns its reference.
pub fn import_image(c: &Containerd, module: &str, name: &str) -> String {
    let reference = format!("docker.io/library/{name}:latest");
    let image = ImageSpec::new(module, &reference)
        .build()
        .expect("build image");
    let tar = c.dir().join(format!("{name}.tar"));
    image.write_archive(&tar).expect("write image archive");
    c.import(&tar);
    reference
}

/// `ctr run --rm --runtime io.containerd.wasmcell.v1 [extra...] IMAGE ID [args...]`
pub fn run(c: &Containerd, extra: &[&str], image: &str, id: &str, args: &[&str]) -> CtrOutput {
    let mut argv = vec!["run", "--rm", "--runtime", RUNTIME];
    argv.extend_from_slice(extra);
    argv.push(image);
    argv.push(id);
    argv.extend_from_slice(args);
    c.run_ctr(&argv)
}

/// A rootfs directory holding `bytes` at /app.wasm (for `ctr run --rootfs`).
pub fn rootfs_with(c: &Containerd, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = c.dir().join("rootfs").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir rootfs");
    std::fs::write(dir.join("app.wasm"), bytes).expect("write module");
    dir
}

/// Shim processes serving this containerd (their command line names its socket).
pub fn shims_of(c: &Containerd) -> Vec<u32> {
    let socket = c.socket().display().to_string();
    wasmcell_testing::pids_with_cmdline_containing(&socket)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).contains("containerd-shim-wasmcell-v1"))
                .unwrap_or(false)
        })
        .collect()
}

/// Task lines of `ctr tasks ls` (without the header).
pub fn tasks(c: &Containerd) -> Vec<String> {
    let out = c.run_ctr(&["tasks", "ls"]);
    assert!(out.success(), "{out:?}");
    out.stdout.lines().skip(1).map(str::to_string).collect()
}

/// Assert that nothing of the shim is left: no shim process, no task, no container, no bundle.
pub fn assert_clean(c: &Containerd) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shims_of(c).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(shims_of(c), Vec::<u32>::new(), "shim processes left behind");
    assert_eq!(tasks(c), Vec::<String>::new(), "tasks left behind");
    let out = c.run_ctr(&["containers", "ls", "-q"]);
    assert_eq!(out.stdout.trim(), "", "containers left behind");
    let bundles = c
        .state_dir()
        .join("io.containerd.runtime.v2.task")
        .join(c.namespace());
    let left: Vec<_> = std::fs::read_dir(&bundles)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "bundles left behind: {left:?}");
}

/// The status column `ctr tasks ls` shows for task `id`.
pub fn task_status(c: &Containerd, id: &str) -> Option<String> {
    tasks(c).into_iter().find_map(|line| {
        let cols: Vec<_> = line.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
    })
}

/// Wait (bounded) until the task is stopped, delete it and its container, and return the exit
/// status `ctr tasks delete` reports.
pub fn wait_exit(c: &Containerd, id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while task_status(c, id).as_deref() != Some("STOPPED") {
        assert!(
            Instant::now() < deadline,
            "task {id} did not stop: {:?}",
            tasks(c)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = c.run_ctr(&["tasks", "delete", id]);
    assert!(out.success(), "{out:?}");
    let out_c = c.run_ctr(&["containers", "delete", id]);
    assert!(out_c.success(), "{out_c:?}");
    match out.stderr.split("exit with non-zero exit code ").nth(1) {
        Some(rest) => rest
            .split(|ch: char| !ch.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unparsable exit code in {out:?}")),
        None => 0,
    }
}

/// The events containerd publishes (`ctr events` lines) while `during` runs.
pub fn events_during(c: &Containerd, during: impl FnOnce()) -> String {
    let mut events = c
        .ctr()
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ctr events");
    std::thread::sleep(Duration::from_millis(300));
    during();
    std::thread::sleep(Duration::from_millis(300));
    let _ = events.kill();
    let out = events.wait_with_output().expect("ctr events output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write `module` as a Wasm artifact for `os` named `reference` and import it without
/// unpacking (the only way ctr takes it); returns the layer's digest.
pub fn import_artifact(c: &Containerd, module: &str, os: &str, reference: &str) -> String {
    import_artifact_into(c, c.namespace(), module, os, reference)
}

/// [`import_artifact`] into containerd namespace `namespace`.
pub fn import_artifact_into(
    c: &Containerd,
    namespace: &str,
    module: &str,
    os: &str,
    reference: &str,
) -> String {
    let bytes = std::fs::read(module).expect("read guest");
    let digest = c.import_wasm_artifact(namespace, os, &bytes, reference);
    let listed = c.run_ctr_in(namespace, &["images", "ls", "-q"]);
    assert!(listed.stdout.contains(reference), "{listed:?}");
    digest
}

/// `ctr run --rm --runtime RUNTIME --annotation wasmcell.dev/image=IMAGE --rootfs <empty dir>
/// ID [args...]`
pub fn run_artifact(
    c: &Containerd,
    runtime: &str,
    image: &str,
    id: &str,
    args: &[&str],
) -> CtrOutput {
    let rootfs = c.dir().join("empty-rootfs").join(id);
    std::fs::create_dir_all(&rootfs).expect("mkdir rootfs");
    let rootfs = rootfs.display().to_string();
    let annotation = format!("wasmcell.dev/image={image}");
    let mut argv = vec![
        "run",
        "--rm",
        "--runtime",
        runtime,
        "--annotation",
        &annotation,
        "--rootfs",
        &rootfs,
        id,
    ];
    argv.extend_from_slice(args);
    c.run_ctr(&argv)
}
