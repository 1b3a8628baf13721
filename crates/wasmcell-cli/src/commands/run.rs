use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use wasmcell_core::{DirGrant, Engine, Error, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine};

/// `wasmcell run`: run a module with explicit grants, or an OCI bundle.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the guest's own; 134 when it traps; 137 when it hits its memory \
                  limit; 125 for a bad bundle or grant; 126 when the module cannot run (not Wasm, \
                  invalid, no entry export); 127 when the module does not exist."
)]
pub(crate) struct RunCommand {
    /// Run the OCI bundle in DIR (config.json + rootfs) instead of a bare module.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["module", "dirs", "env"])]
    bundle: Option<PathBuf>,

    /// Grant the guest a host directory: HOST[::GUEST][:ro]. Nothing else is reachable.
    #[arg(long = "dir", value_name = "HOST[::GUEST][:ro]")]
    dirs: Vec<String>,

    /// Set an environment variable for the guest (the host's environment is not passed).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// Cap the guest's linear memory (bytes; suffixes k, m, g).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    memory_limit: Option<u64>,

    /// Let the guest open sockets (WASI 0.2 components) in the host's network.
    #[arg(long)]
    net: bool,

    /// Call this export instead of `_start` / `wasi:cli/run`.
    #[arg(long, value_name = "EXPORT")]
    invoke: Option<String>,

    /// Compile in memory only; do not read or fill the precompile cache.
    #[arg(long)]
    no_cache: bool,

    /// The .wasm module or component to run.
    #[arg(required_unless_present = "bundle")]
    module: Option<PathBuf>,

    /// Arguments passed to the guest after its name.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl RunCommand {
    pub(crate) fn execute(self) -> i32 {
        let code = match self.run() {
            Ok(exit) => {
                if let Some(report) = exit.report() {
                    eprintln!("wasmcell: {report}");
                }
                exit.code()
            }
            Err(e) => {
                eprintln!("wasmcell: {e}");
                e.exit_code()
            }
        };
        let _ = std::io::stdout().flush();
        code
    }

    fn run(self) -> Result<GuestExit, Error> {
        let (plan, wasm) = match (&self.bundle, &self.module) {
            (Some(bundle), _) => {
                let (plan, source) = RunPlan::from_bundle(bundle)?;
                (plan, source.read()?)
            }
            (None, Some(module)) => {
                let dirs = self
                    .dirs
                    .iter()
                    .map(|d| DirGrant::parse(d))
                    .collect::<Result<Vec<_>, _>>()?;
                let env = self
                    .env
                    .iter()
                    .map(|kv| parse_env(kv))
                    .collect::<Result<Vec<_>, _>>()?;
                let plan = RunPlan::for_module(module, self.args.clone(), env, &dirs)?;
                (plan, WasmBinary::read(module)?)
            }
            (None, None) => {
                return Err(wasmcell_core::SpecError::Missing {
                    field: "module or --bundle",
                }
                .into())
            }
        };
        let mut plan = plan;
        if let Some(export) = self.invoke {
            plan.export = Some(export);
        }
        if self.net {
            plan = plan.with_network(true);
        }
        if self.memory_limit.is_some() {
            plan = plan.with_memory_limit(self.memory_limit);
        }
        let engine = if self.no_cache {
            WasmtimeEngine::new()?
        } else {
            WasmtimeEngine::with_cache(CompileCache::node())?
        };
        tracing::debug!(module = %wasm.path().display(), preopens = plan.preopens.len(), "starting guest");
        Ok(engine.run(&plan, &wasm, Stdio::inherit(), &Interrupt::new())?)
    }
}

fn parse_env(kv: &str) -> Result<(String, String), Error> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(wasmcell_core::SpecError::Invalid {
            field: "--env".into(),
            value: kv.into(),
            reason: "must have the form KEY=VALUE",
        }
        .into()),
    }
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, mult) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}: expected a number of bytes such as 64m"))
}
