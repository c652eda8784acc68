//! The public façade: [`Context`], its constructors, and the few calls that are about the
//! context itself (where it runs, flushing, counters, uploads). The machinery lives in
//! [`crate::runtime`]; every op lives with its family.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::{
    adapter_filter, enumerate, open_device, pick_adapter, storage_usage, summarize, type_rank,
    DeviceSetup, Gpu, GpuBuffer,
};
pub use crate::runtime::{
    list_adapters, AdapterSummary, Backend, BoundsChecks, DeviceSummary, GpuCounters, SubmitMode,
    TuningRecord,
};
use crate::tensor::{check_shape, DType, HostData, Storage, Tensor};

/// Options for [`Context::with_options`].
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Where to compute.
    pub backend: Backend,
    /// Only consider adapters whose name contains this text (case-insensitive). When `None`,
    /// `GPU_LINALG_ADAPTER`, then wgpu's `WGPU_ADAPTER_NAME`, are read from the environment.
    pub adapter: Option<String>,
    /// Only consider adapters of this graphics API (`vulkan`, `metal`, `dx12` or `gl`,
    /// case-insensitive): with several adapters, one context per API (see
    /// [`crate::ContextGroup`]).
    pub api: Option<String>,
    /// Whether kernels are compiled with runtime bounds checks (default: only where unchecked
    /// modules were not measured to pay, i.e. on every adapter but CPU-type ones).
    pub bounds_checks: BoundsChecks,
    /// When ops are submitted; `None` reads `GPU_LINALG_SUBMIT` (`per-op` or `stream`, the
    /// default).
    pub submit: Option<SubmitMode>,
}

/// The shared state of a [`Context`].
struct Inner {
    requested: Backend,
    gpu: Option<Arc<Gpu>>,
    note: String,
    fallback_warned: AtomicBool,
}

/// The entry point: owns the device (or the CPU backend) and runs every op.
///
/// `Context` is `Send + Sync` and cheap to clone (clones share the device, pipelines and
/// buffer pool), so one context can serve many threads.
///
/// ```
/// use gpu_linalg::{Context, ContextOptions, Backend};
/// let ctx = Context::with_options(ContextOptions { backend: Backend::Cpu, ..Default::default() })?;
/// let a = ctx.tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
/// let c = ctx.matmul(&a, &a)?;
/// assert_eq!(c.to_vec()?, vec![7.0, 10.0, 15.0, 22.0]);
/// # Ok::<(), gpu_linalg::Error>(())
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Context({})", self.description())
    }
}

impl Context {
    /// A context with [`Backend::Auto`]: a real GPU if one exists, else the fast CPU backend.
    ///
    /// ```
    /// let ctx = gpu_linalg::Context::new()?; // Backend::Auto: a real GPU, else the CPU backend
    /// println!("computing on {}", ctx.description());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn new() -> Result<Context> {
        Context::with_options(ContextOptions::default())
    }

    /// A context for `backend`.
    ///
    /// ```
    /// use gpu_linalg::{Backend, Context};
    /// let ctx = Context::with_backend(Backend::Cpu)?;
    /// assert!(!ctx.is_gpu());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn with_backend(backend: Backend) -> Result<Context> {
        Context::with_options(ContextOptions {
            backend,
            ..Default::default()
        })
    }

    /// A context with explicit options.
    ///
    /// ```
    /// use gpu_linalg::{Backend, Context, ContextOptions};
    /// let opts = ContextOptions { backend: Backend::Cpu, ..Default::default() };
    /// let ctx = Context::with_options(opts)?;
    /// assert!(matches!(ctx.requested_backend(), Backend::Cpu));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn with_options(opts: ContextOptions) -> Result<Context> {
        let filter = adapter_filter(&opts.adapter);
        let setup = DeviceSetup {
            bounds_checks: opts.bounds_checks,
            submit: opts.submit,
        };
        let (gpu, note) = match opts.backend {
            Backend::Cpu => (None, "the fast CPU backend (--backend cpu)".to_string()),
            b => match pick_adapter(b, &filter, opts.api.as_deref())? {
                Some(adapter) => {
                    let info = adapter.get_info();
                    let gpu = open_device(&adapter, setup)?;
                    let s = summarize(&info);
                    (
                        Some(gpu),
                        format!("GPU adapter {} ({}, {})", s.name, s.device_type, s.api),
                    )
                }
                None => {
                    let why = match enumerate()
                        .iter()
                        .map(|a| a.get_info())
                        .min_by_key(|i| type_rank(i.device_type))
                    {
                        Some(i) => format!(
                            "the only adapters are software ones such as {} ({:?}), slower than the CPU backend",
                            i.name, i.device_type
                        ),
                        None => "no GPU adapter was found".to_string(),
                    };
                    (None, format!("the fast CPU backend ({why})"))
                }
            },
        };
        Ok(Context {
            inner: Arc::new(Inner {
                requested: opts.backend,
                gpu,
                note,
                fallback_warned: AtomicBool::new(false),
            }),
        })
    }

    /// A context on a `Device` and `Queue` an application already owns (a renderer, a game
    /// engine); its buffers can be shared through [`Context::tensor_from_buffer`].
    /// Ops on this context behave as under [`Backend::Gpu`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// // Any device and queue your application owns; here, those of another context, if it has any.
    /// if let Some((device, queue)) = ctx.wgpu() {
    ///     let shared = gpu_linalg::Context::from_wgpu(device.clone(), queue.clone())?;
    ///     assert!(shared.is_gpu());
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Result<Context> {
        let info = device.adapter_info();
        let s = summarize(&info);
        Ok(Context {
            inner: Arc::new(Inner {
                requested: Backend::Gpu,
                gpu: Some(Gpu::new(
                    device,
                    queue,
                    info,
                    DeviceSetup::default(),
                    Vec::new(),
                )),
                note: format!("application-owned device on {} ({})", s.name, s.api),
                fallback_warned: AtomicBool::new(false),
            }),
        })
    }

    /// The backend this context was asked for.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert!(matches!(ctx.requested_backend(), gpu_linalg::Backend::Cpu));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn requested_backend(&self) -> Backend {
        self.inner.requested
    }

    /// True when ops run on a GPU adapter (software adapters included).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert!(!ctx.is_gpu()); // the CPU backend
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn is_gpu(&self) -> bool {
        self.inner.gpu.is_some()
    }

    /// One line saying where ops run and why.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// println!("{}", ctx.description()); // adapter and API, or the CPU backend
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn description(&self) -> String {
        self.inner.note.clone()
    }

    /// Limits and features of the GPU device, `None` on the CPU backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert!(ctx.device_summary().is_none()); // no device on the CPU backend
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn device_summary(&self) -> Option<DeviceSummary> {
        self.inner.gpu.as_ref().map(|g| g.summary())
    }

    /// The wgpu device and queue, `None` on the CPU backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert!(ctx.wgpu().is_none()); // Some((device, queue)) on a GPU context
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn wgpu(&self) -> Option<(&wgpu::Device, &wgpu::Queue)> {
        self.inner.gpu.as_ref().map(|g| (&g.device, &g.queue))
    }

    pub(crate) fn gpu(&self) -> Option<&Arc<Gpu>> {
        self.inner.gpu.as_ref()
    }

    /// Blocks until every op submitted so far has finished on the GPU (a no-op on the CPU).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// let _c = ctx.matmul(&a, &a)?; // queued on a GPU context
    /// ctx.synchronize()?; // waits for it (a no-op on the CPU backend)
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn synchronize(&self) -> Result<()> {
        match &self.inner.gpu {
            Some(g) => g.wait_idle(),
            None => Ok(()),
        }
    }

    /// Runs `f` and measures, with GPU timestamp queries, the time from the start of the first
    /// compute pass it encodes to the end of the last one: kernel time without submission,
    /// upload or readback overhead. The time is `None` on the CPU backend, on adapters without
    /// `TIMESTAMP_QUERY`, or when `f` encoded no pass. Passes other threads encode meanwhile
    /// are counted too.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// let (c, kernel_s) = ctx.time_gpu(|| ctx.matmul(&a, &a))?;
    /// assert_eq!(c.to_vec()?, [7., 10., 15., 22.]);
    /// assert!(kernel_s.is_none()); // GPU timestamps only on a GPU context that has them
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn time_gpu<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        match self.gpu() {
            Some(gpu) => gpu.time_gpu(f),
            None => Ok((f()?, None)),
        }
    }

    /// Submits every op recorded so far to the GPU without waiting for it (a no-op on the CPU
    /// backend, or when nothing is pending). Readbacks and [`Context::synchronize`] flush by
    /// themselves; call this to start GPU work early while the host does something else.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// let _c = ctx.matmul(&a, &a)?;
    /// ctx.flush()?; // submits queued work without waiting for it
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        match self.gpu() {
            Some(g) => g.flush(),
            None => Ok(()),
        }
    }

    /// The submission mode of this context's device.
    ///
    /// ```
    /// use gpu_linalg::SubmitMode;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert_eq!(ctx.submit_mode(), SubmitMode::Stream);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn submit_mode(&self) -> SubmitMode {
        self.gpu()
            .map(|g| g.stream.mode())
            .unwrap_or(SubmitMode::Stream)
    }

    /// Switches between the command stream and per-op submission (flushing first). For
    /// benchmarks that compare the two in one run; results are the same either way.
    ///
    /// ```
    /// use gpu_linalg::SubmitMode;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// ctx.set_submit_mode(SubmitMode::PerOp)?; // one submission per op, e.g. for profiling
    /// ctx.set_submit_mode(SubmitMode::Stream)?;
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn set_submit_mode(&self, mode: SubmitMode) -> Result<()> {
        if let Some(g) = self.gpu() {
            g.flush()?;
            g.stream.set_mode(mode);
        }
        Ok(())
    }

    /// Dispatches recorded and submissions made on this context's device so far, by every
    /// thread (zero on the CPU backend). For one algorithm's own counts, take the difference
    /// of [`crate::runtime::thread_counters`] around it.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1., 2., 3., 4.])?;
    /// let before = ctx.gpu_counters();
    /// let _c = ctx.matmul(&a, &a)?;
    /// let spent = ctx.gpu_counters().dispatches - before.dispatches;
    /// assert_eq!(spent, 0); // the CPU backend dispatches nothing; a GPU context counts one here
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn gpu_counters(&self) -> GpuCounters {
        self.gpu().map(|g| g.stream.counters()).unwrap_or_default()
    }

    /// Whether this context's kernels are compiled with runtime bounds checks.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert!(!ctx.bounds_checked());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn bounds_checked(&self) -> bool {
        self.gpu().is_some_and(|g| g.checked)
    }

    /// The tunings this process ran on this context's device: family, shape bucket, the choice
    /// and every candidate excluded (with why). Empty on the CPU backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// for r in ctx.tuning_report() {
    ///     println!("{r:?}"); // empty on the CPU backend
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tuning_report(&self) -> Vec<TuningRecord> {
        self.gpu()
            .map(crate::runtime::tuning_report)
            .unwrap_or_default()
    }

    /// Under [`Backend::Auto`], turns a kernel-build failure into a one-time warning and
    /// `Ok(None)` (the caller then runs the CPU path); any other error, or any error under
    /// another backend, passes through.
    pub(crate) fn fallback_or<T>(&self, r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(Error::Kernel(msg)) if self.inner.requested == Backend::Auto => {
                if !self.inner.fallback_warned.swap(true, Ordering::Relaxed) {
                    eprintln!("gpu-linalg: warning: {msg}; running this op on the CPU instead");
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Uploads `data` (row-major) as a tensor of `shape`; on the CPU backend it is kept in
    /// host memory.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let t = ctx.tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    /// assert_eq!((t.shape(), t.to_vec()?), (&[2, 3][..], vec![1., 2., 3., 4., 5., 6.]));
    /// assert!(ctx.tensor(&[2, 2], &[1.0]).is_err()); // 4 elements expected
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tensor(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        check_shape(shape, data.len())?;
        match &self.inner.gpu {
            Some(g) => {
                let buf = g.upload(bytemuck::cast_slice(data), "tensor upload")?;
                Ok(Tensor::from_gpu(shape.to_vec(), DType::F32, buf))
            }
            None => Tensor::from_vec(shape, data.to_vec()),
        }
    }

    /// Uploads `u32` indices as a tensor of `shape`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let t = ctx.tensor_u32(&[3], &[2, 0, 1])?;
    /// assert_eq!(t.to_vec_u32()?, vec![2, 0, 1]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tensor_u32(&self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        check_shape(shape, data.len())?;
        match &self.inner.gpu {
            Some(g) => {
                let buf = g.upload(bytemuck::cast_slice(data), "tensor upload")?;
                Ok(Tensor::from_gpu(shape.to_vec(), DType::U32, buf))
            }
            None => Tensor::from_vec_u32(shape, data.to_vec()),
        }
    }

    /// A tensor of zeros.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let z = ctx.zeros(&[2, 2])?;
    /// assert_eq!(z.to_vec()?, vec![0.0; 4]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        let n = crate::tensor::element_count(shape)?;
        self.tensor(shape, &vec![0.0; n])
    }

    /// Wraps an application's wgpu buffer (usage must include `STORAGE | COPY_SRC | COPY_DST`)
    /// holding `f32` values as a tensor, without copying. The buffer is not pooled.
    ///
    /// Ops on it are recorded into the context's command stream: before the application writes
    /// the buffer with its own `queue.write_buffer` (which lands ahead of commands not yet
    /// submitted), or reads it with its own commands, call [`Context::flush`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// if let Some((device, _)) = ctx.wgpu() {
    ///     let buffer = device.create_buffer(&wgpu::BufferDescriptor {
    ///         label: None,
    ///         size: 16,
    ///         usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    ///         mapped_at_creation: false,
    ///     });
    ///     let t = ctx.tensor_from_buffer(buffer, &[4])?; // no copy
    ///     assert_eq!(t.shape(), &[4]);
    /// } else {
    ///     assert!(ctx.wgpu().is_none()); // the CPU backend has no buffers to wrap
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tensor_from_buffer(&self, buffer: wgpu::Buffer, shape: &[usize]) -> Result<Tensor> {
        let gpu = self.gpu().ok_or_else(|| {
            Error::InvalidArgument("tensor_from_buffer needs a GPU context".into())
        })?;
        let n = crate::tensor::element_count(shape)?;
        if (n as u64) * 4 > buffer.size() {
            return Err(Error::Shape(format!(
                "shape {shape:?} needs {} bytes but the buffer holds {}",
                n * 4,
                buffer.size()
            )));
        }
        if !buffer.usage().contains(storage_usage()) {
            return Err(Error::InvalidArgument(format!(
                "buffer usage {:?} lacks STORAGE | COPY_SRC | COPY_DST",
                buffer.usage()
            )));
        }
        check_shape(shape, n)?;
        Ok(Tensor::from_gpu(
            shape.to_vec(),
            DType::F32,
            Arc::new(GpuBuffer::foreign(buffer, gpu.clone())),
        ))
    }

    /// The tensor's GPU buffer on this context, uploading host tensors (and tensors of
    /// another context, through the host) first.
    pub(crate) fn resident(&self, t: &Tensor) -> Result<Arc<GpuBuffer>> {
        let gpu = self
            .gpu()
            .ok_or_else(|| Error::InvalidArgument("no GPU on this context".into()))?;
        match &t.storage {
            Storage::Gpu(b) if Arc::ptr_eq(&b.gpu, gpu) => Ok(b.clone()),
            Storage::Gpu(_) => {
                let bytes = match t.dtype() {
                    DType::F32 => bytemuck::cast_slice(&t.to_vec()?).to_vec(),
                    DType::U32 => bytemuck::cast_slice(&t.to_vec_u32()?).to_vec(),
                    DType::F16 | DType::BF16 => half_words(&t.to_half_bits()?),
                };
                gpu.upload(&bytes, "tensor upload")
            }
            Storage::Host(HostData::F32(v)) => gpu.upload(bytemuck::cast_slice(v), "tensor upload"),
            Storage::Host(HostData::U32(v)) => gpu.upload(bytemuck::cast_slice(v), "tensor upload"),
            Storage::Host(HostData::Half(v)) => gpu.upload(&half_words(v), "tensor upload"),
        }
    }
}

/// Half-precision bits as the GPU stores them: two per 32-bit word, element 2i in the low half
/// (little-endian u16s in order), the last word zero-padded.
fn half_words(bits: &[u16]) -> Vec<u8> {
    let mut bytes: Vec<u8> = bytemuck::cast_slice(bits).to_vec();
    bytes.resize(DType::F16.storage_bytes(bits.len()), 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_auto_falls_back_and_only_on_kernel_build_failures() {
        let auto = Context::with_backend(Backend::Auto).unwrap();
        let kernel_err = || -> Result<u32> { Err(Error::Kernel("no".into())) };
        assert!(matches!(auto.fallback_or(kernel_err()), Ok(None)));
        assert!(matches!(auto.fallback_or(Ok(3)), Ok(Some(3))));
        let other: Result<u32> = Err(Error::Validation("bad".into()));
        assert!(auto.fallback_or(other).is_err());
        let cpu = Context::with_backend(Backend::Cpu).unwrap();
        assert!(cpu.fallback_or(kernel_err()).is_err());
    }

    #[test]
    fn context_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Context>();
        check::<Tensor>();
    }
}
