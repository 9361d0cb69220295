//! Where a ready task runs: the task's placement constraint, its bodies, and the policy.

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

/// How the runtime chooses among the devices a task may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The first idle device among the candidates (GPUs first, then the CPU); when none is
    /// idle, the one with the shortest queue relative to its width.
    #[default]
    Eager,
    /// A GPU whenever the task has a GPU body and a GPU is allowed.
    PreferGpu,
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
}

/// Devices the task may run on, GPUs first. Err explains why there is none.
pub(crate) fn candidates(
    placement: &Placement,
    has_cpu: bool,
    has_gpu: bool,
    gpu_count: usize,
) -> Result<Vec<DeviceId>, String> {
    let allowed: Vec<DeviceId> = match placement {
        Placement::Any => (0..gpu_count)
            .map(DeviceId::Gpu)
            .chain(std::iter::once(DeviceId::Cpu))
            .collect(),
        Placement::Cpu => vec![DeviceId::Cpu],
        Placement::AnyGpu => (0..gpu_count).map(DeviceId::Gpu).collect(),
        Placement::Gpu(i) => vec![DeviceId::Gpu(*i)],
        Placement::OneOf(list) => {
            let mut l = list.clone();
            l.sort_by_key(|d| match d {
                DeviceId::Gpu(i) => (0, *i),
                DeviceId::Cpu => (1, 0),
            });
            l.dedup();
            l
        }
    };
    let out: Vec<DeviceId> = allowed
        .iter()
        .copied()
        .filter(|d| match d {
            DeviceId::Cpu => has_cpu,
            DeviceId::Gpu(i) => has_gpu && *i < gpu_count,
        })
        .collect();
    if out.is_empty() {
        let bodies = match (has_cpu, has_gpu) {
            (true, true) => "CPU and GPU bodies",
            (true, false) => "a CPU body only",
            (false, true) => "a GPU body only",
            (false, false) => "no body",
        };
        return Err(format!(
            "placement {placement:?} allows {allowed:?}, the task has {bodies}, and the runtime has {gpu_count} GPU(s)"
        ));
    }
    Ok(out)
}

/// Picks one of `cands` (non-empty) under `policy`.
pub(crate) fn choose(policy: Policy, cands: &[DeviceId], loads: &Loads) -> DeviceId {
    let first_gpu = cands
        .iter()
        .copied()
        .find(|d| matches!(d, DeviceId::Gpu(_)));
    let has_cpu = cands.contains(&DeviceId::Cpu);
    match policy {
        Policy::PreferGpu => first_gpu.unwrap_or(DeviceId::Cpu),
        Policy::PreferCpu if has_cpu => DeviceId::Cpu,
        Policy::PreferCpu => cands[0],
        Policy::Eager => {
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
    }
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
            choose(Policy::Eager, &c, &loads(0, vec![(true, 0)])),
            DeviceId::Gpu(0)
        );
        assert_eq!(
            choose(Policy::Eager, &c, &loads(1, vec![(false, 9)])),
            DeviceId::Cpu
        );
        // Busy everywhere: CPU pressure 4/2 = 2 < GPU queue 9.
        assert_eq!(
            choose(Policy::Eager, &c, &loads(0, vec![(false, 9)])),
            DeviceId::Cpu
        );
        assert_eq!(
            choose(Policy::Eager, &c, &loads(0, vec![(false, 1)])),
            DeviceId::Gpu(0)
        );
        assert_eq!(
            choose(Policy::PreferCpu, &c, &loads(0, vec![(true, 0)])),
            DeviceId::Cpu
        );
        assert_eq!(
            choose(Policy::PreferGpu, &c, &loads(2, vec![(false, 99)])),
            DeviceId::Gpu(0)
        );
    }
}
