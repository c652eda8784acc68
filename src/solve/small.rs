//! Batched small dense solves A·X = B: A [batch, n, n] with n ≤ [`SMALL_MAX_N`], B [batch, n,
//! k], by LU with partial pivoting as LAPACK's getrf/getrs (the pivot is the first row of
//! largest |a| in its column). On a GPU one dispatch per chunk of ≤ 65,535 matrices
//! (`shaders/solve_small.wgsl`) by one of two kernels chosen per adapter
//! ([`SmallSolveKernel`]); on the CPU faer's partial-pivoting LU per matrix across threads
//! ([`solve_batched_cpu`], any n).
//!
//! Each matrix has a status of two words: `[0]` the first zero pivot (1-based column whose
//! largest |a| was exactly 0, LAPACK's `info`; 0 = none) and `[1]` bit 0 if A, bit 1 if B holds NaN or
//! Inf. X of a matrix with a non-zero status is not meaningful.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rayon::prelude::*;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{checked_pipeline, u32_of, Bind, Choices, Gpu};
use crate::tensor::{DType, Tensor};

/// `shaders/solve_small.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/solve_small.wgsl");

/// Largest n of the GPU small solve (`NMAX` in shaders/solve_small.wgsl).
pub const SMALL_MAX_N: usize = 32;

/// Columns of B one grid row covers (`KC` in shaders/solve_small.wgsl).
const KC: usize = 64;

/// Workgroup size of the invocation-per-matrix kernel.
const INVOCATION_WG: usize = 64;

/// Most matrices one dispatch covers (the grid's x dimension for the workgroup kernel).
const MAX_CHUNK: usize = 65_535;

/// The environment variable that forces a small-solve kernel (see [`SmallSolveKernel`]).
pub const SOLVE_SMALL_KERNEL_ENV: &str = "GPU_LINALG_SOLVE_SMALL_KERNEL";

/// Which GPU kernel solves a batch of small systems. Spelled `invocation` or `workgroup` in
/// [`SOLVE_SMALL_KERNEL_ENV`] and the tuning cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmallSolveKernel {
    /// One invocation per matrix, no barriers: a kernel generated straight-line for each n,
    /// the matrix in vec4 locals, the pivot-row swaps as selects. Suits CPU-type adapters such
    /// as lavapipe (where it runs 10,000 16×16 solves in less time than faer on every core).
    Invocation,
    /// One workgroup per matrix, one invocation per row, two barriers per column; then one
    /// invocation per column of B substitutes. Suits real GPUs.
    Workgroup,
}

impl fmt::Display for SmallSolveKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmallSolveKernel::Invocation => "invocation",
            SmallSolveKernel::Workgroup => "workgroup",
        })
    }
}

impl FromStr for SmallSolveKernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<SmallSolveKernel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "invocation" => Ok(SmallSolveKernel::Invocation),
            "workgroup" => Ok(SmallSolveKernel::Workgroup),
            _ => Err(Error::InvalidArgument(format!(
                "bad small-solve kernel '{s}'; expected invocation or workgroup"
            ))),
        }
    }
}

/// The tuned small-solve kernels of every device.
static CHOICES: Choices<SmallSolveKernel> =
    Choices::new("solve-small", Some(SOLVE_SMALL_KERNEL_ENV));

crate::kernel_params! {
    /// The kernels' uniform block (`SolveSmallParams` in shaders/solve_small.wgsl).
    struct SolveSmallParams: "SolveSmallParams" {
        n: u32,
        k: u32,
        z0: u32,
        zc: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
    }
}

/// The layout of every parameter struct of this module (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![SolveSmallParams::layout(SOURCE.to_string())]
}

/// The parameter layout of every generated invocation-kernel module (for the layout test).
pub(crate) fn invocation_params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    generated_sources()
        .into_iter()
        .map(SolveSmallParams::layout)
        .collect()
}

/// The line of shaders/solve_small.wgsl after which the workgroup kernel follows.
const WORKGROUP_MARKER: &str = "// ---- WORKGROUP KERNEL";

/// The part of shaders/solve_small.wgsl every kernel shares (uniform block, bindings,
/// helpers).
fn shared_source() -> &'static str {
    SOURCE.split(WORKGROUP_MARKER).next().unwrap_or(SOURCE)
}

/// Appends, indented by `ind`, the substitution of one column `c` of B (loaded into scalars
/// `y0…`), applying the swaps `piv(s)` (a WGSL u32 expression for column s's pivot row), with
/// the factors `lu(i, j)` (a WGSL f32 expression), and stores X.
fn column_solve(
    w: &mut String,
    n: usize,
    ind: &str,
    piv: &dyn Fn(usize) -> String,
    lu: &dyn Fn(usize, usize) -> String,
) {
    use std::fmt::Write;
    for i in 0..n {
        let _ = writeln!(w, "{ind}var y{i} = b[bb + {i}u * k + c];");
        let _ = writeln!(w, "{ind}bad_b = bad_b | nonfinite(y{i});");
    }
    for s in 0..n.saturating_sub(1) {
        let _ = writeln!(w, "{ind}{{\n{ind}    let ps = {};", piv(s));
        for i in s + 1..n {
            let _ = writeln!(
                w,
                "{ind}    {{\n{ind}        let q = ps == {i}u;\n{ind}        let t = y{s};\n{ind}        y{s} = select(y{s}, y{i}, q);\n{ind}        y{i} = select(y{i}, t, q);\n{ind}    }}"
            );
        }
        let _ = writeln!(w, "{ind}}}");
    }
    for i in 1..n {
        let terms: String = (0..i).map(|j| format!(" - {} * y{j}", lu(i, j))).collect();
        let _ = writeln!(w, "{ind}y{i} = y{i}{terms};");
    }
    for i in (0..n).rev() {
        let terms: String = (i + 1..n)
            .map(|j| format!(" - {} * y{j}", lu(i, j)))
            .collect();
        let _ = writeln!(w, "{ind}y{i} = (y{i}{terms}) / {};", lu(i, i));
    }
    for i in 0..n {
        let _ = writeln!(w, "{ind}x[bb + {i}u * k + c] = y{i};");
    }
}

/// The module of `solve_small_invocation` for order `n` (1 ≤ n ≤ [`SMALL_MAX_N`]): the shared
/// part of shaders/solve_small.wgsl and the kernel, straight-line for this n (see the shader's
/// header for the algorithm).
pub(crate) fn invocation_source(n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(40 * n * n * n / 2 + 8192);
    s.push_str(shared_source());
    let w = &mut s;
    let nn = n * n;
    let _ = writeln!(
        w,
        "\n// Generated by src/solve/small.rs (invocation_source) for n = {n}.\n@compute @workgroup_size({INVOCATION_WG})"
    );
    let _ = writeln!(
        w,
        "fn solve_small_invocation(@builtin(global_invocation_id) g: vec3<u32>) {{"
    );
    let _ = writeln!(w, "    let k = p.k;");
    let _ = writeln!(w, "    if (g.x >= p.zc) {{\n        return;\n    }}");
    let _ = writeln!(w, "    let z = p.z0 + g.x;");
    let _ = writeln!(w, "    let base = z * {nn}u;");
    let _ = writeln!(w, "    var bad = false;");
    let _ = writeln!(w, "    var bad_b = false;");
    // Row i is held as nq vec4 locals a{i}_{q}; entry (i, j) is component j % 4 of quad j / 4
    // (components past n are zero and never read).
    let nq = n.div_ceil(4);
    let el = |i: usize, j: usize| format!("a{i}_{}.{}", j / 4, ["x", "y", "z", "w"][j % 4]);
    for i in 0..n {
        for q in 0..nq {
            let _ = writeln!(w, "    var a{i}_{q} = vec4<f32>(0.0);");
        }
        for j in 0..n {
            let _ = writeln!(w, "    {} = a[base + {}u];", el(i, j), i * n + j);
            let _ = writeln!(w, "    bad = bad | nonfinite({});", el(i, j));
        }
    }
    let _ = writeln!(w, "    var info = 0u;");
    for c in 0..n {
        let _ = writeln!(w, "    // column {c}");
        let _ = writeln!(w, "    var pc{c} = {c}u;");
        let _ = writeln!(w, "    var best{c} = abs({});", el(c, c));
        for i in c + 1..n {
            let _ = writeln!(
                w,
                "    {{\n        let v = abs({});\n        let gt = v > best{c};\n        best{c} = select(best{c}, v, gt);\n        pc{c} = select(pc{c}, {i}u, gt);\n    }}",
                el(i, c)
            );
        }
        // Rows c and pc swap whole (the multipliers of earlier columns too, as getrf's L).
        for i in c + 1..n {
            let _ = writeln!(w, "    {{\n        let q = pc{c} == {i}u;");
            for q in 0..nq {
                let _ = writeln!(
                    w,
                    "        let t{q} = a{c}_{q};\n        a{c}_{q} = select(a{c}_{q}, a{i}_{q}, q);\n        a{i}_{q} = select(a{i}_{q}, t{q}, q);"
                );
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "    let nz{c} = best{c} != 0.0;");
        let _ = writeln!(
            w,
            "    info = select(info, select(info, {}u, info == 0u), !nz{c});",
            c + 1
        );
        // The pivot row's entries right of c, quad by quad (the first quad masked).
        let q0 = c / 4;
        let mask: Vec<&str> = (0..4)
            .map(|r| if 4 * q0 + r > c { "true" } else { "false" })
            .collect();
        let first = if c % 4 == 3 {
            None
        } else {
            Some(format!(
                "select(vec4<f32>(0.0), a{c}_{q0}, vec4<bool>({}))",
                mask.join(", ")
            ))
        };
        for i in c + 1..n {
            let _ = writeln!(
                w,
                "    {{\n        let l = select(0.0, {} / {}, nz{c});",
                el(i, c),
                el(c, c)
            );
            if let Some(f) = &first {
                let _ = writeln!(w, "        a{i}_{q0} = a{i}_{q0} - l * {f};");
            }
            for q in q0 + 1..nq {
                let _ = writeln!(w, "        a{i}_{q} = a{i}_{q} - l * a{c}_{q};");
            }
            let _ = writeln!(w, "        {} = l;\n    }}", el(i, c));
        }
    }
    let _ = writeln!(w, "    let c1 = min(g.y * KC + KC, k);");
    let _ = writeln!(w, "    let bb = z * {n}u * k;");
    let _ = writeln!(w, "    for (var c = g.y * KC; c < c1; c++) {{");
    column_solve(w, n, "        ", &|s| format!("pc{s}"), &el);
    let _ = writeln!(w, "    }}");
    finish_status(w, "g.y == 0u");
    s
}

/// Appends the status stores and the closing brace of a kernel.
fn finish_status(w: &mut String, writer: &str) {
    w.push_str(&format!(
        "    if ({writer} && info != 0u) {{\n        atomicStore(&status[2u * z], info);\n    }}\n    if (bad) {{\n        atomicOr(&status[2u * z + 1u], 1u);\n    }}\n    if (bad_b) {{\n        atomicOr(&status[2u * z + 1u], 2u);\n    }}\n}}\n"
    ));
}

/// Every generated module: the invocation kernel for every n (for the cross-compilation
/// tests).
pub(crate) fn generated_sources() -> Vec<String> {
    (1..=SMALL_MAX_N).map(invocation_source).collect()
}

/// (batch, n, k) of A [batch, n, n] and B [batch, n, k], or why they do not fit.
fn shapes(a: &Tensor, b: &Tensor, max_n: Option<usize>) -> Result<(usize, usize, usize)> {
    for (t, name) in [(a, "A"), (b, "B")] {
        if t.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "batched solve: {name} (shape {:?}) is {}; expected float32",
                t.shape(),
                t.dtype().name()
            )));
        }
    }
    let (&[batch, n, n2], &[bb, bn, k]) = (a.shape(), b.shape()) else {
        return Err(Error::Shape(format!(
            "batched solve needs A [batch, n, n] and B [batch, n, k]; got A {:?} and B {:?}",
            a.shape(),
            b.shape()
        )));
    };
    if n != n2 || bb != batch || bn != n {
        return Err(Error::Shape(format!(
            "batched solve needs A [batch, n, n] and B [batch, n, k] with the same batch and \
             n; got A {:?} and B {:?}",
            a.shape(),
            b.shape()
        )));
    }
    if let Some(max) = max_n {
        if n > max {
            return Err(Error::InvalidArgument(format!(
                "the GPU small solve handles n ≤ {max}; got A {:?} and B {:?}",
                a.shape(),
                b.shape()
            )));
        }
    }
    Ok((batch, n, k))
}

/// The workgroup size of the workgroup-per-matrix kernel for order n: n rounded up to a
/// multiple of 8 (one lavapipe SIMD group), at least 8.
fn workgroup_size(n: usize) -> u32 {
    n.next_multiple_of(8).clamp(8, SMALL_MAX_N) as u32
}

/// Solves every system of `a` [batch, n, n] and `b` [batch, n, k] (f32, resident or host) on
/// the GPU by `kernel` (`None`: [`small_solve_kernel`]'s choice): X [batch, n, k] resident on
/// the GPU and each matrix's status words (one readback of 8 bytes per matrix).
pub(crate) fn gpu_solve_small(
    ctx: &Context,
    gpu: &Arc<Gpu>,
    a: &Tensor,
    b: &Tensor,
    kernel: Option<SmallSolveKernel>,
) -> Result<(Tensor, Vec<[u32; 2]>)> {
    let (batch, n, k) = shapes(a, b, Some(SMALL_MAX_N))?;
    let x_shape = vec![batch, n, k];
    if batch == 0 || n == 0 {
        return Ok((ctx.zeros(&x_shape)?, vec![[0, 0]; batch]));
    }
    let kernel = match kernel {
        Some(kn) => kn,
        None => small_solve_kernel(ctx, gpu, n)?,
    };
    let a_len = batch * n * n;
    let x_len = batch * n * k;
    u32_of(a_len, "batch·n·n of the batched solve")?;
    u32_of(x_len, "batch·n·k of the batched solve")?;
    let col_chunks = k.div_ceil(KC).max(1);
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if col_chunks > limit {
        return Err(Error::InvalidArgument(format!(
            "batched solve: k = {k} columns of B need {col_chunks} grid rows of {KC}, over the \
             adapter's {limit} (A {:?}, B {:?})",
            a.shape(),
            b.shape()
        )));
    }
    let (a_bytes, x_bytes) = ((a_len * 4) as u64, (x_len * 4) as u64);
    gpu.check_binding(a_bytes, "the batched solve's A")?;
    gpu.check_binding(x_bytes, "the batched solve's B and X")?;
    let status_bytes = (batch * 8) as u64;
    let ab = ctx.resident(a)?;
    // A 4-byte stand-in for an empty B (k = 0): a binding is never zero-sized.
    let bbuf = if x_len == 0 {
        gpu.alloc(4, "batched solve empty B")?
    } else {
        ctx.resident(b)?
    };
    let (x, status) = gpu.scoped("batched solve", || -> Result<_> {
        let (entry, key, wg) = match kernel {
            SmallSolveKernel::Invocation => (
                "solve_small_invocation",
                format!("solve_small/invocation/n{n}"),
                None,
            ),
            SmallSolveKernel::Workgroup => {
                let wg = workgroup_size(n);
                (
                    "solve_small_workgroup",
                    format!("solve_small/workgroup@{wg}"),
                    Some(wg),
                )
            }
        };
        let constants: Vec<(&str, f64)> = wg.map(|w| ("WG", f64::from(w))).into_iter().collect();
        let pipeline = checked_pipeline(
            gpu,
            &key,
            "solve_small.wgsl",
            || match kernel {
                SmallSolveKernel::Invocation => invocation_source(n),
                SmallSolveKernel::Workgroup => SOURCE.to_string(),
            },
            entry,
            &constants,
        )?;
        let x = gpu.alloc(x_bytes.max(4), "batched solve X")?;
        let status = gpu.alloc(status_bytes, "batched solve status")?;
        let mut enc = gpu.encoder("batched solve");
        enc.clear(&status, 0, status_bytes);
        let mut z0 = 0;
        while z0 < batch {
            let zc = (batch - z0).min(MAX_CHUNK);
            // Every count fits u32: batch·n² and batch·n·k were checked above.
            let u = enc.params(&SolveSmallParams {
                n: n as u32,
                k: k as u32,
                z0: z0 as u32,
                zc: zc as u32,
                ..Default::default()
            })?;
            let bg = enc.bind(
                &pipeline,
                &[
                    (0, Bind::Params(&u)),
                    (1, Bind::Buffer(&ab, a_bytes)),
                    (2, Bind::Buffer(&bbuf, x_bytes)),
                    (3, Bind::Buffer(&x, x_bytes)),
                    (4, Bind::Buffer(&status, status_bytes)),
                ],
            );
            let gx = match kernel {
                SmallSolveKernel::Invocation => zc.div_ceil(INVOCATION_WG),
                SmallSolveKernel::Workgroup => zc,
            };
            enc.dispatch(&pipeline, &bg, (gx as u32, col_chunks as u32, 1));
            z0 += zc;
        }
        enc.submit()?;
        Ok((x, status))
    })??;
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(&status.read(batch * 8)?);
    if words.len() != batch * 2 {
        return Err(Error::Readback(format!(
            "batched solve: {} status words read back for {batch} matrices",
            words.len()
        )));
    }
    let status = words.chunks_exact(2).map(|s| [s[0], s[1]]).collect();
    Ok((Tensor::from_gpu(x_shape, DType::F32, x), status))
}

/// The tuning bucket of order n: the next power of two (at least 4).
fn bucket_n(n: usize) -> usize {
    n.next_power_of_two().clamp(4, SMALL_MAX_N)
}

/// The small-solve kernel for order-`n` systems on `gpu`: forced by
/// [`SOLVE_SMALL_KERNEL_ENV`], else remembered or cached on disk for this adapter, else both
/// kernels verified against [`solve_batched_cpu`] on 8 systems and timed now on a batch of
/// the bucket's order (the next power of two of n; 2,048 systems on CPU-type adapters, 16,384
/// on GPUs, k = 1), the faster cached.
pub(crate) fn small_solve_kernel(
    ctx: &Context,
    gpu: &Arc<Gpu>,
    n: usize,
) -> Result<SmallSolveKernel> {
    let nb = bucket_n(n);
    CHOICES.get(gpu, &format!("n{nb}"), || {
        let batch = if gpu.is_cpu_adapter() { 2048 } else { 16_384 };
        let (a, b) = (
            ctx.rand_normal(&[batch, nb, nb], 0x501e, 0.0, 1.0)?,
            ctx.rand_normal(&[batch, nb, 1], 0x501f, 0.0, 1.0)?,
        );
        let checked = 8usize;
        let few_a = ctx.rand_normal(&[checked, nb, nb], 0x5020, 0.0, 1.0)?;
        let few_b = ctx.rand_normal(&[checked, nb, 2], 0x5021, 0.0, 1.0)?;
        let (ha, hb) = (few_a.to_vec()?, few_b.to_vec()?);
        let (want, want_status) = solve_batched_cpu(&ha, &hb, checked, nb, 2);
        Ok(crate::runtime::measure_with(
            gpu,
            &[SmallSolveKernel::Invocation, SmallSolveKernel::Workgroup],
            3,
            |kernel| {
                let (x, status) = gpu_solve_small(ctx, gpu, &few_a, &few_b, Some(kernel))?;
                if status != want_status {
                    return Err(Error::Verification(format!(
                        "status {status:?}, the CPU's {want_status:?}"
                    )));
                }
                x.to_vec()
            },
            |got| check_close(got, &want, checked, nb, 2),
            |kernel| {
                let (x, _) = gpu_solve_small(ctx, gpu, &a, &b, Some(kernel))?;
                ctx.flush()?;
                drop(x);
                Ok(())
            },
        ))
    })
}

/// Checks `got` against the CPU's X of random systems: per matrix and column,
/// ‖x − x_cpu‖∞ ≤ 1e-3·max(1, ‖x_cpu‖∞) (random normal systems of order ≤ 32 are far better
/// conditioned than 10³ in all but rare draws; the seeds are fixed).
fn check_close(got: &[f32], want: &[f32], batch: usize, n: usize, k: usize) -> Result<()> {
    if got.len() != want.len() {
        return Err(Error::Verification(format!(
            "X has {} values, expected {}",
            got.len(),
            want.len()
        )));
    }
    for z in 0..batch {
        for c in 0..k {
            let at = |v: &[f32], i: usize| v[(z * n + i) * k + c];
            let scale = (0..n).map(|i| at(want, i).abs()).fold(1.0f32, f32::max);
            let worst = (0..n)
                .map(|i| (at(got, i) - at(want, i)).abs())
                .fold(0.0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) });
            if worst.is_nan() || worst > 1e-3 * scale {
                return Err(Error::Verification(format!(
                    "matrix {z} column {c}: |x − x_cpu| = {worst} against ‖x_cpu‖∞ {scale}"
                )));
            }
        }
    }
    Ok(())
}

/// Solves every system A·X = B of a batch on the CPU: `a` holds `batch` row-major n×n
/// matrices, `b` `batch` row-major n×k right-hand sides. Each is factored by faer's LU with
/// partial pivoting and solved, the matrices in parallel (rayon); any n. Returns X (row-major
/// [batch, n, k]) and each matrix's status words: `[0]` the 1-based index of the first exactly
/// zero diagonal entry of U (0 = none), `[1]` bit 0 if A, bit 1 if B holds NaN or Inf. X of a matrix with
/// a non-zero status is not meaningful. Slices shorter than the shapes give zero-filled
/// results with status `[0, 1]` rather than a panic.
pub fn solve_batched_cpu(
    a: &[f32],
    b: &[f32],
    batch: usize,
    n: usize,
    k: usize,
) -> (Vec<f32>, Vec<[u32; 2]>) {
    let (nn, nk) = (n * n, n * k);
    let mut x = vec![0.0f32; batch * nk];
    let mut status = vec![[0u32; 2]; batch];
    if a.len() < batch * nn || b.len() < batch * nk {
        status.iter_mut().for_each(|s| s[1] = 1);
        return (x, status);
    }
    if nk == 0 {
        // n = 0 (nothing to solve) or k = 0 (only the factorisation's status).
        if n > 0 {
            status
                .par_iter_mut()
                .enumerate()
                .for_each(|(z, s)| *s = solve_one(&a[z * nn..(z + 1) * nn], &[], n, 0, &mut []));
        }
        return (x, status);
    }
    // Enough matrices per task to amortise rayon's scheduling on small systems.
    let per = (4096 / (nn + nk).max(1)).clamp(1, 256);
    x.par_chunks_mut(per * nk)
        .zip(status.par_chunks_mut(per))
        .enumerate()
        .for_each(|(t, (xs, ss))| {
            for (i, (xz, s)) in xs.chunks_mut(nk).zip(ss.iter_mut()).enumerate() {
                let z = t * per + i;
                *s = solve_one(&a[z * nn..(z + 1) * nn], &b[z * nk..(z + 1) * nk], n, k, xz);
            }
        });
    (x, status)
}

/// One system: X into `x` (row-major n×k) and its status words.
fn solve_one(a: &[f32], b: &[f32], n: usize, k: usize, x: &mut [f32]) -> [u32; 2] {
    use faer::linalg::solvers::Solve;
    let bad = u32::from(a.iter().any(|v| !v.is_finite()))
        | (2 * u32::from(b.iter().any(|v| !v.is_finite())));
    let am = faer::Mat::<f32>::from_fn(n, n, |i, j| a[i * n + j]);
    let lu = am.partial_piv_lu();
    let u = lu.U();
    let info = (0..n).find(|&j| u[(j, j)] == 0.0).map_or(0, |j| j + 1);
    if k > 0 {
        let bm = faer::Mat::<f32>::from_fn(n, k, |i, c| b[i * k + c]);
        let xm = lu.solve(&bm);
        for i in 0..n {
            for c in 0..k {
                x[i * k + c] = xm[(i, c)];
            }
        }
    }
    [info as u32, bad]
}

impl Context {
    /// Test hook until the public `solve` exists: the GPU small batched solve of `a` [batch,
    /// n, n] and `b` [batch, n, k] by `kernel` (`None`: the tuned choice), X and the status
    /// words. An `Err` on the CPU backend.
    #[doc(hidden)]
    pub fn solve_small_for_tests(
        &self,
        a: &Tensor,
        b: &Tensor,
        kernel: Option<SmallSolveKernel>,
    ) -> Result<(Tensor, Vec<[u32; 2]>)> {
        let gpu = self.gpu().ok_or_else(|| {
            Error::InvalidArgument("the small batched solve's GPU path needs a GPU context".into())
        })?;
        gpu_solve_small(self, gpu, a, b, kernel)
    }

    /// Test hook: the small-solve kernel this context uses for order-`n` systems (forced,
    /// remembered, cached on disk or tuned now).
    #[doc(hidden)]
    pub fn small_solve_kernel_for_tests(&self, n: usize) -> Result<SmallSolveKernel> {
        let gpu = self.gpu().ok_or_else(|| {
            Error::InvalidArgument("the CPU backend has no GPU small-solve kernel".into())
        })?;
        small_solve_kernel(self, gpu, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_round_trip() {
        for kn in [SmallSolveKernel::Invocation, SmallSolveKernel::Workgroup] {
            assert_eq!(kn.to_string().parse::<SmallSolveKernel>().unwrap(), kn);
        }
        assert!("simd".parse::<SmallSolveKernel>().is_err());
    }

    #[test]
    fn cpu_solves_with_pivoting_and_reports_status() {
        // [[0, 1], [1, 0]]·x = [2, 3] needs a row swap: x = [3, 2].
        let (x, s) = solve_batched_cpu(&[0.0, 1.0, 1.0, 0.0], &[2.0, 3.0], 1, 2, 1);
        assert_eq!((x, s), (vec![3.0, 2.0], vec![[0, 0]]));
        let (_, s) = solve_batched_cpu(&[0.0; 4], &[1.0, 1.0], 1, 2, 1);
        assert_eq!(s, vec![[1, 0]]);
        let (_, s) = solve_batched_cpu(&[1.0, f32::NAN, 0.0, 1.0], &[1.0, 1.0], 1, 2, 1);
        assert_eq!(s[0][1], 1);
        let (_, s) = solve_batched_cpu(&[1.0; 4], &[1.0], 1, 2, 1);
        assert_eq!(s, vec![[0, 1]]);
    }
}
