//! Elementwise ops with numpy broadcasting (up to 4 dims): arithmetic, `scale`, `axpy`,
//! `clamp`, `abs`, `exp`, `log`, `sqrt`, the activations, `lerp` and `slerp` — on the GPU (one
//! generated kernel per op from `shaders/elementwise.wgsl`) or the CPU.

pub mod cpu;

/// `shaders/elementwise.wgsl`.
const SOURCE: &str = include_str!("../../shaders/elementwise.wgsl");

use std::sync::Arc;

use crate::activation::Activation;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{
    check_windows, run_pass, window_align, window_budget, Bind, Gpu, GpuBuffer, Kernel, Window,
};
use crate::runtime::{shader, trusted_pipeline};
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

mod plan;
pub use plan::*;

/// Elements per thread and workgroup width of the elementwise kernels.
const EPT: usize = 4;
const WG: usize = 64;

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
        shader::DIVMOD,
        shader::with_epilogue(SOURCE)
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

crate::kernel_params! {
    /// The kernels' uniform block (`EwParams` in shaders/elementwise.wgsl).
    struct EwParams: "EwParams" {
        n: u32,
        alpha: f32,
        beta: f32,
        d: u32,
        shape: [u32; 4],
        sa: [u32; 4],
        sb: [u32; 4],
        inv: [f32; 4],
        off: [u32; 4],
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    generated_sources()
        .into_iter()
        .map(EwParams::layout)
        .collect()
}

/// The elementwise parameters before conversion to the kernels' 32-bit fields.
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

impl EwUniform {
    fn params(&self) -> Result<EwParams> {
        let dims = |a: [usize; 4]| -> Result<[u32; 4]> {
            let mut o = [0u32; 4];
            for (o, v) in o.iter_mut().zip(a) {
                *o = u(v, "dimension or stride")?;
            }
            Ok(o)
        };
        Ok(EwParams {
            n: u(self.n, "element count")?,
            alpha: self.alpha,
            beta: self.beta,
            d: u(self.d, "row length")?,
            shape: dims(self.shape)?,
            sa: dims(self.sa)?,
            sb: dims(self.sb)?,
            inv: self.shape.map(|d| (1.0 / d.max(1) as f64) as f32),
            off: dims([self.off[0], self.off[1], self.off[2], 0])?,
        })
    }
}

/// The whole first `bytes` bytes of `buf` as a binding.
fn whole(buf: &Arc<GpuBuffer>, bytes: usize) -> Bind<'_> {
    Bind::Buffer(buf, bytes as u64)
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
    (a, a_shape): (&Arc<GpuBuffer>, &[usize]),
    (b, b_shape): (&Arc<GpuBuffer>, &[usize]),
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
            let params = EwUniform {
                n: m / 4,
                alpha,
                beta,
                d: 1,
                shape: [1; 4],
                sa: [0; 4],
                sb: [0; 4],
                off,
            }
            .params()?;
            let kernel = ew_pipeline(gpu, name, expr, act, "ew_vec4", 1)?;
            let entries = [(4, wa.of(a)), (5, wb.of(b)), (6, wo.of(&out))];
            run_pass(
                gpu,
                &kernel,
                &params,
                &entries,
                m.div_ceil(4 * WG * EPT),
                name,
            )?;
        } else if let Some((shape4, sa4, sb4)) = layout4 {
            let params = EwUniform {
                n: m / 4,
                alpha,
                beta,
                d: 1,
                shape: shape4,
                sa: sa4,
                sb: sb4,
                off,
            }
            .params()?;
            let kernel = ew_pipeline(gpu, name, expr, act, "ew_rows4", 2)?;
            let entries = [
                (1, wa.of(a)),
                (2, wb.of(b)),
                (4, wa.of(a)),
                (5, wb.of(b)),
                (6, wo.of(&out)),
            ];
            run_pass(
                gpu,
                &kernel,
                &params,
                &entries,
                m.div_ceil(4 * WG * EPT),
                name,
            )?;
        } else {
            let params = EwUniform {
                n: m,
                alpha,
                beta,
                d: 1,
                shape: ls,
                sa,
                sb,
                off,
            }
            .params()?;
            let kernel = ew_pipeline(gpu, name, expr, act, "ew_general", ndim)?;
            let entries = [(1, wa.of(a)), (2, wb.of(b)), (3, wo.of(&out))];
            run_pass(gpu, &kernel, &params, &entries, m.div_ceil(WG * EPT), name)?;
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
        if let Some(y) = self.in_f32(&[x], |w| self.unary(op, &w[0]))? {
            return Ok(y);
        }
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
            let v = crate::elementwise::cpu::unary(op, &host_values(x)?);
            return self.tensor(x.shape(), &v);
        }
        let v = crate::elementwise::cpu::unary(op, &host_values(x)?);
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
        if let Some(y) = self.in_f32(&[a, b], |w| self.binary(op, &w[0], &w[1]))? {
            return Ok(y);
        }
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
            let v = crate::elementwise::cpu::binary(
                op,
                &shape,
                (&host_values(a)?, a.shape()),
                (&host_values(b)?, b.shape()),
            );
            return self.tensor(&shape, &v);
        }
        let v = crate::elementwise::cpu::binary(
            op,
            &shape,
            (&host_values(a)?, a.shape()),
            (&host_values(b)?, b.shape()),
        );
        Tensor::from_vec(&shape, v)
    }

    /// `a + b` with broadcasting.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[6., 8.])?;
    /// let b = ctx.tensor(&[2], &[2., 4.])?;
    /// assert_eq!(ctx.add(&a, &b)?.to_vec()?, [8., 12.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// `a − b` with broadcasting.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[6., 8.])?;
    /// let b = ctx.tensor(&[2], &[2., 4.])?;
    /// assert_eq!(ctx.sub(&a, &b)?.to_vec()?, [4., 4.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn sub(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// `a · b` (elementwise) with broadcasting.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[6., 8.])?;
    /// let b = ctx.tensor(&[2], &[2., 4.])?;
    /// assert_eq!(ctx.mul(&a, &b)?.to_vec()?, [12., 32.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// `a / b` with broadcasting.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[6., 8.])?;
    /// let b = ctx.tensor(&[2], &[2., 4.])?;
    /// assert_eq!(ctx.div(&a, &b)?.to_vec()?, [3., 2.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn div(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `alpha·a`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[6., 8.])?;
    /// let b = ctx.tensor(&[2], &[2., 4.])?;
    /// assert_eq!(ctx.scale(&a, 0.5)?.to_vec()?, [3., 4.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn scale(&self, a: &Tensor, alpha: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(alpha), a)
    }

    /// `alpha·a + b` with broadcasting.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[6., 8.])?;
    /// let b = ctx.tensor(&[2], &[2., 4.])?;
    /// assert_eq!(ctx.axpy(2.0, &a, &b)?.to_vec()?, [14., 20.]); // 2a + b
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn axpy(&self, alpha: f32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Axpy(alpha), a, b)
    }

    /// `numpy.clip(a, min, max)`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[3], &[-2., 0.5, 3.])?;
    /// assert_eq!(ctx.clamp(&a, 0., 1.)?.to_vec()?, [0., 0.5, 1.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn clamp(&self, a: &Tensor, min: f32, max: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Clamp(min, max), a)
    }

    /// `|a|`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[-2., 3.])?;
    /// assert_eq!(ctx.abs(&a)?.to_vec()?, [2., 3.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn abs(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Abs, a)
    }

    /// `eᵃ`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[0., 1.])?;
    /// let e = ctx.exp(&a)?.to_vec()?;
    /// assert!((e[0] - 1.0).abs() < 1e-5);
    /// assert!((e[1] - std::f32::consts::E).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn exp(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Exp, a)
    }

    /// Natural log (NaN below 0, −∞ at 0).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[1., std::f32::consts::E])?;
    /// let l = ctx.log(&a)?.to_vec()?;
    /// assert!((l[0] - 0.0).abs() < 1e-5);
    /// assert!((l[1] - 1.0).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn log(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Log, a)
    }

    /// Square root (NaN below 0).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[4., 9.])?;
    /// assert_eq!(ctx.sqrt(&a)?.to_vec()?, [2., 3.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn sqrt(&self, a: &Tensor) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt, a)
    }

    /// An activation applied elementwise (the same functions as the fused matmul/conv
    /// epilogues).
    ///
    /// ```
    /// use gpu_linalg::Activation;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[-1., 2.])?;
    /// assert_eq!(ctx.activate(&x, Activation::Relu)?.to_vec()?, [0., 2.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn activate(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.unary(UnaryOp::Act(act), x)
    }

    /// `max(x, 0)` (NaN stays NaN).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[-1., 2.])?;
    /// assert_eq!(ctx.relu(&x)?.to_vec()?, [0., 2.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Relu)
    }

    /// GELU, erf form (PyTorch's default).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[0., 1.])?;
    /// let y = ctx.gelu(&x)?.to_vec()?;
    /// assert!((y[0] - 0.0).abs() < 1e-6);
    /// assert!((y[1] - 0.841_344_7).abs() < 1e-5); // x·Φ(x)
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Gelu)
    }

    /// GELU, tanh approximation.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[0., 1.])?;
    /// let y = ctx.gelu_tanh(&x)?.to_vec()?;
    /// assert!((y[0] - 0.0).abs() < 1e-6);
    /// assert!((y[1] - 0.841_192).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn gelu_tanh(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::GeluTanh)
    }

    /// `1 / (1 + e⁻ˣ)`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1], &[0.])?;
    /// assert!((ctx.sigmoid(&x)?.to_vec()?[0] - 0.5).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn sigmoid(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Sigmoid)
    }

    /// `tanh(x)`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2], &[0., 1.])?;
    /// let y = ctx.tanh(&x)?.to_vec()?;
    /// assert!((y[0] - 0.0).abs() < 1e-5);
    /// assert!((y[1] - 1f32.tanh()).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tanh(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(x, Activation::Tanh)
    }

    /// `torch.lerp(a, b, t)` with broadcasting: `a + t·(b − a)`, exact at both ends.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[0., 10.])?;
    /// let b = ctx.tensor(&[2], &[4., 20.])?;
    /// assert_eq!(ctx.lerp(&a, &b, 0.25)?.to_vec()?, [1., 12.5]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lerp(&self, a: &Tensor, b: &Tensor, t: f32) -> Result<Tensor> {
        self.binary(BinaryOp::Lerp(t), a, b)
    }

    /// Spherical interpolation along the last axis (latent interpolation): per row,
    /// θ = acos(⟨a, b⟩ / (‖a‖‖b‖)) and `sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b`; plain lerp
    /// (`(1−t)·a + t·b`) where a row is zero or |cos θ| > 0.9995. `a` and `b` must have the
    /// same shape; a 0-d tensor is one row of length 1. On the GPU one invocation reduces a
    /// row; on CPU-type adapters (whose invocations stop after 65,535 loop iterations) rows
    /// longer than [`crate::MAX_K_PER_PASS_CPU_ADAPTER`] are computed on the CPU and uploaded.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2], &[1., 0.])?;
    /// let b = ctx.tensor(&[2], &[0., 1.])?;
    /// let m = ctx.slerp(&a, &b, 0.5)?.to_vec()?; // halfway round the arc
    /// assert!((m[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-5);
    /// assert!((m[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn slerp(&self, a: &Tensor, b: &Tensor, t: f32) -> Result<Tensor> {
        if let Some(y) = self.in_f32(&[a, b], |w| self.slerp(&w[0], &w[1], t))? {
            return Ok(y);
        }
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
                && d > crate::runtime::LOOP_SLICE_CPU_ADAPTER
            {
                let v = crate::elementwise::cpu::slerp(&host_values(a)?, &host_values(b)?, d, t);
                return self.tensor(&shape, &v);
            }
            if gpu.info.device_type == wgpu::DeviceType::Cpu
                && d > crate::runtime::LOOP_SLICE_CPU_ADAPTER
            {
                let v = crate::elementwise::cpu::slerp(&host_values(a)?, &host_values(b)?, d, t);
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
            let v = crate::elementwise::cpu::slerp(&host_values(a)?, &host_values(b)?, d, t);
            return self.tensor(&shape, &v);
        }
        let v = crate::elementwise::cpu::slerp(&host_values(a)?, &host_values(b)?, d, t);
        Tensor::from_vec(&shape, v)
    }
}

fn slerp_gpu(
    gpu: &Arc<Gpu>,
    n: usize,
    d: usize,
    t: f32,
    a: &Arc<GpuBuffer>,
    b: &Arc<GpuBuffer>,
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
    let uniform = |count: usize| -> Result<EwParams> {
        EwUniform {
            n: count,
            alpha: t,
            beta: 0.0,
            d,
            shape: [1; 4],
            sa: [0; 4],
            sb: [0; 4],
            off: [0; 3],
        }
        .params()
    };
    let uni_rows = uniform(rows)?;
    let k1 = ew_pipeline(gpu, "slerp", "a", 0, "slerp_coef", 1)?;
    run_pass(
        gpu,
        &k1,
        &uni_rows,
        &[
            (1, whole(a, n * 4)),
            (2, whole(b, n * 4)),
            (7, whole(&coef, rows * 8)),
        ],
        rows.div_ceil(WG),
        "slerp weights",
    )?;
    let uni = uniform(n)?;
    let k2 = ew_pipeline(gpu, "slerp", "a", 0, "slerp_apply", 1)?;
    run_pass(
        gpu,
        &k2,
        &uni,
        &[
            (1, whole(a, n * 4)),
            (2, whole(b, n * 4)),
            (8, whole(&coef, rows * 8)),
            (3, whole(&out, n * 4)),
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
