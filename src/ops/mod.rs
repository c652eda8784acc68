//! Host side of each kernel family: shape checks, planning, dispatch.

pub mod conv;
pub mod decomp;
pub mod elementwise;
pub mod layout;
pub mod matmul;
pub mod nn;
pub mod qr;
pub mod random;
pub mod reduce;
pub mod svd;
pub mod svd_batched;

use std::str::FromStr;

use crate::error::{Error, Result};

/// The WGSL sources, embedded at compile time.
pub(crate) mod source {
    /// `shaders/epilogue.wgsl`: bias + activation, shared by matmul and conv.
    pub const EPILOGUE: &str = include_str!("../../shaders/epilogue.wgsl");
    /// `shaders/matmul.wgsl`.
    pub const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
    /// `shaders/conv.wgsl`.
    pub const CONV: &str = include_str!("../../shaders/conv.wgsl");
    /// `shaders/nn.wgsl`.
    pub const NN: &str = include_str!("../../shaders/nn.wgsl");
    /// `shaders/elementwise.wgsl`.
    pub const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
    /// `shaders/layout.wgsl`.
    pub const LAYOUT: &str = include_str!("../../shaders/layout.wgsl");
    /// `shaders/divmod.wgsl`: vectorisable integer division, shared by elementwise and layout.
    pub const DIVMOD: &str = include_str!("../../shaders/divmod.wgsl");

    /// The layout module with `divmod` prepended.
    pub fn layout() -> String {
        format!("{DIVMOD}\n{LAYOUT}")
    }
    /// `shaders/random.wgsl`.
    pub const RANDOM: &str = include_str!("../../shaders/random.wgsl");
    /// `shaders/reduce.wgsl`.
    pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
    /// `shaders/svd.wgsl`.
    pub const SVD: &str = include_str!("../../shaders/svd.wgsl");
    /// `shaders/svd_batched.wgsl`.
    pub const SVD_BATCHED: &str = include_str!("../../shaders/svd_batched.wgsl");
    /// `shaders/jacobi.wgsl`: round-robin pairs and Jacobi rotations, shared by both SVDs.
    pub const JACOBI: &str = include_str!("../../shaders/jacobi.wgsl");

    /// The SVD module with the shared Jacobi functions prepended.
    pub fn svd() -> String {
        format!("{JACOBI}\n{SVD}")
    }
    /// The batched SVD module with the shared Jacobi functions prepended.
    pub fn svd_batched() -> String {
        format!("{JACOBI}\n{SVD_BATCHED}")
    }

    /// A kernel source with the shared epilogue prepended.
    pub fn with_epilogue(src: &str) -> String {
        format!("{EPILOGUE}\n{src}")
    }
}

/// Builds (once per device; cached under `key`) the compute pipeline of `entry` in the WGSL
/// module `src`, compiled without runtime bounds checks (on lavapipe that is worth ~35%).
///
/// # Safety
///
/// Every index the module computes must be in bounds of the buffers the caller binds, for every
/// dispatch the caller makes, and no loop may be unbounded: the caller proves it from the sizes
/// it derives from the operand shapes (each call site says how).
pub(crate) unsafe fn trusted_pipeline(
    gpu: &crate::context::Gpu,
    key: &str,
    label: &str,
    src: impl FnOnce() -> String,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<std::sync::Arc<crate::context::Kernel>> {
    gpu.kernel(key, |device| {
        // SAFETY: the caller's contract (above).
        let module = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(src().into()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    })
}

/// Every WGSL module the library compiles, by family, exactly as it is handed to wgpu (for the
/// cross-compilation tests that carry each kernel to MSL, HLSL, SPIR-V and GLSL).
pub fn kernel_sources() -> Vec<(&'static str, String)> {
    vec![
        ("matmul", source::with_epilogue(source::MATMUL)),
        ("conv", source::with_epilogue(source::CONV)),
        ("nn", source::with_epilogue(source::NN)),
        ("layout", source::layout()),
        ("random", source::RANDOM.to_string()),
        ("svd", source::svd()),
        ("svd_batched", source::svd_batched()),
    ]
    .into_iter()
    .chain(
        elementwise::generated_sources()
            .into_iter()
            .map(|s| ("elementwise", s)),
    )
    .chain(
        reduce::generated_sources()
            .into_iter()
            .map(|s| ("reduce", s)),
    )
    .collect()
}

/// Activation applied in a fused epilogue (after the bias).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    /// `x/2 · (1 + erf(x/√2))`, PyTorch's default GELU.
    Gelu,
    /// `x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))`, PyTorch's `approximate="tanh"`.
    GeluTanh,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Every activation, for tests and help texts.
    pub const ALL: [Activation; 6] = [
        Activation::None,
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Sigmoid,
        Activation::Tanh,
    ];

    /// The id the shaders use (`ACT` override constant).
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Gelu => 2,
            Activation::GeluTanh => 3,
            Activation::Sigmoid => 4,
            Activation::Tanh => 5,
        }
    }

    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu-tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// Largest |f'(x)|: how much an input error can grow through the activation.
    pub fn lipschitz(self) -> f64 {
        match self {
            Activation::None | Activation::Relu | Activation::Tanh => 1.0,
            Activation::Gelu | Activation::GeluTanh => 1.13,
            Activation::Sigmoid => 0.25,
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Activation> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown activation '{s}'; expected one of none, relu, gelu, gelu-tanh, sigmoid, tanh"
                ))
            })
    }
}
