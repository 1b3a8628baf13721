//! The shim's Task API spoken to directly over ttrpc, as containerd does: calls ctr cannot make
//! (create without start, kill before start) and the answers for unsupported calls.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{containerd, SHIM};
use containerd_shim::api::{
    CreateTaskRequest, DeleteRequest, ExecProcessRequest, KillRequest, PidsRequest,
    ResizePtyRequest, ShutdownRequest, StartRequest, StateRequest, Status, WaitRequest,
};
use containerd_shim::protos::shim::shim::{ConnectRequest, PauseRequest};
use containerd_shim::protos::shim_sync::TaskClient;
use containerd_shim::protos::ttrpc::{self, context, Client};
use wasmcell_test_guests as guests;
use wasmcell_testing::Containerd;

struct Shim {
    client: TaskClient,
    pid: u32,
}

/// A bundle at `dir/<id>` whose rootfs holds `module` at /app.wasm.
fn bundle(c: &Containerd, id: &str, module: &str, args: &[&str]) -> PathBuf {
    let dir = c.dir().join("bundles").join(id);
    std::fs::create_dir_all(dir.join("rootfs")).expect("mkdir");
    std::fs::copy(module, dir.join("rootfs/app.wasm")).expect("copy module");
    let mut argv = vec!["/app.wasm"];
    argv.extend_from_slice(args);
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": { "args": argv, "cwd": "/", "user": { "uid": 0, "gid": 0 }, "env": [] },
        "root": { "path": "rootfs" },
        "linux": { "cgroupsPath": format!("/{}/{id}", c.namespace()) },
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    dir
}

/// `containerd-shim-wasmcell-v1 start` as containerd runs it, then a ttrpc client to it.
fn start_shim(c: &Containerd, id: &str, bundle: &Path) -> Shim {
    let out = Command::new(SHIM)
        .args(["-namespace", c.namespace(), "-id", id, "-address"])
        .arg(c.socket())
        .arg("start")
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", c.ttrpc_socket())
        .output()
        .expect("run shim start");
    assert!(out.status.success(), "{out:?}");
    let address = String::from_utf8(out.stdout).expect("utf-8 address");
    assert!(address.starts_with("unix://"), "{address}");
    let client = Client::connect(&address).expect("connect to shim");
    let client = TaskClient::new(client);
    let connected = client
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .expect("connect");
    Shim {
        client,
        pid: connected.shim_pid,
    }
}

fn ctx() -> context::Context {
    context::with_timeout(Duration::from_secs(30).as_nanos() as i64)
}

fn create(shim: &Shim, id: &str, bundle: &Path) -> u32 {
    let out = bundle.join("stdout");
    std::fs::write(&out, "").expect("stdout file");
    let req = CreateTaskRequest {
        id: id.into(),
        bundle: bundle.display().to_string(),
        stdout: out.display().to_string(),
        ..Default::default()
    };
    shim.client.create(ctx(), &req).expect("create").pid
}

fn wait(shim: &Shim, id: &str) -> u32 {
    let req = WaitRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.client.wait(ctx(), &req).expect("wait").exit_status
}

fn code_of(err: ttrpc::Error) -> (ttrpc::Code, String) {
    match err {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a status: {other:?}"),
    }
}

fn status(shim: &Shim, id: &str) -> Status {
    let req = StateRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.client
        .state(ctx(), &req)
        .expect("state")
        .status
        .enum_value_or_default()
}

#[test]
fn kill_before_start_and_the_full_lifecycle_over_ttrpc() {
    let c = containerd();
    let sleeper = bundle(&c, "sleeper", guests::PROBE_P1, &["sleep", "600000"]);
    let shim = start_shim(&c, "sleeper", &sleeper);

    let pid = create(&shim, "sleeper", &sleeper);
    assert_eq!(status(&shim, "sleeper"), Status::CREATED);
    let pids = shim.client.pids(
        ctx(),
        &PidsRequest {
            id: "sleeper".into(),
            ..Default::default()
        },
    );
    assert_eq!(
        pids.expect("pids").processes.first().map(|p| p.pid),
        Some(pid)
    );

    // Kill before start: the prepared guest never runs.
    let kill = KillRequest {
        id: "sleeper".into(),
        signal: 15,
        ..Default::default()
    };
    shim.client.kill(ctx(), &kill).expect("kill");
    assert_eq!(wait(&shim, "sleeper"), 143);
    assert_eq!(status(&shim, "sleeper"), Status::STOPPED);
    let start = StartRequest {
        id: "sleeper".into(),
        ..Default::default()
    };
    let (code, msg) = code_of(
        shim.client
            .start(ctx(), &start)
            .expect_err("start after exit"),
    );
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    let (code, _) = code_of(shim.client.kill(ctx(), &kill).expect_err("kill after exit"));
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    let deleted = shim
        .client
        .delete(
            ctx(),
            &DeleteRequest {
                id: "sleeper".into(),
                ..Default::default()
            },
        )
        .expect("delete");
    assert_eq!(deleted.exit_status, 143);

    // A second container in the same shim runs to its end.
    let hello = bundle(&c, "hello", guests::HELLO_P1, &[]);
    create(&shim, "hello", &hello);
    shim.client
        .start(
            ctx(),
            &StartRequest {
                id: "hello".into(),
                ..Default::default()
            },
        )
        .expect("start");
    assert_eq!(wait(&shim, "hello"), 0);
    let output = std::fs::read_to_string(hello.join("stdout")).expect("stdout");
    assert_eq!(output, "Hello from a wasmcell guest!\n");
    shim.client
        .delete(
            ctx(),
            &DeleteRequest {
                id: "hello".into(),
                ..Default::default()
            },
        )
        .expect("delete");

    // No container left: Shutdown ends the shim process.
    shim.client
        .shutdown(
            ctx(),
            &ShutdownRequest {
                id: "hello".into(),
                ..Default::default()
            },
        )
        .expect("shutdown");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{}", shim.pid)).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", shim.pid)).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "shim {} still running",
        shim.pid
    );
}

#[test]
fn unsupported_calls_say_so_and_unknown_ids_are_not_found() {
    let c = containerd();
    let b = bundle(&c, "idle", guests::PROBE_P1, &["sleep", "600000"]);
    let shim = start_shim(&c, "idle", &b);
    create(&shim, "idle", &b);

    let (code, msg) = code_of(
        shim.client
            .exec(
                ctx(),
                &ExecProcessRequest {
                    id: "idle".into(),
                    exec_id: "e1".into(),
                    ..Default::default()
                },
            )
            .expect_err("exec"),
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            ttrpc::Code::UNIMPLEMENTED,
            "Exec is not supported by the wasmcell shim"
        )
    );
    let (code, msg) = code_of(
        shim.client
            .pause(
                ctx(),
                &PauseRequest {
                    id: "idle".into(),
                    ..Default::default()
                },
            )
            .expect_err("pause"),
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            ttrpc::Code::UNIMPLEMENTED,
            "Pause is not supported by the wasmcell shim"
        )
    );
    let (code, msg) = code_of(
        shim.client
            .resize_pty(
                ctx(),
                &ResizePtyRequest {
                    id: "idle".into(),
                    ..Default::default()
                },
            )
            .expect_err("resize"),
    );
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    let (code, msg) = code_of(
        shim.client
            .state(
                ctx(),
                &StateRequest {
                    id: "nope".into(),
                    ..Default::default()
                },
            )
            .expect_err("unknown id"),
    );
    assert_eq!(
        (code, msg.as_str()),
        (ttrpc::Code::NOT_FOUND, "container nope not found")
    );
    let (code, _) = code_of(
        shim.client
            .create(
                ctx(),
                &CreateTaskRequest {
                    id: "idle".into(),
                    bundle: b.display().to_string(),
                    ..Default::default()
                },
            )
            .expect_err("duplicate"),
    );
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS);

    // Delete of a created (never started) task kills its prepared guest.
    let deleted = shim
        .client
        .delete(
            ctx(),
            &DeleteRequest {
                id: "idle".into(),
                ..Default::default()
            },
        )
        .expect("delete");
    assert_eq!(deleted.exit_status, 137);
    shim.client
        .shutdown(
            ctx(),
            &ShutdownRequest {
                id: "idle".into(),
                ..Default::default()
            },
        )
        .expect("shutdown");
}

/// Many `start`s for the same container at once (containerd retrying, or two CRI calls for
/// one pod): one server, and every `start` names it; none is left orphaned on an unlinked
/// socket.
#[test]
fn concurrent_starts_launch_one_server() {
    let c = Containerd::start_with_path(&[]);
    let dir = bundle(&c, "racer", guests::HELLO_P1, &[]);
    let starts: Vec<_> = (0..8)
        .map(|_| {
            Command::new(SHIM)
                .args(["-namespace", c.namespace(), "-id", "racer", "-address"])
                .arg(c.socket())
                .arg("start")
                .current_dir(&dir)
                .env("TTRPC_ADDRESS", c.ttrpc_socket())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run shim start")
        })
        .collect();
    let addresses: Vec<String> = starts
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait for start");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).expect("utf-8 address")
        })
        .collect();
    assert!(addresses.windows(2).all(|w| w[0] == w[1]), "{addresses:?}");
    let socket = addresses[0].trim_start_matches("unix://").to_string();
    let servers: Vec<u32> = wasmcell_testing::pids_with_cmdline_containing(&socket)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| !String::from_utf8_lossy(&b).contains("start"))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(servers.len(), 1, "servers for {socket}: {servers:?}");
    let shim = start_shim(&c, "racer", &dir);
    assert_eq!(shim.pid, servers[0]);
    shim.client
        .shutdown(
            ctx(),
            &ShutdownRequest {
                id: "racer".into(),
                ..Default::default()
            },
        )
        .expect("shutdown");
}
