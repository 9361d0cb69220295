//! Running a compiled network: the phase loop, run control (blocking and non-blocking runs,
//! pause, wait, stop) and host access to Vars between runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::compiler::{compile, Compiled};
use super::gpu::GpuExec;
use super::model::{Cx, Phase, Pool, ProcessModel, Srcs, VarIx, VarsView, Wiring};
use super::par::{Job, Par};
use super::process::PortKind;
use super::process::Process;
use super::{Data, NeuroError, RunCfg};
use crate::RuntimeHandle;

/// Run for a number of time steps (Lava's `RunSteps`); blocking unless
/// [`non_blocking`](RunSteps::non_blocking) is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSteps(pub u64);

impl RunSteps {
    /// The same number of steps, returning at once; use `wait`, `pause` or `stop` after.
    pub fn non_blocking(self) -> RunCondition {
        RunCondition {
            steps: self.0,
            blocking: false,
        }
    }
}

/// How long a run lasts and whether `run` waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCondition {
    /// Number of time steps.
    pub steps: u64,
    /// Whether `run` returns only at the end.
    pub blocking: bool,
}

impl From<RunSteps> for RunCondition {
    fn from(r: RunSteps) -> RunCondition {
        RunCondition {
            steps: r.0,
            blocking: true,
        }
    }
}

pub(crate) struct Exec {
    names: Vec<String>,
    models: Vec<Box<dyn ProcessModel>>,
    vars: Vec<Vec<Data>>,
    outs: Vec<Vec<Data>>,
    wiring: Wiring,
    time_step: u64,
    changed: Vec<(usize, usize)>,
    /// The spike order cut into waves: a process of wave k receives only from processes
    /// of earlier waves or from early senders, so the processes of one wave may run at once.
    waves: Vec<Vec<usize>>,
    /// Per leaf: whether its model sends every OutPort in the early half.
    early: Vec<bool>,
    /// Per leaf: its `run_spk` time, nanoseconds (a moving average of the steps so far):
    /// the run's estimate of its work.
    cost_ns: Vec<f64>,
    /// The CPU workers (None: one worker; everything runs on the run's thread).
    par: Option<Par>,
    /// Per leaf, in a mixed network: whether it runs on the GPU (its CPU model is skipped).
    on_gpu: Vec<bool>,
    /// Per early sender: the scratch OutPorts its `run_spk` writes into (kept between
    /// steps so a step allocates nothing).
    scratch: Vec<Vec<Data>>,
    /// Whether this step uses the workers, from measured step times.
    adapt: Adapt,
}

/// Chooses between the workers and the run's thread alone by measuring both: in every
/// cycle of [`Adapt::CYCLE`] steps, [`Adapt::PROBE`] steps run alone, as many use the
/// workers, and the rest go the faster way. A busy machine (the OS preempting a worker that
/// holds a part stalls the whole step) then costs at most the probe steps, and a quiet one
/// keeps the speed-up. The numbers do not depend on the choice.
#[derive(Default)]
struct Adapt {
    step: u64,
    alone_ns: f64,
    workers_ns: f64,
    use_workers: bool,
    started: Option<crate::time::Instant>,
}

impl Adapt {
    const CYCLE: u64 = 256;
    const PROBE: u64 = 8;

    fn parallel(&self) -> bool {
        match self.step % Self::CYCLE {
            k if k < Self::PROBE => false,
            k if k < 2 * Self::PROBE => true,
            _ => self.use_workers,
        }
    }

    fn begin(&mut self) {
        self.started = Some(crate::time::Instant::now());
    }

    fn end(&mut self) {
        let Some(t0) = self.started.take() else {
            return;
        };
        let dt = t0.elapsed().as_nanos() as f64;
        let k = self.step % Self::CYCLE;
        if k < Self::PROBE {
            self.alone_ns = if k == 0 { dt } else { self.alone_ns + dt };
        } else if k < 2 * Self::PROBE {
            self.workers_ns = if k == Self::PROBE {
                dt
            } else {
                self.workers_ns + dt
            };
            if k == 2 * Self::PROBE - 1 {
                self.use_workers = self.workers_ns < self.alone_ns;
                tracing::debug!(
                    alone_ns = self.alone_ns,
                    workers_ns = self.workers_ns,
                    use_workers = self.use_workers,
                    "neuro: measured the workers against the run's thread"
                );
            }
        }
        self.step += 1;
    }
}

/// A wave runs its processes at once (on the helpers) only when the ones that would leave
/// the run's thread took at least this long (ns) in the recent steps: handing one over
/// and joining it costs a few µs, more than a small process's whole step.
const PARALLEL_WAVE_MIN_NS: f64 = 20_000.0;

/// Weight of the newest step in the moving average of [`Exec::cost_ns`].
const COST_EMA: f64 = 0.2;

/// The waves of `order` (see [`Exec::waves`]).
fn waves(order: &[usize], wiring: &Wiring, early: &[bool]) -> Vec<Vec<usize>> {
    let mut level = vec![0usize; order.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for &b in order {
        let lv = wiring.in_srcs[b]
            .iter()
            .flatten()
            .filter(|&&(a, _)| !early[a] && a != b)
            .map(|&(a, _)| level[a] + 1)
            .max()
            .unwrap_or(0);
        level[b] = lv;
        if waves.len() <= lv {
            waves.resize_with(lv + 1, Vec::new);
        }
        waves[lv].push(b);
    }
    waves
}

enum Request {
    Pre,
    Lrn,
    Post,
    Done,
}

fn fail(name: &str, time_step: u64, phase: Phase, e: NeuroError) -> NeuroError {
    NeuroError::ModelFailed {
        process: name.to_string(),
        time_step,
        phase: phase.name(),
        reason: e.to_string(),
    }
}

impl Exec {
    /// Runs one phase of leaf `l` alone, seeing every leaf's Vars (management phases,
    /// learning, and the host processes of a GPU network).
    fn call(
        &mut self,
        l: usize,
        phase: Phase,
        f: impl FnOnce(&mut dyn ProcessModel, &mut Cx<'_>) -> Result<(), NeuroError>,
    ) -> Result<(), NeuroError> {
        let Exec {
            models,
            vars,
            outs,
            wiring,
            time_step,
            par,
            adapt,
            names,
            ..
        } = self;
        let mut own = std::mem::take(&mut outs[l]);
        let r = {
            let mut cx = Cx {
                time_step: *time_step,
                phase,
                me: l,
                vars: VarsView::All(vars),
                outs: &mut own,
                srcs: Srcs::All(outs),
                wiring,
                pool: Pool::new(par.as_ref(), adapt.parallel()),
            };
            f(models[l].as_mut(), &mut cx)
        };
        outs[l] = own;
        r.map_err(|e| fail(&names[l], *time_step, phase, e))
    }

    /// The early half of SPK: every model's `run_spk_early`, seeing only its own Vars and
    /// OutPorts (sends of what it computed before).
    fn spk_early(&mut self) -> Result<(), NeuroError> {
        let Exec {
            models,
            vars,
            outs,
            wiring,
            time_step,
            par,
            adapt,
            names,
            on_gpu,
            ..
        } = self;
        for (l, ((m, v), o)) in models.iter_mut().zip(vars).zip(outs).enumerate() {
            if on_gpu[l] {
                continue;
            }
            let mut cx = Cx {
                time_step: *time_step,
                phase: Phase::Spk,
                me: l,
                vars: VarsView::Own(v),
                outs: o,
                srcs: Srcs::Some(&[]),
                wiring,
                pool: Pool::new(par.as_ref(), adapt.parallel()),
            };
            m.run_spk_early(&mut cx)
                .map_err(|e| fail(&names[l], *time_step, Phase::Spk, e))?;
        }
        Ok(())
    }

    /// The main half of SPK for leaf `l` alone (no allocation): its own OutPorts are taken
    /// out for it (an early sender gets its scratch set instead, see [`Exec::spk_wave`]),
    /// every other leaf's are readable.
    fn spk_one(&mut self, l: usize) -> Result<(), NeuroError> {
        let Exec {
            models,
            vars,
            outs,
            wiring,
            time_step,
            par,
            adapt,
            names,
            early,
            cost_ns,
            scratch,
            ..
        } = self;
        let early = early[l];
        let mut own = if early {
            let s = &mut scratch[l];
            if s.len() != outs[l].len() {
                *s = vec![Data::F64(Vec::new()); outs[l].len()];
            }
            std::mem::take(s)
        } else {
            std::mem::take(&mut outs[l])
        };
        let t0 = crate::time::Instant::now();
        let r = {
            let mut cx = Cx {
                time_step: *time_step,
                phase: Phase::Spk,
                me: l,
                vars: VarsView::Own(&mut vars[l]),
                outs: &mut own,
                srcs: Srcs::All(outs),
                wiring,
                pool: Pool::new(par.as_ref(), adapt.parallel()),
            };
            models[l].run_spk(&mut cx)
        };
        if early {
            for (slot, d) in outs[l].iter_mut().zip(own.iter_mut()) {
                if !d.is_empty() {
                    *slot = std::mem::replace(d, Data::F64(Vec::new()));
                }
            }
            scratch[l] = own;
        } else {
            outs[l] = own;
        }
        let dt = t0.elapsed().as_nanos() as f64;
        let c = &mut cost_ns[l];
        *c = if *c == 0.0 {
            dt
        } else {
            *c + COST_EMA * (dt - *c)
        };
        r.map_err(|e| fail(&names[l], *time_step, Phase::Spk, e))
    }

    /// The main half of SPK for wave `w`: its processes run at once (tasks on the CPU
    /// workers) when the wave is large enough, else one after the other in spike order.
    /// A process of the wave writes its own Vars and OutPorts and reads the OutPorts of
    /// other processes, none of which is written during the wave: senders that are not
    /// early belong to earlier waves, and an early sender's `run_spk` writes into a scratch
    /// copy of its OutPorts that replaces them only after the wave.
    fn spk_wave(&mut self, w: usize) -> Result<(), NeuroError> {
        // Parallel when the processes other than the heaviest are worth their tasks.
        let (mut count, mut sum, mut max) = (0usize, 0.0f64, 0.0f64);
        for &l in self.waves[w].iter().filter(|&&l| !self.on_gpu[l]) {
            count += 1;
            sum += self.cost_ns[l];
            max = max.max(self.cost_ns[l]);
        }
        let parallel = self.par.is_some()
            && self.adapt.parallel()
            && count > 1
            && sum - max >= PARALLEL_WAVE_MIN_NS;
        if !parallel {
            // In spike order, one after the other, as the sequential protocol.
            for k in 0..self.waves[w].len() {
                let l = self.waves[w][k];
                if !self.on_gpu[l] {
                    self.spk_one(l)?;
                }
            }
            return Ok(());
        }
        let Exec {
            models,
            vars,
            outs,
            wiring,
            time_step,
            par,
            adapt,
            names,
            waves,
            early,
            cost_ns,
            on_gpu,
            ..
        } = self;
        let wave: Vec<usize> = waves[w].iter().copied().filter(|&l| !on_gpu[l]).collect();
        let wave = &wave;
        let mut by_cost: Vec<usize> = wave.clone();
        by_cost.sort_by(|&a, &b| cost_ns[a].total_cmp(&cost_ns[b]));
        let n = models.len();
        let mut member = vec![false; n];
        for &l in wave {
            member[l] = true;
        }
        let mut scratch: Vec<(usize, Vec<Data>)> = wave
            .iter()
            .filter(|&&l| early[l])
            .map(|&l| (l, vec![Data::F64(Vec::new()); outs[l].len()]))
            .collect();
        let r = {
            let mut srcs: Vec<Option<&Vec<Data>>> = vec![None; n];
            let mut own: Vec<Option<&mut Vec<Data>>> = (0..n).map(|_| None).collect();
            for (l, o) in outs.iter_mut().enumerate() {
                if member[l] && !early[l] {
                    own[l] = Some(o);
                } else {
                    srcs[l] = Some(o);
                }
            }
            for (l, s) in scratch.iter_mut() {
                own[*l] = Some(s);
            }
            let t = *time_step;
            let par = par.as_ref().filter(|_| adapt.parallel());
            let srcs = Srcs::Some(&srcs);
            let wiring = &*wiring;
            let mut jobs: Vec<Option<Job<'_>>> = (0..n).map(|_| None).collect();
            for (l, (((m, v), o), cost)) in models
                .iter_mut()
                .zip(vars.iter_mut())
                .zip(own)
                .zip(cost_ns.iter_mut())
                .enumerate()
            {
                let Some(o) = o else { continue };
                let name = &names[l];
                jobs[l] = Some(Box::new(move || {
                    let t0 = crate::time::Instant::now();
                    let mut cx = Cx {
                        time_step: t,
                        phase: Phase::Spk,
                        me: l,
                        vars: VarsView::Own(v),
                        outs: o,
                        srcs,
                        wiring,
                        pool: Pool::new(par, true),
                    };
                    let r = m.run_spk(&mut cx).map_err(|e| fail(name, t, Phase::Spk, e));
                    let dt = t0.elapsed().as_nanos() as f64;
                    *cost = if *cost == 0.0 {
                        dt
                    } else {
                        *cost + COST_EMA * (dt - *cost)
                    };
                    r
                }));
            }
            match par {
                // The heaviest runs on this thread (last), the others on the helpers.
                Some(p) => p.run(by_cost.iter().filter_map(|&l| jobs[l].take()).collect()),
                None => wave
                    .iter()
                    .try_for_each(|&l| jobs[l].take().map_or(Ok(()), |j| j())),
            }
        };
        for (l, s) in scratch {
            for (slot, d) in outs[l].iter_mut().zip(s) {
                if !d.is_empty() {
                    *slot = d;
                }
            }
        }
        r
    }

    /// One time step: SPK, then the management and learning phases the guards ask for.
    fn step(&mut self) -> Result<(), NeuroError> {
        for (l, v) in std::mem::take(&mut self.changed) {
            self.models[l].var_set(VarIx(v));
        }
        self.time_step += 1;
        let t = self.time_step;
        let n = self.models.len();
        self.adapt.begin();
        self.spk_early()?;
        for w in 0..self.waves.len() {
            self.spk_wave(w)?;
        }
        self.adapt.end();
        let all: Vec<usize> = (0..n).collect();
        self.mgmt(&all, t)
    }

    /// The management and learning phases of step `t` for `leaves`, as their guards ask.
    fn mgmt(&mut self, leaves: &[usize], t: u64) -> Result<(), NeuroError> {
        let (mut pre, mut lrn, mut post) = (false, false, false);
        for &l in leaves {
            let m = &self.models[l];
            let req = if m.lrn_guard(t) && m.pre_guard(t) {
                Request::Pre
            } else if m.lrn_guard(t) {
                Request::Lrn
            } else if m.post_guard(t) {
                Request::Post
            } else {
                Request::Done
            };
            match req {
                Request::Pre => pre = true,
                Request::Lrn => lrn = true,
                Request::Post => post = true,
                Request::Done => {}
            }
        }
        if pre {
            for &l in leaves {
                if self.models[l].pre_guard(t) {
                    self.call(l, Phase::PreMgmt, |m, cx| m.run_pre_mgmt(cx))?;
                }
                lrn |= self.models[l].lrn_guard(t);
            }
        }
        if lrn {
            for &l in leaves {
                if self.models[l].lrn_guard(t) {
                    self.call(l, Phase::Lrn, |m, cx| m.run_lrn(cx))?;
                }
                post |= self.models[l].post_guard(t);
            }
        }
        if post {
            for &l in leaves {
                if self.models[l].post_guard(t) {
                    self.call(l, Phase::PostMgmt, |m, cx| m.run_post_mgmt(cx))?;
                }
            }
        }
        Ok(())
    }

    /// One time step of a mixed network (processes on the CPU and on the GPU): the same
    /// phase order, with the GPU processes' part of each phase as a GPU task, and each
    /// message that crosses between host and device moved once, just before its first
    /// reader of the step runs.
    async fn mixed_step(&mut self, g: &GpuExec) -> Result<(), NeuroError> {
        for (l, v) in std::mem::take(&mut self.changed) {
            self.models[l].var_set(VarIx(v));
        }
        self.time_step += 1;
        let t = self.time_step;
        let n = self.models.len();
        self.adapt.begin();
        self.spk_early()?;
        g.step_ops(t, std::slice::from_ref(&g.early_ops())).await?;
        let mut moved = vec![Vec::<usize>::new(); n];
        for w in 0..self.waves.len() {
            let wave = self.waves[w].clone();
            // Host readers of device messages: download them.
            for &b in wave.iter().filter(|&&b| !self.on_gpu[b]) {
                for &(a, o) in self.wiring.in_srcs[b].iter().flatten() {
                    if self.on_gpu[a] && !moved[a].contains(&o) {
                        let len = self.outs[a][o].len();
                        self.outs[a][o] = g.download_out(a, o, len).await?;
                        moved[a].push(o);
                    }
                }
            }
            self.spk_wave(w)?;
            // Device readers of host messages: upload them, then the wave's GPU part.
            let on_device: Vec<usize> = wave.iter().copied().filter(|&b| self.on_gpu[b]).collect();
            for &b in &on_device {
                for &(a, o) in self.wiring.in_srcs[b].iter().flatten() {
                    if !self.on_gpu[a] && !moved[a].contains(&o) {
                        g.upload_out(a, o, &self.outs[a][o]).await?;
                        moved[a].push(o);
                    }
                }
            }
            let ranges: Vec<_> = on_device.iter().map(|&b| g.leaf_ops(b)).collect();
            g.step_ops(t, &ranges).await?;
        }
        self.adapt.end();
        let host: Vec<usize> = (0..n).filter(|&l| !self.on_gpu[l]).collect();
        if self.host_wants(&host, t) {
            // RefPorts of host processes into device Vars: fetch, run, write back.
            let targets: Vec<(usize, usize)> = host
                .iter()
                .flat_map(|&l| self.wiring.refs[l].iter().flatten().copied())
                .filter(|&(tl, _)| self.on_gpu[tl])
                .collect();
            self.mgmt_on_device_vars(&host, t, g, &targets).await?;
        }
        g.step_ops(t, std::slice::from_ref(&g.post_ops())).await
    }
}

impl Exec {
    /// Whether a host model asks for a management or learning phase at step `t`.
    fn host_wants(&self, host: &[usize], t: u64) -> bool {
        host.iter().any(|&l| {
            let m = &self.models[l];
            m.pre_guard(t) || m.lrn_guard(t) || m.post_guard(t)
        })
    }

    /// Step `t` for the host models of a GPU network: their SPK, then (when `gpu` is given,
    /// the step's sync point) the Vars their RefPorts reach are fetched from the device,
    /// the phases the guards ask for run, and the Vars go back to the device.
    async fn host_step(
        &mut self,
        host: &[usize],
        t: u64,
        gpu: Option<&GpuExec>,
    ) -> Result<(), NeuroError> {
        self.time_step = t;
        for &l in host {
            self.call(l, Phase::Spk, |m, cx| m.run_spk_early(cx))?;
            self.call(l, Phase::Spk, |m, cx| m.run_spk(cx))?;
        }
        let Some(gpu) = gpu else {
            return Ok(());
        };
        let targets: Vec<(usize, usize)> = host
            .iter()
            .flat_map(|&l| self.wiring.refs[l].iter().flatten().copied())
            .collect();
        self.mgmt_on_device_vars(host, t, gpu, &targets).await
    }

    /// The management phases of `host` at step `t` (see [`Exec::mgmt`]), the device Vars
    /// their RefPorts reach (`targets`) fetched before and written back after.
    async fn mgmt_on_device_vars(
        &mut self,
        host: &[usize],
        t: u64,
        g: &GpuExec,
        targets: &[(usize, usize)],
    ) -> Result<(), NeuroError> {
        for &(tl, tv) in targets {
            let len = self.vars[tl][tv].len();
            if let Some(read) = g.get(tl, tv, len) {
                self.vars[tl][tv] = read.await?;
            }
        }
        self.mgmt(host, t)?;
        for &(tl, tv) in targets {
            if let Some(write) = g.set(tl, tv, &self.vars[tl][tv]) {
                write.await?;
            }
        }
        Ok(())
    }
}

/// Where [`super::NeuroBackend::Auto`] runs a compiled network, and why.
fn auto_backend(c: &Compiled, rt: &RuntimeHandle) -> (super::NeuroBackend, &'static str) {
    if !GpuExec::supports(c) {
        return (
            super::NeuroBackend::Cpu,
            "a process of the network has no GPU model",
        );
    }
    let hardware = rt
        .topology()
        .gpus
        .first()
        .is_some_and(|g| !g.device_type.shares_cpu_cores());
    if !hardware {
        return (
            super::NeuroBackend::Cpu,
            "no hardware GPU (none, or a software rasterizer)",
        );
    }
    (
        super::NeuroBackend::Gpu,
        "hardware GPU and a GPU model for every process",
    )
}

/// The compiled network shared by every handle of a [`super::Network`].
pub(crate) struct ExecShared {
    state: Mutex<Exec>,
    running: AtomicBool,
    /// The last completed time step, readable while a run holds `state`.
    steps_done: AtomicU64,
    pause_requested: AtomicBool,
    stopped: AtomicBool,
    thread: Mutex<Option<JoinHandle<Result<(), NeuroError>>>>,
    leaf_of: Vec<Option<usize>>,
    leaf_procs: Vec<usize>,
    tag: Option<String>,
    backend: super::NeuroBackend,
    description: String,
    gpu: Option<Mutex<GpuExec>>,
    /// Whether processes run on both the CPU and the GPU (each step: [`Exec::mixed_step`]).
    mixed: bool,
    /// The runtime the network made for itself when the configuration gave none (kept
    /// alive as long as the network; dropped after `state`, which only holds a handle).
    _own_runtime: Option<crate::Runtime>,
}

impl ExecShared {
    fn new(mut c: Compiled, cfg: &RunCfg) -> Result<ExecShared, NeuroError> {
        let (rt, own_runtime) = match &cfg.runtime {
            Some(rt) => (rt.clone(), None),
            None if cfg.backend == super::NeuroBackend::Cpu
                && cfg.pins.iter().all(|p| p.1 == crate::DeviceId::Cpu) =>
            {
                let own = crate::Runtime::builder()
                    .no_gpu()
                    .build()
                    .map_err(|e| NeuroError::Runtime(Arc::new(e)))?;
                (own.handle(), Some(own))
            }
            None => return Err(NeuroError::NoRuntime),
        };
        let resolved = match cfg.backend {
            super::NeuroBackend::Auto => {
                let (backend, why) = auto_backend(&c, &rt);
                tracing::info!(?backend, why, "neuro: the runtime placed the network");
                c.description += &format!("placed by the runtime: {backend:?} ({why})\n");
                backend
            }
            b => b,
        };
        // Per leaf: on the CPU? The back end's choice, then the user's pins.
        let mut on_cpu = vec![resolved != super::NeuroBackend::Gpu; c.names.len()];
        for (name, device) in &cfg.pins {
            let l = c
                .names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| NeuroError::NotFound {
                    kind: "process",
                    name: name.clone(),
                    owner: "the compiled network (RunCfg::pin)".into(),
                })?;
            on_cpu[l] = *device == crate::DeviceId::Cpu;
        }
        let messages = |l: usize| {
            c.ports[l]
                .iter()
                .any(|(_, k)| matches!(k, PortKind::In | PortKind::Out))
        };
        let mixed = on_cpu.contains(&false) && (0..c.names.len()).any(|l| on_cpu[l] && messages(l));
        if !cfg.pins.is_empty() {
            let placed: Vec<String> = c
                .names
                .iter()
                .zip(&on_cpu)
                .map(|(n, &cpu)| format!("{n} {}", if cpu { "CPU" } else { "GPU 0" }))
                .collect();
            c.description += &format!("placement: {}\n", placed.join(", "));
        }
        let gpu = match on_cpu.contains(&false) {
            false => None,
            true => {
                let names: Vec<String> = c.models.iter().map(|m| m.name().to_string()).collect();
                let fixed = names.iter().any(|n| n.ends_with("BitAcc"));
                if fixed && names.iter().any(|n| n.ends_with("Float")) {
                    return Err(NeuroError::GpuUnsupported(
                        "a network mixing floating-point and fixed-point models cannot run on the GPU".into(),
                    ));
                }
                // Without pins a GPU network keeps its RefPort-only CPU processes on the host.
                let host = if mixed {
                    on_cpu.clone()
                } else {
                    vec![false; on_cpu.len()]
                };
                let g = GpuExec::new(&mut c, &names, fixed, &rt, &host)?;
                c.description += &format!("GPU element type: {:?}\n", g.elem());
                Some(Mutex::new(g))
            }
        };
        c.description += &format!(
            "back end: {resolved:?}{}\n",
            if mixed {
                " (mixed: processes on the CPU and the GPU)"
            } else {
                ""
            }
        );
        let early: Vec<bool> = c.models.iter().map(|m| m.sends_early()).collect();
        let waves = waves(&c.order, &c.wiring, &early);
        let n_leaves = c.models.len();
        let par = Par::new(&rt);
        c.description += &format!(
            "spike waves: {}\n",
            waves
                .iter()
                .map(|w| {
                    let names: Vec<&str> = w.iter().map(|&l| c.names[l].as_str()).collect();
                    format!("[{}]", names.join(", "))
                })
                .collect::<Vec<_>>()
                .join(" -> ")
        );
        Ok(ExecShared {
            gpu,
            mixed,
            _own_runtime: own_runtime,
            backend: cfg.backend,
            state: Mutex::new(Exec {
                names: c.names,
                models: c.models,
                vars: c.vars,
                outs: c.outs,
                wiring: c.wiring,
                waves,
                early,
                cost_ns: vec![0.0; n_leaves],
                on_gpu: if mixed {
                    on_cpu.iter().map(|c| !c).collect()
                } else {
                    vec![false; n_leaves]
                },
                par,
                scratch: vec![Vec::new(); n_leaves],
                adapt: Adapt::default(),
                time_step: 0,
                changed: Vec::new(),
            }),
            running: AtomicBool::new(false),
            steps_done: AtomicU64::new(0),
            pause_requested: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
            leaf_of: c.leaf_of,
            leaf_procs: c.leaf_procs,
            tag: cfg.select_tag.clone(),
            description: c.description,
        })
    }

    fn leaf(&self, proc: usize) -> Option<usize> {
        self.leaf_of.get(proc).copied().flatten()
    }

    pub(crate) async fn get_var(&self, (p, v): (usize, usize)) -> Result<Option<Data>, NeuroError> {
        if self.running.load(Ordering::Acquire) {
            return Err(NeuroError::Running { op: "Var.get" });
        }
        let Some(l) = self.leaf(p) else {
            return Ok(None);
        };
        if let Some(gpu) = &self.gpu {
            let len = self.state.lock().vars[l][v].len();
            // The read is awaited without the lock (two reads may be awaited at once).
            let read = gpu.lock().get(l, v, len);
            if let Some(read) = read {
                return Ok(Some(read.await?));
            }
        }
        Ok(Some(self.state.lock().vars[l][v].clone()))
    }

    pub(crate) async fn set_var(
        &self,
        (p, v): (usize, usize),
        value: &Data,
        label: &str,
    ) -> Result<bool, NeuroError> {
        if self.running.load(Ordering::Acquire) {
            return Err(NeuroError::Running { op: "Var.set" });
        }
        let Some(l) = self.leaf(p) else {
            return Ok(false);
        };
        {
            let mut s = self.state.lock();
            s.vars[l][v].assign(value, label)?;
            s.changed.push((l, v));
        }
        let write = self
            .gpu
            .as_ref()
            .and_then(|gpu| gpu.lock().set(l, v, value));
        if let Some(write) = write {
            write.await?;
        }
        Ok(true)
    }

    /// Joins a non-blocking run, if one is in flight.
    fn join(&self) -> Result<(), NeuroError> {
        let handle = self.thread.lock().take();
        let r = match handle {
            Some(h) => match h.join() {
                Ok(r) => r,
                Err(p) => Err(NeuroError::Panicked(panic_message(&p))),
            },
            None => Ok(()),
        };
        self.running.store(false, Ordering::Release);
        r
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The steps of a run. `async` for the browser, where the GPU's completions are awaited;
/// natively it never suspends (see `gpu::finish`) and [`Process::run`] polls it to the end.
async fn run_steps(shared: &ExecShared, steps: u64) -> Result<(), NeuroError> {
    let r = steps_of_run(shared, steps).await;
    // No lock is held here: the last step, whether the run ended or failed.
    let t = shared.state.lock().time_step;
    shared.steps_done.store(t, Ordering::Release);
    r
}

/// [`run_steps`] without the final count. The GPU back end's lock and the state lock are
/// held across GPU waits (awaited in the browser): the run owns both for its length, and
/// nothing else waits for them meanwhile — `time_step()` reads `steps_done`, which each
/// loop raises as steps finish, `get`/`set` and a second run are refused while `running`
/// (set before this starts, cleared after it ends), so on the page's one thread no call
/// can block on a lock that a suspended run holds. Natively the waits block, as they did
/// when the loop was synchronous.
#[allow(clippy::await_holding_lock)]
async fn steps_of_run(shared: &ExecShared, steps: u64) -> Result<(), NeuroError> {
    let mark = |t: u64| shared.steps_done.store(t, Ordering::Release);
    if let (Some(gpu), true) = (&shared.gpu, shared.mixed) {
        let mut g = gpu.lock();
        {
            let s = shared.state.lock();
            g.prepare(s.time_step, steps, &s.vars).await?;
        }
        for _ in 0..steps {
            if shared.pause_requested.load(Ordering::Acquire) {
                break;
            }
            let mut s = shared.state.lock();
            s.mixed_step(&g).await?;
            mark(s.time_step);
        }
        return Ok(());
    }
    if let Some(gpu) = &shared.gpu {
        let mut g = gpu.lock();
        let start = {
            let s = shared.state.lock();
            g.prepare(s.time_step, steps, &s.vars).await?;
            s.time_step
        };
        let host = g.host_leaves.clone();
        let pause = &shared.pause_requested;
        if host.is_empty() {
            let mut t = start;
            while t < start + steps && !pause.load(Ordering::Acquire) {
                let k = (start + steps - t).min(super::gpu::STEPS_PER_SUBMIT);
                let done = g.advance(t, k, pause).await?;
                t += done;
                shared.state.lock().time_step = t;
                mark(t);
            }
            return Ok(());
        }
        // CPU processes reading GPU Vars through RefPorts: run the GPU up to the next step
        // at which one of them asks for a management phase, then sync that step only.
        let end = start + steps;
        let mut t = start;
        while t < end && !pause.load(Ordering::Acquire) {
            let mut k = 1;
            {
                let s = shared.state.lock();
                while t + k < end && !s.host_wants(&host, t + k) {
                    k += 1;
                }
            }
            let done = g.advance(t, k, pause).await?;
            let mut s = shared.state.lock();
            for step in t + 1..t + done {
                s.host_step(&host, step, None).await?;
            }
            if done < k {
                s.time_step = t + done;
                break;
            }
            s.host_step(&host, t + k, Some(&g)).await?;
            t += k;
            mark(t);
        }
        return Ok(());
    }
    for _ in 0..steps {
        if shared.pause_requested.load(Ordering::Acquire) {
            break;
        }
        let mut s = shared.state.lock();
        s.step()?;
        mark(s.time_step);
    }
    Ok(())
}

impl Process {
    fn exec(&self) -> Option<Arc<ExecShared>> {
        self.net.graph.lock().exec.clone()
    }

    /// Compiles the network this process belongs to for `cfg` (done by the first `run`;
    /// calling it first lets you print the process graph). Compiling again with the same
    /// configuration returns the existing executable's graph.
    pub fn compile(&self, cfg: &RunCfg) -> Result<String, NeuroError> {
        if let Some(e) = self.exec() {
            if e.tag != cfg.select_tag || e.backend != cfg.backend {
                return Err(NeuroError::ConfigChanged {
                    compiled: e.tag.clone(),
                    requested: cfg.select_tag.clone(),
                });
            }
            return Ok(e.description.clone());
        }
        let compiled = compile(self, cfg)?;
        tracing::debug!("compiled:\n{}", compiled.description);
        let shared = Arc::new(ExecShared::new(compiled, cfg)?);
        let d = shared.description.clone();
        let mut g = self.net.graph.lock();
        // The executable owns the leaf Vars from now on: free the graph's initial copies
        // (a large weight matrix would otherwise be held twice).
        for &p in &shared.leaf_procs {
            for v in &mut g.procs[p].vars {
                v.init = Data::zeros(v.init.dtype(), 0);
            }
        }
        g.exec = Some(shared);
        Ok(d)
    }

    /// The process graph of the compiled network (None before the first run or compile).
    pub fn process_graph(&self) -> Option<String> {
        self.exec().map(|e| e.description.clone())
    }

    /// Names of the leaf processes the network compiled into.
    pub fn leaf_processes(&self) -> Vec<String> {
        let Some(e) = self.exec() else {
            return Vec::new();
        };
        let g = self.net.graph.lock();
        e.leaf_procs
            .iter()
            .map(|&p| g.procs[p].name.clone())
            .collect()
    }

    /// Runs the network for `cond` time steps, compiling it first if needed. Time steps carry
    /// on from the previous run. A blocking run returns when done; a non-blocking one
    /// returns at once. In the browser, use [`Process::run_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, cond: impl Into<RunCondition>, cfg: &RunCfg) -> Result<(), NeuroError> {
        let cond = cond.into();
        let shared = self.start_run(cfg)?;
        if cond.blocking {
            let r = pollster::block_on(run_steps(&shared, cond.steps));
            shared.running.store(false, Ordering::Release);
            r
        } else {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name("hetflow-neuro".into())
                .spawn(move || pollster::block_on(run_steps(&s, cond.steps)))
                .map_err(|e| {
                    shared.running.store(false, Ordering::Release);
                    NeuroError::Panicked(format!("cannot start the run thread: {e}"))
                })?;
            *shared.thread.lock() = Some(h);
            Ok(())
        }
    }

    /// Runs the network for `steps` time steps, as a blocking [`Process::run`], awaited: the
    /// form for the browser, where the GPU's completions come back through the page's event
    /// loop. Natively the future does its work when first polled, blocking that thread
    /// until the run ends (it waits for the GPU as `run` does); prefer `run` there.
    ///
    /// ```
    /// use hetflow::neuro::{Lif, LifParams, Monitor, Network, RunCfg};
    ///
    /// let net = Network::new();
    /// let lif = Lif::new(&net, "lif", LifParams::new(1).bias_mant(vec![1.0]).vth(2.5)).unwrap();
    /// let mon = Monitor::new(&net, "mon").unwrap();
    /// mon.probe(&lif.v(), 4).unwrap();
    /// pollster::block_on(async {
    ///     lif.process().run_async(4, &RunCfg::floating_pt()).await.unwrap();
    ///     let v = mon.data_async("lif.v").await.unwrap();
    ///     assert_eq!(v, vec![vec![1.0], vec![2.0], vec![0.0], vec![1.0]]);
    /// });
    /// ```
    pub async fn run_async(&self, steps: u64, cfg: &RunCfg) -> Result<(), NeuroError> {
        let shared = self.start_run(cfg)?;
        let r = run_steps(&shared, steps).await;
        shared.running.store(false, Ordering::Release);
        r
    }

    /// Compiles if needed and marks the network running (refused when stopped or running).
    fn start_run(&self, cfg: &RunCfg) -> Result<Arc<ExecShared>, NeuroError> {
        self.compile(cfg)?;
        let shared = self.exec().ok_or(NeuroError::Stopped)?;
        if shared.stopped.load(Ordering::Acquire) {
            return Err(NeuroError::Stopped);
        }
        if shared
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(NeuroError::Running { op: "run" });
        }
        shared.pause_requested.store(false, Ordering::Release);
        Ok(shared)
    }

    /// Waits for a non-blocking run to finish; returns its result.
    pub fn wait(&self) -> Result<(), NeuroError> {
        match self.exec() {
            Some(e) => e.join(),
            None => Ok(()),
        }
    }

    /// Stops a non-blocking run at the end of the current time step and waits for it; the
    /// remaining steps are dropped. The network can run again (time continues).
    pub fn pause(&self) -> Result<(), NeuroError> {
        match self.exec() {
            Some(e) => {
                e.pause_requested.store(true, Ordering::Release);
                e.join()
            }
            None => Ok(()),
        }
    }

    /// Ends the network: waits for a run in flight; later runs are refused, Vars stay readable.
    pub fn stop(&self) -> Result<(), NeuroError> {
        match self.exec() {
            Some(e) => {
                let r = e.join();
                e.stopped.store(true, Ordering::Release);
                r
            }
            None => Ok(()),
        }
    }

    /// Whether a run is in flight.
    pub fn is_running(&self) -> bool {
        self.exec()
            .map(|e| e.running.load(Ordering::Acquire))
            .unwrap_or(false)
    }

    /// The last completed time step (0 before the first run).
    pub fn time_step(&self) -> u64 {
        self.exec()
            .map(|e| e.steps_done.load(Ordering::Acquire))
            .unwrap_or(0)
    }
}
