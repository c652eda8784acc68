//! The layer under every family, each concept once, naming no family:
//!
//! - [`adapter`]: which adapters exist, how they rank, which one a backend takes;
//! - `device`: the device and queue, error scopes, device loss, bounds-check policy;
//! - `pool`: submission-aware buffer pool (and NaN poisoning of released buffers for tests);
//! - `stream`: the command stream, encoders that own what they bind, uniform sub-allocation,
//!   readback;
//! - `pipeline`: the pipeline cache and the one pipeline builder (checked or unchecked);
//! - `tune`: the verified, bucketed, locked tuner and its disk cache;
//! - `params`: typed kernel parameters and their layouts;
//! - `window`: binding windows and grid folding; `sizes`: index conversions;
//! - `shader`: WGSL snippets several families prepend; `timing`: timestamp queries.

pub mod adapter;
mod device;
mod params;
mod pipeline;
mod pool;
pub(crate) mod shader;
mod sizes;
mod stream;
mod timing;
pub(crate) mod tune;
mod window;

pub use adapter::{list_adapters, AdapterSummary, Backend, DeviceSummary};
pub use device::{BoundsChecks, COOPERATIVE_MATRIX_ENV, LOOP_SLICE_CPU_ADAPTER};
pub use params::{ParamField, ParamsLayout};
pub use stream::{
    thread_counters, GpuCounters, SubmitMode, MAX_PENDING_BYTES, MAX_PENDING_DISPATCHES,
};
pub use tune::{
    inject_wrong_tuning_candidate, BlockSize, TuneOutcome, TuningRecord, INJECTED_LABEL,
    TUNING_CACHE_FORMAT,
};

pub(crate) use adapter::{
    adapter_filter, enumerate, open_device, pick_adapter, summarize, type_rank,
};
pub(crate) use device::{DeviceSetup, Gpu};
pub(crate) use params::KernelParams;
pub(crate) use pipeline::{checked_pipeline, trusted_module, trusted_pipeline, Kernel};
pub(crate) use pool::{storage_usage, GpuBuffer};
pub(crate) use sizes::u32_of;
pub(crate) use stream::{counted, run_pass, Bind, Encoder, Uniform};
pub(crate) use tune::{measure, measure_with, tuning_report, Choices};
pub(crate) use window::{check_windows, fold_grid, window_align, window_budget, Window};
