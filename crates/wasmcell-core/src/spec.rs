//! Step one of the OCI -> WASI mapping: parse and validate, no I/O.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, Process, Root, Spec};

/// Why an OCI spec cannot be turned into a Wasm workload.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// `config.json` could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` is not a valid OCI runtime spec.
    #[error("malformed {path}: {source}")]
    Malformed {
        /// The file that failed to parse.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A required field is absent.
    #[error("config.json has no {field}")]
    Missing {
        /// The dotted name of the field, e.g. `process.args`.
        field: &'static str,
    },
    /// A field holds a value wasmcell cannot use.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The dotted name of the field.
        field: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One bind mount of the bundle, as the guest will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute path inside the guest.
    pub destination: PathBuf,
    /// Host path (absolute, or relative to the bundle directory).
    pub source: PathBuf,
    /// True when the mount options contain `ro`.
    pub readonly: bool,
}

/// A validated Wasm workload taken from an OCI runtime spec, before any filesystem access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// `process.args[0]` without any `#export` suffix: the module path inside the rootfs.
    pub entrypoint: PathBuf,
    /// The function named after `#` in `process.args[0]`, if any.
    pub export: Option<String>,
    /// The guest's argv, `process.args` as given (argv\[0\] keeps any `#export` suffix stripped).
    pub args: Vec<String>,
    /// Exactly `process.env`, split at the first `=`.
    pub env: Vec<(String, String)>,
    /// `process.cwd`, absolute.
    pub cwd: PathBuf,
    /// `root.path` (absolute, or relative to the bundle directory).
    pub root: PathBuf,
    /// `root.readonly`.
    pub root_readonly: bool,
    /// Bind mounts, in spec order. Other mount types (proc, sysfs, tmpfs, ...) mean nothing to a
    /// WASI guest and are left out.
    pub mounts: Vec<MountSpec>,
    /// `linux.resources.memory.limit` in bytes, when set and positive.
    pub memory_limit: Option<u64>,
    /// The soft `RLIMIT_NOFILE` of `process.rlimits`, when set: how many descriptors the guest
    /// may hold open.
    pub open_files_limit: Option<u64>,
    /// Whether the guest may open sockets. A container's network boundary is its network
    /// namespace (its own, its pod's, or the host's for host-network pods), as for a Linux
    /// container; the annotation `wasmcell.dev/network: none` takes sockets away.
    pub network: bool,
}

/// Annotation that, set to `none`, denies a container's guest every socket.
pub const NETWORK_ANNOTATION: &str = "wasmcell.dev/network";

impl WorkloadSpec {
    /// The `PATH` a bare entrypoint name is looked up in: `process.env`'s, else runc's default.
    pub fn path_env(&self) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(crate::workload_kind::DEFAULT_PATH, |(_, v)| v.as_str())
    }

    /// This workload as its own process sees it once a runtime has made the rootfs its root
    /// and put every bind mount at its destination (libcontainer for `wasmcell-oci`, the
    /// shim's guest process itself): root `/`, each mount's source its destination.
    pub fn inside_root(&self) -> WorkloadSpec {
        let mut inside = self.clone();
        inside.root = "/".into();
        for mount in &mut inside.mounts {
            mount.source = mount.destination.clone();
        }
        inside
    }

    /// Read and validate `config.json` from an OCI bundle directory.
    pub fn load(bundle: &Path) -> Result<Self, SpecError> {
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| SpecError::Read {
            path: path.clone(),
            source,
        })?;
        let spec: Spec =
            serde_json::from_str(&text).map_err(|source| SpecError::Malformed { path, source })?;
        Self::from_oci(&spec)
    }

    /// Validate an OCI runtime spec and take from it what a WASI guest needs.
    pub fn from_oci(spec: &Spec) -> Result<Self, SpecError> {
        let process = spec
            .process()
            .as_ref()
            .ok_or(SpecError::Missing { field: "process" })?;
        let (args, entrypoint, export) = args_and_entrypoint(process)?;
        let env = env_of(process)?;
        let cwd = cwd_of(process)?;
        let root = root_of(spec)?;
        let mounts = bind_mounts(spec)?;
        Ok(WorkloadSpec {
            entrypoint: PathBuf::from(entrypoint),
            export,
            args,
            env,
            cwd,
            root: root.path().clone(),
            root_readonly: root.readonly().unwrap_or(false),
            mounts,
            memory_limit: memory_limit_of(spec),
            open_files_limit: open_files_limit_of(process),
            network: network_of(spec),
        })
    }
}

/// `process.args` with argv\[0\] stripped of any `#export` suffix, the module path it names,
/// and the export.
fn args_and_entrypoint(
    process: &Process,
) -> Result<(Vec<String>, String, Option<String>), SpecError> {
    let mut args = process.args().clone().unwrap_or_default();
    let first = args.first().ok_or(SpecError::Missing {
        field: "process.args",
    })?;
    let (entrypoint, export) = split_export(first)?;
    args[0] = entrypoint.clone();
    Ok((args, entrypoint, export))
}

/// `process.env`, each entry split at its first `=`.
fn env_of(process: &Process) -> Result<Vec<(String, String)>, SpecError> {
    process
        .env()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, kv)| parse_env(i, kv))
        .collect()
}

/// `process.cwd`, which must be absolute, normalized.
fn cwd_of(process: &Process) -> Result<PathBuf, SpecError> {
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(invalid("process.cwd", cwd, "must be an absolute path"));
    }
    Ok(normalize(cwd))
}

/// `root`, which must name a path.
fn root_of(spec: &Spec) -> Result<&Root, SpecError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or(SpecError::Missing { field: "root.path" })?;
    if root.path().as_os_str().is_empty() {
        return Err(SpecError::Missing { field: "root.path" });
    }
    Ok(root)
}

/// The bind mounts of `mounts`, in spec order; other mount types are left out.
fn bind_mounts(spec: &Spec) -> Result<Vec<MountSpec>, SpecError> {
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if let Some(mount) = bind_mount(i, m)? {
            mounts.push(mount);
        }
    }
    Ok(mounts)
}

/// `mounts[index]` as the guest will see it, or None when it is not a bind mount.
fn bind_mount(index: usize, m: &Mount) -> Result<Option<MountSpec>, SpecError> {
    let options = m.options().clone().unwrap_or_default();
    let is_bind =
        m.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind");
    if !is_bind {
        return Ok(None);
    }
    let destination = m.destination();
    if !destination.is_absolute() {
        return Err(invalid(
            &format!("mounts[{index}].destination"),
            destination,
            "must be an absolute path",
        ));
    }
    let source = m.source().clone().ok_or_else(|| SpecError::Invalid {
        field: format!("mounts[{index}].source"),
        value: String::new(),
        reason: "a bind mount needs a source",
    })?;
    Ok(Some(MountSpec {
        destination: normalize(destination),
        source,
        readonly: options.iter().any(|o| o == "ro"),
    }))
}

/// `linux.resources.memory.limit` in bytes, when set and positive.
fn memory_limit_of(spec: &Spec) -> Option<u64> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .and_then(|l| u64::try_from(l).ok())
        .filter(|l| *l > 0)
}

/// The soft `RLIMIT_NOFILE` of `process.rlimits`, when set.
fn open_files_limit_of(process: &Process) -> Option<u64> {
    process
        .rlimits()
        .iter()
        .flatten()
        .find(|r| r.typ() == oci_spec::runtime::PosixRlimitType::RlimitNofile)
        .map(|r| r.soft())
}

/// Whether the guest may open sockets: unless [`NETWORK_ANNOTATION`] is `none`.
fn network_of(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(NETWORK_ANNOTATION))
        .is_none_or(|v| v != "none")
}

fn invalid(field: &str, value: &Path, reason: &'static str) -> SpecError {
    SpecError::Invalid {
        field: field.to_string(),
        value: value.display().to_string(),
        reason,
    }
}

/// `app.wasm#serve` -> (`app.wasm`, Some(`serve`)).
fn split_export(arg0: &str) -> Result<(String, Option<String>), SpecError> {
    let (path, export) = match arg0.rsplit_once('#') {
        Some((path, export)) => (path, Some(export)),
        None => (arg0, None),
    };
    if path.is_empty() {
        return Err(SpecError::Invalid {
            field: "process.args[0]".into(),
            value: arg0.into(),
            reason: "names no module",
        });
    }
    if export == Some("") {
        return Err(SpecError::Invalid {
            field: "process.args[0]".into(),
            value: arg0.into(),
            reason: "has an empty export name after '#'",
        });
    }
    Ok((path.to_string(), export.map(str::to_string)))
}

fn parse_env(index: usize, kv: &str) -> Result<(String, String), SpecError> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(SpecError::Invalid {
            field: format!("process.env[{index}]"),
            value: kv.to_string(),
            reason: "must have the form KEY=VALUE",
        }),
    }
}

/// Lexically clean an absolute guest path: drop `.`, apply `..` without ever going above `/`.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, MountBuilder, ProcessBuilder,
        RootBuilder, SpecBuilder,
    };

    fn spec(args: &[&str], env: &[&str], cwd: &str, mounts: Vec<oci_spec::runtime::Mount>) -> Spec {
        SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .cwd(cwd)
                    .build()
                    .expect("process"),
            )
            .root(
                RootBuilder::default()
                    .path("rootfs")
                    .readonly(true)
                    .build()
                    .expect("root"),
            )
            .mounts(mounts)
            .build()
            .expect("spec")
    }

    fn bind(dst: &str, src: &str, options: &[&str]) -> oci_spec::runtime::Mount {
        MountBuilder::default()
            .destination(dst)
            .typ("bind")
            .source(src)
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .expect("mount")
    }

    #[test]
    fn maps_args_env_cwd_and_root() {
        let w = WorkloadSpec::from_oci(&spec(
            &["/app.wasm", "a", "b c"],
            &["A=1", "B=x=y", "EMPTY="],
            "/work/./sub/..",
            vec![],
        ))
        .expect("valid spec");
        assert_eq!(w.entrypoint, PathBuf::from("/app.wasm"));
        assert_eq!(w.export, None);
        assert_eq!(w.args, vec!["/app.wasm", "a", "b c"]);
        assert_eq!(
            w.env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("EMPTY".into(), "".into())
            ]
        );
        assert_eq!(w.cwd, PathBuf::from("/work"));
        assert_eq!(w.root, PathBuf::from("rootfs"));
        assert!(w.root_readonly);
        assert_eq!(w.memory_limit, None);
        assert!(w.network, "a container reaches its network namespace");
    }

    #[test]
    fn the_network_annotation_takes_sockets_away() {
        let mut s = spec(&["/a.wasm"], &[], "/", vec![]);
        s.set_annotations(Some(
            [(NETWORK_ANNOTATION.to_string(), "none".to_string())].into(),
        ));
        assert!(!WorkloadSpec::from_oci(&s).expect("valid").network);
    }

    #[test]
    fn splits_export_from_entrypoint() {
        let w = WorkloadSpec::from_oci(&spec(&["app.wasm#serve", "x"], &[], "/", vec![]))
            .expect("valid spec");
        assert_eq!(w.entrypoint, PathBuf::from("app.wasm"));
        assert_eq!(w.export.as_deref(), Some("serve"));
        assert_eq!(w.args, vec!["app.wasm", "x"]);
    }

    #[test]
    fn keeps_only_bind_mounts_with_their_ro_flag() {
        let proc_mount = MountBuilder::default()
            .destination("/proc")
            .typ("proc")
            .source("proc")
            .build()
            .expect("mount");
        let rbind = MountBuilder::default()
            .destination("/cfg")
            .source("/etc/cfg")
            .options(vec!["rbind".to_string(), "ro".to_string()])
            .build()
            .expect("mount");
        let w = WorkloadSpec::from_oci(&spec(
            &["/a.wasm"],
            &[],
            "/",
            vec![
                proc_mount,
                bind("/data", "/srv/data", &["rbind", "rw"]),
                rbind,
            ],
        ))
        .expect("valid spec");
        assert_eq!(
            w.mounts,
            vec![
                MountSpec {
                    destination: "/data".into(),
                    source: "/srv/data".into(),
                    readonly: false
                },
                MountSpec {
                    destination: "/cfg".into(),
                    source: "/etc/cfg".into(),
                    readonly: true
                },
            ]
        );
    }

    #[test]
    fn reads_memory_limit() {
        let mut s = spec(&["/a.wasm"], &[], "/", vec![]);
        s.set_linux(Some(
            LinuxBuilder::default()
                .resources(
                    LinuxResourcesBuilder::default()
                        .memory(
                            LinuxMemoryBuilder::default()
                                .limit(16 << 20)
                                .build()
                                .expect("mem"),
                        )
                        .build()
                        .expect("resources"),
                )
                .build()
                .expect("linux"),
        ));
        let w = WorkloadSpec::from_oci(&s).expect("valid spec");
        assert_eq!(w.memory_limit, Some(16 << 20));
    }

    #[test]
    fn reads_the_open_file_limit() {
        let mut s = spec(&["/a.wasm"], &[], "/", vec![]);
        let mut process = s.process().clone().expect("process");
        process.set_rlimits(Some(vec![oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(oci_spec::runtime::PosixRlimitType::RlimitNofile)
            .soft(64u64)
            .hard(4096u64)
            .build()
            .expect("rlimit")]));
        s.set_process(Some(process));
        assert_eq!(
            WorkloadSpec::from_oci(&s).expect("valid").open_files_limit,
            Some(64)
        );
    }

    #[test]
    fn unlimited_memory_is_no_limit() {
        let mut s = spec(&["/a.wasm"], &[], "/", vec![]);
        s.set_linux(Some(
            LinuxBuilder::default()
                .resources(
                    LinuxResourcesBuilder::default()
                        .memory(
                            LinuxMemoryBuilder::default()
                                .limit(-1)
                                .build()
                                .expect("mem"),
                        )
                        .build()
                        .expect("resources"),
                )
                .build()
                .expect("linux"),
        ));
        assert_eq!(
            WorkloadSpec::from_oci(&s).expect("valid").memory_limit,
            None
        );
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let err = WorkloadSpec::from_oci(&spec(&[], &[], "/", vec![])).expect_err("no args");
        assert_eq!(err.to_string(), "config.json has no process.args");

        let err = WorkloadSpec::from_oci(&spec(&["/a.wasm"], &["A=1", "NOEQUALS"], "/", vec![]))
            .expect_err("bad env");
        assert!(err.to_string().contains("process.env[1]"), "{err}");

        let err = WorkloadSpec::from_oci(&spec(&["/a.wasm"], &[], "rel", vec![]))
            .expect_err("relative cwd");
        assert!(err.to_string().contains("process.cwd"), "{err}");

        let err = WorkloadSpec::from_oci(&spec(&["#x"], &[], "/", vec![])).expect_err("no module");
        assert!(err.to_string().contains("process.args[0]"), "{err}");

        let err = WorkloadSpec::from_oci(&spec(
            &["/a.wasm"],
            &[],
            "/",
            vec![bind("data", "/srv", &["rbind"])],
        ))
        .expect_err("relative mount destination");
        assert!(err.to_string().contains("mounts[0].destination"), "{err}");

        let mut s = spec(&["/a.wasm"], &[], "/", vec![]);
        s.set_process(None);
        let err = WorkloadSpec::from_oci(&s).expect_err("no process");
        assert_eq!(err.to_string(), "config.json has no process");
    }

    #[test]
    fn load_reports_missing_and_malformed_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = WorkloadSpec::load(dir.path()).expect_err("missing");
        assert!(err.to_string().starts_with("failed to read "), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");

        std::fs::write(dir.path().join("config.json"), "{ not json").expect("write");
        let err = WorkloadSpec::load(dir.path()).expect_err("malformed");
        assert!(err.to_string().starts_with("malformed "), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
