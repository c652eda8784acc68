// Jacobi rotations shared by svd.wgsl and svd_batched.wgsl (the host prepends this file).

// The player at position `pos` in step `step` of an `np`-player round-robin tournament
// (position 0 is fixed, the others move one place per step); step s pairs positions q and
// np-1-q, so np-1 steps meet every pair once.
fn round_robin_player(pos: u32, step: u32, np: u32) -> u32 {
    if pos == 0u {
        return 0u;
    }
    return (pos - 1u + step) % (np - 1u) + 1u;
}

// Rutishauser's rotation for two columns with Gram entries g = (‖x‖², ‖y‖², x·y), g.z ≠ 0:
// (cos, sin) of the smaller angle that makes x' = cos·x − sin·y and y' = sin·x + cos·y
// orthogonal.
fn jacobi_rotation(g: vec3<f32>) -> vec2<f32> {
    let zeta = (g.y - g.x) / (2.0 * g.z);
    let sg = select(-1.0, 1.0, zeta >= 0.0);
    var t: f32;
    if abs(zeta) > 1e15 {
        t = 0.5 / zeta;
    } else {
        t = sg / (abs(zeta) + sqrt(1.0 + zeta * zeta));
    }
    let c = 1.0 / sqrt(1.0 + t * t);
    return vec2<f32>(c, t * c);
}

// (x, y) rotated by cs = (cos, sin): (cos·x − sin·y, sin·x + cos·y).
fn rotate(x: f32, y: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(cs.x * x - cs.y * y, cs.y * x + cs.x * y);
}
