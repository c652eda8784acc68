//! The CPU path of every op family: a plain f64-accumulating reference that verifies GPU
//! results, and a fast multi-threaded backend used where no GPU is worth using.

pub mod matmul;
