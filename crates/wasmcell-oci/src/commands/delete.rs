//! `delete [--force] ID`: remove a stopped (or created) container's cgroup and state; `--force`
//! kills a running one first. As with runc, `--force` on an unknown id succeeds.

use crate::container::{container_dir, load};
use crate::{GlobalOpts, OciError};

/// `delete` arguments.
#[derive(Debug, clap::Args)]
pub struct Delete {
    /// Kill the container first if it is running.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Container id.
    pub id: String,
}

impl Delete {
    /// Run `delete`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let mut c = match load(&global.root, &self.id) {
            Ok(c) => c,
            Err(OciError::NotFound { id }) => {
                // A directory without state.json is what an aborted create leaves.
                let dir = container_dir(&global.root, &id)?;
                if dir.exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return if self.force {
                    Ok(())
                } else {
                    Err(OciError::NotFound { id })
                };
            }
            Err(e) => return Err(e),
        };
        c.delete(self.force)
            .map_err(|e| OciError::container("delete", &self.id, e))?;
        tracing::info!(container = %self.id, "deleted");
        Ok(())
    }
}
