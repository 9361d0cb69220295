//! Where a ready task runs: the task's placement constraint, its bodies, and the policy.

use super::perfmodel::{Basis, Exploration, PerfModel, Prediction};
use crate::device::DeviceId;

/// Where a task may run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    /// Any device the task has a body for (the policy decides).
    #[default]
    Any,
    /// The CPU pool.
    Cpu,
    /// Any GPU.
    AnyGpu,
    /// The GPU with this index.
    Gpu(usize),
    /// One of these devices (the policy chooses among them).
    OneOf(Vec<DeviceId>),
}

impl From<DeviceId> for Placement {
    /// Exactly this device.
    fn from(d: DeviceId) -> Placement {
        match d {
            DeviceId::Cpu => Placement::Cpu,
            DeviceId::Gpu(i) => Placement::Gpu(i),
        }
    }
}

/// How the runtime chooses among the devices a task may run on.
///
/// The default is [`Policy::Dmda`]: placement by measured cost, with calibration whose cost
/// is bounded and models that persist per device between runs (`sched/perfmodel.rs`,
/// `sched/store.rs`). The others place without measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The first idle device among the candidates (GPUs first, then the CPU); when none is
    /// idle, the one with the shortest queue relative to its width. Blind to speed: with a
    /// GPU much slower than the CPU (a software adapter, a busy shared GPU) it sends it work
    /// whenever it is idle.
    Eager,
    /// A GPU whenever the task has a GPU body and a GPU is allowed.
    PreferGpu,
    /// The device where the most of the task's input bytes are already valid (fewest bytes
    /// to move); among equals, as [`Policy::Eager`].
    Locality,
    /// StarPU's dmda (the default): the earliest expected finish, from the device's backlog
    /// of predicted work, the time to move the inputs it lacks (measured link bandwidth) and
    /// the history-based performance model of the task ([`crate::sched::PerfModel`]).
    ///
    /// First run of a kind: on the device the priors favour (the CPU, unless a hardware GPU
    /// or the device ratio learned from other kinds says otherwise); other devices are
    /// explored only as far as a budget of 10% of the timed work pays for, so calibration
    /// never makes a run much slower than the best device alone. Later runs start from the
    /// model saved by earlier ones.
    #[default]
    Dmda,
    /// The CPU whenever the task has a CPU body and the CPU is allowed.
    PreferCpu,
}

/// Load of each device when a decision is made.
pub(crate) struct Loads {
    pub cpu_idle_workers: usize,
    pub cpu_workers: usize,
    pub cpu_queued: usize,
    /// (idle, queued) per GPU.
    pub gpus: Vec<(bool, usize)>,
    /// Predicted nanoseconds of work placed and not finished, by `MemorySpace::slot`.
    pub backlog_ns: Vec<u64>,
    /// Measured bytes per nanosecond into each device (same indexing).
    pub bandwidth: Vec<f64>,
}

/// The devices a task may run on, in a compact form: a range of GPUs and maybe the CPU, or
/// (for [`Placement::OneOf`]) a list, GPUs first, each once.
enum Eligible {
    Range {
        gpus: std::ops::Range<usize>,
        cpu: bool,
    },
    List(Vec<DeviceId>),
}

/// The rule "where may this task run", the only place it is written: a device the placement
/// names, that exists (a GPU index below `gpu_count`) and that the task has a body for.
#[inline]
fn eligible(placement: &Placement, has_cpu: bool, has_gpu: bool, gpu_count: usize) -> Eligible {
    let runs = |d: DeviceId| match d {
        DeviceId::Cpu => has_cpu,
        DeviceId::Gpu(i) => has_gpu && i < gpu_count,
    };
    // Every GPU below `gpu_count` exists, so a named range of them is cut to the existing
    // ones, or to none without a GPU body.
    let gpus = |r: std::ops::Range<usize>| {
        if has_gpu {
            r.start.min(gpu_count)..r.end.min(gpu_count)
        } else {
            0..0
        }
    };
    match placement {
        Placement::Any => Eligible::Range {
            gpus: gpus(0..gpu_count),
            cpu: runs(DeviceId::Cpu),
        },
        Placement::Cpu => Eligible::Range {
            gpus: 0..0,
            cpu: runs(DeviceId::Cpu),
        },
        Placement::AnyGpu => Eligible::Range {
            gpus: gpus(0..gpu_count),
            cpu: false,
        },
        Placement::Gpu(i) => Eligible::Range {
            gpus: gpus(*i..*i + 1),
            cpu: false,
        },
        Placement::OneOf(list) => {
            let mut l: Vec<DeviceId> = list.iter().copied().filter(|d| runs(*d)).collect();
            l.sort_by_key(|d| match d {
                DeviceId::Gpu(i) => (0, *i),
                DeviceId::Cpu => (1, 0),
            });
            l.dedup();
            Eligible::List(l)
        }
    }
}

/// The device a task must run on when exactly one is eligible (no allocation for the
/// common placements: the spawn path asks this of every task).
#[inline]
pub(crate) fn only_device(
    placement: &Placement,
    has_cpu: bool,
    has_gpu: bool,
    gpu_count: usize,
) -> Option<DeviceId> {
    match eligible(placement, has_cpu, has_gpu, gpu_count) {
        Eligible::Range { gpus, cpu } => match (gpus.len(), cpu) {
            (1, false) => Some(DeviceId::Gpu(gpus.start)),
            (0, true) => Some(DeviceId::Cpu),
            _ => None,
        },
        Eligible::List(l) => (l.len() == 1).then(|| l[0]),
    }
}

/// Devices the task may run on, GPUs first. Err explains why there is none.
pub(crate) fn candidates(
    placement: &Placement,
    has_cpu: bool,
    has_gpu: bool,
    gpu_count: usize,
) -> Result<Vec<DeviceId>, String> {
    let out: Vec<DeviceId> = match eligible(placement, has_cpu, has_gpu, gpu_count) {
        Eligible::Range { gpus, cpu } => gpus
            .map(DeviceId::Gpu)
            .chain(cpu.then_some(DeviceId::Cpu))
            .collect(),
        Eligible::List(l) => l,
    };
    if out.is_empty() {
        let bodies = match (has_cpu, has_gpu) {
            (true, true) => "CPU and GPU bodies",
            (true, false) => "a CPU body only",
            (false, true) => "a GPU body only",
            (false, false) => "no body",
        };
        return Err(format!(
            "placement {placement:?} names no device the task can run on: the task has {bodies}, and the runtime has {gpu_count} GPU(s)"
        ));
    }
    Ok(out)
}

/// What a policy may know about the task being placed.
pub(crate) struct TaskFacts<'a> {
    /// The task's name (the performance model's key, like a StarPU codelet).
    pub name: std::borrow::Cow<'a, str>,
    /// Total bytes of the arrays it accesses (the model's size).
    pub bytes: u64,
    /// Per candidate (same order): bytes of its inputs not yet valid there.
    pub missing: Vec<u64>,
}

/// A placement decision: the device, and what dmda predicted and whether it explores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Choice {
    pub device: DeviceId,
    /// dmda's predicted run time there, nanoseconds (booked on the device's backlog).
    pub predicted_ns: Option<u64>,
    /// The run is an exploration paid from the model's budget.
    pub explore: Option<Exploration>,
}

impl Choice {
    fn plain(device: DeviceId) -> Choice {
        Choice {
            device,
            predicted_ns: None,
            explore: None,
        }
    }
}

/// Picks one of `cands` (non-empty) under `policy`.
pub(crate) fn choose(
    policy: Policy,
    cands: &[DeviceId],
    loads: &Loads,
    task: &TaskFacts<'_>,
    model: &PerfModel,
) -> Choice {
    let first_gpu = cands
        .iter()
        .copied()
        .find(|d| matches!(d, DeviceId::Gpu(_)));
    let has_cpu = cands.contains(&DeviceId::Cpu);
    Choice::plain(match policy {
        Policy::PreferGpu => first_gpu.unwrap_or(DeviceId::Cpu),
        Policy::PreferCpu if has_cpu => DeviceId::Cpu,
        Policy::PreferCpu => cands[0],
        Policy::Eager => eager(cands, loads),
        Policy::Locality => {
            let best = task.missing.iter().copied().min().unwrap_or(0);
            let local: Vec<DeviceId> = cands
                .iter()
                .zip(&task.missing)
                .filter(|(_, m)| **m == best)
                .map(|(d, _)| *d)
                .collect();
            eager(if local.is_empty() { cands } else { &local }, loads)
        }
        Policy::Dmda => return dmda(cands, loads, task, model),
    })
}

/// StarPU's dmda with bounded-regret calibration (`perfmodel.rs`, "Calibration with bounded
/// regret"):
/// 1. predict the task on every candidate; devices whose prediction is measured or scaled
///    compete on their expected finish time (backlog + moving the missing inputs + run);
/// 2. a device known only by transfer (or measured fewer than `MIN_SAMPLES` times and
///    losing) is explored when the model's budget pays for its predicted cost;
/// 3. a kind known nowhere goes to the device the priors say is fastest (ties: the GPU).
fn dmda(cands: &[DeviceId], loads: &Loads, task: &TaskFacts<'_>, model: &PerfModel) -> Choice {
    let preds: Vec<Option<Prediction>> = cands
        .iter()
        .map(|d| model.predict(&task.name, task.bytes, *d))
        .collect();
    let finish = |i: usize, run_ns: f64| {
        let d = cands[i];
        let slot = crate::data::MemorySpace::of(d).slot();
        // Work booked on a software adapter is on the CPU's backlog too (it runs on the
        // workers' cores: `Scheduler::book`), so the CPU's wait sees it.
        let backlog = loads.backlog_ns.get(slot).copied().unwrap_or(0) as f64;
        let wait = match d {
            DeviceId::Cpu => backlog / loads.cpu_workers.max(1) as f64,
            DeviceId::Gpu(_) => backlog,
        };
        let bw = loads
            .bandwidth
            .get(slot)
            .copied()
            .unwrap_or(DEFAULT_BANDWIDTH);
        wait + task.missing.get(i).copied().unwrap_or(0) as f64 / bw + run_ns
    };
    let known = |p: &Option<Prediction>| p.is_some_and(|p| p.basis != Basis::Transferred);
    let best = (0..cands.len())
        .filter(|&i| known(&preds[i]))
        .map(|i| (i, finish(i, preds[i].map_or(0.0, |p| p.ns))))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((best_i, best_finish)) = best else {
        // Known nowhere: a transferred prediction cannot exist either. The priors decide.
        let d = cands
            .iter()
            .copied()
            .min_by(|a, b| model.prior(*a).total_cmp(&model.prior(*b)))
            .unwrap_or(cands[0]);
        return Choice::plain(d);
    };
    // Exploration: unexplored devices, and measured ones short of calibration that lose.
    for (i, p) in preds.iter().enumerate() {
        let Some(p) = p else { continue };
        if i == best_i || !p.worth_probing(finish(i, p.ns), best_finish) {
            continue;
        }
        let unexplored = p.basis == Basis::Transferred;
        // A device predicted to finish first is tried at once if the budget is not in debt;
        // one predicted slower must fit its predicted cost in the budget.
        let promising = unexplored && finish(i, p.ns) < best_finish;
        if let Some(x) = model.try_explore(&task.name, task.bytes, cands[i], p.ns, promising) {
            return Choice {
                device: cands[i],
                predicted_ns: Some(p.ns as u64),
                explore: Some(x),
            };
        }
    }
    Choice {
        device: cands[best_i],
        predicted_ns: preds[best_i].map(|p| p.ns as u64),
        explore: None,
    }
}

/// Bytes per nanosecond assumed for a link never measured (4 GB/s).
pub(crate) const DEFAULT_BANDWIDTH: f64 = 4.0;

fn eager(cands: &[DeviceId], loads: &Loads) -> DeviceId {
    let idle = |d: &DeviceId| match d {
        DeviceId::Cpu => loads.cpu_idle_workers > 0,
        DeviceId::Gpu(i) => loads.gpus.get(*i).is_some_and(|g| g.0),
    };
    if let Some(d) = cands.iter().find(|d| idle(d)) {
        return *d;
    }
    let pressure = |d: &DeviceId| match d {
        DeviceId::Cpu => loads.cpu_queued as f64 / loads.cpu_workers.max(1) as f64,
        DeviceId::Gpu(i) => loads.gpus.get(*i).map_or(f64::MAX, |g| g.1 as f64),
    };
    cands
        .iter()
        .copied()
        .min_by(|a, b| pressure(a).total_cmp(&pressure(b)))
        .unwrap_or(cands[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(cpu_idle: usize, gpus: Vec<(bool, usize)>) -> Loads {
        Loads {
            cpu_idle_workers: cpu_idle,
            cpu_workers: 2,
            cpu_queued: 4,
            gpus,
            backlog_ns: vec![0, 0],
            bandwidth: vec![DEFAULT_BANDWIDTH; 2],
        }
    }

    fn facts(missing: Vec<u64>) -> TaskFacts<'static> {
        TaskFacts {
            name: "t".into(),
            bytes: 1 << 20,
            missing,
        }
    }

    fn pick(policy: Policy, c: &[DeviceId], l: &Loads) -> DeviceId {
        choose(
            policy,
            c,
            l,
            &facts(vec![0; c.len()]),
            &PerfModel::default(),
        )
        .device
    }

    #[test]
    fn locality_and_dmda() {
        let c = [DeviceId::Gpu(0), DeviceId::Cpu];
        let l = loads(1, vec![(true, 0)]);
        let m = PerfModel::default();
        // Locality: the CPU already holds everything, the GPU lacks 1 MiB.
        assert_eq!(
            choose(Policy::Locality, &c, &l, &facts(vec![1 << 20, 0]), &m).device,
            DeviceId::Cpu
        );
        let ms = std::time::Duration::from_millis;
        let dmda = |l: &Loads, missing: Vec<u64>, m: &PerfModel| {
            choose(Policy::Dmda, &c, l, &facts(missing), m)
        };
        // Known nowhere, equal priors: the GPU runs it first.
        assert_eq!(dmda(&l, vec![0, 0], &m).device, DeviceId::Gpu(0));
        m.record("t", 1 << 20, DeviceId::Gpu(0), ms(4));
        // The CPU is unexplored, predicted as fast as the GPU (equal priors) and not faster:
        // with no work done there is no budget to explore it.
        let d = dmda(&l, vec![0, 0], &m);
        assert_eq!((d.device, d.explore), (DeviceId::Gpu(0), None));
        assert_eq!(d.predicted_ns, Some(4_000_000));
        // 40 ms of work pays for a 4 ms exploration.
        for _ in 0..9 {
            m.record("t", 1 << 20, DeviceId::Gpu(0), ms(4));
        }
        let d = dmda(&l, vec![0, 0], &m);
        assert_eq!(d.device, DeviceId::Cpu);
        assert!(d.explore.is_some());
        for _ in 0..3 {
            m.record("t", 1 << 20, DeviceId::Cpu, ms(1));
        }
        assert_eq!(dmda(&l, vec![0, 0], &m).device, DeviceId::Cpu);
        // A backlog on the CPU (10 ms over 2 workers) makes the GPU finish first.
        let mut busy = loads(0, vec![(true, 0)]);
        busy.backlog_ns = vec![10_000_000, 0];
        assert_eq!(dmda(&busy, vec![0, 0], &m).device, DeviceId::Gpu(0));
        // Moving 64 MiB to the GPU at 4 B/ns (16 ms) outweighs its advantage.
        assert_eq!(dmda(&busy, vec![64 << 20, 0], &m).device, DeviceId::Cpu);
    }

    #[test]
    fn a_slow_software_gpu_is_not_explored_before_the_work_pays_for_it() {
        use crate::sched::perfmodel::DeviceProfile;
        let soft = DeviceProfile {
            device: DeviceId::Gpu(0),
            identity: "lavapipe".into(),
            shares_cpu_cores: true,
            prior: 32.0,
        };
        let m = PerfModel::new(vec![soft, DeviceProfile::plain(DeviceId::Cpu)]);
        let c = [DeviceId::Gpu(0), DeviceId::Cpu];
        let l = loads(2, vec![(true, 0)]);
        let us = std::time::Duration::from_micros;
        let mut on_gpu = 0;
        for n in 0..400 {
            let d = choose(Policy::Dmda, &c, &l, &facts(vec![0, 0]), &m);
            if d.device == DeviceId::Gpu(0) {
                on_gpu += 1;
                // The GPU is really 100x slower: its exploration costs 100 ms.
                m.explored(d.explore.expect("an exploration"), Some(us(100_000)));
                m.record("t", 1 << 20, DeviceId::Gpu(0), us(100_000));
                // 32 x 1 ms predicted, paid from 10% of the work: not before 320 tasks.
                assert!(n >= 320, "explored after {n} tasks");
            } else {
                m.record("t", 1 << 20, DeviceId::Cpu, us(1000));
            }
        }
        assert_eq!(on_gpu, 1, "one exploration, then the measurement says no");
        // Its measured cost put the budget in debt: no re-probe for a long while.
        assert!(m.exploration_budget_ns() < 0.0);
    }

    #[test]
    fn an_overrated_hardware_gpu_keeps_a_kind_only_until_the_budget_pays_for_the_cpu() {
        use crate::sched::perfmodel::{type_prior, DeviceProfile, EXPLORE_FRACTION};
        let prior = type_prior(crate::device::DeviceType::DiscreteGpu);
        let gpu = DeviceProfile {
            device: DeviceId::Gpu(0),
            identity: "busy discrete GPU".into(),
            shares_cpu_cores: false,
            prior,
        };
        let m = PerfModel::new(vec![gpu, DeviceProfile::plain(DeviceId::Cpu)]);
        let c = [DeviceId::Gpu(0), DeviceId::Cpu];
        let l = loads(2, vec![(true, 0)]);
        let ms = std::time::Duration::from_millis;
        let mut placed = Vec::new();
        for _ in 0..60 {
            let d = choose(Policy::Dmda, &c, &l, &facts(vec![0, 0]), &m);
            // The GPU really takes 20 ms, the CPU 1 ms.
            let took = if d.device == DeviceId::Cpu {
                ms(1)
            } else {
                ms(20)
            };
            if let Some(x) = d.explore {
                m.explored(x, Some(took));
            }
            m.record("t", 1 << 20, d.device, took);
            placed.push(d.device);
        }
        let on_gpu = placed.iter().filter(|d| **d == DeviceId::Gpu(0)).count();
        // The CPU is predicted 1 / prior times the GPU's 20 ms; EXPLORE_FRACTION of the GPU's
        // work pays for it after 1 / (prior * EXPLORE_FRACTION) tasks.
        let bound = (1.0 / (prior * EXPLORE_FRACTION)).ceil() as usize + 1;
        assert!(on_gpu <= bound, "{on_gpu} > {bound}: {placed:?}");
        assert!(
            placed[bound + 1..].iter().all(|d| *d == DeviceId::Cpu),
            "{placed:?}"
        );
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_rule() {
        let places = [
            Placement::Any,
            Placement::Cpu,
            Placement::AnyGpu,
            Placement::Gpu(0),
            Placement::Gpu(1),
            Placement::OneOf(vec![DeviceId::Cpu, DeviceId::Cpu]),
            Placement::OneOf(vec![DeviceId::Gpu(1), DeviceId::Cpu]),
            Placement::OneOf(vec![DeviceId::Gpu(0)]),
            Placement::OneOf(Vec::new()),
        ];
        for p in &places {
            for (cpu, gpu) in [(true, true), (true, false), (false, true), (false, false)] {
                for gpus in 0..3 {
                    let all = candidates(p, cpu, gpu, gpus);
                    let one = only_device(p, cpu, gpu, gpus);
                    match &all {
                        Ok(list) if list.len() == 1 => assert_eq!(one, Some(list[0]), "{p:?}"),
                        _ => assert_eq!(one, None, "{p:?} {cpu} {gpu} {gpus}: {all:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn candidates_respect_bodies_and_placement() {
        assert_eq!(
            candidates(&Placement::Any, true, true, 1).unwrap(),
            vec![DeviceId::Gpu(0), DeviceId::Cpu]
        );
        assert_eq!(
            candidates(&Placement::Any, true, false, 1).unwrap(),
            vec![DeviceId::Cpu]
        );
        assert!(candidates(&Placement::AnyGpu, true, true, 0).is_err());
        assert!(candidates(&Placement::Gpu(3), false, true, 1).is_err());
        assert!(candidates(&Placement::Cpu, false, true, 1).is_err());
        assert_eq!(
            candidates(
                &Placement::OneOf(vec![DeviceId::Cpu, DeviceId::Gpu(0)]),
                true,
                true,
                1
            )
            .unwrap(),
            vec![DeviceId::Gpu(0), DeviceId::Cpu]
        );
    }

    #[test]
    fn eager_takes_idle_device_then_least_loaded() {
        let c = [DeviceId::Gpu(0), DeviceId::Cpu];
        assert_eq!(
            pick(Policy::Eager, &c, &loads(0, vec![(true, 0)])),
            DeviceId::Gpu(0)
        );
        assert_eq!(
            pick(Policy::Eager, &c, &loads(1, vec![(false, 9)])),
            DeviceId::Cpu
        );
        // Busy everywhere: CPU pressure 4/2 = 2 < GPU queue 9.
        assert_eq!(
            pick(Policy::Eager, &c, &loads(0, vec![(false, 9)])),
            DeviceId::Cpu
        );
        assert_eq!(
            pick(Policy::Eager, &c, &loads(0, vec![(false, 1)])),
            DeviceId::Gpu(0)
        );
        assert_eq!(
            pick(Policy::PreferCpu, &c, &loads(0, vec![(true, 0)])),
            DeviceId::Cpu
        );
        assert_eq!(
            pick(Policy::PreferGpu, &c, &loads(2, vec![(false, 99)])),
            DeviceId::Gpu(0)
        );
    }
}
