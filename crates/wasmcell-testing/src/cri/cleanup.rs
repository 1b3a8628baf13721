//! Removing every pod sandbox the way kubelet removes pods whose grace period is over, for
//! tests and for [`crate::Containerd`]'s drop.

use std::path::Path;
use std::time::Duration;

use super::CriClient;

/// Grace period [`remove_all_pods`] gives containers before SIGKILL: none, as for a pod whose
/// grace period is over.
const CLEANUP_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl CriClient {
    /// Stop and remove every pod sandbox (which stops and removes their containers), the way
    /// kubelet removes pods whose grace period is over. Returns what failed.
    pub fn remove_all_pods(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let pods = match self.list_pod_sandboxes() {
            Ok(pods) => pods,
            Err(e) => return vec![format!("ListPodSandbox: {e}")],
        };
        for pod in pods {
            if let Err(e) = self.stop_pod_sandbox(&pod.id) {
                problems.push(format!("StopPodSandbox {}: {e}", pod.id));
            }
            if let Err(e) = self.remove_pod_sandbox(&pod.id) {
                problems.push(format!("RemovePodSandbox {}: {e}", pod.id));
            }
        }
        problems
    }
}

/// Connect to the CRI plugin on `socket` and [`CriClient::remove_all_pods`]; used by
/// [`crate::Containerd`]'s drop. Never panics.
pub fn remove_all_pods(socket: &Path) -> Vec<String> {
    match CriClient::connect(socket) {
        Ok(client) => client.with_timeout(CLEANUP_CALL_TIMEOUT).remove_all_pods(),
        Err(e) => vec![format!("CRI cleanup: {e}")],
    }
}
