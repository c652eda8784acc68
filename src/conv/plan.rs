//! The conv plan: shapes and options, shared by the GPU and the CPU path.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::fmt;
use std::str::FromStr;

/// Padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Zero padding of (height, width) on both sides.
    Explicit([usize; 2]),
    /// Output as large as the input (stride 1 only); an odd total goes to the bottom/right, as
    /// PyTorch does.
    Same,
    /// No padding.
    Valid,
}

impl Default for Padding {
    fn default() -> Self {
        Padding::Explicit([0, 0])
    }
}

impl From<usize> for Padding {
    fn from(p: usize) -> Self {
        Padding::Explicit([p, p])
    }
}

impl From<[usize; 2]> for Padding {
    fn from(p: [usize; 2]) -> Self {
        Padding::Explicit(p)
    }
}

impl FromStr for Padding {
    type Err = Error;
    /// `same`, `valid`, `P` or `PH,PW`.
    fn from_str(s: &str) -> Result<Padding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "same" => Ok(Padding::Same),
            "valid" => Ok(Padding::Valid),
            other => Ok(Padding::Explicit(parse_pair(other, "padding")?)),
        }
    }
}

/// Parses `N` or `H,W` into a pair, for the CLI.
pub fn parse_pair(s: &str, what: &str) -> Result<[usize; 2]> {
    let nums: Vec<std::result::Result<usize, _>> = s.split(',').map(|t| t.trim().parse()).collect();
    match nums.as_slice() {
        [Ok(a)] => Ok([*a, *a]),
        [Ok(a), Ok(b)] => Ok([*a, *b]),
        _ => Err(Error::InvalidArgument(format!(
            "bad {what} '{s}'; expected a number or two numbers 'H,W'"
        ))),
    }
}

/// A conv kernel and its tile sizes: `naive` or `gemm:RMxRN4@WG` (output channels × groups of
/// four output positions per thread, workgroup size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvConfig {
    /// One thread per output element.
    Naive,
    /// Implicit GEMM, register-blocked.
    Gemm {
        /// Output channels per thread (1..=8).
        rows: u32,
        /// Groups of four output positions per thread (1..=4).
        cols: u32,
        /// Workgroup size (1..=256).
        workgroup: u32,
    },
}

impl ConvConfig {
    /// An implicit-GEMM configuration.
    pub const fn gemm(rows: u32, cols: u32, workgroup: u32) -> ConvConfig {
        ConvConfig::Gemm {
            rows,
            cols,
            workgroup,
        }
    }

    /// The candidates the tuner times.
    pub fn candidates() -> Vec<ConvConfig> {
        vec![
            ConvConfig::gemm(4, 2, 64),
            ConvConfig::gemm(4, 4, 64),
            ConvConfig::gemm(8, 1, 64),
            ConvConfig::gemm(8, 2, 64),
            ConvConfig::gemm(8, 2, 16),
            ConvConfig::gemm(8, 4, 64),
            ConvConfig::gemm(8, 4, 32),
        ]
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match *self {
            ConvConfig::Naive => Ok(()),
            ConvConfig::Gemm {
                rows,
                cols,
                workgroup,
            } if (1..=8).contains(&rows)
                && (1..=4).contains(&cols)
                && (1..=256).contains(&workgroup) =>
            {
                Ok(())
            }
            _ => Err(Error::InvalidArgument(format!(
                "conv kernel configuration {self} is out of range (gemm: RM in 1..=8, RN4 in 1..=4, WG in 1..=256)"
            ))),
        }
    }
}

impl fmt::Display for ConvConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvConfig::Naive => write!(f, "naive"),
            ConvConfig::Gemm {
                rows,
                cols,
                workgroup,
            } => write!(f, "gemm:{rows}x{cols}@{workgroup}"),
        }
    }
}

impl FromStr for ConvConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<ConvConfig> {
        let bad = || {
            Error::InvalidArgument(format!(
                "bad conv kernel '{s}'; expected naive or gemm:RMxRN4@WG"
            ))
        };
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let cfg = match s.trim().split_once(':') {
            None if s.trim() == "naive" => ConvConfig::Naive,
            Some(("gemm", rest)) => {
                let (dims, wg) = rest.split_once('@').unwrap_or((rest, "64"));
                let (a, b) = dims.split_once('x').ok_or_else(bad)?;
                ConvConfig::gemm(num(a)?, num(b)?, num(wg)?)
            }
            _ => return Err(bad()),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Options of the convolutions. `stride`, `dilation` and explicit padding are (height, width);
/// `conv1d` uses the width components.
#[derive(Clone, Copy, Debug)]
pub struct ConvOptions<'a> {
    /// Stride, each ≥ 1.
    pub stride: [usize; 2],
    /// Zero padding.
    pub padding: Padding,
    /// Dilation, each ≥ 1.
    pub dilation: [usize; 2],
    /// Groups: input and output channels split into this many independent convolutions.
    pub groups: usize,
    /// `conv_transpose2d` only: extra rows/columns on the bottom/right of the output.
    pub output_padding: [usize; 2],
    /// Bias of shape `[C_out]`.
    pub bias: Option<&'a Tensor>,
    /// Activation after the bias.
    pub activation: Activation,
    /// Force a kernel (GPU only).
    pub kernel: Option<ConvConfig>,
}

impl Default for ConvOptions<'_> {
    fn default() -> Self {
        ConvOptions {
            stride: [1, 1],
            padding: Padding::default(),
            dilation: [1, 1],
            groups: 1,
            output_padding: [0, 0],
            bias: None,
            activation: Activation::None,
            kernel: None,
        }
    }
}

/// Which convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// `torch.nn.functional.conv1d`.
    Conv1d,
    /// `torch.nn.functional.conv2d`.
    Conv2d,
    /// `torch.nn.functional.conv_transpose2d`.
    ConvTranspose2d,
}

impl ConvKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ConvKind::Conv1d => "conv1d",
            ConvKind::Conv2d => "conv2d",
            ConvKind::ConvTranspose2d => "conv_transpose2d",
        }
    }
}

/// Every size of one convolution, derived once from the shapes and options (PyTorch's rules).
///
/// Weight element (co, ci, kh, kw) of group g is `w[g*w_g + co*w_co + ci*w_ci + kh*kw_len + kw]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// Which convolution.
    pub kind: ConvKind,
    /// Images.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Groups.
    pub groups: usize,
    /// Input channels per group.
    pub cig: usize,
    /// Output channels per group.
    pub cog: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height and width.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding on the top and the left.
    pub pad: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Weight strides: per group, per output channel, per input channel.
    pub w_g: usize,
    /// Weight stride per output channel.
    pub w_co: usize,
    /// Weight stride per input channel.
    pub w_ci: usize,
    /// Shape of the result.
    pub out_shape: Vec<usize>,
}

pub(crate) fn shape_err(kind: ConvKind, msg: String) -> Error {
    Error::Shape(format!("{}: {msg}", kind.name()))
}

impl ConvPlan {
    /// Plans a convolution of input `x` with weight `wt` (shapes as PyTorch takes them).
    pub fn new(kind: ConvKind, x: &[usize], wt: &[usize], o: &ConvOptions) -> Result<ConvPlan> {
        let (spatial, name) = match kind {
            ConvKind::Conv1d => (1, "(N, C, L) or (C, L)"),
            _ => (2, "(N, C, H, W) or (C, H, W)"),
        };
        let err = |m: String| shape_err(kind, m);
        let batched = x.len() == spatial + 2;
        if x.len() != spatial + 1 && !batched {
            return Err(err(format!("input has shape {x:?}; expected {name}")));
        }
        if wt.len() != spatial + 2 {
            return Err(err(format!(
                "weight has shape {wt:?}; expected {} dims",
                spatial + 2
            )));
        }
        let n = if batched { x[0] } else { 1 };
        let xs = &x[x.len() - spatial - 1..];
        let cin = xs[0];
        let (h, w) = if spatial == 1 {
            (1, xs[1])
        } else {
            (xs[1], xs[2])
        };
        let (kh, kw) = if spatial == 1 {
            (1, wt[2])
        } else {
            (wt[2], wt[3])
        };
        let pick = |p: [usize; 2]| if spatial == 1 { [1, p[1]] } else { p };
        let stride = pick(o.stride);
        let dilation = pick(o.dilation);
        let g = o.groups;
        if g == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: groups must be ≥ 1",
                kind.name()
            )));
        }
        if stride.contains(&0) || dilation.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "{}: stride {:?} and dilation {:?} must be ≥ 1",
                kind.name(),
                o.stride,
                o.dilation
            )));
        }
        if kh == 0 || kw == 0 {
            return Err(err(format!("weight {wt:?} has an empty kernel")));
        }
        if !cin.is_multiple_of(g) {
            return Err(err(format!("channels {cin} not divisible by groups {g}")));
        }
        let cig = cin / g;
        let transposed = kind == ConvKind::ConvTranspose2d;
        let (cout, cog) = if transposed {
            if wt[0] != cin {
                return Err(err(format!(
                    "weight {wt:?} is for {} input channels (shape[0]); the input {x:?} has {cin}",
                    wt[0]
                )));
            }
            (wt[1] * g, wt[1])
        } else {
            if wt[1] * g != cin {
                return Err(err(format!(
                    "weight {wt:?} expects {} input channels (shape[1] {} × groups {g}); the input {x:?} has {cin}",
                    wt[1] * g,
                    wt[1]
                )));
            }
            if !wt[0].is_multiple_of(g) {
                return Err(err(format!(
                    "output channels {} (weight {wt:?}) not divisible by groups {g}",
                    wt[0]
                )));
            }
            (wt[0], wt[0] / g)
        };
        let k = [kh, kw];
        let input = [h, w];
        // Padding: top/left, and the total per dim.
        let (pad, total) = match o.padding {
            Padding::Valid => ([0, 0], [0, 0]),
            Padding::Explicit(p) => {
                let p = if spatial == 1 { [0, p[1]] } else { p };
                (p, [2 * p[0], 2 * p[1]])
            }
            Padding::Same => {
                if transposed {
                    return Err(Error::InvalidArgument(
                        "conv_transpose2d takes explicit padding, not 'same'".into(),
                    ));
                }
                if stride != [1, 1] {
                    return Err(Error::InvalidArgument(format!(
                        "{}: padding 'same' is not supported for strided convolutions (stride {:?})",
                        kind.name(),
                        o.stride
                    )));
                }
                let t = [dilation[0] * (k[0] - 1), dilation[1] * (k[1] - 1)];
                ([t[0] / 2, t[1] / 2], t)
            }
        };
        let mut out = [0usize; 2];
        for d in 0..2 {
            let span = dilation[d] * (k[d] - 1);
            let size = if transposed {
                let op = if spatial == 1 && d == 0 {
                    0
                } else {
                    o.output_padding[d]
                };
                if op >= stride[d] && op >= dilation[d] {
                    return Err(Error::InvalidArgument(format!(
                        "conv_transpose2d: output padding {op} must be smaller than stride {} or dilation {}",
                        stride[d], dilation[d]
                    )));
                }
                ((input[d] as i64 - 1) * stride[d] as i64 - 2 * pad[d] as i64
                    + span as i64
                    + op as i64
                    + 1)
                .max(0)
            } else {
                let padded = input[d] as i64 + total[d] as i64;
                if padded < span as i64 + 1 {
                    0
                } else {
                    (padded - span as i64 - 1) / stride[d] as i64 + 1
                }
            };
            if size <= 0 || (input[d] == 0 && !transposed) {
                return Err(err(format!(
                    "output size {} along {} is not positive (input {x:?}, kernel {}, stride {}, padding {}, dilation {})",
                    if input[d] == 0 { 0 } else { size },
                    if spatial == 1 || d == 1 { "width" } else { "height" },
                    k[d],
                    stride[d],
                    pad[d],
                    dilation[d]
                )));
            }
            out[d] = size as usize;
        }
        if !transposed && o.output_padding != [0, 0] {
            return Err(Error::InvalidArgument(format!(
                "{}: output_padding is only for conv_transpose2d",
                kind.name()
            )));
        }
        let khw = kh * kw;
        let (w_g, w_co, w_ci) = if transposed {
            (cig * cog * khw, khw, cog * khw)
        } else {
            (cog * cig * khw, cig * khw, khw)
        };
        let mut out_shape = Vec::new();
        if batched {
            out_shape.push(n);
        }
        out_shape.push(cout);
        if spatial == 2 {
            out_shape.push(out[0]);
        }
        out_shape.push(out[1]);
        let plan = ConvPlan {
            kind,
            n,
            cin,
            cout,
            groups: g,
            cig,
            cog,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            dilation,
            oh: out[0],
            ow: out[1],
            w_g,
            w_co,
            w_ci,
            out_shape,
        };
        if let Some(b) = o.bias {
            if b.shape() != [cout] {
                return Err(err(format!(
                    "bias has shape {:?}; expected [{cout}] (one per output channel)",
                    b.shape()
                )));
            }
        }
        Ok(plan)
    }

    /// One input channel per group, several groups: a depthwise convolution.
    pub fn is_depthwise(&self) -> bool {
        self.cig == 1 && self.groups > 1
    }

    /// Output positions per channel (oh · ow).
    pub fn m(&self) -> usize {
        self.oh * self.ow
    }

    /// Terms per output element: cig · kh · kw.
    pub fn k(&self) -> usize {
        self.cig * self.kh * self.kw
    }

    /// Floating-point operations (2 per multiply-add, padded taps included).
    pub fn flops(&self) -> f64 {
        2.0 * self.n as f64 * self.cout as f64 * self.m() as f64 * self.k() as f64
    }

    /// Input offset (within one channel) of output position (oh, ow) at tap (kh, kw), or `None`
    /// in the padding — the same rule as `tap_offset` in `shaders/conv.wgsl`.
    pub fn tap(&self, oh: usize, ow: usize, kh: usize, kw: usize) -> Option<usize> {
        let (s, p, d) = (self.stride, self.pad, self.dilation);
        let map = |o: usize, k: usize, dim: usize| -> Option<usize> {
            let (o, k) = (o as i64, k as i64);
            let (s, p, d) = (s[dim] as i64, p[dim] as i64, d[dim] as i64);
            let i = if self.kind == ConvKind::ConvTranspose2d {
                let t = o + p - k * d;
                if t < 0 || t % s != 0 {
                    return None;
                }
                t / s
            } else {
                o * s - p + k * d
            };
            let limit = if dim == 0 { self.h } else { self.w } as i64;
            (0..limit).contains(&i).then_some(i as usize)
        };
        Some(map(oh, kh, 0)? * self.w + map(ow, kw, 1)?)
    }
}
