//! The nn plan: shapes and options, shared by the GPU and the CPU path.

/// Which update rule an [`Optimizer`](crate::Optimizer) applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// SGD with momentum (PyTorch's rule: `v = μv + g`, `p −= lr·v`).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum μ (0 for plain SGD).
        momentum: f32,
        /// L2 weight decay added to the gradient.
        weight_decay: f32,
    },
    /// Adam (PyTorch's rule, bias-corrected).
    Adam {
        /// Learning rate.
        lr: f32,
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
        /// L2 weight decay added to the gradient.
        weight_decay: f32,
    },
}
