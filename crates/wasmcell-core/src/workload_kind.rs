//! Wasm or Linux, decided per container from its OCI spec and rootfs.
//!
//! A host that runs both kinds (the shim, the OCI runtime) asks [`workload_kind`] once, before it
//! sets anything up. The rules, first match wins:
//!
//! 1. A pod sandbox (`io.kubernetes.cri.container-type: sandbox`) is Linux: it is a pause process.
//! 2. crun's annotations ask for Wasm: `run.oci.handler: wasm` or
//!    `module.wasm.image/variant: compat` always; their "smart" forms (`wasm-smart`,
//!    `compat-smart`) when `args[0]` is named `*.wasm` / `*.wat`.
//! 3. An entrypoint named `*.wasm` / `*.wat` is Wasm: if the file is not Wasm, the Wasm path says
//!    so clearly instead of the kernel's "exec format error".
//! 4. The entrypoint, looked up as `execvp` would (through the `PATH` of `process.env` when
//!    `args[0]` has no `/`) inside the rootfs without leaving it, is Wasm when it starts with the
//!    Wasm magic `\0asm`, Linux otherwise (ELF, script).
//! 5. An entrypoint that cannot be found is Wasm, so the error names the missing module.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::module::looks_like_wasm;
use crate::secure_join::secure_join;

/// Annotation CRI puts on every container of a pod; `sandbox` marks the pause container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// crun's handler annotation: `wasm` or `wasm-smart` select a Wasm handler.
pub const CRUN_HANDLER_ANNOTATION: &str = "run.oci.handler";
/// The Wasm image variant annotation crun reads: `compat` or `compat-smart`.
pub const WASM_VARIANT_ANNOTATION: &str = "module.wasm.image/variant";

/// The `PATH` an entrypoint is looked up in when `process.env` has none (runc's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// The entrypoint is a Wasm module or component run by an [`Engine`](crate::Engine).
    Wasm,
    /// An ordinary Linux container: the entrypoint is executed by the kernel.
    Linux,
}

impl WorkloadKind {
    /// `"wasm"` or `"linux"`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Wasm => "wasm",
            WorkloadKind::Linux => "linux",
        }
    }
}

/// Decide whether the container described by `spec` (its bundle directory is `bundle`; a relative
/// `root.path` is taken from there) runs as Wasm or as a Linux container. See the module docs for
/// the rules.
pub fn workload_kind(spec: &Spec, bundle: &Path) -> WorkloadKind {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let annotation = |key: &str| annotations.get(key).map(String::as_str);
    if annotation(CONTAINER_TYPE_ANNOTATION) == Some("sandbox") {
        return WorkloadKind::Linux;
    }
    let Some(process) = spec.process().as_ref() else {
        return WorkloadKind::Wasm;
    };
    let Some(arg0) = process.args().as_ref().and_then(|a| a.first()) else {
        return WorkloadKind::Wasm;
    };
    let module_name = arg0.split('#').next().unwrap_or(arg0);
    let named_wasm = module_name.ends_with(".wasm") || module_name.ends_with(".wat");

    match annotation(CRUN_HANDLER_ANNOTATION) {
        Some("wasm") => return WorkloadKind::Wasm,
        Some("wasm-smart") if named_wasm => return WorkloadKind::Wasm,
        _ => {}
    }
    match annotation(WASM_VARIANT_ANNOTATION) {
        Some("compat") => return WorkloadKind::Wasm,
        Some("compat-smart") if named_wasm => return WorkloadKind::Wasm,
        _ => {}
    }
    if named_wasm {
        return WorkloadKind::Wasm;
    }

    let Some(root) = spec.root().as_ref() else {
        return WorkloadKind::Wasm;
    };
    let rootfs = bundle.join(root.path());
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for candidate in candidates(arg0, process.cwd(), path) {
        if let Some(head) = read_head(&rootfs, &candidate) {
            return if looks_like_wasm(&head) {
                WorkloadKind::Wasm
            } else {
                WorkloadKind::Linux
            };
        }
    }
    WorkloadKind::Wasm
}

/// Where `execvp` would look for `arg0`, as paths inside the container.
fn candidates(arg0: &str, cwd: &Path, path: &str) -> Vec<PathBuf> {
    if arg0.contains('/') {
        vec![cwd.join(arg0)]
    } else {
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| cwd.join(dir).join(arg0))
            .collect()
    }
}

/// The first bytes of the regular file at `guest` inside `rootfs`, if there is one.
fn read_head(rootfs: &Path, guest: &Path) -> Option<Vec<u8>> {
    let host = secure_join(rootfs, guest).ok()?;
    if !host.is_file() {
        return None;
    }
    let mut file = std::fs::File::open(&host).ok()?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).unwrap_or(0);
    Some(head[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::symlink;

    use oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};

    use super::*;

    fn spec(args: &[&str], env: &[&str], annotations: &[(&str, &str)]) -> Spec {
        SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .cwd("/")
                    .build()
                    .expect("process"),
            )
            .root(RootBuilder::default().path("rootfs").build().expect("root"))
            .annotations(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            )
            .build()
            .expect("spec")
    }

    /// A bundle whose rootfs has `/bin/elf` (ELF), `/bin/script` (#!), `/app/main` (Wasm, no
    /// extension) and `/bin/link` -> `/app/main`.
    fn bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("bin");
        std::fs::create_dir_all(root.join("app")).expect("app");
        std::fs::write(root.join("bin/elf"), b"\x7fELF\x02\x01\x01").expect("elf");
        std::fs::write(root.join("bin/script"), b"#!/bin/sh\necho hi\n").expect("script");
        std::fs::write(root.join("app/main"), b"\0asm\x01\0\0\0").expect("wasm");
        symlink("/app/main", root.join("bin/link")).expect("symlink");
        dir
    }

    fn kind(args: &[&str], env: &[&str], annotations: &[(&str, &str)]) -> WorkloadKind {
        let dir = bundle();
        workload_kind(&spec(args, env, annotations), dir.path())
    }

    #[test]
    fn elf_and_script_entrypoints_are_linux() {
        assert_eq!(kind(&["/bin/elf"], &[], &[]), WorkloadKind::Linux);
        assert_eq!(kind(&["script"], &["PATH=/bin"], &[]), WorkloadKind::Linux);
        assert_eq!(kind(&["elf", "x"], &[], &[]), WorkloadKind::Linux);
    }

    #[test]
    fn wasm_magic_is_wasm_whatever_the_name() {
        assert_eq!(kind(&["/app/main"], &[], &[]), WorkloadKind::Wasm);
        assert_eq!(kind(&["main"], &["PATH=/app"], &[]), WorkloadKind::Wasm);
        // A symlink is followed inside the rootfs.
        assert_eq!(kind(&["link"], &["PATH=/bin"], &[]), WorkloadKind::Wasm);
    }

    #[test]
    fn wasm_names_and_missing_entrypoints_are_wasm() {
        assert_eq!(kind(&["/missing.wasm"], &[], &[]), WorkloadKind::Wasm);
        assert_eq!(kind(&["/app.wat#run"], &[], &[]), WorkloadKind::Wasm);
        assert_eq!(kind(&["/nowhere"], &[], &[]), WorkloadKind::Wasm);
    }

    #[test]
    fn sandbox_is_linux_even_when_wasm() {
        let sandbox = [(CONTAINER_TYPE_ANNOTATION, "sandbox")];
        assert_eq!(kind(&["/app/main"], &[], &sandbox), WorkloadKind::Linux);
        let container = [(CONTAINER_TYPE_ANNOTATION, "container")];
        assert_eq!(kind(&["/bin/elf"], &[], &container), WorkloadKind::Linux);
    }

    #[test]
    fn crun_annotations_force_wasm() {
        for a in [
            (CRUN_HANDLER_ANNOTATION, "wasm"),
            (WASM_VARIANT_ANNOTATION, "compat"),
        ] {
            assert_eq!(kind(&["/bin/elf"], &[], &[a]), WorkloadKind::Wasm, "{a:?}");
        }
    }

    #[test]
    fn smart_annotations_need_a_wasm_name() {
        for a in [
            (CRUN_HANDLER_ANNOTATION, "wasm-smart"),
            (WASM_VARIANT_ANNOTATION, "compat-smart"),
        ] {
            assert_eq!(kind(&["/bin/elf"], &[], &[a]), WorkloadKind::Linux, "{a:?}");
            assert_eq!(kind(&["/x.wasm"], &[], &[a]), WorkloadKind::Wasm, "{a:?}");
            // Not named Wasm but Wasm inside: the magic still decides.
            assert_eq!(kind(&["/app/main"], &[], &[a]), WorkloadKind::Wasm, "{a:?}");
        }
    }

    #[test]
    fn other_handlers_do_not_force_wasm() {
        let krun = [(CRUN_HANDLER_ANNOTATION, "krun")];
        assert_eq!(kind(&["/bin/elf"], &[], &krun), WorkloadKind::Linux);
    }

    #[test]
    fn lookup_cannot_leave_the_rootfs() {
        let dir = bundle();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"\x7fELF").expect("outside");
        let root = dir.path().join("rootfs");
        symlink("../../outside", root.join("bin/escape")).expect("symlink");
        // The symlink resolves inside the rootfs (to /outside, absent): not found -> Wasm.
        let s = spec(&["/bin/escape"], &[], &[]);
        assert_eq!(workload_kind(&s, dir.path()), WorkloadKind::Wasm);
    }
}
