//! History-based performance model for dmda placement, as in StarPU: per (task kind, input
//! size bucket, device), the recent run times, summarised by their median. A task's kind is
//! its name up to the first `(` or `[` ([`kind_of`]): `gemm(3,2,1)` is a `gemm`.
//!
//! ## Outliers
//! One slow run (a page fault storm, a preempted worker) must not poison the model — a known
//! StarPU failure. A sample more than [`OUTLIER_FACTOR`] times away from the current median
//! (with at least [`MIN_SAMPLES`] samples) is set aside instead of recorded; only if
//! [`OUTLIER_RUN`] such samples arrive in a row is the change believed, and the history
//! restarts from them. The median itself also ignores isolated extremes.
//!
//! ## Calibration
//! A device with fewer than [`MIN_SAMPLES`] samples for a task is *uncalibrated*; dmda runs
//! the task there until it is, so every device gets measured.
//!
//! ## Persistence
//! [`PerfModel::save`] writes one line per entry (`name<TAB>size<TAB>device<TAB>ns,ns,...`);
//! [`PerfModel::load`] reads it back, so a second run starts calibrated.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;

use crate::device::DeviceId;

/// Samples needed before a device counts as calibrated for a task.
pub const MIN_SAMPLES: usize = 3;
/// How far (as a factor) from the median a sample must be to be an outlier.
pub const OUTLIER_FACTOR: f64 = 5.0;
/// Consecutive outliers after which they are believed.
pub const OUTLIER_RUN: usize = 3;
const HISTORY: usize = 16;

#[derive(Debug, Default, Clone)]
struct Entry {
    samples: Vec<u64>,
    pending_outliers: Vec<u64>,
    /// Calibration runs placed and not yet recorded.
    calibrating: usize,
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

/// The model: thread-safe, shared by a runtime's scheduler.
#[derive(Debug, Default)]
pub struct PerfModel {
    entries: Mutex<HashMap<Key, Entry>>,
    rejected: Mutex<u64>,
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

fn device_str(d: DeviceId) -> String {
    d.to_string()
}

fn parse_device(s: &str) -> Option<DeviceId> {
    if s == "cpu" {
        Some(DeviceId::Cpu)
    } else {
        s.strip_prefix("gpu")?.parse().ok().map(DeviceId::Gpu)
    }
}

impl PerfModel {
    /// Records one run of `task` with `bytes` of data on `device`.
    pub fn record(&self, task: &str, bytes: u64, device: DeviceId, took: Duration) {
        let key = (kind_of(task).to_string(), size_bucket(bytes), device);
        let accepted = {
            let mut e = self.entries.lock();
            let entry = e.entry(key).or_default();
            entry.calibrating = entry.calibrating.saturating_sub(1);
            entry.add(took.as_nanos() as u64)
        };
        if !accepted {
            *self.rejected.lock() += 1;
        }
    }

    /// The expected run time, if `device` is calibrated for `task` at this size.
    pub fn estimate(&self, task: &str, bytes: u64, device: DeviceId) -> Option<Duration> {
        let e = self.entries.lock();
        let entry = e.get(&(kind_of(task).to_string(), size_bucket(bytes), device))?;
        if entry.samples.len() < MIN_SAMPLES {
            return None;
        }
        entry.median().map(Duration::from_nanos)
    }

    /// Claims a calibration run of `task` on `device` if it still needs one (fewer than
    /// [`MIN_SAMPLES`] samples, counting runs already placed); true if claimed.
    pub fn claim_calibration(&self, task: &str, bytes: u64, device: DeviceId) -> bool {
        let mut e = self.entries.lock();
        let entry = e
            .entry((kind_of(task).to_string(), size_bucket(bytes), device))
            .or_default();
        if entry.samples.len() + entry.calibrating < MIN_SAMPLES {
            entry.calibrating += 1;
            true
        } else {
            false
        }
    }

    /// Samples set aside as outliers so far.
    pub fn rejected_outliers(&self) -> u64 {
        *self.rejected.lock()
    }

    /// Writes the model to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        let e = self.entries.lock();
        let mut keys: Vec<&Key> = e.keys().collect();
        keys.sort();
        for k in keys {
            let samples: Vec<String> = e[k].samples.iter().map(u64::to_string).collect();
            let name = k.0.replace(['\t', '\n'], " ");
            writeln!(
                f,
                "{name}\t{}\t{}\t{}",
                k.1,
                device_str(k.2),
                samples.join(",")
            )?;
        }
        f.flush()
    }

    /// Reads a model written by [`PerfModel::save`]; malformed lines are an error naming
    /// the line.
    pub fn load(path: impl AsRef<Path>) -> std::io::Result<PerfModel> {
        let text = std::fs::read_to_string(path)?;
        let model = PerfModel::default();
        {
            let mut e = model.entries.lock();
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let bad = || {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("performance model line {}: expected name<TAB>size<TAB>device<TAB>ns,..., got {line:?}", n + 1),
                    )
                };
                let parts: Vec<&str> = line.split('\t').collect();
                let [name, size, device, samples] = parts[..] else {
                    return Err(bad());
                };
                let size: u32 = size.parse().map_err(|_| bad())?;
                let device = parse_device(device).ok_or_else(bad)?;
                let samples: Vec<u64> = samples
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?;
                e.insert(
                    (name.to_string(), size, device),
                    Entry {
                        samples,
                        pending_outliers: Vec::new(),
                        calibrating: 0,
                    },
                );
            }
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_calibration_and_outliers() {
        let m = PerfModel::default();
        let ms = Duration::from_millis;
        for _ in 0..2 {
            m.record("k", 1000, DeviceId::Cpu, ms(2));
        }
        assert_eq!(
            m.estimate("k", 1000, DeviceId::Cpu),
            None,
            "not calibrated yet"
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
    fn save_and_load_round_trip() {
        let m = PerfModel::default();
        for d in [DeviceId::Cpu, DeviceId::Gpu(0)] {
            for i in 0..4 {
                m.record("gemm 64", 1 << 20, d, Duration::from_micros(100 + i));
            }
        }
        let path = std::env::temp_dir().join("hetflow-perfmodel-test.txt");
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
    }
}
