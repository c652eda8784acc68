//! CPU convolutions: the fast backend (im2col + faer matmul) and the f64 reference.

use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::plan::{ConvKind, ConvOptions, ConvPlan};
use crate::activation::Activation;
use crate::activation::{activate_f32, activate_f64};
use crate::error::Result;
use crate::reference::Reference;
use crate::tensor::host_values;
use crate::tensor::Tensor;

/// Weight element (co, ci, tap) of group g.
fn weight_index(p: &ConvPlan, g: usize, co: usize, ci: usize, tap: usize) -> usize {
    g * p.w_g + co * p.w_co + ci * p.w_ci + tap
}

/// Fast CPU convolution: per image and group, gather the input into a (cig·kh·kw) × (oh·ow)
/// column matrix and multiply with the group's weights by faer; then bias and activation.
pub fn fast(p: &ConvPlan, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation) -> Vec<f32> {
    let (m, k, khw) = (p.m(), p.k(), p.kh * p.kw);
    let mut out = vec![0.0f32; p.n * p.cout * m];
    if out.is_empty() {
        return out;
    }
    let hw = p.h * p.w;
    // Each tap's input offset per output position, shared by every channel and image.
    let taps: Vec<Vec<Option<usize>>> = (0..khw)
        .map(|t| {
            (0..m)
                .map(|mm| p.tap(mm / p.ow, mm % p.ow, t / p.kw, t % p.kw))
                .collect()
        })
        .collect();
    let mut cols = vec![0.0f32; k * m];
    let mut wmat = vec![0.0f32; p.cog * k];
    for n in 0..p.n {
        for g in 0..p.groups {
            let xg = &x[(n * p.cin + g * p.cig) * hw..];
            cols.par_chunks_mut(m.max(1))
                .enumerate()
                .for_each(|(row, dst)| {
                    let (ci, t) = (row / khw, row % khw);
                    let xc = &xg[ci * hw..];
                    for (d, off) in dst.iter_mut().zip(&taps[t]) {
                        *d = off.map_or(0.0, |o| xc[o]);
                    }
                });
            for co in 0..p.cog {
                for ci in 0..p.cig {
                    for t in 0..khw {
                        wmat[co * k + ci * khw + t] = w[weight_index(p, g, co, ci, t)];
                    }
                }
            }
            let base = (n * p.cout + g * p.cog) * m;
            let dst = &mut out[base..base + p.cog * m];
            if k > 0 {
                let par = if p.cog * m * k >= 64 * 64 * 64 {
                    Par::rayon(0)
                } else {
                    Par::Seq
                };
                faer_matmul(
                    MatMut::from_row_major_slice_mut(dst, p.cog, m),
                    Accum::Replace,
                    MatRef::from_row_major_slice(&wmat, p.cog, k),
                    MatRef::from_row_major_slice(&cols, k, m),
                    1.0f32,
                    par,
                );
            }
            if bias.is_some() || act != Activation::None {
                for (co, row) in dst.chunks_mut(m).enumerate() {
                    let b = bias.map_or(0.0, |b| b[g * p.cog + co]);
                    for v in row {
                        *v = activate_f32(act, *v + b);
                    }
                }
            }
        }
    }
    out
}

/// The f64 reference convolution: direct loops, a tap in the padding contributing 0·w exactly
/// as the GPU kernels and im2col do.
pub fn reference(
    p: &ConvPlan,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Reference {
    let (m, khw, hw) = (p.m(), p.kh * p.kw, p.h * p.w);
    let total = p.n * p.cout * m;
    let mut values = Vec::with_capacity(total);
    let mut magnitudes = Vec::with_capacity(total);
    for n in 0..p.n {
        for cg in 0..p.cout {
            let (g, co) = (cg / p.cog, cg % p.cog);
            let xbase = (n * p.cin + g * p.cig) * hw;
            for mm in 0..m {
                let (mut s, mut mag) = (0.0f64, 0.0f64);
                for t in 0..khw {
                    let off = p.tap(mm / p.ow, mm % p.ow, t / p.kw, t % p.kw);
                    for ci in 0..p.cig {
                        let xv = off.map_or(0.0, |o| f64::from(x[xbase + ci * hw + o]));
                        let wv = f64::from(w[weight_index(p, g, co, ci, t)]);
                        s += xv * wv;
                        mag += (xv * wv).abs();
                    }
                }
                if let Some(b) = bias {
                    s += f64::from(b[cg]);
                    mag += f64::from(b[cg]).abs();
                }
                values.push(activate_f64(act, s));
                magnitudes.push(mag);
            }
        }
    }
    Reference {
        shape: p.out_shape.clone(),
        values,
        magnitudes,
        terms: p.k() + usize::from(bias.is_some()),
        activation: act,
    }
}

/// The reference for `ctx.conv(kind, x, w, opts)` on tensors (GPU tensors are read back).
pub fn reference_for(
    kind: ConvKind,
    x: &Tensor,
    w: &Tensor,
    opts: &ConvOptions,
) -> Result<Reference> {
    let plan = ConvPlan::new(kind, x.shape(), w.shape(), opts)?;
    let bias = opts.bias.map(host_values).transpose()?;
    Ok(reference(
        &plan,
        &host_values(x)?,
        &host_values(w)?,
        bias.as_deref(),
        opts.activation,
    ))
}
