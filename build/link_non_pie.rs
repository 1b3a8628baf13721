//! Build script of the binaries that containerd, CRI-O and Podman execute on every container
//! start (the shim, the OCI runtime): link them as position-dependent executables.
//!
//! A position-independent executable of this size carries some 60,000 relative relocations;
//! the dynamic loader applies them on every exec, writing (and so copying) about 1 MB of
//! relocated data per process: ~250 page faults and ~0.7 ms per exec, and 1 MB of private
//! memory per process that stays. A non-PIE executable has them resolved at link time. This is
//! also how containerd's own shims and runc (Go) are built. Heap, stacks, mapped libraries and
//! the JIT code of Wasm guests stay at randomized addresses.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=../../build/link_non_pie.rs");
}
