//! CPU matmul: the fast backend (faer, multi-threaded) and the f64 reference with its error
//! bound.

use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::error::{Error, Result};
use crate::ops::matmul::{host_values, MatmulOptions, MatmulPlan};
use crate::ops::Activation;
use crate::tensor::Tensor;

/// Unit roundoff of f32, 2⁻²⁴.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// γ_k = k·u / (1 − k·u) with u = 2⁻²⁴: the classical bound on the relative error of a
/// length-k dot product in f32, whatever the summation order.
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * F32_UNIT_ROUNDOFF;
    if ku >= 1.0 {
        f64::INFINITY
    } else {
        ku / (1.0 - ku)
    }
}

/// f64 activation, the reference for the shaders' f32 versions.
pub fn activate_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::None => x,
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + u.tanh())
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
    }
}

/// The matrix of batch `z` of op(A) (`m × k`) as a faer view.
fn view<'a>(
    data: &'a [f32],
    base: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> MatRef<'a, f32> {
    let len = rows * cols;
    let s = &data[base..base + len];
    if cs == 1 || rows <= 1 {
        // Row-major rows × cols (rs == cols).
        let _ = rs;
        MatRef::from_row_major_slice(s, rows, cols)
    } else {
        // Stored transposed: cols × rows row-major.
        MatRef::from_row_major_slice(s, cols, rows).transpose()
    }
}

/// Fast multi-threaded matmul (faer) with the bias + activation epilogue, for a plan whose
/// operands are contiguous row-major arrays.
pub fn fast(
    plan: &MatmulPlan,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let (m, k, n) = (plan.m, plan.k, plan.n);
    let batches = plan.batches();
    let mut out = vec![0.0f32; batches * m * n];
    if m * n == 0 {
        return out;
    }
    let one = |z: usize, dst: &mut [f32], par: Par| {
        if k > 0 {
            let av = view(a, plan.a_base(z), m, k, plan.a_rs, plan.a_cs);
            let bv = view(b, plan.b_base(z), k, n, plan.b_rs, plan.b_cs);
            let dv = MatMut::from_row_major_slice_mut(dst, m, n);
            faer_matmul(dv, Accum::Replace, av, bv, 1.0f32, par);
        }
        epilogue(dst, n, bias, act);
    };
    let small = m * n * k.max(1) < 64 * 64 * 64;
    if batches > 1 && small {
        use rayon::prelude::*;
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(z, dst)| one(z, dst, Par::Seq));
    } else {
        let par = if small { Par::Seq } else { Par::rayon(0) };
        for (z, dst) in out.chunks_mut(m * n).enumerate() {
            one(z, dst, par);
        }
    }
    out
}

/// Applies `act(x + bias[col])` to each row of `dst` (rows of length `n`).
fn epilogue(dst: &mut [f32], n: usize, bias: Option<&[f32]>, act: Activation) {
    if bias.is_none() && act == Activation::None {
        return;
    }
    for row in dst.chunks_mut(n) {
        for (j, v) in row.iter_mut().enumerate() {
            let x = *v + bias.map_or(0.0, |b| b[j]);
            *v = match act {
                Activation::None => x,
                Activation::Relu => {
                    if x < 0.0 {
                        0.0
                    } else {
                        x
                    }
                }
                Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                Activation::Tanh => x.tanh(),
                _ => activate_f64(act, f64::from(x)) as f32,
            };
        }
    }
}

/// The exact (f64) result of a matmul on f32 inputs, with what the error bound needs.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Result shape.
    pub shape: Vec<usize>,
    /// f64 values, after bias and activation.
    pub values: Vec<f64>,
    /// Σ|a||b| (+ |bias|) per element, before the activation.
    pub magnitudes: Vec<f64>,
    /// Terms per element: k (+1 with a bias).
    pub terms: usize,
    /// The activation applied.
    pub activation: Activation,
}

/// Plain f64-accumulating matmul: the reference every GPU and fast-CPU result is checked
/// against.
pub fn reference(
    plan: &MatmulPlan,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Reference {
    let (m, k, n) = (plan.m, plan.k, plan.n);
    let total = plan.batches() * m * n;
    let mut values = Vec::with_capacity(total);
    let mut magnitudes = Vec::with_capacity(total);
    for z in 0..plan.batches() {
        let (ab, bb) = (plan.a_base(z), plan.b_base(z));
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut g) = (0.0f64, 0.0f64);
                for kk in 0..k {
                    let x = f64::from(a[ab + i * plan.a_rs + kk * plan.a_cs]);
                    let y = f64::from(b[bb + kk * plan.b_rs + j * plan.b_cs]);
                    s += x * y;
                    g += (x * y).abs();
                }
                if let Some(bias) = bias {
                    s += f64::from(bias[j]);
                    g += f64::from(bias[j]).abs();
                }
                values.push(activate_f64(act, s));
                magnitudes.push(g);
            }
        }
    }
    Reference {
        shape: plan.out_shape.clone(),
        values,
        magnitudes,
        terms: k + usize::from(bias.is_some()),
        activation: act,
    }
}

/// The reference for `matmul_with(a, b, opts)` on tensors (GPU tensors are read back).
pub fn reference_for(a: &Tensor, b: &Tensor, opts: &MatmulOptions) -> Result<Reference> {
    let plan = MatmulPlan::new(a.shape(), b.shape(), opts.transpose_a, opts.transpose_b)?;
    plan.check_bias(opts.bias)?;
    let bias = opts.bias.map(host_values).transpose()?;
    Ok(reference(
        &plan,
        &host_values(a)?,
        &host_values(b)?,
        bias.as_deref(),
        opts.activation,
    ))
}

impl Reference {
    /// The largest error DESIGN.md allows at element `i`:
    /// L·γ_terms·magnitude (+ a few ulp and 1e-6 after a transcendental activation).
    pub fn bound(&self, i: usize) -> f64 {
        let lin = self.activation.lipschitz() * gamma(self.terms) * self.magnitudes[i]
            + self.terms as f64 * f64::from(f32::MIN_POSITIVE);
        let u = F32_UNIT_ROUNDOFF;
        match self.activation {
            Activation::None | Activation::Relu => lin + u * self.values[i].abs(),
            _ => lin + 4.0 * u * self.values[i].abs() + 1e-6,
        }
    }

    /// Checks `got` element by element: NaN where the reference is NaN, equal infinities,
    /// and |got − exact| within [`Reference::bound`] elsewhere. The error names the worst
    /// element.
    pub fn check(&self, got: &[f32]) -> Result<()> {
        if got.len() != self.values.len() {
            return Err(Error::Verification(format!(
                "result has {} elements, reference {}",
                got.len(),
                self.values.len()
            )));
        }
        let mut worst: Option<(usize, f64)> = None;
        for (i, (&g, &e)) in got.iter().zip(&self.values).enumerate() {
            let g = f64::from(g);
            let bound = self.bound(i);
            let bad = if e.is_nan() || g.is_nan() {
                e.is_nan() != g.is_nan()
            } else if e.is_infinite() || g.is_infinite() {
                // f32 may overflow where f64 did not.
                !(e == g || (g.is_infinite() && e.abs() + bound >= f64::from(f32::MAX)))
            } else {
                (g - e).abs() > bound
            };
            if bad {
                let ratio = if bound > 0.0 {
                    (g - e).abs() / bound
                } else {
                    f64::INFINITY
                };
                if worst.is_none_or(|(_, r)| ratio > r || ratio.is_nan()) {
                    worst = Some((i, ratio));
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((i, ratio)) => Err(Error::Verification(format!(
                "element {i} (flat index, result shape {:?}) is {} but the f64 reference is {} \
                 (allowed error {:.3e}, {ratio:.1}× over)",
                self.shape,
                got[i],
                self.values[i],
                self.bound(i)
            ))),
        }
    }
}
