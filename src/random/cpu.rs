//! CPU Philox4x32-10 stream: the same counter-based values as `shaders/random.wgsl` (uniforms
//! bit-identical, normals within a few ulp), in parallel blocks.

use rayon::prelude::*;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of `ctr` under `key` (Random123's `philox4x32_R(10, ...)`).
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The key of a 64-bit seed.
pub fn key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// A word as a uniform in [0, 1): its top 24 bits · 2⁻²⁴ (exact).
pub fn unit(w: u32) -> f32 {
    (w >> 8) as f32 * 5.960_464_5e-8
}

/// ln(u) for normal u > 0 (the shader's polynomial, operation for operation).
pub fn ln_poly(u: f32) -> f32 {
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    if m < 0.707_106_77 {
        m *= 2.0;
        e -= 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 2.0
        * s
        * (1.0 + s2 * (0.333_333_34 + s2 * (0.2 + s2 * (0.142_857_15 + s2 * 0.111_111_11))));
    let ef = e as f32;
    ef * 0.693_145_75 + (ef * 1.428_606_8e-6 + poly)
}

/// (cos, sin) of 2π·u for u in [0, 1) (the shader's polynomials).
pub fn sincos_turn(u: f32) -> (f32, f32) {
    let v = u * 4.0;
    let q = v.round_ties_even();
    let x = (v - q) * 1.570_796_4;
    let x2 = x * x;
    let s = x + x
        * x2
        * (-0.166_666_67 + x2 * (0.008_333_334 + x2 * (-0.000_198_412_7 + x2 * 2.755_731_9e-6)));
    let c =
        1.0 + x2 * (-0.5 + x2 * (0.041_666_668 + x2 * (-0.001_388_888_9 + x2 * 2.480_158_7e-5)));
    match (q as u32) & 3 {
        0 => (c, s),
        1 => (-s, c),
        2 => (-c, -s),
        _ => (s, -c),
    }
}

/// Box–Muller on two words: u1 = ((w0 >> 8) + 1)·2⁻²⁴ in (0, 1], u2 = unit(w1).
pub fn box_muller(w0: u32, w1: u32) -> (f32, f32) {
    let u1 = ((w0 >> 8) + 1) as f32 * 5.960_464_5e-8;
    let r = (-2.0 * ln_poly(u1)).sqrt();
    let (c, s) = sincos_turn(unit(w1));
    (r * c, r * s)
}

/// The four values of block `blk` (elements 4·blk .. 4·blk + 3).
pub fn block(blk: u32, key: [u32; 2], normal: Option<(f32, f32)>) -> [f32; 4] {
    let w = philox4x32_10([blk, 0, 0, 0], key);
    match normal {
        None => [unit(w[0]), unit(w[1]), unit(w[2]), unit(w[3])],
        Some((mean, std)) => {
            let (z0, z1) = box_muller(w[0], w[1]);
            let (z2, z3) = box_muller(w[2], w[3]);
            [
                mean + std * z0,
                mean + std * z1,
                mean + std * z2,
                mean + std * z3,
            ]
        }
    }
}

/// `n` values of the stream of `seed`: uniform in [0, 1), or normal with (mean, std).
pub fn stream(n: usize, seed: u64, normal: Option<(f32, f32)>) -> Vec<f32> {
    let k = key(seed);
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(1 << 14).enumerate().for_each(|(ci, o)| {
        let first = ci * (1 << 12);
        for (j, quad) in o.chunks_mut(4).enumerate() {
            let v = block((first + j) as u32, k, normal);
            quad.copy_from_slice(&v[..quad.len()]);
        }
    });
    out
}
