//! `wasmcell run` fills the precompile cache; `wasmcell cache ls|verify|prune` show, check and
//! empty it.
mod common;

use wasmcell_test_guests as guests;

fn cmd(cache: &std::path::Path, args: &[&str]) -> common::Output {
    let mut c = common::wasmcell();
    c.env("WASMCELL_CACHE_DIR", cache).args(args);
    common::run(c)
}

#[test]
fn run_fills_the_cache_and_prune_empties_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let out = cmd(&cache, &["cache", "ls"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");

    for _ in 0..2 {
        let out = cmd(&cache, &["run", guests::HELLO_P1]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = cmd(&cache, &["run", "--no-cache", guests::HELLO_P2]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = cmd(&cache, &["cache", "ls"]);
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "one entry for one module: {out:?}"
    );

    let out = cmd(&cache, &["cache", "verify"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "1 entries good, 0 corrupt entries removed\n"),
        "{out:?}"
    );
    let entry = std::fs::read_dir(&cache)
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("an entry");
    let mut code = std::fs::read(&entry).expect("entry");
    let mid = code.len() / 2;
    code[mid] ^= 0x5a;
    std::fs::write(&entry, code).expect("corrupt the entry");
    let out = cmd(&cache, &["cache", "verify"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "0 entries good, 1 corrupt entries removed\n"),
        "{out:?}"
    );
    let out = cmd(&cache, &["run", guests::HELLO_P1]);
    assert_eq!(out.code, 0, "recompiled after verify removed it: {out:?}");

    let out = cmd(&cache, &["cache", "prune"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("removed 1 entries"), "{out:?}");
    let out = cmd(&cache, &["cache", "ls"]);
    assert_eq!(out.stdout, "", "{out:?}");
}
