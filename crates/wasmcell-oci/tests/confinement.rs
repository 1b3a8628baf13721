//! The hostile-workload checks (`wasmcell_testing::hostile`) through `wasmcell-oci` under
//! containerd's runc shim: libcontainer sets the container up as runc does, and a Wasm guest,
//! which runs in the init process without an `execve`, is left with what `execve` would leave.
mod common;

use common::runc_shim_runtime;
use wasmcell_test_guests as guests;
use wasmcell_testing::hostile::{
    check_root_only_file, check_rootfs_and_devices, check_symlink_race,
    check_user_capabilities_and_filters,
};
use wasmcell_testing::{require_root, Containerd};

fn containerd() -> (Containerd, Vec<String>) {
    require_root();
    let c = Containerd::start();
    let runtime = runc_shim_runtime(&c);
    (c, runtime)
}

#[test]
fn guest_process_has_the_specs_user_capabilities_and_filters() {
    let (c, runtime) = containerd();
    check_user_capabilities_and_filters(&c, &runtime, guests::PROBE_P1);
}

#[test]
fn a_non_root_guest_cannot_read_a_root_only_file_of_its_volume() {
    let (c, runtime) = containerd();
    check_root_only_file(&c, &runtime, guests::PROBE_P1);
}

#[test]
fn the_guest_lives_in_its_rootfs_and_opens_no_device() {
    let (c, runtime) = containerd();
    check_rootfs_and_devices(&c, &runtime, guests::PROBE_BIG_P2);
}

#[test]
fn a_working_directory_swapped_for_a_symlink_never_reaches_the_host() {
    let (c, runtime) = containerd();
    check_symlink_race(&c, &runtime, guests::PROBE_P1, 100);
}
