//! containerd's own runc shim (`io.containerd.runc.v2`) driving wasmcell-oci as its runc binary
//! (`ctr run --runc-binary`): Wasm and busybox images, exit codes, kill and delete.
mod common;

use std::time::Duration;

use common::{busybox_archive, ctr_run, ids_under, oci_root, wait_for, wasm_image};
use wasmcell_test_guests as guests;
use wasmcell_testing::{require_root, Containerd};

fn containerd() -> Containerd {
    require_root();
    Containerd::start()
}

fn import_wasm(c: &Containerd, module: &str, name: &str) -> String {
    let (reference, tar) = wasm_image(c.dir(), module, name);
    c.import(&tar);
    reference
}

fn import_busybox(c: &Containerd) -> String {
    let (reference, tar) = busybox_archive(c.dir(), "busybox");
    c.import(&tar);
    reference
}

/// Nothing left: no task, no container, no runtime state.
fn assert_clean(c: &Containerd) {
    let tasks = c.run_ctr(&["tasks", "ls", "-q"]);
    assert_eq!(tasks.stdout.trim(), "", "tasks left behind: {tasks:?}");
    let containers = c.run_ctr(&["containers", "ls", "-q"]);
    assert_eq!(
        containers.stdout.trim(),
        "",
        "containers left: {containers:?}"
    );
    // The runc shim keeps state under `--runc-root`/<namespace>.
    let state = oci_root(c).join(c.namespace());
    assert_eq!(
        ids_under(&state),
        Vec::<String>::new(),
        "runtime state left"
    );
}

#[test]
fn wasm_images_run_with_output_and_exit_codes() {
    let c = containerd();
    let hello = import_wasm(&c, guests::HELLO_P1, "hello");
    let out = ctr_run(&c, &[], &hello, "hello-1", &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}\n{}",
        c.log_tail(30)
    );

    let component = import_wasm(&c, guests::HELLO_P2, "hello-p2");
    let out = ctr_run(&c, &[], &component, "hello-p2", &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );

    // No `.wasm` name and no annotation: the magic bytes decide (no "exec format error").
    let (bare, tar) = common::wasm_image_at(c.dir(), guests::HELLO_P1, "bare", "/bin/hello");
    c.import(&tar);
    let out = ctr_run(&c, &[], &bare, "bare-1", &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );

    let probe = import_wasm(&c, guests::PROBE_P1, "probe");
    let out = ctr_run(&c, &[], &probe, "exit-42", &["/app.wasm", "exit", "42"]);
    assert_eq!(out.code, 42, "{out:?}");
    let out = ctr_run(
        &c,
        &["--env", "GREETING=hi"],
        &probe,
        "args-env",
        &["/app.wasm", "env"],
    );
    assert!(out.stdout.lines().any(|l| l == "GREETING=hi"), "{out:?}");
    assert_clean(&c);
}

#[test]
fn busybox_runs_as_a_linux_container() {
    let c = containerd();
    let busybox = import_busybox(&c);
    let out = ctr_run(
        &c,
        &[],
        &busybox,
        "echo-1",
        &["/bin/busybox", "echo", "hello from busybox"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hello from busybox\n"),
        "{out:?}\n{}",
        c.log_tail(30)
    );
    let out = ctr_run(&c, &[], &busybox, "exit-3", &["sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "{out:?}");
    // A pid namespace of its own, as runc gives it.
    let out = ctr_run(&c, &[], &busybox, "pid-1", &["sh", "-c", "echo $$"]);
    assert_eq!(out.stdout.trim(), "1", "{out:?}");
    assert_clean(&c);
}

/// `ctr run -d`, then `ctr task kill`, wait for the exit, `ctr task delete`, `ctr container rm`.
fn kill_and_delete(c: &Containerd, image: &str, id: &str, args: &[&str], signal: &str) {
    let base = common::ctr_run_argv(c, "-d");
    let mut argv: Vec<&str> = base.iter().map(String::as_str).collect();
    argv.extend([image, id]);
    argv.extend_from_slice(args);
    let out = c.run_ctr(&argv);
    assert!(out.success(), "{out:?}\n{}", c.log_tail(30));
    let running = || {
        c.run_ctr(&["tasks", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with(id) && l.contains("RUNNING"))
    };
    assert!(wait_for(Duration::from_secs(10), running), "{id} never ran");
    // The runtime reports it running too.
    let state = common::oci(&oci_root(c).join(c.namespace()), &["state", id]);
    let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("state json");
    assert_eq!(state["status"], "running", "{state}");
    if args[0] == "/bin/busybox" {
        // `ctr task exec` goes through `exec --process`; `ctr task ps` through `ps --format json`.
        let out = c.run_ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            id,
            "/bin/busybox",
            "echo",
            "in",
        ]);
        assert_eq!((out.code, out.stdout.as_str()), (0, "in\n"), "{out:?}");
        let out = c.run_ctr(&["tasks", "ps", id]);
        assert!(out.success() && out.stdout.lines().count() >= 2, "{out:?}");
    }

    let out = c.run_ctr(&["tasks", "kill", "--signal", signal, id]);
    assert!(out.success(), "{out:?}");
    let stopped = || {
        c.run_ctr(&["tasks", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with(id) && l.contains("STOPPED"))
    };
    assert!(
        wait_for(Duration::from_secs(10), stopped),
        "{id} did not stop"
    );
    let out = c.run_ctr(&["tasks", "delete", id]);
    assert!(out.success(), "{out:?}");
    let out = c.run_ctr(&["containers", "delete", id]);
    assert!(out.success(), "{out:?}");
}

#[test]
fn long_running_containers_are_killed_and_deleted() {
    let c = containerd();
    let busybox = import_busybox(&c);
    kill_and_delete(
        &c,
        &busybox,
        "sleeper",
        &["/bin/busybox", "sleep", "1000"],
        "SIGKILL",
    );
    let probe = import_wasm(&c, guests::PROBE_P1, "probe");
    // A Wasm guest is pid 1 of its namespace: SIGTERM still ends it.
    kill_and_delete(
        &c,
        &probe,
        "wasm-sleeper",
        &["/app.wasm", "sleep", "600000"],
        "SIGTERM",
    );
    assert_clean(&c);
}
