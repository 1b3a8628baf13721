//! `run --bundle B [--detach] ID`: `create` then `start`; without `--detach`, wait for the
//! container's init process and exit with its status; the stopped container stays until
//! `delete`.

use nix::sys::wait::{waitpid, WaitStatus};

use super::create::{create_container, Create};
use crate::{GlobalOpts, OciError};

/// `run` flags: those of `create`, plus `--detach`.
#[derive(Debug, clap::Args)]
pub struct Run {
    #[command(flatten)]
    pub create: Create,
    /// Return once the container runs instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
}

impl Run {
    /// Run `run`; returns the container's exit status when not detached.
    pub fn execute(self, global: &GlobalOpts) -> Result<i32, OciError> {
        let id = self.create.id.clone();
        let mut container = create_container(&self.create, global)?;
        container
            .start()
            .map_err(|e| OciError::container("start", &id, e))?;
        let Some(pid) = container.pid() else {
            return Ok(0);
        };
        if self.detach {
            return Ok(0);
        }
        // The init process is this process's child (libcontainer clones it with CLONE_PARENT).
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(OciError::Io {
                        action: "wait for init process of container",
                        path: id.into(),
                        source: e.into(),
                    })
                }
            }
        }
    }
}
