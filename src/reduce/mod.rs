//! Reductions with numpy semantics — sum, mean, max, min, argmax, argmin, L2 norm, variance,
//! logsumexp — over all elements or one axis, and softmax / log-softmax along an axis, on the
//! GPU (`shaders/reduce.wgsl`) or the CPU.
//!
//! The tensor is viewed as (outer, len, inner) and reduced along `len`. Contiguous rows
//! (inner == 1) are reduced by workgroups with vec4 loads, many elements per thread and a
//! compensated accumulator, combined by a barrier tree or by subgroup operations (chosen per
//! adapter by timing once); other axes by a thread per column. Long axes are split into
//! segments whose partial accumulators later passes combine, without readback in between.

pub mod cpu;

/// `shaders/reduce.wgsl`.
const SOURCE: &str = include_str!("../../shaders/reduce.wgsl");

use std::cell::Cell;
use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{trusted_module, u32_of, Bind, Choices, Encoder, Gpu, GpuBuffer};
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

mod plan;
pub use plan::*;

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
    let src = SOURCE;
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
) -> Result<Arc<crate::runtime::Kernel>> {
    let int64 = gpu.features.contains(wgpu::Features::SHADER_INT64);
    let key = format!("reduce/{kernel}/{entry}/{op}/{wg}/{int64}");
    let checked = gpu.checked;
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
            trusted_module(
                device,
                checked,
                "reduce.wgsl",
                variant_source(kernel, int64),
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

crate::kernel_params! {
    /// The kernels' uniform block (`Params` in shaders/reduce.wgsl).
    struct ReduceParams: "Params" {
        outer: u32,
        len: u32,
        inner: u32,
        groups: u32,
        chunk: u32,
        grid_x: u32,
        total: u32,
        full_len: u32,
        div: f32,
        vec_ok: u32,
        fin: u32,
        from_partials: u32,
        fshift: u32,
        pos_inf: u32,
        nan_bits: u32,
        mode: u32,
        lanes: u32,
        vec8_ok: u32,
        s_off: u32,
        src_start: u32,
        d_start: u32,
        a_start: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    generated_sources()
        .into_iter()
        .map(ReduceParams::layout)
        .collect()
}

/// Where a pass reads from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The input tensor (n elements).
    Input,
    /// Accumulators of an earlier pass.
    Partials(&'a Arc<GpuBuffer>),
}

/// One GPU reduction job: the device, the encoder every pass is recorded into, buffers kept
/// alive until submission.
struct Job<'a> {
    gpu: &'a Arc<Gpu>,
    kernel: ReduceKernel,
    enc: Encoder,
    x: &'a Arc<GpuBuffer>,
    dummy: Arc<GpuBuffer>,
}

/// Per-pass settings besides the view.
#[derive(Clone, Copy)]
struct PassCfg<'a> {
    op: u32,
    aux: Option<&'a Arc<GpuBuffer>>,
    full_len: usize,
    div: f32,
    fshift: bool,
}

/// What one dispatch covers: global index ranges of its source elements (16-byte slots for
/// partials), of its outputs (for aux / aux2, which hold one value per output), and of the words
/// of `dst_buf` it writes. Each range is bound from its start aligned down to the device's
/// offset alignment; the kernel subtracts those starts from its global indices.
struct Win<'a> {
    source: Source<'a>,
    src: (usize, usize),
    outs: (usize, usize),
    aux: Option<&'a Arc<GpuBuffer>>,
    aux2: Option<&'a Arc<GpuBuffer>>,
    dst_buf: &'a Arc<GpuBuffer>,
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
        params: ReduceParams,
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
        let params = ReduceParams {
            src_start: u32_of(src_start, "window start")?,
            d_start: u32_of(d_start, "window start")?,
            a_start: u32_of(a_start, "window start")?,
            ..params
        };
        let u = self.enc.params(&params)?;
        let d = &self.dummy;
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
        fn of(v: (&Arc<GpuBuffer>, u64, u64)) -> Bind<'_> {
            Bind::Range(v.0, v.1, v.2)
        }
        let bg = self.enc.bind(
            &k,
            &[
                (0, Bind::Params(&u)),
                (1, of(x_view)),
                (2, of(x4_view)),
                (3, of(aux_v)),
                (4, of(p_view)),
                (5, of(dst_view)),
                (6, of(aux2_v)),
                (7, of(x8_view)),
            ],
        );
        self.enc.dispatch(&k, &bg, (grid.0, grid.1, 1));
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
            let params = ReduceParams {
                outer: u32_of(outer, "outer size")?,
                len: u32_of(len, "axis length")?,
                inner: u32_of(inner, "inner size")?,
                groups: u32_of(groups, "segments")?,
                chunk: u32_of(chunk, "segment")?,
                grid_x: grid.0,
                total: u32_of(s1 - s0, "outputs")?,
                full_len: u32_of(cfg.full_len, "axis length")?,
                div: cfg.div,
                vec_ok: u32::from(vec_ok),
                fin: u32::from(fin),
                from_partials: u32::from(from_partials),
                fshift: u32::from(cfg.fshift),
                pos_inf: f32::INFINITY.to_bits(),
                nan_bits: f32::NAN.to_bits(),
                lanes: lanes_for(self.gpu, wg as u32),
                vec8_ok: u32::from(vec8_ok),
                s_off: u32_of(s0, "window start")?,
                ..Default::default()
            };
            self.dispatch(entry, cfg.op, wg as u32, params, grid, &win)?;
            r0 = r1;
        }
        if fin {
            return Ok(dst);
        }
        self.reduce(Source::Partials(&dst), outer, groups, inner, cfg)
    }
}

fn run_gpu(
    gpu: &Arc<Gpu>,
    plan: &ReducePlan,
    x: &Arc<GpuBuffer>,
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
        enc: gpu.encoder("reduce"),
        x,
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
            drop(mean);
            out
        }
        ReduceOp::LogSumExp => {
            let m = job.reduce(Source::Input, outer, len, inner, cfg(ReduceOp::Max, None))?;
            let mut c = cfg(ReduceOp::LogSumExp, Some(&m));
            c.fshift = true;
            let out = job.reduce(Source::Input, outer, len, inner, c)?;
            drop(m);
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
                let params = ReduceParams {
                    outer: u32_of(outer, "outer size")?,
                    len: u32_of(len, "axis length")?,
                    inner: u32_of(inner, "inner size")?,
                    grid_x: grid.0,
                    total: u32_of(e1 - e0, "elements")?,
                    fshift: u32::from(log),
                    pos_inf: f32::INFINITY.to_bits(),
                    nan_bits: f32::NAN.to_bits(),
                    mode: u32::from(log),
                    s_off: u32_of(e0, "window start")?,
                    ..Default::default()
                };
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
            drop((m, s));
            out
        }
        op => job.reduce(Source::Input, outer, len, inner, cfg(op, None))?,
    };
    job.enc.submit()?;
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
        if let Some(y) = self.in_f32(&[x], |w| self.reduce(op, &w[0], opts))? {
            return Ok(y);
        }
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
                    None => self.reduce_kernel_for(&plan)?,
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
                _ => self.tensor(host.shape(), &host.to_vec()?),
            };
        }
        self.reduce_cpu(&plan, x)
    }

    fn reduce_cpu(&self, plan: &ReducePlan, x: &Tensor) -> Result<Tensor> {
        let xs = host_values(x)?;
        match crate::reduce::cpu::fast(plan, &xs) {
            crate::reduce::cpu::Output::Values(v) => Tensor::from_vec(&plan.out_shape, v),
            crate::reduce::cpu::Output::Indices(v) => Tensor::from_vec_u32(&plan.out_shape, v),
        }
    }

    /// Σx over `axis` (all with `None`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.sum(&a, None)?.to_vec()?, [10.]); // a 0-d tensor
    /// assert_eq!(ctx.sum(&a, Some(0))?.to_vec()?, [4., 6.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn sum(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, x, &ReduceOptions::axis(axis))
    }

    /// Mean over `axis` (all with `None`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.mean(&a, Some(-1))?.to_vec()?, [1.5, 3.5]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn mean(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, x, &ReduceOptions::axis(axis))
    }

    /// Max over `axis` (all with `None`); NaN if any is NaN.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.max(&a, None)?.to_vec()?, [4.]);
    /// assert!(ctx.max(&ctx.zeros(&[0])?, None).is_err()); // numpy: no identity
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn max(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, x, &ReduceOptions::axis(axis))
    }

    /// Min over `axis` (all with `None`); NaN if any is NaN.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.min(&a, Some(1))?.to_vec()?, [1., 3.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn min(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, x, &ReduceOptions::axis(axis))
    }

    /// Index of the max along `axis` (flat C-order index with `None`), u32.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.argmax(&a, None)?.to_vec_u32()?, [3]); // flat C-order index
    /// assert_eq!(ctx.argmax(&a, Some(0))?.to_vec_u32()?, [1, 1]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn argmax(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Argmax, x, &ReduceOptions::axis(axis))
    }

    /// Index of the min along `axis` (flat C-order index with `None`), u32.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.argmin(&a, Some(1))?.to_vec_u32()?, [0, 0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn argmin(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Argmin, x, &ReduceOptions::axis(axis))
    }

    /// L2 norm √Σx² over `axis` (all with `None`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[3., 4.])?;
    /// assert_eq!(ctx.norm(&x, None)?.to_vec()?, [5.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn norm(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Norm, x, &ReduceOptions::axis(axis))
    }

    /// Variance (`numpy.var`) over `axis` with divisor n − `ddof`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[4], &[1., 2., 3., 4.])?;
    /// assert!((ctx.var(&x, None, 0)?.to_vec()?[0] - 1.25).abs() < 1e-5);
    /// assert!((ctx.var(&x, None, 1)?.to_vec()?[0] - 5.0 / 3.0).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
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
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[0., 0.])?;
    /// assert!((ctx.logsumexp(&x, None)?.to_vec()?[0] - std::f32::consts::LN_2).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn logsumexp(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::LogSumExp, x, &ReduceOptions::axis(axis))
    }

    /// Softmax along `axis` (the last with `None`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2, 2], &[0., 0., 0., 2f32.ln()])?;
    /// let p = ctx.softmax(&x, Some(-1))?.to_vec()?;
    /// assert!((p[0] - 0.5).abs() < 1e-5);
    /// assert!((p[3] - 2.0 / 3.0).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn softmax(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::Softmax, x, &ReduceOptions::axis(axis))
    }

    /// Log-softmax along `axis` (the last with `None`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[0., 0.])?;
    /// let l = ctx.log_softmax(&x, None)?.to_vec()?;
    /// assert!((l[1] - -std::f32::consts::LN_2).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn log_softmax(&self, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
        self.reduce(ReduceOp::LogSoftmax, x, &ReduceOptions::axis(axis))
    }

    /// The workgroup combine this context uses for long rows (the bucket of a sum of 2²⁰
    /// values): see [`Context::reduce_kernel_for`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// match ctx.reduce_kernel() {
    ///     Ok(k) => println!("reduce kernel: {k:?}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"), // the CPU backend has no GPU kernel
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn reduce_kernel(&self) -> Result<ReduceKernel> {
        self.reduce_kernel_for(&ReducePlan::new(
            ReduceOp::Sum,
            &[1 << 20],
            &ReduceOptions::default(),
        )?)
    }

    /// The workgroup combine for `plan`: forced by `GPU_LINALG_REDUCE_KERNEL`, else the choice
    /// of the bucket of its axis length (⌈log₂ len⌉ rounded up to a multiple of 4): remembered,
    /// cached on disk, or timed now with every kernel's sum checked against the CPU first.
    ///
    /// ```
    /// use gpu_linalg::{ReduceOp, ReduceOptions, ReducePlan};
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let plan = ReducePlan::new(ReduceOp::Sum, &[1024, 1024], &ReduceOptions::axis(Some(1)))?;
    /// match ctx.reduce_kernel_for(&plan) {
    ///     Ok(k) => println!("{k:?}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"),
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn reduce_kernel_for(&self, plan: &ReducePlan) -> Result<ReduceKernel> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU reduce kernel".into(),
            ));
        };
        // Only contiguous rows long enough for a workgroup use the combine kernels.
        let len_exp = if plan.inner == 1 && plan.len >= ROW_MIN {
            crate::runtime::tune::bucket_exp(plan.len, 4, 24)
        } else {
            24
        };
        CHOICES.get(gpu, &format!("len2^{len_exp}"), || {
            self.tune_reduce_rows(1usize << len_exp)
        })
    }

    /// Times each combine kernel on a sum of 2²² values, each checked against the CPU first:
    /// (kernel, GB/s or why it was ruled out).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// if ctx.is_gpu() { // nothing to tune on the CPU backend
    ///     for (kernel, outcome) in ctx.tune_reduce()? {
    ///         println!("{kernel:?}: {outcome:?}");
    ///     }
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tune_reduce(&self) -> Result<Vec<(ReduceKernel, std::result::Result<f64, String>)>> {
        let n = 1usize << 22;
        Ok(self
            .tune_reduce_rows(n)?
            .into_iter()
            .map(|o| (o.choice, o.seconds.map(|s| (n * 4) as f64 / s / 1e9)))
            .collect())
    }

    /// Every combine kernel's outcome on row sums of `len` values (as many rows as make about
    /// 2²² values, at most 2²⁰ on CPU-type adapters).
    fn tune_reduce_rows(
        &self,
        len: usize,
    ) -> Result<Vec<crate::runtime::TuneOutcome<ReduceKernel>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let total = if gpu.is_cpu_adapter() {
            1 << 20
        } else {
            1 << 22
        };
        let len = len.clamp(1, total);
        let rows = (total / len).max(1);
        let data: Vec<f32> = (0..rows * len)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
            .collect();
        let (shape, opts) = if rows > 1 {
            (vec![rows, len], ReduceOptions::axis(Some(-1)))
        } else {
            (vec![len], ReduceOptions::default())
        };
        let plan = ReducePlan::new(ReduceOp::Sum, &shape, &opts)?;
        let reference = crate::reduce::cpu::reference(&plan, &data);
        let x = self.tensor(&shape, &data)?;
        let mut kernels = vec![ReduceKernel::Tree, ReduceKernel::Serial];
        if gpu.features.contains(wgpu::Features::SUBGROUP) {
            kernels.push(ReduceKernel::Subgroup);
        }
        Ok(crate::runtime::measure(
            gpu,
            &kernels,
            3,
            |kernel| {
                let opts = ReduceOptions {
                    kernel: Some(kernel),
                    ..opts
                };
                self.reduce(ReduceOp::Sum, &x, &opts)
            },
            |t| t.to_vec(),
            |v| reference.check(v),
        ))
    }
}

/// The tuned combine kernels of every device, by axis-length bucket.
static CHOICES: Choices<ReduceKernel> = Choices::new("reduce", Some("GPU_LINALG_REDUCE_KERNEL"));

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
