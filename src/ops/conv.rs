//! Convolutions with PyTorch semantics: `conv2d`, `conv1d`, `conv_transpose2d`, NCHW (or
//! unbatched CHW), groups, stride, padding (numbers, `same`, `valid`), dilation, bias and a
//! fused activation — on the GPU (implicit GEMM, `shaders/conv.wgsl`) or the CPU.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use crate::context::{Context, Gpu, GpuBuffer, View};
use crate::error::{Error, Result};
use crate::ops::matmul::host_values;
use crate::ops::{source, trusted_pipeline, Activation};
use crate::tensor::{DType, Tensor};

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

    fn validate(&self) -> Result<()> {
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
    fn name(self) -> &'static str {
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

fn shape_err(kind: ConvKind, msg: String) -> Error {
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

    /// The kernels' uniform block; `col_off` is the first workgroup along the output-position
    /// dimension of this dispatch, `x_off` / `y_off` the element offsets of the first image
    /// inside the bound input and output windows.
    fn params(&self, col_off: usize, x_off: usize, y_off: usize) -> Result<Vec<u32>> {
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| {
                Error::InvalidArgument(format!(
                    "conv size {v} exceeds the GPU kernels' 32-bit range"
                ))
            })
        };
        let i = |v: usize| -> Result<u32> {
            i32::try_from(v)
                .map(|x| x as u32)
                .map_err(|_| Error::InvalidArgument(format!("conv size {v} exceeds 31 bits")))
        };
        Ok(vec![
            u(self.groups)?,
            u(self.cig)?,
            u(self.cog)?,
            u(self.cin)?,
            u(self.cout)?,
            u(self.h)?,
            u(self.w)?,
            u(self.oh)?,
            u(self.ow)?,
            u(self.kh)?,
            u(self.kw)?,
            i(self.stride[0])?,
            i(self.stride[1])?,
            i(self.pad[0])?,
            i(self.pad[1])?,
            i(self.dilation[0])?,
            i(self.dilation[1])?,
            u(self.m())?,
            u(self.w_g)?,
            u(self.w_co)?,
            u(self.w_ci)?,
            0,
            u(col_off)?,
            u(x_off)?,
            u(y_off)?,
            0,
            0,
        ])
    }
}

fn pipeline(
    gpu: &Gpu,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<crate::context::Kernel>> {
    let key = format!("conv/{entry}/{constants:?}");
    // SAFETY: every index in shaders/conv.wgsl is guarded, clamped or zero-offset against
    // sizes the host derives from the operand shapes (ConvPlan) and binding windows, and the
    // host binds buffers at least that large; no loop in it is unbounded.
    unsafe {
        trusted_pipeline(
            gpu,
            &key,
            "conv.wgsl",
            || source::with_epilogue(source::CONV),
            entry,
            constants,
        )
    }
}

/// Runs the convolution. Inputs and outputs larger than one storage binding are processed a
/// chunk of whole images at a time, each bound through a window aligned to
/// `min_storage_buffer_offset_alignment` (the kernel adds the element offsets `x_off`, `y_off`);
/// output positions beyond the dispatch limit are split across dispatches (`col_off`).
fn run_gpu(
    gpu: &Arc<Gpu>,
    plan: &ConvPlan,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&Arc<GpuBuffer>>,
    act: Activation,
    config: ConvConfig,
) -> Result<Arc<GpuBuffer>> {
    let out_len = plan.n * plan.cout * plan.m();
    let out = gpu.alloc((out_len * 4) as u64, "conv result")?;
    if out_len == 0 {
        return Ok(out);
    }
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let mut constants: Vec<(&str, f64)> = vec![
        ("HAS_BIAS", if bias.is_some() { 1.0 } else { 0.0 }),
        ("ACT", f64::from(act.shader_id())),
        (
            "TRANSPOSED",
            if plan.kind == ConvKind::ConvTranspose2d {
                1.0
            } else {
                0.0
            },
        ),
    ];
    // (entry point, workgroups per image along [x, y], z per image, position dimension)
    let (entry, per_image, z_per_image, pos_dim) = match config {
        ConvConfig::Naive => ("conv_naive", [plan.m().div_ceil(64), plan.cout], 1, 0),
        ConvConfig::Gemm {
            rows,
            cols,
            workgroup,
        } => {
            // Never more rows per thread than a group has channels (depthwise: 1), and no
            // wider a workgroup than the output positions need (a 14×14 layer fills 25 threads
            // of 8 positions: 32, not 64), keeping at least 8 lanes.
            let rows = rows.min(plan.cog.max(1) as u32);
            let needed = plan
                .m()
                .div_ceil(4 * cols as usize)
                .next_power_of_two()
                .max(8);
            let workgroup = workgroup.min(u32::try_from(needed).unwrap_or(u32::MAX));
            constants.push(("RM", f64::from(rows)));
            constants.push(("RN4", f64::from(cols)));
            constants.push(("WG", f64::from(workgroup)));
            let per_group = 4 * cols as usize * workgroup as usize;
            (
                "conv_gemm",
                [
                    plan.cog.div_ceil(rows as usize),
                    plan.m().div_ceil(per_group),
                ],
                plan.groups,
                1,
            )
        }
    };
    // The non-position dimension of the grid may not be split.
    if per_image[1 - pos_dim] > limit || z_per_image > limit {
        return Err(Error::InvalidArgument(format!(
            "{} {:?}: needs {} workgroups along one dimension, above this adapter's limit of {limit}",
            plan.kind.name(),
            plan.out_shape,
            per_image[1 - pos_dim].max(z_per_image)
        )));
    }
    let w_bytes = (plan.groups * plan.w_g * 4).max(4) as u64;
    gpu.check_binding(w_bytes, "conv weight")?;
    let (x_img, y_img) = (plan.cin * plan.h * plan.w, plan.cout * plan.m());
    let bind_limit = gpu.limits.max_storage_buffer_binding_size;
    let align = u64::from(gpu.limits.min_storage_buffer_offset_alignment).max(4);
    let room = bind_limit.saturating_sub(align) as usize / 4;
    let largest = x_img.max(y_img);
    if largest > room {
        gpu.check_binding(
            (largest * 4) as u64 + align,
            "one image of the conv input or output",
        )?;
    }
    // Images per chunk: as many as fit one binding (all of them when everything fits) and
    // the grid's z limit.
    let per_chunk =
        if plan.n * x_img * 4 <= bind_limit as usize && out_len * 4 <= bind_limit as usize {
            plan.n
        } else {
            room / largest.max(1)
        }
        .min(limit / z_per_image)
        .max(1);
    let kernel = pipeline(gpu, entry, &constants)?;
    let dummy;
    let bias_buf: &GpuBuffer = match bias {
        Some(b) => b,
        None => {
            dummy = gpu.alloc(4, "conv bias placeholder")?;
            &dummy
        }
    };
    let bias_bytes = if bias.is_some() { plan.cout * 4 } else { 4 } as u64;
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("conv"),
        });
    let mut keep = Vec::new();
    let mut n0 = 0;
    while n0 < plan.n {
        let n1 = (n0 + per_chunk).min(plan.n);
        let chunk = ConvPlan {
            n: n1 - n0,
            ..plan.clone()
        };
        let xv = View::window(n0 * x_img, n1 * x_img, align);
        let yv = View::window(n0 * y_img, n1 * y_img, align);
        let grid = [per_image[0], per_image[1], (n1 - n0) * z_per_image];
        let mut col_off = 0;
        while col_off < grid[pos_dim] {
            let count = (grid[pos_dim] - col_off).min(limit);
            let u = gpu.uniform(&chunk.params(col_off, xv.elem_off, yv.elem_off)?)?;
            let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &kernel.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: u.binding(PARAMS_BYTES),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: x.binding_range(xv.offset, xv.size),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: w.binding(w_bytes),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: bias_buf.binding(bias_bytes),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: out.binding_range(yv.offset, yv.size),
                    },
                ],
            });
            {
                let mut g = grid;
                g[pos_dim] = count;
                let mut pass = gpu.begin_pass(&mut enc);
                pass.set_pipeline(&kernel.pipeline);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(g[0] as u32, g[1] as u32, g[2] as u32);
            }
            keep.push(u);
            col_off += count;
        }
        n0 = n1;
    }
    gpu.submit(enc);
    drop(keep);
    Ok(out)
}

/// Bytes of the kernels' uniform block (`ConvParams` in shaders/conv.wgsl).
const PARAMS_BYTES: u64 = 112;

impl Context {
    /// `torch.nn.functional.conv2d`: input NCHW (or CHW), weight `[C_out, C_in/groups, KH, KW]`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::{ConvOptions, Padding};
    /// let x = ctx.tensor(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.])?;
    /// let w = ctx.tensor(&[1, 1, 2, 2], &[1., 0., 0., 1.])?;
    /// let y = ctx.conv2d(&x, &w, &ConvOptions { padding: Padding::Valid, ..Default::default() })?;
    /// assert_eq!(y.shape(), &[1, 1, 2, 2]);
    /// assert_eq!(y.to_vec()?, vec![6., 8., 12., 14.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn conv2d(&self, x: &Tensor, w: &Tensor, opts: &ConvOptions) -> Result<Tensor> {
        self.conv(ConvKind::Conv2d, x, w, opts)
    }

    /// `torch.nn.functional.conv1d`: input NCL (or CL), weight `[C_out, C_in/groups, K]`; the
    /// width components of `stride`, `padding` and `dilation` apply.
    pub fn conv1d(&self, x: &Tensor, w: &Tensor, opts: &ConvOptions) -> Result<Tensor> {
        self.conv(ConvKind::Conv1d, x, w, opts)
    }

    /// `torch.nn.functional.conv_transpose2d`: weight `[C_in, C_out/groups, KH, KW]`, with
    /// `output_padding` (each smaller than the stride or the dilation).
    pub fn conv_transpose2d(&self, x: &Tensor, w: &Tensor, opts: &ConvOptions) -> Result<Tensor> {
        self.conv(ConvKind::ConvTranspose2d, x, w, opts)
    }

    /// Any of the three convolutions.
    pub fn conv(
        &self,
        kind: ConvKind,
        x: &Tensor,
        w: &Tensor,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        for (name, t) in [("input", x), ("weight", w)]
            .into_iter()
            .chain(opts.bias.map(|b| ("bias", b)))
        {
            if t.dtype() != DType::F32 {
                return Err(Error::InvalidArgument(format!(
                    "{} {name} (shape {:?}) is {}; expected float32",
                    kind.name(),
                    t.shape(),
                    t.dtype().name()
                )));
            }
        }
        let plan = ConvPlan::new(kind, x.shape(), w.shape(), opts)?;
        if let Some(k) = opts.kernel {
            k.validate()?;
        }
        if let Some(gpu) = self.gpu() {
            if gpu.info.device_type == wgpu::DeviceType::Cpu
                && plan.k() > crate::ops::matmul::MAX_K_PER_PASS_CPU_ADAPTER
            {
                return self.conv_split_channels(kind, &plan, x, w, opts);
            }
            let r = (|| {
                let config = match opts.kernel {
                    Some(c) => c,
                    None => self.conv_config_for(&plan)?,
                };
                let (xb, wb) = (self.resident(x)?, self.resident(w)?);
                let bb = opts.bias.map(|b| self.resident(b)).transpose()?;
                let out = gpu.scoped(kind.name(), || {
                    run_gpu(gpu, &plan, &xb, &wb, bb.as_ref(), opts.activation, config)
                })??;
                Ok(Tensor::from_gpu(plan.out_shape.clone(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let host = self.conv_cpu(&plan, x, w, opts)?;
            return self.tensor(host.shape(), &host.to_vec()?);
        }
        self.conv_cpu(&plan, x, w, opts)
    }

    /// A convolution whose reduction (C_in·KH·KW) is too long for one pass on a CPU-type
    /// adapter (see [`crate::MAX_K_PER_PASS_CPU_ADAPTER`]): the sum of the convolutions of
    /// slices of the input channels, then the bias and the activation. Grouped convolutions
    /// that long are refused with an error naming the limit.
    fn conv_split_channels(
        &self,
        kind: ConvKind,
        plan: &ConvPlan,
        x: &Tensor,
        w: &Tensor,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let limit = crate::ops::matmul::MAX_K_PER_PASS_CPU_ADAPTER;
        if plan.groups != 1 {
            return Err(Error::InvalidArgument(format!(
                "{}: a reduction of {} terms per output in a grouped convolution exceeds the \
                 {limit} one pass of this CPU-type adapter runs (llvmpipe ends long loops); \
                 use the CPU backend",
                kind.name(),
                plan.k()
            )));
        }
        let spatial = w.ndim().saturating_sub(2);
        let x_axis = x.ndim().saturating_sub(spatial + 1);
        let w_axis = usize::from(!matches!(kind, ConvKind::ConvTranspose2d));
        let taps = (plan.kh * plan.kw).max(1);
        if taps > limit {
            return Err(Error::InvalidArgument(format!(
                "{}: a kernel of {taps} taps exceeds the {limit} one pass of this CPU-type \
                 adapter runs (llvmpipe ends long loops); use the CPU backend",
                kind.name()
            )));
        }
        let step = limit / taps;
        let part_opts = ConvOptions {
            bias: None,
            activation: Activation::None,
            ..*opts
        };
        let mut sum: Option<Tensor> = None;
        let mut c0 = 0;
        while c0 < plan.cin {
            let c1 = (c0 + step).min(plan.cin);
            let part = self.conv(
                kind,
                &self.slice_axis(x, x_axis, c0, c1)?,
                &self.slice_axis(w, w_axis, c0, c1)?,
                &part_opts,
            )?;
            sum = Some(match sum {
                None => part,
                Some(s) => self.add(&s, &part)?,
            });
            c0 = c1;
        }
        let mut out =
            sum.ok_or_else(|| Error::Shape(format!("{}: no input channels", kind.name())))?;
        if let Some(b) = opts.bias {
            let mut shape = vec![plan.cout];
            shape.extend(std::iter::repeat_n(1, spatial));
            out = self.add(&out, &b.reshape(&shape)?)?;
        }
        if opts.activation != Activation::None {
            out = self.activate(&out, opts.activation)?;
        }
        Ok(out)
    }

    fn conv_cpu(
        &self,
        plan: &ConvPlan,
        x: &Tensor,
        w: &Tensor,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let bias = opts.bias.map(host_values).transpose()?;
        let out = crate::cpu::conv::fast(
            plan,
            &host_values(x)?,
            &host_values(w)?,
            bias.as_deref(),
            opts.activation,
        );
        Tensor::from_vec(&plan.out_shape, out)
    }

    /// The conv kernel this context uses for ordinary (not depthwise) convolutions: forced by
    /// `GPU_LINALG_CONV_KERNEL`, else cached on disk, else tuned now on a ResNet-like layer.
    pub fn conv_config(&self) -> Result<ConvConfig> {
        self.conv_family_config(false)
    }

    /// The conv kernel for `plan`: depthwise convolutions (one input channel per group) are
    /// tuned apart from the others, since they are bound by input gathers, not arithmetic.
    pub fn conv_config_for(&self, plan: &ConvPlan) -> Result<ConvConfig> {
        self.conv_family_config(plan.is_depthwise())
    }

    fn conv_family_config(&self, depthwise: bool) -> Result<ConvConfig> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU conv kernel".into(),
            ));
        };
        let slot = usize::from(depthwise);
        if let Some(c) = crate::context::lock(&gpu.conv_choice)[slot] {
            return Ok(c);
        }
        let family = if depthwise { "conv-depthwise" } else { "conv" };
        let choice = if let Ok(s) = std::env::var("GPU_LINALG_CONV_KERNEL") {
            s.parse()?
        } else if let Some(c) = gpu.tuned(family).and_then(|v| v.parse().ok()) {
            c
        } else {
            let results = self.tune_conv(depthwise)?;
            let best = results
                .iter()
                .filter_map(|(c, r)| r.as_ref().ok().map(|g| (*c, *g)))
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .map(|(c, _)| c)
                .ok_or_else(|| {
                    Error::Kernel(format!(
                        "no {family} kernel runs on this adapter: {results:?}"
                    ))
                })?;
            gpu.store_tuned(family, &best.to_string());
            best
        };
        crate::context::lock(&gpu.conv_choice)[slot] = Some(choice);
        Ok(choice)
    }

    /// Times every conv candidate and returns (configuration, GFLOP/s or the error that ruled
    /// it out): on 1×64×28×28 ⊛ 64×64×3×3, or for `depthwise` on 1×64×56×56 ⊛ 64×1×3×3 with
    /// 64 groups (padding 1 both).
    pub fn tune_conv(
        &self,
        depthwise: bool,
    ) -> Result<Vec<(ConvConfig, std::result::Result<f64, String>)>> {
        if self.gpu().is_none() {
            return Ok(Vec::new());
        }
        let (c, hw, cig, groups) = if depthwise {
            (64, 56, 1, 64)
        } else {
            (64, 28, 64, 1)
        };
        let xd: Vec<f32> = (0..c * hw * hw)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
            .collect();
        let wd: Vec<f32> = (0..c * cig * 9)
            .map(|i| ((i % 5) as f32 - 2.0) * 0.25)
            .collect();
        let x = self.tensor(&[1, c, hw, hw], &xd)?;
        let w = self.tensor(&[c, cig, 3, 3], &wd)?;
        let candidates = if depthwise {
            vec![
                ConvConfig::Naive,
                ConvConfig::gemm(1, 1, 64),
                ConvConfig::gemm(1, 2, 64),
                ConvConfig::gemm(1, 4, 64),
                ConvConfig::gemm(1, 4, 32),
            ]
        } else {
            ConvConfig::candidates()
        };
        let mut out = Vec::new();
        for config in candidates {
            let opts = ConvOptions {
                padding: Padding::from(1),
                groups,
                kernel: Some(config),
                ..Default::default()
            };
            let flops = ConvPlan::new(ConvKind::Conv2d, x.shape(), w.shape(), &opts)?.flops();
            let run = || -> Result<f64> {
                self.conv2d(&x, &w, &opts)?.to_vec()?;
                let mut best = f64::INFINITY;
                for _ in 0..3 {
                    let t = Instant::now();
                    let y = self.conv2d(&x, &w, &opts)?;
                    self.synchronize()?;
                    best = best.min(t.elapsed().as_secs_f64());
                    drop(y);
                }
                Ok(flops / best / 1e9)
            };
            out.push((config, run().map_err(|e| e.to_string())));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: ConvKind, x: &[usize], w: &[usize], o: ConvOptions) -> Result<ConvPlan> {
        ConvPlan::new(kind, x, w, &o)
    }

    #[test]
    fn output_sizes_follow_pytorch() {
        let p = plan(
            ConvKind::Conv2d,
            &[2, 3, 10, 11],
            &[4, 3, 3, 3],
            ConvOptions::default(),
        )
        .unwrap();
        assert_eq!(p.out_shape, vec![2, 4, 8, 9]);
        let o = ConvOptions {
            stride: [2, 3],
            padding: Padding::from([1, 2]),
            dilation: [2, 1],
            ..Default::default()
        };
        let p = plan(ConvKind::Conv2d, &[3, 10, 11], &[4, 3, 3, 3], o).unwrap();
        // (10 + 2 - 4 - 1)/2 + 1 = 4; (11 + 4 - 2 - 1)/3 + 1 = 5
        assert_eq!(p.out_shape, vec![4, 4, 5]);
        let o = ConvOptions {
            padding: Padding::Same,
            dilation: [1, 2],
            ..Default::default()
        };
        let p = plan(ConvKind::Conv2d, &[1, 2, 7, 8], &[2, 2, 4, 3], o).unwrap();
        assert_eq!((p.oh, p.ow, p.pad), (7, 8, [1, 2]));
        let p = plan(
            ConvKind::Conv1d,
            &[2, 4, 9],
            &[6, 2, 3],
            ConvOptions {
                groups: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.out_shape, vec![2, 6, 7]);
        // transposed: (H-1)s - 2p + d(k-1) + op + 1
        let o = ConvOptions {
            stride: [2, 2],
            padding: Padding::from(1),
            output_padding: [1, 0],
            ..Default::default()
        };
        let p = plan(ConvKind::ConvTranspose2d, &[1, 4, 5, 5], &[4, 3, 3, 3], o).unwrap();
        assert_eq!(p.out_shape, vec![1, 3, 10, 9]);
    }

    #[test]
    fn invalid_configurations_are_errors() {
        let d = ConvOptions::default;
        assert!(plan(ConvKind::Conv2d, &[1, 3, 2, 2], &[4, 3, 3, 3], d()).is_err());
        let e = plan(
            ConvKind::Conv2d,
            &[1, 3, 8, 8],
            &[4, 1, 3, 3],
            ConvOptions { groups: 2, ..d() },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("channels 3 not divisible by groups 2"),
            "{e}"
        );
        assert!(plan(ConvKind::Conv2d, &[1, 3, 8, 8], &[4, 3, 3], d()).is_err());
        assert!(plan(ConvKind::Conv2d, &[3, 8], &[4, 3, 3, 3], d()).is_err());
        assert!(plan(
            ConvKind::Conv2d,
            &[1, 4, 8, 8],
            &[3, 2, 3, 3],
            ConvOptions { groups: 2, ..d() }
        )
        .is_err());
        let same_strided = ConvOptions {
            padding: Padding::Same,
            stride: [2, 2],
            ..d()
        };
        assert!(plan(ConvKind::Conv2d, &[1, 3, 8, 8], &[4, 3, 3, 3], same_strided).is_err());
        let bad_op = ConvOptions {
            stride: [2, 2],
            output_padding: [2, 0],
            ..d()
        };
        assert!(plan(
            ConvKind::ConvTranspose2d,
            &[1, 3, 8, 8],
            &[3, 4, 3, 3],
            bad_op
        )
        .is_err());
        assert!(plan(
            ConvKind::Conv2d,
            &[1, 3, 8, 8],
            &[4, 3, 3, 3],
            ConvOptions {
                stride: [0, 1],
                ..d()
            }
        )
        .is_err());
        assert!(plan(
            ConvKind::Conv2d,
            &[1, 3, 8, 8],
            &[4, 3, 3, 3],
            ConvOptions { groups: 0, ..d() }
        )
        .is_err());
    }

    #[test]
    fn configs_round_trip() {
        for c in ConvConfig::candidates()
            .into_iter()
            .chain([ConvConfig::Naive])
        {
            assert_eq!(c.to_string().parse::<ConvConfig>().unwrap(), c);
        }
        assert!("gemm:9x1@64".parse::<ConvConfig>().is_err());
    }
}
