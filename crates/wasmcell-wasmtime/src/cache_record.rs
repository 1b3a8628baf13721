//! The checksum record of a precompile cache entry: the `<key>.sum` file kept next to the
//! entry's `<key>.cwasm` code.
//!
//! Its layout (`SUM_LEN` bytes, integers little-endian):
//! - the magic `WCSUM003` (8 bytes);
//! - the BLAKE3 hash of the code file (32 bytes);
//! - the identity ([`Stamp`], 40 bytes) of the code file last checked: device, inode, size,
//!   modification and change times in nanoseconds;
//! - when it was checked (8 bytes): wall clock, nanoseconds since the epoch.
//!
//! A record of any other length or magic is unreadable, and its entry is discarded. Whether a
//! record still vouches for the code file as it is now is [`Record::vouches_for`].

use std::time::SystemTime;

/// The first bytes of every record; a change of layout changes it.
pub(crate) const MAGIC: &[u8; 8] = b"WCSUM003";
/// Length of the code's hash (BLAKE3).
pub(crate) const HASH_LEN: usize = 32;
/// Length of a whole record.
pub(crate) const SUM_LEN: usize = MAGIC.len() + HASH_LEN + Stamp::LEN + 8;
/// A check only vouches for a file whose change time is older than the check by at least
/// this much: file systems keep coarse times (down to whole seconds), so a write soon after a
/// check could leave the change time as it was ("racily clean", as git calls it).
const RACY_NS: i64 = 2_000_000_000;

/// A `.sum` file: the hash of the code, the identity of the code file it was last checked on,
/// and when (wall clock, nanoseconds since the epoch).
pub(crate) struct Record {
    pub(crate) hash: [u8; HASH_LEN],
    pub(crate) stamp: Stamp,
    pub(crate) checked_at_ns: i64,
}

impl Record {
    /// Decode a record, or None if `bytes` are not one (wrong length or magic).
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != SUM_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (hash, rest) = bytes[MAGIC.len()..].split_at(HASH_LEN);
        let (stamp, checked_at) = rest.split_at(Stamp::LEN);
        Some(Record {
            hash: hash.try_into().ok()?,
            stamp: Stamp::parse(stamp)?,
            checked_at_ns: i64::from_le_bytes(checked_at.try_into().ok()?),
        })
    }

    /// Encode the record as it is written to disk.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.stamp.to_bytes());
        out.extend_from_slice(&self.checked_at_ns.to_le_bytes());
        out
    }

    /// Whether the check recorded here covers the file as it is now (`stamp`): the same file,
    /// unchanged since, and checked well after its last change.
    pub(crate) fn vouches_for(&self, stamp: &Stamp) -> bool {
        self.stamp == *stamp && stamp.ctime_ns.saturating_add(RACY_NS) < self.checked_at_ns
    }
}

/// The wall clock in nanoseconds since the epoch, as a record's check time.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Which version of a file was checked: any change to it through the file system changes at
/// least its change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    /// Length of an encoded stamp.
    pub(crate) const LEN: usize = 5 * 8;

    /// The identity of the file `meta` describes.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Encode the stamp as it is written in a record.
    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let fields = [
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns as u64,
            self.ctime_ns as u64,
        ];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let mut fields = bytes
            .chunks_exact(8)
            .map(|c| c.try_into().map(u64::from_le_bytes));
        let mut next = || fields.next()?.ok();
        Some(Stamp {
            dev: next()?,
            ino: next()?,
            size: next()?,
            mtime_ns: next()? as i64,
            ctime_ns: next()? as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_vouches_only_for_a_file_changed_well_before_it() {
        let stamp = Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 10 * RACY_NS,
            ctime_ns: 10 * RACY_NS,
        };
        let checked = |at: i64| Record {
            hash: [0; HASH_LEN],
            stamp,
            checked_at_ns: at,
        };
        assert!(checked(12 * RACY_NS).vouches_for(&stamp));
        assert!(
            !checked(10 * RACY_NS + 1).vouches_for(&stamp),
            "a change in the same coarse tick as the check could go unseen"
        );
        let other = Stamp {
            ctime_ns: stamp.ctime_ns + 1,
            ..stamp
        };
        assert!(!checked(12 * RACY_NS).vouches_for(&other));
    }

    #[test]
    fn a_record_reads_back_as_written_and_a_foreign_one_is_refused() {
        let record = Record {
            hash: [7; HASH_LEN],
            stamp: Stamp {
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns: -4,
                ctime_ns: 5,
            },
            checked_at_ns: 6,
        };
        let bytes = record.to_bytes();
        assert_eq!(bytes.len(), SUM_LEN);
        let back = Record::parse(&bytes).expect("record");
        assert_eq!(back.hash, record.hash);
        assert_eq!(back.stamp, record.stamp);
        assert_eq!(back.checked_at_ns, record.checked_at_ns);

        assert!(Record::parse(&bytes[1..]).is_none(), "a short record");
        let mut other_magic = bytes;
        other_magic[7] = b'2';
        assert!(Record::parse(&other_magic).is_none(), "another format");
    }
}
