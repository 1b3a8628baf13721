//! The guest process's confinement: the spec's `process` and `linux` settings applied to it as
//! runc applies them to a container's process, with youki's `libcontainer` primitives (the same
//! code `wasmcell-oci` runs through libcontainer's init).
//!
//! The guest process calls [`prepare`] after it has read and compiled the module (the node's
//! precompile cache is root's), then enters the container's root, then calls [`apply`] before
//! it reports `ready`; from then on it runs as the container's user with the container's
//! capabilities, `no_new_privs`, seccomp filter, rlimits and OOM score. It must have one thread
//! then: capabilities and seccomp are per thread, and every thread started later (the
//! engine's epoch ticker) inherits them.
//!
//! A runc container reaches its payload through `execve`, which recomputes the capability sets
//! of a process that is not root: permitted and effective become the ambient set. The guest
//! process does not exec, so it applies that rule itself; `/proc/<pid>/status` then shows what
//! it would show for the same spec under runc.

use caps::{CapSet, CapsHashSet};
use libcontainer::capabilities;
use libcontainer::syscall::syscall::create_syscall;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Spec};

use crate::ShimError;

/// `e`, an error of a system call made through libcontainer or caps, as [`ShimError::Io`].
fn sys_err(context: impl Into<String>, e: impl std::fmt::Display) -> ShimError {
    ShimError::io(context, std::io::Error::other(e.to_string()))
}

/// The spec's `process`, which the confinement reads.
fn process_of(spec: &Spec) -> Result<&oci_spec::runtime::Process, ShimError> {
    spec.process()
        .as_ref()
        .ok_or_else(|| ShimError::Workload("the spec has no process".into()))
}

/// The part of the confinement that needs the host's `/proc`, applied before the process
/// pivots into the container's root: check it has one thread, set rlimits and the OOM score;
/// refuse what cannot be honoured ([`ShimError::Workload`]).
pub(crate) fn prepare(spec: &Spec) -> Result<(), ShimError> {
    wasmcell_core::fork::ensure_single_threaded("confining the guest process")
        .map_err(|e| ShimError::FailedPrecondition(e.to_string()))?;
    let process = process_of(spec)?;

    if let Some(rlimits) = process.rlimits() {
        for rlimit in rlimits {
            set_rlimit(rlimit.typ(), rlimit.soft(), rlimit.hard())?;
        }
    }
    if let Some(linux) = spec.linux() {
        set_sysctls(linux)?;
    }
    if let Some(score) = process.oom_score_adj() {
        // Before the capabilities go: lowering the score needs CAP_SYS_RESOURCE.
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| ShimError::io(format!("failed to set oomScoreAdj {score}"), e))?;
    }
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(ShimError::Workload(
            "process.apparmorProfile is set, and this shim cannot apply AppArmor \
                    profiles; remove it or run the container with wasmcell-oci"
                .into(),
        ));
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(ShimError::Workload(
            "process.selinuxLabel is set, and this shim cannot apply SELinux labels; \
                    remove it or run the container with wasmcell-oci"
                .into(),
        ));
    }

    Ok(())
}

/// The rest of the confinement, in the container's root (see the module docs).
pub(crate) fn apply(spec: &Spec) -> Result<(), ShimError> {
    let process = process_of(spec)?;
    let linux = spec.linux().as_ref();
    let user = process.user();
    if let Some(umask) = user.umask() {
        let mode = nix::sys::stat::Mode::from_bits(umask)
            .ok_or_else(|| ShimError::Workload(format!("invalid process.user.umask {umask:o}")))?;
        nix::sys::stat::umask(mode);
    }
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| {
        ShimError::io(
            format!("failed to set additionalGids {groups:?}"),
            std::io::Error::from(e),
        )
    })?;
    let syscall = create_syscall();
    syscall
        .set_id(Uid::from_raw(user.uid()), Gid::from_raw(user.gid()))
        .map_err(|e| {
            sys_err(
                format!("failed to set uid {} gid {}", user.uid(), user.gid()),
                e,
            )
        })?;

    // The spec's filter, or, when it has none, the default for Wasm guests.
    let default = default_filter()?;
    let seccomp = Some(linux.and_then(|l| l.seccomp().as_ref()).unwrap_or(&default));
    if let Some(seccomp) = seccomp {
        if libcontainer::seccomp::is_notify(seccomp) {
            return Err(ShimError::Workload(
                "linux.seccomp asks for a notify listener (SCMP_ACT_NOTIFY), which \
                        this shim does not serve"
                    .into(),
            ));
        }
    }
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we have it.
    if !no_new_privs {
        if let Some(seccomp) = seccomp {
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| sys_err("failed to apply linux.seccomp", e))?;
        }
    }

    capabilities::reset_effective(syscall.as_ref())
        .map_err(|e| sys_err("failed to reset capabilities", e))?;
    let none = no_capabilities();
    let wanted = process.capabilities().as_ref().unwrap_or(&none);
    capabilities::drop_privileges(wanted, syscall.as_ref())
        .map_err(|e| sys_err("failed to set process.capabilities", e))?;
    if user.uid() != 0 {
        after_exec_as_non_root(syscall.as_ref())?;
    }

    if no_new_privs {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| ShimError::io("failed to set noNewPrivileges", std::io::Error::from(e)))?;
        if let Some(seccomp) = seccomp {
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| sys_err("failed to apply linux.seccomp", e))?;
        }
    }
    Ok(())
}

/// No capabilities at all: what a spec without `capabilities` gets, as runc gives (oci-spec's
/// `Default` is a small set, not none).
fn no_capabilities() -> LinuxCapabilities {
    LinuxCapabilities::default()
        .set_bounding(Some(Default::default()))
        .set_effective(Some(Default::default()))
        .set_permitted(Some(Default::default()))
        .set_inheritable(Some(Default::default()))
        .set_ambient(Some(Default::default()))
        .clone()
}

/// What `execve` does to a process that is not root (and a file with no capabilities):
/// permitted and effective become the ambient set.
fn after_exec_as_non_root(syscall: &dyn libcontainer::syscall::Syscall) -> Result<(), ShimError> {
    let ambient: CapsHashSet = caps::read(None, CapSet::Ambient)
        .map_err(|e| sys_err("failed to read ambient capabilities", e))?;
    syscall
        .set_capability(CapSet::Effective, &ambient)
        .and_then(|()| syscall.set_capability(CapSet::Permitted, &ambient))
        .map_err(|e| sys_err("failed to drop capabilities for a non-root user", e))
}

fn set_rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> Result<(), ShimError> {
    use nix::sys::resource::{setrlimit, Resource};
    let resource = match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    };
    setrlimit(resource, soft, hard).map_err(|e| {
        ShimError::io(
            format!("failed to set {typ:?} {soft}/{hard}"),
            std::io::Error::from(e),
        )
    })
}

/// `linux.sysctl`, written in the namespaces the guest process is in, as runc allows them: only
/// keys that a namespace of the container's own holds (`net.*` in its network namespace; the
/// System V IPC and `fs.mqueue.*` keys in its IPC namespace; `kernel.hostname` and
/// `kernel.domainname` in its UTS namespace). Anything else would change the host: refused
/// ([`ShimError::Workload`]).
fn set_sysctls(linux: &oci_spec::runtime::Linux) -> Result<(), ShimError> {
    use oci_spec::runtime::LinuxNamespaceType as Ns;
    let Some(sysctls) = linux.sysctl() else {
        return Ok(());
    };
    let has = |kind: Ns| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == kind)
    };
    for (key, value) in sysctls {
        let dotted = key.replace('/', ".");
        const IPC: [&str; 8] = [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ];
        let kind = if dotted.starts_with("net.") {
            Ns::Network
        } else if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            Ns::Ipc
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            Ns::Uts
        } else {
            return Err(ShimError::Workload(format!(
                "linux.sysctl {key} is not held by any namespace of the container: setting it \
                 would change the host"
            )));
        };
        if !has(kind) {
            return Err(ShimError::Workload(format!(
                "linux.sysctl {key} needs a {kind:?} namespace of the container's own, and \
                 linux.namespaces has none"
            )));
        }
        if dotted
            .split('.')
            .any(|part| part.is_empty() || part == "..")
        {
            return Err(ShimError::Workload(format!(
                "invalid linux.sysctl key {key:?}"
            )));
        }
        // The slash form keeps dots that are part of a name (an interface `eth0.100`).
        let relative = if key.contains('/') {
            key.clone()
        } else {
            key.replace('.', "/")
        };
        let path = format!("/proc/sys/{relative}");
        std::fs::write(&path, value)
            .map_err(|e| ShimError::io(format!("failed to set linux.sysctl {key}={value}"), e))?;
    }
    Ok(())
}

/// System calls no Wasm guest process makes (Wasmtime needs memory, threads, signals, time,
/// files and sockets, nothing more), denied with `EPERM` when the spec sets no seccomp filter
/// of its own: whatever a Wasmtime escape would reach for next (mounts and namespaces, kernel
/// modules and keyrings, tracing other processes, BPF, `userfaultfd`, `io_uring`, device nodes,
/// the clock, reboot). A spec's own filter replaces it, as runc applies the spec's.
pub(crate) const DENIED_BY_DEFAULT: &[&str] = &[
    "_sysctl",
    "acct",
    "add_key",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mknod",
    "mknodat",
    "mount",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
];

/// [`DENIED_BY_DEFAULT`] as a seccomp filter.
fn default_filter() -> Result<oci_spec::runtime::LinuxSeccomp, ShimError> {
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": DENIED_BY_DEFAULT, "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
        ],
    });
    serde_json::from_value(profile)
        .map_err(|e| ShimError::io("the default seccomp filter", std::io::Error::from(e)))
}
