//! Driving a [`Containerd`] through `ctr`: commands pre-filled with its socket, namespace and
//! snapshotter, runs with a deadline, and image imports (OCI archives, and CNCF Wasm
//! artifacts written for the occasion).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{Containerd, DEFAULT_CTR_TIMEOUT};
use crate::command::{describe, run_with_deadline, CtrOutput};
use crate::ArtifactLayout;

impl Containerd {
    /// A `ctr` command pre-filled with `--address <socket> --namespace <namespace>` (and
    /// `CONTAINERD_SNAPSHOTTER` in its environment); add the subcommand and its arguments.
    pub fn ctr(&self) -> Command {
        self.ctr_in(&self.namespace)
    }

    /// [`Containerd::ctr`] in the namespace `namespace` (e.g. [`CRI_NAMESPACE`](crate::CRI_NAMESPACE)).
    pub fn ctr_in(&self, namespace: &str) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.env("PATH", &self.path_env)
            .env("CONTAINERD_SNAPSHOTTER", self.snapshotter)
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace);
        cmd
    }

    /// [`Containerd::run_ctr`] in the namespace `namespace` (e.g. [`CRI_NAMESPACE`](crate::CRI_NAMESPACE)).
    ///
    /// # Panics
    /// When `ctr` cannot be started or does not finish in time (it is then killed).
    pub fn run_ctr_in(&self, namespace: &str, args: &[&str]) -> CtrOutput {
        let mut cmd = self.ctr_in(namespace);
        cmd.args(args);
        run_with_deadline(cmd, DEFAULT_CTR_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "wasmcell-testing: `ctr --namespace {namespace} {}`: {e}",
                args.join(" ")
            )
        })
    }

    /// Run `ctr <args>` (see [`Containerd::ctr`]) with a deadline of [`DEFAULT_CTR_TIMEOUT`].
    /// A non-zero exit is reported in [`CtrOutput::code`], not as a panic.
    ///
    /// # Panics
    /// When `ctr` cannot be started or does not finish in time (it is then killed).
    pub fn run_ctr(&self, args: &[&str]) -> CtrOutput {
        self.run_ctr_with_timeout(args, DEFAULT_CTR_TIMEOUT)
    }

    /// [`Containerd::run_ctr`] with a deadline of `timeout`.
    ///
    /// # Panics
    /// When `ctr` cannot be started or does not finish within `timeout` (it is then killed).
    pub fn run_ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> CtrOutput {
        match self.try_run_ctr(args, timeout) {
            Ok(out) => out,
            Err(e) => panic!("wasmcell-testing: `ctr {}`: {e}", args.join(" ")),
        }
    }

    /// `ctr images import --all-platforms <tar>` (which also unpacks the image into the
    /// snapshotter).
    ///
    /// # Panics
    /// When the import fails; the message holds `ctr`'s output.
    pub fn import(&self, tar: &Path) {
        self.import_into(&self.namespace, tar);
    }

    /// [`Containerd::import`] into the namespace `namespace`: [`CRI_NAMESPACE`](crate::CRI_NAMESPACE) for images
    /// that CRI is to run (CRI's image store picks them up shortly after; see
    /// `cri::CriClient::wait_for_image`).
    ///
    /// # Panics
    /// When the import fails; the message holds `ctr`'s output.
    pub fn import_into(&self, namespace: &str, tar: &Path) {
        self.import_with(namespace, &["--all-platforms"], tar);
    }

    /// Write `module` as a CNCF Wasm OCI artifact for `os` (see [`ArtifactLayout`]) tagged
    /// `reference`, and import it into `namespace` without unpacking: the only way `ctr` takes
    /// such an image. Returns the digest of its Wasm layer.
    ///
    /// # Panics
    /// When the artifact cannot be written or the import fails.
    pub fn import_wasm_artifact(
        &self,
        namespace: &str,
        os: &str,
        module: &[u8],
        reference: &str,
    ) -> String {
        let name = reference.replace(['/', ':'], "_");
        let layout = ArtifactLayout::new(&self.dir().join("artifacts").join(&name));
        let layer = layout.blob("application/wasm", module);
        let digest = layer["digest"].as_str().unwrap_or_default().to_string();
        let mut manifest = layout.manifest(os, vec![layer]);
        manifest["annotations"] =
            serde_json::json!({ "org.opencontainers.image.ref.name": reference });
        layout.write_index(vec![manifest]);
        let tar = self.dir().join("artifacts").join(format!("{name}.tar"));
        layout.write_tar(&tar);
        self.import_with(namespace, &["--no-unpack", "--all-platforms"], &tar);
        digest
    }

    fn import_with(&self, namespace: &str, flags: &[&str], tar: &Path) {
        let mut cmd = self.ctr_in(namespace);
        cmd.args(["images", "import"]).args(flags).arg(tar);
        let out = run_with_deadline(cmd, DEFAULT_CTR_TIMEOUT)
            .unwrap_or_else(|e| panic!("wasmcell-testing: importing {}: {e}", tar.display()));
        if !out.success() {
            panic!(
                "wasmcell-testing: `ctr --namespace {namespace} images import {} {}` \
                 failed:\n{}",
                flags.join(" "),
                tar.display(),
                describe(&out)
            );
        }
    }

    pub(super) fn ctr_with<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = self.ctr();
        cmd.args(args);
        cmd
    }

    pub(super) fn try_run_ctr(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<CtrOutput, String> {
        run_with_deadline(self.ctr_with(args), timeout)
    }

    pub(super) fn try_run_ctr_in(
        &self,
        namespace: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<CtrOutput, String> {
        let mut cmd = self.ctr_in(namespace);
        cmd.args(args);
        run_with_deadline(cmd, timeout)
    }
}
