//! # gpu-linalg
//!
//! GPU compute-shader linear algebra for Rust: WGSL kernels run through wgpu on Vulkan,
//! Metal, DX12 or GL, with a fast multi-threaded CPU path that is both the fallback where no
//! GPU exists and the reference that verifies every GPU result.
//!
//! Tensors made by a GPU [`Context`] stay resident on the GPU between ops; nothing is read
//! back until you ask ([`Tensor::to_vec`]). Every fallible call returns [`Result`].
//!
//! ```
//! use gpu_linalg::{Activation, Context};
//!
//! let ctx = Context::new()?; // Backend::Auto: a real GPU, else the fast CPU backend
//! let a = ctx.tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])?; // upload once
//! let b = ctx.tensor(&[3, 2], &[1., 0., 0., 1., 1., 1.])?;
//! let c = ctx.matmul(&a, &b)?; // stays resident
//! let w = ctx.tensor(&[2, 2], &[1., -1., 1., 1.])?;
//! let bias = ctx.tensor(&[2], &[0.5, -100.0])?;
//! let y = ctx.linear(&c, &w, Some(&bias), Activation::Relu)?; // fused epilogue
//! let out: Vec<f32> = y.to_vec()?; // one readback, here
//! assert_eq!(out, vec![9.5, 0.0, 21.5, 0.0]);
//! # Ok::<(), gpu_linalg::Error>(())
//! ```
//!
//! Where ops run is chosen by [`Backend`]: `Auto` (a real GPU, else the CPU), `Gpu` (any
//! adapter, software ones included; failures are errors) or `Cpu`.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod activation;
pub mod cholesky;
#[cfg(feature = "cli")]
pub mod cli;
pub mod context;
pub mod conv;
pub mod decomp;
pub mod elementwise;
pub mod error;
pub mod interop;
mod kernels;
pub mod layout;
pub mod matmul;
pub mod nn;
pub mod norms;
pub mod npy;
pub mod qr;
pub mod random;
pub mod reduce;
pub mod reference;
pub mod runtime;
pub mod solve;
pub mod svd;
pub mod tensor;

pub use activation::Activation;
pub use cholesky::{CholeskyOptions, CholeskyPlan, CHOLESKY_ASYMMETRY, CHOLESKY_BLOCK};
pub use context::{
    list_adapters, AdapterSummary, Backend, BoundsChecks, Context, ContextOptions, DeviceSummary,
    GpuCounters, SubmitMode, TuningRecord,
};
pub use conv::{ConvConfig, ConvKind, ConvOptions, ConvPlan, Padding};
pub use decomp::{Eigh, LowRank, Pca, RandomizedSvdOptions};
pub use elementwise::{broadcast_shapes, BinaryOp, UnaryOp};
pub use error::{Error, Result};
pub use kernels::{kernel_params, kernel_sources};
pub use layout::Slice;
pub use matmul::{
    MatmulConfig, MatmulKernel, MatmulOptions, MatmulPlan, MAX_K_PER_PASS_CPU_ADAPTER,
};
pub use nn::{LinearGrads, LossOutput, LossReduction, Optimizer, OptimizerKind, Targets};
pub use norms::{Lstsq, MatrixNorm, NormsPlan, NORMS_EPS};
pub use qr::{Qr, MAX_QR_PASSES};
pub use reduce::{ReduceKernel, ReduceOp, ReduceOptions, ReducePlan};
pub use solve::{
    AssumeA, Lu, LuBlock, LuFactor, Slogdet, SolveOptions, SquarePlan, SystemPlan,
    TriangularOptions, LU_BLOCK, LU_BLOCK_ENV, LU_TUNED_FROM,
};
pub use svd::batched::{SvdBatchedKernel, SvdBatchedOptions};
pub use svd::{
    svd_tolerance, Svd, SvdOptions, MAX_SWEEPS, SVD_QR_LONG_COLUMN, SVD_QR_MIN_COLS, SVD_QR_RATIO,
    SVD_WORKGROUPS, SVD_WORKGROUP_ENV,
};
pub use tensor::{DType, Location, Tensor};
