// Cooperative-matrix GEMM: C = act(A · B + bias), A (m×k) and B (k×n) float16 row-major,
// accumulated in float32 by the adapter's matrix units (Vulkan KHR cooperative matrix, Metal
// simdgroup matrices), C float32. The host prepends `enable f16; enable
// wgpu_cooperative_matrix;` and shaders/epilogue.wgsl, and runs this only where the adapter
// offers EXPERIMENTAL_COOPERATIVE_MATRIX and SHADER_F16 with a 16×16×16 f16 × f16 → f32
// configuration, and a fixed subgroup size SG.
//
// One workgroup is one subgroup of SG invocations and computes a 32×32 block of C as 2×2
// fragments of 16×16: per k-step of 16 the 32×16 slice of A and the 16×32 slice of B are
// staged in workgroup memory (zero past the matrix edges, so any m, n, k work), loaded as
// fragments, multiplied and accumulated. The accumulators are then stored to workgroup memory
// and the epilogue (bias, activation) applied element by element as they are written out.

override SG: u32 = 32u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> sa: array<f16, 512>; // 32 rows × 16 k, row-major
var<workgroup> sb: array<f16, 512>; // 16 k × 32 columns, row-major
var<workgroup> sc: array<f32, 1024>; // the 32×32 block, row-major

@compute @workgroup_size(SG)
fn coop(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * 32u;
    let col0 = wid.x * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var e = l; e < 512u; e += SG) {
            let gi = row0 + e / 16u;
            let ga = k0 + e % 16u;
            var x = f16(0.0);
            if gi < p.m && ga < p.k {
                x = a[gi * p.k + ga];
            }
            sa[e] = x;
            let gb = k0 + e / 32u;
            let gj = col0 + e % 32u;
            var y = f16(0.0);
            if gb < p.k && gj < p.n {
                y = b[gb * p.n + gj];
            }
            sb[e] = y;
        }
        workgroupBarrier();
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sa[0], 16u);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sa[256], 16u);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&sb[0], 32u);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&sb[16], 32u);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        workgroupBarrier();
    }
    coopStoreT(c00, &sc[0], 32u);
    coopStoreT(c01, &sc[16], 32u);
    coopStoreT(c10, &sc[512], 32u);
    coopStoreT(c11, &sc[528], 32u);
    workgroupBarrier();
    for (var e = l; e < 1024u; e += SG) {
        let i = row0 + e / 32u;
        let j = col0 + e % 32u;
        if i < p.m && j < p.n {
            c[i * p.n + j] = epilogue(sc[e], j);
        }
    }
}
