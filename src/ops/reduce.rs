//! Reductions with numpy semantics — sum, mean, max, min, argmax, argmin, L2 norm, variance,
//! logsumexp — over all elements or one axis, and softmax / log-softmax along an axis, on the
//! GPU (`shaders/reduce.wgsl`) or the CPU.
//!
//! The tensor is viewed as (outer, len, inner) and reduced along `len`. Contiguous rows
//! (inner == 1) are reduced by workgroups with vec4 loads, many elements per thread and a
//! compensated accumulator, combined by a barrier tree or by subgroup operations (chosen per
//! adapter by timing once); other axes by a thread per column. Long axes are split into
//! segments whose partial accumulators later passes combine, without readback in between.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::context::{lock, Context, Gpu, GpuBuffer};
use crate::error::{Error, Result};
use crate::ops::matmul::host_values;
use crate::ops::source;
use crate::tensor::{DType, Tensor};

/// A reduction (or a normalisation along an axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Σx (0 for no elements).
    Sum,
    /// Σx / n (NaN for no elements).
    Mean,
    /// Largest value; NaN if any is NaN; an error for no elements.
    Max,
    /// Smallest value; NaN if any is NaN; an error for no elements.
    Min,
    /// Index of the largest value (first of ties, first NaN); u32. An error for no elements.
    Argmax,
    /// Index of the smallest value (first of ties, first NaN); u32. An error for no elements.
    Argmin,
    /// √Σx² (`numpy.linalg.norm` of the flattened values / along the axis).
    Norm,
    /// Σ(x − mean)² / (n − ddof), `numpy.var` (two passes).
    Var,
    /// log Σ exp(x − m) + m with m the max (0 where the max is not finite), as scipy's.
    LogSumExp,
    /// exp(x − max) / Σ exp(x − max) along an axis (default the last); same shape as the input.
    Softmax,
    /// (x − m) − log Σ exp(x − m) along an axis, m the max (0 where not finite), as scipy's.
    LogSoftmax,
}

impl ReduceOp {
    /// Every op, for tests and help texts.
    pub const ALL: [ReduceOp; 11] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Argmax,
        ReduceOp::Argmin,
        ReduceOp::Norm,
        ReduceOp::Var,
        ReduceOp::LogSumExp,
        ReduceOp::Softmax,
        ReduceOp::LogSoftmax,
    ];

    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Argmax => "argmax",
            ReduceOp::Argmin => "argmin",
            ReduceOp::Norm => "norm",
            ReduceOp::Var => "var",
            ReduceOp::LogSumExp => "logsumexp",
            ReduceOp::Softmax => "softmax",
            ReduceOp::LogSoftmax => "log-softmax",
        }
    }

    /// True for argmax/argmin, whose results are u32 indices.
    pub fn is_arg(self) -> bool {
        matches!(self, ReduceOp::Argmax | ReduceOp::Argmin)
    }

    /// True for softmax/log-softmax, whose result has the input's shape.
    pub fn is_normalization(self) -> bool {
        matches!(self, ReduceOp::Softmax | ReduceOp::LogSoftmax)
    }

    /// The shader's `OP` id of the op's (last) reduction pass.
    fn shader_id(self) -> u32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Mean => 1,
            ReduceOp::Max => 2,
            ReduceOp::Min => 3,
            ReduceOp::Argmax => 4,
            ReduceOp::Argmin => 5,
            ReduceOp::Norm => 6,
            ReduceOp::Var => 7,
            ReduceOp::LogSumExp => 8,
            ReduceOp::Softmax | ReduceOp::LogSoftmax => 9,
        }
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReduceOp {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReduceOp> {
        let l = s.trim().to_ascii_lowercase().replace('_', "-");
        ReduceOp::ALL
            .into_iter()
            .find(|o| o.name() == l)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown reduction '{s}'; expected one of {}",
                    ReduceOp::ALL.map(|o| o.name()).join(", ")
                ))
            })
    }
}

/// How a workgroup combines its threads' partial results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKernel {
    /// A tree over workgroup memory with barriers (every adapter).
    Tree,
    /// Subgroup operations (`subgroupAdd` …), then one barrier; needs `Features::SUBGROUP`.
    Subgroup,
    /// One invocation per segment, no workgroup combine: uniform addresses, which CPU-type
    /// adapters such as lavapipe load without per-lane gathers (their fastest).
    Serial,
}

impl ReduceKernel {
    /// Every kernel.
    pub const ALL: [ReduceKernel; 3] = [
        ReduceKernel::Tree,
        ReduceKernel::Subgroup,
        ReduceKernel::Serial,
    ];
}

impl fmt::Display for ReduceKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReduceKernel::Tree => "tree",
            ReduceKernel::Subgroup => "subgroup",
            ReduceKernel::Serial => "serial",
        })
    }
}

impl FromStr for ReduceKernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReduceKernel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tree" => Ok(ReduceKernel::Tree),
            "subgroup" => Ok(ReduceKernel::Subgroup),
            "serial" => Ok(ReduceKernel::Serial),
            _ => Err(Error::InvalidArgument(format!(
                "bad reduce kernel '{s}'; expected tree, subgroup or serial"
            ))),
        }
    }
}

/// Options of [`Context::reduce`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReduceOptions {
    /// The axis (negative counts from the end); `None` reduces all elements (softmax: the last
    /// axis).
    pub axis: Option<isize>,
    /// Keep the reduced axis (axes) as length 1.
    pub keepdims: bool,
    /// Delta degrees of freedom of [`ReduceOp::Var`]: the divisor is n − ddof.
    pub ddof: usize,
    /// Force a workgroup combine (GPU only).
    pub kernel: Option<ReduceKernel>,
}

impl ReduceOptions {
    /// Options reducing `axis` (or all with `None`), other fields default.
    pub fn axis(axis: Option<isize>) -> ReduceOptions {
        ReduceOptions {
            axis,
            ..Default::default()
        }
    }
}

/// A reduction planned from a shape: the (outer, len, inner) view and the result shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReducePlan {
    /// The op.
    pub op: ReduceOp,
    /// Product of the dims before the axis.
    pub outer: usize,
    /// Length of the reduced axis (all elements for a full reduction).
    pub len: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
    /// Shape of the result.
    pub out_shape: Vec<usize>,
    /// Delta degrees of freedom (var).
    pub ddof: usize,
}

impl ReducePlan {
    /// Plans `op` over `shape` with `opts` (numpy's rules; errors name the shape and axis).
    pub fn new(op: ReduceOp, shape: &[usize], opts: &ReduceOptions) -> Result<ReducePlan> {
        let nd = shape.len();
        let axis = match (opts.axis, op.is_normalization()) {
            (None, false) => None,
            (None, true) if nd == 0 => None,
            (None, true) => Some(nd - 1),
            (Some(a), _) => {
                let ax = if a < 0 { a + nd as isize } else { a };
                if ax < 0 || ax >= nd as isize {
                    return Err(Error::InvalidArgument(format!(
                        "{op}: axis {a} is out of bounds for array of dimension {nd} (shape {shape:?})"
                    )));
                }
                Some(ax as usize)
            }
        };
        let n: usize = shape.iter().product();
        let (outer, len, inner, mut out_shape) = match axis {
            None => {
                let keep = if opts.keepdims { vec![1; nd] } else { vec![] };
                (1, n, 1, keep)
            }
            Some(ax) => {
                let mut s = shape.to_vec();
                if opts.keepdims {
                    s[ax] = 1;
                } else {
                    s.remove(ax);
                }
                (
                    shape[..ax].iter().product(),
                    shape[ax],
                    shape[ax + 1..].iter().product(),
                    s,
                )
            }
        };
        if op.is_normalization() {
            out_shape = shape.to_vec();
        }
        let plan = ReducePlan {
            op,
            outer,
            len,
            inner,
            out_shape,
            ddof: opts.ddof,
        };
        if len == 0 && plan.outputs() > 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            let name = if op == ReduceOp::Max {
                "maximum"
            } else {
                "minimum"
            };
            return Err(Error::InvalidArgument(format!(
                "zero-size array to reduction operation {name} which has no identity (shape {shape:?}, axis {:?})",
                opts.axis
            )));
        }
        if len == 0 && plan.outputs() > 0 && op.is_arg() {
            return Err(Error::InvalidArgument(format!(
                "attempt to get {op} of an empty sequence (shape {shape:?}, axis {:?})",
                opts.axis
            )));
        }
        Ok(plan)
    }

    /// Number of reduced results (outer · inner).
    pub fn outputs(&self) -> usize {
        self.outer * self.inner
    }

    /// Number of input elements.
    pub fn elements(&self) -> usize {
        self.outer * self.len * self.inner
    }

    /// The value of a reduction over no elements (numpy's), for ops that have one.
    pub fn empty_value(&self) -> f32 {
        match self.op {
            ReduceOp::Sum | ReduceOp::Norm => 0.0,
            ReduceOp::LogSumExp => f32::NEG_INFINITY,
            _ => f32::NAN,
        }
    }
}

/// The k of the error bound γ_k·Σ|x| that the GPU sums (and the CPU backend's) satisfy for an
/// axis of length `len`. Any summation order has k ≤ len − 1. Otherwise: each GPU accumulator
/// takes at most [`MAX_PER_THREAD`] elements with Neumaier's compensated sum, whose error is
/// ≤ 2u·Σ|x| + n·u²·Σ|x| (Higham, Accuracy and Stability, §4.3) — below 3u·Σ|x| for
/// n ≤ 2¹², where a term is a pairwise sum of up to eight loaded values (three levels) — and
/// accumulators are combined by TwoSum, exact but for the compensations' own (second-order)
/// rounding; only the subgroup combine adds the values and compensations as they are, at most
/// 128 deep (the largest subgroup) plus the ⌈log₂ len⌉ levels of the passes.
/// So k = 6 + ⌈log₂ len⌉ + 128. The CPU backend sums in f64 and rounds once.
pub fn sum_terms(len: usize) -> usize {
    let log2 = usize::BITS as usize - len.saturating_sub(1).leading_zeros() as usize;
    len.min(6 + log2 + 128).max(1)
}

/// At most this many elements are accumulated by one compensated GPU accumulator in one pass.
pub const MAX_PER_THREAD: usize = SERIAL_CHUNK / 4;

/// Elements per invocation of the serial kernel (four compensated accumulators).
const SERIAL_CHUNK: usize = 16384;

/// Elements per thread of the workgroup kernels.
const ROW_PER_THREAD: usize = 256;

/// Rows at least this long are reduced by a workgroup each (when contiguous).
const ROW_MIN: usize = 64;

/// Chosen combine kernels per device (by weak pointer, so a dropped device is never matched).
static CHOICE: Mutex<Vec<(Weak<Gpu>, ReduceKernel)>> = Mutex::new(Vec::new());

/// Every source variant the host can build (for the cross-compilation test).
pub(crate) fn generated_sources() -> Vec<String> {
    let mut v = Vec::new();
    for kernel in [
        ReduceKernel::Tree,
        ReduceKernel::Subgroup,
        ReduceKernel::Serial,
    ] {
        for int64 in [false, true] {
            v.push(variant_source(kernel, int64));
        }
    }
    v
}

/// Splits `body` at `//#if SUBGROUP` / `//#else` / `//#endif` into the variant's source.
fn variant_source(kernel: ReduceKernel, int64: bool) -> String {
    let src = source::REDUCE;
    // The INT64 section (vec4<u64> loads) or its stub.
    let (before, rest) = src.split_once("//#if INT64").unwrap_or((src, ""));
    let (with, rest) = rest.split_once("//#else INT64").unwrap_or((rest, ""));
    let (without, after) = rest.split_once("//#endif INT64").unwrap_or((rest, ""));
    let src = &format!("{before}{}{after}", if int64 { with } else { without });
    let (head, rest) = src.split_once("//#if SUBGROUP").unwrap_or((src, ""));
    let (sg, rest) = rest.split_once("//#else").unwrap_or((rest, ""));
    let (tree, tail) = rest.split_once("//#endif").unwrap_or((rest, ""));
    match kernel {
        // naga 30 rejects `enable subgroups;`: subgroup builtins are gated by the device feature.
        ReduceKernel::Subgroup => format!("{head}{sg}{tail}"),
        ReduceKernel::Tree | ReduceKernel::Serial => format!("{head}{tree}{tail}"),
    }
}

fn pipeline(
    gpu: &Gpu,
    kernel: ReduceKernel,
    entry: &str,
    op: u32,
    wg: u32,
) -> Result<Arc<crate::context::Kernel>> {
    let int64 = gpu.features.contains(wgpu::Features::SHADER_INT64);
    let key = format!("reduce/{kernel}/{entry}/{op}/{wg}/{int64}");
    gpu.kernel(&key, |device| {
        // SAFETY: every index in shaders/reduce.wgsl is guarded by sizes the host derives from
        // the plan (rows < total, k < end ≤ len, j < items, q < outer·inner, id < total) and
        // the host binds buffers at least that large (aux: outer·inner values; partials:
        // 16 bytes per slot); workgroup indices stay below WG. Every loop is bounded by them.
        let module = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some("reduce.wgsl"),
                    source: wgpu::ShaderSource::Wgsl(variant_source(kernel, int64).into()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("reduce"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, true),
                storage(3, true),
                storage(4, true),
                storage(5, false),
                storage(6, true),
                storage(7, true),
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("reduce"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[("OP", f64::from(op)), ("WG", f64::from(wg))],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    })
}

/// The interleaving unit of the workgroup kernels: `GPU_LINALG_REDUCE_LANES` (a power of two),
/// else on CPU-type adapters their SIMD width (8: each SIMD group then reads contiguous memory,
/// as they run a workgroup's SIMD groups one after another — 4× faster on lavapipe), else the
/// whole workgroup (what a GPU coalesces).
fn lanes_for(gpu: &Gpu, wg: u32) -> u32 {
    let default = if gpu.info.device_type == wgpu::DeviceType::Cpu {
        8
    } else {
        wg
    };
    std::env::var("GPU_LINALG_REDUCE_LANES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|l| l.is_power_of_two())
        .unwrap_or(default)
        .min(wg)
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!(
            "reduction {what} {v} exceeds the GPU kernels' 32-bit range"
        ))
    })
}

/// Where a pass reads from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The input tensor (n elements).
    Input,
    /// Accumulators of an earlier pass.
    Partials(&'a GpuBuffer),
}

/// One GPU reduction job: the device, the encoder every pass is recorded into, buffers kept
/// alive until submission.
struct Job<'a> {
    gpu: &'a Arc<Gpu>,
    kernel: ReduceKernel,
    enc: wgpu::CommandEncoder,
    x: &'a GpuBuffer,
    n: usize,
    keep: Vec<Arc<GpuBuffer>>,
    dummy: Arc<GpuBuffer>,
}

/// Per-pass settings besides the view.
#[derive(Clone, Copy)]
struct PassCfg<'a> {
    op: u32,
    aux: Option<&'a GpuBuffer>,
    full_len: usize,
    div: f32,
    fshift: bool,
}

impl Job<'_> {
    fn grid(&self, count: usize, what: &str) -> Result<(u32, u32)> {
        let limit = self.gpu.limits.max_compute_workgroups_per_dimension as usize;
        let gx = count.clamp(1, limit);
        let gy = count.div_ceil(gx).max(1);
        if gy > limit {
            return Err(Error::InvalidArgument(format!(
                "{what}: needs {count} workgroups, above this adapter's {limit}×{limit}"
            )));
        }
        Ok((gx as u32, gy as u32))
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        entry: &str,
        op: u32,
        wg: u32,
        params: [u32; 20],
        grid: (u32, u32),
        src: Source,
        aux: Option<&GpuBuffer>,
        aux2: Option<&GpuBuffer>,
        dst: &GpuBuffer,
        dst_bytes: u64,
    ) -> Result<()> {
        let k = pipeline(self.gpu, self.kernel, entry, op, wg)?;
        let u = self.gpu.uniform(&params)?;
        let n4 = (self.n / 4) as u64 * 16;
        let x_bytes = (self.n as u64 * 4).max(4);
        let d = &*self.dummy;
        let (x4_buf, x4_bytes) = if n4 >= 16 { (self.x, n4) } else { (d, 16) };
        let n8 = (self.n / 8) as u64 * 32;
        let (x8_buf, x8_bytes) = if n8 >= 32 { (self.x, n8) } else { (d, 32) };
        let (p_buf, p_bytes) = match src {
            Source::Partials(b) => (b, b.buffer().size()),
            Source::Input => (d, 16),
        };
        let aux_b = aux.unwrap_or(d);
        let aux2_b = aux2.unwrap_or(d);
        let bg = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &k.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: u.binding(80),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: self.x.binding(x_bytes),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: x4_buf.binding(x4_bytes),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: aux_b.binding(aux_b.buffer().size()),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: p_buf.binding(p_bytes / 16 * 16),
                    },
                    wgpu::BindGroupEntry {
                        binding: 5,
                        resource: dst.binding(dst_bytes),
                    },
                    wgpu::BindGroupEntry {
                        binding: 6,
                        resource: aux2_b.binding(aux2_b.buffer().size()),
                    },
                    wgpu::BindGroupEntry {
                        binding: 7,
                        resource: x8_buf.binding(x8_bytes),
                    },
                ],
            });
        {
            let mut pass = self.gpu.begin_pass(&mut self.enc);
            pass.set_pipeline(&k.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(grid.0, grid.1, 1);
        }
        self.keep.push(u);
        Ok(())
    }

    /// Reduces the (outer, len, inner) view of `src` with `cfg`, returning the finished values
    /// (outer · inner words).
    fn reduce(
        &mut self,
        src: Source,
        outer: usize,
        len: usize,
        inner: usize,
        cfg: PassCfg,
    ) -> Result<Arc<GpuBuffer>> {
        let outputs = outer * inner;
        let rows = inner == 1 && len >= ROW_MIN;
        let serial = rows && self.kernel == ReduceKernel::Serial;
        let (wg, groups, chunk) = if serial {
            let groups = len.div_ceil(SERIAL_CHUNK);
            let chunk = len.div_ceil(groups).div_ceil(4) * 4;
            (1, len.div_ceil(chunk), chunk)
        } else if rows {
            let wg = if len >= 32 * 256 { 256 } else { 64 };
            let chunk = wg * ROW_PER_THREAD;
            let groups = len.div_ceil(chunk);
            // Even segments (multiples of 4 for the vec4 loads).
            let chunk = len.div_ceil(groups).div_ceil(8) * 8;
            (wg, len.div_ceil(chunk), chunk)
        } else {
            // Enough threads to fill the device, at most ROW_PER_THREAD elements each.
            let threads = outputs.max(1);
            let mut want = len.div_ceil(ROW_PER_THREAD);
            if threads < 16384 && len >= 256 {
                want = want.max((16384 / threads).min(len.div_ceil(64)));
            }
            let chunk = len.div_ceil(want.max(1)).max(1);
            (64, len.div_ceil(chunk), chunk)
        };
        let fin = groups == 1;
        let slots = outputs * groups;
        let dst_bytes = if fin { slots * 4 } else { slots * 16 } as u64;
        let dst = self.gpu.alloc(dst_bytes, "reduction partials")?;
        let from_partials = matches!(src, Source::Partials(_));
        let vec_ok = rows
            && !from_partials
            && (len.is_multiple_of(4) || outer == 1)
            && chunk.is_multiple_of(4);
        let count = if rows { slots } else { slots.div_ceil(64) };
        let grid = self.grid(count, "reduction")?;
        let params = [
            u32_of(outer, "outer size")?,
            u32_of(len, "axis length")?,
            u32_of(inner, "inner size")?,
            u32_of(groups, "segments")?,
            u32_of(chunk, "segment")?,
            grid.0,
            u32_of(slots, "outputs")?,
            u32_of(cfg.full_len, "axis length")?,
            cfg.div.to_bits(),
            u32::from(vec_ok),
            u32::from(fin),
            u32::from(from_partials),
            u32::from(cfg.fshift),
            f32::INFINITY.to_bits(),
            f32::NAN.to_bits(),
            0,
            lanes_for(self.gpu, wg as u32),
            u32::from(
                vec_ok
                    && (len.is_multiple_of(8) || outer == 1)
                    && chunk.is_multiple_of(8)
                    && self.gpu.features.contains(wgpu::Features::SHADER_INT64),
            ),
            0,
            0,
        ];
        let entry = if serial {
            "reduce_serial"
        } else if rows {
            "reduce_rows"
        } else {
            "reduce_cols"
        };
        self.dispatch(
            entry, cfg.op, wg as u32, params, grid, src, cfg.aux, None, &dst, dst_bytes,
        )?;
        if fin {
            return Ok(dst);
        }
        self.keep.push(dst.clone());
        self.reduce(Source::Partials(&dst), outer, groups, inner, cfg)
    }
}

fn run_gpu(
    gpu: &Arc<Gpu>,
    plan: &ReducePlan,
    x: &GpuBuffer,
    kernel: ReduceKernel,
) -> Result<Arc<GpuBuffer>> {
    let n = plan.elements();
    let (outer, len, inner) = (plan.outer, plan.len, plan.inner);
    let out_len = if plan.op.is_normalization() {
        n
    } else {
        plan.outputs()
    };
    if out_len == 0 {
        return gpu.alloc(4, "reduction result");
    }
    if len == 0 {
        // No elements per output: numpy's empty value, no dispatch.
        let v = vec![plan.empty_value(); out_len];
        return gpu.upload(bytemuck::cast_slice(&v), "reduction result");
    }
    let mut job = Job {
        gpu,
        kernel,
        enc: gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("reduce"),
            }),
        x,
        n,
        keep: Vec::new(),
        dummy: gpu.alloc(32, "reduction placeholder")?,
    };
    let cfg = |op: ReduceOp, aux| PassCfg {
        op: op.shader_id(),
        aux,
        full_len: len,
        div: 1.0,
        fshift: false,
    };
    let out = match plan.op {
        ReduceOp::Var => {
            let mean = job.reduce(Source::Input, outer, len, inner, cfg(ReduceOp::Mean, None))?;
            let mut c = cfg(ReduceOp::Var, Some(&mean));
            c.div = len.saturating_sub(plan.ddof) as f32;
            let out = job.reduce(Source::Input, outer, len, inner, c)?;
            job.keep.push(mean);
            out
        }
        ReduceOp::LogSumExp => {
            let m = job.reduce(Source::Input, outer, len, inner, cfg(ReduceOp::Max, None))?;
            let mut c = cfg(ReduceOp::LogSumExp, Some(&m));
            c.fshift = true;
            let out = job.reduce(Source::Input, outer, len, inner, c)?;
            job.keep.push(m);
            out
        }
        ReduceOp::Softmax | ReduceOp::LogSoftmax => {
            let log = plan.op == ReduceOp::LogSoftmax;
            let m = job.reduce(Source::Input, outer, len, inner, cfg(ReduceOp::Max, None))?;
            let mut c = cfg(plan.op, Some(&m));
            c.fshift = log;
            let s = job.reduce(Source::Input, outer, len, inner, c)?;
            let bytes = (n * 4) as u64;
            let out = gpu.alloc(bytes, "softmax result")?;
            let grid = job.grid(n.div_ceil(64), "softmax")?;
            let mut params = [0u32; 20];
            params[0] = u32_of(outer, "outer size")?;
            params[1] = u32_of(len, "axis length")?;
            params[2] = u32_of(inner, "inner size")?;
            params[5] = grid.0;
            params[6] = u32_of(n, "elements")?;
            params[12] = u32::from(log);
            params[13] = f32::INFINITY.to_bits();
            params[14] = f32::NAN.to_bits();
            params[15] = u32::from(log);
            job.dispatch(
                "normalize",
                plan.op.shader_id(),
                64,
                params,
                grid,
                Source::Input,
                Some(&m),
                Some(&s),
                &out,
                bytes,
            )?;
            job.keep.push(m);
            job.keep.push(s);
            out
        }
        op => job.reduce(Source::Input, outer, len, inner, cfg(op, None))?,
    };
    let Job { enc, keep, .. } = job;
    gpu.submit(enc);
    drop(keep);
    Ok(out)
}

impl Context {
    /// Runs reduction `op` over `x` (numpy semantics).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::{ReduceOp, ReduceOptions};
    /// let x = ctx.tensor(&[2, 3], &[1., 5., 3., 4., 2., 6.])?;
    /// let s = ctx.reduce(ReduceOp::Sum, &x, &ReduceOptions::axis(Some(-1)))?;
    /// assert_eq!(s.to_vec()?, vec![9., 12.]);
    /// let i = ctx.argmax(&x, None)?;
    /// assert_eq!(i.shape(), &[] as &[usize]);
    /// assert_eq!(i.to_vec_u32()?, vec![5]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn reduce(&self, op: ReduceOp, x: &Tensor, opts: &ReduceOptions) -> Result<Tensor> {
        if x.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "{op}: input of shape {:?} is {}; expected float32",
                x.shape(),
                x.dtype().name()
            )));
        }
        let plan = ReducePlan::new(op, x.shape(), opts)?;
        let dtype = if op.is_arg() { DType::U32 } else { DType::F32 };
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let kernel = match opts.kernel {
                    Some(k) => k,
                    None => self.reduce_kernel()?,
                };
                if kernel == ReduceKernel::Subgroup
                    && !gpu.features.contains(wgpu::Features::SUBGROUP)
                {
                    return Err(Error::Kernel(format!(
                        "the subgroup reduce kernel needs subgroup operations, which {} lacks",
                        gpu.info.name
                    )));
                }
                let xb = self.resident(x)?;
                let out = gpu.scoped(op.name(), || run_gpu(gpu, &plan, &xb, kernel))??;
                Ok(Tensor::from_gpu(plan.out_shape.clone(), dtype, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let host = self.reduce_cpu(&plan, x)?;
            return match dtype {
                DType::U32 => self.tensor_u32(host.shape(), &host.to_vec_u32()?),
                DType::F32 => self.tensor(host.shape(), &host.to_vec()?),
            };
        }
        self.reduce_cpu(&plan, x)
    }

    fn reduce_cpu(&self, plan: &ReducePlan, x: &Tensor) -> Result<Tensor> {
        let xs = host_values(x)?;
        match crate::cpu::reduce::fast(plan, &xs) {
            crate::cpu::reduce::Output::Values(v) => Tensor::from_vec(&plan.out_shape, v),
            crate::cpu::reduce::Output::Indices(v) => Tensor::from_vec_u32(&plan.out_shape, v),
        }
    }

    /// Σx over `axis` (all with `None`).
    pub fn sum(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, x, &ReduceOptions::axis(axis))
    }

    /// Mean over `axis` (all with `None`).
    pub fn mean(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, x, &ReduceOptions::axis(axis))
    }

    /// Max over `axis` (all with `None`); NaN if any is NaN.
    pub fn max(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, x, &ReduceOptions::axis(axis))
    }

    /// Min over `axis` (all with `None`); NaN if any is NaN.
    pub fn min(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, x, &ReduceOptions::axis(axis))
    }

    /// Index of the max along `axis` (flat C-order index with `None`), u32.
    pub fn argmax(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Argmax, x, &ReduceOptions::axis(axis))
    }

    /// Index of the min along `axis` (flat C-order index with `None`), u32.
    pub fn argmin(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Argmin, x, &ReduceOptions::axis(axis))
    }

    /// L2 norm √Σx² over `axis` (all with `None`).
    pub fn norm(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Norm, x, &ReduceOptions::axis(axis))
    }

    /// Variance (`numpy.var`) over `axis` with divisor n − `ddof`.
    pub fn var(&self, x: &Tensor, axis: Option<isize>, ddof: usize) -> Result<Tensor> {
        self.reduce(
            ReduceOp::Var,
            x,
            &ReduceOptions {
                axis,
                ddof,
                ..Default::default()
            },
        )
    }

    /// log Σ exp x over `axis` (all with `None`), max-shifted.
    pub fn logsumexp(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::LogSumExp, x, &ReduceOptions::axis(axis))
    }

    /// Softmax along `axis` (the last with `None`).
    pub fn softmax(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Softmax, x, &ReduceOptions::axis(axis))
    }

    /// Log-softmax along `axis` (the last with `None`).
    pub fn log_softmax(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::LogSoftmax, x, &ReduceOptions::axis(axis))
    }

    /// The workgroup combine this context uses: forced by `GPU_LINALG_REDUCE_KERNEL`, else
    /// cached on disk, else timed now (a sum of 2²² values with each kernel).
    pub fn reduce_kernel(&self) -> Result<ReduceKernel> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU reduce kernel".into(),
            ));
        };
        if let Ok(s) = std::env::var("GPU_LINALG_REDUCE_KERNEL") {
            return s.parse();
        }
        {
            let mut c = lock(&CHOICE);
            c.retain(|(w, _)| w.strong_count() > 0);
            if let Some((_, k)) = c
                .iter()
                .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(gpu)))
            {
                return Ok(*k);
            }
        }
        let choice = if let Some(k) = gpu.tuned("reduce").and_then(|v| v.parse().ok()) {
            k
        } else {
            let results = self.tune_reduce()?;
            let best = results
                .iter()
                .filter_map(|(k, r)| r.as_ref().ok().map(|g| (*k, *g)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| k)
                .unwrap_or(ReduceKernel::Tree);
            gpu.store_tuned("reduce", &best.to_string());
            best
        };
        lock(&CHOICE).push((Arc::downgrade(gpu), choice));
        Ok(choice)
    }

    /// Times each combine kernel on a sum of 2²² values: (kernel, GB/s or why it failed).
    pub fn tune_reduce(&self) -> Result<Vec<(ReduceKernel, std::result::Result<f64, String>)>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let n = 1 << 22;
        let data: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect();
        let x = self.tensor(&[n], &data)?;
        let mut kernels = vec![ReduceKernel::Tree, ReduceKernel::Serial];
        if gpu.features.contains(wgpu::Features::SUBGROUP) {
            kernels.push(ReduceKernel::Subgroup);
        }
        let mut out = Vec::new();
        for kernel in kernels {
            let opts = ReduceOptions {
                kernel: Some(kernel),
                ..Default::default()
            };
            let run = || -> Result<f64> {
                self.reduce(ReduceOp::Sum, &x, &opts)?.to_vec()?;
                let mut best = f64::INFINITY;
                for _ in 0..3 {
                    let t = Instant::now();
                    let y = self.reduce(ReduceOp::Sum, &x, &opts)?;
                    self.synchronize()?;
                    best = best.min(t.elapsed().as_secs_f64());
                    drop(y);
                }
                Ok((n * 4) as f64 / best / 1e9)
            };
            out.push((kernel, run().map_err(|e| e.to_string())));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_numpy() {
        let o = |axis, keepdims| ReduceOptions {
            axis,
            keepdims,
            ..Default::default()
        };
        let p = ReducePlan::new(ReduceOp::Sum, &[2, 3, 4], &o(Some(-2), false)).unwrap();
        assert_eq!((p.outer, p.len, p.inner), (2, 3, 4));
        assert_eq!(p.out_shape, vec![2, 4]);
        let p = ReducePlan::new(ReduceOp::Sum, &[2, 3, 4], &o(Some(1), true)).unwrap();
        assert_eq!(p.out_shape, vec![2, 1, 4]);
        let p = ReducePlan::new(ReduceOp::Sum, &[2, 3, 4], &o(None, false)).unwrap();
        assert_eq!(p.out_shape, Vec::<usize>::new());
        let p = ReducePlan::new(ReduceOp::Sum, &[2, 3, 4], &o(None, true)).unwrap();
        assert_eq!(p.out_shape, vec![1, 1, 1]);
        let p = ReducePlan::new(ReduceOp::Softmax, &[2, 3], &o(None, false)).unwrap();
        assert_eq!(
            (p.outer, p.len, p.inner, p.out_shape),
            (2, 3, 1, vec![2, 3])
        );
        assert!(ReducePlan::new(ReduceOp::Sum, &[2, 3], &o(Some(2), false)).is_err());
        assert!(ReducePlan::new(ReduceOp::Sum, &[2, 3], &o(Some(-3), false)).is_err());
        let e = ReducePlan::new(ReduceOp::Max, &[0], &o(None, false)).unwrap_err();
        assert!(e
            .to_string()
            .contains("zero-size array to reduction operation maximum"));
        assert!(ReducePlan::new(ReduceOp::Argmin, &[3, 0], &o(Some(1), false)).is_err());
        // Nothing to reduce into: no error (numpy: max over axis 1 of (0, 3) is shape (0,)).
        assert!(ReducePlan::new(ReduceOp::Max, &[0, 3], &o(Some(1), false)).is_ok());
    }

    #[test]
    fn names_round_trip() {
        for op in ReduceOp::ALL {
            assert_eq!(op.name().parse::<ReduceOp>().unwrap(), op);
        }
        for k in ReduceKernel::ALL {
            assert_eq!(k.to_string().parse::<ReduceKernel>().unwrap(), k);
        }
    }

    #[test]
    fn variants_are_split() {
        let t = variant_source(ReduceKernel::Tree, false);
        let s = variant_source(ReduceKernel::Subgroup, true);
        assert!(!t.contains("subgroupAdd(") && t.contains("workgroupBarrier"));
        assert!(s.contains("subgroupAdd("));
    }
}
