//! Step two of the OCI -> WASI mapping: resolve a [`WorkloadSpec`] against the filesystem.

use std::path::{Path, PathBuf};

use crate::module::ModuleSource;
use crate::secure_join::secure_join;
use crate::spec::{normalize, WorkloadSpec};

/// Why a workload could not be resolved against the filesystem.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The rootfs directory is missing or unreadable.
    #[error("rootfs {path} is not a directory: {source}")]
    Rootfs {
        /// The host path of the rootfs.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A directory to preopen is missing or not a directory.
    #[error("mount source {path} for {guest} is not a usable directory: {reason}")]
    MountSource {
        /// The host path.
        path: PathBuf,
        /// Where the guest would see it.
        guest: String,
        /// What is wrong.
        reason: String,
    },
    /// The entrypoint could not be resolved inside the rootfs.
    #[error("entrypoint {entrypoint} cannot be resolved inside rootfs {rootfs}: {source}")]
    Entrypoint {
        /// The entrypoint as written in the spec.
        entrypoint: PathBuf,
        /// The rootfs it was resolved in.
        rootfs: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `--dir` style grant is malformed.
    #[error("invalid directory grant {grant:?}: {reason}")]
    Grant {
        /// The grant as given.
        grant: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl ResolveError {
    /// The exit status a host reports for this error.
    pub fn exit_code(&self) -> i32 {
        crate::EXIT_CONFIG_ERROR
    }
}

/// Whether the guest may change what is under a preopened directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and list only; every write, create, rename or delete is refused.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// A host directory the guest may reach, and where it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Host directory (canonical).
    pub host: PathBuf,
    /// The guest's name for it: `/`, `/data`, or `.` for the working directory.
    pub guest: String,
    /// What the guest may do there.
    pub access: Access,
}

/// A directory granted to a bare module (`wasmcell run --dir HOST[::GUEST][:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Host directory.
    pub host: PathBuf,
    /// Guest path; defaults to the host path as written.
    pub guest: String,
    /// What the guest may do there.
    pub access: Access,
}

impl DirGrant {
    /// Parse `HOST[::GUEST][:ro]`, wasmtime's `--dir` syntax plus a `:ro` suffix.
    pub fn parse(grant: &str) -> Result<Self, ResolveError> {
        let bad = |reason| ResolveError::Grant {
            grant: grant.to_string(),
            reason,
        };
        let (rest, access) = match grant.strip_suffix(":ro") {
            Some(rest) => (rest, Access::ReadOnly),
            None => (grant, Access::ReadWrite),
        };
        let (host, guest) = match rest.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (rest, rest),
        };
        if host.is_empty() {
            return Err(bad("the host directory is empty"));
        }
        if guest.is_empty() {
            return Err(bad("the guest path is empty"));
        }
        Ok(DirGrant {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            access,
        })
    }
}

/// Everything an engine needs to run one guest: resolved, checked, and nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunPlan {
    /// Function to call instead of `_start` / `wasi:cli/run`.
    pub export: Option<String>,
    /// The guest's argv.
    pub args: Vec<String>,
    /// The guest's environment, exactly.
    pub env: Vec<(String, String)>,
    /// Directories the guest may reach. Empty means no filesystem at all.
    pub preopens: Vec<Preopen>,
    /// Cap on the guest's linear memories and tables together, in bytes.
    pub memory_limit: Option<u64>,
    /// How many descriptors (WASI resources) the guest may hold open; the engine's default
    /// when `None`.
    pub open_files_limit: Option<u64>,
    /// The guest may open TCP/UDP sockets and resolve names in the network namespace it runs
    /// in (WASI 0.2 `wasi:sockets`). False means no socket at all.
    pub network: bool,
}

impl RunPlan {
    /// Read `config.json` from an OCI bundle and resolve it (both steps in one call).
    pub fn from_bundle(bundle: &Path) -> Result<(Self, ModuleSource), crate::Error> {
        let spec = WorkloadSpec::load(bundle)?;
        Ok(Self::resolve(&spec, bundle)?)
    }

    /// Resolve a validated spec against the filesystem: the plan, and where its module is (to
    /// be read with [`ModuleSource::read`]). Relative paths in the spec are taken from
    /// `bundle`.
    pub fn resolve(
        spec: &WorkloadSpec,
        bundle: &Path,
    ) -> Result<(Self, ModuleSource), ResolveError> {
        let (rootfs, preopens) = resolve_dirs(spec, bundle)?;
        let (root, path) =
            resolve_entrypoint(&preopens, &spec.cwd, &spec.entrypoint, spec.path_env()).map_err(
                |source| ResolveError::Entrypoint {
                    entrypoint: spec.entrypoint.clone(),
                    rootfs,
                    source,
                },
            )?;
        Ok((Self::with_dirs(spec, preopens), ModuleSource { path, root }))
    }

    /// Resolve a validated spec whose module does not live in its rootfs (the Wasm layer of
    /// an OCI artifact): its directories only; the spec's args are passed as they are.
    pub fn resolve_without_entrypoint(
        spec: &WorkloadSpec,
        bundle: &Path,
    ) -> Result<Self, ResolveError> {
        let (_, preopens) = resolve_dirs(spec, bundle)?;
        Ok(Self::with_dirs(spec, preopens))
    }

    fn with_dirs(spec: &WorkloadSpec, preopens: Vec<Preopen>) -> Self {
        RunPlan {
            export: spec.export.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            preopens,
            memory_limit: spec.memory_limit,
            open_files_limit: spec.open_files_limit,
            network: spec.network,
        }
    }

    /// A plan for a bare module: `args[0]` is the module path as given, and exactly `dirs` are
    /// preopened.
    pub fn for_module(
        module: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        dirs: &[DirGrant],
    ) -> Result<Self, ResolveError> {
        let mut preopens = Vec::with_capacity(dirs.len());
        for d in dirs {
            let host = canonical_dir(&d.host).map_err(|e| ResolveError::MountSource {
                path: d.host.clone(),
                guest: d.guest.clone(),
                reason: e.to_string(),
            })?;
            preopens.push(Preopen {
                host,
                guest: d.guest.clone(),
                access: d.access,
            });
        }
        let mut argv = vec![module.display().to_string()];
        argv.extend(args);
        Ok(RunPlan {
            export: None,
            args: argv,
            env,
            preopens,
            memory_limit: None,
            open_files_limit: None,
            network: false,
        })
    }

    /// Grant or deny sockets.
    pub fn with_network(mut self, network: bool) -> Self {
        self.network = network;
        self
    }

    /// Set the memory cap (bytes) on a plan.
    pub fn with_memory_limit(mut self, limit: Option<u64>) -> Self {
        self.memory_limit = limit;
        self
    }
}

/// The rootfs (canonical) and the directories the guest of `spec` may reach: the rootfs as
/// `/`, its bind mounts, and its working directory.
fn resolve_dirs(
    spec: &WorkloadSpec,
    bundle: &Path,
) -> Result<(PathBuf, Vec<Preopen>), ResolveError> {
    let rootfs = bundle.join(&spec.root);
    let rootfs = canonical_dir(&rootfs).map_err(|source| ResolveError::Rootfs {
        path: rootfs.clone(),
        source,
    })?;
    let root_access = if spec.root_readonly {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let mut preopens = vec![Preopen {
        host: rootfs.clone(),
        guest: "/".into(),
        access: root_access,
    }];
    for m in &spec.mounts {
        let guest = m.destination.display().to_string();
        let source = bundle.join(&m.source);
        let meta = std::fs::metadata(&source).map_err(|e| ResolveError::MountSource {
            path: source.clone(),
            guest: guest.clone(),
            reason: e.to_string(),
        })?;
        if !meta.is_dir() {
            // WASI preopens are directories; a file bind mount (e.g. /etc/hosts) is skipped.
            tracing::debug!(source = %source.display(), %guest, "skipping file bind mount");
            continue;
        }
        let host = canonical_dir(&source).map_err(|e| ResolveError::MountSource {
            path: source.clone(),
            guest: guest.clone(),
            reason: e.to_string(),
        })?;
        let access = if m.readonly {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        preopens.push(Preopen {
            host,
            guest,
            access,
        });
    }
    if spec.cwd != Path::new("/") {
        if let Some(cwd) = map_guest_dir(&preopens, &spec.cwd) {
            preopens.push(cwd);
        }
    }
    Ok((rootfs, preopens))
}

fn canonical_dir(path: &Path) -> std::io::Result<PathBuf> {
    let canonical = path.canonicalize()?;
    if !canonical.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    Ok(canonical)
}

/// The preopen whose guest path is the longest prefix of `guest` (mounts shadow the rootfs).
fn owning_preopen<'a>(preopens: &'a [Preopen], guest: &Path) -> Option<(&'a Preopen, PathBuf)> {
    preopens
        .iter()
        .filter_map(|p| {
            let rest = guest.strip_prefix(&p.guest).ok()?;
            Some((p, rest.to_path_buf()))
        })
        .max_by_key(|(p, _)| p.guest.len())
}

/// Map the guest's working directory to a `.` preopen so relative paths resolve there.
fn map_guest_dir(preopens: &[Preopen], cwd: &Path) -> Option<Preopen> {
    let (owner, rest) = owning_preopen(preopens, cwd)?;
    let host = secure_join(&owner.host, &rest).ok()?;
    if !host.is_dir() {
        return None;
    }
    Some(Preopen {
        host,
        guest: ".".into(),
        access: owner.access,
    })
}

/// Resolve `process.args[0]`: absolute, or relative to `cwd`, inside the guest's view.
/// The host directory the entrypoint lies in (its preopen's) and its host path.
fn resolve_entrypoint(
    preopens: &[Preopen],
    cwd: &Path,
    entry: &Path,
    path_env: &str,
) -> std::io::Result<(PathBuf, PathBuf)> {
    // A bare name is looked up as `execvp` would (and as `workload_kind` does), through PATH;
    // found nowhere there, it is taken from the working directory.
    if !entry.as_os_str().as_encoded_bytes().contains(&b'/') {
        for dir in path_env.split(':').filter(|d| !d.is_empty()) {
            let guest = normalize(&cwd.join(dir).join(entry));
            let Some((owner, rest)) = owning_preopen(preopens, &guest) else {
                continue;
            };
            if let Ok(host) = secure_join(&owner.host, &rest) {
                if host.is_file() {
                    return Ok((owner.host.clone(), host));
                }
            }
        }
    }
    let guest = normalize(&cwd.join(entry));
    let (owner, rest) = owning_preopen(preopens, &guest).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "outside every preopen")
    })?;
    Ok((owner.host.clone(), secure_join(&owner.host, &rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::MountSpec;
    use std::os::unix::fs::symlink;

    fn workload(entry: &str, cwd: &str, mounts: Vec<MountSpec>) -> WorkloadSpec {
        WorkloadSpec {
            entrypoint: entry.into(),
            export: None,
            args: vec![entry.into()],
            env: vec![],
            cwd: cwd.into(),
            root: "rootfs".into(),
            root_readonly: false,
            mounts,
            memory_limit: Some(1 << 20),
            open_files_limit: None,
            network: true,
        }
    }

    fn bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rootfs/app")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        std::fs::write(dir.path().join("rootfs/app/main.wasm"), b"\0asm").expect("write");
        dir
    }

    #[test]
    fn a_module_swapped_for_a_symlink_out_of_the_rootfs_is_not_read() {
        let b = bundle();
        let (_, source) =
            RunPlan::resolve(&workload("/app/main.wasm", "/", vec![]), b.path()).expect("resolve");
        // After the plan: `app` becomes a symlink to a directory outside the rootfs, whose
        // main.wasm is a valid module.
        let outside = b.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("main.wasm"), b"\0asm\x01\0\0\0").expect("write");
        let app = b.path().join("rootfs/app");
        std::fs::rename(&app, b.path().join("rootfs/app-moved")).expect("rename");
        symlink(&outside, &app).expect("symlink");
        match source.read() {
            // Resolved inside the rootfs, the link's target does not exist there.
            Err(e) => assert!(matches!(e, crate::ModuleError::NotFound { .. }), "{e}"),
            Ok(wasm) => panic!("read {} from outside the rootfs", wasm.path().display()),
        }
    }

    #[test]
    fn rootfs_and_mounts_become_preopens() {
        let b = bundle();
        let root = b.path().join("rootfs").canonicalize().expect("canonical");
        let data = b.path().join("data").canonicalize().expect("canonical");
        let spec = workload(
            "/app/main.wasm",
            "/",
            vec![MountSpec {
                destination: "/data".into(),
                source: data.clone(),
                readonly: true,
            }],
        );
        let (plan, source) = RunPlan::resolve(&spec, b.path()).expect("resolve");
        assert_eq!(source.path, root.join("app/main.wasm"));
        assert_eq!(
            plan.preopens,
            vec![
                Preopen {
                    host: root,
                    guest: "/".into(),
                    access: Access::ReadWrite
                },
                Preopen {
                    host: data,
                    guest: "/data".into(),
                    access: Access::ReadOnly
                },
            ]
        );
        assert_eq!(plan.memory_limit, Some(1 << 20));
    }

    #[test]
    fn relative_entrypoint_resolves_from_cwd_and_cwd_is_preopened_as_dot() {
        let b = bundle();
        let root = b.path().join("rootfs").canonicalize().expect("canonical");
        let mut spec = workload("main.wasm", "/app", vec![]);
        spec.root_readonly = true;
        let (plan, source) = RunPlan::resolve(&spec, b.path()).expect("resolve");
        assert_eq!(source.path, root.join("app/main.wasm"));
        assert_eq!(
            plan.preopens.last(),
            Some(&Preopen {
                host: root.join("app"),
                guest: ".".into(),
                access: Access::ReadOnly
            })
        );
    }

    #[test]
    fn a_bare_entrypoint_is_found_through_path_as_the_kind_decision_finds_it() {
        use oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};
        let b = bundle();
        std::fs::write(b.path().join("rootfs/app/main"), b"\0asm\x01\0\0\0").expect("write");
        let oci = SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(vec!["main".to_string()])
                    .env(vec!["PATH=/app".to_string()])
                    .cwd("/")
                    .build()
                    .expect("process"),
            )
            .root(RootBuilder::default().path("rootfs").build().expect("root"))
            .build()
            .expect("spec");
        assert_eq!(
            crate::workload_kind(&oci, b.path()),
            crate::WorkloadKind::Wasm
        );
        let spec = WorkloadSpec::from_oci(&oci).expect("valid");
        let (_, source) = RunPlan::resolve(&spec, b.path()).expect("resolve");
        let root = b.path().join("rootfs").canonicalize().expect("canonical");
        assert_eq!(source.path, root.join("app/main"));
        // Without it in PATH, the working directory is where it is looked for.
        let mut in_cwd = workload("main.wasm", "/app", vec![]);
        in_cwd.env = vec![("PATH".into(), "/bin".into())];
        let (_, source) = RunPlan::resolve(&in_cwd, b.path()).expect("resolve");
        assert_eq!(source.path, root.join("app/main.wasm"));
    }

    #[test]
    fn entrypoint_cannot_leave_the_rootfs() {
        let b = bundle();
        let root = b.path().join("rootfs").canonicalize().expect("canonical");
        std::fs::write(b.path().join("outside.wasm"), b"\0asm").expect("write");
        symlink("../../outside.wasm", b.path().join("rootfs/app/link.wasm")).expect("symlink");
        for entry in ["../outside.wasm", "/../outside.wasm", "/app/link.wasm"] {
            let (_, source) =
                RunPlan::resolve(&workload(entry, "/app", vec![]), b.path()).expect("resolve");
            assert!(
                source.path.starts_with(&root),
                "{entry} -> {}",
                source.path.display()
            );
            assert!(
                !source.path.exists(),
                "{entry} reached {}",
                source.path.display()
            );
        }
    }

    #[test]
    fn missing_rootfs_and_mount_source_name_the_path() {
        let b = bundle();
        let mut spec = workload("/app/main.wasm", "/", vec![]);
        spec.root = "nope".into();
        let err = RunPlan::resolve(&spec, b.path()).expect_err("no rootfs");
        assert!(err.to_string().contains("nope"), "{err}");

        let spec = workload(
            "/app/main.wasm",
            "/",
            vec![MountSpec {
                destination: "/data".into(),
                source: "/nonexistent/src".into(),
                readonly: false,
            }],
        );
        let err = RunPlan::resolve(&spec, b.path()).expect_err("no source");
        assert!(err.to_string().contains("/nonexistent/src"), "{err}");
        assert!(err.to_string().contains("/data"), "{err}");
    }

    #[test]
    fn parses_dir_grants() {
        let g = DirGrant::parse("/srv/data::/data:ro").expect("grant");
        assert_eq!(
            g,
            DirGrant {
                host: "/srv/data".into(),
                guest: "/data".into(),
                access: Access::ReadOnly
            }
        );
        let g = DirGrant::parse("./out").expect("grant");
        assert_eq!(g.guest, "./out");
        assert_eq!(g.access, Access::ReadWrite);
        assert!(DirGrant::parse("::/x").is_err());
        assert!(DirGrant::parse("/x::").is_err());
    }
}
