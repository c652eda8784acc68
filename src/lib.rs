//! # gpu-linalg
//!
//! GPU compute-shader linear algebra for Rust: WGSL kernels run through wgpu on Vulkan,
//! Metal, DX12 or GL, with a fast multi-threaded CPU path that is both the fallback where no
//! GPU exists and the reference that verifies every GPU result.
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
//! ## Choosing a backend
//!
//! Every op is a method of a [`Context`]; where it runs is chosen by [`Backend`]:
//!
//! - [`Backend::Auto`] ([`Context::new`]): a real GPU — discrete, then integrated, then
//!   virtual — else the fast CPU backend. Software adapters (lavapipe) are slower than the CPU
//!   backend, so `Auto` does not pick them; it is the only mode that falls back to the CPU
//!   (once, with a warning) when a GPU kernel cannot be built.
//! - [`Backend::Gpu`]: the best adapter of any type, software ones included; every failure is an
//!   error. Tests use it so a GPU test can never silently become a CPU test.
//! - [`Backend::Cpu`]: the fast CPU backend (faer and rayon); no GPU is touched.
//!
//! [`Context::with_backend`] picks one, [`Context::with_options`] also names an adapter, bounds
//! checks and a [`SubmitMode`]; [`list_adapters`] shows what exists, and [`Context::from_wgpu`]
//! runs on a device your application already owns. `GPU_LINALG_ADAPTER`, `WGPU_BACKEND` and
//! `WGPU_ADAPTER_NAME` are honoured.
//!
//! ```
//! use gpu_linalg::{Backend, Context};
//! let ctx = Context::with_backend(Backend::Cpu)?;
//! assert!(!ctx.is_gpu());
//! # Ok::<(), gpu_linalg::Error>(())
//! ```
//!
//! ## Resident tensors and readback
//!
//! A [`Tensor`] is a dtype ([`DType::F32`] values, [`DType::U32`] indices, or the half-precision
//! [`DType::F16`] and [`DType::BF16`], converted by [`Context::cast`]), a shape of 0 to
//! [`tensor::MAX_DIMS`] dims, row-major and contiguous, and storage ([`Location`]): a GPU buffer
//! or host memory. Tensors made by a GPU context ([`Context::tensor`], or any op's output) stay
//! on the GPU between ops; nothing is read back until you ask: [`Tensor::to_vec`],
//! [`Tensor::to_vec_u32`], [`Tensor::to_vec_of`] or [`Tensor::to_vec_async`]. Host tensors
//! ([`Tensor::from_vec`], [`Tensor::from_slice`]) work with every context; a GPU context uploads
//! them when an op needs them. Ops are queued and submitted together at a readback,
//! [`Context::flush`] or [`Context::synchronize`]. Clones share storage; tensors are immutable.
//!
//! With the cargo features `ndarray`, `nalgebra` and `faer`, the [`interop`] module converts to
//! and from `ndarray` arrays, `nalgebra` matrices and `faer` matrices (any strides in, C order
//! out).
//!
//! ## Errors
//!
//! Every fallible call returns [`Result`]`<_, `[`Error`]`>`; nothing in the library panics on
//! bad input. [`Error::Shape`] and [`Error::InvalidArgument`] name the shapes, dtypes and
//! limits involved; GPU validation and out-of-memory errors are caught with error scopes and
//! come back as [`Error::Validation`] / [`Error::OutOfMemory`] from the op that caused them;
//! [`Error::LinAlg`] reports singular or non-positive-definite matrices, as numpy's
//! `LinAlgError`.
//!
//! ```
//! # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
//! let a = ctx.tensor(&[2, 3], &[0.0; 6])?;
//! let e = ctx.matmul(&a, &a).unwrap_err();
//! assert!(matches!(e, gpu_linalg::Error::Shape(_)), "{e}");
//! # Ok::<(), gpu_linalg::Error>(())
//! ```
//!
//! ## Numeric conventions
//!
//! Results match numpy and PyTorch so they can be compared directly: `matmul` is
//! `numpy.matmul` (1-D promotion, two broadcast batch dims); `conv2d` is
//! `torch.nn.functional.conv2d` (NCHW, weight `[C_out, C_in/groups, KH, KW]`); reductions have
//! numpy's semantics (`axis: None` is all, negative axes count from the end, a full reduction
//! is a 0-d tensor, argmax returns the first index of ties and NaN); `svd` is
//! `numpy.linalg.svd(full_matrices=False)`; `eigh` gives ascending eigenvalues and eigenvectors
//! as columns; PCA is `sklearn.decomposition.PCA`; gelu is the erf form. Values are `f32`; GPU
//! results agree with an f64 reference within the error bound of the sum or LAPACK's
//! driver-test ratios (see `tests/` and the README).
//!
//! ## Op families
//!
//! | family | methods of [`Context`] | module |
//! |---|---|---|
//! | matmul, linear | [`matmul`](Context::matmul), [`matmul_with`](Context::matmul_with), [`linear`](Context::linear) | [`matmul`] |
//! | convolution | [`conv2d`](Context::conv2d), [`conv1d`](Context::conv1d), [`conv_transpose2d`](Context::conv_transpose2d) | [`conv`] |
//! | elementwise | [`add`](Context::add), [`mul`](Context::mul), [`exp`](Context::exp), [`relu`](Context::relu), [`gelu`](Context::gelu), [`lerp`](Context::lerp), [`slerp`](Context::slerp), … | [`elementwise`] |
//! | layout | [`transpose`](Context::transpose), [`concat`](Context::concat), … | [`layout`] |
//! | reductions | [`sum`](Context::sum), [`mean`](Context::mean), [`max`](Context::max), [`argmax`](Context::argmax), [`var`](Context::var), [`softmax`](Context::softmax), [`logsumexp`](Context::logsumexp), … | [`reduce`] |
//! | random | [`rand_normal`](Context::rand_normal), … | [`random`] |
//! | training | [`linear_train`](Context::linear_train), [`linear_backward`](Context::linear_backward), [`mse_loss`](Context::mse_loss), [`cross_entropy`](Context::cross_entropy), [`Optimizer`] | [`nn`] |
//! | SVD | [`svd`](Context::svd), [`svd_with`](Context::svd_with), [`svd_batched_with`](Context::svd_batched_with) | [`svd`] |
//! | eigh, PCA, low rank | [`eigh`](Context::eigh), [`pca`](Context::pca), [`low_rank`](Context::low_rank), [`randomized_svd`](Context::randomized_svd) | [`decomp`] |
//! | QR | [`qr`](Context::qr) | [`qr`] |
//! | Cholesky | [`cholesky`](Context::cholesky) | [`cholesky`] |
//! | LU, solve, inv, det | [`solve`](Context::solve), [`inv`](Context::inv), [`det`](Context::det), [`slogdet`](Context::slogdet) | [`solve`] |
//! | norms, lstsq, pinv | [`matrix_norm`](Context::matrix_norm), [`cond`](Context::cond), [`lstsq`](Context::lstsq), [`pinv`](Context::pinv) | [`norms`] |
//! | `.npy` files | [`npy::read_npy`], [`npy::write_npy_f32`], [`npy::NpyRowReader`], [`npy::NpyRowWriter`] | [`npy`] |
//! | streamed (tall data in row blocks) | [`gram_stream`](Context::gram_stream), [`tsqr_stream`](Context::tsqr_stream), [`lstsq_stream`](Context::lstsq_stream), [`randomized_svd_stream`](Context::randomized_svd_stream), [`pca_stream`](Context::pca_stream) | [`streamed`] |
//! | several adapters | [`ContextGroup`]: batched [`matmul`](ContextGroup::matmul), [`svd_batched`](ContextGroup::svd_batched), [`solve`](ContextGroup::solve), the streamed calls | [`group`] |
//!
//! With the `mpi` feature, `distributed::Mpi` runs the streamed PCA, TSQR and lstsq across the
//! ranks of an MPI job.
//!
//! Each GPU family tunes its kernel choice per adapter on first use and caches it
//! ([`Context::tuning_report`]).

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
pub mod convert;
pub mod decomp;
#[cfg(feature = "mpi")]
pub mod distributed;
mod dtype;
pub mod elementwise;
pub mod error;
pub mod group;
mod householder;
pub mod interop;
mod kernels;
pub mod layout;
pub mod matmul;
pub mod nn;
pub mod norms;
pub mod npy;
pub mod precision;
pub mod qr;
pub mod random;
pub mod reduce;
pub mod reference;
pub mod runtime;
pub mod solve;
pub mod streamed;
pub mod svd;
pub mod tensor;

pub use activation::Activation;
pub use cholesky::{
    CholeskyOptions, CholeskyPlan, CHOLESKY_ASYMMETRY, CHOLESKY_BLOCK, CHOLESKY_BLOCK_ENV,
    CHOLESKY_TUNED_FROM,
};
pub use context::{
    list_adapters, AdapterSummary, Backend, BoundsChecks, Context, ContextOptions, DeviceSummary,
    GpuCounters, SubmitMode, TuningRecord,
};
pub use conv::{ConvConfig, ConvKind, ConvOptions, ConvPlan, Padding};
pub use decomp::{Eigh, LowRank, Pca, RandomizedSvdOptions};
pub use elementwise::{broadcast_shapes, BinaryOp, UnaryOp};
pub use error::{Error, Result};
pub use group::{ContextGroup, BATCH_GRANULE};
#[doc(hidden)]
pub use householder::force_panel_width;
pub use householder::PANEL_WIDTH_ENV;
pub use kernels::{kernel_params, kernel_sources};
pub use layout::Slice;
pub use matmul::{
    force_split_k, split_k_slices, HalfMatmulPath, MatmulConfig, MatmulKernel, MatmulOptions,
    MatmulPlan, MATMUL_SPLIT_K_ENV, MAX_K_PER_PASS_CPU_ADAPTER, MAX_SPLIT_K,
};
pub use nn::{LinearGrads, LossOutput, LossReduction, Optimizer, OptimizerKind, Targets};
pub use norms::{Lstsq, MatrixNorm, NormsPlan, NORMS_EPS};
pub use qr::{Qr, MAX_QR_PASSES, QR_CHOLESKY_RATIO, QR_METHOD_ENV};
pub use reduce::{ReduceKernel, ReduceOp, ReduceOptions, ReducePlan};
pub use solve::{
    AssumeA, Lu, LuFactor, Slogdet, SmallSolveKernel, SolveOptions, SquarePlan, SystemPlan,
    TriangularOptions, LU_BLOCK, LU_BLOCK_ENV, LU_TUNED_FROM, SMALL_MAX_N, SOLVE_SMALL_KERNEL_ENV,
};
pub use streamed::{
    IterRowBlocks, MemoryBudget, NpyRowBlocks, PassStats, PcaStreamMethod, RowBlock, RowBlocks,
    StreamedPca, StreamedSvd, TensorRowBlocks, Tsqr, BLOCK_COPIES, DEFAULT_MEMORY_BUDGET,
    PCA_COVARIANCE_MAX_FEATURES,
};
pub use svd::batched::{SvdBatchedKernel, SvdBatchedOptions};
pub use svd::{
    svd_tolerance, Svd, SvdMethod, SvdOptions, MAX_SWEEPS, SVD_QR_LONG_COLUMN, SVD_QR_MIN_COLS,
    SVD_QR_RATIO, SVD_WORKGROUPS, SVD_WORKGROUP_ENV,
};
pub use tensor::{DType, Location, Tensor};
