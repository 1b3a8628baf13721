use clap::{Args, Subcommand};
use wasmcell_wasmtime::CompileCache;

/// `wasmcell cache ...`: the node's precompile cache ($WASMCELL_CACHE_DIR or
/// /var/lib/wasmcell/cache).
#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// List entries, most recently used first.
    Ls,
    /// Remove least recently used entries until the cache is at most --max-size.
    Prune(PruneArgs),
    /// Hash every entry in full and remove those whose code does not match its checksum
    /// (a start only re-hashes an entry whose file changed since it was last checked).
    Verify,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Size to shrink to (bytes; suffixes k, m, g). Default: remove everything.
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = crate::commands::run::parse_size)]
    max_size: u64,
}

impl CacheCommand {
    pub(crate) fn execute(self) -> i32 {
        let cache = CompileCache::node();
        let result = match self {
            CacheCommand::Ls => cache.entries().map(|entries| {
                for e in entries {
                    let age = e
                        .last_used
                        .elapsed()
                        .map(|d| d.as_secs())
                        .unwrap_or_default();
                    println!("{}\t{}\t{}s ago", e.key, e.size, age);
                }
            }),
            CacheCommand::Prune(args) => cache.prune(args.max_size).map(|r| {
                println!("removed {} entries, freed {} bytes", r.removed, r.freed);
            }),
            CacheCommand::Verify => cache.verify().map(|r| {
                println!(
                    "{} entries good, {} corrupt entries removed",
                    r.good, r.removed
                );
            }),
        };
        match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("wasmcell: cache {}: {e}", cache.dir().display());
                1
            }
        }
    }
}
