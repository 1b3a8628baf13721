//! `pause ID`: freeze every process of a running container (cgroup freezer).

use crate::{container, GlobalOpts, OciError};

/// `pause` arguments.
#[derive(Debug, clap::Args)]
pub struct Pause {
    /// Container id.
    pub id: String,
}

impl Pause {
    /// Run `pause`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let mut c = container::load(&global.root, &self.id)?;
        c.pause()
            .map_err(|e| OciError::container("pause", &self.id, e))
    }
}
