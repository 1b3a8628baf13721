//! Serving `wasi:http` components: the guest is an HTTP server.
//!
//! A component that exports `wasi:http/handler@0.3` or `wasi:http/incoming-handler@0.2` (and
//! no export is named by the plan) is served rather than run: [`run`] binds the address its
//! environment names ([`HttpOptions`]), then answers each request from the container's
//! instance-pre, built once (`host.rs`), under the container's limits (`serve.rs`): a fresh
//! store and instance per request for 0.2; for 0.3, instances reused for many requests, some
//! at once, as Wasmtime's handler does (`p3.rs`). The guest is asked to stop through
//! its [`Interrupt`](wasmcell_core::Interrupt) (SIGTERM to the guest process): no new
//! connection is taken, requests in flight finish within the drain timeout, keep-alive
//! connections close, and the run ends with status 0 (143 when the timeout cut requests off).

mod body;
pub(crate) mod host;
pub mod options;
mod p3;
mod serve;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use wasmcell_core::{EngineError, GuestExit, RunPlan, WasmBinary};

use crate::run::GuestRun;
use host::{HttpPre, Stores};
pub use options::{HttpConfigError, HttpOptions};
use serve::{Server, SharedOutput};

/// The export a WASI 0.2 HTTP component serves through.
pub(crate) const INCOMING_HANDLER_02: &str = "wasi:http/incoming-handler@0.2";
/// The export of a WASI 0.3 HTTP component.
pub(crate) const HANDLER_03: &str = "wasi:http/handler@0.3";

/// Serve the HTTP guest `pre` until it is asked to stop.
pub(crate) async fn run(
    pre: &HttpPre,
    plan: &RunPlan,
    wasm: &WasmBinary,
    guest: GuestRun<'_>,
) -> Result<GuestExit, EngineError> {
    let serve_error = |reason: String| EngineError::Serve {
        module: wasm.path().display().to_string(),
        reason,
    };
    let options = HttpOptions::from_env(&plan.env).map_err(|e| serve_error(e.to_string()))?;
    let listener = match guest.listener {
        Some(listener) => listener,
        None => bind_addr(options.listen).map_err(serve_error)?,
    };
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|e| serve_error(format!("cannot use the listening socket: {e}")))?;
    tracing::info!(
        listen = %options.listen,
        max_concurrent = options.max_concurrent,
        queue = options.queue,
        max_connections = options.max_connections,
        max_body_bytes = options.max_body_bytes,
        header_timeout_ms = options.header_timeout.as_millis() as u64,
        request_timeout_ms = options.request_timeout.as_millis() as u64,
        drain_timeout_ms = options.drain_timeout.as_millis() as u64,
        "serving http"
    );
    let stores = Stores {
        engine: pre.engine().clone(),
        plan: plan.clone(),
        output: SharedOutput::of(guest.stdio),
        open_files: guest.open_files,
    };
    let server = Arc::new(Server::new(pre.clone(), stores, options));
    let cut_off = serve::serve(server.clone(), listener, guest.interrupt).await;
    tracing::info!(
        responses = server.stats.responses.load(Ordering::Relaxed),
        refused = server.stats.refused.load(Ordering::Relaxed),
        "stopped serving http"
    );
    Ok(match (cut_off, guest.interrupt.requested()) {
        (true, Some(signal)) => GuestExit::Interrupted(signal),
        _ => GuestExit::Exited(0),
    })
}

/// Bind the address `plan`'s environment names for an HTTP guest ([`HttpOptions`]), in the
/// calling thread's network namespace: a socket stays in the namespace it was made in, so a
/// host binds it where the container's network is (and before it drops the capability a port
/// under 1024 needs). An invalid address, or one in use, is an error naming it.
pub fn bind(plan: &RunPlan, wasm: &WasmBinary) -> Result<std::net::TcpListener, EngineError> {
    let serve_error = |reason: String| EngineError::Serve {
        module: wasm.path().display().to_string(),
        reason,
    };
    let options = HttpOptions::from_env(&plan.env).map_err(|e| serve_error(e.to_string()))?;
    bind_addr(options.listen).map_err(serve_error)
}

fn bind_addr(listen: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(listen).map_err(|e| format!("failed to listen on {listen}: {e}"))
}
