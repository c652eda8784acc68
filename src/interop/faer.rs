//! `faer` 0.24 conversions (feature `faer`; faer itself is always a dependency).

use ::faer::{Mat, MatRef};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// Copies a faer matrix view of `f32` with any row and column strides (a `submatrix`, a
    /// `transpose`, a reversed view) into a 2-D host tensor `[nrows, ncols]`, row-major. Rows
    /// with unit column stride are copied as slices. Pass `mat.as_ref()` for an owned `Mat`.
    /// Feature `faer`.
    ///
    /// ```
    /// use gpu_linalg::{Backend, Context, Tensor};
    ///
    /// let m = faer::Mat::<f32>::from_fn(3, 3, |i, j| (3 * i + j) as f32);
    /// let t = Tensor::from_faer(m.as_ref().transpose())?;
    /// assert_eq!(t.to_vec()?, vec![0., 3., 6., 1., 4., 7., 2., 5., 8.]);
    ///
    /// let ctx = Context::with_backend(Backend::Cpu)?;
    /// let s = Tensor::from_faer(m.as_ref().submatrix(1, 1, 2, 2))?; // [[4, 5], [7, 8]]
    /// let p = ctx.matmul(&s, &s)?.to_faer()?;
    /// assert_eq!(p[(0, 0)], 4. * 4. + 5. * 7.);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_faer(matrix: MatRef<'_, f32>) -> Result<Tensor> {
        let (r, c) = (matrix.nrows(), matrix.ncols());
        let mut data = Vec::with_capacity(r * c);
        match matrix.try_as_row_major() {
            Some(rm) => {
                for i in 0..r {
                    data.extend_from_slice(rm.row(i).as_slice());
                }
            }
            None => {
                for i in 0..r {
                    data.extend((0..c).map(|j| matrix[(i, j)]));
                }
            }
        }
        Tensor::from_vec(&[r, c], data)
    }

    /// Copies a 2-D `float32` tensor into a `faer::Mat` (one readback for a GPU tensor). Other
    /// shapes or dtypes are an error naming them. Feature `faer`.
    ///
    /// ```
    /// let t = gpu_linalg::Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.])?;
    /// let m = t.to_faer()?;
    /// assert_eq!((m.nrows(), m.ncols(), m[(1, 0)]), (2, 3, 4.0));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn to_faer(&self) -> Result<Mat<f32>> {
        let (r, c) = self.matrix_dims("Tensor::to_faer")?;
        let v = self.to_vec()?;
        Ok(Mat::from_fn(r, c, |i, j| v[i * c + j]))
    }
}

/// Copies a view (any strides) into a 2-D tensor: [`Tensor::from_faer`].
impl TryFrom<MatRef<'_, f32>> for Tensor {
    type Error = Error;
    fn try_from(m: MatRef<'_, f32>) -> Result<Tensor> {
        Tensor::from_faer(m)
    }
}

/// Copies an owned matrix into a 2-D tensor: [`Tensor::from_faer`].
impl TryFrom<&Mat<f32>> for Tensor {
    type Error = Error;
    fn try_from(m: &Mat<f32>) -> Result<Tensor> {
        Tensor::from_faer(m.as_ref())
    }
}

/// Reads a 2-D tensor back as a `Mat`: [`Tensor::to_faer`].
impl TryFrom<&Tensor> for Mat<f32> {
    type Error = Error;
    fn try_from(t: &Tensor) -> Result<Mat<f32>> {
        t.to_faer()
    }
}
