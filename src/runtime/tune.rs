//! The one tuner of every family: kernel choices per (device, family, shape bucket), verified
//! against the CPU reference, timed, remembered for the process and cached on disk.
//!
//! - A family keeps a `static` [`Choices`] and asks it for the choice of a bucket (a short
//!   string such as `mn2^16/k2^10/b1`). The first ask of a bucket on a device tunes it, under a
//!   per-(device, family) lock: one thread tunes, the others wait for its choice.
//! - [`measure`] runs every candidate once on the tuning inputs and checks its output against
//!   the CPU reference; a candidate whose output is wrong is excluded, logged once and listed
//!   by [`tuning_report`] (`gpu-linalg info --tune`). The others are timed (timestamp queries
//!   where the adapter has them, else wall clock), and the fastest wins.
//! - The disk cache (`tuning.txt` in `GPU_LINALG_CACHE_DIR`, `$XDG_CACHE_HOME/gpu-linalg` or
//!   `~/.cache/gpu-linalg`) starts with a format line; a file of another format, or one that
//!   cannot be read, is ignored (and replaced at the next store), never an error. Entries are
//!   keyed by family, bucket, adapter, API, driver, device type and crate version.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::device::{lock, Gpu};
use crate::error::{Error, Result};

/// First line of the tuning cache file; a file that does not start with it is ignored.
pub const TUNING_CACHE_FORMAT: &str = "# gpu-linalg tuning cache, format 2";

/// Label of the deliberately wrong candidate the test hook adds.
pub const INJECTED_LABEL: &str = "injected-wrong";

static INJECT_WRONG: AtomicBool = AtomicBool::new(false);

/// Test hook: while on, every tuning adds one more candidate that runs like the first but
/// returns a wrong result (one value off by its own magnitude, at least 1) and reports the
/// best time of all. Verification must exclude
/// it; tests assert that it is never chosen.
#[doc(hidden)]
pub fn inject_wrong_tuning_candidate(on: bool) {
    INJECT_WRONG.store(on, Ordering::SeqCst);
}

/// What one candidate did during a tuning.
#[derive(Clone, Debug)]
pub struct TuneOutcome<K> {
    /// The candidate.
    pub choice: K,
    /// Its label (the choice as the cache spells it, or [`INJECTED_LABEL`]).
    pub label: String,
    /// Best time of the timed runs in seconds, or why it was ruled out (a failure to run, or a
    /// wrong result).
    pub seconds: std::result::Result<f64, String>,
}

/// A block size of a blocked factorisation, as the tuner and its cache spell it (`b16`,
/// `b32`): a multiple of 4 from 4 to [`BlockSize::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSize(pub usize);

impl BlockSize {
    /// The largest block size the blocked kernels' workgroup arrays hold.
    pub const MAX: usize = 32;
}

impl Display for BlockSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b{}", self.0)
    }
}

impl std::str::FromStr for BlockSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<BlockSize> {
        let t = s.trim();
        match t.strip_prefix('b').unwrap_or(t).parse::<usize>() {
            Ok(b) if b % 4 == 0 && (4..=BlockSize::MAX).contains(&b) => Ok(BlockSize(b)),
            _ => Err(Error::InvalidArgument(format!(
                "bad block size '{s}'; expected bN with N a multiple of 4 from 4 to {} (e.g. \
                 b16, b32)",
                BlockSize::MAX
            ))),
        }
    }
}

/// One line of [`Context::tuning_report`](crate::Context::tuning_report).
#[derive(Clone, Debug)]
pub struct TuningRecord {
    /// Kernel family (`matmul`, `conv`, `reduce`, `svd`, `svd-batched`, …).
    pub family: String,
    /// Shape bucket.
    pub bucket: String,
    /// The label of the choice made.
    pub chosen: String,
    /// Candidates ruled out, with why.
    pub excluded: Vec<(String, String)>,
}

/// Every tuning this process ran, per device.
static REPORT: Mutex<Vec<(Weak<Gpu>, TuningRecord)>> = Mutex::new(Vec::new());

/// The tunings this process ran on `gpu`, in order.
pub(crate) fn tuning_report(gpu: &Arc<Gpu>) -> Vec<TuningRecord> {
    lock(&REPORT)
        .iter()
        .filter(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(gpu)))
        .map(|(_, r)| r.clone())
        .collect()
}

fn record(gpu: &Arc<Gpu>, rec: TuningRecord) {
    for (label, why) in &rec.excluded {
        log::warn!(
            "gpu-linalg: tuning {} ({}) excluded candidate {label}: {why}",
            rec.family,
            rec.bucket
        );
    }
    let mut r = lock(&REPORT);
    r.retain(|(w, _)| w.strong_count() > 0);
    r.push((Arc::downgrade(gpu), rec));
}

/// Runs every candidate: once to check its output (`read` of what `run` returned) with
/// `check`, then `reps` timed runs of those that passed. With the test hook on, an injected
/// wrong candidate joins them.
pub(crate) fn measure<K: Copy + Display, R>(
    gpu: &Arc<Gpu>,
    candidates: &[K],
    reps: usize,
    run: impl Fn(K) -> Result<R>,
    read: impl Fn(&R) -> Result<Vec<f32>>,
    check: impl Fn(&[f32]) -> Result<()>,
) -> Vec<TuneOutcome<K>> {
    measure_with(
        gpu,
        candidates,
        reps,
        |c| run(c).and_then(|r| read(&r)),
        check,
        |c| run(c).map(drop),
    )
}

/// [`measure`] for candidates whose checked output comes from another run than the timed one
/// (a full decomposition checked, one sweep timed): `output(c)` is checked by `check`, then
/// `run(c)` is timed.
pub(crate) fn measure_with<K: Copy + Display>(
    gpu: &Arc<Gpu>,
    candidates: &[K],
    reps: usize,
    output: impl Fn(K) -> Result<Vec<f32>>,
    check: impl Fn(&[f32]) -> Result<()>,
    run: impl Fn(K) -> Result<()>,
) -> Vec<TuneOutcome<K>> {
    let mut out = Vec::new();
    for &c in candidates {
        let verified = output(c)
            .and_then(|v| check(&v).map_err(|e| Error::Verification(format!("wrong result: {e}"))));
        let seconds = match verified {
            Err(e) => Err(e.to_string()),
            Ok(()) => {
                // One untimed run (pipelines built), then the timed ones.
                run(c)
                    .and_then(|()| time(gpu, reps, || run(c)))
                    .map_err(|e| e.to_string())
            }
        };
        out.push(TuneOutcome {
            choice: c,
            label: c.to_string(),
            seconds,
        });
    }
    if INJECT_WRONG.load(Ordering::SeqCst) {
        if let Some(&c) = candidates.first() {
            let verified = output(c).and_then(|mut v| {
                let i = v.len() / 2;
                // Off by its own magnitude (at least 1): wrong under any tolerance.
                if let Some(x) = v.get_mut(i) {
                    *x += x.abs().max(1.0);
                }
                check(&v)
            });
            out.push(TuneOutcome {
                choice: c,
                label: INJECTED_LABEL.to_string(),
                seconds: match verified {
                    Ok(()) => Ok(0.0),
                    Err(e) => Err(format!("wrong result: {e}")),
                },
            });
        }
    }
    out
}

/// Best of `reps` runs of `f` in seconds: GPU time by timestamp queries where the adapter has
/// them, else wall time to completion.
fn time(gpu: &Arc<Gpu>, reps: usize, f: impl Fn() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let ((), gpu_secs) = gpu.time_gpu(&f)?;
        let secs = match gpu_secs {
            Some(s) => s,
            None => {
                gpu.wait_idle()?;
                t0.elapsed().as_secs_f64()
            }
        };
        best = best.min(secs);
    }
    Ok(best)
}

/// The fastest verified outcome.
pub(crate) fn fastest<K: Copy>(outcomes: &[TuneOutcome<K>]) -> Option<&TuneOutcome<K>> {
    outcomes
        .iter()
        .filter_map(|o| o.seconds.as_ref().ok().map(|s| (o, *s)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(o, _)| o)
}

type BucketMap<K> = Arc<Mutex<HashMap<String, K>>>;

/// The tuned choices of one family, per device and bucket (a `static` in the family).
pub(crate) struct Choices<K> {
    family: &'static str,
    /// The environment variable that forces a choice (spelled as the cache spells it).
    force_env: Option<&'static str>,
    /// Its value, read once per process (not on every op).
    forced: std::sync::OnceLock<Option<String>>,
    devices: Mutex<Vec<(Weak<Gpu>, BucketMap<K>)>>,
}

thread_local! {
    /// Families this thread is tuning now (a tuning that needs its own family's choice would
    /// wait for itself).
    static TUNING: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<K: Copy + Display + std::str::FromStr<Err = Error>> Choices<K> {
    /// An empty memo for `family` (for a `static`); `force_env` names the environment
    /// variable whose value, when set, is the choice for every bucket.
    pub(crate) const fn new(family: &'static str, force_env: Option<&'static str>) -> Self {
        Choices {
            family,
            force_env,
            forced: std::sync::OnceLock::new(),
            devices: Mutex::new(Vec::new()),
        }
    }

    fn map(&self, gpu: &Arc<Gpu>) -> BucketMap<K> {
        let mut d = lock(&self.devices);
        d.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, m)) = d
            .iter()
            .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(gpu)))
        {
            return m.clone();
        }
        let m = BucketMap::default();
        d.push((Arc::downgrade(gpu), m.clone()));
        m
    }

    /// The choice for `bucket` on `gpu`: the forcing environment variable's (an `Err` when it
    /// does not parse), else remembered, else the disk cache's, else tuned now by
    /// `tune` (which returns every candidate's outcome; the fastest verified one wins and is
    /// cached). One thread per (device, family) tunes; the others wait for its choice.
    pub(crate) fn get(
        &self,
        gpu: &Arc<Gpu>,
        bucket: &str,
        tune: impl FnOnce() -> Result<Vec<TuneOutcome<K>>>,
    ) -> Result<K> {
        let forced = self
            .forced
            .get_or_init(|| self.force_env.and_then(|v| std::env::var(v).ok()));
        if let Some(v) = forced {
            return v.parse();
        }
        if TUNING.with(|t| t.borrow().contains(&self.family)) {
            return Err(Error::Kernel(format!(
                "tuning {} needs a {} choice for bucket {bucket} it is itself tuning",
                self.family, self.family
            )));
        }
        let map = self.map(gpu);
        // Held while tuning: the other threads of this (device, family) wait here.
        let mut guard = lock(&map);
        if let Some(v) = guard.get(bucket) {
            return Ok(*v);
        }
        let key = format!("{}/{bucket}", self.family);
        let cached = read_cache(gpu, &key).and_then(|v| v.parse::<K>().ok());
        let choice = match cached {
            Some(v) => v,
            None => {
                TUNING.with(|t| t.borrow_mut().push(self.family));
                let outcomes = tune();
                TUNING.with(|t| t.borrow_mut().retain(|f| *f != self.family));
                let outcomes = outcomes?;
                let best = fastest(&outcomes).ok_or_else(|| {
                    Error::Kernel(format!(
                        "no {} kernel runs correctly on this adapter ({bucket}): {}",
                        self.family,
                        outcomes
                            .iter()
                            .map(|o| format!("{}: {:?}", o.label, o.seconds))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
                record(
                    gpu,
                    TuningRecord {
                        family: self.family.to_string(),
                        bucket: bucket.to_string(),
                        chosen: best.label.clone(),
                        excluded: outcomes
                            .iter()
                            .filter_map(|o| {
                                o.seconds
                                    .as_ref()
                                    .err()
                                    .map(|e| (o.label.clone(), e.clone()))
                            })
                            .collect(),
                    },
                );
                let choice = best.choice;
                if best.label != INJECTED_LABEL {
                    write_cache(gpu, &key, &choice.to_string());
                }
                choice
            }
        };
        guard.insert(bucket.to_string(), choice);
        Ok(choice)
    }
}

/// Where the tuning cache lives: `GPU_LINALG_CACHE_DIR`, else `$XDG_CACHE_HOME/gpu-linalg`,
/// else `$HOME/.cache/gpu-linalg`; `None` when `GPU_LINALG_NO_TUNING_CACHE` is set.
fn cache_file() -> Option<std::path::PathBuf> {
    if std::env::var("GPU_LINALG_NO_TUNING_CACHE").is_ok_and(|v| v != "0" && !v.is_empty()) {
        return None;
    }
    let dir = std::env::var_os("GPU_LINALG_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::Path::new(&d).join("gpu-linalg"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| std::path::Path::new(&d).join(".cache/gpu-linalg"))
        })?;
    Some(dir.join("tuning.txt"))
}

/// The cache key of `what` on this adapter: adapter, API, driver, device type, crate version.
fn cache_key(gpu: &Gpu, what: &str) -> String {
    let i = &gpu.info;
    format!(
        "{what}|{}|{:?}|{}|{}|{:?}|checked={}|gpu-linalg {}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        i.device_type,
        gpu.checked,
        env!("CARGO_PKG_VERSION")
    )
    .replace(['\n', '\t'], " ")
}

/// The entries of a cache file in the current format (none for another format or garbage).
fn cache_lines(text: &str) -> Vec<(&str, &str)> {
    let mut lines = text.lines();
    if lines.next() != Some(TUNING_CACHE_FORMAT) {
        return Vec::new();
    }
    lines.filter_map(|l| l.split_once('\t')).collect()
}

/// The value cached on disk for `what` on this adapter, if any.
fn read_cache(gpu: &Gpu, what: &str) -> Option<String> {
    let key = cache_key(gpu, what);
    let text = std::fs::read_to_string(cache_file()?).ok()?;
    cache_lines(&text)
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .next_back()
}

/// Caches `value` for `what` on this adapter (best effort: a cache that cannot be written only
/// costs a re-tune next time). Written to a temporary file and renamed, so that concurrent
/// processes never read a torn file.
fn write_cache(gpu: &Gpu, what: &str, value: &str) {
    let Some(path) = cache_file() else {
        return;
    };
    let key = cache_key(gpu, what);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = vec![TUNING_CACHE_FORMAT.to_string()];
    lines.extend(
        cache_lines(&old)
            .into_iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| format!("{k}\t{v}")),
    );
    lines.push(format!("{key}\t{value}"));
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!(
        "tmp{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&tmp, lines.join("\n") + "\n").is_ok()
        && std::fs::rename(&tmp, &path).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// ⌈log₂ x⌉ (0 for x ≤ 1): the exponent shape buckets are made of.
pub(crate) fn ceil_log2(x: usize) -> u32 {
    usize::BITS - x.saturating_sub(1).leading_zeros()
}

/// `ceil_log2(x)` rounded up to a multiple of `step`, at most `max`: a coarse bucket exponent.
pub(crate) fn bucket_exp(x: usize, step: u32, max: u32) -> u32 {
    ceil_log2(x).div_ceil(step).saturating_mul(step).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_of_another_format_is_ignored() {
        assert!(cache_lines("matmul|x\tvec4:4x2@16\n").is_empty());
        assert!(cache_lines("").is_empty());
        assert!(cache_lines("\u{0}\u{1}garbage").is_empty());
        let ok = format!("{TUNING_CACHE_FORMAT}\nk\tv\nbad line\n");
        assert_eq!(cache_lines(&ok), vec![("k", "v")]);
    }

    #[test]
    fn buckets_are_coarse_powers_of_two() {
        assert_eq!(ceil_log2(0), 0);
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(1025), 11);
        assert_eq!(bucket_exp(9, 4, 24), 4);
        assert_eq!(bucket_exp(4097, 4, 24), 16);
        assert_eq!(bucket_exp(1 << 30, 4, 24), 24);
    }
}
