// Blocked Householder reflectors on a resident matrix (LAPACK's geqrf / larft / larfb
// structure), shared by the QR, the SVD's reduction to band form and the symmetric
// eigensolver's reduction to band form.
//
// Every kernel sees its matrix through a logical view: element (r, c) of a `rows` × `cols`
// region lies at a[off + r·rs + c·cs]. A row-major region has (rs, cs) = (ld, 1); its transpose
// has (1, ld), so one set of kernels applies reflectors from the left to a matrix or (through
// the transposed view) from the right.
//
// A panel of PB columns is factored in one workgroup (`panel`): the reflectors
// H_i = I − τ_i v_i v_iᵀ (v_i[i] = 1, v_i below the diagonal stored in place, LAPACK's layout)
// give Q = H_0 H_1 … = I − V·T·Vᵀ with T upper triangular (compact WY). `panel` also writes V
// packed (rows × PB, row-major, with its unit diagonal and zeros above it) and T (PB × PB) for
// the block update C ← op(Q)·C = C − V·(op(T)·(Vᵀ·C)), run as three GEMM-shaped kernels:
// `vtc` (partial products Vᵀ·C per chunk of RC rows), `tw` (the chunk sum, times op(T)) and
// `update` (C −= V·W, register-blocked 4 × 4).
//
// lavapipe ends an invocation after 65,535 loop iterations in all: `panel` runs about
// PB·(2·rows/WG + 5·rows/G) of them (G = 4·WG/PB row groups) plus 8·rows·PB/(4·WG) copying,
// which the host keeps below that by its choice of PB (`householder::panel_width`); the other
// kernels' loops are bounded by RC, PB and the row chunks.

override PB: u32 = 32u;

const WG: u32 = 256u;
// The smallest normal f32.
const MIN_NORMAL: f32 = 1.1754944e-38;
// Rows of one `vtc` partial product.
const RC: u32 = 256u;

struct HouseholderParams {
    rows: u32,   // rows of the logical view
    cols: u32,   // columns of the logical view (the panel's width for `panel`)
    off: u32,    // index of element (0, 0) in `a`
    rs: u32,     // stride between rows
    cs: u32,     // stride between columns
    trans: u32,  // 1: apply Qᵀ = I − V·Tᵀ·Vᵀ; 0: apply Q = I − V·T·Vᵀ
    chunks: u32, // row chunks of `vtc` (⌈rows / RC⌉)
    cpad: u32,   // cols rounded up to a multiple of 4 (the row length of W in `work`)
    gx: u32,     // workgroups along x
    flags: u32,  // `extract`: 1 = R with signs, 2 = signed identity
}

@group(0) @binding(0) var<uniform> p: HouseholderParams;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> vpack: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> tmat: array<f32>;
@group(0) @binding(4) var<storage, read_write> work: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> outm: array<f32>;

fn at(r: u32, c: u32) -> u32 {
    return p.off + r * p.rs + c * p.cs;
}

var<workgroup> red: array<vec2<f32>, WG>;
var<workgroup> part: array<vec4<f32>, WG>;
var<workgroup> dots: array<vec4<f32>, 8>;
var<workgroup> tsh: array<f32, 1024>;
var<workgroup> coef: vec3<f32>;

fn sync() {
    storageBarrier();
    workgroupBarrier();
}

// (scale, ssq) pairs: scale·√ssq is the norm, with every square taken of a value ≤ 1.
fn combine(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let m = max(x.x, y.x);
    if m == 0.0 {
        return vec2<f32>(0.0, 0.0);
    }
    let rx = x.x / m;
    let ry = y.x / m;
    return vec2<f32>(m, x.y * rx * rx + y.y * ry * ry);
}

// Factors the rows × cols (cols ≤ PB) panel: copied into `vpack` (rows × PB, row-major, vec4
// rows; columns past cols zero), factored there with vec4 accesses, R and the reflectors
// written back to `a`, and `vpack` turned into V (unit diagonal, zeros above it). τ_i is
// T[i, i]. Thread (g, q) owns columns 4q..4q+3 of the rows r ≡ g (mod WG·4/PB).
@compute @workgroup_size(WG)
fn panel(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let NQ = PB / 4u;
    let G = WG / NQ;
    let q = lid % NQ;
    let g = lid / NQ;
    let nref = min(p.rows, p.cols);
    for (var e = lid; e < p.rows * NQ; e += WG) {
        let r = e / NQ;
        let k0 = (e % NQ) * 4u;
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            if k0 + c < p.cols {
                v[c] = a[at(r, k0 + c)];
            }
        }
        vpack[e] = v;
    }
    for (var e = lid; e < PB * PB; e += WG) {
        tsh[e] = 0.0;
    }
    sync();
    for (var i = 0u; i < nref; i++) {
        let qi = i / 4u;
        let ci = i % 4u;
        // The norm of the column below the diagonal.
        var acc = vec2<f32>(0.0, 0.0);
        for (var r = i + 1u + lid; r < p.rows; r += WG) {
            // Subnormal values count as zero (lavapipe flushes them in arithmetic).
            var x = abs(vpack[r * NQ + qi][ci]);
            if x < MIN_NORMAL {
                x = 0.0;
            }
            if x > acc.x {
                let t = acc.x / x;
                acc = vec2<f32>(x, 1.0 + acc.y * t * t);
            } else if x > 0.0 {
                let t = x / acc.x;
                acc.y += t * t;
            }
        }
        red[lid] = acc;
        workgroupBarrier();
        if lid < 16u {
            var s = red[lid * 16u];
            for (var t = 1u; t < 16u; t++) {
                s = combine(s, red[lid * 16u + t]);
            }
            red[lid * 16u] = s;
        }
        workgroupBarrier();
        if lid == 0u {
            var s = red[0];
            for (var t = 1u; t < 16u; t++) {
                s = combine(s, red[t * 16u]);
            }
            let xnorm = s.x * sqrt(s.y);
            let alpha = vpack[i * NQ + qi][ci];
            var tau = 0.0;
            var beta = alpha;
            var scale = 0.0;
            if xnorm > 0.0 {
                let mx = max(abs(alpha), xnorm);
                let ra = alpha / mx;
                let rx = xnorm / mx;
                // β = −sign(α)·‖(α, x)‖, with sign(0) = +1 (LAPACK's dlarfg).
                beta = select(-1.0, 1.0, alpha < 0.0) * mx * sqrt(ra * ra + rx * rx);
                tau = (beta - alpha) / beta;
                scale = 1.0 / (alpha - beta);
            }
            coef = vec3<f32>(tau, beta, scale);
        }
        workgroupBarrier();
        let cf = coef;
        if cf.x != 0.0 {
            for (var r = i + 1u + lid; r < p.rows; r += WG) {
                // The subnormal values the norm left out stay out of v.
                let x = vpack[r * NQ + qi][ci];
                vpack[r * NQ + qi][ci] = select(x * cf.z, 0.0, abs(x) < MIN_NORMAL);
            }
        }
        sync();
        // d_j = v_iᵀ·(column j from row i), four columns a thread: for j > i the columns to
        // update, for j < i the earlier reflectors v_j (T's column i needs them).
        var d = vec4<f32>(0.0);
        if g == 0u {
            d = vpack[i * NQ + q];
        }
        for (var r = i + 1u + g; r < p.rows; r += G) {
            d += vpack[r * NQ + q] * vpack[r * NQ + qi][ci];
        }
        part[lid] = d;
        workgroupBarrier();
        if lid < NQ {
            var s = vec4<f32>(0.0);
            for (var t = 0u; t < G; t++) {
                s += part[t * NQ + lid];
            }
            dots[lid] = s;
        }
        workgroupBarrier();
        if cf.x != 0.0 && q >= qi {
            // τ·d_j for the columns j > i of this thread's quad, 0 for the others.
            let k0 = q * 4u;
            let kk = vec4<u32>(k0, k0 + 1u, k0 + 2u, k0 + 3u);
            let f = select(vec4<f32>(0.0), cf.x * dots[q], kk > vec4<u32>(i));
            for (var r = i + g; r < p.rows; r += G) {
                var v = 1.0;
                if r > i {
                    v = vpack[r * NQ + qi][ci];
                }
                if q > qi {
                    vpack[r * NQ + q] -= v * f;
                } else {
                    // Column i's quad: only its components past i (column i is read above).
                    for (var c = ci + 1u; c < 4u; c++) {
                        vpack[r * NQ + q][c] -= v * f[c];
                    }
                }
            }
        }
        // T[0:i, i] = −τ_i · T[0:i, 0:i] · (V[:, 0:i]ᵀ v_i); T[i, i] = τ_i.
        if lid < i {
            var s = 0.0;
            for (var l = lid; l < i; l++) {
                s += tsh[lid * PB + l] * dots[l / 4u][l % 4u];
            }
            tsh[lid * PB + i] = -cf.x * s;
        }
        if lid == 0u {
            tsh[i * PB + i] = cf.x;
        }
        sync();
        if lid == 0u {
            vpack[i * NQ + qi][ci] = cf.y;
        }
        sync();
    }
    for (var e = lid; e < PB * PB; e += WG) {
        tmat[e] = tsh[e];
    }
    for (var e = lid; e < p.rows * NQ; e += WG) {
        let r = e / NQ;
        let k0 = (e % NQ) * 4u;
        let x = vpack[e];
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let k = k0 + c;
            if k < p.cols {
                a[at(r, k)] = x[c];
            }
            if k < nref {
                if r == k {
                    v[c] = 1.0;
                } else if r > k {
                    v[c] = x[c];
                }
            }
        }
        vpack[e] = v;
    }
}

// work[(chunk·PB + k)·cpad + c] = Σ over the chunk's rows r of V[r, k]·C[r, c]: one
// invocation per 4 columns, chunk and group of 8 values of k, a 4 × 8 register block (on
// lavapipe a load costs the same whatever its width: each row's 4 + 2 loads feed 32 FMAs).
@compute @workgroup_size(64)
fn vtc(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let ch = gid.y;
    let q0 = gid.z * 2u;
    if c0 >= p.cols {
        return;
    }
    // Columns past the end read the last column again and are not written.
    let last = p.cols - 1u;
    let c1 = min(c0 + 1u, last);
    let c2 = min(c0 + 2u, last);
    let c3 = min(c0 + 3u, last);
    var lo: array<vec4<f32>, 4>;
    var hi: array<vec4<f32>, 4>;
    for (var t = 0u; t < 4u; t++) {
        lo[t] = vec4<f32>(0.0);
        hi[t] = vec4<f32>(0.0);
    }
    let r0 = ch * RC;
    let r1 = min(p.rows, r0 + RC);
    let nq = PB / 4u;
    for (var r = r0; r < r1; r++) {
        let x = vec4<f32>(a[at(r, c0)], a[at(r, c1)], a[at(r, c2)], a[at(r, c3)]);
        let vb = r * nq + q0;
        let v0 = vpack[vb];
        let v1 = vpack[vb + 1u];
        lo[0] += v0 * x.x;
        lo[1] += v0 * x.y;
        lo[2] += v0 * x.z;
        lo[3] += v0 * x.w;
        hi[0] += v1 * x.x;
        hi[1] += v1 * x.y;
        hi[2] += v1 * x.z;
        hi[3] += v1 * x.w;
    }
    // Row k of the partial, columns c0..c0+3 (cpad is a multiple of 4; the padding columns
    // hold copies, which `tw` ignores).
    let k0 = ch * PB + 4u * q0;
    let w = c0 / 4u;
    let rq = p.cpad / 4u;
    work[k0 * rq + w] = vec4<f32>(lo[0].x, lo[1].x, lo[2].x, lo[3].x);
    work[(k0 + 1u) * rq + w] = vec4<f32>(lo[0].y, lo[1].y, lo[2].y, lo[3].y);
    work[(k0 + 2u) * rq + w] = vec4<f32>(lo[0].z, lo[1].z, lo[2].z, lo[3].z);
    work[(k0 + 3u) * rq + w] = vec4<f32>(lo[0].w, lo[1].w, lo[2].w, lo[3].w);
    work[(k0 + 4u) * rq + w] = vec4<f32>(hi[0].x, hi[1].x, hi[2].x, hi[3].x);
    work[(k0 + 5u) * rq + w] = vec4<f32>(hi[0].y, hi[1].y, hi[2].y, hi[3].y);
    work[(k0 + 6u) * rq + w] = vec4<f32>(hi[0].z, hi[1].z, hi[2].z, hi[3].z);
    work[(k0 + 7u) * rq + w] = vec4<f32>(hi[0].w, hi[1].w, hi[2].w, hi[3].w);
}

// W[k, c] (after the partials, at chunks·PB·cpad) = Σ_l op(T)[k, l]·Σ_chunks partial[l, c];
// zero for the padding columns.
@compute @workgroup_size(64)
fn tw(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.cpad {
        return;
    }
    var y: array<f32, 32>;
    for (var l = 0u; l < PB; l++) {
        var s = 0.0;
        if c < p.cols {
            for (var ch = 0u; ch < p.chunks; ch++) {
                let e = (ch * PB + l) * p.cpad + c;
                s += work[e / 4u][e % 4u];
            }
        }
        y[l] = s;
    }
    let wb = p.chunks * PB * p.cpad;
    for (var k = 0u; k < PB; k++) {
        var s = 0.0;
        if p.trans == 1u {
            // Tᵀ[k, l] = T[l, k], nonzero for l ≤ k.
            for (var l = 0u; l <= k; l++) {
                s += tmat[l * PB + k] * y[l];
            }
        } else {
            for (var l = k; l < PB; l++) {
                s += tmat[k * PB + l] * y[l];
            }
        }
        let e = wb + k * p.cpad + c;
        work[e / 4u][e % 4u] = s;
    }
}

// C[r, c] −= Σ_k V[r, k]·W[k, c]: 4 rows × 4 columns per invocation.
@compute @workgroup_size(64)
fn update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if c0 >= p.cols || r0 >= p.rows {
        return;
    }
    let wb = p.chunks * PB * p.cpad;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let rlast = p.rows - 1u;
    for (var k = 0u; k < PB; k += 4u) {
        // W's rows k..k+3 at columns c0..c0+3 (wb, cpad and c0 are multiples of 4).
        let rq = p.cpad / 4u;
        let w0 = (wb + k * p.cpad + c0) / 4u;
        let x0 = work[w0];
        let x1 = work[w0 + rq];
        let x2 = work[w0 + 2u * rq];
        let x3 = work[w0 + 3u * rq];
        for (var i = 0u; i < 4u; i++) {
            // Rows past the end read the last row and are not written.
            let v = vpack[min(r0 + i, rlast) * (PB / 4u) + k / 4u];
            acc[i] += v.x * x0 + v.y * x1 + v.z * x2 + v.w * x3;
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + i;
        if r < p.rows {
            let v = acc[i];
            a[at(r, c0)] -= v.x;
            if c0 + 1u < p.cols {
                a[at(r, c0 + 1u)] -= v.y;
            }
            if c0 + 2u < p.cols {
                a[at(r, c0 + 2u)] -= v.z;
            }
            if c0 + 3u < p.cols {
                a[at(r, c0 + 3u)] -= v.w;
            }
        }
    }
}

// The QR's read-outs from the factored matrix (its logical view, rows × cols):
// flags 1: outm (rows × cols) = the upper triangle of rows 0..rows, row r scaled by the sign
// of its diagonal (R with a non-negative diagonal); flags 2: outm (rows × cols) = the first
// cols columns of the identity, column c scaled by the sign of a's diagonal element (c, c)
// (the start of Q's accumulation).
@compute @workgroup_size(64)
fn extract(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * p.gx * 64u + gid.x;
    if idx >= p.rows * p.cols {
        return;
    }
    let r = idx / p.cols;
    let c = idx % p.cols;
    var v = 0.0;
    if p.flags == 1u {
        if c >= r {
            v = a[at(r, c)];
            if a[at(r, r)] < 0.0 {
                v = -v;
            }
        }
    } else if r == c {
        v = 1.0;
        if a[at(c, c)] < 0.0 {
            v = -1.0;
        }
    }
    outm[idx] = v;
}
