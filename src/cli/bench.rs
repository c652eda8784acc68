//! `gpu-linalg bench`: the fast CPU backend against the GPU — kernel time (timestamp queries),
//! time on resident data, and end to end — every GPU result checked against the CPU's first.
//! Output: a table, and optionally JSON, CSV and a plot.

mod plot;
mod report;

pub use plot::register_font;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::GlobalOpts;
use crate::error::{Error, Result};
use crate::reference::{gamma, half_ulp};
use crate::runtime::GpuBuffer;
use crate::tensor::DType;
use crate::{
    Backend, Context, ContextOptions, ConvKind, ConvOptions, ConvPlan, HalfMatmulPath,
    MatmulOptions, MatmulPlan, Padding, ReduceOp, ReduceOptions, Tensor,
};

/// The ops `bench` knows, with their default sizes (conv2d runs fixed ResNet-like layers).
const OPS: &[(&str, &[&str])] = &[
    ("matmul", &["256", "512", "1024"]),
    ("matmul-f16", &["256", "1024"]),
    ("matmul-bf16", &["256", "1024"]),
    ("conv2d", &[]),
    ("reduce", &["1048576", "4194304", "16777216"]),
    ("svd", &["64", "128", "256", "512", "1024", "4096x256"]),
    ("svdvals", &["256", "1024"]),
    ("eigh", &["64", "128", "256", "512", "1024"]),
    ("eigvalsh", &["256", "1024"]),
    ("qr", &["1024x64", "4096x256"]),
    ("svd-batched", &["10000x16x16"]),
    ("pca-stream", &["262144x64"]),
    ("cholesky", &["256", "512", "1024"]),
    ("lu", &["256", "512", "1024"]),
    ("solve", &["256", "1024", "10000x16x16"]),
    ("inv", &["256", "512", "1024"]),
    ("chained", &[]),
];

/// Arguments of `gpu-linalg bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated ops to run (available: matmul, conv2d, reduce, svd, eigh, qr,
    /// svd-batched, pca-stream, cholesky, lu, solve, inv, chained). pca-stream times the
    /// streamed PCA (k = 10) of an MxN matrix read from a .npy file in row blocks, in GB/s of
    /// input, beside the in-memory PCA of the same matrix. The decompositions are not in the default set: on a software
    /// adapter a 1024×1024 SVD takes minutes. `chained` times 1,000 dependent 64×64 matmuls
    /// and 1,000 dependent adds of 4,096 floats, through the command stream and with per-op
    /// submission, in ops/s.
    #[arg(long, default_value = "matmul,conv2d,reduce")]
    ops: String,
    /// Comma-separated sizes: n or MxKxN for matmul (default 256,512,1024), elements for reduce
    /// (default 2^20, 2^22, 2^24), n or MxN for svd and qr (svd: 64…1024 and 4096x256), n for
    /// eigh (64…1024), BxMxN for svd-batched (10000x16x16); conv2d always runs its fixed
    /// ResNet-like layers.
    #[arg(long)]
    sizes: Option<String>,
    /// Timed repeats per measurement, after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Plot throughput against size (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One measured row.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// Op name, as in `--ops`.
    pub op: String,
    /// Shape string (`MxKxN` for matmul).
    pub shape: String,
    /// The size on the plot's x axis.
    pub size: f64,
    /// "gpu" or "cpu".
    pub backend: &'static str,
    /// Backend and kernel, for people.
    pub label: String,
    /// Median time on resident data, seconds.
    pub median_s: f64,
    /// Max − min of the resident times, seconds.
    pub spread_s: f64,
    /// Median kernel time from timestamp queries, seconds.
    pub kernel_s: Option<f64>,
    /// Median end-to-end time (upload + op + readback), seconds.
    pub e2e_s: Option<f64>,
    /// Floating-point operations of one run (0 for bandwidth-bound ops).
    pub flops: f64,
    /// Bytes read of one run, for bandwidth-bound ops (0 otherwise).
    pub bytes: f64,
    /// Timed repeats.
    pub repeats: usize,
    /// Jacobi sweeps of the run (GPU rows of the SVD family).
    pub sweeps: Option<u32>,
    /// Dependent ops per second (rows of `chained`).
    pub ops_per_s: Option<f64>,
    /// Compute dispatches of one run (GPU rows of the decompositions and `chained`).
    pub dispatches: Option<u64>,
    /// Queue submissions of one run (GPU rows of the decompositions and `chained`).
    pub submits: Option<u64>,
}

impl Row {
    /// True for bandwidth-bound ops, whose rate is GB/s rather than GFLOP/s.
    pub fn is_bandwidth(&self) -> bool {
        self.flops == 0.0 && self.bytes > 0.0
    }

    fn gflops(&self, secs: f64) -> Option<f64> {
        (self.flops > 0.0).then(|| self.flops / secs / 1e9)
    }

    fn gbs(&self, secs: f64) -> Option<f64> {
        self.is_bandwidth().then(|| self.bytes / secs / 1e9)
    }

    /// GFLOP/s, or GB/s for bandwidth-bound ops.
    pub fn rate(&self, secs: f64) -> f64 {
        self.gflops(secs).or(self.gbs(secs)).unwrap_or(f64::NAN)
    }

    /// True for ops reported in seconds only (iterative decompositions, whose flop count
    /// depends on the sweeps and has no agreed convention).
    pub fn is_time_only(&self) -> bool {
        self.flops == 0.0 && self.bytes == 0.0
    }
}

/// What the machine is, for the reports.
pub(crate) struct Machine {
    pub adapter: Option<String>,
    pub api: Option<String>,
    pub driver: Option<String>,
    pub cpu: String,
    pub threads: usize,
}

/// The CPU's model name, from /proc/cpuinfo where it exists.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Median and spread (max − min).
fn stats(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    match (t.first(), t.get(t.len() / 2), t.last()) {
        (Some(lo), Some(mid), Some(hi)) => (*mid, hi - lo),
        _ => (f64::NAN, f64::NAN),
    }
}

/// A GPU context to bench, with how to label it.
struct Target {
    ctx: Context,
    label: String,
}

/// Runs the benchmark.
pub fn run(g: &GlobalOpts, args: &BenchArgs) -> Result<()> {
    for path in [&args.json, &args.csv, &args.plot].into_iter().flatten() {
        check_output_dir(path)?;
    }
    if let Some(p) = &args.plot {
        plot::check_format(p)?;
    }
    let named: Vec<(&str, &[&str])> = args
        .ops
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|op| {
            OPS.iter()
                .find(|(n, _)| *n == op)
                .map(|(n, d)| (*n, *d))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "unknown op '{op}' for bench; available: {}",
                        OPS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let ops = sizes_per_op(&named, &args.sizes)?;

    let backend: Backend = g.backend.parse()?;
    let main = Context::with_options(ContextOptions {
        backend,
        adapter: g.adapter.clone(),
        ..Default::default()
    })?;
    let mut gpus = Vec::new();
    if main.is_gpu() {
        println!(
            "Benchmarking {} against the fast CPU backend.",
            main.description()
        );
        gpus.push(Target {
            label: "gpu".into(),
            ctx: main.clone(),
        });
    } else if backend == Backend::Auto {
        println!("No real GPU found: benchmarking {}.", main.description());
        if let Ok(sw) = Context::with_options(ContextOptions {
            backend: Backend::Gpu,
            adapter: g.adapter.clone(),
            ..Default::default()
        }) {
            println!(
                "Also benchmarking the software adapter for reference: {}.",
                sw.description()
            );
            gpus.push(Target {
                label: "gpu (software)".into(),
                ctx: sw,
            });
        }
    } else {
        println!("Benchmarking the fast CPU backend only (--backend cpu).");
    }
    let summary = gpus.first().and_then(|t| t.ctx.device_summary());
    let machine = Machine {
        adapter: summary.as_ref().map(|s| s.adapter.name.clone()),
        api: summary.as_ref().map(|s| s.adapter.api.clone()),
        driver: summary.as_ref().map(|s| s.adapter.driver.clone()),
        cpu: cpu_name(),
        threads: rayon::current_num_threads(),
    };
    println!("CPU: {} ({} threads)", machine.cpu, machine.threads);
    let cpu = Context::with_backend(Backend::Cpu)?;

    // Kernels are chosen (tuned, if the cache is cold) before the clock starts.
    for t in &gpus {
        t.ctx.matmul_config()?;
        if ops.iter().any(|(op, _)| *op == "reduce") {
            t.ctx.reduce_kernel()?;
        }
        if ops.iter().any(|(op, _)| *op == "svd-batched") {
            t.ctx.svd_batched_kernel()?;
        }
        if ops.iter().any(|(op, _)| *op == "conv2d") {
            t.ctx.conv_config()?;
            for &(x, w, pad, groups) in CONV_LAYERS {
                let o = ConvOptions {
                    padding: Padding::from(pad),
                    groups,
                    ..Default::default()
                };
                t.ctx
                    .conv_config_for(&ConvPlan::new(ConvKind::Conv2d, &x, &w, &o)?)?;
            }
        }
    }
    let cases: Vec<BenchCase> = ops
        .iter()
        .map(|(op, sizes)| cases_for(op, sizes))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let steps: usize = cases
        .iter()
        .map(|c| 1 + gpus.len() * (1 + c.baselines.len()))
        .sum();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.suspend(print_header);
    let mut rows = Vec::new();
    for case in &cases {
        bench_case(args, case, &gpus, &cpu, &bar, &mut rows)?;
    }
    if ops.iter().any(|(op, _)| *op == "chained") {
        bench_chained(args, &gpus, &cpu, &bar, &mut rows)?;
    }
    bar.finish_and_clear();
    print_gemm_fractions(&rows);
    print_matmul_times(&rows);
    if let Some(path) = &args.json {
        write_atomic(path, &report::to_json(&machine, &rows)?)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        write_atomic(path, &report::to_csv(&rows)?)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &machine, &rows)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// For each GPU row of a factorisation or solver rated in nominal flops (cholesky, lu, solve,
/// inv), its rate as a fraction of the same adapter's n³ matmul in this run, where the run
/// timed that matmul (its chosen kernel, not a baseline).
fn print_gemm_fractions(rows: &[Row]) {
    for r in rows.iter().filter(|r| {
        r.backend == "gpu" && matches!(r.op.as_str(), "cholesky" | "lu" | "solve" | "inv")
    }) {
        // Batched solves (BxNxNxK) have no matmul of their size.
        if r.op == "solve" && r.shape.split('x').count() == 4 {
            continue;
        }
        let Some(n) = r
            .shape
            .split('x')
            .next()
            .and_then(|d| d.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(m) = gemm_row(rows, &format!("{n}x{n}x{n}")) {
            let (rate, gemm_rate) = (r.flops / r.median_s, m.flops / m.median_s);
            println!(
                "{} {}: {:.0}% of the same adapter's {n}³ matmul rate ({:.2} vs {:.2} GFLOP/s)",
                r.op,
                r.shape,
                100.0 * rate / gemm_rate,
                rate / 1e9,
                gemm_rate / 1e9
            );
        }
    }
}

/// The same adapter's GPU matmul row of `shape` (`MxKxN`) in this run: its chosen kernel, not
/// a baseline.
fn gemm_row<'r>(rows: &'r [Row], shape: &str) -> Option<&'r Row> {
    rows.iter().find(|m| {
        m.op == "matmul" && m.backend == "gpu" && m.shape == shape && !m.label.contains("naive")
    })
}

/// For each GPU row of a decomposition (svd, svdvals, eigh, eigvalsh, qr), its time in units of
/// the same adapter's n³ matmul in this run (n the row's last dimension), where the run timed
/// that matmul, and its dispatch and submission counts; for qr also its nominal rate as a
/// fraction of that matmul's rate.
fn print_matmul_times(rows: &[Row]) {
    for r in rows.iter().filter(|r| {
        r.backend == "gpu"
            && matches!(
                r.op.as_str(),
                "svd" | "svdvals" | "eigh" | "eigvalsh" | "qr"
            )
    }) {
        let dims: Vec<usize> = r.shape.split('x').filter_map(|d| d.parse().ok()).collect();
        let counts = match (r.dispatches, r.submits) {
            (Some(d), Some(s)) => format!("; {d} dispatches, {s} submits"),
            _ => String::new(),
        };
        // A square decomposition against the n³ matmul; a rectangular m×n one against the
        // m×n×n matmul (the shape of its block updates).
        let gemm = match dims[..] {
            [a, b] if a != b => format!("{a}x{b}x{b}"),
            [n, ..] => format!("{n}x{n}x{n}"),
            [] => continue,
        };
        let Some(m) = gemm_row(rows, &gemm) else {
            println!(
                "{} {}: no {gemm} matmul in this run to compare with (add --ops matmul --sizes {gemm}){counts}",
                r.op, r.shape
            );
            continue;
        };
        let mut line = format!(
            "{} {}: {:.1} matmul-times ({:.1} ms; the same adapter's {gemm} matmul {:.1} ms){counts}",
            r.op,
            r.shape,
            r.median_s / m.median_s,
            r.median_s * 1e3,
            m.median_s * 1e3
        );
        if r.flops > 0.0 {
            let (rate, gemm_rate) = (r.flops / r.median_s, m.flops / m.median_s);
            line.push_str(&format!(
                "; {:.0}% of its GEMM rate in nominal flops ({:.2} vs {:.2} GFLOP/s)",
                100.0 * rate / gemm_rate,
                rate / 1e9,
                gemm_rate / 1e9
            ));
        }
        println!("{line}");
    }
}

/// Dependent ops in one `chained` measurement.
const CHAINED_OPS: usize = 1000;

/// One op applied to the running value of a `chained` workload.
type ChainStep = fn(&Context, &Tensor, &Tensor) -> Result<Tensor>;

/// A `chained` workload: its shape string, the start value and the operand (shape, values),
/// the step, and the exact result.
type ChainWorkload = (
    String,
    (Vec<usize>, Vec<f32>),
    (Vec<usize>, Vec<f32>),
    ChainStep,
    Vec<f32>,
);

/// The `chained` workloads: 1,000 dependent 64×64 matmuls (by a permutation matrix, so the
/// result is exact and checked bit for bit) and 1,000 dependent adds of 4,096 floats (values on
/// a grid of 1/4, exact too). Returns (shape, start, operand, step, expected result).
fn chained_workloads() -> Vec<ChainWorkload> {
    let n = 64;
    let x0: Vec<f32> = (0..n * n).map(|i| (i % 97) as f32 - 48.0).collect();
    // P sends column j to column (j + 5) mod n: x·P shifts every row right by 5.
    let mut p = vec![0.0f32; n * n];
    for j in 0..n {
        p[j * n + (j + 5) % n] = 1.0;
    }
    let shift = (5 * CHAINED_OPS) % n;
    let mut mm_expected = vec![0.0f32; n * n];
    for r in 0..n {
        for c in 0..n {
            mm_expected[r * n + (c + shift) % n] = x0[r * n + c];
        }
    }
    let len = 4096;
    let a0: Vec<f32> = (0..len).map(|i| (i % 13) as f32 * 0.25).collect();
    let d: Vec<f32> = (0..len).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
    let add_expected: Vec<f32> = a0
        .iter()
        .zip(&d)
        .map(|(a, d)| a + CHAINED_OPS as f32 * d)
        .collect();
    vec![
        (
            format!("{CHAINED_OPS}x{n}x{n}x{n}"),
            (vec![n, n], x0),
            (vec![n, n], p),
            |ctx, x, p| ctx.matmul(x, p),
            mm_expected,
        ),
        (
            format!("{CHAINED_OPS}x{len}"),
            (vec![len], a0),
            (vec![len], d),
            |ctx, x, d| ctx.add(x, d),
            add_expected,
        ),
    ]
}

/// `bench --ops chained`: each workload's 1,000 dependent ops on the CPU, then on every GPU
/// through the command stream and with per-op submission (in the same run), in ops/s; the
/// final value (one readback) is checked exactly.
fn bench_chained(
    args: &BenchArgs,
    gpus: &[Target],
    cpu: &Context,
    bar: &ProgressBar,
    rows: &mut Vec<Row>,
) -> Result<()> {
    for (shape, (xs, x0), (os, operand), step, expected) in chained_workloads() {
        let mut targets: Vec<(&'static str, String, &Context, Option<crate::SubmitMode>)> =
            vec![("cpu", "cpu (faer)".to_string(), cpu, None)];
        for t in gpus {
            for mode in [crate::SubmitMode::Stream, crate::SubmitMode::PerOp] {
                targets.push((
                    "gpu",
                    format!("{} {}", t.label, mode.name()),
                    &t.ctx,
                    Some(mode),
                ));
            }
        }
        let mut cpu_s = f64::NAN;
        for (backend, label, ctx, mode) in targets {
            bar.set_message(format!("chained {shape} on {label}"));
            let previous = ctx.submit_mode();
            if let Some(m) = mode {
                ctx.set_submit_mode(m)?;
            }
            let x = ctx.tensor(&xs, &x0)?;
            let o = ctx.tensor(&os, &operand)?;
            let chain = || -> Result<Vec<f32>> {
                let mut v = x.clone();
                for _ in 0..CHAINED_OPS {
                    v = step(ctx, &v, &o)?;
                }
                v.to_vec()
            };
            let got = chain()?;
            if got != expected {
                ctx.set_submit_mode(previous)?;
                return Err(Error::Verification(format!(
                    "chained {shape} on {label}: the result after {CHAINED_OPS} ops differs \
                     from the exact one"
                )));
            }
            let before = ctx.gpu_counters();
            let (med, spread, reps) = time_plain(args.repeat, true, &|| chain().map(drop))?;
            let spent = ctx.gpu_counters() - before;
            ctx.set_submit_mode(previous)?;
            let per_run = |c: u64| c / (reps as u64 + 1);
            let r = Row {
                op: "chained".into(),
                shape: shape.clone(),
                size: CHAINED_OPS as f64,
                backend,
                label,
                median_s: med,
                spread_s: spread,
                kernel_s: None,
                e2e_s: None,
                flops: 0.0,
                bytes: 0.0,
                repeats: reps,
                sweeps: None,
                ops_per_s: Some(CHAINED_OPS as f64 / med),
                dispatches: mode.map(|_| per_run(spent.dispatches)),
                submits: mode.map(|_| per_run(spent.submits)),
            };
            if backend == "cpu" {
                cpu_s = med;
            }
            bar.suspend(|| print_row(&r, cpu_s));
            rows.push(r);
            bar.inc(1);
        }
    }
    Ok(())
}

fn check_output_dir(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        if !d.is_dir() {
            return Err(Error::Io {
                path: path.display().to_string(),
                message: format!("directory '{}' does not exist", d.display()),
            });
        }
    }
    Ok(())
}

/// Each op with its sizes (each a list of dimensions).
type OpSizes<'o> = Vec<(&'o str, Vec<Vec<usize>>)>;

/// The sizes of each op. With several ops, each runs the sizes of `--sizes` that take its
/// forms (`--ops matmul,qr --sizes 4096x256x256,4096x256` times the matmul beside the QR);
/// a size that no op takes is an error naming it.
fn sizes_per_op<'o>(ops: &[(&'o str, &[&str])], sizes: &Option<String>) -> Result<OpSizes<'o>> {
    let Some(list) = sizes.as_ref().filter(|_| ops.len() > 1) else {
        return ops
            .iter()
            .map(|(name, defaults)| Ok((*name, parse_sizes(name, sizes, defaults)?)))
            .collect();
    };
    let items: Vec<Option<String>> = list
        .split(',')
        .map(|i| Some(i.trim().to_string()))
        .collect();
    for item in &items {
        let parsed: Vec<Result<Vec<Vec<usize>>>> = ops
            .iter()
            .map(|(name, d)| parse_sizes(name, item, d))
            .collect();
        if !parsed.iter().any(Result::is_ok) {
            if let Some(Err(e)) = parsed.into_iter().next() {
                return Err(e);
            }
        }
    }
    Ok(ops
        .iter()
        .map(|(name, d)| {
            let taken = items
                .iter()
                .filter_map(|item| parse_sizes(name, item, d).ok())
                .flatten()
                .collect();
            (*name, taken)
        })
        .collect())
}

/// The sizes of `op`: each `n` or `AxB[xC]` becomes its list of dimensions, checked against
/// the forms the op takes.
fn parse_sizes(op: &str, s: &Option<String>, default: &[&str]) -> Result<Vec<Vec<usize>>> {
    let forms: &[usize] = match op {
        op if matmul_dtype(op).is_some() => &[1, 3],
        "svd" | "svdvals" | "qr" => &[1, 2],
        "svd-batched" => &[3],
        "pca-stream" => &[2],
        "solve" => &[1, 2, 3],
        "conv2d" | "chained" => return Ok(Vec::new()),
        _ => &[1],
    };
    let items: Vec<&str> = match s {
        Some(s) => s.split(',').map(str::trim).collect(),
        None => default.to_vec(),
    };
    items
        .iter()
        .map(|item| {
            let dims: Option<Vec<usize>> = item
                .split('x')
                .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v > 0))
                .collect();
            match dims {
                Some(d) if forms.contains(&d.len()) => Ok(d),
                _ => Err(Error::InvalidArgument(format!(
                    "bad size '{item}' in --sizes for {op}; expected {}",
                    match op {
                        op if matmul_dtype(op).is_some() => "n or MxKxN, like 256 or 512x1024x256",
                        "svd" | "svdvals" | "qr" => "n or MxN, like 256 or 4096x256",
                        "svd-batched" => "BxMxN, like 10000x16x16",
                        "pca-stream" => "MxN, like 262144x64",
                        "solve" => "n, or BxNxN for a batch, like 1024 or 10000x16x16",
                        _ => "a positive number like 1024",
                    }
                ))),
            }
        })
        .collect()
}

fn print_header() {
    println!(
        "{:<11} {:<24} {:<39} {:>10} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>6}  (reduce rows: GB/s)",
        "op",
        "shape",
        "backend",
        "median ms",
        "spread",
        "kernel ms",
        "e2e ms",
        "GFLOP/s",
        "kern GF/s",
        "e2e GF/s",
        "vs CPU",
        "sweeps"
    );
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn print_row(r: &Row, cpu_s: f64) {
    // Decompositions have no rate: their rate columns print "-".
    let rate = |secs: Option<f64>| match r.ops_per_s {
        // Chained rows: dependent ops per second.
        Some(_) => fmt_opt(secs, |s| format!("{:.0}/s", r.size / s)),
        None => fmt_opt(secs.filter(|_| !r.is_time_only()), |s| {
            format!("{:.2}", r.rate(s))
        }),
    };
    println!(
        "{:<11} {:<24} {:<39} {:>10.3} {:>9.3} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7.2}× {:>6}",
        r.op,
        r.shape,
        r.label,
        r.median_s * 1e3,
        r.spread_s * 1e3,
        fmt_opt(r.kernel_s, |s| format!("{:.3}", s * 1e3)),
        fmt_opt(r.e2e_s, |s| format!("{:.3}", s * 1e3)),
        rate(Some(r.median_s)),
        rate(r.kernel_s),
        rate(r.e2e_s),
        cpu_s / r.median_s,
        r.sweeps
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into())
    );
}

/// Checks `got` against the CPU result: both lie within γ_k·mag of the exact result (mag is
/// the op on absolute values), so they may differ by twice that.
fn check_against_cpu(
    what: &str,
    (terms, dtype): (usize, DType),
    got: &[f32],
    cpu: &[f32],
    mag: &[f32],
) -> Result<()> {
    let g = 2.0 * gamma(terms) * (1.0 + gamma(terms));
    for (i, ((&x, &y), &m)) in got.iter().zip(cpu).zip(mag).enumerate() {
        let bound = g * f64::from(m) + 1e-30;
        // Both results rounded to a half type: up to an ulp of it apart besides.
        let bound = bound + 2.0 * half_ulp(dtype, f64::from(y).abs() + bound);
        if (f64::from(x) - f64::from(y)).abs() > bound || x.is_nan() != y.is_nan() {
            return Err(Error::Verification(format!(
                "{what}: element {i} is {x} on the GPU but {y} on the CPU (allowed difference {bound:.3e})"
            )));
        }
    }
    Ok(())
}

/// Times `f` up to `repeat` times (after a warm-up when `warm`; stopping early once
/// [`MEASURE_BUDGET_S`] is spent), returning the median and spread of its wall time, the
/// median kernel time it reports, and the repeats run.
fn time_gpu_op(
    ctx: &Context,
    repeat: usize,
    warm: bool,
    f: &dyn Fn() -> Result<()>,
) -> Result<(f64, f64, Option<f64>, usize)> {
    if warm {
        f()?;
        ctx.synchronize()?; // the warm-up must not run inside the first timed repeat
    }
    let start = Instant::now();
    let mut wall = Vec::new();
    let mut kernel = Vec::new();
    while wall.len() < repeat.max(1)
        && (wall.is_empty() || start.elapsed().as_secs_f64() < MEASURE_BUDGET_S)
    {
        let (w, k) = ctx.time_gpu(|| {
            let t = Instant::now();
            f()?;
            ctx.synchronize()?;
            Ok(t.elapsed().as_secs_f64())
        })?;
        wall.push(w);
        kernel.extend(k);
    }
    let done = wall.len();
    let (med, spread) = stats(wall);
    let k = (!kernel.is_empty()).then(|| stats(kernel).0);
    Ok((med, spread, k, done))
}

/// Times `f` like [`time_gpu_op`] without kernel times: (median, spread, repeats run).
fn time_plain(repeat: usize, warm: bool, f: &dyn Fn() -> Result<()>) -> Result<(f64, f64, usize)> {
    if warm {
        f()?;
    }
    let start = Instant::now();
    let mut ts = Vec::new();
    while ts.len() < repeat.max(1)
        && (ts.is_empty() || start.elapsed().as_secs_f64() < MEASURE_BUDGET_S)
    {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    let done = ts.len();
    let (med, spread) = stats(ts);
    Ok((med, spread, done))
}

/// What one run of an op produced: its output tensors and, for the Jacobi family on a GPU,
/// the sweeps it took.
struct Output {
    tensors: Vec<Tensor>,
    sweeps: Option<u32>,
    /// Dispatches and submissions of the run (GPU decompositions).
    counts: Option<crate::GpuCounters>,
}

impl From<Tensor> for Output {
    fn from(t: Tensor) -> Self {
        Output {
            tensors: vec![t],
            sweeps: None,
            counts: None,
        }
    }
}

impl Output {
    /// The output tensors read back.
    fn read(&self) -> Result<Vec<Vec<f32>>> {
        self.tensors.iter().map(Tensor::to_vec).collect()
    }

    /// Drops the outputs unread (the caller synchronizes).
    fn wait(self) -> Result<()> {
        drop(self.tensors);
        Ok(())
    }
}

/// The outputs of a run, with the sweeps, dispatches and submissions where the context is a
/// GPU one.
fn output(
    ctx: &Context,
    tensors: Vec<Tensor>,
    sweeps: u32,
    (dispatches, submits): (u64, u64),
) -> Output {
    Output {
        tensors,
        sweeps: ctx.is_gpu().then_some(sweeps),
        counts: ctx.is_gpu().then_some(crate::GpuCounters {
            dispatches,
            submits,
        }),
    }
}

/// Runs one op on a context with an optional forced kernel (parsed by the op itself).
type RunFn = dyn Fn(&Context, &[Tensor], Option<&str>) -> Result<Output> + Send + Sync;

/// Judges the outputs (read back) of a decomposition by LAPACK's driver-test ratios; the
/// message names the worst ratio.
type JudgeFn = dyn Fn(&[Vec<f32>]) -> Result<()> + Send + Sync;

/// How a GPU result is verified before it is timed.
enum Verify {
    /// Element by element against the CPU backend's result: both lie within γ_terms·mag of
    /// the exact result (mag is the op on absolute values).
    AgainstCpu { terms: usize },
    /// Decompositions, defined only up to signs: by the ratios of the factors.
    Ratios(Box<JudgeFn>),
}

/// Names the GPU kernel a context chose for a case.
type ChosenFn = dyn Fn(&Context) -> Result<String> + Send + Sync;

/// One benchmark: an op at one shape, its inputs, and how to run it.
struct BenchCase {
    op: &'static str,
    shape: String,
    size: f64,
    flops: f64,
    /// Bytes read (bandwidth-bound ops; flops is then 0).
    bytes: f64,
    verify: Verify,
    inputs: Vec<(Vec<usize>, Vec<f32>)>,
    /// Also time the CPU backend on one thread (a rayon pool of one).
    cpu_one_thread: bool,
    /// The inputs' element type: uploaded as f32, then cast (before any timing).
    dtype: DType,
    /// Appended to every row label (e.g. marks the equivalent-GEMM rows of conv layers).
    note: &'static str,
    /// Extra GPU kernels to time beside the chosen one: (forced kernel, label suffix).
    baselines: Vec<(&'static str, &'static str)>,
    /// The GPU kernel a context chose for this case.
    chosen: Box<ChosenFn>,
    run: Box<RunFn>,
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// A matmul case; `note` is empty for the square sizes and marks the others. Every shape is
/// placed on the plot at the side of the square matmul of the same work, (m·k·n)^(1/3).
fn matmul_case(m: usize, k: usize, n: usize, note: &'static str) -> Result<BenchCase> {
    matmul_case_in(DType::F32, m, k, n, note)
}

/// The matmul ops of the bench and the element type of each one's inputs.
const MATMUL_OPS: [(&str, DType); 3] = [
    ("matmul", DType::F32),
    ("matmul-f16", DType::F16),
    ("matmul-bf16", DType::BF16),
];

/// The input type of matmul op `op` ([`MATMUL_OPS`]), `None` for the other ops.
fn matmul_dtype(op: &str) -> Option<DType> {
    MATMUL_OPS.iter().find(|(o, _)| *o == op).map(|&(_, d)| d)
}

/// [`matmul_case`] with inputs of `dtype` (the result in it too, numpy's promotion).
fn matmul_case_in(
    dtype: DType,
    m: usize,
    k: usize,
    n: usize,
    note: &'static str,
) -> Result<BenchCase> {
    let plan = MatmulPlan::new(&[m, k], &[k, n], false, false)?;
    Ok(BenchCase {
        op: MATMUL_OPS
            .iter()
            .find(|&&(_, d)| d == dtype)
            .map_or("matmul", |&(o, _)| o),
        shape: format!("{m}x{k}x{n}"),
        size: ((m * k * n) as f64).cbrt(),
        note,
        flops: plan.flops(),
        bytes: 0.0,
        verify: Verify::AgainstCpu { terms: k },
        cpu_one_thread: false,
        dtype,
        inputs: vec![
            (vec![m, k], values(m * k, 1)),
            (vec![k, n], values(k * n, 2)),
        ],
        baselines: if note.is_empty() && n <= 1024 {
            vec![("naive", "naive")]
        } else {
            vec![]
        },
        // Float16 products name their tuned path: a cooperative configuration, or `widen`
        // and the f32 kernel.
        chosen: Box::new(move |c| {
            let f32_kernel = || c.matmul_config_for(&plan).map(|k| k.to_string());
            if dtype != DType::F16 {
                return f32_kernel();
            }
            match c.half_matmul_path_for(&plan)? {
                HalfMatmulPath::Widen => Ok(format!("widen {}", f32_kernel()?)),
                coop => Ok(coop.to_string()),
            }
        }),
        run: Box::new(|ctx: &Context, t: &[Tensor], kernel: Option<&str>| {
            let kernel = kernel.map(str::parse).transpose()?;
            ctx.matmul_with(
                &t[0],
                &t[1],
                &MatmulOptions {
                    kernel,
                    ..Default::default()
                },
            )
            .map(Output::from)
        }),
    })
}

/// ResNet-like layers: (input NCHW, weight OIHW, padding, groups).
const CONV_LAYERS: &[([usize; 4], [usize; 4], usize, usize)] = &[
    ([1, 64, 56, 56], [64, 64, 3, 3], 1, 1),
    ([1, 256, 14, 14], [256, 256, 3, 3], 1, 1),
    ([1, 256, 56, 56], [256, 1, 3, 3], 1, 256),
    ([1, 256, 28, 28], [128, 256, 1, 1], 0, 1),
];

fn conv_case(x: [usize; 4], w: [usize; 4], pad: usize, groups: usize) -> Result<BenchCase> {
    let opts = ConvOptions {
        padding: Padding::from(pad),
        groups,
        ..Default::default()
    };
    let plan = ConvPlan::new(ConvKind::Conv2d, &x, &w, &opts)?;
    let dims = |d: [usize; 4]| d.map(|v| v.to_string()).join("x");
    Ok(BenchCase {
        op: "conv2d",
        shape: format!("{}*{}", dims(x), dims(w)),
        size: plan.flops() / 1e6,
        flops: plan.flops(),
        bytes: 0.0,
        verify: Verify::AgainstCpu { terms: plan.k() },
        cpu_one_thread: false,
        dtype: DType::F32,
        inputs: vec![
            (x.to_vec(), values(x.iter().product(), 3)),
            (w.to_vec(), values(w.iter().product(), 4)),
        ],
        note: "",
        baselines: vec![],
        chosen: {
            let plan = plan.clone();
            Box::new(move |c| Ok(c.conv_config_for(&plan)?.to_string()))
        },
        run: Box::new(move |ctx: &Context, t: &[Tensor], kernel: Option<&str>| {
            let kernel = kernel.map(str::parse).transpose()?;
            let o = ConvOptions {
                padding: Padding::from(pad),
                groups,
                kernel,
                ..Default::default()
            };
            ctx.conv2d(&t[0], &t[1], &o).map(Output::from)
        }),
    })
}

/// A full sum of `n` f32 values: bandwidth-bound, rated in GB/s (bytes read / time).
fn reduce_case(n: usize) -> BenchCase {
    BenchCase {
        op: "reduce",
        shape: n.to_string(),
        size: n as f64,
        flops: 0.0,
        bytes: (n * 4) as f64,
        verify: Verify::AgainstCpu {
            terms: crate::reduce::sum_terms(n),
        },
        cpu_one_thread: false,
        dtype: DType::F32,
        inputs: vec![(vec![n], values(n, 5))],
        note: "",
        baselines: vec![],
        chosen: Box::new(|c| Ok(format!("sum {}", c.reduce_kernel()?))),
        run: Box::new(|ctx: &Context, t: &[Tensor], kernel: Option<&str>| {
            let kernel = kernel.map(str::parse).transpose()?;
            ctx.reduce(
                ReduceOp::Sum,
                &t[0],
                &ReduceOptions {
                    kernel,
                    ..Default::default()
                },
            )
            .map(Output::from)
        }),
    }
}

/// A file removed when the bench case that reads it is dropped, with its directory once empty.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            // Fails, harmlessly, while another case's file is still in it.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Components of the `pca-stream` bench.
pub(super) const PCA_BENCH_COMPONENTS: usize = 10;

#[cfg(feature = "mpi")]
impl BenchArgs {
    /// The `--ops` list.
    pub(super) fn op_list(&self) -> Vec<&str> {
        self.ops.split(',').map(str::trim).collect()
    }

    /// The `pca-stream` sizes (M×N), parsed as the bench parses them.
    pub(super) fn pca_stream_sizes(&self) -> Result<Vec<(usize, usize)>> {
        let default = OPS
            .iter()
            .find(|(op, _)| *op == "pca-stream")
            .map_or(&[][..], |(_, d)| *d);
        Ok(parse_sizes("pca-stream", &self.sizes, default)?
            .into_iter()
            .map(|d| (d[0], d[1]))
            .collect())
    }

    /// Timed repeats.
    pub(super) fn repeats(&self) -> usize {
        self.repeat.max(1)
    }
}

/// Row `i` of the `pca-stream` bench matrix of `n` columns (the same on every rank that
/// generates it): uniform values with a decaying column scale around 2.
pub(super) fn pca_bench_row(i: usize, n: usize, out: &mut Vec<f32>) {
    let row = crate::random::cpu::stream(n, 9 + i as u64, None);
    out.extend(
        row.iter()
            .enumerate()
            .map(|(j, u)| (2.0 * u - 1.0) * (1.0 + (n - j) as f32 / 8.0) + 2.0),
    );
}

/// `sklearn.decomposition.PCA(10)` of a random m×n matrix with a decaying column scale, in
/// GB/s of input consumed: by `pca_stream` over row blocks of a `.npy` file (a temporary file,
/// written once; the default 256 MiB budget), and by the in-memory `pca` of the same matrix.
/// Both are judged by the explained variance against the f64 covariance, computed once.
fn pca_cases(m: usize, n: usize) -> Result<[BenchCase; 2]> {
    let mut a = Vec::with_capacity(m * n);
    (0..m).for_each(|i| pca_bench_row(i, n, &mut a));
    let dir = std::env::temp_dir().join(format!("gpu-linalg-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let path = dir.join(format!("pca-{m}x{n}.npy"));
    crate::npy::write_npy_f32(&path, &[m, n], &a)?;
    let exact = crate::streamed::covariance_eigenvalues_f64(&a, m, n)?;
    Ok([
        pca_case(m, n, a.clone(), exact.clone(), Some(TempFile(path))),
        pca_case(m, n, a, exact, None),
    ])
}

/// One row of [`pca_cases`]: streamed from `file` when there is one, else in memory; `exact`
/// is the f64 covariance's eigenvalues of `a`.
fn pca_case(m: usize, n: usize, a: Vec<f32>, exact: Vec<f64>, file: Option<TempFile>) -> BenchCase {
    let k = PCA_BENCH_COMPONENTS.min(n).min(m.saturating_sub(1));
    let streamed = file.is_some();
    let judge: Box<JudgeFn> = Box::new(move |o| {
        for (i, (got, want)) in o[0].iter().zip(&exact).enumerate() {
            let rel = (f64::from(*got) - want).abs() / want.abs().max(f64::MIN_POSITIVE);
            if rel > 1e-3 {
                return Err(Error::Verification(format!(
                    "pca {m}x{n}: explained variance {i} is {got}, the f64 covariance's {want} (relative {rel:.1e})"
                )));
            }
        }
        Ok(())
    });
    let run: Box<RunFn> = Box::new(move |ctx: &Context, t: &[Tensor], _| {
        let ev = match &file {
            Some(TempFile(path)) => {
                let mut src = crate::NpyRowBlocks::open(path, crate::MemoryBudget::default())?;
                ctx.pca_stream(&mut src, k, crate::PcaStreamMethod::Auto)?
                    .explained_variance
            }
            None => ctx.pca(&t[0], k)?.explained_variance,
        };
        Ok(Output::from(ev))
    });
    BenchCase {
        bytes: (m * n * 4) as f64,
        note: if streamed { "" } else { " [in memory]" },
        chosen: Box::new(move |_| {
            Ok(if streamed {
                "covariance over row blocks".to_string()
            } else {
                "svd of the centred matrix".to_string()
            })
        }),
        ..decomposition_case(
            "pca-stream",
            format!("{m}x{n}"),
            (m * n) as f64,
            (vec![m, n], a),
            judge,
            run,
        )
    }
}

/// Copies `bytes` bytes buffer to buffer on the GPU, bracketed by two empty compute passes so
/// that [`Context::time_gpu`] times it like a kernel: the adapter's bandwidth limit.
fn gpu_copy(
    ctx: &Context,
    src: &std::sync::Arc<GpuBuffer>,
    dst: &std::sync::Arc<GpuBuffer>,
    bytes: u64,
) -> Result<()> {
    let Some(gpu) = ctx.gpu() else {
        return Err(Error::InvalidArgument("no GPU on this context".into()));
    };
    gpu.scoped("buffer copy", || {
        let mut enc = gpu.encoder("copy");
        drop(enc.pass());
        enc.copy(src, 0, dst, 0, bytes);
        drop(enc.pass());
        enc.submit()
    })?
}

/// Pseudo-random values uniform in [-1, 1) (the library's Philox stream): well-conditioned
/// dense test matrices for the decompositions.
fn random_values(len: usize, seed: u64) -> Vec<f32> {
    crate::random::cpu::stream(len, seed, None)
        .into_iter()
        .map(|u| 2.0 * u - 1.0)
        .collect()
}

/// Fails with the ratios when any of them reaches `bound`.
fn ratios_below(what: &str, ratios: &[f64], bound: f64) -> Result<()> {
    if ratios.iter().all(|r| *r < bound) {
        Ok(())
    } else {
        Err(Error::Verification(format!(
            "{what}: LAPACK test ratios {ratios:.3?} reach {bound}"
        )))
    }
}

/// A decomposition case reported in seconds (flops and bytes 0).
fn decomposition_case(
    op: &'static str,
    shape: String,
    size: f64,
    input: (Vec<usize>, Vec<f32>),
    judge: Box<JudgeFn>,
    run: Box<RunFn>,
) -> BenchCase {
    BenchCase {
        op,
        shape,
        size,
        flops: 0.0,
        bytes: 0.0,
        verify: Verify::Ratios(judge),
        cpu_one_thread: op == "svd-batched",
        dtype: DType::F32,
        inputs: vec![input],
        note: "",
        baselines: vec![],
        chosen: Box::new(move |c| {
            Ok(match op {
                "svd" | "svdvals" | "eigh" | "eigvalsh" => "two-stage band".to_string(),
                "qr" => "blocked householder".to_string(),
                "cholesky" => format!("blocked, b = {}", crate::CHOLESKY_BLOCK),
                "lu" | "solve" | "inv" => format!("blocked lu, b = {}", crate::LU_BLOCK),
                "svd-batched" => format!("jacobi {}", c.svd_batched_kernel()?),
                _ => "one-sided jacobi".to_string(),
            })
        }),
        run,
    }
}

/// The thin SVD of a random m×n matrix, judged by LAPACK's ratios (< 35).
fn svd_case(m: usize, n: usize) -> BenchCase {
    let a = random_values(m * n, 6);
    let keep = a.clone();
    decomposition_case(
        "svd",
        format!("{m}x{n}"),
        ((m * n * n.min(m)) as f64).cbrt(),
        (vec![m, n], a),
        Box::new(move |o| {
            ratios_below(
                &format!("svd {m}x{n}"),
                &crate::svd::cpu::ratios(&keep, m, n, &o[0], &o[1], &o[2]),
                35.0,
            )
        }),
        Box::new(|ctx: &Context, t: &[Tensor], _| {
            let r = ctx.svd(&t[0])?;
            let mut out = output(
                ctx,
                vec![r.u, r.s, r.vt],
                r.sweeps,
                (r.dispatches, r.submits),
            );
            // Only the Jacobi methods sweep (the band SVD reports none).
            out.sweeps = out.sweeps.filter(|&s| s > 0);
            Ok(out)
        }),
    )
}

/// The singular values alone of a random m×n matrix, judged against the f64 reference:
/// |σᵢ − σᵢ*| ≤ 35·max(m, n)·ε·σ₁ (the perturbation bound of a backward-stable SVD at the ratio
/// bound of [`svd_case`]).
fn svdvals_case(m: usize, n: usize) -> BenchCase {
    let a = random_values(m * n, 6);
    let keep = a.clone();
    decomposition_case(
        "svdvals",
        format!("{m}x{n}"),
        ((m * n * n.min(m)) as f64).cbrt(),
        (vec![m, n], a),
        Box::new(move |o| {
            let exact = crate::svd::cpu::singular_values_f64(&keep, m, n)?;
            let bound = 35.0 * m.max(n) as f64 * f64::from(f32::EPSILON) * exact[0].max(0.0);
            values_within(&format!("svdvals {m}x{n}"), &o[0], &exact, bound)
        }),
        Box::new(|ctx: &Context, t: &[Tensor], _| {
            let (s, spent) = crate::runtime::counted(|| ctx.svdvals(&t[0]))?;
            let mut out = output(ctx, vec![s], 0, (spent.dispatches, spent.submits));
            out.sweeps = None;
            Ok(out)
        }),
    )
}

/// Fails unless every computed value lies within `bound` of the exact one.
fn values_within(what: &str, got: &[f32], exact: &[f64], bound: f64) -> Result<()> {
    let worst = got
        .iter()
        .zip(exact)
        .map(|(g, e)| (f64::from(*g) - e).abs())
        .fold(0.0, f64::max);
    if got.len() == exact.len() && worst <= bound {
        Ok(())
    } else {
        Err(Error::Verification(format!(
            "{what}: {} values, worst error {worst:.3e} above {bound:.3e}",
            got.len()
        )))
    }
}

/// The eigen-decomposition of a random symmetric n×n matrix, judged by LAPACK's ratios (< 60).
/// The Cholesky factor of a random n×n symmetric matrix made positive definite by its diagonal
/// (n + 1 on a diagonal of entries in [−1, 1)), judged by LAPACK's `dchkpo` ratio; rated in
/// LAPACK's nominal n³/3 flops.
fn cholesky_case(n: usize) -> BenchCase {
    let b = random_values(n * n, 11);
    let a: Vec<f32> = (0..n * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            if r == c {
                n as f32 + 1.0
            } else {
                b[r.min(c) * n + r.max(c)]
            }
        })
        .collect();
    let keep = a.clone();
    BenchCase {
        flops: (n as f64).powi(3) / 3.0,
        ..decomposition_case(
            "cholesky",
            format!("{n}x{n}"),
            n as f64,
            (vec![n, n], a),
            Box::new(move |o| {
                ratios_below(
                    &format!("cholesky {n}x{n}"),
                    &[crate::cholesky::cpu::ratio(&keep, n, &o[0])],
                    30.0,
                )
            }),
            Box::new(|ctx: &Context, t: &[Tensor], _| Ok(ctx.cholesky(&t[0])?.into())),
        )
    }
}

/// A random n×n matrix with its diagonal raised to n/4 (well conditioned, pivoting still
/// active): the operand of the LU-based rows.
fn general_matrix(n: usize, seed: u64) -> Vec<f32> {
    let mut a = random_values(n * n, seed);
    for i in 0..n {
        a[i * n + i] += n as f32 / 4.0;
    }
    a
}

/// The partial-pivoting LU of a random n×n matrix, judged by LAPACK's `dchkge` ratio; rated
/// in LAPACK's nominal 2n³/3 flops.
fn lu_case(n: usize) -> BenchCase {
    let a = general_matrix(n, 12);
    let keep = a.clone();
    BenchCase {
        flops: 2.0 * (n as f64).powi(3) / 3.0,
        ..decomposition_case(
            "lu",
            format!("{n}x{n}"),
            n as f64,
            (vec![n, n], a),
            Box::new(move |o| {
                ratios_below(
                    &format!("lu {n}x{n}"),
                    &[crate::solve::cpu::lu_ratio(&keep, n, &o[0], &o[1], &o[2])],
                    30.0,
                )
            }),
            Box::new(|ctx: &Context, t: &[Tensor], _| {
                let f = ctx.lu(&t[0])?;
                Ok(Output {
                    tensors: vec![f.p, f.l, f.u],
                    sweeps: None,
                    counts: None,
                })
            }),
        )
    }
}

/// A·X = B for `batch` random n×n matrices and n×k right-hand sides, judged by LAPACK's
/// ratio ‖B − A·X‖/(‖A‖·‖X‖·n·ε) (< 30) on every matrix; rated in LAPACK's nominal
/// 2n³/3 + 2n²k flops per matrix.
fn solve_case(batch: usize, n: usize, k: usize) -> BenchCase {
    let a: Vec<f32> = (0..batch)
        .flat_map(|z| general_matrix(n, 13 + z as u64))
        .collect();
    let b = random_values(batch * n * k, 14);
    let (ka, kb) = (a.clone(), b.clone());
    let nf = n as f64;
    let (shape, a_shape, b_shape) = if batch == 1 {
        (format!("{n}x{n}x{k}"), vec![n, n], vec![n, k])
    } else {
        (
            format!("{batch}x{n}x{n}x{k}"),
            vec![batch, n, n],
            vec![batch, n, k],
        )
    };
    let mut case = BenchCase {
        flops: batch as f64 * (2.0 * nf.powi(3) / 3.0 + 2.0 * nf * nf * k as f64),
        inputs: vec![(a_shape, a), (b_shape, b)],
        cpu_one_thread: false,
        dtype: DType::F32,
        ..decomposition_case(
            "solve",
            shape,
            nf * (batch as f64).cbrt(),
            (vec![], vec![]),
            Box::new(move |o| {
                let worst = (0..batch)
                    .map(|z| {
                        crate::solve::cpu::solve_ratio(
                            &ka[z * n * n..(z + 1) * n * n],
                            n,
                            k,
                            &kb[z * n * k..(z + 1) * n * k],
                            &o[0][z * n * k..(z + 1) * n * k],
                        )
                    })
                    .fold(0.0, f64::max);
                ratios_below(&format!("solve {batch}x{n}x{n}x{k}"), &[worst], 30.0)
            }),
            Box::new(|ctx: &Context, t: &[Tensor], _| Ok(ctx.solve(&t[0], &t[1])?.into())),
        )
    };
    if n <= crate::SMALL_MAX_N {
        case.chosen = Box::new(move |c| Ok(format!("batched small, {}", c.small_solve_kernel(n)?)));
    }
    case
}

/// The inverse of a random n×n matrix, judged by LAPACK's ratio
/// ‖I − A·A⁻¹‖/(n·‖A‖·‖A⁻¹‖·ε) (< 30); rated in LAPACK's nominal 2n³ flops (getrf + getri).
fn inv_case(n: usize) -> BenchCase {
    let a = general_matrix(n, 15);
    let keep = a.clone();
    BenchCase {
        flops: 2.0 * (n as f64).powi(3),
        ..decomposition_case(
            "inv",
            format!("{n}x{n}"),
            n as f64,
            (vec![n, n], a),
            Box::new(move |o| {
                ratios_below(
                    &format!("inv {n}x{n}"),
                    &[crate::solve::cpu::inv_ratio(&keep, n, &o[0])],
                    30.0,
                )
            }),
            Box::new(|ctx: &Context, t: &[Tensor], _| Ok(ctx.inv(&t[0])?.into())),
        )
    }
}

fn eigh_case(n: usize) -> BenchCase {
    let b = random_values(n * n, 7);
    let a: Vec<f32> = (0..n * n)
        .map(|i| 0.5 * (b[i] + b[(i % n) * n + i / n]))
        .collect();
    let keep = a.clone();
    decomposition_case(
        "eigh",
        format!("{n}x{n}"),
        n as f64,
        (vec![n, n], a),
        Box::new(move |o| {
            ratios_below(
                &format!("eigh {n}x{n}"),
                &crate::decomp::cpu::eigh_ratios(&keep, n, &o[0], &o[1]),
                60.0,
            )
        }),
        Box::new(|ctx: &Context, t: &[Tensor], _| {
            let r = ctx.eigh(&t[0])?;
            let mut out = output(
                ctx,
                vec![r.values, r.vectors],
                r.sweeps,
                (r.dispatches, r.submits),
            );
            // Only the Jacobi path sweeps (the band eigensolver reports none).
            out.sweeps = out.sweeps.filter(|&s| s > 0);
            Ok(out)
        }),
    )
}

/// The eigenvalues alone of a random symmetric n×n matrix, judged against the f64 reference:
/// |λᵢ − λᵢ*| ≤ 60·n·ε·max|λ*| (the perturbation bound at the ratio bound of [`eigh_case`]).
fn eigvalsh_case(n: usize) -> BenchCase {
    let b = random_values(n * n, 7);
    let a: Vec<f32> = (0..n * n)
        .map(|i| 0.5 * (b[i] + b[(i % n) * n + i / n]))
        .collect();
    let keep = a.clone();
    decomposition_case(
        "eigvalsh",
        format!("{n}x{n}"),
        n as f64,
        (vec![n, n], a),
        Box::new(move |o| {
            let exact = crate::decomp::cpu::eigenvalues_f64(&keep, n)?;
            let top = exact.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let bound = 60.0 * n as f64 * f64::from(f32::EPSILON) * top;
            values_within(&format!("eigvalsh {n}x{n}"), &o[0], &exact, bound)
        }),
        Box::new(|ctx: &Context, t: &[Tensor], _| {
            let (w, spent) = crate::runtime::counted(|| ctx.eigvalsh(&t[0]))?;
            let mut out = output(ctx, vec![w], 0, (spent.dispatches, spent.submits));
            out.sweeps = None;
            Ok(out)
        }),
    )
}

/// The reduced QR of a random m×n matrix, judged by LAPACK's ratios (< 35); rated in LAPACK's
/// nominal geqrf flops 2mn² − 2n³/3 (n ≤ m), though the row also forms Q.
fn qr_case(m: usize, n: usize) -> BenchCase {
    let a = random_values(m * n, 8);
    let keep = a.clone();
    let (mf, nf) = (m as f64, n as f64);
    let flops = if m >= n {
        2.0 * mf * nf * nf - 2.0 * nf.powi(3) / 3.0
    } else {
        2.0 * nf * mf * mf - 2.0 * mf.powi(3) / 3.0
    };
    // The path the default takes (tall-skinny matrices try CholeskyQR3 first).
    let chosen: Box<ChosenFn> = Box::new(move |_| {
        Ok(if m >= crate::QR_CHOLESKY_RATIO * n {
            "cholesky-qr".to_string()
        } else {
            "blocked householder".to_string()
        })
    });
    BenchCase {
        flops,
        chosen,
        ..decomposition_case(
            "qr",
            format!("{m}x{n}"),
            ((m * n * n.min(m)) as f64).cbrt(),
            (vec![m, n], a),
            Box::new(move |o| {
                ratios_below(
                    &format!("qr {m}x{n}"),
                    &crate::qr::cpu::ratios(&keep, m, n, &o[0], &o[1]),
                    35.0,
                )
            }),
            Box::new(|ctx: &Context, t: &[Tensor], _| {
                let r = ctx.qr(&t[0])?;
                Ok(Output {
                    tensors: vec![r.q, r.r],
                    sweeps: None,
                    counts: ctx.is_gpu().then_some(crate::GpuCounters {
                        dispatches: r.dispatches,
                        submits: r.submits,
                    }),
                })
            }),
        )
    }
}

/// The SVDs of `batch` random m×n matrices in one call, every matrix judged by LAPACK's ratios.
fn svd_batched_case(batch: usize, m: usize, n: usize) -> BenchCase {
    let a = random_values(batch * m * n, 9);
    let keep = a.clone();
    let k = m.min(n);
    decomposition_case(
        "svd-batched",
        format!("{batch}x{m}x{n}"),
        batch as f64,
        (vec![batch, m, n], a),
        Box::new(move |o| {
            let mut worst = [0.0f64; 3];
            for b in 0..batch {
                let r = crate::svd::cpu::ratios(
                    &keep[b * m * n..(b + 1) * m * n],
                    m,
                    n,
                    &o[0][b * m * k..(b + 1) * m * k],
                    &o[1][b * k..(b + 1) * k],
                    &o[2][b * k * n..(b + 1) * k * n],
                );
                for (w, x) in worst.iter_mut().zip(r) {
                    *w = w.max(x);
                }
            }
            ratios_below(
                &format!("svd-batched {batch}x{m}x{n} (worst matrix)"),
                &worst,
                35.0,
            )
        }),
        Box::new(|ctx: &Context, t: &[Tensor], _| {
            let r = ctx.svd_batched(&t[0])?;
            Ok(output(
                ctx,
                vec![r.u, r.s, r.vt],
                r.sweeps,
                (r.dispatches, r.submits),
            ))
        }),
    )
}

/// The cases of `op` (matmul: square sizes; conv2d: the fixed layers, each followed by a
/// matmul of its equivalent GEMM shape M = OH·OW, K = C_in·KH·KW, N = C_out when ungrouped).
fn cases_for(op: &str, sizes: &[Vec<usize>]) -> Result<Vec<BenchCase>> {
    let square = |d: &[usize]| -> (usize, usize) {
        match *d {
            [m, n] => (m, n),
            [n, ..] => (n, n),
            [] => (0, 0),
        }
    };
    match op {
        op if let Some(dtype) = matmul_dtype(op) => sizes
            .iter()
            .map(|d| match **d {
                [m, k, n] => matmul_case_in(dtype, m, k, n, " [shape]"),
                _ => {
                    let n = d.first().copied().unwrap_or(0);
                    matmul_case_in(dtype, n, n, n, "")
                }
            })
            .collect(),
        "reduce" => Ok(sizes
            .iter()
            .map(|d| reduce_case(d.first().copied().unwrap_or(0)))
            .collect()),
        "svd" => Ok(sizes
            .iter()
            .map(|d| {
                let (m, n) = square(d);
                svd_case(m, n)
            })
            .collect()),
        "svdvals" => Ok(sizes
            .iter()
            .map(|d| {
                let (m, n) = square(d);
                svdvals_case(m, n)
            })
            .collect()),
        "eigh" => Ok(sizes.iter().map(|d| eigh_case(square(d).0)).collect()),
        "eigvalsh" => Ok(sizes.iter().map(|d| eigvalsh_case(square(d).0)).collect()),
        "cholesky" => Ok(sizes.iter().map(|d| cholesky_case(square(d).0)).collect()),
        "lu" => Ok(sizes.iter().map(|d| lu_case(square(d).0)).collect()),
        "inv" => Ok(sizes.iter().map(|d| inv_case(square(d).0)).collect()),
        // n: one right-hand side and 64 of them; BxN (or BxNxN): a batch of B systems with one.
        "solve" => Ok(sizes
            .iter()
            .flat_map(|d| match **d {
                [n] => vec![solve_case(1, n, 1), solve_case(1, n, 64)],
                [b, n] | [b, n, _] => vec![solve_case(b, n, 1)],
                _ => vec![solve_case(1, 0, 1)],
            })
            .collect()),
        "qr" => Ok(sizes
            .iter()
            .map(|d| {
                let (m, n) = square(d);
                qr_case(m, n)
            })
            .collect()),
        "svd-batched" => Ok(sizes
            .iter()
            .map(|d| match **d {
                [b, m, n] => svd_batched_case(b, m, n),
                _ => svd_batched_case(0, 0, 0),
            })
            .collect()),
        "pca-stream" => sizes
            .iter()
            .flat_map(|d| {
                let (m, n) = square(d);
                match pca_cases(m, n) {
                    Ok(cases) => cases.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                }
            })
            .collect(),
        "chained" => Ok(Vec::new()),
        "conv2d" => {
            let mut out = Vec::new();
            for &(x, w, pad, groups) in CONV_LAYERS {
                let c = conv_case(x, w, pad, groups)?;
                out.push(c);
                if groups == 1 {
                    let opts = ConvOptions {
                        padding: Padding::from(pad),
                        ..Default::default()
                    };
                    let p = ConvPlan::new(ConvKind::Conv2d, &x, &w, &opts)?;
                    out.push(matmul_case(p.m(), p.k(), p.cout, " [conv GEMM]")?);
                }
            }
            Ok(out)
        }
        other => Err(Error::InvalidArgument(format!(
            "no benchmark for op '{other}'"
        ))),
    }
}

/// Most seconds one measurement (all its repeats) runs before it stops repeating: a 1024×1024
/// SVD on a software adapter takes minutes, a matmul milliseconds.
const MEASURE_BUDGET_S: f64 = 20.0;

/// Seconds above which a run counts as long: its verification run is its warm-up, and its
/// measurements stop at [`MEASURE_BUDGET_S`].
const LONG_RUN_S: f64 = 0.5;

fn bench_case(
    args: &BenchArgs,
    case: &BenchCase,
    gpus: &[Target],
    cpu: &Context,
    bar: &ProgressBar,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let what = format!("{} {}", case.op, case.shape);
    let row = |backend,
               label: String,
               t: (f64, f64, Option<f64>, Option<f64>),
               reps,
               (sweeps, counts): (Option<u32>, Option<crate::GpuCounters>)| Row {
        op: case.op.into(),
        shape: case.shape.clone(),
        size: case.size,
        backend,
        label,
        median_s: t.0,
        spread_s: t.1,
        kernel_s: t.2,
        e2e_s: t.3,
        flops: case.flops,
        bytes: case.bytes,
        repeats: reps,
        sweeps,
        ops_per_s: None,
        dispatches: counts.map(|c| c.dispatches),
        submits: counts.map(|c| c.submits),
    };
    let upload = |ctx: &Context, abs: bool| -> Result<Vec<Tensor>> {
        case.inputs
            .iter()
            .map(|(shape, v)| {
                let v: Vec<f32> = if abs {
                    v.iter().map(|x| x.abs()).collect()
                } else {
                    v.clone()
                };
                ctx.cast(&ctx.tensor(shape, &v)?, case.dtype)
            })
            .collect()
    };
    // CPU first: its result checks every GPU result (or, for decompositions, is judged too).
    bar.set_message(format!("{what} on the CPU"));
    let ct = upload(cpu, false)?;
    let t0 = Instant::now();
    let cpu_out = (case.run)(cpu, &ct, None)?.read()?;
    let long = t0.elapsed().as_secs_f64() > LONG_RUN_S;
    let mag = match &case.verify {
        Verify::AgainstCpu { .. } => (case.run)(cpu, &upload(cpu, true)?, None)?.read()?,
        Verify::Ratios(judge) => {
            judge(&cpu_out).map_err(|e| Error::Verification(format!("CPU backend: {e}")))?;
            Vec::new()
        }
    };
    let cpu_run = || (case.run)(cpu, &ct, None).and_then(Output::wait);
    let (cpu_s, cpu_spread, cpu_reps) = time_plain(args.repeat, !long, &cpu_run)?;
    let lib = match case.op {
        "reduce" => "rayon",
        _ => "faer",
    };
    let r = row(
        "cpu",
        format!("cpu ({lib}){}", case.note),
        (cpu_s, cpu_spread, None, None),
        cpu_reps,
        (None, None),
    );
    bar.suspend(|| print_row(&r, cpu_s));
    rows.push(r);
    if case.cpu_one_thread {
        bar.set_message(format!("{what} on one CPU thread"));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("a one-thread pool: {e}")))?;
        let (s1, spread1, reps1) = pool.install(|| time_plain(args.repeat, !long, &cpu_run))?;
        let r = row(
            "cpu",
            format!("cpu ({lib}, 1 thread)"),
            (s1, spread1, None, None),
            reps1,
            (None, None),
        );
        bar.suspend(|| print_row(&r, cpu_s));
        rows.push(r);
    }
    bar.inc(1);
    for t in gpus {
        let ctx = &t.ctx;
        let gt = upload(ctx, false)?;
        let chosen = (case.chosen)(ctx)?;
        let mut kernels = vec![(None, format!("{} {chosen}{}", t.label, case.note))];
        kernels.extend(
            case.baselines
                .iter()
                .map(|(k, l)| (Some(*k), format!("{} {l}", t.label))),
        );
        for (kernel, label) in kernels {
            bar.set_message(format!("{what} on {label}"));
            let t0 = Instant::now();
            let out = (case.run)(ctx, &gt, kernel)?;
            let sweeps = (out.sweeps, out.counts);
            let got = out.read()?;
            let long = t0.elapsed().as_secs_f64() > LONG_RUN_S;
            match &case.verify {
                Verify::AgainstCpu { terms } => {
                    check_against_cpu(&what, (*terms, case.dtype), &got[0], &cpu_out[0], &mag[0])?
                }
                Verify::Ratios(judge) => judge(&got)?,
            }
            // Baseline kernels are slow: fewer repeats.
            let reps = if kernel.is_some() {
                args.repeat.min(3)
            } else {
                args.repeat
            };
            let resident = || {
                (case.run)(ctx, &gt, kernel).and_then(Output::wait)?;
                ctx.synchronize()
            };
            let (med, spread, kern, done) = match case.verify {
                Verify::AgainstCpu { .. } => time_gpu_op(ctx, reps, !long, &resident)?,
                // Decompositions run hundreds of passes and read back between sweeps:
                // timestamp queries on every pass would slow them (by 40% on lavapipe at
                // 64×64), and first-pass-to-last-pass is no kernel time for them. Wall time.
                Verify::Ratios(_) => {
                    let (med, spread, done) = time_plain(reps, !long, &resident)?;
                    (med, spread, None, done)
                }
            };
            let (e2e, _, _) = time_plain(reps, !long, &|| {
                (case.run)(ctx, &upload(ctx, false)?, kernel)?
                    .read()
                    .map(drop)
            })?;
            let r = row("gpu", label, (med, spread, kern, Some(e2e)), done, sweeps);
            bar.suspend(|| print_row(&r, cpu_s));
            rows.push(r);
            bar.inc(1);
        }
        if case.op == "reduce" {
            // The bandwidth limit: a buffer-to-buffer copy of the same bytes, timed the same way.
            bar.set_message(format!("{what}: copy on {}", t.label));
            let bytes = case.bytes as u64;
            let src = ctx.resident(&gt[0])?;
            let dst = ctx.resident(&ctx.zeros(&case.inputs[0].0)?)?;
            let (med, spread, kern, done) =
                time_gpu_op(ctx, args.repeat, true, &|| gpu_copy(ctx, &src, &dst, bytes))?;
            let (e2e, _, _) = time_plain(args.repeat, true, &|| {
                let s = ctx.resident(&ctx.tensor(&case.inputs[0].0, &case.inputs[0].1)?)?;
                gpu_copy(ctx, &s, &dst, bytes)?;
                Tensor::from_gpu(case.inputs[0].0.clone(), DType::F32, dst.clone())
                    .to_vec()
                    .map(drop)
            })?;
            let r = row(
                "gpu",
                format!("{} buffer copy (bandwidth limit)", t.label),
                (med, spread, kern, Some(e2e)),
                done,
                (None, None),
            );
            bar.suspend(|| print_row(&r, cpu_s));
            rows.push(r);
        }
    }
    Ok(())
}

/// Writes `text` to a temporary file beside `path`, then renames it into place.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::report::{to_csv, to_json};
    use super::*;

    fn row() -> Row {
        Row {
            op: "matmul".into(),
            shape: "2x2x2".into(),
            size: 2.0,
            backend: "gpu",
            label: "gpu \"x\", y".into(),
            median_s: 1e-3,
            spread_s: 1e-4,
            kernel_s: Some(5e-4),
            e2e_s: None,
            flops: 16.0,
            bytes: 0.0,
            repeats: 3,
            sweeps: None,
            ops_per_s: None,
            dispatches: None,
            submits: None,
        }
    }

    #[test]
    fn csv_quotes_and_leaves_missing_values_empty() {
        let csv = to_csv(&[row()]).unwrap();
        let line = csv.lines().nth(1).unwrap();
        assert!(
            line.starts_with("matmul,2x2x2,gpu,\"gpu \"\"x\"\", y\",1e-3,1e-4,5e-4,,"),
            "{line}"
        );
    }

    #[test]
    fn sizes_parse_by_the_forms_each_op_takes() {
        let sizes = |op, s: &str| parse_sizes(op, &Some(s.to_string()), &[]);
        assert_eq!(
            sizes("svd", "256,4096x256").unwrap(),
            vec![vec![256], vec![4096, 256]]
        );
        assert_eq!(
            sizes("svd-batched", "10000x16x16").unwrap(),
            vec![vec![10000, 16, 16]]
        );
        assert_eq!(
            sizes("matmul", "64x128x32").unwrap(),
            vec![vec![64, 128, 32]]
        );
        for (op, bad) in [
            ("svd-batched", "16"),
            ("eigh", "4x4"),
            ("svd", "0"),
            ("qr", "4xq"),
        ] {
            let e = sizes(op, bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(op), "{e}");
        }
    }

    #[test]
    fn time_only_rows_have_no_rate() {
        let mut r = row();
        r.flops = 0.0;
        r.sweeps = Some(9);
        assert!(r.is_time_only() && r.rate(1.0).is_nan());
        let j = to_json(
            &Machine {
                adapter: None,
                api: None,
                driver: None,
                cpu: "c".into(),
                threads: 1,
            },
            &[r],
        )
        .unwrap();
        assert!(
            j.contains("\"gflops\": null") && j.contains("\"sweeps\": 9"),
            "{j}"
        );
    }

    #[test]
    fn json_has_the_contract_fields() {
        let m = Machine {
            adapter: None,
            api: Some("Vulkan".into()),
            driver: None,
            cpu: "c".into(),
            threads: 2,
        };
        let j = to_json(&m, &[row()]).unwrap();
        for f in [
            "\"adapter\": null",
            "\"api\": \"Vulkan\"",
            "\"kernel_s\": 5e-4",
            "\"e2e_s\": null",
            "\"gbs\": null",
            "\"repeats\": 3",
            "\"sweeps\": null",
            "\"ops_per_s\": null",
            "\"dispatches\": null",
            "\"submits\": null",
        ] {
            assert!(j.contains(f), "{f} missing in {j}");
        }
        let chained = Row {
            op: "chained".into(),
            label: "gpu per-op".into(),
            ops_per_s: Some(2500.0),
            dispatches: Some(1000),
            submits: Some(1001),
            ..row()
        };
        let j = to_json(&m, &[chained]).unwrap();
        for f in [
            "\"op\": \"chained\"",
            "\"kernel\": \"gpu per-op\"",
            "\"ops_per_s\": 2.5e3",
            "\"dispatches\": 1000",
            "\"submits\": 1001",
        ] {
            assert!(j.contains(f), "{f} missing in {j}");
        }
    }

    // The hand-written writers the serde ones replaced, kept to check the schema is unchanged.
    fn json_str(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn json_num(v: Option<f64>) -> String {
        match v {
            Some(x) if x.is_finite() => format!("{x:e}"),
            _ => "null".into(),
        }
    }

    fn json_count(v: Option<u64>) -> String {
        v.map(|x| x.to_string()).unwrap_or_else(|| "null".into())
    }

    fn json_opt_str(v: &Option<String>) -> String {
        v.as_deref().map(json_str).unwrap_or_else(|| "null".into())
    }

    /// The JSON report: `{"machine": {...}, "results": [...]}` (field names are a contract).
    fn legacy_to_json(m: &Machine, rows: &[Row]) -> String {
        let results: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"op\": {}, \"shape\": {}, \"backend\": {}, \"kernel\": {}, \"median_s\": {}, \"spread_s\": {}, \"kernel_s\": {}, \"e2e_s\": {}, \"gflops\": {}, \"gbs\": {}, \"repeats\": {}, \"sweeps\": {}, \"ops_per_s\": {}, \"dispatches\": {}, \"submits\": {}}}",
                    json_str(&r.op),
                    json_str(&r.shape),
                    json_str(r.backend),
                    json_str(&r.label),
                    json_num(Some(r.median_s)),
                    json_num(Some(r.spread_s)),
                    json_num(r.kernel_s),
                    json_num(r.e2e_s),
                    json_num(r.gflops(r.median_s)),
                    json_num(r.gbs(r.median_s)),
                    r.repeats,
                    r.sweeps.map(|s| s.to_string()).unwrap_or_else(|| "null".into()),
                    json_num(r.ops_per_s),
                    json_count(r.dispatches),
                    json_count(r.submits)
                )
            })
            .collect();
        format!(
            "{{\"machine\": {{\"adapter\": {}, \"api\": {}, \"driver\": {}, \"cpu\": {}, \"threads\": {}}},\n \"results\": [\n  {}\n]}}\n",
            json_opt_str(&m.adapter),
            json_opt_str(&m.api),
            json_opt_str(&m.driver),
            json_str(&m.cpu),
            m.threads,
            results.join(",\n  ")
        )
    }

    fn csv_field(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }

    fn legacy_to_csv(rows: &[Row]) -> String {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
        let mut out = String::from(
            "op,shape,backend,kernel,median_s,spread_s,kernel_s,e2e_s,gflops,gbs,repeats,sweeps,ops_per_s,dispatches,submits\n",
        );
        for r in rows {
            out.push_str(&format!(
                "{},{},{},{},{:e},{:e},{},{},{},{},{},{},{},{},{}\n",
                csv_field(&r.op),
                csv_field(&r.shape),
                r.backend,
                csv_field(&r.label),
                r.median_s,
                r.spread_s,
                opt(r.kernel_s),
                opt(r.e2e_s),
                opt(r.gflops(r.median_s)),
                opt(r.gbs(r.median_s)),
                r.repeats,
                r.sweeps.map(|s| s.to_string()).unwrap_or_default(),
                opt(r.ops_per_s),
                r.dispatches.map(|s| s.to_string()).unwrap_or_default(),
                r.submits.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        out
    }

    #[test]
    fn serde_writers_match_the_hand_written_ones_byte_for_byte() {
        let m = Machine {
            adapter: Some("llvmpipe \"x\"\n\t\u{1}".into()),
            api: None,
            driver: Some("a\\b/c é".into()),
            cpu: "c, d".into(),
            threads: 16,
        };
        let rows = [
            row(),
            Row {
                op: "reduce".into(),
                label: "line\nbreak\r".into(),
                median_s: 3.0217e-5,
                spread_s: 0.0,
                kernel_s: Some(f64::NAN),
                e2e_s: Some(f64::INFINITY),
                flops: 0.0,
                bytes: 4096.0,
                sweeps: Some(7),
                ops_per_s: Some(1234.5678),
                dispatches: Some(u64::MAX),
                submits: Some(0),
                ..row()
            },
        ];
        assert_eq!(to_json(&m, &rows).unwrap(), legacy_to_json(&m, &rows));
        assert_eq!(to_json(&m, &[]).unwrap(), legacy_to_json(&m, &[]));
        assert_eq!(to_csv(&rows).unwrap(), legacy_to_csv(&rows));
        assert_eq!(to_csv(&[]).unwrap(), legacy_to_csv(&[]));
    }
}
