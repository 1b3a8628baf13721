use std::collections::HashMap;
use std::sync::Mutex;

use wasmcell_core::{Interrupt, Stdio};

use crate::GuestMeter;

/// What one guest run is given besides its plan and binary.
pub(crate) struct GuestRun<'a> {
    pub(crate) stdio: Stdio,
    pub(crate) interrupt: &'a Interrupt,
    pub(crate) meter: &'a GuestMeter,
    /// Whether host calls may block the calling thread (faster file I/O and sleeps for a
    /// thread that runs only this guest); false when guests share an executor's threads.
    pub(crate) may_block_thread: bool,
    /// How many entries the guest's WASI resource table may hold (its open-file limit).
    pub(crate) open_files: usize,
    /// For an HTTP guest, the socket the host bound for it (in the container's network
    /// namespace); `None`: it is bound where the guest runs, on the address its env names.
    pub(crate) listener: Option<std::net::TcpListener>,
}

/// Open-file limit of a guest whose plan sets none (the usual soft `RLIMIT_NOFILE`).
pub(crate) const DEFAULT_OPEN_FILES: usize = 1024;

/// A map of at most `capacity` entries that forgets the least recently used one to make room.
pub(crate) struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
}

impl<K, V> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let now = self.clock;
        self.entries.get_mut(key).map(|(v, used)| {
            *used = now;
            v.clone()
        })
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.clock += 1;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key, (value, self.clock));
    }
}

/// How many pre-instantiated binaries an engine keeps per WASI flavour.
const PRE_ENTRIES: usize = 64;

/// A WASI linker `L`, built on first use and kept for the engine's life, and each binary's
/// imports resolved against it once per content digest (`P`, an `InstancePre`), so that a
/// repeated run only instantiates.
pub(crate) struct Pres<L, P> {
    linker: Mutex<Option<L>>,
    pres: Mutex<Lru<[u8; 32], P>>,
}

impl<L, P> Default for Pres<L, P> {
    fn default() -> Self {
        Pres {
            linker: Mutex::new(None),
            pres: Mutex::new(Lru::new(PRE_ENTRIES)),
        }
    }
}

impl<L, P> std::fmt::Debug for Pres<L, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pres").finish_non_exhaustive()
    }
}

impl<L, P: Clone> Pres<L, P> {
    /// The pre-instantiated binary of `digest`: from memory, or made with `pre` on the linker
    /// (made with `new_linker` the first time).
    pub(crate) fn get(
        &self,
        digest: &[u8; 32],
        new_linker: impl FnOnce() -> wasmtime::Result<L>,
        pre: impl FnOnce(&mut L) -> wasmtime::Result<P>,
    ) -> wasmtime::Result<P> {
        if let Some(p) = self.pres.lock().ok().and_then(|mut p| p.get(digest)) {
            return Ok(p);
        }
        let made = {
            let mut linker = self
                .linker
                .lock()
                .map_err(|_| wasmtime::Error::msg("wasi linker lock poisoned"))?;
            let linker = match &mut *linker {
                Some(l) => l,
                None => linker.insert(new_linker()?),
            };
            pre(linker)?
        };
        if let Ok(mut pres) = self.pres.lock() {
            pres.insert(*digest, made.clone());
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_entry_makes_room() {
        let mut lru = Lru::new(2);
        lru.insert(1, "a");
        lru.insert(2, "b");
        assert_eq!(lru.get(&1), Some("a"));
        lru.insert(3, "c");
        assert_eq!(lru.get(&2), None);
        assert_eq!(lru.get(&1), Some("a"));
        assert_eq!(lru.get(&3), Some("c"));
    }
}
