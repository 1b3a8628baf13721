//! Cold and warm start of a large module (issue #7): a generated WASI 0.1 core module of at
//! least `BENCH_LARGE_MB` MiB, run with `ctr run --rm` through the precompile cache
//! (`$WASMCELL_CACHE_DIR`, which the bench points at a directory of its own before containerd
//! starts: containerd passes its environment to the shims, the shim to its guest processes).
//!
//! - no cache: the cache directory is removed before every run, so every run compiles (the
//!   first of them is also the coldest start: empty cache, fresh shim);
//! - warm: the cache holds the compiled module; each warm run of the large module alternates
//!   with a run of the hello workload, so both see the same conditions;
//! - shared mode warm: the same, through the shared manager (compiled once, then memoized).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, ImportSection, InstructionSink, MemArg, MemArgTarget, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};
use wasmcell_image::ImageSpec;
use wasmcell_testing::Containerd;

use crate::measure::percentile;
use crate::runtimes::Runtime;

/// The large module's image reference.
pub(crate) const LARGE_IMAGE: &str = "docker.io/library/bench-large:latest";
/// The same module as a CNCF Wasm OCI artifact.
const LARGE_ARTIFACT: &str = "docker.io/library/bench-large-artifact:latest";
/// The line the large module prints.
const LARGE_OUTPUT: &str = "hello from a large module";
/// Deadline of one `ctr run` of the large module (a cold compile of a debug shim is slow).
const LARGE_RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Generated functions of one chain: function `i` calls `i - 1` unless `i` starts a chain.
const CHAIN: u32 = 16;
/// Straight-line segments in the loop of each generated function (about 2.5 KB of code).
const SEGMENTS: usize = 140;
/// Where `_start` puts its iovec, result and message in linear memory.
const IOVEC: u64 = 0;
const NWRITTEN: u64 = 8;
const RESULT: u64 = 16;
const MESSAGE: u32 = 1024;
/// Scratch memory the generated functions load from and store to (below `MESSAGE`).
const SCRATCH: u64 = 32;

/// The generated module: its bytes and how many functions it holds.
#[derive(Debug)]
pub(crate) struct LargeModule {
    pub(crate) bytes: Vec<u8>,
    pub(crate) functions: u32,
}

/// Deterministic pseudo-random numbers (splitmix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Generate a WASI 0.1 module of at least `min_bytes` bytes: functions `(i64) -> i64`, each a
/// four-round loop over ~140 segments of 64-bit arithmetic on five locals, a conditional store
/// and a call to its predecessor in a chain of 16; `_start` calls the head of the first chain
/// (16 functions run; all are compiled and loaded) and writes one line to stdout with `fd_write`.
pub(crate) fn generate(min_bytes: usize) -> LargeModule {
    let message = format!("{LARGE_OUTPUT}\n").into_bytes();
    // Function 0 is the import; generated functions are 1..=n; `_start` is n + 1.
    let mut bodies: Vec<Function> = Vec::new();
    let mut code_bytes = 0usize;
    while code_bytes < min_bytes {
        let index = bodies.len() as u32 + 1;
        let body = work_function(index);
        code_bytes += body.byte_len();
        bodies.push(body);
    }
    let n = bodies.len() as u32;

    let mut types = TypeSection::new();
    types.ty().function(
        [ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        [ValType::I32],
    );
    types.ty().function([ValType::I64], [ValType::I64]);
    types.ty().function([], []);
    let mut imports = ImportSection::new();
    imports.import(
        "wasi_snapshot_preview1",
        "fd_write",
        EntityType::Function(0),
    );
    let mut funcs = FunctionSection::new();
    for _ in 0..n {
        funcs.function(1);
    }
    funcs.function(2);
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("_start", ExportKind::Func, n + 1);

    let mut code = CodeSection::new();
    for body in &bodies {
        code.function(body);
    }
    code.function(&start_function(n, message.len() as u32));

    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::i32_const(MESSAGE as i32),
        message.iter().copied(),
    );

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&funcs)
        .section(&memory)
        .section(&exports)
        .section(&code)
        .section(&data);
    LargeModule {
        bytes: module.finish(),
        functions: n,
    }
}

fn mem(offset: u64, align: u32) -> MemArg {
    MemArg {
        offset,
        align,
        target: MemArgTarget::Memory(0),
        ordering: None,
    }
}

/// Function `index`: param 0 (i64), locals 1..=4 (i64) and 5 (i32, the loop counter).
fn work_function(index: u32) -> Function {
    let mut rng = Mix(u64::from(index).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut f = Function::new([(4, ValType::I64), (1, ValType::I32)]);
    let mut s = f.instructions();
    for l in 1..=4u32 {
        s.local_get(0)
            .i64_const(rng.next() as i64)
            .i64_xor()
            .local_set(l);
    }
    s.i32_const(4).local_set(5);
    s.loop_(BlockType::Empty);
    for segment in 0..SEGMENTS {
        let r = rng.next();
        if segment % 10 == 9 {
            // A branch with memory traffic every ten segments.
            memory_branch_segment(&mut s, r);
        } else {
            arithmetic_segment(&mut s, r, &mut rng);
        }
    }
    // A conditional store: real control flow and memory traffic.
    s.local_get(1)
        .i64_const(7)
        .i64_and()
        .i64_eqz()
        .if_(BlockType::Empty);
    s.i32_const(0)
        .local_get(2)
        .i64_store(mem(SCRATCH + u64::from(index % 64) * 8, 3));
    s.end();
    s.local_get(5).i32_const(1).i32_sub().local_tee(5).br_if(0);
    s.end();
    chain_result(&mut s, index);
    s.end();
    f
}

/// One segment of a work function's loop that branches on a local bit: one arm adds a local
/// to a scratch slot, the other folds the slot into a local. `r` picks the slot and locals.
fn memory_branch_segment(s: &mut InstructionSink<'_>, r: u64) {
    let slot = SCRATCH + (r % 64) * 8;
    s.local_get(1 + (r % 4) as u32)
        .i64_const(1 << ((r >> 8) % 8))
        .i64_and()
        .i64_eqz()
        .if_(BlockType::Empty);
    s.i32_const(0)
        .i32_const(0)
        .i64_load(mem(slot, 3))
        .local_get(1 + ((r >> 12) % 4) as u32)
        .i64_add()
        .i64_store(mem(slot, 3));
    s.else_();
    s.local_get(1 + ((r >> 16) % 4) as u32)
        .i32_const(0)
        .i64_load(mem(slot, 3))
        .i64_xor()
        .local_set(1 + ((r >> 20) % 4) as u32);
    s.end();
}

/// One straight-line segment of a work function's loop: two 64-bit operations on a local, a
/// constant (the next number of `rng`) and another local, stored into a third. `r` picks the
/// locals and operations.
fn arithmetic_segment(s: &mut InstructionSink<'_>, r: u64, rng: &mut Mix) {
    let (a, b, dst) = (
        (r % 5) as u32,
        ((r >> 8) % 5) as u32,
        1 + ((r >> 16) % 4) as u32,
    );
    s.local_get(a).i64_const((rng.next() >> (r % 40)) as i64);
    match (r >> 24) % 4 {
        0 => s.i64_add(),
        1 => s.i64_mul(),
        2 => s.i64_xor(),
        _ => s.i64_sub(),
    };
    s.local_get(b);
    match (r >> 32) % 4 {
        0 => s.i64_rotl(),
        1 => s.i64_or(),
        2 => s.i64_shr_u(),
        _ => s.i64_add(),
    };
    s.local_set(dst);
}

/// A work function's result: its locals 1..=4 folded, plus (unless function `index` starts a
/// chain) the result of its predecessor called with its parameter.
fn chain_result(s: &mut InstructionSink<'_>, index: u32) {
    s.local_get(1)
        .local_get(2)
        .i64_xor()
        .local_get(3)
        .i64_add()
        .local_get(4)
        .i64_xor();
    if index % CHAIN != 1 {
        s.local_get(0).call(index - 1).i64_add();
    }
}

/// `_start`: run one chain of functions (as a large program's start path runs a small part of
/// its code: the rest is compiled and loaded, not executed), store the result, print the message.
fn start_function(n: u32, message_len: u32) -> Function {
    let mut f = Function::new([(1, ValType::I64)]);
    let mut s = f.instructions();
    s.i64_const(1).local_set(0);
    s.local_get(0).call(CHAIN.min(n)).local_set(0);
    s.i32_const(0).local_get(0).i64_store(mem(RESULT, 3));
    s.i32_const(0)
        .i32_const(MESSAGE as i32)
        .i32_store(mem(IOVEC, 2));
    s.i32_const(0)
        .i32_const(message_len as i32)
        .i32_store(mem(IOVEC + 4, 2));
    s.i32_const(1)
        .i32_const(IOVEC as i32)
        .i32_const(1)
        .i32_const(NWRITTEN as i32)
        .call(0)
        .drop();
    s.end();
    f
}

/// Write the module to `dir`, build its image and import it; returns the module's facts.
/// `large-module FILE [MIB]`: write the generated module (default 10 MiB) to FILE.
pub(crate) fn write_module(args: &[String]) -> anyhow::Result<()> {
    let Some(path) = args.first() else {
        bail!("usage: wasmcell-bench large-module FILE [MIB]");
    };
    let mib = match args.get(1) {
        Some(n) => n
            .parse::<usize>()
            .with_context(|| format!("MIB must be a whole number, not {n:?}"))?,
        None => 10,
    };
    let module = generate(mib * 1024 * 1024);
    std::fs::write(path, &module.bytes).with_context(|| format!("failed to write {path}"))?;
    eprintln!(
        "{path}: {} functions, {:.1} MB",
        module.functions,
        module.bytes.len() as f64 / 1e6
    );
    Ok(())
}

pub(crate) fn prepare(c: &Containerd, min_mib: usize) -> anyhow::Result<LargeModule> {
    let started = Instant::now();
    let module = generate(min_mib * 1024 * 1024);
    let path = c.dir().join("large.wasm");
    std::fs::write(&path, &module.bytes)
        .with_context(|| format!("failed to write the large module {}", path.display()))?;
    let image = ImageSpec::new(&path, LARGE_IMAGE)
        .build()
        .context("failed to build the large module's image")?;
    let tar = c.dir().join("large.tar");
    image
        .write_archive(&tar)
        .with_context(|| format!("failed to write {}", tar.display()))?;
    c.import(&tar);
    c.import_wasm_artifact(c.namespace(), "wasip1", &module.bytes, LARGE_ARTIFACT);
    eprintln!(
        "large module: {} functions, {:.1} MB, generated and imported in {:.1} s",
        module.functions,
        module.bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(module)
}

/// `ctr run --rm [target...] ID [cmd...]` (target: the runtime and image, as in
/// [`Runtime::run_args`]), with a long deadline; fails unless stdout holds `expect` (when
/// given).
fn run(
    c: &Containerd,
    rt: &Runtime,
    (target, id): (&[String], &str),
    cmd: &[&str],
    expect: Option<&str>,
) -> anyhow::Result<Duration> {
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(target.iter().map(String::as_str));
    args.push(id);
    args.extend_from_slice(cmd);
    let start = Instant::now();
    let out = c.run_ctr_with_timeout(&args, LARGE_RUN_TIMEOUT);
    let took = start.elapsed();
    if !out.success() || !expect.is_none_or(|line| out.stdout.contains(line)) {
        bail!("{} run {id} of {target:?} failed: {out:?}", rt.name);
    }
    Ok(took)
}

/// Sorted samples of one case.
#[derive(Debug)]
pub(crate) struct Samples {
    pub(crate) label: String,
    pub(crate) sorted: Vec<Duration>,
}

impl Samples {
    fn new(label: impl Into<String>, mut v: Vec<Duration>) -> Self {
        v.sort();
        Samples {
            label: label.into(),
            sorted: v,
        }
    }

    pub(crate) fn p50(&self) -> Duration {
        percentile(&self.sorted, 50)
    }
}

/// Everything measured on the large module.
#[derive(Debug)]
pub(crate) struct LargeReport {
    pub(crate) module_bytes: usize,
    pub(crate) functions: u32,
    /// The first run with an empty cache and no shim running.
    pub(crate) first_cold: Duration,
    pub(crate) rows: Vec<Samples>,
    /// (large warm p50 / hello p50) per mode.
    pub(crate) ratios: Vec<(String, f64)>,
}

/// What [`measure`] measures: the large module, the runtimes it runs under, the cache the
/// no-cache runs clear, and how many runs of each kind.
#[derive(Debug)]
pub(crate) struct LargeBench<'a> {
    /// The normal runtime: the no-cache runs, and the first warm mode.
    pub(crate) normal: &'a Runtime,
    /// The shared runtime, measured warm when given.
    pub(crate) shared: Option<&'a Runtime>,
    /// The normal runtime from a Wasm OCI artifact, measured warm when given.
    pub(crate) artifact: Option<&'a Runtime>,
    pub(crate) module: &'a LargeModule,
    /// `$WASMCELL_CACHE_DIR`, removed before every no-cache run.
    pub(crate) cache_dir: &'a Path,
    pub(crate) cold_runs: usize,
    pub(crate) warm_runs: usize,
}

/// One warm mode: its name in the rows, its runtime, and the `ctr run` target of the large
/// module under it.
#[derive(Debug)]
struct WarmMode<'a> {
    name: &'static str,
    runtime: &'a Runtime,
    target: Vec<String>,
}

/// The large module's command after the container id.
const LARGE_COMMAND: &[&str] = &["/app.wasm"];

/// Measure the large module with the normal runtime and, when given, the shared one and the
/// normal one from a Wasm OCI artifact.
pub(crate) fn measure(c: &Containerd, bench: &LargeBench<'_>) -> anyhow::Result<LargeReport> {
    eprintln!(
        "== large module: {} runs without cache, {} warm runs",
        bench.cold_runs, bench.warm_runs
    );
    let no_cache = runs_without_cache(c, bench)?;
    let first_cold = no_cache.first().copied().unwrap_or_default();
    // Populate the cache (the last cold run did) and warm up both workloads.
    let normal = bench.normal;
    run(
        c,
        normal,
        (&large_target(normal), "large-warmup"),
        LARGE_COMMAND,
        Some(LARGE_OUTPUT),
    )?;
    let mut rows = vec![Samples::new("large, normal, no cache", no_cache)];
    let mut ratios = Vec::new();
    for mode in warm_modes(c, bench) {
        let (big, small) = warm_samples(c, bench, &mode)?;
        ratios.push((
            mode.name.to_string(),
            big.p50().as_secs_f64() / small.p50().as_secs_f64(),
        ));
        rows.push(big);
        rows.push(small);
    }
    Ok(LargeReport {
        module_bytes: bench.module.bytes.len(),
        functions: bench.module.functions,
        first_cold,
        rows,
        ratios,
    })
}

/// `ctr run` arguments that run the large module's image with `rt`'s runtime type.
fn large_target(rt: &Runtime) -> Vec<String> {
    vec![
        "--runtime".into(),
        rt.runtime_type.clone(),
        LARGE_IMAGE.into(),
    ]
}

/// The cold runs: the normal runtime with the cache directory removed before each run.
fn runs_without_cache(c: &Containerd, bench: &LargeBench<'_>) -> anyhow::Result<Vec<Duration>> {
    let target = large_target(bench.normal);
    let mut no_cache = Vec::new();
    for i in 0..bench.cold_runs {
        clear_cache(bench.cache_dir)?;
        no_cache.push(run(
            c,
            bench.normal,
            (&target, &format!("large-cold-{i}")),
            LARGE_COMMAND,
            Some(LARGE_OUTPUT),
        )?);
    }
    Ok(no_cache)
}

/// The modes measured warm: normal, then shared and artifact when their runtimes are given.
fn warm_modes<'a>(c: &Containerd, bench: &LargeBench<'a>) -> Vec<WarmMode<'a>> {
    let mut modes = vec![WarmMode {
        name: "normal",
        runtime: bench.normal,
        target: large_target(bench.normal),
    }];
    if let Some(s) = bench.shared {
        modes.push(WarmMode {
            name: "shared",
            runtime: s,
            target: large_target(s),
        });
    }
    if let Some(a) = bench.artifact {
        modes.push(WarmMode {
            name: "artifact",
            runtime: a,
            target: crate::runtimes::artifact_run_args(c, LARGE_ARTIFACT),
        });
    }
    modes
}

/// One warm-up run of the large module in `mode`, then `warm_runs` runs of it, each followed
/// by a run of the (normal runtime's) hello workload; returns both rows, large first.
fn warm_samples(
    c: &Containerd,
    bench: &LargeBench<'_>,
    mode: &WarmMode<'_>,
) -> anyhow::Result<(Samples, Samples)> {
    let (name, rt, target) = (mode.name, mode.runtime, &mode.target);
    let hello: Vec<&str> = bench.normal.hello.iter().map(String::as_str).collect();
    // The shared manager loads the large module from the disk cache on its first run; an
    // artifact's first run reads and labels its layer.
    run(
        c,
        rt,
        (target, &format!("large-{name}-warmup")),
        LARGE_COMMAND,
        Some(LARGE_OUTPUT),
    )?;
    let (mut big, mut small) = (Vec::new(), Vec::new());
    for i in 0..bench.warm_runs {
        big.push(run(
            c,
            rt,
            (target, &format!("large-{name}-{i}")),
            LARGE_COMMAND,
            Some(LARGE_OUTPUT),
        )?);
        small.push(run(
            c,
            rt,
            (&rt.run_args, &format!("hello-{name}-{i}")),
            &hello,
            None,
        )?);
    }
    Ok((
        Samples::new(format!("large, {name}, warm cache"), big),
        Samples::new(format!("hello, {name}, same window"), small),
    ))
}

/// Remove the cache directory `dir`, if it exists.
fn clear_cache(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to clear the cache {}", dir.display())),
    }
}

/// The bench's own cache directory, set as `WASMCELL_CACHE_DIR` for containerd and its shims.
pub(crate) fn cache_dir(base: &Path) -> PathBuf {
    base.join("wasmcell-cache")
}

impl LargeReport {
    pub(crate) fn markdown(&self) -> String {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nStart of a large module ({:.1} MB, {} functions, generated) with `ctr run --rm`; \
             first run with an empty cache and no shim: {} ms\n",
            self.module_bytes as f64 / 1e6,
            self.functions,
            ms(self.first_cold)
        );
        let _ = writeln!(out, "| case | runs | min ms | p50 ms | p99 ms |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.label,
                r.sorted.len(),
                r.sorted.first().map(|d| ms(*d)).unwrap_or_default(),
                ms(r.p50()),
                ms(percentile(&r.sorted, 99))
            );
        }
        for (mode, ratio) in &self.ratios {
            let _ = writeln!(
                out,
                "\nWarm large module vs hello ({mode} mode, p50): {ratio:.2}x (target: within 1.2x)"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_module_is_valid_and_large() {
        let m = generate(1024 * 1024);
        assert!(m.bytes.len() >= 1024 * 1024);
        assert_eq!(&m.bytes[..4], b"\0asm");
        assert_eq!(generate(1024 * 1024).bytes, m.bytes, "not deterministic");
    }
}
