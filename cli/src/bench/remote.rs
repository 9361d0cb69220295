//! All-reduce bandwidth against a plain host sum measured in the same run (`hetflow bench
//! remote`).
//!
//! Each row all-reduces (add) R replicas' `n`-element f32 tensors whose copies are already on
//! the replicas' devices (a warm-up run moves them), and waits until every replica holds the
//! result on its device. The baseline sums the same R host vectors into one with a plain
//! loop. Bandwidth is the algorithm bandwidth: `n · 4` bytes of result per second per
//! replica (NCCL's "algbw"); the ratio is hetflow's time over the host sum's.

use std::time::{Duration, Instant};

use hetflow::device::DeviceId;
use hetflow::RuntimeHandle;

use hetflow::remote::{all_reduce, CollectiveOp, RemoteError, Replication};

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct AllReduceRow {
    /// Replication factor.
    pub replicas: usize,
    /// Where the replicas ran (`cpu`, `gpu0`, ...).
    pub device: String,
    /// Elements per replica.
    pub elems: usize,
    /// Median seconds of one hetflow all-reduce.
    pub hetflow_s: f64,
    /// Median seconds of one host sum of the same data.
    pub host_sum_s: f64,
}

impl AllReduceRow {
    /// hetflow's algorithm bandwidth, GB/s.
    pub fn hetflow_gbps(&self) -> f64 {
        self.elems as f64 * 4.0 / self.hetflow_s / 1e9
    }

    /// The host sum's bandwidth, GB/s.
    pub fn host_sum_gbps(&self) -> f64 {
        self.elems as f64 * 4.0 / self.host_sum_s / 1e9
    }

    /// hetflow time / host-sum time.
    pub fn ratio(&self) -> f64 {
        self.hetflow_s / self.host_sum_s
    }
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// Measures one configuration: `reps` timed runs after one warm-up, alternating hetflow and
/// the baseline.
pub fn measure(
    rt: &RuntimeHandle,
    devices: Vec<DeviceId>,
    elems: usize,
    reps: usize,
) -> Result<AllReduceRow, RemoteError> {
    let rep = Replication::on(rt, devices)?;
    let r_count = rep.factor();
    let host: Vec<Vec<f32>> = (0..r_count)
        .map(|r| (0..elems).map(|i| ((i + r) % 17) as f32).collect())
        .collect();
    let x = rep.per_replica(host.iter().map(|v| rt.array_from(v.clone())).collect())?;
    // Warm-up: moves the inputs to the replicas' devices and compiles the kernels.
    let check = all_reduce(&x, CollectiveOp::Add)?;
    let expect: f32 = (0..r_count).map(|r| (r % 17) as f32).sum();
    let got = check.to_vec(r_count - 1)?;
    if got.first() != Some(&expect) {
        return Err(RemoteError::WrongResult {
            what: format!("all-reduce of {r_count} replicas, element 0"),
            expected: expect.to_string(),
            got: format!("{:?}", got.first()),
        });
    }
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let mut sink = 0.0f32;
    for _ in 0..reps.max(1) {
        rt.wait_idle();
        let t = Instant::now();
        let y = all_reduce(&x, CollectiveOp::Add)?;
        rt.wait_idle();
        ours.push(t.elapsed());
        drop(y);
        let t = Instant::now();
        let mut out = host[0].clone();
        for v in &host[1..] {
            for (o, e) in out.iter_mut().zip(v) {
                *o += e;
            }
        }
        base.push(t.elapsed());
        sink += std::hint::black_box(out)[elems / 2];
    }
    std::hint::black_box(sink);
    Ok(AllReduceRow {
        replicas: r_count,
        device: rep.device(0).to_string(),
        elems,
        hetflow_s: median(ours),
        host_sum_s: median(base),
    })
}

/// The suite: R ∈ {2, 4, 8} on the CPU and R ∈ {2, 4} on GPU 0 (when there is one), for
/// 2^16, 2^20 and 2^22 elements (×`scale` repetitions of 5).
pub fn all_reduce_suite(
    rt: &RuntimeHandle,
    scale: usize,
    mut progress: impl FnMut(&str),
) -> Result<Vec<AllReduceRow>, RemoteError> {
    let reps = 5 * scale.max(1);
    let mut rows = Vec::new();
    let mut configs: Vec<(usize, DeviceId)> = [2, 4, 8].map(|r| (r, DeviceId::Cpu)).to_vec();
    if rt.gpu_count() > 0 {
        configs.extend([2, 4].map(|r| (r, DeviceId::Gpu(0))));
    }
    for (r, device) in configs {
        for elems in [1 << 16, 1 << 20, 1 << 22] {
            progress(&format!("all-reduce R={r} on {device}, {elems} elements"));
            rows.push(measure(rt, vec![device; r], elems, reps)?);
        }
    }
    Ok(rows)
}

/// A table of the rows.
pub fn all_reduce_table(rows: &[AllReduceRow]) -> String {
    let mut s = format!(
        "{:>3} {:>6} {:>9} | {:>11} {:>9} | {:>11} {:>9} | {:>9}\n",
        "R", "device", "elements", "hetflow ms", "GB/s", "host sum ms", "GB/s", "ratio"
    );
    for r in rows {
        s += &format!(
            "{:>3} {:>6} {:>9} | {:>11.3} {:>9.3} | {:>11.3} {:>9.3} | {:>8.1}x\n",
            r.replicas,
            r.device,
            r.elems,
            r.hetflow_s * 1e3,
            r.hetflow_gbps(),
            r.host_sum_s * 1e3,
            r.host_sum_gbps(),
            r.ratio()
        );
    }
    s
}
