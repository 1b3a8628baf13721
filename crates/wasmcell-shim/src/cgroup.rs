//! The container's cgroup, through youki's `libcgroups` (v1, v2 and hybrid hosts).
//!
//! On cgroup v1 the guest process joins its cgroup itself ([`Join::ByGuest`]): it writes `0`
//! to the `tasks` file of each hierarchy while it is still single-threaded. The kernel moves a
//! thread that moves itself without taking the global `cgroup_threadgroup_rwsem` for writing,
//! whose first taker after a quiet spell waits for an RCU grace period (8-15 ms of a create,
//! measured). A pid written to `cgroup.procs` by another process, as runc and the v2 path
//! here do, pays that wait.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
};
use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
};
use libcgroups::v1::ControllerType;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Spec};

use crate::ShimError;

/// A container's cgroup: created at Create, the guest process placed in it, removed at Delete.
pub(crate) struct Cgroup {
    path: PathBuf,
    manager: AnyCgroupManager,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("path", &self.path).finish()
    }
}

impl Cgroup {
    /// The cgroup named by `linux.cgroupsPath` (default `/wasmcell/<id>`), in either CRI
    /// driver's form ([`crate::cgroup_path`]).
    pub(crate) fn for_spec(spec: &Spec, id: &str) -> Result<Self, ShimError> {
        let path = match spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
            Some(raw) => crate::cgroup_path::resolve(&raw.to_string_lossy())
                .map_err(|why| ShimError::Workload(format!("container {id}: {why}")))?,
            None => PathBuf::from(format!("/wasmcell/{id}")),
        };
        Self::open(&path, id)
    }

    /// A manager for the cgroup at `path` (created on first use).
    pub(crate) fn open(path: &Path, id: &str) -> Result<Self, ShimError> {
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: path.to_path_buf(),
            systemd_cgroup: false,
            container_name: id.to_string(),
        })
        .map_err(|e| cgroup_err("set up", path, e))?;
        Ok(Cgroup {
            path: path.to_path_buf(),
            manager,
        })
    }

    /// The cgroup path as in the spec.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Make the cgroup ready for the guest process to join by itself, resource limits applied,
    /// on cgroup v1; on v2, leave it to [`Cgroup::add`].
    pub(crate) fn prepare_join(
        &self,
        resources: Option<&LinuxResources>,
    ) -> Result<Join, ShimError> {
        if !matches!(self.manager, AnyCgroupManager::V1(_)) {
            return Ok(Join::ByShim);
        }
        let tasks = v1_join_files(&self.path)?;
        self.apply(resources)?;
        Ok(Join::ByGuest(tasks))
    }

    /// Put `pid` in the cgroup and apply the spec's resource limits.
    pub(crate) fn add(
        &self,
        pid: i32,
        resources: Option<&LinuxResources>,
    ) -> Result<(), ShimError> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| cgroup_err("add the guest to", &self.path, e))?;
        self.apply(resources)
    }

    fn apply(&self, resources: Option<&LinuxResources>) -> Result<(), ShimError> {
        if let Some(resources) = resources {
            let opt = ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            };
            self.manager
                .apply(&opt)
                .map_err(|e| cgroup_err("apply resources to", &self.path, e))?;
        }
        Ok(())
    }

    /// Memory, CPU and pid figures in containerd's cgroup v1 metrics form.
    pub(crate) fn metrics(&self) -> Result<Metrics, ShimError> {
        let stats = self
            .manager
            .stats()
            .map_err(|e| cgroup_err("read stats of", &self.path, e))?;
        let mut metrics = Metrics::new();
        let mut memory = MemoryStat::new();
        let mut usage = MemoryEntry::new();
        usage.usage = stats.memory.memory.usage;
        usage.max = stats.memory.memory.max_usage;
        usage.limit = stats.memory.memory.limit;
        usage.failcnt = stats.memory.memory.fail_count;
        memory.usage = Some(usage).into();
        memory.cache = stats.memory.cache;
        memory.rss = stats.memory.stats.get("rss").copied().unwrap_or_default();
        metrics.memory = Some(memory).into();
        let mut cpu = CPUStat::new();
        let mut cpu_usage = CPUUsage::new();
        cpu_usage.total = stats.cpu.usage.usage_total;
        cpu_usage.user = stats.cpu.usage.usage_user;
        cpu_usage.kernel = stats.cpu.usage.usage_kernel;
        cpu_usage.per_cpu = stats.cpu.usage.per_core_usage_total.clone();
        cpu.usage = Some(cpu_usage).into();
        metrics.cpu = Some(cpu).into();
        let mut pids = PidsStat::new();
        pids.current = stats.pids.current;
        pids.limit = stats.pids.limit;
        metrics.pids = Some(pids).into();
        Ok(metrics)
    }

    /// How many processes the kernel OOM-killed in this cgroup (cgroup v1 `memory.oom_control`
    /// or v2 `memory.events`).
    pub(crate) fn oom_kills(&self) -> u64 {
        let rel = self.path.strip_prefix("/").unwrap_or(&self.path);
        let candidates = [
            (Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control")),
            (Path::new("/sys/fs/cgroup").join(rel).join("memory.events")),
        ];
        candidates
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("oom_kill "))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Remove the cgroup (it must hold no process).
    pub(crate) fn remove(&self) {
        if let Err(e) = self.manager.remove() {
            tracing::warn!(cgroup = %self.path.display(), error = %e, "failed to remove cgroup");
        }
    }
}

/// How the guest process gets into its cgroup.
#[derive(Debug)]
pub(crate) enum Join {
    /// It writes `0` to each of these `tasks` files itself, before it starts a thread.
    ByGuest(Vec<PathBuf>),
    /// The shim adds its pid ([`Cgroup::add`]).
    ByShim,
}

/// The v1 controllers a container's cgroup spans (libcgroups' list).
const V1_CONTROLLERS: [ControllerType; 12] = [
    ControllerType::Cpu,
    ControllerType::CpuAcct,
    ControllerType::CpuSet,
    ControllerType::Devices,
    ControllerType::HugeTlb,
    ControllerType::Memory,
    ControllerType::Pids,
    ControllerType::PerfEvent,
    ControllerType::Blkio,
    ControllerType::NetworkPriority,
    ControllerType::NetworkClassifier,
    ControllerType::Freezer,
];

/// Create the cgroup `path` in every mounted v1 hierarchy of [`V1_CONTROLLERS`] (cpuset's
/// `cpus` and `mems` filled in from the parent, as the kernel wants before a task joins);
/// returns the `tasks` file of each.
fn v1_join_files(path: &Path) -> Result<Vec<PathBuf>, ShimError> {
    let relative: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(ShimError::InvalidArgument(format!(
            "cgroup path {} may not go up a directory",
            path.display()
        )));
    }
    let mounts = v1_mounts()?;
    let mut files = Vec::new();
    for controller in V1_CONTROLLERS {
        let Some(mount) = mounts.get(&controller.to_string()) else {
            continue;
        };
        let dir = mount.join(&relative);
        let file = dir.join("tasks");
        if files.contains(&file) {
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(|e| cgroup_err("create", &dir, e))?;
        if controller == ControllerType::CpuSet {
            for name in ["cpuset.cpus", "cpuset.mems"] {
                inherit_down(mount, &relative, name)?;
            }
        }
        files.push(file);
    }
    Ok(files)
}

/// Where each v1 controller's hierarchy is mounted, by controller name (`cpu`, `memory`, ...),
/// from one read of `/proc/self/mountinfo`.
fn v1_mounts() -> Result<HashMap<String, PathBuf>, ShimError> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ShimError::io(format!("failed to read {path}"), e))?;
    Ok(parse_v1_mounts(&text))
}

fn parse_v1_mounts(text: &str) -> HashMap<String, PathBuf> {
    let mut mounts = HashMap::new();
    for line in text.lines() {
        // `<id> <parent> <dev> <root> <mount point> <options> [<tags>...] - <fs> <source> <super>`
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let mut fs = fs.split(' ');
        if fs.next() != Some("cgroup") {
            continue;
        }
        let (Some(point), Some(options)) = (mount.split(' ').nth(4), fs.nth(1)) else {
            continue;
        };
        for controller in options.split(',') {
            mounts
                .entry(controller.to_string())
                .or_insert_with(|| PathBuf::from(point));
        }
    }
    mounts
}

/// Fill the empty `file` of each directory from `root` down along `relative` with its
/// parent's value.
fn inherit_down(root: &Path, relative: &Path, file: &str) -> Result<(), ShimError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| ShimError::io(format!("failed to read {}", p.display()), e))
    };
    let mut dir = root.to_path_buf();
    let mut value = read(&dir.join(file))?;
    for component in relative.components() {
        dir.push(component);
        let path = dir.join(file);
        let own = read(&path)?;
        if own.trim().is_empty() {
            std::fs::write(&path, value.trim())
                .map_err(|e| ShimError::io(format!("failed to write {}", path.display()), e))?;
        } else {
            value = own;
        }
    }
    Ok(())
}

fn cgroup_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ShimError {
    ShimError::io(
        format!("failed to {what} cgroup {}", path.display()),
        std::io::Error::other(e.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_are_found_by_controller() {
        let mountinfo = "\
25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
27 25 0:25 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
28 25 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
29 25 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
";
        let mounts = parse_v1_mounts(mountinfo);
        let at = |c: &str| mounts.get(c).map(|p| p.display().to_string());
        assert_eq!(at("cpu").as_deref(), Some("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(at("cpuacct").as_deref(), Some("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(at("memory").as_deref(), Some("/sys/fs/cgroup/memory"));
        assert_eq!(at("pids"), None);
        // cgroup2 is not a v1 hierarchy.
        assert!(mounts.values().all(|p| !p.ends_with("unified")));
    }

    #[test]
    fn a_cgroup_path_may_not_go_up() {
        let err = v1_join_files(Path::new("/default/../../etc")).expect_err("refused");
        assert!(err.to_string().contains("/default/../../etc"), "{err}");
    }
}
