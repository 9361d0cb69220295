//! Where performance models live between runs, and their file format.
//!
//! ## Where
//! By default one file per host in the user's cache directory:
//! `$XDG_CACHE_HOME/hetflow/perfmodel-<host>.txt` (or `~/.cache/…`) on Linux and other Unix
//! systems, `~/Library/Caches/hetflow/…` on macOS, `%LOCALAPPDATA%\hetflow\…` on Windows;
//! nothing in the browser (a page that gives storage can save the model itself). Inside, one
//! section per device *identity* — host, CPU model or adapter name, vendor and device ids,
//! backend, driver and driver version ([`cpu_identity`], [`gpu_identity`]) — so a model
//! learned on one device or driver is never used for another: a driver update starts a new
//! section, and the old one stays for the day the old driver is back.
//!
//! `HETFLOW_PERF_MODEL` overrides the default: `off` (nothing read or written), `readonly`
//! (read, never written), or a file path. A runtime builder's explicit setting wins over the
//! variable (`RuntimeBuilder::perf_model_file`, `RuntimeBuilder::perf_model_persistence`).
//!
//! ## When
//! Read when a runtime is built; written when the runtime is dropped and, while it runs, when
//! it goes idle (`wait_idle`) at most once a second, if something was learned since.
//!
//! ## Format (version 1)
//! ```text
//! hetflow-perfmodel 1
//! [device <identity>]
//! <kind>\t<size bucket>\t<ns>,<ns>,...
//! ...
//! end <entries>
//! ```
//! The `end` line counts the entries above it: a file cut short anywhere is detected. A
//! file that does not parse (corrupt, truncated, another version, another program's) is a
//! warning and is ignored, never an error: the runtime starts uncalibrated and rewrites it.
//!
//! ## Two processes at once
//! A save writes a temporary file beside the target (named by process, thread and a counter)
//! and renames it over the target: rename is atomic, so a reader sees the old file or the
//! new one, never a mix, and two writers never interleave. Before writing, a save reads the
//! file and keeps every section and entry it does not hold itself (another device's, another
//! process's kinds); if two processes save in the same instant, one's new entries may be
//! overwritten by the other's file (last rename wins) — learning lost, never a corrupt file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::device::DeviceId;

const HEADER: &str = "hetflow-perfmodel 1";

/// One (kind, size bucket) of one device, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEntry {
    pub kind: String,
    pub bucket: u32,
    pub samples: Vec<u64>,
}

/// A model file: entries per device identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ModelFile {
    pub sections: BTreeMap<String, Vec<StoredEntry>>,
}

impl ModelFile {
    /// Adds what `old` holds and `self` does not: whole sections, and entries of shared
    /// sections under other (kind, bucket) keys.
    pub fn merge_missing(&mut self, old: ModelFile) {
        for (identity, entries) in old.sections {
            let mine = self.sections.entry(identity).or_default();
            for e in entries {
                if !mine
                    .iter()
                    .any(|m| m.kind == e.kind && m.bucket == e.bucket)
                {
                    mine.push(e);
                }
            }
            mine.sort_by(|a, b| (&a.kind, a.bucket).cmp(&(&b.kind, b.bucket)));
        }
    }

    fn entries(&self) -> usize {
        self.sections.values().map(Vec::len).sum()
    }
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r', ']'], " ")
}

/// The file's text.
pub(crate) fn render(file: &ModelFile) -> String {
    let mut out = String::new();
    out.push_str(HEADER);
    out.push('\n');
    for (identity, entries) in &file.sections {
        out.push_str(&format!("[device {}]\n", clean(identity)));
        for e in entries {
            let samples: Vec<String> = e.samples.iter().map(u64::to_string).collect();
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                clean(&e.kind),
                e.bucket,
                samples.join(",")
            ));
        }
    }
    out.push_str(&format!("end {}\n", file.entries()));
    out
}

/// Parses a model file; Err says what is wrong and on which line.
pub(crate) fn parse(text: &str) -> Result<ModelFile, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l.trim_end() == HEADER => {}
        Some((_, l)) => {
            return Err(format!(
                "line 1: expected {HEADER:?}, got {:?} (not a hetflow performance model of this version)",
                l.chars().take(60).collect::<String>()
            ))
        }
        None => return Err("line 1: the file is empty".into()),
    }
    let mut file = ModelFile::default();
    let mut section: Option<String> = None;
    for (n, line) in lines {
        let at = n + 1;
        if let Some(count) = line.strip_prefix("end ") {
            let count: usize = count
                .trim()
                .parse()
                .map_err(|_| format!("line {at}: bad entry count {count:?}"))?;
            if count != file.entries() {
                return Err(format!(
                    "line {at}: the file says {count} entries, {} were read",
                    file.entries()
                ));
            }
            return Ok(file);
        }
        if let Some(id) = line
            .strip_prefix("[device ")
            .and_then(|r| r.strip_suffix(']'))
        {
            file.sections.entry(id.to_string()).or_default();
            section = Some(id.to_string());
            continue;
        }
        let bad = || format!("line {at}: expected kind<TAB>size<TAB>ns,..., got {line:?}");
        let Some(id) = &section else {
            return Err(format!("line {at}: an entry before any [device …] line"));
        };
        let parts: Vec<&str> = line.split('\t').collect();
        let [kind, bucket, samples] = parts[..] else {
            return Err(bad());
        };
        let bucket: u32 = bucket.parse().map_err(|_| bad())?;
        if bucket > 64 {
            return Err(bad());
        }
        let samples: Vec<u64> = samples
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        if let Some(list) = file.sections.get_mut(id) {
            list.push(StoredEntry {
                kind: kind.to_string(),
                bucket,
                samples,
            });
        }
    }
    Err("the file ends before its `end` line (truncated)".into())
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `file` to `path` through a temporary file and a rename (module docs).
pub(crate) fn write_atomic(path: &Path, file: &ModelFile) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "perfmodel".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{:?}.{}.tmp",
        std::process::id(),
        std::thread::current().id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(render(file).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `cpu` or `gpuN`: the identities of models built without a runtime.
pub(crate) fn parse_plain_device(s: &str) -> Option<DeviceId> {
    if s == "cpu" {
        Some(DeviceId::Cpu)
    } else {
        s.strip_prefix("gpu")?.parse().ok().map(DeviceId::Gpu)
    }
}

/// This machine's name, for the default file name and the identities (read once per
/// process: every identity and the default path use it).
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(read_host_name).clone()
}

fn read_host_name() -> String {
    let from_file = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let name = from_file
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The CPU's model name (`/proc/cpuinfo` on Linux; the architecture elsewhere).
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The CPU's identity: host, model and logical cores.
pub fn cpu_identity(logical_cores: usize) -> String {
    clean(&format!(
        "cpu {} | {} | {} cores",
        host_name(),
        cpu_model_name(),
        logical_cores
    ))
}

/// A GPU's identity: host, adapter, ids, backend and driver.
pub fn gpu_identity(g: &crate::device::GpuInfo) -> String {
    clean(&format!(
        "gpu {} | {} | {:04x}:{:04x} | {} | {} {}",
        host_name(),
        g.name,
        g.vendor,
        g.device,
        g.backend,
        g.driver,
        g.driver_info
    ))
}

/// The user's cache directory, if the platform has one.
pub fn cache_dir() -> Option<PathBuf> {
    if cfg!(target_arch = "wasm32") {
        return None;
    }
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        return std::env::var_os("LOCALAPPDATA").map(PathBuf::from);
    }
    if cfg!(target_os = "macos") {
        return home().map(|h| h.join("Library").join("Caches"));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(".cache")))
}

/// The default model file of this host, if there is a cache directory.
pub fn default_path() -> Option<PathBuf> {
    cache_dir().map(|d| {
        d.join("hetflow")
            .join(format!("perfmodel-{}.txt", host_name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelFile {
        let mut f = ModelFile::default();
        f.sections.insert(
            "cpu h | X | 2 cores".into(),
            vec![StoredEntry {
                kind: "gemm".into(),
                bucket: 20,
                samples: vec![1, 2, 3],
            }],
        );
        f.sections.insert(
            "gpu h | lavapipe".into(),
            vec![StoredEntry {
                kind: "gemm".into(),
                bucket: 20,
                samples: vec![100],
            }],
        );
        f
    }

    #[test]
    fn round_trip_and_every_damage_detected() {
        let f = sample();
        let text = render(&f);
        assert_eq!(parse(&text).unwrap(), f);
        // Cut anywhere (but at the very end, past the last newline): an error, never a model.
        for cut in 0..text.len() - 1 {
            assert!(
                parse(&text[..cut]).is_err(),
                "cut at {cut}: {:?}",
                &text[..cut]
            );
        }
        assert!(parse("garbage\n").unwrap_err().contains("line 1"));
        let bad = text.replace("1,2,3", "1,x,3");
        assert!(parse(&bad).unwrap_err().contains("line 3"), "{bad}");
        let old = "gemm\t20\tcpu\t1,2,3\n";
        assert!(parse(old).is_err(), "the unversioned format is refused");
    }

    #[test]
    fn merge_keeps_what_the_writer_does_not_hold() {
        let mut mine = ModelFile::default();
        mine.sections.insert(
            "cpu h | X | 2 cores".into(),
            vec![StoredEntry {
                kind: "gemm".into(),
                bucket: 20,
                samples: vec![9],
            }],
        );
        let mut old = sample();
        old.sections
            .get_mut("cpu h | X | 2 cores")
            .unwrap()
            .push(StoredEntry {
                kind: "syrk".into(),
                bucket: 20,
                samples: vec![5],
            });
        mine.merge_missing(old);
        let cpu = &mine.sections["cpu h | X | 2 cores"];
        assert_eq!(cpu.len(), 2);
        assert_eq!(cpu[0].samples, vec![9], "the writer's own entry wins");
        assert!(mine.sections.contains_key("gpu h | lavapipe"));
    }

    #[test]
    fn cache_dir_follows_xdg() {
        if cfg!(any(windows, target_os = "macos")) {
            return;
        }
        // Read-only check of the rule on the current environment.
        let expect = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
        assert_eq!(cache_dir(), expect);
        let p = default_path();
        assert!(p.is_none_or(|p| p.to_string_lossy().contains("hetflow")));
    }
}
