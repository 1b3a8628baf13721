use std::fs::File;
use std::os::unix::fs::FileTypeExt;

use wasmcell_core::{Access, EngineError, RunPlan, Stdio, StdioStream};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream, InputFile, OutputFile};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How much a guest may write to a non-blocking stdout or stderr before it waits for the reader.
const OUTPUT_BUDGET: usize = 64 * 1024;

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
        StdioStream::File(f) if may_block_thread => {
            b.stdin(InputFile::new(f));
        }
        StdioStream::File(f) => {
            b.stdin(async_input(f));
        }
    }
    match stdio.stdout {
        StdioStream::Null => {}
        StdioStream::Inherit => {
            b.inherit_stdout();
        }
        StdioStream::File(f) if may_block_thread => {
            b.stdout(OutputFile::new(f));
        }
        StdioStream::File(f) => {
            b.stdout(async_output(f));
        }
    }
    match stdio.stderr {
        StdioStream::Null => {}
        StdioStream::Inherit => {
            b.inherit_stderr();
        }
        StdioStream::File(f) if may_block_thread => {
            b.stderr(OutputFile::new(f));
        }
        StdioStream::File(f) => {
            b.stderr(async_output(f));
        }
    }
    Ok(b)
}

fn is_fifo(f: &File) -> bool {
    f.metadata().is_ok_and(|m| m.file_type().is_fifo())
}

/// Stdin read without blocking a thread the guest shares with others: a FIFO through the async
/// reactor, a regular file through the blocking pool.
fn async_input(f: File) -> AsyncStdinStream {
    if is_fifo(&f) {
        match f
            .try_clone()
            .and_then(tokio::net::unix::pipe::Receiver::from_file)
        {
            Ok(pipe) => return AsyncStdinStream::new(pipe),
            Err(e) => tracing::warn!(error = %e, "stdin FIFO read through the blocking pool"),
        }
    }
    AsyncStdinStream::new(tokio::fs::File::from_std(f))
}

/// Stdout or stderr written without blocking a shared thread (see [`async_input`]).
fn async_output(f: File) -> AsyncStdoutStream {
    if is_fifo(&f) {
        match f
            .try_clone()
            .and_then(tokio::net::unix::pipe::Sender::from_file)
        {
            Ok(pipe) => return AsyncStdoutStream::new(OUTPUT_BUDGET, pipe),
            Err(e) => tracing::warn!(error = %e, "output FIFO written through the blocking pool"),
        }
    }
    AsyncStdoutStream::new(OUTPUT_BUDGET, tokio::fs::File::from_std(f))
}
