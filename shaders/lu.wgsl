// Blocked LU with partial pivoting (LAPACK getrf) and blocked triangular solves (trsm) of a
// batch of row-major matrices; matrix z of a dispatch is wg.z + z0.
//
// LU, in place in `w` (n×n per matrix), per block column k0 of width bs ≤ B:
//   `panel`  factors the (n−k0)×bs panel in one workgroup: per column a pivot search (a
//            workgroup max-reduction of |a|, first index of ties, as idamax), the row swap
//            inside the panel, the scaling and the rank-1 update of the panel's later
//            columns; it records the pivot rows in `piv` and packs L21 into `pl`;
//   `rows`   applies the panel's swaps to every column outside it and, right of it, solves
//            U12 = L11⁻¹·A12 (unit lower) and packs U12 into `pr`;
//   `update` A22 −= L21·U12, register-blocked 4×4 per invocation from the packed operands.
// A zero pivot column is recorded (LAPACK info) and the factorisation goes on without
// dividing, as getrf does.
//
// Triangular solve op(T)·X = B in place in `w` (n×k per matrix, X overwrites B), T in `a`:
//   `pack_t`      packs the rows [r0, r0 + rows) of op(T)'s block column [k0, k0 + bs) into `pl`;
//   `trsm_block`  solves the diagonal block for every right-hand side and packs X's block rows
//                 into `pr`, after which `update` subtracts their product from the rows not yet
//                 solved.
// `permute` applies the pivots to B's rows; `check` copies a → w and flags NaN or Inf;
// `scan` flags NaN or Inf in T and its first zero diagonal; `slogdet` and `extract` read the
// results out.
//
// status, 2 words per matrix (matrix z at z + sz, so that two operands can share one buffer):
// [0] n − i for the first zero pivot or diagonal i (0 = none), kept by atomicMax so that the
// earliest wins; [1] 1 if an operand holds NaN or Inf.
// Every serial loop runs at most B (32), CHUNK (256) or n iterations (the pivot loops, n² floats
// fit one binding, so n < 65,536 on every adapter), below llvmpipe's 65,535-iteration cap.

struct LuParams {
    n: u32,
    k0: u32,
    bs: u32,
    z0: u32,
    rows: u32,
    cols: u32,
    r0: u32,
    c0: u32,
    ld: u32,
    mstride: u32,
    ql: u32,
    qr: u32,
    k: u32,
    flags: u32,
    batch: u32,
    sz: u32,
}

const B: u32 = 32u;
const CHUNK: u32 = 256u;
const PANEL: u32 = 256u;
// flags
const LOWER: u32 = 1u;
const TRANS: u32 = 2u;
const UNIT: u32 = 4u;
const UPPER_OUT: u32 = 8u;
const IDENTITY: u32 = 16u;

@group(0) @binding(0) var<uniform> p: LuParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> piv: array<u32>;
@group(0) @binding(5) var<storage, read_write> pl: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> pr: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

fn is_nonfinite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// Row g.x, columns g.y·CHUNK …, of the rows×cols matrix z: w = a, NaN or Inf flagged; with
// IDENTITY, w = I instead and `a` is not read.
@compute @workgroup_size(64)
fn check(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = g.x;
    if (i >= p.rows) {
        return;
    }
    let z = wg.z + p.z0;
    let row = z * p.mstride + i * p.cols;
    let j0 = g.y * CHUNK;
    let j1 = min(j0 + CHUNK, p.cols);
    var nonfinite = false;
    let identity = (p.flags & IDENTITY) != 0u;
    for (var j = j0; j < j1; j++) {
        var v = select(0.0, 1.0, i == j);
        if (!identity) {
            v = a[row + j];
        }
        w[row + j] = v;
        nonfinite = nonfinite || is_nonfinite(v);
    }
    if (nonfinite) {
        atomicOr(&status[(z + p.sz) * 2u + 1u], 1u);
    }
}

// Row g.x, columns g.y·CHUNK …, of the n×n matrix T (in `a`): NaN or Inf flagged, and a zero
// diagonal unless UNIT.
@compute @workgroup_size(64)
fn scan(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p.n;
    let i = g.x;
    if (i >= n) {
        return;
    }
    let z = wg.z + p.z0;
    let row = z * n * n + i * n;
    let j0 = g.y * CHUNK;
    let j1 = min(j0 + CHUNK, n);
    var nonfinite = false;
    for (var j = j0; j < j1; j++) {
        nonfinite = nonfinite || is_nonfinite(a[row + j]);
    }
    if (nonfinite) {
        atomicOr(&status[(z + p.sz) * 2u + 1u], 1u);
    }
    if ((p.flags & UNIT) == 0u && i >= j0 && i < j1 && a[row + i] == 0.0) {
        atomicMax(&status[(z + p.sz) * 2u], n - i);
    }
}

var<workgroup> red_v: array<f32, PANEL>;
var<workgroup> red_i: array<u32, PANEL>;
var<workgroup> urow: array<f32, B>;

// The panel of block column k0 of matrix wg.z + z0 (see the header).
@compute @workgroup_size(256)
fn panel(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p.n;
    let k0 = p.k0;
    let bs = p.bs;
    let z = wg.z + p.z0;
    let base = z * n * n;
    let t = lid.x;
    for (var j = 0u; j < bs; j++) {
        let col = k0 + j;
        var best = -1.0;
        var bi = col;
        for (var r = col + t; r < n; r += PANEL) {
            let v = abs(w[base + r * n + col]);
            if (v > best) {
                best = v;
                bi = r;
            }
        }
        red_v[t] = best;
        red_i[t] = bi;
        workgroupBarrier();
        for (var s = PANEL / 2u; s > 0u; s >>= 1u) {
            if (t < s) {
                let ov = red_v[t + s];
                let oi = red_i[t + s];
                if (ov > red_v[t] || (ov == red_v[t] && oi < red_i[t])) {
                    red_v[t] = ov;
                    red_i[t] = oi;
                }
            }
            workgroupBarrier();
        }
        let pr_row = red_i[0];
        if (t < bs && pr_row != col) {
            let x = w[base + col * n + k0 + t];
            w[base + col * n + k0 + t] = w[base + pr_row * n + k0 + t];
            w[base + pr_row * n + k0 + t] = x;
        }
        if (t == 0u) {
            piv[z * n + col] = pr_row;
            if (red_v[0] == 0.0) {
                atomicMax(&status[(z + p.sz) * 2u], n - col);
            }
        }
        storageBarrier();
        workgroupBarrier();
        if (t < bs) {
            urow[t] = w[base + col * n + k0 + t];
        }
        workgroupBarrier();
        let d = urow[j];
        if (d != 0.0) {
            for (var r = col + 1u + t; r < n; r += PANEL) {
                let l = w[base + r * n + col] / d;
                w[base + r * n + col] = l;
                for (var c = j + 1u; c < bs; c++) {
                    w[base + r * n + k0 + c] -= l * urow[c];
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
    }
    // L21 packed: column c, rows s0 + 4q … s0 + 4q + 3 as one vec4 (zeros past n).
    let s0 = k0 + bs;
    for (var q = t; s0 + q * 4u < n; q += PANEL) {
        for (var c = 0u; c < bs; c++) {
            var v = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                let r = s0 + q * 4u + e;
                if (r < n) {
                    v[e] = w[base + r * n + k0 + c];
                }
            }
            pl[(z * B + c) * p.ql + q] = v;
        }
    }
}

var<workgroup> tb: array<f32, 1024>;

// Columns 4·g.x … 4·g.x + 3 of matrix wg.z + z0 (see the header).
@compute @workgroup_size(64)
fn rows(
    @builtin(local_invocation_index) li: u32,
    @builtin(global_invocation_id) g: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let n = p.n;
    let k0 = p.k0;
    let bs = p.bs;
    let z = wg.z + p.z0;
    let base = z * n * n;
    let s0 = k0 + bs;
    for (var q = li; q < B * B; q += 64u) {
        let r = q / B;
        let c = q % B;
        var v = 0.0;
        if (r < bs && c < r) {
            v = w[base + (k0 + r) * n + k0 + c];
        }
        tb[q] = v;
    }
    workgroupBarrier();
    let j0 = g.x * 4u;
    if (j0 >= n || (j0 >= k0 && j0 < s0)) {
        return;
    }
    let jn = min(4u, n - j0);
    for (var t = 0u; t < bs; t++) {
        let r1 = k0 + t;
        let r2 = piv[z * n + r1];
        if (r2 != r1) {
            for (var e = 0u; e < jn; e++) {
                let x = w[base + r1 * n + j0 + e];
                w[base + r1 * n + j0 + e] = w[base + r2 * n + j0 + e];
                w[base + r2 * n + j0 + e] = x;
            }
        }
    }
    if (j0 < k0) {
        return;
    }
    var x: array<vec4<f32>, 32>;
    for (var c = 0u; c < bs; c++) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < jn; e++) {
            v[e] = w[base + (k0 + c) * n + j0 + e];
        }
        for (var t = 0u; t < c; t++) {
            v -= tb[c * B + t] * x[t];
        }
        x[c] = v;
    }
    let q = (j0 - s0) / 4u;
    for (var c = 0u; c < bs; c++) {
        let v = x[c];
        for (var e = 0u; e < jn; e++) {
            w[base + (k0 + c) * n + j0 + e] = v[e];
        }
        pr[(z * B + c) * p.qr + q] = v;
    }
}

// One 4×4 tile (rows r0 + 4·g.y, columns c0 + 4·g.x) of the rows×cols region of matrix z
// (row stride ld, mstride values per matrix): W −= PL·PR over bs packed columns.
@compute @workgroup_size(8, 8)
fn update(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let i0 = g.y * 4u;
    let j0 = g.x * 4u;
    if (i0 >= p.rows || j0 >= p.cols) {
        return;
    }
    let z = wg.z + p.z0;
    let lb = z * B * p.ql + i0 / 4u;
    let rb = z * B * p.qr + j0 / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < p.bs; c++) {
        let li = pl[lb + c * p.ql];
        let rj = pr[rb + c * p.qr];
        acc0 += li.x * rj;
        acc1 += li.y * rj;
        acc2 += li.z * rj;
        acc3 += li.w * rj;
    }
    let base = z * p.mstride + (p.r0 + i0) * p.ld + p.c0 + j0;
    let rn = min(4u, p.rows - i0);
    let cn = min(4u, p.cols - j0);
    for (var r = 0u; r < rn; r++) {
        var acc = acc0;
        if (r == 1u) {
            acc = acc1;
        } else if (r == 2u) {
            acc = acc2;
        } else if (r == 3u) {
            acc = acc3;
        }
        for (var s = 0u; s < cn; s++) {
            w[base + r * p.ld + s] -= acc[s];
        }
    }
}

// op(T)[i][j] of matrix z's n×n T.
fn op_t(z: u32, i: u32, j: u32) -> f32 {
    let n = p.n;
    if ((p.flags & TRANS) != 0u) {
        return a[z * n * n + j * n + i];
    }
    return a[z * n * n + i * n + j];
}

// Rows r0 + 4·g.x … + 3 of op(T)'s block column [k0, k0 + bs), packed into `pl`.
@compute @workgroup_size(64)
fn pack_t(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let q = g.x;
    if (q * 4u >= p.rows) {
        return;
    }
    let z = wg.z + p.z0;
    for (var c = 0u; c < p.bs; c++) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let r = q * 4u + e;
            if (r < p.rows) {
                v[e] = op_t(z, p.r0 + r, p.k0 + c);
            }
        }
        pl[(z * B + c) * p.ql + q] = v;
    }
}

// Right-hand sides 4·g.x … + 3 of matrix z: X[k0 .. k0 + bs] = op(T)₁₁⁻¹·B[k0 .. k0 + bs],
// forward (LOWER) or backward, written back and packed into `pr`.
@compute @workgroup_size(64)
fn trsm_block(
    @builtin(local_invocation_index) li: u32,
    @builtin(global_invocation_id) g: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let k0 = p.k0;
    let bs = p.bs;
    let z = wg.z + p.z0;
    let lower = (p.flags & LOWER) != 0u;
    let unit = (p.flags & UNIT) != 0u;
    for (var q = li; q < B * B; q += 64u) {
        let r = q / B;
        let c = q % B;
        var v = 0.0;
        if (r < bs && c < bs) {
            if (r == c) {
                if (unit) {
                    v = 1.0;
                } else {
                    v = op_t(z, k0 + r, k0 + c);
                }
            } else if ((lower && c < r) || (!lower && c > r)) {
                v = op_t(z, k0 + r, k0 + c);
            }
        }
        tb[q] = v;
    }
    workgroupBarrier();
    let k = p.k;
    let j0 = g.x * 4u;
    if (j0 >= k) {
        return;
    }
    let jn = min(4u, k - j0);
    let base = z * p.mstride + j0;
    var x: array<vec4<f32>, 32>;
    for (var c = 0u; c < bs; c++) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < jn; e++) {
            v[e] = w[base + (k0 + c) * k + e];
        }
        x[c] = v;
    }
    for (var s = 0u; s < bs; s++) {
        var c = s;
        if (!lower) {
            c = bs - 1u - s;
        }
        var v = x[c];
        if (lower) {
            for (var t = 0u; t < c; t++) {
                v -= tb[c * B + t] * x[t];
            }
        } else {
            for (var t = c + 1u; t < bs; t++) {
                v -= tb[c * B + t] * x[t];
            }
        }
        x[c] = v / tb[c * B + c];
    }
    for (var c = 0u; c < bs; c++) {
        let v = x[c];
        for (var e = 0u; e < jn; e++) {
            w[base + (k0 + c) * k + e] = v[e];
        }
        pr[(z * B + c) * p.qr + g.x] = v;
    }
}

// Column g.x of matrix z's n×k B: the row interchanges of the pivots, in order.
@compute @workgroup_size(64)
fn permute(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let j = g.x;
    let k = p.k;
    if (j >= k) {
        return;
    }
    let n = p.n;
    let z = wg.z + p.z0;
    let base = z * p.mstride + j;
    for (var i = 0u; i < n; i++) {
        let r = piv[z * n + i];
        if (r != i) {
            let x = w[base + i * k];
            w[base + i * k] = w[base + r * k];
            w[base + r * k] = x;
        }
    }
}

// Matrix g.x + z0 of the batch: out = (sign, log|det|) of its LU factors in `a` and pivots;
// a zero diagonal gives sign 0 (the host turns its log into −∞).
@compute @workgroup_size(64)
fn slogdet(@builtin(global_invocation_id) g: vec3<u32>) {
    let z = g.x + p.z0;
    if (z >= p.batch) {
        return;
    }
    let n = p.n;
    var sign = 1.0;
    var logabs = 0.0;
    for (var i = 0u; i < n; i++) {
        let d = a[z * n * n + i * n + i];
        if (d == 0.0) {
            sign = 0.0;
        } else {
            logabs += log(abs(d));
            if (d < 0.0) {
                sign = -sign;
            }
        }
        if (piv[z * n + i] != i) {
            sign = -sign;
        }
    }
    out[z * 2u] = sign;
    out[z * 2u + 1u] = logabs;
}

// Element (g.y, g.x) of matrix wg.z + z0: L (unit lower) or, with UPPER_OUT, U of the LU
// factors in `a`.
@compute @workgroup_size(16, 16)
fn extract(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p.n;
    let i = g.y;
    let j = g.x;
    if (i >= n || j >= n) {
        return;
    }
    let idx = (wg.z + p.z0) * n * n + i * n + j;
    var v = 0.0;
    if ((p.flags & UPPER_OUT) != 0u) {
        if (j >= i) {
            v = a[idx];
        }
    } else if (j < i) {
        v = a[idx];
    } else if (j == i) {
        v = 1.0;
    }
    out[idx] = v;
}
