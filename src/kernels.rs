//! Every WGSL module and kernel-parameter struct of the library, gathered from the families
//! (for the cross-compilation and parameter-layout tests).

use crate::runtime::{shader, ParamsLayout};
use crate::{
    cholesky, conv, convert, elementwise, householder, layout, matmul, nn, random, reduce, solve,
    svd,
};

/// Every WGSL module the library compiles, by family, exactly as it is handed to wgpu (for the
/// cross-compilation tests that carry each kernel to MSL, HLSL, SPIR-V and GLSL).
pub fn kernel_sources() -> Vec<(&'static str, String)> {
    vec![
        ("matmul", shader::with_epilogue(matmul::SOURCE)),
        ("conv", shader::with_epilogue(conv::SOURCE)),
        ("nn", shader::with_epilogue(nn::SOURCE)),
        ("layout", layout::module_source()),
        ("random", random::SOURCE.to_string()),
        ("cholesky", cholesky::SOURCE.to_string()),
        ("lu", solve::SOURCE.to_string()),
        ("solve_small", solve::small::SOURCE.to_string()),
        ("svd", svd::module_source()),
        ("svd_batched", svd::batched::module_source()),
        ("householder", householder::SOURCE.to_string()),
        ("convert", convert::SOURCE.to_string()),
    ]
    .into_iter()
    .chain(
        elementwise::generated_sources()
            .into_iter()
            .map(|s| ("elementwise", s)),
    )
    .chain(
        solve::small::generated_sources()
            .into_iter()
            .map(|s| ("solve_small_invocation", s)),
    )
    .chain(
        svd::unrolled::generated_sources()
            .into_iter()
            .map(|s| ("svd_batched_unrolled", s)),
    )
    .chain(
        matmul::coop::generated_sources()
            .into_iter()
            .map(|s| ("matmul_coop", s)),
    )
    .chain(
        reduce::generated_sources()
            .into_iter()
            .map(|s| ("reduce", s)),
    )
    .collect()
}

/// The parameter struct of every kernel module, with the module it feeds (for the test that
/// compares each with naga's layout of the WGSL struct).
#[doc(hidden)]
pub fn kernel_params() -> Vec<(&'static str, ParamsLayout)> {
    [
        ("matmul", matmul::params_layouts()),
        ("conv", conv::params_layouts()),
        ("nn", nn::params_layouts()),
        ("layout", layout::params_layouts()),
        ("random", random::params_layouts()),
        ("cholesky", cholesky::params_layouts()),
        ("lu", solve::params_layouts()),
        ("solve_small", solve::small::params_layouts()),
        (
            "solve_small_invocation",
            solve::small::invocation_params_layouts(),
        ),
        ("svd", svd::params_layouts()),
        ("svd_batched", svd::batched::params_layouts()),
        ("svd_batched_unrolled", svd::unrolled::params_layouts()),
        ("householder", householder::params_layouts()),
        ("convert", convert::params_layouts()),
        ("matmul_coop", matmul::coop::params_layouts()),
        ("elementwise", elementwise::params_layouts()),
        ("reduce", reduce::params_layouts()),
    ]
    .into_iter()
    .flat_map(|(f, v)| v.into_iter().map(move |l| (f, l)))
    .collect()
}
