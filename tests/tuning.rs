//! The tuner: a deliberately wrong candidate (the test hook) is never chosen in any family,
//! one thread tunes a bucket while the others wait for its choice, choices are per shape
//! bucket, and a tuning cache of another format or of garbage is ignored.
//!
//! This binary has its own cache directory and turns the hook on for all of its tunings.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use gpu_linalg::runtime::{inject_wrong_tuning_candidate, INJECTED_LABEL, TUNING_CACHE_FORMAT};
use gpu_linalg::{
    Backend, Context, ConvKind, ConvOptions, ConvPlan, MatmulPlan, Padding, ReduceOp,
    ReduceOptions, ReducePlan,
};

/// A fresh GPU context whose tunings all run with the wrong candidate injected, on a cache
/// directory of its own that starts with a garbage file.
fn tuned_context() -> Option<&'static Context> {
    static CTX: OnceLock<Option<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gpu-linalg-tuning-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a cache directory");
        std::fs::write(
            dir.join("tuning.txt"),
            "matmul|garbage\tvec4:9x9@7\n\u{0}\u{1}",
        )
        .expect("a garbage cache file");
        // Set before any context reads it; this process's tests all use this context.
        std::env::set_var("GPU_LINALG_CACHE_DIR", &dir);
        std::env::remove_var("GPU_LINALG_NO_TUNING_CACHE");
        inject_wrong_tuning_candidate(true);
        common::gpu()?;
        Some(Context::with_backend(Backend::Gpu).expect("a GPU context"))
    })
    .as_ref()
}

fn conv_plan(x: &[usize], w: &[usize], groups: usize) -> ConvPlan {
    let opts = ConvOptions {
        padding: Padding::from(1),
        groups,
        ..Default::default()
    };
    ConvPlan::new(ConvKind::Conv2d, x, w, &opts).expect("a conv plan")
}

#[test]
fn the_injected_wrong_candidate_is_never_chosen_in_any_family() {
    let Some(ctx) = tuned_context() else { return };
    // Small buckets of every family (each tunes on a product of its own bucket).
    for (m, k, n) in [(3, 3, 3), (40, 70, 40), (200, 9, 200)] {
        let plan = MatmulPlan::new(&[m, k], &[k, n], false, false).expect("a matmul plan");
        ctx.matmul_config_for(&plan).expect("matmul tuning");
    }
    ctx.conv_config_for(&conv_plan(&[1, 8, 12, 12], &[8, 8, 3, 3], 1))
        .expect("conv tuning");
    ctx.conv_config_for(&conv_plan(&[1, 8, 12, 12], &[8, 1, 3, 3], 8))
        .expect("depthwise conv tuning");
    let rows = ReducePlan::new(ReduceOp::Sum, &[4, 3000], &ReduceOptions::axis(Some(-1)))
        .expect("a reduce plan");
    ctx.reduce_kernel_for(&rows).expect("reduce tuning");
    ctx.svd_workgroup().expect("svd tuning");
    ctx.svd_batched_kernel().expect("batched svd tuning");
    ctx.lu_block(gpu_linalg::LU_TUNED_FROM)
        .expect("lu block tuning");
    ctx.cholesky_block(gpu_linalg::CHOLESKY_TUNED_FROM)
        .expect("cholesky block tuning");

    let report = ctx.tuning_report();
    let families: BTreeMap<&str, usize> = report.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.family.as_str()).or_default() += 1;
        m
    });
    for family in [
        "matmul",
        "conv",
        "reduce",
        "svd",
        "svd-batched",
        "lu",
        "cholesky",
    ] {
        assert!(
            families.contains_key(family),
            "no {family} tuning ran: {families:?}"
        );
    }
    for r in &report {
        assert_ne!(
            r.chosen, INJECTED_LABEL,
            "{} ({}) chose the wrong candidate",
            r.family, r.bucket
        );
        let injected = r.excluded.iter().find(|(label, _)| label == INJECTED_LABEL);
        let (_, why) = injected.unwrap_or_else(|| {
            panic!(
                "{} ({}): the injected candidate was not excluded: {:?}",
                r.family, r.bucket, r.excluded
            )
        });
        assert!(why.contains("wrong result"), "{why}");
    }
    eprintln!(
        "{} tunings, every injected candidate excluded: {families:?}",
        report.len()
    );

    // The cache was rewritten in the current format, with a line per bucket tuned and none
    // for the injected candidate.
    let dir = std::env::var("GPU_LINALG_CACHE_DIR").expect("the cache directory");
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join("tuning.txt"))
        .expect("the tuning cache");
    assert_eq!(text.lines().next(), Some(TUNING_CACHE_FORMAT));
    assert!(!text.contains("garbage"), "{text}");
    assert!(!text.contains(INJECTED_LABEL), "{text}");
    assert!(text.lines().count() > report.len().min(3), "{text}");
}

#[test]
fn one_thread_tunes_a_bucket_while_the_others_wait() {
    let Some(ctx) = tuned_context() else { return };
    let plan = MatmulPlan::new(&[24, 600], &[600, 24], false, false).expect("a matmul plan");
    let bucket = gpu_linalg::matmul::matmul_bucket(&plan).name();
    let choices: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    ctx.matmul_config_for(&plan)
                        .expect("matmul tuning")
                        .to_string()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a tuning thread"))
            .collect()
    });
    assert!(
        choices.windows(2).all(|w| w[0] == w[1]),
        "threads got different choices: {choices:?}"
    );
    let runs = ctx
        .tuning_report()
        .iter()
        .filter(|r| r.family == "matmul" && r.bucket == bucket)
        .count();
    assert_eq!(runs, 1, "bucket {bucket} was tuned {runs} times");
}

#[test]
fn shapes_fall_in_coarse_buckets() {
    let bucket = |m, k, n| {
        gpu_linalg::matmul::matmul_bucket(
            &MatmulPlan::new(&[m, k], &[k, n], false, false).expect("a plan"),
        )
        .name()
    };
    assert_eq!(bucket(64, 64, 64), bucket(50, 40, 60));
    assert_ne!(bucket(64, 64, 64), bucket(1024, 64, 1024));
    assert_ne!(bucket(64, 64, 64), bucket(64, 4096, 64));
    let batched = gpu_linalg::matmul::matmul_bucket(
        &MatmulPlan::new(&[3, 64, 64], &[64, 64], false, false).expect("a plan"),
    );
    assert!(batched.batched);
}
