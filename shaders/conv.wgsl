// Convolution kernels (PyTorch semantics: cross-correlation, zero padding), NCHW.
//
// conv2d:           y[n, g*cog + co, oh, ow] = sum_{ci < cig, kh, kw}
//                       x[n, g*cig + ci, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] * w[g*cog + co, ci, kh, kw]
// conv_transpose2d: y[n, g*cog + co, oh, ow] = sum_{ci < cig, kh, kw, (oh + ph - kh*dh) = ih*sh, ...}
//                       x[n, g*cig + ci, ih, iw] * w[g*cig + ci, co, kh, kw]
// Weight element (co, ci, kh, kw) of group g is w[g*w_g + co*w_co + ci*w_ci + kh*kw_ + kw], so one
// kernel serves both layouts (TRANSPOSED picks how output positions map to input positions).
//
// Kernels:
//   conv_gemm   implicit GEMM: rows = output channels of a group (RM per thread), columns = output
//               positions (4*RN4 per thread), k = (kh, kw, ci) gathered from x on the fly — no
//               im2col buffer. Loops run kh, kw outside and ci inside, so each position's input
//               offset and padding test are computed once per tap, not once per k.
//   conv_naive  one thread per output element (baseline and reference kernel).
//
// A tap in the padding (or, transposed, between strided input pixels) reads element 0 of its
// channel and is zeroed with select: it contributes 0 * w, as im2col does. The host proves every
// index in bounds (src/ops/conv.rs), so the module is built without runtime checks.

struct ConvParams {
    groups: u32,
    cig: u32,
    cog: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
    m: u32,
    w_g: u32,
    w_co: u32,
    w_ci: u32,
    row_off: u32,
    // First workgroup along the output-position dimension (large outputs take several dispatches).
    col_off: u32,
    // Element offsets of this dispatch's first image inside the bound x and y windows (large
    // batches are bound a chunk of images at a time).
    x_off: u32,
    y_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> c: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override TRANSPOSED: bool = false;

// Input offset (ih * w + iw) of output position (oh, ow) at tap (kh, kw), or -1 when the tap
// falls into the padding (or, transposed, between strided input pixels).
fn tap_offset(oh: i32, ow: i32, kh: i32, kw: i32) -> i32 {
    var ih: i32;
    var iw: i32;
    if TRANSPOSED {
        let th = oh + c.ph - kh * c.dh;
        let tw = ow + c.pw - kw * c.dw;
        if th < 0 || tw < 0 || th % c.sh != 0 || tw % c.sw != 0 {
            return -1;
        }
        ih = th / c.sh;
        iw = tw / c.sw;
    } else {
        ih = oh * c.sh - c.ph + kh * c.dh;
        iw = ow * c.sw - c.pw + kw * c.dw;
        if ih < 0 || iw < 0 {
            return -1;
        }
    }
    if ih >= i32(c.h) || iw >= i32(c.w) {
        return -1;
    }
    return ih * i32(c.w) + iw;
}

// ---------------------------------------------------------------- conv_gemm
override RM: u32 = 4u;   // output channels per thread (at most 8)
override RN4: u32 = 2u;  // groups of 4 output positions per thread (at most 4)
override WG: u32 = 64u;

// Workgroups walk the channel rows first (workgroup_id.x), so consecutive workgroups gather the
// same input region; workgroup_id.y picks the positions, z = image * groups + group.
@compute @workgroup_size(WG, 1, 1)
fn conv_gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = ((wid.y + c.col_off) * WG + lid.x) * 4u * RN4;
    if col0 >= c.m {
        return;
    }
    let n = wid.z / c.groups;
    let g = wid.z % c.groups;
    let row0 = wid.x * RM + c.row_off;
    let khw = c.kh * c.kw;
    var wrow: array<u32, 8>;
    for (var r = 0u; r < RM; r++) {
        // Rows past the end read the last row; their results are never stored.
        wrow[r] = g * c.w_g + min(row0 + r, c.cog - 1u) * c.w_co;
    }
    var pos_h: array<i32, 16>;
    var pos_w: array<i32, 16>;
    for (var p = 0u; p < 4u * RN4; p++) {
        let mm = min(col0 + p, c.m - 1u);
        pos_h[p] = i32(mm / c.ow);
        pos_w[p] = i32(mm % c.ow);
    }
    let hw = c.h * c.w;
    let xbase = c.x_off + (n * c.cin + g * c.cig) * hw;
    var acc: array<vec4<f32>, 32>;
    for (var kh = 0u; kh < c.kh; kh++) {
        for (var kw = 0u; kw < c.kw; kw++) {
            var off: array<u32, 16>;
            var ok: array<bool, 16>;
            for (var p = 0u; p < 4u * RN4; p++) {
                let o = tap_offset(pos_h[p], pos_w[p], i32(kh), i32(kw));
                ok[p] = o >= 0;
                off[p] = u32(max(o, 0));
            }
            let tap = kh * c.kw + kw;
            for (var ci = 0u; ci < c.cig; ci++) {
                let xo = xbase + ci * hw;
                var bw: array<vec4<f32>, 4>;
                for (var q = 0u; q < RN4; q++) {
                    let p = 4u * q;
                    bw[q] = vec4<f32>(
                        select(0.0, x[xo + off[p]], ok[p]),
                        select(0.0, x[xo + off[p + 1u]], ok[p + 1u]),
                        select(0.0, x[xo + off[p + 2u]], ok[p + 2u]),
                        select(0.0, x[xo + off[p + 3u]], ok[p + 3u]),
                    );
                }
                let wo = ci * c.w_ci + tap;
                for (var r = 0u; r < RM; r++) {
                    let av = vec4<f32>(wt[wrow[r] + wo]);
                    for (var q = 0u; q < RN4; q++) {
                        acc[r * 4u + q] = fma(av, bw[q], acc[r * 4u + q]);
                    }
                }
            }
        }
    }
    for (var r = 0u; r < RM; r++) {
        let co = row0 + r;
        if co < c.cog {
            let cg = g * c.cog + co;
            let ybase = c.y_off + (n * c.cout + cg) * c.m;
            for (var q = 0u; q < RN4; q++) {
                let v = acc[r * 4u + q];
                for (var e = 0u; e < 4u; e++) {
                    let mm = col0 + 4u * q + e;
                    if mm < c.m {
                        y[ybase + mm] = epilogue(v[e], cg);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- conv_naive
// gid.x = output position (offset by col_off workgroups), gid.y = output channel (global),
// gid.z = image.
@compute @workgroup_size(64, 1, 1)
fn conv_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let mm = gid.x + c.col_off * 64u;
    let cg = gid.y + c.row_off;
    let n = gid.z;
    if mm >= c.m || cg >= c.cout {
        return;
    }
    let g = cg / c.cog;
    let co = cg % c.cog;
    let oh = i32(mm / c.ow);
    let ow = i32(mm % c.ow);
    let hw = c.h * c.w;
    let xbase = c.x_off + (n * c.cin + g * c.cig) * hw;
    let wbase = g * c.w_g + co * c.w_co;
    var s = 0.0;
    for (var kh = 0u; kh < c.kh; kh++) {
        for (var kw = 0u; kw < c.kw; kw++) {
            // A tap in the padding contributes 0 * w, as im2col does.
            let o = tap_offset(oh, ow, i32(kh), i32(kw));
            let ok = o >= 0;
            let off = u32(max(o, 0));
            let tap = kh * c.kw + kw;
            for (var ci = 0u; ci < c.cig; ci++) {
                let xv = select(0.0, x[xbase + ci * hw + off], ok);
                s = fma(xv, wt[wbase + ci * c.w_ci + tap], s);
            }
        }
    }
    y[c.y_off + (n * c.cout + cg) * c.m + mm] = epilogue(s, cg);
}
