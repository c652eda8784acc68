// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11; Random123).
//
// Element i takes word (i % 4) of philox(counter = (i / 4, 0, 0, 0), key = (seed lo, seed hi)),
// so any element can be computed alone and the stream does not depend on the launch shape.
//   uniform: (word >> 8) * 2^-24, in [0, 1), exact in f32 (bit-identical to the CPU).
//   normal:  Box–Muller on the pairs (w0, w1) and (w2, w3) of a block:
//            u1 = ((w0 >> 8) + 1) * 2^-24 in (0, 1], u2 = (w1 >> 8) * 2^-24,
//            z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), r = sqrt(-2 ln u1); the same for (w2, w3).
//            ln, sin and cos are the polynomials below (also in src/cpu/random.rs), not the
//            builtins, whose accuracy the WGSL spec leaves loose; so CPU and GPU agree to a
//            few ulp. Then mean + std * z.
// Each thread produces one block of four elements. A tensor larger than one storage binding is
// written in chunks of whole blocks: `blk0` is the chunk's first block (so the counter stays the
// global element index / 4 and the values match the unsplit stream) and `yoff` the element
// offset of the chunk inside the bound window of y. The host binds a window that covers
// yoff + n elements, so every store is in bounds and the module is built without runtime checks.

struct RandParams {
    n: u32,
    key0: u32,
    key1: u32,
    normal: u32,
    mean: f32,
    sdev: f32,
    blk0: u32, // first block of this chunk (global)
    yoff: u32, // element offset of the chunk inside the bound window of y
}

@group(0) @binding(0) var<uniform> p: RandParams;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;

// (hi, lo) of the 64-bit product a * b.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (mid << 16u) | (p00 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, lo);
}

fn philox(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        if r > 0u {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let m0 = mulhilo(0xD2511F53u, c.x);
        let m1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(m1.x ^ c.y ^ k.x, m1.y, m0.x ^ c.w ^ k.y, m0.y);
    }
    return c;
}

// ln(u) for normal u > 0: u = m * 2^e, m in [sqrt(1/2), sqrt(2)), atanh series.
fn ln_poly(u: f32) -> f32 {
    let bits = bitcast<u32>(u);
    var e = i32((bits >> 23u) & 0xffu) - 126;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u); // [0.5, 1)
    if m < 0.70710677 {
        m = m * 2.0;
        e = e - 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 2.0 * s * (1.0 + s2 * (0.33333334 + s2 * (0.2 + s2 * (0.14285715 + s2 * 0.11111111))));
    let ef = f32(e);
    return ef * 0.693145752 + (ef * 1.428606765330187e-6 + poly);
}

// (cos, sin) of 2 pi u for u in [0, 1).
fn sincos_turn(u: f32) -> vec2<f32> {
    let v = u * 4.0;
    let q = round(v);
    let x = (v - q) * 1.5707964;
    let x2 = x * x;
    let s = x + x * x2 * (-0.16666667 + x2 * (0.008333334 + x2 * (-0.0001984127 + x2 * 2.7557319e-6)));
    let c = 1.0 + x2 * (-0.5 + x2 * (0.041666668 + x2 * (-0.0013888889 + x2 * 2.4801587e-5)));
    switch u32(q) & 3u {
        case 0u: {
            return vec2<f32>(c, s);
        }
        case 1u: {
            return vec2<f32>(-s, c);
        }
        case 2u: {
            return vec2<f32>(-c, -s);
        }
        default: {
            return vec2<f32>(s, -c);
        }
    }
}

fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * 5.9604645e-8;
}

fn box_muller(w0: u32, w1: u32) -> vec2<f32> {
    let u1 = f32((w0 >> 8u) + 1u) * 5.9604645e-8;
    let r = sqrt(-2.0 * ln_poly(u1));
    let cs = sincos_turn(unit(w1));
    return vec2<f32>(r * cs.x, r * cs.y);
}

@compute @workgroup_size(WG, 1, 1)
fn rand_block(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lblk = gid.y * nwg.x * WG + gid.x;
    let i0 = lblk * 4u;
    if i0 >= p.n {
        return;
    }
    let w = philox(vec4<u32>(p.blk0 + lblk, 0u, 0u, 0u), vec2<u32>(p.key0, p.key1));
    var v: vec4<f32>;
    if p.normal != 0u {
        let z01 = box_muller(w.x, w.y);
        let z23 = box_muller(w.z, w.w);
        v = vec4<f32>(p.mean, p.mean, p.mean, p.mean)
            + vec4<f32>(p.sdev, p.sdev, p.sdev, p.sdev) * vec4<f32>(z01.x, z01.y, z23.x, z23.y);
    } else {
        v = vec4<f32>(unit(w.x), unit(w.y), unit(w.z), unit(w.w));
    }
    for (var j = 0u; j < 4u; j++) {
        if i0 + j < p.n {
            y[p.yoff + i0 + j] = v[j];
        }
    }
}
