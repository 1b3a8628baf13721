//! `ps [--format table|json] ID [PS_ARGS...]`: the container's processes; `json` prints their
//! pids (what containerd's runc shim reads), `table` the lines of `ps` (default `ps -ef`) for them.

use std::process::Command;

use crate::{container, GlobalOpts, OciError};

/// `ps` arguments.
#[derive(Debug, clap::Args)]
pub struct Ps {
    /// `table` or `json`.
    #[arg(long, short = 'f', default_value = "table")]
    pub format: String,
    /// Container id.
    pub id: String,
    /// Arguments for `ps` (table format only).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

impl Ps {
    /// Run `ps`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let c = container::load(&global.root, &self.id)?;
        let pids = container::pids(&c)?;
        match self.format.as_str() {
            "json" => super::print_json(&pids),
            "table" => table(&pids, &self.ps_args),
            other => Err(OciError::Invalid {
                field: "--format",
                value: other.to_string(),
                reason: "must be table or json".into(),
            }),
        }
    }
}

fn table(pids: &[i32], ps_args: &[String]) -> Result<(), OciError> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|source| OciError::Io {
            action: "run",
            path: "ps".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(());
    };
    let pid_column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| OciError::Invalid {
            field: "ps arguments",
            value: args.join(" "),
            reason: "ps output has no PID column".into(),
        })?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}
