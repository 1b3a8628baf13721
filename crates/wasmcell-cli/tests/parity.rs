//! The parity table (`wasmcell_testing::parity`) through `wasmcell run --bundle`: the same guest
//! behaviours, small and real-sized guests, with the stdout and exit status every other path
//! gives (the shim in both modes, `wasmcell-oci` under containerd and Podman).
mod common;

use std::process::Command;

use wasmcell_test_guests as guests;
use wasmcell_testing::parity::{check_parity, run_until_stopped};

#[test]
fn the_parity_table_through_wasmcell_run() {
    let work = tempfile::tempdir().expect("tempdir");
    // A cache of its own, empty at first: the first case of each guest compiles it.
    let cache = work.path().join("cache");
    check_parity(
        "run",
        work.path(),
        &[guests::PROBE_P1, guests::PROBE_P2],
        &[guests::PROBE_BIG_P1, guests::PROBE_BIG_P2],
        |c| {
            let bundle = c.write_bundle(&c.rootfs.with_file_name("bundle"));
            let mut cmd = common::wasmcell();
            cmd.env("WASMCELL_CACHE_DIR", &cache)
                .arg("run")
                .arg("--bundle")
                .arg(bundle);
            // `wasmcell run` is the process: SIGTERM ends it as it ends any program that does
            // not catch it (128 + 15), which is what the container paths report too.
            let stop = c.stop.then_some(|pid: u32| {
                let sent = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .expect("run kill");
                assert!(sent.success(), "kill -TERM {pid}");
            });
            run_until_stopped(cmd, stop)
        },
    );
}
