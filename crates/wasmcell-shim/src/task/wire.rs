//! The Task API's wire shapes, built once for every backend: timestamps, statuses, the
//! `StateResponse`, the stats `Any`.

use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim::api::{StateResponse, StatsResponse, Status};
use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};

use crate::task::container::Container;
use crate::task::life::Phase;
use crate::ShimError;

/// The type containerd decodes a task's stats as (cgroup v1's, which both Wasm backends fill).
const METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

pub(crate) fn status(phase: Phase) -> Status {
    match phase {
        Phase::Created => Status::CREATED,
        Phase::Running => Status::RUNNING,
        Phase::Stopped(_) => Status::STOPPED,
    }
}

pub(crate) fn state_response(container: &Container) -> StateResponse {
    let phase = container.phase();
    let exit = phase.exit();
    let req = &container.req;
    StateResponse {
        id: req.id.clone(),
        bundle: req.bundle.display().to_string(),
        pid: container.pid,
        status: status(phase).into(),
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal: false,
        exit_status: exit.map_or(0, |e| e.code),
        exited_at: match exit {
            Some(e) => MessageField::some(timestamp(e.at)),
            None => MessageField::none(),
        },
        ..Default::default()
    }
}

pub(crate) fn stats_response(metrics: &Metrics) -> Result<StatsResponse, ShimError> {
    let value = metrics.write_to_bytes().map_err(|e| {
        ShimError::io(
            "failed to encode metrics",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(StatsResponse {
        stats: MessageField::some(Any {
            type_url: METRICS_TYPE.into(),
            value,
            ..Default::default()
        }),
        ..Default::default()
    })
}
