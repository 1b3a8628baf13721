//! BLAKE3 content digests, hashed on every core for large inputs (rayon's pool: see
//! [`crate::fork`] for processes that fork).

/// Below this size one thread is faster than handing work to the thread pool (BLAKE3's own
/// rule of thumb for x86_64).
const PARALLEL_FROM: usize = 128 * 1024;

/// The BLAKE3 hash of `bytes`; the same value however many threads computed it.
pub(crate) fn blake3(bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    update(&mut hasher, bytes);
    *hasher.finalize().as_bytes()
}

/// Feed `bytes` to `hasher`, on every core when they are many, but on the calling thread alone
/// in a forked child, whose copy of the thread pool has no threads ([`crate::fork`]).
pub(crate) fn update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() < PARALLEL_FROM || crate::fork::in_forked_child() {
        hasher.update(bytes);
    } else {
        hasher.update_rayon(bytes);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parallel_hash_is_the_plain_hash() {
        let big: Vec<u8> = (0..super::PARALLEL_FROM * 3 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(super::blake3(&big), *blake3::hash(&big).as_bytes());
        assert_eq!(super::blake3(b"small"), *blake3::hash(b"small").as_bytes());
    }
}
