//! Stress: eight threads share one GPU context and each runs 500 pseudo-random ops (matmul of
//! random shapes, batched, with bias and activations; small conv2d; sum/max/argmax-style
//! reductions; broadcasting elementwise and unary ops; small SVDs). Most ops take their inputs
//! from GPU-resident results of earlier ops, and intermediates are dropped early, so pooled
//! buffers are released and reused while other threads' work is in flight. Every readback is
//! checked against the f64 reference with DESIGN.md's bounds (the SVD by LAPACK's ratios); the
//! test fails on any wrong answer, and fails rather than hangs if the threads do not finish.
//!
//! How results can be chained without reading them back: a result is *exact by construction*
//! when its inputs lie on a binary grid coarse enough that every product and partial sum the
//! GPU may form is an f32 (see [`sums_exact`]), or when it is one correctly rounded operation
//! whose exact value is an f32. The test then knows the bits the buffer must hold and feeds the
//! buffer on, unread; a wrong intermediate shows up in whichever later readback depends on it.
//! Other results are read back and checked before anything uses them.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gpu_linalg::elementwise::cpu::{binary_checked, unary_checked, BoundedReference};
use gpu_linalg::reduce::cpu::ReduceReference;
use gpu_linalg::reference::Reference;
use gpu_linalg::svd::cpu::{ratios, singular_values_f64, RATIO_EPS};
use gpu_linalg::{
    broadcast_shapes, Activation, BinaryOp, Context, ConvKind, ConvOptions, ConvPlan, Location,
    MatmulOptions, MatmulPlan, Padding, ReduceOp, ReduceOptions, ReducePlan, Svd, Tensor, UnaryOp,
};

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 500;
/// The test fails (instead of hanging CI) when the threads have not all finished by then.
const WATCHDOG: Duration = Duration::from_secs(600);
/// Most ops a worker issues between two checkpoints (readbacks of everything pending).
const MAX_OPS_BETWEEN_CHECKS: usize = 3;
/// Most tensors a worker keeps alive for later ops.
const WORKSPACE_CAP: usize = 6;
/// Largest tensor the generators make (elements).
const MAX_ELEMS: usize = 4900;
/// Largest SVD input dimension.
const MAX_SVD_DIM: usize = 12;
/// LAPACK's pass mark for the SVD driver-test ratios (DESIGN.md).
const SVD_RATIO_LIMIT: f64 = 35.0;

const KINDS: [&str; 5] = ["matmul", "conv2d", "elementwise", "reduce", "svd"];

/// A small deterministic generator (splitmix64), one stream per thread.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability num/den.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    /// A matrix dimension: 1 and 3 often, mostly up to 16, now and then up to 70.
    fn dim(&mut self) -> usize {
        match self.below(20) {
            0..=3 => 1,
            4..=7 => 3,
            8..=16 => self.range(2, 16),
            17 | 18 => self.range(17, 40),
            _ => self.range(41, 70),
        }
    }

    /// A tensor shape of rank 0 to 4 with at most [`MAX_ELEMS`] elements.
    fn shape(&mut self) -> Vec<usize> {
        let s = match self.below(10) {
            0 => vec![],
            1 | 2 => vec![self.range(1, 300)],
            3..=6 => vec![self.dim(), self.dim()],
            7 | 8 => vec![self.range(1, 6), self.range(1, 12), self.range(1, 12)],
            _ => (0..4).map(|_| self.range(1, 6)).collect(),
        };
        if s.iter().product::<usize>() > MAX_ELEMS {
            vec![s[0].min(MAX_ELEMS)]
        } else {
            s
        }
    }
}

/// What a result's readback must satisfy: the crate's f64 reference with its DESIGN.md bound.
enum Check {
    /// Matmul and conv: γ_k·(|A|·|B|) (+ the activation's few ulp).
    Product(Reference),
    /// Elementwise: one rounding (a few ulp for transcendentals).
    Elementwise(BoundedReference),
    /// Sum, mean, max, ...: the bound of the reduction's length.
    Reduction(ReduceReference),
    /// Argmax / argmin: equal indices.
    Indices(ReduceReference),
}

impl Check {
    fn shape(&self) -> &[usize] {
        match self {
            Check::Product(r) => &r.shape,
            Check::Elementwise(r) => &r.shape,
            Check::Reduction(r) | Check::Indices(r) => &r.shape,
        }
    }

    /// Reads `t` back and judges it; the f32 values it read (none for indices).
    fn judge(&self, t: &Tensor) -> Result<Option<Vec<f32>>, String> {
        if t.shape() != self.shape() {
            return Err(format!(
                "result shape {:?}, expected {:?}",
                t.shape(),
                self.shape()
            ));
        }
        if t.location() != Location::Gpu {
            return Err("result is not GPU-resident".into());
        }
        let judged = match self {
            Check::Product(r) => t.to_vec().and_then(|got| r.check(&got).map(|()| Some(got))),
            Check::Elementwise(r) => t.to_vec().and_then(|got| r.check(&got).map(|()| Some(got))),
            Check::Reduction(r) => t.to_vec().and_then(|got| r.check(&got).map(|()| Some(got))),
            Check::Indices(r) => t
                .to_vec_u32()
                .and_then(|got| r.check_indices(&got))
                .map(|()| None),
        };
        judged.map_err(|e| e.to_string())
    }
}

/// A GPU tensor a worker may feed into later ops, with the values its buffer must hold.
struct Known {
    tensor: Tensor,
    values: Vec<f32>,
    /// The op that made it (or uploaded it).
    op: usize,
    /// Whether it is an op's result (not an upload).
    result: bool,
    /// Short name of its origin, for the messages of the ops that use it.
    origin: String,
    /// A result exact by construction that no readback has checked yet: its reference and
    /// the full description of the op.
    unchecked: Option<(Check, String)>,
}

/// An operand of one op.
struct Operand {
    tensor: Tensor,
    values: Vec<f32>,
    /// Where it came from: "fresh" or the producing op.
    origin: String,
}

/// A result waiting for its readback at the next checkpoint.
struct Pending {
    tensor: Tensor,
    check: Check,
    op: usize,
    what: String,
}

/// An SVD waiting for its readback.
struct PendingSvd {
    svd: Svd,
    a: Vec<f32>,
    m: usize,
    n: usize,
    op: usize,
    what: String,
}

/// What one worker did.
#[derive(Default)]
struct Stats {
    ops: usize,
    per_kind: [usize; 5],
    /// Ops with an input that was a GPU-resident result of an earlier op.
    resident: usize,
    /// Ops with an input that was an unread GPU result of an earlier op.
    chained: usize,
    /// Results exact by construction (kept unread for later ops).
    exact: usize,
    readbacks: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        self.resident += o.resident;
        self.chained += o.chained;
        self.exact += o.exact;
        self.readbacks += o.readbacks;
        for (a, b) in self.per_kind.iter_mut().zip(o.per_kind) {
            *a += b;
        }
    }
}

/// Exponent e of the finest binary grid 2^e that holds every value (`None` when all are 0).
fn grid(values: &[f32]) -> Option<i32> {
    values
        .iter()
        .filter(|v| **v != 0.0)
        .map(|v| {
            let bits = v.to_bits();
            let exp = ((bits >> 23) & 0xff) as i32;
            let mant = bits & 0x7f_ffff;
            if exp == 0 {
                -149 + mant.trailing_zeros() as i32
            } else {
                exp - 150 + (mant | 0x80_0000).trailing_zeros() as i32
            }
        })
        .min()
}

/// The finer of two grids (a set of zeros has none).
fn finer(a: Option<i32>, b: Option<i32>) -> Option<i32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The grid of products of values on grids `a` and `b`.
fn product_grid(a: Option<i32>, b: Option<i32>) -> Option<i32> {
    Some(a? + b?)
}

/// Whether every sum of terms on the grid 2^g is exact in f32, in any order, when the terms of
/// each result add up to at most `magnitudes` in absolute value: each partial sum is then a
/// multiple of 2^g below 2^(g+24), which f32 holds exactly (as a normal number for g ≥ −126).
fn sums_exact(g: Option<i32>, magnitudes: impl IntoIterator<Item = f64>) -> bool {
    match g {
        None => true,
        Some(g) => g >= -126 && magnitudes.into_iter().all(|m| m < 2f64.powi(g + 24)),
    }
}

/// The f32 values of exact f64 results, if every one is a normal f32 (or 0): what a single
/// correctly rounded operation, or an exact sum, must produce bit for bit.
fn as_exact_f32(values: &[f64]) -> Option<Vec<f32>> {
    values
        .iter()
        .map(|&v| {
            let f = v as f32;
            (f64::from(f) == v && (f == 0.0 || f.abs() >= f32::MIN_POSITIVE)).then_some(f)
        })
        .collect()
}

/// The first element where `got` differs from `want` (−0 equals +0), if any.
fn first_difference(got: &[f32], want: &[f32]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} elements, expected {}", got.len(), want.len()));
    }
    got.iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .map(|i| format!("element {i} is {} but must be {}", got[i], want[i]))
}

struct Worker {
    ctx: &'static Context,
    thread: usize,
    rng: Rng,
    /// Index of the op being issued.
    op: usize,
    seed: u64,
    workspace: Vec<Known>,
    pending: Vec<Pending>,
    pending_svd: Vec<PendingSvd>,
    since_check: usize,
    /// Whether the op being issued took an earlier op's GPU-resident result as input.
    resident: bool,
    /// Whether the op being issued took an unread GPU result as input.
    chained: bool,
    failures: Vec<String>,
    stats: Stats,
}

impl Worker {
    fn new(ctx: &'static Context, thread: usize) -> Worker {
        Worker {
            ctx,
            thread,
            rng: Rng(0x5EED_0000 + thread as u64),
            op: 0,
            seed: 0,
            workspace: Vec::new(),
            pending: Vec::new(),
            pending_svd: Vec::new(),
            since_check: 0,
            resident: false,
            chained: false,
            failures: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn run(mut self) -> (Vec<String>, Stats) {
        for op in 0..OPS_PER_THREAD {
            self.op = op;
            self.resident = false;
            self.chained = false;
            let kind = match self.rng.below(100) {
                0..=29 => 0,
                30..=44 => 1,
                45..=69 => 2,
                70..=93 => 3,
                _ => 4,
            };
            match kind {
                0 => self.matmul(),
                1 => self.conv2d(),
                2 => self.elementwise(),
                3 => self.reduce(),
                _ => self.svd(),
            }
            self.stats.ops += 1;
            self.stats.per_kind[kind] += 1;
            self.stats.resident += usize::from(self.resident);
            self.stats.chained += usize::from(self.chained);
            self.since_check += 1;
            // Drop a kept tensor now and then, and keep the workspace small.
            if !self.workspace.is_empty() && self.rng.chance(1, 5) {
                let i = self.rng.below(self.workspace.len());
                self.workspace.swap_remove(i);
            }
            while self.workspace.len() > WORKSPACE_CAP {
                let i = self.rng.below(self.workspace.len());
                self.workspace.swap_remove(i);
            }
            let due = self.since_check >= MAX_OPS_BETWEEN_CHECKS
                || self.pending.len() + self.pending_svd.len() >= 3;
            if due || self.rng.chance(1, 3) {
                self.checkpoint();
            }
        }
        self.op = OPS_PER_THREAD;
        self.checkpoint();
        // Everything still kept must hold what it was made with.
        while !self.workspace.is_empty() {
            self.reread(0, false);
        }
        (self.failures, self.stats)
    }

    fn fail(&mut self, op: usize, what: &str, error: &str) {
        let msg = format!(
            "thread {} op {op} (checked at op {}) {what}: {error}",
            self.thread, self.op
        );
        eprintln!("STRESS MISMATCH: {msg}");
        self.failures.push(msg);
    }

    /// Fresh input values: multiples of 1/8 (`coarse`: products and sums stay exact) or full
    /// mantissas; uploaded, or now and then a host tensor the op uploads itself.
    fn fresh(&mut self, shape: &[usize], coarse: bool) -> Operand {
        self.seed += 1;
        let seed = self.thread as u64 * 1_000_003 + self.seed;
        let len = shape.iter().product();
        let values = if coarse {
            common::data(len, seed)
        } else {
            common::data_full(len, seed)
        };
        let upload = if self.rng.chance(1, 5) {
            Tensor::from_vec(shape, values.clone())
        } else {
            self.ctx.tensor(shape, &values)
        };
        let tensor = upload.unwrap_or_else(|e| {
            panic!(
                "thread {} op {}: uploading {shape:?}: {e}",
                self.thread, self.op
            )
        });
        if tensor.location() == Location::Gpu && self.rng.chance(1, 4) {
            self.workspace.push(Known {
                tensor: tensor.clone(),
                values: values.clone(),
                op: self.op,
                result: false,
                origin: format!("upload at op {}", self.op),
                unchecked: None,
            });
        }
        Operand {
            tensor,
            values,
            origin: "fresh".into(),
        }
    }

    /// A kept tensor whose shape `fits`, seven times in eight when there is one. Now and then
    /// it leaves the workspace, so that the op's operand is its last owner.
    fn kept(&mut self, fits: impl Fn(&[usize]) -> bool) -> Option<Operand> {
        if !self.rng.chance(7, 8) {
            return None;
        }
        let candidates: Vec<usize> = (0..self.workspace.len())
            .filter(|&i| fits(self.workspace[i].tensor.shape()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = candidates[self.rng.below(candidates.len())];
        let k = &self.workspace[i];
        self.resident |= k.result;
        self.chained |= k.unchecked.is_some();
        let operand = Operand {
            tensor: k.tensor.clone(),
            values: k.values.clone(),
            origin: format!(
                "{}{}",
                k.origin,
                if k.unchecked.is_some() {
                    ", unread"
                } else {
                    ""
                }
            ),
        };
        if self.rng.chance(1, 3) {
            self.workspace.swap_remove(i);
        }
        Some(operand)
    }

    /// Files an op's result: exact ones join the workspace unread, the rest wait for the next
    /// checkpoint.
    fn result(
        &mut self,
        out: gpu_linalg::Result<Tensor>,
        check: Check,
        exact: Option<Vec<f32>>,
        label: String,
        what: String,
    ) {
        let tensor = match out {
            Ok(t) => t,
            Err(e) => return self.fail(self.op, &what, &format!("error: {e}")),
        };
        match exact {
            Some(values) => {
                self.stats.exact += 1;
                self.workspace.push(Known {
                    tensor,
                    values,
                    op: self.op,
                    result: true,
                    origin: label,
                    unchecked: Some((check, what)),
                });
            }
            None => self.pending.push(Pending {
                tensor,
                check,
                op: self.op,
                what,
            }),
        }
    }

    fn matmul(&mut self) {
        let coarse = self.rng.chance(4, 5);
        let mut ta = self.rng.chance(1, 4);
        let a = match self.kept(|_| true) {
            Some(mut a) => {
                let s = a.tensor.shape().to_vec();
                let reshaped = match s.len() {
                    0 => Some(vec![1, 1]),
                    1 if self.rng.chance(1, 2) => Some(vec![1, s[0]]),
                    _ => None,
                };
                if let Some(r) = reshaped {
                    a.tensor = a.tensor.reshape(&r).expect("same element count");
                }
                a
            }
            None => {
                let batch = match self.rng.below(6) {
                    0 => vec![self.rng.range(2, 4)],
                    1 => vec![self.rng.range(1, 3), self.rng.range(2, 3)],
                    _ => vec![],
                };
                let cap = if batch.is_empty() { 70 } else { 16 };
                let (m, k) = (self.rng.dim().min(cap), self.rng.dim().min(cap));
                let mut shape = batch;
                if shape.is_empty() && self.rng.chance(1, 10) {
                    shape.push(k);
                } else if ta {
                    shape.extend([k, m]);
                } else {
                    shape.extend([m, k]);
                }
                self.fresh(&shape, coarse)
            }
        };
        let sa = a.tensor.shape().to_vec();
        let a_vec = sa.len() == 1;
        ta &= !a_vec;
        let (m, k) = match (a_vec, ta) {
            (true, _) => (1, sa[0]),
            (false, false) => (sa[sa.len() - 2], sa[sa.len() - 1]),
            (false, true) => (sa[sa.len() - 1], sa[sa.len() - 2]),
        };
        let a_batch: Vec<usize> = if a_vec {
            vec![]
        } else {
            sa[..sa.len() - 2].to_vec()
        };
        let b_vec = self.rng.chance(1, 8);
        let mut tb = self.rng.chance(1, 4) && !b_vec;
        let b_batch: Vec<usize> = if b_vec {
            vec![]
        } else if !a_batch.is_empty() {
            match self.rng.below(3) {
                0 => a_batch.clone(),
                1 => a_batch
                    .iter()
                    .map(|&d| if self.rng.chance(1, 2) { 1 } else { d })
                    .collect(),
                _ => vec![],
            }
        } else if !a_vec && self.rng.chance(1, 6) {
            vec![self.rng.range(2, 3)]
        } else {
            vec![]
        };
        let batches: usize = a_batch.iter().chain(&b_batch).product::<usize>().max(1);
        let n_cap = (MAX_ELEMS / (batches * m).max(1)).clamp(1, 70);
        let n = if b_vec { 1 } else { self.rng.dim().min(n_cap) };
        let mut sb = b_batch;
        if b_vec {
            sb.push(k);
            tb = false;
        } else if tb {
            sb.extend([n, k]);
        } else {
            sb.extend([k, n]);
        }
        let b = self.kept(|s| s == sb.as_slice()).unwrap_or_else(|| {
            let coarse_b = coarse || self.rng.chance(1, 2);
            self.fresh(&sb, coarse_b)
        });
        let bias = self.rng.chance(1, 3).then(|| self.fresh(&[n], coarse));
        let act = match self.rng.below(6) {
            0..=2 => Activation::None,
            3 => Activation::Relu,
            _ => Activation::ALL[self.rng.range(2, 5)],
        };
        let opts = MatmulOptions {
            transpose_a: ta,
            transpose_b: tb,
            bias: bias.as_ref().map(|b| &b.tensor),
            activation: act,
            kernel: None,
            out_dtype: None,
        };
        let what = format!(
            "matmul a{sa:?}{} ({}) · b{sb:?}{} ({}){} act {}",
            if ta { "ᵀ" } else { "" },
            a.origin,
            if tb { "ᵀ" } else { "" },
            b.origin,
            if bias.is_some() { " + bias" } else { "" },
            act.name()
        );
        let plan = MatmulPlan::new(&sa, &sb, ta, tb).expect("generated shapes are valid");
        let out = self.ctx.matmul_with(&a.tensor, &b.tensor, &opts);
        let bias_values = bias.as_ref().map(|b| b.values.as_slice());
        let reference =
            gpu_linalg::matmul::cpu::reference(&plan, &a.values, &b.values, bias_values, act);
        let g = finer(
            product_grid(grid(&a.values), grid(&b.values)),
            bias_values.and_then(grid),
        );
        let exact = (matches!(act, Activation::None | Activation::Relu)
            && sums_exact(g, reference.magnitudes.iter().copied()))
        .then(|| as_exact_f32(&reference.values))
        .flatten();
        let label = format!("op {} matmul → {:?}", self.op, plan.out_shape);
        self.result(out, Check::Product(reference), exact, label, what);
    }

    fn conv2d(&mut self) {
        let coarse = self.rng.chance(4, 5);
        let small = |s: &[usize]| match s.len() {
            2 => s.iter().all(|&d| (1..=24).contains(&d)),
            3 | 4 => s.iter().product::<usize>() <= 1200 && s[s.len() - 3] <= 8,
            _ => false,
        };
        let x = match self.kept(small) {
            Some(mut x) => {
                if x.tensor.ndim() == 2 {
                    let s = [1, 1, x.tensor.shape()[0], x.tensor.shape()[1]];
                    x.tensor = x.tensor.reshape(&s).expect("same element count");
                }
                x
            }
            None => {
                let (c, h, w) = (
                    self.rng.range(1, 4),
                    self.rng.range(1, 12),
                    self.rng.range(1, 12),
                );
                let shape = if self.rng.chance(1, 6) {
                    vec![c, h, w]
                } else {
                    vec![self.rng.range(1, 2), c, h, w]
                };
                self.fresh(&shape, coarse)
            }
        };
        let sx = x.tensor.shape().to_vec();
        let cin = sx[sx.len() - 3];
        let groups = if cin > 1 && self.rng.chance(1, 3) {
            cin
        } else {
            1
        };
        let cout = groups * self.rng.range(1, if groups > 1 { 2 } else { 4 });
        let (kh, kw) = (self.rng.range(1, 3), self.rng.range(1, 3));
        let sw = vec![cout, cin / groups, kh, kw];
        let mut opts = ConvOptions {
            stride: [self.rng.range(1, 2), self.rng.range(1, 2)],
            padding: Padding::Explicit([self.rng.range(0, 1), self.rng.range(0, 1)]),
            dilation: [1, 1 + usize::from(self.rng.chance(1, 6))],
            groups,
            ..ConvOptions::default()
        };
        match self.rng.below(6) {
            0 => opts.padding = Padding::Valid,
            1 => {
                opts.padding = Padding::Same;
                opts.stride = [1, 1];
            }
            _ => {}
        }
        if ConvPlan::new(ConvKind::Conv2d, &sx, &sw, &opts).is_err() {
            // The kernel does not fit this input: pad it so it does.
            opts.padding = Padding::Explicit([kh, kw]);
            opts.dilation = [1, 1];
        }
        let plan = ConvPlan::new(ConvKind::Conv2d, &sx, &sw, &opts).expect("padded to fit");
        let coarse_w = coarse || self.rng.chance(1, 2);
        let w = self.fresh(&sw, coarse_w);
        let bias = self.rng.chance(1, 3).then(|| self.fresh(&[cout], coarse));
        opts.bias = bias.as_ref().map(|b| &b.tensor);
        // Fewer activations than matmul draws: each one is another pipeline per tile shape,
        // and lavapipe compiles each on first use.
        opts.activation = match self.rng.below(8) {
            0..=3 => Activation::None,
            4 | 5 => Activation::Relu,
            6 => Activation::Gelu,
            _ => Activation::Tanh,
        };
        let what = format!(
            "conv2d x{sx:?} ({}) * w{sw:?} stride {:?} padding {:?} dilation {:?} groups \
             {groups}{} act {}",
            x.origin,
            opts.stride,
            opts.padding,
            opts.dilation,
            if bias.is_some() { " + bias" } else { "" },
            opts.activation.name()
        );
        let out = self.ctx.conv2d(&x.tensor, &w.tensor, &opts);
        let bias_values = bias.as_ref().map(|b| b.values.as_slice());
        let reference = gpu_linalg::conv::cpu::reference(
            &plan,
            &x.values,
            &w.values,
            bias_values,
            opts.activation,
        );
        let g = finer(
            product_grid(grid(&x.values), grid(&w.values)),
            bias_values.and_then(grid),
        );
        let exact = (matches!(opts.activation, Activation::None | Activation::Relu)
            && sums_exact(g, reference.magnitudes.iter().copied()))
        .then(|| as_exact_f32(&reference.values))
        .flatten();
        let label = format!("op {} conv2d → {:?}", self.op, plan.out_shape);
        self.result(out, Check::Product(reference), exact, label, what);
    }

    /// A shape that broadcasts with `s`: a scalar, a suffix, ones in places, or one more dim.
    fn broadcast_partner(&mut self, s: &[usize]) -> Vec<usize> {
        let suffix = s[self.rng.range(0, s.len())..].to_vec();
        match self.rng.below(6) {
            0 => vec![],
            1 => s.to_vec(),
            2 => suffix,
            3 | 4 => suffix
                .iter()
                .map(|&d| if self.rng.chance(1, 2) { 1 } else { d })
                .collect(),
            _ if s.len() < 4 && 2 * s.iter().product::<usize>() <= MAX_ELEMS => {
                [&[2][..], s].concat()
            }
            _ => s.to_vec(),
        }
    }

    fn elementwise(&mut self) {
        let coarse = self.rng.chance(4, 5);
        let x = match self.kept(|_| true) {
            Some(x) => x,
            None => {
                let s = self.rng.shape();
                self.fresh(&s, coarse)
            }
        };
        let sx = x.tensor.shape().to_vec();
        let label = format!("op {} elementwise", self.op);
        if self.rng.chance(1, 3) {
            let op = match self.rng.below(8) {
                0 => UnaryOp::Abs,
                1 => UnaryOp::Scale(-0.5),
                2 => UnaryOp::Scale(0.3),
                3 => UnaryOp::Clamp(-1.0, 1.5),
                4 => UnaryOp::Act(Activation::Relu),
                _ => UnaryOp::Act(Activation::ALL[self.rng.range(2, 5)]),
            };
            let what = format!("unary {op:?} x{sx:?} ({})", x.origin);
            let out = self.ctx.unary(op, &x.tensor);
            let reference = unary_checked(op, &sx, &x.values);
            let single_rounding = matches!(
                op,
                UnaryOp::Abs
                    | UnaryOp::Scale(_)
                    | UnaryOp::Clamp(..)
                    | UnaryOp::Act(Activation::Relu)
            );
            let exact = single_rounding
                .then(|| as_exact_f32(&reference.values))
                .flatten();
            return self.result(out, Check::Elementwise(reference), exact, label, what);
        }
        let op = match self.rng.below(8) {
            0..=2 => BinaryOp::Add,
            3 => BinaryOp::Sub,
            4..=6 => BinaryOp::Mul,
            _ => BinaryOp::Axpy(-1.5),
        };
        let fits = |s: &[usize]| {
            broadcast_shapes(&sx, s).is_ok_and(|b| b.iter().product::<usize>() <= MAX_ELEMS)
        };
        let y = match self.kept(fits) {
            Some(y) => y,
            None => {
                let s = self.broadcast_partner(&sx);
                let coarse_y = coarse || self.rng.chance(1, 2);
                self.fresh(&s, coarse_y)
            }
        };
        let (a, b) = if self.rng.chance(1, 2) {
            (x, y)
        } else {
            (y, x)
        };
        let (sa, sb) = (a.tensor.shape().to_vec(), b.tensor.shape().to_vec());
        let shape = broadcast_shapes(&sa, &sb).expect("chosen to broadcast");
        let what = format!(
            "binary {op:?} a{sa:?} ({}) with b{sb:?} ({})",
            a.origin, b.origin
        );
        let out = self.ctx.binary(op, &a.tensor, &b.tensor);
        let reference = binary_checked(op, &shape, (&a.values, &sa), (&b.values, &sb));
        let single_rounding = matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul);
        let exact = single_rounding
            .then(|| as_exact_f32(&reference.values))
            .flatten();
        self.result(out, Check::Elementwise(reference), exact, label, what);
    }

    fn reduce(&mut self) {
        let coarse = self.rng.chance(4, 5);
        let x = match self.kept(|s| s.iter().product::<usize>() > 0) {
            Some(x) => x,
            None => {
                let s = self.rng.shape();
                self.fresh(&s, coarse)
            }
        };
        let sx = x.tensor.shape().to_vec();
        let op = [
            ReduceOp::Sum,
            ReduceOp::Sum,
            ReduceOp::Max,
            ReduceOp::Max,
            ReduceOp::Argmax,
            ReduceOp::Argmax,
            ReduceOp::Min,
            ReduceOp::Argmin,
            ReduceOp::Mean,
            ReduceOp::Norm,
        ][self.rng.below(10)];
        let nd = sx.len() as isize;
        let axis = if nd == 0 || self.rng.chance(1, 3) {
            None
        } else {
            Some(self.rng.below(2 * nd as usize) as isize - nd)
        };
        let opts = ReduceOptions {
            axis,
            keepdims: self.rng.chance(1, 2),
            ..ReduceOptions::default()
        };
        let what = format!(
            "reduce {} x{sx:?} ({}) axis {axis:?} keepdims {}",
            op.name(),
            x.origin,
            opts.keepdims
        );
        let plan = ReducePlan::new(op, &sx, &opts).expect("non-empty input");
        let out = self.ctx.reduce(op, &x.tensor, &opts);
        let reference = gpu_linalg::reduce::cpu::reference(&plan, &x.values);
        let label = format!("op {} {} → {:?}", self.op, op.name(), plan.out_shape);
        if op.is_arg() {
            return self.result(out, Check::Indices(reference), None, label, what);
        }
        let exact = match op {
            ReduceOp::Max | ReduceOp::Min => as_exact_f32(&reference.values),
            ReduceOp::Sum => {
                let total: f64 = x.values.iter().map(|v| f64::from(v.abs())).sum();
                sums_exact(grid(&x.values), [total])
                    .then(|| as_exact_f32(&reference.values))
                    .flatten()
            }
            _ => None,
        };
        self.result(out, Check::Reduction(reference), exact, label, what);
    }

    fn svd(&mut self) {
        let fits = |s: &[usize]| match s.len() {
            0 => true,
            1 => s[0] <= MAX_SVD_DIM,
            2 => s.iter().all(|&d| (1..=MAX_SVD_DIM).contains(&d)),
            _ => false,
        };
        let a = match self.kept(fits) {
            Some(mut a) => {
                let s = a.tensor.shape().to_vec();
                let matrix = match s.len() {
                    0 => vec![1, 1],
                    1 if self.rng.chance(1, 2) => vec![1, s[0]],
                    1 => vec![s[0], 1],
                    _ => s,
                };
                a.tensor = a.tensor.reshape(&matrix).expect("same element count");
                a
            }
            None => {
                let shape = [
                    self.rng.range(1, MAX_SVD_DIM),
                    self.rng.range(1, MAX_SVD_DIM),
                ];
                let coarse = self.rng.chance(1, 2);
                self.fresh(&shape, coarse)
            }
        };
        let (m, n) = (a.tensor.shape()[0], a.tensor.shape()[1]);
        let what = format!("svd a[{m}, {n}] ({})", a.origin);
        match self.ctx.svd(&a.tensor) {
            Ok(svd) => self.pending_svd.push(PendingSvd {
                svd,
                a: a.values,
                m,
                n,
                op: self.op,
                what,
            }),
            Err(e) => self.fail(self.op, &what, &format!("error: {e}")),
        }
    }

    /// Reads back and checks everything pending, a share of the unread exact results, and one
    /// kept tensor, which must still hold what it was made with.
    fn checkpoint(&mut self) {
        self.since_check = 0;
        for p in std::mem::take(&mut self.pending) {
            self.stats.readbacks += 1;
            match p.check.judge(&p.tensor) {
                Err(e) => self.fail(p.op, &p.what, &e),
                Ok(Some(values)) if values.iter().all(|v| v.is_finite()) => {
                    // Read back and verified: its contents are known, so it may be chained.
                    if self.rng.chance(1, 2) {
                        self.workspace.push(Known {
                            tensor: p.tensor,
                            values,
                            op: p.op,
                            result: true,
                            origin: format!("op {} result", p.op),
                            unchecked: None,
                        });
                    }
                }
                Ok(_) => {}
            }
        }
        for p in std::mem::take(&mut self.pending_svd) {
            self.check_svd(p);
        }
        let mut i = 0;
        while i < self.workspace.len() {
            if self.workspace[i].unchecked.is_some() && self.rng.chance(1, 4) {
                self.reread(i, true);
            } else {
                i += 1;
            }
        }
        if !self.workspace.is_empty() && self.rng.chance(1, 2) {
            let i = self.rng.below(self.workspace.len());
            self.reread(i, true);
        }
    }

    /// Reads back kept tensor `i`: checked against its reference if no readback has been, and
    /// it must hold exactly its known values. It stays kept, if `keep` and it is right, half
    /// the time.
    fn reread(&mut self, i: usize, keep: bool) {
        let k = self.workspace.swap_remove(i);
        self.stats.readbacks += 1;
        let (got, what) = match &k.unchecked {
            Some((check, what)) => (
                check.judge(&k.tensor),
                format!("{what} (exact, kept unread)"),
            ),
            None => (
                k.tensor.to_vec().map(Some).map_err(|e| e.to_string()),
                format!("{} (kept)", k.origin),
            ),
        };
        let got = match got {
            Ok(Some(got)) => got,
            Ok(None) => return,
            Err(e) => return self.fail(k.op, &what, &e),
        };
        if let Some(d) = first_difference(&got, &k.values) {
            return self.fail(k.op, &what, &d);
        }
        if keep && self.rng.chance(1, 2) {
            self.workspace.push(Known {
                unchecked: None,
                ..k
            });
        }
    }

    /// Judges an SVD as tests/svd.rs does: LAPACK's ratios, S descending and non-negative, and
    /// S against the f64 singular values.
    fn check_svd(&mut self, p: PendingSvd) {
        self.stats.readbacks += 1;
        let k = p.m.min(p.n);
        let shapes = [p.svd.u.shape(), p.svd.s.shape(), p.svd.vt.shape()];
        let expected: [&[usize]; 3] = [&[p.m, k], &[k], &[k, p.n]];
        if shapes != expected {
            return self.fail(p.op, &p.what, &format!("factor shapes {shapes:?}"));
        }
        let read = (|| {
            Ok::<_, gpu_linalg::Error>((p.svd.u.to_vec()?, p.svd.s.to_vec()?, p.svd.vt.to_vec()?))
        })();
        let (u, s, vt) = match read {
            Ok(f) => f,
            Err(e) => return self.fail(p.op, &p.what, &format!("readback: {e}")),
        };
        let r = ratios(&p.a, p.m, p.n, &u, &s, &vt);
        if r.iter().any(|x| x.is_nan() || *x >= SVD_RATIO_LIMIT) {
            return self.fail(
                p.op,
                &p.what,
                &format!("LAPACK ratios {r:?} (limit {SVD_RATIO_LIMIT})"),
            );
        }
        if s.iter().any(|x| x.is_nan() || *x < 0.0) || s.windows(2).any(|w| w[0] < w[1]) {
            return self.fail(
                p.op,
                &p.what,
                &format!("S not descending non-negative: {s:?}"),
            );
        }
        let exact = singular_values_f64(&p.a, p.m, p.n).expect("f64 SVD of a small matrix");
        let bound = exact.first().copied().unwrap_or(0.0) * k.max(1) as f64 * RATIO_EPS * 4.0;
        if let Some(q) = (0..k).find(|&q| (f64::from(s[q]) - exact[q]).abs() > bound) {
            return self.fail(
                p.op,
                &p.what,
                &format!(
                    "σ{q} = {}, f64 reference {}, bound {bound:e}",
                    s[q], exact[q]
                ),
            );
        }
        // The factors are known now: later ops may use them.
        if self.rng.chance(1, 2) {
            let origin = format!("op {} svd factor", p.op);
            for (tensor, values) in [(p.svd.u, u), (p.svd.s, s), (p.svd.vt, vt)] {
                if self.rng.chance(1, 2) {
                    self.workspace.push(Known {
                        tensor,
                        values,
                        op: p.op,
                        result: true,
                        origin: origin.clone(),
                        unchecked: None,
                    });
                }
            }
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

#[test]
fn threads_share_one_context_under_mixed_load() {
    let Some(ctx) = common::gpu() else { return };
    // Watchdog: every wait below has the same deadline, so a deadlock fails the test.
    let deadline = Instant::now() + WATCHDOG;
    // No tuning beforehand: on a fresh cache the threads' first ops meet each family's tuner
    // at once, and every thread but the tuning one waits for its choice.
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    for thread in 0..THREADS {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("stress-{thread}"))
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| Worker::new(ctx, thread).run()));
                let _ = tx.send((thread, outcome));
            })
            .expect("spawning a thread");
    }
    drop(tx);
    let mut finished = [false; THREADS];
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    for _ in 0..THREADS {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((t, outcome)) => {
                finished[t] = true;
                match outcome {
                    Ok((f, s)) => {
                        failures.extend(f);
                        stats.add(&s);
                    }
                    Err(p) => failures.push(format!("thread {t} panicked: {}", panic_message(&*p))),
                }
            }
            Err(_) => {
                let stuck: Vec<usize> = (0..THREADS).filter(|&t| !finished[t]).collect();
                panic!(
                    "deadlock? threads {stuck:?} have not finished {:.0} s after they started \
                     (watchdog {WATCHDOG:?} from the test's start; {} wrong answers so far)",
                    start.elapsed().as_secs_f64(),
                    failures.len()
                );
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let kinds: Vec<String> = KINDS
        .iter()
        .zip(stats.per_kind)
        .map(|(k, c)| format!("{k} {c}"))
        .collect();
    eprintln!(
        "stress: {THREADS} threads × {OPS_PER_THREAD} ops = {} ops ({}) in {secs:.1} s on {}: \
         {} took an earlier op's GPU-resident result, {} an unread one; {} results exact by \
         construction; {} readbacks checked, {} wrong",
        stats.ops,
        kinds.join(", "),
        ctx.description(),
        stats.resident,
        stats.chained,
        stats.exact,
        stats.readbacks,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(stats.ops, THREADS * OPS_PER_THREAD);
    assert!(
        stats.chained * 5 >= stats.ops,
        "only {} of {} ops chained on unread GPU results",
        stats.chained,
        stats.ops
    );
}
