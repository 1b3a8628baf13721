//! Bad input: one clear line on stderr and a documented non-zero exit, never a panic or a hang.
mod common;

use common::{bundle, run_bundle, run_module};
use serde_json::json;
use wasmcell_test_guests as guests;

/// Exactly one line, prefixed `wasmcell: `, containing each of `needles`, and no panic.
fn assert_one_line(out: &common::Output, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].starts_with("wasmcell: "), "{out:?}");
    for n in needles {
        assert!(lines[0].contains(n), "missing {n:?} in {out:?}");
    }
}

#[test]
fn missing_module() {
    let out = run_module(&[], "/nonexistent/app.wasm", &[]);
    assert_one_line(&out, 127, &["module /nonexistent/app.wasm not found"]);
}

#[test]
fn elf_and_text_files_are_not_wasm() {
    let out = run_module(&[], "/bin/true", &[]);
    assert_one_line(&out, 126, &["/bin/true is not a wasm module", "ELF"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some words\n").expect("write");
    let out = run_module(&[], &text.display().to_string(), &[]);
    assert_one_line(&out, 126, &["notes.wasm is not a wasm module", "text file"]);
}

#[test]
fn truncated_and_corrupt_modules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(guests::HELLO_P1).expect("read");
    let cut = dir.path().join("cut.wasm");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = run_module(&[], &cut.display().to_string(), &[]);
    assert_one_line(&out, 126, &["failed to compile", "cut.wasm"]);

    let mut corrupt = bytes.clone();
    for b in corrupt.iter_mut().skip(64).step_by(7) {
        *b ^= 0x5a;
    }
    let bad = dir.path().join("corrupt.wasm");
    std::fs::write(&bad, &corrupt).expect("write");
    let out = run_module(&[], &bad.display().to_string(), &[]);
    assert_one_line(&out, 126, &["corrupt.wasm"]);

    let header_only = dir.path().join("header.wasm");
    std::fs::write(&header_only, b"\0asm\x01").expect("write");
    let out = run_module(&[], &header_only.display().to_string(), &[]);
    assert_one_line(&out, 126, &["truncated header"]);
}

#[test]
fn module_without_start_or_with_unknown_imports() {
    let out = run_module(&[], guests::WAT_NO_START, &[]);
    assert_one_line(&out, 126, &["module has no export _start"]);
    let out = run_module(&[], guests::WAT_UNKNOWN_IMPORT, &[]);
    assert_one_line(&out, 126, &["env::launch_missiles"]);
}

#[test]
fn missing_and_malformed_config_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_bundle(dir.path());
    assert_one_line(&out, 125, &["failed to read", "config.json"]);

    std::fs::write(dir.path().join("config.json"), "{\"process\": [").expect("write");
    let out = run_bundle(dir.path());
    assert_one_line(&out, 125, &["malformed", "config.json", "line 1"]);

    let out = run_bundle(&dir.path().join("no-such-bundle"));
    assert_one_line(&out, 125, &["no-such-bundle/config.json"]);
}

#[test]
fn bundle_field_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    bundle(
        dir.path(),
        guests::HELLO_P1,
        json!({ "args": [], "cwd": "/" }),
        json!([]),
        None,
    );
    let out = run_bundle(dir.path());
    assert_one_line(&out, 125, &["process.args"]);

    bundle(
        dir.path(),
        guests::HELLO_P1,
        json!({ "args": ["/app.wasm"], "env": ["NOVALUE"], "cwd": "/" }),
        json!([]),
        None,
    );
    let out = run_bundle(dir.path());
    assert_one_line(&out, 125, &["process.env[0]", "NOVALUE"]);

    let mounts = json!([{ "destination": "/data", "type": "bind", "source": "/nonexistent/dir", "options": ["rbind"] }]);
    bundle(
        dir.path(),
        guests::HELLO_P1,
        json!({ "args": ["/app.wasm"], "cwd": "/" }),
        mounts,
        None,
    );
    let out = run_bundle(dir.path());
    assert_one_line(&out, 125, &["/nonexistent/dir", "/data"]);
}

#[test]
fn entrypoint_outside_the_rootfs_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A real module sits just outside the rootfs; the entrypoint climbs to it.
    std::fs::copy(guests::HELLO_P1, dir.path().join("outside.wasm")).expect("copy");
    for entry in ["/../outside.wasm", "../../outside.wasm"] {
        bundle(
            dir.path(),
            guests::HELLO_P1,
            json!({ "args": [entry], "cwd": "/" }),
            json!([]),
            None,
        );
        let out = run_bundle(dir.path());
        assert_one_line(&out, 127, &["rootfs/outside.wasm not found"]);
    }
    std::os::unix::fs::symlink(
        dir.path().join("outside.wasm"),
        dir.path().join("rootfs/link.wasm"),
    )
    .expect("symlink");
    bundle(
        dir.path(),
        guests::HELLO_P1,
        json!({ "args": ["/link.wasm"], "cwd": "/" }),
        json!([]),
        None,
    );
    let out = run_bundle(dir.path());
    assert_one_line(&out, 127, &["not found"]);
}

#[test]
fn bad_flags() {
    let out = run_module(&["--dir", "::/x"], guests::HELLO_P1, &[]);
    assert_one_line(&out, 125, &["invalid directory grant", "::/x"]);
    let out = run_module(&["--dir", "/nonexistent/d::/d"], guests::HELLO_P1, &[]);
    assert_one_line(&out, 125, &["/nonexistent/d"]);
    let out = run_module(&["--env", "NOEQUALS"], guests::HELLO_P1, &[]);
    assert_one_line(&out, 125, &["--env", "NOEQUALS"]);
}
