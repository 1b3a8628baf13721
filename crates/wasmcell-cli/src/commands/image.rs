use std::path::PathBuf;

use clap::{Args, Subcommand};
use wasmcell_image::{normalize_reference, ImageSpec};

/// `wasmcell image ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Package a .wasm module or component as an OCI image (a tar that `ctr images import`,
    /// `docker load` and `podman load` accept).
    Build(BuildCommand),
}

impl ImageCommand {
    pub(crate) fn execute(self) -> i32 {
        match self {
            ImageCommand::Build(cmd) => cmd.execute(),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct BuildCommand {
    /// Image name, e.g. `hello:latest` (expanded to `docker.io/library/hello:latest`).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tag: String,

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
    fn execute(self) -> i32 {
        match self.build() {
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

    fn build(&self) -> anyhow::Result<String> {
        let reference = normalize_reference(&self.tag);
        let mut spec = ImageSpec::new(&self.module, reference);
        spec.entrypoint = self.entrypoint.clone();
        spec.args = self.args.clone();
        spec.env = self.env.clone();
        let image = spec.build()?;
        if let Some(out) = &self.output {
            image.write_archive(out)?;
        }
        if let Some(dir) = &self.oci_dir {
            image.write_layout(dir)?;
        }
        Ok(format!("{} {}", image.reference(), image.manifest_digest()))
    }
}
