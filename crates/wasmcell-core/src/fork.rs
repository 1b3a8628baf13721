//! Forking a process that has threads.
//!
//! `fork`/`clone` copy only the calling thread. Whatever the other threads were doing is lost
//! in the child: a thread pool's workers (rayon, which BLAKE3 and Wasmtime's parallel
//! compilation use), an async runtime, a ticker, a logging worker all seem to exist in the
//! child's memory but never run there, and a lock one of them held stays held. A child that
//! hands work to such a pool waits forever.
//!
//! The rule, for every host that forks without exec (`wasmcell-oci`'s container init process,
//! forked by libcontainer from `create`):
//! - **before the fork** the parent runs its parallel work on a pool whose threads are joined
//!   when the work is done ([`with_joined_pool`]) and checks it is down to one thread
//!   ([`ensure_single_threaded`]), so the child inherits no thread's state at all;
//! - **in the child**, the first thing it does is [`enter_forked_child`]: from then on this
//!   library hashes on the calling thread, and engines compile on it
//!   ([`in_forked_child`] is what they check), so nothing in the child depends on a pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// A process was about to fork while other threads ran.
#[derive(Debug, thiserror::Error)]
#[error(
    "{step}: {threads} threads are running, and a process forked now would wait on threads it \
     does not have"
)]
pub struct ForkError {
    /// The step that was about to fork.
    pub step: &'static str,
    /// How many threads the process had.
    pub threads: usize,
}

/// How many threads this process has now (the entries of `/proc/self/task`).
pub fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Fail unless this process has exactly one thread: call it right before a fork that is not
/// followed by exec. A thread that was just joined can still be listed for a moment while the
/// kernel finishes its exit (it runs no code of ours then), so a count above one is looked at
/// again for up to [`SETTLE`] before it is an error. When `/proc` cannot be read (a container
/// without it) the check is skipped: it then proves nothing either way.
pub fn ensure_single_threaded(step: &'static str) -> Result<(), ForkError> {
    let until = std::time::Instant::now() + SETTLE;
    loop {
        match thread_count() {
            Ok(1) => return Ok(()),
            Ok(threads) if std::time::Instant::now() >= until => {
                return Err(ForkError { step, threads })
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                tracing::debug!(step, error = %e, "cannot count threads; check skipped");
                return Ok(());
            }
        }
    }
}

/// How long [`ensure_single_threaded`] lets joined threads finish leaving.
const SETTLE: Duration = Duration::from_millis(100);

/// Mark this process as a child forked from a process that may have had threads: from now on
/// no code of wasmcell hands work to a thread pool in it. Call it first thing in the child.
pub fn enter_forked_child() {
    FORKED_CHILD.store(true, Ordering::Release);
}

/// True after [`enter_forked_child`]: work that would be spread over a thread pool runs on the
/// calling thread instead.
pub fn in_forked_child() -> bool {
    FORKED_CHILD.load(Ordering::Acquire)
}

/// Run `work` with rayon's parallel operations (BLAKE3's large inputs, Wasmtime's parallel
/// compilation) on a pool of its own, whose threads have all been joined when this returns;
/// rayon's global pool is never started. In a forked child, or when no pool can be built,
/// `work` runs on the calling thread alone.
pub fn with_joined_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if in_forked_child() {
        return work();
    }
    let handles = Mutex::new(Vec::new());
    let built = rayon::ThreadPoolBuilder::new()
        .spawn_handler(|thread| {
            let handle = std::thread::Builder::new()
                .name(format!("wasmcell-pool-{}", thread.index()))
                .spawn(|| thread.run())?;
            lock(&handles).push(handle);
            Ok(())
        })
        .build();
    let pool = match built {
        Ok(pool) => pool,
        Err(e) => {
            tracing::debug!(error = %e, "no thread pool; working on this thread");
            // Threads a failed build started stop when it drops them; joined below.
            join_all(&handles);
            return work();
        }
    };
    let result = pool.install(work);
    // Dropping the pool tells its threads to stop; joining waits until each has exited, so
    // none holds a lock (malloc's included) when this returns.
    drop(pool);
    join_all(&handles);
    result
}

fn join_all(handles: &Mutex<Vec<std::thread::JoinHandle<()>>>) {
    for handle in lock(handles).drain(..) {
        let _ = handle.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_pool_leaves_no_thread_behind() {
        // Other tests of this binary run on their own threads, so compare with the count
        // before: the pool's threads must be gone when it returns.
        let big: Vec<u8> = vec![7; 4 << 20];
        let (digest, inside) = with_joined_pool(|| {
            let digest = crate::digest::blake3(&big);
            (digest, rayon::current_num_threads())
        });
        assert_eq!(digest, *blake3::hash(&big).as_bytes());
        assert!(inside >= 1);
        // Every thread named by the pool is gone (other tests' threads may come and go). A
        // joined thread leaves /proc a moment after its join returns (the kernel wakes the
        // joiner before it has released the task): allow it the settling time
        // `ensure_single_threaded` allows.
        let pool_threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("list threads")
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|n| n.starts_with("wasmcell-pool"))
                .collect()
        };
        let deadline = std::time::Instant::now() + SETTLE;
        while !pool_threads().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let left = pool_threads();
        assert!(left.is_empty(), "pool threads left: {left:?}");
    }

    #[test]
    fn single_thread_check_counts_threads() {
        // The test harness runs this on a thread of its own: the process has more than one.
        let err = ensure_single_threaded("test step").expect_err("several threads");
        assert!(err.threads > 1, "{err}");
        assert!(err.to_string().starts_with("test step: "), "{err}");
    }
}
