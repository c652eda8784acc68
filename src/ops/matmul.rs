//! Matmul: `C = act(op(A)·op(B) + bias)` with `numpy.matmul` semantics, on the GPU or the CPU.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use crate::context::{Context, Gpu, GpuBuffer, View};
use crate::error::{Error, Result};
use crate::ops::{source, trusted_pipeline, Activation};
use crate::tensor::{DType, Tensor};

/// The matmul kernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// One thread per output element: the baseline benchmarks compare against.
    Naive,
    /// Workgroup-memory tiled kernel, for real GPUs.
    Tiled,
    /// Register-blocked vec4 kernel without workgroup memory, for CPU-type adapters.
    Vec4,
}

/// A matmul kernel and its tile sizes.
///
/// Written and parsed as `naive`, `tiled:TMxTN` (thread micro-tile, each at most 4) or
/// `vec4:RMxRN4@WG` (rows × vec4 columns per thread, at most 8 × 4, workgroup size WG).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    /// Kernel family.
    pub kernel: MatmulKernel,
    /// Rows per thread (tiled: TM, vec4: RM).
    pub rows: u32,
    /// Columns per thread (tiled: TN, vec4: number of vec4 columns).
    pub cols: u32,
    /// Workgroup size along x (vec4 only).
    pub workgroup: u32,
}

impl MatmulConfig {
    /// The naive kernel.
    pub const NAIVE: MatmulConfig = MatmulConfig {
        kernel: MatmulKernel::Naive,
        rows: 1,
        cols: 1,
        workgroup: 64,
    };

    /// A tiled configuration.
    pub const fn tiled(tm: u32, tn: u32) -> MatmulConfig {
        MatmulConfig {
            kernel: MatmulKernel::Tiled,
            rows: tm,
            cols: tn,
            workgroup: 256,
        }
    }

    /// A vec4 configuration.
    pub const fn vec4(rm: u32, rn4: u32, wg: u32) -> MatmulConfig {
        MatmulConfig {
            kernel: MatmulKernel::Vec4,
            rows: rm,
            cols: rn4,
            workgroup: wg,
        }
    }

    /// The candidates the tuner times (every non-naive configuration worth trying).
    pub fn candidates() -> Vec<MatmulConfig> {
        vec![
            MatmulConfig::tiled(4, 4),
            MatmulConfig::tiled(2, 2),
            MatmulConfig::vec4(4, 2, 64),
            MatmulConfig::vec4(4, 4, 64),
            MatmulConfig::vec4(8, 1, 64),
            MatmulConfig::vec4(8, 2, 64),
            MatmulConfig::vec4(8, 2, 16),
            MatmulConfig::vec4(2, 4, 64),
        ]
    }

    fn validate(&self) -> Result<()> {
        let ok = match self.kernel {
            MatmulKernel::Naive => true,
            MatmulKernel::Tiled => (1..=4).contains(&self.rows) && (1..=4).contains(&self.cols),
            MatmulKernel::Vec4 => {
                (1..=8).contains(&self.rows)
                    && (1..=4).contains(&self.cols)
                    && (1..=256).contains(&self.workgroup)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "matmul kernel configuration {self} is out of range (tiled: TM, TN in 1..=4; vec4: RM in 1..=8, RN4 in 1..=4, WG in 1..=256)"
            )))
        }
    }
}

impl fmt::Display for MatmulConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kernel {
            MatmulKernel::Naive => write!(f, "naive"),
            MatmulKernel::Tiled => write!(f, "tiled:{}x{}", self.rows, self.cols),
            MatmulKernel::Vec4 => write!(f, "vec4:{}x{}@{}", self.rows, self.cols, self.workgroup),
        }
    }
}

impl FromStr for MatmulConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<MatmulConfig> {
        let bad = || {
            Error::InvalidArgument(format!(
                "bad matmul kernel '{s}'; expected naive, tiled:TMxTN or vec4:RMxRN4@WG"
            ))
        };
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let cfg = match s.trim().split_once(':') {
            None if s.trim() == "naive" => MatmulConfig::NAIVE,
            Some(("tiled", rest)) => {
                let (a, b) = rest.split_once('x').ok_or_else(bad)?;
                MatmulConfig::tiled(num(a)?, num(b)?)
            }
            Some(("vec4", rest)) => {
                let (dims, wg) = rest.split_once('@').unwrap_or((rest, "64"));
                let (a, b) = dims.split_once('x').ok_or_else(bad)?;
                MatmulConfig::vec4(num(a)?, num(b)?, num(wg)?)
            }
            _ => return Err(bad()),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Options of [`Context::matmul_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MatmulOptions<'a> {
    /// Use Aᵀ (the last two dims of A swapped).
    pub transpose_a: bool,
    /// Use Bᵀ.
    pub transpose_b: bool,
    /// Bias of shape `[n]`, added to every row.
    pub bias: Option<&'a Tensor>,
    /// Activation after the bias.
    pub activation: Activation,
    /// Force a kernel configuration (GPU only); `None` uses the one tuned for the adapter.
    pub kernel: Option<MatmulConfig>,
}

/// Shapes and strides of one matmul, derived once from the operand shapes.
///
/// Element (i, k) of op(A) in batch z is `a[a_base(z) + i*a_rs + k*a_cs]`; likewise for B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulPlan {
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Broadcast batch dims, padded on the left to two: `[b0, b1]`.
    pub batch: [usize; 2],
    /// Shape of the result (numpy's: promoted 1-D dims removed again).
    pub out_shape: Vec<usize>,
    /// Row and column strides of op(A).
    pub a_rs: usize,
    /// Column stride of op(A).
    pub a_cs: usize,
    /// Row stride of op(B).
    pub b_rs: usize,
    /// Column stride of op(B).
    pub b_cs: usize,
    /// Batch strides of A over `batch` (0 where broadcast).
    pub a_bs: [usize; 2],
    /// Batch strides of B over `batch` (0 where broadcast).
    pub b_bs: [usize; 2],
    /// Number of matrices stored in B (product of its own batch dims).
    pub b_count: usize,
}

impl MatmulPlan {
    /// Plans `op(A)·op(B)` for the given shapes, as `numpy.matmul` would (1-D operands are
    /// promoted and the added dim removed; up to two batch dims broadcast).
    pub fn new(a: &[usize], b: &[usize], transpose_a: bool, transpose_b: bool) -> Result<Self> {
        if a.is_empty() || b.is_empty() {
            return Err(Error::Shape(format!(
                "matmul needs operands with at least 1 dim, got shapes {a:?} and {b:?}"
            )));
        }
        let a_vec = a.len() == 1;
        let b_vec = b.len() == 1;
        // Stored 2-D shapes (rows, cols) of each operand's matrices.
        let (ar, ac) = if a_vec {
            (1, a[0])
        } else {
            (a[a.len() - 2], a[a.len() - 1])
        };
        let (br, bc) = if b_vec {
            (b[0], 1)
        } else {
            (b[b.len() - 2], b[b.len() - 1])
        };
        let (m, ka, a_rs, a_cs) = if transpose_a && !a_vec {
            (ac, ar, 1, ac)
        } else {
            (ar, ac, ac, 1)
        };
        let (kb, n, b_rs, b_cs) = if transpose_b && !b_vec {
            (bc, br, 1, bc)
        } else {
            (br, bc, bc, 1)
        };
        let t = |f: bool| if f { "ᵀ" } else { "" };
        if ka != kb {
            return Err(Error::Shape(format!(
                "matmul of A{} with shape {a:?} and B{} with shape {b:?}: inner dims differ ({ka} vs {kb})",
                t(transpose_a),
                t(transpose_b)
            )));
        }
        let a_batch: &[usize] = if a_vec { &[] } else { &a[..a.len() - 2] };
        let b_batch: &[usize] = if b_vec { &[] } else { &b[..b.len() - 2] };
        if a_batch.len() > 2 || b_batch.len() > 2 {
            return Err(Error::Shape(format!(
                "matmul supports at most 2 batch dims, got shapes {a:?} and {b:?}"
            )));
        }
        let pad = |bd: &[usize]| -> [usize; 2] {
            match bd {
                [] => [1, 1],
                [x] => [1, *x],
                [x, y, ..] => [*x, *y],
            }
        };
        let (pa, pb) = (pad(a_batch), pad(b_batch));
        let mut batch = [1usize; 2];
        for d in 0..2 {
            batch[d] = match (pa[d], pb[d]) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => {
                    return Err(Error::Shape(format!(
                        "matmul batch dims {a_batch:?} of {a:?} and {b_batch:?} of {b:?} do not broadcast"
                    )))
                }
            };
        }
        let strides = |p: [usize; 2], mat: usize| -> [usize; 2] {
            let s1 = if p[1] == 1 { 0 } else { mat };
            let s0 = if p[0] == 1 { 0 } else { mat * p[1] };
            [s0, s1]
        };
        let a_bs = strides(pa, ar * ac);
        let b_bs = strides(pb, br * bc);
        let nd = a_batch.len().max(b_batch.len());
        let mut out_shape: Vec<usize> = batch[2 - nd..].to_vec();
        if !a_vec {
            out_shape.push(m);
        }
        if !b_vec {
            out_shape.push(n);
        }
        Ok(MatmulPlan {
            m,
            k: ka,
            n,
            batch,
            out_shape,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
            a_bs,
            b_bs,
            b_count: pb[0] * pb[1],
        })
    }

    /// Number of matrices in the result.
    pub fn batches(&self) -> usize {
        self.batch[0] * self.batch[1]
    }

    /// Offset of batch `z`'s matrix in A.
    pub fn a_base(&self, z: usize) -> usize {
        (z / self.batch[1]) * self.a_bs[0] + (z % self.batch[1]) * self.a_bs[1]
    }

    /// Offset of batch `z`'s matrix in B.
    pub fn b_base(&self, z: usize) -> usize {
        (z / self.batch[1]) * self.b_bs[0] + (z % self.batch[1]) * self.b_bs[1]
    }

    /// Floating-point operations: 2·m·n·k per batch.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batches() as f64
    }

    /// Checks a bias tensor's shape against this plan.
    pub fn check_bias(&self, bias: Option<&Tensor>) -> Result<()> {
        if let Some(b) = bias {
            if b.shape() != [self.n] {
                return Err(Error::Shape(format!(
                    "bias has shape {:?} but the matmul result has {} columns (shape {:?}); expected bias shape [{}]",
                    b.shape(),
                    self.n,
                    self.out_shape,
                    self.n
                )));
            }
            if b.dtype() != DType::F32 {
                return Err(Error::InvalidArgument("bias must be float32".into()));
            }
        }
        Ok(())
    }
}

fn as_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} = {v} exceeds the GPU kernels' 32-bit index range"
        ))
    })
}

/// Builds (or fetches from the cache) the pipeline for `entry` with the given constants.
fn pipeline(
    gpu: &Gpu,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<crate::context::Kernel>> {
    let key = format!("matmul/{entry}/{constants:?}");
    // SAFETY: every index in shaders/matmul.wgsl is guarded or clamped by the kernel itself
    // against sizes the host derives from the operand shapes (MatmulPlan) and binding windows,
    // and the host binds buffers at least that large; no loop in it is unbounded.
    unsafe {
        trusted_pipeline(
            gpu,
            &key,
            "matmul.wgsl",
            || source::with_epilogue(source::MATMUL),
            entry,
            constants,
        )
    }
}

/// Bytes of the kernels' uniform block (`Params` in shaders/matmul.wgsl).
const PARAMS_BYTES: u64 = 80;

/// Longest shared dimension k one matmul pass runs on a CPU-type adapter. lavapipe and GL's
/// llvmpipe end every invocation after 65,535 loop iterations in all (gallivm's
/// `LP_MAX_TGSI_LOOP_ITERATIONS`), silently: longer products are summed from slices of k.
pub const MAX_K_PER_PASS_CPU_ADAPTER: usize = 16_384;

/// The B operand as the kernel reads it.
struct OperandB {
    buf: Arc<GpuBuffer>,
    bytes: u64,
    strides: (usize, usize, [usize; 2]),
    n4: usize,
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
}

fn params(
    plan: &MatmulPlan,
    b_strides: (usize, usize, [usize; 2]),
    n4: usize,
    row_off: usize,
) -> Result<Vec<u32>> {
    let (b_rs, b_cs, b_bs) = b_strides;
    let w = [
        plan.m,
        plan.n,
        plan.k,
        plan.batch[1],
        plan.a_rs,
        plan.a_cs,
        b_rs,
        b_cs,
        plan.a_bs[0],
        plan.a_bs[1],
        b_bs[0],
        b_bs[1],
        n4,
        row_off,
        0, // fold (pack_b)
        0, // a_off
        0, // c_off
        0,
        0,
        0,
    ];
    w.iter()
        .map(|&v| as_u32(v, "matmul size or stride"))
        .collect()
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
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("matmul"),
            });
        let mut keep: Vec<Arc<GpuBuffer>> = Vec::new();
        // B: as given (naive, tiled, vec4 on a suitable B) or packed once for the vec4 kernel.
        let b = match self.config.kernel {
            MatmulKernel::Vec4 => {
                let rn4 = self.config.cols as usize;
                let n4 = plan.n.div_ceil(4 * rn4) * rn4;
                let (buf, bs) = if plan.b_cs == 1 && plan.n == n4 * 4 {
                    (self.b.clone(), [plan.b_bs[0] / 4, plan.b_bs[1] / 4])
                } else {
                    let packed = self.pack_b(&mut enc, n4 * 4, &mut keep)?;
                    let per = plan.k * n4;
                    let scale = |s: usize| s.checked_div(plan.k * plan.n).map_or(0, |q| q * per);
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
                bytes: (plan.b_count * plan.k * plan.n * 4).max(4) as u64,
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
        let a_bytes = ((plan.a_base(batches - 1) + plan.m * plan.k).max(1) * 4) as u64;
        let c_bytes = (out_len * 4) as u64;
        if a_bytes <= bind_limit && c_bytes <= bind_limit {
            self.encode(
                &mut enc,
                &mut keep,
                plan,
                &b,
                View::whole(a_bytes),
                View::whole(c_bytes),
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
                let a = View::window(r0 * plan.k, r1 * plan.k, align);
                let c = View::window(r0 * plan.n, r1 * plan.n, align);
                self.encode(&mut enc, &mut keep, &chunk, &b, a, c, &out)?;
                r0 = r1;
            }
        }
        gpu.submit(enc);
        drop(keep);
        Ok(out)
    }

    /// Encodes the dispatches of `plan` (the whole matmul, or a chunk of its rows) with A and C
    /// bound through the given windows.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        keep: &mut Vec<Arc<GpuBuffer>>,
        plan: &MatmulPlan,
        b: &OperandB,
        a_view: View,
        c_view: View,
        out: &GpuBuffer,
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
            MatmulKernel::Vec4 => {
                constants.push(("RM", f64::from(self.config.rows)));
                constants.push(("RN4", f64::from(self.config.cols)));
                constants.push(("WG", f64::from(self.config.workgroup)));
                let gx =
                    (b.n4 / self.config.cols as usize).div_ceil(self.config.workgroup as usize);
                ("vec4_kernel", self.config.rows as usize, gx, true)
            }
        };
        if gx > limit {
            return Err(Error::InvalidArgument(format!(
                "matmul with {} columns needs {gx} workgroups along one dimension, above this adapter's limit of {limit}",
                plan.n
            )));
        }
        let kernel = pipeline(gpu, entry, &constants)?;
        let b_binding = if rows_on_x { 5 } else { 2 };
        for (row_off, rows) in row_chunks(plan.m, rows_per_group, limit) {
            let mut words = params(plan, b.strides, b.n4, row_off)?;
            words[15] = as_u32(a_view.elem_off, "A offset")?;
            words[16] = as_u32(c_view.elem_off, "C offset")?;
            let u = gpu.uniform(&words)?;
            let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &kernel.layout,
                entries: &[
                    entry_buf(0, u.binding(PARAMS_BYTES)),
                    entry_buf(1, self.a.binding_range(a_view.offset, a_view.size)),
                    entry_buf(b_binding, b.buf.binding(b.bytes)),
                    entry_buf(3, bias_buf.binding(bias_bytes)),
                    entry_buf(4, out.binding_range(c_view.offset, c_view.size)),
                ],
            });
            let mut pass = gpu.begin_pass(enc);
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            let row_groups = rows.div_ceil(rows_per_group) as u32;
            if rows_on_x {
                pass.dispatch_workgroups(row_groups, gx as u32, batches as u32);
            } else {
                pass.dispatch_workgroups(gx as u32, row_groups, batches as u32);
            }
            drop(pass);
            keep.push(u);
        }
        keep.push(b.buf.clone());
        Ok(())
    }

    /// Encodes the pack of op(B) into a zero-padded K x `width` layout per stored matrix.
    fn pack_b(
        &self,
        enc: &mut wgpu::CommandEncoder,
        width: usize,
        keep: &mut Vec<Arc<GpuBuffer>>,
    ) -> Result<Arc<GpuBuffer>> {
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
        // Stored matrices of B are contiguous, K*N apart: pass that as the batch stride.
        let mut words = params(plan, (plan.b_rs, plan.b_cs, [0, plan.k * plan.n]), width, 0)?;
        words[14] = as_u32(gx * 64, "pack fold")?;
        let u = gpu.uniform(&words)?;
        let b_bytes = (plan.b_count * plan.k * plan.n * 4).max(4) as u64;
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &[
                entry_buf(0, u.binding(PARAMS_BYTES)),
                entry_buf(2, self.b.binding(b_bytes)),
                entry_buf(6, packed.binding((packed_len * 4) as u64)),
            ],
        });
        let mut pass = gpu.begin_pass(enc);
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(gx as u32, gy as u32, plan.b_count as u32);
        drop(pass);
        keep.push(u);
        Ok(packed)
    }
}

/// Splits `m` rows into chunks of at most `limit` workgroups of `per_group` rows each.
fn row_chunks(m: usize, per_group: usize, limit: usize) -> Vec<(usize, usize)> {
    let step = per_group * limit;
    (0..m).step_by(step).map(|s| (s, step.min(m - s))).collect()
}

fn entry_buf(binding: u32, resource: wgpu::BindingResource<'_>) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource }
}

/// Result of timing one candidate.
#[derive(Clone, Debug)]
pub struct TuningResult {
    /// The configuration timed.
    pub config: MatmulConfig,
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
    pub fn matmul_with(&self, a: &Tensor, b: &Tensor, opts: &MatmulOptions) -> Result<Tensor> {
        for (name, t) in [("A", a), ("B", b)] {
            if t.dtype() != DType::F32 {
                return Err(Error::InvalidArgument(format!(
                    "matmul operand {name} (shape {:?}) is {}; expected float32",
                    t.shape(),
                    t.dtype().name()
                )));
            }
        }
        let plan = MatmulPlan::new(a.shape(), b.shape(), opts.transpose_a, opts.transpose_b)?;
        plan.check_bias(opts.bias)?;
        if let Some(k) = opts.kernel {
            k.validate()?;
        }
        if let Some(gpu) = self.gpu() {
            let r = self.matmul_gpu(gpu, &plan, a, b, opts);
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            // Auto fallback: compute on the CPU, keep the result resident on the GPU.
            let host = self.matmul_cpu(&plan, a, b, opts)?;
            return self.tensor(host.shape(), &host.to_vec()?);
        }
        self.matmul_cpu(&plan, a, b, opts)
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
        let out = crate::cpu::matmul::fast(plan, &av, &bv, bias.as_deref(), opts.activation);
        Tensor::from_vec(&plan.out_shape, out)
    }

    fn matmul_gpu(
        &self,
        gpu: &Arc<Gpu>,
        plan: &MatmulPlan,
        a: &Tensor,
        b: &Tensor,
        opts: &MatmulOptions,
    ) -> Result<Tensor> {
        if gpu.info.device_type == wgpu::DeviceType::Cpu && plan.k > MAX_K_PER_PASS_CPU_ADAPTER {
            return self.matmul_split_k(gpu, plan, a, b, opts);
        }
        let config = match opts.kernel {
            Some(c) => c,
            None => self.matmul_config()?,
        };
        let job = GpuMatmul {
            gpu,
            plan,
            a: self.resident(a)?,
            b: self.resident(b)?,
            bias: opts.bias.map(|t| self.resident(t)).transpose()?,
            activation: opts.activation,
            config,
        };
        let out = gpu.scoped("matmul", || job.run())??;
        Ok(Tensor::from_gpu(plan.out_shape.clone(), DType::F32, out))
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
    ) -> Result<Tensor> {
        // The axis that holds k in each operand as stored.
        let k_axis = |t: &Tensor, transposed: bool, is_a: bool| match t.ndim() {
            0 | 1 => 0,
            d if transposed == is_a => d - 2,
            d => d - 1,
        };
        let (ka, kb) = (
            k_axis(a, opts.transpose_a, true),
            k_axis(b, opts.transpose_b, false),
        );
        let part_opts = MatmulOptions {
            bias: None,
            activation: Activation::None,
            ..*opts
        };
        let mut sum: Option<Tensor> = None;
        let mut k0 = 0;
        while k0 < plan.k {
            let k1 = (k0 + MAX_K_PER_PASS_CPU_ADAPTER).min(plan.k);
            let (ap, bp) = (
                self.slice_axis(a, ka, k0, k1)?,
                self.slice_axis(b, kb, k0, k1)?,
            );
            let part_plan =
                MatmulPlan::new(ap.shape(), bp.shape(), opts.transpose_a, opts.transpose_b)?;
            let part = self.matmul_gpu(gpu, &part_plan, &ap, &bp, &part_opts)?;
            sum = Some(match sum {
                None => part,
                Some(s) => self.add(&s, &part)?,
            });
            k0 = k1;
        }
        let mut out = sum.ok_or_else(|| Error::Shape("matmul: no slices of k".into()))?;
        if let Some(bias) = opts.bias {
            out = self.add(&out, bias)?;
        }
        if opts.activation != Activation::None {
            out = self.activate(&out, opts.activation)?;
        }
        Ok(out)
    }

    /// The matmul kernel this context uses: forced by `GPU_LINALG_MATMUL_KERNEL`, else read
    /// from the tuning cache, else tuned now by timing every candidate (and cached on disk).
    /// `None` on the CPU backend.
    pub fn matmul_config(&self) -> Result<MatmulConfig> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU matmul kernel".into(),
            ));
        };
        if let Some(c) = *crate::context::lock(&gpu.matmul_choice) {
            return Ok(c);
        }
        let choice = if let Ok(s) = std::env::var("GPU_LINALG_MATMUL_KERNEL") {
            s.parse()?
        } else {
            match gpu.tuned("matmul").and_then(|v| v.parse().ok()) {
                Some(c) => c,
                None => {
                    let results = self.tune_matmul()?;
                    let best = results
                        .iter()
                        .filter_map(|r| r.gflops.as_ref().ok().map(|g| (r.config, *g)))
                        .max_by(|x, y| x.1.total_cmp(&y.1))
                        .map(|(c, _)| c)
                        .ok_or_else(|| {
                            Error::Kernel(format!(
                                "no matmul kernel runs on this adapter: {:?}",
                                results.iter().map(|r| r.gflops.clone()).collect::<Vec<_>>()
                            ))
                        })?;
                    gpu.store_tuned("matmul", &best.to_string());
                    best
                }
            }
        };
        *crate::context::lock(&gpu.matmul_choice) = Some(choice);
        Ok(choice)
    }

    /// Times every candidate kernel on one problem (512³ on CPU-type adapters, 1024³ on real
    /// GPUs) and returns the figures, best kernel not yet chosen. Used by [`matmul_config`]
    /// and by `gpu-linalg info --tune`.
    ///
    /// [`matmul_config`]: Context::matmul_config
    pub fn tune_matmul(&self) -> Result<Vec<TuningResult>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let n = if gpu.info.device_type == wgpu::DeviceType::Cpu {
            512
        } else {
            1024
        };
        let data: Vec<f32> = (0..n * n).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect();
        let a = self.tensor(&[n, n], &data)?;
        let b = self.tensor(&[n, n], &data)?;
        let mut out = Vec::new();
        for config in MatmulConfig::candidates() {
            let opts = MatmulOptions {
                kernel: Some(config),
                ..Default::default()
            };
            let run = || -> Result<f64> {
                // Warm-up (compiles the pipeline), then the best of three.
                self.matmul_with(&a, &b, &opts)?.to_vec()?;
                let mut best = f64::INFINITY;
                for _ in 0..3 {
                    let t = Instant::now();
                    let c = self.matmul_with(&a, &b, &opts)?;
                    self.synchronize()?;
                    best = best.min(t.elapsed().as_secs_f64());
                    drop(c);
                }
                Ok(2.0 * (n * n * n) as f64 / best / 1e9)
            };
            out.push(TuningResult {
                config,
                gflops: run().map_err(|e| e.to_string()),
            });
        }
        Ok(out)
    }
}

/// The values of a tensor on the host (downloading GPU tensors).
pub(crate) fn host_values(t: &Tensor) -> Result<std::borrow::Cow<'_, [f32]>> {
    match t.host_f32() {
        Some(v) => Ok(std::borrow::Cow::Borrowed(v)),
        None => Ok(std::borrow::Cow::Owned(t.to_vec()?)),
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
        assert!("vec4:9x1@64".parse::<MatmulConfig>().is_err());
        assert!("fast".parse::<MatmulConfig>().is_err());
    }
}
