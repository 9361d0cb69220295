//! Lava reference files: rebuild the network a JSON file describes (schema in
//! `tests/data/lava/README.md`, a copy of `shared/reference/lava`), run it with the
//! configuration it names, and compare per step with what Lava recorded. This is what
//! `hetflow lava-check FILE.json` runs.
//!
//! A broken file is an error ([`NeuroError::Reference`]), never a partial match or an
//! aborted process: `num_steps` must be a non-negative whole number; every recorded `spikes`,
//! `u` and `v` must have exactly `num_steps` rows (checked before anything is built, so a
//! huge `num_steps` fails there instead of allocating recordings); a population's neuron
//! count is the product of its `shape` (the length of `u0` without one), so per-neuron
//! lists of another length are named as such; recordings are allocated fallibly
//! ([`NeuroError::Allocation`]). A run of ours that records a different number of rows is a
//! [`Mismatch`] naming both lengths.

use serde_json::Value;

use hetflow::neuro::{
    Dense, DenseParams, Lif, LifParams, Monitor, Network, NeuroBackend, NeuroError, RunCfg,
    SignMode, SpikeSink, SpikeSource,
};

/// Where the first difference is.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Time step (1-based); for `final_get_*` and `effective_weights`, the number of steps.
    pub step: usize,
    /// Population (or connection) name.
    pub population: String,
    /// Neuron (or flat weight) index.
    pub neuron: usize,
    /// `spikes`, `u`, `v`, `final_get_u`, `final_get_v` or `effective_weights`.
    pub quantity: String,
    /// Lava's value.
    pub expected: f64,
    /// Ours.
    pub got: f64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mismatch at step {}, population {}, neuron {}: {} expected {} got {}",
            self.step, self.population, self.neuron, self.quantity, self.expected, self.got
        )
    }
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The file's network name.
    pub name: String,
    /// The select_tag it ran with.
    pub tag: String,
    /// Steps run.
    pub num_steps: usize,
    /// The compiled process graph.
    pub process_graph: String,
    /// Values compared.
    pub compared: usize,
    /// The first difference, if any.
    pub mismatch: Option<Mismatch>,
}

impl CheckReport {
    /// Whether everything matched.
    pub fn is_match(&self) -> bool {
        self.mismatch.is_none()
    }
}

fn bad(msg: impl Into<String>) -> NeuroError {
    NeuroError::Reference(msg.into())
}

fn f64s(v: &Value, what: &str) -> Result<Vec<f64>, NeuroError> {
    v.as_array()
        .ok_or_else(|| bad(format!("`{what}` must be an array of numbers")))?
        .iter()
        .map(|x| {
            x.as_f64()
                .or_else(|| x.as_bool().map(|b| b as i32 as f64))
                .ok_or_else(|| bad(format!("`{what}` holds a non-number: {x}")))
        })
        .collect()
}

fn matrix(v: &Value, what: &str) -> Result<Vec<Vec<f64>>, NeuroError> {
    v.as_array()
        .ok_or_else(|| bad(format!("`{what}` must be an array of arrays")))?
        .iter()
        .map(|r| f64s(r, what))
        .collect()
}

fn num(v: &Value, key: &str, what: &str) -> Result<f64, NeuroError> {
    let x = &v[key];
    let x = match x.as_array() {
        Some(a) if a.len() == 1 => &a[0],
        _ => x,
    };
    x.as_f64()
        .ok_or_else(|| bad(format!("`{what}.{key}` must be a number, found {x}")))
}

/// `num_steps`: a non-negative whole number (Lava writes an integer; a whole float such as
/// `1e12` is read as one).
fn steps(v: &Value) -> Result<usize, NeuroError> {
    const WHAT: &str = "expected a non-negative whole number of time steps";
    if v.is_null() {
        return Err(bad(format!("`num_steps` missing: {WHAT}")));
    }
    if let Some(n) = v.as_u64() {
        return usize::try_from(n).map_err(|_| {
            bad(format!(
                "`num_steps` is {n}: more than this machine can count"
            ))
        });
    }
    match v.as_f64() {
        Some(x) if x < 0.0 => Err(bad(format!(
            "`num_steps` is {v}: a step count cannot be negative; {WHAT}"
        ))),
        // Below 2^53 every whole f64 is exact and fits usize on 64-bit targets.
        Some(x) if x.fract() == 0.0 && x < 9_007_199_254_740_992.0 => usize::try_from(x as u64)
            .map_err(|_| {
                bad(format!(
                    "`num_steps` is {v}: more than this machine can count"
                ))
            }),
        _ => Err(bad(format!("`num_steps` is {v}: {WHAT}"))),
    }
}

/// A population's neuron count: the product of its `shape` (checked), or the length of
/// `u0` in files without a shape.
fn neurons(p: &Value, name: &str) -> Result<usize, NeuroError> {
    let shape = &p["shape"];
    if shape.is_null() {
        return Ok(f64s(&p["u0"], "u0")?.len());
    }
    let dims: Vec<u64> = match shape.as_array() {
        Some(a) => a.iter().map(Value::as_u64).collect::<Option<_>>(),
        None => shape.as_u64().map(|d| vec![d]),
    }
    .ok_or_else(|| {
        bad(format!(
            "population `{name}`: `shape` is {shape}: expected a list of non-negative integers"
        ))
    })?;
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(|| {
            bad(format!(
                "population `{name}`: `shape` {shape} overflows usize"
            ))
        })
}

fn opt_int(v: &Value, key: &str, default: i32) -> i32 {
    v[key].as_f64().map(|x| x as i32).unwrap_or(default)
}

/// The select_tag in `Loihi2SimCfg(select_tag='fixed_pt')`.
pub fn parse_tag(run_cfg: &str) -> Option<String> {
    let i = run_cfg.find("select_tag=")? + "select_tag=".len();
    let rest = &run_cfg[i..];
    let q = rest.chars().next()?;
    let rest = &rest[q.len_utf8()..];
    let end = rest.find(q)?;
    Some(rest[..end].to_string())
}

/// Checks the reference file at `path`.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_file(
    path: &std::path::Path,
    backend: NeuroBackend,
) -> Result<CheckReport, NeuroError> {
    check_file_on(path, backend, None)
}

/// [`check_file`] on the runtime `rt` (needed by the GPU and Auto back ends; without one
/// the network makes a CPU runtime of its own).
#[cfg(not(target_arch = "wasm32"))]
pub fn check_file_on(
    path: &std::path::Path,
    backend: NeuroBackend,
    rt: Option<&hetflow::RuntimeHandle>,
) -> Result<CheckReport, NeuroError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    check_on(&parse(&text, &path.display().to_string())?, backend, rt)
}

/// The JSON of a reference file (`what` names it in the error).
pub fn parse(text: &str, what: &str) -> Result<Value, NeuroError> {
    serde_json::from_str(text).map_err(|e| bad(format!("{what} is not JSON: {e}")))
}

/// Rebuilds, runs and compares the network described by `json` (a network file, or the
/// remote-memory-access tutorial's `lava_rma.json`).
#[cfg(not(target_arch = "wasm32"))]
pub fn check(json: &Value, backend: NeuroBackend) -> Result<CheckReport, NeuroError> {
    check_on(json, backend, None)
}

/// [`check`] on the runtime `rt` (see [`check_file_on`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn check_on(
    json: &Value,
    backend: NeuroBackend,
    rt: Option<&hetflow::RuntimeHandle>,
) -> Result<CheckReport, NeuroError> {
    pollster::block_on(check_async(json, backend, rt))
}

/// [`check_on`] awaited: the same check, the run and every read of a recording awaited
/// (`Process::run_async`, `Monitor::data_async`), which is how the browser runs it
/// (`examples/web` includes this file). Natively it blocks the polling thread.
pub async fn check_async(
    json: &Value,
    backend: NeuroBackend,
    rt: Option<&hetflow::RuntimeHandle>,
) -> Result<CheckReport, NeuroError> {
    if json["implicit_connect_var"].is_object() {
        return check_rma(json, backend, rt).await;
    }
    let run_cfg = json["run_cfg"]
        .as_str()
        .ok_or_else(|| bad("`run_cfg` missing (this file is not a network file)"))?;
    let tag = parse_tag(run_cfg).ok_or_else(|| bad(format!("no select_tag in `{run_cfg}`")))?;
    let fixed = tag == "fixed_pt" || tag == "bit_accurate_loihi";
    let num_steps = steps(&json["num_steps"])?;
    let pops = json["populations"]
        .as_array()
        .ok_or_else(|| bad("`populations` missing"))?;
    let conns = json["connections"].as_array().cloned().unwrap_or_default();
    let result = &json["result"];
    // Lava recorded one row per step: a file whose recording is shorter or longer than its
    // step count is broken (and checking it would compare only part of it, or allocate
    // recordings for steps nobody recorded).
    for p in pops {
        let name = p["name"]
            .as_str()
            .ok_or_else(|| bad("population without `name`"))?;
        let rp = &result["populations"][name];
        for q in ["spikes", "spikes_from_sink_T_by_n", "u", "v"] {
            if let Some(rows) = rp[q].as_array() {
                if rows.len() != num_steps {
                    return Err(bad(format!(
                        "population `{name}`: `result.{q}` records {} steps, but `num_steps` is {num_steps}; expected one row per step",
                        rows.len()
                    )));
                }
            }
        }
    }

    let net = Network::new();
    let mon = Monitor::new(&net, "monitor")?;
    let mut lifs = Vec::new();
    let mut sinks = Vec::new();
    for p in pops {
        let name = p["name"]
            .as_str()
            .ok_or_else(|| bad("population without `name`"))?;
        let n = neurons(p, name)?;
        let params = LifParams::new(n)
            .u(f64s(&p["u0"], "u0")?)
            .v(f64s(&p["v0"], "v0")?)
            .du(num(p, "du", name)?)
            .dv(num(p, "dv", name)?)
            .bias_mant(f64s(&p["bias_mant"], "bias_mant")?)
            .bias_exp(f64s(&p["bias_exp"], "bias_exp")?)
            .vth(num(p, "vth", name)?);
        let lif = Lif::new(&net, name, params)?;
        mon.probe(&lif.u(), num_steps)?;
        mon.probe(&lif.v(), num_steps)?;
        let rp = &result["populations"][name];
        if rp["spikes_from_sink_T_by_n"].is_array() {
            let sink = SpikeSink::new(&net, &format!("{name}_sink"), n, num_steps)?;
            lif.s_out().connect(&sink.a_in())?;
            sinks.push((name.to_string(), sink));
        } else {
            mon.probe_out(&lif.s_out(), num_steps)?;
        }
        lifs.push((name.to_string(), lif));
    }
    let find = |name: &str| {
        lifs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .ok_or_else(|| bad(format!("connection names unknown population `{name}`")))
    };
    let mut denses = Vec::new();
    for c in &conns {
        let name = c["name"].as_str().unwrap_or("dense");
        let mut params = DenseParams::from_rows(&matrix(&c["weights"], "weights")?)?
            .weight_exp(opt_int(c, "weight_exp", 0))
            .num_weight_bits(opt_int(c, "num_weight_bits", 8))
            .num_message_bits(opt_int(c, "num_message_bits", 0));
        if let Some(m) = c["sign_mode"]
            .as_str()
            .or_else(|| c["sign_mode"].as_f64().map(|_| ""))
        {
            let mode = match m.to_ascii_uppercase().as_str() {
                s if s.contains("MIXED") => SignMode::Mixed,
                s if s.contains("EXC") => SignMode::Excitatory,
                s if s.contains("INH") => SignMode::Inhibitory,
                _ => match c["sign_mode"].as_f64().map(|x| x as i32) {
                    Some(1) => SignMode::Mixed,
                    Some(2) => SignMode::Excitatory,
                    Some(3) => SignMode::Inhibitory,
                    _ => return Err(bad(format!("unknown sign_mode {}", c["sign_mode"]))),
                },
            };
            params = params.sign_mode(mode);
        }
        let dense = Dense::new(&net, name, params)?;
        let pre = c["pre"]
            .as_str()
            .ok_or_else(|| bad("connection without `pre`"))?;
        if pre == "input" {
            let raster = if c["input_spikes_n_in_by_T"].is_array() {
                matrix(&c["input_spikes_n_in_by_T"], "input_spikes_n_in_by_T")?
            } else {
                matrix(&json["input_spikes_n_in_by_T"], "input_spikes_n_in_by_T")?
            };
            let src = SpikeSource::new(&net, &format!("{name}_input"), &raster)?;
            src.s_out().connect(&dense.s_in())?;
        } else {
            find(pre)?.s_out().connect(&dense.s_in())?;
        }
        let post = c["post"]
            .as_str()
            .ok_or_else(|| bad("connection without `post`"))?;
        dense.a_out().connect(&find(post)?.a_in())?;
        denses.push((name.to_string(), dense));
    }

    let mut cfg = RunCfg::sim(&tag).on(backend);
    cfg.runtime = rt.cloned();
    let start = lifs
        .first()
        .map(|(_, l)| l.process().clone())
        .ok_or_else(|| bad("no populations"))?;
    let process_graph = start.compile(&cfg)?;
    start.run_async(num_steps as u64, &cfg).await?;

    // Floating point: 1e-9 on the CPU (f64, as Lava); 1e-4 relative on the GPU (f32).
    let on_gpu = process_graph.contains("back end: Gpu");
    let rel = if on_gpu { 1e-4 } else { 1e-9 };
    let tol = |e: f64, g: f64| {
        if fixed {
            e == g
        } else {
            (e - g).abs() <= rel * e.abs().max(1.0)
        }
    };
    let mut compared = 0;
    let mut first: Option<Mismatch> = None;
    let mut note = |step: usize,
                    pop: &str,
                    quantity: &str,
                    exp: &[f64],
                    got: &[f64],
                    first: &mut Option<Mismatch>| {
        for (i, (&e, &g)) in exp.iter().zip(got).enumerate() {
            compared += 1;
            if !tol(e, g) && first.is_none() {
                *first = Some(Mismatch {
                    step,
                    population: pop.to_string(),
                    neuron: i,
                    quantity: quantity.to_string(),
                    expected: e,
                    got: g,
                });
            }
        }
        if exp.len() != got.len() && first.is_none() {
            *first = Some(Mismatch {
                step,
                population: pop.to_string(),
                neuron: exp.len().min(got.len()),
                quantity: format!("{quantity} (length {} vs {})", exp.len(), got.len()),
                expected: f64::NAN,
                got: f64::NAN,
            });
        }
    };

    let mut recorded = Vec::new();
    for (name, lif) in &lifs {
        let rp = &result["populations"][name.as_str()];
        let spikes_key = if rp["spikes"].is_array() {
            "spikes"
        } else {
            "spikes_from_sink_T_by_n"
        };
        let exp_s = matrix(&rp[spikes_key], spikes_key)?;
        let exp_u = matrix(&rp["u"], "u")?;
        let exp_v = matrix(&rp["v"], "v")?;
        let got_s = match sinks.iter().find(|(n, _)| n == name) {
            Some((_, sink)) if spikes_key != "spikes" => sink.steps_async().await?,
            _ => mon.data_async(&lif.s_out().label()).await?,
        };
        let got_u = mon.data_async(&lif.u().label()).await?;
        let got_v = mon.data_async(&lif.v().label()).await?;
        recorded.push((name.clone(), exp_s, exp_u, exp_v, got_s, got_u, got_v));
    }
    for t in 0..num_steps {
        for (name, es, eu, ev, gs, gu, gv) in &recorded {
            for (q, e, g) in [("spikes", es, gs), ("u", eu, gu), ("v", ev, gv)] {
                match (e.get(t), g.get(t)) {
                    (Some(e), Some(g)) => note(t + 1, name, q, e, g, &mut first),
                    // Checked above for Lava's side; ours must record every step too.
                    _ if first.is_none() => {
                        first = Some(Mismatch {
                            step: t + 1,
                            population: name.clone(),
                            neuron: 0,
                            quantity: format!(
                                "{q} (recorded steps: Lava {}, ours {})",
                                e.len(),
                                g.len()
                            ),
                            expected: f64::NAN,
                            got: f64::NAN,
                        })
                    }
                    _ => {}
                }
            }
        }
    }
    for (name, lif) in &lifs {
        let rp = &result["populations"][name.as_str()];
        for (q, var) in [("final_get_u", lif.u()), ("final_get_v", lif.v())] {
            if rp[q].is_array() {
                note(
                    num_steps,
                    name,
                    q,
                    &f64s(&rp[q], q)?,
                    &var.get_async().await?.to_f64(),
                    &mut first,
                );
            }
        }
    }
    for (name, dense) in &denses {
        let rc = &result["connections"][name.as_str()];
        if rc["effective_weights_get_after_run"].is_array() {
            let exp = matrix(&rc["effective_weights_get_after_run"], "effective_weights")?.concat();
            note(
                num_steps,
                name,
                "effective_weights",
                &exp,
                &dense.weights().get_async().await?.to_f64(),
                &mut first,
            );
        }
    }
    start.stop()?;
    Ok(CheckReport {
        name: json["name"].as_str().unwrap_or("").to_string(),
        tag,
        num_steps,
        process_graph,
        compared,
        mismatch: first,
    })
}

/// The tutorial's P1: reads the Var in POST_MGMT and writes it back plus the time step.
struct RmaReader {
    port: hetflow::neuro::PortIx,
    seen: std::sync::Arc<std::sync::Mutex<Vec<f64>>>,
}

impl hetflow::neuro::ProcessModel for RmaReader {
    fn name(&self) -> &str {
        "PyProcModel1"
    }
    fn run_spk(&mut self, _: &mut hetflow::neuro::Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
    fn post_guard(&self, _: u64) -> bool {
        true
    }
    fn run_post_mgmt(&mut self, cx: &mut hetflow::neuro::Cx<'_>) -> Result<(), NeuroError> {
        let cur = cx.ref_read(self.port)?.to_i32();
        self.seen.lock().expect("lock").push(cur[0] as f64);
        let t = cx.time_step() as i32;
        cx.ref_write(
            self.port,
            &hetflow::neuro::Data::I32(cur.iter().map(|v| v + t).collect()),
        )
    }
}

struct RmaHolder;

impl hetflow::neuro::ProcessModel for RmaHolder {
    fn name(&self) -> &str {
        "PyProcModel2"
    }
    fn run_spk(&mut self, _: &mut hetflow::neuro::Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
}

/// Runs the tutorial (implicit and explicit VarPort; step by step with host reads, and one
/// run of five steps) and compares with the file.
async fn check_rma(
    json: &Value,
    backend: NeuroBackend,
    rt: Option<&hetflow::RuntimeHandle>,
) -> Result<CheckReport, NeuroError> {
    use hetflow::neuro::{Data, ModelSpec};
    use std::sync::Arc;
    let mut compared = 0;
    let mut mismatch = None;
    let mut graph = String::new();
    for (key, explicit) in [("implicit_connect_var", false), ("explicit_varport", true)] {
        let g = &json[key];
        for single in [false, true] {
            let net = Network::new();
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let s2 = seen.clone();
            let p1 = net
                .process("proc1", "P1")
                .ref_port("ref", &[1])
                .model(ModelSpec::leaf("PyProcModel1", &[], move |b| {
                    Ok(Box::new(RmaReader {
                        port: b.port("ref")?,
                        seen: s2.clone(),
                    }))
                }))
                .build()?;
            let mut b = net
                .process("proc2", "P2")
                .var("var", &[1], Data::I32(vec![5]));
            if explicit {
                b = b.var_port("var_port", "var");
            }
            let p2 = b
                .model(ModelSpec::leaf("PyProcModel2", &[], |_| {
                    Ok(Box::new(RmaHolder))
                }))
                .build()?;
            if explicit {
                p1.port("ref")?.connect(&p2.port("var_port")?)?;
            } else {
                p1.port("ref")?.connect_var(&p2.var("var")?)?;
            }
            let mut cfg = RunCfg::default_sim().on(backend);
            cfg.runtime = rt.cloned();
            graph = p1.compile(&cfg)?;
            let mut host = Vec::new();
            if single {
                p1.run_async(5, &cfg).await?;
                host.push(p2.var("var")?.get_async().await?.to_f64()[0]);
            } else {
                for _ in 0..5 {
                    p1.run_async(1, &cfg).await?;
                    host.push(p2.var("var")?.get_async().await?.to_f64()[0]);
                }
            }
            p1.stop()?;
            let (reads_key, host_exp) = if single {
                (
                    "printed_reads_run2_single_RunSteps5",
                    vec![g["var_after_5_steps_single_run"].clone()],
                )
            } else {
                (
                    "printed_reads_run1_stepwise",
                    g["var_after_each_step_host_get"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                )
            };
            let exp_reads = f64s(&g[reads_key], reads_key)?;
            let exp_host = f64s(&Value::Array(host_exp), "var_after_each_step_host_get")?;
            let got_reads = seen.lock().expect("lock").clone();
            for (q, e, got) in [
                ("read in post_mgmt", &exp_reads, &got_reads),
                ("host get", &exp_host, &host),
            ] {
                if e.len() != got.len() && mismatch.is_none() {
                    mismatch = Some(Mismatch {
                        step: e.len().min(got.len()) + 1,
                        population: key.to_string(),
                        neuron: 0,
                        quantity: format!("{q} (count {} vs {})", e.len(), got.len()),
                        expected: f64::NAN,
                        got: f64::NAN,
                    });
                }
                for (t, (&e, &x)) in e.iter().zip(got).enumerate() {
                    compared += 1;
                    if e != x && mismatch.is_none() {
                        mismatch = Some(Mismatch {
                            step: if single && q == "host get" { 5 } else { t + 1 },
                            population: key.to_string(),
                            neuron: 0,
                            quantity: q.to_string(),
                            expected: e,
                            got: x,
                        });
                    }
                }
            }
        }
    }
    Ok(CheckReport {
        name: "lava_rma".into(),
        tag: "Loihi1SimCfg()".into(),
        num_steps: 5,
        process_graph: graph,
        compared,
        mismatch,
    })
}
