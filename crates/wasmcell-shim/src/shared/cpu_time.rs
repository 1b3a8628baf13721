//! CPU time of one guest inside the manager: the thread CPU clock read around every poll of
//! the guest's future, so each instance is charged only for its own work.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use nix::time::{clock_gettime, ClockId};

/// A future that adds the CPU time spent polling it to a counter.
#[derive(Debug)]
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    nanos: Arc<AtomicU64>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, nanos: Arc<AtomicU64>) -> Self {
        Metered {
            inner: Box::pin(inner),
            nanos,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = thread_cpu_nanos();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_nanos().saturating_sub(before);
        self.nanos.fetch_add(spent, Ordering::Relaxed);
        polled
    }
}

fn thread_cpu_nanos() -> u64 {
    match clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}
