//! HTTP serving: requests per second and latency of a `wasi:http` component (the test guest
//! `http-hello`, its `/` route) at 1, 10 and 50 connections, for wasmcell normal mode, shared
//! mode and `wasmtime serve -Scli` 48.0.8, measured with `wrk` on loopback in the same run, the
//! server pinned to CPU 0 and the client to CPU 1. Also the server's RSS idle and under load.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use wasmcell_image::ImageSpec;
use wasmcell_testing::{free_port, wait_listening, Containerd};

use crate::measure::resident;
use crate::runtimes::Runtime;

/// The component every server serves.
const HTTP_IMAGE: &str = "docker.io/library/bench-http:latest";
/// Connections per load point.
const CONNECTIONS: [usize; 3] = [1, 10, 50];
/// The Wasmtime release `wasmtime serve` is measured at.
const WASMTIME_VERSION: &str = "48.0.8";
/// The peer's name in the table.
const WASMTIME_SERVE: &str = "wasmtime serve";

/// One server at one concurrency.
#[derive(Debug)]
pub(crate) struct HttpRow {
    server: String,
    connections: usize,
    load: Load,
    rss_idle: u64,
    rss_load: u64,
}

/// What `wrk` measured.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Non-2xx/3xx responses and socket errors.
    errors: u64,
}

/// A server being measured.
struct Server {
    name: String,
    addr: SocketAddr,
    pid: u32,
    stop: Stop,
}

enum Stop {
    Task(String),
    Process(Child),
}

/// Measure wasmcell's two modes and `wasmtime serve`, each for `secs` per load point.
pub(crate) fn measure(
    c: &Containerd,
    runtimes: &[Runtime],
    secs: u64,
    tools: &Path,
) -> anyhow::Result<Vec<HttpRow>> {
    if which("wrk").is_none() {
        bail!("wrk is missing: install Debian's wrk (make bench does)");
    }
    let image = ImageSpec::new(wasmcell_test_guests::HTTP_HELLO_P2, HTTP_IMAGE)
        .build()
        .context("build the http image")?;
    let tar = c.dir().join("bench-http.tar");
    image.write_archive(&tar)?;
    c.import(&tar);
    let wasmtime = wasmtime_cli(tools)?;
    let mut rows = Vec::new();
    for name in ["wasmcell", "wasmcell shared"] {
        if let Some(rt) = runtimes.iter().find(|r| r.name == name) {
            let server = start_task(c, rt)?;
            rows.extend(load_points(c, server, secs)?);
        }
    }
    let server = start_wasmtime_serve(&wasmtime)?;
    rows.extend(load_points(c, server, secs)?);
    Ok(rows)
}

/// Pin `server` to CPU 0, warm it, and run every load point against it; then stop it.
fn load_points(c: &Containerd, mut server: Server, secs: u64) -> anyhow::Result<Vec<HttpRow>> {
    eprintln!("== http: {}", server.name);
    pin(server.pid, "0")?;
    let rss_idle = resident(server.pid).rss;
    wrk(server.addr, 10, 2)?;
    let mut rows = Vec::new();
    for connections in CONNECTIONS {
        let (load, rss_load) = wrk_sampling(server.addr, connections, secs, server.pid)?;
        rows.push(HttpRow {
            server: server.name.clone(),
            connections,
            load,
            rss_idle,
            rss_load,
        });
    }
    stop(c, &mut server);
    Ok(rows)
}

/// `ctr run -d --net-host` of the component under `rt`; the server's process is the guest
/// process (normal mode) or the manager (shared mode).
fn start_task(c: &Containerd, rt: &Runtime) -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let id = format!("bench-http-{}", rt.name.replace(' ', "-"));
    let env = format!("WASMCELL_HTTP_LISTEN_ADDR={addr}");
    let args = [
        "run",
        "-d",
        "--net-host",
        "--runtime",
        &rt.runtime_type,
        "--env",
        &env,
    ];
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend([HTTP_IMAGE, id.as_str()]);
    let out = c.run_ctr(&argv);
    if !out.success() {
        bail!(
            "ctr run of the http guest under {} failed: {out:?}",
            rt.name
        );
    }
    if !wait_listening(addr, Duration::from_secs(60)) {
        bail!("the http guest under {} does not listen on {addr}", rt.name);
    }
    let pid = wasmcell_testing::hostile::task_pid(c, &id);
    Ok(Server {
        name: rt.name.clone(),
        addr,
        pid,
        stop: Stop::Task(id),
    })
}

/// `wasmtime serve -Scli` of the component, pinned to CPU 0 from its start.
fn start_wasmtime_serve(wasmtime: &Path) -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(wasmtime)
        .args(["serve", "-Scli", "--addr", &addr.to_string()])
        .arg(wasmcell_test_guests::HTTP_HELLO_P2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {} serve", wasmtime.display()))?;
    let pid = child.id();
    let mut server = Server {
        name: format!("{WASMTIME_SERVE} {WASMTIME_VERSION}"),
        addr,
        pid,
        stop: Stop::Process(child),
    };
    if !wait_listening(addr, Duration::from_secs(60)) {
        if let Stop::Process(child) = &mut server.stop {
            let _ = child.kill();
        }
        bail!("wasmtime serve does not listen on {addr}");
    }
    Ok(server)
}

fn stop(c: &Containerd, server: &mut Server) {
    match &mut server.stop {
        Stop::Task(id) => {
            let _ = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            for _ in 0..200 {
                if c.run_ctr(&["tasks", "delete", id]).success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.run_ctr(&["containers", "delete", id]);
        }
        Stop::Process(child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every thread of `pid` on the CPUs `cpus` (taskset's list).
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("run taskset")?;
    if !status.success() {
        bail!("taskset could not pin {pid} to CPU {cpus}");
    }
    Ok(())
}

/// `wrk` for `secs` at `connections`, on CPU 1.
fn wrk(addr: SocketAddr, connections: usize, secs: u64) -> anyhow::Result<Load> {
    let out = wrk_command(addr, connections, secs)
        .output()
        .context("run wrk")?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// [`wrk`], with the server's RSS read halfway through.
fn wrk_sampling(
    addr: SocketAddr,
    connections: usize,
    secs: u64,
    pid: u32,
) -> anyhow::Result<(Load, u64)> {
    let child = wrk_command(addr, connections, secs)
        .stdout(Stdio::piped())
        .spawn()
        .context("run wrk")?;
    std::thread::sleep(Duration::from_millis(secs * 500));
    let rss = resident(pid).rss;
    let out = child.wait_with_output().context("wait for wrk")?;
    Ok((parse_wrk(&String::from_utf8_lossy(&out.stdout))?, rss))
}

fn wrk_command(addr: SocketAddr, connections: usize, secs: u64) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg(format!("http://{addr}/"))
        .stderr(Stdio::null());
    cmd
}

/// Requests/s, p50, p99 and errors from wrk's `--latency` report.
fn parse_wrk(text: &str) -> anyhow::Result<Load> {
    let mut load = Load::default();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => load.requests_per_sec = v.parse().unwrap_or(0.0),
            (Some("50%"), Some(v)) => load.p50_ms = millis(v),
            (Some("99%"), Some(v)) => load.p99_ms = millis(v),
            (Some("Non-2xx"), _) => load.errors += last_number(line),
            (Some("Socket"), Some("errors:")) => {
                load.errors += line.split(',').map(last_number).sum::<u64>();
            }
            _ => {}
        }
    }
    if load.requests_per_sec == 0.0 {
        bail!("no requests/sec in wrk's report:\n{text}");
    }
    Ok(load)
}

/// `256.00us`, `1.20ms`, `1.5s` in milliseconds.
fn millis(v: &str) -> f64 {
    let split = v
        .find(|ch: char| ch.is_ascii_alphabetic())
        .unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => n,
    }
}

fn last_number(s: &str) -> u64 {
    s.rsplit(|ch: char| !ch.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `wasmtime` 48.0.8: `WASMTIME_CLI`, else the bench's own install under `tools` (made with
/// `cargo install` from the crate registry the first time).
fn wasmtime_cli(tools: &Path) -> anyhow::Result<PathBuf> {
    if let Some(given) = std::env::var_os("WASMTIME_CLI") {
        return Ok(PathBuf::from(given));
    }
    let root = tools.join(format!("wasmtime-{WASMTIME_VERSION}"));
    let bin = root.join("bin").join("wasmtime");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "== installing wasmtime-cli {WASMTIME_VERSION} into {} (once)",
        root.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "wasmtime-cli",
            "--locked",
            "--version",
            WASMTIME_VERSION,
        ])
        .arg("--root")
        .arg(&root)
        .status()
        .context("run cargo install wasmtime-cli")?;
    if !status.success() || !bin.exists() {
        bail!("cargo install wasmtime-cli {WASMTIME_VERSION} failed; or set WASMTIME_CLI");
    }
    Ok(bin)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// The table, with each wasmcell row's ratio to `wasmtime serve` at the same concurrency.
pub(crate) fn markdown(rows: &[HttpRow], secs: u64) -> String {
    let mut out = format!(
        "\n### HTTP serving: a wasi:http component\n\n`wrk -t1 --latency` for {secs} s per row \
         on loopback (server on CPU 0, client on CPU 1; wasmcell's containers with a 1-CPU quota), \
         the guest's `/` route; a fresh instance per request in every server.\n\n| server | connections | req/s | vs wasmtime serve | p50 ms \
         | p99 ms | p99 vs wasmtime serve | errors | RSS idle | RSS under load |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for row in rows {
        let peer = rows
            .iter()
            .find(|r| r.server.starts_with(WASMTIME_SERVE) && r.connections == row.connections);
        let ratio = |ours: f64, theirs: Option<f64>| match theirs {
            Some(t) if t > 0.0 => format!("{:.2}x", ours / t),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {:.1} MB | {:.1} MB |",
            row.server,
            row.connections,
            row.load.requests_per_sec,
            ratio(
                row.load.requests_per_sec,
                peer.map(|p| p.load.requests_per_sec)
            ),
            row.load.p50_ms,
            row.load.p99_ms,
            ratio(row.load.p99_ms, peer.map(|p| p.load.p99_ms)),
            row.load.errors,
            row.rss_idle as f64 / 1e6,
            row.rss_load as f64 / 1e6,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrks_report_is_read() {
        let report = "Running 10s test @ http://127.0.0.1:8080/
  1 threads and 10 connections
  Latency Distribution
     50%  256.00us
     75%  400.00us
     90%  700.00us
     99%    1.20ms
  123456 requests in 10.00s, 12.34MB read
  Non-2xx or 3xx responses: 5
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  12345.67
Transfer/sec:      1.23MB
";
        let load = parse_wrk(report).expect("parsed");
        assert_eq!(load.requests_per_sec, 12345.67);
        assert!((load.p50_ms - 0.256).abs() < 1e-9);
        assert!((load.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(load.errors, 8);
    }
}
