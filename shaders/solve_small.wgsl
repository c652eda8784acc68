// Batched small dense solves A·X = B (n ≤ 32) by LU with partial pivoting, LAPACK getrf/getrs
// semantics (the pivot is the first row of largest |a| in the column), one dispatch per chunk
// of ≤ 65,535 matrices. A is [batch, n, n], B and X are [batch, n, k], all row-major. The
// grid's y dimension covers the columns of B in chunks of KC; each chunk factors its matrix
// again (n³/3 next to n²·KC per chunk).
//
// Two kernels:
// - `solve_small_invocation`: one invocation per matrix, the LU in a private array (all lanes
//   of a SIMD group index it alike, except the pivot-row swap), no barriers.
// - `solve_small_workgroup`: one workgroup per matrix, invocation t owns row t; per column two
//   barriers (column k gathered for the pivot search; pivot row and swapped row exchanged).
//   The factors then go to workgroup memory and one invocation per column of B substitutes.
//
// status, 2 words per matrix: [0] the first zero pivot (1-based column whose max |a| was
// exactly 0, LAPACK's info; 0 = none), [1] 1 if A or B holds NaN or Inf. A zero pivot's column
// is left as it is (nothing to eliminate, no division), as getrf does; X is then not
// meaningful. The host clears status first.
//
// Every serial loop runs at most n² ≤ 1024 (copying A in) or KC = 64 times, far below
// llvmpipe's 65,535-iteration cap.

struct SolveSmallParams {
    n: u32,
    k: u32,
    z0: u32,
    zc: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
}

// Largest n.
const NMAX: u32 = 32u;
// Columns of B per grid row (y).
const KC: u32 = 64u;

@group(0) @binding(0) var<uniform> p: SolveSmallParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>>;

fn nonfinite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// One matrix per invocation: matrix z0 + g.x, columns g.y·KC … of B.
@compute @workgroup_size(64)
fn solve_small_invocation(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = p.n;
    let k = p.k;
    if (g.x >= p.zc) {
        return;
    }
    let z = p.z0 + g.x;
    let base = z * n * n;
    var lu: array<f32, 1024>;
    var piv: array<u32, 32>;
    var bad = false;
    for (var e = 0u; e < n * n; e++) {
        let v = a[base + e];
        bad = bad || nonfinite(v);
        lu[e] = v;
    }
    var info = 0u;
    for (var c = 0u; c < n; c++) {
        var pr = c;
        var best = abs(lu[c * n + c]);
        for (var i = c + 1u; i < n; i++) {
            let v = abs(lu[i * n + c]);
            if (v > best) {
                best = v;
                pr = i;
            }
        }
        piv[c] = pr;
        if (pr != c) {
            for (var j = 0u; j < n; j++) {
                let t = lu[c * n + j];
                lu[c * n + j] = lu[pr * n + j];
                lu[pr * n + j] = t;
            }
        }
        if (best == 0.0) {
            if (info == 0u) {
                info = c + 1u;
            }
            continue;
        }
        let d = lu[c * n + c];
        for (var i = c + 1u; i < n; i++) {
            let l = lu[i * n + c] / d;
            lu[i * n + c] = l;
            for (var j = c + 1u; j < n; j++) {
                lu[i * n + j] = lu[i * n + j] - l * lu[c * n + j];
            }
        }
    }
    let c0 = g.y * KC;
    let c1 = min(c0 + KC, k);
    let bb = z * n * k;
    for (var c = c0; c < c1; c++) {
        var y: array<f32, 32>;
        for (var i = 0u; i < n; i++) {
            let v = b[bb + i * k + c];
            bad = bad || nonfinite(v);
            y[i] = v;
        }
        for (var i = 0u; i < n; i++) {
            let pi = piv[i];
            if (pi != i) {
                let t = y[i];
                y[i] = y[pi];
                y[pi] = t;
            }
        }
        for (var i = 1u; i < n; i++) {
            var s = y[i];
            for (var j = 0u; j < i; j++) {
                s = s - lu[i * n + j] * y[j];
            }
            y[i] = s;
        }
        for (var r = 0u; r < n; r++) {
            let i = n - 1u - r;
            var s = y[i];
            for (var j = i + 1u; j < n; j++) {
                s = s - lu[i * n + j] * y[j];
            }
            y[i] = s / lu[i * n + i];
        }
        for (var i = 0u; i < n; i++) {
            x[bb + i * k + c] = y[i];
        }
    }
    if (g.y == 0u && info != 0u) {
        atomicStore(&status[2u * z], info);
    }
    if (bad) {
        atomicOr(&status[2u * z + 1u], 1u);
    }
}

// Invocations per workgroup of `solve_small_workgroup` (≥ n; the host builds it per size).
override WG: u32 = 32u;

var<workgroup> col: array<f32, NMAX>;
var<workgroup> prow: array<f32, NMAX>;
var<workgroup> krow: array<f32, NMAX>;
var<workgroup> lus: array<f32, 1024>;
var<workgroup> pivs: array<u32, NMAX>;

// One matrix per workgroup: matrix z0 + wg.x, columns wg.y·KC … of B; invocation t owns row t.
@compute @workgroup_size(WG)
fn solve_small_workgroup(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let n = p.n;
    let k = p.k;
    let t = lid.x;
    // The host dispatches exactly zc workgroups along x, so every workgroup has a matrix.
    let z = p.z0 + wg.x;
    let base = z * n * n;
    let own = t < n;
    var row: array<f32, 32>;
    var bad = false;
    if (own) {
        for (var j = 0u; j < n; j++) {
            let v = a[base + t * n + j];
            bad = bad || nonfinite(v);
            row[j] = v;
        }
    }
    var info = 0u;
    for (var c = 0u; c < n; c++) {
        if (own) {
            col[t] = row[c];
        }
        workgroupBarrier();
        // Every invocation finds the same pivot.
        var pr = c;
        var best = abs(col[c]);
        for (var i = c + 1u; i < n; i++) {
            let v = abs(col[i]);
            if (v > best) {
                best = v;
                pr = i;
            }
        }
        if (t == pr) {
            for (var j = 0u; j < n; j++) {
                prow[j] = row[j];
            }
        }
        if (t == c && pr != c) {
            for (var j = 0u; j < n; j++) {
                krow[j] = row[j];
            }
        }
        if (t == 0u) {
            pivs[c] = pr;
        }
        workgroupBarrier();
        if (pr != c) {
            if (t == c) {
                for (var j = 0u; j < n; j++) {
                    row[j] = prow[j];
                }
            } else if (t == pr) {
                for (var j = 0u; j < n; j++) {
                    row[j] = krow[j];
                }
            }
        }
        if (best == 0.0) {
            if (info == 0u) {
                info = c + 1u;
            }
        } else if (own && t > c) {
            let l = row[c] / prow[c];
            row[c] = l;
            for (var j = c + 1u; j < n; j++) {
                row[j] = row[j] - l * prow[j];
            }
        }
    }
    if (own) {
        for (var j = 0u; j < n; j++) {
            lus[t * n + j] = row[j];
        }
    }
    workgroupBarrier();
    let c1 = min(wg.y * KC + KC, k);
    let bb = z * n * k;
    for (var c = wg.y * KC + t; c < c1; c += WG) {
        var y: array<f32, 32>;
        for (var i = 0u; i < n; i++) {
            let v = b[bb + i * k + c];
            bad = bad || nonfinite(v);
            y[i] = v;
        }
        for (var i = 0u; i < n; i++) {
            let pi = pivs[i];
            if (pi != i) {
                let s = y[i];
                y[i] = y[pi];
                y[pi] = s;
            }
        }
        for (var i = 1u; i < n; i++) {
            var s = y[i];
            for (var j = 0u; j < i; j++) {
                s = s - lus[i * n + j] * y[j];
            }
            y[i] = s;
        }
        for (var r = 0u; r < n; r++) {
            let i = n - 1u - r;
            var s = y[i];
            for (var j = i + 1u; j < n; j++) {
                s = s - lus[i * n + j] * y[j];
            }
            y[i] = s / lus[i * n + i];
        }
        for (var i = 0u; i < n; i++) {
            x[bb + i * k + c] = y[i];
        }
    }
    if (t == 0u && wg.y == 0u && info != 0u) {
        atomicStore(&status[2u * z], info);
    }
    if (bad) {
        atomicOr(&status[2u * z + 1u], 1u);
    }
}
