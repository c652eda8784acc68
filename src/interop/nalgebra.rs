//! `nalgebra` 0.33 conversions (feature `nalgebra`).

use ::nalgebra::{DMatrix, DMatrixView, Dim, Matrix, RawStorage};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// Copies a nalgebra matrix of `f32` — `DMatrix`, a static-size `SMatrix`, or a view such
    /// as `DMatrixView` with any strides — into a 2-D host tensor `[nrows, ncols]`. nalgebra
    /// stores column-major and a tensor row-major, so the storage order is transposed on the
    /// way (the matrix is the same). Feature `nalgebra`.
    ///
    /// ```
    /// use gpu_linalg::{Backend, Context, Tensor};
    /// use nalgebra::DMatrix;
    ///
    /// let m = DMatrix::from_row_slice(2, 3, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// let t = Tensor::from_nalgebra(&m)?;
    /// assert_eq!((t.shape(), t.to_vec()?), (&[2, 3][..], vec![1., 2., 3., 4., 5., 6.]));
    ///
    /// let ctx = Context::with_backend(Backend::Cpu)?;
    /// let right = Tensor::from_nalgebra(&m.view((0, 1), (2, 2)))?; // columns 1..3
    /// let p = ctx.matmul(&right, &right)?.to_nalgebra()?;
    /// assert_eq!(p, m.view((0, 1), (2, 2)) * m.view((0, 1), (2, 2)));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn from_nalgebra<R, C, S>(matrix: &Matrix<f32, R, C, S>) -> Result<Tensor>
    where
        R: Dim,
        C: Dim,
        S: RawStorage<f32, R, C>,
    {
        let (r, c) = matrix.shape();
        let mut data = Vec::with_capacity(r * c);
        for i in 0..r {
            data.extend((0..c).map(|j| matrix[(i, j)]));
        }
        Tensor::from_vec(&[r, c], data)
    }

    /// Copies a 2-D `float32` tensor into a `nalgebra::DMatrix` (column-major storage, so the
    /// order is transposed on the way; one readback for a GPU tensor). Other shapes or dtypes
    /// are an error naming them. Feature `nalgebra`.
    ///
    /// ```
    /// let t = gpu_linalg::Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.])?;
    /// let m = t.to_nalgebra()?;
    /// assert_eq!((m[(0, 1)], m[(1, 0)]), (2.0, 3.0));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn to_nalgebra(&self) -> Result<DMatrix<f32>> {
        let (r, c) = self.matrix_dims("Tensor::to_nalgebra")?;
        Ok(DMatrix::from_row_slice(r, c, &self.to_vec()?))
    }
}

/// Copies a matrix into a 2-D tensor: [`Tensor::from_nalgebra`].
impl TryFrom<&DMatrix<f32>> for Tensor {
    type Error = Error;
    fn try_from(m: &DMatrix<f32>) -> Result<Tensor> {
        Tensor::from_nalgebra(m)
    }
}

/// Copies a matrix view (any strides) into a 2-D tensor: [`Tensor::from_nalgebra`].
impl TryFrom<DMatrixView<'_, f32>> for Tensor {
    type Error = Error;
    fn try_from(m: DMatrixView<'_, f32>) -> Result<Tensor> {
        Tensor::from_nalgebra(&m)
    }
}

/// Reads a 2-D tensor back as a `DMatrix`: [`Tensor::to_nalgebra`].
impl TryFrom<&Tensor> for DMatrix<f32> {
    type Error = Error;
    fn try_from(t: &Tensor) -> Result<DMatrix<f32>> {
        t.to_nalgebra()
    }
}
