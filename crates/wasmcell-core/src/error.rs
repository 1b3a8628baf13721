use crate::{EngineError, ModuleError, ResolveError, SpecError};

/// Any error of the core library, joined from the layer that raised it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OCI spec is malformed or asks for something wasmcell cannot honour.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The spec could not be resolved against the filesystem.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The entrypoint is missing or is not a usable Wasm binary.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The engine failed to compile, link or run the guest.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Error {
    /// The process exit status a host should report for this error
    /// ([`EXIT_CONFIG_ERROR`](crate::EXIT_CONFIG_ERROR), [`EXIT_NOT_RUNNABLE`](crate::EXIT_NOT_RUNNABLE)
    /// or [`EXIT_NOT_FOUND`](crate::EXIT_NOT_FOUND)).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec(_) => crate::EXIT_CONFIG_ERROR,
            Error::Resolve(e) => e.exit_code(),
            Error::Module(e) => e.exit_code(),
            Error::Engine(e) => e.exit_code(),
        }
    }
}
