// Shared epilogue of the matmul and conv kernels, prepended to their sources by the host.
// Expects the including shader to declare `bias: array<f32>`.

// Epilogue: bias, then activation (0 none, 1 relu, 2 gelu (erf), 3 gelu-tanh, 4 sigmoid, 5 tanh).
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// erfc for x >= 0 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
fn erfc_pos(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return poly * exp(-x * x);
}

fn tanh_safe(x: f32) -> f32 {
    // Builtin tanh may overflow to NaN for large |x| on some drivers: clamp (tanh(10) = 1 in f32).
    return select(tanh(clamp(x, -10.0, 10.0)), x, is_nan(x));
}

fn activate(x: f32) -> f32 {
    switch ACT {
        case 1u: {
            // Compilers may turn the inner select into max(x, 0), which drops a NaN (Mesa's GL
            // path does): keep NaN by its bits.
            return select(select(x, 0.0, x < 0.0), x, is_nan(x));
        }
        case 2u: {
            // gelu(x) = x/2 * (1 + erf(x/sqrt 2)) = x/2 * erfc(-x/sqrt 2)
            let y = abs(x) * 0.70710678118654752;
            let e = erfc_pos(y);
            return 0.5 * x * select(2.0 - e, e, x < 0.0);
        }
        case 3u: {
            let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh_safe(u));
        }
        case 4u: {
            return 1.0 / (1.0 + exp(-x));
        }
        case 5u: {
            return tanh_safe(x);
        }
        default: {
            return x;
        }
    }
}

// `idx` is the bias element: the output column for matmul, the output channel for conv.
fn epilogue(v: f32, idx: u32) -> f32 {
    var x = v;
    if HAS_BIAS {
        x = x + bias[idx];
    }
    return activate(x);
}

