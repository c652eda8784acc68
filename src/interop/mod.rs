//! Conversions between [`Tensor`] and the Rust ecosystem's array types.
//!
//! Every conversion copies the elements once into the tensor's row-major (C-order) layout, or
//! out of it. Inputs may have any strides (transposed, permuted or sliced views); where an input
//! is already C-contiguous the copy is one `memcpy`-like slice copy, and an owned C-order
//! `ndarray::Array` moves its buffer into the tensor without any copy. Reading a GPU tensor
//! back (`to_*`) is one readback, as [`Tensor::to_vec`].
//!
//! | crate | cargo feature | into a tensor | out of a tensor |
//! |---|---|---|---|
//! | (none) | always on | [`Tensor::from_slice`] (`f32`, `u32`) | [`Tensor::to_vec_of`] |
//! | `ndarray` 0.16 | `ndarray` | `Tensor::from_ndarray`, `TryFrom<ArrayView>`, `TryFrom<Array>` | `Tensor::to_ndarray` (`ArrayD`), `Tensor::to_ndarray2` (`Array2`) |
//! | `nalgebra` 0.33 | `nalgebra` | `Tensor::from_nalgebra` (any `Matrix`, views too), `TryFrom<&DMatrix>`, `TryFrom<DMatrixView>` | `Tensor::to_nalgebra` (`DMatrix`) |
//! | `faer` 0.24 | `faer` | `Tensor::from_faer` (`MatRef`, any strides), `TryFrom<MatRef>`, `TryFrom<&Mat>` | `Tensor::to_faer` (`Mat`) |
//!
//! faer is always a dependency of this crate (its CPU backend runs on it); the `faer` feature
//! only gates the conversion API, so enabling it adds no dependency. The nalgebra and faer
//! conversions take and give 2-D tensors; nalgebra stores matrices column-major, so the
//! storage order is transposed on the way in and out (the matrix itself is not).
//!
//! Errors never panic: a wrong number of dims, too many dims (more than
//! [`MAX_DIMS`](crate::tensor::MAX_DIMS)), a dtype that is not `float32`, or an element type
//! that is neither `f32` nor `u32` is an [`Error`] whose message names the problem.
//!
//! ```
//! use gpu_linalg::{Backend, Context, Tensor};
//!
//! let ctx = Context::with_backend(Backend::Cpu)?;
//! let a = Tensor::from_slice(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0])?;
//! let idx = Tensor::from_slice(&[3], &[2u32, 0, 1])?;
//! let c = ctx.matmul(&a, &a)?;
//! assert_eq!(c.to_vec_of::<f32>()?, vec![7.0, 10.0, 15.0, 22.0]);
//! assert_eq!(idx.to_vec_of::<u32>()?, vec![2, 0, 1]);
//! // Other element types are refused, by name.
//! let e = Tensor::from_slice(&[1], &[1.0f64]).unwrap_err();
//! assert!(e.to_string().contains("f64"));
//! # Ok::<(), gpu_linalg::Error>(())
//! ```

use std::any::{type_name, TypeId};

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

#[cfg(feature = "faer")]
mod faer;
#[cfg(feature = "nalgebra")]
mod nalgebra;
#[cfg(feature = "ndarray")]
mod ndarray;

fn unsupported<T>(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{what}: element type {} is not supported; tensors hold f32 values, u32 indices or \
         (with the `half` feature) half::f16 and half::bf16 values",
        type_name::<T>()
    ))
}

/// The half-precision dtype of the element type `t` (the half crate's `f16` and `bf16`, with
/// the `half` feature), else `None`.
fn half_dtype(t: TypeId) -> Option<DType> {
    #[cfg(feature = "half")]
    {
        if t == TypeId::of::<half::f16>() {
            return Some(DType::F16);
        }
        if t == TypeId::of::<half::bf16>() {
            return Some(DType::BF16);
        }
    }
    let _ = t;
    None
}

impl Tensor {
    /// Builds a host tensor from a slice of `f32` values or `u32` indices (the dtype follows
    /// `T`), or with the `half` feature of `half::f16` / `half::bf16` values (a float16 or
    /// bfloat16 tensor), row-major. Any other element type is an error naming it.
    ///
    /// ```
    /// use gpu_linalg::{DType, Tensor};
    /// let t = Tensor::from_slice(&[2, 3], &[0u32, 1, 2, 3, 4, 5])?;
    /// assert_eq!((t.shape(), t.dtype()), (&[2, 3][..], DType::U32));
    /// assert!(Tensor::from_slice(&[2], &[1i32, 2]).is_err());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_slice<T: bytemuck::Pod>(shape: &[usize], data: &[T]) -> Result<Tensor> {
        let t = TypeId::of::<T>();
        if t == TypeId::of::<f32>() {
            Tensor::from_vec(shape, bytemuck::cast_slice::<T, f32>(data).to_vec())
        } else if t == TypeId::of::<u32>() {
            Tensor::from_vec_u32(shape, bytemuck::cast_slice::<T, u32>(data).to_vec())
        } else if let Some(dtype) = half_dtype(t) {
            Tensor::from_half_bits(shape, dtype, bytemuck::cast_slice::<T, u16>(data).to_vec())
        } else {
            Err(unsupported::<T>("Tensor::from_slice"))
        }
    }

    /// Copies the elements to the host as `Vec<T>`, row-major: `T = f32` for a `float32`
    /// tensor, `T = u32` for a `uint32` one. A mismatch or another `T` is an error naming both.
    /// ([`Tensor::to_vec`] and [`Tensor::to_vec_u32`] are the untyped spellings.)
    ///
    /// ```
    /// let t = gpu_linalg::Tensor::from_slice(&[2], &[1.5f32, -2.0])?;
    /// assert_eq!(t.to_vec_of::<f32>()?, vec![1.5, -2.0]);
    /// assert!(t.to_vec_of::<u32>().unwrap_err().to_string().contains("float32"));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn to_vec_of<T: bytemuck::Pod>(&self) -> Result<Vec<T>> {
        let t = TypeId::of::<T>();
        let want = if t == TypeId::of::<f32>() {
            DType::F32
        } else if t == TypeId::of::<u32>() {
            DType::U32
        } else if let Some(dtype) = half_dtype(t) {
            dtype
        } else {
            return Err(unsupported::<T>("Tensor::to_vec_of"));
        };
        if want != self.dtype() {
            return Err(Error::InvalidArgument(format!(
                "Tensor::to_vec_of::<{}>: tensor of shape {:?} holds {}, not {}",
                type_name::<T>(),
                self.shape(),
                self.dtype().name(),
                want.name()
            )));
        }
        // Same size and alignment (checked above by type): the buffer moves, no copy.
        let cast = |e: bytemuck::PodCastError| {
            Error::InvalidArgument(format!("Tensor::to_vec_of::<{}>: {e}", type_name::<T>()))
        };
        match want {
            DType::F32 => {
                bytemuck::allocation::try_cast_vec(self.to_vec()?).map_err(|(e, _)| cast(e))
            }
            DType::U32 => {
                bytemuck::allocation::try_cast_vec(self.to_vec_u32()?).map_err(|(e, _)| cast(e))
            }
            DType::F16 | DType::BF16 => {
                bytemuck::allocation::try_cast_vec(self.to_half_bits()?).map_err(|(e, _)| cast(e))
            }
        }
    }

    /// Checks that this is a 2-D `float32` tensor and returns (rows, cols); `what` names the
    /// conversion in the error.
    #[allow(dead_code)]
    pub(crate) fn matrix_dims(&self, what: &str) -> Result<(usize, usize)> {
        if self.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "{what}: tensor of shape {:?} holds {}; only float32 tensors convert",
                self.shape(),
                self.dtype().name()
            )));
        }
        match *self.shape() {
            [r, c] => Ok((r, c)),
            ref s => Err(Error::Shape(format!(
                "{what}: needs a 2-D tensor, got shape {s:?} ({} dims)",
                s.len()
            ))),
        }
    }
}
