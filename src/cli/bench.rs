//! `gpu-linalg bench`: the fast CPU backend against the GPU — kernel time (timestamp queries),
//! time on resident data, and end to end — every GPU result checked against the CPU's first.
//! Output: a table, and optionally JSON, CSV and a plot.

mod plot;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::GlobalOpts;
use crate::context::GpuBuffer;
use crate::cpu::gamma;
use crate::error::{Error, Result};
use crate::tensor::DType;
use crate::{
    Backend, Context, ContextOptions, ConvKind, ConvOptions, ConvPlan, MatmulOptions, MatmulPlan,
    Padding, ReduceOp, ReduceOptions, Tensor,
};

/// The ops `bench` knows, with their default sizes (conv2d runs fixed ResNet-like layers).
const OPS: &[(&str, &[usize])] = &[
    ("matmul", &[256, 512, 1024]),
    ("conv2d", &[]),
    ("reduce", &[1 << 20, 1 << 22, 1 << 24]),
];

/// Arguments of `gpu-linalg bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated ops to run (available: matmul, conv2d, reduce).
    #[arg(long, default_value = "matmul,conv2d,reduce")]
    ops: String,
    /// Comma-separated sizes: n for square matmul (default 256,512,1024), elements for reduce
    /// (default 2^20, 2^22, 2^24); conv2d always runs its fixed ResNet-like layers.
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
}

impl Row {
    /// True for bandwidth-bound ops, whose rate is GB/s rather than GFLOP/s.
    pub fn is_bandwidth(&self) -> bool {
        self.flops == 0.0 && self.bytes > 0.0
    }

    fn gflops(&self, secs: f64) -> Option<f64> {
        (!self.is_bandwidth()).then(|| self.flops / secs / 1e9)
    }

    fn gbs(&self, secs: f64) -> Option<f64> {
        self.is_bandwidth().then(|| self.bytes / secs / 1e9)
    }

    /// GFLOP/s, or GB/s for bandwidth-bound ops.
    pub fn rate(&self, secs: f64) -> f64 {
        self.gflops(secs).or(self.gbs(secs)).unwrap_or(f64::NAN)
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
    let ops: Vec<(&str, Vec<usize>)> = args
        .ops
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|op| {
            let (name, defaults) = OPS.iter().find(|(n, _)| *n == op).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown op '{op}' for bench; available: {}",
                    OPS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ))
            })?;
            Ok((*name, parse_sizes(&args.sizes, defaults)?))
        })
        .collect::<Result<_>>()?;

    let backend: Backend = g.backend.parse()?;
    let main = Context::with_options(ContextOptions {
        backend,
        adapter: g.adapter.clone(),
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
    bar.finish_and_clear();
    if let Some(path) = &args.json {
        write_atomic(path, &to_json(&machine, &rows))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        write_atomic(path, &to_csv(&rows))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &machine, &rows)?;
        println!("wrote {}", path.display());
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

fn parse_sizes(s: &Option<String>, default: &[usize]) -> Result<Vec<usize>> {
    match s {
        None => Ok(default.to_vec()),
        Some(s) => s
            .split(',')
            .map(|x| match x.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(Error::InvalidArgument(format!(
                    "bad size '{x}' in --sizes; expected positive numbers like 256,512"
                ))),
            })
            .collect(),
    }
}

fn print_header() {
    println!(
        "{:<7} {:<24} {:<39} {:>10} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}  (reduce rows: GB/s)",
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
        "vs CPU"
    );
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn print_row(r: &Row, cpu_s: f64) {
    println!(
        "{:<7} {:<24} {:<39} {:>10.3} {:>9.3} {:>10} {:>10} {:>9.2} {:>9} {:>9} {:>7.2}×",
        r.op,
        r.shape,
        r.label,
        r.median_s * 1e3,
        r.spread_s * 1e3,
        fmt_opt(r.kernel_s, |s| format!("{:.3}", s * 1e3)),
        fmt_opt(r.e2e_s, |s| format!("{:.3}", s * 1e3)),
        r.rate(r.median_s),
        fmt_opt(r.kernel_s, |s| format!("{:.2}", r.rate(s))),
        fmt_opt(r.e2e_s, |s| format!("{:.2}", r.rate(s))),
        cpu_s / r.median_s
    );
}

/// Checks `got` against the CPU result: both lie within γ_k·mag of the exact result (mag is
/// the op on absolute values), so they may differ by twice that.
fn check_against_cpu(
    what: &str,
    terms: usize,
    got: &[f32],
    cpu: &[f32],
    mag: &[f32],
) -> Result<()> {
    let g = 2.0 * gamma(terms) * (1.0 + gamma(terms));
    for (i, ((&x, &y), &m)) in got.iter().zip(cpu).zip(mag).enumerate() {
        let bound = g * f64::from(m) + 1e-30;
        if (f64::from(x) - f64::from(y)).abs() > bound || x.is_nan() != y.is_nan() {
            return Err(Error::Verification(format!(
                "{what}: element {i} is {x} on the GPU but {y} on the CPU (allowed difference {bound:.3e})"
            )));
        }
    }
    Ok(())
}

/// Times `f` `repeat` times after a warm-up, returning (median, spread) of its wall time and the
/// median of the kernel time it reports.
fn time_gpu_op(
    ctx: &Context,
    repeat: usize,
    f: &dyn Fn() -> Result<()>,
) -> Result<(f64, f64, Option<f64>)> {
    f()?;
    ctx.synchronize()?; // the warm-up must not run inside the first timed repeat
    let mut wall = Vec::new();
    let mut kernel = Vec::new();
    for _ in 0..repeat.max(1) {
        let (w, k) = ctx.time_gpu(|| {
            let t = Instant::now();
            f()?;
            ctx.synchronize()?;
            Ok(t.elapsed().as_secs_f64())
        })?;
        wall.push(w);
        kernel.extend(k);
    }
    let (med, spread) = stats(wall);
    let k = (!kernel.is_empty()).then(|| stats(kernel).0);
    Ok((med, spread, k))
}

fn time_plain(repeat: usize, f: &dyn Fn() -> Result<()>) -> Result<(f64, f64)> {
    f()?;
    let mut ts = Vec::new();
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    Ok(stats(ts))
}

/// Runs one op on a context with an optional forced kernel (parsed by the op itself).
type RunFn = dyn Fn(&Context, &[Tensor], Option<&str>) -> Result<Tensor>;

/// Names the GPU kernel a context chose for a case.
type ChosenFn = dyn Fn(&Context) -> Result<String>;

/// One benchmark: an op at one shape, its inputs, and how to run it.
struct BenchCase {
    op: &'static str,
    shape: String,
    size: f64,
    flops: f64,
    /// Bytes read (bandwidth-bound ops; flops is then 0).
    bytes: f64,
    /// Terms summed per output element (the error bound's k).
    terms: usize,
    inputs: Vec<(Vec<usize>, Vec<f32>)>,
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
    let plan = MatmulPlan::new(&[m, k], &[k, n], false, false)?;
    Ok(BenchCase {
        op: "matmul",
        shape: format!("{m}x{k}x{n}"),
        size: ((m * k * n) as f64).cbrt(),
        note,
        flops: plan.flops(),
        bytes: 0.0,
        terms: k,
        inputs: vec![
            (vec![m, k], values(m * k, 1)),
            (vec![k, n], values(k * n, 2)),
        ],
        baselines: if note.is_empty() && n <= 1024 {
            vec![("naive", "naive")]
        } else {
            vec![]
        },
        chosen: Box::new(|c| Ok(c.matmul_config()?.to_string())),
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
        terms: plan.k(),
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
            ctx.conv2d(&t[0], &t[1], &o)
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
        terms: crate::ops::reduce::sum_terms(n),
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
        }),
    }
}

/// Copies `bytes` bytes buffer to buffer on the GPU, bracketed by two empty compute passes so
/// that [`Context::time_gpu`] times it like a kernel: the adapter's bandwidth limit.
fn gpu_copy(ctx: &Context, src: &GpuBuffer, dst: &GpuBuffer, bytes: u64) -> Result<()> {
    let Some(gpu) = ctx.gpu() else {
        return Err(Error::InvalidArgument("no GPU on this context".into()));
    };
    gpu.scoped("buffer copy", || {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("copy"),
            });
        drop(gpu.begin_pass(&mut enc));
        enc.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, bytes);
        drop(gpu.begin_pass(&mut enc));
        gpu.submit(enc);
    })
}

/// The cases of `op` (matmul: square sizes; conv2d: the fixed layers, each followed by a
/// matmul of its equivalent GEMM shape M = OH·OW, K = C_in·KH·KW, N = C_out when ungrouped).
fn cases_for(op: &str, sizes: &[usize]) -> Result<Vec<BenchCase>> {
    match op {
        "matmul" => sizes.iter().map(|&n| matmul_case(n, n, n, "")).collect(),
        "reduce" => Ok(sizes.iter().map(|&n| reduce_case(n)).collect()),
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

fn bench_case(
    args: &BenchArgs,
    case: &BenchCase,
    gpus: &[Target],
    cpu: &Context,
    bar: &ProgressBar,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let what = format!("{} {}", case.op, case.shape);
    let row = |backend, label: String, t: (f64, f64, Option<f64>, Option<f64>), reps| Row {
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
                ctx.tensor(shape, &v)
            })
            .collect()
    };
    // CPU first: its result checks every GPU result.
    bar.set_message(format!("{what} on the CPU"));
    let ct = upload(cpu, false)?;
    let cpu_out = (case.run)(cpu, &ct, None)?.to_vec()?;
    let mag = (case.run)(cpu, &upload(cpu, true)?, None)?.to_vec()?;
    let (cpu_s, cpu_spread) = time_plain(args.repeat, &|| (case.run)(cpu, &ct, None).map(drop))?;
    let r = row(
        "cpu",
        format!(
            "cpu ({}){}",
            if case.op == "reduce" { "rayon" } else { "faer" },
            case.note
        ),
        (cpu_s, cpu_spread, None, None),
        args.repeat,
    );
    bar.suspend(|| print_row(&r, cpu_s));
    rows.push(r);
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
            let got = (case.run)(ctx, &gt, kernel)?.to_vec()?;
            check_against_cpu(&what, case.terms, &got, &cpu_out, &mag)?;
            // Baseline kernels are slow: fewer repeats.
            let reps = if kernel.is_some() {
                args.repeat.min(3)
            } else {
                args.repeat
            };
            let (med, spread, kern) =
                time_gpu_op(ctx, reps, &|| (case.run)(ctx, &gt, kernel).map(drop))?;
            let (e2e, _) = time_plain(reps, &|| {
                (case.run)(ctx, &upload(ctx, false)?, kernel)?
                    .to_vec()
                    .map(drop)
            })?;
            let r = row("gpu", label, (med, spread, kern, Some(e2e)), reps);
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
            let (med, spread, kern) =
                time_gpu_op(ctx, args.repeat, &|| gpu_copy(ctx, &src, &dst, bytes))?;
            let (e2e, _) = time_plain(args.repeat, &|| {
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
                args.repeat,
            );
            bar.suspend(|| print_row(&r, cpu_s));
            rows.push(r);
        }
    }
    Ok(())
}

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

fn json_opt_str(v: &Option<String>) -> String {
    v.as_deref().map(json_str).unwrap_or_else(|| "null".into())
}

/// The JSON report: `{"machine": {...}, "results": [...]}` (field names are a contract).
fn to_json(m: &Machine, rows: &[Row]) -> String {
    let results: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"op\": {}, \"shape\": {}, \"backend\": {}, \"kernel\": {}, \"median_s\": {}, \"spread_s\": {}, \"kernel_s\": {}, \"e2e_s\": {}, \"gflops\": {}, \"gbs\": {}, \"repeats\": {}}}",
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
                r.repeats
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

fn to_csv(rows: &[Row]) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
    let mut out = String::from(
        "op,shape,backend,kernel,median_s,spread_s,kernel_s,e2e_s,gflops,gbs,repeats\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{:e},{:e},{},{},{},{},{}\n",
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
            r.repeats
        ));
    }
    out
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
        }
    }

    #[test]
    fn csv_quotes_and_leaves_missing_values_empty() {
        let csv = to_csv(&[row()]);
        let line = csv.lines().nth(1).unwrap();
        assert!(
            line.starts_with("matmul,2x2x2,gpu,\"gpu \"\"x\"\", y\",1e-3,1e-4,5e-4,,"),
            "{line}"
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
        let j = to_json(&m, &[row()]);
        for f in [
            "\"adapter\": null",
            "\"api\": \"Vulkan\"",
            "\"kernel_s\": 5e-4",
            "\"e2e_s\": null",
            "\"gbs\": null",
            "\"repeats\": 3",
        ] {
            assert!(j.contains(f), "{f} missing in {j}");
        }
    }
}
