//! Monitor: records a Var (read through a RefPort in POST_MGMT, so row t-1 is the state at
//! the end of step t) or an OutPort (received in SPK) at every step.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::neuro::model::{Cx, ModelSpec, PortIx, ProcessModel, VarIx};
use crate::neuro::process::PortKind;
use crate::neuro::{Data, Network, NeuroError, Port, Process, Var, VarType};

#[derive(Debug, Clone)]
struct Probe {
    target: String,
    len: usize,
    data: Var,
}

/// A probe process. Add probes before the first run; read them with [`Monitor::data`].
///
/// ```
/// use hetflow::neuro::{Lif, LifParams, Monitor, Network, RunCfg, RunSteps};
/// let net = Network::new();
/// let lif = Lif::new(&net, "lif", LifParams::new(1).bias_mant(vec![1.0]).vth(2.5)).unwrap();
/// let mon = Monitor::new(&net, "mon").unwrap();
/// mon.probe(&lif.v(), 4).unwrap();
/// lif.process().run(RunSteps(4), &RunCfg::floating_pt()).unwrap();
/// assert_eq!(mon.data(&lif.v().label()).unwrap(), vec![vec![1.0], vec![2.0], vec![0.0], vec![1.0]]);
/// ```
#[derive(Clone)]
pub struct Monitor {
    proc: Process,
    probes: Arc<Mutex<Vec<Probe>>>,
}

impl Monitor {
    /// An empty monitor.
    pub fn new(net: &Network, name: &str) -> Result<Monitor, NeuroError> {
        let proc = net
            .process(name, "Monitor")
            .model(ModelSpec::leaf("PyMonitorModel", &[], |b| {
                let mut probes = Vec::new();
                let mut kinds = Vec::new();
                for (i, name) in b.port_names().to_vec().iter().enumerate() {
                    let Some(k) = name.strip_prefix("probe_") else {
                        continue;
                    };
                    let data = b.var(&format!("data_{k}"))?;
                    b.set_dtype(data, VarType::F64);
                    let len = b.port_shape(PortIx(i)).iter().product();
                    let rows = b.var_shape(data)[0];
                    probes.push((PortIx(i), data, len, rows));
                    kinds.push(b.port_kind(PortIx(i)) == PortKind::Ref);
                }
                Ok(Box::new(MonitorModel {
                    kinds,
                    probes,
                    buf: Vec::new(),
                }))
            }))
            .build()?;
        Ok(Monitor {
            proc,
            probes: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.proc
    }

    fn add(
        &self,
        shape: &[usize],
        kind: PortKind,
        num_steps: usize,
        target: String,
    ) -> Result<Port, NeuroError> {
        let mut probes = self.probes.lock();
        let k = probes.len();
        let len: usize = shape.iter().product();
        let what = format!("the recording of `{target}` ({num_steps} steps x {len} values)");
        let values = num_steps
            .checked_mul(len)
            .ok_or_else(|| NeuroError::Invalid {
                what: format!("monitor probe of `{target}`"),
                reason: format!(
                    "{num_steps} steps x {len} values per step overflows usize; expected fewer steps"
                ),
            })?;
        // Allocated before the port is added, so a refusal leaves the monitor as it was.
        let zeros = Data::try_zeros(VarType::F64, values, &what)?;
        let port = self.proc.add_port(&format!("probe_{k}"), kind, shape)?;
        let data = self
            .proc
            .add_var(&format!("data_{k}"), &[num_steps, len], zeros);
        probes.push(Probe { target, len, data });
        Ok(port)
    }

    /// Records `var` at the end of each of the first `num_steps` steps.
    ///
    /// # Errors
    /// [`NeuroError::Invalid`] when `num_steps` times the Var's size overflows,
    /// [`NeuroError::Allocation`] when the recording cannot be allocated.
    pub fn probe(&self, var: &Var, num_steps: usize) -> Result<(), NeuroError> {
        let port = self.add(&var.shape(), PortKind::Ref, num_steps, var.label())?;
        port.connect_var(var)
    }

    /// Records what `out` sends in each of the first `num_steps` steps.
    pub fn probe_out(&self, out: &Port, num_steps: usize) -> Result<(), NeuroError> {
        let port = self.add(&out.shape(), PortKind::In, num_steps, out.label())?;
        out.connect(&port)
    }

    /// The recording of `target` (a Var's or port's label, `process.name`) as `[step][i]`.
    /// In the browser, use [`Monitor::data_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn data(&self, target: &str) -> Result<Vec<Vec<f64>>, NeuroError> {
        pollster::block_on(self.data_async(target))
    }

    /// [`Monitor::data`] awaited (a recording on the GPU comes back through an awaited
    /// mapping).
    pub async fn data_async(&self, target: &str) -> Result<Vec<Vec<f64>>, NeuroError> {
        let (data, len) =
            {
                let probes = self.probes.lock();
                let p = probes.iter().find(|p| p.target == target).ok_or_else(|| {
                    NeuroError::NotFound {
                        kind: "probe",
                        name: target.to_string(),
                        owner: format!("monitor `{}`", self.proc.name()),
                    }
                })?;
                (p.data.clone(), p.len)
            };
        Ok(data.get_async().await?.rows_f64(len))
    }
}

struct MonitorModel {
    kinds: Vec<bool>,
    probes: Vec<(PortIx, VarIx, usize, usize)>,
    buf: Vec<f64>,
}

impl MonitorModel {
    fn record(
        cx: &mut Cx<'_>,
        data: VarIx,
        rows: usize,
        len: usize,
        values: &[f64],
    ) -> Result<(), NeuroError> {
        let t = cx.time_step() as usize;
        if t > rows {
            return Err(NeuroError::Invalid {
                what: "monitor buffer".into(),
                reason: format!("time step {t} beyond the {rows} steps it was created for"),
            });
        }
        let d = cx.var_mut(data).as_f64_mut("monitor data")?;
        d[(t - 1) * len..t * len].copy_from_slice(values);
        Ok(())
    }
}

impl ProcessModel for MonitorModel {
    fn name(&self) -> &str {
        "PyMonitorModel"
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        for (k, &(p, data, len, rows)) in self.probes.iter().enumerate() {
            if !self.kinds[k] {
                self.buf.resize(len, 0.0);
                let mut buf = std::mem::take(&mut self.buf);
                cx.recv_f64(p, &mut buf)?;
                Self::record(cx, data, rows, len, &buf)?;
                self.buf = buf;
            }
        }
        Ok(())
    }

    fn post_guard(&self, _t: u64) -> bool {
        self.kinds.iter().any(|&r| r)
    }

    fn run_post_mgmt(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        for (k, &(p, data, len, rows)) in self.probes.iter().enumerate() {
            if self.kinds[k] {
                let v = cx.ref_read(p)?.to_f64();
                Self::record(cx, data, rows, len, &v)?;
            }
        }
        Ok(())
    }
}
