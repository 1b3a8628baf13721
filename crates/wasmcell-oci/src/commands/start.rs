//! `start ID`: let a created container's init process run its workload.

use crate::{container, GlobalOpts, OciError};

/// `start` arguments.
#[derive(Debug, clap::Args)]
pub struct Start {
    /// Container id.
    pub id: String,
}

impl Start {
    /// Run `start`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let mut c = container::load(&global.root, &self.id)?;
        c.start()
            .map_err(|e| OciError::container("start", &self.id, e))?;
        tracing::info!(container = %self.id, "started");
        Ok(())
    }
}
