//! Polling [`CriClient`] helpers: waiting until CRI knows an image, or until a container
//! reaches a state.

use std::thread;
use std::time::{Duration, Instant};

use super::{api, CriClient};

/// Interval of the polling helpers.
const POLL: Duration = Duration::from_millis(50);

impl CriClient {
    /// Poll `ImageStatus` until CRI knows `reference` (images imported with `ctr` reach CRI's
    /// image store through an event, shortly after the import), as kubelet's image check does
    /// before `CreateContainer`. Returns the image; its `id` is what kubelet passes to
    /// `CreateContainer`.
    ///
    /// # Errors
    /// When the image is not known within `timeout`, or a call fails.
    pub fn wait_for_image(&self, reference: &str, timeout: Duration) -> Result<api::Image, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.image_status(reference) {
                Ok(Some(image)) => return Ok(image),
                Ok(None) => {}
                Err(e) => return Err(format!("ImageStatus of {reference}: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("CRI did not know {reference} within {timeout:?}"));
            }
            thread::sleep(POLL);
        }
    }

    /// Poll `ContainerStatus` until the container is in `state`; returns that status.
    ///
    /// # Errors
    /// When it is not in `state` within `timeout` (the message holds the last status), or a
    /// call fails.
    pub fn wait_for_container_state(
        &self,
        id: &str,
        state: api::ContainerState,
        timeout: Duration,
    ) -> Result<api::ContainerStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .container_status(id)
                .map_err(|e| format!("ContainerStatus of {id}: {e}"))?;
            if status.state() == state {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "container {id} not {state:?} within {timeout:?}; last status: {status:?}"
                ));
            }
            thread::sleep(POLL);
        }
    }
}
