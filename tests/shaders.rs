//! Every WGSL kernel, in every tile configuration and epilogue the host can ask for, with its
//! override constants resolved, validated by naga and translated to SPIR-V (Vulkan), MSL
//! (Metal), HLSL (DX12) and GLSL ES 3.1 (GL): a kernel that naga cannot carry to a back-end
//! this machine cannot run breaks here first. (Variants with 64-bit integer loads skip GLSL:
//! wgpu's GL backend never offers SHADER_INT64; the cooperative-matrix GEMM goes to SPIR-V and
//! MSL only, the back-ends with matrix units in wgpu.)

use std::collections::BTreeMap;

use gpu_linalg::kernel_sources;
use gpu_linalg::{ConvConfig, MatmulConfig, MatmulKernel};
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::ShaderStage;

type Constants = BTreeMap<&'static str, f64>;

fn epilogues() -> Vec<Constants> {
    let mut v = Vec::new();
    for bias in [0.0, 1.0] {
        for act in 0..6 {
            v.push(Constants::from([
                ("HAS_BIAS", bias),
                ("ACT", f64::from(act)),
            ]));
        }
    }
    v
}

/// (entry point, constant sets) per family, mirroring what src/ops/*.rs request.
fn variants(family: &str) -> Vec<(&'static str, Vec<Constants>)> {
    let with = |base: &[Constants], extra: &[(&'static str, f64)]| -> Vec<Constants> {
        base.iter()
            .map(|c| {
                let mut c = c.clone();
                c.extend(extra.iter().copied());
                c
            })
            .collect()
    };
    match family {
        "matmul" => {
            let mut tiled = Vec::new();
            let mut vec4 = Vec::new();
            let mut blocked = Vec::new();
            for cfg in MatmulConfig::candidates() {
                let (r, c, w) = (
                    f64::from(cfg.rows),
                    f64::from(cfg.cols),
                    f64::from(cfg.workgroup),
                );
                match cfg.kernel {
                    MatmulKernel::Tiled => {
                        tiled.extend(with(&epilogues(), &[("TM", r), ("TN", c)]))
                    }
                    MatmulKernel::Vec4 => {
                        vec4.extend(with(&epilogues(), &[("RM", r), ("RN4", c), ("WG", w)]))
                    }
                    MatmulKernel::Blocked => {
                        blocked.extend(with(&epilogues(), &[("BTM", r), ("BTN", c), ("BK", w)]))
                    }
                    // Naive has no tile constants; coop is its own family (matmul_coop).
                    MatmulKernel::Naive | MatmulKernel::Coop => {}
                }
            }
            vec![
                ("naive", epilogues()),
                ("tiled", tiled),
                ("blocked", blocked),
                ("vec4_kernel", vec4),
                ("pack_b", vec![Constants::new()]),
            ]
        }
        "conv" => {
            let mut gemm = Vec::new();
            let depthwise = [
                ConvConfig::gemm(1, 1, 64),
                ConvConfig::gemm(1, 2, 64),
                ConvConfig::gemm(1, 4, 64),
                ConvConfig::gemm(1, 4, 32),
            ];
            for cfg in ConvConfig::candidates().into_iter().chain(depthwise) {
                if let ConvConfig::Gemm {
                    rows,
                    cols,
                    workgroup,
                } = cfg
                {
                    for t in [0.0, 1.0] {
                        gemm.extend(with(
                            &epilogues(),
                            &[
                                ("RM", f64::from(rows)),
                                ("RN4", f64::from(cols)),
                                ("WG", f64::from(workgroup)),
                                ("TRANSPOSED", t),
                            ],
                        ));
                    }
                }
            }
            let naive = [0.0, 1.0]
                .iter()
                .flat_map(|&t| with(&epilogues(), &[("TRANSPOSED", t)]))
                .collect();
            vec![("conv_gemm", gemm), ("conv_naive", naive)]
        }
        "nn" => {
            let acts: Vec<Constants> = (0..6)
                .map(|a| Constants::from([("ACT", f64::from(a))]))
                .collect();
            let plain = vec![Constants::from([("ACT", 0.0)])];
            vec![
                ("act_backward", acts),
                ("col_sum", plain.clone()),
                ("mse_partial", plain.clone()),
                ("cross_entropy_rows", plain.clone()),
                ("sgd_step", plain.clone()),
                ("adam_step", plain),
            ]
        }
        "elementwise" => {
            let sets = |ndims: &[u32]| -> Vec<Constants> {
                let mut v = Vec::new();
                for act in 0..6 {
                    for &nd in ndims {
                        v.push(Constants::from([
                            ("ACT", f64::from(act)),
                            ("WG", 64.0),
                            ("EPT", 4.0),
                            ("NDIM", f64::from(nd)),
                        ]));
                    }
                }
                v
            };
            vec![
                ("ew_vec4", sets(&[1])),
                ("ew_rows4", sets(&[2])),
                ("ew_general", sets(&[1, 2, 3, 4])),
                ("slerp_coef", sets(&[1])),
                ("slerp_apply", sets(&[1])),
            ]
        }
        "layout" => vec![(
            "strided_copy",
            (1..=4)
                .map(|nd| Constants::from([("WG", 64.0), ("EPT", 4.0), ("NDIM", f64::from(nd))]))
                .collect(),
        )],
        "random" => vec![("rand_block", vec![Constants::from([("WG", 64.0)])])],
        "cholesky" => ["check", "diag", "panel", "update", "finish"]
            .into_iter()
            .map(|e| (e, vec![Constants::new()]))
            .collect(),
        "lu" => [
            "check",
            "scan",
            "panel",
            "rows",
            "update",
            "pack_t",
            "trsm_block",
            "permute",
            "slogdet",
            "extract",
        ]
        .into_iter()
        .map(|e| (e, vec![Constants::new()]))
        .collect(),
        "solve_small_invocation" => vec![("solve_small_invocation", vec![Constants::new()])],
        "solve_small" => vec![(
            "solve_small_workgroup",
            [8.0, 16.0, 24.0, 32.0]
                .iter()
                .map(|&wg| Constants::from([("WG", wg)]))
                .collect(),
        )],
        "reduce" => {
            let sets = |wgs: &[f64]| -> Vec<Constants> {
                (0..10)
                    .flat_map(|op| {
                        wgs.iter()
                            .map(move |&wg| Constants::from([("OP", f64::from(op)), ("WG", wg)]))
                    })
                    .collect()
            };
            vec![
                ("reduce_rows", sets(&[64.0, 256.0])),
                ("reduce_serial", sets(&[1.0])),
                ("reduce_cols", sets(&[64.0])),
                ("normalize", sets(&[64.0])),
            ]
        }
        "svd" => {
            let wg: Vec<Constants> = gpu_linalg::SVD_WORKGROUPS
                .iter()
                .map(|&w| Constants::from([("WG", f64::from(w))]))
                .collect();
            vec![
                ("svd_amax", wg.clone()),
                ("svd_init", wg.clone()),
                ("svd_fro", wg.clone()),
                ("svd_rotate", wg.clone()),
                ("svd_norms", wg.clone()),
                ("svd_gather", wg),
            ]
        }
        "svd_batched" => {
            let wg = vec![Constants::from([(
                "WG",
                f64::from(gpu_linalg::svd::BATCHED_WORKGROUP),
            )])];
            let per_matrix: Vec<Constants> = gpu_linalg::svd::batched::BATCHED_WG_SIZES
                .iter()
                .map(|&w| Constants::from([("WG", f64::from(w))]))
                .collect();
            vec![
                ("svd_batched_init", wg.clone()),
                ("svd_batched_sweep", wg.clone()),
                ("svd_batched_finish", wg),
                ("svd_batched_wg_sweep", per_matrix),
            ]
        }
        "svd_batched_unrolled" => {
            // The batched module with one generated sweep appended.
            let mut v = variants("svd_batched");
            v.push((
                gpu_linalg::svd::unrolled::UNROLLED_ENTRY,
                vec![Constants::from([(
                    "WG",
                    f64::from(gpu_linalg::svd::BATCHED_WORKGROUP),
                )])],
            ));
            v
        }
        "matmul_coop" => {
            // Every epilogue, with the workgroup of four subgroups of lavapipe (8), NVIDIA /
            // Apple (32) and AMD (64).
            let sets = [32.0, 128.0, 256.0]
                .into_iter()
                .flat_map(|wg| with(&epilogues(), &[("WG", wg)]))
                .collect();
            vec![(gpu_linalg::matmul::coop::COOP_ENTRY, sets)]
        }
        "convert" => {
            // Both half types.
            let halves: Vec<Constants> = [0.0, 1.0]
                .into_iter()
                .map(|h| Constants::from([("HALF", h)]))
                .collect();
            vec![("narrow", halves.clone()), ("widen", halves)]
        }
        "householder" => {
            // Every kernel at both panel widths the host picks (`householder::panel_width`).
            let widths: Vec<Constants> = [16.0, 32.0]
                .into_iter()
                .map(|pb| Constants::from([("PB", pb)]))
                .collect();
            ["panel", "vtc", "tw", "update", "extract"]
                .into_iter()
                .map(|e| (e, widths.clone()))
                .collect()
        }
        other => {
            panic!("no variants listed for shader family '{other}': add them to tests/shaders.rs")
        }
    }
}

/// The SPIR-V words and the MSL of `entry` in the resolved module `m`; the error names the
/// back-end.
fn spirv_and_msl(
    m: &naga::Module,
    i: &naga::valid::ModuleInfo,
    entry: &str,
) -> Result<(Vec<u32>, String), String> {
    let words = spv::write_vec(
        m,
        i,
        &spv::Options::default(),
        Some(&spv::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: entry.to_string(),
        }),
    )
    .map_err(|e| format!("SPIR-V: {e}"))?;
    let (msl, _) = msl::write_string(
        m,
        i,
        &msl::Options {
            lang_version: (2, 4),
            ..Default::default()
        },
        &msl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, entry.to_string())),
            ..Default::default()
        },
    )
    .map_err(|e| format!("MSL: {e}"))?;
    Ok((words, msl))
}

/// Resolves `constants` for `entry` and writes the four back-ends; the error names the step.
fn translate(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    constants: &Constants,
    (uses_subgroups, uses_int64, cooperative): (bool, bool, bool),
) -> Result<(), String> {
    let pc: naga::back::PipelineConstants =
        constants.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let (m, i) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((ShaderStage::Compute, entry)),
        &pc,
    )
    .map_err(|e| format!("resolving overrides: {e}"))?;
    spirv_and_msl(&m, &i, entry)?;
    if cooperative {
        // Cooperative matrices exist for Vulkan (SPIR-V) and Metal only.
        return Ok(());
    }
    let hlsl_opts = hlsl::Options {
        shader_model: if uses_subgroups {
            hlsl::ShaderModel::V6_0
        } else {
            hlsl::ShaderModel::V5_1
        },
        ..Default::default()
    };
    let hlsl_pipe = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
    };
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &hlsl_opts, &hlsl_pipe)
        .write(&m, &i, None)
        .map_err(|e| format!("HLSL: {e}"))?;
    if uses_int64 {
        // wgpu's GL backend never offers SHADER_INT64, so these variants never meet GLSL.
        return Ok(());
    }
    let mut out = String::new();
    let glsl_pipe = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let glsl_opts = glsl::Options::default();
    glsl::Writer::new(
        &mut out,
        &m,
        &i,
        &glsl_opts,
        &glsl_pipe,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| format!("GLSL ES 3.1: {e}"))?;
    Ok(())
}

#[test]
fn every_kernel_translates_to_every_backend() {
    let mut count = 0;
    let mut failures = Vec::new();
    for (family, src) in kernel_sources() {
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{family}: {}", e.emit_to_string(&src)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{family}: {}", e.emit_to_string(&src)));
        let listed = variants(family);
        for ep in &module.entry_points {
            assert!(
                listed.iter().any(|(name, _)| *name == ep.name),
                "{family}: entry point {} has no variants in tests/shaders.rs",
                ep.name
            );
        }
        for (entry, sets) in listed {
            assert!(
                module.entry_points.iter().any(|e| e.name == entry),
                "{family}: no entry point {entry}"
            );
            for constants in sets {
                count += 1;
                let (subgroups, int64) = (src.contains("subgroup"), src.contains("u64"));
                let coop = src.contains("wgpu_cooperative_matrix");
                let flags = (subgroups, int64, coop);
                if let Err(e) = translate(&module, &info, entry, &constants, flags) {
                    failures.push(format!("{family}/{entry} {constants:?}: {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} variants failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{count} kernel variants translated to SPIR-V, MSL, HLSL and GLSL (cooperative-matrix \
         ones to SPIR-V and MSL)"
    );
}

/// Every cooperative-matrix GEMM reaches the matrix units: its SPIR-V multiplies by
/// OpCooperativeMatrixMulAddKHR (two per fragment of C per k-step) and its MSL by simdgroup
/// matrices.
#[test]
fn cooperative_gemm_reaches_the_matrix_units() {
    let entry = gpu_linalg::matmul::coop::COOP_ENTRY;
    for (cfg, loads) in gpu_linalg::matmul::coop::generated_variants() {
        let src = gpu_linalg::matmul::coop::module_source(cfg, loads);
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{cfg}: {}", e.emit_to_string(&src)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{cfg}: {}", e.emit_to_string(&src)));
        let pc: naga::back::PipelineConstants = [("WG".to_string(), 128.0)].into_iter().collect();
        let (m, i) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((ShaderStage::Compute, entry)),
            &pc,
        )
        .unwrap();
        let (words, msl) = spirv_and_msl(&m, &i, entry).unwrap_or_else(|e| panic!("{cfg}: {e}"));
        // OpCooperativeMatrixMulAddKHR is opcode 4459; an instruction's first word holds its
        // word count above the opcode.
        let mul_adds = words.iter().filter(|&&w| w & 0xffff == 4459).count();
        let wanted = 2 * (cfg.rows * cfg.cols) as usize;
        assert_eq!(
            mul_adds, wanted,
            "{cfg}: cooperative multiply-adds in the SPIR-V"
        );
        assert!(
            msl.contains("simdgroup_multiply_accumulate"),
            "{cfg}: {msl}"
        );
    }
}
