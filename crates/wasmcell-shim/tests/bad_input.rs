//! Bad workloads fail `ctr run` at once with a message naming the problem, and leave nothing.
mod common;

use common::{assert_clean, containerd, rootfs_with, RUNTIME};
use wasmcell_test_guests as guests;
use wasmcell_testing::Containerd;

fn run_rootfs(
    c: &Containerd,
    rootfs: &std::path::Path,
    id: &str,
    entry: &str,
) -> wasmcell_testing::CtrOutput {
    let rootfs = rootfs.display().to_string();
    c.run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        &rootfs,
        id,
        entry,
    ])
}

fn assert_fails_naming(c: &Containerd, out: &wasmcell_testing::CtrOutput, needles: &[&str]) {
    assert_ne!(out.code, 0, "{out:?}");
    for n in needles {
        assert!(out.stderr.contains(n), "missing {n:?} in {out:?}");
    }
    let _ = c;
}

#[test]
fn corrupt_text_and_missing_entrypoints_fail_at_create() {
    let c = containerd();
    let hello = std::fs::read(guests::HELLO_P1).expect("read guest");

    let mut corrupt = hello.clone();
    corrupt.truncate(hello.len() / 2);
    let dir = rootfs_with(&c, "corrupt", &corrupt);
    let out = run_rootfs(&c, &dir, "corrupt", "/app.wasm");
    assert_fails_naming(
        &c,
        &out,
        &["container corrupt", "failed to compile", "app.wasm"],
    );
    let _ = c.run_ctr(&["containers", "delete", "corrupt"]);

    let dir = rootfs_with(&c, "text", b"#!/bin/sh\necho not wasm\n");
    let out = run_rootfs(&c, &dir, "text", "/app.wasm");
    assert_fails_naming(
        &c,
        &out,
        &["container text", "is not a wasm module", "script"],
    );
    let _ = c.run_ctr(&["containers", "delete", "text"]);

    let dir = rootfs_with(&c, "missing", &hello);
    let out = run_rootfs(&c, &dir, "missing", "/nope.wasm");
    assert_fails_naming(&c, &out, &["container missing", "nope.wasm not found"]);
    let _ = c.run_ctr(&["containers", "delete", "missing"]);

    let no_start = std::fs::read(guests::WAT_NO_START).expect("read guest");
    let dir = rootfs_with(&c, "nostart", &no_start);
    let out = run_rootfs(&c, &dir, "nostart", "/app.wasm");
    assert_fails_naming(&c, &out, &["container nostart", "no export _start"]);
    let _ = c.run_ctr(&["containers", "delete", "nostart"]);

    // Failed creates leave no cgroup behind (checked before the harness tidies up).
    for id in ["corrupt", "text", "missing", "nostart"] {
        for root in [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup",
        ] {
            let dir = std::path::Path::new(root).join(c.namespace()).join(id);
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
    }
    assert_clean(&c);
}
