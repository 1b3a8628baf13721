//! `kill [--all] ID [SIGNAL]`: signal the init process, or every process of the container.

use nix::sys::signal::Signal;

use crate::{container, GlobalOpts, OciError};

/// `kill` arguments.
#[derive(Debug, clap::Args)]
pub struct Kill {
    /// Signal every process in the container's cgroup, not only the init process.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name (`TERM`, `SIGTERM`) or number; SIGTERM by default.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

impl Kill {
    /// Run `kill`.
    pub fn execute(self, global: &GlobalOpts) -> Result<(), OciError> {
        let signal = parse_signal(&self.signal)?;
        let mut c = container::load(&global.root, &self.id)?;
        c.kill(signal, self.all)
            .map_err(|e| OciError::container("kill", &self.id, e))?;
        tracing::info!(container = %self.id, signal = %signal, all = self.all, "signalled");
        Ok(())
    }
}

/// `9`, `KILL`, `SIGKILL` or `kill` -> SIGKILL.
pub fn parse_signal(s: &str) -> Result<Signal, OciError> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| OciError::Signal(s.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| OciError::Signal(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        for s in ["9", "KILL", "SIGKILL", "kill"] {
            assert_eq!(parse_signal(s).expect(s), Signal::SIGKILL);
        }
        assert_eq!(parse_signal("TERM").expect("term"), Signal::SIGTERM);
        for bad in ["0", "99", "NOPE", ""] {
            let err = parse_signal(bad).expect_err(bad).to_string();
            assert!(err.starts_with("invalid signal"), "{err}");
        }
    }
}
