//! Spike I/O: a source replaying a raster and a sink recording one (Lava's RingBuffer
//! source and sink).

use crate::neuro::model::{Cx, ModelSpec, PortIx, ProcessModel, VarIx};
use crate::neuro::{Data, InPort, Network, NeuroError, OutPort, Process, Var, VarType};

/// Replays a raster: at step t it sends column `(t - 1) % T` of its `data` Var
/// (shape `[n, T]`) on OutPort `s_out`. Its model answers to every tag.
#[derive(Clone, Debug)]
pub struct SpikeSource {
    proc: Process,
}

impl SpikeSource {
    /// `raster[i][t]`: what neuron `i` sends at step `t + 1` (repeating after T steps).
    pub fn new(net: &Network, name: &str, raster: &[Vec<f64>]) -> Result<SpikeSource, NeuroError> {
        let n = raster.len();
        let t = raster.first().map_or(0, Vec::len);
        if t == 0 || raster.iter().any(|r| r.len() != t) {
            return Err(NeuroError::Invalid {
                what: format!("raster of source `{name}`"),
                reason: "every row must have the same, non-zero number of steps".into(),
            });
        }
        let proc = net
            .process(name, "SpikeSource")
            .var("data", &[n, t], raster.concat())
            .out_port("s_out", &[n])
            .model(ModelSpec::leaf("PySourceModel", &[], move |b| {
                b.set_dtype(VarIx(0), VarType::F64);
                Ok(Box::new(SourceModel {
                    n,
                    t,
                    col: vec![0.0; n],
                }))
            }))
            .build()?;
        Ok(SpikeSource { proc })
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.proc
    }
    /// OutPort `s_out`.
    pub fn s_out(&self) -> OutPort {
        self.proc
            .out_port("s_out")
            .expect("source declares this port")
    }
}

struct SourceModel {
    n: usize,
    t: usize,
    col: Vec<f64>,
}

impl ProcessModel for SourceModel {
    fn name(&self) -> &str {
        "PySourceModel"
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let c = ((cx.time_step() - 1) % self.t as u64) as usize;
        let data = cx.var(VarIx(0)).as_f64("data")?;
        for i in 0..self.n {
            self.col[i] = data[i * self.t + c];
        }
        cx.out_f64(PortIx(0), self.n).copy_from_slice(&self.col);
        Ok(())
    }
}

/// Records what arrives on InPort `a_in` at step t into column `(t - 1) % T` of its `data`
/// Var (shape `[n, T]`).
#[derive(Clone, Debug)]
pub struct SpikeSink {
    proc: Process,
    n: usize,
    t: usize,
}

impl SpikeSink {
    /// A sink for `n` neurons keeping the last `t` steps.
    pub fn new(net: &Network, name: &str, n: usize, t: usize) -> Result<SpikeSink, NeuroError> {
        if t == 0 {
            return Err(NeuroError::Invalid {
                what: format!("sink `{name}` buffer"),
                reason: "0 steps, at least 1 expected".into(),
            });
        }
        let values = n.checked_mul(t).ok_or_else(|| NeuroError::Invalid {
            what: format!("sink `{name}` buffer"),
            reason: format!("{n} neurons x {t} steps overflows usize; expected fewer steps"),
        })?;
        let zeros: Vec<f64> = crate::neuro::data::try_zeroed(
            values,
            &format!("sink `{name}` ({n} neurons x {t} steps)"),
        )?;
        let proc = net
            .process(name, "SpikeSink")
            .var("data", &[n, t], zeros)
            .in_port("a_in", &[n])
            .model(ModelSpec::leaf("PySinkModel", &[], move |b| {
                b.set_dtype(VarIx(0), VarType::F64);
                Ok(Box::new(SinkModel {
                    n,
                    t,
                    buf: vec![0.0; n],
                }))
            }))
            .build()?;
        Ok(SpikeSink { proc, n, t })
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.proc
    }
    /// InPort `a_in`.
    pub fn a_in(&self) -> InPort {
        self.proc.in_port("a_in").expect("sink declares this port")
    }
    /// Var `data`.
    pub fn data(&self) -> Var {
        self.proc.var("data").expect("sink declares this Var")
    }
    /// The recording as `[step][neuron]` (T rows). In the browser, use
    /// [`SpikeSink::steps_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn steps(&self) -> Result<Vec<Vec<f64>>, NeuroError> {
        pollster::block_on(self.steps_async())
    }

    /// [`SpikeSink::steps`] awaited.
    pub async fn steps_async(&self) -> Result<Vec<Vec<f64>>, NeuroError> {
        let d = self.data().get_async().await?.to_f64();
        Ok((0..self.t)
            .map(|s| (0..self.n).map(|i| d[i * self.t + s]).collect())
            .collect())
    }
}

struct SinkModel {
    n: usize,
    t: usize,
    buf: Vec<f64>,
}

impl ProcessModel for SinkModel {
    fn name(&self) -> &str {
        "PySinkModel"
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        cx.recv_f64(PortIx(0), &mut self.buf)?;
        let c = ((cx.time_step() - 1) % self.t as u64) as usize;
        let data = cx.var_mut(VarIx(0)).as_f64_mut("data")?;
        for i in 0..self.n {
            data[i * self.t + c] = self.buf[i];
        }
        Ok(())
    }
}

/// Counts the spikes (sums the messages) each neuron sent: Var `count` (`[n]`), InPort
/// `s_in`. Cheap enough to leave in a benchmark; it has a GPU model too.
#[derive(Clone, Debug)]
pub struct SpikeCounter {
    proc: Process,
}

impl SpikeCounter {
    /// A counter for `n` neurons.
    pub fn new(net: &Network, name: &str, n: usize) -> Result<SpikeCounter, NeuroError> {
        let proc = net
            .process(name, "SpikeCounter")
            .var("count", &[n], vec![0.0; n])
            .in_port("s_in", &[n])
            .model(ModelSpec::leaf("PySpikeCounter", &[], move |b| {
                b.set_dtype(VarIx(0), VarType::F64);
                Ok(Box::new(CounterModel { buf: vec![0.0; n] }))
            }))
            .build()?;
        Ok(SpikeCounter { proc })
    }
    /// The process.
    pub fn process(&self) -> &Process {
        &self.proc
    }
    /// InPort `s_in`.
    pub fn s_in(&self) -> InPort {
        self.proc
            .in_port("s_in")
            .expect("counter declares this port")
    }
    /// Var `count`.
    pub fn count(&self) -> Var {
        self.proc.var("count").expect("counter declares this Var")
    }
}

struct CounterModel {
    buf: Vec<f64>,
}

impl ProcessModel for CounterModel {
    fn name(&self) -> &str {
        "PySpikeCounter"
    }
    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let n = self.buf.len();
        let msg = cx.recv_borrow(PortIx(0), n);
        if msg.is_none() {
            cx.recv_f64(PortIx(0), &mut self.buf)?;
        }
        let c = cx.var_mut(VarIx(0)).as_f64_mut("count")?;
        match msg {
            Some(Data::F64(m)) => c.iter_mut().zip(m).for_each(|(c, &s)| *c += s),
            Some(Data::I32(m)) => c.iter_mut().zip(m).for_each(|(c, &s)| *c += s as f64),
            None => c.iter_mut().zip(&self.buf).for_each(|(c, &s)| *c += s),
        }
        Ok(())
    }
}

impl Data {
    /// Rows of a row-major matrix with `cols` columns, as f64.
    pub fn rows_f64(&self, cols: usize) -> Vec<Vec<f64>> {
        self.to_f64()
            .chunks(cols.max(1))
            .map(|c| c.to_vec())
            .collect()
    }
}
