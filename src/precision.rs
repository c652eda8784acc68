//! Half-precision element types ([`DType::F16`], [`DType::BF16`]): the bit conversions the CPU
//! backend uses, identical bit for bit to those of `shaders/convert.wgsl` (round to nearest,
//! ties to even; integer arithmetic only, so no adapter flushes a subnormal on the way).
//!
//! [`DType::F16`]: crate::DType::F16
//! [`DType::BF16`]: crate::DType::BF16

use crate::dtype::DType;

/// IEEE binary16 bits of `x`, rounded to nearest (ties to even): overflow gives ±∞, NaN a quiet
/// NaN of the same sign, f32 subnormals round to ±0.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x007f_ffff;
    if exp == 0xff {
        return sign | if man != 0 { 0x7e00 } else { 0x7c00 };
    }
    // The exponent of binary16, unbiased −14 … 15 for normals.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A binary16 subnormal (or zero): the significand with its hidden bit, shifted right by
        // 14 − e places in all (1 − e beyond the 13 a normal drops), rounded to nearest even.
        if e < -10 {
            return sign;
        }
        let full = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = full & ((1u32 << shift) - 1);
        let mut h = full >> shift;
        if rest > half || (rest == half && (h & 1) == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1) {
        // A carry out of the significand steps the exponent, up to ∞ at the top.
        h += 1;
    }
    sign | h as u16
}

/// The f32 value of IEEE binary16 bits `h` (exact).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise into an f32 normal.
            let lead = man.leading_zeros() - 22; // zeros above the top set bit in 10 bits
            let m = (man << (lead + 1)) & 0x03ff;
            sign | ((127 - 15 - lead) << 23) | (m << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 bits of `x`: the top 16 bits of the f32, rounded to nearest (ties to even); NaN
/// stays a quiet NaN of the same sign.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if (b & 0x7fff_ffff) > 0x7f80_0000 {
        return ((b >> 16) | 0x0040) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bfloat16 bits `h` (exact).
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Bits of `x` in the half-precision `dtype` ([`DType::F16`] or [`DType::BF16`]).
pub(crate) fn to_half_bits(dtype: DType, x: f32) -> u16 {
    match dtype {
        DType::BF16 => f32_to_bf16_bits(x),
        _ => f32_to_f16_bits(x),
    }
}

/// The f32 value of bits `h` of the half-precision `dtype`.
pub(crate) fn from_half_bits(dtype: DType, h: u16) -> f32 {
    match dtype {
        DType::BF16 => bf16_bits_to_f32(h),
        _ => f16_bits_to_f32(h),
    }
}

/// `x` rounded to the half-precision `dtype` and widened back (what a half tensor stores).
pub fn round_to(dtype: DType, x: f32) -> f32 {
    match dtype {
        DType::F16 | DType::BF16 => from_half_bits(dtype, to_half_bits(dtype, x)),
        _ => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_known_values() {
        for (x, h) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (65520.0, 0x7c00), // the midpoint above the largest finite rounds to ∞ (even)
            (65519.0, 0x7bff),
            (f32::INFINITY, 0x7c00),
            (2f32.powi(-14), 0x0400),
            (2f32.powi(-24), 0x0001),
            (2f32.powi(-25), 0x0000),       // a tie: to even (zero)
            (3.0 * 2f32.powi(-25), 0x0002), // a tie: to even (2)
            (1.0 + 2f32.powi(-11), 0x3c00), // a tie: to even
            (1.0 + 3.0 * 2f32.powi(-11), 0x3c02),
            (f32::from_bits(1), 0x0000),
        ] {
            assert_eq!(f32_to_f16_bits(x), h, "{x:e}");
        }
        assert_eq!(f32_to_f16_bits(f32::NAN) & 0x7e00, 0x7e00);
        for h in 0..=u16::MAX {
            let x = f16_bits_to_f32(h);
            if x.is_nan() {
                assert!(f32_to_f16_bits(x) & 0x7c00 == 0x7c00 && f32_to_f16_bits(x) & 0x3ff != 0);
            } else {
                assert_eq!(f32_to_f16_bits(x), h, "{h:#06x} -> {x:e}");
            }
        }
    }

    #[test]
    fn bf16_known_values() {
        for (x, h) in [
            (1.0f32, 0x3f80u16),
            (-1.0, 0xbf80),
            (f32::from_bits(0x3f80_8000), 0x3f80), // a tie: to even
            (f32::from_bits(0x3f81_8000), 0x3f82), // a tie: to even
            (f32::from_bits(0x3f80_8001), 0x3f81),
            (f32::MAX, 0x7f80),
            (f32::INFINITY, 0x7f80),
        ] {
            assert_eq!(f32_to_bf16_bits(x), h, "{x:e}");
        }
        assert!(bf16_bits_to_f32(f32_to_bf16_bits(f32::NAN)).is_nan());
        for h in 0..=u16::MAX {
            let x = bf16_bits_to_f32(h);
            if !x.is_nan() {
                assert_eq!(f32_to_bf16_bits(x), h);
            }
        }
    }
}
