//! One [`CriClient`] method per CRI call the tests make (`Version`, `Status`, the pod sandbox
//! and container calls, stats, `ImageStatus`), each filling its request as kubelet or `crictl`
//! would and returning the interesting part of the response.

use std::collections::HashMap;

use super::{api, image_spec, CriClient, Status};

impl CriClient {
    /// `Version`.
    ///
    /// # Errors
    /// The call's status.
    pub fn version(&self) -> Result<api::VersionResponse, Status> {
        let mut c = self.runtime_service();
        self.call(
            "Version",
            c.version(api::VersionRequest {
                version: "v1".into(),
            }),
        )
    }

    /// `Status` (runtime and network conditions).
    ///
    /// # Errors
    /// The call's status.
    pub fn status(&self) -> Result<api::StatusResponse, Status> {
        let mut c = self.runtime_service();
        self.call("Status", c.status(api::StatusRequest { verbose: false }))
    }

    /// `RunPodSandbox` with `runtime_handler`; returns the pod sandbox id.
    ///
    /// # Errors
    /// The call's status.
    pub fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, Status> {
        let mut c = self.runtime_service();
        self.call(
            "RunPodSandbox",
            c.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: runtime_handler.into(),
            }),
        )
        .map(|r| r.pod_sandbox_id)
    }

    /// `PodSandboxStatus`.
    ///
    /// # Errors
    /// The call's status; `NotFound` for an unknown pod.
    pub fn pod_sandbox_status(&self, pod_id: &str) -> Result<api::PodSandboxStatus, Status> {
        let mut c = self.runtime_service();
        self.call(
            "PodSandboxStatus",
            c.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.into(),
                verbose: false,
            }),
        )?
        .status
        .ok_or_else(|| Status::internal(format!("PodSandboxStatus of {pod_id}: no status")))
    }

    /// `PodSandboxStatus` with `verbose`: the status and the runtime's extra information
    /// (containerd puts a JSON document under `"info"`: `pid` of the sandbox, `runtimeSpec`
    /// with the pod's namespaces, `cniResult`, ...).
    ///
    /// # Errors
    /// The call's status; `NotFound` for an unknown pod.
    pub fn pod_sandbox_status_verbose(
        &self,
        pod_id: &str,
    ) -> Result<(api::PodSandboxStatus, HashMap<String, String>), Status> {
        let mut c = self.runtime_service();
        let response = self.call(
            "PodSandboxStatus",
            c.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.into(),
                verbose: true,
            }),
        )?;
        let status = response
            .status
            .ok_or_else(|| Status::internal(format!("PodSandboxStatus of {pod_id}: no status")))?;
        Ok((status, response.info))
    }

    /// `StopPodSandbox`: stops every container of the pod and the sandbox.
    ///
    /// # Errors
    /// The call's status.
    pub fn stop_pod_sandbox(&self, pod_id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "StopPodSandbox",
            c.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            }),
        )
        .map(drop)
    }

    /// `RemovePodSandbox`: removes the pod and its containers.
    ///
    /// # Errors
    /// The call's status.
    pub fn remove_pod_sandbox(&self, pod_id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "RemovePodSandbox",
            c.remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            }),
        )
        .map(drop)
    }

    /// `ListPodSandbox` without a filter.
    ///
    /// # Errors
    /// The call's status.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<api::PodSandbox>, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ListPodSandbox",
            c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.items)
    }

    /// `CreateContainer` in the pod `pod_id` (whose config is `pod`); returns the container id.
    ///
    /// # Errors
    /// The call's status.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: &api::ContainerConfig,
        pod: &api::PodSandboxConfig,
    ) -> Result<String, Status> {
        let mut c = self.runtime_service();
        self.call(
            "CreateContainer",
            c.create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config.clone()),
                sandbox_config: Some(pod.clone()),
            }),
        )
        .map(|r| r.container_id)
    }

    /// `StartContainer`.
    ///
    /// # Errors
    /// The call's status.
    pub fn start_container(&self, id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "StartContainer",
            c.start_container(api::StartContainerRequest {
                container_id: id.into(),
            }),
        )
        .map(drop)
    }

    /// `StopContainer` with a grace period of `timeout_seconds`: the stop signal (SIGTERM), then
    /// SIGKILL once the grace period is over (at once for 0).
    ///
    /// # Errors
    /// The call's status.
    pub fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "StopContainer",
            c.stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_seconds,
            }),
        )
        .map(drop)
    }

    /// `RemoveContainer`.
    ///
    /// # Errors
    /// The call's status.
    pub fn remove_container(&self, id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "RemoveContainer",
            c.remove_container(api::RemoveContainerRequest {
                container_id: id.into(),
            }),
        )
        .map(drop)
    }

    /// `ContainerStatus`.
    ///
    /// # Errors
    /// The call's status; `NotFound` for an unknown container.
    pub fn container_status(&self, id: &str) -> Result<api::ContainerStatus, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ContainerStatus",
            c.container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }),
        )?
        .status
        .ok_or_else(|| Status::internal(format!("ContainerStatus of {id}: no status")))
    }

    /// `ListContainers` without a filter.
    ///
    /// # Errors
    /// The call's status.
    pub fn list_containers(&self) -> Result<Vec<api::Container>, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ListContainers",
            c.list_containers(api::ListContainersRequest { filter: None }),
        )
        .map(|r| r.containers)
    }

    /// `ListContainerStats` without a filter.
    ///
    /// # Errors
    /// The call's status.
    pub fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ListContainerStats",
            c.list_container_stats(api::ListContainerStatsRequest { filter: None }),
        )
        .map(|r| r.stats)
    }

    /// `ContainerStats` of one container.
    ///
    /// # Errors
    /// The call's status.
    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ContainerStats",
            c.container_stats(api::ContainerStatsRequest {
                container_id: id.into(),
            }),
        )?
        .stats
        .ok_or_else(|| Status::internal(format!("ContainerStats of {id}: no stats")))
    }

    /// `ImageStatus` of `reference`: `None` when CRI does not know the image.
    ///
    /// # Errors
    /// The call's status.
    pub fn image_status(&self, reference: &str) -> Result<Option<api::Image>, Status> {
        let mut c = self.image_service();
        self.call(
            "ImageStatus",
            c.image_status(api::ImageStatusRequest {
                image: Some(image_spec(reference)),
                verbose: false,
            }),
        )
        .map(|r| r.image)
    }
}
