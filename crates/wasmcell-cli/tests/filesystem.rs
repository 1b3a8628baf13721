//! What a guest can reach on the filesystem: exactly its preopens, read-only where asked, and
//! nothing outside them by `..`, by an absolute path or by a symlink.
mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{probe_errno, run_module, EACCES, EPERM, EROFS};
use wasmcell_test_guests as guests;

const SECRET: &str = "host secret";

/// A host tree: top/secret.txt outside, top/share/ granted, with symlinks pointing out.
fn tree() -> tempfile::TempDir {
    let top = tempfile::tempdir().expect("tempdir");
    let share = top.path().join("share");
    std::fs::create_dir_all(share.join("sub")).expect("mkdir");
    std::fs::write(share.join("in.txt"), "inside\n").expect("write");
    std::fs::write(top.path().join("secret.txt"), SECRET).expect("write");
    symlink("../secret.txt", share.join("rel-link")).expect("symlink");
    symlink(top.path().join("secret.txt"), share.join("abs-link")).expect("symlink");
    symlink("/", share.join("root-link")).expect("symlink");
    symlink(top.path(), share.join("dir-link")).expect("symlink");
    top
}

fn grant(top: &Path, suffix: &str) -> String {
    format!("{}::/share{suffix}", top.join("share").display())
}

#[test]
fn reads_and_writes_inside_a_preopen() {
    let top = tree();
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let dir = grant(top.path(), "");
        let out = run_module(&["--dir", &dir], module, &["read", "/share/in.txt"]);
        assert_eq!((out.code, out.stdout.as_str()), (0, "inside\n"), "{out:?}");
        let out = run_module(
            &["--dir", &dir],
            module,
            &["write", "/share/sub/out.txt", "hi"],
        );
        assert_eq!(out.code, 0, "{out:?}");
        let written = std::fs::read_to_string(top.path().join("share/sub/out.txt"));
        assert_eq!(written.expect("written file"), "hi");
        std::fs::remove_file(top.path().join("share/sub/out.txt")).expect("cleanup");
    }
}

#[test]
fn a_read_only_preopen_refuses_writes() {
    let top = tree();
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let dir = grant(top.path(), ":ro");
        let out = run_module(&["--dir", &dir], module, &["read", "/share/in.txt"]);
        assert_eq!((out.code, out.stdout.as_str()), (0, "inside\n"), "{out:?}");
        for target in ["/share/new.txt", "/share/in.txt"] {
            let out = run_module(&["--dir", &dir], module, &["write", target, "x"]);
            assert_eq!(out.code, 1, "{module} {target}: {out:?}");
            let errno = probe_errno(&out.stdout);
            assert!(
                matches!(errno, Some(EPERM | EACCES | EROFS)),
                "{module} {target}: write should be denied, got {out:?}"
            );
        }
        assert!(!top.path().join("share/new.txt").exists());
        assert_eq!(
            std::fs::read_to_string(top.path().join("share/in.txt")).expect("read"),
            "inside\n"
        );
    }
}

#[test]
fn escapes_read_nothing_outside_the_preopens() {
    let top = tree();
    let dir = grant(top.path(), "");
    let secret_abs = top.path().join("secret.txt").display().to_string();
    let attempts = [
        "/share/../secret.txt".to_string(),
        "/share/sub/../../secret.txt".to_string(),
        "../secret.txt".to_string(),
        secret_abs.clone(),
        "/share/rel-link".to_string(),
        "/share/abs-link".to_string(),
        format!("/share/root-link{secret_abs}"),
        "/share/dir-link/secret.txt".to_string(),
        "/etc/passwd".to_string(),
    ];
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        for path in &attempts {
            let out = run_module(&["--dir", &dir], module, &["read", path]);
            assert_eq!(out.code, 1, "{module} read {path} should fail: {out:?}");
            assert!(
                out.stdout.starts_with("error: "),
                "{module} {path}: {out:?}"
            );
            assert!(
                !out.stdout.contains(SECRET),
                "{module} {path} leaked: {out:?}"
            );
        }
        let out = run_module(&["--dir", &dir], module, &["ls", "/share/dir-link"]);
        assert_eq!(
            out.code, 1,
            "{module}: listing through a symlink out: {out:?}"
        );
    }
}

#[test]
fn no_grant_means_no_filesystem() {
    let top = tree();
    let path = top.path().join("share/in.txt").display().to_string();
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let out = run_module(&[], module, &["read", &path]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stdout.starts_with("error: "), "{out:?}");
    }
}
