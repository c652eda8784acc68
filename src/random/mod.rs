//! Counter-based random tensors: Philox4x32-10 (`shaders/random.wgsl`), uniform in [0, 1) and
//! normal (Box–Muller). Element i is word i % 4 of philox(counter = (i / 4, 0, 0, 0),
//! key = seed), so the stream is reproducible from the seed and identical on every backend
//! (uniforms bit for bit, normals within a few ulp).

pub mod cpu;

/// `shaders/random.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/random.wgsl");

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::trusted_pipeline;
use crate::runtime::{check_windows, run_pass, window_align, window_budget, Window};
use crate::tensor::{check_shape, element_count, DType, Tensor};

crate::kernel_params! {
    /// The kernel's uniform block (`RandParams` in shaders/random.wgsl).
    struct RandParams: "RandParams" {
        n: u32,
        key0: u32,
        key1: u32,
        normal: u32,
        mean: f32,
        sdev: f32,
        blk0: u32,
        yoff: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![RandParams::layout(SOURCE.to_string())]
}

impl Context {
    /// Uniform values in [0, 1) (multiples of 2⁻²⁴) from the Philox stream of `seed`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let u = ctx.rand_uniform(&[1000], 42)?.to_vec()?;
    /// assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
    /// assert_eq!(u, ctx.rand_uniform(&[1000], 42)?.to_vec()?);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn rand_uniform(&self, shape: &[usize], seed: u64) -> Result<Tensor> {
        self.random(shape, seed, None)
    }

    /// Normal values `mean + std·z` (Box–Muller on the Philox stream of `seed`).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.rand_normal(&[10_000], 7, 1.0, 2.0)?;
    /// let m = ctx.mean(&x, None)?.to_vec()?[0];
    /// assert!((m - 1.0).abs() < 0.1);
    /// assert_eq!(x.to_vec()?, ctx.rand_normal(&[10_000], 7, 1.0, 2.0)?.to_vec()?); // same seed, same values
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn rand_normal(&self, shape: &[usize], seed: u64, mean: f32, std: f32) -> Result<Tensor> {
        self.random(shape, seed, Some((mean, std)))
    }

    fn random(&self, shape: &[usize], seed: u64, normal: Option<(f32, f32)>) -> Result<Tensor> {
        let n = element_count(shape)?;
        check_shape(shape, n)?;
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                u32::try_from(n).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "random tensor of shape {shape:?} exceeds the GPU's 32-bit index range"
                    ))
                })?;
                let key = crate::random::cpu::key(seed);
                let (mean, std) = normal.unwrap_or((0.0, 1.0));
                let out = gpu.scoped("random", || -> Result<_> {
                    let y = gpu.alloc((n * 4) as u64, "random tensor")?;
                    if n == 0 {
                        return Ok(y);
                    }
                    // SAFETY: shaders/random.wgsl guards every output index against the
                    // chunk's element count inside the bound output window; no loop in it.
                    let kernel = unsafe {
                        trusted_pipeline(
                            gpu,
                            "random/rand_block",
                            "random.wgsl",
                            || SOURCE.to_string(),
                            "rand_block",
                            &[("WG", 64.0)],
                        )
                    }?;
                    // Chunks of whole blocks, a multiple of the window alignment long, so
                    // every chunk's window starts exactly at its first element.
                    let align = window_align(gpu) as usize / 4;
                    let chunk = (window_budget(gpu) / align * align).max(align);
                    let mut i0 = 0;
                    while i0 < n {
                        let len = chunk.min(n - i0);
                        let w =
                            Window::covering(i0, i0 + len, window_align(gpu), y.buffer().size());
                        check_windows(gpu, &[w], "random tensor")?;
                        let params = RandParams {
                            n: len as u32, // ≤ n, which fits u32 (checked above)
                            key0: key[0],
                            key1: key[1],
                            normal: u32::from(normal.is_some()),
                            mean,
                            sdev: std,
                            blk0: (i0 / 4) as u32,
                            yoff: w.elem_off as u32, // 0: chunks start at aligned elements
                        };
                        let entries = [(1, w.of(&y))];
                        run_pass(
                            gpu,
                            &kernel,
                            &params,
                            &entries,
                            len.div_ceil(4 * 64),
                            "random",
                        )?;
                        i0 += len;
                    }
                    Ok(y)
                })??;
                Ok(Tensor::from_gpu(shape.to_vec(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            return self.tensor(shape, &crate::random::cpu::stream(n, seed, normal));
        }
        Tensor::from_vec(shape, crate::random::cpu::stream(n, seed, normal))
    }
}
