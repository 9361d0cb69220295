//! Recording what ran where and what moved, as Chrome trace JSON (opens in Perfetto).

use crate::time::Instant;
use std::fmt::Write as _;

use crate::data::{MemorySpace, MoveEvent};
use crate::device::DeviceId;

/// One task that ran.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    /// The task's name.
    pub name: String,
    /// Where it ran.
    pub device: DeviceId,
    /// The CPU worker that ran it (CPU tasks).
    pub worker: Option<usize>,
    /// CPU: body start. GPU: encoding start.
    pub start: Instant,
    /// CPU: body end. GPU: completion of its batch on the device.
    pub end: Instant,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Everything recorded between [`crate::RuntimeHandle::start_trace`] and
/// [`crate::RuntimeHandle::take_trace`].
#[derive(Debug, Clone)]
pub struct Trace {
    /// Time zero of the trace.
    pub origin: Instant,
    /// Every task that ran.
    pub tasks: Vec<TaskEvent>,
    /// Every copy between memory spaces.
    pub moves: Vec<MoveEvent>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn space(s: MemorySpace) -> String {
    s.to_string()
}

impl Trace {
    fn us(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_nanos() as f64 / 1000.0
    }

    /// Chrome trace event JSON: one complete ("X") event per task (process "tasks", one
    /// track per CPU worker and per GPU) and per move (process "moves", one track per link).
    pub fn to_chrome_json(&self) -> String {
        let mut ev: Vec<String> = Vec::new();
        let meta = |pid: u32, tid: u32, kind: &str, name: &str| {
            format!(
                r#"{{"name":"{kind}","ph":"M","pid":{pid},"tid":{tid},"args":{{"name":"{}"}}}}"#,
                escape(name)
            )
        };
        ev.push(meta(1, 0, "process_name", "tasks"));
        ev.push(meta(2, 0, "process_name", "moves"));
        let mut lanes: Vec<(u32, String)> = Vec::new();
        for t in &self.tasks {
            let (tid, lane) = match (t.device, t.worker) {
                (DeviceId::Cpu, Some(w)) => (w as u32, format!("cpu worker {w}")),
                (DeviceId::Cpu, None) => (999, "cpu".to_string()),
                (DeviceId::Gpu(i), _) => (1000 + i as u32, format!("gpu{i}")),
            };
            if !lanes.iter().any(|(l, _)| *l == tid) {
                lanes.push((tid, lane));
            }
            ev.push(format!(
                r#"{{"name":"{}","cat":"task","ph":"X","ts":{:.3},"dur":{:.3},"pid":1,"tid":{tid},"args":{{"device":"{}","ok":{}}}}}"#,
                escape(&t.name),
                self.us(t.start),
                self.us(t.end) - self.us(t.start),
                t.device,
                t.ok
            ));
        }
        let mut links: Vec<(MemorySpace, MemorySpace)> = Vec::new();
        for m in &self.moves {
            let tid = match links.iter().position(|l| *l == (m.from, m.to)) {
                Some(i) => i,
                None => {
                    links.push((m.from, m.to));
                    links.len() - 1
                }
            };
            ev.push(format!(
                r#"{{"name":"{} {}->{}","cat":"move","ph":"X","ts":{:.3},"dur":{:.3},"pid":2,"tid":{tid},"args":{{"bytes":{},"array":"{}"}}}}"#,
                escape(&m.array),
                space(m.from),
                space(m.to),
                self.us(m.start),
                self.us(m.end) - self.us(m.start),
                m.bytes,
                escape(&m.array)
            ));
        }
        for (tid, name) in lanes {
            ev.push(meta(1, tid, "thread_name", &name));
        }
        for (i, (from, to)) in links.iter().enumerate() {
            ev.push(meta(2, i as u32, "thread_name", &format!("{from} -> {to}")));
        }
        format!("{{\"traceEvents\":[\n{}\n]}}\n", ev.join(",\n"))
    }

    /// Writes [`Trace::to_chrome_json`] to `path`.
    pub fn write_chrome_json(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_chrome_json())
    }
}
