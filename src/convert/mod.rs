//! Element-type conversion, `numpy.ndarray.astype` between float32 and the half-precision
//! types ([`DType::F16`], [`DType::BF16`]): on the GPU by `shaders/convert.wgsl`, on the CPU by
//! [`crate::precision`], bit for bit the same (round to nearest, ties to even).

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{run_pass, trusted_pipeline, u32_of, Bind, Gpu, GpuBuffer};
use crate::tensor::{DType, Tensor};

/// `shaders/convert.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/convert.wgsl");

crate::kernel_params! {
    /// The kernels' uniform block (`Params` in shaders/convert.wgsl).
    struct ConvertParams: "Params" {
        len: u32,
        fold: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![ConvertParams::layout(SOURCE.to_string())]
}

/// One conversion pass on the GPU: `entry` (`narrow` or `widen`) of `len` elements from `src`
/// into a new buffer of `to`'s layout, for the half type `half`.
fn pass(
    gpu: &Arc<Gpu>,
    src: &Arc<GpuBuffer>,
    len: usize,
    (entry, half, to): (&str, DType, DType),
) -> Result<Arc<GpuBuffer>> {
    let from_bytes = if to == DType::F32 { half } else { DType::F32 }.storage_bytes(len);
    let to_bytes = to.storage_bytes(len);
    gpu.check_binding(from_bytes as u64, "the cast's input")?;
    gpu.check_binding(to_bytes as u64, "the cast's output")?;
    let out = gpu.alloc(to_bytes.max(4) as u64, "cast result")?;
    if len == 0 {
        return Ok(out);
    }
    let id = if half == DType::BF16 { 1.0 } else { 0.0 };
    // SAFETY: shaders/convert.wgsl returns for element indices at or past len, reads src below
    // len (f32 elements, or half words below ⌈len/2⌉) and writes dst likewise, and both are
    // bound with those sizes here; it has no loops.
    let kernel = unsafe {
        trusted_pipeline(
            gpu,
            &format!("convert/{entry}/{id}"),
            "convert.wgsl",
            || SOURCE.to_string(),
            entry,
            &[("HALF", id)],
        )
    }?;
    let threads = if entry == "narrow" {
        len.div_ceil(2)
    } else {
        len
    };
    let groups = threads.div_ceil(64);
    let (gx, _) = crate::runtime::fold_grid(gpu, groups, "cast")?;
    let params = ConvertParams {
        len: u32_of(len, "cast length")?,
        fold: gx * 64,
        ..Default::default()
    };
    run_pass(
        gpu,
        &kernel,
        &params,
        &[
            (1, Bind::Buffer(src, from_bytes.max(4) as u64)),
            (2, Bind::Buffer(&out, to_bytes.max(4) as u64)),
        ],
        groups,
        "cast",
    )?;
    Ok(out)
}

/// `len` elements of `from` in `src` converted to `to` on the GPU (a new buffer).
pub(crate) fn gpu_cast(
    gpu: &Arc<Gpu>,
    src: &Arc<GpuBuffer>,
    len: usize,
    from: DType,
    to: DType,
) -> Result<Arc<GpuBuffer>> {
    match (from, to) {
        (DType::F32, DType::F16 | DType::BF16) => pass(gpu, src, len, ("narrow", to, to)),
        (DType::F16 | DType::BF16, DType::F32) => pass(gpu, src, len, ("widen", from, to)),
        (DType::F16 | DType::BF16, DType::F16 | DType::BF16) => {
            let wide = pass(gpu, src, len, ("widen", from, DType::F32))?;
            pass(gpu, &wide, len, ("narrow", to, to))
        }
        _ => Err(cast_error(from, to)),
    }
}

fn cast_error(from: DType, to: DType) -> Error {
    Error::InvalidArgument(format!(
        "cast from {} to {}: only float32, float16 and bfloat16 convert into each other",
        from.name(),
        to.name()
    ))
}

impl Context {
    /// `x` as another float type, like numpy's `x.astype(dtype)`: float32 ↔ float16 ↔
    /// bfloat16, rounding to nearest (ties to even) when narrowing — overflow to ±∞, NaN stays
    /// NaN — exactly when widening. The same dtype returns `x` itself. On a GPU one pass
    /// (two between the half types), bit for bit as the CPU backend.
    ///
    /// ```
    /// use gpu_linalg::DType;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[3], &[1.0, 1.0 + 1.0 / 4096.0, 70000.0])?;
    /// let h = ctx.cast(&x, DType::F16)?;
    /// assert_eq!(h.dtype(), DType::F16);
    /// assert_eq!(h.to_vec()?, [1.0, 1.0, f32::INFINITY]); // 11 significant bits; max 65504
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        if !x.dtype().is_float() || !dtype.is_float() {
            return Err(cast_error(x.dtype(), dtype));
        }
        if x.dtype() == dtype {
            return Ok(x.clone());
        }
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let src = self.resident(x)?;
                let out =
                    gpu.scoped("cast", || gpu_cast(gpu, &src, x.len(), x.dtype(), dtype))??;
                Ok(Tensor::from_gpu(x.shape().to_vec(), dtype, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
        }
        let t = Tensor::from_f32_as(x.shape(), &x.to_vec()?, dtype)?;
        if self.gpu().is_some() {
            return Ok(Tensor::from_gpu(
                x.shape().to_vec(),
                dtype,
                self.resident(&t)?,
            ));
        }
        Ok(t)
    }
}

impl Context {
    /// Runs an op that computes in float32 on half-precision inputs: when any of `inputs` is
    /// float16 or bfloat16, `op` gets them widened to float32 (exactly; other inputs as they
    /// are) and its float32 result is rounded to the inputs' type — their common half type, or
    /// float32 for a mix (numpy's promotion); a non-float result (an index) is returned as it
    /// is. `None` when no input is half: the caller computes as usual.
    pub(crate) fn in_f32(
        &self,
        inputs: &[&Tensor],
        op: impl FnOnce(&[Tensor]) -> Result<Tensor>,
    ) -> Result<Option<Tensor>> {
        if !inputs.iter().any(|t| t.dtype().is_half()) {
            return Ok(None);
        }
        let floats: Vec<DType> = inputs
            .iter()
            .map(|t| t.dtype())
            .filter(|d| d.is_float())
            .collect();
        let out = match floats.first() {
            Some(&d) if floats.iter().all(|&e| e == d) => d,
            _ => DType::F32,
        };
        let wide: Vec<Tensor> = inputs
            .iter()
            .map(|t| {
                if t.dtype().is_half() {
                    self.cast(t, DType::F32)
                } else {
                    Ok((*t).clone())
                }
            })
            .collect::<Result<_>>()?;
        let y = op(&wide)?;
        if y.dtype() == DType::F32 {
            Ok(Some(self.cast(&y, out)?))
        } else {
            Ok(Some(y))
        }
    }
}
