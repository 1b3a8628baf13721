use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::install::config::{register, register_as, Edit, SHARED_RUNTIME_TYPE};

use wasmcell_core::names::{
    CLI_BINARY, SHARED_SHIM_BINARY as SHARED_SHIM_LINK, SHIM_BINARY as SHIM,
};

const BINARIES: &[&str] = &[SHIM, CLI_BINARY];

/// `wasmcell install ...`
#[derive(Debug, Subcommand)]
pub(crate) enum InstallCommand {
    /// Install the shim and register runtime `wasmcell` (io.containerd.wasmcell.v1) in
    /// containerd's config. Safe to run again: an installed runtime is left as it is.
    Containerd(ContainerdArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ContainerdArgs {
    /// containerd's config file (k3s: .../agent/etc/containerd/config.toml.tmpl or
    /// config-v3.toml.tmpl).
    #[arg(
        long,
        default_value = "/etc/containerd/config.toml",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// Where containerd finds shims (a directory on its PATH).
    #[arg(long, default_value = "/usr/local/bin", value_name = "DIR")]
    bin_dir: PathBuf,
    /// Directory holding the binaries to install (default: this binary's directory).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Leave the binaries alone; only edit the config.
    #[arg(long)]
    skip_binaries: bool,
    /// CRI runtime handler name (the RuntimeClass `handler`).
    #[arg(long, default_value = "wasmcell", value_name = "NAME")]
    runtime_name: String,
    /// Also register `<runtime-name>-shared` (io.containerd.wasmcell-shared.v1): every container
    /// of that runtime runs in one manager process per containerd (Linux containers, such as pod
    /// sandboxes, under runc beside it).
    #[arg(long)]
    shared: bool,
    /// Print what would change (a diff of the config) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restart containerd after a change.
    #[arg(long)]
    restart: bool,
    /// Command that restarts containerd.
    #[arg(
        long,
        default_value = "systemctl restart containerd",
        value_name = "CMD"
    )]
    restart_command: String,
}

impl InstallCommand {
    pub(crate) fn execute(self) -> i32 {
        let InstallCommand::Containerd(args) = self;
        match args.run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("wasmcell: {e:#}");
                1
            }
        }
    }
}

impl ContainerdArgs {
    fn run(&self) -> anyhow::Result<()> {
        let mut changed = false;
        if !self.skip_binaries {
            changed |= self.install_binaries()?;
            changed |= self.link_shared_shim()?;
        }
        changed |= self.edit_config()?;
        if self.restart && changed && !self.dry_run {
            println!("restarting containerd: {}", self.restart_command);
            let status = Command::new("sh")
                .arg("-c")
                .arg(&self.restart_command)
                .status()
                .with_context(|| format!("failed to run {:?}", self.restart_command))?;
            if !status.success() {
                bail!(
                    "restart command {:?} failed with {status}",
                    self.restart_command
                );
            }
        }
        Ok(())
    }

    /// Copy each binary that differs; true when something was (or would be) copied.
    fn install_binaries(&self) -> anyhow::Result<bool> {
        let from = match &self.from {
            Some(d) => d.clone(),
            None => std::env::current_exe()
                .context("failed to locate this binary")?
                .parent()
                .map(Path::to_path_buf)
                .context("this binary has no directory")?,
        };
        let mut changed = false;
        for name in BINARIES {
            let src = from.join(name);
            let dst = self.bin_dir.join(name);
            let new =
                std::fs::read(&src).with_context(|| format!("failed to read {}", src.display()))?;
            if std::fs::read(&dst).ok().as_deref() == Some(new.as_slice()) {
                println!("{} is up to date", dst.display());
                continue;
            }
            changed = true;
            if self.dry_run {
                println!("would install {} -> {}", src.display(), dst.display());
                continue;
            }
            std::fs::create_dir_all(&self.bin_dir)
                .with_context(|| format!("failed to create {}", self.bin_dir.display()))?;
            let tmp = self.bin_dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &new)
                .with_context(|| format!("failed to write {}", tmp.display()))?;
            let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(&tmp, perms)
                .with_context(|| format!("failed to make {} executable", tmp.display()))?;
            std::fs::rename(&tmp, &dst)
                .with_context(|| format!("failed to install {}", dst.display()))?;
            println!("installed {}", dst.display());
        }
        Ok(changed)
    }

    /// The shared runtime's binary name, a symlink to the shim; true when made (or would be).
    fn link_shared_shim(&self) -> anyhow::Result<bool> {
        let link = self.bin_dir.join(SHARED_SHIM_LINK);
        if std::fs::read_link(&link).ok().as_deref() == Some(Path::new(SHIM)) {
            println!("{} is up to date", link.display());
            return Ok(false);
        }
        if self.dry_run {
            println!("would link {} -> {SHIM}", link.display());
            return Ok(true);
        }
        let tmp = self.bin_dir.join(format!(".{SHARED_SHIM_LINK}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(SHIM, &tmp)
            .with_context(|| format!("failed to create {}", tmp.display()))?;
        std::fs::rename(&tmp, &link)
            .with_context(|| format!("failed to install {}", link.display()))?;
        println!("linked {} -> {SHIM}", link.display());
        Ok(true)
    }

    /// Register the runtime; true when the config changed (or would).
    fn edit_config(&self) -> anyhow::Result<bool> {
        let path = &self.config;
        let shown = path.display().to_string();
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("failed to read {shown}")),
        };
        let mut new = match register(&shown, &old, &self.runtime_name)? {
            Edit::Unchanged => {
                println!("{shown} already registers runtime {}", self.runtime_name);
                old.clone()
            }
            Edit::Changed(new) => new,
        };
        if self.shared {
            let name = format!("{}-shared", self.runtime_name);
            match register_as(&shown, &new, &name, SHARED_RUNTIME_TYPE)? {
                Edit::Unchanged => println!("{shown} already registers runtime {name}"),
                Edit::Changed(text) => new = text,
            }
        }
        if new == old {
            return Ok(false);
        }
        if self.dry_run {
            let diff = similar::TextDiff::from_lines(&old, &new);
            print!(
                "{}",
                diff.unified_diff()
                    .header(&shown, &format!("{shown} (new)"))
            );
            return Ok(true);
        }
        if path.exists() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let backup = PathBuf::from(format!("{shown}.bak-{secs}"));
            std::fs::copy(path, &backup).with_context(|| format!("failed to back up {shown}"))?;
            println!("backed up {shown} to {}", backup.display());
        } else if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        let tmp = PathBuf::from(format!("{shown}.wasmcell-tmp"));
        std::fs::write(&tmp, &new).with_context(|| format!("failed to write {}", tmp.display()))?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        std::fs::rename(&tmp, path).with_context(|| format!("failed to replace {shown}"))?;
        println!(
            "registered runtime {} (io.containerd.wasmcell.v1{}) in {shown}",
            self.runtime_name,
            if self.shared {
                ", and -shared: io.containerd.wasmcell-shared.v1"
            } else {
                ""
            }
        );
        Ok(true)
    }
}
