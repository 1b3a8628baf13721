use std::fs::File;

/// Where one of the guest's standard streams goes.
#[derive(Debug, Default)]
pub enum StdioStream {
    /// Closed: reads see end of file, writes are discarded.
    #[default]
    Null,
    /// The host process's own stream of the same number.
    Inherit,
    /// An open file, pipe or FIFO.
    File(File),
}

/// The guest's stdin, stdout and stderr. Everything is closed by default.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Standard input.
    pub stdin: StdioStream,
    /// Standard output.
    pub stdout: StdioStream,
    /// Standard error.
    pub stderr: StdioStream,
}

impl Stdio {
    /// All three streams inherited from the host process.
    pub fn inherit() -> Self {
        Stdio {
            stdin: StdioStream::Inherit,
            stdout: StdioStream::Inherit,
            stderr: StdioStream::Inherit,
        }
    }
}
