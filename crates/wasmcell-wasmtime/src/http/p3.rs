//! Serving `wasi:http/handler@0.3` (WASI 0.3) components through Wasmtime's handler
//! (`wasmtime_wasi_http::handler`), as `wasmtime serve` does: a WASI 0.3 handler is async, so
//! one instance answers several requests at once and is reused for later ones, then retired.
//! What this file decides is the instances' lives:
//!
//! - an instance takes up to [`CONCURRENT_PER_INSTANCE`] requests at once and
//!   [`REQUESTS_PER_INSTANCE`] in all, then it is retired once its requests end;
//! - an idle instance is dropped after [`IDLE_INSTANCE`];
//! - a request that has no response head after the container's request timeout expires: the
//!   client gets a 504, its instance takes no new request and is dropped as soon as its other
//!   requests have ended (a guest stuck in a loop: at the timeout). Dropping it at once matters
//!   beyond its memory: Wasmtime's handler hands a queued request to one waiting instance, and
//!   an instance that stopped taking requests may still be the one waiting (its wait ends, and
//!   the request passes on, when it is dropped);
//! - a trap ends the instance: its requests without a response head get a 500.
//!
//! Every instance has its own store (the container's grants, its memory limit) from
//! [`Stores`]. Requests that share an instance share its memory: that is the WASI 0.3 model,
//! the guest's own choice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, Proxy, ProxyHandler, ShouldAccept,
    TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::http::body::CappedBody;
use crate::http::host::{http_view, HttpHost, Stores};
use crate::http::HttpOptions;

/// Requests one instance answers at once.
pub(crate) const CONCURRENT_PER_INSTANCE: usize = 16;
/// Requests one instance answers in all before it is retired.
pub(crate) const REQUESTS_PER_INSTANCE: usize = 128;
/// How long an instance with nothing to do is kept for the next request.
pub(crate) const IDLE_INSTANCE: Duration = Duration::from_secs(1);

/// What the container's WASI 0.3 requests share: the instance-pre, the stores' maker and the
/// request timeout.
pub(crate) struct P3Handler {
    pre: ServicePre<HttpHost>,
    stores: Arc<Stores>,
    request_timeout: Duration,
}

impl P3Handler {
    pub(crate) fn new(pre: ServicePre<HttpHost>, stores: Stores, options: &HttpOptions) -> Self {
        P3Handler {
            pre,
            stores: Arc::new(stores),
            request_timeout: options.request_timeout,
        }
    }
}

impl HandlerState for P3Handler {
    type StoreData = HttpHost;
    type WorkerExpiration = Expiry;
    type WorkerState = InstanceLife;

    fn instantiate(
        &self,
    ) -> impl Future<Output = wasmtime::Result<Instance<HttpHost, Expiry, InstanceLife>>> + Send
    {
        let pre = self.pre.clone();
        let stores = self.stores.clone();
        let timeout = self.request_timeout;
        async move {
            let mut store = stores
                .store()
                .map_err(|e| wasmtime::format_err!("cannot set up the instance's store: {e}"))?;
            let service = tokio::time::timeout(timeout, pre.instantiate_async(&mut store))
                .await
                .map_err(|_| {
                    wasmtime::format_err!("instantiation took longer than {timeout:?}")
                })??;
            let expired = Arc::new(AtomicBool::new(false));
            Ok(Instance {
                store,
                proxy: Proxy::P3(service),
                view: http_view,
                expiration: Expiry::new(timeout, expired.clone()),
                state: InstanceLife { timeout, expired },
            })
        }
    }
}

/// When an instance is dropped: idle past [`IDLE_INSTANCE`]; its newest request (or its work
/// after the last response) past the request timeout; or, once one of its requests expired,
/// as soon as none is being answered.
pub(crate) struct Expiry {
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Set when one of the instance's requests expired ([`InstanceLife::on_request_start`]).
    expired: Arc<AtomicBool>,
}

impl Expiry {
    fn new(timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        Expiry {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            expired,
        }
    }
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        since: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        if this.expired.load(Ordering::Acquire) && status != WorkerStatus::Requests {
            return Poll::Ready(());
        }
        let limit = match status {
            WorkerStatus::Idle => IDLE_INSTANCE,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.timeout,
        };
        let deadline = since + limit;
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        this.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(deadline));
        this.timer.as_mut().poll(cx)
    }
}

/// How many requests an instance takes, when one of them expires, and what its end logs.
pub(crate) struct InstanceLife {
    timeout: Duration,
    expired: Arc<AtomicBool>,
}

impl WorkerState for InstanceLife {
    type StoreData = HttpHost;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= REQUESTS_PER_INSTANCE {
            ShouldAccept::Never
        } else if concurrent >= CONCURRENT_PER_INSTANCE {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, HttpHost>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let timeout = self.timeout;
        let expired = self.expired.clone();
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            expired.store(true, Ordering::Release);
        })
    }

    fn drop(&self, store: Store<HttpHost>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(
                error = format!("{e:#}"),
                "a wasi 0.3 instance ended with an error"
            );
        }
        drop(store);
    }
}

/// Answer one request through `handler`; `Err` is what the host answers instead (status and a
/// short text), with the reason logged.
pub(crate) async fn respond(
    handler: &ProxyHandler<P3Handler>,
    req: Request<CappedBody<Incoming>>,
    timeout: Duration,
) -> Result<Response<HyperOutgoingBody>, (StatusCode, &'static str)> {
    let req = req.map(BodyExt::boxed_unsync);
    let answered = match tokio::time::timeout(timeout, handler.handle((), req)).await {
        Ok(answered) => answered,
        Err(_) => {
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "request timed out; its instance takes no more requests"
            );
            return Err((StatusCode::GATEWAY_TIMEOUT, "the request took too long"));
        }
    };
    let error = match answered {
        Ok(response) => return Ok(response),
        Err(e) => e,
    };
    if error.is::<ExpirationError>() {
        tracing::info!("request timed out; its instance takes no more requests");
        return Err((StatusCode::GATEWAY_TIMEOUT, "the request took too long"));
    }
    let reason = if error.is::<TrapOrPanicError>() {
        "the guest trapped before the response head".to_string()
    } else if let Some(e) = error.downcast_ref::<InstantiationError<()>>() {
        format!("cannot instantiate the guest: {e}")
    } else {
        format!("{error:#}")
    };
    tracing::warn!(reason, "request failed before its response head");
    Err((StatusCode::INTERNAL_SERVER_ERROR, "internal server error"))
}
