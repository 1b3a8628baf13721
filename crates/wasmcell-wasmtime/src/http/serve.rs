//! The server of one HTTP guest: connections accepted up to a cap and served as HTTP/1.1 with
//! keep-alive by hyper; each request of a WASI 0.2 handler gets a fresh store and instance of
//! the container's instance-pre (a WASI 0.3 handler's instances are reused, see `p3.rs`), under
//! the container's limits (concurrency with a short queue, body size, header and request
//! timeouts); a stop request drains what is in flight.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use wasmcell_core::{Interrupt, Stdio, StdioStream};
use wasmtime_wasi_http::handler::ProxyHandler;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::http::body::CappedBody;
use crate::http::host::{HttpPre, Stores};
use crate::http::p3::P3Handler;
use crate::http::HttpOptions;

/// How often the accept loop looks whether the guest was asked to stop.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What every request of one container shares.
pub(crate) struct Server {
    guest: Guest,
    pub(crate) options: HttpOptions,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    pub(crate) stats: HttpStats,
}

/// Requests served so far, for logs and stats.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    pub(crate) responses: AtomicU64,
    /// Answered by the host instead of the guest: 413, 500, 503, 504.
    pub(crate) refused: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
}

/// How the container's requests reach its guest.
enum Guest {
    /// WASI 0.2: a fresh store and instance of the pre per request.
    P2 {
        pre: ProxyPre<crate::http::host::HttpHost>,
        stores: Box<Stores>,
    },
    /// WASI 0.3: Wasmtime's handler, which reuses instances (`p3.rs`).
    P3(ProxyHandler<P3Handler>),
}

impl Server {
    pub(crate) fn new(pre: HttpPre, stores: Stores, options: HttpOptions) -> Self {
        let guest = match pre {
            HttpPre::P2(pre) => Guest::P2 {
                pre,
                stores: Box::new(stores),
            },
            HttpPre::P3(pre) => Guest::P3(ProxyHandler::new(P3Handler::new(pre, stores, &options))),
        };
        Server {
            slots: Arc::new(Semaphore::new(options.max_concurrent)),
            waiting: AtomicUsize::new(0),
            guest,
            options,
            stats: HttpStats::default(),
        }
    }

    /// Answer one request.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let response = self.clone().respond(req).await;
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.responses.fetch_add(1, Ordering::Relaxed);
        Ok(response)
    }

    async fn respond(self: Arc<Self>, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let max_body = self.options.max_body_bytes;
        if content_length(&req).is_some_and(|n| n > max_body) {
            return self.refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        let Some(permit) = self.slot().await else {
            return self.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in flight",
            );
        };
        let req = req.map(|body| CappedBody::new(body, max_body));
        let (pre, stores) = match &self.guest {
            Guest::P2 { pre, stores } => (pre, stores),
            Guest::P3(handler) => {
                let answer = crate::http::p3::respond(handler, req, self.options.request_timeout);
                let answer = answer.await;
                drop(permit);
                return answer.unwrap_or_else(|(status, text)| self.refuse(status, text));
            }
        };
        let mut store = match stores.store() {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up a request's store");
                return self.refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handles = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(tx)?;
                Ok((req, out))
            });
        let Ok((req, out)) = handles else {
            return self.refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
        };
        let pre = pre.clone();
        // The guest runs in a task of its own: it may stream the body after the response head.
        // It holds the request's slot until it ends.
        let mut task = tokio::spawn(async move {
            let _permit = permit;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match tokio::time::timeout(self.options.request_timeout, rx).await {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => {
                tracing::info!(error = ?code, "the guest answered with an error");
                self.refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
            Ok(Err(_)) => {
                // No response: the guest trapped, or returned without setting one.
                let reason = match (&mut task).await {
                    Ok(Ok(())) => "the guest returned without a response".to_string(),
                    Ok(Err(trap)) => format!("the guest trapped: {trap:#}"),
                    Err(e) => format!("the guest's task failed: {e}"),
                };
                tracing::warn!(reason, "request failed before its response head");
                self.refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
            Err(_) => {
                task.abort();
                tracing::info!(
                    timeout_ms = self.options.request_timeout.as_millis() as u64,
                    "request timed out; its instance was dropped"
                );
                self.refuse(StatusCode::GATEWAY_TIMEOUT, "the request took too long")
            }
        }
    }

    /// A slot among the requests handled at once: at once, or after waiting in the short
    /// queue; `None` when the queue is full too or the wait outlasts the request timeout.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.options.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let acquired = tokio::time::timeout(
            self.options.request_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        acquired.ok().and_then(Result::ok)
    }

    /// A short plain-text answer from the host (never a trace or a guest's message).
    fn refuse(&self, status: StatusCode, text: &str) -> Response<HyperOutgoingBody> {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        plain(status, text)
    }
}

/// A plain-text response.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = "text/plain".parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Serve `listener` until `interrupt` asks the guest to stop; then stop accepting, let the
/// requests in flight finish within the drain timeout and close the connections. True when
/// the drain timeout cut requests off.
pub(crate) async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    interrupt: &Interrupt,
) -> bool {
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(server.options.max_connections));
    let mut tasks = JoinSet::new();
    let mut poll = tokio::time::interval(STOP_POLL);
    loop {
        tokio::select! {
            accepted = accept(&listener, &connections) => match accepted {
                Ok((stream, permit)) => {
                    tasks.spawn(connection(server.clone(), stream, permit, stop_rx.clone()));
                }
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken: wait a
                    // moment rather than spin.
                    tracing::warn!(error = %e, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = poll.tick() => {
                if interrupt.requested().is_some() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        in_flight = server.stats.in_flight.load(Ordering::Relaxed),
        drain_ms = server.options.drain_timeout.as_millis() as u64,
        "stopping: no new connections; draining"
    );
    let drained = tokio::time::timeout(server.options.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tasks.abort_all();
        tracing::warn!("the drain timeout cut requests off");
    }
    !drained
}

async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, OwnedSemaphorePermit)> {
    let permit = connections
        .clone()
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, permit))
}

/// Serve one connection's requests until it closes, or until the stop: then it finishes the
/// request in flight and closes (keep-alive ends).
async fn connection(
    server: Arc<Server>,
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let header_timeout = server.options.header_timeout;
    let service = hyper::service::service_fn(move |req| server.clone().handle(req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the stop is announced (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The guest's stdout and stderr, handed to every request's store.
pub(crate) struct SharedOutput {
    stdout: Output,
    stderr: Output,
}

enum Output {
    Null,
    Inherit,
    File(std::fs::File),
}

impl SharedOutput {
    /// The run's stdio, kept for its requests (stdin is never read by an HTTP guest).
    pub(crate) fn of(stdio: Stdio) -> Self {
        let keep = |s: StdioStream| match s {
            StdioStream::Null => Output::Null,
            StdioStream::Inherit => Output::Inherit,
            StdioStream::File(f) => Output::File(f),
        };
        SharedOutput {
            stdout: keep(stdio.stdout),
            stderr: keep(stdio.stderr),
        }
    }

    pub(crate) fn for_request(&self) -> Stdio {
        let give = |o: &Output| match o {
            Output::Null => StdioStream::Null,
            Output::Inherit => StdioStream::Inherit,
            Output::File(f) => f.try_clone().map_or(StdioStream::Null, StdioStream::File),
        };
        Stdio {
            stdin: StdioStream::Null,
            stdout: give(&self.stdout),
            stderr: give(&self.stderr),
        }
    }
}
