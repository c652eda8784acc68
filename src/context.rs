//! The compute context: where ops run (a wgpu device, or the fast CPU backend), the pipeline
//! cache, the buffer pool, error scopes and readback.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::error::{Error, Result};
use crate::tensor::{check_shape, DType, HostData, Storage, Tensor};

/// Where a [`Context`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// A real GPU (discrete, then integrated, then virtual) if one exists, else the fast CPU
    /// backend. CPU-type adapters such as lavapipe are not picked: the CPU backend is faster.
    /// The only mode that falls back: an op whose GPU kernel cannot be built runs on the CPU,
    /// with one warning.
    #[default]
    Auto,
    /// The best adapter of any type, software adapters included; every failure is an `Err`.
    Gpu,
    /// The fast multi-threaded CPU backend.
    Cpu,
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "gpu" => Ok(Backend::Gpu),
            "cpu" => Ok(Backend::Cpu),
            other => Err(Error::InvalidArgument(format!(
                "unknown backend '{other}'; expected auto, gpu or cpu"
            ))),
        }
    }
}

/// Options for [`Context::with_options`].
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Where to compute.
    pub backend: Backend,
    /// Only consider adapters whose name contains this text (case-insensitive). When `None`,
    /// `GPU_LINALG_ADAPTER`, then wgpu's `WGPU_ADAPTER_NAME`, are read from the environment.
    pub adapter: Option<String>,
}

/// One adapter wgpu can see, as listed by [`list_adapters`].
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "NVIDIA H200" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Graphics API: Vulkan, Metal, Dx12 or Gl.
    pub api: String,
    /// Driver name and version.
    pub driver: String,
    /// True for a real GPU (discrete, integrated or virtual), the kind `auto` may pick.
    pub is_real_gpu: bool,
}

/// The limits and features of a GPU device that matter to gpu-linalg.
#[derive(Clone, Debug)]
pub struct DeviceSummary {
    /// The adapter behind the device.
    pub adapter: AdapterSummary,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Whether the adapter offers f16 in shaders.
    pub shader_f16: bool,
    /// Whether the adapter offers subgroup operations.
    pub subgroups: bool,
    /// Whether the adapter offers timestamp queries.
    pub timestamps: bool,
}

fn api_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "Dx12",
        wgpu::Backend::Gl => "Gl",
        wgpu::Backend::BrowserWebGpu => "WebGpu",
        _ => "Other",
    }
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn api_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

fn summarize(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        device_type: format!("{:?}", info.device_type),
        api: api_name(info.backend).to_string(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        is_real_gpu: type_rank(info.device_type) <= 2,
    }
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    wgpu::Instance::new(desc)
}

fn enumerate() -> Vec<wgpu::Adapter> {
    let inst = instance();
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(inst.enumerate_adapters(backends))
}

/// Every adapter wgpu can see (honouring `WGPU_BACKEND`), best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut adapters: Vec<wgpu::AdapterInfo> = enumerate().iter().map(|a| a.get_info()).collect();
    adapters.sort_by_key(|i| (type_rank(i.device_type), api_rank(i.backend)));
    adapters.iter().map(summarize).collect()
}

fn adapter_filter(explicit: &Option<String>) -> Option<String> {
    explicit
        .clone()
        .or_else(|| std::env::var("GPU_LINALG_ADAPTER").ok())
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .filter(|s| !s.trim().is_empty())
}

/// Picks the adapter for `backend` (`Gpu` or `Auto`); `Ok(None)` means "use the CPU" (Auto only).
fn pick_adapter(backend: Backend, filter: &Option<String>) -> Result<Option<wgpu::Adapter>> {
    let mut adapters = enumerate();
    let seen: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {})", i.name, i.device_type, api_name(i.backend))
        })
        .collect();
    if let Some(f) = filter {
        let f = f.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&f));
        if adapters.is_empty() {
            return Err(Error::NoAdapter(format!(
                "no adapter name contains '{f}'; adapters found: [{}]",
                seen.join(", ")
            )));
        }
    }
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (type_rank(i.device_type), api_rank(i.backend))
    });
    let best = adapters.into_iter().next();
    match backend {
        Backend::Auto => Ok(best.filter(|a| type_rank(a.get_info().device_type) <= 2)),
        Backend::Gpu => best.map(Some).ok_or_else(|| {
            Error::NoAdapter(
                "wgpu found no adapter (on Linux without a GPU, install mesa-vulkan-drivers \
                 for the lavapipe software adapter)"
                    .into(),
            )
        }),
        Backend::Cpu => Ok(None),
    }
}

/// A compiled compute pipeline and its bind group layout (group 0).
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Freed buffers kept for reuse, keyed by (size class, usage).
#[derive(Default)]
struct Pool {
    free: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// Bytes of freed buffers the pool keeps at most.
const POOL_CAP_BYTES: u64 = 1 << 30;

/// Rounds a request up to its pool size class: multiples of 256 bytes below 4 KiB, then
/// steps of 1/16 of the next power of two (at most 12.5% waste).
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    if b <= 4096 {
        return b.div_ceil(256) * 256;
    }
    let step = (b.next_power_of_two() / 16).max(256);
    b.div_ceil(step) * step
}

/// A wgpu device and queue with everything gpu-linalg keeps per device.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    pool: Mutex<Pool>,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// The matmul kernel configuration chosen for this device (tuned once, then cached).
    pub matmul_choice: Mutex<Option<crate::ops::matmul::MatmulConfig>>,
    /// The conv kernel configurations chosen for this device: [ordinary, depthwise].
    pub conv_choice: Mutex<[Option<crate::ops::conv::ConvConfig>; 2]>,
    /// Active kernel timer of [`Context::time_gpu`], if any.
    timer: Mutex<Option<Timer>>,
}

/// Timestamp queries around every compute pass encoded while a [`Context::time_gpu`] runs:
/// query 0 at the start of the first pass, query 1 at the end of each (the last one wins).
struct Timer {
    set: wgpu::QuerySet,
    started: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A kernel choice per device, remembered for the life of the process (by weak pointer, so a
/// dropped device is never matched), read from the on-disk tuning cache, or tuned.
pub(crate) struct PerDevice<T>(Mutex<Vec<(Weak<Gpu>, T)>>);

impl<T: Copy> PerDevice<T> {
    /// An empty memo (for a `static`).
    pub(crate) const fn new() -> Self {
        PerDevice(Mutex::new(Vec::new()))
    }

    /// The choice for `gpu`: remembered, else the tuning cache's entry for `family` (read by
    /// `parse`), else `tune()`, which is then written to the cache (as `show` spells it).
    pub(crate) fn get_or_tune(
        &self,
        gpu: &Arc<Gpu>,
        family: &str,
        parse: impl Fn(&str) -> Option<T>,
        show: impl Fn(&T) -> String,
        tune: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        {
            let mut memo = lock(&self.0);
            memo.retain(|(w, _)| w.strong_count() > 0);
            if let Some((_, v)) = memo
                .iter()
                .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(gpu)))
            {
                return Ok(*v);
            }
        }
        let choice = match gpu.tuned(family).as_deref().and_then(&parse) {
            Some(v) => v,
            None => {
                let v = tune()?;
                gpu.store_tuned(family, &show(&v));
                v
            }
        };
        lock(&self.0).push((Arc::downgrade(gpu), choice));
        Ok(choice)
    }
}

impl Gpu {
    fn new(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Arc<Gpu> {
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lock(&lost_cb) = Some(format!("{reason:?}: {msg}"));
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let unc = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = lock(&unc);
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let limits = device.limits();
        let features = device.features();
        Arc::new(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            kernels: Mutex::new(HashMap::new()),
            pool: Mutex::new(Pool::default()),
            lost,
            uncaptured,
            matmul_choice: Mutex::new(None),
            conv_choice: Mutex::new([None, None]),
            timer: Mutex::new(None),
        })
    }

    /// Begins a compute pass, with timestamp writes while a kernel timer is active.
    pub fn begin_pass<'e>(&self, enc: &'e mut wgpu::CommandEncoder) -> wgpu::ComputePass<'e> {
        let writes = lock(&self.timer).as_mut().map(|t| {
            let begin = (!t.started).then_some(0);
            t.started = true;
            (t.set.clone(), begin)
        });
        match writes {
            Some((set, begin)) => enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: begin,
                    end_of_pass_write_index: Some(1),
                }),
            }),
            None => enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default()),
        }
    }

    /// `Err(DeviceLost)` once the device is gone.
    pub fn check_alive(&self) -> Result<()> {
        if let Some(reason) = lock(&self.lost).as_ref() {
            return Err(Error::DeviceLost(format!(
                "{reason}; create a new Context to continue"
            )));
        }
        Ok(())
    }

    /// Runs `f` inside out-of-memory, validation and internal error scopes and turns what they
    /// catch into an `Err` that starts with `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        self.check_alive()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let i = pollster::block_on(internal.pop());
        let o = pollster::block_on(oom.pop());
        self.check_alive()?;
        if let Some(e) = o {
            return Err(Error::OutOfMemory(format!("{what}: {e}")));
        }
        if let Some(e) = i {
            return Err(Error::Kernel(format!("{what}: {e}")));
        }
        if let Some(e) = v {
            return Err(Error::Validation(format!("{what}: {e}")));
        }
        if let Some(e) = lock(&self.uncaptured).take() {
            return Err(Error::Validation(format!("{what}: {e}")));
        }
        Ok(out)
    }

    /// The pipeline for (`key`), built by `build` on first use and cached for the device's life.
    pub fn kernel(
        &self,
        key: &str,
        build: impl FnOnce(&wgpu::Device) -> wgpu::ComputePipeline,
    ) -> Result<Arc<Kernel>> {
        if let Some(k) = lock(&self.kernels).get(key) {
            return Ok(k.clone());
        }
        let pipeline = self
            .scoped(&format!("building kernel {key}"), || build(&self.device))
            .map_err(|e| match e {
                Error::DeviceLost(m) => Error::DeviceLost(m),
                other => Error::Kernel(other.to_string()),
            })?;
        let layout = pipeline.get_bind_group_layout(0);
        let k = Arc::new(Kernel { pipeline, layout });
        lock(&self.kernels).insert(key.to_string(), k.clone());
        Ok(k)
    }

    /// Checks `bytes` against the device's largest buffer.
    pub fn check_size(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.limits.max_buffer_size {
            return Err(Error::OutOfMemory(format!(
                "{what} needs a buffer of {bytes} bytes, above this adapter's max_buffer_size of {} bytes",
                self.limits.max_buffer_size
            )));
        }
        Ok(())
    }

    /// Checks that `bytes` fit one storage binding: ops that bind a whole tensor call this
    /// (matmul splits larger operands into row chunks instead).
    pub fn check_binding(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.limits.max_storage_buffer_binding_size {
            return Err(Error::OutOfMemory(format!(
                "{what} needs a storage binding of {bytes} bytes, above this adapter's \
                 max_storage_buffer_binding_size of {} bytes",
                self.limits.max_storage_buffer_binding_size
            )));
        }
        Ok(())
    }

    /// A buffer of at least `bytes` bytes (pooled), usable as storage or as a copy source/target.
    pub fn alloc(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Arc<GpuBuffer>> {
        self.alloc_with(bytes, storage_usage(), what)
    }

    /// A uniform buffer holding `words`.
    pub fn uniform(self: &Arc<Self>, words: &[u32]) -> Result<Arc<GpuBuffer>> {
        let buf = self.alloc_with(
            (words.len() * 4) as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            "kernel parameters",
        )?;
        self.queue
            .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(words));
        Ok(buf)
    }

    fn alloc_with(
        self: &Arc<Self>,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &str,
    ) -> Result<Arc<GpuBuffer>> {
        self.check_alive()?;
        self.check_size(bytes, what)?;
        let mut class = size_class(bytes);
        if class > self.limits.max_buffer_size {
            class = bytes.max(4).div_ceil(4) * 4;
        }
        let key = (class, usage.bits());
        let reused = {
            let mut pool = lock(&self.pool);
            let b = pool.free.get_mut(&key).and_then(|v| v.pop());
            if b.is_some() {
                pool.bytes -= class;
            }
            b
        };
        let buffer = match reused {
            Some(b) => b,
            None => self.scoped(&format!("allocating {bytes} bytes for {what}"), || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpu-linalg"),
                    size: class,
                    usage,
                    mapped_at_creation: false,
                })
            })?,
        };
        Ok(Arc::new(GpuBuffer {
            buffer: Some(buffer),
            gpu: self.clone(),
            pooled: true,
        }))
    }

    fn release(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        let mut pool = lock(&self.pool);
        if pool.bytes + size > POOL_CAP_BYTES {
            return;
        }
        pool.bytes += size;
        pool.free
            .entry((size, buffer.usage().bits()))
            .or_default()
            .push(buffer);
    }

    /// Uploads `data` into a new pooled buffer.
    pub fn upload(self: &Arc<Self>, data: &[u8], what: &str) -> Result<Arc<GpuBuffer>> {
        let buf = self.alloc(data.len() as u64, what)?;
        if !data.is_empty() {
            self.queue.write_buffer(buf.buffer(), 0, data);
        }
        Ok(buf)
    }

    /// Submits `encoder` and returns the submission index.
    pub fn submit(&self, encoder: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
        self.queue.submit(Some(encoder.finish()))
    }

    /// Blocks until all submitted work is done.
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("waiting for the GPU: {e}")))?;
        self.check_alive()
    }

    /// A summary of the device's limits and features.
    pub fn summary(&self) -> DeviceSummary {
        DeviceSummary {
            adapter: summarize(&self.info),
            max_storage_buffer_binding_size: self.limits.max_storage_buffer_binding_size,
            max_buffer_size: self.limits.max_buffer_size,
            max_compute_workgroups_per_dimension: self.limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: self
                .limits
                .max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: self.limits.max_compute_workgroup_storage_size,
            shader_f16: self.features.contains(wgpu::Features::SHADER_F16),
            subgroups: self.features.contains(wgpu::Features::SUBGROUP),
            timestamps: self.features.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

/// Where the tuning cache lives: `GPU_LINALG_CACHE_DIR`, else `$XDG_CACHE_HOME/gpu-linalg`,
/// else `$HOME/.cache/gpu-linalg`; `None` when `GPU_LINALG_NO_TUNING_CACHE` is set.
fn tuning_cache_file() -> Option<std::path::PathBuf> {
    if std::env::var("GPU_LINALG_NO_TUNING_CACHE").is_ok_and(|v| v != "0" && !v.is_empty()) {
        return None;
    }
    let dir = std::env::var_os("GPU_LINALG_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::Path::new(&d).join("gpu-linalg"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| std::path::Path::new(&d).join(".cache/gpu-linalg"))
        })?;
    Some(dir.join("tuning.txt"))
}

impl Gpu {
    /// The cache key of a kernel family on this adapter: adapter, API, driver, crate version.
    fn tuning_key(&self, family: &str) -> String {
        let i = &self.info;
        format!(
            "{family}|{}|{:?}|{}|{}|{:?}|gpu-linalg {}",
            i.name,
            i.backend,
            i.driver,
            i.driver_info,
            i.device_type,
            env!("CARGO_PKG_VERSION")
        )
        .replace(['\n', '\t'], " ")
    }

    /// The kernel choice cached on disk for `family` on this adapter, if any.
    pub fn tuned(&self, family: &str) -> Option<String> {
        let key = self.tuning_key(family);
        let text = std::fs::read_to_string(tuning_cache_file()?).ok()?;
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .next_back()
    }

    /// Caches the kernel choice for `family` on this adapter (best effort: a cache that cannot
    /// be written only costs a re-tune next time).
    pub fn store_tuned(&self, family: &str, value: &str) {
        let Some(path) = tuning_cache_file() else {
            return;
        };
        let key = self.tuning_key(family);
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_once('\t').is_some_and(|(k, _)| k != key))
            .map(str::to_string)
            .collect();
        lines.push(format!("{key}\t{value}"));
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, lines.join("\n") + "\n").is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC
}

/// A window of a buffer bound as one operand: byte offset and size, and the element offset of
/// the operand's first element inside the window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub offset: u64,
    pub size: u64,
    pub elem_off: usize,
}

impl View {
    /// The whole buffer from byte 0.
    pub fn whole(bytes: u64) -> View {
        View {
            offset: 0,
            size: bytes.max(4),
            elem_off: 0,
        }
    }

    /// The smallest window starting at a multiple of `align` that covers elements
    /// `start..end`.
    pub fn window(start: usize, end: usize, align: u64) -> View {
        let s = (start * 4) as u64;
        let offset = s / align * align;
        View {
            offset,
            size: ((end * 4) as u64 - offset).max(4),
            elem_off: ((s - offset) / 4) as usize,
        }
    }
}

/// A readback in flight: the staging buffer, its submission, and the map callback's channel.
type PendingRead = (
    wgpu::Buffer,
    wgpu::SubmissionIndex,
    futures_intrusive::channel::shared::OneshotReceiver<Result<(), wgpu::BufferAsyncError>>,
);

/// A GPU buffer owned by a tensor; returns to the device's pool when the last tensor drops.
pub(crate) struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pub gpu: Arc<Gpu>,
    pooled: bool,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes)", self.buffer().size())
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if self.pooled {
                self.gpu.release(b);
            }
        }
    }
}

impl GpuBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        // The option is only emptied in `drop`.
        match &self.buffer {
            Some(b) => b,
            None => unreachable!("GpuBuffer used after drop"),
        }
    }

    /// A binding of the first `bytes` bytes (at least 4).
    pub fn binding(&self, bytes: u64) -> wgpu::BindingResource<'_> {
        self.binding_range(0, bytes)
    }

    /// A binding of `bytes` bytes (at least 4) from byte `offset` (a multiple of the device's
    /// `min_storage_buffer_offset_alignment`).
    pub fn binding_range(&self, offset: u64, bytes: u64) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset,
            size: wgpu::BufferSize::new(bytes.max(4)),
        })
    }

    /// Starts a copy of the first `len` bytes into a mappable staging buffer.
    fn start_read(&self, len: usize) -> Result<PendingRead> {
        let gpu = &self.gpu;
        let size = (len as u64).div_ceil(4) * 4;
        gpu.scoped("reading a tensor back", || {
            let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpu-linalg readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            enc.copy_buffer_to_buffer(self.buffer(), 0, &staging, 0, size);
            let idx = gpu.submit(enc);
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            staging
                .slice(..size)
                .map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
            (staging, idx, rx)
        })
    }

    fn finish_read(&self, staging: wgpu::Buffer, len: usize) -> Result<Vec<u8>> {
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            view[..len].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Blocking readback of the first `len` bytes.
    pub fn read(&self, len: usize) -> Result<Vec<u8>> {
        self.gpu.check_alive()?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (staging, idx, rx) = self.start_read(len)?;
        self.gpu
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| Error::DeviceLost(format!("waiting for a readback: {e}")))?;
        self.gpu.check_alive()?;
        match pollster::block_on(rx.receive()) {
            Some(Ok(())) => self.finish_read(staging, len),
            Some(Err(e)) => Err(Error::Readback(format!("mapping the staging buffer: {e}"))),
            None => Err(Error::Readback("the map callback was dropped".into())),
        }
    }

    /// Async readback: polls the device until the copy is mapped, yielding between polls.
    pub async fn read_async(&self, len: usize) -> Result<Vec<u8>> {
        self.gpu.check_alive()?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (staging, _idx, rx) = self.start_read(len)?;
        let device = self.gpu.device.clone();
        let done = Arc::new(AtomicBool::new(false));
        let result = {
            let receive = rx.receive();
            let poll = PollUntil {
                device,
                done: done.clone(),
            };
            futures_select(receive, poll).await
        };
        done.store(true, Ordering::Relaxed);
        self.gpu.check_alive()?;
        match result {
            Some(Ok(())) => self.finish_read(staging, len),
            Some(Err(e)) => Err(Error::Readback(format!("mapping the staging buffer: {e}"))),
            None => Err(Error::Readback("the map callback was dropped".into())),
        }
    }
}

/// A future that polls the device without blocking each time it is polled, and never
/// completes by itself: it keeps the map callback moving while the receiver is awaited.
struct PollUntil {
    device: wgpu::Device,
    done: Arc<AtomicBool>,
}

impl std::future::Future for PollUntil {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.done.load(Ordering::Relaxed) {
            return std::task::Poll::Ready(());
        }
        let _ = self.device.poll(wgpu::PollType::Poll);
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Awaits `a`, driving `b` alongside; returns `a`'s output.
async fn futures_select<A: std::future::Future, B: std::future::Future<Output = ()>>(
    a: A,
    b: B,
) -> A::Output {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        let _ = b.as_mut().poll(cx);
        std::task::Poll::Pending
    })
    .await
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
    pub fn new() -> Result<Context> {
        Context::with_options(ContextOptions::default())
    }

    /// A context for `backend`.
    pub fn with_backend(backend: Backend) -> Result<Context> {
        Context::with_options(ContextOptions {
            backend,
            ..Default::default()
        })
    }

    /// A context with explicit options.
    pub fn with_options(opts: ContextOptions) -> Result<Context> {
        let filter = adapter_filter(&opts.adapter);
        let (gpu, note) = match opts.backend {
            Backend::Cpu => (None, "the fast CPU backend (--backend cpu)".to_string()),
            b => match pick_adapter(b, &filter)? {
                Some(adapter) => {
                    let info = adapter.get_info();
                    let gpu = open_device(&adapter)?;
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
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Result<Context> {
        let info = device.adapter_info();
        let s = summarize(&info);
        Ok(Context {
            inner: Arc::new(Inner {
                requested: Backend::Gpu,
                gpu: Some(Gpu::new(device, queue, info)),
                note: format!("application-owned device on {} ({})", s.name, s.api),
                fallback_warned: AtomicBool::new(false),
            }),
        })
    }

    /// The backend this context was asked for.
    pub fn requested_backend(&self) -> Backend {
        self.inner.requested
    }

    /// True when ops run on a GPU adapter (software adapters included).
    pub fn is_gpu(&self) -> bool {
        self.inner.gpu.is_some()
    }

    /// One line saying where ops run and why.
    pub fn description(&self) -> String {
        self.inner.note.clone()
    }

    /// Limits and features of the GPU device, `None` on the CPU backend.
    pub fn device_summary(&self) -> Option<DeviceSummary> {
        self.inner.gpu.as_ref().map(|g| g.summary())
    }

    /// The wgpu device and queue, `None` on the CPU backend.
    pub fn wgpu(&self) -> Option<(&wgpu::Device, &wgpu::Queue)> {
        self.inner.gpu.as_ref().map(|g| (&g.device, &g.queue))
    }

    pub(crate) fn gpu(&self) -> Option<&Arc<Gpu>> {
        self.inner.gpu.as_ref()
    }

    /// Blocks until every op submitted so far has finished on the GPU (a no-op on the CPU).
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
    pub fn time_gpu<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        let Some(gpu) = self
            .gpu()
            .filter(|g| g.features.contains(wgpu::Features::TIMESTAMP_QUERY))
        else {
            return Ok((f()?, None));
        };
        let set = gpu.scoped("creating a timestamp query set", || {
            gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gpu-linalg timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        })?;
        *lock(&gpu.timer) = Some(Timer {
            set,
            started: false,
        });
        let out = f();
        let timer = lock(&gpu.timer).take();
        let out = out?;
        let Some(Timer { set, started: true }) = timer else {
            return Ok((out, None));
        };
        let resolved = gpu.alloc_with(
            16,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            "timestamps",
        )?;
        gpu.scoped("resolving timestamps", || {
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            enc.resolve_query_set(&set, 0..2, resolved.buffer(), 0);
            gpu.submit(enc);
        })?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&resolved.read(16)?);
        let period_ns = f64::from(gpu.queue.get_timestamp_period());
        let secs = match ticks.as_slice() {
            [t0, t1] => t1.saturating_sub(*t0) as f64 * period_ns * 1e-9,
            _ => return Err(Error::Readback("timestamp readback was short".into())),
        };
        Ok((out, Some(secs)))
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
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        let n = crate::tensor::element_count(shape)?;
        self.tensor(shape, &vec![0.0; n])
    }

    /// Wraps an application's wgpu buffer (usage must include `STORAGE | COPY_SRC | COPY_DST`)
    /// holding `f32` values as a tensor, without copying. The buffer is not pooled.
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
            Arc::new(GpuBuffer {
                buffer: Some(buffer),
                gpu: gpu.clone(),
                pooled: false,
            }),
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
                };
                gpu.upload(&bytes, "tensor upload")
            }
            Storage::Host(HostData::F32(v)) => gpu.upload(bytemuck::cast_slice(v), "tensor upload"),
            Storage::Host(HostData::U32(v)) => gpu.upload(bytemuck::cast_slice(v), "tensor upload"),
        }
    }
}

fn open_device(adapter: &wgpu::Adapter) -> Result<Arc<Gpu>> {
    let info = adapter.get_info();
    let wanted = wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::SUBGROUP
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SHADER_INT64;
    let features = adapter.features() & wanted;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("gpu-linalg"),
        required_features: features,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| Error::Device(format!("{} ({}): {e}", info.name, api_name(info.backend))))?;
    Ok(Gpu::new(device, queue, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_little() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(5000), 5120);
        assert_eq!(size_class(4097), 4608);
        for b in [4097u64, 100_000, 1 << 20, (1 << 27) + 3] {
            let c = size_class(b);
            assert!(
                c >= b && (c as f64) <= b as f64 * 1.125 + 256.0,
                "{b} -> {c}"
            );
        }
    }

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
