//! CPU solvers: faer's partial-pivoting LU and triangular solves (the CPU backend, in
//! parallel over a batch with rayon), and LAPACK's driver-test ratios in f64
//! (`dchkge`, `ddrvls`), by which every solver result is judged.

use faer::linalg::triangular_solve as tri;
use faer::{Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::reference::{norm1, residual_ratio};
use crate::solve::plan::{pivots_of_perm, zero_pivot_word, TriangularOptions};

/// The LU factors of a batch in LAPACK's compact form: `lu` holds L (unit, below the
/// diagonal) and U (on and above it), `ipiv` the row interchanges (row i with ipiv\[i\], in
/// order, 0-based as scipy's `lu_factor`), `status` each matrix's words (\[0\] n − i of the
/// first zero pivot i, 0 = none; \[1\] NaN or Inf in the input).
#[derive(Clone, Debug, PartialEq)]
pub struct CompactLu {
    /// n×n per matrix, row-major.
    pub lu: Vec<f32>,
    /// n per matrix.
    pub ipiv: Vec<u32>,
    /// 2 words per matrix.
    pub status: Vec<[u32; 2]>,
}

fn mat_of(a: &[f32], rows: usize, cols: usize) -> Mat<f32> {
    Mat::from_fn(rows, cols, |i, j| a[i * cols + j])
}

fn store(m: MatRef<'_, f32>, out: &mut [f32]) {
    let cols = m.ncols();
    for i in 0..m.nrows() {
        for j in 0..cols {
            out[i * cols + j] = m[(i, j)];
        }
    }
}

/// The partial-pivoting LU of each of the `batch` row-major n×n matrices in `a` (faer, f32),
/// matrices in parallel.
pub fn lu_factor(a: &[f32], batch: usize, n: usize) -> CompactLu {
    let nn = n * n;
    let mut lu = vec![0.0f32; batch * nn];
    let mut ipiv = vec![0u32; batch * n];
    let mut status = vec![[0u32; 2]; batch];
    if nn > 0 {
        lu.par_chunks_mut(nn)
            .zip(ipiv.par_chunks_mut(n))
            .zip(status.par_iter_mut())
            .enumerate()
            .for_each(|(z, ((lu, ipiv), status))| {
                let m = &a[z * nn..(z + 1) * nn];
                status[1] = u32::from(m.iter().any(|x| !x.is_finite()));
                let f = mat_of(m, n, n).partial_piv_lu();
                let (l, u) = (f.L(), f.U());
                for i in 0..n {
                    for j in 0..n {
                        lu[i * n + j] = if j < i { l[(i, j)] } else { u[(i, j)] };
                    }
                }
                let perm: Vec<usize> = f.P().arrays().0.to_vec();
                ipiv.copy_from_slice(&pivots_of_perm(&perm));
                status[0] = zero_pivot_word(n, (0..n).find(|&i| u[(i, i)] == 0.0));
            });
    }
    CompactLu { lu, ipiv, status }
}

/// `scipy.linalg.lu` of rectangular matrices: the factors of each of the `batch` row-major
/// m×n matrices in `a` (faer, matrices in parallel), k = min(m, n).
#[derive(Clone, Debug, PartialEq)]
pub struct RectangularLu {
    /// The m×m permutation matrices, A = P·L·U.
    pub p: Vec<f32>,
    /// The m×k unit lower factors.
    pub l: Vec<f32>,
    /// The k×n upper factors.
    pub u: Vec<f32>,
    /// scipy's `p_indices` (m per matrix): A = L\[perm\]·U.
    pub perm: Vec<u32>,
    /// Whether each matrix holds NaN or Inf (its factors are then not meaningful).
    pub nonfinite: Vec<bool>,
}

/// See [`RectangularLu`].
pub fn lu_rectangular(a: &[f32], batch: usize, m: usize, n: usize) -> RectangularLu {
    let k = m.min(n);
    let parts: Vec<_> = (0..batch)
        .into_par_iter()
        .map(|z| {
            let mat = &a[z * m * n..(z + 1) * m * n];
            let bad = mat.iter().any(|x| !x.is_finite());
            let mut out = (
                vec![0.0f32; m * m],
                vec![0.0f32; m * k],
                vec![0.0f32; k * n],
            );
            let mut perm = vec![0u32; m];
            if k > 0 {
                let f = mat_of(mat, m, n).partial_piv_lu();
                store(f.L(), &mut out.1);
                store(f.U(), &mut out.2);
                // faer: (P·A)[i] = A[fwd[i]], so row fwd[i] of A is row i of L·U.
                for (i, &r) in f.P().arrays().0.iter().enumerate() {
                    out.0[r * m + i] = 1.0;
                    perm[r] = i as u32;
                }
            } else {
                for (i, p) in perm.iter_mut().enumerate() {
                    out.0[i * m + i] = 1.0;
                    *p = i as u32;
                }
            }
            (out, perm, bad)
        })
        .collect();
    let mut r = RectangularLu {
        p: Vec::with_capacity(batch * m * m),
        l: Vec::with_capacity(batch * m * k),
        u: Vec::with_capacity(batch * k * n),
        perm: Vec::with_capacity(batch * m),
        nonfinite: Vec::with_capacity(batch),
    };
    for ((p, l, u), perm, bad) in parts {
        r.p.extend(p);
        r.l.extend(l);
        r.u.extend(u);
        r.perm.extend(perm);
        r.nonfinite.push(bad);
    }
    r
}

/// Applies LAPACK-style pivots to the rows of the row-major n×k `b`, in order.
pub fn apply_pivots(ipiv: &[u32], b: &mut [f32], k: usize) {
    for (i, &r) in ipiv.iter().enumerate() {
        let r = r as usize;
        if r != i {
            for j in 0..k {
                b.swap(i * k + j, r * k + j);
            }
        }
    }
}

/// Solves op(T)·X = B in place for one n×n `t` (row-major, only the triangle named by `opts`
/// read) and n×k `x` (B on entry), with faer.
pub fn trsm_one(t: &[f32], n: usize, x: &mut [f32], k: usize, opts: &TriangularOptions) {
    if n == 0 || k == 0 {
        return;
    }
    let tm = mat_of(t, n, n);
    let op = if opts.trans {
        tm.as_ref().transpose()
    } else {
        tm.as_ref()
    };
    let mut xm = mat_of(x, n, k);
    let rhs: MatMut<'_, f32> = xm.as_mut();
    match (opts.forward(), opts.unit_diagonal) {
        (true, false) => tri::solve_lower_triangular_in_place(op, rhs, Par::Seq),
        (true, true) => tri::solve_unit_lower_triangular_in_place(op, rhs, Par::Seq),
        (false, false) => tri::solve_upper_triangular_in_place(op, rhs, Par::Seq),
        (false, true) => tri::solve_unit_upper_triangular_in_place(op, rhs, Par::Seq),
    }
    store(xm.as_ref(), x);
}

/// Solves op(T)·X = B for each of the `batch` matrices (row-major T n×n, B n×k), in parallel.
pub fn trsm(
    t: &[f32],
    b: &[f32],
    batch: usize,
    n: usize,
    k: usize,
    opts: &TriangularOptions,
) -> Vec<f32> {
    debug_assert_eq!(b.len(), batch * n * k);
    let mut x = b.to_vec();
    if n * k > 0 {
        x.par_chunks_mut(n * k).enumerate().for_each(|(z, x)| {
            trsm_one(&t[z * n * n..(z + 1) * n * n], n, x, k, opts);
        });
    }
    x
}

/// X = A⁻¹·B from compact LU factors (pivots, then unit-lower and upper solves), matrices in
/// parallel; B is n×k per matrix.
pub fn lu_solve(f: &CompactLu, b: &[f32], batch: usize, n: usize, k: usize) -> Vec<f32> {
    let mut x = b.to_vec();
    if n * k == 0 {
        return x;
    }
    let lower = TriangularOptions {
        lower: true,
        trans: false,
        unit_diagonal: true,
    };
    let upper = TriangularOptions::default();
    x.par_chunks_mut(n * k).enumerate().for_each(|(z, x)| {
        let lu = &f.lu[z * n * n..(z + 1) * n * n];
        apply_pivots(&f.ipiv[z * n..(z + 1) * n], x, k);
        trsm_one(lu, n, x, k, &lower);
        trsm_one(lu, n, x, k, &upper);
    });
    debug_assert_eq!(x.len(), batch * n * k);
    x
}

/// (sign, log|det|) of each matrix from its compact LU factors: sign 0 and −∞ where U has a
/// zero diagonal, as `numpy.linalg.slogdet`.
pub fn slogdet(f: &CompactLu, batch: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    (0..batch)
        .map(|z| {
            let mut sign = 1.0f64;
            let mut logabs = 0.0f64;
            for i in 0..n {
                let d = f.lu[z * n * n + i * n + i];
                if d == 0.0 {
                    return (0.0, f32::NEG_INFINITY);
                }
                logabs += f64::from(d.abs()).ln();
                if (d < 0.0) != (f.ipiv[z * n + i] as usize != i) {
                    sign = -sign;
                }
            }
            (sign as f32, logabs as f32)
        })
        .unzip()
}

/// The parity of a permutation: −1 for an odd one, 1 for an even one.
fn parity(perm: &[u32]) -> f64 {
    let mut seen = vec![false; perm.len()];
    let mut sign = 1.0;
    for start in 0..perm.len() {
        let mut len = 0;
        let mut i = start;
        while !seen[i] {
            seen[i] = true;
            i = perm[i] as usize;
            len += 1;
        }
        if len % 2 == 0 && len > 0 {
            sign = -sign;
        }
    }
    sign
}

/// (sign, log|det|) in f64 of P·L·U from the n×n upper factor `u` (row-major) and scipy's
/// `p_indices` `perm` (A = L\[perm\]·U): sign 0 and −∞ for a zero on U's diagonal.
pub fn slogdet_of_factors(u: &[f32], perm: &[u32], n: usize) -> (f64, f64) {
    let mut sign = parity(perm);
    let mut logabs = 0.0;
    for i in 0..n {
        let d = f64::from(u[i * n + i]);
        if d == 0.0 {
            return (0.0, f64::NEG_INFINITY);
        }
        sign *= d.signum();
        logabs += d.abs().ln();
    }
    (sign, logabs)
}

/// LAPACK's LU ratio ‖A − P·L·U‖₁/(n·‖A‖₁·ε) (`dchkge`), in f64, for one row-major n×n `a`,
/// permutation matrix `p`, unit lower `l` and upper `u` (only their triangles are read).
pub fn lu_ratio(a: &[f32], n: usize, p: &[f32], l: &[f32], u: &[f32]) -> f64 {
    lu_ratio_rectangular(a, n, n, p, l, u)
}

/// [`lu_ratio`] for an m×n `a` (`dget01`: ‖A − P·L·U‖₁/(n·‖A‖₁·ε)) with P m×m, L m×k unit
/// lower and U k×n upper, k = min(m, n).
pub fn lu_ratio_rectangular(a: &[f32], m: usize, n: usize, p: &[f32], l: &[f32], u: &[f32]) -> f64 {
    let k = m.min(n);
    let lu: Vec<f64> = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..k.min(i + 1).min(j + 1))
                .map(|t| {
                    let lit = if t == i { 1.0 } else { f64::from(l[i * k + t]) };
                    lit * f64::from(u[t * n + j])
                })
                .sum()
        })
        .collect();
    let an = norm1(m, n, &|i, j| f64::from(a[i * n + j]));
    let resid = norm1(m, n, &|i, j| {
        let plu: f64 = (0..m)
            .filter(|&c| p[i * m + c] != 0.0)
            .map(|c| f64::from(p[i * m + c]) * lu[c * n + j])
            .sum();
        f64::from(a[i * n + j]) - plu
    });
    residual_ratio(resid, an, n)
}

/// Checks compact LU factors of the row-major n×n `a` given as `out` = the n² values of `lu`
/// then the n pivots as floats: every pivot a row index at or below its own, and LAPACK's
/// ratio ‖A − P·L·U‖/(n·‖A‖·ε) below 30. For the tuner's verification.
pub fn check_compact_lu(a: &[f32], n: usize, out: &[f32]) -> crate::error::Result<()> {
    let bad = |why: String| Err(crate::error::Error::Verification(format!("lu: {why}")));
    if out.len() != n * n + n {
        return bad(format!(
            "{} values for an order-{n} factorisation",
            out.len()
        ));
    }
    let (lu, piv) = out.split_at(n * n);
    let mut ipiv = Vec::with_capacity(n);
    for (i, &p) in piv.iter().enumerate() {
        if p.fract() != 0.0 || p < i as f32 || p >= n as f32 {
            return bad(format!("pivot {i} is {p}"));
        }
        ipiv.push(p as u32);
    }
    let mut pm = vec![0.0f32; n * n];
    for (i, &r) in crate::solve::plan::perm_of_pivots(&ipiv).iter().enumerate() {
        pm[r as usize * n + i] = 1.0;
    }
    let r = lu_ratio(a, n, &pm, lu, lu);
    if r.is_nan() || r >= 30.0 {
        return bad(format!("LAPACK ratio ‖A − P·L·U‖/(n·‖A‖·ε) = {r}"));
    }
    Ok(())
}

/// LAPACK's solve ratio ‖B − A·X‖₁/(‖A‖₁·‖X‖₁·n·ε) (`dget02`), in f64, for one row-major
/// n×n `a` and n×k `b`, `x`. Where ‖A‖·‖X‖ = 0 it is 0 for a zero residual, else 1/ε.
pub fn solve_ratio(a: &[f32], n: usize, k: usize, b: &[f32], x: &[f32]) -> f64 {
    let an = norm1(n, n, &|i, j| f64::from(a[i * n + j]));
    let xn = norm1(n, k, &|i, j| f64::from(x[i * k + j]));
    let resid = norm1(n, k, &|i, j| {
        let ax: f64 = (0..n)
            .map(|t| f64::from(a[i * n + t]) * f64::from(x[t * k + j]))
            .sum();
        f64::from(b[i * k + j]) - ax
    });
    residual_ratio(resid, an * xn, n)
}

/// LAPACK's inverse ratio ‖I − A·A⁻¹‖₁/(n·‖A‖₁·‖A⁻¹‖₁·ε) (`dget03`), in f64, for one
/// row-major n×n `a` and its computed inverse `ainv`.
pub fn inv_ratio(a: &[f32], n: usize, ainv: &[f32]) -> f64 {
    let an = norm1(n, n, &|i, j| f64::from(a[i * n + j]));
    let ain = norm1(n, n, &|i, j| f64::from(ainv[i * n + j]));
    let resid = norm1(n, n, &|i, j| {
        let p: f64 = (0..n)
            .map(|t| f64::from(a[i * n + t]) * f64::from(ainv[t * n + j]))
            .sum();
        if i == j {
            1.0 - p
        } else {
            -p
        }
    });
    residual_ratio(resid, an * ain, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve::plan::perm_of_pivots;

    #[test]
    fn compact_lu_pivots_as_lapack_and_solves() {
        // [[0, 1], [2, 3]]: the first pivot is row 1.
        let a = [0.0f32, 1.0, 2.0, 3.0];
        let f = lu_factor(&a, 1, 2);
        assert_eq!(f.ipiv, vec![1, 1]);
        assert_eq!(f.lu, vec![2.0, 3.0, 0.0, 1.0]);
        assert_eq!(f.status, vec![[0, 0]]);
        let x = lu_solve(&f, &[1.0, 5.0], 1, 2, 1);
        assert_eq!(x, vec![1.0, 1.0]);
        assert!(solve_ratio(&a, 2, 1, &[1.0, 5.0], &x) < 1.0);
        assert_eq!(perm_of_pivots(&f.ipiv), vec![1, 0]);
        // A 3-cycle (a permutation that is not its own inverse): rows 1, 2, 0.
        let a3 = [0.0f32, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let f3 = lu_factor(&a3, 1, 3);
        assert_eq!(f3.ipiv, vec![1, 2, 2]);
        assert_eq!(perm_of_pivots(&f3.ipiv), vec![1, 2, 0]);
        assert_eq!(f3.lu, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(slogdet_of_factors(&f3.lu, &[2, 0, 1], 3), (1.0, 0.0));
        assert_eq!(
            slogdet_of_factors(&[1.0, 0.0, 0.0, 1.0], &[1, 0], 2),
            (-1.0, 0.0)
        );
        let (s, l) = slogdet(&f, 1, 2);
        assert_eq!(s, vec![-1.0]);
        assert!((l[0] - 2.0f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn singular_input_names_the_first_zero_pivot() {
        let a = [1.0f32, 2.0, 2.0, 4.0];
        let f = lu_factor(&a, 1, 2);
        assert_eq!(f.status, vec![[1, 0]]);
        let f = lu_factor(&[0.0; 4], 1, 2);
        assert_eq!(f.status, vec![[2, 0]]);
        let f = lu_factor(&[f32::NAN, 0.0, 0.0, 1.0], 1, 2);
        assert_eq!(f.status[0][1], 1);
    }
}
