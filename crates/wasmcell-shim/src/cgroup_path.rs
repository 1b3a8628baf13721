//! `linux.cgroupsPath` as the two cgroup drivers of containerd's CRI write it.
//!
//! With the cgroupfs driver it is a path in the hierarchy (`/kubepods/besteffort/pod<uid>/<id>`).
//! With the systemd driver (`SystemdCgroup = true`) it is `slice:prefix:name`
//! (`kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`), which systemd places at
//! `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/
//! cri-containerd-<id>.scope`: each `-` of a slice name is a level of the tree. The shim has no
//! systemd to ask for a transient scope, so it uses that path directly: the container lands
//! where systemd (and kubelet, reading pod metrics) expects it, never at the hierarchy's root.

use std::path::PathBuf;

use crate::ShimError;

/// The cgroup directory (relative to each hierarchy's root) that `raw` names; a
/// [`ShimError::Workload`] names what is wrong with a systemd-style path.
pub(crate) fn resolve(raw: &str) -> Result<PathBuf, ShimError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Ok(PathBuf::from(raw));
    };
    if raw.starts_with('/') {
        // A cgroupfs path that happens to hold two colons.
        return Ok(PathBuf::from(raw));
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = expand_slice(raw, slice)?;
    if name.is_empty() || name.contains('/') {
        return Err(invalid(raw, format!("invalid unit name {name:?}")));
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root. `raw` is the whole
/// cgroupsPath, for the error.
fn expand_slice(raw: &str, slice: &str) -> Result<PathBuf, ShimError> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(invalid(
            raw,
            format!("{slice:?} is not a slice (no .slice suffix)"),
        ));
    };
    let mut path = PathBuf::from("/");
    if stem == "-" {
        return Ok(path);
    }
    if stem.is_empty() || stem.contains('/') || stem.split('-').any(str::is_empty) {
        return Err(invalid(raw, format!("invalid slice name {slice:?}")));
    }
    let mut prefix = String::new();
    for (i, part) in stem.split('-').enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// The cgroupsPath `raw` is unusable, for `why`.
fn invalid(raw: &str, why: String) -> ShimError {
    ShimError::Workload(format!("cgroupsPath {raw:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> PathBuf {
        resolve(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn cgroupfs_paths_are_kept() {
        let raw = "/kubepods/besteffort/pod1/abc";
        assert_eq!(ok(raw), PathBuf::from(raw));
        assert_eq!(ok("/wasmcell/x"), PathBuf::from("/wasmcell/x"));
    }

    #[test]
    fn systemd_paths_are_expanded_where_systemd_puts_them() {
        assert_eq!(
            ok("kubepods-besteffort-pod12.slice:cri-containerd:abc"),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/\
                 cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            ok("kubepods.slice:cri-containerd:pause1"),
            PathBuf::from("/kubepods.slice/cri-containerd-pause1.scope")
        );
        assert_eq!(
            ok(":docker:abc"),
            PathBuf::from("/system.slice/docker-abc.scope")
        );
        assert_eq!(ok("-.slice::x"), PathBuf::from("/x.scope"));
    }

    #[test]
    fn bad_systemd_paths_are_named() {
        for raw in [
            "kubepods--x.slice:p:n",
            "kubepods:p:n",
            "a/b.slice:p:n",
            "a.slice:p:",
            "a.slice:p:../x",
        ] {
            let err = resolve(raw).expect_err(raw);
            assert!(matches!(err, ShimError::Workload(_)), "{err}");
            assert!(err.to_string().contains(&format!("{raw:?}")), "{err}");
        }
    }
}
