//! The one error type of the crate.

/// Everything that can go wrong in gpu-linalg. Every fallible public function returns
/// `Result<_, Error>`; the message always names the problem (shapes, sizes, limits).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Operand shapes do not fit the operation (e.g. inner dimensions differ).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An argument is invalid (bad axis, bad option, wrong dtype, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No adapter could serve the requested backend.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// Requesting a device from the adapter failed.
    #[error("could not create GPU device: {0}")]
    Device(String),
    /// wgpu reported a validation error (a bug, or an unsupported configuration).
    #[error("GPU validation error: {0}")]
    Validation(String),
    /// The GPU ran out of memory, or a buffer exceeds the adapter's limits.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// A shader or pipeline could not be built on this adapter.
    #[error("GPU kernel could not be built: {0}")]
    Kernel(String),
    /// The device was lost; every later call on this context fails. Build a new context.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Reading a buffer back from the GPU failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),
    /// A `.npy` file could not be read or written.
    #[error("{0}")]
    Npy(String),
    /// A file system operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The file concerned.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A linear-algebra failure of the input itself, as numpy's `LinAlgError` (a matrix that
    /// is not positive definite names its first failing leading minor).
    #[error("linear algebra error: {0}")]
    LinAlg(String),
    /// A result differed from the CPU reference beyond the documented bound.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Another process of a distributed (MPI) run failed; every rank reports its message.
    #[error("rank {rank} of {size}: {message}")]
    Rank {
        /// The rank that failed first (the lowest, when several did).
        rank: usize,
        /// Processes in the run.
        size: usize,
        /// That rank's one-line message.
        message: String,
    },
}

impl Error {
    /// The message on one line (the lines of a multi-line message joined by "; ").
    pub fn one_line(&self) -> String {
        self.to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Shorthand for `Result<T, gpu_linalg::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// "the m×n matrix", or "the m×n matrix z (flat batch index) of batch" for matrix `z` of a
/// batch: how every error about one matrix of a batch names it.
pub(crate) fn matrix_label(rows: usize, cols: usize, batch: usize, z: usize) -> String {
    if batch == 1 {
        format!("the {rows}×{cols} matrix")
    } else {
        format!("the {rows}×{cols} matrix {z} (flat batch index) of {batch}")
    }
}
