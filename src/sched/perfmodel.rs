//! History-based performance model for dmda placement, as in StarPU: per (task kind, input
//! size bucket, device), the recent run times, summarised by their median. A task's kind is
//! its name up to the first `(` or `[` ([`kind_of`]): `gemm(3,2,1)` is a `gemm`.
//!
//! ## What the model predicts
//! [`PerfModel::predict`] answers "how long would this task take on that device" from the
//! best evidence it has, in this order ([`Basis`]):
//! 1. **Measured**: runs of this kind at this size bucket on this device (their median).
//! 2. **Scaled**: runs of this kind on this device at other sizes, scaled as a power law of
//!    the bytes (the exponent fitted over the buckets seen, linear when only one is): StarPU's
//!    regression models, so a new size is not a new calibration.
//! 3. **Transferred**: runs of this kind on another device, times the *device ratio* between
//!    the two: the geometric mean of `t(device) / t(other)` over every kind and size measured
//!    on both, or, before any such pair exists, the ratio of their type priors
//!    ([`DeviceProfile::prior`]).
//!
//! Nothing is predicted for a kind never run anywhere.
//!
//! ## Calibration with bounded regret
//! Placement (`placement.rs`, dmda) uses measured and scaled predictions as they are. A
//! device known only through a transferred prediction is *unexplored* for that kind, and
//! running a task there to learn is an *exploration*, paid from a budget:
//!
//! - the budget is [`EXPLORE_FRACTION`] of the run time of every task this model timed in
//!   this process, less what explorations cost so far (debited at their predicted cost when
//!   placed, corrected to their measured cost when they finish);
//! - an exploration is allowed when its predicted cost fits the budget; a device measured
//!   fewer than [`MIN_SAMPLES`] times and losing is re-probed the same way with back-off
//!   (each re-probe of a key costs twice the budget of the last), unless two samples already
//!   say it loses by 8× or more: then it is left alone (StarPU would keep sampling it; one
//!   sample is not enough, as a device's first use includes shader compilation);
//! - the first task of a kind never run anywhere goes to the device the priors favour (the
//!   CPU, unless the device ratio or a hardware GPU's type prior says the GPU is faster);
//! - explorations happen where they cost least: at placement, or when an idle device steals
//!   a queued task of a kind it is not calibrated for (`Scheduler::explore_by_steal`: the
//!   task waited behind others anyway). Tasks spawned in a burst are all placed before any
//!   has run, when the budget is still empty; stealing is how a first run still finds a
//!   faster device. Idle GPUs are nudged each time the budget doubles.
//!
//! What a sample is: a CPU task's run time; a GPU task's share of its batch's device time
//! (the batch's time on the device divided by its tasks: `GpuJob::gpu_done`), not its
//! latency through the batch, which would charge each task for the whole batch.
//!
//! So explorations cost at most [`EXPLORE_FRACTION`] of the work done plus one task (the
//! prediction may be low by the error of the prior), whatever the devices: on a machine whose
//! GPU is a software rasteriser 30–100× slower than the CPU (lavapipe), a first run of tiled
//! Cholesky never sends a GEMM there, where calibrating every device three times (the old
//! rule) made the first run 40× slower than the CPU alone. The price is that the priors'
//! errors are found late. A device they underrate is first tried after about
//! `prior / EXPLORE_FRACTION` tasks of a kind (320 for a software adapter); a device they
//! overrate (a hardware GPU presumed 2× faster that is in fact slower: busy, throttled) keeps
//! the kinds it gets first until the budget pays for one run elsewhere, about
//! `1 / (prior · EXPLORE_FRACTION)` tasks (20 for a discrete GPU). Both shrink once the device
//! ratio is learned from another kind.
//!
//! ## Outliers
//! One slow run (a page fault storm, a preempted worker) must not poison the model — a known
//! StarPU failure. A sample more than [`OUTLIER_FACTOR`] times away from the current median
//! (with at least [`MIN_SAMPLES`] samples) is set aside instead of recorded; only if
//! [`OUTLIER_RUN`] such samples arrive in a row is the change believed, and the history
//! restarts from them. The median itself also ignores isolated extremes.
//!
//! ## Persistence
//! The model is kept per device *identity* (host, adapter, driver: [`DeviceProfile::identity`]),
//! never per index, so a model learned on one device is never used for another. Where and
//! when it is stored: `store.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::store::{self, ModelFile, StoredEntry};
use crate::device::{DeviceId, DeviceType};

/// Samples after which a device counts as calibrated for a task (outlier rejection starts,
/// re-probes stop).
pub const MIN_SAMPLES: usize = 3;
/// How far (as a factor) from the median a sample must be to be an outlier.
pub const OUTLIER_FACTOR: f64 = 5.0;
/// Consecutive outliers after which they are believed.
pub const OUTLIER_RUN: usize = 3;
/// The share of timed work that explorations may cost.
pub const EXPLORE_FRACTION: f64 = 0.1;
const HISTORY: usize = 16;

/// The expected run time of a task on a device relative to the CPU, before anything is
/// measured there, by the adapter's type.
///
/// A software adapter (lavapipe, llvmpipe, SwiftShader, WARP) runs kernels on the CPU's own
/// cores through a generic compiler: measured here 20–100× slower than the CPU's tuned code
/// for GEMM, more for small tasks (a submission round trip of 30–55 µs); 32 is at the low end,
/// so it is found if it ever pays. A discrete GPU is presumed faster (it gets the first run of
/// a new kind), an integrated one even; virtual or unknown adapters slower.
pub fn type_prior(t: DeviceType) -> f64 {
    match t {
        DeviceType::DiscreteGpu => 0.5,
        DeviceType::IntegratedGpu => 1.0,
        DeviceType::Cpu => 32.0,
        _ => 4.0,
    }
}

/// What the model knows about one device of its runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    /// The device, as tasks are placed on it.
    pub device: DeviceId,
    /// What identifies it across runs: host, model, driver (the persisted key).
    pub identity: String,
    /// Whether its kernels run on the CPU workers' cores (a software adapter).
    pub shares_cpu_cores: bool,
    /// Expected run time relative to the CPU before anything is measured ([`type_prior`];
    /// 1 for the CPU).
    pub prior: f64,
}

impl DeviceProfile {
    /// A profile named by the device alone (`cpu`, `gpu0`), for models built without a
    /// runtime (tests, tools): neutral prior.
    pub fn plain(device: DeviceId) -> DeviceProfile {
        DeviceProfile {
            device,
            identity: device.to_string(),
            shares_cpu_cores: false,
            prior: 1.0,
        }
    }
}

/// Where a prediction comes from (module docs, "What the model predicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basis {
    /// Runs of the kind at this size on this device.
    Measured,
    /// Runs of the kind on this device at other sizes, scaled.
    Scaled,
    /// Runs of the kind on another device, times the device ratio.
    Transferred,
}

/// A predicted run time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Nanoseconds.
    pub ns: f64,
    /// What it rests on.
    pub basis: Basis,
    /// Samples behind it at this size on this device (0 unless measured).
    pub samples: usize,
}

/// A device measured (fewer than [`MIN_SAMPLES`] times) within this factor of the best is
/// re-probed; one two samples put further behind is not.
pub const REPROBE_WITHIN: f64 = 8.0;

impl Prediction {
    /// Whether running the task on this device to measure it is worth an exploration, when
    /// doing so costs `here_ns` against `best_ns` on the best device: the device is
    /// unexplored (a transferred prediction), or measured fewer than [`MIN_SAMPLES`] times,
    /// unless two samples already say it is [`REPROBE_WITHIN`] times slower (one sample may
    /// be a device's first use: shader compilation, first allocations).
    pub fn worth_probing(&self, here_ns: f64, best_ns: f64) -> bool {
        self.basis == Basis::Transferred
            || (self.samples < MIN_SAMPLES
                && (self.samples < 2 || here_ns < REPROBE_WITHIN * best_ns))
    }
}

#[derive(Debug, Default, Clone)]
struct Entry {
    samples: Vec<u64>,
    pending_outliers: Vec<u64>,
    /// Explorations and re-probes placed here so far (the back-off's exponent).
    probes: u32,
}

impl Entry {
    fn median(&self) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v = self.samples.clone();
        v.sort_unstable();
        Some(v[v.len() / 2])
    }

    fn add(&mut self, ns: u64) -> bool {
        if let (Some(m), true) = (self.median(), self.samples.len() >= MIN_SAMPLES) {
            let (lo, hi) = (m as f64 / OUTLIER_FACTOR, m as f64 * OUTLIER_FACTOR);
            if (ns as f64) > hi || (ns as f64) < lo {
                self.pending_outliers.push(ns);
                if self.pending_outliers.len() >= OUTLIER_RUN {
                    self.samples = std::mem::take(&mut self.pending_outliers);
                    return true;
                }
                return false;
            }
        }
        self.pending_outliers.clear();
        self.samples.push(ns);
        if self.samples.len() > HISTORY {
            self.samples.remove(0);
        }
        true
    }
}

type Key = (String, u32, DeviceId);

/// What an exploration decision needs to remember until the task finishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exploration {
    /// The cost debited from the budget when it was placed, in nanoseconds.
    pub debited_ns: u64,
}

/// Where the model is read from and written to.
#[derive(Debug, Clone)]
struct Store {
    path: std::path::PathBuf,
    read_only: bool,
}

/// The model: thread-safe, shared by a runtime's scheduler.
#[derive(Debug, Default)]
pub struct PerfModel {
    entries: Mutex<HashMap<Key, Entry>>,
    rejected: AtomicU64,
    devices: Vec<DeviceProfile>,
    /// Nanoseconds of timed work recorded in this process, and what explorations cost.
    work_ns: AtomicU64,
    explore_ns: AtomicU64,
    /// Explorations per device (indexed as `devices`).
    explorations: Vec<AtomicU64>,
    /// The share of the work explorations may cost (None: [`EXPLORE_FRACTION`]).
    explore_fraction: Option<f64>,
    store: Option<Store>,
    /// Samples recorded since the last save.
    dirty: AtomicBool,
    last_save: Mutex<Option<crate::time::Instant>>,
}

/// The model key of a task name: the name up to its first `(` or `[`, trimmed, so that
/// `gemm(3,2,1)` and `gemm(4,1,0)` share the history of `gemm` (like a StarPU codelet).
pub fn kind_of(name: &str) -> &str {
    name.split(['(', '[']).next().unwrap_or(name).trim()
}

/// Size bucket of an input size: its power of two.
pub fn size_bucket(bytes: u64) -> u32 {
    64 - bytes.max(1).leading_zeros()
}

/// What [`PerfModel::summary`] reports for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSummary {
    /// The device.
    pub device: DeviceId,
    /// Its persisted identity.
    pub identity: String,
    /// Task kinds with samples on it.
    pub kinds: usize,
    /// (kind, size bucket) keys with samples.
    pub keys: usize,
    /// Samples in all.
    pub samples: usize,
    /// Run time relative to the CPU: learned from kinds measured on both, else the prior.
    pub ratio_to_cpu: f64,
    /// Whether `ratio_to_cpu` was learned (false: the type prior).
    pub ratio_learned: bool,
    /// Explorations placed on it in this process.
    pub explorations: u64,
}

impl PerfModel {
    /// An empty model for these devices.
    pub fn new(devices: Vec<DeviceProfile>) -> PerfModel {
        PerfModel {
            explorations: devices.iter().map(|_| AtomicU64::new(0)).collect(),
            devices,
            ..PerfModel::default()
        }
    }

    fn profile(&self, d: DeviceId) -> Option<&DeviceProfile> {
        self.devices.iter().find(|p| p.device == d)
    }

    /// The devices the model knows.
    pub fn devices(&self) -> &[DeviceProfile] {
        &self.devices
    }

    /// The prior of a device (1 for a device without a profile).
    pub fn prior(&self, d: DeviceId) -> f64 {
        match d {
            DeviceId::Cpu => 1.0,
            _ => self.profile(d).map_or(1.0, |p| p.prior),
        }
    }

    /// Whether a device's kernels run on the CPU workers' cores.
    pub fn shares_cpu_cores(&self, d: DeviceId) -> bool {
        self.profile(d).is_some_and(|p| p.shares_cpu_cores)
    }

    /// Records one run of `task` with `bytes` of data on `device`.
    pub fn record(&self, task: &str, bytes: u64, device: DeviceId, took: Duration) {
        let key = (kind_of(task).to_string(), size_bucket(bytes), device);
        let ns = took.as_nanos() as u64;
        let accepted = self.entries.lock().entry(key).or_default().add(ns);
        self.work_ns.fetch_add(ns, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        if !accepted {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The expected run time, if `device` is calibrated ([`MIN_SAMPLES`] samples) for `task`
    /// at this size.
    pub fn estimate(&self, task: &str, bytes: u64, device: DeviceId) -> Option<Duration> {
        let e = self.entries.lock();
        let entry = e.get(&(kind_of(task).to_string(), size_bucket(bytes), device))?;
        if entry.samples.len() < MIN_SAMPLES {
            return None;
        }
        entry.median().map(Duration::from_nanos)
    }

    /// The best prediction of `task`'s run time on `device` (module docs).
    pub fn predict(&self, task: &str, bytes: u64, device: DeviceId) -> Option<Prediction> {
        let kind = kind_of(task);
        let e = self.entries.lock();
        Self::predict_in(&e, kind, size_bucket(bytes), device, |a, b| {
            self.ratio_in(&e, a, b).0
        })
    }

    /// Measured or scaled (same device), else transferred through `ratio(to, from)`.
    fn predict_in(
        e: &HashMap<Key, Entry>,
        kind: &str,
        bucket: u32,
        device: DeviceId,
        ratio: impl Fn(DeviceId, DeviceId) -> f64,
    ) -> Option<Prediction> {
        if let Some(p) = Self::on_device(e, kind, bucket, device) {
            return Some(p);
        }
        // Another device that knows the kind: the one whose prediction rests on most.
        let mut others: Vec<DeviceId> = e
            .keys()
            .filter(|k| k.0 == kind && k.2 != device)
            .map(|k| k.2)
            .collect();
        others.sort();
        others.dedup();
        others
            .into_iter()
            .filter_map(|o| Some((o, Self::on_device(e, kind, bucket, o)?)))
            .min_by_key(|(_, p)| (p.basis, std::cmp::Reverse(p.samples)))
            .map(|(o, p)| Prediction {
                ns: p.ns * ratio(device, o),
                basis: Basis::Transferred,
                samples: 0,
            })
    }

    /// A measured or scaled prediction from `device`'s own runs of `kind`.
    fn on_device(
        e: &HashMap<Key, Entry>,
        kind: &str,
        bucket: u32,
        device: DeviceId,
    ) -> Option<Prediction> {
        if let Some(m) = e
            .get(&(kind.to_string(), bucket, device))
            .and_then(|x| x.median().map(|m| (m, x.samples.len())))
        {
            return Some(Prediction {
                ns: m.0 as f64,
                basis: Basis::Measured,
                samples: m.1,
            });
        }
        // Other sizes of the kind here: (bucket, log2 median).
        let mut pts: Vec<(f64, f64)> = e
            .iter()
            .filter(|(k, _)| k.0 == kind && k.2 == device)
            .filter_map(|(k, x)| Some((k.1 as f64, (x.median()?.max(1) as f64).log2())))
            .collect();
        if pts.is_empty() {
            return None;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let b = bucket as f64;
        // The exponent: a least-squares slope of log time over log bytes, kept to [0.5, 3]
        // (a task's time grows at least as the square root of its data and at most as its
        // cube); linear with one size.
        let slope = if pts.len() >= 2 {
            let n = pts.len() as f64;
            let (mx, my) = (
                pts.iter().map(|p| p.0).sum::<f64>() / n,
                pts.iter().map(|p| p.1).sum::<f64>() / n,
            );
            let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
            let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
            if sxx > 0.0 {
                (sxy / sxx).clamp(0.5, 3.0)
            } else {
                1.0
            }
        } else {
            1.0
        };
        let nearest = pts
            .iter()
            .min_by(|x, y| (x.0 - b).abs().total_cmp(&(y.0 - b).abs()))
            .copied()?;
        Some(Prediction {
            ns: (nearest.1 + slope * (b - nearest.0)).exp2(),
            basis: Basis::Scaled,
            samples: 0,
        })
    }

    /// `t(a) / t(b)` for tasks in general: the geometric mean over keys measured on both,
    /// else the ratio of their priors. The flag says whether it was learned.
    fn ratio_in(&self, e: &HashMap<Key, Entry>, a: DeviceId, b: DeviceId) -> (f64, bool) {
        if a == b {
            return (1.0, true);
        }
        let (mut sum, mut n) = (0.0, 0u32);
        for ((kind, bucket, d), x) in e.iter() {
            if *d != a {
                continue;
            }
            let other = e.get(&(kind.clone(), *bucket, b));
            if let (Some(ta), Some(tb)) = (x.median(), other.and_then(Entry::median)) {
                sum += (ta.max(1) as f64 / tb.max(1) as f64).ln();
                n += 1;
            }
        }
        if n > 0 {
            ((sum / n as f64).exp(), true)
        } else {
            (self.prior(a) / self.prior(b), false)
        }
    }

    /// How long a task takes on `a` relative to `b` in general (see [`PerfModel::predict`]).
    pub fn device_ratio(&self, a: DeviceId, b: DeviceId) -> f64 {
        let e = self.entries.lock();
        self.ratio_in(&e, a, b).0
    }

    /// Sets the share of the timed work explorations may cost (default
    /// [`EXPLORE_FRACTION`]; 0 never explores a device the priors rate slower).
    pub(crate) fn set_exploration_fraction(&mut self, fraction: f64) {
        self.explore_fraction = Some(fraction);
    }

    /// The share of the timed work explorations may cost.
    pub fn exploration_fraction(&self) -> f64 {
        self.explore_fraction.unwrap_or(EXPLORE_FRACTION)
    }

    /// Explorations allowed now: the budget left, in nanoseconds (may be negative).
    pub fn exploration_budget_ns(&self) -> f64 {
        self.exploration_fraction() * self.work_ns.load(Ordering::Relaxed) as f64
            - self.explore_ns.load(Ordering::Relaxed) as f64
    }

    /// Claims an exploration of `task` on `device` predicted to cost `cost_ns`, if the
    /// budget allows it with this key's back-off (each earlier probe of the key doubles the
    /// price). A `promising` first probe (the device is predicted to finish first) only
    /// needs a budget out of debt. On yes the predicted cost is debited.
    pub(crate) fn try_explore(
        &self,
        task: &str,
        bytes: u64,
        device: DeviceId,
        cost_ns: f64,
        promising: bool,
    ) -> Option<Exploration> {
        let mut e = self.entries.lock();
        let entry = e
            .entry((kind_of(task).to_string(), size_bucket(bytes), device))
            .or_default();
        let price = if promising && entry.probes == 0 {
            0.0
        } else {
            cost_ns.max(1.0) * f64::from(1u32 << entry.probes.min(20))
        };
        if price > self.exploration_budget_ns() {
            return None;
        }
        entry.probes += 1;
        let debited_ns = cost_ns.max(1.0) as u64;
        self.explore_ns.fetch_add(debited_ns, Ordering::Relaxed);
        if let Some(i) = self.devices.iter().position(|p| p.device == device) {
            self.explorations[i].fetch_add(1, Ordering::Relaxed);
        }
        Some(Exploration { debited_ns })
    }

    /// An exploration finished after `took` (None: it did not run): its debit becomes its
    /// real cost.
    pub(crate) fn explored(&self, x: Exploration, took: Option<Duration>) {
        let actual = took.map_or(0, |t| t.as_nanos() as u64);
        if actual >= x.debited_ns {
            self.explore_ns
                .fetch_add(actual - x.debited_ns, Ordering::Relaxed);
        } else {
            let back = x.debited_ns - actual;
            let _ = self
                .explore_ns
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(back))
                });
        }
    }

    /// Explorations placed on `device` in this process.
    pub fn explorations(&self, device: DeviceId) -> u64 {
        self.devices
            .iter()
            .position(|p| p.device == device)
            .map_or(0, |i| self.explorations[i].load(Ordering::Relaxed))
    }

    /// Samples set aside as outliers so far.
    pub fn rejected_outliers(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// What the model holds, per device.
    pub fn summary(&self) -> Vec<DeviceSummary> {
        let e = self.entries.lock();
        let devices: Vec<DeviceProfile> = if self.devices.is_empty() {
            let mut ids: Vec<DeviceId> = e.keys().map(|k| k.2).collect();
            ids.sort();
            ids.dedup();
            ids.into_iter().map(DeviceProfile::plain).collect()
        } else {
            self.devices.clone()
        };
        devices
            .iter()
            .map(|p| {
                let mine: Vec<(&Key, &Entry)> = e
                    .iter()
                    .filter(|(k, x)| k.2 == p.device && !x.samples.is_empty())
                    .collect();
                let mut kinds: Vec<&str> = mine.iter().map(|(k, _)| k.0.as_str()).collect();
                kinds.sort_unstable();
                kinds.dedup();
                let (ratio, learned) = self.ratio_in(&e, p.device, DeviceId::Cpu);
                DeviceSummary {
                    device: p.device,
                    identity: p.identity.clone(),
                    kinds: kinds.len(),
                    keys: mine.len(),
                    samples: mine.iter().map(|(_, x)| x.samples.len()).sum(),
                    ratio_to_cpu: ratio,
                    ratio_learned: learned,
                    explorations: self.explorations(p.device),
                }
            })
            .collect()
    }

    /// The model as stored: one section per device identity.
    fn to_file(&self) -> ModelFile {
        let e = self.entries.lock();
        let mut file = ModelFile::default();
        for ((kind, bucket, d), x) in e.iter() {
            if x.samples.is_empty() {
                continue;
            }
            let identity = self
                .profile(*d)
                .map_or_else(|| d.to_string(), |p| p.identity.clone());
            file.sections
                .entry(identity)
                .or_default()
                .push(StoredEntry {
                    kind: kind.clone(),
                    bucket: *bucket,
                    samples: x.samples.clone(),
                });
        }
        for v in file.sections.values_mut() {
            v.sort_by(|a, b| (&a.kind, a.bucket).cmp(&(&b.kind, b.bucket)));
        }
        file
    }

    /// Takes in the sections of `file` that name one of this model's devices (the others
    /// are never used: a model from another device must not place tasks here). Returns the
    /// number of entries taken.
    fn absorb(&self, file: &ModelFile) -> usize {
        let mut e = self.entries.lock();
        let mut n = 0;
        for (identity, list) in &file.sections {
            let device = if self.devices.is_empty() {
                store::parse_plain_device(identity)
            } else {
                self.devices
                    .iter()
                    .find(|p| &p.identity == identity)
                    .map(|p| p.device)
            };
            let Some(device) = device else { continue };
            for s in list {
                e.entry((s.kind.clone(), s.bucket, device))
                    .or_insert_with(|| Entry {
                        samples: s
                            .samples
                            .iter()
                            .rev()
                            .take(HISTORY)
                            .rev()
                            .copied()
                            .collect(),
                        ..Entry::default()
                    });
                n += 1;
            }
        }
        n
    }

    /// Writes the model to `path` (atomically: a reader sees the old file or the new one).
    /// Sections of devices this model does not know, already in the file, are kept.
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        // Cleared before the snapshot: a sample recorded while this save runs marks the
        // model dirty again, so a later save writes it.
        self.dirty.store(false, Ordering::Release);
        let mut file = self.to_file();
        if let Ok(Ok(old)) = std::fs::read_to_string(path).map(|t| store::parse(&t)) {
            file.merge_missing(old);
        }
        let written = store::write_atomic(path, &file);
        if written.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        written
    }

    /// Reads a model written by [`PerfModel::save`] for plain devices (`cpu`, `gpu0`: models
    /// built without a runtime). Err names what is wrong with the file.
    pub fn load(path: impl AsRef<Path>) -> std::io::Result<PerfModel> {
        let text = std::fs::read_to_string(path)?;
        let file = store::parse(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let model = PerfModel::default();
        model.absorb(&file);
        Ok(model)
    }

    /// Uses `path` as this model's store: reads it now (a missing file is an empty model; a
    /// corrupt, truncated or foreign one is a warning and ignored) and, unless `read_only`,
    /// writes it back at [`PerfModel::persist`].
    pub(crate) fn attach_store(&mut self, path: std::path::PathBuf, read_only: bool) {
        match std::fs::read_to_string(&path) {
            Ok(text) => match store::parse(&text) {
                Ok(file) => {
                    let n = self.absorb(&file);
                    tracing::debug!(path = %path.display(), entries = n, "performance model loaded");
                }
                Err(e) => tracing::warn!(
                    path = %path.display(), error = %e,
                    "ignoring an unreadable performance model file (it is rewritten when this runtime saves)"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the performance model; starting empty")
            }
        }
        self.store = Some(Store { path, read_only });
    }

    /// Where this model is stored, and whether it is read-only; None when not persisted.
    pub fn store_path(&self) -> Option<(&Path, bool)> {
        self.store.as_ref().map(|s| (s.path.as_path(), s.read_only))
    }

    /// Saves the model to its store if it changed since the last save and the last save is
    /// at least `min_interval` ago. Failures are warnings: a model that cannot be saved costs
    /// the next run its calibration, nothing else.
    pub(crate) fn persist(&self, min_interval: Duration) {
        let Some(store) = self.store.as_ref().filter(|s| !s.read_only) else {
            return;
        };
        if !self.dirty.load(Ordering::Acquire) {
            return;
        }
        {
            let mut last = self.last_save.lock();
            if last.is_some_and(|t| t.elapsed() < min_interval) {
                return;
            }
            *last = Some(crate::time::Instant::now());
        }
        if let Some(dir) = store.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match self.save(&store.path) {
            Ok(()) => tracing::debug!(path = %store.path.display(), "performance model saved"),
            Err(e) => {
                tracing::warn!(path = %store.path.display(), error = %e, "could not save the performance model")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn median_calibration_and_outliers() {
        let m = PerfModel::default();
        for _ in 0..2 {
            m.record("k", 1000, DeviceId::Cpu, ms(2));
        }
        assert_eq!(
            m.estimate("k", 1000, DeviceId::Cpu),
            None,
            "not calibrated yet"
        );
        assert_eq!(
            m.predict("k", 1000, DeviceId::Cpu).map(|p| p.basis),
            Some(Basis::Measured),
            "but predicted from its samples"
        );
        m.record("k", 1000, DeviceId::Cpu, ms(2));
        assert_eq!(m.estimate("k", 1000, DeviceId::Cpu), Some(ms(2)));
        // One huge run is set aside.
        m.record("k", 1000, DeviceId::Cpu, ms(500));
        assert_eq!(m.estimate("k", 1000, DeviceId::Cpu), Some(ms(2)));
        assert_eq!(m.rejected_outliers(), 1);
        // A lasting change is believed after OUTLIER_RUN samples.
        for _ in 0..OUTLIER_RUN {
            m.record("k", 1000, DeviceId::Cpu, ms(40));
        }
        assert_eq!(m.estimate("k", 1000, DeviceId::Cpu), Some(ms(40)));
        // Names with indices share their kind's history.
        assert_eq!(m.estimate("k(3, 4)", 1000, DeviceId::Cpu), Some(ms(40)));
        assert_eq!(kind_of("gemm[2][1]"), "gemm");
        // Sizes are bucketed by powers of two; other sizes are separate.
        assert_eq!(m.estimate("k", 1023, DeviceId::Cpu), Some(ms(40)));
        assert_eq!(m.estimate("k", 4096, DeviceId::Cpu), None);
    }

    #[test]
    fn unseen_sizes_are_scaled_from_seen_ones() {
        let m = PerfModel::default();
        // One size: linear in bytes.
        m.record("k", 1 << 10, DeviceId::Cpu, Duration::from_micros(100));
        let p = m.predict("k", 1 << 12, DeviceId::Cpu).unwrap();
        assert_eq!(p.basis, Basis::Scaled);
        assert!((p.ns / 400_000.0 - 1.0).abs() < 0.01, "{p:?}");
        // Two sizes of a cubic-in-side (t ~ bytes^1.5) kernel: the exponent is fitted.
        let g = PerfModel::default();
        g.record("gemm", 1 << 10, DeviceId::Cpu, Duration::from_micros(8));
        g.record("gemm", 1 << 12, DeviceId::Cpu, Duration::from_micros(64));
        let p = g.predict("gemm", 1 << 14, DeviceId::Cpu).unwrap();
        assert!((p.ns / 512_000.0 - 1.0).abs() < 0.01, "{p:?}");
        // Nothing known about a kind: nothing predicted.
        assert!(g.predict("other", 1 << 10, DeviceId::Cpu).is_none());
    }

    #[test]
    fn other_devices_transfer_through_the_learned_ratio_or_the_prior() {
        let gpu = DeviceProfile {
            device: DeviceId::Gpu(0),
            identity: "g".into(),
            shares_cpu_cores: true,
            prior: 32.0,
        };
        let m = PerfModel::new(vec![gpu, DeviceProfile::plain(DeviceId::Cpu)]);
        m.record("a", 64, DeviceId::Cpu, Duration::from_micros(10));
        // Before any kind is measured on both: the prior.
        let p = m.predict("a", 64, DeviceId::Gpu(0)).unwrap();
        assert_eq!(p.basis, Basis::Transferred);
        assert!((p.ns / 320_000.0 - 1.0).abs() < 0.01, "{p:?}");
        // `a` measured on the GPU 4x slower: `b`, known on the CPU only, is predicted 4x.
        m.record("a", 64, DeviceId::Gpu(0), Duration::from_micros(40));
        m.record("b", 64, DeviceId::Cpu, Duration::from_micros(100));
        let p = m.predict("b", 64, DeviceId::Gpu(0)).unwrap();
        assert!((p.ns / 400_000.0 - 1.0).abs() < 0.01, "{p:?}");
        assert!((m.device_ratio(DeviceId::Gpu(0), DeviceId::Cpu) - 4.0).abs() < 0.01);
        let s = m.summary();
        assert!(
            s[0].ratio_learned && s[0].kinds == 1 && s[1].kinds == 2,
            "{s:?}"
        );
    }

    #[test]
    fn explorations_are_paid_from_a_share_of_the_work_with_back_off() {
        let m = PerfModel::new(vec![
            DeviceProfile::plain(DeviceId::Gpu(0)),
            DeviceProfile::plain(DeviceId::Cpu),
        ]);
        let cost = 1_000_000.0; // 1 ms
        assert!(
            m.try_explore("k", 64, DeviceId::Gpu(0), cost, false)
                .is_none(),
            "no work yet"
        );
        // A promising first probe needs a budget out of debt only; one that did not run
        // gives its debit back.
        let p = m
            .try_explore("p", 64, DeviceId::Gpu(0), cost, true)
            .expect("promising");
        assert!(m.exploration_budget_ns() < 0.0);
        m.explored(p, None);
        assert_eq!(m.exploration_budget_ns(), 0.0);
        // 10 ms of work buys 1 ms of exploration.
        for _ in 0..10 {
            m.record("w", 64, DeviceId::Cpu, ms(1));
        }
        let x = m
            .try_explore("k", 64, DeviceId::Gpu(0), cost, false)
            .expect("budget");
        assert!(
            m.try_explore("k", 64, DeviceId::Gpu(0), cost, false)
                .is_none(),
            "spent"
        );
        // It really took 3 ms: the budget is 2 ms in debt; 50 ms more work pays it and
        // leaves 3 ms. The key's second probe costs double (2 ms: allowed, 1 ms debited),
        // its third 4 ms (more than the 2 ms left).
        m.explored(x, Some(ms(3)));
        assert!(m.exploration_budget_ns() < -1.9e6);
        for _ in 0..50 {
            m.record("w", 64, DeviceId::Cpu, ms(1));
        }
        assert!(m
            .try_explore("k", 64, DeviceId::Gpu(0), cost, false)
            .is_some());
        assert!(
            m.try_explore("k", 64, DeviceId::Gpu(0), cost, false)
                .is_none(),
            "4 ms > 1 ms left"
        );
        assert!(
            m.try_explore("j", 64, DeviceId::Gpu(0), cost, false)
                .is_some(),
            "a fresh key"
        );
        assert_eq!(m.explorations(DeviceId::Gpu(0)), 4);
    }

    #[test]
    fn save_and_load_round_trip() {
        let m = PerfModel::default();
        for d in [DeviceId::Cpu, DeviceId::Gpu(0)] {
            for i in 0..4 {
                m.record("gemm 64", 1 << 20, d, Duration::from_micros(100 + i));
            }
        }
        let path =
            std::env::temp_dir().join(format!("hetflow-perfmodel-test-{}.txt", std::process::id()));
        m.save(&path).unwrap();
        let l = PerfModel::load(&path).unwrap();
        for d in [DeviceId::Cpu, DeviceId::Gpu(0)] {
            assert_eq!(
                l.estimate("gemm 64", 1 << 20, d),
                m.estimate("gemm 64", 1 << 20, d)
            );
        }
        std::fs::write(&path, "broken line\n").unwrap();
        let err = PerfModel::load(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
