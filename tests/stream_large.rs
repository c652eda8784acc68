//! The streamed PCA of a matrix larger than the adapter's `max_buffer_size` (2 GiB on
//! lavapipe): generated into a temporary `.npy` file (removed after), PCA'd by
//! `Context::pca_stream` in blocks of a 256 MiB budget, and judged against an f64 reference
//! accumulated while generating (faer, exact sums of the rows' outer products). The peak
//! resident memory of the process (VmHWM) is asserted to stay within 1 GiB + the budget.

mod common;

use faer::{Mat, Side};
use gpu_linalg::npy::NpyRowWriter;
use gpu_linalg::{MemoryBudget, NpyRowBlocks, PcaStreamMethod};

/// Columns of the matrix; its rows follow from the size.
const COLS: usize = 64;
/// Components asked for.
const K: usize = 10;
/// Rows generated per chunk (and per f64 reference update).
const CHUNK: usize = 1 << 16;

/// The peak resident set of this process, from /proc/self/status, in bytes.
fn vm_hwm() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Latent rows z·B + noise + offset: 12 latent directions of variances 2^(4 − j/1.5)
/// (separated), isotropic noise of variance 0.01, and a mean of 5 + column/8.
struct Generator {
    basis: Vec<f32>,
    state: u64,
}

impl Generator {
    fn new() -> Generator {
        let basis = common::with_singular_values(12, COLS, &[1.0; 12], 77);
        Generator {
            basis,
            state: 0x2545F4914F6CDD1D,
        }
    }

    /// A uniform value in [−√3, √3) (unit variance).
    fn uniform(&mut self) -> f32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        ((self.state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 3f32.sqrt()
    }

    fn rows(&mut self, count: usize, out: &mut Vec<f32>) {
        out.clear();
        let scales: Vec<f32> = (0..12)
            .map(|j| 2f32.powf((4.0 - j as f32 / 1.5) / 2.0))
            .collect();
        for _ in 0..count {
            let z: Vec<f32> = scales.iter().map(|s| s * self.uniform()).collect();
            for p in 0..COLS {
                let mut v = 5.0 + p as f32 / 8.0 + 0.1 * self.uniform();
                for (j, zj) in z.iter().enumerate() {
                    v += zj * self.basis[j * COLS + p];
                }
                out.push(v);
            }
        }
    }
}

#[test]
fn pca_stream_of_a_matrix_past_max_buffer_size() {
    let Some(ctx) = common::gpu() else { return };
    let (device, _) = ctx.wgpu().expect("a GPU context");
    let max_buffer = device.limits().max_buffer_size;
    let rows = (max_buffer as usize / (COLS * 4) + CHUNK).div_ceil(CHUNK) * CHUNK;
    let dir = std::env::temp_dir().join(format!("gpu-linalg-stream-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tall.npy");
    // Generate, accumulating the f64 sums Σx and Σxxᵀ of the f32 values written.
    let started = std::time::Instant::now();
    let mut gen = Generator::new();
    let mut writer = NpyRowWriter::create(&path, rows, COLS).unwrap();
    let mut gram = Mat::<f64>::zeros(COLS, COLS);
    let mut sums = vec![0.0f64; COLS];
    let mut chunk = Vec::new();
    for _ in 0..rows / CHUNK {
        gen.rows(CHUNK, &mut chunk);
        writer.append_rows(&chunk).unwrap();
        let x = Mat::<f64>::from_fn(CHUNK, COLS, |i, j| f64::from(chunk[i * COLS + j]) - 5.0);
        gram += x.transpose() * &x;
        for row in chunk.chunks_exact(COLS) {
            for (s, v) in sums.iter_mut().zip(row) {
                *s += f64::from(*v) - 5.0;
            }
        }
    }
    writer.finish().unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "generated {rows}×{COLS} f32 ({:.2} GiB; max_buffer_size {:.2} GiB) in {:.1} s",
        bytes as f64 / (1u64 << 30) as f64,
        max_buffer as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    assert!(bytes > max_buffer, "the file must not fit one buffer");
    // The f64 reference covariance and its eigen-decomposition.
    let m = rows as f64;
    let cov = Mat::<f64>::from_fn(COLS, COLS, |i, j| {
        (gram[(i, j)] - sums[i] * sums[j] / m) / (m - 1.0)
    });
    let total: f64 = (0..COLS).map(|i| cov[(i, i)]).sum();
    let evd = cov.self_adjoint_eigen(Side::Lower).unwrap();
    let (u, s) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..COLS).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));

    let budget = MemoryBudget::default();
    let hwm_before = vm_hwm();
    let started = std::time::Instant::now();
    let mut src = NpyRowBlocks::open(&path, budget).unwrap();
    let pca = ctx.pca_stream(&mut src, K, PcaStreamMethod::Auto).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let hwm = vm_hwm();
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!(
        "pca_stream: {seconds:.1} s ({:.2} GB/s of input), blocks of {} rows, {} passes; VmHWM {:?} MiB before, {:?} MiB after",
        bytes as f64 / seconds / 1e9,
        src.block_rows(),
        pca.passes,
        hwm_before.map(|b| b >> 20),
        hwm.map(|b| b >> 20)
    );
    assert_eq!(pca.rows, rows);
    let ev = pca.explained_variance.to_vec().unwrap();
    let ratio = pca.explained_variance_ratio.to_vec().unwrap();
    let comps = pca.components.to_vec().unwrap();
    for (j, &c) in order[..K].iter().enumerate() {
        let want = s[c];
        let rel = (f64::from(ev[j]) - want).abs() / want;
        let rel_ratio = (f64::from(ratio[j]) - want / total).abs() / (want / total);
        let cos: f64 = (0..COLS)
            .map(|p| f64::from(comps[j * COLS + p]) * u[(p, c)])
            .sum::<f64>()
            .abs();
        eprintln!("component {j}: variance {} vs {want:.6} (rel {rel:.1e}), ratio rel {rel_ratio:.1e}, |cos| {cos:.6}", ev[j]);
        assert!(
            rel <= 1e-3,
            "component {j}: variance {} vs f64 {want}",
            ev[j]
        );
        assert!(
            rel_ratio <= 1e-3,
            "component {j}: ratio {} vs f64 {}",
            ratio[j],
            want / total
        );
        assert!(cos >= 0.999, "component {j}: |cos| {cos}");
    }
    if let Some(hwm) = hwm {
        let limit = (1u64 << 30) + budget.bytes as u64;
        assert!(
            hwm <= limit,
            "VmHWM {} MiB > 1 GiB + the {} MiB budget",
            hwm >> 20,
            budget.bytes >> 20
        );
    }
}
