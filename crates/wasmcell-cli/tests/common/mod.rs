//! Helpers for running the `wasmcell` binary in tests: every run has a deadline, so a hang
//! fails the test instead of stalling the suite.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn wasmcell() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmcell"));
    cmd.env_remove("RUST_LOG").env(
        "WASMCELL_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache"),
    );
    cmd
}

/// Run `cmd` to its end (killing it past [`DEADLINE`]) and collect its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wasmcell");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("{cmd:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().expect("stdout thread"),
        stderr: err_t.join().expect("stderr thread"),
    }
}

/// `wasmcell run [flags...] MODULE [args...]`
pub fn run_module(flags: &[&str], module: &str, args: &[&str]) -> Output {
    let mut cmd = wasmcell();
    cmd.arg("run").args(flags).arg(module).args(args);
    run(cmd)
}

/// `wasmcell run --bundle DIR`
pub fn run_bundle(bundle: &Path) -> Output {
    let mut cmd = wasmcell();
    cmd.arg("run").arg("--bundle").arg(bundle);
    run(cmd)
}

/// Compile WAT text to a module file in `dir`.
pub fn wat_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(text).expect("valid wat")).expect("write module");
    path.display().to_string()
}

/// An OCI bundle at `dir`: rootfs/ holding `module` at `/app.wasm`, and a config.json made of
/// `process` and `mounts` JSON plus optional `linux`.
pub fn bundle(
    dir: &Path,
    module: &str,
    process: serde_json::Value,
    mounts: serde_json::Value,
    linux: Option<serde_json::Value>,
) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir rootfs");
    std::fs::copy(module, rootfs.join("app.wasm")).expect("copy module");
    let mut process = process;
    if process.get("user").is_none() {
        process["user"] = serde_json::json!({ "uid": 0, "gid": 0 });
    }
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": { "path": "rootfs" },
        "mounts": mounts,
    });
    if let Some(linux) = linux {
        config["linux"] = linux;
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .expect("write config.json");
}

/// wasi-libc errno values a denied write may carry.
pub const EACCES: i32 = 2;
pub const EPERM: i32 = 63;
pub const EROFS: i32 = 69;

/// The errno in a probe `error: ... (errno N)` line.
pub fn probe_errno(stdout: &str) -> Option<i32> {
    let tail = stdout.split("(errno ").nth(1)?;
    tail.split(')').next()?.parse().ok()
}
