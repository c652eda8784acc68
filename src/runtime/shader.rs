//! WGSL snippets that several families' modules prepend (each family embeds its own module).

/// `shaders/epilogue.wgsl`: bias + activation of matmul, conv, linear layers, elementwise.
pub const EPILOGUE: &str = include_str!("../../shaders/epilogue.wgsl");
/// `shaders/divmod.wgsl`: vectorisable integer division (elementwise, layout).
pub const DIVMOD: &str = include_str!("../../shaders/divmod.wgsl");
/// `shaders/jacobi.wgsl`: round-robin pairs and Jacobi rotations (both SVD kernels).
pub const JACOBI: &str = include_str!("../../shaders/jacobi.wgsl");

/// Appends one formatted line to generated WGSL (writing to a String cannot fail).
pub(crate) fn push_line(s: &mut String, text: std::fmt::Arguments<'_>) {
    let _ = std::fmt::Write::write_fmt(s, text);
    s.push('\n');
}

/// A kernel source with the shared epilogue prepended.
pub fn with_epilogue(src: &str) -> String {
    format!("{EPILOGUE}\n{src}")
}
