// Batched small dense solves A·X = B (n ≤ 32) by LU with partial pivoting, LAPACK getrf/getrs
// semantics (the pivot is the first row of largest |a| in its column), one dispatch per chunk
// of ≤ 65,535 matrices. A is [batch, n, n], B and X are [batch, n, k], all row-major. The
// grid's y dimension covers the columns of B in chunks of KC; each chunk factors its matrix
// again (n³/3 next to n²·KC per chunk).
//
// Two kernels:
//
// - `solve_small_invocation`: one invocation per matrix (workgroups of 64), no barriers. It is
//   generated per n by src/solve/small.rs (`invocation_source`) and appended to the shared part
//   of this file (everything above the WORKGROUP KERNEL line): straight-line code for that n,
//   every matrix entry a scalar local, so that nothing private is indexed dynamically
//   (lavapipe lowers dynamically indexed private arrays to code ~20× slower). Per column c: the
//   pivot search as a chain of selects (first row of largest |a|), the swap of rows c and p as
//   selects over the rows below c, the multipliers (division, as getf2 for normal pivots) and
//   the rank-1 update. Then, per column of B: the recorded swaps as selects, forward
//   substitution with unit L, back substitution with U.
// - `solve_small_workgroup` (below): one workgroup per matrix, invocation t owns row t (WG ≥
//   n, a multiple of 8). Per column two barriers: column c gathered in `col` for the pivot
//   search (every invocation finds the same pivot), then the pivot row and row c exchanged
//   through `prow`/`krow`. The factors then go to `lus`, and one invocation per column of B
//   substitutes. Generic in n (a straight-line version compiled very slowly on lavapipe at
//   n = 32 — many barriers with many live values — and ran no faster).
//
// status, 2 words per matrix: [0] the first zero pivot (1-based column whose max |a| was
// exactly 0, LAPACK's info; 0 = none), [1] bit 0 if A holds NaN or Inf, bit 1 if B does (then [0] is
// unspecified). A zero pivot's column is left as it is (nothing to eliminate, no division), as
// getrf does; X is then not meaningful. The host clears status first.
//
// Every serial loop runs at most n ≤ 32 or KC = 64 times, far below llvmpipe's
// 65,535-iteration cap.

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

// ---- WORKGROUP KERNEL (not part of the generated invocation modules) ----

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
    var bad_b = false;
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
            bad_b = bad_b || nonfinite(v);
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
    if (bad_b) {
        atomicOr(&status[2u * z + 1u], 2u);
    }
}
