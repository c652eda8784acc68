//! Convolutions with PyTorch semantics: `conv2d`, `conv1d`, `conv_transpose2d`, NCHW (or
//! unbatched CHW), groups, stride, padding (numbers, `same`, `valid`), dilation, bias and a
//! fused activation — on the GPU (implicit GEMM, `shaders/conv.wgsl`) or the CPU.

pub mod cpu;

/// `shaders/conv.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/conv.wgsl");

use std::sync::Arc;

use crate::activation::Activation;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{shader, trusted_pipeline};
use crate::runtime::{u32_of, Bind, Choices, Gpu, GpuBuffer, Window};
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

mod plan;
pub use plan::*;

fn pipeline(
    gpu: &Gpu,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<crate::runtime::Kernel>> {
    let key = format!("conv/{entry}/{constants:?}");
    // SAFETY: every index in shaders/conv.wgsl is guarded, clamped or zero-offset against
    // sizes the host derives from the operand shapes (ConvPlan) and binding windows, and the
    // host binds buffers at least that large; no loop in it is unbounded.
    unsafe {
        trusted_pipeline(
            gpu,
            &key,
            "conv.wgsl",
            || shader::with_epilogue(SOURCE),
            entry,
            constants,
        )
    }
}

crate::kernel_params! {
    /// The kernels' uniform block (`ConvParams` in shaders/conv.wgsl).
    struct ConvParams: "ConvParams" {
        groups: u32,
        cig: u32,
        cog: u32,
        cin: u32,
        cout: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        kh: u32,
        kw: u32,
        sh: i32,
        sw: i32,
        ph: i32,
        pw: i32,
        dh: i32,
        dw: i32,
        m: u32,
        w_g: u32,
        w_co: u32,
        w_ci: u32,
        row_off: u32,
        col_off: u32,
        x_off: u32,
        y_off: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![ConvParams::layout(shader::with_epilogue(SOURCE))]
}

impl ConvParams {
    /// The kernel parameters of `plan` for a dispatch from output column `col_off`, with x
    /// and y bound from element offsets `x_off` and `y_off` of their windows.
    fn new(plan: &ConvPlan, col_off: usize, x_off: usize, y_off: usize) -> Result<ConvParams> {
        let u = |v: usize| u32_of(v, "conv size");
        let i = |v: usize| -> Result<i32> {
            i32::try_from(v)
                .map_err(|_| Error::InvalidArgument(format!("conv size {v} exceeds 31 bits")))
        };
        Ok(ConvParams {
            groups: u(plan.groups)?,
            cig: u(plan.cig)?,
            cog: u(plan.cog)?,
            cin: u(plan.cin)?,
            cout: u(plan.cout)?,
            h: u(plan.h)?,
            w: u(plan.w)?,
            oh: u(plan.oh)?,
            ow: u(plan.ow)?,
            kh: u(plan.kh)?,
            kw: u(plan.kw)?,
            sh: i(plan.stride[0])?,
            sw: i(plan.stride[1])?,
            ph: i(plan.pad[0])?,
            pw: i(plan.pad[1])?,
            dh: i(plan.dilation[0])?,
            dw: i(plan.dilation[1])?,
            m: u(plan.m())?,
            w_g: u(plan.w_g)?,
            w_co: u(plan.w_co)?,
            w_ci: u(plan.w_ci)?,
            col_off: u(col_off)?,
            x_off: u(x_off)?,
            y_off: u(y_off)?,
            ..Default::default()
        })
    }
}

/// Runs the convolution. Inputs and outputs larger than one storage binding are processed a
/// chunk of whole images at a time, each bound through a window aligned to
/// `min_storage_buffer_offset_alignment` (the kernel adds the element offsets `x_off`, `y_off`);
/// output positions beyond the dispatch limit are split across dispatches (`col_off`).
fn run_gpu(
    gpu: &Arc<Gpu>,
    plan: &ConvPlan,
    x: &Arc<GpuBuffer>,
    w: &Arc<GpuBuffer>,
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
    let bias_buf: &Arc<GpuBuffer> = match bias {
        Some(b) => b,
        None => {
            dummy = gpu.alloc(4, "conv bias placeholder")?;
            &dummy
        }
    };
    let bias_bytes = if bias.is_some() { plan.cout * 4 } else { 4 } as u64;
    let mut enc = gpu.encoder("conv");
    let mut n0 = 0;
    while n0 < plan.n {
        let n1 = (n0 + per_chunk).min(plan.n);
        let chunk = ConvPlan {
            n: n1 - n0,
            ..plan.clone()
        };
        let xv = Window::span(n0 * x_img, n1 * x_img, align);
        let yv = Window::span(n0 * y_img, n1 * y_img, align);
        let grid = [per_image[0], per_image[1], (n1 - n0) * z_per_image];
        let mut col_off = 0;
        while col_off < grid[pos_dim] {
            let count = (grid[pos_dim] - col_off).min(limit);
            let u = enc.params(&ConvParams::new(&chunk, col_off, xv.elem_off, yv.elem_off)?)?;
            let bg = enc.bind(
                &kernel,
                &[
                    (0, Bind::Params(&u)),
                    (1, Bind::Range(x, xv.offset, xv.size)),
                    (2, Bind::Buffer(w, w_bytes)),
                    (3, Bind::Buffer(bias_buf, bias_bytes)),
                    (4, Bind::Range(&out, yv.offset, yv.size)),
                ],
            );
            let mut g = grid;
            g[pos_dim] = count;
            enc.dispatch(&kernel, &bg, (g[0] as u32, g[1] as u32, g[2] as u32));
            col_off += count;
        }
        n0 = n1;
    }
    enc.submit()?;
    Ok(out)
}

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
    ///
    /// ```
    /// use gpu_linalg::ConvOptions;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1, 1, 5], &[1., 2., 3., 4., 5.])?; // (N, C, L)
    /// let w = ctx.tensor(&[1, 1, 2], &[1., 1.])?;
    /// let y = ctx.conv1d(&x, &w, &ConvOptions::default())?;
    /// assert_eq!((y.shape(), y.to_vec()?), (&[1, 1, 4][..], vec![3., 5., 7., 9.]));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn conv1d(&self, x: &Tensor, w: &Tensor, opts: &ConvOptions) -> Result<Tensor> {
        self.conv(ConvKind::Conv1d, x, w, opts)
    }

    /// `torch.nn.functional.conv_transpose2d`: weight `[C_in, C_out/groups, KH, KW]`, with
    /// `output_padding` (each smaller than the stride or the dilation).
    ///
    /// ```
    /// use gpu_linalg::ConvOptions;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1, 1, 1, 1], &[2.])?;
    /// let w = ctx.tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.])?; // [C_in, C_out, KH, KW]
    /// let y = ctx.conv_transpose2d(&x, &w, &ConvOptions::default())?;
    /// assert_eq!((y.shape(), y.to_vec()?), (&[1, 1, 2, 2][..], vec![2., 4., 6., 8.]));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn conv_transpose2d(&self, x: &Tensor, w: &Tensor, opts: &ConvOptions) -> Result<Tensor> {
        self.conv(ConvKind::ConvTranspose2d, x, w, opts)
    }

    /// Any of the three convolutions.
    ///
    /// ```
    /// use gpu_linalg::{ConvKind, ConvOptions};
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[1, 1, 2, 2], &[1.; 4])?;
    /// let w = ctx.tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.])?;
    /// let y = ctx.conv(ConvKind::Conv2d, &x, &w, &ConvOptions::default())?;
    /// assert_eq!(y.to_vec()?, vec![10.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn conv(
        &self,
        kind: ConvKind,
        x: &Tensor,
        w: &Tensor,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let mut inputs = vec![x, w];
        inputs.extend(opts.bias);
        if let Some(y) = self.in_f32(&inputs, |t| {
            let wide = ConvOptions {
                bias: t.get(2),
                ..*opts
            };
            self.conv(kind, &t[0], &t[1], &wide)
        })? {
            return Ok(y);
        }
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
                && plan.k() > crate::runtime::LOOP_SLICE_CPU_ADAPTER
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
        let limit = crate::runtime::LOOP_SLICE_CPU_ADAPTER;
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
        let out = crate::conv::cpu::fast(
            plan,
            &host_values(x)?,
            &host_values(w)?,
            bias.as_deref(),
            opts.activation,
        );
        Tensor::from_vec(&plan.out_shape, out)
    }

    /// The conv kernel this context uses for ordinary spatial convolutions (the layer class of
    /// a 3×3 ResNet layer): see [`Context::conv_config_for`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// match ctx.conv_config() {
    ///     Ok(cfg) => println!("spatial conv kernel: {cfg:?}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"), // the CPU backend has no GPU kernel
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn conv_config(&self) -> Result<ConvConfig> {
        self.conv_class_config(ConvClass::Spatial)
    }

    /// The conv kernel for `plan`: forced by `GPU_LINALG_CONV_KERNEL`, else the choice of its
    /// layer class ([`ConvClass`]: depthwise, pointwise, spatial, spatial-large), remembered,
    /// read from the tuning cache, or tuned now on a layer of that class with every candidate
    /// checked against the CPU reference first.
    ///
    /// ```
    /// use gpu_linalg::{ConvKind, ConvOptions, ConvPlan};
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let plan = ConvPlan::new(ConvKind::Conv2d, &[1, 8, 16, 16], &[8, 8, 3, 3], &ConvOptions::default())?;
    /// if ctx.is_gpu() {
    ///     println!("{:?}", ctx.conv_config_for(&plan)?);
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn conv_config_for(&self, plan: &ConvPlan) -> Result<ConvConfig> {
        self.conv_class_config(ConvClass::of(plan))
    }

    fn conv_class_config(&self, class: ConvClass) -> Result<ConvConfig> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU conv kernel".into(),
            ));
        };
        CHOICES.get(gpu, class.name(), || self.tune_conv_class(class))
    }

    /// Times every conv candidate on a layer of the spatial class (1×64×28×28 ⊛ 64×64×3×3), or
    /// for `depthwise` of the depthwise class (1×64×56×56 ⊛ 64×1×3×3, 64 groups), each checked
    /// against the CPU reference first: (configuration, GFLOP/s or why it was ruled out).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// if ctx.is_gpu() { // nothing to tune on the CPU backend
    ///     for (cfg, outcome) in ctx.tune_conv(false)? {
    ///         println!("{cfg:?}: {outcome:?}");
    ///     }
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tune_conv(
        &self,
        depthwise: bool,
    ) -> Result<Vec<(ConvConfig, std::result::Result<f64, String>)>> {
        let class = if depthwise {
            ConvClass::Depthwise
        } else {
            ConvClass::Spatial
        };
        let flops = {
            let (x, w, opts) = class.tuning_layer();
            ConvPlan::new(ConvKind::Conv2d, &x, &w, &opts)?.flops()
        };
        Ok(self
            .tune_conv_class(class)?
            .into_iter()
            .map(|o| (o.choice, o.seconds.map(|s| flops / s / 1e9)))
            .collect())
    }

    fn tune_conv_class(
        &self,
        class: ConvClass,
    ) -> Result<Vec<crate::runtime::TuneOutcome<ConvConfig>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let (xs, ws, base) = class.tuning_layer();
        let xd: Vec<f32> = (0..xs.iter().product::<usize>())
            .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
            .collect();
        let wd: Vec<f32> = (0..ws.iter().product::<usize>())
            .map(|i| ((i % 5) as f32 - 2.0) * 0.25)
            .collect();
        let reference = crate::conv::cpu::reference_for(
            ConvKind::Conv2d,
            &Tensor::from_vec(&xs, xd.clone())?,
            &Tensor::from_vec(&ws, wd.clone())?,
            &base,
        )?;
        let x = self.tensor(&xs, &xd)?;
        let w = self.tensor(&ws, &wd)?;
        let candidates = if class == ConvClass::Depthwise {
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
        Ok(crate::runtime::measure(
            gpu,
            &candidates,
            3,
            |config| {
                let opts = ConvOptions {
                    kernel: Some(config),
                    ..base
                };
                self.conv2d(&x, &w, &opts)
            },
            |t| t.to_vec(),
            |v| reference.check(v),
        ))
    }
}

/// The tuned conv choices of every device, by layer class.
static CHOICES: Choices<ConvConfig> = Choices::new("conv", Some("GPU_LINALG_CONV_KERNEL"));

/// The layer classes conv kernels are tuned for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvClass {
    /// One input channel per group: bound by input gathers, not arithmetic.
    Depthwise,
    /// 1×1 kernels.
    Pointwise,
    /// Other kernels, at most 1,024 output positions per image.
    Spatial,
    /// Other kernels, more output positions per image.
    SpatialLarge,
}

impl ConvClass {
    /// The class of `plan`.
    pub fn of(plan: &ConvPlan) -> ConvClass {
        if plan.is_depthwise() {
            ConvClass::Depthwise
        } else if plan.kh == 1 && plan.kw == 1 {
            ConvClass::Pointwise
        } else if plan.m() <= 1024 {
            ConvClass::Spatial
        } else {
            ConvClass::SpatialLarge
        }
    }

    /// The name in the tuning cache.
    pub fn name(self) -> &'static str {
        match self {
            ConvClass::Depthwise => "depthwise",
            ConvClass::Pointwise => "pointwise",
            ConvClass::Spatial => "spatial",
            ConvClass::SpatialLarge => "spatial-large",
        }
    }

    /// The layer a class is tuned on: (input shape, weight shape, options).
    fn tuning_layer(self) -> (Vec<usize>, Vec<usize>, ConvOptions<'static>) {
        let pad1 = ConvOptions {
            padding: Padding::from(1),
            ..Default::default()
        };
        match self {
            ConvClass::Depthwise => (
                vec![1, 64, 56, 56],
                vec![64, 1, 3, 3],
                ConvOptions { groups: 64, ..pad1 },
            ),
            ConvClass::Pointwise => (
                vec![1, 64, 28, 28],
                vec![64, 64, 1, 1],
                ConvOptions::default(),
            ),
            ConvClass::Spatial => (vec![1, 64, 28, 28], vec![64, 64, 3, 3], pad1),
            ConvClass::SpatialLarge => (vec![1, 32, 64, 64], vec![32, 32, 3, 3], pad1),
        }
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
