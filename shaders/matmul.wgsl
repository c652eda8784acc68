// Matmul kernels: C[z] = act(op(A)[z] · op(B)[z] + bias), numpy.matmul semantics.
//
// op(A)(i, k) = a[a_base(z) + i * a_rs + k * a_cs] (strides encode the transpose);
// op(B)(k, j) likewise with b_rs / b_cs. Batch index z = z0 * batch1 + z1 over (up to) two
// broadcast batch dims; a broadcast dim has batch stride 0.
//
// The host proves every index in bounds (see src/ops/matmul.rs), so this module is built
// without runtime bounds checks.
//
// Kernels:
//   naive       one thread per output element (baseline for benchmarks)
//   tiled       workgroup-memory tiled, 16x16 threads, TM x TN outputs per thread (real GPUs)
//   vec4        register-blocked: RM rows x RN4 vec4 columns per thread, no workgroup memory
//               (CPU-type adapters such as lavapipe); B must be packed to n4 vec4 per row
//   blocked     register-blocked 128 x 128 (or 128 x 64, 64 x 64) tiles, 8 x 8 (8 x 4, 4 x 4) per
//               thread, double-buffered workgroup tiles (discrete GPUs)
//   pack_b      writes op(B) as K x (n4 * 4) rows, zero padded, for the vec4 kernel

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch1: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    a_b0: u32,
    a_b1: u32,
    b_b0: u32,
    b_b1: u32,
    // vec4 kernel: row length of packed B in vec4s; pack_b: padded row length in floats.
    n4: u32,
    // First output row handled by this dispatch (large M is split across dispatches).
    row_off: u32,
    // pack_b: threads per step of workgroup_id.y in the folded 1-D index.
    fold: u32,
    // Element offsets of A and C inside their bound windows (large operands are bound a chunk
    // of rows at a time, from an aligned byte offset).
    a_off: u32,
    c_off: u32,
    // Structure hints, which the result never depends on (an all-zero Params reads none):
    // b_upper = 1 when op(B) is upper triangular (B(k, j) = 0 for k > j), so the k loop may
    // stop at the last column a thread computes; c_upper = 1 when only C(i, j) with i <= j are
    // wanted, so threads whose outputs all lie below the diagonal may write nothing.
    b_upper: u32,
    c_upper: u32,
    // blocked kernel: 1 when A's (B's) vec4 loads along its contiguous dimension are 16-byte
    // aligned (its offset and every other stride a multiple of 4 elements).
    a_vec4: u32,
    b_vec4: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> bv: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> packed: array<f32>;

// The epilogue (bias + activation) comes from shaders/epilogue.wgsl, prepended by the host;
// it reads `bias`, declared above.

fn a_base(z: u32) -> u32 {
    return p.a_off + (z / p.batch1) * p.a_b0 + (z % p.batch1) * p.a_b1;
}

fn b_base(z: u32) -> u32 {
    return (z / p.batch1) * p.b_b0 + (z % p.batch1) * p.b_b1;
}

// The end of the k loop of a thread whose last output column is `last_col` (see b_upper).
fn k_end(last_col: u32) -> u32 {
    return select(p.k, min(p.k, last_col + 1u), p.b_upper == 1u);
}

// The (row block, column group) a vec4 workgroup computes: its own, except where only the
// upper triangle is wanted (c_upper), whose workgroups near the top rows and right columns hold
// the most work. There the workgroups, counted row block fastest, are taken light and heavy in
// turn (0, n−1, 1, n−2, …), so that any contiguous run of workgroups an adapter gives one
// core (lavapipe splits the grid so) holds an even share of the triangle.
fn vec4_tile(wid: vec3<u32>, groups: vec3<u32>) -> vec2<u32> {
    if p.c_upper == 0u {
        return wid.xy;
    }
    let count = groups.x * groups.y;
    let w = wid.y * groups.x + wid.x;
    let t = select(count - 1u - w / 2u, w / 2u, w % 2u == 0u);
    return vec2<u32>(t % groups.x, t / groups.x);
}

// Whether a thread whose outputs start at row `first_row` and end at column `last_col` lies
// wholly below the diagonal while only the upper triangle is wanted (see c_upper).
fn below_diagonal(first_row: u32, last_col: u32) -> bool {
    return p.c_upper == 1u && first_row > last_col;
}

// ---------------------------------------------------------------- naive
@compute @workgroup_size(8, 8, 1)
fn naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y + p.row_off;
    let z = gid.z;
    if i >= p.m || j >= p.n || below_diagonal(i, j) {
        return;
    }
    let ao = a_base(z) + i * p.a_rs;
    let bo = b_base(z) + j * p.b_cs;
    var s = 0.0;
    for (var kk = 0u; kk < k_end(j); kk++) {
        s = fma(a[ao + kk * p.a_cs], b[bo + kk * p.b_rs], s);
    }
    c[p.c_off + (z * p.m + i) * p.n + j] = epilogue(s, j);
}

// ---------------------------------------------------------------- tiled (workgroup memory)
const TBK: u32 = 16u;
const TMAX: u32 = 64u;
// Thread micro-tile (at most 4 x 4): the workgroup covers (16 TM) x (16 TN) outputs.
override TM: u32 = 4u;
override TN: u32 = 4u;
var<workgroup> tile_a: array<f32, 1024>; // [TBK][TMAX]
var<workgroup> tile_b: array<f32, 1024>; // [TBK][TMAX]

@compute @workgroup_size(16, 16, 1)
fn tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let bm = 16u * TM;
    let bn = 16u * TN;
    let row0 = wid.y * bm + p.row_off;
    let col0 = wid.x * bn;
    let z = wid.z;
    let tid = lid.y * 16u + lid.x;
    let ao = a_base(z);
    let bo = b_base(z);
    // Both are uniform over the workgroup: it returns as a whole, before any barrier.
    if below_diagonal(row0, col0 + bn - 1u) {
        return;
    }
    let kend = k_end(col0 + bn - 1u);
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < kend; k0 += TBK) {
        for (var e = tid; e < bm * TBK; e += 256u) {
            let r = e / TBK;
            let kk = e % TBK;
            let gi = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if gi < p.m && gk < p.k {
                v = a[ao + gi * p.a_rs + gk * p.a_cs];
            }
            tile_a[kk * TMAX + r] = v;
        }
        for (var e = tid; e < bn * TBK; e += 256u) {
            let kk = e / bn;
            let cc = e % bn;
            let gj = col0 + cc;
            let gk = k0 + kk;
            var v = 0.0;
            if gj < p.n && gk < p.k {
                v = b[bo + gk * p.b_rs + gj * p.b_cs];
            }
            tile_b[kk * TMAX + cc] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TBK; kk++) {
            var av: array<f32, 4>;
            var bw: array<f32, 4>;
            for (var r = 0u; r < TM; r++) {
                av[r] = tile_a[kk * TMAX + r * 16u + lid.y];
            }
            for (var q = 0u; q < TN; q++) {
                bw[q] = tile_b[kk * TMAX + q * 16u + lid.x];
            }
            for (var r = 0u; r < TM; r++) {
                for (var q = 0u; q < TN; q++) {
                    acc[r * 4u + q] = fma(av[r], bw[q], acc[r * 4u + q]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < TM; r++) {
        let i = row0 + r * 16u + lid.y;
        if i < p.m {
            for (var q = 0u; q < TN; q++) {
                let j = col0 + q * 16u + lid.x;
                if j < p.n {
                    c[p.c_off + (z * p.m + i) * p.n + j] = epilogue(acc[r * 4u + q], j);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- vec4 (register-blocked)
// Each thread: RM rows (at most 8) x RN4 vec4 columns (at most 4).
override RM: u32 = 4u;
override RN4: u32 = 2u;
override WG: u32 = 64u;

// Workgroups walk down the rows first (workgroup_id.x = row block, .y = column group), so
// consecutive workgroups reuse the same K x (WG * RN4) slice of B from cache.
@compute @workgroup_size(WG, 1, 1)
fn vec4_kernel(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tile = vec4_tile(wid, groups);
    let cb = (tile.y * WG + lid.x) * RN4;
    let z = wid.z;
    if cb >= p.n4 {
        return;
    }
    let row0 = tile.x * RM + p.row_off;
    let last_col = (cb + RN4) * 4u - 1u;
    if below_diagonal(row0, last_col) {
        return;
    }
    let ao = a_base(z);
    let bo = b_base(z) + cb;
    var arow: array<u32, 8>;
    for (var r = 0u; r < RM; r++) {
        // Rows past the end read the last row; their results are never stored.
        arow[r] = ao + min(row0 + r, p.m - 1u) * p.a_rs;
    }
    var acc: array<vec4<f32>, 32>;
    for (var kk = 0u; kk < k_end(last_col); kk++) {
        let brow = bo + kk * p.n4;
        var bw: array<vec4<f32>, 4>;
        for (var q = 0u; q < RN4; q++) {
            bw[q] = bv[brow + q];
        }
        let koff = kk * p.a_cs;
        for (var r = 0u; r < RM; r++) {
            let av = vec4<f32>(a[arow[r] + koff]);
            for (var q = 0u; q < RN4; q++) {
                acc[r * 4u + q] = fma(av, bw[q], acc[r * 4u + q]);
            }
        }
    }
    for (var r = 0u; r < RM; r++) {
        let i = row0 + r;
        if i < p.m {
            let crow = p.c_off + (z * p.m + i) * p.n;
            for (var q = 0u; q < RN4; q++) {
                let v = acc[r * 4u + q];
                let j = (cb + q) * 4u;
                for (var e = 0u; e < 4u; e++) {
                    if j + e < p.n {
                        c[crow + j + e] = epilogue(v[e], j + e);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- blocked (discrete GPUs)
// 256 threads as 16 x 16; each computes a BTM x BTN micro-tile (contiguous rows and columns,
// at most 8 x 8) of a (16 BTM) x (16 BTN) block, k in tiles of BK. Both operand tiles are
// staged in workgroup memory k-major (A transposed), each row padded by one vec4 so that
// neither the transposing scalar stores (consecutive threads, consecutive rows) nor the vec4
// reads of the micro-tiles conflict; the next k-tile is loaded into registers while the
// current one is computed, then stored into the other half of the double buffer: one barrier
// per k-tile. Loaders read each operand along its contiguous dimension (a_cs = 1: along k;
// a_rs = 1, a transposed A: along m; likewise B), as vec4 loads where the host found the
// operand 16-byte aligned (a_vec4 / b_vec4), else four scalar loads.
override BTM: u32 = 8u;
override BTN: u32 = 8u;
override BK: u32 = 8u;
// Padded row lengths of the staged tiles, in vec4.
override SA_ROW: u32 = 4u * BTM + 1u;
override SB_ROW: u32 = 4u * BTN + 1u;
override SA_LEN: u32 = 2u * BK * SA_ROW;
override SB_LEN: u32 = 2u * BK * SB_ROW;
var<workgroup> sa: array<vec4<f32>, SA_LEN>;
var<workgroup> sb: array<vec4<f32>, SB_LEN>;
@group(0) @binding(7) var<storage, read> av: array<vec4<f32>>;

// Four consecutive elements of A along its contiguous dimension from flat index `o` (stride
// `st` between them), `nv` of them in range (the rest read as zero).
fn blocked_a4(o: u32, st: u32, nv: u32) -> vec4<f32> {
    if nv >= 4u && p.a_vec4 == 1u {
        return av[o / 4u];
    }
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if c < nv {
            v[c] = a[o + c * st];
        }
    }
    return v;
}

// As blocked_a4, for B.
fn blocked_b4(o: u32, st: u32, nv: u32) -> vec4<f32> {
    if nv >= 4u && p.b_vec4 == 1u {
        return bv[o / 4u];
    }
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if c < nv {
            v[c] = b[o + c * st];
        }
    }
    return v;
}

// Elements of the k-tile at k0 this thread loads: A's and B's, as vec4 in registers.
struct BlockedTile {
    a: array<vec4<f32>, 4>,
    b: array<vec4<f32>, 4>,
}

// Loads the k-tile at k0 into registers (the e-th vec4 of each operand this thread serves).
fn blocked_load(tid: u32, row0: u32, col0: u32, k0: u32, ao: u32, bo: u32) -> BlockedTile {
    let bm = 16u * BTM;
    let bn = 16u * BTN;
    var t: BlockedTile;
    var slot = 0u;
    for (var e = tid; e < bm * BK / 4u; e += 256u) {
        if p.a_rs == 1u && p.a_cs != 1u {
            // Transposed A: 4 consecutive rows at one k.
            let r4 = e % (bm / 4u);
            let kk = e / (bm / 4u);
            let gi = row0 + 4u * r4;
            let gk = k0 + kk;
            var nv = 0u;
            if gk < p.k && gi < p.m {
                nv = min(4u, p.m - gi);
            }
            t.a[slot] = blocked_a4(ao + gi + gk * p.a_cs, 1u, nv);
        } else {
            // Along k (consecutive threads take consecutive rows).
            let r = e % bm;
            let q = e / bm;
            let gi = row0 + r;
            let gk = k0 + 4u * q;
            var nv = 0u;
            if gi < p.m && gk < p.k {
                nv = min(4u, p.k - gk);
            }
            t.a[slot] = blocked_a4(ao + gi * p.a_rs + gk * p.a_cs, p.a_cs, nv);
        }
        slot++;
    }
    slot = 0u;
    for (var e = tid; e < bn * BK / 4u; e += 256u) {
        if p.b_rs == 1u && p.b_cs != 1u {
            // Transposed B: 4 consecutive k at one column (consecutive threads, columns).
            let c = e % bn;
            let q = e / bn;
            let gj = col0 + c;
            let gk = k0 + 4u * q;
            var nv = 0u;
            if gj < p.n && gk < p.k {
                nv = min(4u, p.k - gk);
            }
            t.b[slot] = blocked_b4(bo + gj * p.b_cs + gk, 1u, nv);
        } else {
            // Along n: 4 consecutive columns at one k.
            let c4 = e % (bn / 4u);
            let kk = e / (bn / 4u);
            let gj = col0 + 4u * c4;
            let gk = k0 + kk;
            var nv = 0u;
            if gk < p.k && gj < p.n {
                nv = min(4u, p.n - gj);
            }
            t.b[slot] = blocked_b4(bo + gk * p.b_rs + gj * p.b_cs, p.b_cs, nv);
        }
        slot++;
    }
    return t;
}

// Stores a loaded k-tile into half `buf` of the staged tiles (k-major, A transposed).
fn blocked_store(tid: u32, buf: u32, t: BlockedTile) {
    let bm = 16u * BTM;
    let bn = 16u * BTN;
    let sa0 = buf * BK * SA_ROW;
    let sb0 = buf * BK * SB_ROW;
    var slot = 0u;
    for (var e = tid; e < bm * BK / 4u; e += 256u) {
        if p.a_rs == 1u && p.a_cs != 1u {
            let r4 = e % (bm / 4u);
            let kk = e / (bm / 4u);
            sa[sa0 + kk * SA_ROW + r4] = t.a[slot];
        } else {
            let r = e % bm;
            let q = e / bm;
            for (var c = 0u; c < 4u; c++) {
                sa[sa0 + (4u * q + c) * SA_ROW + r / 4u][r % 4u] = t.a[slot][c];
            }
        }
        slot++;
    }
    slot = 0u;
    for (var e = tid; e < bn * BK / 4u; e += 256u) {
        if p.b_rs == 1u && p.b_cs != 1u {
            let c = e % bn;
            let q = e / bn;
            for (var i = 0u; i < 4u; i++) {
                sb[sb0 + (4u * q + i) * SB_ROW + c / 4u][c % 4u] = t.b[slot][i];
            }
        } else {
            let c4 = e % (bn / 4u);
            let kk = e / (bn / 4u);
            sb[sb0 + kk * SB_ROW + c4] = t.b[slot];
        }
        slot++;
    }
}

@compute @workgroup_size(256, 1, 1)
fn blocked(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let bm = 16u * BTM;
    let bn = 16u * BTN;
    let tid = lid.x;
    let tx = tid % 16u;
    let ty = tid / 16u;
    let row0 = wid.y * bm + p.row_off;
    let col0 = wid.x * bn;
    let z = wid.z;
    // Uniform over the workgroup: it returns as a whole, before any barrier.
    if below_diagonal(row0, col0 + bn - 1u) {
        return;
    }
    let ao = a_base(z);
    let bo = b_base(z);
    let tiles = (k_end(col0 + bn - 1u) + BK - 1u) / BK;
    var acc: array<vec4<f32>, 16>;
    if tiles > 0u {
        blocked_store(tid, 0u, blocked_load(tid, row0, col0, 0u, ao, bo));
    }
    workgroupBarrier();
    for (var t = 0u; t < tiles; t++) {
        let buf = t % 2u;
        var next: BlockedTile;
        let more = t + 1u < tiles;
        if more {
            next = blocked_load(tid, row0, col0, (t + 1u) * BK, ao, bo);
        }
        let sa0 = buf * BK * SA_ROW + ty * (BTM / 4u);
        let sb0 = buf * BK * SB_ROW + tx * (BTN / 4u);
        for (var kk = 0u; kk < BK; kk++) {
            var af: array<vec4<f32>, 2>;
            var bf: array<vec4<f32>, 2>;
            for (var i = 0u; i < BTM / 4u; i++) {
                af[i] = sa[sa0 + kk * SA_ROW + i];
            }
            for (var j = 0u; j < BTN / 4u; j++) {
                bf[j] = sb[sb0 + kk * SB_ROW + j];
            }
            for (var r = 0u; r < BTM; r++) {
                let x = vec4<f32>(af[r / 4u][r % 4u]);
                for (var j = 0u; j < BTN / 4u; j++) {
                    acc[r * 2u + j] = fma(x, bf[j], acc[r * 2u + j]);
                }
            }
        }
        if more {
            blocked_store(tid, 1u - buf, next);
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < BTM; r++) {
        let i = row0 + ty * BTM + r;
        if i < p.m {
            let crow = p.c_off + (z * p.m + i) * p.n;
            for (var j = 0u; j < BTN / 4u; j++) {
                let v = acc[r * 2u + j];
                let gj = col0 + tx * BTN + 4u * j;
                for (var e = 0u; e < 4u; e++) {
                    if gj + e < p.n {
                        c[crow + gj + e] = epilogue(v[e], gj + e);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- pack_b
// packed[zb][k][j] = op(B)(k, j) for j < n, 0 for n <= j < n4 (n4 = padded row length in
// floats here). One thread per packed element of one matrix, the 1-D index folded over x and
// y (fold = threads per y step); z indexes B's own matrices (b_b1 = K*N apart).
@compute @workgroup_size(64, 1, 1)
fn pack_b(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x + gid.y * p.fold;
    let kk = e / p.n4;
    let j = e % p.n4;
    let zb = gid.z;
    if kk >= p.k {
        return;
    }
    var v = 0.0;
    if j < p.n {
        v = b[zb * p.b_b1 + kk * p.b_rs + j * p.b_cs];
    }
    packed[(zb * p.k + kk) * p.n4 + j] = v;
}
