//! Tensors: a dtype, a shape of 0–4 dims, and storage that is either a GPU buffer or host memory.
//!
//! A tensor made by a GPU [`Context`](crate::Context) stays resident on the GPU: ops take it and
//! return new resident tensors, and nothing is read back until [`Tensor::to_vec`] is called.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::GpuBuffer;

/// The largest number of dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;

pub use crate::dtype::DType;

/// Host-side data of a tensor.
#[derive(Clone, Debug)]
pub(crate) enum HostData {
    F32(Arc<Vec<f32>>),
    U32(Arc<Vec<u32>>),
    /// Bits of F16 or BF16 elements (the tensor's dtype says which).
    Half(Arc<Vec<u16>>),
}

/// Where a tensor's elements live.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// Host memory (CPU backend, or a tensor built with [`Tensor::from_vec`]).
    Host(HostData),
    /// A GPU buffer of the context that made it.
    Gpu(Arc<GpuBuffer>),
}

/// Where a tensor lives, as reported by [`Tensor::location`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// Host memory.
    Host,
    /// A GPU buffer.
    Gpu,
}

/// An n-dimensional (0–4 dims), row-major, contiguous array of `f32` values or `u32` indices.
///
/// Cloning is cheap: clones share the same storage. Tensors are immutable; ops return new ones.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    dtype: DType,
    pub(crate) storage: Storage,
}

/// Checks a shape against the dims limit and an element count, naming both in the error.
pub(crate) fn check_shape(shape: &[usize], len: usize) -> Result<()> {
    if shape.len() > MAX_DIMS {
        return Err(Error::InvalidArgument(format!(
            "shape {shape:?} has {} dims; at most {MAX_DIMS} are supported",
            shape.len()
        )));
    }
    let count = element_count(shape)?;
    if count != len {
        return Err(Error::Shape(format!(
            "shape {shape:?} holds {count} elements but {len} values were given"
        )));
    }
    Ok(())
}

/// Product of the dims, or an error if it overflows `usize`.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "shape {shape:?} has more elements than fit in memory"
            ))
        })
    })
}

impl Tensor {
    /// Builds a host tensor of `f32` values (no context needed). Usable with every backend:
    /// a GPU context uploads it when an op needs it.
    ///
    /// ```
    /// let t = gpu_linalg::Tensor::from_vec(&[2, 3], vec![1.0; 6])?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        check_shape(shape, data.len())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            dtype: DType::F32,
            storage: Storage::Host(HostData::F32(Arc::new(data))),
        })
    }

    /// Builds a host tensor of `u32` indices.
    pub fn from_vec_u32(shape: &[usize], data: Vec<u32>) -> Result<Tensor> {
        check_shape(shape, data.len())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            dtype: DType::U32,
            storage: Storage::Host(HostData::U32(Arc::new(data))),
        })
    }

    /// Builds a host tensor of the half-precision `dtype` (F16 or BF16) from its elements' bits.
    ///
    /// ```
    /// use gpu_linalg::{DType, Tensor};
    /// let t = Tensor::from_half_bits(&[2], DType::F16, vec![0x3c00, 0xc000])?; // 1, -2
    /// assert_eq!(t.to_vec()?, [1.0, -2.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_half_bits(shape: &[usize], dtype: DType, bits: Vec<u16>) -> Result<Tensor> {
        check_shape(shape, bits.len())?;
        if !dtype.is_half() {
            return Err(Error::InvalidArgument(format!(
                "from_half_bits builds float16 or bfloat16 tensors, not {}",
                dtype.name()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            dtype,
            storage: Storage::Host(HostData::Half(Arc::new(bits))),
        })
    }

    /// Builds a host tensor of float `dtype` (F32, F16 or BF16) from f32 values, rounded to
    /// nearest (ties to even) for the half types, as [`crate::Context::cast`] rounds.
    ///
    /// ```
    /// use gpu_linalg::{DType, Tensor};
    /// let t = Tensor::from_f32_as(&[2], &[1.0, 1.0 + 1.0 / 512.0], DType::BF16)?;
    /// assert_eq!(t.to_vec()?, [1.0, 1.0]); // bfloat16 keeps 8 significant bits
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_f32_as(shape: &[usize], values: &[f32], dtype: DType) -> Result<Tensor> {
        match dtype {
            DType::F32 => Tensor::from_vec(shape, values.to_vec()),
            DType::F16 | DType::BF16 => Tensor::from_half_bits(
                shape,
                dtype,
                values
                    .iter()
                    .map(|&x| crate::precision::to_half_bits(dtype, x))
                    .collect(),
            ),
            DType::U32 => Err(Error::InvalidArgument(
                "from_f32_as builds float tensors (float32, float16, bfloat16), not uint32".into(),
            )),
        }
    }

    pub(crate) fn from_gpu(shape: Vec<usize>, dtype: DType, buffer: Arc<GpuBuffer>) -> Tensor {
        Tensor {
            shape,
            dtype,
            storage: Storage::Gpu(buffer),
        }
    }

    /// The dims, outermost first. A 0-d tensor (a scalar) has an empty shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dims.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a 0-d tensor, 0 if any dim is 0).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where the elements live: GPU buffer or host memory.
    pub fn location(&self) -> Location {
        match self.storage {
            Storage::Host(_) => Location::Host,
            Storage::Gpu(_) => Location::Gpu,
        }
    }

    /// Same data, new shape with the same element count. Free: no copy, no dispatch.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        check_shape(shape, self.len()).map_err(|_| {
            Error::Shape(format!(
                "cannot reshape {:?} ({} elements) into {shape:?}",
                self.shape,
                self.len()
            ))
        })?;
        Ok(Tensor {
            shape: shape.to_vec(),
            dtype: self.dtype,
            storage: self.storage.clone(),
        })
    }

    fn expect_dtype(&self, want: DType) -> Result<()> {
        if self.dtype != want {
            return Err(Error::InvalidArgument(format!(
                "tensor of shape {:?} holds {}, not {}",
                self.shape,
                self.dtype.name(),
                want.name()
            )));
        }
        Ok(())
    }

    /// Copies the values to the host as `f32` (one GPU readback for a GPU tensor), row-major;
    /// float16 and bfloat16 values widen exactly.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        if self.dtype.is_half() {
            let dtype = self.dtype;
            return Ok(self
                .to_half_bits()?
                .into_iter()
                .map(|h| crate::precision::from_half_bits(dtype, h))
                .collect());
        }
        self.expect_dtype(DType::F32)?;
        match &self.storage {
            Storage::Host(HostData::F32(v)) => Ok(v.as_ref().clone()),
            Storage::Host(_) => Err(Error::InvalidArgument(
                "tensor holds uint32 indices, not float32".into(),
            )),
            Storage::Gpu(buf) => Ok(bytemuck::pod_collect_to_vec(&buf.read(self.len() * 4)?)),
        }
    }

    /// Copies the bits of a float16 or bfloat16 tensor's elements to the host.
    ///
    /// ```
    /// use gpu_linalg::{DType, Tensor};
    /// let t = Tensor::from_f32_as(&[2], &[1.0, 0.5], DType::F16)?;
    /// assert_eq!(t.to_half_bits()?, [0x3c00, 0x3800]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn to_half_bits(&self) -> Result<Vec<u16>> {
        if !self.dtype.is_half() {
            return Err(Error::InvalidArgument(format!(
                "tensor of shape {:?} holds {}, not float16 or bfloat16",
                self.shape,
                self.dtype.name()
            )));
        }
        match &self.storage {
            Storage::Host(HostData::Half(v)) => Ok(v.as_ref().clone()),
            Storage::Host(_) => Err(Error::InvalidArgument(
                "a half-precision tensor without half storage".into(),
            )),
            Storage::Gpu(buf) => {
                let words = buf.read(self.dtype.storage_bytes(self.len()))?;
                let mut bits: Vec<u16> = bytemuck::pod_collect_to_vec(&words);
                bits.truncate(self.len());
                Ok(bits)
            }
        }
    }

    /// Copies the `u32` indices to the host.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        self.expect_dtype(DType::U32)?;
        match &self.storage {
            Storage::Host(HostData::U32(v)) => Ok(v.as_ref().clone()),
            Storage::Host(_) => Err(Error::InvalidArgument(
                "tensor holds float values, not uint32".into(),
            )),
            Storage::Gpu(buf) => Ok(bytemuck::pod_collect_to_vec(&buf.read(self.len() * 4)?)),
        }
    }

    /// Async readback of the `f32` values: the future maps a staging buffer and resolves once the
    /// GPU has finished the work that produces this tensor. Host tensors resolve at once.
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        if self.dtype.is_half() {
            return self.to_vec();
        }
        self.expect_dtype(DType::F32)?;
        match &self.storage {
            Storage::Gpu(buf) => {
                let bytes = buf.read_async(self.len() * 4).await?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
            _ => self.to_vec(),
        }
    }

    /// Host indices when the tensor lives in host memory (no copy); `None` otherwise.
    pub(crate) fn host_u32(&self) -> Option<&[u32]> {
        match &self.storage {
            Storage::Host(HostData::U32(v)) => Some(v.as_slice()),
            _ => None,
        }
    }

    /// Host values when the tensor lives in host memory (no copy); `None` for GPU tensors.
    pub(crate) fn host_f32(&self) -> Option<&[f32]> {
        match &self.storage {
            Storage::Host(HostData::F32(v)) => Some(v.as_slice()),
            _ => None,
        }
    }
}

/// The values of a tensor on the host (downloading GPU tensors).
pub(crate) fn host_values(t: &Tensor) -> Result<std::borrow::Cow<'_, [f32]>> {
    match t.host_f32() {
        Some(v) => Ok(std::borrow::Cow::Borrowed(v)),
        None => Ok(std::borrow::Cow::Owned(t.to_vec()?)),
    }
}
