//! CPU time of one guest inside the manager: the thread CPU clock read around every poll of
//! the guest's future, so each instance is charged only for its own work; and the container's
//! CPU quota, enforced on that same count.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use oci_spec::runtime::Spec;

/// A container's CPU quota: at most `quota` of CPU time in every `period` (the CFS bandwidth
/// of `linux.resources.cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuQuota {
    quota: Duration,
    period: Duration,
}

impl CpuQuota {
    /// The quota of `spec`, when it sets a positive one (the period defaults to 100 ms, as
    /// for runc).
    pub(crate) fn of(spec: &Spec) -> Option<Self> {
        let cpu = spec
            .linux()
            .as_ref()?
            .resources()
            .as_ref()?
            .cpu()
            .as_ref()?;
        let quota = u64::try_from(cpu.quota()?).ok().filter(|&q| q > 0)?;
        let period = cpu.period().filter(|&p| p > 0).unwrap_or(100_000);
        Some(CpuQuota {
            quota: Duration::from_micros(quota),
            period: Duration::from_micros(period),
        })
    }

    /// The CPUs the quota is worth, rounded up (at least 1).
    pub(crate) fn whole_cpus(&self) -> usize {
        let cpus = self.quota.as_secs_f64() / self.period.as_secs_f64().max(f64::EPSILON);
        (cpus.ceil() as usize).max(1)
    }
}

/// A future that adds the CPU time spent polling it to a counter and, given a quota, is not
/// polled again in a period once it has used the period's quota: a spinning guest (which
/// yields at every epoch tick) then waits for the next period, leaving the threads to others.
#[derive(Debug)]
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    nanos: Arc<AtomicU64>,
    quota: Option<CpuQuota>,
    /// Start of the current period, and CPU time used in it.
    period_start: tokio::time::Instant,
    used: Duration,
    throttled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, nanos: Arc<AtomicU64>, quota: Option<CpuQuota>) -> Self {
        Metered {
            inner: Box::pin(inner),
            nanos,
            quota,
            period_start: tokio::time::Instant::now(),
            used: Duration::ZERO,
            throttled: None,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Some(wait) = self.throttled.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.throttled = None;
        }
        let before = thread_cpu_nanos();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_nanos().saturating_sub(before);
        self.nanos.fetch_add(spent, Ordering::Relaxed);
        if let (Some(quota), Poll::Pending) = (self.quota, &polled) {
            let now = tokio::time::Instant::now();
            if now.duration_since(self.period_start) >= quota.period {
                self.period_start = now;
                self.used = Duration::ZERO;
            }
            self.used += Duration::from_nanos(spent);
            if self.used >= quota.quota {
                let next = self.period_start + quota.period;
                self.throttled = Some(Box::pin(tokio::time::sleep_until(next)));
                self.period_start = next;
                self.used = Duration::ZERO;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that burns about 5 ms of CPU a poll and never ends (a spinning guest).
    struct Spin;
    impl Future for Spin {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(5) {
                std::hint::spin_loop();
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_quota_holds_a_spinner_to_its_share_of_each_period() {
        let quota = CpuQuota {
            quota: Duration::from_millis(20),
            period: Duration::from_millis(100),
        };
        let nanos = Arc::new(AtomicU64::new(0));
        let spin = Metered::new(Spin, nanos.clone(), Some(quota));
        let _ = tokio::time::timeout(Duration::from_millis(500), spin).await;
        let used = Duration::from_nanos(nanos.load(Ordering::Relaxed));
        // Five periods of 20 ms (each may overshoot by one 5 ms poll), not 500 ms.
        assert!(used < Duration::from_millis(160), "used {used:?}");
        assert!(used >= Duration::from_millis(60), "used {used:?}");
    }

    #[test]
    fn the_quota_comes_from_the_spec() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"cpu":{"quota":50000,"period":100000}}}}"#,
        )
        .expect("spec");
        assert_eq!(
            CpuQuota::of(&spec),
            Some(CpuQuota {
                quota: Duration::from_millis(50),
                period: Duration::from_millis(100)
            })
        );
        let unlimited: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"cpu":{"quota":-1}}}}"#,
        )
        .expect("spec");
        assert_eq!(CpuQuota::of(&unlimited), None);
    }
}
