// Cooperative-matrix GEMM: C = act(op(A) · op(B) + bias), A and B float16 read through the
// plan's strides (so transposed and batched operands need no copy), accumulated in float32 by
// the adapter's matrix units (Vulkan KHR cooperative matrix, Metal simdgroup matrices), C
// float32 (batches × m × n, row-major). The host prepends `enable f16; enable
// wgpu_cooperative_matrix;` and shaders/epilogue.wgsl, takes the common section and one
// section for each operand (scalar loads, or eight halves per load where the operand's rows
// are contiguous and 16-byte aligned), and appends the entry point generated for one
// configuration by src/matmul/coop.rs, which declares the workgroup arrays `sa` (a block's
// rows × the k-step, row-major), `sb` (the k-step × the block's columns) and `sc` (one scratch
// fragment per subgroup) used below. Sections start with a `// ==== name` line.
//
// ==== common
//
// WG invocations per workgroup: four subgroups of WG/4.
override WG: u32 = 128u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Inner batch dimension (batch z is (z / batch1, z % batch1)).
    batch1: u32,
    // Element (i, k) of op(A) in batch z is a[a0(z) + i*a_rs + k*a_cs]; likewise B.
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    a_bs0: u32,
    a_bs1: u32,
    b_bs0: u32,
    b_bs1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// The eight halves `lo`, `hi` to sa or sb at `o` (`to_a` picks which).
fn put8(to_a: bool, o: u32, lo: vec4<f16>, hi: vec4<f16>) {
    for (var q = 0u; q < 4u; q++) {
        if to_a {
            sa[o + q] = lo[q];
            sa[o + 4u + q] = hi[q];
        } else {
            sb[o + q] = lo[q];
            sb[o + 4u + q] = hi[q];
        }
    }
}

// The f×f fragment stored at sc[scratch …] (row-major) to C at rows r0…, columns c0… of batch
// z, through the epilogue, by the subgroup's invocations (lane = its invocation id).
fn write_fragment(lane: u32, z: u32, scratch: u32, r0: u32, c0: u32, f: u32) {
    for (var e = lane; e < f * f; e += WG / 4u) {
        let i = r0 + e / f;
        let j = c0 + e % f;
        if i < p.m && j < p.n {
            c[(z * p.m + i) * p.n + j] = epilogue(sc[scratch + e], j);
        }
    }
}

// ==== a: scalar
@group(0) @binding(1) var<storage, read> a: array<f16>;

// Rows row0 … row0+bm-1, k0 … k0+bk-1 of op(A) into sa (zero past the matrix), invocations
// walking A's contiguous dimension: k when a_cs = 1, else the rows.
fn stage_a(l: u32, base: u32, row0: u32, k0: u32, bm: u32, bk: u32) {
    let k_fast = p.a_cs == 1u;
    for (var e = l; e < bm * bk; e += WG) {
        let r = select(e % bm, e / bk, k_fast);
        let kk = select(e / bm, e % bk, k_fast);
        let gi = row0 + r;
        let gk = k0 + kk;
        var x = f16(0.0);
        if gi < p.m && gk < p.k {
            x = a[base + gi * p.a_rs + gk * p.a_cs];
        }
        sa[r * bk + kk] = x;
    }
}

// ==== a: vector
// A's rows contiguous (a_cs = 1), k, a_rs and the batch strides multiples of 8: eight halves
// per two loads.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f16>>;

fn stage_a(l: u32, base: u32, row0: u32, k0: u32, bm: u32, bk: u32) {
    let groups = bk / 8u;
    for (var e = l; e < bm * groups; e += WG) {
        let r = e / groups;
        let g = e % groups;
        let gi = row0 + r;
        let gk = k0 + 8u * g;
        var lo = vec4<f16>(0.0);
        var hi = vec4<f16>(0.0);
        if gi < p.m && gk < p.k {
            let at = (base + gi * p.a_rs + gk) / 4u;
            lo = a4[at];
            hi = a4[at + 1u];
        }
        put8(true, r * bk + 8u * g, lo, hi);
    }
}

// ==== b: scalar
@group(0) @binding(2) var<storage, read> b: array<f16>;

// Rows k0 … k0+bk-1, columns col0 … col0+bn-1 of op(B) into sb (zero past the matrix),
// invocations walking B's contiguous dimension: the columns when b_cs = 1, else k.
fn stage_b(l: u32, base: u32, col0: u32, k0: u32, bn: u32, bk: u32) {
    let n_fast = p.b_cs == 1u;
    for (var e = l; e < bk * bn; e += WG) {
        let kk = select(e % bk, e / bn, n_fast);
        let j = select(e / bk, e % bn, n_fast);
        let gk = k0 + kk;
        let gj = col0 + j;
        var y = f16(0.0);
        if gk < p.k && gj < p.n {
            y = b[base + gk * p.b_rs + gj * p.b_cs];
        }
        sb[kk * bn + j] = y;
    }
}

// ==== b: vector
// B's rows contiguous (b_cs = 1), n, b_rs and the batch strides multiples of 8: eight halves
// per two loads.
@group(0) @binding(2) var<storage, read> b4: array<vec4<f16>>;

fn stage_b(l: u32, base: u32, col0: u32, k0: u32, bn: u32, bk: u32) {
    let groups = bn / 8u;
    for (var e = l; e < bk * groups; e += WG) {
        let kk = e / groups;
        let g = e % groups;
        let gk = k0 + kk;
        let gj = col0 + 8u * g;
        var lo = vec4<f16>(0.0);
        var hi = vec4<f16>(0.0);
        if gk < p.k && gj < p.n {
            let at = (base + gk * p.b_rs + gj) / 4u;
            lo = b4[at];
            hi = b4[at + 1u];
        }
        put8(false, kk * bn + 8u * g, lo, hi);
    }
}
