//! The rules both paths of the matrix functions share: the norm orders, the operand's shape
//! ([..., m, n]) and the numpy-style errors.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// ε of the default tolerances: f32's machine epsilon 2⁻²³, as numpy's `finfo(float32).eps`.
pub const NORMS_EPS: f32 = 1.0 / 8_388_608.0;

/// The order of a matrix norm, as `numpy.linalg.norm(a, ord)` spells it for 2-D input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatrixNorm {
    /// `'fro'`: √Σ|aᵢⱼ|².
    Fro,
    /// `'nuc'`: the sum of the singular values.
    Nuc,
    /// `1`: the largest column sum of |aᵢⱼ|.
    One,
    /// `-1`: the smallest column sum of |aᵢⱼ|.
    NegOne,
    /// `2`: the largest singular value.
    Two,
    /// `-2`: the smallest singular value.
    NegTwo,
    /// `inf`: the largest row sum of |aᵢⱼ|.
    Inf,
    /// `-inf`: the smallest row sum of |aᵢⱼ|.
    NegInf,
}

impl MatrixNorm {
    /// Every order, for tests and help texts.
    pub const ALL: [MatrixNorm; 8] = [
        MatrixNorm::Fro,
        MatrixNorm::Nuc,
        MatrixNorm::One,
        MatrixNorm::NegOne,
        MatrixNorm::Two,
        MatrixNorm::NegTwo,
        MatrixNorm::Inf,
        MatrixNorm::NegInf,
    ];

    /// The name as numpy (and [`FromStr`]) spells it.
    pub fn name(self) -> &'static str {
        match self {
            MatrixNorm::Fro => "fro",
            MatrixNorm::Nuc => "nuc",
            MatrixNorm::One => "1",
            MatrixNorm::NegOne => "-1",
            MatrixNorm::Two => "2",
            MatrixNorm::NegTwo => "-2",
            MatrixNorm::Inf => "inf",
            MatrixNorm::NegInf => "-inf",
        }
    }

    /// Whether the norm is computed from the singular values (2, −2, nuc).
    pub fn needs_svd(self) -> bool {
        matches!(self, MatrixNorm::Two | MatrixNorm::NegTwo | MatrixNorm::Nuc)
    }
}

impl fmt::Display for MatrixNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatrixNorm {
    type Err = Error;
    fn from_str(s: &str) -> Result<MatrixNorm> {
        let l = s.trim().to_ascii_lowercase();
        let l = match l.as_str() {
            "+inf" | "infinity" => "inf",
            "-infinity" => "-inf",
            "+1" => "1",
            "+2" => "2",
            other => other,
        };
        MatrixNorm::ALL
            .into_iter()
            .find(|o| o.name() == l)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown matrix norm order '{s}'; expected one of {}",
                    MatrixNorm::ALL.map(|o| o.name()).join(", ")
                ))
            })
    }
}

/// The shape of one call: `batch` matrices of m×n, the leading dims kept for the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormsPlan {
    /// The leading dims (empty for a 2-D input): the shape of a per-matrix result.
    pub batch_shape: Vec<usize>,
    /// Matrices (the product of the leading dims; 1 for a 2-D input).
    pub batch: usize,
    /// Rows of each matrix.
    pub m: usize,
    /// Columns of each matrix.
    pub n: usize,
}

impl NormsPlan {
    /// The plan of `a` ([..., m, n], float32) for op `op`, or an error naming its shape.
    pub fn new(op: &str, a: &Tensor) -> Result<NormsPlan> {
        if a.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "{op}: input (shape {:?}) is {}; expected float32",
                a.shape(),
                a.dtype().name()
            )));
        }
        NormsPlan::from_shape(op, a.shape())
    }

    /// The plan of a shape [..., m, n], or an error naming it.
    pub fn from_shape(op: &str, shape: &[usize]) -> Result<NormsPlan> {
        if shape.len() < 2 {
            return Err(Error::Shape(format!(
                "{op} needs a matrix or a batch of matrices [..., m, n]; got shape {shape:?} \
                 ({} dims)",
                shape.len()
            )));
        }
        let (lead, mn) = shape.split_at(shape.len() - 2);
        Ok(NormsPlan {
            batch_shape: lead.to_vec(),
            batch: lead.iter().product(),
            m: mn[0],
            n: mn[1],
        })
    }

    /// Whether each matrix has no elements.
    pub fn is_empty(&self) -> bool {
        self.m == 0 || self.n == 0
    }

    /// The error for an order that needs square matrices, naming both dims.
    pub fn require_square(&self, op: &str, what: &str) -> Result<()> {
        if self.m != self.n {
            return Err(Error::Shape(format!(
                "{op}: {what} needs square matrices; got {}×{} (rows {} ≠ columns {})",
                self.m, self.n, self.m, self.n
            )));
        }
        Ok(())
    }

    /// The error for an empty matrix where numpy raises.
    pub fn empty_error(&self, op: &str, what: &str) -> Error {
        Error::LinAlg(format!(
            "{op}: {what} of an empty {}×{} matrix is undefined (numpy raises)",
            self.m, self.n
        ))
    }

    /// The error for NaN or infinite input.
    pub fn non_finite(&self, op: &str) -> Error {
        Error::InvalidArgument(format!(
            "{op}: the input of {} {}×{} matrices holds NaN or infinite values",
            self.batch, self.m, self.n
        ))
    }
}

/// The value of a norm of an empty m×n matrix: `Ok(0)` for fro, 1 and inf (and for −1 / −inf
/// where the smallest sum is over a non-empty set of zero sums), an error where numpy raises.
pub fn empty_norm(plan: &NormsPlan, ord: MatrixNorm) -> Result<f32> {
    match ord {
        MatrixNorm::Fro | MatrixNorm::One | MatrixNorm::Inf => Ok(0.0),
        MatrixNorm::NegOne if plan.n > 0 => Ok(0.0),
        MatrixNorm::NegInf if plan.m > 0 => Ok(0.0),
        _ => Err(plan.empty_error("matrix_norm", &format!("the norm ord={ord}"))),
    }
}

/// The power of two near max|A| (exponent clamped to ±126, 1 for a zero matrix) that each
/// matrix is divided by before it is reduced or factored: the division is exact, and the
/// squares of the Frobenius norm and of the SVD neither overflow nor underflow.
pub fn scale_of(max_abs: f32) -> f32 {
    if max_abs == 0.0 || !max_abs.is_finite() {
        return 1.0;
    }
    let e = (max_abs.log2().floor() as i32).clamp(-126, 126);
    2f32.powi(e)
}
