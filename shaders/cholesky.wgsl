// Blocked right-looking Cholesky A = L·Lᵀ of a batch of row-major n×n matrices, in place in
// `w` (the lower triangle is read and written; the upper triangle is left as it was until
// `finish`). Per block column k0 of width bs ≤ B: `diag` factors the bs×bs diagonal block in
// one workgroup and records a failing pivot, `panel` solves L21·L11ᵀ = A21 by substitution
// (and packs L21 transposed, 4 rows to a vec4), `update` subtracts L21·L21ᵀ from the lower
// triangle of the trailing matrix. `check` copies A into `w` and measures, per matrix, NaN or
// Inf, max|A − Aᵀ| and max|A|; `finish` writes L (or U = Lᵀ) with zeros across the diagonal.
//
// status, 4 words per matrix: [0] the first failing pivot (1-based global index, 0 = none),
// [1] 1 if A holds NaN or Inf, [2] max|A_ij − A_ji| (f32 bits), [3] max|A_ij| (f32 bits).
// Every serial loop runs at most B·B (1024) or CHUNK (256) iterations, far below llvmpipe's cap.

struct CholParams {
    n: u32,
    k0: u32,
    bs: u32,
    z0: u32,
    pm: u32,
    upper: u32,
    pad0: u32,
    pad1: u32,
}

const B: u32 = 32u;
const CHUNK: u32 = 256u;

@group(0) @binding(0) var<uniform> p: CholParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> packed: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// One row strip (row g.x, columns g.y·CHUNK …) of matrix g.z + z0.
@compute @workgroup_size(64)
fn check(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = p.n;
    let i = g.x;
    if (i >= n) {
        return;
    }
    let z = g.z + p.z0;
    let base = z * n * n;
    let j0 = g.y * CHUNK;
    let j1 = min(j0 + CHUNK, n);
    var nonfinite = 0u;
    var asym = 0u;
    var mx = 0u;
    for (var j = j0; j < j1; j++) {
        let v = a[base + i * n + j];
        w[base + i * n + j] = v;
        let bits = bitcast<u32>(v);
        if ((bits & 0x7f800000u) == 0x7f800000u) {
            nonfinite = 1u;
        }
        mx = max(mx, bits & 0x7fffffffu);
        if (j < i) {
            asym = max(asym, bitcast<u32>(v - a[base + j * n + i]) & 0x7fffffffu);
        }
    }
    let s = z * 4u;
    if (nonfinite != 0u) {
        atomicOr(&status[s + 1u], 1u);
    }
    atomicMax(&status[s + 2u], asym);
    atomicMax(&status[s + 3u], mx);
}

var<workgroup> l11: array<f32, 1024>;
var<workgroup> failed: u32;

// The diagonal block of matrix wg.z + z0, one row per invocation.
@compute @workgroup_size(32)
fn diag(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p.n;
    let k0 = p.k0;
    let bs = p.bs;
    let z = wg.z + p.z0;
    let t = lid.x;
    let base = z * n * n;
    if (t == 0u) {
        failed = atomicLoad(&status[z * 4u]);
    }
    if (workgroupUniformLoad(&failed) != 0u) {
        return;
    }
    if (t < bs) {
        for (var c = 0u; c <= t; c++) {
            l11[t * B + c] = w[base + (k0 + t) * n + k0 + c];
        }
    }
    for (var j = 0u; j < bs; j++) {
        let d = workgroupUniformLoad(&l11[j * B + j]);
        let bits = bitcast<u32>(d);
        let e = bits & 0x7f800000u;
        // Not positive, zero or subnormal, Inf or NaN: leading minor k0 + j + 1 fails.
        if ((bits >> 31u) != 0u || e == 0u || e == 0x7f800000u) {
            if (t == 0u) {
                atomicStore(&status[z * 4u], k0 + j + 1u);
            }
            return;
        }
        let r = sqrt(d);
        if (t == j) {
            l11[j * B + j] = r;
        }
        if (t > j && t < bs) {
            l11[t * B + j] = l11[t * B + j] / r;
        }
        workgroupBarrier();
        if (t > j && t < bs) {
            let ltj = l11[t * B + j];
            for (var c = j + 1u; c <= t; c++) {
                l11[t * B + c] -= ltj * l11[c * B + j];
            }
        }
    }
    workgroupBarrier();
    if (t < bs) {
        for (var c = 0u; c <= t; c++) {
            w[base + (k0 + t) * n + k0 + c] = l11[t * B + c];
        }
    }
}

// Rows r0 … r0 + 3 of the panel below the diagonal block (r0 = k0 + bs + 4·g.x): forward
// substitution x·L11ᵀ = a, written back to `w` and, transposed, to `packed`.
@compute @workgroup_size(64)
fn panel(
    @builtin(local_invocation_index) li: u32,
    @builtin(global_invocation_id) g: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let n = p.n;
    let k0 = p.k0;
    let bs = p.bs;
    let z = wg.z + p.z0;
    let base = z * n * n;
    for (var q = li; q < B * B; q += 64u) {
        let r = q / B;
        let c = q % B;
        var v = 0.0;
        if (r < bs && c <= r) {
            v = w[base + (k0 + r) * n + k0 + c];
        }
        l11[q] = v;
    }
    workgroupBarrier();
    let r0 = k0 + bs + g.x * 4u;
    if (r0 >= n) {
        return;
    }
    var x: array<vec4<f32>, 32>;
    for (var c = 0u; c < bs; c++) {
        var v = vec4<f32>(0.0);
        for (var q = 0u; q < 4u; q++) {
            if (r0 + q < n) {
                v[q] = w[base + (r0 + q) * n + k0 + c];
            }
        }
        x[c] = v;
    }
    for (var c = 0u; c < bs; c++) {
        var s = x[c];
        for (var t = 0u; t < c; t++) {
            s -= x[t] * l11[c * B + t];
        }
        x[c] = s / l11[c * B + c];
    }
    let q4 = p.pm / 4u;
    for (var c = 0u; c < bs; c++) {
        let v = x[c];
        for (var q = 0u; q < 4u; q++) {
            if (r0 + q < n) {
                w[base + (r0 + q) * n + k0 + c] = v[q];
            }
        }
        packed[(z * B + c) * q4 + r0 / 4u] = v;
    }
}

// One 4×4 tile (rows s0 + 4·g.y, columns s0 + 4·g.x, s0 = k0 + bs) of the trailing matrix's
// lower triangle: A22 −= L21·L21ᵀ.
@compute @workgroup_size(8, 8)
fn update(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    if (g.x > g.y) {
        return;
    }
    let n = p.n;
    let s0 = p.k0 + p.bs;
    let i0 = s0 + g.y * 4u;
    let j0 = s0 + g.x * 4u;
    if (i0 >= n) {
        return;
    }
    let z = wg.z + p.z0;
    let q4 = p.pm / 4u;
    let pb = z * B * q4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < p.bs; c++) {
        let li = packed[pb + c * q4 + i0 / 4u];
        let lj = packed[pb + c * q4 + j0 / 4u];
        acc0 += li.x * lj;
        acc1 += li.y * lj;
        acc2 += li.z * lj;
        acc3 += li.w * lj;
    }
    let base = z * n * n;
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if (i >= n) {
            break;
        }
        var acc = acc0;
        if (r == 1u) {
            acc = acc1;
        } else if (r == 2u) {
            acc = acc2;
        } else if (r == 3u) {
            acc = acc3;
        }
        for (var s = 0u; s < 4u; s++) {
            let j = j0 + s;
            if (j <= i) {
                w[base + i * n + j] -= acc[s];
            }
        }
    }
}

// out = L (zeros above the diagonal), or U = Lᵀ (zeros below) when `upper`.
@compute @workgroup_size(16, 16)
fn finish(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p.n;
    let j = g.x;
    let i = g.y;
    if (i >= n || j >= n) {
        return;
    }
    let base = (wg.z + p.z0) * n * n;
    var v = 0.0;
    if (p.upper == 0u) {
        if (j <= i) {
            v = w[base + i * n + j];
        }
    } else if (j >= i) {
        v = w[base + j * n + i];
    }
    out[base + i * n + j] = v;
}
