//! One file per verb of the runc command line; each has a clap struct and an `execute`.

pub mod create;
pub mod delete;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod resume;
pub mod run;
pub mod start;
pub mod state;
pub mod update;

use crate::{GlobalOpts, OciError};

/// The verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(create::Create),
    /// Start a created container's process.
    Start(start::Start),
    /// Print a container's OCI state as JSON.
    State(state::State),
    /// Send a signal to a container's init process (or all its processes).
    Kill(kill::Kill),
    /// Delete a container's resources and state.
    Delete(delete::Delete),
    /// Print the features this runtime supports as JSON.
    Features(features::Features),
    /// List the processes of a container.
    Ps(ps::Ps),
    /// List containers.
    List(list::List),
    /// Run a new process in a running container.
    Exec(exec::Exec),
    /// Suspend every process of a container.
    Pause(pause::Pause),
    /// Resume a paused container.
    Resume(resume::Resume),
    /// Change a container's resource limits.
    Update(update::Update),
    /// Create and start a container, and wait for it unless detached.
    Run(run::Run),
}

impl Command {
    /// Run the verb; returns the exit status of the runtime process.
    pub fn execute(self, global: &GlobalOpts) -> Result<i32, OciError> {
        match self {
            Command::Create(c) => c.execute(global).map(|()| 0),
            Command::Start(c) => c.execute(global).map(|()| 0),
            Command::State(c) => c.execute(global).map(|()| 0),
            Command::Kill(c) => c.execute(global).map(|()| 0),
            Command::Delete(c) => c.execute(global).map(|()| 0),
            Command::Features(c) => c.execute().map(|()| 0),
            Command::Ps(c) => c.execute(global).map(|()| 0),
            Command::List(c) => c.execute(global).map(|()| 0),
            Command::Exec(c) => c.execute(global),
            Command::Pause(c) => c.execute(global).map(|()| 0),
            Command::Resume(c) => c.execute(global).map(|()| 0),
            Command::Update(c) => c.execute(global).map(|()| 0),
            Command::Run(c) => c.execute(global),
        }
    }
}

/// Print `value` as JSON on stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<(), OciError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| OciError::Io {
        action: "write json to",
        path: "stdout".into(),
        source: std::io::Error::other(e),
    })?;
    println!("{text}");
    Ok(())
}
