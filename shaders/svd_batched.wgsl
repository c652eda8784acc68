// Batched one-sided (Hestenes) Jacobi SVD of many small matrices (rows, cols ≤ 32), one
// dispatch per sweep: svd_batched_init (one invocation per matrix), then per sweep either
// svd_batched_sweep (one invocation per matrix, cyclic ordering) or svd_batched_wg_sweep (one
// workgroup per matrix, parallel round-robin ordering in workgroup memory), then
// svd_batched_finish (one invocation per matrix).
//
// Lavapipe stops the loops of an invocation once it has run about 65,535 loop iterations in all
// and silently skips what follows (a whole run of sweeps in one dispatch failed from ~20×20):
// every entry point here stays below that for 32×32 (svd_batched_sweep up to ~48k per sweep,
// svd_batched_finish up to ~20k, the others a few thousand).
//
// Matrix b's work matrix W (rows × cols, cols ≤ rows, column c at w[w0 + c*rows ..], storage
// memory) is A (transposed on the way in) for a tall or square A, Aᵀ for a wide one; V
// (cols × cols, column j at vm[v0 + j*cols ..]) accumulates the rotations. Outputs, row-major per
// matrix: U [m, k], S [k], Vt [k, n], columns in descending order of singular value.

override WG: u32 = 64u;

struct Params {
    batch: u32,
    rows: u32,       // length of a column of W
    cols: u32,       // columns of W (= k)
    wide: u32,       // 1 when W = Aᵀ
    tol: f32,        // convergence: scaled off-diagonal ≤ tol for every pair
    zrel: f32,       // columns with norm ≤ zrel·‖A‖_F count as zero
    rot: f32,        // rotate a pair only when its scaled off-diagonal exceeds this (< tol)
    gx: u32,         // workgroups along x of the folded grid (each dispatch's own)
    sweeps: u32,     // most sweeps one dispatch may run (the generated unrolled sweep)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> vm: array<f32>;
// Per matrix: state[3b] = ‖W‖_F², state[3b+1] = the scale 2⁻ᵉ, state[3b+2] = 1 once converged.
@group(0) @binding(8) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> uo: array<f32>;
@group(0) @binding(5) var<storage, read_write> so: array<f32>;
@group(0) @binding(6) var<storage, read_write> vto: array<f32>;
// stats[0] = most sweeps a matrix ran in the last dispatch, stats[1] = bits of the largest
// off-diagonal of the last sweep, stats[2] = 1 when some input
// value is NaN or infinite, stats[3] = matrices still rotating after the last sweep.
@group(0) @binding(7) var<storage, read_write> stats: array<atomic<u32>, 4>;

fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(WG)
fn svd_batched_init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = (wid.y * p.gx + wid.x) * WG + lid.x;
    if b >= p.batch {
        return;
    }
    let rows = p.rows;
    let cols = p.cols;
    let mn = rows * cols;
    let a0 = b * mn;
    let w0 = b * mn;
    let v0 = b * cols * cols;

    // Scale max|A| into [0.5, 1) by a power of two; copy into W; V = I.
    var mx = 0.0;
    var bad = false;
    for (var i = 0u; i < mn; i++) {
        let x = a[a0 + i];
        bad = bad || non_finite(x);
        mx = max(mx, abs(x));
    }
    if bad {
        atomicMax(&stats[2], 1u);
        state[3u * b] = -1.0;
        return;
    }
    var e = 0;
    if mx > 0.0 {
        e = clamp(frexp(mx).exp, -125, 126);
    }
    let inv = ldexp(1.0, -e);
    var fro2 = 0.0;
    for (var c = 0u; c < cols; c++) {
        for (var r = 0u; r < rows; r++) {
            // Tall: W[r, c] = A[r, c] (A row-major rows × cols); wide: W[r, c] = A[c, r].
            var x: f32;
            if p.wide == 1u {
                x = a[a0 + c * rows + r];
            } else {
                x = a[a0 + r * cols + c];
            }
            x *= inv;
            w[w0 + c * rows + r] = x;
            fro2 += x * x;
        }
        for (var r = 0u; r < cols; r++) {
            vm[v0 + c * cols + r] = select(0.0, 1.0, r == c);
        }
    }
    state[3u * b] = fro2;
    state[3u * b + 1u] = inv;
    state[3u * b + 2u] = 0.0;
}

@compute @workgroup_size(WG)
fn svd_batched_sweep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = (wid.y * p.gx + wid.x) * WG + lid.x;
    if b >= p.batch {
        return;
    }
    let rows = p.rows;
    let cols = p.cols;
    let mn = rows * cols;
    let w0 = b * mn;
    let v0 = b * cols * cols;
    if state[3u * b + 2u] != 0.0 || state[3u * b] < 0.0 {
        return;
    }
    let zt2 = p.zrel * p.zrel * state[3u * b];
    var off = 0.0;
    for (var i = 0u; i + 1u < cols; i++) {
        for (var j = i + 1u; j < cols; j++) {
            var g = vec3<f32>(0.0);
            for (var r = 0u; r < rows; r++) {
                let x = w[w0 + i * rows + r];
                let y = w[w0 + j * rows + r];
                g += vec3<f32>(x * x, y * y, x * y);
            }
            if g.x <= zt2 || g.y <= zt2 {
                continue;
            }
            let o = abs(g.z) / (sqrt(g.x) * sqrt(g.y));
            off = max(off, o);
            if !(o > p.rot) {
                continue;
            }
            let cs = jacobi_rotation(g);
            for (var r = 0u; r < rows; r++) {
                let xy = rotate(w[w0 + i * rows + r], w[w0 + j * rows + r], cs);
                w[w0 + i * rows + r] = xy.x;
                w[w0 + j * rows + r] = xy.y;
            }
            for (var r = 0u; r < cols; r++) {
                let xy = rotate(vm[v0 + i * cols + r], vm[v0 + j * cols + r], cs);
                vm[v0 + i * cols + r] = xy.x;
                vm[v0 + j * cols + r] = xy.y;
            }
        }
    }
    atomicMax(&stats[0], 1u);
    atomicMax(&stats[1], bitcast<u32>(off));
    if off > p.tol {
        atomicAdd(&stats[3], 1u);
    } else {
        state[3u * b + 2u] = 1.0;
    }
}

// Rows 4·r4 … 4·r4 + 3 of the W column starting at `col` (zero past `rows`).
fn wload4(col: u32, r4: u32, rows: u32) -> vec4<f32> {
    let r = 4u * r4;
    var v = vec4<f32>(0.0);
    if r < rows {
        v.x = w[col + r];
    }
    if r + 1u < rows {
        v.y = w[col + r + 1u];
    }
    if r + 2u < rows {
        v.z = w[col + r + 2u];
    }
    if r + 3u < rows {
        v.w = w[col + r + 3u];
    }
    return v;
}

// Stores `v` into rows 4·r4 … 4·r4 + 3 of the W column starting at `col` (those below `rows`).
fn wstore4(col: u32, r4: u32, rows: u32, v: vec4<f32>) {
    let r = 4u * r4;
    if r < rows {
        w[col + r] = v.x;
    }
    if r + 1u < rows {
        w[col + r + 1u] = v.y;
    }
    if r + 2u < rows {
        w[col + r + 2u] = v.z;
    }
    if r + 3u < rows {
        w[col + r + 3u] = v.w;
    }
}

@compute @workgroup_size(WG)
fn svd_batched_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = (wid.y * p.gx + wid.x) * WG + lid.x;
    if b >= p.batch {
        return;
    }
    let rows = p.rows;
    let cols = p.cols;
    let mn = rows * cols;
    let w0 = b * mn;
    let v0 = b * cols * cols;
    if state[3u * b] < 0.0 {
        return;
    }
    let zt2 = p.zrel * p.zrel * state[3u * b];
    let inv = state[3u * b + 1u];
    // Column norms; zero columns replaced by unit vectors orthogonal to all the others:
    // Gram–Schmidt (twice) of the unit vector eₜ least covered by the columns so far
    // (cov[r] = Σ_c (W[r, c]/‖W[:, c]‖)² over the nonzero and completed columns). The row
    // loops run over vec4 blocks: lavapipe stops the loops of an invocation once it has run
    // about 65,535 loop iterations in all (a 32×32 zero matrix needs ~64k scalar ones here),
    // and leaves the rest of the invocation's writes undone.
    let r4n = (rows + 3u) / 4u;
    var nrm: array<f32, 32>;
    var good: array<u32, 32>;
    var sigma: array<f32, 32>;
    var cov: array<vec4<f32>, 8>;
    for (var c = 0u; c < cols; c++) {
        let col = w0 + c * rows;
        var s = 0.0;
        for (var r4 = 0u; r4 < r4n; r4++) {
            let x = wload4(col, r4, rows);
            s += dot(x, x);
        }
        nrm[c] = sqrt(s);
        good[c] = select(0u, 1u, s > zt2);
        sigma[c] = select(0.0, nrm[c], s > zt2);
        if s > zt2 {
            let q = 1.0 / nrm[c];
            for (var r4 = 0u; r4 < r4n; r4++) {
                let y = wload4(col, r4, rows) * q;
                cov[r4] += y * y;
            }
        }
    }
    var x: array<vec4<f32>, 8>;
    for (var z = 0u; z < cols; z++) {
        if good[z] != 0u {
            continue;
        }
        var t = 0u;
        for (var r = 1u; r < rows; r++) {
            if cov[r / 4u][r % 4u] < cov[t / 4u][t % 4u] {
                t = r;
            }
        }
        for (var r4 = 0u; r4 < r4n; r4++) {
            x[r4] = select(vec4<f32>(0.0), vec4<f32>(1.0), 4u * r4 + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(t));
        }
        for (var it = 0u; it < 2u; it++) {
            for (var c = 0u; c < cols; c++) {
                if good[c] == 0u {
                    continue;
                }
                let col = w0 + c * rows;
                var d = 0.0;
                for (var r4 = 0u; r4 < r4n; r4++) {
                    d += dot(x[r4], wload4(col, r4, rows));
                }
                d /= nrm[c] * nrm[c];
                for (var r4 = 0u; r4 < r4n; r4++) {
                    x[r4] -= d * wload4(col, r4, rows);
                }
            }
        }
        var s = 0.0;
        for (var r4 = 0u; r4 < r4n; r4++) {
            s += dot(x[r4], x[r4]);
        }
        // ‖x‖² ≥ 1 − (columns so far)/rows > 0 for the least covered eₜ.
        let q = select(0.0, 1.0 / sqrt(s), s > 0.0);
        for (var r4 = 0u; r4 < r4n; r4++) {
            let y = x[r4] * q;
            wstore4(w0 + z * rows, r4, rows, y);
            cov[r4] += y * y;
        }
        nrm[z] = 1.0;
        good[z] = 1u;
    }

    // Descending order of σ (selection; ties keep the column order).
    var perm: array<u32, 32>;
    var used: array<u32, 32>;
    for (var q = 0u; q < cols; q++) {
        var best = 0u;
        var bv = -1.0;
        for (var c = 0u; c < cols; c++) {
            if used[c] == 0u && sigma[c] > bv {
                best = c;
                bv = sigma[c];
            }
        }
        used[best] = 1u;
        perm[q] = best;
    }

    let k = cols;
    let m = select(rows, cols, p.wide == 1u);
    let n = select(cols, rows, p.wide == 1u);
    for (var q = 0u; q < k; q++) {
        let c = perm[q];
        so[b * k + q] = sigma[c] / inv;
        let sc = select(0.0, 1.0 / nrm[c], nrm[c] > 0.0);
        if p.wide == 1u {
            // U = V (k × k), Vt = (W·diag(1/σ))ᵀ.
            for (var r = 0u; r < m; r++) {
                uo[b * m * k + r * k + q] = vm[v0 + c * cols + r];
            }
            for (var j = 0u; j < n; j++) {
                vto[b * k * n + q * n + j] = w[w0 + c * rows + j] * sc;
            }
        } else {
            for (var r = 0u; r < m; r++) {
                uo[b * m * k + r * k + q] = w[w0 + c * rows + r] * sc;
            }
            for (var j = 0u; j < n; j++) {
                vto[b * k * n + q * n + j] = vm[v0 + c * cols + j];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workgroup-per-matrix sweep: one workgroup of WG invocations runs one sweep on one matrix.
// W and V are loaded into workgroup memory, the sweep runs as np - 1 steps of the parallel
// round-robin (tournament) ordering — each step rotates the np/2 disjoint column pairs at once,
// `lanes` invocations per pair: each lane sums the Gram entries over rows l, l + lanes, …, the
// lanes of a pair add their partial sums (every lane all of them, so no broadcast is needed),
// then each lane rotates its own rows of both columns of W and V — and W and V are written back.
// Two barriers per step. svd_batched_init and svd_batched_finish are shared with the
// invocation-per-matrix kernel.

// W and V of one matrix (column c of W at c*rows, of V at c*cols).
var<workgroup> sw: array<f32, 1024>;
var<workgroup> sv: array<f32, 1024>;
// Partial Gram sums (xᵀx, yᵀy, xᵀy) of each lane.
var<workgroup> red: array<vec3<f32>, 256>;
// The largest scaled off-diagonal of the sweep, as bits.
var<workgroup> woff: atomic<u32>;
// 1 when this matrix has converged or holds NaN/Inf: the whole workgroup skips it.
var<workgroup> wskip: u32;

@compute @workgroup_size(WG)
fn svd_batched_wg_sweep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // One workgroup per matrix: b is uniform over the workgroup.
    let b = wid.y * p.gx + wid.x;
    if b >= p.batch {
        return;
    }
    let rows = min(p.rows, 32u);
    let cols = min(p.cols, rows);
    let mn = rows * cols;
    let w0 = b * mn;
    let v0 = b * cols * cols;
    let t = lid.x;
    if t == 0u {
        wskip = select(0u, 1u, state[3u * b + 2u] != 0.0 || state[3u * b] < 0.0);
        atomicStore(&woff, 0u);
    }
    if workgroupUniformLoad(&wskip) != 0u {
        return;
    }
    for (var i = t; i < mn; i += WG) {
        sw[i] = w[w0 + i];
    }
    for (var i = t; i < cols * cols; i += WG) {
        sv[i] = vm[v0 + i];
    }
    let zt2 = p.zrel * p.zrel * state[3u * b];

    // Pairs per step, lanes per pair (a power of two, at most the next power of two of rows,
    // lanes · pairs ≤ WG) and the pair-groups the workgroup holds.
    let np = cols + (cols & 1u);
    let pairs = np / 2u;
    let lanes = min(1u << firstLeadingBit(max(WG / max(pairs, 1u), 1u)), 1u << firstLeadingBit(2u * rows - 1u));
    let groups = WG / lanes;
    let l = t % lanes;
    var off = 0.0;
    workgroupBarrier();
    for (var step = 0u; step + 1u < np; step++) {
        // Partial Gram sums of this lane's rows, for each pair it serves.
        for (var q = t / lanes; q < pairs; q += groups) {
            let i = round_robin_player(q, step, np);
            let j = round_robin_player(np - 1u - q, step, np);
            var s = vec3<f32>(0.0);
            if i < cols && j < cols {
                for (var r = l; r < rows; r += lanes) {
                    let x = sw[i * rows + r];
                    let y = sw[j * rows + r];
                    s += vec3<f32>(x * x, y * y, x * y);
                }
            }
            red[min(q * lanes + l, 255u)] = s;
        }
        workgroupBarrier();
        for (var q = t / lanes; q < pairs; q += groups) {
            let i = round_robin_player(q, step, np);
            let j = round_robin_player(np - 1u - q, step, np);
            if i >= cols || j >= cols {
                continue; // the padding column of an odd count
            }
            var g = vec3<f32>(0.0);
            for (var k = 0u; k < lanes; k++) {
                g += red[min(q * lanes + k, 255u)];
            }
            if g.x <= zt2 || g.y <= zt2 {
                continue;
            }
            let o = abs(g.z) / (sqrt(g.x) * sqrt(g.y));
            off = max(off, o);
            if !(o > p.rot) {
                continue;
            }
            let cs = jacobi_rotation(g);
            for (var r = l; r < rows; r += lanes) {
                let xy = rotate(sw[i * rows + r], sw[j * rows + r], cs);
                sw[i * rows + r] = xy.x;
                sw[j * rows + r] = xy.y;
            }
            for (var r = l; r < cols; r += lanes) {
                let xy = rotate(sv[i * cols + r], sv[j * cols + r], cs);
                sv[i * cols + r] = xy.x;
                sv[j * cols + r] = xy.y;
            }
        }
        workgroupBarrier();
    }
    for (var i = t; i < mn; i += WG) {
        w[w0 + i] = sw[i];
    }
    for (var i = t; i < cols * cols; i += WG) {
        vm[v0 + i] = sv[i];
    }
    atomicMax(&woff, bitcast<u32>(off));
    workgroupBarrier();
    if t == 0u {
        let o = bitcast<f32>(atomicLoad(&woff));
        atomicMax(&stats[0], 1u);
        atomicMax(&stats[1], bitcast<u32>(o));
        if o > p.tol {
            atomicAdd(&stats[3], 1u);
        } else {
            state[3u * b + 2u] = 1.0;
        }
    }
}
