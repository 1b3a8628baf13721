use wasmcell_core::{Access, EngineError, RunPlan, Stdio, StdioStream};
use wasmtime_wasi::cli::{InputFile, OutputFile};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A WASI context builder granting exactly what the plan declares: its args, its env, its
/// preopens with their access, the given stdio, and sockets only when the plan grants them.
/// `may_block_thread` lets file I/O and sleeps block the calling thread.
pub(crate) fn builder(
    plan: &RunPlan,
    stdio: Stdio,
    may_block_thread: bool,
) -> Result<WasiCtxBuilder, EngineError> {
    let mut b = WasiCtxBuilder::new();
    b.args(&plan.args);
    b.envs(&plan.env);
    b.allow_blocking_current_thread(may_block_thread);
    if plan.network {
        b.inherit_network();
        b.allow_tcp(true);
        b.allow_udp(true);
        b.allow_ip_name_lookup(true);
    }
    for p in &plan.preopens {
        let perms = match p.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        b.preopened_dir(&p.host, &p.guest, perms)
            .map_err(|e| EngineError::Wasi {
                reason: format!(
                    "failed to preopen {} as {}: {e:#}",
                    p.host.display(),
                    p.guest
                ),
            })?;
    }
    match stdio.stdin {
        StdioStream::Null => {}
        StdioStream::Inherit => {
            b.inherit_stdin();
        }
        StdioStream::File(f) => {
            b.stdin(InputFile::new(f));
        }
    }
    match stdio.stdout {
        StdioStream::Null => {}
        StdioStream::Inherit => {
            b.inherit_stdout();
        }
        StdioStream::File(f) => {
            b.stdout(OutputFile::new(f));
        }
    }
    match stdio.stderr {
        StdioStream::Null => {}
        StdioStream::Inherit => {
            b.inherit_stderr();
        }
        StdioStream::File(f) => {
            b.stderr(OutputFile::new(f));
        }
    }
    Ok(b)
}
