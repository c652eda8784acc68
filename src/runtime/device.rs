//! A wgpu device and queue with what gpu-linalg keeps per device: error scopes and the
//! device-lost state, the pipeline cache, the buffer pool and the command stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::adapter::{summarize, DeviceSummary};
use super::pipeline::Kernel;
use super::pool::Pool;
use super::stream::{Stream, SubmitMode, Timer};
use crate::error::{Error, Result};

/// Locks `m`, ignoring poisoning (a panicking thread never leaves the guarded state
/// half-written: every critical section here is a plain update).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest serial loop one invocation runs on a CPU-type adapter, where kernels that loop over
/// a long dimension (matmul's k, conv's input channels, slerp's rows) split it into slices of
/// at most this many. lavapipe and GL's llvmpipe end every invocation after 65,535 loop
/// iterations in all (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`), silently.
pub const LOOP_SLICE_CPU_ADAPTER: usize = 16_384;

/// How to wait for a submission: by one blocking wait, or (GL) by short non-blocking polls until
/// the stream's completion counter reaches its sequence number.
pub(crate) enum WaitBy<'a> {
    /// `device.poll(Wait)` for wgpu's index (every submission when `None`).
    Blocking(Option<wgpu::SubmissionIndex>),
    /// Non-blocking polls until `completed` reaches `seq`.
    Polling {
        /// The stream's count of completed submissions.
        completed: &'a std::sync::atomic::AtomicU64,
        /// The sequence number to reach.
        seq: u64,
    },
}

/// Blocks until a submission of `device` has completed.
///
/// - Elsewhere: one unbounded `Wait`. Not a loop of short ones: wgpu-core 30 asserts, in
///   `Device::maintain`, that a queue found empty has a fence value at least the waited index,
///   and a timed-out wait while another thread's poll or submit retires the submissions trips
///   that assertion (seen in the stress test with 50 ms waits).
/// - On GL: polls without a wait index (no assertion), 0.5 ms apart. GL holds its one context
///   lock through a wait, and any other thread that needs it for more than 6 s makes wgpu-hal
///   panic ("Could not lock adapter context"), which long waits caused in the GL suite.
pub(crate) fn wait_for(
    device: &wgpu::Device,
    by: WaitBy<'_>,
) -> std::result::Result<(), wgpu::PollError> {
    match by {
        WaitBy::Blocking(idx) => device
            .poll(wgpu::PollType::Wait {
                submission_index: idx,
                timeout: None,
            })
            .map(drop),
        WaitBy::Polling { completed, seq } => loop {
            device.poll(wgpu::PollType::Poll)?;
            if completed.load(std::sync::atomic::Ordering::Acquire) >= seq {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        },
    }
}

/// Whether kernels are compiled with wgpu's runtime bounds checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BoundsChecks {
    /// Unchecked on CPU-type adapters, where it was measured to pay (+35% matmul on lavapipe);
    /// checked on real GPUs. `GPU_LINALG_BOUNDS_CHECKS=on|off` overrides it.
    #[default]
    Auto,
    /// Always checked.
    On,
    /// Unchecked wherever a kernel's host code proves every index in bounds.
    Off,
}

impl BoundsChecks {
    /// Whether modules are built checked on an adapter of `device_type`.
    pub(crate) fn checked_on(self, device_type: wgpu::DeviceType) -> bool {
        let resolved = match self {
            BoundsChecks::Auto => match std::env::var("GPU_LINALG_BOUNDS_CHECKS").as_deref() {
                Ok("on") => BoundsChecks::On,
                Ok("off") => BoundsChecks::Off,
                _ => BoundsChecks::Auto,
            },
            other => other,
        };
        match resolved {
            BoundsChecks::On => true,
            BoundsChecks::Off => false,
            BoundsChecks::Auto => device_type != wgpu::DeviceType::Cpu,
        }
    }
}

/// How a device is set up beyond wgpu's own descriptor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeviceSetup {
    pub bounds_checks: BoundsChecks,
    pub submit: Option<SubmitMode>,
}

/// Environment variable that keeps the cooperative-matrix feature (the matrix units of the
/// float16 GEMM) off, set to `off`, where the adapter offers it.
pub const COOPERATIVE_MATRIX_ENV: &str = "GPU_LINALG_COOPERATIVE_MATRIX";

/// A wgpu device and queue with everything gpu-linalg keeps per device.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix configurations the adapter offers (empty without the feature).
    pub cooperative: Vec<wgpu::CooperativeMatrixProperties>,
    /// Whether kernels are built with runtime bounds checks on this device.
    pub checked: bool,
    pub(crate) pipelines: Mutex<HashMap<String, Arc<Kernel>>>,
    pub(crate) pool: Pool,
    pub(crate) stream: Stream,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Active kernel timer of `Context::time_gpu`, if any.
    pub(crate) timer: Mutex<Option<Timer>>,
}

impl Gpu {
    /// Wraps `device` and `queue`, installing the device-lost and uncaptured-error handlers
    /// (wgpu's default handler panics).
    pub(crate) fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        setup: DeviceSetup,
        cooperative: Vec<wgpu::CooperativeMatrixProperties>,
    ) -> Arc<Gpu> {
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
        let checked = setup.bounds_checks.checked_on(info.device_type);
        Arc::new(Gpu {
            stream: Stream::new(
                &device,
                setup
                    .submit
                    .or_else(SubmitMode::from_env)
                    .unwrap_or_else(|| SubmitMode::default_for(info.backend)),
                info.backend,
            ),
            device,
            queue,
            info,
            limits,
            features,
            cooperative,
            checked,
            pipelines: Mutex::new(HashMap::new()),
            pool: Pool::default(),
            lost,
            uncaptured,
            timer: Mutex::new(None),
        })
    }

    /// True for CPU-type adapters such as lavapipe (llvmpipe's loop limit and JIT apply).
    pub fn is_cpu_adapter(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
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
    /// catch into an `Err` that starts with `what`. Scopes are per thread: what another thread
    /// does meanwhile is never reported here.
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
    /// (ops that split larger operands into windows never need to).
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

    /// Submits everything recorded so far and blocks until the GPU has finished it.
    pub fn wait_idle(&self) -> Result<()> {
        self.flush()?;
        self.wait_for(None, self.stream.submitted(), "waiting for the GPU")?;
        self.stream.mark_all_done();
        self.check_alive()
    }

    /// Blocks until the submission of wgpu index `idx` and stream sequence number `seq` (every
    /// submission when `idx` is `None`) has completed (see [`wait_for`]).
    pub(crate) fn wait_for(
        &self,
        idx: Option<wgpu::SubmissionIndex>,
        seq: u64,
        what: &str,
    ) -> Result<()> {
        let by = self.stream.wait_by(idx, seq);
        wait_for(&self.device, by).map_err(|e| Error::DeviceLost(format!("{what}: {e}")))?;
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
            cooperative_matrix: self
                .cooperative
                .iter()
                .map(super::adapter::cooperative_name)
                .collect(),
        }
    }
}
