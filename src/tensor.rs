//! Tensors: a dtype, a shape of 0–4 dims, and storage that is either a GPU buffer or host memory.
//!
//! A tensor made by a GPU [`Context`](crate::Context) stays resident on the GPU: ops take it and
//! return new resident tensors, and nothing is read back until [`Tensor::to_vec`] is called.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::GpuBuffer;

/// The largest number of dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: all values.
    F32,
    /// 32-bit unsigned integer: indices (argmax, class targets).
    U32,
}

impl DType {
    /// Name as numpy spells it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::U32 => "uint32",
        }
    }
}

/// Host-side data of a tensor.
#[derive(Clone, Debug)]
pub(crate) enum HostData {
    F32(Arc<Vec<f32>>),
    U32(Arc<Vec<u32>>),
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

    /// Copies the `f32` values to the host (one GPU readback for a GPU tensor), row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.expect_dtype(DType::F32)?;
        match &self.storage {
            Storage::Host(HostData::F32(v)) => Ok(v.as_ref().clone()),
            Storage::Host(HostData::U32(_)) => Err(Error::InvalidArgument(
                "tensor holds uint32 indices, not float32".into(),
            )),
            Storage::Gpu(buf) => Ok(bytemuck::pod_collect_to_vec(&buf.read(self.len() * 4)?)),
        }
    }

    /// Copies the `u32` indices to the host.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        self.expect_dtype(DType::U32)?;
        match &self.storage {
            Storage::Host(HostData::U32(v)) => Ok(v.as_ref().clone()),
            Storage::Host(HostData::F32(_)) => Err(Error::InvalidArgument(
                "tensor holds float32 values, not uint32".into(),
            )),
            Storage::Gpu(buf) => Ok(bytemuck::pod_collect_to_vec(&buf.read(self.len() * 4)?)),
        }
    }

    /// Async readback of the `f32` values: the future maps a staging buffer and resolves once the
    /// GPU has finished the work that produces this tensor. Host tensors resolve at once.
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
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
