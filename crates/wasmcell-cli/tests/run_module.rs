//! `wasmcell run MODULE`: output, args, env, exit codes, traps and memory limits, for core
//! modules (WASI 0.1) and components (WASI 0.2).
mod common;

use common::{run_module, wat_file};
use wasmcell_test_guests as guests;

#[test]
fn hello_core_module_and_component() {
    for module in [guests::HELLO_P1, guests::HELLO_P2] {
        let out = run_module(&[], module, &[]);
        assert_eq!(out.code, 0, "{module}: {out:?}");
        assert_eq!(out.stdout, "Hello from a wasmcell guest!\n");
    }
}

#[test]
fn args_reach_the_guest_in_order() {
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let out = run_module(&[], module, &["args", "--flag", "two words", ""]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, format!("{module}\nargs\n--flag\ntwo words\n\n"));
    }
}

#[test]
fn env_is_exactly_what_was_given() {
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let mut cmd = common::wasmcell();
        cmd.env("HOST_ONLY_SECRET", "leak")
            .args(["run", "--env", "A=1", "--env", "B=x=y", module, "env"]);
        let out = common::run(cmd);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, "A=1\nB=x=y\n");
    }
}

#[test]
fn exit_code_is_the_guests() {
    let out = run_module(&[], guests::WAT_EXIT42, &[]);
    assert_eq!(out.code, 42, "{out:?}");
    let out = run_module(&[], guests::PROBE_P1, &["exit", "42"]);
    assert_eq!(out.code, 42, "{out:?}");
    // wasi:cli/exit in WASI 0.2 carries only success or failure.
    let out = run_module(&[], guests::PROBE_P2, &["exit", "42"]);
    assert_eq!(out.code, 1, "{out:?}");
    let out = run_module(&[], guests::PROBE_P2, &["exit", "0"]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_trap_exits_134_with_one_line_naming_it() {
    for module in [guests::WAT_TRAP, guests::PROBE_P1, guests::PROBE_P2] {
        let out = run_module(&[], module, &["trap"]);
        assert_eq!(out.code, 134, "{module}: {out:?}");
        let line = out.stderr.lines().last().unwrap_or_default();
        assert_eq!(
            line, "wasmcell: guest trapped: wasm trap: wasm `unreachable` instruction executed",
            "{out:?}"
        );
    }
}

#[test]
fn memory_grow_past_the_limit_fails_in_the_guest() {
    let out = run_module(&["--memory-limit", "16m"], guests::WAT_GROW, &[]);
    assert_eq!(out.code, 3, "memory.grow should have returned -1: {out:?}");
    let out = run_module(&[], guests::WAT_GROW, &[]);
    assert_eq!(
        out.code, 0,
        "without a limit the growth is granted: {out:?}"
    );
}

#[test]
fn allocating_past_the_limit_ends_the_guest_not_the_host() {
    for module in [guests::PROBE_P1, guests::PROBE_P2] {
        let out = run_module(&["--memory-limit", "8m"], module, &["alloc", "32"]);
        assert_eq!(out.code, 137, "{module}: {out:?}");
        assert!(
            out.stderr
                .contains("guest ran out of memory: memory limit of 8388608 bytes reached"),
            "{out:?}"
        );
        let out = run_module(&["--memory-limit", "64m"], module, &["alloc", "32"]);
        assert_eq!(out.code, 0, "{module}: {out:?}");
        assert_eq!(out.stdout, "allocated 32 MiB\n");
    }
}

#[test]
fn invoke_calls_a_named_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wat_file(
        dir.path(),
        "m.wasm",
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const 1)))
            (func (export "other") (call $exit (i32.const 7))))"#,
    );
    assert_eq!(run_module(&[], &module, &[]).code, 1);
    assert_eq!(run_module(&["--invoke", "other"], &module, &[]).code, 7);
    let out = run_module(&["--invoke", "nope"], &module, &[]);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(out.stderr.contains("module has no export nope"), "{out:?}");
}
