use std::path::PathBuf;

use clap::{Args, Subcommand};
use wasmcell_image::{normalize_reference, read_artifact, Image, ImageSpec};

/// `wasmcell image ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Package a .wasm module or component as an OCI image (a tar that `ctr images import`,
    /// `docker load` and `podman load` accept).
    Build(BuildCommand),
    /// Convert a CNCF Wasm OCI artifact into the image `image build` makes.
    ///
    /// The artifact is an OCI image layout (a directory, or a tar of one) whose layer is the
    /// raw module, as `oras` or `wkg` push it; containerd cannot run it directly (`ctr run`
    /// fails to unpack it). The converted image holds the module at /app.wasm, its entrypoint,
    /// for `ctr images import`, `docker load` and `podman load`.
    Convert(ConvertCommand),
}

impl ImageCommand {
    pub(crate) fn execute(self) -> i32 {
        let result = match self {
            ImageCommand::Build(cmd) => cmd.build(),
            ImageCommand::Convert(cmd) => cmd.convert(),
        };
        match result {
            Ok(msg) => {
                println!("{msg}");
                0
            }
            Err(e) => {
                eprintln!("wasmcell: {e:#}");
                1
            }
        }
    }
}

/// Where an image is written: `-o` and/or `--oci-dir`.
#[derive(Debug, Args)]
pub(crate) struct ImageOutput {
    /// Write the image archive (tar) here.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        required_unless_present = "oci_dir"
    )]
    output: Option<PathBuf>,

    /// Also (or instead) write an OCI image layout directory here.
    #[arg(long, value_name = "DIR")]
    oci_dir: Option<PathBuf>,
}

impl ImageOutput {
    /// Write `image` where asked; the line to print: its reference and manifest digest.
    fn write(&self, image: &Image) -> anyhow::Result<String> {
        if let Some(out) = &self.output {
            image.write_archive(out)?;
        }
        if let Some(dir) = &self.oci_dir {
            image.write_layout(dir)?;
        }
        Ok(format!("{} {}", image.reference(), image.manifest_digest()))
    }
}

#[derive(Debug, Args)]
pub(crate) struct BuildCommand {
    /// Image name, e.g. `hello:latest` (expanded to `docker.io/library/hello:latest`).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tag: String,

    #[command(flatten)]
    output: ImageOutput,

    /// Path of the module inside the image, also its entrypoint.
    #[arg(long, default_value = "/app.wasm", value_name = "PATH")]
    entrypoint: String,

    /// Environment variable baked into the image config (KEY=VALUE).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// The .wasm file to package.
    module: PathBuf,

    /// Default arguments (the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl BuildCommand {
    fn build(&self) -> anyhow::Result<String> {
        let reference = normalize_reference(&self.tag);
        let mut spec = ImageSpec::new(&self.module, reference);
        spec.entrypoint = self.entrypoint.clone();
        spec.args = self.args.clone();
        spec.env = self.env.clone();
        self.output.write(&spec.build()?)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ConvertCommand {
    /// The artifact: an OCI image layout directory, or a tar of one.
    ///
    /// E.g. from `skopeo copy ... oci-archive:FILE` or `oras copy --to-oci-layout`. Its
    /// manifest for architecture `wasm` is used; its first Wasm layer becomes /app.wasm.
    source: PathBuf,

    /// Name of the converted image, e.g. `hello:latest` (expanded to
    /// `docker.io/library/hello:latest`).
    #[arg(value_name = "NAME[:TAG]")]
    reference: String,

    #[command(flatten)]
    output: ImageOutput,
}

impl ConvertCommand {
    fn convert(&self) -> anyhow::Result<String> {
        let artifact = read_artifact(&self.source)?;
        let image = artifact.to_image(&normalize_reference(&self.reference))?;
        self.output.write(&image)
    }
}
