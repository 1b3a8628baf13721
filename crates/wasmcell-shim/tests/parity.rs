//! The parity table (`wasmcell_testing::parity`) through the shim, in normal and in shared
//! mode, against a real containerd (`ctr run --rm --rootfs`): the same guest behaviours, small
//! and real-sized guests, with the stdout and exit status every other path gives.
mod common;

use common::{shared_containerd, RUNTIME};
use wasmcell_test_guests as guests;
use wasmcell_testing::parity::{check_parity, ctr_run};

const SHARED: &str = "io.containerd.wasmcell-shared.v1";

fn table(path: &str, c: &wasmcell_testing::Containerd, runtime: &str) {
    let runtime = ["--runtime".to_string(), runtime.to_string()];
    check_parity(
        path,
        &c.dir().join("parity"),
        &[guests::PROBE_P1, guests::PROBE_P2],
        &[guests::PROBE_BIG_P1, guests::PROBE_BIG_P2],
        |container| ctr_run(c, &runtime, container),
    );
}

#[test]
fn the_parity_table_through_the_shim_in_normal_mode() {
    wasmcell_testing::require_root();
    let c = common::containerd();
    table("normal", &c, RUNTIME);
}

#[test]
fn the_parity_table_through_the_shim_in_shared_mode() {
    wasmcell_testing::require_root();
    let (c, _bin) = shared_containerd();
    table("shared", &c, SHARED);
}
