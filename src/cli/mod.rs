//! The `gpu-linalg` command-line tool: ops on `.npy` files, adapter info, and CPU-vs-GPU
//! benchmarks.

mod bench;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cpu::matmul::reference_for;
use crate::error::{Error, Result};
use crate::npy::{read_npy, write_npy_f32};
use crate::{Activation, Backend, Context, ContextOptions, MatmulConfig, MatmulOptions, Tensor};

/// GPU compute-shader linear algebra: run ops on .npy files, compare CPU and GPU.
#[derive(Parser, Debug)]
#[command(name = "gpu-linalg", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
struct GlobalOpts {
    /// Where to compute: auto (a real GPU, else the CPU), gpu (any adapter, software ones
    /// included) or cpu.
    #[arg(long, global = true, default_value = "auto")]
    backend: String,
    /// Only use adapters whose name contains this text (also GPU_LINALG_ADAPTER).
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Also run the f64 CPU reference on the f32-rounded inputs and fail if the result differs
    /// beyond the documented error bound.
    #[arg(long, global = true)]
    verify: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List adapters, the one each backend mode would use, limits and features.
    Info {
        /// Also time every matmul kernel candidate on the chosen GPU.
        #[arg(long)]
        tune: bool,
    },
    /// C = act(op(A)·op(B) + bias), numpy.matmul semantics.
    Matmul {
        /// Left operand (.npy, float32 or float64).
        a: PathBuf,
        /// Right operand (.npy).
        b: PathBuf,
        /// Output file (.npy, float32).
        #[arg(short, long)]
        output: PathBuf,
        /// Bias of shape [n] (.npy).
        #[arg(long)]
        bias: Option<PathBuf>,
        /// none, relu, gelu, gelu-tanh, sigmoid or tanh.
        #[arg(long, default_value = "none")]
        activation: String,
        /// Use Aᵀ.
        #[arg(long)]
        transpose_a: bool,
        /// Use Bᵀ.
        #[arg(long)]
        transpose_b: bool,
        /// Force a GPU kernel: naive, tiled:TMxTN or vec4:RMxRN4@WG.
        #[arg(long)]
        kernel: Option<String>,
    },
    /// Benchmark the CPU against the GPU (the main job).
    Bench(bench::BenchArgs),
}

/// Parses the arguments and runs the command.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Info { tune } => info(&cli.global, *tune),
        Command::Matmul {
            a,
            b,
            output,
            bias,
            activation,
            transpose_a,
            transpose_b,
            kernel,
        } => {
            let activation: Activation = activation.parse()?;
            let kernel: Option<MatmulConfig> = kernel.as_deref().map(str::parse).transpose()?;
            let ctx = context(&cli.global)?;
            let load = |p: &PathBuf| -> Result<Tensor> {
                let arr = read_npy(p)?;
                Tensor::from_vec(&arr.shape, arr.data)
            };
            let (ha, hb) = (load(a)?, load(b)?);
            let hbias = bias.as_ref().map(load).transpose()?;
            let opts = MatmulOptions {
                transpose_a: *transpose_a,
                transpose_b: *transpose_b,
                bias: hbias.as_ref(),
                activation,
                kernel,
            };
            let c = ctx.matmul_with(&ha, &hb, &opts)?;
            let values = c.to_vec()?;
            if cli.global.verify {
                reference_for(&ha, &hb, &opts)?.check(&values)?;
                eprintln!(
                    "verified against the f64 CPU reference ({})",
                    ctx.description()
                );
            }
            write_npy_f32(output, c.shape(), &values)
        }
        Command::Bench(args) => bench::run(&cli.global, args),
    }
}

fn context(g: &GlobalOpts) -> Result<Context> {
    let backend: Backend = g.backend.parse()?;
    Context::with_options(ContextOptions {
        backend,
        adapter: g.adapter.clone(),
    })
}

fn info(g: &GlobalOpts, tune: bool) -> Result<()> {
    let adapters = crate::list_adapters();
    println!("adapters found: {}", adapters.len());
    for a in &adapters {
        println!(
            "  {} — {} via {}, driver {}{}",
            a.name,
            a.device_type,
            a.api,
            a.driver,
            if a.is_real_gpu {
                ""
            } else {
                " (software / not a real GPU)"
            }
        );
    }
    let filtered = GlobalOpts {
        backend: String::new(),
        ..g.clone()
    };
    for mode in [Backend::Auto, Backend::Gpu, Backend::Cpu] {
        let ctx = Context::with_options(ContextOptions {
            backend: mode,
            adapter: filtered.adapter.clone(),
        });
        let label = format!("{mode:?}").to_lowercase();
        match ctx {
            Ok(c) => println!("--backend {label:<4} would use {}", c.description()),
            Err(e) => println!("--backend {label:<4} unavailable: {e}"),
        }
    }
    let ctx = context(g)?;
    println!("this run (--backend {}): {}", g.backend, ctx.description());
    if let Some(s) = ctx.device_summary() {
        println!("  api: {}", s.adapter.api);
        println!(
            "  max storage binding: {} MiB, max buffer: {} MiB",
            s.max_storage_buffer_binding_size >> 20,
            s.max_buffer_size >> 20
        );
        println!(
            "  workgroups per dimension: {}, invocations per workgroup: {}, workgroup memory: {} KiB",
            s.max_compute_workgroups_per_dimension,
            s.max_compute_invocations_per_workgroup,
            s.max_compute_workgroup_storage_size >> 10
        );
        println!(
            "  features: f16 {}, subgroups {}, timestamps {}",
            yes(s.shader_f16),
            yes(s.subgroups),
            yes(s.timestamps)
        );
        if tune {
            for r in ctx.tune_matmul()? {
                match r.gflops {
                    Ok(g) => println!(
                        "  matmul kernel {:<14} {g:8.2} GFLOP/s",
                        r.config.to_string()
                    ),
                    Err(e) => println!("  matmul kernel {:<14} failed: {e}", r.config.to_string()),
                }
            }
        }
        println!("  matmul kernel in use: {}", ctx.matmul_config()?);
    }
    println!(
        "CPU backend: {} ({} threads)",
        bench::cpu_name(),
        rayon::current_num_threads()
    );
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One-line form of an error for the terminal.
pub fn one_line(e: &Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
