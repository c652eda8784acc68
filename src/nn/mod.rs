//! Training: activation backward, losses with their gradients, the backward pass of the linear
//! layer, and SGD / Adam updates — all on resident tensors, on the GPU or the CPU.

pub mod cpu;
mod plan;
pub use plan::*;

/// `shaders/nn.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/nn.wgsl");

use std::sync::Arc;

use crate::activation::Activation;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::matmul::MatmulOptions;
use crate::runtime::shader;
use crate::runtime::{checked_pipeline, fold_grid, Bind, Encoder, Gpu, GpuBuffer};
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

/// How a loss combines the per-element (MSE) or per-row (cross-entropy) terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LossReduction {
    /// The mean (PyTorch's default): over all elements for MSE, over the batch for
    /// cross-entropy.
    #[default]
    Mean,
    /// The sum.
    Sum,
}

/// Targets of [`Context::cross_entropy`], as PyTorch takes them.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices, u32, shape `[batch]` (or `[]` for one unbatched row).
    Classes(&'a Tensor),
    /// Class probabilities, f32, the logits' shape.
    Probabilities(&'a Tensor),
}

/// A loss value (a 0-d tensor) and, when asked for, its gradient with respect to the
/// prediction (the prediction's shape).
#[derive(Clone, Debug)]
pub struct LossOutput {
    /// The loss, shape `[]`.
    pub loss: Tensor,
    /// d loss / d prediction.
    pub grad: Option<Tensor>,
}

/// Gradients of a linear layer `Y = act(X·W + b)`.
#[derive(Clone, Debug)]
pub struct LinearGrads {
    /// d loss / dX, X's shape.
    pub dx: Tensor,
    /// d loss / dW, `[in, out]`.
    pub dw: Tensor,
    /// d loss / db, `[out]`.
    pub db: Tensor,
}

fn pipeline(gpu: &Gpu, entry: &str, act: Activation) -> Result<Arc<crate::runtime::Kernel>> {
    let constants: Vec<(&str, f64)> = vec![("ACT", f64::from(act.shader_id()))];
    let key = format!("nn/{entry}/{constants:?}");
    checked_pipeline(
        gpu,
        &key,
        "nn.wgsl",
        || shader::with_epilogue(SOURCE),
        entry,
        &constants,
    )
}

crate::kernel_params! {
    /// The kernels' uniform block (`NnParams` in shaders/nn.wgsl).
    struct NnParams: "NnParams" {
        n: u32,
        cols: u32,
        fold: u32,
        flags: u32,
        f0: f32,
        f1: f32,
        f2: f32,
        f3: f32,
        f4: f32,
        f5: f32,
        f6: f32,
        f7: f32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![NnParams::layout(shader::with_epilogue(SOURCE))]
}

/// What an nn kernel is told: its [`NnParams`] but the grid fold, which the launch adds.
#[derive(Clone, Copy, Default)]
struct Params {
    n: u32,
    cols: u32,
    flags: u32,
    f: [f32; 8],
}

fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!("{what} = {v} exceeds the kernels' 32-bit range"))
    })
}

/// One dispatch of an nn kernel over `threads` threads (or `groups` whole workgroups), the grid
/// folded into x and y.
struct Launch<'a> {
    entry: &'static str,
    act: Activation,
    params: Params,
    bindings: Vec<(u32, &'a Arc<GpuBuffer>, u64)>,
}

impl Launch<'_> {
    fn run(&self, gpu: &Arc<Gpu>, enc: &mut Encoder, groups: usize) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        let kernel = pipeline(gpu, self.entry, self.act)?;
        let (gx, gy) = fold_grid(gpu, groups, self.entry)?;
        let p = self.params;
        let [f0, f1, f2, f3, f4, f5, f6, f7] = p.f;
        let u = enc.params(&NnParams {
            n: p.n,
            cols: p.cols,
            fold: to_u32(gx as usize * 64, "fold")?,
            flags: p.flags,
            f0,
            f1,
            f2,
            f3,
            f4,
            f5,
            f6,
            f7,
        })?;
        let mut entries = vec![(0, Bind::Params(&u))];
        for (b, buf, bytes) in &self.bindings {
            gpu.check_binding(*bytes, self.entry)?;
            entries.push((*b, Bind::Buffer(buf, *bytes)));
        }
        let bg = enc.bind(&kernel, &entries);
        enc.dispatch(&kernel, &bg, (gx, gy, 1));
        Ok(())
    }
}

fn bytes(t: &Tensor) -> u64 {
    (t.len() * 4).max(4) as u64
}

fn check_f32(op: &str, ts: &[(&str, &Tensor)]) -> Result<()> {
    for (name, t) in ts {
        if t.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "{op}: {name} (shape {:?}) is {}; expected float32",
                t.shape(),
                t.dtype().name()
            )));
        }
    }
    Ok(())
}

fn same_shape(op: &str, a: (&str, &Tensor), b: (&str, &Tensor)) -> Result<()> {
    if a.1.shape() != b.1.shape() {
        return Err(Error::Shape(format!(
            "{op}: {} has shape {:?} but {} has shape {:?}; they must match",
            a.0,
            a.1.shape(),
            b.0,
            b.1.shape()
        )));
    }
    Ok(())
}

impl Context {
    fn encode(
        &self,
        gpu: &Arc<Gpu>,
        what: &str,
        f: impl FnOnce(&mut Encoder) -> Result<()>,
    ) -> Result<()> {
        gpu.scoped(what, || {
            let mut enc = gpu.encoder("nn");
            f(&mut enc)?;
            enc.submit()
        })?
    }

    /// `dy ⊙ act'(z)`: the gradient through an activation, given its input `z`.
    ///
    /// ```
    /// use gpu_linalg::Activation;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let z = ctx.tensor(&[2], &[-1., 2.])?;
    /// let dy = ctx.tensor(&[2], &[1., 1.])?;
    /// let dz = ctx.activation_backward(&z, &dy, Activation::Relu)?; // dy ⊙ relu'(z)
    /// assert_eq!(dz.to_vec()?, [0., 1.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn activation_backward(&self, z: &Tensor, dy: &Tensor, act: Activation) -> Result<Tensor> {
        check_f32("activation_backward", &[("z", z), ("dy", dy)])?;
        same_shape("activation_backward", ("z", z), ("dy", dy))?;
        let Some(gpu) = self.gpu() else {
            let v = cpu::act_backward(&host_values(z)?, &host_values(dy)?, act);
            return Tensor::from_vec(z.shape(), v);
        };
        if act == Activation::None {
            return Ok(dy.clone());
        }
        let (zb, db) = (self.resident(z)?, self.resident(dy)?);
        let out = gpu.alloc(bytes(z), "activation gradient")?;
        self.encode(gpu, "activation_backward", |enc| {
            Launch {
                entry: "act_backward",
                act,
                params: Params {
                    n: to_u32(z.len(), "elements")?,
                    ..Default::default()
                },
                bindings: vec![(1, &zb, bytes(z)), (2, &db, bytes(z)), (4, &out, bytes(z))],
            }
            .run(gpu, enc, z.len().div_ceil(64))
        })?;
        Ok(Tensor::from_gpu(z.shape().to_vec(), DType::F32, out))
    }

    /// Sums over the rows of a `[rows, cols]` tensor (any leading dims count as rows):
    /// the bias gradient of a linear layer. Returns `[cols]`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// assert_eq!(ctx.sum_rows(&x)?.to_vec()?, [4., 6.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn sum_rows(&self, x: &Tensor) -> Result<Tensor> {
        check_f32("sum_rows", &[("input", x)])?;
        let cols = x.shape().last().copied().unwrap_or(1);
        let rows = x.len().checked_div(cols).unwrap_or(0);
        let Some(gpu) = self.gpu() else {
            return Tensor::from_vec(&[cols], cpu::col_sum(&host_values(x)?, rows, cols, 1.0));
        };
        let xb = self.resident(x)?;
        let out = gpu.alloc((cols * 4).max(4) as u64, "row sums")?;
        self.encode(gpu, "sum_rows", |enc| {
            col_sums_into(gpu, enc, &xb, (rows, cols), 1.0, &out)
        })?;
        Ok(Tensor::from_gpu(vec![cols], DType::F32, out))
    }

    /// Mean squared error between `pred` and `target` (same shape), and on request its
    /// gradient `2(pred − target)/N` (or `2(pred − target)` for [`LossReduction::Sum`]).
    /// An empty input gives NaN for the mean and 0 for the sum, as PyTorch.
    ///
    /// ```
    /// use gpu_linalg::LossReduction;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let pred = ctx.tensor(&[2], &[1., 2.])?;
    /// let target = ctx.zeros(&[2])?;
    /// let out = ctx.mse_loss(&pred, &target, LossReduction::Mean, true)?;
    /// assert_eq!(out.loss.to_vec()?, [2.5]);
    /// assert_eq!(out.grad.map(|g| g.to_vec()).transpose()?, Some(vec![1., 2.]));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn mse_loss(
        &self,
        pred: &Tensor,
        target: &Tensor,
        reduction: LossReduction,
        grad: bool,
    ) -> Result<LossOutput> {
        check_f32("mse_loss", &[("prediction", pred), ("target", target)])?;
        same_shape("mse_loss", ("prediction", pred), ("target", target))?;
        let n = pred.len();
        let scale = match reduction {
            LossReduction::Mean => 1.0 / n as f64,
            LossReduction::Sum => 1.0,
        };
        let Some(gpu) = self.gpu() else {
            let (loss, g) = cpu::mse(&host_values(pred)?, &host_values(target)?, scale, grad);
            return Ok(LossOutput {
                loss: Tensor::from_vec(&[], vec![loss])?,
                grad: g.map(|g| Tensor::from_vec(pred.shape(), g)).transpose()?,
            });
        };
        let (pb, tb) = (self.resident(pred)?, self.resident(target)?);
        let groups = n.div_ceil(64 * 8);
        let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
        let slots = if groups == 0 {
            0
        } else {
            groups.min(limit) * groups.div_ceil(groups.min(limit))
        };
        let partial = gpu.alloc((slots * 4).max(4) as u64, "loss partial sums")?;
        let g = gpu.alloc(bytes(pred), "loss gradient")?;
        let loss = gpu.alloc(4, "loss")?;
        self.encode(gpu, "mse_loss", |enc| {
            Launch {
                entry: "mse_partial",
                act: Activation::None,
                params: Params {
                    n: to_u32(n, "elements")?,
                    flags: u32::from(grad),
                    f: [(2.0 * scale) as f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                    ..Default::default()
                },
                bindings: vec![
                    (1, &pb, bytes(pred)),
                    (2, &tb, bytes(pred)),
                    (4, &partial, (slots * 4).max(4) as u64),
                    (5, &g, bytes(pred)),
                ],
            }
            .run(gpu, enc, groups)?;
            sum_into(gpu, enc, &partial, slots, scale, &loss)
        })?;
        Ok(LossOutput {
            loss: Tensor::from_gpu(vec![], DType::F32, loss),
            grad: grad.then(|| Tensor::from_gpu(pred.shape().to_vec(), DType::F32, g)),
        })
    }

    /// Cross-entropy of `logits` (`[batch, classes]`, or `[classes]` for one row) against
    /// class indices or probabilities, computed stably (log-sum-exp, max-shifted), and on
    /// request the gradient `(softmax · Σt − t)/batch` (without `/batch` for the sum). A class
    /// index out of range is an error for host targets and gives NaN for that row on the GPU.
    ///
    /// ```
    /// use gpu_linalg::{LossReduction, Targets};
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let logits = ctx.tensor(&[1, 2], &[0., 0.])?;
    /// let class = ctx.tensor_u32(&[1], &[0])?;
    /// let out = ctx.cross_entropy(&logits, Targets::Classes(&class), LossReduction::Mean, false)?;
    /// assert!((out.loss.to_vec()?[0] - std::f32::consts::LN_2).abs() < 1e-5);
    /// assert!(out.grad.is_none());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: Targets,
        reduction: LossReduction,
        grad: bool,
    ) -> Result<LossOutput> {
        check_f32("cross_entropy", &[("logits", logits)])?;
        let (rows, cols) = match logits.shape() {
            [c] => (1, *c),
            [b, c] => (*b, *c),
            s => {
                return Err(Error::Shape(format!(
                    "cross_entropy: logits have shape {s:?}; expected [batch, classes] or [classes]"
                )))
            }
        };
        let batch_shape: &[usize] = if logits.ndim() == 1 {
            &[]
        } else {
            &logits.shape()[..1]
        };
        match targets {
            Targets::Classes(t) => {
                if t.dtype() != DType::U32 || t.shape() != batch_shape {
                    return Err(Error::Shape(format!(
                        "cross_entropy: class targets must be uint32 of shape {batch_shape:?}; got {} of shape {:?}",
                        t.dtype().name(),
                        t.shape()
                    )));
                }
                if let Some(bad) = t
                    .host_u32()
                    .and_then(|v| v.iter().find(|&&c| c as usize >= cols).copied())
                {
                    return Err(Error::InvalidArgument(format!(
                        "cross_entropy: class index {bad} out of range for {cols} classes"
                    )));
                }
            }
            Targets::Probabilities(t) => {
                check_f32("cross_entropy", &[("probability targets", t)])?;
                same_shape(
                    "cross_entropy",
                    ("logits", logits),
                    ("probability targets", t),
                )?;
            }
        }
        let scale = match reduction {
            LossReduction::Mean => 1.0 / rows as f64,
            LossReduction::Sum => 1.0,
        };
        let Some(gpu) = self.gpu() else {
            let x = host_values(logits)?;
            let (loss, g) = match targets {
                Targets::Classes(t) => cpu::cross_entropy(
                    &x,
                    rows,
                    cols,
                    cpu::CeTargets::Classes(&t.to_vec_u32()?),
                    scale,
                    grad,
                ),
                Targets::Probabilities(t) => cpu::cross_entropy(
                    &x,
                    rows,
                    cols,
                    cpu::CeTargets::Probabilities(&host_values(t)?),
                    scale,
                    grad,
                ),
            };
            return Ok(LossOutput {
                loss: Tensor::from_vec(&[], vec![loss])?,
                grad: g.map(|g| Tensor::from_vec(logits.shape(), g)).transpose()?,
            });
        };
        let xb = self.resident(logits)?;
        let (tf, tu, probs) = match targets {
            Targets::Classes(t) => (gpu.alloc(4, "placeholder")?, self.resident(t)?, false),
            Targets::Probabilities(t) => (self.resident(t)?, gpu.alloc(4, "placeholder")?, true),
        };
        let row_loss = gpu.alloc((rows * 4).max(4) as u64, "row losses")?;
        let g = gpu.alloc(bytes(logits), "loss gradient")?;
        let loss = gpu.alloc(4, "loss")?;
        let tf_bytes = if probs { bytes(logits) } else { 4 };
        let tu_bytes = if probs { 4 } else { (rows * 4).max(4) as u64 };
        self.encode(gpu, "cross_entropy", |enc| {
            Launch {
                entry: "cross_entropy_rows",
                act: Activation::None,
                params: Params {
                    n: to_u32(rows, "rows")?,
                    cols: to_u32(cols, "classes")?,
                    flags: u32::from(grad) | if probs { 2 } else { 0 },
                    f: [scale as f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                },
                bindings: vec![
                    (1, &xb, bytes(logits)),
                    (2, &tf, tf_bytes),
                    (4, &row_loss, (rows * 4).max(4) as u64),
                    (5, &g, bytes(logits)),
                    (9, &tu, tu_bytes),
                ],
            }
            .run(gpu, enc, if cols == 0 { 0 } else { rows })?;
            sum_into(
                gpu,
                enc,
                &row_loss,
                if cols == 0 { 0 } else { rows },
                scale,
                &loss,
            )
        })?;
        Ok(LossOutput {
            loss: Tensor::from_gpu(vec![], DType::F32, loss),
            grad: grad.then(|| Tensor::from_gpu(logits.shape().to_vec(), DType::F32, g)),
        })
    }

    /// Forward pass of a linear layer for training: `(Y, Z)` with `Z = X·W + b` and
    /// `Y = act(Z)`; keep `Z` for [`Context::linear_backward`].
    ///
    /// ```
    /// use gpu_linalg::Activation;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1, 2], &[1., -2.])?;
    /// let w = ctx.tensor(&[2, 1], &[1., 1.])?;
    /// let (y, z) = ctx.linear_train(&x, &w, None, Activation::Relu)?;
    /// assert_eq!((y.to_vec()?, z.to_vec()?), (vec![0.], vec![-1.]));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn linear_train(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        act: Activation,
    ) -> Result<(Tensor, Tensor)> {
        let z = self.linear(x, w, bias, Activation::None)?;
        let y = self.activate(&z, act)?;
        Ok((y, z))
    }

    /// Backward pass of `Y = act(X·W + b)` (W is `[in, out]`): from `dY` and the forward's
    /// `Z = X·W + b`, the gradients `dX = dZ·Wᵀ`, `dW = Xᵀ·dZ`, `db = Σ_rows dZ` with
    /// `dZ = dY ⊙ act'(Z)`. X is `[batch, in]` (or `[in]`).
    ///
    /// ```
    /// use gpu_linalg::Activation;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1, 2], &[1., 2.])?;
    /// let w = ctx.tensor(&[2, 1], &[1., 1.])?;
    /// let (_y, z) = ctx.linear_train(&x, &w, None, Activation::None)?;
    /// let dy = ctx.tensor(&[1, 1], &[1.])?;
    /// let g = ctx.linear_backward(&x, &w, &z, &dy, Activation::None)?;
    /// assert_eq!(g.dx.to_vec()?, [1., 1.]); // dY·Wᵀ
    /// assert_eq!(g.dw.to_vec()?, [1., 2.]); // Xᵀ·dY
    /// assert_eq!(g.db.to_vec()?, [1.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn linear_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        z: &Tensor,
        dy: &Tensor,
        act: Activation,
    ) -> Result<LinearGrads> {
        if w.ndim() != 2 {
            return Err(Error::Shape(format!(
                "linear_backward: W has shape {:?}; expected [in, out]",
                w.shape()
            )));
        }
        let x2 = if x.ndim() == 1 {
            x.reshape(&[1, x.len()])?
        } else {
            x.clone()
        };
        let expect = [x2.shape()[0], w.shape()[1]];
        if x2.ndim() != 2
            || x2.shape()[1] != w.shape()[0]
            || z.len() != expect[0] * expect[1]
            || dy.len() != z.len()
        {
            return Err(Error::Shape(format!(
                "linear_backward: X {:?}, W {:?}, Z {:?} and dY {:?} do not fit Y = act(X·W + b) (Z and dY must be {expect:?})",
                x.shape(),
                w.shape(),
                z.shape(),
                dy.shape()
            )));
        }
        let dz = self.activation_backward(&z.reshape(&expect)?, &dy.reshape(&expect)?, act)?;
        let dx = self.matmul_with(
            &dz,
            w,
            &MatmulOptions {
                transpose_b: true,
                ..Default::default()
            },
        )?;
        let dw = self.matmul_with(
            &x2,
            &dz,
            &MatmulOptions {
                transpose_a: true,
                ..Default::default()
            },
        )?;
        let db = self.sum_rows(&dz)?;
        Ok(LinearGrads {
            dx: dx.reshape(x.shape())?,
            dw,
            db,
        })
    }
}

/// Rows one `col_sum` pass sums per thread: lavapipe (llvmpipe) ends every invocation after
/// 65,535 loop iterations in all, silently, so longer columns take several passes.
const COL_SUM_ROWS: usize = 16_384;

/// Encodes `out[j] = scale · Σ_{r<rows} values[r·cols + j]` (Kahan-compensated per pass, one
/// thread per column, passes of [`COL_SUM_ROWS`] rows).
fn col_sums_into(
    gpu: &Arc<Gpu>,
    enc: &mut Encoder,
    values: &Arc<GpuBuffer>,
    (rows, cols): (usize, usize),
    scale: f64,
    out: &Arc<GpuBuffer>,
) -> Result<()> {
    let in_bytes = (rows * cols * 4).max(4) as u64;
    let out_bytes = (cols * 4).max(4) as u64;
    let mut r0 = 0;
    loop {
        let r1 = (r0 + COL_SUM_ROWS).min(rows);
        Launch {
            entry: "col_sum",
            act: Activation::None,
            params: Params {
                n: to_u32(r1, "rows")?,
                cols: to_u32(cols, "columns")?,
                flags: to_u32(r0, "rows")?,
                f: [scale as f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            },
            bindings: vec![(1, values, in_bytes), (4, out, out_bytes)],
        }
        .run(gpu, enc, cols.div_ceil(64))?;
        if r1 >= rows {
            return Ok(());
        }
        r0 = r1;
    }
}

/// Encodes `out[0] = scale · Σ_{i<n} values[i]`.
fn sum_into(
    gpu: &Arc<Gpu>,
    enc: &mut Encoder,
    values: &Arc<GpuBuffer>,
    n: usize,
    scale: f64,
    out: &Arc<GpuBuffer>,
) -> Result<()> {
    col_sums_into(gpu, enc, values, (n, 1), scale, out)
}

/// A gradient-descent optimizer over a fixed list of parameters; its state (velocities, Adam
/// moments) stays resident beside them.
///
/// ```
/// use gpu_linalg::{Backend, Context, Optimizer};
/// let ctx = Context::with_backend(Backend::Cpu)?;
/// let mut p = ctx.tensor(&[2], &[1.0, -1.0])?;
/// let g = ctx.tensor(&[2], &[0.5, 0.5])?;
/// let mut opt = Optimizer::sgd(0.1, 0.0);
/// opt.step(&ctx, &mut [&mut p], &[&g])?;
/// assert_eq!(p.to_vec()?, vec![0.95, -1.05]);
/// # Ok::<(), gpu_linalg::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    state: Vec<Vec<Tensor>>,
    steps: u64,
}

impl Optimizer {
    /// SGD with momentum.
    pub fn sgd(lr: f32, momentum: f32) -> Optimizer {
        Optimizer::new(OptimizerKind::Sgd {
            lr,
            momentum,
            weight_decay: 0.0,
        })
    }

    /// Adam with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8).
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::new(OptimizerKind::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
    }

    /// Any rule.
    pub fn new(kind: OptimizerKind) -> Optimizer {
        Optimizer {
            kind,
            state: Vec::new(),
            steps: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every parameter from its gradient (same shapes, same order every call).
    /// Each parameter is replaced by its updated tensor (a new buffer; the old one returns to
    /// the pool).
    pub fn step(
        &mut self,
        ctx: &Context,
        params: &mut [&mut Tensor],
        grads: &[&Tensor],
    ) -> Result<()> {
        if params.len() != grads.len() {
            return Err(Error::InvalidArgument(format!(
                "optimizer step: {} parameters but {} gradients",
                params.len(),
                grads.len()
            )));
        }
        let slots = match self.kind {
            OptimizerKind::Sgd { .. } => 1,
            OptimizerKind::Adam { .. } => 2,
        };
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            check_f32("optimizer step", &[("parameter", p), ("gradient", g)])?;
            same_shape("optimizer step", ("parameter", p), ("gradient", g))?;
            if let Some(st) = self.state.get(i) {
                if st[0].shape() != p.shape() {
                    return Err(Error::Shape(format!(
                        "optimizer step: parameter {i} has shape {:?} but its state was made for {:?}",
                        p.shape(),
                        st[0].shape()
                    )));
                }
            }
        }
        if self.state.len() != params.len() {
            if !self.state.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "optimizer step: {} parameters, but this optimizer was stepped with {}",
                    params.len(),
                    self.state.len()
                )));
            }
            for p in params.iter() {
                let zeros = (0..slots)
                    .map(|_| ctx.zeros(p.shape()))
                    .collect::<Result<Vec<_>>>()?;
                self.state.push(zeros);
            }
        }
        self.steps += 1;
        let t = self.steps as i32;
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let st = &mut self.state[i];
            let (new_p, new_state) = update(ctx, self.kind, t, p, g, st)?;
            **p = new_p;
            *st = new_state;
        }
        Ok(())
    }
}

fn update(
    ctx: &Context,
    kind: OptimizerKind,
    t: i32,
    p: &Tensor,
    g: &Tensor,
    st: &[Tensor],
) -> Result<(Tensor, Vec<Tensor>)> {
    let shape = p.shape().to_vec();
    let Some(gpu) = ctx.gpu() else {
        let (pv, gv) = (host_values(p)?, host_values(g)?);
        let states: Vec<Vec<f32>> = st
            .iter()
            .map(|s| host_values(s).map(|v| v.into_owned()))
            .collect::<Result<_>>()?;
        let (np, ns) = cpu::optimizer_step(kind, t, &pv, &gv, &states);
        let ns = ns
            .into_iter()
            .map(|v| Tensor::from_vec(&shape, v))
            .collect::<Result<Vec<_>>>()?;
        return Ok((Tensor::from_vec(&shape, np)?, ns));
    };
    let n = p.len();
    let nb = bytes(p);
    let (pb, gb) = (ctx.resident(p)?, ctx.resident(g)?);
    let sb: Vec<Arc<GpuBuffer>> = st.iter().map(|s| ctx.resident(s)).collect::<Result<_>>()?;
    let outs: Vec<Arc<GpuBuffer>> = (0..1 + st.len())
        .map(|_| gpu.alloc(nb, "optimizer update"))
        .collect::<Result<_>>()?;
    let (entry, f) = match kind {
        OptimizerKind::Sgd {
            lr,
            momentum,
            weight_decay,
        } => (
            "sgd_step",
            [lr, momentum, weight_decay, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        OptimizerKind::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => (
            "adam_step",
            [
                lr,
                beta1,
                beta2,
                eps,
                1.0 - beta1.powi(t),
                1.0 - beta2.powi(t),
                weight_decay,
                0.0,
            ],
        ),
    };
    let mut bindings = vec![
        (1, &pb, nb),
        (2, &gb, nb),
        (7, &sb[0], nb),
        (4, &outs[0], nb),
        (5, &outs[1], nb),
    ];
    if let (Some(v), Some(o)) = (sb.get(1), outs.get(2)) {
        bindings.push((8, v, nb));
        bindings.push((6, o, nb));
    }
    ctx.encode(gpu, entry, |enc| {
        Launch {
            entry,
            act: Activation::None,
            params: Params {
                n: to_u32(n, "elements")?,
                f,
                ..Default::default()
            },
            bindings,
        }
        .run(gpu, enc, n.div_ceil(64))
    })?;
    let mut it = outs
        .into_iter()
        .map(|b| Tensor::from_gpu(shape.clone(), DType::F32, b));
    let new_p = it
        .next()
        .ok_or_else(|| Error::Validation("optimizer produced no output".into()))?;
    Ok((new_p, it.collect()))
}
