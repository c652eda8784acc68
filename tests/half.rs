//! float16 and bfloat16 tensors: the GPU's conversions equal the CPU's bit for bit (round to
//! nearest, ties to even), over every half-precision bit pattern and a spread of f32 values.

mod common;

use gpu_linalg::precision::{f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
use gpu_linalg::{DType, Tensor};

/// f32 values that exercise every branch of the narrowing: specials, the f16 range's edges,
/// subnormals of both types, ties, and a spread over all exponents.
fn probe_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65519.0,
        65520.0,
        -65520.0,
        1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        2f32.powi(-14),
        2f32.powi(-24),
        2f32.powi(-25),
        3.0 * 2f32.powi(-25),
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
    ];
    // Every exponent, with a few mantissas.
    for e in 0..=255u32 {
        for m in [
            0u32, 1, 0x1000, 0x0fff, 0x2000, 0x7f_ffff, 0x40_0000, 0x12_3457,
        ] {
            v.push(f32::from_bits((e << 23) | m));
            v.push(f32::from_bits(0x8000_0000 | (e << 23) | m));
        }
    }
    v
}

fn same_bits(a: &[u16], b: &[u16], what: &str, inputs: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            x, y,
            "{what}: element {i} ({:e}): {x:#06x} vs {y:#06x}",
            inputs[i]
        );
    }
}

#[test]
fn narrowing_on_the_gpu_equals_the_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let values = probe_values();
    for dtype in [DType::F16, DType::BF16] {
        // Odd and even lengths: two elements share a word.
        for len in [1, 2, 3, values.len() - 1, values.len()] {
            let x = ctx.tensor(&[len], &values[..len]).unwrap();
            let gpu = ctx.cast(&x, dtype).unwrap();
            assert_eq!(gpu.dtype(), dtype);
            let cpu = Tensor::from_f32_as(&[len], &values[..len], dtype).unwrap();
            same_bits(
                &gpu.to_half_bits().unwrap(),
                &cpu.to_half_bits().unwrap(),
                dtype.name(),
                &values,
            );
        }
    }
}

#[test]
fn widening_every_bit_pattern_on_the_gpu_equals_the_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    for dtype in [DType::F16, DType::BF16] {
        let host = Tensor::from_half_bits(&[bits.len()], dtype, bits.clone()).unwrap();
        let wide_cpu = host.to_vec().unwrap();
        let wide_gpu = ctx
            .cast(&ctx.cast(&host, dtype).unwrap(), DType::F32)
            .unwrap()
            .to_vec()
            .unwrap();
        for (i, (x, y)) in wide_gpu.iter().zip(&wide_cpu).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{} {i:#06x}", dtype.name());
        }
        // And back: every non-NaN pattern round-trips exactly.
        let back = ctx
            .cast(&ctx.tensor(&[bits.len()], &wide_cpu).unwrap(), dtype)
            .unwrap()
            .to_half_bits()
            .unwrap();
        for (i, (&h, &x)) in back.iter().zip(&wide_cpu).enumerate() {
            if !x.is_nan() {
                assert_eq!(h, i as u16, "{} {i:#06x}", dtype.name());
            }
        }
    }
}

#[test]
fn casts_between_the_half_types_and_errors() {
    let cpu = common::cpu();
    let values = probe_values();
    let f16 = Tensor::from_f32_as(&[values.len()], &values, DType::F16).unwrap();
    let via = cpu.cast(&f16, DType::BF16).unwrap();
    let want: Vec<u16> = f16
        .to_half_bits()
        .unwrap()
        .into_iter()
        .map(|h| f32_to_bf16_bits(f16_bits_to_f32(h)))
        .collect();
    assert_eq!(via.to_half_bits().unwrap(), want);
    if let Some(ctx) = common::gpu() {
        let g = ctx
            .cast(&ctx.cast(&f16, DType::F16).unwrap(), DType::BF16)
            .unwrap();
        assert_eq!(g.to_half_bits().unwrap(), want);
        let empty = ctx
            .cast(&ctx.tensor(&[0], &[]).unwrap(), DType::F16)
            .unwrap();
        assert!(empty.to_half_bits().unwrap().is_empty());
    }
    assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
    let idx = cpu.tensor_u32(&[2], &[1, 2]).unwrap();
    let e = cpu.cast(&idx, DType::F16).unwrap_err().to_string();
    assert!(e.contains("uint32") && e.contains("float16"), "{e}");
    let e = Tensor::from_half_bits(&[1], DType::F32, vec![0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("float32"), "{e}");
    assert!(Tensor::from_half_bits(&[2], DType::F16, vec![0]).is_err());
    let e = cpu
        .tensor(&[1], &[1.0])
        .unwrap()
        .to_half_bits()
        .unwrap_err()
        .to_string();
    assert!(e.contains("float32"), "{e}");
}
