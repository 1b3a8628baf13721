//! `state ID`: the container's OCI state as JSON, as runc prints it.

use crate::container::{self, OciState};
use crate::{GlobalOpts, OciError};

/// `state` arguments.
#[derive(Debug, clap::Args)]
pub struct State {
    /// Container id.
    pub id: String,
}

impl State {
    /// Run `state`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let c = container::load(&global.root, &self.id)?;
        super::print_json(&OciState::of(&c))
    }
}
