// Layout kernel: one strided copy serves permute/transpose, slicing (negative steps
// included) and each input of a concatenation:
//     out[obase + sum_d c_d * os_d] = x[ibase + sum_d c_d * is_d]
// for every coordinate c of the region `shape` (4 dims, padded with leading 1s). Strides are
// signed (a negative slice step walks backwards). Each thread copies EPT elements,
// consecutive threads consecutive elements; big grids are folded into 2-D. The host proves
// every index in bounds (src/ops/layout.rs), so the module is built without runtime checks.

struct CopyParams {
    n: u32,
    ibase: u32,
    obase: u32,
    _pad: u32,
    shape: vec4<u32>,
    istride: vec4<i32>,
    ostride: vec4<i32>,
}

@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;
override EPT: u32 = 4u;

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
            var r = i;
            let c3 = r % p.shape.w;
            r = r / p.shape.w;
            let c2 = r % p.shape.z;
            r = r / p.shape.z;
            let c1 = r % p.shape.y;
            let c0 = r / p.shape.y;
            let c = vec4<i32>(vec4<u32>(c0, c1, c2, c3));
            let ii = i32(p.ibase) + dot(c, p.istride);
            let oi = i32(p.obase) + dot(c, p.ostride);
            y[u32(oi)] = x[u32(ii)];
        }
    }
}
