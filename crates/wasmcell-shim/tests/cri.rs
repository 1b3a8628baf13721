//! CRI-level tests: the calls kubelet makes, against containerd's real CRI plugin with the
//! runtime handler `wasmcell` (the shim under test). Host-network pods (no CNI) here, pods with
//! their own network namespace (a private CNI network) in `cri/pod_network.rs`; a pause image
//! built from the host's busybox, Wasm images built from the test guests. Pods of the shared
//! runtime (handler `wasmcell-shared`) in `cri/shared_mode.rs`. Must run as root;
//! never skipped.
mod common;
#[path = "cri/http.rs"]
mod http;
#[path = "cri/pod_network.rs"]
mod pod_network;
#[path = "cri/shared_mode.rs"]
mod shared_mode;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::SHIM;
use wasmcell_image::ImageSpec;
use wasmcell_test_guests as guests;
use wasmcell_testing::cri::{
    api, container_config, cri_log_text, host_network_pod, parse_cri_log, pod_network_mode,
    CriClient,
};
use wasmcell_testing::{
    busybox_image, mounts_under, Containerd, ImageBuilder, CRI_NAMESPACE, CRI_RUNTIME_HANDLER,
};

/// Deadline of each wait on a container or pod state.
const WAIT: Duration = Duration::from_secs(60);

/// A containerd with CRI enabled, whose PATH holds the shim under test, with the pause image.
fn cri_containerd() -> Containerd {
    let dir = Path::new(SHIM).parent().expect("shim dir").to_path_buf();
    Containerd::start_cri_with_pause(&[dir])
}

/// Build the Wasm image of `module`, import it into `k8s.io` and wait until CRI knows it, as
/// kubelet's image check does; returns the image id kubelet would pass to CreateContainer.
fn wasm_image(c: &Containerd, cri: &CriClient, module: &str, name: &str) -> String {
    let reference = format!("docker.io/library/{name}:latest");
    let image = ImageSpec::new(module, &reference)
        .build()
        .expect("build image");
    let tar = c.dir().join(format!("{name}.tar"));
    image.write_archive(&tar).expect("write image archive");
    c.import_into(CRI_NAMESPACE, &tar);
    cri.wait_for_image(&reference, WAIT)
        .expect("CRI sees the image")
        .id
}

/// A busybox sidecar that sends `hello-from-sidecar` to 127.0.0.1:`port` in its pod (retrying
/// until something listens there), then exits.
fn loopback_sender(busybox: &str, port: &str, pod: &api::PodSandboxConfig) -> api::ContainerConfig {
    let send = format!("until echo hello-from-sidecar | nc 127.0.0.1 {port}; do sleep 0.2; done");
    container_config(
        "sidecar",
        busybox,
        &["/bin/busybox", "sh", "-c", &send],
        &[],
        pod,
    )
}

/// The busybox Linux image in `k8s.io`; returns its image id.
fn linux_image(c: &Containerd, cri: &CriClient) -> String {
    let reference = "docker.io/wasmcell/busybox:test";
    let tar = c.dir().join("busybox.tar");
    busybox_image(reference)
        .write_archive(&tar)
        .expect("write busybox image (install busybox-static)");
    c.import_into(CRI_NAMESPACE, &tar);
    cri.wait_for_image(reference, WAIT)
        .expect("CRI sees the image")
        .id
}

/// A host-network pod (runtime handler `wasmcell`) with its log directory under the test's
/// directory; returns (pod id, pod config).
fn run_pod(c: &Containerd, cri: &CriClient, name: &str) -> (String, api::PodSandboxConfig) {
    run_pod_with_handler(c, cri, name, CRI_RUNTIME_HANDLER)
}

/// [`run_pod`] with the runtime handler `handler`.
fn run_pod_with_handler(
    c: &Containerd,
    cri: &CriClient,
    name: &str,
    handler: &str,
) -> (String, api::PodSandboxConfig) {
    let (id, config) = start_pod(c, cri, name, handler, host_network_pod);
    let status = cri.pod_sandbox_status(&id).expect("PodSandboxStatus");
    assert_pod_ready(&status, handler, api::NamespaceMode::Node);
    (id, config)
}

/// The builders of a pod's config in `wasmcell_testing::cri` (name, uid, Kubernetes namespace,
/// log directory, cgroup parent).
type PodConfigFn = fn(&str, &str, &str, &Path, &str) -> api::PodSandboxConfig;

/// RunPodSandbox of pod `name` as `config_for` describes it, with its own log directory and
/// cgroup parent, under `handler`; panics with containerd's log tail when it fails.
fn start_pod(
    c: &Containerd,
    cri: &CriClient,
    name: &str,
    handler: &str,
    config_for: PodConfigFn,
) -> (String, api::PodSandboxConfig) {
    let uid = format!("{name}-uid");
    let logs = c.dir().join("pod-logs").join(name);
    std::fs::create_dir_all(&logs).expect("create the pod log directory");
    let config = config_for(name, &uid, "default", &logs, &c.pod_cgroup_parent(&uid));
    let started = Instant::now();
    let id = cri
        .run_pod_sandbox(&config, handler)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
    eprintln!("RunPodSandbox of {name} took {:?}", started.elapsed());
    (id, config)
}

/// The pod is ready, run by `handler`, with network namespace mode `network`.
fn assert_pod_ready(status: &api::PodSandboxStatus, handler: &str, network: api::NamespaceMode) {
    assert_eq!(
        status.state(),
        api::PodSandboxState::SandboxReady,
        "{status:?}"
    );
    assert_eq!(status.runtime_handler, handler, "{status:?}");
    assert_eq!(pod_network_mode(status), Some(network), "{status:?}");
}

/// CreateContainer + StartContainer; returns the container id.
fn start(
    c: &Containerd,
    cri: &CriClient,
    pod_id: &str,
    pod: &api::PodSandboxConfig,
    config: &api::ContainerConfig,
) -> String {
    let id = cri
        .create_container(pod_id, config, pod)
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\nlog tail:\n{}", c.log_tail(60)));
    cri.start_container(&id)
        .unwrap_or_else(|e| panic!("StartContainer: {e}\nlog tail:\n{}", c.log_tail(60)));
    id
}

fn wait_state(
    c: &Containerd,
    cri: &CriClient,
    id: &str,
    state: api::ContainerState,
) -> api::ContainerStatus {
    cri.wait_for_container_state(id, state, WAIT)
        .unwrap_or_else(|e| panic!("{e}\nlog tail:\n{}", c.log_tail(60)))
}

/// The container's CRI log file, parsed (every line must be in CRI format).
fn cri_log(status: &api::ContainerStatus) -> Vec<wasmcell_testing::cri::CriLogLine> {
    let text = std::fs::read_to_string(&status.log_path)
        .unwrap_or_else(|e| panic!("read the CRI log {}: {e}", status.log_path));
    parse_cri_log(&text).unwrap_or_else(|e| panic!("{e}\nwhole log:\n{text}"))
}

/// Wait (bounded) until the container's log holds `needle` on `stream`; returns the log.
fn wait_for_log(
    status: &api::ContainerStatus,
    stream: &str,
    needle: &str,
) -> Vec<wasmcell_testing::cri::CriLogLine> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&status.log_path).unwrap_or_default();
        if let Ok(lines) = parse_cri_log(&text) {
            if cri_log_text(&lines, stream).contains(needle) {
                return lines;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in the {stream} of {} within {WAIT:?}: {text:?}",
            status.log_path
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Shim processes serving this containerd (command line names the shim and the socket).
fn shims(c: &Containerd) -> Vec<u32> {
    common::shims_of(c)
}

/// StopPodSandbox + RemovePodSandbox, then nothing may be left: no pod, no container, no task
/// or container in `k8s.io`, no shim process, no mount under the test's directory, no runc
/// state of the pod's containers.
fn remove_pod_and_assert_clean(c: &Containerd, cri: &CriClient, pod_id: &str, ids: &[&str]) {
    let started = Instant::now();
    cri.stop_pod_sandbox(pod_id)
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
    eprintln!("StopPodSandbox took {:?}", started.elapsed());
    let status = cri.pod_sandbox_status(pod_id).expect("PodSandboxStatus");
    assert_eq!(
        status.state(),
        api::PodSandboxState::SandboxNotready,
        "{status:?}"
    );
    for id in ids {
        let status = cri.container_status(id).expect("ContainerStatus");
        assert_eq!(
            status.state(),
            api::ContainerState::ContainerExited,
            "{status:?}"
        );
    }
    cri.remove_pod_sandbox(pod_id)
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\nlog tail:\n{}", c.log_tail(60)));
    let pods = cri.list_pod_sandboxes().expect("ListPodSandbox");
    assert!(pods.is_empty(), "pods left: {pods:?}");
    let containers = cri.list_containers().expect("ListContainers");
    assert!(containers.is_empty(), "containers left: {containers:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while !shims(c).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(shims(c), Vec::<u32>::new(), "shim processes left behind");
    let out = c.run_ctr_in(CRI_NAMESPACE, &["tasks", "ls", "-q"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "", "tasks left in k8s.io");
    let out = c.run_ctr_in(CRI_NAMESPACE, &["containers", "ls", "-q"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "", "containers left in k8s.io");
    let mounts = mounts_under(c.dir());
    assert!(
        mounts.is_empty(),
        "mounts left under the test dir: {mounts:?}"
    );
    let runc_root = PathBuf::from("/run/wasmcell/runc").join(CRI_NAMESPACE);
    for id in ids.iter().chain([&pod_id]) {
        assert!(
            !runc_root.join(id).exists(),
            "runc state of {id} left in {}",
            runc_root.display()
        );
    }
}

#[test]
fn host_network_pod_runs_wasm_containers_with_logs_and_stats() {
    let c = cri_containerd();
    let cri = c.cri();
    let version = cri.version().expect("CRI Version");
    assert_eq!(version.runtime_name, "containerd", "{version:?}");
    let hello = wasm_image(&c, &cri, guests::HELLO_P1, "hello");
    let probe = wasm_image(&c, &cri, guests::PROBE_P1, "probe");
    let (pod_id, pod) = run_pod(&c, &cri, "wasm-pod");
    assert_eq!(shims(&c).len(), 1, "the sandbox runs in one shim");

    // A Wasm container that prints and exits: EXITED, exit code 0, its stdout in the CRI log.
    let config = container_config("hello", &hello, &[], &[], &pod);
    let hello_id = start(&c, &cri, &pod_id, &pod, &config);
    let status = wait_state(&c, &cri, &hello_id, api::ContainerState::ContainerExited);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "{status:?}"
    );
    // CRI stamps `started_at` with its own clock once Start has returned, and `finished_at`
    // with the exit time the runtime reports (containerd's runc shim stamps it when it reaps
    // the process, as this shim does). A guest that ends within microseconds of Start can
    // therefore show `finished_at` a little before `started_at`, with runc as here: CRI gives no
    // order between the two. Both follow the creation, which CRI stamps before either.
    assert!(
        status.started_at >= status.created_at && status.finished_at >= status.created_at,
        "{status:?}"
    );
    assert!(status.created_at > 0, "{status:?}");
    let expected_log = Path::new(&pod.log_directory).join("hello/0.log");
    assert_eq!(Path::new(&status.log_path), expected_log);
    let lines = wait_for_log(&status, "stdout", "Hello from a wasmcell guest!\n");
    assert!(
        lines.iter().any(|l| l.stream == "stdout"
            && !l.partial
            && l.content == "Hello from a wasmcell guest!"),
        "{lines:?}"
    );
    assert_eq!(cri_log_text(&lines, "stderr"), "", "{lines:?}");

    // Output written a while after the start reaches the log too.
    let config = container_config("late", &probe, &[], &["sleep", "200"], &pod);
    let late_id = start(&c, &cri, &pod_id, &pod, &config);
    let status = wait_state(&c, &cri, &late_id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    let lines = wait_for_log(&status, "stdout", "slept 200 ms\n");
    assert_eq!(cri_log_text(&lines, "stdout"), "slept 200 ms\n");

    // A sleeping Wasm container: RUNNING, same shim, in the pod's cgroup, memory in
    // ListContainerStats.
    let config = container_config("sleeper", &probe, &[], &["sleep", "200000"], &pod);
    let sleeper_id = start(&c, &cri, &pod_id, &pod, &config);
    wait_state(&c, &cri, &sleeper_id, api::ContainerState::ContainerRunning);
    assert_eq!(shims(&c).len(), 1, "one shim for the whole pod");
    let cgroup = Path::new(&c.pod_cgroup_parent("wasm-pod-uid")).join(&sleeper_id);
    let cgroup = cgroup.strip_prefix("/").expect("absolute cgroup path");
    let in_pod_cgroup = [
        Path::new("/sys/fs/cgroup/memory").join(cgroup),
        Path::new("/sys/fs/cgroup").join(cgroup),
    ];
    assert!(
        in_pod_cgroup
            .iter()
            .any(|p| p.join("cgroup.procs").exists()),
        "the Wasm container is not in a cgroup under the pod's cgroup parent: {in_pod_cgroup:?}"
    );
    let deadline = Instant::now() + WAIT;
    let memory = loop {
        let stats = cri.list_container_stats().expect("ListContainerStats");
        let mine = stats
            .iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == sleeper_id));
        let memory = mine.and_then(|s| s.memory);
        let working_set = memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or(0, |v| v.value);
        if working_set > 0 {
            break memory.expect("memory stats");
        }
        assert!(
            Instant::now() < deadline,
            "no memory working set for {sleeper_id} within {WAIT:?}: {stats:?}\nlog tail:\n{}",
            c.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let usage = memory.usage_bytes.as_ref().map_or(0, |v| v.value);
    assert!(usage > 0, "{memory:?}");
    eprintln!(
        "sleeper memory: working set {} bytes, usage {usage} bytes",
        memory.working_set_bytes.as_ref().map_or(0, |v| v.value)
    );
    let one = cri.container_stats(&sleeper_id).expect("ContainerStats");
    assert!(
        one.memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .is_some_and(|v| v.value > 0),
        "{one:?}"
    );

    remove_pod_and_assert_clean(&c, &cri, &pod_id, &[&hello_id, &late_id, &sleeper_id]);
}

#[test]
fn a_pod_runs_a_wasm_and_a_linux_container_in_one_shim() {
    let c = cri_containerd();
    let cri = c.cri();
    let probe = wasm_image(&c, &cri, guests::PROBE_P1, "probe");
    let busybox = linux_image(&c, &cri);
    let (pod_id, pod) = run_pod(&c, &cri, "mixed-pod");

    let wasm_config = container_config("wasm", &probe, &[], &["sleep", "600000"], &pod);
    let wasm_id = start(&c, &cri, &pod_id, &pod, &wasm_config);
    let linux_config = container_config(
        "linux",
        &busybox,
        &["/bin/busybox", "sh", "-c", "echo linux side; sleep 1000"],
        &[],
        &pod,
    );
    let linux_id = start(&c, &cri, &pod_id, &pod, &linux_config);
    wait_state(&c, &cri, &wasm_id, api::ContainerState::ContainerRunning);
    let linux_status = wait_state(&c, &cri, &linux_id, api::ContainerState::ContainerRunning);
    wait_for_log(&linux_status, "stdout", "linux side\n");
    assert_eq!(
        shims(&c).len(),
        1,
        "the sandbox, the Wasm and the Linux container share one shim"
    );
    let containers = cri.list_containers().expect("ListContainers");
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert!(
        containers
            .iter()
            .all(|k| k.pod_sandbox_id == pod_id
                && k.state() == api::ContainerState::ContainerRunning),
        "{containers:?}"
    );

    // The Linux container's shell is pid 1 of its pid namespace and ignores SIGTERM: after the
    // grace period, StopContainer kills it (137).
    let grace = 2;
    let started = Instant::now();
    cri.stop_container(&linux_id, grace)
        .unwrap_or_else(|e| panic!("StopContainer: {e}\nlog tail:\n{}", c.log_tail(60)));
    let took = started.elapsed();
    let status = cri.container_status(&linux_id).expect("ContainerStatus");
    assert_eq!(
        (status.state(), status.exit_code),
        (api::ContainerState::ContainerExited, 137),
        "{status:?}"
    );
    assert_eq!(status.reason, "Error", "{status:?}");
    assert!(
        took >= Duration::from_secs(grace as u64) - Duration::from_millis(100),
        "SIGKILL came before the grace period was over: {took:?}"
    );
    assert!(
        took < Duration::from_secs(30),
        "StopContainer took {took:?}"
    );
    // The Wasm guest is still running, and SIGTERM stops it within its grace period.
    assert_eq!(
        cri.container_status(&wasm_id)
            .expect("ContainerStatus")
            .state(),
        api::ContainerState::ContainerRunning
    );
    let started = Instant::now();
    cri.stop_container(&wasm_id, 30)
        .unwrap_or_else(|e| panic!("StopContainer: {e}\nlog tail:\n{}", c.log_tail(60)));
    let took = started.elapsed();
    let status = cri.container_status(&wasm_id).expect("ContainerStatus");
    assert_eq!(
        status.state(),
        api::ContainerState::ContainerExited,
        "{status:?}"
    );
    assert_eq!(status.exit_code, 143, "killed by SIGTERM: {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "the Wasm guest ignored SIGTERM: StopContainer took {took:?}"
    );
    assert_eq!(shims(&c).len(), 1, "the sandbox still runs in the shim");

    remove_pod_and_assert_clean(&c, &cri, &pod_id, &[&wasm_id, &linux_id]);
}

#[test]
fn a_read_only_host_path_mount_is_readable_not_writable() {
    let c = cri_containerd();
    let cri = c.cri();
    let probe = wasm_image(&c, &cri, guests::PROBE_P1, "probe");
    let host_dir = c.dir().join("host-data");
    std::fs::create_dir_all(&host_dir).expect("create the host directory");
    std::fs::write(host_dir.join("file.txt"), "data from the host\n").expect("write file.txt");
    let (pod_id, pod) = run_pod(&c, &cri, "mount-pod");
    let mount = api::Mount {
        container_path: "/data".into(),
        host_path: host_dir.display().to_string(),
        readonly: true,
        propagation: api::MountPropagation::PropagationPrivate.into(),
        ..Default::default()
    };

    let mut reader = container_config("reader", &probe, &[], &["read", "/data/file.txt"], &pod);
    reader.mounts = vec![mount.clone()];
    let reader_id = start(&c, &cri, &pod_id, &pod, &reader);
    let status = wait_state(&c, &cri, &reader_id, api::ContainerState::ContainerExited);
    let lines = cri_log(&status);
    assert_eq!(
        (status.exit_code, cri_log_text(&lines, "stdout").as_str()),
        (0, "data from the host\n"),
        "{status:?}"
    );
    let mounts = status.mounts.clone();
    assert!(
        mounts
            .iter()
            .any(|m| m.container_path == "/data" && m.readonly),
        "{mounts:?}"
    );

    let mut writer = container_config(
        "writer",
        &probe,
        &[],
        &["write", "/data/new.txt", "x"],
        &pod,
    );
    writer.mounts = vec![mount];
    let writer_id = start(&c, &cri, &pod_id, &pod, &writer);
    let status = wait_state(&c, &cri, &writer_id, api::ContainerState::ContainerExited);
    let lines = cri_log(&status);
    assert_eq!(
        (status.exit_code, cri_log_text(&lines, "stdout").as_str()),
        (1, "error: PermissionDenied (errno 63)\n"),
        "{status:?}"
    );
    assert_eq!(status.reason, "Error", "{status:?}");
    assert!(
        !host_dir.join("new.txt").exists(),
        "the guest wrote through a read-only mount"
    );

    remove_pod_and_assert_clean(&c, &cri, &pod_id, &[&reader_id, &writer_id]);
}

#[test]
fn a_container_that_fails_to_start_does_not_take_the_pod_down() {
    let c = cri_containerd();
    let cri = c.cri();
    let hello = wasm_image(&c, &cri, guests::HELLO_P1, "hello");
    // A module cut short: the guest process fails to compile it at task create.
    let reference = "docker.io/library/truncated:latest";
    let tar = c.dir().join("truncated.tar");
    ImageBuilder::new(reference)
        .platform("wasi", "wasm")
        .file("/app.wasm", b"\0asm\x01\0\0\0\x01\x02".to_vec(), 0o755)
        .entrypoint(["/app.wasm"])
        .write_archive(&tar)
        .expect("write image archive");
    c.import_into(CRI_NAMESPACE, &tar);
    let truncated = cri.wait_for_image(reference, WAIT).expect("image").id;
    let (pod_id, pod) = run_pod(&c, &cri, "failing-pod");
    let shim = shims(&c);
    assert_eq!(shim.len(), 1, "{shim:?}");

    let config = container_config("broken", &truncated, &[], &[], &pod);
    let broken_id = cri
        .create_container(&pod_id, &config, &pod)
        .expect("CreateContainer");
    let err = cri
        .start_container(&broken_id)
        .expect_err("StartContainer of a truncated module must fail");
    assert!(err.message().contains("failed to compile"), "{err:?}");
    let status = cri.container_status(&broken_id).expect("ContainerStatus");
    assert_eq!(
        (status.state(), status.reason.as_str()),
        (api::ContainerState::ContainerExited, "StartError"),
        "{status:?}"
    );
    assert!(status.message.contains("failed to compile"), "{status:?}");

    // The pod's shim (and its sandbox) survived: the next container runs in it.
    assert_eq!(shims(&c), shim, "the pod's shim is the same process");
    let sandbox = cri.pod_sandbox_status(&pod_id).expect("PodSandboxStatus");
    assert_eq!(sandbox.state(), api::PodSandboxState::SandboxReady);
    let config = container_config("hello", &hello, &[], &[], &pod);
    let hello_id = start(&c, &cri, &pod_id, &pod, &config);
    let status = wait_state(&c, &cri, &hello_id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    wait_for_log(&status, "stdout", "Hello from a wasmcell guest!\n");
    assert_eq!(shims(&c), shim, "the pod's shim is the same process");

    remove_pod_and_assert_clean(&c, &cri, &pod_id, &[&broken_id, &hello_id]);
}

#[test]
fn a_wasm_container_and_a_linux_sidecar_talk_over_the_pods_loopback() {
    let c = cri_containerd();
    let cri = c.cri();
    let probe = wasm_image(&c, &cri, guests::PROBE_P2, "probe-p2");
    let busybox = linux_image(&c, &cri);
    let (pod_id, pod) = run_pod(&c, &cri, "talk-pod");
    // A free port on the (host-network) pod's loopback.
    let port = wasmcell_testing::free_port().to_string();

    let server = container_config("server", &probe, &[], &["serve", &port], &pod);
    let server_id = start(&c, &cri, &pod_id, &pod, &server);
    let server_status = wait_state(&c, &cri, &server_id, api::ContainerState::ContainerRunning);
    wait_for_log(&server_status, "stdout", "listening\n");

    let sidecar = loopback_sender(&busybox, &port, &pod);
    let sidecar_id = start(&c, &cri, &pod_id, &pod, &sidecar);

    let status = wait_state(&c, &cri, &server_id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    wait_for_log(&status, "stdout", "got: hello-from-sidecar\n");
    remove_pod_and_assert_clean(&c, &cri, &pod_id, &[&server_id, &sidecar_id]);
}

#[test]
fn a_wasm_oci_artifact_runs_in_a_pod() {
    let c = cri_containerd();
    let cri = c.cri();
    let reference = "docker.io/library/hello-artifact:cri";
    common::import_artifact_into(&c, CRI_NAMESPACE, guests::HELLO_P1, "wasip1", reference);
    let image = cri
        .wait_for_image(reference, WAIT)
        .expect("CRI sees the artifact image")
        .id;
    let (pod_id, pod) = run_pod(&c, &cri, "artifact-pod");
    let config = container_config("artifact", &image, &["hello.wasm"], &["one"], &pod);
    let id = start(&c, &cri, &pod_id, &pod, &config);
    let status = wait_state(&c, &cri, &id, api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    wait_for_log(
        &status,
        "stdout",
        "Hello from a wasmcell guest! args: one\n",
    );
    remove_pod_and_assert_clean(&c, &cri, &pod_id, &[&id]);
}
