//! Elementwise ops with numpy broadcasting (up to 4 dims): arithmetic, `scale`, `axpy`,
//! `clamp`, `abs`, `exp`, `log`, `sqrt`, the activations, `lerp` and `slerp` — on the GPU (one
//! generated kernel per op from `shaders/elementwise.wgsl`) or the CPU.

use std::sync::Arc;

use crate::context::{Context, Gpu, GpuBuffer, Kernel};
use crate::error::{Error, Result};
use crate::ops::matmul::host_values;
use crate::ops::{source, trusted_pipeline, Activation};
use crate::tensor::{DType, Tensor, MAX_DIMS};

/// A one-operand elementwise op (parameters inline).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// `|x|`.
    Abs,
    /// `eˣ`.
    Exp,
    /// Natural log: NaN below 0, −∞ at 0 (numpy).
    Log,
    /// Square root: NaN below 0 (numpy).
    Sqrt,
    /// `alpha·x`.
    Scale(f32),
    /// `numpy.clip(x, min, max)`: NaN stays NaN; `min > max` gives `max`.
    Clamp(f32, f32),
    /// An activation: relu, gelu (erf), gelu-tanh, sigmoid, tanh (or identity).
    Act(Activation),
}

/// A two-operand elementwise op with numpy broadcasting (parameters inline).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b` (IEEE: x/0 is ±∞, 0/0 NaN).
    Div,
    /// `alpha·a + b`.
    Axpy(f32),
    /// `torch.lerp(a, b, t)`: `a + t·(b − a)`, exact at t = 0 and t = 1.
    Lerp(f32),
}

impl UnaryOp {
    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Scale(_) => "scale",
            UnaryOp::Clamp(..) => "clamp",
            UnaryOp::Act(a) => a.name(),
        }
    }

    /// WGSL expression of `a` (and `p.alpha`, `p.beta`), and the ACT constant.
    fn wgsl(self) -> (&'static str, u32) {
        match self {
            UnaryOp::Abs => ("abs(a)", 0),
            UnaryOp::Exp => ("exp_np(a)", 0),
            UnaryOp::Log => ("log_np(a)", 0),
            UnaryOp::Sqrt => ("sqrt_np(a)", 0),
            UnaryOp::Scale(_) => ("p.alpha * a", 0),
            UnaryOp::Clamp(..) => ("clamp_np(a, p.alpha, p.beta)", 0),
            UnaryOp::Act(act) => ("activate(a)", act.shader_id()),
        }
    }

    fn params(self) -> (f32, f32) {
        match self {
            UnaryOp::Scale(s) => (s, 0.0),
            UnaryOp::Clamp(lo, hi) => (lo, hi),
            _ => (0.0, 0.0),
        }
    }
}

impl BinaryOp {
    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Axpy(_) => "axpy",
            BinaryOp::Lerp(_) => "lerp",
        }
    }

    fn wgsl(self) -> &'static str {
        match self {
            BinaryOp::Add => "a + b",
            BinaryOp::Sub => "a - b",
            BinaryOp::Mul => "a * b",
            BinaryOp::Div => "a / b",
            BinaryOp::Axpy(_) => "p.alpha * a + b",
            BinaryOp::Lerp(_) => "lerp_np(a, b, p.alpha)",
        }
    }

    fn alpha(self) -> f32 {
        match self {
            BinaryOp::Axpy(s) | BinaryOp::Lerp(s) => s,
            _ => 0.0,
        }
    }
}

/// The numpy broadcast of two shapes (right-aligned, size-1 dims stretch), or an error naming
/// both shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let nd = a.len().max(b.len());
    if nd > MAX_DIMS {
        return Err(Error::InvalidArgument(format!(
            "shapes {a:?} and {b:?}: at most {MAX_DIMS} dims are supported"
        )));
    }
    let mut out = vec![0; nd];
    for i in 0..nd {
        let da = if i + a.len() >= nd {
            a[i + a.len() - nd]
        } else {
            1
        };
        let db = if i + b.len() >= nd {
            b[i + b.len() - nd]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::Shape(format!(
                "operands could not be broadcast together with shapes {a:?} and {b:?} \
                 (axis {} of the result: {da} vs {db})",
                i as isize - nd as isize
            )));
        };
    }
    Ok(out)
}

/// Element strides of an operand of `shape` read at the coordinates of a result with at least
/// as many dims (right-aligned, 0 along size-1 dims), padded to 4 dims with leading zeros.
pub(crate) fn broadcast_strides(shape: &[usize]) -> [usize; MAX_DIMS] {
    let mut s = [0usize; MAX_DIMS];
    let mut acc = 1usize;
    for (k, &d) in shape.iter().enumerate().rev() {
        s[MAX_DIMS - (shape.len() - k)] = if d == 1 { 0 } else { acc };
        acc *= d;
    }
    s
}

/// `shape` padded with leading 1s to 4 dims.
pub(crate) fn pad4(shape: &[usize]) -> [usize; MAX_DIMS] {
    let mut s = [1usize; MAX_DIMS];
    s[MAX_DIMS - shape.len()..].copy_from_slice(shape);
    s
}

/// Elements per thread and workgroup width of the elementwise kernels.
const EPT: usize = 4;
const WG: usize = 64;

/// The 2-D grid that covers `groups` workgroups within the per-dimension limit.
pub(crate) fn fold_grid(gpu: &Gpu, groups: usize, what: &str) -> Result<(u32, u32)> {
    let limit = gpu.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    let y = groups.div_ceil(limit);
    let x = groups.div_ceil(y.max(1));
    if y > limit {
        return Err(Error::InvalidArgument(format!(
            "{what}: {groups} workgroups do not fit a {limit}×{limit} grid"
        )));
    }
    Ok((x as u32, y as u32))
}

/// Merges adjacent dims that every operand walks contiguously (and drops size-1 dims):
/// returns the 4-slot (shape, strides of a, strides of b), right-aligned, and the dims left.
pub(crate) fn collapse(
    shape: [usize; 4],
    sa: [usize; 4],
    sb: [usize; 4],
) -> ([usize; 4], [usize; 4], [usize; 4], usize) {
    let mut dims: Vec<(usize, usize, usize)> = Vec::new(); // innermost first
    for k in (0..4).rev() {
        if shape[k] == 1 {
            continue;
        }
        match dims.last_mut() {
            Some((n, a, b)) if sa[k] == *a * *n && sb[k] == *b * *n => *n *= shape[k],
            _ => dims.push((shape[k], sa[k], sb[k])),
        }
    }
    let (mut s, mut a, mut b) = ([1usize; 4], [0usize; 4], [0usize; 4]);
    for (j, &(n, x, y)) in dims.iter().enumerate() {
        s[3 - j] = n;
        a[3 - j] = x;
        b[3 - j] = y;
    }
    (s, a, b, dims.len().max(1))
}

/// The row-of-vec4s form of a collapsed broadcast, when it exists: at most 2 dims, rows a
/// multiple of 4 long, each operand read along the row contiguously (stride 1, row stride a
/// multiple of 4) or as a column (stride 0). Returns (shape with the row length in vec4s,
/// strides of a, strides of b).
#[allow(clippy::type_complexity)]
fn rows4_layout(
    shape: [usize; 4],
    sa: [usize; 4],
    sb: [usize; 4],
    ndim: usize,
) -> Option<([usize; 4], [usize; 4], [usize; 4])> {
    if ndim > 2 || !shape[3].is_multiple_of(4) {
        return None;
    }
    let ok = |s: [usize; 4]| s[3] == 0 || (s[3] == 1 && s[2].is_multiple_of(4));
    if !ok(sa) || !ok(sb) {
        return None;
    }
    // One dim: a single row (the row stride is never used).
    Some(([1, 1, shape[2], shape[3] / 4], sa, sb))
}

/// The elementwise pipeline of `expr` (keyed by `name`, ACT and NDIM) for `entry`.
fn ew_pipeline(
    gpu: &Gpu,
    name: &str,
    expr: &str,
    act: u32,
    entry: &str,
    ndim: usize,
) -> Result<Arc<Kernel>> {
    let key = format!("elementwise/{name}/{entry}/{act}/{ndim}");
    let constants = [
        ("ACT", f64::from(act)),
        ("WG", WG as f64),
        ("EPT", EPT as f64),
        ("NDIM", ndim as f64),
    ];
    // SAFETY: every kernel of shaders/elementwise.wgsl guards its index against `n` and reads
    // operands at offsets the host derives from their shapes and windows (broadcast strides,
    // window offsets), binding buffers at least that large; no loop is unbounded.
    unsafe {
        trusted_pipeline(
            gpu,
            &key,
            "elementwise.wgsl",
            || module_source(expr),
            entry,
            &constants,
        )
    }
}

/// The elementwise module with `op(a, b)` defined as `expr`.
fn module_source(expr: &str) -> String {
    format!(
        "{}\n{}\nfn op(a: f32, b: f32) -> f32 {{\n    return {expr};\n}}\n",
        source::DIVMOD,
        source::with_epilogue(source::ELEMENTWISE)
    )
}

/// Every generated elementwise module, one per op expression (for the cross-compilation test).
pub(crate) fn generated_sources() -> Vec<String> {
    let unary = [
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Scale(1.0),
        UnaryOp::Clamp(0.0, 1.0),
        UnaryOp::Act(Activation::Relu),
    ];
    let binary = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Axpy(1.0),
        BinaryOp::Lerp(0.5),
    ];
    unary
        .iter()
        .map(|u| u.wgsl().0)
        .chain(binary.iter().map(|b| b.wgsl()))
        .chain(["a"])
        .map(module_source)
        .collect()
}

fn u(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!("{what} {v} exceeds the GPU's 32-bit index range"))
    })
}

/// Parameters of the elementwise uniform (`EwParams`).
struct EwUniform {
    n: usize,
    alpha: f32,
    beta: f32,
    d: usize,
    shape: [usize; 4],
    sa: [usize; 4],
    sb: [usize; 4],
    /// Element offsets of a, b and out inside their bound windows.
    off: [usize; 3],
}

/// Bytes of the elementwise uniform block.
const EW_UNIFORM_BYTES: usize = 96;

impl EwUniform {
    fn words(&self) -> Result<Vec<u32>> {
        let mut w = vec![
            u(self.n, "element count")?,
            self.alpha.to_bits(),
            self.beta.to_bits(),
            u(self.d, "row length")?,
        ];
        for arr in [self.shape, self.sa, self.sb] {
            for v in arr {
                w.push(u(v, "dimension or stride")?);
            }
        }
        for d in self.shape {
            w.push(((1.0 / d.max(1) as f64) as f32).to_bits());
        }
        for v in self.off {
            w.push(u(v, "window offset")?);
        }
        w.push(0);
        Ok(w)
    }
}

fn entry(binding: u32, buf: &GpuBuffer, bytes: usize) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buf.binding(bytes as u64),
    }
}

/// A window of a buffer bound as one operand: a byte offset aligned to
/// [`window_align`], a size within the binding limit, and the element offset, inside the
/// window, of the first element a dispatch touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Byte offset of the binding (a multiple of the alignment).
    pub offset: u64,
    /// Bytes bound (a multiple of 4, of 16 where the buffer holds that much).
    pub size: u64,
    /// Element offset of the first element used, inside the window.
    pub elem_off: usize,
}

impl Window {
    /// The smallest window from a multiple of `align` that covers elements `start..end` of a
    /// buffer of `buf_bytes` bytes, its size rounded up to 16 bytes where the buffer allows.
    pub(crate) fn covering(start: usize, end: usize, align: u64, buf_bytes: u64) -> Window {
        let s = (start * 4) as u64;
        let offset = s / align * align;
        let need = ((end * 4) as u64).saturating_sub(offset).max(4);
        let size = need
            .next_multiple_of(16)
            .min(buf_bytes.saturating_sub(offset))
            .max(need);
        Window {
            offset,
            size,
            elem_off: ((s - offset) / 4) as usize,
        }
    }

    /// The binding of this window of `buf`.
    pub(crate) fn of<'a>(&self, binding: u32, buf: &'a GpuBuffer) -> wgpu::BindGroupEntry<'a> {
        wgpu::BindGroupEntry {
            binding,
            resource: buf.binding_range(self.offset, self.size),
        }
    }

    /// Whether the window can be bound as `array<vec4<f32>>` read from its element offset.
    fn vec4_ok(&self) -> bool {
        self.size.is_multiple_of(16) && self.elem_off.is_multiple_of(4)
    }
}

/// Alignment of window offsets: the device's `min_storage_buffer_offset_alignment`, at least
/// 16 bytes so that vec4 views of a window stay vec4-aligned (alignments are powers of two).
pub(crate) fn window_align(gpu: &Gpu) -> u64 {
    u64::from(gpu.limits.min_storage_buffer_offset_alignment).max(16)
}

/// Elements a window may span so that, with its alignment slack and rounding, it still fits one
/// storage binding.
pub(crate) fn window_budget(gpu: &Gpu) -> usize {
    let limit = gpu.limits.max_storage_buffer_binding_size;
    (limit.saturating_sub(window_align(gpu) + 16) / 4).max(1) as usize
}

/// Checks that every window fits one binding (the split guarantees it; this turns a slip into
/// an error naming the limit instead of a validation error).
pub(crate) fn check_windows(gpu: &Gpu, windows: &[Window], what: &str) -> Result<()> {
    for w in windows {
        gpu.check_binding(w.size, what)?;
    }
    Ok(())
}

/// Encodes one pass of `kernel` over `groups` workgroups and submits it.
pub(crate) fn run_pass(
    gpu: &Gpu,
    kernel: &Kernel,
    entries: &[wgpu::BindGroupEntry<'_>],
    groups: usize,
    what: &str,
) -> Result<()> {
    let (gx, gy) = fold_grid(gpu, groups, what)?;
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &kernel.layout,
        entries,
    });
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
    {
        let mut pass = gpu.begin_pass(&mut enc);
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
    }
    gpu.submit(enc);
    Ok(())
}

/// Rows of the outermost merged dim (of size `shape[k0]`) per dispatch such that every
/// operand's window spans at most `budget` elements: an operand with stride `s` along that dim
/// and extent `e` over the inner dims spans `(rows − 1)·s + e` elements (`e` when `s` is 0).
/// 0 when even one row does not fit.
fn rows_per_chunk(budget: usize, rows: usize, operands: &[(usize, usize)]) -> usize {
    operands.iter().fold(rows, |acc, &(s, e)| {
        let r = if e > budget {
            0
        } else {
            // A stride of 0 (a broadcast operand) spans `e` for any number of rows.
            (budget - e).checked_div(s).map_or(usize::MAX, |q| q + 1)
        };
        acc.min(r)
    })
}

/// Runs `expr` on the GPU: `out[i] = op(a[.], b[.])` over `out_shape` with broadcasting.
///
/// Operands larger than one storage binding are split along the outermost merged dim of the
/// output: each dispatch covers rows `r0..r1` of it and binds, per operand, the aligned window
/// that covers the elements those rows read (a broadcast operand with stride 0 along that dim
/// is bound whole in every dispatch, so it must fit one binding itself).
#[allow(clippy::too_many_arguments)]
fn run_gpu(
    gpu: &Arc<Gpu>,
    name: &str,
    expr: &str,
    act: u32,
    (alpha, beta): (f32, f32),
    out_shape: &[usize],
    (a, a_shape): (&GpuBuffer, &[usize]),
    (b, b_shape): (&GpuBuffer, &[usize]),
) -> Result<Arc<GpuBuffer>> {
    let n: usize = out_shape.iter().product();
    let out = gpu.alloc((n * 4) as u64, name)?;
    if n == 0 {
        return Ok(out);
    }
    let (na, nb) = (
        a_shape.iter().product::<usize>(),
        b_shape.iter().product::<usize>(),
    );
    let same = n.is_multiple_of(4) && na == n && nb == n;
    let (shape, sa, sb, ndim) = collapse(
        pad4(out_shape),
        broadcast_strides(a_shape),
        broadcast_strides(b_shape),
    );
    let rows4 = !same && rows4_layout(shape, sa, sb, ndim).is_some();
    let k0 = 4 - ndim;
    let inner: usize = shape[k0 + 1..].iter().product();
    // Elements an operand spans over the inner dims of one outer row.
    let extent = |s: [usize; 4]| 1 + (k0 + 1..4).map(|k| (shape[k] - 1) * s[k]).sum::<usize>();
    let (ea, eb) = (extent(sa), extent(sb));
    let mut rows = rows_per_chunk(
        window_budget(gpu),
        shape[k0],
        &[(sa[k0], ea), (sb[k0], eb), (inner, inner)],
    );
    if ndim == 1 && (same || rows4) && rows < shape[k0] {
        // vec4 kernels over single elements: chunks start at multiples of 4 elements.
        rows = rows / 4 * 4;
    }
    if rows == 0 {
        let bytes = 4 * ea.max(eb).max(inner) as u64;
        return Err(Error::OutOfMemory(format!(
            "{name}: one row of the output's leading dim needs a storage binding of {bytes} bytes, \
             above this adapter's max_storage_buffer_binding_size of {} bytes (elementwise ops \
             split only along leading dims)",
            gpu.limits.max_storage_buffer_binding_size
        )));
    }
    let align = window_align(gpu);
    let (a_bytes, b_bytes, o_bytes) = (a.buffer().size(), b.buffer().size(), out.buffer().size());
    let mut r0 = 0;
    while r0 < shape[k0] {
        let r1 = (r0 + rows).min(shape[k0]);
        let mut ls = shape;
        ls[k0] = r1 - r0;
        let m: usize = ls.iter().product();
        let span = |s: usize, e: usize| (r0 * s, r0 * s + (r1 - r0 - 1) * s + e);
        let (a0, a1) = span(sa[k0], ea);
        let (b0, b1) = span(sb[k0], eb);
        let wa = Window::covering(a0, a1, align, a_bytes);
        let wb = Window::covering(b0, b1, align, b_bytes);
        let wo = Window::covering(r0 * inner, r0 * inner + m, align, o_bytes);
        check_windows(gpu, &[wa, wb, wo], name)?;
        let off = [wa.elem_off, wb.elem_off, wo.elem_off];
        // An operand read as vec4s along the row (stride 1) needs a vec4-aligned window.
        let row_ok = |w: &Window, s: [usize; 4]| s[3] == 0 || w.vec4_ok();
        let layout4 = rows4_layout(ls, sa, sb, ndim)
            .filter(|_| rows4 && wa.size.is_multiple_of(16) && wb.size.is_multiple_of(16))
            .filter(|_| row_ok(&wa, sa) && row_ok(&wb, sb) && wo.vec4_ok());
        if same && wa.vec4_ok() && wb.vec4_ok() && wo.vec4_ok() {
            let uni = gpu.uniform(
                &EwUniform {
                    n: m / 4,
                    alpha,
                    beta,
                    d: 1,
                    shape: [1; 4],
                    sa: [0; 4],
                    sb: [0; 4],
                    off,
                }
                .words()?,
            )?;
            let kernel = ew_pipeline(gpu, name, expr, act, "ew_vec4", 1)?;
            let entries = [
                entry(0, &uni, EW_UNIFORM_BYTES),
                wa.of(4, a),
                wb.of(5, b),
                wo.of(6, &out),
            ];
            run_pass(gpu, &kernel, &entries, m.div_ceil(4 * WG * EPT), name)?;
        } else if let Some((shape4, sa4, sb4)) = layout4 {
            let uni = gpu.uniform(
                &EwUniform {
                    n: m / 4,
                    alpha,
                    beta,
                    d: 1,
                    shape: shape4,
                    sa: sa4,
                    sb: sb4,
                    off,
                }
                .words()?,
            )?;
            let kernel = ew_pipeline(gpu, name, expr, act, "ew_rows4", 2)?;
            let entries = [
                entry(0, &uni, EW_UNIFORM_BYTES),
                wa.of(1, a),
                wb.of(2, b),
                wa.of(4, a),
                wb.of(5, b),
                wo.of(6, &out),
            ];
            run_pass(gpu, &kernel, &entries, m.div_ceil(4 * WG * EPT), name)?;
        } else {
            let uni = gpu.uniform(
                &EwUniform {
                    n: m,
                    alpha,
                    beta,
                    d: 1,
                    shape: ls,
                    sa,
                    sb,
                    off,
                }
                .words()?,
            )?;
            let kernel = ew_pipeline(gpu, name, expr, act, "ew_general", ndim)?;
            let entries = [
                entry(0, &uni, EW_UNIFORM_BYTES),
                wa.of(1, a),
                wb.of(2, b),
                wo.of(3, &out),
            ];
            run_pass(gpu, &kernel, &entries, m.div_ceil(WG * EPT), name)?;
        }
        r0 = r1;
    }
    Ok(out)
}

fn check_f32(t: &Tensor, op: &str, which: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::InvalidArgument(format!(
            "{op}: {which} (shape {:?}) is {}; expected float32",
            t.shape(),
            t.dtype().name()
        )));
    }
    Ok(())
}

impl Context {
    /// Applies a one-operand op elementwise; the result keeps `x`'s shape (and stays on the
    /// GPU on a GPU context).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::UnaryOp;
    /// let x = ctx.tensor(&[3], &[-1.0, 0.0, 4.0])?;
    /// assert_eq!(ctx.unary(UnaryOp::Abs, &x)?.to_vec()?, vec![1.0, 0.0, 4.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        check_f32(x, op.name(), "input")?;
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let xb = self.resident(x)?;
                let (expr, act) = op.wgsl();
                let key = match op {
                    UnaryOp::Act(_) => "act",
                    other => other.name(),
                };
                let out = gpu.scoped(op.name(), || {
                    run_gpu(
                        gpu,
                        key,
                        expr,
                        act,
                        op.params(),
                        x.shape(),
                        (&xb, x.shape()),
                        (&xb, x.shape()),
                    )
                })??;
                Ok(Tensor::from_gpu(x.shape().to_vec(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let v = crate::cpu::elementwise::unary(op, &host_values(x)?);
            return self.tensor(x.shape(), &v);
        }
        let v = crate::cpu::elementwise::unary(op, &host_values(x)?);
        Tensor::from_vec(x.shape(), v)
    }

    /// Applies a two-operand op elementwise with numpy broadcasting (shapes right-aligned,
    /// size-1 dims stretch; a mismatch is an error naming both shapes).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::BinaryOp;
    /// let a = ctx.tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    /// let b = ctx.tensor(&[2], &[10.0, 20.0])?;
    /// assert_eq!(ctx.binary(BinaryOp::Add, &a, &b)?.to_vec()?, vec![11.0, 22.0, 13.0, 24.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_f32(a, op.name(), "first operand")?;
        check_f32(b, op.name(), "second operand")?;
        let shape = broadcast_shapes(a.shape(), b.shape())
            .map_err(|e| Error::Shape(format!("{}: {}", op.name(), strip(&e))))?;
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let (ab, bb) = (self.resident(a)?, self.resident(b)?);
                let out = gpu.scoped(op.name(), || {
                    run_gpu(
                        gpu,
                        op.name(),
                        op.wgsl(),
                        0,
                        (op.alpha(), 0.0),
                        &shape,
                        (&ab, a.shape()),
                        (&bb, b.shape()),
                    )
                })??;
                Ok(Tensor::from_gpu(shape.clone(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let v = crate::cpu::elementwise::binary(
                op,
                &shape,
                (&host_values(a)?, a.shape()),
                (&host_values(b)?, b.shape()),
            );
            return self.tensor(&shape, &v);
        }
        let v = crate::cpu::elementwise::binary(
            op,
            &shape,
            (&host_values(a)?, a.shape()),
            (&host_values(b)?, b.shape()),
        );
        Tensor::from_vec(&shape, v)
    }

    /// `a + b` with broadcasting.
    pub fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// `a − b` with broadcasting.
    pub fn sub(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// `a · b` (elementwise) with broadcasting.
    pub fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// `a / b` with broadcasting.
    pub fn div(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `alpha·a`.
    pub fn scale(&self, a: &Tensor, alpha: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(alpha), a)
    }

    /// `alpha·a + b` with broadcasting.
    pub fn axpy(&self, alpha: f32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Axpy(alpha), a, b)
    }

    /// `numpy.clip(a, min, max)`.
    pub fn clamp(&self, a: &Tensor, min: f32, max: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Clamp(min, max), a)
    }

    /// `|a|`.
    pub fn abs(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Abs, a)
    }

    /// `eᵃ`.
    pub fn exp(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Exp, a)
    }

    /// Natural log (NaN below 0, −∞ at 0).
    pub fn log(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Log, a)
    }

    /// Square root (NaN below 0).
    pub fn sqrt(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt, a)
    }

    /// An activation applied elementwise (the same functions as the fused matmul/conv
    /// epilogues).
    pub fn activate(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.unary(UnaryOp::Act(act), x)
    }

    /// `max(x, 0)` (NaN stays NaN).
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Relu)
    }

    /// GELU, erf form (PyTorch's default).
    pub fn gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Gelu)
    }

    /// GELU, tanh approximation.
    pub fn gelu_tanh(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::GeluTanh)
    }

    /// `1 / (1 + e⁻ˣ)`.
    pub fn sigmoid(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Sigmoid)
    }

    /// `tanh(x)`.
    pub fn tanh(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Tanh)
    }

    /// `torch.lerp(a, b, t)` with broadcasting: `a + t·(b − a)`, exact at both ends.
    pub fn lerp(&self, a: &Tensor, b: &Tensor, t: f32) -> Result<Tensor> {
        self.binary(BinaryOp::Lerp(t), a, b)
    }

    /// Spherical interpolation along the last axis (latent interpolation): per row,
    /// θ = acos(⟨a, b⟩ / (‖a‖‖b‖)) and `sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b`; plain lerp
    /// (`(1−t)·a + t·b`) where a row is zero or |cos θ| > 0.9995. `a` and `b` must have the
    /// same shape; a 0-d tensor is one row of length 1. On the GPU one invocation reduces a
    /// row; on CPU-type adapters (whose invocations stop after 65,535 loop iterations) rows
    /// longer than [`crate::MAX_K_PER_PASS_CPU_ADAPTER`] are computed on the CPU and uploaded.
    pub fn slerp(&self, a: &Tensor, b: &Tensor, t: f32) -> Result<Tensor> {
        check_f32(a, "slerp", "first operand")?;
        check_f32(b, "slerp", "second operand")?;
        if a.shape() != b.shape() {
            return Err(Error::Shape(format!(
                "slerp needs operands of one shape; got {:?} and {:?}",
                a.shape(),
                b.shape()
            )));
        }
        let shape = a.shape().to_vec();
        let d = shape.last().copied().unwrap_or(1);
        if let Some(gpu) = self.gpu() {
            if gpu.info.device_type == wgpu::DeviceType::Cpu
                && d > crate::ops::matmul::MAX_K_PER_PASS_CPU_ADAPTER
            {
                let v = crate::cpu::elementwise::slerp(&host_values(a)?, &host_values(b)?, d, t);
                return self.tensor(&shape, &v);
            }
            if gpu.info.device_type == wgpu::DeviceType::Cpu
                && d > crate::ops::matmul::MAX_K_PER_PASS_CPU_ADAPTER
            {
                let v = crate::cpu::elementwise::slerp(&host_values(a)?, &host_values(b)?, d, t);
                return self.tensor(&shape, &v);
            }
            let r = (|| {
                let (ab, bb) = (self.resident(a)?, self.resident(b)?);
                let out = gpu.scoped("slerp", || slerp_gpu(gpu, a.len(), d, t, &ab, &bb))??;
                Ok(Tensor::from_gpu(shape.clone(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let v = crate::cpu::elementwise::slerp(&host_values(a)?, &host_values(b)?, d, t);
            return self.tensor(&shape, &v);
        }
        let v = crate::cpu::elementwise::slerp(&host_values(a)?, &host_values(b)?, d, t);
        Tensor::from_vec(&shape, v)
    }
}

fn slerp_gpu(
    gpu: &Arc<Gpu>,
    n: usize,
    d: usize,
    t: f32,
    a: &GpuBuffer,
    b: &GpuBuffer,
) -> Result<Arc<GpuBuffer>> {
    let out = gpu.alloc((n * 4) as u64, "slerp result")?;
    if n == 0 {
        return Ok(out);
    }
    // slerp is not split: each pass binds whole operands.
    gpu.check_binding((n * 4) as u64, "slerp operand")?;
    let rows = n / d;
    gpu.check_binding((rows * 8) as u64, "slerp weights")?;
    let coef = gpu.alloc((rows * 8) as u64, "slerp weights")?;
    // The two passes share every uniform field but the element count.
    let uniform = |count: usize| -> Result<Arc<GpuBuffer>> {
        gpu.uniform(
            &EwUniform {
                n: count,
                alpha: t,
                beta: 0.0,
                d,
                shape: [1; 4],
                sa: [0; 4],
                sb: [0; 4],
                off: [0; 3],
            }
            .words()?,
        )
    };
    let uni_rows = uniform(rows)?;
    let k1 = ew_pipeline(gpu, "slerp", "a", 0, "slerp_coef", 1)?;
    run_pass(
        gpu,
        &k1,
        &[
            entry(0, &uni_rows, EW_UNIFORM_BYTES),
            entry(1, a, n * 4),
            entry(2, b, n * 4),
            entry(7, &coef, rows * 8),
        ],
        rows.div_ceil(WG),
        "slerp weights",
    )?;
    let uni = uniform(n)?;
    let k2 = ew_pipeline(gpu, "slerp", "a", 0, "slerp_apply", 1)?;
    run_pass(
        gpu,
        &k2,
        &[
            entry(0, &uni, EW_UNIFORM_BYTES),
            entry(1, a, n * 4),
            entry(2, b, n * 4),
            entry(8, &coef, rows * 8),
            entry(3, &out, n * 4),
        ],
        n.div_ceil(WG * EPT),
        "slerp",
    )?;
    Ok(out)
}

/// The message of an error without its category prefix.
fn strip(e: &Error) -> String {
    match e {
        Error::Shape(m) | Error::InvalidArgument(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shapes(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shapes(&[0, 3], &[1, 3]).unwrap(), vec![0, 3]);
        let e = broadcast_shapes(&[2, 3], &[4]).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[4]"), "{e}");
        assert!(broadcast_shapes(&[1, 1, 1, 1, 1], &[1]).is_err());
        assert_eq!(broadcast_strides(&[3, 1, 4]), [0, 4, 0, 1]);
    }

    #[test]
    fn contiguous_dims_merge() {
        // [2, 3, 4] + [4]: a merges to one dim of 24, b keeps a row of 4.
        let (s, a, b, nd) = collapse(
            pad4(&[2, 3, 4]),
            broadcast_strides(&[2, 3, 4]),
            broadcast_strides(&[4]),
        );
        assert_eq!((s, a, b, nd), ([1, 1, 6, 4], [0, 0, 4, 1], [0, 0, 0, 1], 2));
        let (s, _, _, nd) = collapse(
            pad4(&[5, 6]),
            broadcast_strides(&[5, 6]),
            broadcast_strides(&[5, 6]),
        );
        assert_eq!((s, nd), ([1, 1, 1, 30], 1));
        assert!(rows4_layout([1, 1, 6, 4], [0, 0, 4, 1], [0, 0, 0, 1], 2).is_some());
        assert!(rows4_layout([1, 1, 6, 6], [0, 0, 6, 1], [0, 0, 0, 1], 2).is_none());
    }
}
