//! One pass over a row-block source: blocks are read ahead on a thread of their own (so the
//! next block is read and decoded while the current one computes), uploaded to one of the
//! worker contexts, mapped there (the map enqueues device work and returns its result
//! tensors), submitted, and the results read back and folded on the calling thread in block
//! order, whichever worker computed them — one block behind, so that the next block's upload
//! and compute are in flight while a block's results are read back. The fold order is what makes a pass over several
//! contexts give the same result as a pass over one.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::streamed::source::{RowBlock, RowBlocks};
use crate::tensor::Tensor;

/// What one pass read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Rows read.
    pub rows: usize,
    /// Blocks read.
    pub blocks: usize,
    /// Blocks each worker context computed, in the workers' order.
    pub blocks_per_worker: Vec<usize>,
}

/// A block on its way to a worker: its index, first row and data.
type Job = (usize, usize, RowBlock);

/// The block's tensor on `ctx` (host blocks uploaded; resident ones as they are, which the
/// ops copy through the host when they live on another context).
fn upload(ctx: &Context, block: RowBlock, cols: usize) -> Result<Tensor> {
    match block {
        RowBlock::Host { rows, data } => {
            if data.len() != rows * cols {
                return Err(Error::Shape(format!(
                    "a row block of {rows} rows has {} values; expected {rows}×{cols}",
                    data.len()
                )));
            }
            ctx.tensor(&[rows, cols], &data)
        }
        RowBlock::Resident(t) => Ok(t),
    }
}

/// Runs `map(worker, block)` on every block of `src` (rewound first), `worker` the index of
/// the context in `workers` that holds the block, and `fold(index, first_row, result)` on the
/// results in block order.
pub(crate) fn pass<T: Send>(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    map: &(dyn Fn(usize, &Tensor) -> Result<T> + Sync),
    fold: &mut dyn FnMut(usize, usize, T) -> Result<()>,
) -> Result<PassStats> {
    if workers.is_empty() {
        return Err(Error::InvalidArgument(
            "a streamed pass needs at least one context".into(),
        ));
    }
    src.rewind()?;
    let cols = src.cols();
    let mut stats = PassStats {
        blocks_per_worker: vec![0; workers.len()],
        ..Default::default()
    };
    std::thread::scope(|scope| -> Result<()> {
        // One block waits in the channel while the next is read: a double buffer.
        let (job_tx, job_rx) = sync_channel::<Result<Job>>(1);
        scope.spawn(move || {
            let mut first_row = 0;
            for index in 0.. {
                let next = src.next_block();
                let job = match next {
                    Ok(Some(block)) => {
                        let rows = block.rows();
                        first_row += rows;
                        Ok((index, first_row - rows, block))
                    }
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                let failed = job.is_err();
                if job_tx.send(job).is_err() || failed {
                    break;
                }
            }
        });
        if let [ctx] = workers {
            // One block in flight: block i's work is submitted, then block i+1 is uploaded and
            // submitted, and only then are block i's results read back (a readback waits for
            // its own submission), so the upload and compute of the next block overlap the
            // readback and fold of this one.
            let mut pending = None;
            for job in job_rx {
                let (index, first_row, block) = job?;
                let rows = block.rows();
                let value = map(0, &upload(ctx, block, cols)?)?;
                ctx.flush()?;
                if let Some((i, r, v)) = pending.take() {
                    fold(i, r, v)?;
                }
                pending = Some((index, first_row, value));
                stats.rows += rows;
                stats.blocks += 1;
                stats.blocks_per_worker[0] += 1;
            }
            if let Some((i, r, v)) = pending.take() {
                fold(i, r, v)?;
            }
            return Ok(());
        }
        // Several workers pull from one queue (a faster worker takes more blocks); results
        // come back tagged with their index and are folded in order.
        let queue: Arc<Mutex<Receiver<Result<Job>>>> = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) =
            sync_channel::<(usize, Result<(usize, usize, usize, T)>)>(workers.len());
        for (w, ctx) in workers.iter().enumerate() {
            let (queue, done_tx) = (queue.clone(), done_tx.clone());
            scope.spawn(move || loop {
                let job = match queue.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => break,
                };
                let Ok(job) = job else { break };
                let result = job.and_then(|(index, first_row, block)| {
                    let rows = block.rows();
                    let t = upload(ctx, block, cols)?;
                    let value = map(w, &t)?;
                    // Submitted now; the calling thread reads it back while this worker
                    // takes the next block.
                    ctx.flush()?;
                    Ok((index, first_row, rows, value))
                });
                let failed = result.is_err();
                if done_tx.send((w, result)).is_err() || failed {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut pending = BTreeMap::new();
        let mut next = 0;
        for (w, result) in done_rx {
            let (index, first_row, rows, value) = result?;
            stats.blocks_per_worker[w] += 1;
            pending.insert(index, (first_row, rows, value));
            while let Some((first_row, rows, value)) = pending.remove(&next) {
                fold(next, first_row, value)?;
                stats.rows += rows;
                stats.blocks += 1;
                next += 1;
            }
        }
        if !pending.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "streamed pass: block {next} never came back from its worker"
            )));
        }
        Ok(())
    })?;
    Ok(stats)
}
