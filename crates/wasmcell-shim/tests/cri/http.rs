//! An HTTP guest (`wasi:http/incoming-handler`) in a pod with its own network namespace, in
//! both modes: it answers on the pod's address and, over the pod's loopback, to a Linux sidecar;
//! a second HTTP container on the same port in the same pod fails to start naming the address;
//! `StopContainer` during a slow request lets it complete and the container exits 0.

use std::net::SocketAddr;
use std::time::Duration;

use wasmcell_test_guests as guests;
use wasmcell_testing::cri::{api, container_config, CriClient};
use wasmcell_testing::{
    http_get, wait_listening, Containerd, CRI_NAMESPACE, CRI_RUNTIME_HANDLER,
    CRI_SHARED_RUNTIME_HANDLER,
};

use super::pod_network::{cri_containerd_with_pod_network, run_networked_pod_with};
use super::{linux_image, start, wait_for_log, wait_state, wasm_image, WAIT};

/// The port the guests listen on in the pod (the default is 0.0.0.0:8080; said explicitly).
const PORT: u16 = 8080;

/// An HTTP container of the pod, listening on 0.0.0.0:[`PORT`].
fn http_container(name: &str, image: &str, pod: &api::PodSandboxConfig) -> api::ContainerConfig {
    let mut config = container_config(name, image, &[], &[], pod);
    config.envs.push(api::KeyValue {
        key: "WASMCELL_HTTP_LISTEN_ADDR".into(),
        value: PORT.to_string(),
    });
    config
}

/// The scenario, with the runtime handler `handler`.
fn an_http_guest_serves_its_pod(c: &Containerd, cri: &CriClient, handler: &str) {
    let image = wasm_image(c, cri, guests::HTTP_HELLO_P2, "http-hello");
    let busybox = linux_image(c, cri);
    let pod = run_networked_pod_with(c, cri, "http-pod", handler);

    // On the pod's address, from the host (over the bridge).
    let server_id = start(
        c,
        cri,
        &pod.id,
        &pod.config,
        &http_container("web", &image, &pod.config),
    );
    let running = wait_state(c, cri, &server_id, api::ContainerState::ContainerRunning);
    let addr = SocketAddr::from((pod.ip, PORT));
    assert!(
        wait_listening(addr, WAIT),
        "{handler}: nobody answers on {addr}\nlog tail:\n{}",
        c.log_tail(60)
    );
    assert_eq!(
        http_get(addr, "/"),
        (200, "hello from wasmcell\n".into()),
        "{handler}"
    );
    // What the guest writes while serving is the container's log.
    assert_eq!(http_get(addr, "/log").0, 200, "{handler}");
    wait_for_log(&running, "stdout", "stdout line from the http guest\n");
    wait_for_log(&running, "stderr", "stderr line from the http guest\n");
    if handler == CRI_RUNTIME_HANDLER {
        // The guest process logs where it listens and its limits there too, once.
        let lines = wait_for_log(&running, "stderr", "serving http");
        let text = wasmcell_testing::cri::cri_log_text(&lines, "stderr");
        assert!(text.contains("max_concurrent=256"), "{text}");
    }

    // From a Linux sidecar, over the pod's loopback.
    let fetch = format!("until busybox wget -q -O - http://127.0.0.1:{PORT}/; do sleep 0.2; done");
    let sidecar = container_config(
        "fetcher",
        &busybox,
        &["/bin/busybox", "sh", "-c", &fetch],
        &[],
        &pod.config,
    );
    let sidecar_id = start(c, cri, &pod.id, &pod.config, &sidecar);
    let status = wait_state(c, cri, &sidecar_id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{handler}: {status:?}");
    wait_for_log(&status, "stdout", "hello from wasmcell\n");

    // A second HTTP container on the same port of the same pod: its start fails, naming it.
    let second = http_container("web-2", &image, &pod.config);
    let second_id = cri
        .create_container(&pod.id, &second, &pod.config)
        .expect("CreateContainer");
    let refused = cri
        .start_container(&second_id)
        .expect_err("the port is taken");
    let said = refused.to_string();
    assert!(
        said.contains(&format!("{PORT}")) && said.contains("in use"),
        "{handler}: {said}"
    );

    // A graceful stop during a slow request: the request completes, the container exits 0.
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    cri.stop_container(&server_id, 10).expect("StopContainer");
    assert_eq!(
        slow.join().expect("slow request"),
        (200, "slept 1500 ms\n".into())
    );
    let status = wait_state(c, cri, &server_id, api::ContainerState::ContainerExited);
    assert_eq!(
        status.exit_code, 0,
        "{handler}: drained in time: {status:?}"
    );

    cri.stop_pod_sandbox(&pod.id)
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
    cri.remove_pod_sandbox(&pod.id)
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
    assert!(cri.list_containers().expect("ListContainers").is_empty());
    let out = c.run_ctr_in(CRI_NAMESPACE, &["tasks", "ls", "-q"]);
    assert_eq!(out.stdout.trim(), "", "tasks left in k8s.io: {out:?}");
    let mounts = wasmcell_testing::mounts_under(c.dir());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

#[test]
fn an_http_guest_serves_its_pod_in_normal_mode() {
    let c = cri_containerd_with_pod_network();
    let cri = c.cri();
    an_http_guest_serves_its_pod(&c, &cri, CRI_RUNTIME_HANDLER);
}

#[test]
fn an_http_guest_serves_its_pod_in_shared_mode() {
    let (_links, path) = super::shared_mode::shared_shim_path();
    let c = Containerd::start_cri_with_pod_network(&path);
    let cri = c.cri();
    an_http_guest_serves_its_pod(&c, &cri, CRI_SHARED_RUNTIME_HANDLER);
}
