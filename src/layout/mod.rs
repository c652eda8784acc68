//! Tensor layout ops with numpy semantics: `permute` / `transpose`, `slice` (start, stop,
//! step per axis, negative indices and steps) and `concat` — on the GPU (one strided-copy
//! kernel, `shaders/layout.wgsl`) or the CPU. (`reshape` is free: [`Tensor::reshape`].)

pub mod cpu;

/// `shaders/layout.wgsl`.
const SOURCE: &str = include_str!("../../shaders/layout.wgsl");

/// The layout module with `divmod` prepended.
pub(crate) fn module_source() -> String {
    format!("{}\n{SOURCE}", shader::DIVMOD)
}

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::shader;
use crate::runtime::trusted_pipeline;
use crate::runtime::{check_windows, run_pass, window_align, window_budget, Window};
use crate::runtime::{Gpu, GpuBuffer};
use crate::tensor::host_values;
use crate::tensor::{element_count, DType, Tensor};

mod plan;
pub use plan::*;

fn i32_of(v: isize, what: &str) -> Result<u32> {
    i32::try_from(v).map(|x| x as u32).map_err(|_| {
        Error::InvalidArgument(format!("{what} {v} exceeds the GPU's 32-bit index range"))
    })
}

/// The plan's region merged where both sides walk contiguously (size-1 dims dropped):
/// 4-slot right-aligned (shape, input strides, output strides) and the dims left.
fn collapse(p: &CopyPlan) -> ([usize; 4], [isize; 4], [isize; 4], usize) {
    let mut dims: Vec<(usize, isize, isize)> = Vec::new(); // innermost first
    for k in (0..p.shape.len()).rev() {
        let (n, is, os) = (p.shape[k], p.istride[k], p.ostride[k]);
        if n == 1 {
            continue;
        }
        match dims.last_mut() {
            Some((m, a, b)) if is == *a * *m as isize && os == *b * *m as isize => *m *= n,
            _ => dims.push((n, is, os)),
        }
    }
    let (mut s, mut a, mut b) = ([1usize; 4], [0isize; 4], [0isize; 4]);
    for (j, &(n, x, y)) in dims.iter().enumerate() {
        s[3 - j] = n;
        a[3 - j] = x;
        b[3 - j] = y;
    }
    (s, a, b, dims.len().max(1))
}

crate::kernel_params! {
    /// The kernel's uniform block (`CopyParams` in shaders/layout.wgsl).
    struct CopyParams: "CopyParams" {
        n: u32,
        ibase: u32,
        obase: u32,
        _pad: u32,
        shape: [u32; 4],
        istride: [i32; 4],
        ostride: [i32; 4],
        inv: [f32; 4],
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![CopyParams::layout(module_source())]
}

/// The parameters of one dispatch: the region `shape` (merged, 4 slots) with the given
/// strides, from element `ibase` of the bound input window to element `obase` of the output
/// window.
fn tile_params(
    shape: [usize; 4],
    (is, os): ([isize; 4], [isize; 4]),
    ibase: usize,
    obase: usize,
) -> Result<CopyParams> {
    let n: usize = shape.iter().product();
    let i = |v: isize, what: &str| i32_of(v, what).map(|x| x as i32);
    let mut p = CopyParams {
        n: i32_of(n as isize, "element count")?,
        ibase: i32_of(ibase as isize, "offset")?,
        obase: i32_of(obase as isize, "offset")?,
        inv: shape.map(|d| (1.0 / d.max(1) as f64) as f32),
        ..Default::default()
    };
    for k in 0..4 {
        p.shape[k] = i32_of(shape[k] as isize, "dimension")?;
        p.istride[k] = i(is[k], "stride")?;
        p.ostride[k] = i(os[k], "stride")?;
    }
    Ok(p)
}

/// Most dispatches one copy may be split into before it is refused.
const MAX_TILES: usize = 4096;

/// Tile sizes over the merged region `shape` such that a tile spans at most `budget` elements
/// of the input (strides `is`) and of the output (strides `os`): starting from the whole
/// region, the dim contributing most to a span that is too long is halved until both fit.
pub(crate) fn tile_shape(
    shape: [usize; 4],
    is: [isize; 4],
    os: [isize; 4],
    budget: usize,
) -> [usize; 4] {
    let span = |t: &[usize; 4], s: &[isize; 4]| {
        1 + (0..4)
            .map(|k| (t[k] - 1) * s[k].unsigned_abs())
            .sum::<usize>()
    };
    let mut t = shape;
    loop {
        let s = if span(&t, &is) > budget {
            &is
        } else if span(&t, &os) > budget {
            &os
        } else {
            return t;
        };
        // A span above budget ≥ 1 has a dim with t > 1 and a nonzero stride.
        let Some(k) = (0..4).max_by_key(|&k| (t[k] - 1) * s[k].unsigned_abs()) else {
            return t;
        };
        if t[k] <= 1 {
            return t;
        }
        t[k] = t[k].div_ceil(2);
    }
}

/// Runs `plan` on the GPU from `x` (of `x_len` elements) into `y` (of `y_len`).
///
/// A plan whose input or output span exceeds one storage binding is split into tiles of its
/// merged region ([`tile_shape`]); each dispatch binds the aligned windows of `x` and `y` that
/// cover the lowest to the highest element its tile reads and writes (strides may be negative)
/// and passes the tile's first elements inside those windows as `ibase` / `obase`.
fn copy_gpu(
    gpu: &Arc<Gpu>,
    plan: &CopyPlan,
    (x, x_len): (&Arc<GpuBuffer>, usize),
    (y, y_len): (&Arc<GpuBuffer>, usize),
) -> Result<()> {
    let n = element_count(&plan.shape)?;
    if n == 0 {
        return Ok(());
    }
    let (shape, is, os, ndim) = collapse(plan);
    let t = tile_shape(shape, is, os, window_budget(gpu));
    let counts: Vec<usize> = (0..4).map(|k| shape[k].div_ceil(t[k])).collect();
    let tiles: usize = counts.iter().product();
    if tiles > MAX_TILES {
        return Err(Error::OutOfMemory(format!(
            "a strided copy of shape {:?} ({} bytes) would need {tiles} windows of at most \
             this adapter's max_storage_buffer_binding_size of {} bytes; it is not split that \
             finely (copy it in smaller pieces)",
            plan.shape,
            n * 4,
            gpu.limits.max_storage_buffer_binding_size
        )));
    }
    // SAFETY: shaders/layout.wgsl guards each element index against the tile's `n` and reads
    // and writes at offsets derived from the copy plan's strides inside the bound windows
    // (tiles are chosen so both spans fit them); its loops are bounded by EPT and NDIM.
    let kernel = unsafe {
        trusted_pipeline(
            gpu,
            &format!("layout/strided_copy/{ndim}"),
            "layout.wgsl",
            module_source,
            "strided_copy",
            &[("WG", 64.0), ("EPT", 4.0), ("NDIM", ndim as f64)],
        )
    }?;
    let align = window_align(gpu);
    let (x_bytes, y_bytes) = (x.buffer().size(), y.buffer().size());
    for tile in 0..tiles {
        // Tile coordinates, the last dim fastest.
        let (mut rest, mut start, mut local) = (tile, [0usize; 4], [1usize; 4]);
        for k in (0..4).rev() {
            start[k] = rest % counts[k] * t[k];
            rest /= counts[k];
            local[k] = t[k].min(shape[k] - start[k]);
        }
        // (first element, lowest, one past the highest) of a tile with strides `s` from `base`.
        let bounds = |base: usize, s: &[isize; 4]| {
            let mut first = base as isize;
            let (mut lo, mut hi) = (0isize, 0isize);
            for k in 0..4 {
                first += start[k] as isize * s[k];
                let reach = (local[k] as isize - 1) * s[k];
                lo += reach.min(0);
                hi += reach.max(0);
            }
            (first, first + lo, first + hi + 1)
        };
        let (fi, li, hi) = bounds(plan.ibase, &is);
        let (fo, lo, ho) = bounds(plan.obase, &os);
        // The plan keeps every element in 0..x_len and 0..y_len (its shape and strides come
        // from the tensors), so each tile's range does too.
        if li < 0 || lo < 0 || hi as usize > x_len || ho as usize > y_len {
            return Err(Error::InvalidArgument(format!(
                "strided copy of shape {:?} reaches outside its tensors",
                plan.shape
            )));
        }
        let wi = Window::covering(li as usize, hi as usize, align, x_bytes);
        let wo = Window::covering(lo as usize, ho as usize, align, y_bytes);
        check_windows(gpu, &[wi, wo], "strided copy")?;
        let params = tile_params(
            local,
            (is, os),
            fi as usize - (wi.offset / 4) as usize,
            fo as usize - (wo.offset / 4) as usize,
        )?;
        let entries = [(1, wi.of(x)), (2, wo.of(y))];
        let m: usize = local.iter().product();
        run_pass(
            gpu,
            &kernel,
            &params,
            &entries,
            m.div_ceil(256),
            "strided copy",
        )?;
    }
    Ok(())
}

fn check_f32(t: &Tensor, op: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::InvalidArgument(format!(
            "{op}: tensor of shape {:?} is {}; expected float32",
            t.shape(),
            t.dtype().name()
        )));
    }
    Ok(())
}

impl Context {
    /// Runs a gather plan (contiguous output of `plan.shape`) on this context's backend.
    fn gather(&self, op: &str, x: &Tensor, plan: &CopyPlan) -> Result<Tensor> {
        check_f32(x, op)?;
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let xb = self.resident(x)?;
                let n = element_count(&plan.shape)?;
                let out = gpu.scoped(op, || -> Result<Arc<GpuBuffer>> {
                    let y = gpu.alloc((n * 4) as u64, op)?;
                    copy_gpu(gpu, plan, (&xb, x.len()), (&y, n))?;
                    Ok(y)
                })??;
                Ok(Tensor::from_gpu(plan.shape.clone(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let v = crate::layout::cpu::gather(plan, &host_values(x)?);
            return self.tensor(&plan.shape, &v);
        }
        let v = crate::layout::cpu::gather(plan, &host_values(x)?);
        Tensor::from_vec(&plan.shape, v)
    }

    /// `numpy.transpose(x, axes)`: result axis i is input axis `axes[i]` (negative axes count
    /// from the end). The result is a contiguous copy.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    /// let y = ctx.permute(&x, &[1, 0])?;
    /// assert_eq!(y.shape(), &[3, 2]);
    /// assert_eq!(y.to_vec()?, vec![1., 4., 2., 5., 3., 6.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn permute(&self, x: &Tensor, axes: &[isize]) -> Result<Tensor> {
        let plan = permute_plan(x.shape(), axes)?;
        self.gather("permute", x, &plan)
    }

    /// `x.T` (numpy): the axes reversed.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    /// let t = ctx.transpose(&x)?;
    /// assert_eq!((t.shape(), t.to_vec()?), (&[3, 2][..], vec![1., 4., 2., 5., 3., 6.]));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn transpose(&self, x: &Tensor) -> Result<Tensor> {
        let axes: Vec<isize> = (0..x.ndim() as isize).rev().collect();
        self.permute(x, &axes)
    }

    /// `x[s0, s1, ...]` with numpy slices (`start:stop:step`, negative indices and steps,
    /// ends clamped); axes without a slice are taken whole. The result is a contiguous copy.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::Slice;
    /// let x = ctx.tensor(&[5], &[0., 1., 2., 3., 4.])?;
    /// let y = ctx.slice(&x, &[Slice::new(Some(-1), None, -2)])?; // x[-1::-2]
    /// assert_eq!(y.to_vec()?, vec![4., 2., 0.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn slice(&self, x: &Tensor, specs: &[Slice]) -> Result<Tensor> {
        let plan = slice_plan(x.shape(), specs)?;
        self.gather("slice", x, &plan)
    }

    /// The indices `start..stop` of one axis, every other axis whole: `x[:, start:stop]` for
    /// axis 1 of a 2-D tensor.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let x = ctx.tensor(&[2, 3], &[0., 1., 2., 3., 4., 5.])?;
    /// assert_eq!(ctx.slice_axis(&x, 1, 1, 3)?.to_vec()?, vec![1., 2., 4., 5.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn slice_axis(&self, x: &Tensor, axis: usize, start: usize, stop: usize) -> Result<Tensor> {
        if axis >= x.ndim().max(1) {
            return Err(Error::Shape(format!(
                "slice_axis: axis {axis} of a tensor of shape {:?}",
                x.shape()
            )));
        }
        let specs: Vec<Slice> = (0..x.ndim())
            .map(|d| {
                if d == axis {
                    Slice::range(start as isize, stop as isize)
                } else {
                    Slice::all()
                }
            })
            .collect();
        self.slice(x, &specs)
    }

    /// `numpy.concatenate(tensors, axis)`: every dim but `axis` must agree.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[1, 2], &[1., 2.])?;
    /// let b = ctx.tensor(&[2, 2], &[3., 4., 5., 6.])?;
    /// let c = ctx.concat(&[&a, &b], 0)?;
    /// assert_eq!((c.shape(), c.to_vec()?), (&[3, 2][..], vec![1., 2., 3., 4., 5., 6.]));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn concat(&self, tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        for t in tensors {
            check_f32(t, "concat")?;
        }
        let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
        let (shape, ax) = concat_shape(&shapes, axis)?;
        let n = element_count(&shape)?;
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let bufs = tensors
                    .iter()
                    .map(|t| self.resident(t))
                    .collect::<Result<Vec<_>>>()?;
                let ostride = contiguous_strides(&shape);
                let out = gpu.scoped("concat", || -> Result<Arc<GpuBuffer>> {
                    let y = gpu.alloc((n * 4) as u64, "concat")?;
                    let mut off = 0usize;
                    for (t, b) in tensors.iter().zip(&bufs) {
                        let plan = CopyPlan {
                            shape: t.shape().to_vec(),
                            ibase: 0,
                            istride: contiguous_strides(t.shape()),
                            obase: off * ostride[ax] as usize,
                            ostride: ostride.clone(),
                        };
                        copy_gpu(gpu, &plan, (b, t.len()), (&y, n))?;
                        off += t.shape()[ax];
                    }
                    Ok(y)
                })??;
                Ok(Tensor::from_gpu(shape.clone(), DType::F32, out))
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
        }
        let hosts = tensors
            .iter()
            .map(|t| host_values(t))
            .collect::<Result<Vec<_>>>()?;
        let parts: Vec<(&[f32], &[usize])> = hosts
            .iter()
            .zip(tensors)
            .map(|(h, t)| (h.as_ref(), t.shape()))
            .collect();
        let v = crate::layout::cpu::concat(&parts, &shape, ax);
        if self.gpu().is_some() {
            return self.tensor(&shape, &v);
        }
        Tensor::from_vec(&shape, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_resolve_like_python() {
        let r = |s: Slice, n| s.resolve(n, 0).unwrap();
        assert_eq!(r(Slice::all(), 5), (0, 5));
        assert_eq!(r(Slice::range(1, -1), 5), (1, 3));
        assert_eq!(r(Slice::reversed(), 5), (4, 5));
        assert_eq!(r(Slice::new(Some(-1), None, -2), 5), (4, 3));
        assert_eq!(r(Slice::new(Some(10), Some(-10), -3), 5), (4, 2));
        assert_eq!(r(Slice::range(3, 1), 5), (0, 0));
        assert_eq!(r(Slice::all(), 0), (0, 0));
        assert!(Slice::new(None, None, 0).resolve(3, 1).is_err());
    }

    #[test]
    fn permute_and_concat_check_their_arguments() {
        assert!(permute_plan(&[2, 3], &[0, 0]).is_err());
        assert!(permute_plan(&[2, 3], &[0]).is_err());
        assert!(permute_plan(&[2, 3], &[0, 2]).is_err());
        assert_eq!(
            permute_plan(&[2, 3, 4], &[-1, 0, 1]).unwrap().shape,
            vec![4, 2, 3]
        );
        assert_eq!(
            concat_shape(&[&[2, 3], &[2, 5]], -1).unwrap(),
            (vec![2, 8], 1)
        );
        assert!(concat_shape(&[&[2, 3], &[3, 3]], 1).is_err());
        assert!(concat_shape(&[&[], &[]], 0).is_err());
    }

    #[test]
    fn tiles_bound_both_spans() {
        // A 6000 × 6144 transpose (input strides [1, 6144], output [6000, 1]) under a budget of
        // 2^25 elements: both dims are halved once, 4 tiles.
        let t = tile_shape(
            [1, 1, 6144, 6000],
            [0, 0, 1, 6144],
            [0, 0, 6000, 1],
            1 << 25,
        );
        assert_eq!(t, [1, 1, 3072, 3000]);
        // A contiguous copy that fits is one tile.
        let t = tile_shape([1, 1, 1, 1000], [0, 0, 0, 1], [0, 0, 0, 1], 1 << 25);
        assert_eq!(t, [1, 1, 1, 1000]);
        // Negative strides count by magnitude.
        let t = tile_shape([1, 1, 1, 100], [0, 0, 0, -1], [0, 0, 0, 1], 30);
        assert_eq!(t, [1, 1, 1, 25]);
    }
}
