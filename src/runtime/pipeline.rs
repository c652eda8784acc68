//! The pipeline cache and the one place compute pipelines are built, with or without wgpu's
//! runtime bounds checks (see [`super::BoundsChecks`]).

use std::sync::Arc;

use super::device::{lock, Gpu};
use crate::error::{Error, Result};

/// A compiled compute pipeline and its bind group layout (group 0).
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl Gpu {
    /// The pipeline for `key`, built by `build` on first use and cached for the device's life.
    pub fn kernel(
        &self,
        key: &str,
        build: impl FnOnce(&wgpu::Device) -> wgpu::ComputePipeline,
    ) -> Result<Arc<Kernel>> {
        if let Some(k) = lock(&self.pipelines).get(key) {
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
        lock(&self.pipelines).insert(key.to_string(), k.clone());
        Ok(k)
    }
}

/// Builds (once per device; cached under `key`) the compute pipeline of `entry` in the WGSL
/// module `src`. On devices whose [`super::BoundsChecks`] allow it (CPU-type adapters by
/// default, where it is worth ~35%), the module is compiled without runtime bounds checks;
/// elsewhere with them.
///
/// # Safety
///
/// Every index the module computes must be in bounds of the buffers the caller binds, for every
/// dispatch the caller makes, and no loop may be unbounded: the caller proves it from the sizes
/// it derives from the operand shapes (each call site says how).
pub(crate) unsafe fn trusted_pipeline(
    gpu: &Gpu,
    key: &str,
    label: &str,
    src: impl FnOnce() -> String,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<Kernel>> {
    // SAFETY: the caller's contract (above).
    unsafe { cached_pipeline(gpu, gpu.checked, key, label, src, entry, constants) }
}

/// The WGSL module `src`, with runtime bounds checks when `checked`, else without (for
/// families that build their pipelines with an explicit layout).
///
/// # Safety
///
/// As for [`trusted_pipeline`] when `checked` is false.
pub(crate) unsafe fn trusted_module(
    device: &wgpu::Device,
    checked: bool,
    label: &str,
    src: String,
) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    };
    if checked {
        device.create_shader_module(desc)
    } else {
        // SAFETY: the caller's contract (above).
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    }
}

/// Builds (once per device) the pipeline of `entry` in `src`, always with bounds checks.
pub(crate) fn checked_pipeline(
    gpu: &Gpu,
    key: &str,
    label: &str,
    src: impl FnOnce() -> String,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<Kernel>> {
    // SAFETY: a checked module has no contract to keep.
    unsafe { cached_pipeline(gpu, true, key, label, src, entry, constants) }
}

/// The pipeline of `entry` in `src` under `key` in the device's cache, built on first use.
///
/// # Safety
///
/// As for [`trusted_pipeline`] when `checked` is false.
unsafe fn cached_pipeline(
    gpu: &Gpu,
    checked: bool,
    key: &str,
    label: &str,
    src: impl FnOnce() -> String,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<Kernel>> {
    gpu.kernel(key, |device| {
        // SAFETY: the caller's contract (above).
        let module = unsafe { trusted_module(device, checked, label, src()) };
        compute_pipeline(device, &module, entry, constants)
    })
}

fn compute_pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}
