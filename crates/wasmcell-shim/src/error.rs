use containerd_shim::protos::ttrpc;

/// Errors of the shim's task service, each mapped to one ttrpc status code.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No container with this id in this shim.
    #[error("container {0} not found")]
    NotFound(String),
    /// A container with this id exists already.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// The request does not fit the container's state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is malformed or asks for something unsupported in this form.
    #[error("{0}")]
    InvalidArgument(String),
    /// The call is not implemented by this shim.
    #[error("{0} is not supported by the wasmcell shim")]
    Unimplemented(&'static str),
    /// The workload could not be prepared: bad bundle, entrypoint, or module.
    #[error("{0}")]
    Workload(String),
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or id.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ShimError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ShimError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        let code = match &e {
            ShimError::NotFound(_) => ttrpc::Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) | ShimError::Workload(_) => ttrpc::Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            ShimError::Io { .. } => ttrpc::Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}
