//! The OCI state of each lifecycle step, compared field by field with runc's for the same
//! busybox bundle; and a Wasm bundle's lifecycle driven directly.
mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    bundle, busybox_rootfs, ids_under, oci, oci_to_file, runc, status_of, wait_for, Output,
};
use wasmcell_test_guests as guests;
use wasmcell_testing::require_root;

type Runtime = fn(&Path, &[&str]) -> Output;

fn state(run: Runtime, root: &Path, id: &str) -> serde_json::Value {
    let out = run(root, &["state", id]);
    assert!(out.success(), "state {id}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state json {e}: {out:?}"))
}

/// create, start, kill, delete; the state after each of the first three.
fn lifecycle(run: Runtime, root: &Path, bundle: &Path, id: &str) -> Vec<serde_json::Value> {
    let b = bundle.display().to_string();
    let out = run(root, &["create", "--bundle", &b, id]);
    assert!(out.success(), "create: {out:?}");
    let created = state(run, root, id);
    let out = run(root, &["start", id]);
    assert!(out.success(), "start: {out:?}");
    let running = state(run, root, id);
    let out = run(root, &["kill", id, "KILL"]);
    assert!(out.success(), "kill: {out:?}");
    assert!(
        wait_for(Duration::from_secs(10), || status_of(run, root, id)
            .as_deref()
            == Some("stopped")),
        "{id} did not stop"
    );
    let stopped = state(run, root, id);
    let out = run(root, &["delete", id]);
    assert!(out.success(), "delete: {out:?}");
    assert!(!run(root, &["state", id]).success(), "state after delete");
    vec![created, running, stopped]
}

#[test]
fn state_json_matches_runc_at_each_step() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle(
        &dir.path().join("bundle"),
        &["/bin/busybox", "sleep", "1000"],
        &[("org.example.note", "same for both")],
    );
    busybox_rootfs(&b);
    let id = format!("state-cmp-{}", std::process::id());
    let runc_root = dir.path().join("runc-root");
    let oci_root = dir.path().join("oci-root");
    let theirs = lifecycle(runc, &runc_root, &b, &id);
    let ours = lifecycle(oci, &oci_root, &b, &id);

    for (step, (r, o)) in ["created", "running", "stopped"]
        .iter()
        .zip(theirs.iter().zip(ours.iter()))
    {
        assert_eq!(o["status"], *step, "ours at {step}: {o}");
        for field in ["id", "status", "bundle", "rootfs", "annotations", "owner"] {
            assert_eq!(
                o[field], r[field],
                "{field} at {step}\nrunc: {r}\nours: {o}"
            );
        }
        let has_pid = |v: &serde_json::Value| v["pid"].as_i64().is_some_and(|p| p > 0);
        assert_eq!(
            has_pid(o),
            has_pid(r),
            "pid at {step}\nrunc: {r}\nours: {o}"
        );
        for v in [r, o] {
            assert!(
                v["ociVersion"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("1.")),
                "ociVersion at {step}: {v}"
            );
            assert!(
                v["created"].as_str().is_some_and(|s| !s.is_empty()),
                "created at {step}: {v}"
            );
        }
    }
    assert_eq!(ids_under(&oci_root), Vec::<String>::new());
}

#[test]
fn wasm_bundle_runs_in_its_container_with_the_container_stdio() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let b = bundle(&dir.path().join("bundle"), &["/app.wasm"], &[]);
    common::wasm_rootfs(&b, &std::fs::read(guests::HELLO_P1).expect("read hello"));
    let log = dir.path().join("out.txt");
    let bs = b.display().to_string();
    assert_eq!(
        oci_to_file(&root, &["create", "--bundle", &bs, "w1"], &log),
        0,
        "{}",
        read(&log)
    );
    assert_eq!(status_of(oci, &root, "w1").as_deref(), Some("created"));
    assert_eq!(
        oci_to_file(&root, &["start", "w1"], &dir.path().join("start.txt")),
        0
    );
    assert!(
        wait_for(Duration::from_secs(10), || status_of(oci, &root, "w1")
            .as_deref()
            == Some("stopped")),
        "wasm container did not stop"
    );
    assert_eq!(read(&log), "Hello from a wasmcell guest!\n");
    assert!(oci(&root, &["delete", "w1"]).success());

    // `run` waits and exits with the guest's status.
    let b2 = bundle(
        &dir.path().join("bundle2"),
        &["/app.wasm", "exit", "7"],
        &[],
    );
    common::wasm_rootfs(&b2, &std::fs::read(guests::PROBE_P1).expect("read probe"));
    let b2s = b2.display().to_string();
    let code = oci_to_file(
        &root,
        &["run", "--bundle", &b2s, "w2"],
        &dir.path().join("run.txt"),
    );
    assert_eq!(code, 7);
    assert!(oci(&root, &["delete", "w2"]).success());
    assert_eq!(ids_under(&root), Vec::<String>::new());
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn exec_in_a_wasm_container_runs_a_second_guest() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let b = bundle(
        &dir.path().join("bundle"),
        &["/app.wasm", "sleep", "600000"],
        &[],
    );
    common::wasm_rootfs(&b, &std::fs::read(guests::PROBE_P1).expect("read probe"));
    let bs = b.display().to_string();
    let log = dir.path().join("out.txt");
    assert_eq!(
        oci_to_file(&root, &["create", "--bundle", &bs, "x1"], &log),
        0
    );
    assert_eq!(
        oci_to_file(&root, &["start", "x1"], &dir.path().join("start.txt")),
        0
    );
    assert_eq!(status_of(oci, &root, "x1").as_deref(), Some("running"));

    let out = oci(&root, &["exec", "x1", "/app.wasm", "args", "from-exec"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "from-exec"), "{out:?}");
    let out = oci(&root, &["exec", "x1", "/app.wasm", "exit", "3"]);
    assert_eq!(out.code, 3, "{out:?}");
    // The first guest is still running.
    assert_eq!(status_of(oci, &root, "x1").as_deref(), Some("running"));

    assert!(oci(&root, &["kill", "x1", "KILL"]).success());
    assert!(
        wait_for(Duration::from_secs(10), || status_of(oci, &root, "x1")
            .as_deref()
            == Some("stopped")),
        "container did not stop"
    );
    assert!(oci(&root, &["delete", "x1"]).success());
}
