//! The precompile cache: one entry per module, reused across engines, and a corrupt or stale
//! entry is recompiled, never run.
use std::path::Path;

use wasmcell_core::{Engine, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmcell_test_guests as guests;
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine, DEFAULT_MAX_BYTES};

fn run_hello(cache: &CompileCache, module: &str) -> GuestExit {
    let engine = WasmtimeEngine::with_cache(cache.clone()).expect("engine");
    let wasm = WasmBinary::read(Path::new(module)).expect("read");
    let plan = RunPlan::for_module(Path::new(module), vec![], vec![], &[]).expect("plan");
    engine.prepare(&plan, &wasm).expect("prepare");
    engine
        .run(&plan, &wasm, Stdio::default(), &Interrupt::new())
        .expect("run")
}

fn only_entry(cache: &CompileCache) -> std::path::PathBuf {
    let entries = cache.entries().expect("entries");
    assert_eq!(entries.len(), 1, "{entries:?}");
    cache.dir().join(format!("{}.cwasm", entries[0].key))
}

#[test]
fn compiles_once_and_reuses_the_entry_across_engines() {
    for module in [guests::HELLO_P1, guests::HELLO_P2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
        assert_eq!(run_hello(&cache, module), GuestExit::Exited(0));
        let entry = only_entry(&cache);
        // Entries are written by rename: a recompiled entry is a new file.
        let inode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).expect("entry").ino()
        };
        let first = inode(&entry);
        assert_eq!(run_hello(&cache, module), GuestExit::Exited(0));
        assert_eq!(
            only_entry(&cache),
            entry,
            "the key is stable across engines"
        );
        assert_eq!(inode(&entry), first, "{module}: loaded, not recompiled");
    }
}

#[test]
fn corrupt_and_stale_entries_are_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = CompileCache::new(dir.path(), DEFAULT_MAX_BYTES);
    assert_eq!(run_hello(&cache, guests::HELLO_P1), GuestExit::Exited(0));
    let entry = only_entry(&cache);
    let good = std::fs::read(&entry).expect("entry");

    // Flipped bits: the checksum no longer matches.
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    std::fs::write(&entry, &corrupt).expect("write");
    assert_eq!(run_hello(&cache, guests::HELLO_P1), GuestExit::Exited(0));
    assert_eq!(
        std::fs::read(&entry).expect("entry"),
        good,
        "rewritten after recompiling"
    );

    // A well-formed entry whose code Wasmtime refuses (e.g. from another engine build).
    let stale = b"not wasmtime code".to_vec();
    let mut sum = b"WCSUM003".to_vec();
    sum.extend_from_slice(blake3::hash(&stale).as_bytes());
    sum.extend_from_slice(&[0u8; 48]); // no check recorded: hashed on load
    std::fs::write(&entry, &stale).expect("write");
    std::fs::write(entry.with_extension("sum"), &sum).expect("write");
    assert_eq!(run_hello(&cache, guests::HELLO_P1), GuestExit::Exited(0));
    assert_eq!(
        std::fs::read(&entry).expect("entry"),
        good,
        "rewritten after recompiling"
    );
}
