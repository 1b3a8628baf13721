//! What a bundle's rootfs holds for a Wasm container, as a value: the module its entrypoint
//! names with the plan that runs it, or nothing (an artifact's rootfs is empty; a host may then
//! look for the module elsewhere, such as the image's Wasm layer).

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::{Error, ModuleError, ModuleSource, ResolveError, RunPlan, WasmBinary, WorkloadSpec};

/// What the rootfs of a bundle holds.
#[derive(Debug)]
pub enum RootfsModule {
    /// The module the spec's entrypoint names, and the plan that runs it.
    Found {
        /// The plan, resolved against the bundle.
        plan: RunPlan,
        /// Where the module is (a host that compiles it elsewhere opens it there again).
        source: ModuleSource,
        /// The module, read and checked.
        wasm: WasmBinary,
    },
    /// No module: the spec names no entrypoint (`process.args` is empty), or nothing is at the
    /// entrypoint. `why` is the error to report when no other place has the module either.
    Absent {
        /// Why there is none, as the error a host reports if it looks nowhere else.
        why: Error,
    },
}

impl RootfsModule {
    /// Resolve `spec` against `bundle` and read the module its entrypoint names. A bad spec,
    /// an entrypoint that leaves the rootfs, or a file that is not a usable module is an error;
    /// a missing entrypoint is [`RootfsModule::Absent`].
    pub fn find(spec: &Spec, bundle: &Path) -> Result<Self, Error> {
        let names_no_entrypoint = spec
            .process()
            .as_ref()
            .is_some_and(|p| p.args().as_ref().is_none_or(|a| a.is_empty()));
        let workload = match WorkloadSpec::from_oci(spec) {
            Err(e) if names_no_entrypoint => return Ok(RootfsModule::Absent { why: e.into() }),
            found => found?,
        };
        let (plan, source) = match RunPlan::resolve(&workload, bundle) {
            Err(e @ ResolveError::Entrypoint { .. }) if not_found(&e) => {
                return Ok(RootfsModule::Absent { why: e.into() })
            }
            resolved => resolved?,
        };
        match source.read() {
            Ok(wasm) => Ok(RootfsModule::Found { plan, source, wasm }),
            Err(e @ ModuleError::NotFound { .. }) => Ok(RootfsModule::Absent { why: e.into() }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether the entrypoint could not be resolved because nothing is there.
fn not_found(e: &ResolveError) -> bool {
    matches!(e, ResolveError::Entrypoint { source, .. } if source.kind() == ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};

    fn spec(args: &[&str]) -> Spec {
        let process = ProcessBuilder::default()
            .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            .cwd("/")
            .build()
            .expect("process");
        SpecBuilder::default()
            .process(process)
            .root(RootBuilder::default().path("rootfs").build().expect("root"))
            .build()
            .expect("spec")
    }

    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn a_module_at_the_entrypoint_is_found_and_a_missing_one_is_absent() {
        let bundle = tempfile::tempdir().expect("dir");
        let rootfs = bundle.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("rootfs");
        std::fs::write(rootfs.join("app.wasm"), EMPTY_MODULE).expect("module");

        let found = RootfsModule::find(&spec(&["/app.wasm"]), bundle.path()).expect("find");
        assert!(matches!(found, RootfsModule::Found { .. }), "{found:?}");

        for args in [&[][..], &["/missing.wasm"][..]] {
            let absent = RootfsModule::find(&spec(args), bundle.path()).expect("find");
            let RootfsModule::Absent { why } = absent else {
                panic!("{args:?}: {absent:?}");
            };
            assert!(!why.to_string().is_empty());
        }
    }

    #[test]
    fn a_file_that_is_not_a_module_is_an_error_not_an_absence() {
        let bundle = tempfile::tempdir().expect("dir");
        let rootfs = bundle.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("rootfs");
        std::fs::write(rootfs.join("app.wasm"), b"not wasm").expect("file");
        let err = RootfsModule::find(&spec(&["/app.wasm"]), bundle.path()).expect_err("bad");
        assert!(
            matches!(err, Error::Module(ModuleError::NotWasm { .. })),
            "{err}"
        );
    }
}
