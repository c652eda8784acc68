// Reductions with numpy semantics: sum, mean, max, min, argmax, argmin, L2 norm, variance,
// logsumexp, and the passes of softmax / log-softmax.
//
// The tensor is viewed as (outer, len, inner) and reduced along `len`. A pass reads either the
// input x (applying the op's per-element term) or the partial accumulators of an earlier pass,
// splits the axis into `groups` segments of `chunk` elements, and writes one accumulator per
// (outer, segment, inner) — or, when `fin` is set (groups == 1), the finished value.
//
// Kernels:
//   reduce_rows  inner == 1: a workgroup per (row, segment), vec4 loads where rows are 16-byte
//                aligned, many elements per thread with a compensated (Neumaier) accumulator,
//                then a workgroup combine: a barrier tree (`combine_workgroup`) or subgroup
//                operations (the host keeps the SUBGROUP section; naga 30 takes no enable).
//   reduce_serial inner == 1, one invocation per (row, segment) with uniform addresses: what
//                CPU-type adapters (lavapipe) run fastest, where per-lane loads are gathers.
//   reduce_cols  inner > 1 (or short rows): a thread per (outer, segment, inner) column, looping
//                along the axis; neighbouring threads read neighbouring addresses.
//   normalize    softmax / log-softmax: one thread per element from the row max and sum of exp.
//
// NaN is tested by its bits: compilers may assume no NaN and fold `x != x` or `max`.
// Accumulators are combined with an error-free TwoSum, and max/argmax with an explicit index
// tie-break (first index of ties and of NaN), so the combine order does not matter.
// Inputs larger than one storage binding are reduced window by window: the host binds x (or the
// partials), dst and aux from offsets aligned to min_storage_buffer_offset_alignment, and the
// kernels subtract the window starts (src_start, d_start, a_start) from global indices, so
// positions and argmax/argmin indices stay global.
// Every index is bounded by sizes the host derives from the plan and its windows (the module is
// built without runtime checks; see the SAFETY comment in src/ops/reduce.rs).

struct Params {
    outer: u32,
    len: u32,
    inner: u32,
    groups: u32,
    chunk: u32,
    grid_x: u32,
    total: u32,
    full_len: u32,
    div: f32,
    vec_ok: u32,
    fin: u32,
    from_partials: u32,
    fshift: u32,
    pos_inf: u32,
    nan_bits: u32,
    mode: u32,
    lanes: u32,
    vec8_ok: u32,
    // Windows (inputs larger than one storage binding): the dispatch covers slots
    // s_off .. s_off + total; every index below is global, and a buffer bound from an aligned
    // offset is read at (global index - the global index of its binding's first element).
    s_off: u32,
    src_start: u32,
    d_start: u32,
    a_start: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read> pin: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> dst: array<u32>;
@group(0) @binding(6) var<storage, read> aux2: array<f32>;

// 0 sum, 1 mean, 2 max, 3 min, 4 argmax, 5 argmin, 6 norm (sum of squares), 7 var (sum of
// squared deviations from aux), 8 logsumexp (sum of exp(x - shift), shift from aux),
// 9 sum of exp(x - shift) unfinished (softmax).
override OP: u32 = 0u;
override WG: u32 = 256u;

const NONE: u32 = 0xffffffffu;

struct Acc {
    v: f32,
    c: f32,
    i: u32,
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// The per-output value of aux (aux2) for global output q.
fn aux_at(q: u32) -> f32 {
    return aux[q - p.a_start];
}

fn aux2_at(q: u32) -> f32 {
    return aux2[q - p.a_start];
}

// Input element g (global).
fn xg(g: u32) -> f32 {
    return x[g - p.src_start];
}

// Input elements g..g+3 (g a multiple of 4; src_start a multiple of 8).
fn x4g(g: u32) -> vec4<f32> {
    return x4[(g - p.src_start) / 4u];
}

fn inf() -> f32 {
    return bitcast<f32>(p.pos_inf);
}

fn is_sum() -> bool {
    return OP <= 1u || OP >= 6u;
}

fn is_min() -> bool {
    return OP == 3u || OP == 5u;
}

fn identity() -> Acc {
    if is_sum() {
        return Acc(0.0, 0.0, 0u);
    }
    if is_min() {
        return Acc(inf(), 0.0, NONE);
    }
    return Acc(-inf(), 0.0, NONE);
}

// The shift of exp(x - shift): the max, or (logsumexp, log-softmax) 0 where the max is ±inf/NaN.
fn shift(m: f32) -> f32 {
    if p.fshift != 0u && !is_finite(m) {
        return 0.0;
    }
    return m;
}

// The op's term for input value v of output q.
fn term(v: f32, q: u32) -> f32 {
    switch OP {
        case 6u: {
            return v * v;
        }
        case 7u: {
            let d = v - aux_at(q);
            return d * d;
        }
        case 8u, 9u: {
            return exp(v - shift(aux_at(q)));
        }
        default: {
            return v;
        }
    }
}

// Adds element v at axis position k (a thread sees its positions in increasing order).
// Neumaier: adds t and keeps the rounding error of s + t, from whichever operand is larger.
fn add_term(a: ptr<function, Acc>, t: f32) {
    let s = (*a).v;
    let r = s + t;
    (*a).c += select((t - r) + s, (s - r) + t, abs(s) >= abs(t));
    (*a).v = r;
}

// The op's terms of four input values of output q.
fn term4(v: vec4<f32>, q: u32) -> vec4<f32> {
    switch OP {
        case 6u: {
            return v * v;
        }
        case 7u: {
            let d = v - vec4(aux_at(q));
            return d * d;
        }
        case 8u, 9u: {
            return exp(v - vec4(shift(aux_at(q))));
        }
        default: {
            return v;
        }
    }
}

// Adds elements k..k+3: sums add their terms pairwise first (two levels), then compensated.
fn add4(a: ptr<function, Acc>, v: vec4<f32>, k: u32, q: u32) {
    if is_sum() {
        let t = term4(v, q);
        add_term(a, (t.x + t.y) + (t.z + t.w));
    } else {
        add(a, v.x, k, q);
        add(a, v.y, k + 1u, q);
        add(a, v.z, k + 2u, q);
        add(a, v.w, k + 3u, q);
    }
}

// Adds elements k..k+7 (u: the first four): sums pairwise first (three levels).
fn add8(a: ptr<function, Acc>, u: vec4<f32>, w: vec4<f32>, k: u32, q: u32) {
    if is_sum() {
        let t = term4(u, q) + term4(w, q);
        add_term(a, (t.x + t.y) + (t.z + t.w));
    } else {
        add4(a, u, k, q);
        add4(a, w, k + 4u, q);
    }
}

fn add(a: ptr<function, Acc>, v: f32, k: u32, q: u32) {
    if is_sum() {
        add_term(a, term(v, q));
    } else {
        let cur = (*a).v;
        if is_nan(cur) {
            return;
        }
        var better: bool;
        if is_min() {
            better = v < cur;
        } else {
            better = v > cur;
        }
        if is_nan(v) || better || (*a).i == NONE {
            (*a).v = v;
            (*a).i = k;
        }
    }
}

fn combine(a: Acc, b: Acc) -> Acc {
    if is_sum() {
        let s = a.v + b.v;
        let bb = s - a.v;
        let e = (a.v - (s - bb)) + (b.v - bb);
        return Acc(s, a.c + b.c + e, 0u);
    }
    let an = is_nan(a.v);
    let bn = is_nan(b.v);
    if an || bn {
        if an && bn {
            if a.i <= b.i {
                return a;
            }
            return b;
        }
        if an {
            return a;
        }
        return b;
    }
    var better: bool;
    if is_min() {
        better = a.v < b.v;
    } else {
        better = a.v > b.v;
    }
    if better || (a.v == b.v && a.i <= b.i) {
        return a;
    }
    return b;
}

fn load_acc(w: u32) -> Acc {
    let v = pin[w - p.src_start];
    return Acc(bitcast<f32>(v.x), bitcast<f32>(v.y), v.z);
}

// The finished value of output q, as stored (f32 bits, or a u32 index).
fn finish(a: Acc, q: u32) -> u32 {
    if OP == 4u || OP == 5u {
        return a.i;
    }
    if OP == 2u || OP == 3u {
        return bitcast<u32>(a.v);
    }
    var s = a.v;
    if is_finite(s) {
        s = s + a.c;
    }
    var r = s;
    switch OP {
        case 1u: {
            r = s / f32(p.full_len);
        }
        case 6u: {
            r = sqrt(s);
        }
        case 7u: {
            r = s / p.div;
        }
        case 8u: {
            r = log(s) + shift(aux_at(q));
        }
        default: {}
    }
    return bitcast<u32>(r);
}

fn store(a: Acc, idx: u32, q: u32) {
    if p.fin != 0u {
        dst[idx - p.d_start] = finish(a, q);
    } else {
        let d = 4u * idx - p.d_start;
        dst[d] = bitcast<u32>(a.v);
        dst[d + 1u] = bitcast<u32>(a.c);
        dst[d + 2u] = a.i;
    }
}

var<workgroup> shared_acc: array<Acc, WG>;

//#if INT64
// With SHADER_INT64, eight f32 per 32-byte load: CPU-type adapters (lavapipe) load per lane and
// per component, so wider components halve their load cost.
@group(0) @binding(7) var<storage, read> x8: array<vec4<u64>>;

fn lo(v: u64) -> f32 {
    return bitcast<f32>(u32(v & 0xfffffffflu));
}

fn hi(v: u64) -> f32 {
    return bitcast<f32>(u32(v >> 32u));
}

// Accumulates the whole groups of eight of [start, end) (base + start a multiple of 8) in the
// layout of row_partial; returns where it stopped.
fn vec8_part(a: ptr<function, Acc>, base: u32, start: u32, end: u32, t: u32, row: u32) -> u32 {
    let lanes = p.lanes;
    let off = (t / lanes) * lanes;
    let lane_t = t % lanes;
    let items = (end - start) / 8u;
    // Full rounds without a bounds test (every thread has an item), then one guarded round.
    let full = items / WG;
    for (var i = 0u; i < full; i++) {
        let k = start + 8u * (off * full + i * lanes + lane_t);
        let v = x8[(base + k - p.src_start) / 8u];
        add8(a, vec4(lo(v.x), hi(v.x), lo(v.y), hi(v.y)), vec4(lo(v.z), hi(v.z), lo(v.w), hi(v.w)), k, row);
    }
    let j = full * WG + t;
    if j < items {
        let k = start + 8u * j;
        let v = x8[(base + k - p.src_start) / 8u];
        add8(a, vec4(lo(v.x), hi(v.x), lo(v.y), hi(v.y)), vec4(lo(v.z), hi(v.z), lo(v.w), hi(v.w)), k, row);
    }
    return start + items * 8u;
}
//#else INT64
fn vec8_part(a: ptr<function, Acc>, base: u32, start: u32, end: u32, t: u32, row: u32) -> u32 {
    return start;
}
//#endif INT64

// Accumulates this thread's elements of (row, segment) for the rows kernel (wl: the slot within
// the window).
fn row_partial(wl: u32, t: u32) -> Acc {
    var a = identity();
    if wl >= p.total {
        return a;
    }
    let w = wl + p.s_off;
    let row = w / p.groups;
    let seg = w % p.groups;
    let start = seg * p.chunk;
    let end = min(start + p.chunk, p.len);
    let base = row * p.len;
    // Thread t's i-th item is block (t / L), lane (t % L): runs of L threads read L neighbouring
    // items per step. L = WG interleaves the whole workgroup (what a GPU coalesces); a small L
    // (the SIMD width) keeps each run's reads contiguous on CPU-type adapters, which run a
    // workgroup's SIMD groups one after another.
    let lanes = p.lanes;
    let off = (t / lanes) * lanes;
    let lane_t = t % lanes;
    if p.from_partials != 0u {
        let items = end - start;
        let iters = (items + WG - 1u) / WG;
        for (var i = 0u; i < iters; i++) {
            let j = off * iters + i * lanes + lane_t;
            if j < items {
                a = combine(a, load_acc(base + start + j));
            }
        }
    } else if p.vec_ok != 0u {
        // base and start are multiples of 4 (of 8 with vec8_ok; host-checked).
        var first = start;
        if p.vec8_ok != 0u {
            first = vec8_part(&a, base, start, end, t, row);
        }
        let items = (end - first) / 4u;
        let end4 = first + items * 4u;
        let full = items / WG;
        for (var i = 0u; i < full; i++) {
            let k = first + 4u * (off * full + i * lanes + lane_t);
            add4(&a, x4g(base + k), k, row);
        }
        let j = full * WG + t;
        if j < items {
            let k = first + 4u * j;
            add4(&a, x4g(base + k), k, row);
        }
        if t == 0u {
            for (var k = end4; k < end; k++) {
                add(&a, xg(base + k), k, row);
            }
        }
    } else {
        let items = end - start;
        let iters = (items + WG - 1u) / WG;
        for (var i = 0u; i < iters; i++) {
            let j = off * iters + i * lanes + lane_t;
            if j < items {
                add(&a, xg(base + start + j), start + j, row);
            }
        }
    }
    return a;
}

//#if SUBGROUP
// Subgroup combine: one subgroup operation per field, then thread 0 folds the subgroups.
fn combine_workgroup(a: Acc, t: u32, lane: u32, sg: u32, nsg: u32) -> Acc {
    var r: Acc;
    if is_sum() {
        r = Acc(subgroupAdd(a.v), subgroupAdd(a.c), 0u);
    } else {
        let nan = is_nan(a.v);
        let any_nan = subgroupAny(nan);
        var v = a.v;
        if nan {
            v = identity().v;
        }
        var best: f32;
        if is_min() {
            best = subgroupMin(v);
        } else {
            best = subgroupMax(v);
        }
        var hit = v == best && !nan;
        if any_nan {
            hit = nan;
        }
        let idx = subgroupMin(select(NONE, a.i, hit));
        var value = best;
        if any_nan {
            value = bitcast<f32>(p.nan_bits);
        }
        r = Acc(value, 0.0, idx);
    }
    if lane == 0u {
        shared_acc[sg] = r;
    }
    workgroupBarrier();
    var out = identity();
    if t == 0u {
        for (var s = 0u; s < min(nsg, WG); s++) {
            out = combine(out, shared_acc[s]);
        }
    }
    return out;
}

@compute @workgroup_size(WG)
fn reduce_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let wl = wid.x + wid.y * p.grid_x;
    let a = row_partial(wl, t);
    let r = combine_workgroup(a, t, lane, sg, nsg);
    if t == 0u && wl < p.total {
        let w = wl + p.s_off;
        store(r, w, w / p.groups);
    }
}
//#else
// Barrier tree over the workgroup.
fn combine_workgroup(a: Acc, t: u32) -> Acc {
    shared_acc[t] = a;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if t < s {
            shared_acc[t] = combine(shared_acc[t], shared_acc[t + s]);
        }
        workgroupBarrier();
    }
    return shared_acc[0];
}

@compute @workgroup_size(WG)
fn reduce_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let wl = wid.x + wid.y * p.grid_x;
    let a = row_partial(wl, t);
    let r = combine_workgroup(a, t);
    if t == 0u && wl < p.total {
        let w = wl + p.s_off;
        store(r, w, w / p.groups);
    }
}
//#endif

// One invocation per (row, segment): every address is uniform across the SIMD lanes of
// CPU-type adapters (lavapipe), which then load without per-lane gathers; four independent
// accumulators per invocation.
@compute @workgroup_size(1)
fn reduce_serial(@builtin(workgroup_id) wid: vec3<u32>) {
    let wl = wid.x + wid.y * p.grid_x;
    if wl >= p.total {
        return;
    }
    let w = wl + p.s_off;
    let row = w / p.groups;
    let seg = w % p.groups;
    let start = seg * p.chunk;
    let end = min(start + p.chunk, p.len);
    let base = row * p.len;
    var a0 = identity();
    var a1 = identity();
    var a2 = identity();
    var a3 = identity();
    if p.from_partials != 0u {
        for (var k = start; k < end; k++) {
            a0 = combine(a0, load_acc(base + k));
        }
    } else if p.vec_ok != 0u {
        let end4 = start + ((end - start) / 4u) * 4u;
        for (var k = start; k < end4; k += 4u) {
            let v = x4g(base + k);
            add(&a0, v.x, k, row);
            add(&a1, v.y, k + 1u, row);
            add(&a2, v.z, k + 2u, row);
            add(&a3, v.w, k + 3u, row);
        }
        for (var k = end4; k < end; k++) {
            add(&a0, xg(base + k), k, row);
        }
    } else {
        for (var k = start; k < end; k++) {
            add(&a0, xg(base + k), k, row);
        }
    }
    store(combine(combine(a0, a1), combine(a2, a3)), w, row);
}

@compute @workgroup_size(64)
fn reduce_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
    let il = gid.x + gid.y * p.grid_x * 64u;
    if il >= p.total {
        return;
    }
    let id = il + p.s_off;
    let j = id % p.inner;
    let r = id / p.inner;
    let seg = r % p.groups;
    let o = r / p.groups;
    let start = seg * p.chunk;
    let end = min(start + p.chunk, p.len);
    let q = o * p.inner + j;
    let base = o * p.len * p.inner + j;
    var a = identity();
    if p.from_partials != 0u {
        for (var k = start; k < end; k++) {
            a = combine(a, load_acc(base + k * p.inner));
        }
    } else {
        for (var k = start; k < end; k++) {
            add(&a, xg(base + k * p.inner), k, q);
        }
    }
    store(a, id, q);
}

// softmax (mode 0): exp(x - m) / s; log-softmax (mode 1): (x - shift(m)) - log(s); m = aux, s = aux2.
@compute @workgroup_size(64)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let il = gid.x + gid.y * p.grid_x * 64u;
    if il >= p.total {
        return;
    }
    let id = il + p.s_off;
    let j = id % p.inner;
    let o = id / (p.len * p.inner);
    let q = o * p.inner + j;
    let v = xg(id);
    let s = aux2_at(q);
    var y: f32;
    if p.mode == 0u {
        y = exp(v - aux_at(q)) / s;
    } else {
        y = (v - shift(aux_at(q))) - log(s);
    }
    dst[id - p.d_start] = bitcast<u32>(y);
}
