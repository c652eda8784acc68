//! `ndarray` 0.16 conversions (feature `ndarray`).

use ::ndarray::{Array, Array2, ArrayBase, ArrayD, ArrayView, Data, Dimension, IxDyn};

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, MAX_DIMS};

fn check_dims(ndim: usize) -> Result<()> {
    if ndim > MAX_DIMS {
        return Err(Error::InvalidArgument(format!(
            "ndarray array has {ndim} dims; a tensor has at most {MAX_DIMS}"
        )));
    }
    Ok(())
}

impl Tensor {
    /// Copies an ndarray array of `f32` — an owned `Array`, an `ArrayView` or `ArrayViewMut`,
    /// with any strides (`.t()`, `.permuted_axes(..)`, slices) and 0 to
    /// [`MAX_DIMS`] dims — into a host tensor of the same shape, in
    /// C order. A C-contiguous input is copied as one slice; others element by element in
    /// logical order. (To move an owned C-order `Array` without a copy use
    /// `Tensor::try_from(array)`.) Feature `ndarray`.
    ///
    /// ```
    /// use ndarray::array;
    /// use gpu_linalg::{Backend, Context, Tensor};
    ///
    /// let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
    /// let at = Tensor::from_ndarray(&a.t())?; // transposed view: [3, 2]
    /// assert_eq!(at.shape(), &[3, 2]);
    /// assert_eq!(at.to_vec()?, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    ///
    /// let ctx = Context::with_backend(Backend::Cpu)?;
    /// let g = ctx.matmul(&Tensor::from_ndarray(&a)?, &at)?; // A·Aᵀ
    /// assert_eq!(g.to_ndarray2()?, array![[14.0, 32.0], [32.0, 77.0]]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_ndarray<S, D>(array: &ArrayBase<S, D>) -> Result<Tensor>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        check_dims(array.ndim())?;
        let data = match array.as_slice() {
            Some(s) => s.to_vec(),
            None => array.iter().copied().collect(),
        };
        Tensor::from_vec(array.shape(), data)
    }

    /// Copies the `f32` values into an `ndarray::ArrayD` of the tensor's shape (C order; one
    /// readback for a GPU tensor, and no further copy). A `uint32` tensor is an error (read it
    /// with [`Tensor::to_vec_of`]). Feature `ndarray`.
    ///
    /// ```
    /// let t = gpu_linalg::Tensor::from_vec(&[2, 1, 2], vec![1., 2., 3., 4.])?;
    /// let a = t.to_ndarray()?;
    /// assert_eq!(a.shape(), &[2, 1, 2]);
    /// assert_eq!(a[[1, 0, 0]], 3.0);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn to_ndarray(&self) -> Result<ArrayD<f32>> {
        if self.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "Tensor::to_ndarray: tensor of shape {:?} holds {}; use to_vec_of::<u32>()",
                self.shape(),
                self.dtype().name()
            )));
        }
        let shape = self.shape().to_vec();
        ArrayD::from_shape_vec(IxDyn(&shape), self.to_vec()?)
            .map_err(|e| Error::Shape(format!("Tensor::to_ndarray: shape {shape:?}: {e}")))
    }

    /// As [`Tensor::to_ndarray`], typed as an `Array2` (rows × cols): the tensor must be 2-D,
    /// otherwise an error names its shape. Feature `ndarray`.
    ///
    /// ```
    /// let t = gpu_linalg::Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.])?;
    /// assert_eq!(t.to_ndarray2()?, ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
    /// assert!(t.reshape(&[4])?.to_ndarray2().is_err());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn to_ndarray2(&self) -> Result<Array2<f32>> {
        let (r, c) = self.matrix_dims("Tensor::to_ndarray2")?;
        Array2::from_shape_vec((r, c), self.to_vec()?)
            .map_err(|e| Error::Shape(format!("Tensor::to_ndarray2: [{r}, {c}]: {e}")))
    }
}

/// Copies a view (any strides) into a tensor: [`Tensor::from_ndarray`].
impl<D: Dimension> TryFrom<ArrayView<'_, f32, D>> for Tensor {
    type Error = Error;
    fn try_from(view: ArrayView<'_, f32, D>) -> Result<Tensor> {
        Tensor::from_ndarray(&view)
    }
}

/// Moves an owned array into a tensor: without a copy when it is in C order (the default for
/// arrays ndarray builds), with one copy into C order otherwise.
impl<D: Dimension> TryFrom<Array<f32, D>> for Tensor {
    type Error = Error;
    fn try_from(array: Array<f32, D>) -> Result<Tensor> {
        check_dims(array.ndim())?;
        if !array.is_standard_layout() {
            return Tensor::from_ndarray(&array);
        }
        let shape = array.shape().to_vec();
        let len = array.len();
        let (data, offset) = array.into_raw_vec_and_offset();
        let o = offset.unwrap_or(0);
        if len == 0 {
            Tensor::from_vec(&shape, Vec::new())
        } else if o == 0 && data.len() == len {
            Tensor::from_vec(&shape, data)
        } else {
            // A sliced owned array: its elements are one contiguous run inside the buffer.
            let run = data.get(o..o + len).ok_or_else(|| {
                Error::Shape(format!(
                    "ndarray array of shape {shape:?}: buffer too short"
                ))
            })?;
            Tensor::from_vec(&shape, run.to_vec())
        }
    }
}

/// Reads a tensor back as an `ArrayD`: [`Tensor::to_ndarray`].
impl TryFrom<&Tensor> for ArrayD<f32> {
    type Error = Error;
    fn try_from(t: &Tensor) -> Result<ArrayD<f32>> {
        t.to_ndarray()
    }
}
