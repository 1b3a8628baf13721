//! Shared set-up for wasmcell-oci's integration tests: the built binary, OCI bundles made with
//! `runc spec`, images built from the test guests and the host's busybox, and commands run with
//! deadlines so that no test hangs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmcell_image::ImageSpec;
use wasmcell_testing::{busybox_image, Containerd, CtrOutput};

/// The runtime under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wasmcell-oci");
/// containerd's runc shim, which drives `--runc-binary`.
pub const RUNC_SHIM: &str = "io.containerd.runc.v2";
/// Deadline of one runtime command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `cmd` with stdin closed, stdout and stderr captured through files (a container created
/// by the command may keep inherited pipes open long after the command ended), killed after
/// `timeout`.
pub use wasmcell_testing::parity::run_with_deadline;
/// What a command printed and how it ended.
pub use wasmcell_testing::parity::Outcome as Output;

/// `wasmcell-oci --root ROOT ARGS...`
pub fn oci(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--root").arg(root).args(args);
    run_with_deadline(cmd, COMMAND_TIMEOUT)
}

/// `wasmcell-oci --root ROOT ARGS...` with stdout going to `log` and stderr to `log.err` (which
/// the container's process inherits from `create`).
pub fn oci_to_file(root: &Path, args: &[&str], log: &Path) -> i32 {
    let file = std::fs::File::create(log).expect("create output file");
    let err = std::fs::File::create(log.with_extension("err")).expect("create error file");
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .expect("start wasmcell-oci");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wasmcell-oci {args:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `status` of `state ID`, or None when `state` fails.
pub fn status_of(run: fn(&Path, &[&str]) -> Output, root: &Path, id: &str) -> Option<String> {
    let out = run(root, &["state", id]);
    if !out.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    v["status"].as_str().map(str::to_string)
}

/// `runc --root ROOT ARGS...`
pub fn runc(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("runc");
    cmd.arg("--root").arg(root).args(args);
    run_with_deadline(cmd, COMMAND_TIMEOUT)
}

/// Ids with state under a runtime root.
pub fn ids_under(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A bundle at `dir` made by `runc spec`: no terminal, `args`, the rootfs at `dir/rootfs` (the
/// caller fills it), `annotations` added.
pub fn bundle(dir: &Path, args: &[&str], annotations: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("rootfs")).expect("mkdir rootfs");
    wasmcell_testing::hostile::spec(dir, Path::new("rootfs"), args, |config| {
        let mut notes = serde_json::Map::new();
        for (k, v) in annotations {
            notes.insert(k.to_string(), (*v).into());
        }
        if !notes.is_empty() {
            config["annotations"] = notes.into();
        }
    });
    dir.to_path_buf()
}

/// Put the host's static busybox at `/bin/busybox` of a bundle's rootfs, with `/bin/sh`.
pub fn busybox_rootfs(bundle: &Path) {
    let root = bundle.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(wasmcell_testing::HOST_BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    let _ = std::os::unix::fs::symlink("busybox", root.join("bin/sh"));
}

/// Put `bytes` at `/app.wasm` of a bundle's rootfs.
pub fn wasm_rootfs(bundle: &Path, bytes: &[u8]) {
    let root = bundle.join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir rootfs");
    std::fs::write(root.join("app.wasm"), bytes).expect("write module");
}

/// The runtime root the containerd tests give the runc shim (`--runc-root`).
pub fn oci_root(c: &Containerd) -> PathBuf {
    c.dir().join("oci-root")
}

/// `ctr run MODE --runtime io.containerd.runc.v2 --runc-binary BIN --runc-root R` (`MODE`:
/// `--rm` or `-d`), to which the caller adds flags, image, id and command.
pub fn ctr_run_argv(c: &Containerd, mode: &'static str) -> Vec<String> {
    ["run".to_string(), mode.to_string()]
        .into_iter()
        .chain(runc_shim_runtime(c))
        .collect()
}

/// `--runtime io.containerd.runc.v2 --runc-binary BIN --runc-root R`: the `ctr run` flags that
/// make containerd's runc shim drive wasmcell-oci.
pub fn runc_shim_runtime(c: &Containerd) -> Vec<String> {
    ["--runtime", RUNC_SHIM, "--runc-binary", BIN, "--runc-root"]
        .into_iter()
        .map(str::to_string)
        .chain([oci_root(c).display().to_string()])
        .collect()
}

/// `ctr run --rm --runtime io.containerd.runc.v2 --runc-binary BIN --runc-root R ... IMAGE ID`
pub fn ctr_run(c: &Containerd, extra: &[&str], image: &str, id: &str, args: &[&str]) -> CtrOutput {
    let base = ctr_run_argv(c, "--rm");
    let mut argv: Vec<&str> = base.iter().map(String::as_str).collect();
    argv.extend_from_slice(extra);
    argv.push(image);
    argv.push(id);
    argv.extend_from_slice(args);
    c.run_ctr(&argv)
}

/// Write a Wasm image holding `module` at /app.wasm to `dir/NAME.tar`; returns (reference, tar).
pub fn wasm_image(dir: &Path, module: &str, name: &str) -> (String, PathBuf) {
    wasm_image_at(dir, module, name, "/app.wasm")
}

/// [`wasm_image`] with the module (and entrypoint) at `entrypoint`.
pub fn wasm_image_at(dir: &Path, module: &str, name: &str, entrypoint: &str) -> (String, PathBuf) {
    let reference = format!("docker.io/library/{name}:latest");
    let mut spec = ImageSpec::new(module, &reference);
    spec.entrypoint = entrypoint.to_string();
    let image = spec.build().expect("build wasm image");
    let tar = dir.join(format!("{name}.tar"));
    image.write_archive(&tar).expect("write wasm image archive");
    (reference, tar)
}

/// Write a busybox image (entrypoint none) to `dir/NAME.tar`; returns (reference, tar).
pub fn busybox_archive(dir: &Path, name: &str) -> (String, PathBuf) {
    let reference = format!("docker.io/library/{name}:latest");
    let tar = dir.join(format!("{name}.tar"));
    busybox_image(&reference)
        .write_archive(&tar)
        .expect("write busybox image archive");
    (reference, tar)
}

/// Wait until `check` holds, up to `timeout`.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}
