//! Row-block sources: consecutive row blocks of a tall f32 matrix, from `.npy` files read in
//! chunks, from a host iterator, or from resident tensors.

use std::path::Path;

use crate::error::{Error, Result};
use crate::npy::NpyRowReader;
use crate::tensor::Tensor;

/// Copies of one block that a streamed pass may hold at once: the block being read, the one
/// waiting in the prefetch slot, the host copy being uploaded, and on a CPU-type adapter (whose
/// "device" memory is host memory) the uploaded block and one derived from it (centred, or a
/// product of the same size).
pub const BLOCK_COPIES: usize = 5;

/// Default memory budget of a streamed pass: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// How many bytes a streamed pass may spend on its row blocks; the block height follows from
/// it (see [`MemoryBudget::block_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes for the row blocks in flight.
    pub bytes: usize,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            bytes: DEFAULT_MEMORY_BUDGET,
        }
    }
}

impl MemoryBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> MemoryBudget {
        MemoryBudget { bytes }
    }

    /// Parses `512M`, `2G`, `1.5GiB`, `65536` (bytes) and the like (K, M, G, T; binary
    /// multiples; an optional `B`/`iB`), naming the text in the error.
    ///
    /// ```
    /// use gpu_linalg::MemoryBudget;
    /// assert_eq!(MemoryBudget::parse("512M")?.bytes, 512 << 20);
    /// assert_eq!(MemoryBudget::parse("1.5GiB")?.bytes, 3 << 29);
    /// assert!(MemoryBudget::parse("lots").is_err());
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<MemoryBudget> {
        let t = text.trim();
        let bad = || {
            Error::InvalidArgument(format!(
                "memory budget {text:?}: expected a size such as 512M, 2G or 1048576"
            ))
        };
        let upper = t.to_ascii_uppercase();
        let digits = upper.trim_end_matches("IB").trim_end_matches('B');
        let (number, shift) = match digits.chars().last() {
            Some('K') => (&digits[..digits.len() - 1], 10),
            Some('M') => (&digits[..digits.len() - 1], 20),
            Some('G') => (&digits[..digits.len() - 1], 30),
            Some('T') => (&digits[..digits.len() - 1], 40),
            _ => (digits, 0),
        };
        let value: f64 = number.trim().parse().map_err(|_| bad())?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > usize::MAX as f64 {
            return Err(bad());
        }
        Ok(MemoryBudget {
            bytes: bytes as usize,
        })
    }

    /// Rows per block for a matrix of `cols` f32 columns: the budget over
    /// [`BLOCK_COPIES`] copies of a block, at least one row.
    pub fn block_rows(&self, cols: usize) -> usize {
        (self.bytes / (BLOCK_COPIES * 4 * cols.max(1))).max(1)
    }
}

/// One block of consecutive rows, `rows × cols`, row-major.
#[derive(Debug)]
pub enum RowBlock {
    /// On the host.
    Host {
        /// Rows in the block.
        rows: usize,
        /// `rows · cols` values.
        data: Vec<f32>,
    },
    /// Already on a context (copied through the host when another context computes it).
    Resident(Tensor),
}

impl RowBlock {
    /// Rows in the block.
    pub fn rows(&self) -> usize {
        match self {
            RowBlock::Host { rows, .. } => *rows,
            RowBlock::Resident(t) => t.shape().first().copied().unwrap_or(0),
        }
    }
}

/// A tall f32 matrix read as consecutive row blocks, once or several times (passes).
///
/// Streamed algorithms ([`crate::Context::pca_stream`] and the others of the `streamed`
/// module) call [`rewind`](RowBlocks::rewind) before each pass, then
/// [`next_block`](RowBlocks::next_block) until it returns `None`.
pub trait RowBlocks: Send {
    /// Columns of the matrix.
    fn cols(&self) -> usize;
    /// Rows of the matrix, where known before a pass.
    fn rows(&self) -> Option<usize>;
    /// Starts a pass from the first row.
    fn rewind(&mut self) -> Result<()>;
    /// The next block of the pass, `None` at its end.
    fn next_block(&mut self) -> Result<Option<RowBlock>>;
}

/// Rows of one or more `.npy` files side by side (all with the same row count), read in
/// blocks of a fixed height: every file's columns in turn make up a block's columns, so
/// `[A | B]` streams from `A.npy` and `B.npy`. An optional row range reads just that part of
/// the files (an MPI rank's share).
#[derive(Debug)]
pub struct NpyRowBlocks {
    readers: Vec<NpyRowReader>,
    cols: usize,
    start: usize,
    end: usize,
    next: usize,
    block_rows: usize,
    scratch: Vec<f32>,
}

impl NpyRowBlocks {
    /// All rows of the matrix in `path` (C order, float16/32/64), in blocks sized by `budget`.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("npy-blocks-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use gpu_linalg::{MemoryBudget, NpyRowBlocks, RowBlocks};
    /// let path = dir.join("a.npy");
    /// gpu_linalg::npy::write_npy_f32(&path, &[5, 2], &[0.; 10])?;
    /// let mut src = NpyRowBlocks::open(&path, MemoryBudget::new(100))?;
    /// src.rewind()?;
    /// let mut heights = Vec::new();
    /// while let Some(block) = src.next_block()? {
    ///     heights.push(block.rows());
    /// }
    /// assert_eq!(heights, vec![2, 2, 1]); // 100 B over 5 copies of 8-byte rows: 2 rows
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn open(path: &Path, budget: MemoryBudget) -> Result<NpyRowBlocks> {
        Self::open_columns(&[path], budget)
    }

    /// The files' rows side by side, `[A | B | …]`; every file must have the same rows.
    pub fn open_columns(paths: &[&Path], budget: MemoryBudget) -> Result<NpyRowBlocks> {
        let readers = paths
            .iter()
            .map(|p| NpyRowReader::open(p))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = readers.first() else {
            return Err(Error::InvalidArgument(
                "streaming needs at least one .npy file".into(),
            ));
        };
        let rows = first.rows();
        for (p, r) in paths.iter().zip(&readers) {
            if r.rows() != rows {
                return Err(Error::Shape(format!(
                    "{} has {} rows but {} has {rows}; files streamed side by side need the same rows",
                    p.display(),
                    r.rows(),
                    paths[0].display()
                )));
            }
        }
        let cols = readers.iter().map(|r| r.cols()).sum();
        Ok(NpyRowBlocks {
            readers,
            cols,
            start: 0,
            end: rows,
            next: 0,
            block_rows: budget.block_rows(cols),
            scratch: Vec::new(),
        })
    }

    /// Restricts the blocks to rows `start..end` of the files (an MPI rank's range).
    pub fn with_row_range(mut self, start: usize, end: usize) -> Result<NpyRowBlocks> {
        let total = self.readers[0].rows();
        if start > end || end > total {
            return Err(Error::InvalidArgument(format!(
                "row range {start}..{end} of a {total}-row file"
            )));
        }
        (self.start, self.end, self.next) = (start, end, start);
        Ok(self)
    }

    /// Fixes the block height (at least 1) instead of the budget's.
    pub fn with_block_rows(mut self, rows: usize) -> NpyRowBlocks {
        self.block_rows = rows.max(1);
        self
    }

    /// Rows in each block but the last.
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// Rows of the whole files (not only the range).
    pub fn file_rows(&self) -> usize {
        self.readers[0].rows()
    }
}

impl RowBlocks for NpyRowBlocks {
    fn cols(&self) -> usize {
        self.cols
    }

    fn rows(&self) -> Option<usize> {
        Some(self.end - self.start)
    }

    fn rewind(&mut self) -> Result<()> {
        self.next = self.start;
        Ok(())
    }

    fn next_block(&mut self) -> Result<Option<RowBlock>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let rows = self.block_rows.min(self.end - self.next);
        let data = if let [reader] = &mut self.readers[..] {
            let mut data = Vec::new();
            reader.read_rows(self.next, rows, &mut data)?;
            data
        } else {
            let mut data = vec![0.0f32; rows * self.cols];
            let mut offset = 0;
            for reader in &mut self.readers {
                let c = reader.cols();
                reader.read_rows(self.next, rows, &mut self.scratch)?;
                for (r, src) in self.scratch.chunks_exact(c.max(1)).enumerate() {
                    data[r * self.cols + offset..][..c].copy_from_slice(&src[..c]);
                }
                offset += c;
            }
            data
        };
        self.next += rows;
        Ok(Some(RowBlock::Host { rows, data }))
    }
}

/// Row blocks from a host iterator, made afresh for each pass by `make`: each item is a
/// row-major block of whole rows (`len` a multiple of the columns).
///
/// ```
/// use gpu_linalg::{IterRowBlocks, RowBlocks};
/// let mut src = IterRowBlocks::new(2, || (0..3).map(|i| vec![i as f32; 4]));
/// src.rewind()?;
/// assert_eq!(src.next_block()?.map(|b| b.rows()), Some(2));
/// # Ok::<(), gpu_linalg::Error>(())
/// ```
pub struct IterRowBlocks<F, I> {
    cols: usize,
    make: F,
    iter: Option<I>,
}

impl<F, I> IterRowBlocks<F, I>
where
    F: FnMut() -> I + Send,
    I: Iterator<Item = Vec<f32>> + Send,
{
    /// Blocks of `cols` columns from the iterators `make` returns.
    pub fn new(cols: usize, make: F) -> IterRowBlocks<F, I> {
        IterRowBlocks {
            cols,
            make,
            iter: None,
        }
    }
}

impl<F, I> RowBlocks for IterRowBlocks<F, I>
where
    F: FnMut() -> I + Send,
    I: Iterator<Item = Vec<f32>> + Send,
{
    fn cols(&self) -> usize {
        self.cols
    }

    fn rows(&self) -> Option<usize> {
        None
    }

    fn rewind(&mut self) -> Result<()> {
        self.iter = Some((self.make)());
        Ok(())
    }

    fn next_block(&mut self) -> Result<Option<RowBlock>> {
        let iter = self.iter.get_or_insert_with(&mut self.make);
        let Some(data) = iter.next() else {
            return Ok(None);
        };
        let cols = self.cols;
        if cols == 0 || !data.len().is_multiple_of(cols) {
            return Err(Error::Shape(format!(
                "a row block of {} values is not whole rows of {cols} columns",
                data.len()
            )));
        }
        Ok(Some(RowBlock::Host {
            rows: data.len() / cols,
            data,
        }))
    }
}

/// Row blocks that are resident tensors, each `rows × cols` with the same columns.
#[derive(Debug)]
pub struct TensorRowBlocks {
    blocks: Vec<Tensor>,
    cols: usize,
    next: usize,
}

impl TensorRowBlocks {
    /// The tensors as consecutive row blocks; each must be 2-D with `cols` columns.
    pub fn new(blocks: Vec<Tensor>) -> Result<TensorRowBlocks> {
        let cols = blocks
            .first()
            .map_or(0, |t| t.shape().get(1).copied().unwrap_or(0));
        for (i, t) in blocks.iter().enumerate() {
            if t.ndim() != 2 || t.shape()[1] != cols {
                return Err(Error::Shape(format!(
                    "row block {i} has shape {:?}; every block must be 2-D with {cols} columns",
                    t.shape()
                )));
            }
        }
        Ok(TensorRowBlocks {
            blocks,
            cols,
            next: 0,
        })
    }
}

impl RowBlocks for TensorRowBlocks {
    fn cols(&self) -> usize {
        self.cols
    }

    fn rows(&self) -> Option<usize> {
        Some(self.blocks.iter().map(|t| t.shape()[0]).sum())
    }

    fn rewind(&mut self) -> Result<()> {
        self.next = 0;
        Ok(())
    }

    fn next_block(&mut self) -> Result<Option<RowBlock>> {
        let block = self.blocks.get(self.next).cloned();
        self.next += 1;
        Ok(block.map(RowBlock::Resident))
    }
}
