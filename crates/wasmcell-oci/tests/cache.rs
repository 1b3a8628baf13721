//! `create` compiles a Wasm module on the host through the node's precompile cache (the
//! container cannot see it) and hands the code to the container's init process.
mod common;

use std::path::Path;
use std::process::Command;

use common::{bundle, run_with_deadline, wasm_rootfs, BIN, COMMAND_TIMEOUT};
use wasmcell_test_guests as guests;
use wasmcell_testing::require_root;

fn cache_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
        .unwrap_or(0)
}

/// `wasmcell-oci run` of `bundle` as container `id` with the cache in `cache`.
fn run(root: &Path, cache: &Path, bundle: &Path, id: &str) -> common::Output {
    let mut cmd = Command::new(BIN);
    cmd.env("WASMCELL_CACHE_DIR", cache)
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id);
    run_with_deadline(cmd, COMMAND_TIMEOUT)
}

#[test]
fn create_compiles_once_on_the_host_and_the_container_runs_that_code() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let cache = dir.path().join("cache");
    let b = bundle(&dir.path().join("bundle"), &["/app.wasm", "exit", "5"], &[]);
    wasm_rootfs(&b, &std::fs::read(guests::PROBE_P1).expect("read probe"));

    let out = run(&root, &cache, &b, "c1");
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(cache_entries(&cache), 1, "compiled into the host's cache");
    let entry = std::fs::read_dir(&cache)
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .expect("entry")
        .path();
    let written = std::fs::metadata(&entry).expect("entry").len();

    // A second container of the same module reuses the entry (not rewritten, still one).
    let out = run(&root, &cache, &b, "c2");
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(cache_entries(&cache), 1);
    assert_eq!(std::fs::metadata(&entry).expect("entry").len(), written);
    for id in ["c1", "c2"] {
        let out = common::oci(&root, &["delete", id]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    assert!(common::ids_under(&root).is_empty(), "state left behind");
}
