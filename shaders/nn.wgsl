// Training kernels: activation backward, losses with their gradients, column sums
// (bias gradients) and optimizer updates. The shared epilogue (shaders/epilogue.wgsl: `ACT`,
// `activate`, `erfc_pos`, `tanh_safe`, `is_nan`) is prepended by the host.
//
// One element per thread, the 1-D index folded over x and y: i = gid.x + gid.y * p.fold.

struct NnParams {
    n: u32,        // elements (or rows for per-row kernels)
    cols: u32,     // row length for per-row kernels
    fold: u32,     // threads per step of gid.y
    flags: u32,    // kernel-specific: 1 = write the gradient; targets are probabilities (2)
    f0: f32,       // kernel-specific scalars (scale, lr, betas, ...)
    f1: f32,
    f2: f32,
    f3: f32,
    f4: f32,
    f5: f32,
    f6: f32,
    f7: f32,
}

@group(0) @binding(0) var<uniform> p: NnParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>; // required by the epilogue; unused
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read_write> out1: array<f32>;
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;
@group(0) @binding(7) var<storage, read> in2: array<f32>;
@group(0) @binding(8) var<storage, read> in3: array<f32>;
@group(0) @binding(9) var<storage, read> targets_u32: array<u32>;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.fold;
}

// ---------------------------------------------------------------- activations
// d act / dz at z.
fn act_grad(z: f32) -> f32 {
    switch ACT {
        case 1u: {
            return select(0.0, 1.0, z > 0.0);
        }
        case 2u: {
            // Phi(z) + z phi(z)
            let y = abs(z) * 0.70710678118654752;
            let e = erfc_pos(y);
            let cdf = 0.5 * select(2.0 - e, e, z < 0.0);
            return cdf + z * 0.3989422804014327 * exp(-0.5 * z * z);
        }
        case 3u: {
            let u = 0.7978845608028654 * (z + 0.044715 * z * z * z);
            let t = tanh_safe(u);
            return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * z * z);
        }
        case 4u: {
            let s = 1.0 / (1.0 + exp(-z));
            return s * (1.0 - s);
        }
        case 5u: {
            let t = tanh_safe(z);
            return 1.0 - t * t;
        }
        default: {
            return 1.0;
        }
    }
}

// out0 = in1 (dy) * act'(in0 (z))
@compute @workgroup_size(64, 1, 1)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n {
        return;
    }
    out0[i] = in1[i] * act_grad(in0[i]);
}

// ---------------------------------------------------------------- sums
// Column sums (bias gradients) and, with cols = 1, the final sum of per-workgroup partials: one
// pass adds f0 * sum over rows flags <= r < n of in0[r * cols + j] into out0[j] (the pass with
// flags = 0 writes it). One thread per column, Kahan-compensated. The host bounds the rows of a
// pass: lavapipe stops any invocation after 65,535 loop iterations.
@compute @workgroup_size(64, 1, 1)
fn col_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = index(gid);
    if j >= p.cols {
        return;
    }
    var total = 0.0;
    var comp = 0.0; // Kahan compensation
    for (var r = p.flags; r < p.n; r++) {
        let y = in0[r * p.cols + j] - comp;
        let t = total + y;
        comp = (t - total) - y;
        total = t;
    }
    if p.flags == 0u {
        out0[j] = p.f0 * total;
    } else {
        out0[j] += p.f0 * total;
    }
}

// ---------------------------------------------------------------- mse
// Per-workgroup partial sums of (in0 - in1)^2 into out0[workgroup]; with flags & 1 also the
// gradient out1 = f0 * (in0 - in1) (f0 = 2/N for the mean, 2 for the sum).
const WG: u32 = 64u;
var<workgroup> scratch: array<f32, 64>;

// The sum over the workgroup of one value per thread (thread t passes `v`; every thread gets
// the total). Call in uniform control flow: it has barriers.
fn workgroup_sum(v: f32, t: u32) -> f32 {
    scratch[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if t < stride {
            scratch[t] = scratch[t] + scratch[t + stride];
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64, 1, 1)
fn mse_partial(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = wid.x + wid.y * nwg.x;
    // Each workgroup covers 64 threads x 8 consecutive elements per thread.
    let base = group * WG * 8u + lid.x;
    var s = 0.0;
    for (var e = 0u; e < 8u; e++) {
        let i = base + e * WG;
        if i < p.n {
            let d = in0[i] - in1[i];
            s = s + d * d;
            if (p.flags & 1u) != 0u {
                out1[i] = p.f0 * d;
            }
        }
    }
    let total = workgroup_sum(s, lid.x);
    if lid.x == 0u {
        out0[group] = total;
    }
}

// ---------------------------------------------------------------- cross-entropy with logits
// One workgroup per row of in0 (logits, n rows x cols). Targets: class indices (targets_u32) or,
// with flags & 2, probabilities (in1, same shape as the logits). Writes the row loss to out0[row]
// (NaN for an out-of-range class index) and, with flags & 1, the gradient
// out1 = f0 * (softmax(row) * sum(t) - t) (f0 = 1/rows for the mean, 1 for the sum).
@compute @workgroup_size(64, 1, 1)
fn cross_entropy_rows(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    let in_range = row < p.n; // uniform across the workgroup
    let base = row * p.cols;
    // Row maximum (NaN-propagating by bits).
    var mx = -3.4028235e38;
    var has_nan = false;
    if in_range {
        for (var j = lid.x; j < p.cols; j += WG) {
            let v = in0[base + j];
            has_nan = has_nan || is_nan(v);
            mx = max(mx, v);
        }
    }
    scratch[lid.x] = select(mx, bitcast<f32>(0x7fc00000u), has_nan);
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid.x < stride {
            let a = scratch[lid.x];
            let b = scratch[lid.x + stride];
            scratch[lid.x] = select(max(a, b), bitcast<f32>(0x7fc00000u), is_nan(a) || is_nan(b));
        }
        workgroupBarrier();
    }
    let row_max = scratch[0];
    workgroupBarrier();
    // Sum of exp(x - max), and for probability targets sum(t) and sum(t * x).
    var se = 0.0;
    var st = 0.0;
    var stx = 0.0;
    let probs = (p.flags & 2u) != 0u;
    if in_range {
        for (var j = lid.x; j < p.cols; j += WG) {
            let v = in0[base + j];
            se = se + exp(v - row_max);
            if probs {
                let t = in1[base + j];
                st = st + t;
                stx = stx + t * (v - row_max);
            }
        }
    }
    let sum_exp = workgroup_sum(se, lid.x);
    var tsum = 1.0;
    var tx = 0.0;
    var cls = 0u;
    var bad = false;
    if probs {
        tsum = workgroup_sum(st, lid.x);
        tx = workgroup_sum(stx, lid.x);
    } else if in_range {
        cls = targets_u32[row];
        bad = cls >= p.cols;
        if !bad {
            tx = in0[base + cls] - row_max;
        }
    }
    if !in_range {
        return;
    }
    // loss = logsumexp - sum(t * x) = log(sum_exp) * sum(t) - sum(t * (x - max))
    let lse = log(sum_exp);
    if lid.x == 0u {
        out0[row] = select(lse * tsum - tx, bitcast<f32>(0x7fc00000u), bad);
    }
    if (p.flags & 1u) != 0u {
        for (var j = lid.x; j < p.cols; j += WG) {
            let sm = exp(in0[base + j] - row_max) / sum_exp;
            var t = 0.0;
            if probs {
                t = in1[base + j];
            } else {
                t = select(0.0, 1.0, j == cls);
            }
            out1[base + j] = select(p.f0 * (sm * tsum - t), bitcast<f32>(0x7fc00000u), bad);
        }
    }
}

// ---------------------------------------------------------------- optimizers
// SGD with momentum (PyTorch): g' = g + wd * p; v = mu * v + g'; p = p - lr * v.
// in0 = p, in1 = g, in2 = v; out0 = p', out1 = v'. f0 = lr, f1 = momentum, f2 = weight decay.
@compute @workgroup_size(64, 1, 1)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n {
        return;
    }
    let g = in1[i] + p.f2 * in0[i];
    let v = p.f1 * in2[i] + g;
    out1[i] = v;
    out0[i] = in0[i] - p.f0 * v;
}

// Adam (PyTorch): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
// in0 = p, in1 = g, in2 = m, in3 = v; out0 = p', out1 = m', out2 = v'.
// f0 = lr, f1 = b1, f2 = b2, f3 = eps, f4 = 1 - b1^t, f5 = 1 - b2^t, f6 = weight decay.
@compute @workgroup_size(64, 1, 1)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n {
        return;
    }
    let g = in1[i] + p.f6 * in0[i];
    let m = p.f1 * in2[i] + (1.0 - p.f1) * g;
    let v = p.f2 * in3[i] + (1.0 - p.f2) * g * g;
    out1[i] = m;
    out2[i] = v;
    out0[i] = in0[i] - p.f0 * (m / p.f4) / (sqrt(v / p.f5) + p.f3);
}
