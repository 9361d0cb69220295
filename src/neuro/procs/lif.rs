//! LIF neurons (Lava's `LIF`): floating point (`PyLifModelFloat`) and bit-accurate fixed
//! point (`PyLifModelBitAcc`), exactly as MODELS.md §2 and §3 write them.

use crate::neuro::model::{Cx, ModelBuild, ModelSpec, Part, PortIx, ProcessModel, VarIx};
use crate::neuro::{Data, InPort, Network, NeuroError, OutPort, Process, Var, VarType};

/// Parameters of a LIF population (values as given to Lava's `LIF(...)`; the fixed-point
/// model converts them to integers).
#[derive(Debug, Clone, PartialEq)]
pub struct LifParams {
    /// Number of neurons.
    pub n: usize,
    /// Initial current, per neuron.
    pub u: Vec<f64>,
    /// Initial voltage, per neuron.
    pub v: Vec<f64>,
    /// Current decay.
    pub du: f64,
    /// Voltage decay.
    pub dv: f64,
    /// Bias mantissa, per neuron.
    pub bias_mant: Vec<f64>,
    /// Bias exponent, per neuron (fixed point only).
    pub bias_exp: Vec<f64>,
    /// Threshold.
    pub vth: f64,
}

impl LifParams {
    /// `n` neurons, everything zero, threshold 10 (Lava's default).
    pub fn new(n: usize) -> LifParams {
        LifParams {
            n,
            u: vec![0.0; n],
            v: vec![0.0; n],
            du: 0.0,
            dv: 0.0,
            bias_mant: vec![0.0; n],
            bias_exp: vec![0.0; n],
            vth: 10.0,
        }
    }
    /// Sets the initial current.
    pub fn u(mut self, u: Vec<f64>) -> Self {
        self.u = u;
        self
    }
    /// Sets the initial voltage.
    pub fn v(mut self, v: Vec<f64>) -> Self {
        self.v = v;
        self
    }
    /// Sets du.
    pub fn du(mut self, du: f64) -> Self {
        self.du = du;
        self
    }
    /// Sets dv.
    pub fn dv(mut self, dv: f64) -> Self {
        self.dv = dv;
        self
    }
    /// Sets the bias mantissa.
    pub fn bias_mant(mut self, b: Vec<f64>) -> Self {
        self.bias_mant = b;
        self
    }
    /// Sets the bias exponent.
    pub fn bias_exp(mut self, b: Vec<f64>) -> Self {
        self.bias_exp = b;
        self
    }
    /// Sets the threshold.
    pub fn vth(mut self, vth: f64) -> Self {
        self.vth = vth;
        self
    }
}

const U: VarIx = VarIx(0);
const V: VarIx = VarIx(1);
const BIAS_MANT: VarIx = VarIx(2);
const BIAS_EXP: VarIx = VarIx(3);
const DU: VarIx = VarIx(4);
const DV: VarIx = VarIx(5);
const VTH: VarIx = VarIx(6);
const A_IN: PortIx = PortIx(0);
const S_OUT: PortIx = PortIx(1);

/// A LIF population: Vars `u`, `v`, `bias_mant`, `bias_exp` (shape `[n]`), `du`, `dv`,
/// `vth` (shape `[1]`); ports `a_in` (InPort) and `s_out` (OutPort). Models:
/// `PyLifModelFloat` (tag `floating_pt`) and `PyLifModelBitAcc` (tags `fixed_pt`,
/// `bit_accurate_loihi`).
#[derive(Clone, Debug)]
pub struct Lif {
    proc: Process,
}

impl Lif {
    /// Declares a LIF population in `net`.
    pub fn new(net: &Network, name: &str, p: LifParams) -> Result<Lif, NeuroError> {
        for (what, len) in [
            ("u", p.u.len()),
            ("v", p.v.len()),
            ("bias_mant", p.bias_mant.len()),
            ("bias_exp", p.bias_exp.len()),
        ] {
            if len != p.n {
                return Err(NeuroError::Invalid {
                    what: format!("LIF `{name}` {what}"),
                    reason: format!("{len} values for {} neurons", p.n),
                });
            }
        }
        let n = p.n;
        let proc = net
            .process(name, "LIF")
            .var("u", &[n], p.u)
            .var("v", &[n], p.v)
            .var("bias_mant", &[n], p.bias_mant)
            .var("bias_exp", &[n], p.bias_exp)
            .var("du", &[1], vec![p.du])
            .var("dv", &[1], vec![p.dv])
            .var("vth", &[1], vec![p.vth])
            .in_port("a_in", &[n])
            .out_port("s_out", &[n])
            .model(ModelSpec::leaf("PyLifModelFloat", &["floating_pt"], |b| {
                Ok(Box::new(LifFloat::new(b)))
            }))
            .model(ModelSpec::leaf(
                "PyLifModelBitAcc",
                &["fixed_pt", "bit_accurate_loihi"],
                |b| Ok(Box::new(LifFixed::new(b))),
            ))
            .build()?;
        Ok(Lif { proc })
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.proc
    }
    fn var_h(&self, name: &str) -> Var {
        self.proc.var(name).expect("LIF declares this Var")
    }
    /// Var `u`.
    pub fn u(&self) -> Var {
        self.var_h("u")
    }
    /// Var `v`.
    pub fn v(&self) -> Var {
        self.var_h("v")
    }
    /// Var `bias_mant`.
    pub fn bias_mant(&self) -> Var {
        self.var_h("bias_mant")
    }
    /// Var `vth`.
    pub fn vth(&self) -> Var {
        self.var_h("vth")
    }
    /// InPort `a_in`.
    pub fn a_in(&self) -> InPort {
        self.proc.in_port("a_in").expect("LIF declares this port")
    }
    /// OutPort `s_out`.
    pub fn s_out(&self) -> OutPort {
        self.proc.out_port("s_out").expect("LIF declares this port")
    }
}

struct LifFloat {
    a_in: Vec<f64>,
}

impl LifFloat {
    fn new(b: &mut ModelBuild<'_>) -> LifFloat {
        for v in [U, V, BIAS_MANT, BIAS_EXP, DU, DV, VTH] {
            b.set_dtype(v, VarType::F64);
        }
        LifFloat {
            a_in: vec![0.0; b.var_shape(U)[0]],
        }
    }
}

impl ProcessModel for LifFloat {
    fn name(&self) -> &str {
        "PyLifModelFloat"
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let n = self.a_in.len();
        let pool = cx.pool();
        // One connection: read the sender's buffer in place; else sum into a_in.
        let msg = match cx.recv_borrow(A_IN, n) {
            Some(Data::F64(m)) => Some(m.as_slice()),
            _ => None,
        };
        if msg.is_none() {
            cx.recv_f64(A_IN, &mut self.a_in)?;
        }
        let input: &[f64] = msg.unwrap_or(&self.a_in);
        let (vars, out) = cx.vars_and_out_f64(S_OUT, n);
        let du = vars[DU.0].as_f64("du")?[0];
        let dv = vars[DV.0].as_f64("dv")?[0];
        let vth = vars[VTH.0].as_f64("vth")?[0];
        let (uv, rest) = vars.split_at_mut(2);
        let (u, v) = uv.split_at_mut(1);
        let u = u[0].as_f64_mut("u")?;
        let v = v[0].as_f64_mut("v")?;
        let bias = rest[0].as_f64("bias_mant")?;
        let (cu, cv) = (1.0 - du, 1.0 - dv);
        let chunk = n.div_ceil(pool.parts(n)).max(1);
        let parts: Vec<Part<'_>> = u
            .chunks_mut(chunk)
            .zip(v.chunks_mut(chunk))
            .zip(bias.chunks(chunk).zip(input.chunks(chunk)))
            .zip(out.chunks_mut(chunk))
            .map(|(((u, v), (bias, a)), s)| {
                Box::new(move || {
                    lif_float(u, v, bias, a, s, (cu, cv, vth));
                    Ok(())
                }) as Part<'_>
            })
            .collect();
        pool.run(parts)
    }
}

/// Defines `$name(args)`, which runs `$body(args)` compiled for AVX2 (as `$avx`) where the
/// CPU has it and for the target's baseline elsewhere. `$body` is `#[inline(always)]`, so
/// each caller gets its own copy of the loop, vectorized for its instruction set.
macro_rules! avx2_or_baseline {
    ($(#[$m:meta])* fn $name:ident, $avx:ident => $body:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { $avx($($arg),*) };
            }
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

avx2_or_baseline! {
    /// One part of the floating-point update (MODELS.md §2): input `a`, spikes into `s`.
    /// The loop has no branches, so both versions are vectorized, the AVX2 one 4 lanes
    /// wide. The same operations in the same order either way (no fused multiply-add), so
    /// the same numbers.
    fn lif_float, lif_float_avx2 => lif_float_loop(
        u: &mut [f64],
        v: &mut [f64],
        bias: &[f64],
        a: &[f64],
        s: &mut [f64],
        k: (f64, f64, f64),
    )
}

#[inline(always)]
fn lif_float_loop(
    u: &mut [f64],
    v: &mut [f64],
    bias: &[f64],
    a: &[f64],
    s: &mut [f64],
    (cu, cv, vth): (f64, f64, f64),
) {
    let n = u.len();
    let (v, bias, a, s) = (&mut v[..n], &bias[..n], &a[..n], &mut s[..n]);
    for i in 0..n {
        let ui = u[i] * cu + a[i];
        u[i] = ui;
        let vi = v[i] * cv + ui + bias[i];
        let spike = vi > vth;
        v[i] = if spike { 0.0 } else { vi };
        s[i] = if spike { 1.0 } else { 0.0 };
    }
}

/// Half-range of the 24-bit state: 2^23.
const H: i32 = 1 << 23;

struct LifFixed {
    a_in: Vec<i32>,
    vth_eff: Option<i32>,
}

impl LifFixed {
    fn new(b: &mut ModelBuild<'_>) -> LifFixed {
        for v in [U, V, BIAS_MANT, BIAS_EXP, DU, DV, VTH] {
            b.set_dtype(v, VarType::I32);
        }
        LifFixed {
            a_in: vec![0; b.var_shape(U)[0]],
            vth_eff: None,
        }
    }
}

/// `sign(p) * (|p| >> 12)`: the decay's truncation toward zero.
#[inline(always)]
fn decay(x: i32, factor: i64) -> i32 {
    let p = x as i64 * factor;
    let m = (p.abs() >> 12) as i32;
    if p < 0 {
        -m
    } else {
        m
    }
}

impl ProcessModel for LifFixed {
    fn name(&self) -> &str {
        "PyLifModelBitAcc"
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let n = self.a_in.len();
        let pool = cx.pool();
        let msg = match cx.recv_borrow(A_IN, n) {
            Some(Data::I32(m)) => Some(m.as_slice()),
            _ => None,
        };
        if msg.is_none() {
            cx.recv_i32(A_IN, &mut self.a_in)?;
        }
        let input: &[i32] = msg.unwrap_or(&self.a_in);
        let (vars, out) = cx.vars_and_out_i32(S_OUT, n);
        let du = vars[DU.0].as_i32("du")?[0];
        let dv = vars[DV.0].as_i32("dv")?[0];
        let vth_eff = match self.vth_eff {
            Some(v) => v,
            None => {
                let v = vars[VTH.0].as_i32("vth")?[0].wrapping_shl(6);
                self.vth_eff = Some(v);
                v
            }
        };
        let (uv, rest) = vars.split_at_mut(2);
        let (u, v) = uv.split_at_mut(1);
        let u = u[0].as_i32_mut("u")?;
        let v = v[0].as_i32_mut("v")?;
        let bias_mant = rest[0].as_i32("bias_mant")?;
        let bias_exp = rest[1].as_i32("bias_exp")?;
        let fu = 4096 - (du as i64 + 1);
        let fv = 4096 - dv as i64;
        let chunk = n.div_ceil(pool.parts(n)).max(1);
        let parts: Vec<Part<'_>> = u
            .chunks_mut(chunk)
            .zip(v.chunks_mut(chunk))
            .zip(bias_mant.chunks(chunk).zip(bias_exp.chunks(chunk)))
            .zip(input.chunks(chunk).zip(out.chunks_mut(chunk)))
            .map(|(((u, v), bias), io)| {
                Box::new(move || {
                    lif_fixed(u, v, bias, io, (fu, fv, vth_eff));
                    Ok(())
                }) as Part<'_>
            })
            .collect();
        pool.run(parts)
    }
}

avx2_or_baseline! {
    /// One part of the bit-accurate update (MODELS.md §3): input `a`, spikes into `s`.
    /// With AVX2 the loop is vectorized (its per-neuron shifts and the 32 x 32 -> 64-bit
    /// products of the decay have vector instructions there), about 5x faster than the
    /// scalar loop on this repository's machine (1000 neurons, 5.1 -> 1.0 µs); integer
    /// arithmetic, so the same bits either way.
    fn lif_fixed, lif_fixed_avx2 => lif_fixed_loop(
        u: &mut [i32],
        v: &mut [i32],
        bias: (&[i32], &[i32]),
        io: (&[i32], &mut [i32]),
        k: (i64, i64, i32),
    )
}

#[inline(always)]
fn lif_fixed_loop(
    u: &mut [i32],
    v: &mut [i32],
    (bias_mant, bias_exp): (&[i32], &[i32]),
    (a, s): (&[i32], &mut [i32]),
    (fu, fv, vth_eff): (i64, i64, i32),
) {
    // Equal lengths, told to the compiler once, so the loop has no bounds checks.
    let n = u.len();
    let (v, bias_mant, bias_exp, a, s) = (
        &mut v[..n],
        &bias_mant[..n],
        &bias_exp[..n],
        &a[..n],
        &mut s[..n],
    );
    for i in 0..n {
        let be = bias_exp[i];
        let b = if be >= 0 {
            bias_mant[i].wrapping_shl(be as u32)
        } else {
            bias_mant[i] >> (-be).min(31)
        };
        let mut ui = decay(u[i], fu).wrapping_add(a[i].wrapping_shl(6));
        if ui > H {
            ui -= 2 * H;
        } else if ui <= -H {
            ui += 2 * H;
        }
        u[i] = ui;
        let vi = (decay(v[i], fv) as i64 + ui as i64 + b as i64)
            .clamp(-(H as i64 - 1), H as i64 - 1) as i32;
        let spike = vi > vth_eff;
        v[i] = if spike { 0 } else { vi };
        s[i] = spike as i32;
    }
}
