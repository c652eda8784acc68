//! Batched SVD of many small matrices in one call ([`Context::svd_batched`]): one-sided
//! Jacobi on the GPU (`shaders/svd_batched.wgsl`), faer per matrix across threads on the CPU.

use std::sync::Arc;

use crate::context::{Context, Gpu, GpuBuffer};
use crate::error::{Error, Result};
use crate::ops::matmul::host_values;
use crate::ops::source;
use crate::ops::svd::{
    bind_group, encoder, grid, svd_tolerance, u32_of, Bindings, Svd, MAX_SWEEPS, ZERO_REL,
};
use crate::tensor::{DType, Tensor};

/// Largest m and n of [`Context::svd_batched`] (the kernel keeps per-column state in
/// private arrays of this length).
pub const BATCHED_MAX_DIM: usize = 32;

/// Workgroup size of the batched kernel (one invocation per matrix).
pub const BATCHED_WORKGROUP: u32 = 64;

/// Runs the batched kernel on `batch` m×n matrices in `a`: (U, S, Vt, sweeps, off).
fn run_batched(
    gpu: &Arc<Gpu>,
    a: &GpuBuffer,
    (batch, m, n): (usize, usize, usize),
) -> Result<GpuBatched> {
    let wide = m < n;
    let (rows, cols) = if wide { (n, m) } else { (m, n) };
    let k = cols;
    let total = batch * m * n;
    u32_of(total, "batch·m·n")?;
    let bytes = |len: usize| (len * 4) as u64;
    for (len, what) in [
        (total, "the batched svd input"),
        (batch * m * k, "the batched svd U"),
        (batch * k * n, "the batched svd Vt"),
    ] {
        gpu.check_binding(bytes(len), what)?;
    }
    let uo = gpu.alloc(bytes(batch * m * k), "batched svd U")?;
    let so = gpu.alloc(bytes(batch * k), "batched svd S")?;
    let vto = gpu.alloc(bytes(batch * k * n), "batched svd Vt")?;
    let stats = gpu.alloc(16, "batched svd stats")?;
    let (gx, gy) = grid(gpu, batch, BATCHED_WORKGROUP)?;
    let words = [
        u32_of(batch, "batch")?,
        rows as u32,
        cols as u32,
        u32::from(wide),
        svd_tolerance(rows).to_bits(),
        ZERO_REL.to_bits(),
        MAX_SWEEPS,
        gx,
    ];
    let u = gpu.uniform(&words)?;
    let w = gpu.alloc(bytes(total), "batched svd work")?;
    let v = gpu.alloc(bytes(batch * k * k), "batched svd V")?;
    let state = gpu.alloc(bytes(batch * 3), "batched svd state")?;
    let kern = |entry: &'static str| {
        gpu.kernel(
            &format!("svd_batched/{entry}/WG={BATCHED_WORKGROUP}"),
            |device| {
                // Checked module: matrix offsets are computed in the kernel.
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("svd_batched.wgsl"),
                    source: wgpu::ShaderSource::Wgsl(source::SVD_BATCHED.into()),
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &[("WG", f64::from(BATCHED_WORKGROUP))],
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
            },
        )
    };
    let (wb, vb, sb) = (
        (2, &*w, bytes(total)),
        (3, &*v, bytes(batch * k * k)),
        (8, &*state, bytes(batch * 3)),
    );
    let run = |entry: &'static str, b: Bindings, clear: Option<(u64, u64)>| -> Result<()> {
        let kn = kern(entry)?;
        let bg = bind_group(gpu, &kn, &b, (&u, 0));
        let mut enc = encoder(gpu);
        if let Some((off, len)) = clear {
            enc.clear_buffer(stats.buffer(), off, Some(len));
        }
        {
            let mut pass = gpu.begin_pass(&mut enc);
            pass.set_pipeline(&kn.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        gpu.submit(enc);
        Ok(())
    };
    run(
        "svd_batched_init",
        Bindings(vec![(1, a, bytes(total)), wb, vb, (7, &stats, 16), sb]),
        Some((0, 16)),
    )?;
    let mut sweeps = 0;
    let mut st = vec![0u32; 4];
    if k >= 2 {
        while sweeps < MAX_SWEEPS {
            sweeps += 1;
            run(
                "svd_batched_sweep",
                Bindings(vec![wb, vb, (7, &stats, 16), sb]),
                Some((4, 4)),
            )?;
            // stats[3] counts this sweep's unconverged matrices: clear it after reading.
            st = bytemuck::pod_collect_to_vec(&stats.read(16)?);
            if st.get(2).copied().unwrap_or(0) != 0 || st.get(3).copied().unwrap_or(0) == 0 {
                break;
            }
            let mut enc = encoder(gpu);
            enc.clear_buffer(stats.buffer(), 12, Some(4));
            gpu.submit(enc);
        }
    } else {
        st = bytemuck::pod_collect_to_vec(&stats.read(16)?);
    }
    if st.get(2).copied().unwrap_or(0) != 0 {
        return Err(Error::InvalidArgument(format!(
            "svd_batched: the [{batch}, {m}, {n}] input holds NaN or infinite values; no SVD exists"
        )));
    }
    run(
        "svd_batched_finish",
        Bindings(vec![
            wb,
            vb,
            (4, &uo, bytes(batch * m * k)),
            (5, &so, bytes(batch * k)),
            (6, &vto, bytes(batch * k * n)),
            sb,
        ]),
        None,
    )?;
    Ok(GpuBatched {
        u: uo,
        s: so,
        vt: vto,
        sweeps,
        off: f32::from_bits(st.get(1).copied().unwrap_or(0)),
    })
}

/// The batched GPU factors before they become tensors.
struct GpuBatched {
    u: Arc<GpuBuffer>,
    s: Arc<GpuBuffer>,
    vt: Arc<GpuBuffer>,
    sweeps: u32,
    off: f32,
}

impl Context {
    /// The thin SVDs of a batch of small matrices in one call: `a` of shape [batch, m, n] with
    /// m, n ≤ [`BATCHED_MAX_DIM`] (32) gives U [batch, m, k], S [batch, k] (descending), Vt
    /// [batch, k, n], k = min(m, n), each matrix as [`Context::svd`] would. On a GPU one
    /// invocation runs cyclic one-sided Jacobi on each matrix to convergence inside one
    /// dispatch (`sweeps` and `off_diagonal` are the largest over the batch); on the CPU,
    /// faer per matrix across threads. Larger matrices are refused: use [`Context::svd`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2, 2], &[3.0, 0.0, 0.0, -4.0, 1.0, 0.0, 0.0, 2.0])?;
    /// let svd = ctx.svd_batched(&a)?;
    /// assert_eq!(svd.s.to_vec()?, vec![4.0, 3.0, 2.0, 1.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd_batched(&self, a: &Tensor) -> Result<Svd> {
        if a.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "svd_batched: input (shape {:?}) is {}; expected float32",
                a.shape(),
                a.dtype().name()
            )));
        }
        let [batch, m, n] = *a.shape() else {
            return Err(Error::Shape(format!(
                "svd_batched needs a [batch, m, n] tensor; got shape {:?} ({} dims)",
                a.shape(),
                a.ndim()
            )));
        };
        if m > BATCHED_MAX_DIM || n > BATCHED_MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "svd_batched handles matrices up to {BATCHED_MAX_DIM}×{BATCHED_MAX_DIM}; got \
                 shape {:?}: use svd per matrix",
                a.shape()
            )));
        }
        let k = m.min(n);
        let shapes = ([batch, m, k], [batch, k], [batch, k, n]);
        if batch == 0 || k == 0 {
            return Ok(Svd {
                u: self.zeros(&shapes.0)?,
                s: self.zeros(&shapes.1)?,
                vt: self.zeros(&shapes.2)?,
                sweeps: 0,
                off_diagonal: 0.0,
            });
        }
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let ab = self.resident(a)?;
                let out = gpu.scoped("svd_batched", || run_batched(gpu, &ab, (batch, m, n)))??;
                Ok(Svd {
                    u: Tensor::from_gpu(shapes.0.to_vec(), DType::F32, out.u),
                    s: Tensor::from_gpu(shapes.1.to_vec(), DType::F32, out.s),
                    vt: Tensor::from_gpu(shapes.2.to_vec(), DType::F32, out.vt),
                    sweeps: out.sweeps,
                    off_diagonal: out.off,
                })
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
        }
        let values = host_values(a)?;
        if values.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "svd_batched: the {:?} input holds NaN or infinite values; no SVD exists",
                a.shape()
            )));
        }
        let (u, s, vt) = crate::cpu::svd::fast_batched(&values, batch, m, n)?;
        Ok(Svd {
            u: self.tensor(&shapes.0, &u)?,
            s: self.tensor(&shapes.1, &s)?,
            vt: self.tensor(&shapes.2, &vt)?,
            sweeps: 0,
            off_diagonal: 0.0,
        })
    }
}
