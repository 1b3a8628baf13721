//! The file in a bundle that records a container's task pid and cgroup, so that
//! `containerd-shim-wasmcell-v1 delete` can clean up after a shim that died.

use std::path::{Path, PathBuf};

/// Name of the state file in the bundle.
pub(crate) const STATE_FILE: &str = "wasmcell-shim.json";

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StateRecord {
    pub(crate) pid: u32,
    /// When `pid` started (`crate::pidfd::start_time`): `delete` kills only that process.
    #[serde(default)]
    pub(crate) start_time: Option<u64>,
    pub(crate) cgroup: Option<PathBuf>,
}

/// Record `pid` and `cgroup` in `bundle` (atomically: a dead shim leaves a whole record or
/// none). A failure is logged: the record only helps a later `delete`.
pub(crate) fn write_state_file(bundle: &Path, pid: u32, cgroup: Option<&Path>) {
    let record = StateRecord {
        pid,
        start_time: crate::pidfd::start_time(pid),
        cgroup: cgroup.map(Path::to_path_buf),
    };
    let path = bundle.join(STATE_FILE);
    let tmp = bundle.join(format!("{STATE_FILE}.tmp"));
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "failed to record shim state");
    }
}

/// The record of `bundle`, if there is a readable one.
pub(crate) fn read_state_file(bundle: &Path) -> Option<StateRecord> {
    std::fs::read(bundle.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

pub(crate) fn remove_state_file(bundle: &Path) {
    let _ = std::fs::remove_file(bundle.join(STATE_FILE));
}
