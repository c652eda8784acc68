// Elementwise kernels with numpy broadcasting (up to 4 dims), and the two passes of slerp.
//
// The host prepends shaders/epilogue.wgsl (for `activate()` and `is_nan()`, ACT override) and
// appends one generated function
//     fn op(a: f32, b: f32) -> f32 { return <expression>; }
// from the op table in src/ops/elementwise.rs, so one template serves every op.
//
// Kernels (each thread handles EPT elements, consecutive threads consecutive elements, so
// loads are coalesced on GPUs and vectorise across lanes on lavapipe):
//   ew_vec4      every operand has the output's shape and n % 4 == 0: vec4 loads and stores.
//   ew_general   broadcasting: per-operand strides (0 along broadcast dims) in the uniform.
//   slerp_coef   one thread per row of the last axis: the two slerp weights of that row.
//   slerp_apply  out = ca[row] * a + cb[row] * b.
// Big grids are folded into 2-D (workgroup index = y * num_workgroups.x + x).
//
// Tensors larger than one storage binding are split by the host along the outermost (merged)
// dim of the output: each dispatch binds a window of every operand (a byte offset aligned to
// min_storage_buffer_offset_alignment, at least 16 bytes) and `off` holds the element offset of
// the chunk's first element of a, b and out inside its window (multiples of 4 where the operand
// is read as vec4s). The host proves every index in bounds (guards on `n`, windows that cover
// off + the largest offset of the chunk), so the module is built without runtime checks.

struct EwParams {
    n: u32,        // elements (vec4s for ew_vec4, rows for slerp_coef)
    alpha: f32,
    beta: f32,
    d: u32,        // slerp: row length
    shape: vec4<u32>, // output shape, padded with leading 1s
    sa: vec4<u32>,    // strides of a (0 where broadcast)
    sb: vec4<u32>,    // strides of b
    inv: vec4<f32>,   // 1 / shape, for divmod
    off: vec4<u32>,   // element offsets of a, b, out inside their bound windows (w unused)
}

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> coef: array<vec2<f32>>;
@group(0) @binding(8) var<storage, read> coef_r: array<vec2<f32>>;
// Declared for the prepended epilogue; no kernel here uses it, so it is not in any layout.
@group(0) @binding(9) var<storage, read> bias: array<f32>;

override WG: u32 = 64u;
override EPT: u32 = 4u;
// Dims the host left after merging contiguous ones (the rightmost NDIM of `shape`).
override NDIM: u32 = 4u;

fn from_bits(u: u32) -> f32 {
    return bitcast<f32>(u);
}

// exp with Cody–Waite range reduction and a degree-8 Taylor polynomial on |r| <= ln2/2 (the
// builtin's error grows with |x|: 3 + 2|x| ulp in the WGSL spec).
fn exp_np(x: f32) -> f32 {
    if is_nan(x) {
        return x;
    }
    if x > 88.72284 {
        return from_bits(0x7f800000u);
    }
    if x < -103.97208 {
        return 0.0;
    }
    let k = round(x * 1.4426950408889634);
    let r = (x - k * 0.693145752) - k * 1.428606765330187e-6;
    let e = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.008333334
        + r * (0.0013888889 + r * (0.0001984127 + r * 2.4801588e-5)))))));
    let ki = i32(k);
    let k1 = ki / 2;
    return ldexp(ldexp(e, k1), ki - k1);
}

// sin(x) for |x| up to a few pi: Cody–Waite reduction by pi/2, then polynomials on
// |r| <= pi/4 (the builtin's accuracy is loose in the WGSL spec).
fn sin_acc(x: f32) -> f32 {
    let q = round(x * 0.63661977);
    let r = (x - q * 1.5707963) - q * 4.3711388e-8;
    let r2 = r * r;
    let s = r + r * r2 * (-0.16666667 + r2 * (0.008333334 + r2 * (-0.0001984127 + r2 * 2.7557319e-6)));
    let c = 1.0 + r2 * (-0.5 + r2 * (0.041666668 + r2 * (-0.0013888889 + r2 * 2.4801587e-5)));
    switch u32(i32(q) & 3) {
        case 0u: {
            return s;
        }
        case 1u: {
            return c;
        }
        case 2u: {
            return -s;
        }
        default: {
            return -c;
        }
    }
}

// asin on [0, 1] (Cephes asinf), and acos on [-1, 1] from it.
fn asin_pos(a: f32) -> f32 {
    var x = a;
    var z = a * a;
    let big = a > 0.5;
    if big {
        z = 0.5 * (1.0 - a);
        x = sqrt(z);
    }
    var y = ((((0.042163199048 * z + 0.024181311049) * z + 0.045470025998) * z + 0.074953002686) * z
        + 0.16666752422) * z * x + x;
    if big {
        y = 1.5707963267948966 - 2.0 * y;
    }
    return y;
}

fn acos_acc(c: f32) -> f32 {
    let a = abs(c);
    var th: f32;
    if a > 0.5 {
        th = 2.0 * asin_pos(sqrt(0.5 * (1.0 - a)));
    } else {
        th = 1.5707963267948966 - asin_pos(a);
    }
    return select(th, 3.1415926535897932 - th, c < 0.0);
}

// numpy's log: NaN for x < 0, -inf at 0, inf at inf.
fn log_np(x: f32) -> f32 {
    if is_nan(x) {
        return x;
    }
    if x < 0.0 {
        return from_bits(0x7fc00000u);
    }
    if x == 0.0 {
        return from_bits(0xff800000u);
    }
    if bitcast<u32>(x) == 0x7f800000u {
        return x;
    }
    return log(x);
}

// numpy's sqrt: NaN for x < 0 (sqrt(-0) = -0).
fn sqrt_np(x: f32) -> f32 {
    if x < 0.0 {
        return from_bits(0x7fc00000u);
    }
    return sqrt(x);
}

// numpy.clip: NaN in x or in a bound gives NaN; min > max gives max.
fn clamp_np(x: f32, lo: f32, hi: f32) -> f32 {
    if is_nan(x) {
        return x;
    }
    if is_nan(lo) || is_nan(hi) {
        return from_bits(0x7fc00000u);
    }
    return min(max(x, lo), hi);
}

// torch.lerp: exact at both ends.
fn lerp_np(x: f32, y: f32, t: f32) -> f32 {
    if abs(t) < 0.5 {
        return x + t * (y - x);
    }
    return y - (y - x) * (1.0 - t);
}

// `divmod` (integer division through f32 reciprocals) comes from shaders/divmod.wgsl,
// prepended by the host.

// Offsets into a and b of output element i (NDIM is a pipeline constant: unused levels fold).
fn offsets(i: u32) -> vec2<u32> {
    if NDIM <= 1u {
        return vec2<u32>(i * p.sa.w, i * p.sb.w);
    }
    let q3 = divmod(i, p.shape.w, p.inv.w);
    var o = vec2<u32>(q3.y * p.sa.w, q3.y * p.sb.w);
    if NDIM == 2u {
        return o + vec2<u32>(q3.x * p.sa.z, q3.x * p.sb.z);
    }
    let q2 = divmod(q3.x, p.shape.z, p.inv.z);
    o += vec2<u32>(q2.y * p.sa.z, q2.y * p.sb.z);
    if NDIM == 3u {
        return o + vec2<u32>(q2.x * p.sa.y, q2.x * p.sb.y);
    }
    let q1 = divmod(q2.x, p.shape.y, p.inv.y);
    return o + vec2<u32>(q1.y * p.sa.y + q1.x * p.sa.x, q1.y * p.sb.y + q1.x * p.sb.x);
}

fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

@compute @workgroup_size(WG, 1, 1)
fn ew_vec4(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let base = wg_index(wid, nwg) * WG * EPT + lid.x;
    for (var j = 0u; j < EPT; j++) {
        let i = base + j * WG;
        if i < p.n {
            let x = a4[p.off.x / 4u + i];
            let y = b4[p.off.y / 4u + i];
            out4[p.off.z / 4u + i] = vec4<f32>(op(x.x, y.x), op(x.y, y.y), op(x.z, y.z), op(x.w, y.w));
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn ew_general(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let base = wg_index(wid, nwg) * WG * EPT + lid.x;
    for (var j = 0u; j < EPT; j++) {
        let i = base + j * WG;
        if i < p.n {
            let o = offsets(i);
            let ia = p.off.x + o.x;
            let ib = p.off.y + o.y;
            out[p.off.z + i] = op(a[ia], b[ib]);
        }
    }
}

// Broadcasting over rows of vec4s: the host merged the dims into (rows, shape.w vec4s per
// row); an operand with inner stride 1 is read as vec4s at row * stride (a multiple of 4), one
// with inner stride 0 (a column) is splatted from its scalar at row * stride.
@compute @workgroup_size(WG, 1, 1)
fn ew_rows4(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let base = wg_index(wid, nwg) * WG * EPT + lid.x;
    for (var j = 0u; j < EPT; j++) {
        let i = base + j * WG;
        if i < p.n {
            let q = divmod(i, p.shape.w, p.inv.w);
            var x: vec4<f32>;
            var y: vec4<f32>;
            if p.sa.w == 1u {
                x = a4[(p.off.x + q.x * p.sa.z) / 4u + q.y];
            } else {
                x = vec4<f32>(a[p.off.x + q.x * p.sa.z]);
            }
            if p.sb.w == 1u {
                y = b4[(p.off.y + q.x * p.sb.z) / 4u + q.y];
            } else {
                y = vec4<f32>(b[p.off.y + q.x * p.sb.z]);
            }
            out4[p.off.z / 4u + i] = vec4<f32>(op(x.x, y.x), op(x.y, y.y), op(x.z, y.z), op(x.w, y.w));
        }
    }
}

// slerp weights of one row: p.n rows of length p.d, t = p.alpha. Lerp weights (1 - t, t)
// when either vector is zero or |cos| > 0.9995.
@compute @workgroup_size(WG, 1, 1)
fn slerp_coef(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = gid.y * nwg.x * WG + gid.x;
    if row >= p.n {
        return;
    }
    let t = p.alpha;
    let o = row * p.d;
    var aa = 0.0;
    var bb = 0.0;
    var ab = 0.0;
    for (var k = 0u; k < p.d; k++) {
        let x = a[o + k];
        let y = b[o + k];
        aa += x * x;
        bb += y * y;
        ab += x * y;
    }
    var w = vec2<f32>(1.0 - t, t);
    let nn = sqrt(aa) * sqrt(bb);
    if nn > 0.0 && !is_nan(nn) && bitcast<u32>(nn) != 0x7f800000u {
        let cs = ab / nn;
        if abs(cs) <= 0.9995 {
            let th = acos_acc(clamp(cs, -1.0, 1.0));
            let s = sin_acc(th);
            w = vec2<f32>(sin_acc((1.0 - t) * th) / s, sin_acc(t * th) / s);
        }
    }
    coef[row] = w;
}

@compute @workgroup_size(WG, 1, 1)
fn slerp_apply(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let base = wg_index(wid, nwg) * WG * EPT + lid.x;
    for (var j = 0u; j < EPT; j++) {
        let i = base + j * WG;
        if i < p.n {
            let w = coef_r[i / p.d];
            out[i] = w.x * a[i] + w.y * b[i];
        }
    }
}
