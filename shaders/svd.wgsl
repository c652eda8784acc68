// One-sided (Hestenes) Jacobi SVD.
//
// The host works on the columns of a "work" matrix W of `rows` × `cols` (cols ≤ rows), stored
// column by column (column c at w[c*rows ..]): A itself for a tall or square A (transposed on
// the way in), Aᵀ for a wide A (whose rows are already contiguous). V (cols × cols, column j at
// vm[j*cols ..]) accumulates the rotations. One `svd_rotate` dispatch is one step of the
// round-robin (tournament) ordering: `np/2` disjoint column pairs, one workgroup each; `np - 1`
// steps make a sweep. Every workgroup writes its pair's scaled off-diagonal |aᵢ·aⱼ|/(‖aᵢ‖‖aⱼ‖)
// into `offmax` (an atomic max on the bits of a non-negative f32), read back once per sweep.

override WG: u32 = 64u;

struct Params {
    rows: u32,   // length of a column of W
    cols: u32,   // columns of W (= k)
    np: u32,     // cols rounded up to even
    step: u32,   // round-robin step, 0 .. np-2
    rot: f32,    // rotate a pair only when its scaled off-diagonal exceeds this (a fraction of
                 // the convergence tolerance, which the host checks)
    zrel: f32,   // columns with norm ≤ zrel·‖A‖_F count as zero and are never rotated
    wide: u32,   // 1 when W = Aᵀ
    gx: u32,     // workgroups along x of a folded 1-D grid
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> vm: array<f32>;
// stats[0] = ‖W‖_F² = ‖A·2⁻ᵉ‖_F², stats[1] = 2⁻ᵉ (the power of two that scales max|A| into
// [0.5, 1), so that no square overflows or underflows), stats[2 + c] = ‖column c of W‖,
// stats[2 + cols] = the bits of `offmax` when svd_norms ran, stats[3 + cols + c] = ‖column c of V‖.
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> offmax: atomic<u32>;
// perm[q] = source column of output q, perm[cols + q] = bits of 1/‖column of W‖ (0 for a zero
// column), perm[2·cols + q] = bits of 1/‖column of V‖.
@group(0) @binding(6) var<storage, read> perm: array<u32>;
@group(0) @binding(7) var<storage, read_write> uo: array<f32>;
@group(0) @binding(8) var<storage, read_write> vto: array<f32>;
// order[slot] = the column playing round-robin slot `slot` (cols for the padding slot of an odd
// count): the columns sorted by descending norm at the start of each sweep (de Rijk).
@group(0) @binding(9) var<storage, read> order: array<u32>;

var<workgroup> red: array<vec3<f32>, WG>;

fn flat_index(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * p.gx + wid.x) * WG + lid.x;
}

// Every loop below is bounded by a small multiple of the column length over WG (or by CHUNK):
// lavapipe ends an invocation after 65,535 loop iterations in all, silently.

// Elements of A one invocation of svd_amax scans.
const CHUNK: u32 = 64u;

// max|A| into `offmax` (an atomic max on the bits of a non-negative f32; cleared by the host):
// CHUNK elements per invocation, a workgroup maximum, one atomic per workgroup.
@compute @workgroup_size(WG)
fn svd_amax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_index(wid, lid);
    let total = p.rows * p.cols;
    var mx = 0.0;
    for (var i = t * CHUNK; i < min(total, t * CHUNK + CHUNK); i++) {
        mx = max(mx, abs(a[i]));
    }
    red[lid.x] = vec3<f32>(mx, 0.0, 0.0);
    workgroupBarrier();
    if lid.x == 0u {
        var gm = 0.0;
        for (var i = 0u; i < WG; i++) {
            gm = max(gm, red[i].x);
        }
        atomicMax(&offmax, bitcast<u32>(gm));
    }
}

// W = A·2⁻ᵉ (tall: transposed; wide: copied) and V = I, where 2⁻ᵉ scales max|A| (from
// svd_amax) into [0.5, 1) so that no square overflows or underflows; stats[1] = 2⁻ᵉ.
@compute @workgroup_size(WG)
fn svd_init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wid, lid);
    let gm = bitcast<f32>(atomicLoad(&offmax));
    var e = 0;
    if gm > 0.0 {
        e = clamp(frexp(gm).exp, -125, 126);
    }
    let inv = ldexp(1.0, -e);
    if idx == 0u {
        stats[1] = inv;
    }
    let mn = p.rows * p.cols;
    if idx < mn {
        if p.wide == 1u {
            w[idx] = a[idx] * inv;
        } else {
            let c = idx / p.rows;
            let r = idx % p.rows;
            w[idx] = a[r * p.cols + c] * inv;
        }
    } else if idx - mn < p.cols * p.cols {
        let i = idx - mn;
        vm[i] = select(0.0, 1.0, i / p.cols == i % p.cols);
    }
}

// ‖W‖_F² = Σ ‖column c‖² into stats[0], from the norms svd_norms left in stats[2 + c]: one
// workgroup.
@compute @workgroup_size(WG)
fn svd_fro(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var c = lid.x; c < p.cols; c += WG) {
        let x = stats[2u + c];
        s += x * x;
    }
    red[lid.x] = vec3<f32>(s, 0.0, 0.0);
    workgroupBarrier();
    if lid.x == 0u {
        var t = 0.0;
        for (var i = 0u; i < WG; i++) {
            t += red[i].x;
        }
        stats[0] = t;
    }
}

// One round-robin step: workgroup q rotates the pair at positions (q, np-1-q).
@compute @workgroup_size(WG)
fn svd_rotate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let i = order[round_robin_player(q, p.step, p.np)];
    let j = order[round_robin_player(p.np - 1u - q, p.step, p.np)];
    if i >= p.cols || j >= p.cols {
        return; // the padding column of an odd count
    }
    let m = p.rows;
    let ci = i * m;
    let cj = j * m;
    var s = vec3<f32>(0.0);
    for (var r = lid.x; r < m; r += WG) {
        let x = w[ci + r];
        let y = w[cj + r];
        s += vec3<f32>(x * x, y * y, x * y);
    }
    red[lid.x] = s;
    workgroupBarrier();
    if lid.x == 0u {
        var acc = vec3<f32>(0.0);
        for (var t = 0u; t < WG; t++) {
            acc += red[t];
        }
        red[0] = acc;
    }
    workgroupBarrier();
    let g = red[0];
    let zt2 = p.zrel * p.zrel * stats[0];
    if g.x <= zt2 || g.y <= zt2 {
        return;
    }
    let off = abs(g.z) / (sqrt(g.x) * sqrt(g.y));
    if lid.x == 0u {
        atomicMax(&offmax, bitcast<u32>(off));
    }
    if !(off > p.rot) {
        return;
    }
    let cs = jacobi_rotation(g);
    for (var r = lid.x; r < m; r += WG) {
        let xy = rotate(w[ci + r], w[cj + r], cs);
        w[ci + r] = xy.x;
        w[cj + r] = xy.y;
    }
    let n = p.cols;
    let vi = i * n;
    let vj = j * n;
    for (var r = lid.x; r < n; r += WG) {
        let xy = rotate(vm[vi + r], vm[vj + r], cs);
        vm[vi + r] = xy.x;
        vm[vj + r] = xy.y;
    }
}

// The norm of column c of W into stats[2 + c] and of column c of V into stats[3 + cols + c]
// (one workgroup per column), and the bits of `offmax` into stats[2 + cols], so that one readback
// brings them all.
@compute @workgroup_size(WG)
fn svd_norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.y * p.gx + wid.x;
    if c >= p.cols {
        return;
    }
    if c == 0u && lid.x == 0u {
        stats[2u + p.cols] = bitcast<f32>(atomicLoad(&offmax));
    }
    var s = vec3<f32>(0.0);
    for (var r = lid.x; r < p.rows; r += WG) {
        let x = w[c * p.rows + r];
        s.x += x * x;
    }
    for (var r = lid.x; r < p.cols; r += WG) {
        let x = vm[c * p.cols + r];
        s.y += x * x;
    }
    red[lid.x] = s;
    workgroupBarrier();
    if lid.x == 0u {
        var t = vec3<f32>(0.0);
        for (var i = 0u; i < WG; i++) {
            t += red[i];
        }
        stats[2u + c] = sqrt(t.x);
        stats[3u + p.cols + c] = sqrt(t.y);
    }
}

// The thin factors, columns in descending order of singular value: uo (m × k) and vto (k × n),
// row-major. Tall: U = W·diag(1/σ), Vt = Vᵀ. Wide: U = V, Vt = (W·diag(1/σ))ᵀ. V's columns are
// renormalised (perm[2k + q]): thousands of f32 rotations drift their norms by up to ~1e-4.
@compute @workgroup_size(WG)
fn svd_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wid, lid);
    let k = p.cols;
    let mm = p.rows;
    let first = select(mm * k, k * k, p.wide == 1u);
    if idx < first {
        let r = idx / k;
        let q = idx % k;
        if p.wide == 1u {
            uo[idx] = vm[perm[q] * k + r] * bitcast<f32>(perm[2u * k + q]);
        } else {
            uo[idx] = w[perm[q] * mm + r] * bitcast<f32>(perm[k + q]);
        }
    } else {
        let i = idx - first;
        if p.wide == 1u {
            if i < k * mm {
                let q = i / mm;
                let c = i % mm;
                vto[i] = w[perm[q] * mm + c] * bitcast<f32>(perm[k + q]);
            }
        } else if i < k * k {
            let q = i / k;
            let c = i % k;
            vto[i] = vm[perm[q] * k + c] * bitcast<f32>(perm[2u * k + q]);
        }
    }
}
