//! The manager's own cgroup and OOM score.
//!
//! A manager left where containerd started it would share containerd's cgroup and limits: its
//! guests' memory would count against containerd's, and the OOM killer would weigh it as
//! containerd. At start the manager moves itself into a cgroup of its own, with a memory limit
//! and a CPU weight, and sets its OOM score as containerd's shims do (containerd's, plus one).
//! Each guest's memory is bounded by the engine (one budget per guest); this cgroup bounds all
//! of them together with the manager's own memory, so a manager past it is the only process
//! the kernel may stop, never containerd or another container.
//!
//! Configured by the manager's environment (containerd's, which it inherits):
//! - `WASMCELL_MANAGER_CGROUP`: the cgroup, a cgroupfs path or systemd's `slice:prefix:name`
//!   (default `/wasmcell/manager-<hash>`, the hash naming the manager's socket: one per
//!   containerd);
//! - `WASMCELL_MANAGER_MEMORY_MAX`: its memory limit in bytes (default: half the node's memory);
//! - `WASMCELL_MANAGER_CPU_SHARES`: its CPU weight in cgroup v1 shares (default 1024, a
//!   container's default);
//! - `WASMCELL_MANAGER_OOM_SCORE_ADJ`: its OOM score adjustment (default containerd's + 1).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

use crate::cgroup::Cgroup;
use crate::ShimError;

pub(crate) const CGROUP_ENV: &str = "WASMCELL_MANAGER_CGROUP";
pub(crate) const MEMORY_MAX_ENV: &str = "WASMCELL_MANAGER_MEMORY_MAX";
pub(crate) const CPU_SHARES_ENV: &str = "WASMCELL_MANAGER_CPU_SHARES";
pub(crate) const OOM_SCORE_ADJ_ENV: &str = "WASMCELL_MANAGER_OOM_SCORE_ADJ";

/// What the manager applies to itself at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManagerLimits {
    pub(crate) cgroup: PathBuf,
    pub(crate) memory_max: i64,
    pub(crate) cpu_shares: u64,
    pub(crate) oom_score_adj: i32,
}

impl ManagerLimits {
    /// The limits from `env` (a lookup of the environment), for the manager serving on
    /// `manager_socket` (named by a hash of its containerd's address), whose containerd's OOM
    /// score adjustment is `containerd_score`. A value it cannot use is a [`ShimError::Config`]
    /// naming the variable.
    pub(crate) fn from_env(
        env: impl Fn(&str) -> Option<String>,
        manager_socket: &str,
        containerd_score: i32,
        node_memory: u64,
    ) -> Result<Self, ShimError> {
        let cgroup = match env(CGROUP_ENV) {
            Some(raw) => crate::cgroup_path::resolve(&raw)
                .map_err(|why| ShimError::Config(format!("{CGROUP_ENV}: {why}")))?,
            None => {
                let name = Path::new(manager_socket)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let hash: String = name
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(12)
                    .collect();
                PathBuf::from(format!("/wasmcell/manager-{hash}"))
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ShimError> {
            env(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|e| {
                        ShimError::Config(format!("{name}={v:?}: not a whole number: {e}"))
                    })
                })
                .transpose()
        };
        let bad = |why: String| Err(ShimError::Config(why));
        let memory_max = number(MEMORY_MAX_ENV)?
            .unwrap_or_else(|| i64::try_from(node_memory / 2).unwrap_or(i64::MAX));
        if memory_max <= 0 {
            return bad(format!("{MEMORY_MAX_ENV}={memory_max}: must be above zero"));
        }
        let cpu_shares = match number(CPU_SHARES_ENV)? {
            Some(s) if (2..=262_144).contains(&s) => s as u64,
            Some(s) => return bad(format!("{CPU_SHARES_ENV}={s}: must be 2 to 262144")),
            None => 1024,
        };
        let oom_score_adj = match number(OOM_SCORE_ADJ_ENV)? {
            Some(s) if (-1000..=1000).contains(&s) => s as i32,
            Some(s) => return bad(format!("{OOM_SCORE_ADJ_ENV}={s}: must be -1000 to 1000")),
            None => (containerd_score + 1).min(1000),
        };
        Ok(ManagerLimits {
            cgroup,
            memory_max,
            cpu_shares,
            oom_score_adj,
        })
    }

    /// The limits for this process, from its environment.
    pub(crate) fn for_this_manager(manager_socket: &str) -> Result<Self, ShimError> {
        let containerd_score = containerd_oom_score();
        Self::from_env(
            |name| std::env::var(name).ok(),
            manager_socket,
            containerd_score,
            node_memory(),
        )
    }
}

/// Move this process into its cgroup with its limits, and set its OOM score. Called once at
/// the manager's start, before it runs any guest. Returns the cgroup, to leave at exit.
pub(crate) fn enter(limits: &ManagerLimits) -> Result<Cgroup, ShimError> {
    let invalid = |e: oci_spec::OciSpecError| {
        ShimError::Config(format!("invalid limits for the manager's cgroup: {e}"))
    };
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limits.memory_max)
                .build()
                .map_err(invalid)?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(limits.cpu_shares)
                .build()
                .map_err(invalid)?,
        )
        .build()
        .map_err(invalid)?;
    let cgroup = Cgroup::open(&limits.cgroup, "manager")?;
    cgroup.add(std::process::id() as i32, Some(&resources))?;
    std::fs::write("/proc/self/oom_score_adj", limits.oom_score_adj.to_string())
        .map_err(|e| ShimError::io("failed to set the manager's oom_score_adj", e))?;
    tracing::info!(
        cgroup = %limits.cgroup.display(),
        memory_max = limits.memory_max,
        cpu_shares = limits.cpu_shares,
        oom_score_adj = limits.oom_score_adj,
        "manager in its own cgroup"
    );
    Ok(cgroup)
}

/// Leave the cgroup for the hierarchy's root and remove it (the manager is exiting).
pub(crate) fn leave(cgroup: Cgroup) {
    match Cgroup::open(Path::new("/"), "manager") {
        Ok(root) => {
            if let Err(e) = root.add(std::process::id() as i32, None) {
                tracing::debug!(error = %e, "failed to leave the manager's cgroup");
                return;
            }
            cgroup.remove();
        }
        Err(e) => tracing::debug!(error = %e, "failed to open the root cgroup"),
    }
}

/// containerd's OOM score adjustment: the manager was started by a shim that containerd
/// started, and both inherited containerd's score, so the manager's own at start is it.
fn containerd_oom_score() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The node's memory in bytes (`MemTotal` of `/proc/meminfo`).
fn node_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(u64::MAX / 2, |kib| kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_follow_containerd_and_the_node() {
        let socket = "unix:///run/containerd/s/6e6a9864f2b058b0baea306ac2";
        let l = ManagerLimits::from_env(env(&[]), socket, -999, 8 << 30).expect("limits");
        assert_eq!(l.cgroup, PathBuf::from("/wasmcell/manager-6e6a9864f2b0"));
        assert_eq!(
            (l.memory_max, l.cpu_shares, l.oom_score_adj),
            (4 << 30, 1024, -998)
        );
        let other = ManagerLimits::from_env(
            env(&[]),
            "unix:///run/containerd/s/0a20fb8c5d78d41",
            0,
            8 << 30,
        )
        .expect("limits");
        assert_ne!(l.cgroup, other.cgroup, "one cgroup per containerd");
    }

    #[test]
    fn the_environment_sets_each_and_bad_values_are_named() {
        let vars = [
            (CGROUP_ENV, "kubepods.slice:wasmcell:manager"),
            (MEMORY_MAX_ENV, "1073741824"),
            (CPU_SHARES_ENV, "512"),
            (OOM_SCORE_ADJ_ENV, "-500"),
        ];
        let l = ManagerLimits::from_env(env(&vars), "/c.sock", 0, 8 << 30).expect("limits");
        assert_eq!(
            l,
            ManagerLimits {
                cgroup: PathBuf::from("/kubepods.slice/wasmcell-manager.scope"),
                memory_max: 1 << 30,
                cpu_shares: 512,
                oom_score_adj: -500,
            }
        );
        for (name, value) in [
            (MEMORY_MAX_ENV, "lots"),
            (MEMORY_MAX_ENV, "0"),
            (CPU_SHARES_ENV, "1"),
            (OOM_SCORE_ADJ_ENV, "-1001"),
        ] {
            let err = ManagerLimits::from_env(env(&[(name, value)]), "/c.sock", 0, 8 << 30)
                .expect_err("refused");
            assert!(matches!(err, ShimError::Config(_)), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
