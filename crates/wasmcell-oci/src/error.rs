//! The one error type of the runtime's library layer. Messages are lowercase and name the
//! container id, the path or the field concerned; [`OciError::chain`] renders the whole chain of
//! causes for logs and stderr.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No state directory for this id under the root.
    #[error("container {id} does not exist")]
    NotFound {
        /// The container id.
        id: String,
    },
    /// `create` for an id whose state directory already exists.
    #[error("container {id} already exists")]
    Exists {
        /// The container id.
        id: String,
    },
    /// The bundle or its `config.json` cannot be used.
    #[error("invalid bundle {path}: {reason}")]
    Bundle {
        /// The bundle directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The Wasm workload of the bundle cannot run (checked before anything is set up).
    #[error("container {id}: {source}")]
    Workload {
        /// The container id.
        id: String,
        /// What wasmcell-core found.
        source: wasmcell_core::Error,
    },
    /// A libcontainer operation failed.
    #[error("failed to {action} container {id}: {source}")]
    Container {
        /// What was being done (`create`, `start`, ...).
        action: &'static str,
        /// The container id.
        id: String,
        /// The underlying error (boxed: libcontainer's error is large).
        source: Box<LibcontainerError>,
    },
    /// The container's processes would be forked while this process had other threads.
    #[error("container {id}: {source}")]
    Fork {
        /// The container id.
        id: String,
        /// How many threads there were.
        source: wasmcell_core::fork::ForkError,
    },
    /// The container's init process was not ready in time; the container was removed.
    #[error(
        "failed to {action} container {id}: its init process was not ready within {}s \
         (it was {step})",
        after.as_secs()
    )]
    Deadline {
        /// What was being done (`create`, `exec in`).
        action: &'static str,
        /// The container id.
        id: String,
        /// How long it was given.
        after: std::time::Duration,
        /// The step the init process had reached.
        step: &'static str,
    },
    /// The container's cgroup could not be read or changed.
    #[error("failed to {action} cgroup of container {id}: {reason}")]
    Cgroup {
        /// What was being done.
        action: &'static str,
        /// The container id.
        id: String,
        /// The underlying error, rendered.
        reason: String,
    },
    /// A signal name or number that is not a signal.
    #[error("invalid signal {0:?}")]
    Signal(String),
    /// A command-line value that cannot be used.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The flag or argument.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A file of the runtime's own could not be read or written.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A verb this runtime refuses, with the reason.
    #[error("{verb} is not supported by wasmcell-oci: {reason}")]
    Unsupported {
        /// The verb.
        verb: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
}

impl OciError {
    /// Shorthand for [`OciError::Container`].
    pub fn container(action: &'static str, id: &str, source: LibcontainerError) -> Self {
        OciError::Container {
            action,
            id: id.to_string(),
            source: Box::new(source),
        }
    }

    /// This error and every cause below it, joined by `": "`, skipping causes whose text the
    /// message above already holds.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            let text = err.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = err.source();
        }
        out
    }
}
