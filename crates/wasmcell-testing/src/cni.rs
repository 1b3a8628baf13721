//! A private CNI network for the pods of one CRI containerd
//! ([`crate::Containerd::start_cri_with_pod_network`]), so that pods whose network namespace
//! mode is `POD` (every pod but `hostNetwork: true` ones) get a network namespace with an
//! address, as kubelet's pods do.
//!
//! Each [`PodNetwork`] owns one subnet `10.217.<n>.0/24` and one bridge `wasmcell-br<n>`,
//! chosen so that concurrent test processes never share them: `n` is claimed with an exclusive
//! `flock` on `/run/wasmcell-testing/pod-networks/<n>.lock` (released by the kernel when the
//! process dies, so a crashed test never blocks `n` for good), and skipped when any route of
//! the host overlaps its subnet. The harness creates the bridge itself, with the subnet's first
//! address (`10.217.<n>.1`), so the host (and the test) reaches pods directly on that link; the
//! CNI configuration (a `bridge` plugin with `host-local` IPAM, `isGateway` and `ipMasq` off)
//! attaches each pod to it. Nothing touches iptables or `net.ipv4.ip_forward`. The CNI
//! configuration, the `host-local` state (`dataDir`) and nothing else live under the instance's
//! temporary directory; containerd adds the `loopback` network to every pod itself.
//!
//! The plugins are Debian's `containernetworking-plugins` (`/usr/lib/cni`), or the upstream
//! layout `/opt/cni/bin`. Dropping a [`PodNetwork`] deletes its bridge and the CNI result cache
//! entries of its network; containerd removes a pod's network namespace at `StopPodSandbox`.

use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::command::{describe, run_with_deadline};

/// Where the CNI plugins are looked for, in this order: Debian's `containernetworking-plugins`,
/// then the upstream default.
pub const CNI_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// The plugins a [`PodNetwork`] needs (`loopback` is added by containerd to every pod).
pub const CNI_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];
/// The first two octets of every pod subnet: `10.217.<n>.0/24`.
pub const POD_SUBNET_PREFIX: [u8; 2] = [10, 217];
/// Where the subnet locks are (a tmpfs: cleared at boot).
const LOCK_DIR: &str = "/run/wasmcell-testing/pod-networks";
/// Where libcni caches the result of each attachment (`<network>-<sandbox id>-<ifname>`).
const CNI_CACHE_DIR: &str = "/var/lib/cni/results";
/// Deadline of each `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// A private CNI network (see the module docs): a locked subnet, its bridge, the CNI
/// configuration and the `host-local` state directory. Dropping it deletes the bridge.
#[derive(Debug)]
pub struct PodNetwork {
    index: u8,
    name: String,
    bridge: String,
    plugin_dir: PathBuf,
    conf_dir: PathBuf,
    data_dir: PathBuf,
    /// Holds the flock on the subnet; closed after the bridge is gone.
    _lock: File,
}

impl PodNetwork {
    /// Claim a free subnet, create its bridge on the host and write the CNI configuration into
    /// `<base>/cni/net.d` (state in `<base>/cni/ipam`).
    ///
    /// # Panics
    /// When the CNI plugins or `ip` are missing, no subnet is free, or the bridge cannot be
    /// created.
    pub(crate) fn create(base: &Path) -> PodNetwork {
        let plugin_dir = find_plugin_dir();
        fs::create_dir_all(LOCK_DIR)
            .unwrap_or_else(|e| panic!("wasmcell-testing: cannot create {LOCK_DIR}: {e}"));
        let (index, lock) = (0..=u8::MAX)
            .find_map(|index| {
                let lock = try_lock_subnet(index)?;
                // Nobody else holds `index`: a bridge of that name was left by a dead process.
                delete_link(&bridge_name(index));
                let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
                if route_overlaps(&routes, (subnet_address(index), 24)) {
                    return None;
                }
                Some((index, lock))
            })
            .unwrap_or_else(|| {
                panic!(
                    "wasmcell-testing: no free pod subnet {}.{}.<n>.0/24 (all locked in \
                     {LOCK_DIR} or routed on this host)",
                    POD_SUBNET_PREFIX[0], POD_SUBNET_PREFIX[1]
                )
            });
        let cni = base.join("cni");
        let network = PodNetwork {
            index,
            name: format!("wasmcell-test-{index}"),
            bridge: bridge_name(index),
            plugin_dir,
            conf_dir: cni.join("net.d"),
            data_dir: cni.join("ipam"),
            _lock: lock,
        };
        remove_cached_results(&network.name);
        for d in [&network.conf_dir, &network.data_dir] {
            fs::create_dir_all(d)
                .unwrap_or_else(|e| panic!("wasmcell-testing: cannot create {}: {e}", d.display()));
        }
        let conflist = network
            .conf_dir
            .join(format!("10-{}.conflist", network.name));
        fs::write(&conflist, network.conflist()).unwrap_or_else(|e| {
            panic!("wasmcell-testing: cannot write {}: {e}", conflist.display())
        });
        network.create_bridge();
        network
    }

    /// The CNI network name (`wasmcell-test-<n>`), unique among live instances.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host bridge the pods are attached to (`wasmcell-br<n>`).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The pod subnet, `10.217.<n>.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/24", subnet_address(self.index))
    }

    /// The host's address on the bridge (`10.217.<n>.1`): pods reach the host there.
    pub fn host_address(&self) -> Ipv4Addr {
        let [a, b, c, _] = subnet_address(self.index).octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Whether `ip` is in the pod subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..3] == subnet_address(self.index).octets()[..3]
    }

    /// Where containerd finds the CNI plugins (its `cni.bin_dir`).
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// The directory holding the network's conflist (containerd's `cni.conf_dir`).
    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// `host-local`'s state directory (`dataDir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The addresses `host-local` has handed out and not yet released.
    pub fn allocated_ips(&self) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = fs::read_dir(self.data_dir.join(&self.name))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ips.sort_unstable();
        ips
    }

    /// The interfaces attached to the bridge (one veth per pod with a network).
    pub fn bridge_ports(&self) -> Vec<String> {
        let brif = Path::new("/sys/class/net").join(&self.bridge).join("brif");
        let mut ports: Vec<String> = fs::read_dir(brif)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ports.sort();
        ports
    }

    /// The conflist: one `bridge` attachment with `host-local` addresses from the subnet; the
    /// host keeps `.1` (the gateway `host-local` never hands out).
    fn conflist(&self) -> String {
        let gateway = self.host_address().to_string();
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                // The harness gives the bridge its address: with `isGateway` the plugin would
                // also turn on the host's net.ipv4.ip_forward; `ipMasq` would add iptables rules.
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": self.data_dir,
                    "ranges": [[{ "subnet": self.subnet(), "gateway": gateway }]],
                },
            }],
        });
        serde_json::to_string_pretty(&conf).unwrap_or_else(|e| {
            panic!("wasmcell-testing: cannot serialize the CNI configuration: {e}")
        })
    }

    fn create_bridge(&self) {
        let address = format!("{}/24", self.host_address());
        let steps: [&[&str]; 3] = [
            &["link", "add", "name", &self.bridge, "type", "bridge"],
            &["addr", "add", &address, "dev", &self.bridge],
            &["link", "set", &self.bridge, "up"],
        ];
        for args in steps {
            if let Err(e) = ip(args) {
                delete_link(&self.bridge);
                panic!("wasmcell-testing: cannot create the pod bridge: {e}");
            }
        }
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        // Deleting the bridge also deletes any veth a pod left attached to it.
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            if let Err(e) = ip(&["link", "delete", &self.bridge]) {
                eprintln!(
                    "wasmcell-testing: cleanup of pod network {}: {e}",
                    self.name
                );
            }
        }
        remove_cached_results(&self.name);
    }
}

fn bridge_name(index: u8) -> String {
    // At most 14 bytes: interface names hold 15.
    format!("wasmcell-br{index}")
}

fn subnet_address(index: u8) -> Ipv4Addr {
    let [a, b] = POD_SUBNET_PREFIX;
    Ipv4Addr::new(a, b, index, 0)
}

fn find_plugin_dir() -> PathBuf {
    CNI_PLUGIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| CNI_PLUGINS.iter().all(|p| dir.join(p).is_file()))
        .unwrap_or_else(|| {
            panic!(
                "wasmcell-testing: the CNI plugins {CNI_PLUGINS:?} are in none of \
                 {CNI_PLUGIN_DIRS:?} (is the Debian package `containernetworking-plugins` \
                 installed?)"
            )
        })
}

/// An exclusive, non-blocking flock on the lock file of subnet `index`; `None` when another
/// instance (of any process) holds it.
fn try_lock_subnet(index: u8) -> Option<File> {
    let path = Path::new(LOCK_DIR).join(format!("{index}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("wasmcell-testing: cannot open {}: {e}", path.display()));
    file.try_lock().ok().map(|()| file)
}

/// Whether a non-default route of `/proc/net/route` overlaps `(network, prefix length)`.
fn route_overlaps(routes: &str, (network, len): (Ipv4Addr, u32)) -> bool {
    let ours = u32::from(network);
    let our_mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    routes.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // The kernel prints each address's network-order bytes as one native-endian number.
        let address = |i: usize| {
            cols.get(i)
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .map(|v| u32::from(Ipv4Addr::from(v.to_ne_bytes())))
        };
        let (Some(dest), Some(mask)) = (address(1), address(7)) else {
            return false;
        };
        let common = mask & our_mask;
        mask != 0 && dest & common == ours & common
    })
}

/// `ip <args>` with a deadline.
fn ip(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    match run_with_deadline(cmd, IP_TIMEOUT) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!("`ip {}`: {}", args.join(" "), describe(&out))),
        Err(e) => Err(format!(
            "`ip {}` (is the Debian package `iproute2` installed?): {e}",
            args.join(" ")
        )),
    }
}

/// Delete the link `name` when it exists. Never panics.
fn delete_link(name: &str) {
    if Path::new("/sys/class/net").join(name).exists() {
        let _ = ip(&["link", "delete", name]);
    }
}

/// Remove libcni's cached results of the network `name` (left when a pod's network was never
/// torn down).
fn remove_cached_results(name: &str) {
    let prefix = format!("{name}-");
    let Ok(entries) = fs::read_dir(CNI_CACHE_DIR) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        br0\t0000D90A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn routes_overlapping_a_subnet_are_found() {
        // 192.0.2.0/24 (eth0) and 10.217.0.0/16 (br0); the default route does not count.
        assert!(route_overlaps(ROUTES, (Ipv4Addr::new(192, 0, 2, 0), 24)));
        assert!(route_overlaps(ROUTES, (Ipv4Addr::new(10, 217, 7, 0), 24)));
        assert!(!route_overlaps(ROUTES, (Ipv4Addr::new(10, 218, 7, 0), 24)));
        assert!(!route_overlaps(ROUTES, (Ipv4Addr::new(192, 0, 3, 0), 24)));
    }

    #[test]
    fn names_fit_in_an_interface_name() {
        assert!(bridge_name(u8::MAX).len() <= 15);
    }
}
