//! Conversions to and from ndarray, nalgebra and faer: non-contiguous inputs keep their values,
//! round trips are exact, and tensors made by conversion run through both backends.
#![cfg(all(feature = "ndarray", feature = "nalgebra", feature = "faer"))]

mod common;

use gpu_linalg::{DType, Location, Tensor};
use nalgebra::DMatrix;
use ndarray::{Array, Array2, ArrayD, Axis, IxDyn};

fn seq(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()
}

/// Row-major matmul on the host, for the expected values.
fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn ndarray_transposed_and_permuted_views_round_trip() {
    let a = Array2::from_shape_vec((3, 4), seq(12)).unwrap();
    let at = a.t();
    assert!(!at.is_standard_layout());
    let t = Tensor::from_ndarray(&at).unwrap();
    assert_eq!(t.shape(), &[4, 3]);
    assert_eq!(t.to_ndarray2().unwrap(), at.to_owned());
    assert_eq!(t.to_ndarray().unwrap(), at.to_owned().into_dyn());

    let b = Array::from_shape_vec((2, 3, 4), seq(24)).unwrap();
    let p = b.view().permuted_axes([2, 0, 1]);
    let t = Tensor::try_from(p.view()).unwrap();
    assert_eq!(t.shape(), &[4, 2, 3]);
    let back: ArrayD<f32> = (&t).try_into().unwrap();
    assert_eq!(back, p.to_owned().into_dyn());

    // A strided slice, an ArrayViewMut, a 0-d array and an owned C-order array (moved).
    let mut c = Array::from_shape_vec((4, 6), seq(24)).unwrap();
    let s = c.slice(ndarray::s![1..4;2, ..;3]);
    assert_eq!(
        Tensor::from_ndarray(&s).unwrap().to_ndarray().unwrap(),
        s.to_owned().into_dyn()
    );
    let vm = c.view_mut();
    assert_eq!(
        Tensor::from_ndarray(&vm).unwrap().to_vec().unwrap(),
        seq(24)
    );
    let z = Array::from_elem(IxDyn(&[]), 2.5f32);
    let tz = Tensor::from_ndarray(&z).unwrap();
    assert_eq!((tz.ndim(), tz.to_vec().unwrap()), (0, vec![2.5]));
    let owned = Tensor::try_from(Array::from_shape_vec((2, 2, 2, 3), seq(24)).unwrap()).unwrap();
    assert_eq!(owned.shape(), &[2, 2, 2, 3]);
    assert_eq!(owned.to_vec().unwrap(), seq(24));
    // A sliced owned array keeps only its run; a transposed owned array is copied into C order.
    let sliced = c.clone().slice_move(ndarray::s![2.., ..]);
    assert_eq!(
        Tensor::try_from(sliced.clone()).unwrap().to_vec().unwrap(),
        sliced.iter().copied().collect::<Vec<_>>()
    );
    let rev = c.clone().reversed_axes();
    assert_eq!(
        Tensor::try_from(rev.clone()).unwrap().to_ndarray().unwrap(),
        rev.into_dyn()
    );
    let _ = c.index_axis(Axis(0), 0);
}

#[test]
fn ndarray_errors_name_the_problem() {
    let five = Array::from_elem(IxDyn(&[1, 1, 1, 1, 2]), 0.0f32);
    let e = Tensor::from_ndarray(&five).unwrap_err().to_string();
    assert!(e.contains("5 dims") && e.contains('4'), "{e}");
    let e = Tensor::from_vec(&[2, 2, 1], vec![0.0; 4])
        .unwrap()
        .to_ndarray2()
        .unwrap_err()
        .to_string();
    assert!(e.contains("2-D") && e.contains("[2, 2, 1]"), "{e}");
    let idx = Tensor::from_slice(&[2], &[1u32, 2]).unwrap();
    let e = idx.to_ndarray().unwrap_err().to_string();
    assert!(e.contains("uint32"), "{e}");
}

#[test]
fn nalgebra_column_major_matrices_and_views_round_trip() {
    let m = DMatrix::from_fn(5, 4, |i, j| (i * 10 + j) as f32);
    let t = Tensor::from_nalgebra(&m).unwrap();
    assert_eq!(t.shape(), &[5, 4]);
    let v = t.to_vec().unwrap();
    assert_eq!((v[1], v[4]), (1.0, 10.0)); // row-major in the tensor
    assert_eq!(t.to_nalgebra().unwrap(), m);

    let view = m.view((1, 1), (3, 2));
    let tv = Tensor::try_from(view).unwrap();
    assert_eq!(tv.shape(), &[3, 2]);
    assert_eq!(tv.to_nalgebra().unwrap(), view.clone_owned());
    // A view with a column step (non-unit strides both ways) and a transposed matrix.
    let stepped = m.view_with_steps((0, 0), (3, 2), (1, 1));
    assert_eq!(
        Tensor::from_nalgebra(&stepped)
            .unwrap()
            .to_nalgebra()
            .unwrap(),
        stepped.clone_owned()
    );
    let mt = m.transpose();
    let back: DMatrix<f32> = (&Tensor::try_from(&mt).unwrap()).try_into().unwrap();
    assert_eq!(back, mt);
    let e = Tensor::from_vec(&[4], vec![0.0; 4])
        .unwrap()
        .to_nalgebra()
        .unwrap_err();
    assert!(e.to_string().contains("2-D"), "{e}");
}

#[test]
fn faer_submatrices_and_transposes_round_trip() {
    let m = faer::Mat::<f32>::from_fn(6, 5, |i, j| (i * 10 + j) as f32);
    let sub = m.as_ref().submatrix(1, 2, 4, 3);
    let t = Tensor::from_faer(sub).unwrap();
    assert_eq!(t.shape(), &[4, 3]);
    assert_eq!(t.to_vec().unwrap()[..3], [12.0, 13.0, 14.0]);
    assert_eq!(t.to_faer().unwrap(), sub.to_owned());

    let tr = m.as_ref().transpose();
    let tt = Tensor::try_from(tr).unwrap();
    assert_eq!(tt.shape(), &[5, 6]);
    assert_eq!(tt.to_faer().unwrap(), tr.to_owned());
    let sub_t = sub.transpose().reverse_rows();
    assert_eq!(
        Tensor::from_faer(sub_t).unwrap().to_faer().unwrap(),
        sub_t.to_owned()
    );
    let back: faer::Mat<f32> = (&Tensor::try_from(&m).unwrap()).try_into().unwrap();
    assert_eq!(back, m);
    let e = Tensor::from_slice(&[3], &[1u32, 2, 3])
        .unwrap()
        .to_faer()
        .unwrap_err();
    assert!(e.to_string().contains("uint32"), "{e}");
}

#[test]
fn typed_slices_take_f32_and_u32_and_name_other_types() {
    let t = Tensor::from_slice(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(t.to_vec_of::<f32>().unwrap(), t.to_vec().unwrap());
    let u = Tensor::from_slice(&[3], &[7u32, 8, 9]).unwrap();
    assert_eq!(
        (u.dtype(), u.to_vec_of::<u32>().unwrap()),
        (DType::U32, vec![7, 8, 9])
    );
    let e = Tensor::from_slice(&[2], &[1u8, 2]).unwrap_err().to_string();
    assert!(e.contains("u8"), "{e}");
    let e = t.to_vec_of::<f64>().unwrap_err().to_string();
    assert!(e.contains("f64"), "{e}");
    let e = u.to_vec_of::<f32>().unwrap_err().to_string();
    assert!(e.contains("uint32") && e.contains("float32"), "{e}");
    let e = Tensor::from_slice(&[2, 2], &[1.0f32])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 2]"), "{e}");
}

/// Upload by conversion, run an op on each backend, convert back: the values of the
/// non-contiguous inputs survive the trip.
#[test]
fn converted_tensors_run_through_both_backends() {
    let (m, k, n) = (5, 7, 3);
    // A = the transpose of a k×m ndarray; B = a column-major nalgebra matrix; C = a faer view.
    let a_store = Array2::from_shape_vec((k, m), seq(k * m)).unwrap();
    let a_view = a_store.t();
    let a_vals: Vec<f32> = a_view.iter().copied().collect();
    let b_mat = DMatrix::from_fn(k, n, |i, j| (i as f32) - 2.0 * j as f32);
    let b_vals: Vec<f32> = (0..k)
        .flat_map(|i| (0..n).map(move |j| (i as f32) - 2.0 * j as f32))
        .collect();
    let f = faer::Mat::<f32>::from_fn(n + 2, m + 1, |i, j| (i + 2 * j) as f32 * 0.25);
    let c_view = f
        .as_ref()
        .submatrix(1, 0, n, m + 1)
        .transpose()
        .submatrix(0, 0, m, n);
    let c_vals: Vec<f32> = (0..m)
        .flat_map(|i| (0..n).map(move |j| ((j + 1) + 2 * i) as f32 * 0.25))
        .collect();
    let want = matmul_ref(&a_vals, &b_vals, m, k, n);
    // The CPU context always, the GPU one when an adapter exists.
    let cpu = common::cpu();
    for ctx in [Some(&cpu), common::gpu()].into_iter().flatten() {
        let a = Tensor::from_ndarray(&a_view).unwrap();
        let b = Tensor::from_nalgebra(&b_mat).unwrap();
        let ab = ctx.matmul(&a, &b).unwrap();
        let want_loc = if ctx.is_gpu() {
            Location::Gpu
        } else {
            Location::Host
        };
        assert_eq!(ab.location(), want_loc);
        let got = ab.to_ndarray2().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{} {g} vs {w}",
                ctx.description()
            );
        }
        let via_na = ab.to_nalgebra().unwrap();
        assert_eq!(
            via_na,
            DMatrix::from_row_slice(m, n, &got.iter().copied().collect::<Vec<_>>())
        );
        let c = Tensor::from_faer(c_view).unwrap();
        assert_eq!(c.to_vec().unwrap(), c_vals);
        let sum = ctx.add(&ab, &c).unwrap().to_faer().unwrap();
        for i in 0..m {
            for j in 0..n {
                let w = want[i * n + j] + c_vals[i * n + j];
                assert!(
                    (sum[(i, j)] - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{i},{j}"
                );
            }
        }
        // The u32 path: argmax on the backend, read back typed.
        let idx = ctx.argmax(&ab, Some(1)).unwrap();
        assert_eq!(idx.to_vec_of::<u32>().unwrap().len(), m);
    }
}

/// With the `half` feature, the half crate's f16 and bf16 build float16 and bfloat16 tensors
/// and read them back, bit for bit, through a GPU upload and download too.
#[cfg(feature = "half")]
#[test]
fn half_crate_types_round_trip() {
    let f = [
        half::f16::from_f32(1.5),
        half::f16::from_f32(-0.0),
        half::f16::MAX,
        half::f16::NAN,
    ];
    let t = Tensor::from_slice(&[2, 2], &f).unwrap();
    assert_eq!(t.dtype(), DType::F16);
    let bits = |v: &[half::f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&t.to_vec_of::<half::f16>().unwrap()), bits(&f));
    assert_eq!(t.to_vec().unwrap()[0], 1.5);
    let b = [half::bf16::from_f32(3.0), half::bf16::from_f32(-1e30)];
    let tb = Tensor::from_slice(&[2], &b).unwrap();
    assert_eq!(tb.dtype(), DType::BF16);
    assert_eq!(tb.to_vec_of::<half::bf16>().unwrap(), b);
    assert!(tb
        .to_vec_of::<half::f16>()
        .unwrap_err()
        .to_string()
        .contains("bfloat16"));
    if let Some(ctx) = common::gpu() {
        // Up and back through the GPU (a cast to the same type is the tensor itself).
        let g = ctx
            .cast(&ctx.cast(&t, DType::F32).unwrap(), DType::F16)
            .unwrap();
        assert_eq!(bits(&g.to_vec_of::<half::f16>().unwrap()), bits(&f));
    }
}
