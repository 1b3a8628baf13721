//! The names wasmcell's runtimes go by, defined once for every binary that installs, runs or
//! measures them.

/// The runtime type containerd knows the shim's normal mode by.
pub const RUNTIME_TYPE: &str = "io.containerd.wasmcell.v1";
/// The shim binary containerd derives from [`RUNTIME_TYPE`].
pub const SHIM_BINARY: &str = "containerd-shim-wasmcell-v1";
/// The runtime type of the shim's shared mode (one manager process for every container).
pub const SHARED_RUNTIME_TYPE: &str = "io.containerd.wasmcell-shared.v1";
/// The binary name containerd derives from [`SHARED_RUNTIME_TYPE`]: a link to [`SHIM_BINARY`].
pub const SHARED_SHIM_BINARY: &str = "containerd-shim-wasmcell-shared-v1";
/// The runc-compatible runtime binary.
pub const OCI_BINARY: &str = "wasmcell-oci";
/// The command-line tool.
pub const CLI_BINARY: &str = "wasmcell";
