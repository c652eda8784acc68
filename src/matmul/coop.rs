//! The cooperative-matrix GEMM (`shaders/matmul_coop.wgsl`): float16 operands, float32
//! accumulation on the adapter's matrix units, where the adapter offers
//! `EXPERIMENTAL_COOPERATIVE_MATRIX` and `SHADER_F16` with a 16×16×16 f16 × f16 → f32
//! configuration and a fixed subgroup size. No adapter this project has run offers it (lavapipe
//! does not): the kernel is verified by translation to SPIR-V and MSL only.

use std::sync::Arc;

use crate::activation::Activation;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::runtime::{shader, trusted_pipeline, u32_of, Bind, Gpu, GpuBuffer};

/// `shaders/matmul_coop.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/matmul_coop.wgsl");

pub use crate::runtime::COOPERATIVE_MATRIX_ENV;

/// The module handed to wgpu: the enable directives, the shared epilogue, the kernel.
pub fn module_source() -> String {
    format!(
        "enable f16;\nenable wgpu_cooperative_matrix;\n{}",
        shader::with_epilogue(SOURCE)
    )
}

crate::kernel_params! {
    /// The kernel's uniform block (`Params` in shaders/matmul_coop.wgsl).
    struct CoopParams: "Params" {
        m: u32,
        n: u32,
        k: u32,
        _pad0: u32,
    }
}

/// The layout of the parameter struct (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![CoopParams::layout(module_source())]
}

/// The subgroup size the kernel runs with on `gpu`, when the adapter can run it at all: the
/// features (not requested when [`COOPERATIVE_MATRIX_ENV`] is `off`), a 16×16×16 f16 × f16 →
/// f32 configuration and one fixed subgroup size of at least 8.
pub(crate) fn coop_subgroup(gpu: &Gpu) -> Option<u32> {
    let wanted = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    if !gpu.features.contains(wanted) {
        return None;
    }
    let f16_f32 = gpu.cooperative.iter().any(|c| {
        (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
            && c.ab_type == wgpu::CooperativeScalarType::F16
            && c.cr_type == wgpu::CooperativeScalarType::F32
    });
    let (lo, hi) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    (f16_f32 && lo == hi && lo >= 8).then_some(lo)
}

/// C (m×n, f32, bias and activation applied) of row-major f16 `a` (m×k) and `b` (k×n) on the
/// matrix units, with subgroup size `sg` (from [`coop_subgroup`]).
pub(crate) fn run(
    gpu: &Arc<Gpu>,
    (a, b): (&Arc<GpuBuffer>, &Arc<GpuBuffer>),
    (m, k, n): (usize, usize, usize),
    (bias, activation): (Option<&Arc<GpuBuffer>>, Activation),
    sg: u32,
) -> Result<Arc<GpuBuffer>> {
    let half_bytes = |len: usize| DType::F16.storage_bytes(len).max(4) as u64;
    let out_bytes = (m * n * 4).max(4) as u64;
    for (bytes, what) in [
        (half_bytes(m * k), "cooperative matmul A"),
        (half_bytes(k * n), "cooperative matmul B"),
        (out_bytes, "cooperative matmul C"),
    ] {
        gpu.check_binding(bytes, what)?;
    }
    let out = gpu.alloc(out_bytes, "cooperative matmul result")?;
    if m * n == 0 {
        return Ok(out);
    }
    let (gx, gy) = (n.div_ceil(32), m.div_ceil(32));
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if gx > limit || gy > limit {
        return Err(Error::InvalidArgument(format!(
            "cooperative matmul of {m}×{n} needs a grid of {gx}×{gy} workgroups, above this \
             adapter's {limit} per dimension"
        )));
    }
    let constants = [
        ("HAS_BIAS", f64::from(u8::from(bias.is_some()))),
        ("ACT", f64::from(activation.shader_id())),
        ("SG", f64::from(sg)),
    ];
    // SAFETY: the kernel guards every read of A and B by m, n, k and every write of C by m
    // and n, and the buffers are bound with ⌈m·k/2⌉, ⌈k·n/2⌉ words and m·n floats (the bias
    // with n when present); its loops are bounded by k and the block size.
    let kernel = unsafe {
        trusted_pipeline(
            gpu,
            &format!("matmul_coop/{constants:?}"),
            "matmul_coop.wgsl",
            module_source,
            "coop",
            &constants,
        )
    }?;
    let placeholder;
    let bias_bind = match bias {
        Some(b) => Bind::Buffer(b, (n * 4).max(4) as u64),
        None => {
            placeholder = gpu.alloc(4, "cooperative matmul bias placeholder")?;
            Bind::Buffer(&placeholder, 4)
        }
    };
    let params = CoopParams {
        m: u32_of(m, "m")?,
        n: u32_of(n, "n")?,
        k: u32_of(k, "k")?,
        _pad0: 0,
    };
    let mut enc = gpu.encoder("matmul_coop");
    let u = enc.params(&params)?;
    let bg = enc.bind(
        &kernel,
        &[
            (0, Bind::Params(&u)),
            (1, Bind::Buffer(a, half_bytes(m * k))),
            (2, Bind::Buffer(b, half_bytes(k * n))),
            (3, bias_bind),
            (4, Bind::Buffer(&out, out_bytes)),
        ],
    );
    enc.dispatch(&kernel, &bg, (gx as u32, gy as u32, 1));
    enc.submit()?;
    Ok(out)
}
