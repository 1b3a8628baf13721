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
    /// The workload could not be prepared: bad bundle, spec, entrypoint, or module.
    #[error("{0}")]
    Workload(String),
    /// The shim's own configuration is unusable: a setting of its environment (the manager's
    /// `WASMCELL_MANAGER_*` variables) has a value it cannot apply.
    #[error("{0}")]
    Config(String),
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
            ShimError::FailedPrecondition(_) | ShimError::Config(_) => {
                ttrpc::Code::FAILED_PRECONDITION
            }
            ShimError::InvalidArgument(_) | ShimError::Workload(_) => ttrpc::Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            ShimError::Io { .. } => ttrpc::Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: ShimError) -> (ttrpc::Code, String) {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn maps_each_error_to_one_wire_code_keeping_the_message() {
        assert_eq!(
            status(ShimError::NotFound("web-1".into())),
            (ttrpc::Code::NOT_FOUND, "container web-1 not found".into())
        );
        assert_eq!(
            status(ShimError::Unimplemented("Pause")),
            (
                ttrpc::Code::UNIMPLEMENTED,
                "Pause is not supported by the wasmcell shim".into()
            )
        );
        assert_eq!(
            status(ShimError::AlreadyExists("a".into())).0,
            ttrpc::Code::ALREADY_EXISTS
        );
        assert_eq!(
            status(ShimError::FailedPrecondition("x".into())).0,
            ttrpc::Code::FAILED_PRECONDITION
        );
        assert_eq!(
            status(ShimError::Workload("x".into())).0,
            ttrpc::Code::INVALID_ARGUMENT
        );
        assert_eq!(
            status(ShimError::Config(
                "WASMCELL_MANAGER_CPU_SHARES=1: must be 2 to 262144".into()
            )),
            (
                ttrpc::Code::FAILED_PRECONDITION,
                "WASMCELL_MANAGER_CPU_SHARES=1: must be 2 to 262144".into()
            )
        );
        let io = ShimError::io("failed to open /x", std::io::Error::other("boom"));
        assert_eq!(
            status(io),
            (ttrpc::Code::INTERNAL, "failed to open /x: boom".into())
        );
    }
}
