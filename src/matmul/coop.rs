//! The cooperative-matrix GEMM: float16 operands, float32 accumulation on the adapter's matrix
//! units (Vulkan `VK_KHR_cooperative_matrix`, Metal simdgroup matrices), where the adapter
//! offers wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX` with an F×F×F f16 · f16 → f32
//! configuration (F = 8 or 16), `SHADER_F16`, subgroups and one fixed subgroup size.
//!
//! The WGSL is generated per configuration ([`MatmulConfig::coop`]: FM×FN fragments of F×F
//! per subgroup) on top of `shaders/matmul_coop.wgsl`, because WGSL names a cooperative matrix
//! type by its size and a subgroup's accumulators are separate variables. One workgroup is four
//! subgroups in a 2×2 arrangement and computes a block of 2·FM·F × 2·FN·F of C; per k-step of
//! 2F the block's slices of op(A) and op(B) are staged in workgroup memory (zero past the
//! edges, so any m, n, k; each read along the operand's contiguous dimension, so transposed
//! operands stay coalesced), loaded as fragments, multiplied and accumulated. Each accumulator
//! is then stored to a per-subgroup scratch fragment and written out through the bias and
//! activation epilogue.
//!
//! Verified where: lavapipe from Mesa 26 offers 8×8×8 (its subgroups are 8 wide), so the F = 8
//! kernels run and are checked against the reference there; the F = 16 ones (NVIDIA, AMD) are
//! validated by naga and translated to SPIR-V and MSL only.

use std::sync::Arc;

use crate::activation::Activation;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::matmul::{MatmulConfig, MatmulKernel, MatmulPlan};
use crate::runtime::shader::push_line;
use crate::runtime::{shader, trusted_pipeline, u32_of, Bind, Gpu, GpuBuffer};

/// `shaders/matmul_coop.wgsl`: the bindings, the parameters and the staging helpers.
pub(crate) const SOURCE: &str = include_str!("../../shaders/matmul_coop.wgsl");

pub use crate::runtime::COOPERATIVE_MATRIX_ENV;

/// The entry point of every generated kernel.
pub const COOP_ENTRY: &str = "coop";

/// Subgroups per workgroup (2×2).
const SUBGROUPS: u32 = 4;

/// Block rows, block columns and k-step depth of `cfg`.
fn block(cfg: MatmulConfig) -> (u32, u32, u32) {
    let f = cfg.workgroup;
    (2 * cfg.rows * f, 2 * cfg.cols * f, 2 * f)
}

/// Bytes of workgroup memory a workgroup of `cfg` declares: the f16 slices of A and B and
/// one f32 scratch fragment per subgroup.
pub(crate) fn workgroup_bytes(cfg: MatmulConfig) -> u32 {
    let (bm, bn, bk) = block(cfg);
    let f = cfg.workgroup;
    2 * bm * bk + 2 * bk * bn + 4 * SUBGROUPS * f * f
}

/// How a generated kernel reads each operand from memory: eight halves per two loads (of
/// `vec4<f16>`) where the operand's rows are contiguous and every row and matrix starts at a
/// multiple of 8 elements, else one half per load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopLoads {
    /// A is read four halves per load, eight per staging step.
    pub a_vector: bool,
    /// B is read four halves per load, eight per staging step.
    pub b_vector: bool,
}

impl CoopLoads {
    /// One half per load for both operands (any strides).
    pub const SCALAR: CoopLoads = CoopLoads {
        a_vector: false,
        b_vector: false,
    };

    /// The widest loads `plan`'s operands allow: rows contiguous (column stride 1), and k (for
    /// A) or n (for B), the row stride, the batch strides and the extent all multiples of 8.
    pub fn for_plan(plan: &MatmulPlan) -> CoopLoads {
        let aligned = |v: &[usize]| v.iter().all(|x| x % 8 == 0);
        CoopLoads {
            a_vector: plan.a_cs == 1
                && plan.k > 0
                && aligned(&[
                    plan.k,
                    plan.a_rs,
                    plan.a_bs[0],
                    plan.a_bs[1],
                    plan.a_extent(),
                ]),
            b_vector: plan.b_cs == 1
                && plan.k > 0
                && aligned(&[
                    plan.n,
                    plan.b_rs,
                    plan.b_bs[0],
                    plan.b_bs[1],
                    plan.b_extent(),
                ]),
        }
    }
}

/// The section `name` of `shaders/matmul_coop.wgsl`: the lines after `// ==== name` up to the
/// next section.
fn section(name: &str) -> &'static str {
    let marker = format!("// ==== {name}\n");
    let start = SOURCE
        .find(&marker)
        .map_or(SOURCE.len(), |i| i + marker.len());
    let rest = &SOURCE[start..];
    &rest[..rest.find("// ==== ").unwrap_or(rest.len())]
}

/// The module handed to wgpu for `cfg` reading its operands by `loads`: the enable
/// directives, the shared epilogue, the common section, one section per operand and the
/// generated kernel.
pub fn module_source(cfg: MatmulConfig, loads: CoopLoads) -> String {
    let pick = |vector: bool| if vector { "vector" } else { "scalar" };
    let body = format!(
        "{}{}{}",
        section("common"),
        section(&format!("a: {}", pick(loads.a_vector))),
        section(&format!("b: {}", pick(loads.b_vector)))
    );
    format!(
        "enable f16;\nenable wgpu_cooperative_matrix;\n{}\n{}",
        shader::with_epilogue(&body),
        kernel_source(cfg)
    )
}

/// The generated entry point of `cfg` (appended to `shaders/matmul_coop.wgsl`).
fn kernel_source(cfg: MatmulConfig) -> String {
    let (fm, fn_, f) = (cfg.rows, cfg.cols, cfg.workgroup);
    let (bm, bn, bk) = block(cfg);
    let acc = format!("coop_mat{f}x{f}<f32, C>");
    let mut s = String::new();
    push_line(
        &mut s,
        format_args!(
            "// Generated for {cfg} (src/matmul/coop.rs): fragments {f}x{f}, {fm}x{fn_} per subgroup,\n\
             // 2x2 subgroups, blocks of {bm}x{bn}, k-steps of {bk}.\n\
             var<workgroup> sa: array<f16, {}>; // {bm} rows x {bk} k, row-major\n\
             var<workgroup> sb: array<f16, {}>; // {bk} k x {bn} columns, row-major\n\
             var<workgroup> sc: array<f32, {}>; // one {f}x{f} fragment per subgroup\n\
             \n\
             @compute @workgroup_size(WG)\n\
             fn {COOP_ENTRY}(\n\
             \x20   @builtin(local_invocation_index) l: u32,\n\
             \x20   @builtin(subgroup_id) sg: u32,\n\
             \x20   @builtin(subgroup_invocation_id) lane: u32,\n\
             \x20   @builtin(workgroup_id) wid: vec3<u32>,\n\
             ) {{\n\
             \x20   let z = wid.z;\n\
             \x20   let row0 = wid.y * {bm}u;\n\
             \x20   let col0 = wid.x * {bn}u;\n\
             \x20   let a0 = (z / p.batch1) * p.a_bs0 + (z % p.batch1) * p.a_bs1;\n\
             \x20   let b0 = (z / p.batch1) * p.b_bs0 + (z % p.batch1) * p.b_bs1;\n\
             \x20   // This subgroup's fragments: rows sr*{} + i*{f}, columns sn*{} + j*{f} of the block.\n\
             \x20   let sr = sg / 2u;\n\
             \x20   let sn = sg % 2u;",
            bm * bk,
            bk * bn,
            SUBGROUPS * f * f,
            fm * f,
            fn_ * f,
        ),
    );
    for i in 0..fm {
        for j in 0..fn_ {
            push_line(&mut s, format_args!("    var c{i}_{j} = {acc}();"));
        }
    }
    push_line(
        &mut s,
        format_args!(
            "    for (var k0 = 0u; k0 < p.k; k0 += {bk}u) {{\n\
             \x20       stage_a(l, a0, row0, k0, {bm}u, {bk}u);\n\
             \x20       stage_b(l, b0, col0, k0, {bn}u, {bk}u);\n\
             \x20       workgroupBarrier();"
        ),
    );
    for kf in 0..2 {
        for i in 0..fm {
            push_line(
                &mut s,
                format_args!(
                    "        let a{kf}_{i} = coopLoadT<coop_mat{f}x{f}<f16, A>>(&sa[(sr * {} + {}u) * {bk}u + {}u], {bk}u);",
                    fm * f,
                    i * f,
                    kf * f
                ),
            );
        }
        for j in 0..fn_ {
            push_line(
                &mut s,
                format_args!(
                    "        let b{kf}_{j} = coopLoadT<coop_mat{f}x{f}<f16, B>>(&sb[{}u + sn * {} + {}u], {bn}u);",
                    kf * f * bn,
                    fn_ * f,
                    j * f
                ),
            );
        }
        for i in 0..fm {
            for j in 0..fn_ {
                push_line(
                    &mut s,
                    format_args!(
                        "        c{i}_{j} = coopMultiplyAdd(a{kf}_{i}, b{kf}_{j}, c{i}_{j});"
                    ),
                );
            }
        }
    }
    push_line(
        &mut s,
        format_args!(
            "        workgroupBarrier();\n    }}\n    let scratch = sg * {}u;",
            f * f
        ),
    );
    for i in 0..fm {
        for j in 0..fn_ {
            push_line(
                &mut s,
                format_args!(
                    "    coopStoreT(c{i}_{j}, &sc[scratch], {f}u);\n\
                     \x20   workgroupBarrier();\n\
                     \x20   write_fragment(lane, z, scratch, row0 + sr * {} + {}u, col0 + sn * {} + {}u, {f}u);\n\
                     \x20   workgroupBarrier();",
                    fm * f,
                    i * f,
                    fn_ * f,
                    j * f
                ),
            );
        }
    }
    s.push_str("}\n");
    s
}

/// The configurations the cross-compilation test translates (one module each): every
/// candidate of both fragment sizes with scalar and with vector loads of both operands, and
/// one with each mix.
pub fn generated_variants() -> Vec<(MatmulConfig, CoopLoads)> {
    let both = |v: bool| CoopLoads {
        a_vector: v,
        b_vector: v,
    };
    let mut all: Vec<(MatmulConfig, CoopLoads)> = [8, 16]
        .into_iter()
        .flat_map(MatmulConfig::coop_candidates)
        .flat_map(|c| [(c, both(false)), (c, both(true))])
        .collect();
    for (a_vector, b_vector) in [(true, false), (false, true)] {
        all.push((
            MatmulConfig::coop(2, 2, 16),
            CoopLoads { a_vector, b_vector },
        ));
    }
    all
}

/// The module of every variant of [`generated_variants`].
pub(crate) fn generated_sources() -> Vec<String> {
    generated_variants()
        .into_iter()
        .map(|(c, l)| module_source(c, l))
        .collect()
}

crate::kernel_params! {
    /// The kernel's uniform block (`Params` in shaders/matmul_coop.wgsl): the plan's sizes
    /// and strides.
    struct CoopParams: "Params" {
        m: u32,
        n: u32,
        k: u32,
        batch1: u32,
        a_rs: u32,
        a_cs: u32,
        b_rs: u32,
        b_cs: u32,
        a_bs0: u32,
        a_bs1: u32,
        b_bs0: u32,
        b_bs1: u32,
    }
}

/// The layout of the parameter struct (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    generated_sources()
        .into_iter()
        .map(CoopParams::layout)
        .collect()
}

/// The fragment sizes (8, 16) for which `gpu` runs the kernels: where the features are on
/// (not requested when [`COOPERATIVE_MATRIX_ENV`] is `off`), the adapter offers an F×F×F f16 ·
/// f16 → f32 configuration, and its subgroups have one fixed size of at least 8 that divides
/// F·F. Empty where none.
pub(crate) fn coop_fragments(gpu: &Gpu) -> Vec<u32> {
    let wanted = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP;
    let (lo, hi) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    if !gpu.features.contains(wanted) || lo != hi || lo < 8 {
        return Vec::new();
    }
    [8, 16]
        .into_iter()
        .filter(|&f| {
            (f * f) % lo == 0
                && gpu.cooperative.iter().any(|c| {
                    (c.m_size, c.n_size, c.k_size) == (f, f, f)
                        && c.ab_type == wgpu::CooperativeScalarType::F16
                        && c.cr_type == wgpu::CooperativeScalarType::F32
                })
        })
        .collect()
}

/// The cooperative-matrix configurations the tuner tries on `gpu` (none where
/// [`coop_fragments`] is empty).
pub(crate) fn candidates(gpu: &Gpu) -> Vec<MatmulConfig> {
    coop_fragments(gpu)
        .into_iter()
        .flat_map(MatmulConfig::coop_candidates)
        .filter(|c| workgroup_bytes(*c) <= gpu.limits.max_compute_workgroup_storage_size)
        .collect()
}

/// Why `cfg` cannot run `plan` on `gpu` (a forced configuration's error; an unforced one falls
/// back to the f32 kernels): a fragment size the adapter lacks, too much workgroup memory, an
/// operand beyond one binding, a grid beyond the dispatch limit, a size beyond u32.
pub(crate) fn unfit(gpu: &Gpu, cfg: MatmulConfig, plan: &MatmulPlan) -> Option<String> {
    if cfg.kernel != MatmulKernel::Coop {
        return Some(format!("{cfg} is not a cooperative-matrix configuration"));
    }
    let frags = coop_fragments(gpu);
    if !frags.contains(&cfg.workgroup) {
        return Some(format!(
            "matmul kernel {cfg} needs {f}×{f}×{f} float16 · float16 → float32 cooperative \
             matrices, which this adapter does not offer (fragment sizes offered: {frags:?}; \
             {COOPERATIVE_MATRIX_ENV}=off turns them off)",
            f = cfg.workgroup
        ));
    }
    let wg_bytes = workgroup_bytes(cfg);
    let wg_limit = gpu.limits.max_compute_workgroup_storage_size;
    if wg_bytes > wg_limit {
        return Some(format!(
            "matmul kernel {cfg} needs {wg_bytes} bytes of workgroup memory, above this adapter's {wg_limit}"
        ));
    }
    let bind_limit = gpu.limits.max_storage_buffer_binding_size;
    for (bytes, what) in [
        (half_bytes(plan.a_extent()), "A"),
        (half_bytes(plan.b_extent()), "B"),
        ((plan.batches() * plan.m * plan.n * 4) as u64, "C"),
    ] {
        if bytes > bind_limit {
            return Some(format!(
                "cooperative matmul operand {what} needs a binding of {bytes} bytes, above this \
                 adapter's max_storage_buffer_binding_size of {bind_limit} bytes"
            ));
        }
    }
    let (bm, bn, _) = block(cfg);
    let grid = [
        plan.n.div_ceil(bn as usize),
        plan.m.div_ceil(bm as usize),
        plan.batches(),
    ];
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if grid.iter().any(|&g| g > limit) {
        return Some(format!(
            "cooperative matmul of {}×{} over {} batches needs a grid of {grid:?} workgroups, \
             above this adapter's {limit} per dimension",
            plan.m,
            plan.n,
            plan.batches()
        ));
    }
    None
}

/// Bytes of a binding of `len` float16 values (at least one word).
fn half_bytes(len: usize) -> u64 {
    DType::F16.storage_bytes(len).max(4) as u64
}

/// C (batches·m×n, f32, bias and activation applied) of the float16 operands `a` and `b` as
/// `plan` reads them, by `cfg` (for which [`unfit`] found nothing).
pub(crate) fn run(
    gpu: &Arc<Gpu>,
    (a, b): (&Arc<GpuBuffer>, &Arc<GpuBuffer>),
    plan: &MatmulPlan,
    (bias, activation): (Option<&Arc<GpuBuffer>>, Activation),
    cfg: MatmulConfig,
) -> Result<Arc<GpuBuffer>> {
    if let Some(why) = unfit(gpu, cfg, plan) {
        return Err(Error::InvalidArgument(why));
    }
    let out_len = plan.batches() * plan.m * plan.n;
    let out_bytes = (out_len * 4).max(4) as u64;
    let out = gpu.alloc(out_bytes, "cooperative matmul result")?;
    if out_len == 0 {
        return Ok(out);
    }
    let sg = gpu.info.subgroup_min_size;
    let loads = CoopLoads::for_plan(plan);
    let constants = [
        ("HAS_BIAS", f64::from(u8::from(bias.is_some()))),
        ("ACT", f64::from(activation.shader_id())),
        ("WG", f64::from(SUBGROUPS * sg)),
    ];
    // SAFETY: the staging loops guard every read of A and B by m, n, k, and `unfit` bounded
    // their extents (from the plan's strides) by the bound sizes (a vector load reads the
    // eight halves from a multiple of 8 that the guard admits, all within the extent, which
    // `CoopLoads::for_plan` requires to be a multiple of 8); every write of C is guarded
    // by m and n within its batch, and C holds batches·m·n floats (the bias n when present).
    // The fragment loads and stores address the workgroup arrays at offsets below their sizes
    // by construction; the loops are bounded by k and the block sizes.
    let kernel = unsafe {
        trusted_pipeline(
            gpu,
            &format!("matmul_coop/{cfg}/{loads:?}/{constants:?}"),
            "matmul_coop.wgsl",
            || module_source(cfg, loads),
            COOP_ENTRY,
            &constants,
        )
    }?;
    let placeholder;
    let bias_bind = match bias {
        Some(b) => Bind::Buffer(b, (plan.n * 4).max(4) as u64),
        None => {
            placeholder = gpu.alloc(4, "cooperative matmul bias placeholder")?;
            Bind::Buffer(&placeholder, 4)
        }
    };
    let u = |v: usize, what: &str| u32_of(v, what);
    let params = CoopParams {
        m: u(plan.m, "m")?,
        n: u(plan.n, "n")?,
        k: u(plan.k, "k")?,
        batch1: u(plan.batch[1].max(1), "batch")?,
        a_rs: u(plan.a_rs, "A row stride")?,
        a_cs: u(plan.a_cs, "A column stride")?,
        b_rs: u(plan.b_rs, "B row stride")?,
        b_cs: u(plan.b_cs, "B column stride")?,
        a_bs0: u(plan.a_bs[0], "A batch stride")?,
        a_bs1: u(plan.a_bs[1], "A batch stride")?,
        b_bs0: u(plan.b_bs[0], "B batch stride")?,
        b_bs1: u(plan.b_bs[1], "B batch stride")?,
    };
    let (bm, bn, _) = block(cfg);
    let mut enc = gpu.encoder("matmul_coop");
    let uniform = enc.params(&params)?;
    let bg = enc.bind(
        &kernel,
        &[
            (0, Bind::Params(&uniform)),
            (1, Bind::Buffer(a, half_bytes(plan.a_extent()))),
            (2, Bind::Buffer(b, half_bytes(plan.b_extent()))),
            (3, bias_bind),
            (4, Bind::Buffer(&out, out_bytes)),
        ],
    );
    let grid = (
        plan.n.div_ceil(bn as usize) as u32,
        plan.m.div_ceil(bm as usize) as u32,
        plan.batches() as u32,
    );
    enc.dispatch(&kernel, &bg, grid);
    enc.submit()?;
    Ok(out)
}
