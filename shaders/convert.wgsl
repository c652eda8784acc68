// Conversions between float32 and the half-precision element types (DType::F16, ::BF16), bit
// for bit as src/precision.rs: round to nearest, ties to even, in integer arithmetic only (no
// adapter flushes a subnormal on the way). Half tensors are stored two elements per u32, the
// element 2i in the low 16 bits, 2i + 1 in the high ones (the last word zero-padded).
//
//   narrow  one invocation per output word: f32 elements 2w, 2w + 1 -> one packed word
//   widen   one invocation per element: packed half -> f32
//
// HALF = 0 for binary16 (f16), 1 for bfloat16. The 1-D index is folded over x and y
// (fold = invocations per step of workgroup_id.y).

override HALF: u32 = 0u;

struct Params {
    len: u32,   // elements
    fold: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn f32_to_f16_bits(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let exp = i32((b >> 23u) & 0xffu);
    let man = b & 0x007fffffu;
    if exp == 0xff {
        return sign | select(0x7c00u, 0x7e00u, man != 0u);
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00u;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let full = man | 0x00800000u;
        let shift = u32(14 - e);
        let half = 1u << (shift - 1u);
        let rest = full & ((1u << shift) - 1u);
        var h = full >> shift;
        if rest > half || (rest == half && (h & 1u) == 1u) {
            h += 1u;
        }
        return sign | h;
    }
    var h = (u32(e) << 10u) | (man >> 13u);
    let rest = man & 0x1fffu;
    if rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u) {
        h += 1u;
    }
    return sign | h;
}

fn f16_bits_to_f32(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let man = h & 0x03ffu;
    if exp == 0u {
        if man == 0u {
            return sign;
        }
        let lead = countLeadingZeros(man) - 22u;
        let m = (man << (lead + 1u)) & 0x03ffu;
        return sign | ((127u - 15u - lead) << 23u) | (m << 13u);
    }
    if exp == 0x1fu {
        if man == 0u {
            return sign | 0x7f800000u;
        }
        return sign | 0x7fc00000u | (man << 13u);
    }
    return sign | ((exp + 127u - 15u) << 23u) | (man << 13u);
}

fn f32_to_bf16_bits(b: u32) -> u32 {
    if (b & 0x7fffffffu) > 0x7f800000u {
        return ((b >> 16u) | 0x0040u) & 0xffffu;
    }
    let round = 0x7fffu + ((b >> 16u) & 1u);
    return (b + round) >> 16u;
}

fn narrow_one(b: u32) -> u32 {
    if HALF == 1u {
        return f32_to_bf16_bits(b);
    }
    return f32_to_f16_bits(b);
}

fn widen_one(h: u32) -> u32 {
    if HALF == 1u {
        return h << 16u;
    }
    return f16_bits_to_f32(h);
}

@compute @workgroup_size(64)
fn narrow(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = gid.x + gid.y * p.fold;
    let i = 2u * w;
    if i >= p.len {
        return;
    }
    var word = narrow_one(src[i]);
    if i + 1u < p.len {
        word = word | (narrow_one(src[i + 1u]) << 16u);
    }
    dst[w] = word;
}

@compute @workgroup_size(64)
fn widen(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.fold;
    if i >= p.len {
        return;
    }
    let h = (src[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
    dst[i] = widen_one(h);
}
