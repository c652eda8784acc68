// Layout kernel: one strided copy serves permute/transpose, slicing (negative steps
// included) and each input of a concatenation:
//     out[obase + sum_d c_d * os_d] = x[ibase + sum_d c_d * is_d]
// for every coordinate c of the region `shape` (4 dims, padded with leading 1s). Strides are
// signed (a negative slice step walks backwards). Each thread copies EPT elements,
// consecutive threads consecutive elements; big grids are folded into 2-D. A copy whose input
// or output spans more than one storage binding is split by the host into tiles of the region:
// each dispatch binds aligned windows of x and y covering the lowest to the highest element of
// its tile, and ibase / obase are the tile's first elements inside those windows. The host
// proves every index in bounds (src/ops/layout.rs: ibase + sum c_d * is_d lies in the bound
// window for every c in the tile), so the module is built without runtime checks.

struct CopyParams {
    n: u32,
    ibase: u32,
    obase: u32,
    _pad: u32,
    shape: vec4<u32>,
    istride: vec4<i32>,
    ostride: vec4<i32>,
    inv: vec4<f32>, // 1 / shape, for divmod
}

@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;
override EPT: u32 = 4u;
// Dims left after the host merged contiguous ones (the rightmost NDIM of `shape`).
override NDIM: u32 = 4u;

// `divmod` comes from shaders/divmod.wgsl, prepended by the host.

// (input, output) offsets of region element i, relative to the bases.
fn offsets(i: u32) -> vec2<i32> {
    if NDIM <= 1u {
        return vec2<i32>(i32(i) * p.istride.w, i32(i) * p.ostride.w);
    }
    let q3 = divmod(i, p.shape.w, p.inv.w);
    var o = vec2<i32>(i32(q3.y) * p.istride.w, i32(q3.y) * p.ostride.w);
    if NDIM == 2u {
        return o + vec2<i32>(i32(q3.x) * p.istride.z, i32(q3.x) * p.ostride.z);
    }
    let q2 = divmod(q3.x, p.shape.z, p.inv.z);
    o += vec2<i32>(i32(q2.y) * p.istride.z, i32(q2.y) * p.ostride.z);
    if NDIM == 3u {
        return o + vec2<i32>(i32(q2.x) * p.istride.y, i32(q2.x) * p.ostride.y);
    }
    let q1 = divmod(q2.x, p.shape.y, p.inv.y);
    return o + vec2<i32>(
        i32(q1.y) * p.istride.y + i32(q1.x) * p.istride.x,
        i32(q1.y) * p.ostride.y + i32(q1.x) * p.ostride.x,
    );
}

@compute @workgroup_size(WG, 1, 1)
fn strided_copy(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let base = (wid.y * nwg.x + wid.x) * WG * EPT + lid.x;
    for (var j = 0u; j < EPT; j++) {
        let i = base + j * WG;
        if i < p.n {
            let o = offsets(i);
            let ii = i32(p.ibase) + o.x;
            let oi = i32(p.obase) + o.y;
            y[u32(oi)] = x[u32(ii)];
        }
    }
}
