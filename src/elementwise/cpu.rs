//! CPU elementwise ops: the fast backend (f32, rayon over large arrays) and the f64
//! references the tests check both backends against.

use rayon::prelude::*;

use super::plan::{broadcast_strides, pad4, BinaryOp, UnaryOp};
use crate::activation::{activate_f32, activate_f64};

/// Below this many elements the CPU path stays on one thread.
const PAR_MIN: usize = 1 << 15;
/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

fn clip_f32(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() || lo.is_nan() || hi.is_nan() {
        return f32::NAN;
    }
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

/// One element of a unary op in f32 (the fast backend).
pub fn unary_f32(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Scale(s) => s * x,
        UnaryOp::Clamp(lo, hi) => clip_f32(x, lo, hi),
        UnaryOp::Act(a) => activate_f32(a, x),
    }
}

/// One element of a unary op in f64 (the reference).
pub fn unary_f64(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Scale(s) => f64::from(s) * x,
        UnaryOp::Clamp(lo, hi) => {
            let (lo, hi) = (f64::from(lo), f64::from(hi));
            if x.is_nan() || lo.is_nan() || hi.is_nan() {
                f64::NAN
            } else {
                x.max(lo).min(hi)
            }
        }
        UnaryOp::Act(a) => activate_f64(a, x),
    }
}

/// One element of a binary op in f32.
pub fn binary_f32(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Axpy(s) => s * a + b,
        BinaryOp::Lerp(t) => {
            if t.abs() < 0.5 {
                a + t * (b - a)
            } else {
                b - (b - a) * (1.0 - t)
            }
        }
    }
}

/// One element of a binary op in f64.
pub fn binary_f64(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Axpy(s) => f64::from(s) * a + b,
        BinaryOp::Lerp(t) => {
            // torch.lerp's two-sided form (it decides which infinities give NaN).
            let t = f64::from(t);
            if t.abs() < 0.5 {
                a + t * (b - a)
            } else {
                b - (b - a) * (1.0 - t)
            }
        }
    }
}

/// Maps `f` over `x` (in parallel for large arrays).
fn map<T: Copy + Send + Sync>(x: &[T], f: impl Fn(T) -> f32 + Sync) -> Vec<f32> {
    if x.len() < PAR_MIN {
        return x.iter().map(|&v| f(v)).collect();
    }
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = f(v);
            }
        });
    out
}

/// A unary op over a whole array (fast backend).
pub fn unary(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    map(x, |v| unary_f32(op, v))
}

/// Visits the broadcast offsets (into a and b) of output elements `start..start + len`.
fn offsets(
    out_shape: &[usize],
    sa: &[usize; 4],
    sb: &[usize; 4],
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let sh = pad4(out_shape);
    let mut c = [0usize; 4];
    let mut r = start;
    for k in (0..4).rev() {
        c[k] = r % sh[k];
        r /= sh[k];
    }
    let mut ia: usize = (0..4).map(|k| c[k] * sa[k]).sum();
    let mut ib: usize = (0..4).map(|k| c[k] * sb[k]).sum();
    for i in 0..len {
        f(i, ia, ib);
        // Advance the coordinate like an odometer.
        let mut k = 3;
        loop {
            c[k] += 1;
            ia += sa[k];
            ib += sb[k];
            if c[k] < sh[k] || k == 0 {
                break;
            }
            ia -= sa[k] * sh[k];
            ib -= sb[k] * sh[k];
            c[k] = 0;
            k -= 1;
        }
    }
}

/// Evaluates `f(a[.], b[.])` over `out_shape` with numpy broadcasting.
fn broadcast_map<R: Copy + Default + Send>(
    out_shape: &[usize],
    (a, a_shape): (&[f32], &[usize]),
    (b, b_shape): (&[f32], &[usize]),
    f: impl Fn(f32, f32) -> R + Sync,
) -> Vec<R> {
    let n: usize = out_shape.iter().product();
    let mut out = vec![R::default(); n];
    if n == 0 {
        return out;
    }
    if a.len() == n && b.len() == n {
        let body = |(o, (x, y)): (&mut [R], (&[f32], &[f32]))| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        };
        if n < PAR_MIN {
            body((&mut out, (a, b)));
        } else {
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(body);
        }
        return out;
    }
    let (sa, sb) = (broadcast_strides(a_shape), broadcast_strides(b_shape));
    let chunk = |ci: usize, o: &mut [R]| {
        offsets(out_shape, &sa, &sb, ci * CHUNK, o.len(), |i, ia, ib| {
            o[i] = f(a[ia], b[ib]);
        });
    };
    if n < PAR_MIN {
        for (ci, o) in out.chunks_mut(CHUNK).enumerate() {
            chunk(ci, o);
        }
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(ci, o)| chunk(ci, o));
    }
    out
}

/// A binary op with broadcasting (fast backend). `out_shape` is the broadcast shape.
pub fn binary(
    op: BinaryOp,
    out_shape: &[usize],
    a: (&[f32], &[usize]),
    b: (&[f32], &[usize]),
) -> Vec<f32> {
    broadcast_map(out_shape, a, b, |x, y| binary_f32(op, x, y))
}

/// The f64 reference of a binary op with broadcasting, and per element |a| + |b| (what the
/// error bound scales with).
pub fn binary_reference(
    op: BinaryOp,
    out_shape: &[usize],
    a: (&[f32], &[usize]),
    b: (&[f32], &[usize]),
) -> (Vec<f64>, Vec<f64>) {
    let v = broadcast_map(out_shape, a, b, |x, y| {
        binary_f64(op, f64::from(x), f64::from(y))
    });
    let m = broadcast_map(out_shape, a, b, |x, y| {
        let (x, y) = (f64::from(x), f64::from(y));
        match op {
            BinaryOp::Axpy(s) => (f64::from(s) * x).abs() + y.abs(),
            BinaryOp::Lerp(t) => (x.abs() + y.abs()) * (1.0 + f64::from(t).abs()),
            _ => 0.0,
        }
    });
    (v, m)
}

/// Slerp weights of one row (computed in f64): lerp weights when a row is zero or
/// |cos θ| > 0.9995.
pub fn slerp_weights(a: &[f32], b: &[f32], t: f64) -> (f64, f64) {
    let (mut aa, mut bb, mut ab) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        aa += x * x;
        bb += y * y;
        ab += x * y;
    }
    let nn = aa.sqrt() * bb.sqrt();
    if nn > 0.0 && nn.is_finite() {
        let c = ab / nn;
        if c.abs() <= 0.9995 {
            let th = c.clamp(-1.0, 1.0).acos();
            let s = th.sin();
            return (((1.0 - t) * th).sin() / s, (t * th).sin() / s);
        }
    }
    (1.0 - t, t)
}

/// Slerp along rows of length `d` (fast backend; the weights in f64).
pub fn slerp(a: &[f32], b: &[f32], d: usize, t: f32) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    if a.is_empty() || d == 0 {
        return out;
    }
    let rows_per_task = (CHUNK / d).max(1);
    out.par_chunks_mut(rows_per_task * d)
        .enumerate()
        .for_each(|(ci, o)| {
            let base = ci * rows_per_task * d;
            for (r, orow) in o.chunks_mut(d).enumerate() {
                let off = base + r * d;
                let (ar, br) = (&a[off..off + d], &b[off..off + d]);
                let (wa, wb) = slerp_weights(ar, br, f64::from(t));
                let (wa, wb) = (wa as f32, wb as f32);
                for ((o, &x), &y) in orow.iter_mut().zip(ar).zip(br) {
                    *o = wa * x + wb * y;
                }
            }
        });
    out
}

/// The f64 reference of slerp.
pub fn slerp_reference(a: &[f32], b: &[f32], d: usize, t: f32) -> Vec<f64> {
    let mut out = vec![0.0f64; a.len()];
    if d == 0 {
        return out;
    }
    for (r, orow) in out.chunks_mut(d).enumerate() {
        let off = r * d;
        let (ar, br) = (&a[off..off + d], &b[off..off + d]);
        let (wa, wb) = slerp_weights(ar, br, f64::from(t));
        for ((o, &x), &y) in orow.iter_mut().zip(ar).zip(br) {
            *o = wa * f64::from(x) + wb * f64::from(y);
        }
    }
    out
}

/// An f64 reference with a per-element error bound (what `--verify` and the tests check).
#[derive(Clone, Debug)]
pub struct BoundedReference {
    /// Result shape.
    pub shape: Vec<usize>,
    /// Exact values (f64 on the f32 inputs).
    pub values: Vec<f64>,
    /// Largest error allowed per element.
    pub bounds: Vec<f64>,
}

impl BoundedReference {
    /// Checks `got`: NaN where the reference is NaN, equal infinities (or f32 overflow), and
    /// |got − exact| ≤ bound elsewhere; the error names the first bad element.
    pub fn check(&self, got: &[f32]) -> crate::error::Result<()> {
        crate::reference::check_against(&self.shape, got, &self.values, |i| self.bounds[i])
    }

    /// [`Self::check`] for a result stored in `dtype` (plus half an ulp of that type).
    pub fn check_in(&self, got: &[f32], dtype: crate::DType) -> crate::error::Result<()> {
        crate::reference::check_against_in(
            &self.shape,
            got,
            &self.values,
            |i| self.bounds[i],
            dtype,
        )
    }
}

const UNIT: f64 = crate::reference::F32_UNIT_ROUNDOFF;

/// Error bound of a unary op at exact value `e`: exact for abs / clamp, one rounding for
/// scale / relu, a few ulp + 1e-6 for the transcendentals (DESIGN.md).
pub fn unary_bound(op: UnaryOp, e: f64) -> f64 {
    let tiny = f64::from(f32::MIN_POSITIVE);
    match op {
        UnaryOp::Abs | UnaryOp::Clamp(..) => 0.0,
        UnaryOp::Scale(_)
        | UnaryOp::Act(crate::activation::Activation::Relu | crate::activation::Activation::None) => {
            UNIT * e.abs() + tiny
        }
        _ => 4.0 * UNIT * e.abs() + 1e-6,
    }
}

/// Error bound of a binary op at exact value `e` with magnitude `m` (see [`binary_reference`]).
pub fn binary_bound(op: BinaryOp, e: f64, m: f64) -> f64 {
    let tiny = f64::from(f32::MIN_POSITIVE);
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => UNIT * e.abs() + tiny,
        BinaryOp::Div => 3.0 * UNIT * e.abs() + tiny,
        BinaryOp::Axpy(_) => 2.0 * UNIT * m + UNIT * e.abs() + tiny,
        BinaryOp::Lerp(_) => 4.0 * UNIT * m + tiny,
    }
}

/// Bounded f64 reference of a unary op.
pub fn unary_checked(op: UnaryOp, shape: &[usize], x: &[f32]) -> BoundedReference {
    let values: Vec<f64> = x.iter().map(|&v| unary_f64(op, f64::from(v))).collect();
    let bounds = values.iter().map(|&e| unary_bound(op, e)).collect();
    BoundedReference {
        shape: shape.to_vec(),
        values,
        bounds,
    }
}

/// Bounded f64 reference of a binary op with broadcasting.
pub fn binary_checked(
    op: BinaryOp,
    out_shape: &[usize],
    a: (&[f32], &[usize]),
    b: (&[f32], &[usize]),
) -> BoundedReference {
    let (values, mags) = binary_reference(op, out_shape, a, b);
    let bounds = values
        .iter()
        .zip(&mags)
        .map(|(&e, &m)| binary_bound(op, e, m))
        .collect();
    BoundedReference {
        shape: out_shape.to_vec(),
        values,
        bounds,
    }
}

/// Bounded f64 reference of slerp: a few ulp of the row's largest entry, plus the f32 dot
/// products' γ_d amplified by up to 1/sin θ ≈ 32 near the lerp threshold.
pub fn slerp_checked(shape: &[usize], a: &[f32], b: &[f32], t: f32) -> BoundedReference {
    let d = shape.last().copied().unwrap_or(1);
    let values = slerp_reference(a, b, d, t);
    let mut bounds = vec![0.0; values.len()];
    if d > 0 {
        for (r, brow) in bounds.chunks_mut(d).enumerate() {
            let amax = a[r * d..(r + 1) * d]
                .iter()
                .chain(&b[r * d..(r + 1) * d])
                .fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
            let bound = (16.0 * UNIT + 64.0 * d as f64 * UNIT) * amax + 1e-6;
            brow.iter_mut().for_each(|x| *x = bound);
        }
    }
    BoundedReference {
        shape: shape.to_vec(),
        values,
        bounds,
    }
}
