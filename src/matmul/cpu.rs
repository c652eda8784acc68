//! CPU matmul: the fast backend (faer, multi-threaded) and the f64 reference with its error
//! bound.

use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, MatMut, MatRef, Par};

use super::plan::{MatmulOptions, MatmulPlan};
use crate::activation::Activation;
use crate::activation::{activate_f32, activate_f64};
use crate::error::Result;
use crate::reference::Reference;
use crate::tensor::host_values;
use crate::tensor::Tensor;

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
            *v = activate_f32(act, *v + bias.map_or(0.0, |b| b[j]));
        }
    }
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
