//! Data-parallel SGD of a linear model over R replicas, ZeRO style: the worked use of remote
//! buffers, RTS variables and collectives.
//!
//! Every step, on each replica's device (WGSL on a GPU replica, loops on a CPU replica):
//! 1. the replica computes its part of the gradient of the mean squared error on its block
//!    of samples with the full weights (and its part of the loss);
//! 2. [`reduce_scatter`] (add) gives each replica its shard of the full gradient;
//! 3. the replica loads its shard of the momentum from the optimizer's remote buffer (an RTS
//!    variable), takes a momentum step on its shard of the weights ([`sharded_slice`]), and
//!    stores the momentum shard back;
//! 4. [`all_gather`] rebuilds the full weights on every replica.
//!
//! So the optimizer state exists once, split over replicas, and lives in streaming memory
//! between steps; only the weights are replicated. With one replica this is plain momentum
//! SGD; with R replicas the result is the same up to float summation order.

use crate::data::Array;

use super::buffer::RemoteBuffer;
use super::collective::{all_gather, reduce_scatter, sharded_slice, CollectiveOp, GatherAxis};
use super::error::RemoteError;
use super::replication::{Replicated, Replication};
use super::variable::{remote_replica_sharded_variable, RtsVariable};
use crate::device::{DeviceId, Kernel};
use crate::task::Uniform;

const SGD: &str = include_str!("../../shaders/linear_sgd.wgsl");

/// Samples of a linear model: `x` is `samples × features`, row-major; `y` has one target per
/// sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Number of features (the weights' length).
    pub features: usize,
    /// The inputs, row-major.
    pub x: Vec<f32>,
    /// The targets.
    pub y: Vec<f32>,
}

impl Dataset {
    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.y.len()
    }

    /// A deterministic synthetic problem: inputs uniform in [-1, 1), targets `x · w* + b`
    /// with `w*_j = (j mod 7) / 7 - 0.4` and a small deterministic perturbation `b`.
    pub fn synthetic(samples: usize, features: usize, seed: u64) -> Dataset {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let truth: Vec<f32> = (0..features).map(|j| (j % 7) as f32 / 7.0 - 0.4).collect();
        let x: Vec<f32> = (0..samples * features).map(|_| next()).collect();
        let y = x
            .chunks(features)
            .map(|row| row.iter().zip(&truth).map(|(a, b)| a * b).sum::<f32>() + 0.01 * next())
            .collect();
        Dataset { features, x, y }
    }
}

/// Hyper-parameters of momentum SGD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum coefficient.
    pub momentum: f32,
    /// Number of full-batch steps.
    pub steps: usize,
}

/// What training produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    /// The final weights.
    pub weights: Vec<f32>,
    /// The loss before each step (mean squared error over all samples).
    pub losses: Vec<f32>,
    /// The final momentum, read from its remote buffer.
    pub momentum: Vec<f32>,
}

/// One replica's samples and scratch arrays.
struct Block {
    x: Array<f32>,
    y: Array<f32>,
    resid: Array<f32>,
    grad: Array<f32>,
}

/// Per-step kernels, when some replica is on a GPU.
struct Kernels {
    residual: Kernel,
    gradient: Kernel,
    loss: Kernel,
    momentum: Kernel,
}

fn params(
    rows: usize,
    features: usize,
    n: usize,
    cfg: &LinearSgd,
    len: usize,
) -> Uniform<[u32; 8]> {
    Uniform([
        rows as u32,
        features as u32,
        (2.0 / n as f32).to_bits(),
        (1.0 / n as f32).to_bits(),
        cfg.lr.to_bits(),
        cfg.momentum.to_bits(),
        len as u32,
        0,
    ])
}

/// Trains `w` to minimise `(1/N) Σ (x_i · w - y_i)²` from `w = 0` with momentum SGD,
/// data-parallel over `rep`'s replicas (sample blocks split as evenly as possible), with the
/// momentum sharded in a remote buffer.
///
/// ```
/// use hetflow::remote::{sgd::{train_linear, Dataset, LinearSgd}, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let data = Dataset::synthetic(32, 5, 1);
/// let cfg = LinearSgd { lr: 0.1, momentum: 0.9, steps: 30 };
/// let t = train_linear(&Replication::new(&rt, 3).unwrap(), &data, &cfg).unwrap();
/// assert!(t.losses[29] < t.losses[0] / 10.0);
/// ```
pub fn train_linear(
    rep: &Replication,
    data: &Dataset,
    cfg: &LinearSgd,
) -> Result<Trained, RemoteError> {
    let (n, d, r_count) = (data.samples(), data.features, rep.factor());
    if data.x.len() != n * d {
        return Err(RemoteError::LengthMismatch {
            what: format!("dataset inputs ({n} samples × {d} features)"),
            expected: n * d,
            got: data.x.len(),
        });
    }
    if n < r_count {
        return Err(RemoteError::LengthMismatch {
            what: format!("samples for {r_count} replicas (at least one each)"),
            expected: r_count,
            got: n,
        });
    }
    let rt = rep.runtime();
    let kernels = if rep.devices().iter().any(|d| matches!(d, DeviceId::Gpu(_))) {
        Some(Kernels {
            residual: rt.kernel(SGD, "residual")?,
            gradient: rt.kernel(SGD, "gradient")?,
            loss: rt.kernel(SGD, "sq_loss")?,
            momentum: rt.kernel(SGD, "momentum")?,
        })
    } else {
        None
    };
    // Replica r's block of samples, and its scratch arrays.
    let blocks: Vec<Block> = (0..r_count)
        .map(|r| {
            let (lo, hi) = (r * n / r_count, (r + 1) * n / r_count);
            Block {
                x: rt.array_named(format!("x[{r}]"), data.x[lo * d..hi * d].to_vec()),
                y: rt.array_named(format!("y[{r}]"), data.y[lo..hi].to_vec()),
                resid: rt.array_named(format!("resid[{r}]"), vec![0.0f32; hi - lo]),
                grad: rt.array_named(format!("grad[{r}]"), vec![0.0f32; d]),
            }
        })
        .collect();
    // The optimizer state: the momentum, sharded over the replicas, in streaming memory.
    let s = rep.shard_len(d);
    let opt_buffer = RemoteBuffer::<f32>::replicated(rep, &[s], 1)?;
    let momentum: RtsVariable<f32> =
        remote_replica_sharded_variable(vec![0.0f32; d], &opt_buffer, 0)?;
    let mut w: Replicated<f32> = rep.replicated(vec![0.0f32; d]);
    let mut losses = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        // 1. Local gradients and losses.
        let mut step_losses = Vec::with_capacity(r_count);
        for (r, Block { x, y, resid, grad }) in blocks.iter().enumerate() {
            let rows = y.len();
            let loss = rt.array_named(format!("loss[{step}][{r}]"), vec![0.0f32]);
            let wr = w.replica(r).clone();
            let (xc, yc, wc, rc, gc, lc) = (
                x.clone(),
                y.clone(),
                wr.clone(),
                resid.clone(),
                grad.clone(),
                loss.clone(),
            );
            let mut b = rt
                .task(format!("sgd_gradient[{r}]"))
                .on(rep.placement(r))
                .reads(x)
                .reads(y)
                .reads(&wr)
                .writes(resid)
                .writes(grad)
                .writes(&loss)
                .cpu(move |cx| {
                    let (x, y, w) = (cx.read(&xc), cx.read(&yc), cx.read(&wc));
                    let res = cx.write(&rc);
                    for (i, e) in res.iter_mut().enumerate() {
                        let row = &x[i * d..(i + 1) * d];
                        *e = row.iter().zip(w).fold(0.0, |acc, (a, b)| acc + a * b) - y[i];
                    }
                    let g = cx.write(&gc);
                    for (j, gj) in g.iter_mut().enumerate() {
                        let acc = (0..rows).fold(0.0, |acc, i| acc + x[i * d + j] * res[i]);
                        *gj = 2.0 / n as f32 * acc;
                    }
                    cx.write(&lc)[0] = 1.0 / n as f32 * res.iter().fold(0.0, |a, e| a + e * e);
                });
            if let Some(k) = &kernels {
                let (xc, yc, wc, rc, gc, lc) = (
                    x.clone(),
                    y.clone(),
                    wr.clone(),
                    resid.clone(),
                    grad.clone(),
                    loss.clone(),
                );
                let (kr, kg, kl) = (k.residual.clone(), k.gradient.clone(), k.loss.clone());
                let u = params(rows, d, n, cfg, 0);
                b = b.gpu(move |cx| {
                    cx.dispatch_dyn(&kr, &[&u, &xc, &yc, &wc, &rc], kr.groups_for(rows));
                    cx.dispatch_dyn(&kg, &[&u, &xc, &rc, &gc], kg.groups_for(d));
                    cx.dispatch_dyn(&kl, &[&u, &rc, &lc], [1, 1, 1]);
                });
            }
            drop(b.spawn());
            step_losses.push(loss);
        }
        losses.push(step_losses);
        // 2. Each replica gets its shard of the full gradient.
        let grads = rep.per_replica(blocks.iter().map(|b| b.grad.clone()).collect())?;
        let g = reduce_scatter(&grads, CollectiveOp::Add)?;
        // 3. Momentum step on the shards, with the optimizer state streamed in and out.
        let m = momentum.load()?;
        let ws = sharded_slice(&w)?;
        for r in 0..r_count {
            let (gr, mr, wr) = (g.shard(r).clone(), m.shard(r).clone(), ws.shard(r).clone());
            let (lr, mu) = (cfg.lr, cfg.momentum);
            let mut b = rt
                .task(format!("sgd_momentum[{r}]"))
                .on(rep.placement(r))
                .reads(&gr)
                .read_write(&mr)
                .read_write(&wr)
                .cpu(move |cx| {
                    let g = cx.read(&gr);
                    let m = cx.write(&mr);
                    let w = cx.write(&wr);
                    for k in 0..m.len() {
                        m[k] = mu * m[k] + g[k];
                        w[k] -= lr * m[k];
                    }
                });
            if let Some(k) = &kernels {
                let km = k.momentum.clone();
                let (gr, mr, wr) = (g.shard(r).clone(), m.shard(r).clone(), ws.shard(r).clone());
                let u = params(0, d, n, cfg, s);
                b = b.gpu(move |cx| cx.dispatch_dyn(&km, &[&u, &gr, &mr, &wr], km.groups_for(s)));
            }
            drop(b.spawn());
        }
        opt_buffer.store_sharded(0, &m)?;
        // 4. Full weights on every replica for the next step.
        w = all_gather(&ws, GatherAxis::Concat)?;
    }
    let losses = losses
        .iter()
        .map(|parts| {
            parts
                .iter()
                .map(|a| a.to_vec().map(|v| v[0]))
                .sum::<Result<f32, _>>()
        })
        .collect::<Result<Vec<f32>, _>>()?;
    Ok(Trained {
        weights: w.to_vec(0)?,
        losses,
        momentum: momentum.get()?,
    })
}
