//! Paths of wasmcell's test guests, built by this crate's build script: the Rust programs in
//! `guests/` as core modules (`*_P1`, wasm32-wasip1) and components (`*_P2`, wasm32-wasip2), and
//! the WAT modules in `wat/` (`WAT_*`).
#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every guest must be used by at least one test of the workspace.
    #[test]
    fn every_guest_has_a_test() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut sources = String::new();
        for krate in std::fs::read_dir(&crates).expect("read crates/") {
            let tests = krate.expect("entry").path().join("tests");
            let Ok(files) = std::fs::read_dir(&tests) else {
                continue;
            };
            for f in files {
                let path = f.expect("entry").path();
                if path.extension().is_some_and(|e| e == "rs") {
                    sources.push_str(&std::fs::read_to_string(&path).expect("read test source"));
                }
            }
        }
        let untested: Vec<_> = super::ALL
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !sources.contains(&format!("guests::{name}")))
            .collect();
        assert!(untested.is_empty(), "guests without a test: {untested:?}");
    }

    /// The real-sized guests are over 1 MiB, so that every suite takes the paths real modules
    /// take (parallel hashing and compiling, large reads) and not only the small ones.
    #[test]
    fn big_guests_are_real_sized() {
        for path in [super::PROBE_BIG_P1, super::PROBE_BIG_P2] {
            let len = std::fs::metadata(path).expect("stat guest").len();
            assert!(len > 1 << 20, "{path} is only {len} bytes");
        }
    }

    #[test]
    fn guests_are_wasm() {
        for (name, path) in super::ALL {
            let bytes = std::fs::read(path).expect("read guest");
            assert!(bytes.starts_with(b"\0asm"), "{name} at {path} is not wasm");
        }
    }
}
