//! `wasmcell install containerd` against real config files and a real containerd restart.
mod common;

use std::path::Path;
use std::process::Command;

fn install(args: &[&str]) -> common::Output {
    let mut cmd = common::wasmcell();
    cmd.args(["install", "containerd"]).args(args);
    common::run(cmd)
}

/// What containerd itself makes of a config file.
fn dump(config: &Path) -> String {
    let out = Command::new("containerd")
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .expect("run containerd config dump");
    assert!(
        out.status.success(),
        "containerd refused {}: {out:?}",
        config.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn backups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().contains(".bak-"))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn registers_in_containerds_default_config_once_with_a_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let default = Command::new("containerd")
        .args(["config", "default"])
        .output()
        .expect("config default");
    std::fs::write(&config, &default.stdout).expect("write config");
    let path = config.display().to_string();

    let out = install(&["--config", &path, "--skip-binaries", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("+[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmcell]"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read(&config).expect("read"),
        default.stdout,
        "dry run wrote the file"
    );

    let out = install(&["--config", &path, "--skip-binaries"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(backups(dir.path()), 1);
    let dumped = dump(&config);
    assert!(dumped.contains("runtimes.wasmcell]"), "{dumped}");
    assert!(
        dumped.contains("runtime_type = \"io.containerd.wasmcell.v1\""),
        "{dumped}"
    );

    let edited = std::fs::read(&config).expect("read");
    let out = install(&[
        "--config",
        &path,
        "--skip-binaries",
        "--restart",
        "--restart-command",
        "false",
    ]);
    assert_eq!(
        out.code, 0,
        "a second run changes nothing and restarts nothing: {out:?}"
    );
    assert!(
        out.stdout.contains("already registers runtime wasmcell"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&config).expect("read"), edited);
    assert_eq!(backups(dir.path()), 1, "no new backup when nothing changed");
}

#[test]
fn an_invalid_config_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "version = 2\n[plugins\n").expect("write");
    let out = install(&["--config", &config.display().to_string(), "--skip-binaries"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("is not valid TOML, leaving it untouched"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).expect("read"),
        "version = 2\n[plugins\n"
    );
    assert_eq!(backups(dir.path()), 0);
}

#[test]
fn installs_binaries_and_a_failed_restart_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = dir.path().join("from");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&from).expect("mkdir");
    for name in ["containerd-shim-wasmcell-v1", "wasmcell"] {
        std::fs::write(from.join(name), format!("#!/bin/sh\necho {name}\n")).expect("write");
    }
    let config = dir.path().join("etc/config.toml").display().to_string();
    let args = [
        "--config",
        &config,
        "--from",
        &from.display().to_string(),
        "--bin-dir",
        &bin.display().to_string(),
        "--restart",
        "--restart-command",
        "exit 3",
    ];
    let out = install(&args);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("restart command \"exit 3\" failed"),
        "{out:?}"
    );
    for name in ["containerd-shim-wasmcell-v1", "wasmcell"] {
        let meta = std::fs::metadata(bin.join(name)).expect("installed");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o755
        );
    }
    assert!(dump(Path::new(&config)).contains("io.containerd.wasmcell.v1"));

    let link = bin.join("containerd-shim-wasmcell-shared-v1");
    assert_eq!(
        std::fs::read_link(&link).expect("shared-mode link"),
        Path::new("containerd-shim-wasmcell-v1")
    );

    let out = install(&args[..6]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("is up to date"), "{out:?}");

    // --shared adds the second runtime once; running it again changes nothing.
    let mut shared = args[..6].to_vec();
    shared.push("--shared");
    let out = install(&shared);
    assert_eq!(out.code, 0, "{out:?}");
    let dumped = dump(Path::new(&config));
    assert!(
        dumped.contains("io.containerd.wasmcell-shared.v1"),
        "{dumped}"
    );
    assert!(dumped.contains("io.containerd.wasmcell.v1"), "{dumped}");
    let before = std::fs::read(&config).expect("read config");
    let out = install(&shared);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("already registers runtime wasmcell-shared"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&config).expect("read config"), before);
}

#[test]
fn a_real_containerd_restarts_on_the_edited_config() {
    let mut c = wasmcell_testing::Containerd::start();
    let config = c.config_path().display().to_string();
    let out = install(&["--config", &config, "--skip-binaries"]);
    assert_eq!(out.code, 0, "{out:?}");
    c.restart();
    let out = c.run_ctr(&["version"]);
    assert!(out.success(), "containerd did not come back: {out:?}");
    // This containerd runs without CRI, so `config dump` leaves CRI's tables out: check the file.
    let text = std::fs::read_to_string(c.config_path()).expect("read config");
    assert!(
        text.contains("runtime_type = \"io.containerd.wasmcell.v1\""),
        "{text}"
    );
}
