//! The reduce plan: shapes and options, shared by the GPU and the CPU path.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A reduction (or a normalisation along an axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Σx (0 for no elements).
    Sum,
    /// Σx / n (NaN for no elements).
    Mean,
    /// Largest value; NaN if any is NaN; an error for no elements.
    Max,
    /// Smallest value; NaN if any is NaN; an error for no elements.
    Min,
    /// Index of the largest value (first of ties, first NaN); u32. An error for no elements.
    Argmax,
    /// Index of the smallest value (first of ties, first NaN); u32. An error for no elements.
    Argmin,
    /// √Σx² (`numpy.linalg.norm` of the flattened values / along the axis).
    Norm,
    /// Σ(x − mean)² / (n − ddof), `numpy.var` (two passes).
    Var,
    /// log Σ exp(x − m) + m with m the max (0 where the max is not finite), as scipy's.
    LogSumExp,
    /// exp(x − max) / Σ exp(x − max) along an axis (default the last); same shape as the input.
    Softmax,
    /// (x − m) − log Σ exp(x − m) along an axis, m the max (0 where not finite), as scipy's.
    LogSoftmax,
}

impl ReduceOp {
    /// Every op, for tests and help texts.
    pub const ALL: [ReduceOp; 11] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Argmax,
        ReduceOp::Argmin,
        ReduceOp::Norm,
        ReduceOp::Var,
        ReduceOp::LogSumExp,
        ReduceOp::Softmax,
        ReduceOp::LogSoftmax,
    ];

    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Argmax => "argmax",
            ReduceOp::Argmin => "argmin",
            ReduceOp::Norm => "norm",
            ReduceOp::Var => "var",
            ReduceOp::LogSumExp => "logsumexp",
            ReduceOp::Softmax => "softmax",
            ReduceOp::LogSoftmax => "log-softmax",
        }
    }

    /// True for argmax/argmin, whose results are u32 indices.
    pub fn is_arg(self) -> bool {
        matches!(self, ReduceOp::Argmax | ReduceOp::Argmin)
    }

    /// True for softmax/log-softmax, whose result has the input's shape.
    pub fn is_normalization(self) -> bool {
        matches!(self, ReduceOp::Softmax | ReduceOp::LogSoftmax)
    }

    /// The shader's `OP` id of the op's (last) reduction pass.
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Mean => 1,
            ReduceOp::Max => 2,
            ReduceOp::Min => 3,
            ReduceOp::Argmax => 4,
            ReduceOp::Argmin => 5,
            ReduceOp::Norm => 6,
            ReduceOp::Var => 7,
            ReduceOp::LogSumExp => 8,
            ReduceOp::Softmax | ReduceOp::LogSoftmax => 9,
        }
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReduceOp {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReduceOp> {
        let l = s.trim().to_ascii_lowercase().replace('_', "-");
        ReduceOp::ALL
            .into_iter()
            .find(|o| o.name() == l)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown reduction '{s}'; expected one of {}",
                    ReduceOp::ALL.map(|o| o.name()).join(", ")
                ))
            })
    }
}

/// How a workgroup combines its threads' partial results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKernel {
    /// A tree over workgroup memory with barriers (every adapter).
    Tree,
    /// Subgroup operations (`subgroupAdd` …), then one barrier; needs `Features::SUBGROUP`.
    Subgroup,
    /// One invocation per segment, no workgroup combine: uniform addresses, which CPU-type
    /// adapters such as lavapipe load without per-lane gathers (their fastest).
    Serial,
}

impl ReduceKernel {
    /// Every kernel.
    pub const ALL: [ReduceKernel; 3] = [
        ReduceKernel::Tree,
        ReduceKernel::Subgroup,
        ReduceKernel::Serial,
    ];
}

impl fmt::Display for ReduceKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReduceKernel::Tree => "tree",
            ReduceKernel::Subgroup => "subgroup",
            ReduceKernel::Serial => "serial",
        })
    }
}

impl FromStr for ReduceKernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReduceKernel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tree" => Ok(ReduceKernel::Tree),
            "subgroup" => Ok(ReduceKernel::Subgroup),
            "serial" => Ok(ReduceKernel::Serial),
            _ => Err(Error::InvalidArgument(format!(
                "bad reduce kernel '{s}'; expected tree, subgroup or serial"
            ))),
        }
    }
}

/// Options of [`Context::reduce`](crate::Context::reduce).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReduceOptions {
    /// The axis (negative counts from the end); `None` reduces all elements (softmax: the last
    /// axis).
    pub axis: Option<isize>,
    /// Keep the reduced axis (axes) as length 1.
    pub keepdims: bool,
    /// Delta degrees of freedom of [`ReduceOp::Var`]: the divisor is n − ddof.
    pub ddof: usize,
    /// Force a workgroup combine (GPU only).
    pub kernel: Option<ReduceKernel>,
}

impl ReduceOptions {
    /// Options reducing `axis` (or all with `None`), other fields default.
    pub fn axis(axis: Option<isize>) -> ReduceOptions {
        ReduceOptions {
            axis,
            ..Default::default()
        }
    }
}

/// A reduction planned from a shape: the (outer, len, inner) view and the result shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReducePlan {
    /// The op.
    pub op: ReduceOp,
    /// Product of the dims before the axis.
    pub outer: usize,
    /// Length of the reduced axis (all elements for a full reduction).
    pub len: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
    /// Shape of the result.
    pub out_shape: Vec<usize>,
    /// Delta degrees of freedom (var).
    pub ddof: usize,
}

impl ReducePlan {
    /// Plans `op` over `shape` with `opts` (numpy's rules; errors name the shape and axis).
    pub fn new(op: ReduceOp, shape: &[usize], opts: &ReduceOptions) -> Result<ReducePlan> {
        let nd = shape.len();
        let axis = match (opts.axis, op.is_normalization()) {
            (None, false) => None,
            (None, true) if nd == 0 => None,
            (None, true) => Some(nd - 1),
            (Some(a), _) => {
                let ax = if a < 0 { a + nd as isize } else { a };
                if ax < 0 || ax >= nd as isize {
                    return Err(Error::InvalidArgument(format!(
                        "{op}: axis {a} is out of bounds for array of dimension {nd} (shape {shape:?})"
                    )));
                }
                Some(ax as usize)
            }
        };
        let n: usize = shape.iter().product();
        let (outer, len, inner, mut out_shape) = match axis {
            None => {
                let keep = if opts.keepdims { vec![1; nd] } else { vec![] };
                (1, n, 1, keep)
            }
            Some(ax) => {
                let mut s = shape.to_vec();
                if opts.keepdims {
                    s[ax] = 1;
                } else {
                    s.remove(ax);
                }
                (
                    shape[..ax].iter().product(),
                    shape[ax],
                    shape[ax + 1..].iter().product(),
                    s,
                )
            }
        };
        if op.is_normalization() {
            out_shape = shape.to_vec();
        }
        let plan = ReducePlan {
            op,
            outer,
            len,
            inner,
            out_shape,
            ddof: opts.ddof,
        };
        if len == 0 && plan.outputs() > 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            let name = if op == ReduceOp::Max {
                "maximum"
            } else {
                "minimum"
            };
            return Err(Error::InvalidArgument(format!(
                "zero-size array to reduction operation {name} which has no identity (shape {shape:?}, axis {:?})",
                opts.axis
            )));
        }
        if len == 0 && plan.outputs() > 0 && op.is_arg() {
            return Err(Error::InvalidArgument(format!(
                "attempt to get {op} of an empty sequence (shape {shape:?}, axis {:?})",
                opts.axis
            )));
        }
        Ok(plan)
    }

    /// Number of reduced results (outer · inner).
    pub fn outputs(&self) -> usize {
        self.outer * self.inner
    }

    /// Number of input elements.
    pub fn elements(&self) -> usize {
        self.outer * self.len * self.inner
    }

    /// The value of a reduction over no elements (numpy's), for ops that have one.
    pub fn empty_value(&self) -> f32 {
        match self.op {
            ReduceOp::Sum | ReduceOp::Norm => 0.0,
            ReduceOp::LogSumExp => f32::NEG_INFINITY,
            _ => f32::NAN,
        }
    }
}

/// The k of the error bound γ_k·Σ|x| that the GPU sums (and the CPU backend's) satisfy for an
/// axis of length `len`. Any summation order has k ≤ len − 1. Otherwise: each GPU accumulator
/// takes at most [`MAX_PER_THREAD`] elements with Neumaier's compensated sum, whose error is
/// ≤ 2u·Σ|x| + n·u²·Σ|x| (Higham, Accuracy and Stability, §4.3) — below 3u·Σ|x| for
/// n ≤ 2¹², where a term is a pairwise sum of up to eight loaded values (three levels) — and
/// accumulators are combined by TwoSum, exact but for the compensations' own (second-order)
/// rounding; only the subgroup combine adds the values and compensations as they are, at most
/// 128 deep (the largest subgroup) plus the ⌈log₂ len⌉ levels of the passes.
/// So k = 6 + ⌈log₂ len⌉ + 128. The CPU backend sums in f64 and rounds once.
pub fn sum_terms(len: usize) -> usize {
    let log2 = usize::BITS as usize - len.saturating_sub(1).leading_zeros() as usize;
    len.min(6 + log2 + 128).max(1)
}

/// At most this many elements are accumulated by one compensated GPU accumulator in one pass.
pub const MAX_PER_THREAD: usize = SERIAL_CHUNK / 4;

/// Elements per invocation of the serial kernel (four compensated accumulators).
pub(crate) const SERIAL_CHUNK: usize = 16384;

/// Elements per thread of the workgroup kernels.
pub(crate) const ROW_PER_THREAD: usize = 256;

/// Rows at least this long are reduced by a workgroup each (when contiguous).
pub(crate) const ROW_MIN: usize = 64;
