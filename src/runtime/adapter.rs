//! Adapter choice: which adapters wgpu sees, how they rank, which one a backend takes, and the
//! device requested from it (the adapter's own limits, the optional features gpu-linalg uses).

use std::str::FromStr;
use std::sync::Arc;

use super::device::{DeviceSetup, Gpu};
use crate::error::{Error, Result};

/// Where a context computes.
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
    /// The cooperative-matrix configurations the device was opened with, as
    /// `MxNxK A·B→C` (`16x16x16 f16·f16→f32`); empty where the adapter offers none or
    /// `GPU_LINALG_COOPERATIVE_MATRIX=off`.
    pub cooperative_matrix: Vec<String>,
}

/// A cooperative-matrix configuration as `MxNxK A·B→C`, e.g. `16x16x16 f16·f16→f32`.
pub(crate) fn cooperative_name(c: &wgpu::CooperativeMatrixProperties) -> String {
    let ty = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
    format!(
        "{}x{}x{} {}·{}→{}",
        c.m_size,
        c.n_size,
        c.k_size,
        ty(c.ab_type),
        ty(c.ab_type),
        ty(c.cr_type)
    )
}

pub(crate) fn api_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "Dx12",
        wgpu::Backend::Gl => "Gl",
        wgpu::Backend::BrowserWebGpu => "WebGpu",
        _ => "Other",
    }
}

pub(crate) fn type_rank(t: wgpu::DeviceType) -> u32 {
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

pub(crate) fn summarize(info: &wgpu::AdapterInfo) -> AdapterSummary {
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

pub(crate) fn enumerate() -> Vec<wgpu::Adapter> {
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

pub(crate) fn adapter_filter(explicit: &Option<String>) -> Option<String> {
    explicit
        .clone()
        .or_else(|| std::env::var("GPU_LINALG_ADAPTER").ok())
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .filter(|s| !s.trim().is_empty())
}

/// Picks the adapter for `backend` (`Gpu` or `Auto`); `Ok(None)` means "use the CPU" (Auto only).
pub(crate) fn pick_adapter(
    backend: Backend,
    filter: &Option<String>,
    api: Option<&str>,
) -> Result<Option<wgpu::Adapter>> {
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
    if let Some(api) = api {
        const APIS: [&str; 4] = ["vulkan", "metal", "dx12", "gl"];
        if !APIS.iter().any(|a| a.eq_ignore_ascii_case(api)) {
            return Err(Error::InvalidArgument(format!(
                "unknown graphics API '{api}'; expected vulkan, metal, dx12 or gl"
            )));
        }
        adapters.retain(|a| api_name(a.get_info().backend).eq_ignore_ascii_case(api));
        if adapters.is_empty() {
            return Err(Error::NoAdapter(format!(
                "no {api} adapter; adapters found: [{}]",
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

/// Opens a device on `adapter` with its own limits and the optional features gpu-linalg uses.
pub(crate) fn open_device(adapter: &wgpu::Adapter, setup: DeviceSetup) -> Result<Arc<Gpu>> {
    let info = adapter.get_info();
    let mut wanted = wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::SUBGROUP
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SHADER_INT64;
    // The matrix units, for the float16 GEMM: wgpu marks the feature experimental, so it is
    // asked for only where the adapter has it and GPU_LINALG_COOPERATIVE_MATRIX is not `off`.
    let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    let coop_on = adapter.features().contains(coop)
        && !std::env::var(super::COOPERATIVE_MATRIX_ENV).is_ok_and(|v| v.trim() == "off");
    if coop_on {
        wanted |= coop;
    }
    let features = adapter.features() & wanted;
    let experimental_features = if coop_on {
        // SAFETY: wgpu's condition for experimental features is that its implementation of
        // them may still hold bugs; gpu-linalg uses only cooperative-matrix loads, stores and
        // multiply-adds on workgroup memory, in shaders/matmul_coop.wgsl.
        unsafe { wgpu::ExperimentalFeatures::enabled() }
    } else {
        wgpu::ExperimentalFeatures::disabled()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("gpu-linalg"),
        required_features: features,
        required_limits: adapter.limits(),
        experimental_features,
        ..Default::default()
    }))
    .map_err(|e| Error::Device(format!("{} ({}): {e}", info.name, api_name(info.backend))))?;
    let cooperative = if coop_on {
        adapter.cooperative_matrix_properties()
    } else {
        Vec::new()
    };
    Ok(Gpu::new(device, queue, info, setup, cooperative))
}
