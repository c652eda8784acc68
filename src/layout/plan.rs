//! The layout plan: shapes and options, shared by the GPU and the CPU path.

use crate::error::{Error, Result};
use crate::tensor::MAX_DIMS;

/// One axis of a [`Context::slice`](crate::Context::slice): numpy's `start:stop:step` (`None` = the default end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// First index (negative counts from the end); `None`: 0, or the last for a negative step.
    pub start: Option<isize>,
    /// One past the last index (negative counts from the end); `None`: the end (or the
    /// beginning for a negative step).
    pub stop: Option<isize>,
    /// Step; not 0.
    pub step: isize,
}

impl Default for Slice {
    fn default() -> Self {
        Slice::all()
    }
}

impl Slice {
    /// `:` — the whole axis.
    pub const fn all() -> Slice {
        Slice {
            start: None,
            stop: None,
            step: 1,
        }
    }

    /// `start:stop`.
    pub const fn range(start: isize, stop: isize) -> Slice {
        Slice {
            start: Some(start),
            stop: Some(stop),
            step: 1,
        }
    }

    /// `start:stop:step` with optional ends.
    pub const fn new(start: Option<isize>, stop: Option<isize>, step: isize) -> Slice {
        Slice { start, stop, step }
    }

    /// `::-1` — the axis reversed.
    pub const fn reversed() -> Slice {
        Slice {
            start: None,
            stop: None,
            step: -1,
        }
    }

    /// (first index, count) on an axis of length `len`, as numpy's `PySlice_AdjustIndices`.
    pub fn resolve(&self, len: usize, axis: usize) -> Result<(usize, usize)> {
        if self.step == 0 {
            return Err(Error::InvalidArgument(format!(
                "slice step on axis {axis} is 0"
            )));
        }
        let n = len as isize;
        let step = self.step;
        let adjust = |v: isize, lo: isize, hi: isize| -> isize {
            let v = if v < 0 { v + n } else { v };
            v.clamp(lo, hi)
        };
        let (start, count) = if step > 0 {
            let start = self.start.map_or(0, |s| adjust(s, 0, n));
            let stop = self.stop.map_or(n, |s| adjust(s, 0, n));
            let count = if stop > start {
                (stop - start + step - 1) / step
            } else {
                0
            };
            (start, count)
        } else {
            let start = self.start.map_or(n - 1, |s| adjust(s, -1, n - 1));
            let stop = self.stop.map_or(-1, |s| adjust(s, -1, n - 1));
            let count = if start > stop {
                (start - stop - 1) / (-step) + 1
            } else {
                0
            };
            (start, count)
        };
        Ok((if count > 0 { start as usize } else { 0 }, count as usize))
    }
}

/// A strided copy: `y[obase + Σ c·ostride] = x[ibase + Σ c·istride]` over every coordinate `c`
/// of `shape` (the work of every layout op).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// The region copied (≤ 4 dims).
    pub shape: Vec<usize>,
    /// First input element.
    pub ibase: usize,
    /// Input strides, elements (negative for reversed slices).
    pub istride: Vec<isize>,
    /// First output element.
    pub obase: usize,
    /// Output strides, elements.
    pub ostride: Vec<isize>,
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (k, &d) in shape.iter().enumerate().rev() {
        s[k] = acc;
        acc *= d as isize;
    }
    s
}

pub(crate) fn norm_axis(axis: isize, ndim: usize, what: &str, shape: &[usize]) -> Result<usize> {
    let n = ndim as isize;
    let a = if axis < 0 { axis + n } else { axis };
    if a < 0 || a >= n {
        return Err(Error::InvalidArgument(format!(
            "{what}: axis {axis} is out of range for shape {shape:?} ({ndim} dims)"
        )));
    }
    Ok(a as usize)
}

/// The plan and result shape of `permute(x, axes)`.
pub fn permute_plan(shape: &[usize], axes: &[isize]) -> Result<CopyPlan> {
    if axes.len() != shape.len() {
        return Err(Error::InvalidArgument(format!(
            "permute: axes {axes:?} do not match shape {shape:?} ({} dims)",
            shape.len()
        )));
    }
    let xs = contiguous_strides(shape);
    let mut seen = [false; MAX_DIMS];
    let mut out = Vec::with_capacity(axes.len());
    let mut istride = Vec::with_capacity(axes.len());
    for &ax in axes {
        let a = norm_axis(ax, shape.len(), "permute", shape)?;
        if seen[a] {
            return Err(Error::InvalidArgument(format!(
                "permute: axis {ax} repeats in {axes:?} (shape {shape:?})"
            )));
        }
        seen[a] = true;
        out.push(shape[a]);
        istride.push(xs[a]);
    }
    Ok(CopyPlan {
        ostride: contiguous_strides(&out),
        shape: out,
        ibase: 0,
        istride,
        obase: 0,
    })
}

/// The plan of `slice(x, specs)` (missing trailing specs take whole axes).
pub fn slice_plan(shape: &[usize], specs: &[Slice]) -> Result<CopyPlan> {
    if specs.len() > shape.len() {
        return Err(Error::InvalidArgument(format!(
            "slice: {} slices given for shape {shape:?} ({} dims)",
            specs.len(),
            shape.len()
        )));
    }
    let xs = contiguous_strides(shape);
    let mut out = Vec::with_capacity(shape.len());
    let mut istride = Vec::with_capacity(shape.len());
    let mut ibase = 0usize;
    for (k, &len) in shape.iter().enumerate() {
        let spec = specs.get(k).copied().unwrap_or_default();
        let (start, count) = spec.resolve(len, k)?;
        out.push(count);
        istride.push(xs[k] * spec.step);
        ibase += start * xs[k] as usize;
    }
    if out.contains(&0) {
        ibase = 0;
    }
    Ok(CopyPlan {
        ostride: contiguous_strides(&out),
        shape: out,
        ibase,
        istride,
        obase: 0,
    })
}

/// The result shape of `concat(shapes, axis)` and the normalised axis.
pub fn concat_shape(shapes: &[&[usize]], axis: isize) -> Result<(Vec<usize>, usize)> {
    let Some(first) = shapes.first() else {
        return Err(Error::InvalidArgument(
            "concat needs at least one tensor".into(),
        ));
    };
    if first.is_empty() {
        return Err(Error::InvalidArgument(
            "concat: zero-dimensional tensors cannot be concatenated".into(),
        ));
    }
    let ax = norm_axis(axis, first.len(), "concat", first)?;
    let mut out = first.to_vec();
    out[ax] = 0;
    for (j, s) in shapes.iter().enumerate() {
        let same = s.len() == first.len()
            && s.iter()
                .zip(first.iter())
                .enumerate()
                .all(|(k, (a, b))| k == ax || a == b);
        if !same {
            return Err(Error::Shape(format!(
                "concat along axis {axis}: tensor {j} has shape {s:?} but tensor 0 has {first:?}; \
                 all dims but axis {axis} must agree"
            )));
        }
        out[ax] += s[ax];
    }
    Ok((out, ax))
}
