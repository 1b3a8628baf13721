//! Where an HTTP guest listens and the limits it is served under, read from the container's
//! environment (`WASMCELL_HTTP_*`), each default logged once when serving starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The address to listen on: `PORT`, `IP:PORT` or `[IPv6]:PORT`.
pub const LISTEN_ADDR_ENV: &str = "WASMCELL_HTTP_LISTEN_ADDR";
/// runwasi's Wasmtime shim's name for the same, accepted so that its users move without edits.
pub const RUNWASI_LISTEN_ADDR_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";
/// Where a guest listens when its environment says nothing.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);

/// Requests handled at once (more wait in a short queue).
pub const MAX_CONCURRENT_ENV: &str = "WASMCELL_HTTP_MAX_CONCURRENT";
/// Requests that may wait for a slot; past them a request is answered 503 at once.
pub const QUEUE_ENV: &str = "WASMCELL_HTTP_QUEUE";
/// Connections held open at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS_ENV: &str = "WASMCELL_HTTP_MAX_CONNECTIONS";
/// Largest request body, in bytes: a larger one is answered 413 (before the guest runs when
/// its `content-length` says so).
pub const MAX_BODY_BYTES_ENV: &str = "WASMCELL_HTTP_MAX_BODY_BYTES";
/// How long a client may take to send a request's headers (against slow-header clients).
pub const HEADER_TIMEOUT_MS_ENV: &str = "WASMCELL_HTTP_HEADER_TIMEOUT_MS";
/// How long one request may take before it is answered 504 and its instance dropped.
pub const REQUEST_TIMEOUT_MS_ENV: &str = "WASMCELL_HTTP_REQUEST_TIMEOUT_MS";
/// How long requests in flight may finish once the guest is asked to stop (SIGTERM).
pub const DRAIN_TIMEOUT_MS_ENV: &str = "WASMCELL_HTTP_DRAIN_TIMEOUT_MS";

/// How an HTTP guest is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Requests handled at once.
    pub max_concurrent: usize,
    /// Requests waiting for a slot before the next is refused with 503.
    pub queue: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Time to read a request's headers.
    pub header_timeout: Duration,
    /// Time for one request, from its headers to the end of its response head.
    pub request_timeout: Duration,
    /// Time given to requests in flight when the guest is asked to stop.
    pub drain_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            listen: DEFAULT_LISTEN_ADDR,
            max_concurrent: 256,
            queue: 256,
            max_connections: 4096,
            max_body_bytes: 16 << 20,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            // Under Kubernetes' default 30 s grace period.
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// A `WASMCELL_HTTP_*` variable that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct HttpConfigError {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl HttpOptions {
    /// The options `env` (the guest's environment) asks for; defaults for what it does not set.
    pub fn from_env(env: &[(String, String)]) -> Result<Self, HttpConfigError> {
        let get = |var: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.as_str())
        };
        let defaults = HttpOptions::default();
        let listen = match (get(LISTEN_ADDR_ENV), get(RUNWASI_LISTEN_ADDR_ENV)) {
            (Some(v), _) => parse_listen_addr(LISTEN_ADDR_ENV, v)?,
            (None, Some(v)) => parse_listen_addr(RUNWASI_LISTEN_ADDR_ENV, v)?,
            (None, None) => defaults.listen,
        };
        let count = |var: &'static str, default: usize| match get(var) {
            Some(v) => positive(var, v).map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            None => Ok(default),
        };
        let millis = |var: &'static str, default: Duration| match get(var) {
            Some(v) => positive(var, v).map(Duration::from_millis),
            None => Ok(default),
        };
        Ok(HttpOptions {
            listen,
            max_concurrent: count(MAX_CONCURRENT_ENV, defaults.max_concurrent)?,
            queue: match get(QUEUE_ENV) {
                // A queue of 0 is allowed: past the concurrency, refuse at once.
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(QUEUE_ENV, v, "not a whole number"))?,
                None => defaults.queue,
            },
            max_connections: count(MAX_CONNECTIONS_ENV, defaults.max_connections)?,
            max_body_bytes: match get(MAX_BODY_BYTES_ENV) {
                Some(v) => positive(MAX_BODY_BYTES_ENV, v)?,
                None => defaults.max_body_bytes,
            },
            header_timeout: millis(HEADER_TIMEOUT_MS_ENV, defaults.header_timeout)?,
            request_timeout: millis(REQUEST_TIMEOUT_MS_ENV, defaults.request_timeout)?,
            drain_timeout: millis(DRAIN_TIMEOUT_MS_ENV, defaults.drain_timeout)?,
        })
    }
}

/// `PORT`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_listen_addr(var: &'static str, value: &str) -> Result<SocketAddr, HttpConfigError> {
    let v = value.trim();
    if let Ok(port) = v.parse::<u16>() {
        return Ok(SocketAddr::new(DEFAULT_LISTEN_ADDR.ip(), port));
    }
    v.parse::<SocketAddr>()
        .map_err(|_| invalid(var, value, "not a port, IP:PORT or [IPv6]:PORT"))
}

fn positive(var: &'static str, value: &str) -> Result<u64, HttpConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(var, value, "not a whole number above zero")),
    }
}

fn invalid(var: &'static str, value: &str, reason: &'static str) -> HttpConfigError {
    HttpConfigError {
        var,
        value: value.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_listen_address_is_a_port_an_ip_and_port_or_a_bracketed_v6() {
        let listen = |v: &str| {
            HttpOptions::from_env(&env(&[(LISTEN_ADDR_ENV, v)])).map(|o| o.listen.to_string())
        };
        assert_eq!(listen("9000"), Ok("0.0.0.0:9000".into()));
        assert_eq!(listen("127.0.0.1:81"), Ok("127.0.0.1:81".into()));
        assert_eq!(listen("[::1]:82"), Ok("[::1]:82".into()));
        let err = listen("localhost:80").expect_err("a name");
        assert_eq!(
            err.to_string(),
            "WASMCELL_HTTP_LISTEN_ADDR=\"localhost:80\": not a port, IP:PORT or [IPv6]:PORT"
        );
        assert!(listen("70000").is_err());
    }

    #[test]
    fn runwasis_variable_is_read_and_ours_wins() {
        let runwasi = env(&[(RUNWASI_LISTEN_ADDR_ENV, "0.0.0.0:3000")]);
        assert_eq!(
            HttpOptions::from_env(&runwasi).map(|o| o.listen.port()),
            Ok(3000)
        );
        let both = env(&[(RUNWASI_LISTEN_ADDR_ENV, "3000"), (LISTEN_ADDR_ENV, "4000")]);
        assert_eq!(
            HttpOptions::from_env(&both).map(|o| o.listen.port()),
            Ok(4000)
        );
        assert_eq!(
            HttpOptions::from_env(&[]).map(|o| o.listen),
            Ok(DEFAULT_LISTEN_ADDR)
        );
    }

    #[test]
    fn limits_are_read_and_bad_ones_named() {
        let options = HttpOptions::from_env(&env(&[
            (MAX_CONCURRENT_ENV, "2"),
            (QUEUE_ENV, "0"),
            (MAX_BODY_BYTES_ENV, "1024"),
            (REQUEST_TIMEOUT_MS_ENV, "1500"),
        ]))
        .expect("valid");
        assert_eq!(options.max_concurrent, 2);
        assert_eq!(options.queue, 0);
        assert_eq!(options.max_body_bytes, 1024);
        assert_eq!(options.request_timeout, Duration::from_millis(1500));
        let err = HttpOptions::from_env(&env(&[(MAX_CONCURRENT_ENV, "0")])).expect_err("zero");
        assert_eq!(err.var, MAX_CONCURRENT_ENV);
    }
}
