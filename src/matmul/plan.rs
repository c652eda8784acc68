//! The matmul plan: shapes and options, shared by the GPU and the CPU path.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use std::fmt;
use std::str::FromStr;

/// The matmul kernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// One thread per output element: the baseline benchmarks compare against.
    Naive,
    /// Workgroup-memory tiled kernel, for real GPUs.
    Tiled,
    /// Register-blocked vec4 kernel without workgroup memory, for CPU-type adapters.
    Vec4,
    /// Large register-blocked tiles staged in double-buffered workgroup memory, for discrete
    /// GPUs: 256 threads, a TM×TN micro-tile each (4 or 8 by 4 or 8), so blocks of
    /// 16·TM × 16·TN, k in tiles of BK (8, 16 or 32).
    Blocked,
    /// Float16 operands multiplied on the adapter's matrix units (cooperative matrices),
    /// accumulated in f32: four subgroups per workgroup, each FM×FN fragments of F×F (F = 8 or
    /// 16, as the adapter offers), so blocks of 2·FM·F × 2·FN·F. Only for float16 operands, on
    /// adapters with `EXPERIMENTAL_COOPERATIVE_MATRIX` ([`crate::matmul::coop`]).
    Coop,
}

/// A matmul kernel and its tile sizes.
///
/// Written and parsed as `naive`, `tiled:TMxTN` (thread micro-tile, each at most 4),
/// `vec4:RMxRN4@WG` (rows × vec4 columns per thread, at most 8 × 4, workgroup size WG) or
/// `blocked:TMxTNkBK` (micro-tile of 4 or 8 by 4 or 8, k-tile depth BK of 8, 16 or 32) or
/// `coop:FMxFN@F` (float16 only: FM×FN fragments of F×F per subgroup, FM and FN 1, 2 or 4, F 8
/// or 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    /// Kernel family.
    pub kernel: MatmulKernel,
    /// Rows per thread (tiled and blocked: TM, vec4: RM); fragment rows per subgroup (coop: FM).
    pub rows: u32,
    /// Columns per thread (tiled and blocked: TN, vec4: number of vec4 columns); fragment
    /// columns per subgroup (coop: FN).
    pub cols: u32,
    /// Workgroup size along x (vec4); the k-tile depth BK (blocked); the fragment size F (coop).
    pub workgroup: u32,
}

impl MatmulConfig {
    /// The naive kernel.
    pub const NAIVE: MatmulConfig = MatmulConfig {
        kernel: MatmulKernel::Naive,
        rows: 1,
        cols: 1,
        workgroup: 64,
    };

    /// A tiled configuration.
    pub const fn tiled(tm: u32, tn: u32) -> MatmulConfig {
        MatmulConfig {
            kernel: MatmulKernel::Tiled,
            rows: tm,
            cols: tn,
            workgroup: 256,
        }
    }

    /// A vec4 configuration.
    pub const fn vec4(rm: u32, rn4: u32, wg: u32) -> MatmulConfig {
        MatmulConfig {
            kernel: MatmulKernel::Vec4,
            rows: rm,
            cols: rn4,
            workgroup: wg,
        }
    }

    /// A blocked configuration: micro-tile `tm`×`tn`, k-tile depth `bk`.
    pub const fn blocked(tm: u32, tn: u32, bk: u32) -> MatmulConfig {
        MatmulConfig {
            kernel: MatmulKernel::Blocked,
            rows: tm,
            cols: tn,
            workgroup: bk,
        }
    }

    /// A cooperative-matrix configuration: `fm`×`fn_` fragments of `frag`×`frag` per subgroup.
    pub const fn coop(fm: u32, fn_: u32, frag: u32) -> MatmulConfig {
        MatmulConfig {
            kernel: MatmulKernel::Coop,
            rows: fm,
            cols: fn_,
            workgroup: frag,
        }
    }

    /// The cooperative-matrix configurations for fragments of `frag`×`frag` (8 or 16): 1×1,
    /// 2×2, 4×2 and 4×4 fragments per subgroup, blocks of 2F×2F up to 8F×8F. All fit in 32 KiB
    /// of workgroup memory.
    pub fn coop_candidates(frag: u32) -> Vec<MatmulConfig> {
        [(1, 1), (2, 2), (4, 2), (4, 4)]
            .into_iter()
            .map(|(fm, fn_)| MatmulConfig::coop(fm, fn_, frag))
            .collect()
    }

    /// Bytes of workgroup memory one workgroup of this configuration declares (the blocked
    /// kernel's double-buffered tiles; 8 KiB for tiled, 0 for the others).
    pub fn workgroup_bytes(&self) -> u32 {
        match self.kernel {
            MatmulKernel::Blocked => {
                // Two k-tiles of A and of B, each row padded by one vec4.
                let rows = (4 * self.rows + 1) + (4 * self.cols + 1);
                2 * self.workgroup * rows * 16
            }
            MatmulKernel::Tiled => 2 * 1024 * 4,
            MatmulKernel::Coop => crate::matmul::coop::workgroup_bytes(*self),
            _ => 0,
        }
    }

    /// Every configuration the library runs: the tuner's candidates on GPUs
    /// ([`MatmulConfig::candidates_for`]), all of them covered by the cross-compilation test.
    pub fn candidates() -> Vec<MatmulConfig> {
        let mut all = MatmulConfig::candidates_for(true);
        all.extend(MatmulConfig::blocked_candidates());
        all
    }

    /// The blocked configurations the tuner tries on GPUs, each within 32 KiB of workgroup
    /// memory (Metal's and lavapipe's limit): 128×128 blocks (8×8 per thread) with k-tiles of
    /// 8, 128×64 and 64×128 (8×4, 4×8) with k-tiles of 16, 64×64 (4×4) with 8 and 16.
    pub fn blocked_candidates() -> Vec<MatmulConfig> {
        vec![
            MatmulConfig::blocked(8, 8, 8),
            MatmulConfig::blocked(8, 4, 16),
            MatmulConfig::blocked(4, 8, 16),
            MatmulConfig::blocked(4, 4, 16),
            MatmulConfig::blocked(4, 4, 8),
        ]
    }

    /// The candidates the tuner times on an adapter: on CPU-type adapters (lavapipe) the
    /// tiled and vec4 families, on GPUs the blocked family besides.
    pub fn candidates_for(cpu_adapter: bool) -> Vec<MatmulConfig> {
        let mut v = vec![
            MatmulConfig::tiled(4, 4),
            MatmulConfig::tiled(2, 2),
            MatmulConfig::vec4(4, 2, 64),
            MatmulConfig::vec4(4, 4, 64),
            MatmulConfig::vec4(8, 1, 64),
            MatmulConfig::vec4(8, 2, 64),
            MatmulConfig::vec4(8, 2, 16),
            MatmulConfig::vec4(2, 4, 64),
        ];
        if !cpu_adapter {
            v.extend(MatmulConfig::blocked_candidates());
        }
        v
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let ok = match self.kernel {
            MatmulKernel::Naive => true,
            MatmulKernel::Tiled => (1..=4).contains(&self.rows) && (1..=4).contains(&self.cols),
            MatmulKernel::Vec4 => {
                (1..=8).contains(&self.rows)
                    && (1..=4).contains(&self.cols)
                    && (1..=256).contains(&self.workgroup)
            }
            MatmulKernel::Blocked => {
                [4, 8].contains(&self.rows)
                    && [4, 8].contains(&self.cols)
                    && [8, 16, 32].contains(&self.workgroup)
            }
            MatmulKernel::Coop => {
                [1, 2, 4].contains(&self.rows)
                    && [1, 2, 4].contains(&self.cols)
                    && [8, 16].contains(&self.workgroup)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "matmul kernel configuration {self} is out of range (tiled: TM, TN in 1..=4; vec4: RM in 1..=8, RN4 in 1..=4, WG in 1..=256; blocked: TM, TN 4 or 8, BK 8, 16 or 32; coop: FM, FN 1, 2 or 4, F 8 or 16)"
            )))
        }
    }
}

impl fmt::Display for MatmulConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kernel {
            MatmulKernel::Naive => write!(f, "naive"),
            MatmulKernel::Tiled => write!(f, "tiled:{}x{}", self.rows, self.cols),
            MatmulKernel::Vec4 => write!(f, "vec4:{}x{}@{}", self.rows, self.cols, self.workgroup),
            MatmulKernel::Blocked => {
                write!(f, "blocked:{}x{}k{}", self.rows, self.cols, self.workgroup)
            }
            MatmulKernel::Coop => write!(f, "coop:{}x{}@{}", self.rows, self.cols, self.workgroup),
        }
    }
}

impl FromStr for MatmulConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<MatmulConfig> {
        let bad = || {
            Error::InvalidArgument(format!(
                "bad matmul kernel '{s}'; expected naive, tiled:TMxTN, vec4:RMxRN4@WG, blocked:TMxTNkBK or coop:FMxFN@F"
            ))
        };
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let cfg = match s.trim().split_once(':') {
            None if s.trim() == "naive" => MatmulConfig::NAIVE,
            Some(("tiled", rest)) => {
                let (a, b) = rest.split_once('x').ok_or_else(bad)?;
                MatmulConfig::tiled(num(a)?, num(b)?)
            }
            Some(("vec4", rest)) => {
                let (dims, wg) = rest.split_once('@').unwrap_or((rest, "64"));
                let (a, b) = dims.split_once('x').ok_or_else(bad)?;
                MatmulConfig::vec4(num(a)?, num(b)?, num(wg)?)
            }
            Some(("blocked", rest)) => {
                let (dims, bk) = rest.split_once('k').ok_or_else(bad)?;
                let (a, b) = dims.split_once('x').ok_or_else(bad)?;
                MatmulConfig::blocked(num(a)?, num(b)?, num(bk)?)
            }
            Some(("coop", rest)) => {
                let (dims, frag) = rest.split_once('@').ok_or_else(bad)?;
                let (a, b) = dims.split_once('x').ok_or_else(bad)?;
                MatmulConfig::coop(num(a)?, num(b)?, num(frag)?)
            }
            _ => return Err(bad()),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Options of [`Context::matmul_with`](crate::Context::matmul_with).
#[derive(Clone, Copy, Debug, Default)]
pub struct MatmulOptions<'a> {
    /// Use Aᵀ (the last two dims of A swapped).
    pub transpose_a: bool,
    /// Use Bᵀ.
    pub transpose_b: bool,
    /// Bias of shape `[n]`, added to every row.
    pub bias: Option<&'a Tensor>,
    /// Activation after the bias.
    pub activation: Activation,
    /// Force a kernel configuration (GPU only); `None` uses the one tuned for the adapter.
    pub kernel: Option<MatmulConfig>,
    /// The result's element type. `None` follows numpy: float16 @ float16 → float16 (likewise
    /// bfloat16), float32 for any other mix. Half-precision operands are widened exactly and
    /// accumulated in f32 either way; a half-precision result is the f32 one rounded to
    /// nearest (ties to even).
    pub out_dtype: Option<DType>,
}

/// Shapes and strides of one matmul, derived once from the operand shapes.
///
/// Element (i, k) of op(A) in batch z is `a[a_base(z) + i*a_rs + k*a_cs]`; likewise for B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulPlan {
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Broadcast batch dims, padded on the left to two: `[b0, b1]`.
    pub batch: [usize; 2],
    /// Shape of the result (numpy's: promoted 1-D dims removed again).
    pub out_shape: Vec<usize>,
    /// Row and column strides of op(A).
    pub a_rs: usize,
    /// Column stride of op(A).
    pub a_cs: usize,
    /// Row stride of op(B).
    pub b_rs: usize,
    /// Column stride of op(B).
    pub b_cs: usize,
    /// Batch strides of A over `batch` (0 where broadcast).
    pub a_bs: [usize; 2],
    /// Batch strides of B over `batch` (0 where broadcast).
    pub b_bs: [usize; 2],
    /// Number of matrices stored in B (product of its own batch dims).
    pub b_count: usize,
}

impl MatmulPlan {
    /// Plans `op(A)·op(B)` for the given shapes, as `numpy.matmul` would (1-D operands are
    /// promoted and the added dim removed; up to two batch dims broadcast).
    pub fn new(a: &[usize], b: &[usize], transpose_a: bool, transpose_b: bool) -> Result<Self> {
        if a.is_empty() || b.is_empty() {
            return Err(Error::Shape(format!(
                "matmul needs operands with at least 1 dim, got shapes {a:?} and {b:?}"
            )));
        }
        let a_vec = a.len() == 1;
        let b_vec = b.len() == 1;
        // Stored 2-D shapes (rows, cols) of each operand's matrices.
        let (ar, ac) = if a_vec {
            (1, a[0])
        } else {
            (a[a.len() - 2], a[a.len() - 1])
        };
        let (br, bc) = if b_vec {
            (b[0], 1)
        } else {
            (b[b.len() - 2], b[b.len() - 1])
        };
        let (m, ka, a_rs, a_cs) = if transpose_a && !a_vec {
            (ac, ar, 1, ac)
        } else {
            (ar, ac, ac, 1)
        };
        let (kb, n, b_rs, b_cs) = if transpose_b && !b_vec {
            (bc, br, 1, bc)
        } else {
            (br, bc, bc, 1)
        };
        let t = |f: bool| if f { "ᵀ" } else { "" };
        if ka != kb {
            return Err(Error::Shape(format!(
                "matmul of A{} with shape {a:?} and B{} with shape {b:?}: inner dims differ ({ka} vs {kb})",
                t(transpose_a),
                t(transpose_b)
            )));
        }
        let a_batch: &[usize] = if a_vec { &[] } else { &a[..a.len() - 2] };
        let b_batch: &[usize] = if b_vec { &[] } else { &b[..b.len() - 2] };
        if a_batch.len() > 2 || b_batch.len() > 2 {
            return Err(Error::Shape(format!(
                "matmul supports at most 2 batch dims, got shapes {a:?} and {b:?}"
            )));
        }
        let pad = |bd: &[usize]| -> [usize; 2] {
            match bd {
                [] => [1, 1],
                [x] => [1, *x],
                [x, y, ..] => [*x, *y],
            }
        };
        let (pa, pb) = (pad(a_batch), pad(b_batch));
        let mut batch = [1usize; 2];
        for d in 0..2 {
            batch[d] = match (pa[d], pb[d]) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => {
                    return Err(Error::Shape(format!(
                        "matmul batch dims {a_batch:?} of {a:?} and {b_batch:?} of {b:?} do not broadcast"
                    )))
                }
            };
        }
        let strides = |p: [usize; 2], mat: usize| -> [usize; 2] {
            let s1 = if p[1] == 1 { 0 } else { mat };
            let s0 = if p[0] == 1 { 0 } else { mat * p[1] };
            [s0, s1]
        };
        let a_bs = strides(pa, ar * ac);
        let b_bs = strides(pb, br * bc);
        let nd = a_batch.len().max(b_batch.len());
        let mut out_shape: Vec<usize> = batch[2 - nd..].to_vec();
        if !a_vec {
            out_shape.push(m);
        }
        if !b_vec {
            out_shape.push(n);
        }
        Ok(MatmulPlan {
            m,
            k: ka,
            n,
            batch,
            out_shape,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
            a_bs,
            b_bs,
            b_count: pb[0] * pb[1],
        })
    }

    /// Number of matrices in the result.
    pub fn batches(&self) -> usize {
        self.batch[0] * self.batch[1]
    }

    /// Offset of batch `z`'s matrix in A.
    pub fn a_base(&self, z: usize) -> usize {
        (z / self.batch[1]) * self.a_bs[0] + (z % self.batch[1]) * self.a_bs[1]
    }

    /// Whether the blocked kernel's vec4 loads of A (bound from element `offset`) along its
    /// contiguous dimension are 16-byte aligned: that dimension's stride is 1 and the offset
    /// and every other stride are multiples of 4.
    pub(crate) fn a_vec4_aligned(&self, offset: usize) -> bool {
        vec4_aligned(
            (self.a_rs, self.a_cs),
            &[offset, self.a_bs[0], self.a_bs[1]],
        )
    }

    /// Distance between consecutive stored matrices of B (k·n for a batched B; the slice
    /// stride of a split k).
    pub(crate) fn b_stored_stride(&self) -> usize {
        match self.b_bs {
            [_, s] if s != 0 => s,
            [s, _] if s != 0 => s,
            _ => self.k * self.n,
        }
    }

    /// One past the last element of B any batch reads (the stored size for contiguous
    /// operands; more for the strided slices of a split k).
    pub(crate) fn b_extent(&self) -> usize {
        let last = self.b_base(self.batches().max(1) - 1);
        reach(last, (self.k, self.b_rs), (self.n, self.b_cs)).max(self.b_count * self.k * self.n)
    }

    /// One past the last element of A any batch reads (see [`MatmulPlan::b_extent`]).
    pub(crate) fn a_extent(&self) -> usize {
        let last = self.a_base(self.batches().max(1) - 1);
        reach(last, (self.m, self.a_rs), (self.k, self.a_cs)).max(last + self.m * self.k)
    }

    /// Offset of batch `z`'s matrix in B.
    pub fn b_base(&self, z: usize) -> usize {
        (z / self.batch[1]) * self.b_bs[0] + (z % self.batch[1]) * self.b_bs[1]
    }

    /// Floating-point operations: 2·m·n·k per batch.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batches() as f64
    }

    /// Checks a bias tensor's shape against this plan.
    pub fn check_bias(&self, bias: Option<&Tensor>) -> Result<()> {
        if let Some(b) = bias {
            if b.shape() != [self.n] {
                return Err(Error::Shape(format!(
                    "bias has shape {:?} but the matmul result has {} columns (shape {:?}); expected bias shape [{}]",
                    b.shape(),
                    self.n,
                    self.out_shape,
                    self.n
                )));
            }
            if b.dtype() != DType::F32 {
                return Err(Error::InvalidArgument("bias must be float32".into()));
            }
        }
        Ok(())
    }
}

/// One past the last element a `rows`×`cols` matrix at `base` with strides (`rs`, `cs`)
/// reaches (an empty dimension counts as one).
fn reach(base: usize, (rows, rs): (usize, usize), (cols, cs): (usize, usize)) -> usize {
    base + (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
}

/// Whether vec4 loads along an operand's contiguous dimension (strides (`rs`, `cs`), one of
/// them 1) are 16-byte aligned: the other stride and every offset or batch stride in `rest`
/// are multiples of 4 elements. `false` when neither stride is 1.
pub(crate) fn vec4_aligned((rs, cs): (usize, usize), rest: &[usize]) -> bool {
    let other = if cs == 1 {
        rs
    } else if rs == 1 {
        cs
    } else {
        return false;
    };
    std::iter::once(other)
        .chain(rest.iter().copied())
        .all(|s| s % 4 == 0)
}
