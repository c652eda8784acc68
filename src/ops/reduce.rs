//! Reductions with numpy semantics — sum, mean, max, min, argmax, argmin, L2 norm, variance,
//! logsumexp — over all elements or one axis, and softmax / log-softmax along an axis, on the
//! GPU (`shaders/reduce.wgsl`) or the CPU.
//!
//! The tensor is viewed as (outer, len, inner) and reduced along `len`. Contiguous rows
//! (inner == 1) are reduced by workgroups with vec4 loads, many elements per thread and a
//! compensated accumulator, combined by a barrier tree or by subgroup operations (chosen per
//! adapter by timing once); other axes by a thread per column. Long axes are split into
//! segments whose partial accumulators later passes combine, without readback in between.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use crate::context::{Context, Gpu, GpuBuffer, PerDevice};
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

thread_local! {
    /// A cap on the bytes one reduction window binds, below the device's limit (0: none).
    static WINDOW_CAP: Cell<u64> = const { Cell::new(0) };
}

/// Caps the bytes every reduction binds per window below the device's
/// `max_storage_buffer_binding_size` (`None` restores the device limit), on this thread. For
/// tests: it runs the windowed path, used for inputs larger than one binding, on small inputs.
/// Results do not depend on it; a cap too small for one segment of a column gives an `Err`.
#[doc(hidden)]
pub fn set_window_cap(bytes: Option<u64>) {
    WINDOW_CAP.with(|c| c.set(bytes.unwrap_or(0)));
}

/// The bytes a reduction may bind per window on `gpu`.
fn window_limit(gpu: &Gpu) -> u64 {
    let limit = gpu.limits.max_storage_buffer_binding_size;
    match WINDOW_CAP.with(Cell::get) {
        0 => limit,
        cap => cap.min(limit),
    }
}

/// Chosen combine kernels per device (by weak pointer, so a dropped device is never matched).
static CHOICE: PerDevice<ReduceKernel> = PerDevice::new();

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
        // the plan and the dispatch's window (local slot < total, k < end ≤ len, j < items,
        // id < total) and is global: slot = local + s_off, element = (o·len + k)·inner + j,
        // output q = o·inner + j. `Job::reduce` and the softmax loop in `run_gpu` bind, for each
        // window, the source from src_start (aligned down, ≤ the window's first element) to
        // past its last element, dst from d_start to past its last slot (4 words per partial
        // slot), and aux/aux2 from a_start to past its last output; the kernel subtracts those
        // starts, so every access lies inside its binding (vec4/vec8 loads: src_start is a
        // multiple of 8 elements, loads stay inside their segment). `Job::dispatch` refuses a
        // window whose binding would exceed the buffer or the binding limit. Workgroup indices
        // stay below WG. Every loop is bounded by these sizes.
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

/// Words of the kernels' uniform `Params`.
const PARAMS: usize = 24;

/// What one dispatch covers: global index ranges of its source elements (16-byte slots for
/// partials), of its outputs (for aux / aux2, which hold one value per output), and of the words
/// of `dst_buf` it writes. Each range is bound from its start aligned down to the device's
/// offset alignment; the kernel subtracts those starts from its global indices.
struct Win<'a> {
    source: Source<'a>,
    src: (usize, usize),
    outs: (usize, usize),
    aux: Option<&'a GpuBuffer>,
    aux2: Option<&'a GpuBuffer>,
    dst_buf: &'a GpuBuffer,
    dst: (usize, usize),
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

    /// The binding offset alignment in bytes: the device's `min_storage_buffer_offset_alignment`,
    /// at least 32 so that window starts keep the vec4 and vec8 loads aligned.
    fn align(&self) -> u64 {
        u64::from(self.gpu.limits.min_storage_buffer_offset_alignment)
            .max(32)
            .next_power_of_two()
    }

    /// The first index at or below `idx` of elements of `es` bytes whose byte offset is aligned.
    fn align_down(&self, idx: usize, es: u64) -> usize {
        let a = self.align();
        ((idx as u64 * es) / a * a / es) as usize
    }

    /// Records one dispatch of `entry` over the window `win`; fills the window fields of
    /// `params` (src_start, d_start, a_start) from it.
    fn dispatch(
        &mut self,
        entry: &str,
        op: u32,
        wg: u32,
        mut params: [u32; PARAMS],
        grid: (u32, u32),
        win: &Win,
    ) -> Result<()> {
        let k = pipeline(self.gpu, self.kernel, entry, op, wg)?;
        let es: u64 = match win.source {
            Source::Input => 4,
            Source::Partials(_) => 16,
        };
        let src_start = self.align_down(win.src.0, es);
        let d_start = self.align_down(win.dst.0, 4);
        let a_start = if win.aux.is_some() || win.aux2.is_some() {
            self.align_down(win.outs.0, 4)
        } else {
            0
        };
        params[19] = u32_of(src_start, "window start")?;
        params[20] = u32_of(d_start, "window start")?;
        params[21] = u32_of(a_start, "window start")?;
        let u = self.gpu.uniform(&params)?;
        let d = &*self.dummy;
        // Byte ranges of the window's bindings (offsets aligned by align_down).
        let src_off = src_start as u64 * es;
        let src_bytes = (win.src.1 - src_start) as u64 * es;
        let (x_view, x4_view, x8_view, p_view) = match win.source {
            Source::Input => {
                let n4 = src_bytes / 16 * 16;
                let n8 = src_bytes / 32 * 32;
                (
                    (self.x, src_off, src_bytes.max(4)),
                    if n4 >= 16 {
                        (self.x, src_off, n4)
                    } else {
                        (d, 0, 16)
                    },
                    if n8 >= 32 {
                        (self.x, src_off, n8)
                    } else {
                        (d, 0, 32)
                    },
                    (d, 0, 16),
                )
            }
            Source::Partials(b) => (
                (d, 0, 4),
                (d, 0, 16),
                (d, 0, 32),
                (b, src_off, src_bytes.max(16)),
            ),
        };
        let a_off = a_start as u64 * 4;
        let a_bytes = ((win.outs.1 - a_start) as u64 * 4).max(4);
        let aux_v = match win.aux {
            Some(b) => (b, a_off, a_bytes),
            None => (d, 0, 4),
        };
        let aux2_v = match win.aux2 {
            Some(b) => (b, a_off, a_bytes),
            None => (d, 0, 4),
        };
        let dst_view = (
            win.dst_buf,
            d_start as u64 * 4,
            ((win.dst.1 - d_start) as u64 * 4).max(4),
        );
        let limit = self.gpu.limits.max_storage_buffer_binding_size;
        for (b, off, bytes) in [x_view, x4_view, x8_view, p_view, aux_v, aux2_v, dst_view] {
            // The windows are sized so that this holds; a violation is a bug, reported as such.
            if bytes > limit || off + bytes > b.buffer().size() {
                return Err(Error::Kernel(format!(
                    "reduction window of {bytes} bytes at {off} does not fit a binding of \
                     {limit} bytes in a buffer of {} bytes",
                    b.buffer().size()
                )));
            }
        }
        fn entry_of(binding: u32, v: (&GpuBuffer, u64, u64)) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry {
                binding,
                resource: v.0.binding_range(v.1, v.2),
            }
        }
        let bg = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &k.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: u.binding((PARAMS * 4) as u64),
                    },
                    entry_of(1, x_view),
                    entry_of(2, x4_view),
                    entry_of(3, aux_v),
                    entry_of(4, p_view),
                    entry_of(5, dst_view),
                    entry_of(6, aux2_v),
                    entry_of(7, x8_view),
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
        // A segment's source (chunk · inner elements) must fit one binding window: shorter
        // segments where it would not (multiples of 8 for the rows kernels' vector loads).
        let es: u64 = if matches!(src, Source::Partials(_)) {
            16
        } else {
            4
        };
        let limit = window_limit(self.gpu);
        let room = limit.saturating_sub(self.align());
        let fit = (room / (inner as u64 * es).max(1)) as usize;
        let (groups, chunk) = if chunk > fit {
            let c = if rows { fit / 8 * 8 } else { fit }.max(1);
            (len.div_ceil(c), c)
        } else {
            (groups, chunk)
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
        let vec8_ok = vec_ok
            && (len.is_multiple_of(8) || outer == 1)
            && chunk.is_multiple_of(8)
            && self.gpu.features.contains(wgpu::Features::SHADER_INT64);
        let entry = if serial {
            "reduce_serial"
        } else if rows {
            "reduce_rows"
        } else {
            "reduce_cols"
        };
        // Windows: runs of consecutive segment rows r = outer index · groups + segment, each
        // with `inner` slots. The source elements of a run are contiguous (those of segment
        // `seg` of outer index `o` are (o·len + seg·chunk)·inner .. (o·len + min((seg+1)·chunk,
        // len))·inner), and so are its slots and its outputs. A run of `per` rows binds at most
        // per·inner·max(chunk·es, slot bytes, 4) bytes plus the alignment slack of each window
        // start, which `per` keeps within one binding.
        let unit = inner as u64 * (chunk as u64 * es).max(if fin { 4 } else { 16 });
        let per = (limit.saturating_sub(self.align()) / unit.max(1)) as usize;
        if per == 0 {
            return Err(Error::OutOfMemory(format!(
                "reduction: one segment of the axis ({chunk} × {inner} elements of {es} bytes, \
                 {unit} bytes) needs a storage binding above this adapter's \
                 max_storage_buffer_binding_size of {limit} bytes"
            )));
        }
        // The kernels compute 4·slot (partials) in u32.
        u32_of(4 * slots, "partial words")?;
        let seg_rows = outer * groups;
        let mut r0 = 0;
        while r0 < seg_rows {
            let r1 = (r0 + per).min(seg_rows);
            let (o0, g0) = (r0 / groups, r0 % groups);
            let (o1, g1) = ((r1 - 1) / groups, (r1 - 1) % groups);
            let (s0, s1) = (r0 * inner, r1 * inner);
            let win = Win {
                source: src,
                src: (
                    (o0 * len + g0 * chunk) * inner,
                    (o1 * len + (g1 * chunk + chunk).min(len)) * inner,
                ),
                outs: (o0 * inner, (o1 + 1) * inner),
                aux: cfg.aux,
                aux2: None,
                dst_buf: &dst,
                dst: if fin { (s0, s1) } else { (4 * s0, 4 * s1) },
            };
            let count = if rows {
                s1 - s0
            } else {
                (s1 - s0).div_ceil(64)
            };
            let grid = self.grid(count, "reduction")?;
            let params = [
                u32_of(outer, "outer size")?,
                u32_of(len, "axis length")?,
                u32_of(inner, "inner size")?,
                u32_of(groups, "segments")?,
                u32_of(chunk, "segment")?,
                grid.0,
                u32_of(s1 - s0, "outputs")?,
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
                u32::from(vec8_ok),
                u32_of(s0, "window start")?,
                0,
                0,
                0,
                0,
                0,
            ];
            self.dispatch(entry, cfg.op, wg as u32, params, grid, &win)?;
            r0 = r1;
        }
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
            let out = gpu.alloc((n * 4) as u64, "softmax result")?;
            // Windows of whole elements: input and output share their ranges; the row max and
            // sum (one value per output q = o·inner + j) are bound for the window's outer range.
            let limit = window_limit(gpu);
            let room = limit.saturating_sub(job.align()) / 4;
            let slice = len * inner;
            let mut e0 = 0;
            while e0 < n {
                let mut per = (room as usize).max(1);
                let (e1, outs) = loop {
                    let e1 = (e0 + per).min(n);
                    let outs = ((e0 / slice) * inner, ((e1 - 1) / slice + 1) * inner);
                    let a_bytes = (outs.1 - job.align_down(outs.0, 4)) as u64 * 4;
                    if a_bytes <= limit {
                        break (e1, outs);
                    }
                    if per == 1 {
                        return Err(Error::OutOfMemory(format!(
                            "{}: the row statistics of one window need {a_bytes} bytes, above \
                             this adapter's max_storage_buffer_binding_size of {limit} bytes",
                            plan.op
                        )));
                    }
                    per /= 2;
                };
                let grid = job.grid((e1 - e0).div_ceil(64), "softmax")?;
                let mut params = [0u32; PARAMS];
                params[0] = u32_of(outer, "outer size")?;
                params[1] = u32_of(len, "axis length")?;
                params[2] = u32_of(inner, "inner size")?;
                params[5] = grid.0;
                params[6] = u32_of(e1 - e0, "elements")?;
                params[12] = u32::from(log);
                params[13] = f32::INFINITY.to_bits();
                params[14] = f32::NAN.to_bits();
                params[15] = u32::from(log);
                params[18] = u32_of(e0, "window start")?;
                let win = Win {
                    source: Source::Input,
                    src: (e0, e1),
                    outs,
                    aux: Some(&m),
                    aux2: Some(&s),
                    dst_buf: &out,
                    dst: (e0, e1),
                };
                job.dispatch("normalize", plan.op.shader_id(), 64, params, grid, &win)?;
                e0 = e1;
            }
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
        CHOICE.get_or_tune(
            gpu,
            "reduce",
            |v| v.parse().ok(),
            ToString::to_string,
            || {
                let results = self.tune_reduce()?;
                Ok(results
                    .iter()
                    .filter_map(|(k, r)| r.as_ref().ok().map(|g| (*k, *g)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(k, _)| k)
                    .unwrap_or(ReduceKernel::Tree))
            },
        )
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
