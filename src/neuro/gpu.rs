//! The GPU back end: a network whose processes all have GPU models (LIF, Dense, spike source
//! and sink, Monitor) runs as WGSL compute shaders (`shaders/neuro_*.wgsl`).
//!
//! Every Var the dynamics touch lives in a managed [`crate::Array`] on the device; a run is
//! a few runtime tasks, each encoding up to [`STEPS_PER_SUBMIT`] whole time steps (every
//! dispatch of every phase, in phase order) into one command buffer, so there is no host
//! round trip per step. Monitor and sink data stay on the device until the host reads them
//! (`Var::get`), which moves them through the coherence tracker like any array.
//!
//! Floating point runs in f32 (spikes equal Lava's, u and v within about 1e-4 relative);
//! fixed point is bit-exact (the 64-bit products of MODELS.md §3 are split into 32-bit
//! parts in `neuro_lif_fixed.wgsl`).

use crate::{Array, Kernel, Placement, RuntimeHandle, Uniform};
use std::sync::atomic::{AtomicBool, Ordering};

use super::compiler::Compiled;
use super::process::PortKind;
use super::procs::dense::{process_weights, SignMode};
use super::{Data, NeuroError};

/// Time steps encoded into one submission.
pub const STEPS_PER_SUBMIT: u64 = 128;

/// Waits for a task of the back end: blocking on native targets (the waiting thread helps
/// the workers, as [`crate::TaskHandle::wait`]), awaited in the browser, where nothing may
/// block. The back end's methods are `async` for the browser's sake; natively they never
/// suspend, and the blocking entry points poll them to the end once.
async fn finish<T: Send + 'static>(h: crate::TaskHandle<T>) -> Result<T, NeuroError> {
    #[cfg(not(target_arch = "wasm32"))]
    let r = h.wait();
    #[cfg(target_arch = "wasm32")]
    let r = h.await;
    r.map_err(NeuroError::Task)
}

/// Reads buffer `buf`'s first `len` elements, converted to the host element type.
async fn read(buf: Buf, len: usize) -> Result<Data, NeuroError> {
    Ok(match &buf {
        Buf::F(a) => Data::F64(
            fetch(a)
                .await?
                .iter()
                .take(len)
                .map(|&x| x as f64)
                .collect(),
        ),
        Buf::D(a) => Data::F64(fetch(a).await?.into_iter().take(len).collect()),
        Buf::I(a) => Data::I32(fetch(a).await?.into_iter().take(len).collect()),
        Buf::U(a) | Buf::W(a) => Data::I32(
            fetch(a)
                .await?
                .into_iter()
                .take(len)
                .map(|x| x as i32)
                .collect(),
        ),
    })
}

/// The host copy of a device array, as [`finish`] waits.
async fn fetch<T: bytemuck::Pod + Send + Sync>(a: &Array<T>) -> Result<Vec<T>, NeuroError> {
    #[cfg(not(target_arch = "wasm32"))]
    let r = a.to_vec();
    #[cfg(target_arch = "wasm32")]
    let r = a.to_vec_async().await;
    r.map_err(NeuroError::Task)
}

#[derive(Clone)]
enum Buf {
    F(Array<f32>),
    D(Array<f64>),
    I(Array<i32>),
    U(Array<u32>),
    /// Device scratch written by the kernels (spike lists, counters, accumulators).
    W(Array<u32>),
}

impl Buf {
    fn arg(&self) -> &dyn crate::task::KernelArg {
        match self {
            Buf::F(a) => a,
            Buf::D(a) => a,
            Buf::I(a) => a,
            Buf::U(a) => a,
            Buf::W(a) => a,
        }
    }
}

/// The element type of a network's messages and state on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// Floating point where the device lacks SHADER_F64.
    F32,
    /// Floating point, as Lava.
    F64,
    /// Fixed point.
    I32,
}

impl Elem {
    fn wgsl(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::F64 => "f64",
            Elem::I32 => "i32",
        }
    }
}

struct Kernels {
    gather: Kernel,
    scatter: Kernel,
    accum: Kernel,
    lif: Kernel,
    dense: Kernel,
    /// The event-driven synapses (`neuro_event.wgsl`): clear, compact, scatter, finish.
    /// None for f64, which has no atomics: Dense then gathers every stored weight.
    event: Option<[Kernel; 4]>,
}

/// The shift by weight_exp of the fixed-point Dense (`p.a.z`).
const SHIFT_FN: &str = "\nfn shift(x: i32) -> i32 {\n    let e = bitcast<i32>(p.a.z);\n    if e > 0 { return x << u32(e); }\n    return x >> u32(-e);\n}\n";

/// The four modules of `neuro_event.wgsl` for element type `e` (i32 or f32).
fn event_sources(e: Elem) -> Vec<(String, &'static str)> {
    let src = include_str!("../../shaders/neuro_event.wgsl");
    let (head, rest) = src.split_once("//--- ").unwrap_or((src, ""));
    let (acc, add, finish) = match e {
        Elem::I32 => (
            "i32",
            "atomicAdd(&acc[rows[e]], w);",
            "shift(acc[i])",
        ),
        _ => (
            "u32",
            "let r = rows[e];\n        var old = atomicLoad(&acc[r]);\n        loop {\n            let x = atomicCompareExchangeWeak(&acc[r], old, bitcast<u32>(bitcast<f32>(old) + w));\n            if x.exchanged { break; }\n            old = x.old_value;\n        }",
            "bitcast<f32>(acc[i])",
        ),
    };
    ["clear", "compact", "scatter", "finish"]
        .iter()
        .zip(("//--- ".to_string() + rest).split("//--- ").skip(1))
        .map(|(name, body)| {
            let body = body.split_once('\n').map_or("", |b| b.1);
            let mut m = format!("{head}{body}")
                .replace("ELEM", e.wgsl())
                .replace("ACC", acc)
                .replace("ADD", add)
                .replace("FINISH", finish);
            if *name == "finish" && e == Elem::I32 {
                m += SHIFT_FN;
            }
            (
                m,
                match *name {
                    "clear" => "event_clear",
                    "compact" => "event_compact",
                    "scatter" => "event_scatter",
                    _ => "event_finish",
                },
            )
        })
        .collect()
}

fn kernels(rt: &RuntimeHandle, e: Elem) -> Result<Kernels, NeuroError> {
    let fixed = e == Elem::I32;
    let elem = e.wgsl();
    let io = include_str!("../../shaders/neuro_io.wgsl").replace("ELEM", elem);
    let dense = include_str!("../../shaders/neuro_dense.wgsl").replace("ELEM", elem);
    let dense = if fixed {
        dense.replace("SHIFT", "shift(acc)") + SHIFT_FN
    } else {
        dense.replace("SHIFT", "acc")
    };
    let k = |src: &str, entry: &str| {
        rt.kernel(src, entry).map_err(|source| NeuroError::Kernel {
            entry: entry.to_string(),
            source,
        })
    };
    Ok(Kernels {
        gather: k(&io, "gather")?,
        scatter: k(&io, "scatter")?,
        accum: k(&io, "accum")?,
        lif: if fixed {
            k(
                include_str!("../../shaders/neuro_lif_fixed.wgsl"),
                "lif_fixed",
            )?
        } else {
            k(
                &include_str!("../../shaders/neuro_lif.wgsl").replace("ELEM", elem),
                "lif_float",
            )?
        },
        dense: k(&dense, "dense")?,
        event: match e {
            Elem::F64 => None,
            _ => {
                let m = event_sources(e);
                Some([
                    k(&m[0].0, m[0].1)?,
                    k(&m[1].0, m[1].1)?,
                    k(&m[2].0, m[2].1)?,
                    k(&m[3].0, m[3].1)?,
                ])
            }
        },
    })
}

/// A parameter word that depends on the time step.
#[derive(Clone, Copy)]
enum Word {
    Const(u32),
    /// `(t - 1) % modulo * scale`.
    Column {
        modulo: u32,
        scale: u32,
    },
}

#[derive(Clone, Copy)]
enum K {
    Gather,
    Scatter,
    Accum,
    Lif,
    Dense,
    /// `neuro_event.wgsl`'s kernel 0..4.
    Event(usize),
}

struct Op {
    kernel: K,
    words: [Word; 8],
    bufs: Vec<usize>,
    n: usize,
}

fn consts(w: [u32; 8]) -> [Word; 8] {
    w.map(Word::Const)
}

/// The device-side state of a compiled network.
pub(crate) struct GpuExec {
    rt: RuntimeHandle,
    kernels: Kernels,
    bufs: Vec<Buf>,
    /// Per leaf, per Var: the buffer holding it on the device, if any.
    var_buf: Vec<Vec<Option<usize>>>,
    ops: Vec<Op>,
    /// (leaf, var) of LIF scalar parameters read at each run, and where they go.
    lif_params: Vec<(usize, usize)>,
    /// Monitor rows available (the run may not go past them).
    max_steps: u64,
    fixed: bool,
    vth_eff: Vec<Option<i32>>,
    /// Per LIF op (floating point): the buffer holding (du, dv, vth).
    scal: Vec<Option<usize>>,
    elem: Elem,
    /// Leaves run on the host: CPU models only (RefPort users), or placed on the CPU.
    pub(crate) host_leaves: Vec<usize>,
    /// Per leaf, per port: the device buffer of each OutPort (every leaf has them, so a
    /// host leaf's message can be uploaded for its GPU receivers).
    out_buf: Vec<Vec<Option<usize>>>,
    /// Ops of the early half (`0..early`), then per leaf its receives and update
    /// (`leaf_ops`), then the Monitors' Var probes (`post..`).
    early: usize,
    leaf_ops: Vec<std::ops::Range<usize>>,
    post: usize,
}

fn to_buf(rt: &RuntimeHandle, d: &Data, e: Elem) -> Buf {
    let n = d.len().max(1);
    match e {
        Elem::I32 => {
            let mut v = d.to_i32();
            v.resize(n, 0);
            Buf::I(rt.array_from(v))
        }
        Elem::F32 => {
            let mut v: Vec<f32> = d.to_f64().iter().map(|&x| x as f32).collect();
            v.resize(n, 0.0);
            Buf::F(rt.array_from(v))
        }
        Elem::F64 => {
            let mut v = d.to_f64();
            v.resize(n, 0.0);
            Buf::D(rt.array_from(v))
        }
    }
}

/// A buffer needs at least one element.
fn nonempty(mut v: Vec<u32>) -> Vec<u32> {
    if v.is_empty() {
        v.push(0);
    }
    v
}

/// Compressed rows to compressed columns (rows ascending within a column).
fn csr_to_csc(
    row_ptr: &[u32],
    cols: &[u32],
    vals: &[f64],
    n_in: usize,
) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
    let mut col_ptr = vec![0u32; n_in + 1];
    for &c in cols.iter().take(vals.len()) {
        col_ptr[c as usize + 1] += 1;
    }
    for j in 0..n_in {
        col_ptr[j + 1] += col_ptr[j];
    }
    let mut fill: Vec<u32> = col_ptr.clone();
    let mut rows = vec![0u32; vals.len()];
    let mut out = vec![0.0; vals.len()];
    for i in 0..row_ptr.len().saturating_sub(1) {
        for k in row_ptr[i] as usize..row_ptr[i + 1] as usize {
            let j = cols[k] as usize;
            rows[fill[j] as usize] = i as u32;
            out[fill[j] as usize] = vals[k];
            fill[j] += 1;
        }
    }
    (col_ptr, rows, out)
}

/// Process models with a WGSL counterpart.
const GPU_MODELS: &[&str] = &[
    "PyLifModelFloat",
    "PyLifModelBitAcc",
    "PyDenseModelFloat",
    "PyDenseModelBitAcc",
    "PySparseModelFloat",
    "PySparseModelBitAcc",
    "PySourceModel",
    "PySinkModel",
    "PySpikeCounter",
    "PyMonitorModel",
];

impl GpuExec {
    /// Whether [`GpuExec::new`] accepts the network's models: each has a GPU model or talks
    /// only through RefPorts/VarPorts, and floating and fixed point are not mixed.
    pub(crate) fn supports(c: &Compiled) -> bool {
        let names: Vec<&str> = c.models.iter().map(|m| m.name()).collect();
        let mixed = names.iter().any(|n| n.ends_with("BitAcc"))
            && names.iter().any(|n| n.ends_with("Float"));
        !mixed
            && names.iter().enumerate().all(|(l, n)| {
                GPU_MODELS.contains(n)
                    || c.ports[l]
                        .iter()
                        .all(|(_, k)| matches!(k, PortKind::Ref | PortKind::Var))
            })
    }

    /// Places the compiled network on the GPU; `c.vars` holds the host values (after the
    /// CPU model builders converted their types).
    pub(crate) fn new(
        c: &mut Compiled,
        model_names: &[String],
        fixed: bool,
        rt: &RuntimeHandle,
        on_cpu: &[bool],
    ) -> Result<GpuExec, NeuroError> {
        if rt.gpu_count() == 0 {
            return Err(NeuroError::NoGpu);
        }
        let (elem, kernels) = if fixed {
            (Elem::I32, kernels(rt, Elem::I32)?)
        } else {
            match kernels(rt, Elem::F64) {
                Ok(k) => (Elem::F64, k),
                Err(e) => {
                    tracing::info!("no f64 on the GPU ({e}); floating point runs in f32");
                    (Elem::F32, kernels(rt, Elem::F32)?)
                }
            }
        };
        let fixed_elem = elem;
        let n_leaves = c.names.len();
        let mut bufs: Vec<Buf> = Vec::new();
        let mut var_buf: Vec<Vec<Option<usize>>> =
            c.vars.iter().map(|v| vec![None; v.len()]).collect();
        let mut out_buf: Vec<Vec<Option<usize>>> =
            c.ports.iter().map(|p| vec![None; p.len()]).collect();
        let add = |bufs: &mut Vec<Buf>, b: Buf| {
            bufs.push(b);
            bufs.len() - 1
        };
        let var_ix = |l: usize, name: &str| c.var_names[l].iter().position(|v| v == name);
        let port_ix = |l: usize, name: &str| c.ports[l].iter().position(|(p, _)| p == name);
        // Out buffers.
        for (l, slots) in out_buf.iter_mut().enumerate() {
            for (i, (_, kind)) in c.ports[l].iter().enumerate() {
                if *kind == PortKind::Out {
                    let n = c.outs[l][i].len();
                    slots[i] = Some(add(
                        &mut bufs,
                        to_buf(rt, &Data::F64(vec![0.0; n]), fixed_elem),
                    ));
                }
            }
        }
        // Receives: an accumulation buffer per InPort, filled by accum ops.
        let recv = |bufs: &mut Vec<Buf>, ops: &mut Vec<Op>, l: usize, p: usize| -> usize {
            let n = c.outs[l][p].len().max(
                // InPorts have no out slot; their shape is the sources' length.
                c.wiring.in_srcs[l][p]
                    .first()
                    .map_or(0, |&(a, o)| c.outs[a][o].len()),
            );
            let b = add(bufs, to_buf(rt, &Data::F64(vec![0.0; n]), fixed_elem));
            for (k, &(a, o)) in c.wiring.in_srcs[l][p].iter().enumerate() {
                let src = out_buf[a][o].expect("OutPorts have buffers");
                ops.push(Op {
                    kernel: K::Accum,
                    words: consts([n as u32, 0, 1, (k == 0) as u32, 0, 0, 0, 0]),
                    bufs: vec![src, b],
                    n,
                });
            }
            b
        };
        let mut early = Vec::new();
        let mut ops = Vec::new();
        let mut post = Vec::new();
        let mut lif_params = Vec::new();
        let mut max_steps = u64::MAX;
        let mut host_leaves = Vec::new();
        let mut event_synapses = 0usize;
        let mut leaf_ops = vec![0..0; n_leaves];
        for &l in &c.order {
            if on_cpu[l] {
                host_leaves.push(l);
                continue;
            }
            let first_op = ops.len();
            let model = model_names[l].as_str();
            let name = &c.names[l];
            let missing =
                |what: &str| NeuroError::GpuUnsupported(format!("process `{name}` lacks {what}"));
            match model {
                "PyLifModelFloat" | "PyLifModelBitAcc" => {
                    let a_in = port_ix(l, "a_in").ok_or_else(|| missing("a_in"))?;
                    let s_out = port_ix(l, "s_out").ok_or_else(|| missing("s_out"))?;
                    let n = c.vars[l][0].len();
                    let a = recv(&mut bufs, &mut ops, l, a_in);
                    // recv sizes from the sources; without any it made a 0-length buffer.
                    let a = if c.wiring.in_srcs[l][a_in].is_empty() {
                        add(&mut bufs, to_buf(rt, &Data::F64(vec![0.0; n]), fixed_elem))
                    } else {
                        a
                    };
                    let mut vb = Vec::new();
                    let names: &[&str] = if fixed {
                        &["u", "v", "bias_mant", "bias_exp"]
                    } else {
                        &["u", "v", "bias_mant"]
                    };
                    for v in names {
                        let i = var_ix(l, v).ok_or_else(|| missing(v))?;
                        let b = add(&mut bufs, to_buf(rt, &c.vars[l][i], fixed_elem));
                        var_buf[l][i] = Some(b);
                        vb.push(b);
                    }
                    let s = out_buf[l][s_out].expect("s_out is an OutPort");
                    let mut all = vec![a];
                    all.extend(vb);
                    let scal_b = if fixed {
                        None
                    } else {
                        let b = add(&mut bufs, to_buf(rt, &Data::F64(vec![0.0; 3]), fixed_elem));
                        all.push(b);
                        Some(b)
                    };
                    all.push(s);
                    lif_params.push((l, ops.len(), scal_b));
                    ops.push(Op {
                        kernel: K::Lif,
                        words: consts([n as u32, 0, 0, 0, 0, 0, 0, 0]),
                        bufs: all,
                        n,
                    });
                }
                "PyDenseModelFloat"
                | "PyDenseModelBitAcc"
                | "PySparseModelFloat"
                | "PySparseModelBitAcc" => {
                    let w_i = var_ix(l, "weights").ok_or_else(|| missing("weights"))?;
                    let a_i = var_ix(l, "a_buff").ok_or_else(|| missing("a_buff"))?;
                    let scalar = |v: &str| -> Result<i32, NeuroError> {
                        let i = var_ix(l, v).ok_or_else(|| missing(v))?;
                        Ok(c.vars[l][i].to_i32()[0])
                    };
                    let n_out = c.vars[l][a_i].len();
                    let n_in = c.vars[l][w_i].len() / n_out.max(1);
                    let graded = scalar("num_message_bits")? > 0;
                    let we = scalar("weight_exp")?;
                    if fixed {
                        let mode = match scalar("sign_mode")? {
                            1 => Some(SignMode::Mixed),
                            2 => Some(SignMode::Excitatory),
                            3 => Some(SignMode::Inhibitory),
                            _ => None,
                        };
                        let bits = scalar("num_weight_bits")?;
                        let w = c.vars[l][w_i].as_i32_mut("weights")?;
                        process_weights(w, mode, bits);
                    }
                    let w = c.vars[l][w_i].to_f64();
                    let (row_ptr, mut cols, vals, n_in) =
                        match (var_ix(l, "row_ptr"), var_ix(l, "cols")) {
                            (Some(p), Some(cc)) => {
                                let cols: Vec<u32> =
                                    c.vars[l][cc].to_i32().iter().map(|&x| x as u32).collect();
                                let n_in = cols.iter().max().map_or(0, |&m| m as usize + 1);
                                let ptr = c.vars[l][p].to_i32().iter().map(|&x| x as u32).collect();
                                (ptr, cols, w, n_in)
                            }
                            _ => {
                                let mut row_ptr = vec![0u32];
                                let mut cols = Vec::new();
                                let mut vals = Vec::new();
                                for row in w.chunks_exact(n_in.max(1)).take(n_out) {
                                    for (j, &x) in row.iter().enumerate() {
                                        if x != 0.0 {
                                            cols.push(j as u32);
                                            vals.push(x);
                                        }
                                    }
                                    row_ptr.push(cols.len() as u32);
                                }
                                (row_ptr, cols, vals, n_in)
                            }
                        };
                    let ab = add(&mut bufs, to_buf(rt, &c.vars[l][a_i], fixed_elem));
                    var_buf[l][a_i] = Some(ab);
                    let a_out = port_ix(l, "a_out").ok_or_else(|| missing("a_out"))?;
                    let s_in = port_ix(l, "s_in").ok_or_else(|| missing("s_in"))?;
                    early.push(Op {
                        kernel: K::Gather,
                        words: consts([n_out as u32, 0, 1, 0, 0, 0, 0, 0]),
                        bufs: vec![ab, out_buf[l][a_out].expect("a_out is an OutPort")],
                        n: n_out,
                    });
                    let s = if c.wiring.in_srcs[l][s_in].is_empty() {
                        add(
                            &mut bufs,
                            to_buf(rt, &Data::F64(vec![0.0; n_in]), fixed_elem),
                        )
                    } else {
                        recv(&mut bufs, &mut ops, l, s_in)
                    };
                    let words = consts([
                        n_out as u32,
                        graded as u32,
                        we as u32,
                        fixed as u32,
                        0,
                        0,
                        0,
                        0,
                    ]);
                    if kernels.event.is_some() {
                        // Event-driven: columns (CSC), a list of the neurons that spiked,
                        // atomic adds into an accumulator, then a_buff.
                        let (col_ptr, rows, cvals) = csr_to_csc(&row_ptr, &cols, &vals, n_in);
                        let cp = add(&mut bufs, Buf::U(rt.array_from(col_ptr)));
                        let rb = add(&mut bufs, Buf::U(rt.array_from(nonempty(rows))));
                        let vb = add(&mut bufs, to_buf(rt, &Data::F64(cvals), fixed_elem));
                        let active = add(&mut bufs, Buf::W(rt.array(n_in.max(1))));
                        let count = add(&mut bufs, Buf::W(rt.array(1)));
                        let acc = add(
                            &mut bufs,
                            match fixed_elem {
                                Elem::I32 => Buf::I(rt.array(n_out.max(1))),
                                _ => Buf::W(rt.array(n_out.max(1))),
                            },
                        );
                        let with_n = |n: usize| {
                            let mut w = words;
                            w[0] = Word::Const(n as u32);
                            w
                        };
                        ops.push(Op {
                            kernel: K::Event(0),
                            words: with_n(n_out),
                            bufs: vec![acc, count],
                            n: n_out,
                        });
                        ops.push(Op {
                            kernel: K::Event(1),
                            words: with_n(n_in),
                            bufs: vec![s, active, count],
                            n: n_in,
                        });
                        ops.push(Op {
                            kernel: K::Event(2),
                            words: with_n(n_in),
                            bufs: vec![cp, rb, vb, s, active, count, acc],
                            n: n_in,
                        });
                        ops.push(Op {
                            kernel: K::Event(3),
                            words: with_n(n_out),
                            bufs: vec![acc, ab],
                            n: n_out,
                        });
                        event_synapses += 1;
                    } else {
                        cols.resize(cols.len().max(1), 0);
                        let pb = add(&mut bufs, Buf::U(rt.array_from(row_ptr)));
                        let cb = add(&mut bufs, Buf::U(rt.array_from(cols)));
                        let vb = add(&mut bufs, to_buf(rt, &Data::F64(vals), fixed_elem));
                        ops.push(Op {
                            kernel: K::Dense,
                            words,
                            bufs: vec![pb, cb, vb, s, ab],
                            n: n_out,
                        });
                    }
                }
                "PySourceModel" => {
                    let d = var_ix(l, "data").ok_or_else(|| missing("data"))?;
                    let o = port_ix(l, "s_out").ok_or_else(|| missing("s_out"))?;
                    let n = c.outs[l][o].len();
                    let t = (c.vars[l][d].len() / n.max(1)) as u32;
                    let db = add(&mut bufs, to_buf(rt, &c.vars[l][d], fixed_elem));
                    var_buf[l][d] = Some(db);
                    let mut words = consts([n as u32, 0, t, 0, 0, 0, 0, 0]);
                    words[1] = Word::Column {
                        modulo: t,
                        scale: 1,
                    };
                    ops.push(Op {
                        kernel: K::Gather,
                        words,
                        bufs: vec![db, out_buf[l][o].expect("s_out is an OutPort")],
                        n,
                    });
                }
                "PySinkModel" => {
                    let d = var_ix(l, "data").ok_or_else(|| missing("data"))?;
                    let p = port_ix(l, "a_in").ok_or_else(|| missing("a_in"))?;
                    let total = c.vars[l][d].len();
                    let src_n = c.wiring.in_srcs[l][p]
                        .first()
                        .map_or(0, |&(a, o)| c.outs[a][o].len());
                    if src_n == 0 {
                        continue;
                    }
                    let t = (total / src_n) as u32;
                    let db = add(&mut bufs, to_buf(rt, &c.vars[l][d], fixed_elem));
                    var_buf[l][d] = Some(db);
                    let r = recv(&mut bufs, &mut ops, l, p);
                    let mut words = consts([src_n as u32, 0, t, 0, 0, 0, 0, 0]);
                    words[1] = Word::Column {
                        modulo: t,
                        scale: 1,
                    };
                    ops.push(Op {
                        kernel: K::Scatter,
                        words,
                        bufs: vec![r, db],
                        n: src_n,
                    });
                }
                "PySpikeCounter" => {
                    let d = var_ix(l, "count").ok_or_else(|| missing("count"))?;
                    let p = port_ix(l, "s_in").ok_or_else(|| missing("s_in"))?;
                    let n = c.vars[l][d].len();
                    let db = add(&mut bufs, to_buf(rt, &c.vars[l][d], fixed_elem));
                    var_buf[l][d] = Some(db);
                    if c.wiring.in_srcs[l][p].is_empty() {
                        continue;
                    }
                    let r = recv(&mut bufs, &mut ops, l, p);
                    ops.push(Op {
                        kernel: K::Accum,
                        words: consts([n as u32, 0, 1, 0, 0, 0, 0, 0]),
                        bufs: vec![r, db],
                        n,
                    });
                }
                "PyMonitorModel" => {
                    for (i, (pname, kind)) in c.ports[l].iter().enumerate() {
                        let Some(k) = pname.strip_prefix("probe_") else {
                            continue;
                        };
                        let d =
                            var_ix(l, &format!("data_{k}")).ok_or_else(|| missing("probe data"))?;
                        let total = c.vars[l][d].len();
                        let db = add(&mut bufs, to_buf(rt, &c.vars[l][d], fixed_elem));
                        var_buf[l][d] = Some(db);
                        match kind {
                            PortKind::Ref => {
                                let Some((tl, tv)) = c.wiring.refs[l][i] else {
                                    continue;
                                };
                                let len = c.vars[tl][tv].len();
                                max_steps = max_steps.min((total / len.max(1)) as u64);
                                post.push((tl, tv, db, len));
                            }
                            _ => {
                                let Some(&(a, o)) = c.wiring.in_srcs[l][i].first() else {
                                    continue;
                                };
                                let len = c.outs[a][o].len();
                                max_steps = max_steps.min((total / len.max(1)) as u64);
                                let r = recv(&mut bufs, &mut ops, l, i);
                                let mut words = consts([len as u32, 0, 1, 0, 0, 0, 0, 0]);
                                words[1] = Word::Column {
                                    modulo: u32::MAX,
                                    scale: len as u32,
                                };
                                ops.push(Op {
                                    kernel: K::Scatter,
                                    words,
                                    bufs: vec![r, db],
                                    n: len,
                                });
                            }
                        }
                    }
                }
                other => {
                    // A CPU process in a GPU network: allowed when it talks only through
                    // RefPorts/VarPorts (the tutorial's P1); the run syncs at its steps.
                    if c.ports[l]
                        .iter()
                        .all(|(_, k)| matches!(k, PortKind::Ref | PortKind::Var))
                    {
                        host_leaves.push(l);
                        continue;
                    }
                    return Err(NeuroError::NoProcessModel {
                        process: name.clone(),
                        process_type: other.to_string(),
                        tag: Some("gpu".into()),
                        available: vec![
                            "GPU models exist for LIF, Dense, SpikeSource, SpikeSink, Monitor; other processes may join a GPU network through RefPorts only"
                                .into(),
                        ],
                    });
                }
            }
            leaf_ops[l] = first_op..ops.len();
        }
        // Monitor Var probes read after the step (POST_MGMT); the Vars must be on the device.
        let mut post_ops = Vec::new();
        for (tl, tv, db, len) in post {
            let src = match var_buf[tl][tv] {
                Some(b) => b,
                None => {
                    return Err(NeuroError::GpuUnsupported(format!(
                        "monitor probe of `{}.{}`: that Var is not on the device (probe u, v, bias_mant, a_buff or data)",
                        c.names[tl], c.var_names[tl][tv]
                    )))
                }
            };
            let mut words = consts([len as u32, 0, 1, 0, 0, 0, 0, 0]);
            words[1] = Word::Column {
                modulo: u32::MAX,
                scale: len as u32,
            };
            post_ops.push(Op {
                kernel: K::Scatter,
                words,
                bufs: vec![src, db],
                n: len,
            });
        }
        c.description += &if kernels.event.is_some() {
            format!("GPU synapses: event-driven ({event_synapses} Dense/Sparse: compacted spikes, atomic scatter)\n")
        } else {
            "GPU synapses: row gather over every stored weight (no atomics for this element type)\n"
                .to_string()
        };
        let shift = early.len();
        let post = shift + ops.len();
        let leaf_ops = leaf_ops
            .into_iter()
            .map(|r| r.start + shift..r.end + shift)
            .collect();
        let mut all = early;
        all.extend(ops);
        all.extend(post_ops);
        let scal = lif_params.iter().map(|&(_, _, b)| b).collect();
        let lif_params = lif_params
            .into_iter()
            .map(|(l, i, _)| (l, i + shift))
            .collect();
        Ok(GpuExec {
            rt: rt.clone(),
            kernels,
            bufs,
            var_buf,
            ops: all,
            lif_params,
            max_steps,
            fixed,
            vth_eff: vec![None; n_leaves],
            scal,
            elem,
            host_leaves,
            out_buf,
            early: shift,
            leaf_ops,
            post,
        })
    }

    /// The ops of the early half.
    pub(crate) fn early_ops(&self) -> std::ops::Range<usize> {
        0..self.early
    }

    /// The ops of leaf `l` (its receives and update).
    pub(crate) fn leaf_ops(&self, l: usize) -> std::ops::Range<usize> {
        self.leaf_ops[l].clone()
    }

    /// The Monitors' Var probes (after the step's management phases).
    pub(crate) fn post_ops(&self) -> std::ops::Range<usize> {
        self.post..self.ops.len()
    }

    /// Writes the host message of OutPort `(l, o)` into its device buffer (a host write:
    /// the coherence tracker moves it to the GPU before the next GPU step reads it).
    pub(crate) async fn upload_out(
        &self,
        l: usize,
        o: usize,
        msg: &Data,
    ) -> Result<(), NeuroError> {
        match self.out_buf[l][o] {
            Some(b) => finish(self.write(b, msg)).await,
            None => Ok(()),
        }
    }

    /// Reads the device message of OutPort `(l, o)` (`len` elements; a move to the host).
    pub(crate) async fn download_out(
        &self,
        l: usize,
        o: usize,
        len: usize,
    ) -> Result<Data, NeuroError> {
        let Some(b) = self.out_buf[l][o] else {
            return Ok(Data::F64(vec![0.0; len]));
        };
        read(self.bufs[b].clone(), len).await
    }

    /// The read of a device Var (converted to the host element type of its model), None
    /// when the Var is not on the device. The future borrows nothing of `self`.
    pub(crate) fn get(
        &self,
        l: usize,
        v: usize,
        len: usize,
    ) -> Option<impl std::future::Future<Output = Result<Data, NeuroError>> + 'static> {
        let b = self.var_buf[l][v]?;
        Some(read(self.bufs[b].clone(), len))
    }

    /// Writes a device Var from the host (a CPU task: the coherence tracker invalidates the
    /// device copy and uploads it before the next step); the returned future is the task's
    /// end, None when the Var is not on the device.
    pub(crate) fn set(
        &self,
        l: usize,
        v: usize,
        value: &Data,
    ) -> Option<impl std::future::Future<Output = Result<(), NeuroError>> + 'static> {
        let b = self.var_buf[l][v]?;
        Some(finish(self.write(b, value)))
    }

    /// Spawns the CPU task writing `value` into buffer `b`.
    fn write(&self, b: usize, value: &Data) -> crate::TaskHandle<()> {
        fn put<T: bytemuck::Pod + Send + Sync>(
            rt: &RuntimeHandle,
            a: Array<T>,
            vals: Vec<T>,
        ) -> crate::TaskHandle<()> {
            let a2 = a.clone();
            rt.task("neuro set")
                .writes(&a)
                .on(Placement::Cpu)
                .cpu(move |cx| {
                    let w = cx.write(&a2);
                    let n = vals.len().min(w.len());
                    w[..n].copy_from_slice(&vals[..n]);
                })
                .spawn()
        }
        match self.bufs[b].clone() {
            Buf::F(a) => put(
                &self.rt,
                a,
                value.to_f64().iter().map(|&x| x as f32).collect(),
            ),
            Buf::D(a) => put(&self.rt, a, value.to_f64()),
            Buf::I(a) => put(&self.rt, a, value.to_i32()),
            Buf::U(a) | Buf::W(a) => put(
                &self.rt,
                a,
                value.to_i32().iter().map(|&x| x as u32).collect(),
            ),
        }
    }

    /// The element type the network runs in on the device.
    pub(crate) fn elem(&self) -> Elem {
        self.elem
    }

    /// Checks that a run of `steps` from `time_step` fits the monitors and loads LIF's scalar
    /// parameters from `host_vars` (so a host `set` of du, dv or vth counts from this run).
    pub(crate) async fn prepare(
        &mut self,
        time_step: u64,
        steps: u64,
        host_vars: &[Vec<Data>],
    ) -> Result<(), NeuroError> {
        if time_step + steps > self.max_steps {
            return Err(NeuroError::Invalid {
                what: "monitor buffer".into(),
                reason: format!(
                    "the run would reach step {}, beyond the {} steps the monitors were created for",
                    time_step + steps,
                    self.max_steps
                ),
            });
        }
        // LIF parameters: du, dv, vth (vth_eff cached at the first step in fixed point).
        for k in 0..self.lif_params.len() {
            let (l, op) = self.lif_params[k];
            let get = |i: usize| &host_vars[l][i];
            let (du, dv, vth) = (get(4), get(5), get(6));
            let words = if self.fixed {
                let vth_eff = *self.vth_eff[l].get_or_insert(vth.to_i32()[0].wrapping_shl(6));
                [
                    du.to_i32()[0] as u32,
                    dv.to_i32()[0] as u32,
                    vth_eff as u32,
                    0,
                ]
            } else {
                [
                    (du.to_f64()[0] as f32).to_bits(),
                    (dv.to_f64()[0] as f32).to_bits(),
                    (vth.to_f64()[0] as f32).to_bits(),
                    0,
                ]
            };
            for (j, w) in words.into_iter().enumerate() {
                self.ops[op].words[4 + j] = Word::Const(w);
            }
            if let Some(b) = self.scal[k] {
                let vals = Data::F64(vec![du.to_f64()[0], dv.to_f64()[0], vth.to_f64()[0]]);
                finish(self.write(b, &vals)).await?;
            }
        }
        Ok(())
    }

    /// Encodes and runs steps `time_step + 1 ..= time_step + steps`; returns how many ran
    /// (fewer when `pause` was raised between submissions).
    pub(crate) async fn advance(
        &self,
        time_step: u64,
        steps: u64,
        pause: &AtomicBool,
    ) -> Result<u64, NeuroError> {
        let mut done = 0;
        while done < steps {
            if pause.load(Ordering::Acquire) {
                break;
            }
            let chunk = (steps - done).min(STEPS_PER_SUBMIT);
            let t0 = time_step + done;
            self.submit(t0, chunk).await?;
            done += chunk;
        }
        Ok(done)
    }

    async fn submit(&self, t0: u64, chunk: u64) -> Result<(), NeuroError> {
        let all = 0..self.ops.len();
        self.submit_ops(t0, chunk, std::slice::from_ref(&all)).await
    }

    /// Runs the ops in `ranges` of step `t` as one GPU task (a mixed network's part of a
    /// step); nothing when the ranges are empty.
    pub(crate) async fn step_ops(
        &self,
        t: u64,
        ranges: &[std::ops::Range<usize>],
    ) -> Result<(), NeuroError> {
        if ranges.iter().all(|r| r.is_empty()) {
            return Ok(());
        }
        self.submit_ops(t - 1, 1, ranges).await
    }

    async fn submit_ops(
        &self,
        t0: u64,
        chunk: u64,
        ranges: &[std::ops::Range<usize>],
    ) -> Result<(), NeuroError> {
        let mut b = self.rt.task("neuro steps").on(Placement::Gpu(0));
        for buf in &self.bufs {
            b = match buf {
                Buf::F(a) => b.read_write(a),
                Buf::D(a) => b.read_write(a),
                Buf::I(a) => b.read_write(a),
                Buf::U(a) => b.reads(a),
                Buf::W(a) => b.read_write(a),
            };
        }
        let bufs = self.bufs.clone();
        type Dispatch = (Kernel, Vec<[u32; 8]>, Vec<usize>, [u32; 3]);
        let plan: Vec<Dispatch> = ranges
            .iter()
            .flat_map(|r| self.ops[r.clone()].iter())
            .map(|op| {
                let k = match op.kernel {
                    K::Gather => &self.kernels.gather,
                    K::Scatter => &self.kernels.scatter,
                    K::Accum => &self.kernels.accum,
                    K::Lif => &self.kernels.lif,
                    K::Dense => &self.kernels.dense,
                    K::Event(i) => match &self.kernels.event {
                        Some(ev) => &ev[i],
                        None => &self.kernels.dense,
                    },
                };
                let words: Vec<[u32; 8]> = (0..chunk)
                    .map(|s| {
                        let t = t0 + s + 1;
                        op.words.map(|w| match w {
                            Word::Const(c) => c,
                            Word::Column { modulo, scale } => {
                                (((t - 1) % modulo as u64) as u32).wrapping_mul(scale)
                            }
                        })
                    })
                    .collect();
                (
                    k.clone(),
                    words,
                    op.bufs.clone(),
                    [(op.n.div_ceil(64)).max(1) as u32, 1, 1],
                )
            })
            .collect();
        let h = b
            .gpu(move |cx| {
                for s in 0..chunk as usize {
                    for (k, words, ix, groups) in &plan {
                        let u = Uniform(words[s]);
                        let mut args: Vec<&dyn crate::task::KernelArg> = vec![&u];
                        args.extend(ix.iter().map(|&i| bufs[i].arg()));
                        cx.dispatch_dyn(k, &args, *groups);
                    }
                }
            })
            .spawn();
        finish(h).await
    }
}
