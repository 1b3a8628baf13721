//! The parity table (`wasmcell_testing::parity`) through `wasmcell-oci`: run directly on a
//! bundle (`wasmcell-oci run --bundle`, as runc is run by hand) and under containerd's own runc
//! shim (`ctr run --runtime io.containerd.runc.v2 --runc-binary wasmcell-oci --rootfs`); the
//! same guest behaviours, small and real-sized guests, with the stdout and exit status every
//! other path gives. Podman's run of the table is in podman.rs.
//!
//! The real-sized guests are the regression test of the hang in the container's init process
//! (it hashed the module on a thread pool whose threads stayed in the parent): with them, each
//! case here would hang until its deadline.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{runc_shim_runtime, BIN};
use wasmcell_test_guests as guests;
use wasmcell_testing::parity::{check_parity, ctr_run, run_until_stopped, Container, RO_DEST};
use wasmcell_testing::{require_root, Containerd};

#[test]
fn the_parity_table_through_wasmcell_oci_run() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("state");
    check_parity(
        "oci-run",
        work.path(),
        &[guests::PROBE_P1, guests::PROBE_P2],
        &[guests::PROBE_BIG_P1, guests::PROBE_BIG_P2],
        |c| {
            let bundle = runc_bundle(c);
            let mut cmd = Command::new(BIN);
            cmd.arg("--root")
                .arg(&root)
                .arg("run")
                .arg("--bundle")
                .arg(&bundle)
                .arg(&c.id);
            // The container's init process is pid 1 of its own pid namespace: the stop signal
            // goes to it (`wasmcell-oci kill`), as `runc kill` does.
            let stop = c.stop.then_some(|_pid: u32| {
                let out = common::oci(&root, &["kill", &c.id, "TERM"]);
                assert!(out.success(), "kill {}: {out:?}", c.id);
            });
            run_until_stopped(cmd, stop)
        },
    );
}

/// A bundle as `runc spec` makes it (namespaces, /proc, /dev, ...), with the container's
/// args, env, read-only mount and memory limit put in.
fn runc_bundle(c: &Container) -> PathBuf {
    let dir = c.rootfs.with_file_name("bundle");
    std::fs::create_dir_all(&dir).expect("mkdir bundle");
    let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    common::bundle(&dir, &args, &[]);
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).expect("read config.json");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("config.json");
    config["root"] = serde_json::json!({"path": c.rootfs, "readonly": false});
    if let Some(env) = config["process"]["env"].as_array_mut() {
        env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}").into()));
    }
    if let (Some(src), Some(mounts)) = (&c.ro_source, config["mounts"].as_array_mut()) {
        mounts.push(serde_json::json!({
            "destination": RO_DEST, "type": "bind", "source": src, "options": ["rbind", "ro"],
        }));
    }
    if let Some(limit) = c.memory_limit {
        config["linux"]["resources"]["memory"] = serde_json::json!({ "limit": limit });
    }
    let text = serde_json::to_vec_pretty(&config).expect("config json");
    std::fs::write(&path, text).expect("write config.json");
    dir
}

#[test]
fn the_parity_table_through_containerds_runc_shim() {
    require_root();
    let c = Containerd::start();
    let runtime = runc_shim_runtime(&c);
    check_parity(
        "runc-shim",
        &c.dir().join("parity"),
        &[guests::PROBE_P1, guests::PROBE_P2],
        &[guests::PROBE_BIG_P1, guests::PROBE_BIG_P2],
        |container| ctr_run(&c, &runtime, container),
    );
}
