//! Builds the Rust guests in `guests/` for wasm32-wasip1 (core modules) and wasm32-wasip2
//! (components) and compiles `wat/*.wat`, then writes their paths as constants.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The guests' binaries: `probe-big` is the probe with generated code and data, over 1 MiB.
const RUST_GUESTS: &[&str] = &["hello", "probe", "probe-big"];
const TARGETS: &[(&str, &str)] = &[("wasm32-wasip1", "P1"), ("wasm32-wasip2", "P2")];
/// Guests that are only components (wasm32-wasip2): their constant's name and the library file
/// cargo writes (a `cdylib` is named with underscores). `http-hello` exports
/// `wasi:http/incoming-handler@0.2`, `http-hello-p3` `wasi:http/handler@0.3`, `hello-p3`
/// `wasi:cli/run@0.3`.
const COMPONENT_GUESTS: &[(&str, &str)] = &[
    ("HTTP_HELLO_P2", "http_hello.wasm"),
    ("HTTP_HELLO_P3", "http_hello_p3.wasm"),
    ("HELLO_P3", "hello_p3.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("crate lives at crates/<name>")
        .to_path_buf();
    let guests = workspace.join("guests");
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let guest_target = target_root.join("guests");

    println!("cargo:rerun-if-changed={}", guests.display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wat").display()
    );

    let mut consts = Vec::new();
    build_rust_guests(&guests, &guest_target);
    for (target, suffix) in TARGETS {
        for name in RUST_GUESTS {
            let path = guest_target
                .join(target)
                .join("release")
                .join(format!("{name}.wasm"));
            assert!(path.exists(), "guest {} was not built", path.display());
            consts.push((
                format!("{}_{suffix}", name.to_uppercase().replace('-', "_")),
                path,
            ));
        }
    }

    for (name, file) in COMPONENT_GUESTS {
        let path = guest_target
            .join("wasm32-wasip2")
            .join("release")
            .join(file);
        assert!(path.exists(), "guest {} was not built", path.display());
        consts.push((name.to_string(), path));
    }

    let wat_out = guest_target.join("wat");
    std::fs::create_dir_all(&wat_out).expect("create wat output dir");
    let mut wats: Vec<_> = std::fs::read_dir(manifest_dir.join("wat"))
        .expect("read wat dir")
        .map(|e| e.expect("wat dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    wats.sort();
    for wat_path in wats {
        let stem = wat_path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let binary = wat::parse_file(&wat_path)
            .unwrap_or_else(|e| panic!("failed to compile {}: {e}", wat_path.display()));
        let out = wat_out.join(format!("{stem}.wasm"));
        std::fs::write(&out, binary).expect("write compiled wat");
        consts.push((format!("WAT_{}", stem.to_uppercase()), out));
    }

    let mut code = String::new();
    for (name, path) in &consts {
        code.push_str(&format!(
            "/// Built test guest.\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    code.push_str("/// Every guest: (constant name, path).\npub const ALL: &[(&str, &str)] = &[\n");
    for (name, _) in &consts {
        code.push_str(&format!("    ({name:?}, {name}),\n"));
    }
    code.push_str("];\n");
    let out_dir = PathBuf::from(env("OUT_DIR"));
    std::fs::write(out_dir.join("guests.rs"), code).expect("write guests.rs");
}

fn build_rust_guests(guests: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for (target, _) in TARGETS {
        cmd.arg("--target").arg(target);
    }
    // The outer build's settings (clippy's wrapper, host rustflags, jobserver) are not the guests'.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let outer = key.starts_with("CARGO_") && key != "CARGO_HOME";
        if outer || key.starts_with("RUSTC") || key == "RUSTFLAGS" || key == "RUSTDOCFLAGS" {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("run cargo to build the test guests");
    assert!(
        status.success(),
        "building the test guests failed; are the targets installed? \
         (rustup target add wasm32-wasip1 wasm32-wasip2)"
    );
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}
