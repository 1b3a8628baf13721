//! What `/proc` tells about the host: whether the tests run as root ([`require_root`]), the
//! mount points under a directory ([`mounts_under`]) and the processes whose command line
//! names something ([`pids_with_cmdline_containing`]).

use std::fs;
use std::path::{Path, PathBuf};

/// Panic with a clear message unless the effective user is root. The integration tests using
/// [`Containerd`](crate::Containerd) are meant to run as root and are never skipped.
///
/// # Panics
/// When the effective uid is not 0.
pub fn require_root() {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => panic!(
            "wasmcell-testing: these tests start a real containerd and must run as root, but the \
             effective uid is {uid}; run them as root (e.g. `sudo -E cargo test`); they are never \
             skipped"
        ),
        None => panic!(
            "wasmcell-testing: cannot read the effective uid from /proc/self/status; these tests \
             must run as root"
        ),
    }
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Mount points at or below `dir`, deepest first, read from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// Process ids (other than ours) whose command line contains `needle`, e.g. a socket path.
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let cmdline: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
                String::from_utf8_lossy(&cmdline).contains(needle)
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Decode the octal escapes (`\040` for a space, ...) of a `/proc/self/mountinfo` field.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] = bytes[i..] {
            out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/a\134b"), r"/tmp/a\b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
    }
}
