//! Matmul: `C = act(op(A)·op(B) + bias)` with `numpy.matmul` semantics, on the GPU or the CPU.

pub mod coop;
pub mod cpu;

/// `shaders/matmul.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/matmul.wgsl");

use std::sync::Arc;

use crate::activation::Activation;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{shader, trusted_pipeline};
use crate::runtime::{Bind, Choices, Encoder, Gpu, GpuBuffer, Window};
use crate::tensor::{host_values, DType, Tensor};

mod plan;
pub use plan::*;

use crate::runtime::u32_of as as_u32;

/// Builds (or fetches from the cache) the pipeline for `entry` with the given constants.
fn pipeline(
    gpu: &Gpu,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<crate::runtime::Kernel>> {
    let key = format!("matmul/{entry}/{constants:?}");
    // SAFETY: every index in shaders/matmul.wgsl is guarded or clamped by the kernel itself
    // against sizes the host derives from the operand shapes (MatmulPlan) and binding windows,
    // and the host binds buffers at least that large; no loop in it is unbounded.
    unsafe {
        trusted_pipeline(
            gpu,
            &key,
            "matmul.wgsl",
            || shader::with_epilogue(SOURCE),
            entry,
            constants,
        )
    }
}

/// Longest shared dimension k one matmul pass runs on a CPU-type adapter (see
/// [`crate::runtime::LOOP_SLICE_CPU_ADAPTER`]): longer products are summed from slices of k.
pub const MAX_K_PER_PASS_CPU_ADAPTER: usize = crate::runtime::LOOP_SLICE_CPU_ADAPTER;

/// Environment variable that sets how many slices of k a GPU matmul is split into, summed
/// after one batched dispatch: `off` (or 1), or a count from 2 to [`MAX_SPLIT_K`]. By default
/// GPUs (not CPU-type adapters) split products with few output blocks and a long k
/// ([`split_k_slices`]).
pub const MATMUL_SPLIT_K_ENV: &str = "GPU_LINALG_MATMUL_SPLIT_K";

/// Most slices of k one product is split into.
pub const MAX_SPLIT_K: usize = 32;

thread_local! {
    /// The split-k factor forced by [`force_split_k`] on this thread (0: none).
    static FORCED_SPLIT_K: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Forces the split-k factor of every later GPU matmul called from this thread (1: no split),
/// or lifts that with `None`: for the tests, which run split products on every adapter.
#[doc(hidden)]
pub fn force_split_k(slices: Option<usize>) {
    FORCED_SPLIT_K.with(|f| f.set(slices.unwrap_or(0)));
}

/// How many slices of k the GPU computes `plan` in (1: not split): forced by
/// [`force_split_k`] or [`MATMUL_SPLIT_K_ENV`], else on GPUs other than CPU-type adapters
/// enough slices that a product of fewer than 64 output blocks of 128×128 with k ≥ 2048 makes
/// about 128 workgroups, each slice at least 512 long. Batched products are not split.
pub fn split_k_slices(gpu_is_cpu_adapter: bool, plan: &MatmulPlan) -> usize {
    if plan.batches() != 1 || plan.k < 2 {
        return 1;
    }
    let forced = match FORCED_SPLIT_K.with(|f| f.get()) {
        0 => std::env::var(MATMUL_SPLIT_K_ENV)
            .ok()
            .map(|v| match v.trim() {
                "off" => 1,
                t => t.parse::<usize>().unwrap_or(1),
            }),
        n => Some(n),
    };
    let slices = match forced {
        Some(n) => n,
        None if gpu_is_cpu_adapter => 1,
        None => {
            let blocks = plan.m.div_ceil(128) * plan.n.div_ceil(128);
            if blocks >= 64 || plan.k < 2048 {
                1
            } else {
                (128 / blocks).min(plan.k / 512)
            }
        }
    };
    slices.clamp(1, MAX_SPLIT_K).min(plan.k)
}

/// The B operand as the kernel reads it.
struct OperandB {
    buf: Arc<GpuBuffer>,
    bytes: u64,
    strides: (usize, usize, [usize; 2]),
    n4: usize,
}

impl OperandB {
    /// Whether the blocked kernel's vec4 loads of B are 16-byte aligned ([`vec4_aligned`]).
    fn vec4_aligned(&self) -> bool {
        let (rs, cs, [b0, b1]) = self.strides;
        vec4_aligned((rs, cs), &[b0, b1])
    }
}

/// Both operands hold floats (float32, float16 or bfloat16), or an error naming the other.
fn check_float_operands(a: &Tensor, b: &Tensor) -> Result<()> {
    for (name, t) in [("A", a), ("B", b)] {
        if !t.dtype().is_float() {
            return Err(Error::InvalidArgument(format!(
                "matmul operand {name} (shape {:?}) is {}; expected float32, float16 or bfloat16",
                t.shape(),
                t.dtype().name()
            )));
        }
    }
    Ok(())
}

/// Everything a GPU matmul dispatch needs, resolved.
struct GpuMatmul<'a> {
    gpu: &'a Arc<Gpu>,
    plan: &'a MatmulPlan,
    a: Arc<GpuBuffer>,
    b: Arc<GpuBuffer>,
    bias: Option<Arc<GpuBuffer>>,
    activation: Activation,
    config: MatmulConfig,
    structure: MatmulStructure,
}

/// What a caller knows of a product's operands and which part of the result it wants: hints
/// that let the kernels skip work (half of it for each) and never change a wanted entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MatmulStructure {
    /// op(B) is upper triangular (zero below its diagonal): each output column's sum may stop
    /// at its diagonal (the kernels stop at the last column a thread computes).
    pub b_upper: bool,
    /// Only C(i, j) with i ≤ j is wanted (a symmetric product such as AᵀA): entries below the
    /// diagonal may be left unwritten (zero).
    pub c_upper: bool,
}

crate::kernel_params! {
    /// The kernels' uniform block (`Params` in shaders/matmul.wgsl).
    struct MatmulParams: "Params" {
        m: u32,
        n: u32,
        k: u32,
        batch1: u32,
        a_rs: u32,
        a_cs: u32,
        b_rs: u32,
        b_cs: u32,
        a_b0: u32,
        a_b1: u32,
        b_b0: u32,
        b_b1: u32,
        n4: u32,
        row_off: u32,
        fold: u32,
        a_off: u32,
        c_off: u32,
        b_upper: u32,
        c_upper: u32,
        a_vec4: u32,
        b_vec4: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![MatmulParams::layout(shader::with_epilogue(SOURCE))]
}

impl MatmulParams {
    /// The sizes and strides of `plan`, with B read at `b_strides` (row, column, batch).
    fn new(
        plan: &MatmulPlan,
        b_strides: (usize, usize, [usize; 2]),
        n4: usize,
        row_off: usize,
    ) -> Result<MatmulParams> {
        let u = |v: usize| as_u32(v, "matmul size or stride");
        let (b_rs, b_cs, b_bs) = b_strides;
        Ok(MatmulParams {
            m: u(plan.m)?,
            n: u(plan.n)?,
            k: u(plan.k)?,
            batch1: u(plan.batch[1])?,
            a_rs: u(plan.a_rs)?,
            a_cs: u(plan.a_cs)?,
            b_rs: u(b_rs)?,
            b_cs: u(b_cs)?,
            a_b0: u(plan.a_bs[0])?,
            a_b1: u(plan.a_bs[1])?,
            b_b0: u(b_bs[0])?,
            b_b1: u(b_bs[1])?,
            n4: u(n4)?,
            row_off: u(row_off)?,
            ..Default::default()
        })
    }
}

impl GpuMatmul<'_> {
    /// Encodes and submits the matmul; returns the output buffer.
    ///
    /// When A or C is larger than one storage binding may be (128 MiB on lavapipe and in
    /// WebGPU), the rows are split into chunks whose A and C windows each fit one binding; a
    /// window starts at an offset aligned to `min_storage_buffer_offset_alignment` and the
    /// kernel skips the few elements before the chunk's first row (`a_off`, `c_off`).
    fn run(&self) -> Result<Arc<GpuBuffer>> {
        let plan = self.plan;
        let gpu = self.gpu;
        let out_len = plan.batches() * plan.m * plan.n;
        let out = gpu.alloc((out_len * 4) as u64, "matmul result")?;
        if out_len == 0 {
            return Ok(out);
        }
        let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
        let batches = plan.batches();
        if batches > limit {
            return Err(Error::InvalidArgument(format!(
                "matmul over {batches} batches exceeds this adapter's {limit} workgroups per dispatch dimension"
            )));
        }
        let mut enc = gpu.encoder("matmul");
        // B: as given (naive, tiled, vec4 on a suitable B) or packed once for the vec4 kernel.
        let b = match self.config.kernel {
            MatmulKernel::Vec4 => {
                let rn4 = self.config.cols as usize;
                let n4 = plan.n.div_ceil(4 * rn4) * rn4;
                let (buf, bs) = if plan.b_cs == 1 && plan.n == n4 * 4 {
                    (self.b.clone(), [plan.b_bs[0] / 4, plan.b_bs[1] / 4])
                } else {
                    let packed = self.pack_b(&mut enc, n4 * 4)?;
                    let per = plan.k * n4;
                    let stored = plan.b_stored_stride();
                    let scale = |s: usize| s.checked_div(stored).map_or(0, |q| q * per);
                    (packed, [scale(plan.b_bs[0]), scale(plan.b_bs[1])])
                };
                let bytes = (plan.b_count * plan.k * n4 * 16).max(16) as u64;
                OperandB {
                    buf,
                    bytes,
                    strides: (0, 0, bs),
                    n4,
                }
            }
            _ => OperandB {
                buf: self.b.clone(),
                bytes: (plan.b_extent() * 4).max(4) as u64,
                strides: (plan.b_rs, plan.b_cs, plan.b_bs),
                n4: 0,
            },
        };
        let bind_limit = gpu.limits.max_storage_buffer_binding_size;
        if b.bytes > bind_limit {
            return Err(Error::OutOfMemory(format!(
                "matmul operand B needs a binding of {} bytes, above this adapter's max_storage_buffer_binding_size of {bind_limit} bytes",
                b.bytes
            )));
        }
        let a_bytes = (plan.a_extent().max(1) * 4) as u64;
        let c_bytes = (out_len * 4) as u64;
        if a_bytes <= bind_limit && c_bytes <= bind_limit {
            self.encode(
                &mut enc,
                plan,
                &b,
                Window::whole(a_bytes),
                Window::whole(c_bytes),
                &out,
            )?;
        } else {
            let too_big = |what: &str| {
                Error::OutOfMemory(format!(
                    "matmul {what}: A needs {a_bytes} and C {c_bytes} bytes, above this adapter's max_storage_buffer_binding_size of {bind_limit} bytes"
                ))
            };
            if batches > 1 || plan.a_cs != 1 {
                return Err(too_big(
                    "of a batched or transposed A is not split into row chunks",
                ));
            }
            let align = u64::from(gpu.limits.min_storage_buffer_offset_alignment).max(4);
            let row_bytes = (4 * plan.k.max(plan.n)) as u64;
            let rows_per = (bind_limit.saturating_sub(align) / row_bytes.max(1)) as usize;
            if rows_per == 0 {
                return Err(too_big("has rows longer than one binding"));
            }
            let mut r0 = 0;
            while r0 < plan.m {
                let r1 = (r0 + rows_per).min(plan.m);
                let chunk = MatmulPlan {
                    m: r1 - r0,
                    ..plan.clone()
                };
                let a = Window::span(r0 * plan.k, r1 * plan.k, align);
                let c = Window::span(r0 * plan.n, r1 * plan.n, align);
                self.encode(&mut enc, &chunk, &b, a, c, &out)?;
                r0 = r1;
            }
        }
        enc.submit()?;
        Ok(out)
    }

    /// Encodes the dispatches of `plan` (the whole matmul, or a chunk of its rows) with A and C
    /// bound through the given windows.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        enc: &mut Encoder,
        plan: &MatmulPlan,
        b: &OperandB,
        a_view: Window,
        c_view: Window,
        out: &Arc<GpuBuffer>,
    ) -> Result<()> {
        let gpu = self.gpu;
        let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
        let batches = plan.batches();
        let mut constants: Vec<(&str, f64)> = vec![
            ("HAS_BIAS", if self.bias.is_some() { 1.0 } else { 0.0 }),
            ("ACT", f64::from(self.activation.shader_id())),
        ];
        let dummy;
        let bias_bytes = if self.bias.is_some() {
            (plan.n * 4) as u64
        } else {
            4
        };
        let bias_buf = match &self.bias {
            Some(b) => b,
            None => {
                dummy = gpu.alloc(4, "matmul bias placeholder")?;
                &dummy
            }
        };
        // (entry point, rows per workgroup, grid x, x is the row dimension)
        let (entry, rows_per_group, gx, rows_on_x) = match self.config.kernel {
            MatmulKernel::Naive => ("naive", 8, plan.n.div_ceil(8), false),
            MatmulKernel::Tiled => {
                constants.push(("TM", f64::from(self.config.rows)));
                constants.push(("TN", f64::from(self.config.cols)));
                let tn = 16 * self.config.cols as usize;
                (
                    "tiled",
                    16 * self.config.rows as usize,
                    plan.n.div_ceil(tn),
                    false,
                )
            }
            MatmulKernel::Blocked => {
                let (tm, tn, bk) = (self.config.rows, self.config.cols, self.config.workgroup);
                let bytes = self.config.workgroup_bytes();
                if bytes > gpu.limits.max_compute_workgroup_storage_size
                    || gpu.limits.max_compute_invocations_per_workgroup < 256
                {
                    return Err(Error::Kernel(format!(
                        "matmul kernel {} needs 256 invocations and {bytes} bytes of workgroup \
                         memory per workgroup; this adapter offers {} and {}",
                        self.config,
                        gpu.limits.max_compute_invocations_per_workgroup,
                        gpu.limits.max_compute_workgroup_storage_size
                    )));
                }
                constants.push(("BTM", f64::from(tm)));
                constants.push(("BTN", f64::from(tn)));
                constants.push(("BK", f64::from(bk)));
                (
                    "blocked",
                    16 * tm as usize,
                    plan.n.div_ceil(16 * tn as usize),
                    false,
                )
            }
            MatmulKernel::Vec4 => {
                constants.push(("RM", f64::from(self.config.rows)));
                constants.push(("RN4", f64::from(self.config.cols)));
                constants.push(("WG", f64::from(self.config.workgroup)));
                let gx =
                    (b.n4 / self.config.cols as usize).div_ceil(self.config.workgroup as usize);
                ("vec4_kernel", self.config.rows as usize, gx, true)
            }
            MatmulKernel::Coop => {
                // `matmul_structured` sends cooperative configurations to `matmul_coop` only.
                return Err(Error::Kernel(format!(
                    "matmul kernel {} runs only on float16 operands",
                    self.config
                )));
            }
        };
        if gx > limit {
            return Err(Error::InvalidArgument(format!(
                "matmul with {} columns needs {gx} workgroups along one dimension, above this adapter's limit of {limit}",
                plan.n
            )));
        }
        let kernel = pipeline(gpu, entry, &constants)?;
        let vec4_placeholder =
            if self.config.kernel == MatmulKernel::Blocked && (a_view.size < 16 || b.bytes < 16) {
                Some(gpu.alloc(16, "matmul vec4 placeholder")?)
            } else {
                None
            };
        let b_binding = if rows_on_x { 5 } else { 2 };
        for (row_off, rows) in row_chunks(plan.m, rows_per_group, limit) {
            let params = MatmulParams {
                a_off: as_u32(a_view.elem_off, "A offset")?,
                c_off: as_u32(c_view.elem_off, "C offset")?,
                b_upper: u32::from(self.structure.b_upper),
                c_upper: u32::from(self.structure.c_upper),
                a_vec4: u32::from(a_view.size >= 16 && plan.a_vec4_aligned(a_view.elem_off)),
                b_vec4: u32::from(b.bytes >= 16 && b.vec4_aligned()),
                ..MatmulParams::new(plan, b.strides, b.n4, row_off)?
            };
            let u = enc.params(&params)?;
            let mut binds = vec![
                (0, Bind::Params(&u)),
                (1, Bind::Range(&self.a, a_view.offset, a_view.size)),
                (b_binding, Bind::Buffer(&b.buf, b.bytes)),
                (3, Bind::Buffer(bias_buf, bias_bytes)),
                (4, Bind::Range(out, c_view.offset, c_view.size)),
            ];
            if self.config.kernel == MatmulKernel::Blocked {
                // The same operands again, read as vec4 where aligned; an operand smaller than
                // one vec4 is never read so (its vec4 flag is off) and binds a placeholder.
                binds.push(match vec4_placeholder.as_ref() {
                    Some(d) if a_view.size < 16 => (7, Bind::Buffer(d, 16)),
                    _ => (7, Bind::Range(&self.a, a_view.offset, a_view.size)),
                });
                binds.push(match vec4_placeholder.as_ref() {
                    Some(d) if b.bytes < 16 => (5, Bind::Buffer(d, 16)),
                    _ => (5, Bind::Buffer(&b.buf, b.bytes)),
                });
            }
            let bg = enc.bind(&kernel, &binds);
            let row_groups = rows.div_ceil(rows_per_group) as u32;
            let grid = if rows_on_x {
                (row_groups, gx as u32, batches as u32)
            } else {
                (gx as u32, row_groups, batches as u32)
            };
            enc.dispatch(&kernel, &bg, grid);
        }
        Ok(())
    }

    /// Encodes the pack of op(B) into a zero-padded K x `width` layout per stored matrix.
    fn pack_b(&self, enc: &mut Encoder, width: usize) -> Result<Arc<GpuBuffer>> {
        let plan = self.plan;
        let gpu = self.gpu;
        let packed_len = plan.b_count * plan.k * width;
        let packed = gpu.alloc((packed_len * 4).max(16) as u64, "packed B operand")?;
        if packed_len == 0 {
            return Ok(packed);
        }
        let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
        if plan.b_count > limit {
            return Err(Error::InvalidArgument(format!(
                "packing B over {} matrices exceeds this adapter's {limit} workgroups per dispatch dimension",
                plan.b_count
            )));
        }
        // Fold the per-matrix 1-D grid of k * width threads into x and y.
        let groups = (plan.k * width).div_ceil(64);
        let gx = groups.min(limit);
        let gy = groups.div_ceil(gx);
        let kernel = pipeline(gpu, "pack_b", &[])?;
        // Stored matrices of B (or slices of a split k) are b_stored_stride apart.
        let stride = plan.b_stored_stride();
        let params = MatmulParams {
            fold: as_u32(gx * 64, "pack fold")?,
            ..MatmulParams::new(plan, (plan.b_rs, plan.b_cs, [0, stride]), width, 0)?
        };
        let u = enc.params(&params)?;
        let b_bytes = (plan.b_extent() * 4).max(4) as u64;
        let bg = enc.bind(
            &kernel,
            &[
                (0, Bind::Params(&u)),
                (2, Bind::Buffer(&self.b, b_bytes)),
                (6, Bind::Buffer(&packed, (packed_len * 4) as u64)),
            ],
        );
        enc.dispatch(&kernel, &bg, (gx as u32, gy as u32, plan.b_count as u32));
        Ok(packed)
    }
}

/// Splits `m` rows into chunks of at most `limit` workgroups of `per_group` rows each.
fn row_chunks(m: usize, per_group: usize, limit: usize) -> Vec<(usize, usize)> {
    let step = per_group * limit;
    (0..m).step_by(step).map(|s| (s, step.min(m - s))).collect()
}

/// Result of timing one candidate.
#[derive(Clone, Debug)]
pub struct TuningResult<K = MatmulConfig> {
    /// The configuration timed.
    pub config: K,
    /// GFLOP/s on the tuning problem, or the error that ruled it out.
    pub gflops: Result<f64, String>,
}

impl Context {
    /// `A · B` with `numpy.matmul` semantics. Both stay where they are; the result is resident
    /// on the same backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    /// let v = ctx.tensor(&[3], &[1., 0., 1.])?;
    /// assert_eq!(ctx.matmul(&a, &v)?.to_vec()?, vec![4., 10.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.matmul_with(a, b, &MatmulOptions::default())
    }

    /// A linear layer `act(X·W + b)` with `W` of shape `[in, out]`, one fused kernel.
    ///
    /// ```
    /// use gpu_linalg::Activation;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1, 2], &[1., 2.])?;
    /// let w = ctx.tensor(&[2, 2], &[1., 1., 1., -1.])?; // [in, out]
    /// let b = ctx.tensor(&[2], &[0.5, 0.])?;
    /// let y = ctx.linear(&x, &w, Some(&b), Activation::Relu)?; // relu(x·W + b)
    /// assert_eq!(y.to_vec()?, [3.5, 0.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn linear(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        activation: Activation,
    ) -> Result<Tensor> {
        self.matmul_with(
            x,
            w,
            &MatmulOptions {
                bias,
                activation,
                ..Default::default()
            },
        )
    }

    /// `act(op(A)·op(B) + bias)` with transposes, bias, activation and an optional forced
    /// kernel.
    ///
    /// ```
    /// use gpu_linalg::MatmulOptions;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// let opts = MatmulOptions { transpose_b: true, ..Default::default() };
    /// assert_eq!(ctx.matmul_with(&a, &a, &opts)?.to_vec()?, [5., 11., 11., 25.]); // A·Aᵀ
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn matmul_with(&self, a: &Tensor, b: &Tensor, opts: &MatmulOptions) -> Result<Tensor> {
        self.matmul_structured(a, b, opts, MatmulStructure::default())
    }

    /// Test hook: [`Context::matmul_with`] with the structure hints the decompositions use
    /// (`b_upper`: op(B) is upper triangular; `c_upper`: only C(i, j) with i ≤ j is wanted).
    #[doc(hidden)]
    pub fn matmul_structured_for_tests(
        &self,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
        b_upper: bool,
        c_upper: bool,
    ) -> Result<Tensor> {
        self.matmul_structured(a, b, opts, MatmulStructure { b_upper, c_upper })
    }

    /// [`Context::matmul_with`] with what the caller knows of the operands' structure and
    /// which part of the result it wants (the GPU kernels skip the rest; the CPU computes all).
    pub(crate) fn matmul_structured(
        &self,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
        structure: MatmulStructure,
    ) -> Result<Tensor> {
        check_float_operands(a, b)?;
        let half = |t: &Tensor| t.dtype().is_half();
        if half(a) || half(b) || opts.bias.is_some_and(half) || opts.out_dtype.is_some() {
            return self.matmul_via_f32(a, b, opts, structure);
        }
        let plan = MatmulPlan::new(a.shape(), b.shape(), opts.transpose_a, opts.transpose_b)?;
        plan.check_bias(opts.bias)?;
        if let Some(k) = opts.kernel {
            k.validate()?;
            if k.kernel == MatmulKernel::Coop {
                return Err(coop_needs_f16(k, a.dtype(), b.dtype()));
            }
        }
        if let Some(gpu) = self.gpu() {
            let r = self.matmul_gpu(gpu, &plan, a, b, opts, structure);
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            // Auto fallback: compute on the CPU, keep the result resident on the GPU.
            let host = self.matmul_cpu(&plan, a, b, opts)?;
            return self.tensor(host.shape(), &host.to_vec()?);
        }
        self.matmul_cpu(&plan, a, b, opts)
    }

    /// A matmul with half-precision operands or an explicit result type: the float operands
    /// (and bias) widened to f32 (exact), the f32 product, then rounded to the result type
    /// ([`MatmulOptions::out_dtype`], else numpy's promotion).
    fn matmul_via_f32(
        &self,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
        structure: MatmulStructure,
    ) -> Result<Tensor> {
        let out = match opts.out_dtype {
            Some(d) if d.is_float() => d,
            Some(d) => {
                return Err(Error::InvalidArgument(format!(
                    "matmul out_dtype {} is not a float type (float32, float16, bfloat16)",
                    d.name()
                )))
            }
            None if a.dtype() == b.dtype() => a.dtype(),
            None => DType::F32,
        };
        let wide = |t: &Tensor| self.cast(t, DType::F32);
        if let Some(c) = self.matmul_coop(a, b, opts)? {
            return self.cast(&c, out);
        }
        let bias = match opts.bias {
            Some(t) if t.dtype().is_float() => Some(wide(t)?),
            Some(t) => Some(t.clone()),
            None => None,
        };
        let wide_opts = MatmulOptions {
            bias: bias.as_ref(),
            out_dtype: None,
            ..*opts
        };
        let c = self.matmul_structured(&wide(a)?, &wide(b)?, &wide_opts, structure)?;
        self.cast(&c, out)
    }

    /// The float16 product on the adapter's matrix units ([`coop`]): the f32 result (bias
    /// and activation applied) when both operands are float16 and the configuration is forced
    /// (`opts.kernel` a [`MatmulKernel::Coop`] one) or tuned for the product's bucket
    /// ([`HalfMatmulPath`]); `None` where the f32 kernels serve instead.
    fn matmul_coop(&self, a: &Tensor, b: &Tensor, opts: &MatmulOptions) -> Result<Option<Tensor>> {
        let forced = opts.kernel.filter(|k| k.kernel == MatmulKernel::Coop);
        let both_f16 = a.dtype() == DType::F16 && b.dtype() == DType::F16;
        if let Some(k) = forced {
            k.validate()?;
            if !both_f16 {
                return Err(coop_needs_f16(k, a.dtype(), b.dtype()));
            }
        }
        let Some(gpu) = self.gpu() else {
            return Ok(None);
        };
        if !both_f16 || (opts.kernel.is_some() && forced.is_none()) {
            return Ok(None);
        }
        let plan = MatmulPlan::new(a.shape(), b.shape(), opts.transpose_a, opts.transpose_b)?;
        // A float bias widened (exactly) to f32, as the f32 kernels take it.
        let bias = match opts.bias {
            Some(t) if t.dtype().is_float() => Some(self.cast(t, DType::F32)?),
            other => other.cloned(),
        };
        plan.check_bias(bias.as_ref())?;
        let cfg = match forced {
            Some(k) => k,
            None => match self.half_matmul_path(gpu, &plan)? {
                HalfMatmulPath::Coop(c) if coop::unfit(gpu, c, &plan).is_none() => c,
                _ => return Ok(None),
            },
        };
        let epilogue = (bias.as_ref(), opts.activation);
        self.coop_product(gpu, (a, b), &plan, epilogue, cfg)
            .map(Some)
    }

    /// The f32 product of the float16 `a` and `b` by the cooperative-matrix kernel `cfg`,
    /// with the epilogue's float32 bias and activation.
    fn coop_product(
        &self,
        gpu: &Arc<Gpu>,
        (a, b): (&Tensor, &Tensor),
        plan: &MatmulPlan,
        (bias, activation): (Option<&Tensor>, Activation),
        cfg: MatmulConfig,
    ) -> Result<Tensor> {
        let bias = bias.map(|t| self.resident(t)).transpose()?;
        let (ab, bb) = (self.resident(a)?, self.resident(b)?);
        let out = gpu.scoped("matmul_coop", || {
            coop::run(gpu, (&ab, &bb), plan, (bias.as_ref(), activation), cfg)
        })??;
        Ok(Tensor::from_gpu(plan.out_shape.clone(), DType::F32, out))
    }

    /// The cooperative-matrix configurations ([`MatmulKernel::Coop`]) this context's adapter
    /// runs: those of every fragment size it offers for float16 · float16 → float32, within its
    /// workgroup memory. Empty on the CPU backend and on adapters without cooperative matrices
    /// (or with `GPU_LINALG_COOPERATIVE_MATRIX=off`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// for cfg in ctx.coop_matmul_candidates() {
    ///     println!("{cfg}"); // e.g. coop:4x4@16
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn coop_matmul_candidates(&self) -> Vec<MatmulConfig> {
        self.gpu().map_or_else(Vec::new, |g| coop::candidates(g))
    }

    /// How this context runs float16 × float16 products of `plan`'s shape bucket: widened to
    /// f32 for [`Context::matmul_config_for`]'s kernel, or a cooperative-matrix configuration
    /// (tuned now on first use, as for f32). The CPU backend has no GPU path.
    ///
    /// ```
    /// use gpu_linalg::MatmulPlan;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let plan = MatmulPlan::new(&[512, 256], &[256, 1024], false, false)?;
    /// match ctx.half_matmul_path_for(&plan) {
    ///     Ok(path) => println!("{path}"), // widen, or e.g. coop:4x4@16
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"),
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn half_matmul_path_for(&self, plan: &MatmulPlan) -> Result<HalfMatmulPath> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU matmul kernel".into(),
            ));
        };
        self.half_matmul_path(gpu, plan)
    }

    /// How float16 products of `plan`'s bucket run on `gpu`: widened for the f32 kernels where
    /// the adapter has no cooperative matrices, else the tuner's choice between that and every
    /// cooperative-matrix candidate, each verified against the CPU reference first.
    fn half_matmul_path(&self, gpu: &Arc<Gpu>, plan: &MatmulPlan) -> Result<HalfMatmulPath> {
        let candidates = coop::candidates(gpu);
        if candidates.is_empty() {
            return Ok(HalfMatmulPath::Widen);
        }
        let bucket = matmul_bucket(plan);
        HALF_CHOICES.get(gpu, &bucket.name(), || {
            let (m, n, k, batch) = self.matmul_tuning_shape(&bucket);
            self.tune_half_matmul_shape(gpu, &candidates, (m, n, k, batch))
        })
    }

    /// Every float16 path's figures on one n³ product (as [`Context::tune_matmul`]: each
    /// checked against the CPU reference first), on adapters with cooperative matrices; empty
    /// elsewhere. Used by `gpu-linalg info --tune`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert!(ctx.tune_half_matmul()?.is_empty()); // nothing to tune on the CPU backend
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tune_half_matmul(&self) -> Result<Vec<TuningResult<HalfMatmulPath>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let candidates = coop::candidates(gpu);
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.matmul_tuning_cap().0;
        let outcomes = self.tune_half_matmul_shape(gpu, &candidates, (n, n, n, 1))?;
        Ok(cube_rates(n, outcomes))
    }

    /// The outcome of `widen` and of each cooperative configuration of `candidates` on
    /// `batch` products of m×k by k×n float16 operands.
    fn tune_half_matmul_shape(
        &self,
        gpu: &Arc<Gpu>,
        candidates: &[MatmulConfig],
        (m, n, k, batch): (usize, usize, usize, usize),
    ) -> Result<Vec<crate::runtime::TuneOutcome<HalfMatmulPath>>> {
        let (sa, sb) = tuning_shapes(m, n, k, batch);
        let (ad, bd, reference) = tuning_operands(&sa, &sb)?;
        // The tuning values are exact in float16, so the f32 bound judges both paths.
        let a = self.cast(&self.tensor(&sa, &ad)?, DType::F16)?;
        let b = self.cast(&self.tensor(&sb, &bd)?, DType::F16)?;
        let plan = MatmulPlan::new(&sa, &sb, false, false)?;
        let paths: Vec<HalfMatmulPath> = std::iter::once(HalfMatmulPath::Widen)
            .chain(candidates.iter().copied().map(HalfMatmulPath::Coop))
            .collect();
        let opts = MatmulOptions::default();
        Ok(crate::runtime::measure(
            gpu,
            &paths,
            3,
            |path| match path {
                HalfMatmulPath::Widen => self.matmul_structured(
                    &self.cast(&a, DType::F32)?,
                    &self.cast(&b, DType::F32)?,
                    &opts,
                    MatmulStructure::default(),
                ),
                HalfMatmulPath::Coop(cfg) => {
                    self.coop_product(gpu, (&a, &b), &plan, (None, Activation::None), cfg)
                }
            },
            |t| t.to_vec(),
            |v| reference.check(v),
        ))
    }

    fn matmul_cpu(
        &self,
        plan: &MatmulPlan,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
    ) -> Result<Tensor> {
        let av = host_values(a)?;
        let bv = host_values(b)?;
        let bias = opts.bias.map(host_values).transpose()?;
        let out = crate::matmul::cpu::fast(plan, &av, &bv, bias.as_deref(), opts.activation);
        Tensor::from_vec(&plan.out_shape, out)
    }

    fn matmul_gpu(
        &self,
        gpu: &Arc<Gpu>,
        plan: &MatmulPlan,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
        structure: MatmulStructure,
    ) -> Result<Tensor> {
        if gpu.info.device_type == wgpu::DeviceType::Cpu && plan.k > MAX_K_PER_PASS_CPU_ADAPTER {
            return self.matmul_split_k(gpu, plan, a, b, opts, structure);
        }
        let slices = split_k_slices(gpu.is_cpu_adapter(), plan);
        if slices > 1 {
            return self.matmul_split_k_batched(gpu, plan, (a, b), opts, structure, slices);
        }
        let config = match opts.kernel {
            Some(c) => c,
            None => self.matmul_config_for(plan)?,
        };
        let job = GpuMatmul {
            gpu,
            plan,
            a: self.resident(a)?,
            b: self.resident(b)?,
            bias: opts.bias.map(|t| self.resident(t)).transpose()?,
            activation: opts.activation,
            config,
            structure,
        };
        let out = gpu.scoped("matmul", || job.run())??;
        Ok(Tensor::from_gpu(plan.out_shape.clone(), DType::F32, out))
    }

    /// `matmul_gpu` with k split into `slices` equal slices computed by one batched dispatch
    /// (slice s of op(A) and op(B) as batch s, through batch strides), summed over the batch,
    /// plus the k mod slices last terms as one more product; then the bias and activation.
    fn matmul_split_k_batched(
        &self,
        gpu: &Arc<Gpu>,
        plan: &MatmulPlan,
        (a, b): (&Tensor, &Tensor),
        opts: &MatmulOptions,
        structure: MatmulStructure,
        slices: usize,
    ) -> Result<Tensor> {
        let ks = plan.k / slices;
        let sliced = MatmulPlan {
            k: ks,
            batch: [1, slices],
            out_shape: vec![slices, plan.m, plan.n],
            a_bs: [0, ks * plan.a_cs],
            b_bs: [0, ks * plan.b_rs],
            b_count: slices,
            ..plan.clone()
        };
        let config = match opts.kernel {
            Some(c) => c,
            None => self.matmul_config_for(plan)?,
        };
        let job = GpuMatmul {
            gpu,
            plan: &sliced,
            a: self.resident(a)?,
            b: self.resident(b)?,
            bias: None,
            activation: Activation::None,
            config,
            // Each slice starts below B's first row: its triangle is not the slice's own.
            structure: MatmulStructure {
                b_upper: false,
                ..structure
            },
        };
        let parts = gpu.scoped("matmul", || job.run())??;
        let parts = Tensor::from_gpu(sliced.out_shape.clone(), DType::F32, parts);
        let mut out = self.sum(&parts, Some(0))?;
        let tail = slices * ks;
        if tail < plan.k {
            // The k mod slices last terms, as m×n like the sum (numpy's shape comes last).
            let part = self.k_slice_product(gpu, (a, b), opts, structure, (tail, plan.k))?;
            out = self.add(&out, &part.reshape(&[plan.m, plan.n])?)?;
        }
        self.epilogue_after_sum(out, opts)?.reshape(&plan.out_shape)
    }

    /// op(A)[.., k0..k1] · op(B)[k0..k1, ..] on the GPU, without bias or activation (a part of
    /// a product summed from slices of k; B's triangle, if any, is not the slice's own).
    fn k_slice_product(
        &self,
        gpu: &Arc<Gpu>,
        (a, b): (&Tensor, &Tensor),
        opts: &MatmulOptions,
        structure: MatmulStructure,
        (k0, k1): (usize, usize),
    ) -> Result<Tensor> {
        // The axis that holds k in each operand as stored.
        let k_axis = |t: &Tensor, transposed: bool, is_a: bool| match t.ndim() {
            0 | 1 => 0,
            d if transposed == is_a => d - 2,
            d => d - 1,
        };
        let (ap, bp) = (
            self.slice_axis(a, k_axis(a, opts.transpose_a, true), k0, k1)?,
            self.slice_axis(b, k_axis(b, opts.transpose_b, false), k0, k1)?,
        );
        let plan = MatmulPlan::new(ap.shape(), bp.shape(), opts.transpose_a, opts.transpose_b)?;
        let part_opts = MatmulOptions {
            bias: None,
            activation: Activation::None,
            ..*opts
        };
        let part_structure = MatmulStructure {
            b_upper: false,
            ..structure
        };
        self.matmul_gpu(gpu, &plan, &ap, &bp, &part_opts, part_structure)
    }

    /// The bias and activation of `opts` applied to a product summed from parts.
    fn epilogue_after_sum(&self, mut out: Tensor, opts: &MatmulOptions) -> Result<Tensor> {
        if let Some(bias) = opts.bias {
            out = self.add(&out, bias)?;
        }
        if opts.activation != Activation::None {
            out = self.activate(&out, opts.activation)?;
        }
        Ok(out)
    }

    /// `matmul_gpu` over slices of the shared dimension, each at most
    /// [`MAX_K_PER_PASS_CPU_ADAPTER`] long: the partial products are added, then the bias and
    /// the activation applied, all on the GPU. (Summing in chunks only shortens the rounding
    /// error's chains.)
    fn matmul_split_k(
        &self,
        gpu: &Arc<Gpu>,
        plan: &MatmulPlan,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
        structure: MatmulStructure,
    ) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        let mut k0 = 0;
        while k0 < plan.k {
            let k1 = (k0 + MAX_K_PER_PASS_CPU_ADAPTER).min(plan.k);
            let part = self.k_slice_product(gpu, (a, b), opts, structure, (k0, k1))?;
            sum = Some(match sum {
                None => part,
                Some(s) => self.add(&s, &part)?,
            });
            k0 = k1;
        }
        let out = sum.ok_or_else(|| Error::Shape("matmul: no slices of k".into()))?;
        self.epilogue_after_sum(out, opts)
    }

    /// The matmul kernel this context uses for large products (the bucket of an n³ product,
    /// n = 512 on CPU-type adapters and 1024 on GPUs): see [`Context::matmul_config_for`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// match ctx.matmul_config() {
    ///     Ok(cfg) => println!("matmul kernel: {cfg:?}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"), // the CPU backend has no GPU kernel
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn matmul_config(&self) -> Result<MatmulConfig> {
        let n = self.matmul_tuning_cap().0;
        self.matmul_config_for(&MatmulPlan::new(&[n, n], &[n, n], false, false)?)
    }

    /// The matmul kernel for `plan`: forced by `GPU_LINALG_MATMUL_KERNEL`, else the choice of
    /// its shape bucket ([`matmul_bucket`]): remembered, read from the tuning cache, or tuned
    /// now on a product of that bucket, every candidate checked against the CPU reference
    /// first (and the choice cached on disk).
    ///
    /// ```
    /// use gpu_linalg::MatmulPlan;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let plan = MatmulPlan::new(&[512, 256], &[256, 1024], false, false)?;
    /// match ctx.matmul_config_for(&plan) {
    ///     Ok(cfg) => println!("{cfg:?}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"),
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn matmul_config_for(&self, plan: &MatmulPlan) -> Result<MatmulConfig> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU matmul kernel".into(),
            ));
        };
        let bucket = matmul_bucket(plan);
        CHOICES.get(gpu, &bucket.name(), || {
            let (m, n, k, batch) = self.matmul_tuning_shape(&bucket);
            self.tune_matmul_shape(m, n, k, batch)
        })
    }

    /// The largest (m = n, k) a tuning product has on this adapter.
    fn matmul_tuning_cap(&self) -> (usize, usize) {
        match self.gpu() {
            Some(g) if g.is_cpu_adapter() => (512, 512),
            _ => (1024, 2048),
        }
    }

    /// The product a bucket is tuned on: (m, n, k, batch), capped so a tuning stays short.
    fn matmul_tuning_shape(&self, b: &MatmulBucket) -> (usize, usize, usize, usize) {
        let (cap_mn, cap_k) = self.matmul_tuning_cap();
        let side = (1usize << b.mn_exp.div_ceil(2)).min(cap_mn);
        let k = (1usize << b.k_exp).min(cap_k);
        let batch = if b.batched { 4 } else { 1 };
        (side, side, k, batch)
    }

    /// Times every candidate kernel on one n³ problem (512³ on CPU-type adapters, 1024³ on
    /// real GPUs), each checked against the CPU reference first, and returns the figures, best
    /// kernel not yet chosen. Used by `gpu-linalg info --tune`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let results = ctx.tune_matmul()?;
    /// assert!(ctx.is_gpu() || results.is_empty()); // nothing to tune on the CPU backend
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tune_matmul(&self) -> Result<Vec<TuningResult>> {
        if self.gpu().is_none() {
            return Ok(Vec::new());
        }
        let n = self.matmul_tuning_cap().0;
        Ok(cube_rates(n, self.tune_matmul_shape(n, n, n, 1)?))
    }

    /// Every candidate's outcome on `batch` products of m×k by k×n.
    fn tune_matmul_shape(
        &self,
        m: usize,
        n: usize,
        k: usize,
        batch: usize,
    ) -> Result<Vec<crate::runtime::TuneOutcome<MatmulConfig>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let (sa, sb) = tuning_shapes(m, n, k, batch);
        let (ad, bd, reference) = tuning_operands(&sa, &sb)?;
        let a = self.tensor(&sa, &ad)?;
        let b = self.tensor(&sb, &bd)?;
        Ok(crate::runtime::measure(
            gpu,
            &MatmulConfig::candidates_for(gpu.is_cpu_adapter()),
            3,
            |config| {
                let opts = MatmulOptions {
                    kernel: Some(config),
                    ..Default::default()
                };
                self.matmul_with(&a, &b, &opts)
            },
            |t| t.to_vec(),
            |v| reference.check(v),
        ))
    }
}

/// The tuning outcomes of an n³ product as GFLOP/s.
fn cube_rates<K>(n: usize, outcomes: Vec<crate::runtime::TuneOutcome<K>>) -> Vec<TuningResult<K>> {
    let flops = 2.0 * (n * n * n) as f64;
    outcomes
        .into_iter()
        .map(|o| TuningResult {
            config: o.choice,
            gflops: o.seconds.map(|s| flops / s / 1e9),
        })
        .collect()
}

/// The operand shapes of a tuning product: `batch` products of m×k by k×n.
fn tuning_shapes(m: usize, n: usize, k: usize, batch: usize) -> (Vec<usize>, Vec<usize>) {
    if batch > 1 {
        (vec![batch, m, k], vec![batch, k, n])
    } else {
        (vec![m, k], vec![k, n])
    }
}

/// The tuning operands of shapes `sa` and `sb` (small multiples of 1/4 and 1/2, exact in
/// float16 and bfloat16) and the CPU reference of their product.
fn tuning_operands(
    sa: &[usize],
    sb: &[usize],
) -> Result<(Vec<f32>, Vec<f32>, crate::reference::Reference)> {
    let ad: Vec<f32> = (0..sa.iter().product::<usize>())
        .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
        .collect();
    let bd: Vec<f32> = (0..sb.iter().product::<usize>())
        .map(|i| ((i % 5) as f32 - 2.0) * 0.5)
        .collect();
    let reference = crate::matmul::cpu::reference_for(
        &Tensor::from_vec(sa, ad.clone())?,
        &Tensor::from_vec(sb, bd.clone())?,
        &MatmulOptions::default(),
    )?;
    Ok((ad, bd, reference))
}

/// How a float16 × float16 product runs (the `matmul-f16` tuning family, forced by
/// `GPU_LINALG_MATMUL_F16_KERNEL`): widened exactly to f32 for the tuned f32 kernel
/// (`widen`), or on the matrix units by a cooperative-matrix configuration (`coop:FMxFN@F`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfMatmulPath {
    /// Widen to f32 and run the f32 kernel of the bucket.
    Widen,
    /// A [`MatmulKernel::Coop`] configuration.
    Coop(MatmulConfig),
}

impl std::fmt::Display for HalfMatmulPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HalfMatmulPath::Widen => write!(f, "widen"),
            HalfMatmulPath::Coop(c) => write!(f, "{c}"),
        }
    }
}

impl std::str::FromStr for HalfMatmulPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<HalfMatmulPath> {
        if s.trim() == "widen" {
            return Ok(HalfMatmulPath::Widen);
        }
        match s.parse::<MatmulConfig>() {
            Ok(c) if c.kernel == MatmulKernel::Coop => Ok(HalfMatmulPath::Coop(c)),
            _ => Err(Error::InvalidArgument(format!(
                "bad float16 matmul path '{s}'; expected widen or coop:FMxFN@F"
            ))),
        }
    }
}

/// The error of a cooperative-matrix configuration forced on operands that are not both
/// float16.
fn coop_needs_f16(k: MatmulConfig, a: DType, b: DType) -> Error {
    Error::InvalidArgument(format!(
        "matmul kernel {k} multiplies float16 operands on the matrix units; these are {} and {}",
        a.name(),
        b.name()
    ))
}

/// The tuned float16 paths of every device, by shape bucket.
static HALF_CHOICES: Choices<HalfMatmulPath> =
    Choices::new("matmul-f16", Some("GPU_LINALG_MATMUL_F16_KERNEL"));

/// The tuned matmul choices of every device, by shape bucket.
static CHOICES: Choices<MatmulConfig> = Choices::new("matmul", Some("GPU_LINALG_MATMUL_KERNEL"));

/// A matmul shape bucket: ⌈log₂(m·n)⌉ rounded up to a multiple of 4, ⌈log₂ k⌉ rounded up to a
/// multiple of 3, and whether there is more than one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulBucket {
    /// Exponent of the bucket of m·n (0, 4, …, 24).
    pub mn_exp: u32,
    /// Exponent of the bucket of k (0, 3, …, 15).
    pub k_exp: u32,
    /// More than one matrix product.
    pub batched: bool,
}

impl MatmulBucket {
    /// The bucket's name in the tuning cache, e.g. `mn2^16/k2^9/b1`.
    pub fn name(&self) -> String {
        format!(
            "mn2^{}/k2^{}/b{}",
            self.mn_exp,
            self.k_exp,
            if self.batched { "n" } else { "1" }
        )
    }
}

/// The tuning bucket of `plan`.
pub fn matmul_bucket(plan: &MatmulPlan) -> MatmulBucket {
    use crate::runtime::tune::bucket_exp;
    MatmulBucket {
        mn_exp: bucket_exp(plan.m * plan.n, 4, 24),
        k_exp: bucket_exp(plan.k, 3, 15),
        batched: plan.batches() > 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_numpy() {
        let p = MatmulPlan::new(&[3, 4], &[4], false, false).unwrap();
        assert_eq!(p.out_shape, vec![3]);
        let p = MatmulPlan::new(&[4], &[4, 5], false, false).unwrap();
        assert_eq!(p.out_shape, vec![5]);
        let p = MatmulPlan::new(&[4], &[4], false, false).unwrap();
        assert_eq!(p.out_shape, Vec::<usize>::new());
        let p = MatmulPlan::new(&[2, 1, 3, 4], &[5, 4, 6], false, false).unwrap();
        assert_eq!(p.out_shape, vec![2, 5, 3, 6]);
        assert_eq!(p.a_bs, [12, 0]);
        assert_eq!(p.b_bs, [0, 24]);
        let p = MatmulPlan::new(&[4, 3], &[5, 4], true, true).unwrap();
        assert_eq!((p.m, p.k, p.n), (3, 4, 5));
        assert!(MatmulPlan::new(&[3, 4], &[5, 6], false, false).is_err());
        assert!(MatmulPlan::new(&[2, 3, 4], &[3, 4, 6], false, false).is_err());
        assert!(MatmulPlan::new(&[], &[3], false, false).is_err());
    }

    #[test]
    fn configs_round_trip() {
        for c in MatmulConfig::candidates()
            .into_iter()
            .chain([MatmulConfig::NAIVE])
        {
            assert_eq!(c.to_string().parse::<MatmulConfig>().unwrap(), c);
        }
        for (c, _) in coop::generated_variants() {
            assert_eq!(c.to_string().parse::<MatmulConfig>().unwrap(), c);
            let path = HalfMatmulPath::Coop(c);
            assert_eq!(path.to_string().parse::<HalfMatmulPath>().unwrap(), path);
        }
        assert_eq!(
            "widen".parse::<HalfMatmulPath>().unwrap(),
            HalfMatmulPath::Widen
        );
        assert!("vec4:8x2@16".parse::<HalfMatmulPath>().is_err());
        assert!("vec4:9x1@64".parse::<MatmulConfig>().is_err());
        assert!("fast".parse::<MatmulConfig>().is_err());
    }
}
