//! The parity table: one list of guest behaviours, each with the stdout and exit status
//! expected, run through every way wasmcell runs a container (`wasmcell run --bundle`, the
//! shim in normal and in shared mode, `wasmcell-oci` under containerd's runc shim and under
//! Podman). Each path's test crate turns a [`Container`] into its own command and hands back an
//! [`Outcome`]; [`check_parity`] runs the whole table, for small and real-sized (over 1 MiB)
//! guests alike, and fails listing every case that differs.
//!
//! Every case runs on a fresh copy of its rootfs: `/app.wasm` (the guest), `/data/in.txt`, and a
//! directory of the host mounted read-only at [`RO_DEST`] when the case asks for it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where a case's read-only host directory is mounted in the container.
pub const RO_DEST: &str = "/ro";
/// The memory limit of the memory cases (bytes).
pub const MEMORY_LIMIT: u64 = 64 << 20;
/// The line the real-sized probe prints for `bulk`: its generated functions run over its
/// generated data (`guests/probe/build.rs`, deterministic), the same on every path.
pub const BULK_LINE: &str = "bulk 95646eb519346342\n";
/// How long one case may take before it counts as hung (a cold compile of a real-sized
/// module by a debug build is the slowest step).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// What one case expects.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Exit status (`128 + signal` for a container stopped by a signal).
    pub code: i32,
    /// The container's whole stdout.
    pub stdout: String,
    /// Text the container's stderr must hold, if any.
    pub stderr_has: Option<&'static str>,
    /// A file of the rootfs (relative path) and the content the guest left in it.
    pub file: Option<(&'static str, &'static str)>,
}

/// One behaviour of the table.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name, also the container id's suffix.
    pub name: &'static str,
    /// `process.args`, `/app.wasm` first.
    pub args: Vec<String>,
    /// `process.env` entries beyond what the path adds.
    pub env: Vec<(String, String)>,
    /// Mount a host directory holding `shared.txt` at [`RO_DEST`], read-only.
    pub ro_mount: bool,
    /// Set the container's memory limit to [`MEMORY_LIMIT`].
    pub memory_limit: bool,
    /// The guest spins: once its stdout shows `spinning`, the path stops it with SIGTERM.
    pub stop: bool,
    /// What must come out.
    pub expect: Expect,
}

/// A case made concrete for one path: what the path's runner turns into its command.
#[derive(Debug)]
pub struct Container<'a> {
    /// A container id unique within the run.
    pub id: String,
    /// The rootfs directory (absolute).
    pub rootfs: PathBuf,
    /// `process.args`.
    pub args: &'a [String],
    /// `process.env` entries to set.
    pub env: &'a [(String, String)],
    /// The host directory to mount read-only at [`RO_DEST`].
    pub ro_source: Option<PathBuf>,
    /// The memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// Whether the runner must stop the container with SIGTERM once it prints `spinning`
    /// ([`run_until_stopped`]).
    pub stop: bool,
}

/// How a container ended, as the path reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status; `128 + signal` when the process was ended by a signal.
    pub code: i32,
    /// Everything the container wrote to stdout.
    pub stdout: String,
    /// Everything the container (and the path's tool) wrote to stderr.
    pub stderr: String,
}

impl Outcome {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

fn args(list: &[&str]) -> Vec<String> {
    std::iter::once("/app.wasm")
        .chain(list.iter().copied())
        .map(str::to_string)
        .collect()
}

fn expect(code: i32, stdout: &str) -> Expect {
    Expect {
        code,
        stdout: stdout.to_string(),
        stderr_has: None,
        file: None,
    }
}

fn case(name: &'static str, argv: &[&str], expect: Expect) -> Case {
    Case {
        name,
        args: args(argv),
        env: Vec::new(),
        ro_mount: false,
        memory_limit: false,
        stop: false,
        expect,
    }
}

/// The table for one guest (`big`: the real-sized probe, which also has `bulk`; `component`:
/// a WASI 0.2 component rather than a core module).
pub fn cases(big: bool, component: bool) -> Vec<Case> {
    // WASI 0.2's `exit` carries only ok or error (Rust's std maps `exit(42)` to error): a
    // component exits 1, on every path; WASI 0.1's `proc_exit` carries the number.
    let exit_code = if component { 1 } else { 42 };
    let mut cases = vec![
        case(
            "hello",
            &["hello"],
            expect(0, "Hello from a wasmcell guest!\n"),
        ),
        case(
            "args",
            &["args", "one", "two words"],
            expect(0, "/app.wasm\nargs\none\ntwo words\n"),
        ),
        Case {
            env: vec![("GREETING".into(), "hello there".into())],
            ..case(
                "env",
                &["getenv", "GREETING"],
                expect(0, "GREETING=hello there\n"),
            )
        },
        case(
            "read",
            &["read", "/data/in.txt"],
            expect(0, "from the rootfs\n"),
        ),
        case(
            "write",
            &["write", "/data/out.txt", "written by the guest"],
            Expect {
                file: Some(("data/out.txt", "written by the guest")),
                ..expect(0, "wrote /data/out.txt\n")
            },
        ),
        Case {
            ro_mount: true,
            ..case(
                "ro-read",
                &["read", "/ro/shared.txt"],
                expect(0, "shared read-only\n"),
            )
        },
        Case {
            ro_mount: true,
            ..case(
                "ro-write",
                &["write", "/ro/new.txt", "x"],
                // WASI's EPERM: the grant is read-only, whatever the host mount would say.
                expect(1, "error: PermissionDenied (errno 63)\n"),
            )
        },
        case("exit", &["exit", "42"], expect(exit_code, "")),
        case(
            "trap",
            &["trap"],
            Expect {
                stderr_has: Some("guest trapped"),
                ..expect(134, "")
            },
        ),
        Case {
            memory_limit: true,
            ..case("mem-ok", &["alloc", "8"], expect(0, "allocated 8 MiB\n"))
        },
        Case {
            memory_limit: true,
            ..case("mem-over", &["alloc", "256"], expect(137, ""))
        },
        Case {
            stop: true,
            ..case("stop", &["spin"], expect(143, "spinning\n"))
        },
    ];
    if big {
        cases.push(case("bulk", &["bulk"], expect(0, BULK_LINE)));
    }
    cases
}

/// Run the whole table through one path for every guest in `small` and `big` (module paths;
/// `big` are the real-sized probes, which also have `bulk`), in fresh directories under
/// `work`; panics listing every case whose outcome is not the one expected. `path` names the
/// path in the report and in the container ids.
pub fn check_parity(
    path: &str,
    work: &Path,
    small: &[&str],
    big: &[&str],
    mut run: impl FnMut(&Container) -> Outcome,
) {
    let mut failures = Vec::new();
    let mut ran = 0;
    let guests = small
        .iter()
        .map(|m| (*m, false))
        .chain(big.iter().map(|m| (*m, true)));
    for (module, is_big) in guests {
        let guest = guest_name(module);
        let component = std::fs::read(module)
            .map(|b| b.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00][..]))
            .unwrap_or(false);
        for case in cases(is_big, component) {
            let dir = work.join(format!("{guest}-{}", case.name));
            let id = format!("{path}-{guest}-{}", case.name);
            let container = materialize(&dir, module, &case, id);
            let outcome = run(&container);
            ran += 1;
            if let Some(why) = mismatch(&case.expect, &outcome, &container.rootfs) {
                failures.push(format!("{guest} {}: {why}\n  got {outcome:?}", case.name));
            }
        }
    }
    assert!(ran > 0, "{path}: no case ran");
    assert!(
        failures.is_empty(),
        "{path}: {} of {ran} cases differ from the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `probe-p1`, `probe-big-p2`, ...: the module's name and its WASI version (from the
/// `wasm32-wasipN` directory it was built in).
fn guest_name(module: &str) -> String {
    let path = Path::new(module);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let target = path
        .ancestors()
        .filter_map(|p| p.file_name()?.to_str())
        .find_map(|name| name.strip_prefix("wasm32-wasi"))
        .map(str::to_string);
    match (stem, target) {
        (Some(stem), Some(target)) => format!("{stem}-{target}"),
        (Some(stem), None) => stem,
        _ => "guest".to_string(),
    }
}

fn materialize<'a>(dir: &Path, module: &str, case: &'a Case, id: String) -> Container<'a> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("data")).expect("mkdir rootfs/data");
    std::fs::copy(module, rootfs.join("app.wasm")).expect("copy the guest into the rootfs");
    std::fs::write(rootfs.join("data/in.txt"), "from the rootfs\n").expect("write in.txt");
    let ro_source = case.ro_mount.then(|| {
        let ro = dir.join("ro");
        std::fs::create_dir_all(&ro).expect("mkdir ro");
        std::fs::write(ro.join("shared.txt"), "shared read-only\n").expect("write shared.txt");
        ro
    });
    Container {
        id,
        rootfs,
        args: &case.args,
        env: &case.env,
        ro_source,
        memory_limit: case.memory_limit.then_some(MEMORY_LIMIT),
        stop: case.stop,
    }
}

fn mismatch(expect: &Expect, got: &Outcome, rootfs: &Path) -> Option<String> {
    if got.code != expect.code {
        return Some(format!(
            "exit status {} (expected {})",
            got.code, expect.code
        ));
    }
    if got.stdout != expect.stdout {
        return Some(format!(
            "stdout {:?} (expected {:?})",
            got.stdout, expect.stdout
        ));
    }
    if let Some(text) = expect.stderr_has {
        if !got.stderr.contains(text) {
            return Some(format!("stderr lacks {text:?}"));
        }
    }
    if let Some((file, content)) = expect.file {
        let found = std::fs::read_to_string(rootfs.join(file)).unwrap_or_default();
        if found != content {
            return Some(format!("{file} holds {found:?} (expected {content:?})"));
        }
    }
    None
}

impl Container<'_> {
    /// Write an OCI bundle for this container at `dir` (`config.json`, root at the rootfs)
    /// and return its path, for runtimes that take a bundle directly.
    pub fn write_bundle(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("mkdir bundle");
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mounts: Vec<serde_json::Value> = self
            .ro_source
            .iter()
            .map(|src| {
                serde_json::json!({
                    "destination": RO_DEST, "type": "bind",
                    "source": src, "options": ["rbind", "ro"],
                })
            })
            .collect();
        let mut config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                        "args": self.args, "env": env, "cwd": "/"},
            "root": {"path": self.rootfs},
            "mounts": mounts,
        });
        if let Some(limit) = self.memory_limit {
            config["linux"] = serde_json::json!({"resources": {"memory": {"limit": limit}}});
        }
        let text = serde_json::to_vec_pretty(&config).expect("config json");
        std::fs::write(dir.join("config.json"), text).expect("write config.json");
        dir.to_path_buf()
    }

    /// `ctr run` flags for this container's env, mount and memory limit (before the
    /// `--rootfs DIR ID ARGS...` part).
    pub fn ctr_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (k, v) in self.env {
            flags.extend(["--env".to_string(), format!("{k}={v}")]);
        }
        if let Some(src) = &self.ro_source {
            flags.extend([
                "--mount".to_string(),
                format!(
                    "type=bind,src={},dst={RO_DEST},options=rbind:ro",
                    src.display()
                ),
            ]);
        }
        if let Some(limit) = self.memory_limit {
            flags.extend(["--memory-limit".to_string(), limit.to_string()]);
        }
        flags
    }
}

/// Run `cmd` to its end (stdin closed, output through files), killed and reported as hung
/// after [`CASE_TIMEOUT`].
pub fn run_to_end(cmd: Command) -> Outcome {
    run_until_stopped(cmd, None::<fn(u32)>)
}

/// Run `cmd` to its end, killed (and this panicking, naming it) after `timeout`.
pub fn run_with_deadline(cmd: Command, timeout: Duration) -> Outcome {
    run_bounded(cmd, None::<fn(u32)>, timeout)
}

/// Run `cmd`; when `stop` is given, call it with the command's pid once the container's stdout
/// shows `spinning`, then wait for the end. Panics when the command hangs past
/// [`CASE_TIMEOUT`].
pub fn run_until_stopped(cmd: Command, stop: Option<impl FnOnce(u32)>) -> Outcome {
    run_bounded(cmd, stop, CASE_TIMEOUT)
}

fn run_bounded(mut cmd: Command, stop: Option<impl FnOnce(u32)>, timeout: Duration) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir for output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let mut stop = stop;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if stop.is_some() && read(&out_path).contains("spinning") {
            if let Some(stop) = stop.take() {
                stop(child.id());
            }
        }
        if Instant::now() > deadline {
            kill(&mut child);
            panic!(
                "{cmd:?} did not finish within {timeout:?}; stdout {:?}, stderr {:?}",
                read(&out_path),
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt as _;
    Outcome {
        code: status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Run `container` through `ctr run --rm` on containerd `c`, with `runtime` naming the runtime
/// (`--runtime R`, and for the runc shim `--runc-binary B --runc-root D`) and the rootfs given
/// as a directory (`--rootfs`); a stopping case is stopped with `ctr task kill -s SIGTERM`.
pub fn ctr_run(c: &crate::Containerd, runtime: &[String], container: &Container) -> Outcome {
    let mut cmd = c.ctr();
    cmd.args(["run", "--rm"])
        .args(runtime)
        .args(container.ctr_flags())
        .arg("--rootfs")
        .arg(&container.rootfs)
        .arg(&container.id)
        .args(container.args);
    let stop = container.stop.then_some(|_pid: u32| {
        let out = c.run_ctr(&["task", "kill", "-s", "SIGTERM", &container.id]);
        assert!(out.success(), "ctr task kill {}: {out:?}", container.id);
    });
    run_until_stopped(cmd, stop)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
