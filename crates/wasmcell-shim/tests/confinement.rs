//! The hostile-workload checks (`wasmcell_testing::hostile`) through the shim's normal mode:
//! the guest process is confined as runc confines a container's process for the same spec.
//! Also here: what the shim refuses instead of dropping it silently (a user namespace).
mod common;

use common::RUNTIME;
use wasmcell_test_guests as guests;
use wasmcell_testing::hostile::{
    check_root_only_file, check_rootfs_and_devices, check_symlink_race,
    check_user_capabilities_and_filters, ctr_run, rootfs, spec,
};

fn runtime() -> Vec<String> {
    vec!["--runtime".to_string(), RUNTIME.to_string()]
}

#[test]
fn guest_process_has_the_specs_user_capabilities_and_filters() {
    check_user_capabilities_and_filters(&common::containerd(), &runtime(), guests::PROBE_P1);
}

#[test]
fn a_non_root_guest_cannot_read_a_root_only_file_of_its_volume() {
    check_root_only_file(&common::containerd(), &runtime(), guests::PROBE_P1);
}

#[test]
fn the_guest_lives_in_its_rootfs_and_opens_no_device() {
    check_rootfs_and_devices(&common::containerd(), &runtime(), guests::PROBE_P2);
}

#[test]
fn a_working_directory_swapped_for_a_symlink_never_reaches_the_host() {
    check_symlink_race(&common::containerd(), &runtime(), guests::PROBE_P1, 200);
}

#[test]
fn a_user_namespace_is_refused_with_the_reason() {
    let c = common::containerd();
    let dir = c.dir().join("userns");
    let root = rootfs(&dir, guests::PROBE_P1);
    let config = spec(&dir.join("spec"), &root, &["/app.wasm", "hello"], |cfg| {
        if let Some(ns) = cfg["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({ "type": "user" }));
        }
        cfg["linux"]["uidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        cfg["linux"]["gidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    });
    let out = ctr_run(&c, &runtime(), "--rm", &config, "userns-1");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("user namespace"), "{out:?}");
}
