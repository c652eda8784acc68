//! Recording the solver kernels of `shaders/lu.wgsl` into an [`Encoder`]: the blocked LU, the
//! blocked triangular solve, pivot application, and the read-outs. Every function records
//! only (no submit, no readback), so that a driver such as `solve` puts its whole chain into
//! the command stream and reads its status words back once.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::{
    checked_pipeline, trusted_pipeline, Bind, Encoder, Gpu, GpuBuffer, Kernel, Uniform,
};
use crate::solve::plan::TriangularOptions;
use crate::solve::{LU_BLOCK, SOURCE};

/// Most matrices one dispatch covers (the workgroup grid's z dimension).
const MAX_Z: usize = 65_535;

/// Columns of a row strip in `check` and `scan` (`CHUNK` in the shader).
const CHUNK: usize = 256;

/// `flags` bits (as in the shader).
const LOWER: u32 = 1;
const TRANS: u32 = 2;
const UNIT: u32 = 4;
const UPPER_OUT: u32 = 8;
const IDENTITY: u32 = 16;

crate::kernel_params! {
    /// The kernels' uniform block (`LuParams` in shaders/lu.wgsl).
    struct LuParams: "LuParams" {
        n: u32,
        k0: u32,
        bs: u32,
        z0: u32,
        rows: u32,
        cols: u32,
        r0: u32,
        c0: u32,
        ld: u32,
        mstride: u32,
        ql: u32,
        qr: u32,
        k: u32,
        flags: u32,
        batch: u32,
        sz: u32,
    }
}

impl LuParams {
    /// Parameters for order-`n` matrices from `z0`, every other field zero.
    fn at(n: usize, z0: usize) -> LuParams {
        LuParams {
            n: n as u32,
            z0: z0 as u32,
            ..Default::default()
        }
    }
}

/// The family's pipelines, built once per device.
pub(crate) struct Kernels {
    check: Arc<Kernel>,
    scan: Arc<Kernel>,
    panel: Arc<Kernel>,
    rows: Arc<Kernel>,
    update: Arc<Kernel>,
    pack_t: Arc<Kernel>,
    trsm_block: Arc<Kernel>,
    permute: Arc<Kernel>,
    slogdet: Arc<Kernel>,
    extract: Arc<Kernel>,
}

impl Kernels {
    /// The pipelines of `gpu` (from its cache after the first call).
    pub(crate) fn new(gpu: &Gpu) -> Result<Kernels> {
        let build = |entry: &str| {
            checked_pipeline(
                gpu,
                &format!("lu/{entry}"),
                "lu.wgsl",
                || SOURCE.to_string(),
                entry,
                &[],
            )
        };
        // SAFETY: `update` reads `pl` at (z·B + c)·ql + i0/4 and `pr` at (z·B + c)·qr + j0/4
        // with z < batch, c < bs ≤ B, i0 < rows ≤ 4·ql and j0 < cols ≤ 4·qr (it returns
        // otherwise); both packs are bound with batch·B·ql (·qr) vec4s ([`Packs::new`]). It
        // writes `w` at z·mstride + (r0 + i)·ld + c0 + j with i < rows, j < cols, and every
        // caller's region lies inside its matrix: r0 + rows ≤ n rows of ld = cols_total
        // values, c0 + cols ≤ ld, mstride = n·ld, inside the batch·mstride values bound. Its
        // one loop runs bs ≤ 32 times; z = wg.z + z0 < batch for every chunk.
        let update = unsafe {
            trusted_pipeline(
                gpu,
                "lu/update",
                "lu.wgsl",
                || SOURCE.to_string(),
                "update",
                &[],
            )
        }?;
        Ok(Kernels {
            check: build("check")?,
            scan: build("scan")?,
            panel: build("panel")?,
            rows: build("rows")?,
            update,
            pack_t: build("pack_t")?,
            trsm_block: build("trsm_block")?,
            permute: build("permute")?,
            slogdet: build("slogdet")?,
            extract: build("extract")?,
        })
    }
}

/// (first matrix, matrices) of each dispatch chunk of a batch.
fn chunks(batch: usize) -> impl Iterator<Item = (usize, u32)> {
    (0..batch)
        .step_by(MAX_Z)
        .map(move |z0| (z0, (batch - z0).min(MAX_Z) as u32))
}

/// Bytes of `count` f32 or u32 values (at least one, for a valid binding).
fn bytes(count: usize) -> u64 {
    (count.max(1) * 4) as u64
}

/// The packed operands of the rank-b updates: `pl` (b columns of ⌈rows/4⌉ vec4s per matrix)
/// and `pr` (b rows of ⌈cols/4⌉ vec4s per matrix).
pub(crate) struct Packs {
    pl: Arc<GpuBuffer>,
    pr: Arc<GpuBuffer>,
    ql: usize,
    qr: usize,
    batch: usize,
}

impl Packs {
    /// Packs for `batch` matrices with updates of at most `rows` rows and `cols` columns.
    pub(crate) fn new(gpu: &Arc<Gpu>, batch: usize, rows: usize, cols: usize) -> Result<Packs> {
        let (ql, qr) = (rows.div_ceil(4).max(1), cols.div_ceil(4).max(1));
        let (lb, rb) = (
            (batch * LU_BLOCK * ql * 16) as u64,
            (batch * LU_BLOCK * qr * 16) as u64,
        );
        gpu.check_binding(lb, "the solver's packed left panel")?;
        gpu.check_binding(rb, "the solver's packed right panel")?;
        Ok(Packs {
            pl: gpu.alloc(lb, "solver packed left panel")?,
            pr: gpu.alloc(rb, "solver packed right panel")?,
            ql,
            qr,
            batch,
        })
    }

    fn left(&self) -> Bind<'_> {
        Bind::Buffer(&self.pl, (self.batch * LU_BLOCK * self.ql * 16) as u64)
    }

    fn right(&self) -> Bind<'_> {
        Bind::Buffer(&self.pr, (self.batch * LU_BLOCK * self.qr * 16) as u64)
    }
}

/// The status words of a solver call: 2 u32 per slot (one slot per matrix and operand).
pub(crate) struct Status {
    buf: Arc<GpuBuffer>,
    slots: usize,
}

impl Status {
    /// `slots` cleared status slots, the clear recorded in `enc`.
    pub(crate) fn new(gpu: &Arc<Gpu>, enc: &mut Encoder, slots: usize) -> Result<Status> {
        let buf = gpu.alloc(bytes(slots * 2), "solver status")?;
        enc.clear(&buf, 0, bytes(slots * 2));
        Ok(Status { buf, slots })
    }

    fn bind(&self) -> Bind<'_> {
        Bind::Buffer(&self.buf, bytes(self.slots * 2))
    }

    /// Reads the words back (the one readback of a solver call).
    pub(crate) fn read(&self) -> Result<Vec<[u32; 2]>> {
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&self.buf.read(self.slots * 8)?);
        if words.len() != self.slots * 2 {
            return Err(Error::Readback(format!(
                "solver: {} status words read back for {} slots",
                words.len(),
                self.slots
            )));
        }
        Ok(words.chunks_exact(2).map(|w| [w[0], w[1]]).collect())
    }
}

/// Records `dst = src` for `batch` rows×cols matrices, flagging NaN or Inf in `status` (from
/// slot `status.1`); with `identity`, `dst` is the identity instead and `src` is not read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_check(
    enc: &mut Encoder,
    k: &Kernels,
    src: &Arc<GpuBuffer>,
    dst: &Arc<GpuBuffer>,
    status: (&Status, usize),
    batch: usize,
    rows: usize,
    cols: usize,
    identity: bool,
) -> Result<()> {
    let len = bytes(batch * rows * cols);
    for (z0, zc) in chunks(batch) {
        let mut p = LuParams::at(rows, z0);
        p.rows = rows as u32;
        p.cols = cols as u32;
        p.mstride = (rows * cols) as u32;
        p.flags = if identity { IDENTITY } else { 0 };
        p.sz = status.1 as u32;
        let u = enc.params(&p)?;
        let bg = enc.bind(
            &k.check,
            &[
                (0, Bind::Params(&u)),
                (1, Bind::Buffer(src, if identity { 4 } else { len })),
                (2, Bind::Buffer(dst, len)),
                (3, status.0.bind()),
            ],
        );
        enc.dispatch(
            &k.check,
            &bg,
            (rows.div_ceil(64) as u32, cols.div_ceil(CHUNK) as u32, zc),
        );
    }
    Ok(())
}

/// Records the blocked LU of the `batch` n×n matrices in `w`, in place, with block size `nb`
/// (a multiple of 4, at most [`LU_BLOCK`]), pivots into `piv` (n per matrix), zero pivots
/// into `status`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_lu(
    enc: &mut Encoder,
    k: &Kernels,
    packs: &Packs,
    w: &Arc<GpuBuffer>,
    piv: &Arc<GpuBuffer>,
    status: &Status,
    batch: usize,
    n: usize,
    nb: usize,
) -> Result<()> {
    let (wb, pb) = (bytes(batch * n * n), bytes(batch * n));
    for (z0, zc) in chunks(batch) {
        for k0 in (0..n).step_by(nb) {
            let bs = nb.min(n - k0);
            let rest = n - k0 - bs;
            let mut p = LuParams::at(n, z0);
            p.k0 = k0 as u32;
            p.bs = bs as u32;
            p.ql = packs.ql as u32;
            p.qr = packs.qr as u32;
            p.r0 = (k0 + bs) as u32;
            p.c0 = (k0 + bs) as u32;
            p.rows = rest as u32;
            p.cols = rest as u32;
            p.ld = n as u32;
            p.mstride = (n * n) as u32;
            let u = enc.params(&p)?;
            let bg = enc.bind(
                &k.panel,
                &[
                    (0, Bind::Params(&u)),
                    (2, Bind::Buffer(w, wb)),
                    (3, status.bind()),
                    (4, Bind::Buffer(piv, pb)),
                    (5, packs.left()),
                ],
            );
            enc.dispatch(&k.panel, &bg, (1, 1, zc));
            if n > bs {
                let bg = enc.bind(
                    &k.rows,
                    &[
                        (0, Bind::Params(&u)),
                        (2, Bind::Buffer(w, wb)),
                        (4, Bind::Buffer(piv, pb)),
                        (6, packs.right()),
                    ],
                );
                enc.dispatch(&k.rows, &bg, (n.div_ceil(4 * 64) as u32, 1, zc));
            }
            if rest > 0 {
                record_update(enc, k, packs, &u, w, wb, rest, rest, zc);
            }
        }
    }
    Ok(())
}

/// Records one rank-b update of a rows×cols region (its place is in the parameters `u`).
#[allow(clippy::too_many_arguments)]
fn record_update(
    enc: &mut Encoder,
    k: &Kernels,
    packs: &Packs,
    u: &Uniform,
    w: &Arc<GpuBuffer>,
    wb: u64,
    rows: usize,
    cols: usize,
    zc: u32,
) {
    let bg = enc.bind(
        &k.update,
        &[
            (0, Bind::Params(u)),
            (2, Bind::Buffer(w, wb)),
            (5, packs.left()),
            (6, packs.right()),
        ],
    );
    enc.dispatch(
        &k.update,
        &bg,
        (cols.div_ceil(4 * 8) as u32, rows.div_ceil(4 * 8) as u32, zc),
    );
}

/// Records the row interchanges of `piv` applied to the `batch` n×k matrices in `x`.
pub(crate) fn record_permute(
    enc: &mut Encoder,
    k: &Kernels,
    piv: &Arc<GpuBuffer>,
    x: &Arc<GpuBuffer>,
    batch: usize,
    n: usize,
    rhs: usize,
) -> Result<()> {
    for (z0, zc) in chunks(batch) {
        let mut p = LuParams::at(n, z0);
        p.k = rhs as u32;
        p.mstride = (n * rhs) as u32;
        let u = enc.params(&p)?;
        let bg = enc.bind(
            &k.permute,
            &[
                (0, Bind::Params(&u)),
                (2, Bind::Buffer(x, bytes(batch * n * rhs))),
                (4, Bind::Buffer(piv, bytes(batch * n))),
            ],
        );
        enc.dispatch(&k.permute, &bg, (rhs.div_ceil(64) as u32, 1, zc));
    }
    Ok(())
}

/// Records op(T)·X = B solved in place in `x` (n×rhs per matrix) for the `batch` n×n `t`,
/// blocked with block size `nb` (≤ [`LU_BLOCK`]): per diagonal block a solve of every right-hand side, then a rank-b update of the
/// rows not yet solved.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_trsm(
    enc: &mut Encoder,
    k: &Kernels,
    packs: &Packs,
    t: &Arc<GpuBuffer>,
    x: &Arc<GpuBuffer>,
    batch: usize,
    n: usize,
    rhs: usize,
    opts: &TriangularOptions,
    nb: usize,
) -> Result<()> {
    let forward = opts.forward();
    let flags = if forward { LOWER } else { 0 }
        | if opts.trans { TRANS } else { 0 }
        | if opts.unit_diagonal { UNIT } else { 0 };
    let (tb, xb) = (bytes(batch * n * n), bytes(batch * n * rhs));
    let blocks: Vec<usize> = (0..n).step_by(nb).collect();
    for (z0, zc) in chunks(batch) {
        for s in 0..blocks.len() {
            let k0 = if forward {
                blocks[s]
            } else {
                blocks[blocks.len() - 1 - s]
            };
            let bs = nb.min(n - k0);
            // The rows still to solve: below the block going forward, above it going back.
            let (r0, rows) = if forward {
                (k0 + bs, n - k0 - bs)
            } else {
                (0, k0)
            };
            let mut p = LuParams::at(n, z0);
            p.k0 = k0 as u32;
            p.bs = bs as u32;
            p.k = rhs as u32;
            p.flags = flags;
            p.ql = packs.ql as u32;
            p.qr = packs.qr as u32;
            p.r0 = r0 as u32;
            p.rows = rows as u32;
            p.c0 = 0;
            p.cols = rhs as u32;
            p.ld = rhs as u32;
            p.mstride = (n * rhs) as u32;
            let u = enc.params(&p)?;
            let bg = enc.bind(
                &k.trsm_block,
                &[
                    (0, Bind::Params(&u)),
                    (1, Bind::Buffer(t, tb)),
                    (2, Bind::Buffer(x, xb)),
                    (6, packs.right()),
                ],
            );
            enc.dispatch(&k.trsm_block, &bg, (rhs.div_ceil(4 * 64) as u32, 1, zc));
            if rows == 0 {
                continue;
            }
            let bg = enc.bind(
                &k.pack_t,
                &[
                    (0, Bind::Params(&u)),
                    (1, Bind::Buffer(t, tb)),
                    (5, packs.left()),
                ],
            );
            enc.dispatch(&k.pack_t, &bg, (rows.div_ceil(4 * 64) as u32, 1, zc));
            record_update(enc, k, packs, &u, x, xb, rows, rhs, zc);
        }
    }
    Ok(())
}

/// Records the check of a triangular `t`: NaN or Inf anywhere, and (unless `unit`) its first
/// zero diagonal, into `status` (from slot `status.1`).
pub(crate) fn record_scan(
    enc: &mut Encoder,
    k: &Kernels,
    t: &Arc<GpuBuffer>,
    status: (&Status, usize),
    batch: usize,
    n: usize,
    unit: bool,
) -> Result<()> {
    for (z0, zc) in chunks(batch) {
        let mut p = LuParams::at(n, z0);
        p.flags = if unit { UNIT } else { 0 };
        p.sz = status.1 as u32;
        let u = enc.params(&p)?;
        let bg = enc.bind(
            &k.scan,
            &[
                (0, Bind::Params(&u)),
                (1, Bind::Buffer(t, bytes(batch * n * n))),
                (3, status.0.bind()),
            ],
        );
        enc.dispatch(
            &k.scan,
            &bg,
            (n.div_ceil(64) as u32, n.div_ceil(CHUNK) as u32, zc),
        );
    }
    Ok(())
}

/// Records (sign, log|det|) of each matrix's LU factors into `out` (2 floats per matrix).
pub(crate) fn record_slogdet(
    enc: &mut Encoder,
    k: &Kernels,
    lu: &Arc<GpuBuffer>,
    piv: &Arc<GpuBuffer>,
    out: &Arc<GpuBuffer>,
    batch: usize,
    n: usize,
) -> Result<()> {
    for (z0, zc) in chunks(batch) {
        let mut p = LuParams::at(n, z0);
        p.batch = batch as u32;
        let u = enc.params(&p)?;
        let bg = enc.bind(
            &k.slogdet,
            &[
                (0, Bind::Params(&u)),
                (1, Bind::Buffer(lu, bytes(batch * n * n))),
                (4, Bind::Buffer(piv, bytes(batch * n))),
                (7, Bind::Buffer(out, bytes(batch * 2))),
            ],
        );
        enc.dispatch(&k.slogdet, &bg, ((zc as usize).div_ceil(64) as u32, 1, 1));
    }
    Ok(())
}

/// Records L (unit lower) or, with `upper`, U of each matrix's LU factors into `out`.
pub(crate) fn record_extract(
    enc: &mut Encoder,
    k: &Kernels,
    lu: &Arc<GpuBuffer>,
    out: &Arc<GpuBuffer>,
    batch: usize,
    n: usize,
    upper: bool,
) -> Result<()> {
    let len = bytes(batch * n * n);
    for (z0, zc) in chunks(batch) {
        let mut p = LuParams::at(n, z0);
        p.flags = if upper { UPPER_OUT } else { 0 };
        let u = enc.params(&p)?;
        let bg = enc.bind(
            &k.extract,
            &[
                (0, Bind::Params(&u)),
                (1, Bind::Buffer(lu, len)),
                (7, Bind::Buffer(out, len)),
            ],
        );
        let g = n.div_ceil(16) as u32;
        enc.dispatch(&k.extract, &bg, (g, g, zc));
    }
    Ok(())
}
