//! Linear solvers.

pub mod small;

pub use small::SmallSolveKernel;
