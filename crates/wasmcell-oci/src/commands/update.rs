//! `update [--resources FILE] [--memory N] [--pids-limit N] ... ID`: change the resource limits of
//! a container's cgroup. Flags runc has that are not listed here are refused by the parser.

use std::path::PathBuf;

use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use crate::{container, GlobalOpts, OciError};

/// `update` flags.
#[derive(Debug, clap::Args)]
pub struct Update {
    /// JSON file with the OCI `linux.resources` to apply (`-` for stdin).
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds per period.
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// Container id.
    pub id: String,
}

impl Update {
    /// Run `update`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let c = container::load(&global.root, &self.id)?;
        let resources = self.resources()?;
        let manager = container::cgroup_manager(&c, "update")?;
        manager
            .apply(&ControllerOpt {
                resources: &resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| OciError::Cgroup {
                action: "update",
                id: self.id.clone(),
                reason: e.to_string(),
            })?;
        tracing::info!(container = %self.id, "resources updated");
        Ok(())
    }

    fn resources(&self) -> Result<LinuxResources, OciError> {
        let invalid = |reason: String| OciError::Invalid {
            field: "update resources",
            value: self
                .resources
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            reason,
        };
        if let Some(path) = &self.resources {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            }
            .map_err(|e| invalid(e.to_string()))?;
            return serde_json::from_str(&text).map_err(|e| invalid(e.to_string()));
        }
        let mut builder = LinuxResourcesBuilder::default();
        if let Some(limit) = self.memory {
            let memory = LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            builder = builder.memory(memory);
        }
        if let Some(limit) = self.pids_limit {
            let pids = LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            builder = builder.pids(pids);
        }
        if self.cpu_shares.is_some() || self.cpu_quota.is_some() || self.cpu_period.is_some() {
            let mut cpu = LinuxCpuBuilder::default();
            if let Some(shares) = self.cpu_shares {
                cpu = cpu.shares(shares);
            }
            if let Some(quota) = self.cpu_quota {
                cpu = cpu.quota(quota);
            }
            if let Some(period) = self.cpu_period {
                cpu = cpu.period(period);
            }
            builder = builder.cpu(cpu.build().map_err(|e| invalid(e.to_string()))?);
        }
        builder.build().map_err(|e| invalid(e.to_string()))
    }
}
