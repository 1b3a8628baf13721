//! Containers made through containerd's gRPC API, as CRI makes them, where `ctr` cannot (a
//! task created and started in two steps, an artifact image with an empty snapshot).

use std::path::{Path, PathBuf};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Request;
use oci_spec::runtime::Spec;
use wasmcell_testing::Containerd;

/// A container created through containerd's API as CRI creates one for an artifact image: the
/// image named on the container, an empty snapshot as its rootfs, the pod's args in the spec.
/// `between` runs after the task is created and before it is started. Returns the guest's exit
/// status and stdout.
pub fn run_as_cri_does(
    c: &Containerd,
    runtime_type: &str,
    image: &str,
    id: &str,
    args: &[&str],
    between: impl FnOnce(),
) -> (u32, String) {
    let stdout = c.dir().join(format!("{id}.stdout"));
    std::fs::write(&stdout, "").expect("create stdout file");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let status = runtime.block_on(async {
        let channel = containerd_client::connect(c.socket())
            .await
            .expect("connect to containerd");
        let mut containers = ContainersClient::new(channel.clone());
        let mut snapshots = SnapshotsClient::new(channel.clone());
        let mut tasks = TasksClient::new(channel.clone());
        let container = Container {
            id: id.to_string(),
            image: image.to_string(),
            runtime: Some(Runtime {
                name: runtime_type.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".to_string(),
                value: spec_json(c, id, args),
            }),
            snapshotter: c.snapshotter().to_string(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        containers
            .create(in_namespace(
                c,
                CreateContainerRequest {
                    container: Some(container),
                },
            ))
            .await
            .expect("create container");
        let mounts = snapshots
            .prepare(in_namespace(
                c,
                PrepareSnapshotRequest {
                    snapshotter: c.snapshotter().to_string(),
                    key: id.to_string(),
                    parent: String::new(),
                    ..Default::default()
                },
            ))
            .await
            .expect("prepare an empty snapshot")
            .into_inner()
            .mounts;
        tasks
            .create(in_namespace(
                c,
                CreateTaskRequest {
                    container_id: id.to_string(),
                    rootfs: mounts,
                    stdout: stdout.display().to_string(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create task");
        between();
        let wait = {
            let mut tasks = tasks.clone();
            let request = in_namespace(
                c,
                WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
            );
            tokio::spawn(async move { tasks.wait(request).await })
        };
        tasks
            .start(in_namespace(
                c,
                StartRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
            ))
            .await
            .expect("start task");
        let status = wait
            .await
            .expect("wait task")
            .expect("wait task")
            .into_inner()
            .exit_status;
        tasks
            .delete(in_namespace(
                c,
                DeleteTaskRequest {
                    container_id: id.to_string(),
                },
            ))
            .await
            .expect("delete task");
        // The snapshot first: once its container is gone, containerd's collector may take it.
        snapshots
            .remove(in_namespace(
                c,
                RemoveSnapshotRequest {
                    snapshotter: c.snapshotter().to_string(),
                    key: id.to_string(),
                },
            ))
            .await
            .expect("remove snapshot");
        containers
            .delete(in_namespace(
                c,
                DeleteContainerRequest { id: id.to_string() },
            ))
            .await
            .expect("delete container");
        status
    });
    let out = std::fs::read_to_string(&stdout).expect("read stdout");
    (status, out)
}

/// `message` as a request in `c`'s namespace.
pub fn in_namespace<T>(c: &Containerd, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "containerd-namespace",
        c.namespace().parse().expect("namespace header"),
    );
    r
}

/// The runtime spec of a container with a writable `rootfs`, `args` and the cgroup path `ctr`
/// would give it.
pub fn spec_json(c: &Containerd, id: &str, args: &[&str]) -> Vec<u8> {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().expect("default process");
    process.set_terminal(Some(false));
    process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    process.set_cwd(PathBuf::from("/"));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().expect("default root");
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    let mut linux = spec.linux().clone().expect("default linux");
    linux.set_cgroups_path(Some(Path::new("/").join(c.namespace()).join(id)));
    spec.set_linux(Some(linux));
    serde_json::to_vec(&spec).expect("serialize spec")
}
