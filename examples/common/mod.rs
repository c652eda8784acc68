//! Shared by the examples: the digits data set (embedded at compile time), a small flag parser
//! and the backend choice. Not an example itself (Cargo builds only `examples/*.rs` and
//! `examples/*/main.rs`).

// Each example uses a part of this module (the image examples do not read the digits).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use gpu_linalg::{Backend, Context};

/// The UCI optdigits test set (see `examples/data/README.md`): 1,797 rows of 64 pixel counts
/// 0–16 (an 8×8 image, row-major) and the class 0–9.
const DIGITS_CSV: &str = include_str!("../data/digits.csv");

/// Samples in the data set.
pub const SAMPLES: usize = 1797;
/// Pixels per sample (8×8).
pub const FEATURES: usize = 64;

/// The digits: features scaled to [0, 1] (the counts over 16), row-major `SAMPLES × FEATURES`,
/// and the labels.
pub struct Digits {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Parses and checks the embedded CSV.
pub fn load() -> Result<Digits, String> {
    let mut x = Vec::with_capacity(SAMPLES * FEATURES);
    let mut labels = Vec::with_capacity(SAMPLES);
    for (i, line) in DIGITS_CSV.lines().enumerate() {
        let vals: Vec<u32> = line
            .trim()
            .split(',')
            .map(|v| v.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("digits.csv line {}: {e}", i + 1))?;
        if vals.len() != FEATURES + 1 {
            return Err(format!(
                "digits.csv line {}: {} values; expected {}",
                i + 1,
                vals.len(),
                FEATURES + 1
            ));
        }
        if let Some(v) = vals[..FEATURES].iter().find(|&&v| v > 16) {
            return Err(format!("digits.csv line {}: pixel {v} > 16", i + 1));
        }
        if vals[FEATURES] > 9 {
            return Err(format!(
                "digits.csv line {}: class {}",
                i + 1,
                vals[FEATURES]
            ));
        }
        x.extend(vals[..FEATURES].iter().map(|&v| v as f32 / 16.0));
        labels.push(vals[FEATURES]);
    }
    if labels.len() != SAMPLES {
        return Err(format!(
            "digits.csv has {} rows; expected {SAMPLES}",
            labels.len()
        ));
    }
    Ok(Digits { x, labels })
}

/// Flags common to both examples plus the example's own, parsed by hand.
pub struct Args {
    pub backend: Backend,
    pub out: PathBuf,
    pub small: bool,
    /// `--NAME VALUE` pairs of the example's own numeric flags, in the order given.
    pub values: Vec<(String, usize)>,
}

/// Parses `--backend gpu|cpu|auto`, `--out DIR`, `--small` and the numeric flags named in
/// `numeric` (each `--NAME N`). `Err` carries a message for the user; `Ok(None)` means
/// `--help` was printed.
pub fn parse_args(usage: &str, numeric: &[&str]) -> Result<Option<Args>, String> {
    let mut args = Args {
        backend: Backend::Auto,
        out: PathBuf::from("target/examples-out"),
        small: false,
        values: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n\n{usage}"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(None);
            }
            "--small" => args.small = true,
            "--backend" => {
                args.backend = match value("--backend")?.as_str() {
                    "auto" => Backend::Auto,
                    "gpu" => Backend::Gpu,
                    "cpu" => Backend::Cpu,
                    other => {
                        return Err(format!(
                            "--backend {other}: expected gpu, cpu or auto\n\n{usage}"
                        ))
                    }
                }
            }
            "--out" => args.out = PathBuf::from(value("--out")?),
            f if f.starts_with("--") && numeric.contains(&&f[2..]) => {
                let v = value(f)?;
                let n = v
                    .parse::<usize>()
                    .map_err(|_| format!("{f} {v}: expected a non-negative integer\n\n{usage}"))?;
                args.values.push((f[2..].to_string(), n));
            }
            other => return Err(format!("unknown argument {other:?}\n\n{usage}")),
        }
    }
    Ok(Some(args))
}

impl Args {
    /// The last value given for `--name`, if any.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// The contexts an example runs on: the chosen backend's, then the CPU backend's when the first
/// is a GPU (so that both times print). Says so when `auto` chose the CPU.
pub fn contexts(backend: Backend) -> Result<Vec<Context>, String> {
    let first =
        Context::with_backend(backend).map_err(|e| format!("no {backend:?} backend: {e}"))?;
    let mut contexts = vec![first];
    if contexts[0].is_gpu() {
        contexts.push(Context::with_backend(Backend::Cpu).map_err(|e| e.to_string())?);
    } else if backend == Backend::Auto {
        println!("--backend auto chose the CPU backend (no hardware GPU); --backend gpu runs on a software adapter too");
    }
    Ok(contexts)
}

/// The exit status of an example's run: 0 when its checks passed, 1 when one failed (the run
/// said which), 2 with the error on stderr when it could not run.
pub fn exit_code(name: &str, outcome: Result<bool, String>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}
