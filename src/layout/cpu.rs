//! CPU layout ops: strided gathers (permute, slice) and concatenation — exact copies, so the
//! same functions serve as the fast backend and the reference.

use rayon::prelude::*;

use super::plan::CopyPlan;

const CHUNK: usize = 1 << 14;

/// Runs a gather plan (`plan.obase` = 0, contiguous output of `plan.shape`).
pub fn gather(plan: &CopyPlan, x: &[f32]) -> Vec<f32> {
    let n: usize = plan.shape.iter().product();
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return out;
    }
    let nd = plan.shape.len();
    let fill = |ci: usize, o: &mut [f32]| {
        let mut c = vec![0usize; nd];
        let mut r = ci * CHUNK;
        for k in (0..nd).rev() {
            c[k] = r % plan.shape[k];
            r /= plan.shape[k];
        }
        let mut idx = plan.ibase as isize
            + (0..nd)
                .map(|k| c[k] as isize * plan.istride[k])
                .sum::<isize>();
        for v in o.iter_mut() {
            *v = x[idx as usize];
            let mut k = nd;
            while k > 0 {
                k -= 1;
                c[k] += 1;
                idx += plan.istride[k];
                if c[k] < plan.shape[k] {
                    break;
                }
                idx -= plan.istride[k] * plan.shape[k] as isize;
                c[k] = 0;
            }
        }
    };
    if n < 2 * CHUNK {
        for (ci, o) in out.chunks_mut(CHUNK).enumerate() {
            fill(ci, o);
        }
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(ci, o)| fill(ci, o));
    }
    out
}

/// Concatenates `parts` (values, shape) along `axis` into a tensor of `shape`.
pub fn concat(parts: &[(&[f32], &[usize])], shape: &[usize], axis: usize) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return out;
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let row = shape[axis] * inner;
    let mut off = 0usize;
    for (vals, s) in parts {
        let block = s[axis] * inner;
        if block > 0 {
            for o in 0..outer {
                out[o * row + off..o * row + off + block]
                    .copy_from_slice(&vals[o * block..(o + 1) * block]);
            }
        }
        off += block;
    }
    out
}
