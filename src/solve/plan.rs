//! The rules both solver paths share: options, operand shapes (numpy's broadcasting of the
//! batch dims), and the numpy/scipy-style errors (non-finite input, a singular matrix naming
//! its first zero pivot, shapes naming both operands).

use crate::elementwise::broadcast_shapes;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Which factorisation [`Context::solve_with`](crate::Context::solve_with) uses, as scipy's
/// `assume_a`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AssumeA {
    /// Any square matrix: LU with partial pivoting (`"gen"`).
    #[default]
    General,
    /// Symmetric positive definite: Cholesky (`"pos"`); only the lower triangle is read, and
    /// an asymmetric or indefinite matrix is refused.
    Positive,
}

impl std::str::FromStr for AssumeA {
    type Err = Error;
    fn from_str(s: &str) -> Result<AssumeA> {
        match s {
            "gen" | "general" => Ok(AssumeA::General),
            "pos" | "positive definite" => Ok(AssumeA::Positive),
            _ => Err(Error::InvalidArgument(format!(
                "assume_a must be 'gen' or 'pos'; got '{s}'"
            ))),
        }
    }
}

/// Options of [`Context::solve_with`](crate::Context::solve_with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolveOptions {
    /// The structure assumed of A.
    pub assume_a: AssumeA,
}

/// Options of [`Context::solve_triangular`](crate::Context::solve_triangular), as
/// `scipy.linalg.solve_triangular`: by default T is upper triangular and T·X = B is solved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TriangularOptions {
    /// T is lower triangular (only its lower triangle is read); otherwise upper.
    pub lower: bool,
    /// Solve Tᵀ·X = B (scipy's `trans=1`).
    pub trans: bool,
    /// The diagonal of T is taken as ones and not read.
    pub unit_diagonal: bool,
}

impl TriangularOptions {
    /// Whether op(T) (T or Tᵀ) is lower triangular, so the solve runs forward.
    pub fn forward(&self) -> bool {
        self.lower != self.trans
    }
}

/// The shape of one square-matrix op: `batch` matrices of order `n`, batch dims `batch_shape`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SquarePlan {
    /// The op's name, for messages.
    pub op: &'static str,
    /// The leading (batch) dims.
    pub batch_shape: Vec<usize>,
    /// Matrices (the product of the batch dims).
    pub batch: usize,
    /// Their order.
    pub n: usize,
}

/// Refuses anything but float32.
pub(crate) fn require_f32(op: &str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::InvalidArgument(format!(
            "{op}: {what} (shape {:?}) is {}; expected float32",
            t.shape(),
            t.dtype().name()
        )));
    }
    Ok(())
}

impl SquarePlan {
    /// The plan of `a` ([..., n, n], float32) for `op`, or an error naming its shape.
    pub fn new(op: &'static str, a: &Tensor) -> Result<SquarePlan> {
        require_f32(op, "a", a)?;
        let shape = a.shape();
        if shape.len() < 2 {
            return Err(Error::Shape(format!(
                "{op} needs a matrix or a batch of matrices [..., n, n]; got shape {shape:?} \
                 ({} dims)",
                shape.len()
            )));
        }
        let (m, n) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        if m != n {
            return Err(Error::Shape(format!(
                "{op} needs square matrices; got shape {shape:?} ({m}×{n})"
            )));
        }
        let batch_shape = shape[..shape.len() - 2].to_vec();
        Ok(SquarePlan {
            op,
            batch: batch_shape.iter().product(),
            batch_shape,
            n,
        })
    }

    /// The same plan for another op name.
    pub fn renamed(&self, op: &'static str) -> SquarePlan {
        SquarePlan { op, ..self.clone() }
    }

    /// "the n×n matrix", or "matrix z of the batch" for batched input.
    pub fn which(&self, z: usize) -> String {
        crate::error::matrix_label(self.n, self.n, self.batch, z)
    }

    /// The error for matrix `z` holding NaN or Inf.
    pub fn non_finite(&self, z: usize, what: &str) -> Error {
        Error::InvalidArgument(format!(
            "{}: {what} of {} holds NaN or infinite values",
            self.op,
            self.which(z)
        ))
    }

    /// The error for matrix `z` whose factor has a zero pivot (0-based `pivot`), as numpy's
    /// `LinAlgError: Singular matrix`.
    pub fn singular(&self, z: usize, pivot: usize, factor: &str) -> Error {
        Error::LinAlg(format!(
            "{}: singular matrix: {} has {factor}[{pivot}, {pivot}] = 0 (the first zero \
             pivot, 0-based; LAPACK info = {})",
            self.op,
            self.which(z),
            pivot + 1
        ))
    }

    /// Judges matrix `z`'s status words (the GPU's and the CPU's layout: \[0\] n − i for the
    /// first zero pivot i, 0 = none; \[1\] NaN or Inf): NaN first, then (when `singular_is_error`)
    /// a zero pivot of `factor`.
    pub fn judge(
        &self,
        z: usize,
        status: [u32; 2],
        what: &str,
        factor: &str,
        singular_is_error: bool,
    ) -> Result<()> {
        if status[1] != 0 {
            return Err(self.non_finite(z, what));
        }
        if singular_is_error && status[0] != 0 {
            return Err(self.singular(z, self.n - status[0] as usize, factor));
        }
        Ok(())
    }

    /// Judges every matrix's status (see [`SquarePlan::judge`]).
    pub fn judge_all(
        &self,
        status: &[[u32; 2]],
        what: &str,
        factor: &str,
        singular_is_error: bool,
    ) -> Result<()> {
        status
            .iter()
            .enumerate()
            .try_for_each(|(z, &s)| self.judge(z, s, what, factor, singular_is_error))
    }
}

/// The status word of a first zero pivot at 0-based `i` of an order-`n` matrix (0 = none).
pub fn zero_pivot_word(n: usize, i: Option<usize>) -> u32 {
    i.map_or(0, |i| (n - i) as u32)
}

/// The shapes of `op(A, B)` for a solve: A \[..., n, n\] and B \[n\] (a vector, numpy's rule for a
/// 1-D b) or [..., n, k], the batch dims broadcast as numpy does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemPlan {
    /// A's plan, with the broadcast batch.
    pub a: SquarePlan,
    /// Right-hand sides per matrix.
    pub k: usize,
    /// B was 1-D: the result is [..., n].
    pub vector: bool,
    /// A's own batch shape (before broadcasting).
    pub a_batch_shape: Vec<usize>,
    /// B's own batch shape (before broadcasting; empty for a vector).
    pub b_batch_shape: Vec<usize>,
}

impl SystemPlan {
    /// The plan of `op(a, b)`, or an error naming both shapes.
    pub fn new(op: &'static str, a: &Tensor, b: &Tensor) -> Result<SystemPlan> {
        let ap = SquarePlan::new(op, a)?;
        require_f32(op, "b", b)?;
        let n = ap.n;
        let bs = b.shape();
        let mismatch = |why: &str| {
            Error::Shape(format!(
                "{op}: a has shape {:?} and b has shape {bs:?}: {why}",
                a.shape()
            ))
        };
        let (vector, rows, k, b_batch) = match bs.len() {
            0 => return Err(mismatch("b must be [n] or [..., n, k]")),
            1 => (true, bs[0], 1, Vec::new()),
            d => (false, bs[d - 2], bs[d - 1], bs[..d - 2].to_vec()),
        };
        if rows != n {
            return Err(mismatch(&format!("b has {rows} rows where a is {n}×{n}")));
        }
        let batch_shape = broadcast_shapes(&ap.batch_shape, &b_batch)
            .map_err(|_| mismatch("the batch dims do not broadcast"))?;
        Ok(SystemPlan {
            a_batch_shape: ap.batch_shape.clone(),
            a: SquarePlan {
                batch: batch_shape.iter().product(),
                batch_shape,
                ..ap
            },
            k,
            vector,
            b_batch_shape: b_batch,
        })
    }

    /// The result's shape: [..., n] for a vector b, else [..., n, k].
    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = self.a.batch_shape.clone();
        s.push(self.a.n);
        if !self.vector {
            s.push(self.k);
        }
        s
    }

    /// A's shape broadcast: [batch..., n, n].
    pub fn a_shape(&self) -> Vec<usize> {
        let mut s = self.a.batch_shape.clone();
        s.extend([self.a.n, self.a.n]);
        s
    }

    /// B's shape broadcast: [batch..., n, k].
    pub fn b_shape(&self) -> Vec<usize> {
        let mut s = self.a.batch_shape.clone();
        s.extend([self.a.n, self.k]);
        s
    }
}

/// The row permutation of LAPACK-style pivots (row i interchanged with row ipiv\[i\], in
/// order): `perm` with (P⁻¹·A)\[i\] = A[perm\[i\]], i.e. A = P·L·U with P[perm\[i\], i] = 1.
pub fn perm_of_pivots(ipiv: &[u32]) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..ipiv.len() as u32).collect();
    for (i, &r) in ipiv.iter().enumerate() {
        perm.swap(i, r as usize);
    }
    perm
}

/// LAPACK-style pivots (row i interchanged with ipiv\[i\], in order) that produce the row
/// order `perm` ((P⁻¹·A)\[i\] = A[perm\[i\]]): the inverse of [`perm_of_pivots`].
pub fn pivots_of_perm(perm: &[usize]) -> Vec<u32> {
    let n = perm.len();
    let mut cur: Vec<usize> = (0..n).collect();
    let mut pos: Vec<usize> = (0..n).collect();
    let mut ipiv = vec![0u32; n];
    for i in 0..n {
        let j = pos[perm[i]];
        ipiv[i] = j as u32;
        let (ri, rj) = (cur[i], cur[j]);
        cur.swap(i, j);
        pos[ri] = j;
        pos[rj] = i;
    }
    ipiv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivots_and_permutations_round_trip() {
        let perm = [2usize, 0, 3, 1];
        let ipiv = pivots_of_perm(&perm);
        let back = perm_of_pivots(&ipiv);
        assert_eq!(back, vec![2, 0, 3, 1]);
        assert_eq!(perm_of_pivots(&[1, 1]), vec![1, 0]);
    }

    #[test]
    fn system_shapes_broadcast_and_mismatches_name_both() {
        let a = Tensor::from_vec(&[2, 3, 3], vec![0.0; 18]).unwrap();
        let b = Tensor::from_vec(&[3], vec![0.0; 3]).unwrap();
        let p = SystemPlan::new("solve", &a, &b).unwrap();
        assert_eq!(p.out_shape(), vec![2, 3]);
        let b = Tensor::from_vec(&[4, 1, 3, 2], vec![0.0; 24]).unwrap();
        let p = SystemPlan::new("solve", &a, &b).unwrap();
        assert_eq!(p.out_shape(), vec![4, 2, 3, 2]);
        let b = Tensor::from_vec(&[4, 2], vec![0.0; 8]).unwrap();
        let e = SystemPlan::new("solve", &a, &b).unwrap_err().to_string();
        assert!(e.contains("[2, 3, 3]") && e.contains("[4, 2]"), "{e}");
    }
}
