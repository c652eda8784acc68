//! The elementwise plan: shapes and options, shared by the GPU and the CPU path.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::tensor::MAX_DIMS;

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
    pub(crate) fn wgsl(self) -> (&'static str, u32) {
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

    pub(crate) fn params(self) -> (f32, f32) {
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

    pub(crate) fn wgsl(self) -> &'static str {
        match self {
            BinaryOp::Add => "a + b",
            BinaryOp::Sub => "a - b",
            BinaryOp::Mul => "a * b",
            BinaryOp::Div => "a / b",
            BinaryOp::Axpy(_) => "p.alpha * a + b",
            BinaryOp::Lerp(_) => "lerp_np(a, b, p.alpha)",
        }
    }

    pub(crate) fn alpha(self) -> f32 {
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
