//! `list [--format table|json] [--quiet]`: the containers under `--root`.

use crate::container::{self, OciState};
use crate::{GlobalOpts, OciError};

/// `list` arguments.
#[derive(Debug, clap::Args)]
pub struct List {
    /// `table` or `json`.
    #[arg(long, short = 'f', default_value = "table")]
    pub format: String,
    /// Print only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl List {
    /// Run `list`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let mut states = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&global.root) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                // Directories without state (a create in progress) are not containers yet.
                if let Ok(c) = container::load(&global.root, &id) {
                    states.push(OciState::of(&c));
                }
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        if self.quiet {
            for s in &states {
                println!("{}", s.id);
            }
            return Ok(());
        }
        match self.format.as_str() {
            "json" => super::print_json(&states),
            "table" => {
                println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
                for s in &states {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        if s.owner.is_empty() { "root" } else { &s.owner }
                    );
                }
                Ok(())
            }
            other => Err(OciError::Invalid {
                field: "--format",
                value: other.to_string(),
                reason: "must be table or json".into(),
            }),
        }
    }
}
