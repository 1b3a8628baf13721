//! The snapshotter choice: `overlayfs` when an overlay mount works on the filesystem holding
//! the temporary directory and containerd's overlayfs plugin loaded, `native` otherwise,
//! unless [`SNAPSHOTTER_ENV`] forces one.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{Containerd, SNAPSHOTTER_ENV};
use crate::command::run_with_deadline;

impl Containerd {
    /// The snapshotter to configure before containerd runs: the forced one, else `overlayfs`
    /// when an overlay mount works here, else `native`.
    pub(super) fn preliminary_snapshotter(&self) -> &'static str {
        if let Ok(forced) = std::env::var(SNAPSHOTTER_ENV) {
            return match forced.as_str() {
                "overlayfs" => "overlayfs",
                "native" => "native",
                other => panic!(
                    "wasmcell-testing: {SNAPSHOTTER_ENV}={other:?}: expected `overlayfs` or \
                     `native`"
                ),
            };
        }
        if overlay_mount_works(self.dir.path().parent().unwrap_or(Path::new("/tmp"))) {
            "overlayfs"
        } else {
            "native"
        }
    }

    pub(super) fn choose_snapshotter(&self) -> &'static str {
        let preliminary = self.preliminary_snapshotter();
        if preliminary == "native" || std::env::var_os(SNAPSHOTTER_ENV).is_some() {
            return preliminary;
        }
        // containerd's overlayfs plugin does its own checks (d_type, ...) and may be skipped.
        match self.try_run_ctr(&["plugins", "ls"], Duration::from_secs(10)) {
            Ok(out) if out.success() => {
                let ok = out.stdout.lines().any(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    cols.first() == Some(&"io.containerd.snapshotter.v1")
                        && cols.get(1) == Some(&"overlayfs")
                        && cols.last() == Some(&"ok")
                });
                if ok {
                    "overlayfs"
                } else {
                    "native"
                }
            }
            _ => "native",
        }
    }
}

/// Whether an overlay mount works on the filesystem of `base` (tested once per process).
fn overlay_mount_works(base: &Path) -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let Ok(probe) = tempfile::Builder::new()
            .prefix("wasmcell-overlay-probe-")
            .tempdir_in(base)
        else {
            return false;
        };
        let p = probe.path();
        let (lower, upper, work, merged) = (p.join("l"), p.join("u"), p.join("w"), p.join("m"));
        for d in [&lower, &upper, &work, &merged] {
            if fs::create_dir(d).is_err() {
                return false;
            }
        }
        if fs::write(lower.join("probe"), b"ok").is_err() {
            return false;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged);
        let mounted =
            run_with_deadline(mount, Duration::from_secs(10)).is_ok_and(|out| out.success());
        if !mounted {
            return false;
        }
        let works = fs::read(merged.join("probe")).is_ok_and(|b| b == b"ok")
            && fs::write(merged.join("written"), b"ok").is_ok();
        let mut umount = Command::new("umount");
        umount.arg(&merged);
        if !run_with_deadline(umount, Duration::from_secs(10)).is_ok_and(|out| out.success()) {
            let mut lazy = Command::new("umount");
            lazy.arg("-l").arg(&merged);
            let _ = run_with_deadline(lazy, Duration::from_secs(10));
        }
        works
    })
}
