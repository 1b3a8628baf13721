//! `resume ID`: thaw a paused container.

use crate::{container, GlobalOpts, OciError};

/// `resume` arguments.
#[derive(Debug, clap::Args)]
pub struct Resume {
    /// Container id.
    pub id: String,
}

impl Resume {
    /// Run `resume`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let mut c = container::load(&global.root, &self.id)?;
        c.resume()
            .map_err(|e| OciError::container("resume", &self.id, e))
    }
}
