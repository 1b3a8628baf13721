//! A pod with its own network namespace (namespace mode POD, as every pod but `hostNetwork`
//! ones), networked by CNI: the harness's private bridge and `host-local` subnet
//! (`Containerd::start_cri_with_pod_network`). Uses the helpers of `cri.rs`.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::SHIM;
use wasmcell_test_guests as guests;
use wasmcell_testing::cri::{api, container_config, pod_ip, pod_network_pod, CriClient};
use wasmcell_testing::{Containerd, CRI_NAMESPACE, CRI_RUNTIME_HANDLER};

use super::{
    common, linux_image, remove_pod_and_assert_clean, start, wait_for_log, wait_state, wasm_image,
    WAIT,
};

/// A containerd with CRI and a private CNI network, whose PATH holds the shim under test.
pub(super) fn cri_containerd_with_pod_network() -> Containerd {
    let dir = Path::new(SHIM).parent().expect("shim dir").to_path_buf();
    Containerd::start_cri_with_pod_network(&[dir])
}

/// What containerd tells about a running pod with a network namespace.
pub(super) struct NetworkedPod {
    pub(super) id: String,
    pub(super) config: api::PodSandboxConfig,
    pub(super) ip: Ipv4Addr,
    /// The pod's network namespace as containerd mounted it (`/var/run/netns/cni-...`).
    netns: String,
    /// The sandbox (pause) process.
    sandbox_pid: u32,
}

/// RunPodSandbox of a pod with its own network namespace (handler `wasmcell`); checks that it
/// is ready with namespace mode POD and an address from the harness's subnet.
fn run_networked_pod(c: &Containerd, cri: &CriClient, name: &str) -> NetworkedPod {
    run_networked_pod_with(c, cri, name, CRI_RUNTIME_HANDLER)
}

/// [`run_networked_pod`] with the runtime handler `handler`.
pub(super) fn run_networked_pod_with(
    c: &Containerd,
    cri: &CriClient,
    name: &str,
    handler: &str,
) -> NetworkedPod {
    let network = c.pod_network().expect("started with a pod network");
    let (id, config) = super::start_pod(c, cri, name, handler, pod_network_pod);
    let (status, info) = cri
        .pod_sandbox_status_verbose(&id)
        .expect("PodSandboxStatus");
    super::assert_pod_ready(&status, handler, api::NamespaceMode::Pod);
    let ip = match pod_ip(&status) {
        Some(IpAddr::V4(ip)) => ip,
        other => panic!("no IPv4 pod address ({other:?}): {status:?}"),
    };
    assert!(
        network.contains(ip) && ip != network.host_address(),
        "pod address {ip} is not a pod address of {}",
        network.subnet()
    );

    let info: serde_json::Value = info
        .get("info")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| panic!("no JSON \"info\" in the verbose status: {info:?}"));
    let sandbox_pid = info["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)
        .unwrap_or_else(|| panic!("no sandbox pid in {info}"));
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|all| all.iter().find(|ns| ns["type"] == "network"))
        .and_then(|ns| ns["path"].as_str())
        .unwrap_or_else(|| panic!("no network namespace path in the sandbox spec: {info}"))
        .to_string();
    NetworkedPod {
        id,
        config,
        ip,
        netns,
        sandbox_pid,
    }
}

/// The inode of a namespace (`/proc/<pid>/ns/net`, or a bind mount of one): equal inodes,
/// same namespace.
fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}

/// The pid containerd reports for the task `id` in `k8s.io` (for a Wasm container: its guest
/// process).
fn task_pid(c: &Containerd, id: &str) -> u32 {
    let out = c.run_ctr_in(CRI_NAMESPACE, &["tasks", "ls"]);
    assert!(out.success(), "{out:?}");
    out.stdout
        .lines()
        .find_map(|line| {
            let mut cols = line.split_whitespace();
            (cols.next() == Some(id)).then(|| cols.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no task {id} in `ctr tasks ls`:\n{}", out.stdout))
}

/// Whether `/proc/<pid>/net/tcp` (the TCP sockets of that process's network namespace) has a
/// listener on 127.0.0.1:`port`.
fn listens_on_loopback(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/net/tcp: {e}"));
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // State 0A: LISTEN.
        cols.get(1) == Some(&local.as_str()) && cols.get(3) == Some(&"0A")
    })
}

/// Accept one connection on `listener` within [`WAIT`]; returns what the peer sent and its
/// address.
fn accept_one(c: &Containerd, listener: &TcpListener) -> (String, IpAddr) {
    listener.set_nonblocking(true).expect("non-blocking");
    let deadline = Instant::now() + WAIT;
    let (mut stream, peer): (TcpStream, _) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "no connection within {WAIT:?}: {e}\nlog tail:\n{}",
                c.log_tail(60)
            ),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .expect("read what the guest sent");
    (text, peer.ip())
}

#[test]
fn a_pod_with_its_own_network_namespace_holds_its_wasm_guests() {
    let c = cri_containerd_with_pod_network();
    let network = c.pod_network().expect("pod network");
    let cri = c.cri();
    let status = cri.status().expect("CRI Status");
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|k| k.r#type == "NetworkReady" && k.status),
        "CRI's network is not ready (CNI configuration not loaded?): {conditions:?}\nlog tail:\n{}",
        c.log_tail(60)
    );
    let probe = wasm_image(&c, &cri, guests::PROBE_P2, "probe-p2");
    let busybox = linux_image(&c, &cri);

    // (a) The pod has a network namespace of its own with an address from the CNI subnet.
    let pod = run_networked_pod(&c, &cri, "net-pod");
    let host_netns = ns_inode("/proc/self/ns/net");
    let pod_netns = ns_inode(&pod.netns);
    assert_ne!(
        pod_netns, host_netns,
        "the pod got the host's network namespace"
    );
    assert_eq!(
        ns_inode(&format!("/proc/{}/ns/net", pod.sandbox_pid)),
        pod_netns,
        "the sandbox is not in the pod's network namespace {}",
        pod.netns
    );
    assert_eq!(
        network.allocated_ips(),
        [pod.ip],
        "host-local's allocations"
    );
    assert_eq!(
        network.bridge_ports().len(),
        1,
        "one veth on {}",
        network.bridge()
    );

    // (b) A Wasm server on the pod's loopback, on a port this test holds on the host's
    // loopback: the guest can only bind it in another network namespace.
    let host_listener = TcpListener::bind("127.0.0.1:0").expect("bind a host port");
    let port = host_listener.local_addr().expect("local address").port();
    let server = container_config(
        "server",
        &probe,
        &[],
        &["serve", &port.to_string()],
        &pod.config,
    );
    let server_id = start(&c, &cri, &pod.id, &pod.config, &server);
    let server_status = wait_state(&c, &cri, &server_id, api::ContainerState::ContainerRunning);
    wait_for_log(&server_status, "stdout", "listening\n");
    // (c) The guest process is in the pod's network namespace, and its listener is in that
    // namespace's socket table.
    let guest_pid = task_pid(&c, &server_id);
    assert_eq!(
        ns_inode(&format!("/proc/{guest_pid}/ns/net")),
        pod_netns,
        "the Wasm guest (pid {guest_pid}) is not in the pod's network namespace"
    );
    assert!(
        listens_on_loopback(guest_pid, port),
        "no listener on 127.0.0.1:{port} in the pod's network namespace"
    );

    // A busybox sidecar in the same pod reaches the Wasm guest over 127.0.0.1.
    let sidecar = super::loopback_sender(&busybox, &port.to_string(), &pod.config);
    let sidecar_id = start(&c, &cri, &pod.id, &pod.config, &sidecar);
    let status = wait_state(&c, &cri, &server_id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    wait_for_log(&status, "stdout", "got: hello-from-sidecar\n");
    host_listener.set_nonblocking(true).expect("non-blocking");
    match host_listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the host's 127.0.0.1:{port} got a connection: {other:?}"),
    }
    wait_state(&c, &cri, &sidecar_id, api::ContainerState::ContainerExited);

    // (c) A Wasm guest's connection to the host leaves the pod from the pod's address, over
    // the bridge (the host's address there is the pod subnet's first).
    let host_side = TcpListener::bind((network.host_address(), 0)).expect("bind on the bridge");
    let target = host_side.local_addr().expect("local address").to_string();
    let client = container_config(
        "client",
        &probe,
        &[],
        &["connect", &target, "hello-from-the-pod"],
        &pod.config,
    );
    let client_id = start(&c, &cri, &pod.id, &pod.config, &client);
    let (text, peer) = accept_one(&c, &host_side);
    assert_eq!(
        (text.as_str(), peer),
        ("hello-from-the-pod", IpAddr::V4(pod.ip))
    );
    let status = wait_state(&c, &cri, &client_id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    wait_for_log(&status, "stdout", "sent\n");

    // (d) Nothing left: no shim, no mount, no container; the network namespace, the veth and
    // the address are gone.
    remove_pod_and_assert_clean(&c, &cri, &pod.id, &[&server_id, &sidecar_id, &client_id]);
    assert!(
        !Path::new(&pod.netns).exists(),
        "the pod's network namespace {} is left",
        pod.netns
    );
    let sandbox_netns = std::fs::metadata(format!("/proc/{}/ns/net", pod.sandbox_pid));
    assert!(
        sandbox_netns.map(|m| m.ino()).ok() != Some(pod_netns),
        "the sandbox process {} is left",
        pod.sandbox_pid
    );
    assert_eq!(
        network.bridge_ports(),
        Vec::<String>::new(),
        "veths left on the bridge"
    );
    assert_eq!(
        network.allocated_ips(),
        Vec::<Ipv4Addr>::new(),
        "host-local still holds the pod's address"
    );
}
