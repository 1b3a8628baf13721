//! Bad input: every mistake fails with a non-zero exit, an error naming the thing, and no state
//! left behind.
mod common;

use std::path::Path;

use common::{bundle, busybox_rootfs, ids_under, oci, wasm_rootfs};
use wasmcell_testing::require_root;

fn assert_no_state(root: &Path) {
    assert_eq!(
        ids_under(root),
        Vec::<String>::new(),
        "state left under {}",
        root.display()
    );
}

#[test]
fn missing_bundle_is_named() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let missing = dir.path().join("no-such-bundle");
    let out = oci(
        &root,
        &["create", "--bundle", &missing.display().to_string(), "mb"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "{out:?}"
    );
    assert_no_state(&root);

    // A bundle directory without config.json.
    std::fs::create_dir_all(&missing).expect("mkdir");
    let out = oci(
        &root,
        &["create", "--bundle", &missing.display().to_string(), "mb"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("config.json"), "{out:?}");
    assert_no_state(&root);
}

#[test]
fn unknown_id_is_named_by_every_verb() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("mkdir root");
    for verb in [
        &["state", "ghost"][..],
        &["start", "ghost"],
        &["kill", "ghost", "KILL"],
        &["delete", "ghost"],
        &["ps", "ghost"],
        &["pause", "ghost"],
        &["resume", "ghost"],
        &["exec", "ghost", "true"],
        &["update", "--pids-limit", "10", "ghost"],
    ] {
        let out = oci(&root, verb);
        assert_ne!(out.code, 0, "{verb:?}: {out:?}");
        assert!(
            out.stderr.contains("container ghost does not exist"),
            "{verb:?}: {out:?}"
        );
    }
    // As with runc, a forced delete of an unknown id succeeds.
    assert!(oci(&root, &["delete", "--force", "ghost"]).success());
    assert_no_state(&root);
}

#[test]
fn double_create_fails_and_keeps_the_first() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let b = bundle(
        &dir.path().join("bundle"),
        &["/bin/busybox", "sleep", "1000"],
        &[],
    );
    busybox_rootfs(&b);
    let bs = b.display().to_string();
    let out = oci(&root, &["create", "--bundle", &bs, "twice"]);
    assert!(out.success(), "{out:?}");
    let out = oci(&root, &["create", "--bundle", &bs, "twice"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("container twice already exists"),
        "{out:?}"
    );
    assert_eq!(
        common::status_of(oci, &root, "twice").as_deref(),
        Some("created")
    );
    assert!(oci(&root, &["delete", "--force", "twice"]).success());
    assert_no_state(&root);
}

#[test]
fn corrupt_modules_fail_create_with_the_module_named() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");

    // Named Wasm, but text: refused on the host before anything is set up.
    let b = bundle(&dir.path().join("text"), &["/app.wasm"], &[]);
    wasm_rootfs(&b, b"this is not wasm\n");
    let out = oci(
        &root,
        &["create", "--bundle", &b.display().to_string(), "text"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("container text"), "{out:?}");
    assert!(
        out.stderr.contains("app.wasm is not a wasm module"),
        "{out:?}"
    );
    assert_no_state(&root);

    // A Wasm header followed by garbage: found when compiling, inside the container.
    let b = bundle(&dir.path().join("garbage"), &["/app.wasm"], &[]);
    wasm_rootfs(&b, b"\0asm\x01\0\0\0\x01\xff\xff\xff\xffgarbage");
    let out = oci(
        &root,
        &["create", "--bundle", &b.display().to_string(), "garbage"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("container garbage"), "{out:?}");
    assert!(out.stderr.contains("/app.wasm"), "{out:?}");
    assert_no_state(&root);

    // A missing module named by the spec.
    let b = bundle(&dir.path().join("missing"), &["/nowhere.wasm"], &[]);
    wasm_rootfs(&b, b"\0asm\x01\0\0\0");
    let out = oci(
        &root,
        &["create", "--bundle", &b.display().to_string(), "missing"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("nowhere.wasm"), "{out:?}");
    assert_no_state(&root);
}

#[test]
fn errors_reach_the_json_log_as_runc_writes_them() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let log = dir.path().join("log.json");
    let out = oci(
        &root,
        &[
            "--log",
            &log.display().to_string(),
            "--log-format",
            "json",
            "start",
            "ghost",
        ],
    );
    assert_ne!(out.code, 0);
    let text = std::fs::read_to_string(&log).expect("log written");
    let last = text.lines().last().expect("a log line");
    let v: serde_json::Value = serde_json::from_str(last).expect("json line");
    assert_eq!(v["level"], "error", "{last}");
    assert_eq!(v["msg"], "container ghost does not exist", "{last}");
    assert!(
        v["time"].as_str().is_some_and(|t| t.contains('T')),
        "{last}"
    );
}

/// A container whose set-up never finishes (here a `createContainer` hook that sleeps) fails
/// `create` once the deadline has passed, naming the container and the step its init process
/// was in; nothing of it is left, no process of it either.
#[test]
fn create_that_does_not_finish_fails_at_the_deadline() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let b = bundle(&dir.path().join("b"), &["/app.wasm"], &[]);
    wasm_rootfs(
        &b,
        &std::fs::read(wasmcell_test_guests::HELLO_P1).expect("read guest"),
    );
    let config = b.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("read")).expect("json");
    // A marker in the hook's argv finds any process it leaves.
    let marker = format!("{}", 86_400 + std::process::id());
    spec["hooks"] = serde_json::json!({
        "createContainer": [{"path": "/bin/sleep", "args": ["sleep", marker]}],
    });
    std::fs::write(&config, serde_json::to_vec(&spec).expect("json")).expect("write");

    let mut cmd = std::process::Command::new(common::BIN);
    cmd.env(wasmcell_core::CREATE_TIMEOUT_ENV, "2")
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle"])
        .arg(&b)
        .arg("slow-1");
    // Without the deadline, `create` would wait for the hook (a day): the test's own deadline
    // would end it and fail.
    let out = common::run_with_deadline(cmd, std::time::Duration::from_secs(60));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("container slow-1")
            && out.stderr.contains("not ready within 2s")
            && out.stderr.contains("setting up the container"),
        "{out:?}"
    );
    assert_no_state(&root);
    let left = wasmcell_testing::pids_with_cmdline_containing(&marker);
    assert!(left.is_empty(), "processes of the container left: {left:?}");
}
