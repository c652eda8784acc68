//! The activations of the fused epilogues (matmul, conv, linear layers, elementwise), and
//! their f64 reference and f32 CPU forms.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Activation applied in a fused epilogue (after the bias).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    /// `x/2 · (1 + erf(x/√2))`, PyTorch's default GELU.
    Gelu,
    /// `x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))`, PyTorch's `approximate="tanh"`.
    GeluTanh,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Every activation, for tests and help texts.
    pub const ALL: [Activation; 6] = [
        Activation::None,
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Sigmoid,
        Activation::Tanh,
    ];

    /// The id the shaders use (`ACT` override constant).
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Gelu => 2,
            Activation::GeluTanh => 3,
            Activation::Sigmoid => 4,
            Activation::Tanh => 5,
        }
    }

    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu-tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// Largest |f'(x)|: how much an input error can grow through the activation.
    pub fn lipschitz(self) -> f64 {
        match self {
            Activation::None | Activation::Relu | Activation::Tanh => 1.0,
            Activation::Gelu | Activation::GeluTanh => 1.13,
            Activation::Sigmoid => 0.25,
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Activation> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown activation '{s}'; expected one of none, relu, gelu, gelu-tanh, sigmoid, tanh"
                ))
            })
    }
}

/// f64 activation, the reference for the shaders' f32 versions.
pub fn activate_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::None => x,
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + u.tanh())
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
    }
}

/// f32 activation of the fast CPU backend (the transcendental forms go through f64).
pub(crate) fn activate_f32(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
        _ => activate_f64(act, f64::from(x)) as f32,
    }
}
