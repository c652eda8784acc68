// Batched one-sided (Hestenes) Jacobi SVD of many small matrices: one invocation per matrix,
// cyclic ordering, run to convergence inside the kernel (rows, cols ≤ 32).
//
// Matrix b's work matrix W (rows × cols, cols ≤ rows, column c at w[w0 + c*rows ..], private
// memory) is A (transposed on the way in) for a tall or square A, Aᵀ for a wide one; V
// (cols × cols, column j at vm[v0 + j*cols ..]) accumulates the rotations. Outputs, row-major per
// matrix: U [m, k], S [k], Vt [k, n], columns in descending order of singular value.

override WG: u32 = 64u;

struct Params {
    batch: u32,
    rows: u32,       // length of a column of W
    cols: u32,       // columns of W (= k)
    wide: u32,       // 1 when W = Aᵀ
    tol: f32,        // convergence: scaled off-diagonal ≤ tol for every pair
    zrel: f32,       // columns with norm ≤ zrel·‖A‖_F count as zero
    max_sweeps: u32,
    gx: u32,         // workgroups along x of the folded grid
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> vm: array<f32>;
// Per matrix: state[3b] = ‖W‖_F², state[3b+1] = the scale 2⁻ᵉ, state[3b+2] = 1 once converged.
@group(0) @binding(8) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> uo: array<f32>;
@group(0) @binding(5) var<storage, read_write> so: array<f32>;
@group(0) @binding(6) var<storage, read_write> vto: array<f32>;
// stats[1] = bits of the largest off-diagonal of the last sweep, stats[2] = 1 when some input
// value is NaN or infinite, stats[3] = matrices still rotating after the last sweep.
@group(0) @binding(7) var<storage, read_write> stats: array<atomic<u32>, 4>;

fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(WG)
fn svd_batched_init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = (wid.y * p.gx + wid.x) * WG + lid.x;
    if b >= p.batch {
        return;
    }
    let rows = p.rows;
    let cols = p.cols;
    let mn = rows * cols;
    let a0 = b * mn;
    let w0 = b * mn;
    let v0 = b * cols * cols;

    // Scale max|A| into [0.5, 1) by a power of two; copy into W; V = I.
    var mx = 0.0;
    var bad = false;
    for (var i = 0u; i < mn; i++) {
        let x = a[a0 + i];
        bad = bad || non_finite(x);
        mx = max(mx, abs(x));
    }
    if bad {
        atomicMax(&stats[2], 1u);
        state[3u * b] = -1.0;
        return;
    }
    var e = 0;
    if mx > 0.0 {
        e = clamp(frexp(mx).exp, -125, 126);
    }
    let inv = ldexp(1.0, -e);
    var fro2 = 0.0;
    for (var c = 0u; c < cols; c++) {
        for (var r = 0u; r < rows; r++) {
            // Tall: W[r, c] = A[r, c] (A row-major rows × cols); wide: W[r, c] = A[c, r].
            var x: f32;
            if p.wide == 1u {
                x = a[a0 + c * rows + r];
            } else {
                x = a[a0 + r * cols + c];
            }
            x *= inv;
            w[w0 + c * rows + r] = x;
            fro2 += x * x;
        }
        for (var r = 0u; r < cols; r++) {
            vm[v0 + c * cols + r] = select(0.0, 1.0, r == c);
        }
    }
    state[3u * b] = fro2;
    state[3u * b + 1u] = inv;
    state[3u * b + 2u] = 0.0;
}

@compute @workgroup_size(WG)
fn svd_batched_sweep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = (wid.y * p.gx + wid.x) * WG + lid.x;
    if b >= p.batch {
        return;
    }
    let rows = p.rows;
    let cols = p.cols;
    let mn = rows * cols;
    let w0 = b * mn;
    let v0 = b * cols * cols;
    if state[3u * b + 2u] != 0.0 || state[3u * b] < 0.0 {
        return;
    }
    let zt2 = p.zrel * p.zrel * state[3u * b];
    var off = 0.0;
    for (var i = 0u; i + 1u < cols; i++) {
        for (var j = i + 1u; j < cols; j++) {
            var g = vec3<f32>(0.0);
            for (var r = 0u; r < rows; r++) {
                let x = w[w0 + i * rows + r];
                let y = w[w0 + j * rows + r];
                g += vec3<f32>(x * x, y * y, x * y);
            }
            if g.x <= zt2 || g.y <= zt2 {
                continue;
            }
            let o = abs(g.z) / (sqrt(g.x) * sqrt(g.y));
            off = max(off, o);
            if !(o > p.tol) {
                continue;
            }
            let zeta = (g.y - g.x) / (2.0 * g.z);
            let sg = select(-1.0, 1.0, zeta >= 0.0);
            var t: f32;
            if abs(zeta) > 1e15 {
                t = 0.5 / zeta;
            } else {
                t = sg / (abs(zeta) + sqrt(1.0 + zeta * zeta));
            }
            let cs = 1.0 / sqrt(1.0 + t * t);
            let sn = t * cs;
            for (var r = 0u; r < rows; r++) {
                let x = w[w0 + i * rows + r];
                let y = w[w0 + j * rows + r];
                w[w0 + i * rows + r] = cs * x - sn * y;
                w[w0 + j * rows + r] = sn * x + cs * y;
            }
            for (var r = 0u; r < cols; r++) {
                let x = vm[v0 + i * cols + r];
                let y = vm[v0 + j * cols + r];
                vm[v0 + i * cols + r] = cs * x - sn * y;
                vm[v0 + j * cols + r] = sn * x + cs * y;
            }
        }
    }
    atomicMax(&stats[1], bitcast<u32>(off));
    if off > p.tol {
        atomicAdd(&stats[3], 1u);
    } else {
        state[3u * b + 2u] = 1.0;
    }
}

@compute @workgroup_size(WG)
fn svd_batched_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = (wid.y * p.gx + wid.x) * WG + lid.x;
    if b >= p.batch {
        return;
    }
    let rows = p.rows;
    let cols = p.cols;
    let mn = rows * cols;
    let w0 = b * mn;
    let v0 = b * cols * cols;
    if state[3u * b] < 0.0 {
        return;
    }
    let zt2 = p.zrel * p.zrel * state[3u * b];
    let inv = state[3u * b + 1u];
    // Column norms; zero columns replaced by unit vectors orthogonal to all the others
    // (Gram–Schmidt, twice, of the first unit vector eₜ not covered by them).
    var nrm: array<f32, 32>;
    var good: array<bool, 32>;
    for (var c = 0u; c < cols; c++) {
        var s = 0.0;
        for (var r = 0u; r < rows; r++) {
            let x = w[w0 + c * rows + r];
            s += x * x;
        }
        nrm[c] = sqrt(s);
        good[c] = s > zt2;
    }
    var sigma: array<f32, 32>;
    for (var c = 0u; c < cols; c++) {
        sigma[c] = select(0.0, nrm[c], good[c]);
    }
    var x: array<f32, 32>;
    for (var z = 0u; z < cols; z++) {
        if good[z] {
            continue;
        }
        for (var t = 0u; t < rows; t++) {
            for (var r = 0u; r < rows; r++) {
                x[r] = select(0.0, 1.0, r == t);
            }
            for (var it = 0u; it < 2u; it++) {
                for (var c = 0u; c < cols; c++) {
                    if !good[c] {
                        continue;
                    }
                    var d = 0.0;
                    for (var r = 0u; r < rows; r++) {
                        d += x[r] * w[w0 + c * rows + r];
                    }
                    d /= nrm[c] * nrm[c];
                    for (var r = 0u; r < rows; r++) {
                        x[r] -= d * w[w0 + c * rows + r];
                    }
                }
            }
            var s = 0.0;
            for (var r = 0u; r < rows; r++) {
                s += x[r] * x[r];
            }
            if s > 0.25 {
                let q = 1.0 / sqrt(s);
                for (var r = 0u; r < rows; r++) {
                    w[w0 + z * rows + r] = x[r] * q;
                }
                nrm[z] = 1.0;
                good[z] = true;
                break;
            }
        }
    }

    // Descending order of σ (selection; ties keep the column order).
    var perm: array<u32, 32>;
    var used: array<bool, 32>;
    for (var q = 0u; q < cols; q++) {
        var best = 0u;
        var bv = -1.0;
        for (var c = 0u; c < cols; c++) {
            if !used[c] && sigma[c] > bv {
                best = c;
                bv = sigma[c];
            }
        }
        used[best] = true;
        perm[q] = best;
    }

    let k = cols;
    let m = select(rows, cols, p.wide == 1u);
    let n = select(cols, rows, p.wide == 1u);
    for (var q = 0u; q < k; q++) {
        let c = perm[q];
        so[b * k + q] = sigma[c] / inv;
        let sc = select(0.0, 1.0 / nrm[c], nrm[c] > 0.0);
        if p.wide == 1u {
            // U = V (k × k), Vt = (W·diag(1/σ))ᵀ.
            for (var r = 0u; r < m; r++) {
                uo[b * m * k + r * k + q] = vm[v0 + c * cols + r];
            }
            for (var j = 0u; j < n; j++) {
                vto[b * k * n + q * n + j] = w[w0 + c * rows + j] * sc;
            }
        } else {
            for (var r = 0u; r < m; r++) {
                uo[b * m * k + r * k + q] = w[w0 + c * rows + r] * sc;
            }
            for (var j = 0u; j < n; j++) {
                vto[b * k * n + q * n + j] = vm[v0 + c * cols + j];
            }
        }
    }
}
