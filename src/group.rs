//! Several adapters in one machine: a [`ContextGroup`] holds one context per adapter (or any
//! contexts) and splits work across them — batched ops by contiguous shares of the batch,
//! proportional to each context's measured speed, and streamed row blocks by a shared queue
//! that each context pulls from as it finishes its last block, with the block results folded
//! in order. Results equal one context's: each matrix of a batch, and each row block, is
//! computed by the same kernels whichever context takes it.

use std::ops::Range;
use std::time::Instant;

use crate::context::{Context, ContextOptions};
use crate::decomp::RandomizedSvdOptions;
use crate::error::{Error, Result};
use crate::norms::Lstsq;
use crate::streamed::{self, PcaStreamMethod, RowBlocks, StreamedPca, StreamedSvd, Tsqr};
use crate::svd::Svd;
use crate::tensor::Tensor;
use crate::Backend;

/// Side of the square matmul timed by [`ContextGroup::measure_weights`].
const WEIGHT_PROBE_SIZE: usize = 256;

/// Batched ops split their batch in multiples of this many matrices (the last share takes the
/// rest), so that each matrix keeps the SIMD lane it has in a one-context call: 64 covers
/// every GPU's warp or wavefront, and lavapipe's 8-wide lanes, whose position changes the
/// rounding of the batched SVD.
pub const BATCH_GRANULE: usize = 64;

/// Contexts that share work; see the module docs.
///
/// ```
/// use gpu_linalg::{Backend, Context, ContextGroup};
/// let cpu = || Context::with_backend(Backend::Cpu);
/// let group = ContextGroup::with_weights(vec![cpu()?, cpu()?], vec![1.0, 3.0])?;
/// assert_eq!(group.shares(8), vec![0..2, 2..8]);
/// assert_eq!(group.shares_in(300, 64), vec![0..64, 64..300]);
/// let a = cpu()?.tensor(&[4, 2, 2], &[1., 0., 0., 1., 2., 0., 0., 2., 3., 0., 0., 3., 4., 0., 0., 4.])?;
/// assert_eq!(group.matmul(&a, &a)?.to_vec()?[12], 16.0);
/// # Ok::<(), gpu_linalg::Error>(())
/// ```
#[derive(Clone)]
pub struct ContextGroup {
    contexts: Vec<Context>,
    weights: Vec<f64>,
}

impl ContextGroup {
    /// The contexts with equal weights.
    pub fn new(contexts: Vec<Context>) -> Result<ContextGroup> {
        let weights = vec![1.0; contexts.len()];
        ContextGroup::with_weights(contexts, weights)
    }

    /// The contexts with the given relative speeds (positive, one per context).
    pub fn with_weights(contexts: Vec<Context>, weights: Vec<f64>) -> Result<ContextGroup> {
        if contexts.is_empty() {
            return Err(Error::InvalidArgument(
                "a context group needs at least one context".into(),
            ));
        }
        if weights.len() != contexts.len() || weights.iter().any(|w| !(*w > 0.0 && w.is_finite())) {
            return Err(Error::InvalidArgument(format!(
                "a context group of {} contexts needs as many positive weights, got {weights:?}",
                contexts.len()
            )));
        }
        Ok(ContextGroup { contexts, weights })
    }

    /// One GPU context per graphics API that has an adapter (Vulkan, Metal, DX12, GL), each
    /// weighted by [`measure_weights`](Self::measure_weights); `Err` when there is none.
    pub fn all_adapters() -> Result<ContextGroup> {
        let mut contexts = Vec::new();
        for api in ["vulkan", "metal", "dx12", "gl"] {
            let opts = ContextOptions {
                backend: Backend::Gpu,
                api: Some(api.to_string()),
                ..Default::default()
            };
            if let Ok(ctx) = Context::with_options(opts) {
                contexts.push(ctx);
            }
        }
        if contexts.is_empty() {
            return Err(Error::NoAdapter(
                "no GPU adapter for a context group".into(),
            ));
        }
        let mut group = ContextGroup::new(contexts)?;
        group.measure_weights()?;
        Ok(group)
    }

    /// Times a 256³ matmul on each context (the best of three, after one that builds the
    /// pipelines) and sets each weight to its speed; returns the weights.
    pub fn measure_weights(&mut self) -> Result<Vec<f64>> {
        let n = WEIGHT_PROBE_SIZE;
        let data: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();
        let mut weights = Vec::with_capacity(self.contexts.len());
        for ctx in &self.contexts {
            let a = ctx.tensor(&[n, n], &data)?;
            ctx.matmul(&a, &a)?.to_vec()?;
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = Instant::now();
                ctx.matmul(&a, &a)?.to_vec()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            weights.push(1.0 / best.max(1e-9));
        }
        self.weights = weights.clone();
        Ok(weights)
    }

    /// The contexts, in order (the first one folds streamed results and holds outputs).
    pub fn contexts(&self) -> &[Context] {
        &self.contexts
    }

    /// The relative speeds, one per context.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// `count` items split into one contiguous range per context, proportional to the
    /// weights (largest remainders get the leftover items).
    pub fn shares(&self, count: usize) -> Vec<Range<usize>> {
        self.shares_in(count, 1)
    }

    /// [`shares`](Self::shares) in whole multiples of `granule` items (the last range ends at
    /// `count`).
    pub fn shares_in(&self, count: usize, granule: usize) -> Vec<Range<usize>> {
        let granule = granule.max(1);
        let units = count.div_ceil(granule);
        self.unit_shares(units)
            .into_iter()
            .map(|r| (r.start * granule).min(count)..(r.end * granule).min(count))
            .collect()
    }

    fn unit_shares(&self, count: usize) -> Vec<Range<usize>> {
        let total: f64 = self.weights.iter().sum();
        let exact: Vec<f64> = self
            .weights
            .iter()
            .map(|w| w / total * count as f64)
            .collect();
        let mut sizes: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor()))
        });
        let mut left = count - sizes.iter().sum::<usize>();
        for &i in order.iter().cycle().take(sizes.len() * 2) {
            if left == 0 {
                break;
            }
            sizes[i] += 1;
            left -= 1;
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|s| {
                start += s;
                start - s..start
            })
            .collect()
    }

    /// Runs `op` on each context's share of the leading (batch) axis of `inputs` (each split
    /// when `split[i]`, else given whole), in parallel, and returns the per-share outputs.
    fn batched<T: Send>(
        &self,
        name: &str,
        inputs: &[&Tensor],
        split: &[bool],
        op: &(dyn Fn(&Context, &[Tensor]) -> Result<T> + Sync),
    ) -> Result<Vec<T>> {
        let batch = inputs[0].shape().first().copied().unwrap_or(0);
        for (t, s) in inputs.iter().zip(split) {
            if *s && t.shape().first() != Some(&batch) {
                return Err(Error::Shape(format!(
                    "{name}: operands of shapes {:?} do not share the leading batch axis",
                    inputs
                        .iter()
                        .map(|t| t.shape().to_vec())
                        .collect::<Vec<_>>()
                )));
            }
        }
        if batch == 0 {
            let whole: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
            return Ok(vec![op(&self.contexts[0], &whole)?]);
        }
        let host: Vec<Vec<f32>> = inputs.iter().map(|t| t.to_vec()).collect::<Result<_>>()?;
        let shares = self.shares_in(batch, BATCH_GRANULE);
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .contexts
                .iter()
                .zip(&shares)
                .filter(|(_, r)| !r.is_empty())
                .map(|(ctx, range)| {
                    let (host, range) = (&host, range.clone());
                    scope.spawn(move || -> Result<T> {
                        let parts = inputs
                            .iter()
                            .zip(split)
                            .zip(host)
                            .map(|((t, &s), data)| {
                                if !s {
                                    return ctx.tensor(t.shape(), data);
                                }
                                let per = t.shape()[1..].iter().product::<usize>();
                                let mut shape = t.shape().to_vec();
                                shape[0] = range.len();
                                ctx.tensor(&shape, &data[range.start * per..range.end * per])
                            })
                            .collect::<Result<Vec<_>>>()?;
                        op(ctx, &parts)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::InvalidArgument(format!(
                            "{name}: a worker thread panicked"
                        )))
                    })
                })
                .collect()
        })
    }

    /// The per-share tensors concatenated along the batch axis, on the first context.
    fn gather(&self, parts: &[Tensor]) -> Result<Tensor> {
        let mut shape = parts[0].shape().to_vec();
        shape[0] = parts.iter().map(|t| t.shape()[0]).sum();
        let mut data = Vec::with_capacity(shape.iter().product());
        for t in parts {
            data.extend(t.to_vec()?);
        }
        self.contexts[0].tensor(&shape, &data)
    }

    /// Batched `numpy.matmul` of `a` [batch, m, k] with `b` [batch, k, n] (or a 2-D [k, n]
    /// shared by every matrix), the batch split across the contexts.
    pub fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.ndim() < 3 {
            return Err(Error::Shape(format!(
                "ContextGroup::matmul splits a batch: a has shape {:?}, expected [batch, m, k]",
                a.shape()
            )));
        }
        let split_b = b.ndim() == a.ndim();
        let parts = self.batched("matmul", &[a, b], &[true, split_b], &|ctx, t| {
            ctx.matmul(&t[0], &t[1])
        })?;
        self.gather(&parts)
    }

    /// [`Context::svd_batched`] of `a` [batch, m, n], the batch split across the contexts;
    /// sweeps and the off-diagonal measure are the largest of the shares', dispatches and
    /// submits their sums.
    pub fn svd_batched(&self, a: &Tensor) -> Result<Svd> {
        if a.ndim() != 3 {
            return Err(Error::Shape(format!(
                "ContextGroup::svd_batched: a has shape {:?}, expected [batch, m, n]",
                a.shape()
            )));
        }
        let parts = self.batched("svd_batched", &[a], &[true], &|ctx, t| {
            ctx.svd_batched(&t[0])
        })?;
        let pick = |f: fn(&Svd) -> &Tensor| parts.iter().map(|p| f(p).clone()).collect::<Vec<_>>();
        Ok(Svd {
            u: self.gather(&pick(|p| &p.u))?,
            s: self.gather(&pick(|p| &p.s))?,
            vt: self.gather(&pick(|p| &p.vt))?,
            sweeps: parts.iter().map(|p| p.sweeps).max().unwrap_or(0),
            off_diagonal: parts.iter().map(|p| p.off_diagonal).fold(0.0, f32::max),
            dispatches: parts.iter().map(|p| p.dispatches).sum(),
            submits: parts.iter().map(|p| p.submits).sum(),
        })
    }

    /// Batched [`Context::solve`] of `a` [batch, n, n] with `b` [batch, n, k] (split with
    /// `a`) or a `b` every system shares (lower rank, as numpy broadcasts it).
    pub fn solve(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.ndim() < 3 {
            return Err(Error::Shape(format!(
                "ContextGroup::solve splits a batch: a has shape {:?}, expected [batch, n, n]",
                a.shape()
            )));
        }
        let split_b = b.ndim() == a.ndim();
        let parts = self.batched("solve", &[a, b], &[true, split_b], &|ctx, t| {
            ctx.solve(&t[0], &t[1])
        })?;
        self.gather(&parts)
    }

    /// [`Context::gram_stream`] over the group.
    pub fn gram_stream(&self, src: &mut dyn RowBlocks) -> Result<Tensor> {
        streamed::gram(&self.contexts, src)
    }

    /// [`Context::tsqr_stream`] over the group.
    pub fn tsqr_stream(&self, src: &mut dyn RowBlocks) -> Result<Tsqr> {
        streamed::tsqr(&self.contexts, src, &streamed::Alone)
    }

    /// [`Context::lstsq_stream`] over the group.
    pub fn lstsq_stream(
        &self,
        src: &mut dyn RowBlocks,
        a_cols: usize,
        rcond: Option<f32>,
    ) -> Result<Lstsq> {
        streamed::lstsq(&self.contexts, src, a_cols, rcond, &streamed::Alone)
    }

    /// [`Context::randomized_svd_stream`] over the group.
    pub fn randomized_svd_stream(
        &self,
        src: &mut dyn RowBlocks,
        r: usize,
        opts: &RandomizedSvdOptions,
    ) -> Result<StreamedSvd> {
        streamed::randomized_svd(&self.contexts, src, r, opts, None, &streamed::Alone)
    }

    /// [`Context::pca_stream`] over the group.
    pub fn pca_stream(
        &self,
        src: &mut dyn RowBlocks,
        k: usize,
        method: PcaStreamMethod,
    ) -> Result<StreamedPca> {
        streamed::pca(&self.contexts, src, k, method, &streamed::Alone)
    }
}
