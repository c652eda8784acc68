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

/// Elementwise ops, reductions and convolutions take half-precision tensors: computed in f32
/// on the widened values, the result rounded to the inputs' type (float32 for a mix, indices
/// for argmax), within an f32 op's error plus an ulp of the type of the CPU's f32 result on
/// the same rounded inputs.
#[test]
fn elementwise_reductions_and_convolutions_take_half_tensors() {
    use gpu_linalg::reference::half_ulp;
    use gpu_linalg::{Context, ConvKind, ConvOptions};
    let cpu = common::cpu();
    let mut contexts: Vec<&Context> = vec![&cpu];
    if let Some(g) = common::gpu() {
        contexts.push(g);
    }
    let close = |what: &str, dtype: DType, got: &[f32], want: &[f32]| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let tol = 2.0 * half_ulp(dtype, f64::from(w.abs())) + 1e-5 * f64::from(w.abs()) + 1e-6;
            assert!(
                (f64::from(g) - f64::from(w)).abs() <= tol,
                "{what} {}: element {i}: {g} vs {w}",
                dtype.name()
            );
        }
    };
    for ctx in contexts {
        for dtype in [DType::F16, DType::BF16] {
            let make = |shape: &[usize], seed: u64| {
                let len = shape.iter().product();
                let host =
                    Tensor::from_f32_as(shape, &common::data_full(len, seed), dtype).unwrap();
                let wide = host.to_vec().unwrap();
                let t = ctx.cast(&ctx.tensor(shape, &wide).unwrap(), dtype).unwrap();
                (t, cpu.tensor(shape, &wide).unwrap())
            };
            let (a, a32) = make(&[37, 129], 1);
            let (b, b32) = make(&[129], 2);
            let check = |what: &str, got: Tensor, want: Tensor| {
                assert_eq!(got.dtype(), dtype, "{what}");
                assert_eq!(got.shape(), want.shape(), "{what}");
                close(what, dtype, &got.to_vec().unwrap(), &want.to_vec().unwrap());
            };
            check(
                "add",
                ctx.add(&a, &b).unwrap(),
                cpu.add(&a32, &b32).unwrap(),
            );
            check(
                "mul",
                ctx.mul(&a, &b).unwrap(),
                cpu.mul(&a32, &b32).unwrap(),
            );
            check("exp", ctx.exp(&a).unwrap(), cpu.exp(&a32).unwrap());
            check("gelu", ctx.gelu(&a).unwrap(), cpu.gelu(&a32).unwrap());
            let (c, c32) = make(&[37, 129], 3);
            check(
                "lerp",
                ctx.lerp(&a, &c, 0.25).unwrap(),
                cpu.lerp(&a32, &c32, 0.25).unwrap(),
            );
            check(
                "slerp",
                ctx.slerp(&a, &c, 0.5).unwrap(),
                cpu.slerp(&a32, &c32, 0.5).unwrap(),
            );
            check(
                "sum",
                ctx.sum(&a, Some(1)).unwrap(),
                cpu.sum(&a32, Some(1)).unwrap(),
            );
            check(
                "max",
                ctx.max(&a, None).unwrap(),
                cpu.max(&a32, None).unwrap(),
            );
            check(
                "softmax",
                ctx.softmax(&a, Some(1)).unwrap(),
                cpu.softmax(&a32, Some(1)).unwrap(),
            );
            let idx = ctx.argmax(&a, Some(1)).unwrap();
            assert_eq!(idx.dtype(), DType::U32);
            assert_eq!(
                idx.to_vec_u32().unwrap(),
                cpu.argmax(&a32, Some(1)).unwrap().to_vec_u32().unwrap()
            );
            // A mix with float32 computes and returns float32.
            let f = ctx.tensor(&[129], &common::data_full(129, 4)).unwrap();
            assert_eq!(ctx.add(&a, &f).unwrap().dtype(), DType::F32);
            // conv2d with a half bias.
            let (x, x32) = make(&[1, 3, 9, 11], 5);
            let (w, w32) = make(&[4, 3, 3, 3], 6);
            let (bias, bias32) = make(&[4], 7);
            let opts = |bias| ConvOptions {
                bias,
                ..Default::default()
            };
            check(
                "conv2d",
                ctx.conv(ConvKind::Conv2d, &x, &w, &opts(Some(&bias)))
                    .unwrap(),
                cpu.conv(ConvKind::Conv2d, &x32, &w32, &opts(Some(&bias32)))
                    .unwrap(),
            );
        }
    }
}
