//! Editing containerd's config to register the wasmcell runtime, for every layout in use:
//! config version 1 (containerd 1.x without `version`), version 2 (containerd 1.6/1.7),
//! version 3 (containerd 2.x), and k3s's Go templates (`config.toml.tmpl`, `config-v3.toml.tmpl`).

use toml_edit::{value, DocumentMut, Item, Table};

pub(crate) use wasmcell_core::names::{RUNTIME_TYPE, SHARED_RUNTIME_TYPE};

/// Why a config cannot be edited. The file is never written in these cases.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{path} is not valid TOML, leaving it untouched: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: unsupported config version {version}")]
    Version { path: String, version: i64 },
    #[error("{path}: {key} is not a table, leaving the file untouched")]
    NotATable { path: String, key: String },
}

/// The result of an edit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    /// The runtime is already registered as asked.
    Unchanged,
    /// The new file content.
    Changed(String),
}

/// The keys of the CRI runtimes table for a config version.
fn runtimes_path(version: i64) -> Option<&'static [&'static str]> {
    match version {
        1 => Some(&["plugins", "cri", "containerd", "runtimes"]),
        2 => Some(&[
            "plugins",
            "io.containerd.grpc.v1.cri",
            "containerd",
            "runtimes",
        ]),
        3 => Some(&[
            "plugins",
            "io.containerd.cri.v1.runtime",
            "containerd",
            "runtimes",
        ]),
        _ => None,
    }
}

/// Register runtime `name` (type `io.containerd.wasmcell.v1`) in `text` (the content of `path`).
pub(crate) fn register(path: &str, text: &str, name: &str) -> Result<Edit, ConfigError> {
    register_as(path, text, name, RUNTIME_TYPE)
}

/// Register runtime `name` of type `runtime_type` in `text` (the content of `path`).
pub(crate) fn register_as(
    path: &str,
    text: &str,
    name: &str,
    runtime_type: &str,
) -> Result<Edit, ConfigError> {
    if is_template(path, text) {
        return register_in_template(path, text, name, runtime_type);
    }
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Invalid {
                path: path.into(),
                reason: e.to_string().trim().replace('\n', " "),
            })?;
    let version = match doc.get("version").and_then(Item::as_integer) {
        Some(v) => v,
        None if text.trim().is_empty() => {
            doc["version"] = value(2);
            2
        }
        None => 1,
    };
    let keys = runtimes_path(version).ok_or(ConfigError::Version {
        path: path.into(),
        version,
    })?;
    let mut table = doc.as_table_mut();
    let mut walked = String::new();
    for key in keys {
        walked = if walked.is_empty() {
            (*key).to_string()
        } else {
            format!("{walked}.{key}")
        };
        let entry = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = entry.as_table_mut().ok_or_else(|| ConfigError::NotATable {
            path: path.into(),
            key: walked.clone(),
        })?;
    }
    if let Some(existing) = table.get(name).and_then(Item::as_table) {
        if existing.get("runtime_type").and_then(Item::as_str) == Some(runtime_type) {
            return Ok(Edit::Unchanged);
        }
    }
    let mut runtime = Table::new();
    runtime["runtime_type"] = value(runtime_type);
    table.insert(name, Item::Table(runtime));
    Ok(Edit::Changed(doc.to_string()))
}

fn is_template(path: &str, text: &str) -> bool {
    path.ends_with(".tmpl") || text.contains("{{")
}

/// k3s templates are Go templates, not TOML: append our table after the template's own text
/// unless its header is already there.
fn register_in_template(
    path: &str,
    text: &str,
    name: &str,
    runtime_type: &str,
) -> Result<Edit, ConfigError> {
    let version = if path.contains("config-v3") || text.contains("io.containerd.cri.v1.runtime") {
        3
    } else {
        2
    };
    let keys = runtimes_path(version).ok_or(ConfigError::Version {
        path: path.into(),
        version,
    })?;
    let header = format!(
        "[{}.{name}]",
        keys.iter()
            .map(|k| if k.contains('.') {
                format!("\"{k}\"")
            } else {
                (*k).to_string()
            })
            .collect::<Vec<_>>()
            .join(".")
    );
    if text.lines().any(|l| l.trim() == header) {
        return Ok(Edit::Unchanged);
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{header}\n  runtime_type = \"{runtime_type}\"\n"
    ));
    Ok(Edit::Changed(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_HEADER: &str = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmcell]";

    fn changed(e: Edit) -> String {
        match e {
            Edit::Changed(s) => s,
            Edit::Unchanged => panic!("expected a change"),
        }
    }

    #[test]
    fn adds_to_a_version_2_config_keeping_the_rest_and_is_idempotent() {
        let text = "version = 2\n# keep me\nroot = \"/var/lib/containerd\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        let out = changed(register("/etc/containerd/config.toml", text, "wasmcell").expect("edit"));
        assert!(out.starts_with("version = 2\n# keep me\n"), "{out}");
        assert!(
            out.contains("runtime_type = \"io.containerd.runc.v2\""),
            "{out}"
        );
        assert!(out.contains(V2_HEADER), "{out}");
        assert!(
            out.contains("runtime_type = \"io.containerd.wasmcell.v1\""),
            "{out}"
        );
        assert_eq!(
            register("c", &out, "wasmcell").expect("edit"),
            Edit::Unchanged
        );
    }

    #[test]
    fn the_shared_runtime_is_a_second_table_beside_the_first() {
        let once = changed(register("c", "version = 2\n", "wasmcell").expect("edit"));
        let out =
            changed(register_as("c", &once, "wasmcell-shared", SHARED_RUNTIME_TYPE).expect("edit"));
        assert!(out.contains(V2_HEADER), "{out}");
        assert!(
            out.contains(
                "runtimes.wasmcell-shared]\nruntime_type = \"io.containerd.wasmcell-shared.v1\""
            ),
            "{out}"
        );
        assert!(matches!(
            register_as("c", &out, "wasmcell-shared", SHARED_RUNTIME_TYPE).expect("edit"),
            Edit::Unchanged
        ));
    }

    #[test]
    fn version_3_and_version_1_use_their_own_tables() {
        let out = changed(register("c", "version = 3\n", "wasmcell").expect("edit"));
        assert!(
            out.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmcell]"),
            "{out}"
        );
        let out = changed(register("c", "root = \"/x\"\n", "wasmcell").expect("edit"));
        assert!(
            out.contains("[plugins.cri.containerd.runtimes.wasmcell]"),
            "{out}"
        );
        let out = changed(register("c", "", "wasmcell").expect("edit"));
        assert!(out.starts_with("version = 2"), "{out}");
        assert!(out.contains(V2_HEADER), "{out}");
    }

    #[test]
    fn a_different_runtime_type_under_our_name_is_replaced() {
        let text =
            format!("version = 2\n{V2_HEADER}\n  runtime_type = \"io.containerd.other.v1\"\n");
        let out = changed(register("c", &text, "wasmcell").expect("edit"));
        assert!(out.contains("io.containerd.wasmcell.v1"), "{out}");
        assert!(!out.contains("io.containerd.other.v1"), "{out}");
    }

    #[test]
    fn invalid_or_unknown_configs_are_refused() {
        let err =
            register("/etc/c.toml", "version = 2\n[plugins\n", "wasmcell").expect_err("invalid");
        assert!(
            err.to_string().starts_with("/etc/c.toml is not valid TOML"),
            "{err}"
        );
        let err = register("/etc/c.toml", "version = 9\n", "wasmcell").expect_err("version");
        assert_eq!(err.to_string(), "/etc/c.toml: unsupported config version 9");
        let err =
            register("/etc/c.toml", "version = 2\nplugins = 3\n", "wasmcell").expect_err("shape");
        assert!(err.to_string().contains("plugins is not a table"), "{err}");
    }

    #[test]
    fn k3s_templates_get_the_table_appended_once() {
        let tmpl = "{{ template \"base\" . }}\n";
        let out = changed(
            register(
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
                tmpl,
                "wasmcell",
            )
            .expect("edit"),
        );
        assert!(out.starts_with(tmpl), "{out}");
        assert!(out.contains(V2_HEADER), "{out}");
        assert_eq!(
            register("x/config.toml.tmpl", &out, "wasmcell").expect("edit"),
            Edit::Unchanged
        );
        let out = changed(register("x/config-v3.toml.tmpl", tmpl, "wasmcell").expect("edit"));
        assert!(out.contains("io.containerd.cri.v1.runtime"), "{out}");
    }
}
