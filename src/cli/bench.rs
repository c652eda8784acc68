//! `gpu-linalg bench`: the fast CPU backend against the GPU, on resident data and end to end,
//! every result checked against the CPU's.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::GlobalOpts;
use crate::cpu::matmul::{fast, gamma};
use crate::error::{Error, Result};
use crate::{Backend, Context, ContextOptions, MatmulConfig, MatmulOptions, MatmulPlan};

/// Arguments of `gpu-linalg bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated ops to run (available: matmul).
    #[arg(long, default_value = "matmul")]
    ops: String,
    /// Comma-separated sizes (n for square matmul); each op has its own default.
    #[arg(long)]
    sizes: Option<String>,
    /// Timed repeats per measurement, after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measured row.
#[derive(Clone, Debug)]
struct Row {
    op: String,
    shape: String,
    backend: &'static str,
    label: String,
    median_s: f64,
    spread_s: f64,
    e2e_s: Option<f64>,
    flops: f64,
    repeats: usize,
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

fn stats(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    let median = t[t.len() / 2];
    (median, t[t.len() - 1] - t[0])
}

fn time(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    f()?; // warm-up: pipelines compiled, buffers pooled
    let mut ts = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    Ok(stats(ts))
}

/// A GPU context to bench, with how to label it.
struct Target {
    ctx: Context,
    label: String,
}

/// Runs the benchmark.
pub fn run(g: &GlobalOpts, args: &BenchArgs) -> Result<()> {
    let backend: Backend = g.backend.parse()?;
    let main = Context::with_options(ContextOptions {
        backend,
        adapter: g.adapter.clone(),
    })?;
    let mut gpus = Vec::new();
    if main.is_gpu() {
        gpus.push(Target {
            label: "gpu".into(),
            ctx: main.clone(),
        });
        println!(
            "Benchmarking {} against the fast CPU backend.",
            main.description()
        );
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
    let cpu = Context::with_backend(Backend::Cpu)?;
    println!(
        "CPU: {} ({} threads)",
        cpu_name(),
        rayon::current_num_threads()
    );
    let mut rows = Vec::new();
    for op in args.ops.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match op {
            "matmul" => bench_matmul(args, &gpus, &cpu, &mut rows)?,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown op '{other}' for bench; available: matmul"
                )))
            }
        }
    }
    if let Some(path) = &args.json {
        write_json(path, gpus.first().map(|t| &t.ctx), &rows)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn parse_sizes(s: &Option<String>, default: &[usize]) -> Result<Vec<usize>> {
    match s {
        None => Ok(default.to_vec()),
        Some(s) => s
            .split(',')
            .map(|x| {
                x.trim().parse::<usize>().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "bad size '{x}' in --sizes; expected numbers like 256,512"
                    ))
                })
            })
            .collect(),
    }
}

fn print_header() {
    println!(
        "{:<8} {:<16} {:<28} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "op", "shape", "backend", "median ms", "spread ms", "GFLOP/s", "e2e GF/s", "vs CPU"
    );
}

fn print_row(r: &Row, cpu_s: f64) {
    let gf = r.flops / r.median_s / 1e9;
    let e2e = r
        .e2e_s
        .map(|s| format!("{:.2}", r.flops / s / 1e9))
        .unwrap_or_else(|| "-".into());
    println!(
        "{:<8} {:<16} {:<28} {:>10.3} {:>10.3} {:>10.2} {:>10} {:>8.2}×",
        r.op,
        r.shape,
        r.label,
        r.median_s * 1e3,
        r.spread_s * 1e3,
        gf,
        e2e,
        cpu_s / r.median_s
    );
}

/// Checks `got` against the CPU result: both lie within γ_k·(|A||B|) of the exact product, so
/// they may differ by twice that.
fn check_against_cpu(
    plan: &MatmulPlan,
    a: &[f32],
    b: &[f32],
    got: &[f32],
    cpu: &[f32],
) -> Result<()> {
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let mag = fast(plan, &abs(a), &abs(b), None, crate::Activation::None);
    let g = 2.0 * gamma(plan.k) * (1.0 + gamma(plan.k));
    for (i, ((&x, &y), &m)) in got.iter().zip(cpu).zip(&mag).enumerate() {
        let bound = g * f64::from(m) + 1e-30;
        if (f64::from(x) - f64::from(y)).abs() > bound || x.is_nan() != y.is_nan() {
            return Err(Error::Verification(format!(
                "benchmark result element {i} is {x} on the GPU but {y} on the CPU (allowed difference {bound:.3e})"
            )));
        }
    }
    Ok(())
}

fn bench_matmul(
    args: &BenchArgs,
    gpus: &[Target],
    cpu: &Context,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let sizes = parse_sizes(&args.sizes, &[256, 512, 1024])?;
    print_header();
    for n in sizes {
        let plan = MatmulPlan::new(&[n, n], &[n, n], false, false)?;
        let ha: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let hb: Vec<f32> = (0..n * n)
            .map(|i| ((i * 104_729) % 997) as f32 / 498.5 - 1.0)
            .collect();
        let shape = format!("{n}x{n}x{n}");
        // CPU first: its result checks every GPU result.
        let (ca, cb) = (cpu.tensor(&[n, n], &ha)?, cpu.tensor(&[n, n], &hb)?);
        let cpu_out = cpu.matmul(&ca, &cb)?.to_vec()?;
        let (cpu_s, cpu_spread) = time(args.repeat, || cpu.matmul(&ca, &cb).map(drop))?;
        let cpu_row = Row {
            op: "matmul".into(),
            shape: shape.clone(),
            backend: "cpu",
            label: "cpu (faer)".into(),
            median_s: cpu_s,
            spread_s: cpu_spread,
            e2e_s: None,
            flops: plan.flops(),
            repeats: args.repeat,
        };
        print_row(&cpu_row, cpu_s);
        rows.push(cpu_row);
        for t in gpus {
            let ctx = &t.ctx;
            let mut kernels: Vec<(Option<MatmulConfig>, String)> =
                vec![(None, format!("{} {}", t.label, ctx.matmul_config()?))];
            if n <= 1024 {
                kernels.push((Some(MatmulConfig::NAIVE), format!("{} naive", t.label)));
            }
            let (ga, gb) = (ctx.tensor(&[n, n], &ha)?, ctx.tensor(&[n, n], &hb)?);
            for (kernel, label) in kernels {
                let opts = MatmulOptions {
                    kernel,
                    ..Default::default()
                };
                let got = ctx.matmul_with(&ga, &gb, &opts)?.to_vec()?;
                check_against_cpu(&plan, &ha, &hb, &got, &cpu_out)?;
                let reps = if kernel.is_some() {
                    args.repeat.min(3)
                } else {
                    args.repeat
                };
                let (med, spread) = time(reps, || {
                    let c = ctx.matmul_with(&ga, &gb, &opts)?;
                    ctx.synchronize()?;
                    drop(c);
                    Ok(())
                })?;
                let e2e = if kernel.is_none() {
                    Some(
                        time(reps, || {
                            let a = ctx.tensor(&[n, n], &ha)?;
                            let b = ctx.tensor(&[n, n], &hb)?;
                            ctx.matmul_with(&a, &b, &opts)?.to_vec().map(drop)
                        })?
                        .0,
                    )
                } else {
                    None
                };
                let row = Row {
                    op: "matmul".into(),
                    shape: shape.clone(),
                    backend: "gpu",
                    label,
                    median_s: med,
                    spread_s: spread,
                    e2e_s: e2e,
                    flops: plan.flops(),
                    repeats: reps,
                };
                print_row(&row, cpu_s);
                rows.push(row);
            }
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

fn write_json(path: &PathBuf, gpu: Option<&Context>, rows: &[Row]) -> Result<()> {
    let summary = gpu.and_then(|c| c.device_summary());
    let (adapter, api, driver) = match &summary {
        Some(s) => (
            json_str(&s.adapter.name),
            json_str(&s.adapter.api),
            json_str(&s.adapter.driver),
        ),
        None => ("null".into(), "null".into(), "null".into()),
    };
    let results: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"op\": {}, \"shape\": {}, \"backend\": {}, \"kernel\": {}, \"median_s\": {}, \"spread_s\": {}, \"kernel_s\": null, \"e2e_s\": {}, \"gflops\": {}, \"gbs\": null, \"repeats\": {}}}",
                json_str(&r.op),
                json_str(&r.shape),
                json_str(r.backend),
                json_str(&r.label),
                json_num(Some(r.median_s)),
                json_num(Some(r.spread_s)),
                json_num(r.e2e_s),
                json_num(Some(r.flops / r.median_s / 1e9)),
                r.repeats
            )
        })
        .collect();
    let text = format!(
        "{{\"machine\": {{\"adapter\": {adapter}, \"api\": {api}, \"driver\": {driver}, \"cpu\": {}, \"threads\": {}}},\n \"results\": [\n  {}\n]}}\n",
        json_str(&cpu_name()),
        rayon::current_num_threads(),
        results.join(",\n  ")
    );
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}
