//! `wasmcell run --bundle DIR`: the OCI bundle mapping end to end.
mod common;

use std::os::unix::fs::symlink;

use common::{bundle, probe_errno, run_bundle, EACCES, EPERM, EROFS};
use serde_json::json;
use wasmcell_test_guests as guests;

fn process(args: &[&str]) -> serde_json::Value {
    json!({ "args": args, "env": ["GREETING=hi", "PATH=/bin"], "cwd": "/" })
}

#[test]
fn runs_a_bundle_with_args_and_exactly_its_env() {
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let dir = tempfile::tempdir().expect("tempdir");
        bundle(
            dir.path(),
            module,
            process(&["/app.wasm", "env"]),
            json!([]),
            None,
        );
        let out = run_bundle(dir.path());
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, "GREETING=hi\nPATH=/bin\n");

        bundle(
            dir.path(),
            module,
            process(&["/app.wasm", "args", "x y"]),
            json!([]),
            None,
        );
        let out = run_bundle(dir.path());
        assert_eq!(out.stdout, "/app.wasm\nargs\nx y\n", "{out:?}");
    }
}

#[test]
fn hello_component_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    bundle(
        dir.path(),
        guests::HELLO_P2,
        process(&["/app.wasm"]),
        json!([]),
        None,
    );
    let out = run_bundle(dir.path());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n")
    );
}

#[test]
fn rootfs_is_the_guests_root_and_cwd_resolves_relative_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc = json!({ "args": ["../app.wasm", "read", "note.txt"], "cwd": "/work" });
    bundle(dir.path(), guests::PROBE_P1, proc, json!([]), None);
    std::fs::create_dir_all(dir.path().join("rootfs/work")).expect("mkdir");
    std::fs::write(dir.path().join("rootfs/work/note.txt"), "from cwd\n").expect("write");
    let out = run_bundle(dir.path());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "from cwd\n"),
        "{out:?}"
    );
}

#[test]
fn bind_mounts_are_visible_and_ro_is_honoured() {
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("file.txt"), "data file\n").expect("write");
    for (options, writable) in [
        (json!(["rbind", "ro"]), false),
        (json!(["rbind", "rw"]), true),
    ] {
        for module in [guests::PROBE_P1, guests::PROBE_P2] {
            let mounts = json!([
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/data", "type": "bind", "source": data.path(), "options": options },
            ]);
            let dir = tempfile::tempdir().expect("tempdir");
            bundle(
                dir.path(),
                module,
                process(&["/app.wasm", "read", "/data/file.txt"]),
                mounts.clone(),
                None,
            );
            let out = run_bundle(dir.path());
            assert_eq!(
                (out.code, out.stdout.as_str()),
                (0, "data file\n"),
                "{out:?}"
            );

            bundle(
                dir.path(),
                module,
                process(&["/app.wasm", "write", "/data/new.txt", "w"]),
                mounts,
                None,
            );
            let out = run_bundle(dir.path());
            let landed = data.path().join("new.txt");
            if writable {
                assert_eq!(out.code, 0, "{out:?}");
                assert_eq!(std::fs::read_to_string(&landed).expect("written"), "w");
                std::fs::remove_file(&landed).expect("cleanup");
            } else {
                assert_eq!(out.code, 1, "{out:?}");
                assert!(
                    matches!(probe_errno(&out.stdout), Some(EPERM | EACCES | EROFS)),
                    "{out:?}"
                );
                assert!(!landed.exists());
            }
        }
    }
}

#[test]
fn bundle_escapes_stay_inside_the_rootfs() {
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secret.txt"), "bundle secret").expect("write");
        let secret_abs = dir.path().join("secret.txt").display().to_string();
        for path in [
            "/../secret.txt",
            "../secret.txt",
            secret_abs.as_str(),
            "/link",
            "/abs-link",
        ] {
            bundle(
                dir.path(),
                module,
                process(&["/app.wasm", "read", path]),
                json!([]),
                None,
            );
            let rootfs = dir.path().join("rootfs");
            let _ = symlink("../secret.txt", rootfs.join("link"));
            let _ = symlink(&secret_abs, rootfs.join("abs-link"));
            let out = run_bundle(dir.path());
            assert_eq!(out.code, 1, "{module} {path}: {out:?}");
            assert!(
                !out.stdout.contains("bundle secret"),
                "{module} {path} leaked: {out:?}"
            );
        }
    }
}

#[test]
fn memory_limit_from_the_spec_caps_the_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let linux = json!({ "resources": { "memory": { "limit": 16 * 1024 * 1024 } } });
    bundle(
        dir.path(),
        guests::WAT_GROW,
        process(&["/app.wasm"]),
        json!([]),
        Some(linux),
    );
    let out = run_bundle(dir.path());
    assert_eq!(
        out.code, 3,
        "memory.grow past the spec's limit must fail: {out:?}"
    );
}
