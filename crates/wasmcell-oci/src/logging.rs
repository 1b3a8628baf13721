//! Logs as runc writes them: to the `--log` file (stderr without one), one line per event, in
//! text or, with `--log-format json`, as `{"level":"error","msg":"...","time":"..."}`, the lines
//! containerd's runc shim and conmon read back to report why a verb failed. The level comes from
//! `RUST_LOG` (default `error`) or `--debug`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::OciError;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `time level msg key=value...`
    Text,
    /// runc's JSON lines.
    Json,
}

/// Where log lines go.
#[derive(Debug)]
enum Sink {
    File(Mutex<File>),
    Stderr,
}

/// Install the global subscriber. Returns whether logs go to stderr (so errors need not be
/// printed twice).
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> Result<bool, OciError> {
    let sink = match log {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| OciError::Io {
                    action: "open log file",
                    path: path.to_path_buf(),
                    source,
                })?;
            Sink::File(Mutex::new(file))
        }
        None => Sink::Stderr,
    };
    let to_stderr = matches!(sink, Sink::Stderr);
    let default = if debug {
        "debug"
    } else {
        // Quiet by default, as runc: a create's stderr is the container's stderr.
        "error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(RuncLog { sink, format }.with_filter(filter))
        .try_init();
    Ok(to_stderr)
}

#[derive(Debug)]
struct RuncLog {
    sink: Sink,
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for RuncLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format_line(
            self.format,
            *event.metadata().level(),
            &fields.message(),
            now(),
        );
        match &self.sink {
            Sink::File(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// One log line, newline included.
fn format_line(format: LogFormat, level: Level, msg: &str, time: String) -> String {
    let level = level.as_str().to_ascii_lowercase();
    match format {
        LogFormat::Json => {
            let value = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{value}\n")
        }
        LogFormat::Text => format!("{time} {level} {msg}\n"),
    }
}

/// The event's `message` followed by its other fields as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn message(&self) -> String {
        if self.rest.is_empty() {
            self.message.clone()
        } else if self.message.is_empty() {
            self.rest.trim_start().to_string()
        } else {
            format!("{}{}", self.message, self.rest)
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_what_runc_writes() {
        let line = format_line(
            LogFormat::Json,
            Level::ERROR,
            "container x: \"quoted\"",
            "2026-01-01T00:00:00Z".into(),
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container x: \"quoted\"");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn text_lines_carry_level_and_message() {
        let line = format_line(LogFormat::Text, Level::WARN, "hello", "T".into());
        assert_eq!(line, "T warn hello\n");
    }
}
