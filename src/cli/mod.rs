//! The `gpu-linalg` command-line tool: ops on `.npy` files, adapter info, and CPU-vs-GPU
//! benchmarks.

mod bench;

/// Registers a system font for plots (the bench's and the examples').
pub use bench::register_font as register_plot_font;
#[cfg(feature = "mpi")]
mod mpi;
mod solvers;
mod streamed;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::conv::parse_pair;
use crate::error::{Error, Result};
use crate::matmul::cpu::reference_for;
use crate::npy::{read_npy, write_npy_f16, write_npy_f32, write_npy_i64};
use crate::tensor::DType;
use crate::{
    Activation, Backend, BinaryOp, Context, ContextOptions, ConvConfig, ConvKind, ConvOptions,
    ConvPlan, MatmulConfig, MatmulOptions, Padding, ReduceKernel, ReduceOp, ReduceOptions,
    ReducePlan, Tensor, UnaryOp,
};

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
    /// Run across the ranks of an MPI job (`mpiexec -n N gpu-linalg --mpi pca …`): pca, qr
    /// --r-only, lstsq and lowrank (--s, --vt), each rank reading its row range (or, for a path containing {rank},
    /// its own file); rank 0 writes the outputs. Needs a build with the `mpi` feature.
    #[arg(long, global = true)]
    mpi: bool,
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
        /// Output file (.npy: float32, float16 for a float16 result).
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
        /// Force a GPU kernel: naive, tiled:TMxTN, vec4:RMxRN4@WG or blocked:TMxTNkBK.
        #[arg(long)]
        kernel: Option<String>,
        #[command(flatten)]
        dtype: DtypeArg,
    },
    /// 2-D convolution (torch.nn.functional.conv2d): X is NCHW or CHW, W is [C_out, C_in/groups, KH, KW].
    Conv2d(ConvArgs),
    /// 1-D convolution (torch.nn.functional.conv1d): X is NCL or CL, W is [C_out, C_in/groups, K].
    Conv1d(ConvArgs),
    /// Transposed 2-D convolution (torch.nn.functional.conv_transpose2d): W is [C_in, C_out/groups, KH, KW].
    ConvTranspose2d {
        #[command(flatten)]
        conv: ConvArgs,
        /// Extra output rows/columns, P or PH,PW (each smaller than the stride or the dilation).
        #[arg(long, default_value = "0")]
        output_padding: String,
    },
    /// Elementwise op with numpy broadcasting: add, sub, mul, div, scale, axpy, clamp, abs, exp,
    /// log, sqrt, relu, gelu, gelu-tanh, sigmoid, tanh, lerp, slerp.
    Elementwise(ElementwiseArgs),
    /// Reductions with numpy semantics (sum, mean, max, min, argmax, argmin, norm, var,
    /// logsumexp) over all elements or one axis, and softmax / log-softmax along an axis.
    Reduce {
        /// sum, mean, max, min, argmax, argmin, norm, var, logsumexp, softmax or log-softmax.
        op: String,
        /// Input (.npy).
        x: PathBuf,
        /// Output file (.npy; float32, float16 for a float16 result, int64 for argmax/argmin).
        #[arg(short, long)]
        output: PathBuf,
        /// Axis to reduce (negative counts from the end); all elements when absent (softmax:
        /// the last axis).
        #[arg(long, allow_hyphen_values = true)]
        axis: Option<isize>,
        /// Keep the reduced axis as length 1.
        #[arg(long)]
        keepdims: bool,
        /// Delta degrees of freedom for var (divisor n − ddof).
        #[arg(long, default_value_t = 0)]
        ddof: usize,
        /// Force a GPU kernel: tree, subgroup or serial.
        #[arg(long)]
        kernel: Option<String>,
        #[command(flatten)]
        dtype: DtypeArg,
    },
    /// Reduced QR, numpy.linalg.qr(A, mode='reduced'): Q m×k orthonormal, R k×n upper
    /// triangular with a non-negative diagonal.
    Qr {
        /// The m×n matrix (.npy).
        a: PathBuf,
        /// Output for Q (.npy, m×k).
        #[arg(long)]
        q: Option<PathBuf>,
        /// Output for R (.npy, k×n).
        #[arg(long)]
        r: Option<PathBuf>,
        /// Only R (numpy's mode='r'): needs --r; with --stream, by TSQR over row blocks (and
        /// --q then forms Q = A·R⁻¹ in a second pass).
        #[arg(long)]
        r_only: bool,
        #[command(flatten)]
        stream: streamed::StreamArgs,
    },
    /// Thin SVD, numpy.linalg.svd(A, full_matrices=False): U m×k, S k descending, Vt k×n.
    Svd {
        /// The m×n matrix (.npy).
        a: PathBuf,
        /// Output for U (.npy, m×k).
        #[arg(long)]
        u: Option<PathBuf>,
        /// Output for S (.npy, k).
        #[arg(long)]
        s: Option<PathBuf>,
        /// Output for Vt (.npy, k×n).
        #[arg(long)]
        vt: Option<PathBuf>,
        /// Only the singular values (numpy's compute_uv=False): needs --s, refuses --u/--vt.
        #[arg(long)]
        values_only: bool,
    },
    /// Best rank-r approximation U_r·diag(S_r)·V_rᵀ (exact, or randomized with --randomized);
    /// prints the Frobenius error.
    Lowrank {
        /// The m×n matrix (.npy).
        a: PathBuf,
        /// The rank.
        #[arg(short = 'r', long)]
        rank: usize,
        /// Output for the approximation (.npy, m×n; not with --stream).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Output for the factor U (.npy, m×r; --stream only, a further pass).
        #[arg(long)]
        u: Option<PathBuf>,
        /// Output for the singular values (.npy, r; --stream only).
        #[arg(long)]
        s: Option<PathBuf>,
        /// Output for Vt (.npy, r×n; --stream only).
        #[arg(long)]
        vt: Option<PathBuf>,
        /// Halko–Martinsson–Tropp randomized SVD instead of the full SVD.
        #[arg(long)]
        randomized: bool,
        /// Extra sketch columns (randomized).
        #[arg(long, default_value_t = 10)]
        oversample: usize,
        /// Power iterations (randomized).
        #[arg(long, default_value_t = 2)]
        power_iters: usize,
        /// Seed of the Gaussian sketch (randomized).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Streamed, the factors of the randomized SVD are written (--u, --s, --vt).
        #[command(flatten)]
        stream: streamed::StreamArgs,
    },
    /// Cholesky factor, numpy.linalg.cholesky(A): lower L with A = L·Lᵀ (the lower triangle of
    /// A is read); --upper gives U = Lᵀ with A = Uᵀ·U. Batched [..., n, n] input factors each
    /// matrix.
    Cholesky {
        /// The symmetric positive definite n×n matrix, or a batch [..., n, n] (.npy).
        a: PathBuf,
        /// Output for the factor (.npy, the shape of A).
        #[arg(short, long)]
        output: PathBuf,
        /// Write the upper factor U = Lᵀ instead of L.
        #[arg(long)]
        upper: bool,
    },
    /// Solve A·X = B, numpy.linalg.solve(A, B) (scipy's assume_a by --assume): A [..., n, n],
    /// B [n] or [..., n, k].
    Solve(solvers::SolveArgs),
    /// Inverse, numpy.linalg.inv(A), of an n×n matrix or a batch [..., n, n].
    Inv(solvers::InvArgs),
    /// Determinant, numpy.linalg.det(A): printed (one line per matrix of a batch).
    Det(solvers::DetArgs),
    /// Sign and log|det|, numpy.linalg.slogdet(A): printed (one line per matrix).
    Slogdet(solvers::SlogdetArgs),
    /// Least squares, numpy.linalg.lstsq(A, B, rcond): prints the rank.
    Lstsq(solvers::LstsqArgs),
    /// Moore–Penrose pseudo-inverse, numpy.linalg.pinv(A, rtol): [..., m, n] → [..., n, m].
    Pinv(solvers::PinvArgs),
    /// LU with partial pivoting, scipy.linalg.lu(A): A = P·L·U.
    Lu(solvers::LuArgs),
    /// Symmetric eigen-decomposition, numpy.linalg.eigh(A): eigenvalues ascending, eigenvectors
    /// as columns; the lower triangle is used.
    Eigh {
        /// The symmetric n×n matrix (.npy).
        a: PathBuf,
        /// Output for the eigenvalues (.npy, n).
        #[arg(long)]
        values: Option<PathBuf>,
        /// Output for the eigenvectors (.npy, n×n, as columns).
        #[arg(long)]
        vectors: Option<PathBuf>,
        /// Only the eigenvalues (numpy.linalg.eigvalsh): needs --values, refuses --vectors
        #[arg(long)]
        values_only: bool,
    },
    /// PCA, sklearn.decomposition.PCA(n_components=K).fit(X) with X samples × features.
    Pca {
        /// The samples × features data (.npy).
        x: PathBuf,
        /// Number of components (at most min(samples, features)).
        #[arg(short = 'k', long)]
        components_count: usize,
        /// Output for the components (.npy, K × features, as rows).
        #[arg(long)]
        components: Option<PathBuf>,
        /// Output for the explained variance (.npy, K; n−1 normalisation).
        #[arg(long)]
        explained_variance: Option<PathBuf>,
        /// Output for the explained variance ratio (.npy, K).
        #[arg(long)]
        explained_variance_ratio: Option<PathBuf>,
        /// Output for the per-feature mean (.npy, features).
        #[arg(long)]
        mean: Option<PathBuf>,
        /// Output for the transformed data, sklearn's `PCA.transform(X)` (.npy, samples × K).
        /// `--projected` is an alias.
        #[arg(
            long = "transformed",
            visible_alias = "projected",
            value_name = "T.npy"
        )]
        projected: Option<PathBuf>,
        #[command(flatten)]
        stream: streamed::StreamArgs,
    },
    /// Benchmark the CPU against the GPU (the main job).
    Bench(bench::BenchArgs),
}

/// `--dtype`, of the commands whose ops take half-precision tensors.
#[derive(Args, Debug)]
struct DtypeArg {
    /// Convert the inputs to f32, f16 or bf16 on upload (default: each file's own type;
    /// float16 files stay float16). The result follows numpy (float16 in, float16 out, written
    /// as `<f2`); bfloat16 results are written as float32, numpy having no bfloat16.
    #[arg(long)]
    dtype: Option<String>,
}

impl DtypeArg {
    /// The `.npy` file at `p` as a tensor of the asked type (see [`load_typed`]).
    fn load(&self, p: &Path) -> Result<Tensor> {
        load_typed(p, self.dtype.as_deref().map(parse_dtype).transpose()?)
    }
}

/// Arguments of `elementwise`.
#[derive(Args, Debug)]
struct ElementwiseArgs {
    /// The op: add, sub, mul, div, scale, axpy, clamp, abs, exp, log, sqrt, relu, gelu,
    /// gelu-tanh, sigmoid, tanh, lerp, slerp.
    op: String,
    /// First operand (.npy).
    a: PathBuf,
    /// Second operand (.npy), for add, sub, mul, div, axpy, lerp and slerp.
    b: Option<PathBuf>,
    /// Output file (.npy: float32, float16 for a float16 result).
    #[arg(short, long)]
    output: PathBuf,
    /// The factor of scale (alpha·A) and axpy (alpha·A + B).
    #[arg(long, allow_hyphen_values = true)]
    alpha: Option<f32>,
    /// Lower bound of clamp (default -inf).
    #[arg(long, allow_hyphen_values = true)]
    min: Option<f32>,
    /// Upper bound of clamp (default inf).
    #[arg(long, allow_hyphen_values = true)]
    max: Option<f32>,
    /// Interpolation parameter of lerp and slerp.
    #[arg(long, allow_hyphen_values = true)]
    t: Option<f32>,
    #[command(flatten)]
    dtype: DtypeArg,
}

/// Arguments shared by the convolutions.
#[derive(Args, Debug)]
struct ConvArgs {
    /// Input (.npy).
    x: PathBuf,
    /// Weight (.npy).
    w: PathBuf,
    /// Output file (.npy: float32, float16 for a float16 result).
    #[arg(short, long)]
    output: PathBuf,
    /// Bias of shape [C_out] (.npy).
    #[arg(long)]
    bias: Option<PathBuf>,
    /// Stride: S or SH,SW.
    #[arg(long, default_value = "1")]
    stride: String,
    /// Zero padding: P, PH,PW, same or valid.
    #[arg(long, default_value = "0")]
    padding: String,
    /// Dilation: D or DH,DW.
    #[arg(long, default_value = "1")]
    dilation: String,
    /// Groups.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// none, relu, gelu, gelu-tanh, sigmoid or tanh.
    #[arg(long, default_value = "none")]
    activation: String,
    /// Force a GPU kernel: naive or gemm:RMxRN4@WG.
    #[arg(long)]
    kernel: Option<String>,
    #[command(flatten)]
    dtype: DtypeArg,
}

/// Writes `e` to stderr as `gpu-linalg: error: …`, in one write, so that the lines of several
/// processes sharing one stderr (an MPI job's ranks) do not interleave.
pub fn report_error(e: &Error) {
    let line = format!("gpu-linalg: error: {}\n", one_line(e));
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Parses the arguments and runs the command.
pub fn run(cli: Cli) -> Result<()> {
    if cli.global.mpi {
        #[cfg(feature = "mpi")]
        return mpi::run(&cli);
        #[cfg(not(feature = "mpi"))]
        return Err(Error::InvalidArgument(
            "--mpi: this gpu-linalg was built without MPI; rebuild with `--features mpi`".into(),
        ));
    }
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
            dtype,
        } => {
            let activation: Activation = activation.parse()?;
            let kernel: Option<MatmulConfig> = kernel.as_deref().map(str::parse).transpose()?;
            let ctx = context(&cli.global)?;
            let typed = |p: &Path| dtype.load(p);
            let (ha, hb) = (typed(a)?, typed(b)?);
            let hbias = bias.as_deref().map(typed).transpose()?;
            let opts = MatmulOptions {
                transpose_a: *transpose_a,
                transpose_b: *transpose_b,
                bias: hbias.as_ref(),
                activation,
                kernel,
                out_dtype: None,
            };
            let c = ctx.matmul_with(&ha, &hb, &opts)?;
            let values = c.to_vec()?;
            if cli.global.verify {
                // On the operands as rounded to their types, plus the result type's rounding.
                reference_for(&ha, &hb, &opts)?.check_in(&values, c.dtype())?;
                eprintln!(
                    "verified against the f64 CPU reference ({})",
                    ctx.description()
                );
            }
            write_result(output, &c, &values)
        }
        Command::Conv2d(a) => conv(&cli.global, ConvKind::Conv2d, a, "0"),
        Command::Conv1d(a) => conv(&cli.global, ConvKind::Conv1d, a, "0"),
        Command::ConvTranspose2d {
            conv: a,
            output_padding,
        } => conv(&cli.global, ConvKind::ConvTranspose2d, a, output_padding),
        Command::Elementwise(args) => elementwise(&cli.global, args),
        Command::Reduce {
            op,
            x,
            output,
            axis,
            keepdims,
            ddof,
            kernel,
            dtype,
        } => {
            let op: ReduceOp = op.parse()?;
            let kernel: Option<ReduceKernel> = kernel.as_deref().map(str::parse).transpose()?;
            let opts = ReduceOptions {
                axis: *axis,
                keepdims: *keepdims,
                ddof: *ddof,
                kernel,
            };
            let ctx = context(&cli.global)?;
            let hx = dtype.load(x)?;
            let plan = ReducePlan::new(op, hx.shape(), &opts)?;
            let y = ctx.reduce(op, &hx, &opts)?;
            let verify = |r: Result<()>| -> Result<()> {
                r?;
                eprintln!(
                    "verified against the f64 CPU reference ({})",
                    ctx.description()
                );
                Ok(())
            };
            if op.is_arg() {
                let idx = y.to_vec_u32()?;
                if cli.global.verify {
                    let xs = hx.to_vec()?;
                    verify(crate::reduce::cpu::reference(&plan, &xs).check_indices(&idx))?;
                }
                let wide: Vec<i64> = idx.iter().map(|&i| i64::from(i)).collect();
                write_npy_i64(output, y.shape(), &wide)
            } else {
                let values = y.to_vec()?;
                if cli.global.verify {
                    let xs = hx.to_vec()?;
                    verify(crate::reduce::cpu::reference(&plan, &xs).check_in(&values, y.dtype()))?;
                }
                write_result(output, &y, &values)
            }
        }
        Command::Svd {
            a,
            u,
            s,
            vt,
            values_only,
        } => {
            if *values_only && (u.is_some() || vt.is_some() || s.is_none()) {
                return Err(Error::InvalidArgument(
                    "svd --values-only writes only --s: name --s and neither --u nor --vt".into(),
                ));
            }
            if *values_only {
                if let Some(s) = s {
                    return svdvals(&cli.global, a, s);
                }
            }
            svd(&cli.global, a, [u, s, vt])
        }
        Command::Lowrank {
            a,
            rank,
            output,
            u,
            s,
            vt,
            randomized,
            oversample,
            power_iters,
            seed,
            stream,
        } => {
            let options = crate::RandomizedSvdOptions {
                oversampling: *oversample,
                power_iterations: *power_iters,
                seed: *seed,
            };
            let ctx = context(&cli.global)?;
            if let Some(budget) = streamed::stream_budget(&ctx, "lowrank", &[a], stream)? {
                if output.is_some() {
                    return Err(Error::InvalidArgument(
                        "lowrank --stream writes the factors (--u, --s, --vt), not the m×n approximation (--output)".into(),
                    ));
                }
                let out = streamed::FactorOutputs { u, s, vt };
                return streamed::lowrank(&ctx, cli.global.verify, a, *rank, options, budget, out);
            }
            let (Some(output), None, None, None) = (output, u, s, vt) else {
                return Err(Error::InvalidArgument(
                    "lowrank writes the approximation: name --output (--u, --s and --vt are for --stream)".into(),
                ));
            };
            lowrank(
                &ctx,
                cli.global.verify,
                a,
                *rank,
                output,
                randomized.then_some(options),
            )
        }
        Command::Qr {
            a,
            q,
            r,
            r_only,
            stream,
        } => {
            let ctx = context(&cli.global)?;
            let budget = streamed::stream_budget(&ctx, "qr", &[a], stream)?;
            match (r_only, budget, r) {
                (false, Some(_), _) => Err(Error::InvalidArgument(
                    "qr --stream computes R by TSQR: add --r-only".into(),
                )),
                (true, _, None) => Err(Error::InvalidArgument(
                    "qr --r-only writes only R: name --r".into(),
                )),
                (true, Some(budget), Some(r)) => {
                    streamed::qr(&ctx, cli.global.verify, a, budget, r, q)
                }
                (true, None, Some(_)) if q.is_some() => Err(Error::InvalidArgument(
                    "qr --r-only writes only R: drop --q (or add --stream for Q = A·R⁻¹ blockwise)"
                        .into(),
                )),
                _ => qr(&ctx, cli.global.verify, a, [q, r]),
            }
        }
        Command::Cholesky { a, output, upper } => cholesky(&cli.global, a, output, *upper),
        Command::Eigh {
            a,
            values,
            vectors,
            values_only,
        } => {
            if *values_only {
                return match (values, vectors) {
                    (Some(v), None) => eigvalsh(&cli.global, a, v),
                    _ => Err(Error::InvalidArgument(
                        "eigh --values-only writes only --values: name --values and not --vectors"
                            .into(),
                    )),
                };
            }
            eigh(&cli.global, a, [values, vectors])
        }
        Command::Solve(a) => solvers::solve(&cli.global, a),
        Command::Inv(a) => solvers::inv(&cli.global, a),
        Command::Det(a) => solvers::det(&cli.global, a),
        Command::Slogdet(a) => solvers::slogdet(&cli.global, a),
        Command::Lstsq(a) => solvers::lstsq(&cli.global, a),
        Command::Pinv(a) => solvers::pinv(&cli.global, a),
        Command::Lu(a) => solvers::lu(&cli.global, a),
        Command::Pca {
            x,
            components_count,
            components,
            explained_variance,
            explained_variance_ratio,
            mean,
            projected,
            stream,
        } => {
            let ctx = context(&cli.global)?;
            if let Some(budget) = streamed::stream_budget(&ctx, "pca", &[x], stream)? {
                let out = streamed::PcaOutputs {
                    components,
                    explained_variance,
                    explained_variance_ratio,
                    mean,
                    transformed: projected,
                };
                if [
                    components,
                    explained_variance,
                    explained_variance_ratio,
                    mean,
                    projected,
                ]
                .iter()
                .all(|o| o.is_none())
                {
                    return Err(Error::InvalidArgument(
                        "pca: name at least one output with --components, --explained-variance, \
                         --explained-variance-ratio, --mean or --transformed"
                            .into(),
                    ));
                }
                return streamed::pca(&ctx, cli.global.verify, x, *components_count, budget, out);
            }
            pca(
                &ctx,
                x,
                *components_count,
                [
                    components,
                    explained_variance,
                    explained_variance_ratio,
                    mean,
                    projected,
                ],
            )
        }
        Command::Bench(args) => bench::run(&cli.global, args),
    }
}

/// `svd`: every factor is computed (and verified) before any file is written.
fn svd(g: &GlobalOpts, a: &Path, outputs: [&Option<PathBuf>; 3]) -> Result<()> {
    if outputs.iter().all(|o| o.is_none()) {
        return Err(Error::InvalidArgument(
            "svd: name at least one output with --u, --s or --vt".into(),
        ));
    }
    let ctx = context(g)?;
    let ha = load(a)?;
    let r = ctx.svd(&ha)?;
    let (u, s, vt) = (r.u.to_vec()?, r.s.to_vec()?, r.vt.to_vec()?);
    if g.verify {
        let (m, n) = match *ha.shape() {
            [m, n] => (m, n),
            _ => (0, 0), // unreachable: svd accepted the input as a matrix
        };
        let ratios = crate::svd::cpu::ratios(&ha.to_vec()?, m, n, &u, &s, &vt);
        if ratios.iter().any(|x| x.is_nan() || *x >= 35.0) {
            return Err(Error::Verification(format!(
                "svd: LAPACK ratios {ratios:?} (residual, ‖I − UᵀU‖, ‖I − VᵀV‖) reach 35"
            )));
        }
        eprintln!(
            "verified: LAPACK ratios [{:.2}, {:.2}, {:.2}] below 35; {} Jacobi sweeps ({})",
            ratios[0],
            ratios[1],
            ratios[2],
            r.sweeps,
            ctx.description()
        );
    }
    for (path, t, values) in [
        (outputs[0], &r.u, &u),
        (outputs[1], &r.s, &s),
        (outputs[2], &r.vt, &vt),
    ] {
        if let Some(p) = path {
            write_npy_f32(p, t.shape(), values)?;
        }
    }
    Ok(())
}

/// Fails unless each computed value lies within `bound` of the f64 one; prints the worst error.
fn verify_values(what: &str, got: &[f32], exact: &[f64], bound: f64, ctx: &Context) -> Result<()> {
    let worst = got
        .iter()
        .zip(exact)
        .map(|(g, x)| (f64::from(*g) - x).abs())
        .fold(0.0, f64::max);
    if got.len() != exact.len() || worst.is_nan() || worst > bound {
        return Err(Error::Verification(format!(
            "{what}: worst error {worst:e} against the f64 values exceeds {bound:e}"
        )));
    }
    eprintln!(
        "verified: {what} within {worst:.2e} of the f64 reference (bound {bound:.2e}) ({})",
        ctx.description()
    );
    Ok(())
}

/// `svd --values-only`: the singular values alone ([`Context::svdvals`]), verified against
/// the f64 values within 35·max(m, n)·ε·σ₁.
fn svdvals(g: &GlobalOpts, a: &Path, out: &Path) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(a)?;
    let s = ctx.svdvals(&ha)?;
    let values = s.to_vec()?;
    if g.verify {
        let (m, n) = match *ha.shape() {
            [m, n] => (m, n),
            _ => (0, 0), // unreachable: svdvals accepted the input as a matrix
        };
        let exact = crate::svd::cpu::singular_values_f64(&ha.to_vec()?, m, n)?;
        let top = exact.first().copied().unwrap_or(0.0);
        let bound = 35.0 * m.max(n) as f64 * f64::from(f32::EPSILON) * top;
        verify_values("singular values", &values, &exact, bound, &ctx)?;
    }
    write_npy_f32(out, s.shape(), &values)
}

/// `eigh --values-only`: the eigenvalues alone ([`Context::eigvalsh`]), verified against the
/// f64 values within 60·n·ε·max|λ|.
fn eigvalsh(g: &GlobalOpts, a: &Path, out: &Path) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(a)?;
    let w = ctx.eigvalsh(&ha)?;
    let values = w.to_vec()?;
    if g.verify {
        let n = values.len();
        let exact = crate::decomp::cpu::eigenvalues_f64(&ha.to_vec()?, n)?;
        let top = exact.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let bound = 60.0 * n as f64 * f64::from(f32::EPSILON) * top;
        verify_values("eigenvalues", &values, &exact, bound, &ctx)?;
    }
    write_npy_f32(out, w.shape(), &values)
}

/// `cholesky`: the factor is computed (and verified) before the file is written.
fn cholesky(g: &GlobalOpts, a: &Path, output: &Path, upper: bool) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(a)?;
    let f = ctx.cholesky_with(&ha, &crate::CholeskyOptions { upper })?;
    let values = f.to_vec()?;
    if g.verify {
        let n = ha.shape().last().copied().unwrap_or(0);
        let av = ha.to_vec()?;
        let ratios: Vec<f64> = (0..values.len().checked_div(n * n).unwrap_or(0))
            .map(|z| {
                let fz = &values[z * n * n..(z + 1) * n * n];
                let l: Vec<f32> = if upper {
                    (0..n * n).map(|k| fz[(k % n) * n + k / n]).collect()
                } else {
                    fz.to_vec()
                };
                crate::cholesky::cpu::ratio(&av[z * n * n..(z + 1) * n * n], n, &l)
            })
            .collect();
        let worst = ratios.iter().fold(0.0f64, |w, &r| w.max(r));
        if ratios.iter().any(|r| r.is_nan()) || worst >= 30.0 {
            return Err(Error::Verification(format!(
                "cholesky: LAPACK ratio ‖A − L·Lᵀ‖/(n·‖A‖·ε) = {worst} reaches 30"
            )));
        }
        eprintln!(
            "verified: LAPACK ratio {worst:.2} below 30 ({})",
            ctx.description()
        );
    }
    write_npy_f32(output, f.shape(), &values)
}

/// `eigh`: both outputs are computed (and verified) before any file is written.
fn eigh(g: &GlobalOpts, a: &Path, outputs: [&Option<PathBuf>; 2]) -> Result<()> {
    if outputs.iter().all(|o| o.is_none()) {
        return Err(Error::InvalidArgument(
            "eigh: name at least one output with --values or --vectors".into(),
        ));
    }
    let ctx = context(g)?;
    let ha = load(a)?;
    let r = ctx.eigh(&ha)?;
    let (w, z) = (r.values.to_vec()?, r.vectors.to_vec()?);
    if g.verify {
        let n = w.len();
        let sym = crate::decomp::symmetric_from_lower(&ha.to_vec()?, n)?;
        let ratios = crate::decomp::cpu::eigh_ratios(&sym, n, &w, &z);
        if ratios.iter().any(|x| x.is_nan() || *x >= 60.0) {
            return Err(Error::Verification(format!(
                "eigh: LAPACK ratios {ratios:?} (residual, ‖I − ZᵀZ‖) reach 60"
            )));
        }
        eprintln!(
            "verified: LAPACK ratios [{:.2}, {:.2}] below 60 ({})",
            ratios[0],
            ratios[1],
            ctx.description()
        );
    }
    for (path, t, values) in [(outputs[0], &r.values, &w), (outputs[1], &r.vectors, &z)] {
        if let Some(p) = path {
            write_npy_f32(p, t.shape(), values)?;
        }
    }
    Ok(())
}

/// `pca`: every output is computed before any file is written.
fn pca(ctx: &Context, x: &Path, k: usize, outputs: [&Option<PathBuf>; 5]) -> Result<()> {
    if outputs.iter().all(|o| o.is_none()) {
        return Err(Error::InvalidArgument(
            "pca: name at least one output with --components, --explained-variance, \
             --explained-variance-ratio, --mean or --transformed"
                .into(),
        ));
    }
    let hx = load(x)?;
    let r = ctx.pca(&hx, k)?;
    let tensors = [
        &r.components,
        &r.explained_variance,
        &r.explained_variance_ratio,
        &r.mean,
        &r.projected,
    ];
    let values = tensors
        .iter()
        .map(|t| t.to_vec())
        .collect::<Result<Vec<_>>>()?;
    for ((path, t), v) in outputs.iter().zip(tensors).zip(&values) {
        if let Some(p) = path {
            write_npy_f32(p, t.shape(), v)?;
        }
    }
    Ok(())
}

/// `lowrank`: the approximation is computed (and, with --verify, its error checked against
/// the f64 singular values) before the file is written.
fn lowrank(
    ctx: &Context,
    verify: bool,
    a: &Path,
    rank: usize,
    output: &Path,
    randomized: Option<crate::RandomizedSvdOptions>,
) -> Result<()> {
    let ha = load(a)?;
    let (approx, error) = match randomized {
        None => {
            let lr = ctx.low_rank(&ha, rank)?;
            (lr.approx, f64::from(lr.error))
        }
        Some(opts) => {
            let t = ctx.randomized_svd(&ha, rank, &opts)?;
            // U_r·diag(S_r) by row broadcasting, then times Vt_r.
            let us = ctx.mul(&t.u, &t.s)?;
            let approx = ctx.matmul(&us, &t.vt)?;
            let diff = ctx.sub(&ha, &approx)?;
            let err = f64::from(
                ctx.norm(&diff, None)?
                    .to_vec()?
                    .first()
                    .copied()
                    .unwrap_or(f32::NAN),
            );
            (approx, err)
        }
    };
    let values = approx.to_vec()?;
    if verify {
        let (m, n) = match *ha.shape() {
            [m, n] => (m, n),
            _ => (0, 0),
        };
        let sigma = crate::svd::cpu::singular_values_f64(&ha.to_vec()?, m, n)?;
        let optimum = sigma.iter().skip(rank).map(|s| s * s).sum::<f64>().sqrt();
        let norm = sigma.first().copied().unwrap_or(0.0);
        let allowed = 1.05 * optimum + 1e-5 * norm * (m.max(n) as f64);
        if error > allowed {
            return Err(Error::Verification(format!(
                "lowrank: Frobenius error {error:.6e} exceeds 1.05 × the optimum {optimum:.6e}"
            )));
        }
        eprintln!("verified: Frobenius error {error:.6e}, optimum {optimum:.6e}");
    }
    write_npy_f32(output, approx.shape(), &values)?;
    println!("rank-{rank} Frobenius error: {error:.6e}");
    Ok(())
}

/// `qr`: both factors are computed (and verified) before any file is written.
fn qr(ctx: &Context, verify: bool, a: &Path, outputs: [&Option<PathBuf>; 2]) -> Result<()> {
    if outputs.iter().all(|o| o.is_none()) {
        return Err(Error::InvalidArgument(
            "qr: name at least one output with --q or --r".into(),
        ));
    }
    let ha = load(a)?;
    let f = ctx.qr(&ha)?;
    let (q, r) = (f.q.to_vec()?, f.r.to_vec()?);
    if verify {
        let (m, n) = match *ha.shape() {
            [m, n] => (m, n),
            _ => (0, 0), // unreachable: qr accepted the input as a matrix
        };
        let ratios = crate::qr::cpu::ratios(&ha.to_vec()?, m, n, &q, &r);
        if ratios.iter().any(|x| x.is_nan() || *x >= 35.0) {
            return Err(Error::Verification(format!(
                "qr: LAPACK ratios {ratios:?} (residual, ‖I − QᵀQ‖) reach 35"
            )));
        }
        eprintln!(
            "verified: LAPACK ratios [{:.2}, {:.2}] below 35; {} CholeskyQR passes ({})",
            ratios[0],
            ratios[1],
            f.passes,
            ctx.description()
        );
    }
    for (path, t, values) in [(outputs[0], &f.q, &q), (outputs[1], &f.r, &r)] {
        if let Some(p) = path {
            write_npy_f32(p, t.shape(), values)?;
        }
    }
    Ok(())
}

/// A `.npy` file as a float32 tensor (float16 files widened exactly), for the ops that
/// compute in float32 only.
fn load(p: &Path) -> Result<Tensor> {
    let arr = read_npy(p)?;
    Tensor::from_vec(&arr.shape, arr.data)
}

/// A `.npy` file as a tensor of `dtype` (rounded to nearest even when narrower), or of the
/// file's own type (float16 stays float16).
fn load_typed(p: &Path, dtype: Option<DType>) -> Result<Tensor> {
    let arr = read_npy(p)?;
    Tensor::from_f32_as(&arr.shape, &arr.data, dtype.unwrap_or(arr.dtype))
}

/// Writes an op's result `t` (its f32 `values` at hand): float16 as `<f2`, every other float
/// type (bfloat16 widened exactly) as `<f4`.
fn write_result(path: &Path, t: &Tensor, values: &[f32]) -> Result<()> {
    if t.dtype() == DType::F16 {
        write_npy_f16(path, t.shape(), &t.to_half_bits()?)
    } else {
        write_npy_f32(path, t.shape(), values)
    }
}

/// `f32`, `f16` or `bf16` (also numpy's names float32, float16, bfloat16).
fn parse_dtype(s: &str) -> Result<DType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(Error::InvalidArgument(format!(
            "bad --dtype '{other}'; expected f32, f16 or bf16"
        ))),
    }
}

fn conv(g: &GlobalOpts, kind: ConvKind, a: &ConvArgs, output_padding: &str) -> Result<()> {
    let activation: Activation = a.activation.parse()?;
    let kernel: Option<ConvConfig> = a.kernel.as_deref().map(str::parse).transpose()?;
    let padding: Padding = a.padding.parse()?;
    let stride = parse_pair(&a.stride, "stride")?;
    let dilation = parse_pair(&a.dilation, "dilation")?;
    let output_padding = parse_pair(output_padding, "output padding")?;
    let ctx = context(g)?;
    let typed = |p: &Path| a.dtype.load(p);
    let (x, w) = (typed(&a.x)?, typed(&a.w)?);
    let bias = a.bias.as_deref().map(typed).transpose()?;
    let opts = ConvOptions {
        stride,
        padding,
        dilation,
        groups: a.groups,
        output_padding,
        bias: bias.as_ref(),
        activation,
        kernel,
    };
    let y = ctx.conv(kind, &x, &w, &opts)?;
    let values = y.to_vec()?;
    if g.verify {
        crate::conv::cpu::reference_for(kind, &x, &w, &opts)?.check_in(&values, y.dtype())?;
        eprintln!(
            "verified against the f64 CPU reference ({})",
            ctx.description()
        );
    }
    write_result(&a.output, &y, &values)
}

/// What the `elementwise` command runs.
enum EwOp {
    Unary(UnaryOp),
    Binary(BinaryOp),
    Slerp(f32),
}

fn elementwise_op(a: &ElementwiseArgs) -> Result<EwOp> {
    let need = |v: Option<f32>, flag: &str| {
        v.ok_or_else(|| Error::InvalidArgument(format!("elementwise {} needs --{flag}", a.op)))
    };
    let op = match a.op.to_ascii_lowercase().as_str() {
        "add" => EwOp::Binary(BinaryOp::Add),
        "sub" => EwOp::Binary(BinaryOp::Sub),
        "mul" => EwOp::Binary(BinaryOp::Mul),
        "div" => EwOp::Binary(BinaryOp::Div),
        "axpy" => EwOp::Binary(BinaryOp::Axpy(need(a.alpha, "alpha")?)),
        "lerp" => EwOp::Binary(BinaryOp::Lerp(need(a.t, "t")?)),
        "slerp" => EwOp::Slerp(need(a.t, "t")?),
        "scale" => EwOp::Unary(UnaryOp::Scale(need(a.alpha, "alpha")?)),
        "clamp" => {
            if a.min.is_none() && a.max.is_none() {
                return Err(Error::InvalidArgument(
                    "elementwise clamp needs --min, --max or both".into(),
                ));
            }
            EwOp::Unary(UnaryOp::Clamp(
                a.min.unwrap_or(f32::NEG_INFINITY),
                a.max.unwrap_or(f32::INFINITY),
            ))
        }
        "abs" => EwOp::Unary(UnaryOp::Abs),
        "exp" => EwOp::Unary(UnaryOp::Exp),
        "log" => EwOp::Unary(UnaryOp::Log),
        "sqrt" => EwOp::Unary(UnaryOp::Sqrt),
        other => match other.parse::<Activation>() {
            Ok(act) if act != Activation::None => EwOp::Unary(UnaryOp::Act(act)),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown elementwise op '{}'; expected one of add, sub, mul, div, scale, axpy, \
                     clamp, abs, exp, log, sqrt, relu, gelu, gelu-tanh, sigmoid, tanh, lerp, slerp",
                    a.op
                )))
            }
        },
    };
    let two = !matches!(op, EwOp::Unary(_));
    match (&a.b, two) {
        (None, true) => Err(Error::InvalidArgument(format!(
            "elementwise {} takes two inputs, A.npy and B.npy",
            a.op
        ))),
        (Some(_), false) => Err(Error::InvalidArgument(format!(
            "elementwise {} takes one input; got a second one",
            a.op
        ))),
        _ => Ok(op),
    }
}

fn elementwise(g: &GlobalOpts, a: &ElementwiseArgs) -> Result<()> {
    let op = elementwise_op(a)?;
    let ctx = context(g)?;
    let typed = |p: &Path| a.dtype.load(p);
    let x = typed(&a.a)?;
    let y = a.b.as_deref().map(typed).transpose()?;
    let (out, reference) = match (op, &y) {
        (EwOp::Unary(u), _) => {
            let out = ctx.unary(u, &x)?;
            let r = g
                .verify
                .then(|| -> Result<_> {
                    Ok(crate::elementwise::cpu::unary_checked(
                        u,
                        x.shape(),
                        &x.to_vec()?,
                    ))
                })
                .transpose()?;
            (out, r)
        }
        (EwOp::Binary(bop), Some(y)) => {
            let out = ctx.binary(bop, &x, y)?;
            let r = g
                .verify
                .then(|| -> Result<_> {
                    Ok(crate::elementwise::cpu::binary_checked(
                        bop,
                        out.shape(),
                        (&x.to_vec()?, x.shape()),
                        (&y.to_vec()?, y.shape()),
                    ))
                })
                .transpose()?;
            (out, r)
        }
        (EwOp::Slerp(t), Some(y)) => {
            let out = ctx.slerp(&x, y, t)?;
            let r = g
                .verify
                .then(|| -> Result<_> {
                    Ok(crate::elementwise::cpu::slerp_checked(
                        x.shape(),
                        &x.to_vec()?,
                        &y.to_vec()?,
                        t,
                    ))
                })
                .transpose()?;
            (out, r)
        }
        _ => {
            return Err(Error::InvalidArgument(format!(
                "elementwise {} takes two inputs, A.npy and B.npy",
                a.op
            )))
        }
    };
    let values = out.to_vec()?;
    if let Some(r) = reference {
        r.check_in(&values, out.dtype())?;
        eprintln!(
            "verified against the f64 CPU reference ({})",
            ctx.description()
        );
    }
    write_result(&a.output, &out, &values)
}

fn context(g: &GlobalOpts) -> Result<Context> {
    let backend: Backend = g.backend.parse()?;
    Context::with_options(ContextOptions {
        backend,
        adapter: g.adapter.clone(),
        ..Default::default()
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
            ..Default::default()
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
        if s.cooperative_matrix.is_empty() {
            println!("  cooperative matrix: none");
        } else {
            println!("  cooperative matrix: {}", s.cooperative_matrix.join(", "));
        }
        if tune {
            for r in ctx.tune_half_matmul()? {
                let label = format!("{} (float16)", r.config);
                match r.gflops {
                    Ok(g) => println!("  matmul kernel {label:<22} {g:8.2} GFLOP/s"),
                    Err(e) => println!("  matmul kernel {label:<22} failed: {e}"),
                }
            }
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
        if tune {
            for depthwise in [false, true] {
                let family = if depthwise {
                    "conv (depthwise)"
                } else {
                    "conv"
                };
                for (c, r) in ctx.tune_conv(depthwise)? {
                    match r {
                        Ok(g) => {
                            println!("  {family} kernel {:<14} {g:8.2} GFLOP/s", c.to_string())
                        }
                        Err(e) => println!("  {family} kernel {:<14} failed: {e}", c.to_string()),
                    }
                }
            }
        }
        if tune {
            for (k, r) in ctx.tune_reduce()? {
                match r {
                    Ok(g) => println!("  reduce kernel {:<14} {g:8.2} GB/s", k.to_string()),
                    Err(e) => println!("  reduce kernel {:<14} failed: {e}", k.to_string()),
                }
            }
        }
        if tune {
            for (wg, r) in ctx.tune_svd()? {
                match r {
                    Ok(t) => println!("  svd workgroup {wg:<14} {:8.2} ms a sweep", t * 1e3),
                    Err(e) => println!("  svd workgroup {wg:<14} failed: {e}"),
                }
            }
            for (k, r) in ctx.tune_svd_batched()? {
                match r {
                    Ok(t) => println!(
                        "  svd-batched kernel {:<9} {:8.2} ms",
                        k.to_string(),
                        t * 1e3
                    ),
                    Err(e) => println!("  svd-batched kernel {:<9} failed: {e}", k.to_string()),
                }
            }
        }
        println!("  matmul kernel in use: {}", ctx.matmul_config()?);
        println!("  reduce kernel in use: {}", ctx.reduce_kernel()?);
        println!("  svd workgroup in use: {}", ctx.svd_workgroup()?);
        println!("  svd-batched kernel in use: {}", ctx.svd_batched_kernel()?);
        let dw = ConvPlan::new(
            ConvKind::Conv2d,
            &[1, 2, 3, 3],
            &[2, 1, 3, 3],
            &ConvOptions {
                groups: 2,
                ..Default::default()
            },
        )?;
        println!(
            "  conv kernel in use: {} (depthwise: {})",
            ctx.conv_config()?,
            ctx.conv_config_for(&dw)?
        );
        println!(
            "  bounds-checked kernels: {}, submission: {}",
            yes(ctx.bounds_checked()),
            ctx.submit_mode().name()
        );
        let report = ctx.tuning_report();
        if !report.is_empty() {
            println!("  tunings run by this process (family, bucket: choice):");
        }
        for r in report {
            println!("    {} {}: {}", r.family, r.bucket, r.chosen);
            for (label, why) in r.excluded {
                println!("      excluded {label}: {why}");
            }
        }
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
    e.one_line()
}
