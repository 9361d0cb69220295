//! One rank's part of the merged Chrome trace: its tasks, its moves between memory spaces
//! and its messages, as one process (`rank r`) per rank.

use super::comm::CommEvent;
use crate::task::Trace;

/// Lanes of a rank's process: task lanes keep the engine's thread ids (workers, 1000 + GPU),
/// moves are 2000 + link, messages 3000 (sends) and 3001 (receives).
const MOVES: u64 = 2000;
const SENDS: u64 = 3000;
const RECVS: u64 = 3001;

/// Comma-separated Chrome trace events of `rank` (no surrounding array).
pub(crate) fn rank_events(rank: usize, trace: &Trace, comm: &[CommEvent]) -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&trace.to_chrome_json()).unwrap_or(serde_json::Value::Null);
    let mut out: Vec<serde_json::Value> = Vec::new();
    out.push(serde_json::json!({
        "name": "process_name", "ph": "M", "pid": rank, "tid": 0,
        "args": {"name": format!("rank {rank}")}
    }));
    for mut e in doc["traceEvents"].as_array().cloned().unwrap_or_default() {
        if e["ph"] == "M" && e["name"] == "process_name" {
            continue;
        }
        let (pid, tid) = (
            e["pid"].as_u64().unwrap_or(1),
            e["tid"].as_u64().unwrap_or(0),
        );
        e["tid"] = (if pid == 2 { MOVES + tid } else { tid }).into();
        e["pid"] = rank.into();
        out.push(e);
    }
    let us =
        |t: std::time::Instant| t.saturating_duration_since(trace.origin).as_nanos() as f64 / 1e3;
    for (tid, name) in [(SENDS, "sends"), (RECVS, "receives")] {
        out.push(serde_json::json!({
            "name": "thread_name", "ph": "M", "pid": rank, "tid": tid, "args": {"name": name}
        }));
    }
    for c in comm {
        let (tid, dir) = if c.send { (SENDS, "->") } else { (RECVS, "<-") };
        out.push(serde_json::json!({
            "name": format!("{} {dir} {}", c.label, c.peer),
            "cat": "message", "ph": "X", "pid": rank, "tid": tid,
            "ts": us(c.start), "dur": us(c.end) - us(c.start),
            "args": {"bytes": c.bytes, "peer": c.peer}
        }));
    }
    out.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
