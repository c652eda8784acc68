//! The register-resident sweep of the batched SVD ([`super::batched::SvdBatchedKernel::Unrolled`]):
//! WGSL generated for one (rows, cols) shape, in which one invocation holds its whole matrix W
//! and V in private variables and runs up to `Params::sweeps` cyclic Jacobi sweeps, each as
//! straight-line code.
//!
//! On CPU-type adapters such as lavapipe every storage access of a non-uniform address is a
//! per-lane scalar load or store, while private variables with constant indices become SIMD
//! registers (or contiguous spills): the loop kernel (`svd_batched_sweep`) spends most of its
//! time in those per-lane accesses, this one reads W and V once and writes them once per
//! dispatch. Its one loop runs a few times, far inside lavapipe's per-invocation loop budget.
//! On real GPUs the per-invocation state (2·cols·rows floats) would spill: there the workgroup
//! kernel serves, and the tuner decides.

use crate::runtime::shader::push_line;

/// The largest rows × cols² (the straight-line code's size, in row operations per sweep) the
/// unrolled sweep is generated for; larger shapes run the loop kernel. 16×16 is 4,096 (under a
/// second to compile on lavapipe); LLVM took ~30 s for 20×20 (8,000) and minutes for 32×32.
pub const UNROLLED_MAX_WORK: usize = 16 * 16 * 16;

/// Whether the unrolled sweep is generated for `rows`×`cols` work matrices (cols ≤ rows).
pub fn unrolled_fits(rows: usize, cols: usize) -> bool {
    rows * cols * cols <= UNROLLED_MAX_WORK
}

/// Most sweeps one dispatch of the unrolled kernel runs (fewer when a matrix converges first):
/// W and V stay in registers between them.
pub const UNROLLED_SWEEPS_PER_DISPATCH: u32 = 3;

/// The entry point of the generated sweep.
pub const UNROLLED_ENTRY: &str = "svd_batched_unrolled_sweep";

/// The WGSL of the unrolled sweep for `rows`×`cols` work matrices (cols ≤ rows ≤ 32), to be
/// appended to the batched SVD module (it uses its bindings, `Params` and the Jacobi helpers).
///
/// Column c of W is the vec4 variables `w{c}_{q}` (rows 4q … 4q+3, zero past `rows`), column c
/// of V likewise `v{c}_{q}`; the sweep visits the pairs (i, j), i < j, in the cyclic order of
/// `svd_batched_sweep`, with the same rotation rule, so both kernels compute the same sweep.
pub fn unrolled_sweep_source(rows: usize, cols: usize) -> String {
    let (rq, cq) = (rows.div_ceil(4), cols.div_ceil(4));
    let mut s = String::new();
    push_line(
        &mut s,
        format_args!(
            "// Generated for {rows}x{cols} work matrices (src/svd/unrolled.rs).\n\
             fn unrolled_rotation(g: vec3<f32>, zt2: f32, off: ptr<function, f32>) -> vec2<f32> {{\n\
             \x20   let live = g.x > zt2 && g.y > zt2;\n\
             \x20   let o = select(0.0, abs(g.z) / (sqrt(g.x) * sqrt(g.y)), live);\n\
             \x20   *off = max(*off, o);\n\
             \x20   return select(vec2<f32>(1.0, 0.0), jacobi_rotation(g), live && o > p.rot);\n\
             }}\n\
             fn unrolled_rotate(x: ptr<function, vec4<f32>>, y: ptr<function, vec4<f32>>, cs: vec2<f32>) {{\n\
             \x20   let t = *x;\n\
             \x20   *x = cs.x * t - cs.y * *y;\n\
             \x20   *y = cs.y * t + cs.x * *y;\n\
             }}\n\
             @compute @workgroup_size(WG)\n\
             fn {UNROLLED_ENTRY}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{\n\
             \x20   let b = (wid.y * p.gx + wid.x) * WG + lid.x;\n\
             \x20   if b >= p.batch || p.rows != {rows}u || p.cols != {cols}u {{\n\
             \x20       return;\n\
             \x20   }}\n\
             \x20   if state[3u * b + 2u] != 0.0 || state[3u * b] < 0.0 {{\n\
             \x20       return;\n\
             \x20   }}\n\
             \x20   let zt2 = p.zrel * p.zrel * state[3u * b];\n\
             \x20   let w0 = b * {mn}u;\n\
             \x20   let v0 = b * {cc}u;\n\
             \x20   var off = 0.0;\n\
             \x20   var cs = vec2<f32>(1.0, 0.0);\n\
             \x20   var sweeps = 0u;",
            mn = rows * cols,
            cc = cols * cols,
        ),
    );
    // Loads: W's columns of `rows`, V's of `cols`, zero-padded to whole vec4s.
    let load = |s: &mut String, name: &str, buf: &str, base: &str, len: usize, lq: usize| {
        for c in 0..cols {
            for q in 0..lq {
                let parts: Vec<String> = (0..4)
                    .map(|e| {
                        let r = 4 * q + e;
                        if r < len {
                            format!("{buf}[{base} + {}u]", c * len + r)
                        } else {
                            "0.0".into()
                        }
                    })
                    .collect();
                push_line(
                    s,
                    format_args!("    var {name}{c}_{q} = vec4<f32>({});", parts.join(", ")),
                );
            }
        }
    };
    load(&mut s, "w", "w", "w0", rows, rq);
    load(&mut s, "v", "vm", "v0", cols, cq);
    let sum = |i: usize, j: usize| {
        (0..rq)
            .map(|q| format!("dot(w{i}_{q}, w{j}_{q})"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    // Up to p.sweeps sweeps with W and V in registers, until this matrix has converged.
    push_line(&mut s, format_args!("    loop {{\n        off = 0.0;"));
    for i in 0..cols.saturating_sub(1) {
        for j in i + 1..cols {
            push_line(
                &mut s,
                format_args!(
                    "        cs = unrolled_rotation(vec3<f32>({}, {}, {}), zt2, &off);",
                    sum(i, i),
                    sum(j, j),
                    sum(i, j)
                ),
            );
            for q in 0..rq {
                push_line(
                    &mut s,
                    format_args!("        unrolled_rotate(&w{i}_{q}, &w{j}_{q}, cs);"),
                );
            }
            for q in 0..cq {
                push_line(
                    &mut s,
                    format_args!("        unrolled_rotate(&v{i}_{q}, &v{j}_{q}, cs);"),
                );
            }
        }
    }
    push_line(
        &mut s,
        format_args!(
            "        sweeps += 1u;\n\
             \x20       if !(off > p.tol) || sweeps >= p.sweeps {{\n\
             \x20           break;\n\
             \x20       }}\n\
             \x20   }}"
        ),
    );
    let store = |s: &mut String, name: &str, buf: &str, base: &str, len: usize, lq: usize| {
        for c in 0..cols {
            for q in 0..lq {
                for (e, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                    let r = 4 * q + e;
                    if r < len {
                        push_line(
                            s,
                            format_args!(
                                "    {buf}[{base} + {}u] = {name}{c}_{q}.{comp};",
                                c * len + r
                            ),
                        );
                    }
                }
            }
        }
    };
    store(&mut s, "w", "w", "w0", rows, rq);
    store(&mut s, "v", "vm", "v0", cols, cq);
    s.push_str(
        "    atomicMax(&stats[0], sweeps);\n\
         \x20   atomicMax(&stats[1], bitcast<u32>(off));\n\
         \x20   if off > p.tol {\n\
         \x20       atomicAdd(&stats[3], 1u);\n\
         \x20   } else {\n\
         \x20       state[3u * b + 2u] = 1.0;\n\
         \x20   }\n\
         }\n",
    );
    s
}

/// The batched SVD module with the unrolled sweep of a few shapes (odd and even, square, tall,
/// the largest that fits), for the cross-compilation test.
pub(crate) fn generated_sources() -> Vec<String> {
    [(2, 2), (5, 3), (16, 16), (31, 11), (32, 7)]
        .into_iter()
        .map(|(rows, cols)| module_source(rows, cols))
        .collect()
}

/// The module the unrolled pipeline of `rows`×`cols` is built from.
pub(crate) fn module_source(rows: usize, cols: usize) -> String {
    format!(
        "{}\n{}",
        super::batched::module_source(),
        unrolled_sweep_source(rows, cols)
    )
}

/// The parameter struct of each module of [`generated_sources`] (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    generated_sources()
        .into_iter()
        .map(super::batched::BatchedParams::layout)
        .collect()
}
