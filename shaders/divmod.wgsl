// Shared by the elementwise and layout kernels, prepended to their sources by the host.

// (i / d, i % d) through f32 reciprocals: no integer division, which CPU adapters such as
// lavapipe cannot vectorise. Two estimates bring q within 1 of i / d for any u32 i; the last
// step corrects it.
fn divmod(i: u32, d: u32, inv: f32) -> vec2<u32> {
    var q = u32(f32(i) * inv);
    var r = i32(i - q * d);
    q = u32(i32(q) + i32(floor(f32(r) * inv)));
    r = i32(i - q * d);
    if r < 0 {
        q = q - 1u;
        r = r + i32(d);
    }
    if r >= i32(d) {
        q = q + 1u;
        r = r - i32(d);
    }
    return vec2<u32>(q, u32(r));
}
