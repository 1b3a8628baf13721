//! Pods through CRI with the shared runtime (handler `wasmcell-shared`): every container of every
//! pod, Wasm and Linux alike, is served by one manager process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmcell_test_guests as guests;
use wasmcell_testing::cri::{api, container_config, cri_log_text, CriClient};
use wasmcell_testing::{Containerd, CRI_NAMESPACE, CRI_SHARED_RUNTIME_HANDLER};

use super::{linux_image, start, wait_for_log, wait_state, wasm_image, WAIT};

/// A CRI containerd whose PATH holds the shim under its shared-mode name too.
fn shared_cri_containerd() -> (Containerd, tempfile::TempDir) {
    let (links, path) = shared_shim_path();
    (Containerd::start_cri_with_pause(&path), links)
}

/// A directory holding the shim under its shared-mode name (a link, kept while it lives) and
/// the PATH entries that find it there and under its own name.
pub(super) fn shared_shim_path() -> (tempfile::TempDir, Vec<PathBuf>) {
    let links = tempfile::tempdir().expect("link dir");
    std::os::unix::fs::symlink(
        super::SHIM,
        links.path().join(wasmcell_shim::SHARED_BINARY_NAME),
    )
    .expect("link the shared-mode shim");
    let shim_dir = Path::new(super::SHIM)
        .parent()
        .expect("shim dir")
        .to_path_buf();
    let path = vec![links.path().to_path_buf(), shim_dir];
    (links, path)
}

fn run_shared_pod(c: &Containerd, cri: &CriClient, name: &str) -> (String, api::PodSandboxConfig) {
    super::run_pod_with_handler(c, cri, name, CRI_SHARED_RUNTIME_HANDLER)
}

/// The shim processes of this containerd: in shared mode, only the manager.
fn managers(c: &Containerd) -> Vec<u32> {
    let pids = super::shims(c);
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("\0-id\0manager\0"),
            "a shim process other than the manager: {pid}"
        );
    }
    pids
}

#[test]
fn two_pods_with_wasm_and_linux_containers_share_one_manager() {
    let (c, _links) = shared_cri_containerd();
    let cri = c.cri();
    let hello = wasm_image(&c, &cri, guests::HELLO_P1, "hello");
    let probe = wasm_image(&c, &cri, guests::PROBE_P1, "probe");
    let busybox = linux_image(&c, &cri);
    let started = Instant::now();
    let (pod_a, config_a) = run_shared_pod(&c, &cri, "shared-a");
    let (pod_b, config_b) = run_shared_pod(&c, &cri, "shared-b");
    eprintln!("two shared-mode pods ready in {:?}", started.elapsed());

    // Pod A: a Wasm container that prints and exits, a sleeping Wasm container, a Linux sidecar.
    let hello_id = start(
        &c,
        &cri,
        &pod_a,
        &config_a,
        &container_config("hello", &hello, &[], &[], &config_a),
    );
    let status = wait_state(&c, &cri, &hello_id, api::ContainerState::ContainerExited);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "{status:?}"
    );
    let lines = wait_for_log(&status, "stdout", "Hello from a wasmcell guest!\n");
    assert_eq!(cri_log_text(&lines, "stderr"), "", "{lines:?}");

    let sleeper_a = start(
        &c,
        &cri,
        &pod_a,
        &config_a,
        &container_config("sleeper", &probe, &[], &["sleep", "600000"], &config_a),
    );
    let sidecar = start(
        &c,
        &cri,
        &pod_a,
        &config_a,
        &container_config(
            "sidecar",
            &busybox,
            &["/bin/busybox", "sh", "-c", "echo sidecar up; sleep 1000"],
            &[],
            &config_a,
        ),
    );
    // Pod B: a Wasm container exiting with a status of its own.
    let exit_b = start(
        &c,
        &cri,
        &pod_b,
        &config_b,
        &container_config("exit", &probe, &[], &["exit", "7"], &config_b),
    );
    wait_state(&c, &cri, &sleeper_a, api::ContainerState::ContainerRunning);
    let sidecar_status = wait_state(&c, &cri, &sidecar, api::ContainerState::ContainerRunning);
    wait_for_log(&sidecar_status, "stdout", "sidecar up\n");
    let status = wait_state(&c, &cri, &exit_b, api::ContainerState::ContainerExited);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (7, "Error"),
        "{status:?}"
    );

    // Two sandboxes, two Wasm guests and a sidecar: one manager, nothing per container.
    assert_eq!(managers(&c).len(), 1, "one manager for both pods");

    // Stats of a Wasm guest come from the manager's own accounting.
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = cri.container_stats(&sleeper_a).expect("ContainerStats");
        let working_set = stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or(0, |v| v.value);
        if working_set > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no memory stats: {stats:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A graceful stop of the sleeper (SIGTERM): 143, as for a process.
    cri.stop_container(&sleeper_a, 5).expect("StopContainer");
    let status = wait_state(&c, &cri, &sleeper_a, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 143, "{status:?}");

    for pod in [&pod_a, &pod_b] {
        cri.stop_pod_sandbox(pod)
            .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
        cri.remove_pod_sandbox(pod)
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
    }
    assert!(cri.list_pod_sandboxes().expect("ListPodSandbox").is_empty());
    assert!(cri.list_containers().expect("ListContainers").is_empty());
    let out = c.run_ctr_in(CRI_NAMESPACE, &["tasks", "ls", "-q"]);
    assert_eq!(out.stdout.trim(), "", "tasks left in k8s.io: {out:?}");
    let mounts = wasmcell_testing::mounts_under(c.dir());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let runc_root = Path::new("/run/wasmcell/runc").join(CRI_NAMESPACE);
    for id in [&pod_a, &pod_b, &sidecar] {
        assert!(!runc_root.join(id).exists(), "runc state of {id} left");
    }
    // The manager stays (it leaves on its own once idle) and holds nothing per container.
    assert!(managers(&c).len() <= 1);
}
