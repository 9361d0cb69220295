//! Neural processes: golden files from the real Lava, edge-case networks against an
//! independent transcription of MODELS.md, connection rules and errors, hierarchical
//! processes, run control.
#![allow(clippy::type_complexity, clippy::too_many_arguments)]

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

mod neuro_common;

use hetflow::neuro::*;
use hetflow_cli::lava_check::{check, check_file};

fn data_dir() -> PathBuf {
    neuro_common::lava_data_dir()
}

#[test]
fn every_golden_network_file_matches() {
    let mut n = 0;
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name == "lava_rma.json" {
            continue;
        }
        let r = check_file(&path, NeuroBackend::Cpu).unwrap();
        assert!(r.is_match(), "{name}: {:?}", r.mismatch);
        assert!(
            r.compared >= 3000,
            "{name}: only {} values compared",
            r.compared
        );
        n += 1;
    }
    assert_eq!(n, 6, "six network files expected");
}

#[test]
fn golden_check_reports_the_first_difference() {
    let text = std::fs::read_to_string(data_dir().join("lava_ff_20_10_fixed.json")).unwrap();
    let mut j: Value = serde_json::from_str(&text).unwrap();
    j["result"]["populations"]["post"]["v"][41][3] = json!(123456789.0);
    let r = check(&j, NeuroBackend::Cpu).unwrap();
    let m = r.mismatch.unwrap();
    assert_eq!(
        (m.step, m.population.as_str(), m.neuron, m.quantity.as_str()),
        (42, "post", 3, "v")
    );
}

// ---------- RMA tutorial ----------

struct P1Model {
    r: PortIx,
    seen: Arc<Mutex<Vec<i32>>>,
}
impl ProcessModel for P1Model {
    fn name(&self) -> &str {
        "PyProcModel1"
    }
    fn run_spk(&mut self, _: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
    fn post_guard(&self, _: u64) -> bool {
        true
    }
    fn run_post_mgmt(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let cur = cx.ref_read(self.r)?.to_i32();
        self.seen.lock().push(cur[0]);
        cx.ref_write(self.r, &Data::I32(vec![cur[0] + cx.time_step() as i32]))
    }
}
struct Nop;
impl ProcessModel for Nop {
    fn name(&self) -> &str {
        "Nop"
    }
    fn run_spk(&mut self, _: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
}

fn rma(explicit: bool) -> (Process, Process, Arc<Mutex<Vec<i32>>>) {
    let net = Network::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let p1 = net
        .process("proc1", "P1")
        .ref_port("ref", &[1])
        .model(ModelSpec::leaf("PyProcModel1", &[], move |b| {
            Ok(Box::new(P1Model {
                r: b.port("ref")?,
                seen: s2.clone(),
            }))
        }))
        .build()
        .unwrap();
    let mut b = net
        .process("proc2", "P2")
        .var("var", &[1], Data::I32(vec![5]));
    if explicit {
        b = b.var_port("var_port", "var");
    }
    let p2 = b
        .model(ModelSpec::leaf("PyProcModel2", &[], |_| Ok(Box::new(Nop))))
        .build()
        .unwrap();
    if explicit {
        p1.port("ref")
            .unwrap()
            .connect(&p2.port("var_port").unwrap())
            .unwrap();
    } else {
        p1.port("ref")
            .unwrap()
            .connect_var(&p2.var("var").unwrap())
            .unwrap();
    }
    (p1, p2, seen)
}

#[test]
fn rma_tutorial_matches_lava() {
    let text = std::fs::read_to_string(data_dir().join("lava_rma.json")).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    for (key, explicit) in [("implicit_connect_var", false), ("explicit_varport", true)] {
        let g = &j[key];
        let ints = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as i32)
                .collect::<Vec<_>>()
        };
        // Step by step, reading from the host after each step.
        let (p1, p2, seen) = rma(explicit);
        let mut host = Vec::new();
        for _ in 0..5 {
            p1.run(RunSteps(1), &RunCfg::default_sim()).unwrap();
            host.push(p2.var("var").unwrap().get().unwrap().to_i32()[0]);
        }
        assert_eq!(
            *seen.lock(),
            ints(&g["printed_reads_run1_stepwise"]),
            "{key}"
        );
        assert_eq!(host, ints(&g["var_after_each_step_host_get"]), "{key}");
        assert_eq!(p1.time_step(), 5);
        // One run of five steps.
        let (p1, p2, seen) = rma(explicit);
        p1.run(RunSteps(5), &RunCfg::default_sim()).unwrap();
        assert_eq!(
            *seen.lock(),
            ints(&g["printed_reads_run2_single_RunSteps5"]),
            "{key}"
        );
        assert_eq!(
            p2.var("var").unwrap().get().unwrap().to_i32()[0],
            g["var_after_5_steps_single_run"].as_f64().unwrap() as i32
        );
        p1.stop().unwrap();
        assert!(matches!(
            p1.run(RunSteps(1), &RunCfg::default_sim()),
            Err(NeuroError::Stopped)
        ));
    }
}

// ---------- edge cases against an independent transcription of MODELS.md ----------

struct RefPop {
    u: Vec<i64>,
    v: Vec<i64>,
    du: i64,
    dv: i64,
    bm: Vec<i64>,
    be: Vec<i64>,
    vth: i64,
}

/// MODELS.md §3 for one step; returns the spikes.
fn ref_lif_fixed(p: &mut RefPop, a_in: &[i64]) -> Vec<i64> {
    let h = 1i64 << 23;
    let mut s = vec![0; p.u.len()];
    for i in 0..p.u.len() {
        let b = if p.be[i] >= 0 {
            p.bm[i] << p.be[i]
        } else {
            p.bm[i] >> -p.be[i]
        };
        let q = p.u[i] * (4096 - (p.du + 1));
        let mut u = q.signum() * (q.abs() >> 12) + (a_in[i] << 6);
        if u > h {
            u -= 2 * h;
        } else if u <= -h {
            u += 2 * h;
        }
        p.u[i] = u;
        let q = p.v[i] * (4096 - p.dv);
        let v = (q.signum() * (q.abs() >> 12) + u + b).clamp(-(h - 1), h - 1);
        if v > p.vth << 6 {
            s[i] = 1;
            p.v[i] = 0;
        } else {
            p.v[i] = v;
        }
    }
    s
}

/// MODELS.md §5 weight processing, written out case by case.
fn ref_weights(w: &[Vec<i64>], bits: i64, mode: Option<&str>) -> Vec<Vec<i64>> {
    let flat: Vec<i64> = w.concat();
    let mode = mode
        .map(|m| m[..m.len().min(3)].replace("MIX", "MIXED"))
        .unwrap_or_else(|| {
            if flat.iter().all(|&x| x >= 0) {
                "EXC".into()
            } else if flat.iter().all(|&x| x <= 0) {
                "INH".into()
            } else {
                "MIXED".into()
            }
        });
    let k = 8 - bits + if mode == "MIXED" { 1 } else { 0 };
    w.iter()
        .map(|r| {
            r.iter()
                .map(|&x| match mode.as_str() {
                    "MIXED" => (x.clamp(-256, 255) >> k) << k,
                    "EXC" => (x.clamp(0, 255) >> k) << k,
                    _ => -(((-x).clamp(0, 255) >> k) << k),
                })
                .collect()
        })
        .collect()
}

struct RefConn {
    pre: String,
    post: String,
    w: Vec<Vec<i64>>,
    exp: i64,
    bits: i64,
    mode: Option<&'static str>,
}

/// Builds a reference JSON (schema of shared/reference/lava) whose expected traces come
/// from the transcription above.
fn fixed_network(
    name: &str,
    mut pops: Vec<(String, RefPop)>,
    conns: Vec<RefConn>,
    input: Option<Vec<Vec<i64>>>,
    steps: usize,
) -> Value {
    let pops_json: Vec<Value> = pops
        .iter()
        .map(|(n, p)| {
            json!({"name": n, "shape": [p.u.len()], "u0": p.u, "v0": p.v, "du": p.du, "dv": p.dv,
                   "bias_mant": p.bm, "bias_exp": p.be, "vth": p.vth})
        })
        .collect();
    let conns_json: Vec<Value> = conns
        .iter()
        .map(|c| {
            let mut o = json!({"name": format!("{}_{}", c.pre, c.post), "pre": c.pre, "post": c.post,
                "weights": c.w, "weight_exp": c.exp, "num_weight_bits": c.bits, "num_message_bits": 0});
            if let Some(m) = c.mode {
                o["sign_mode"] = json!(m);
            }
            if c.pre == "input" {
                o["input_spikes_n_in_by_T"] = json!(input.clone().unwrap());
            }
            o
        })
        .collect();
    let wq: Vec<Vec<Vec<i64>>> = conns
        .iter()
        .map(|c| ref_weights(&c.w, c.bits, c.mode))
        .collect();
    let mut abuf: Vec<Vec<i64>> = conns.iter().map(|c| vec![0; c.w.len()]).collect();
    let mut rec: Vec<(Vec<Vec<i64>>, Vec<Vec<i64>>, Vec<Vec<i64>>)> =
        pops.iter().map(|_| Default::default()).collect();
    for t in 1..=steps {
        let mut spikes = Vec::new();
        for (k, (pn, p)) in pops.iter_mut().enumerate() {
            let mut a = vec![0i64; p.u.len()];
            for (c, ab) in conns.iter().zip(&abuf) {
                if &c.post == pn {
                    a.iter_mut().zip(ab).for_each(|(a, b)| *a += b);
                }
            }
            let s = ref_lif_fixed(p, &a);
            rec[k].0.push(s.clone());
            rec[k].1.push(p.u.clone());
            rec[k].2.push(p.v.clone());
            spikes.push(s);
        }
        for (ci, c) in conns.iter().enumerate() {
            let s: Vec<i64> = if c.pre == "input" {
                let inp = input.as_ref().unwrap();
                inp.iter().map(|row| row[(t - 1) % row.len()]).collect()
            } else {
                spikes[pops.iter().position(|(n, _)| *n == c.pre).unwrap()].clone()
            };
            abuf[ci] = wq[ci]
                .iter()
                .map(|row| {
                    let acc: i64 = row
                        .iter()
                        .zip(&s)
                        .filter(|(_, &s)| s != 0)
                        .map(|(w, _)| w)
                        .sum();
                    if c.exp > 0 {
                        acc << c.exp
                    } else {
                        acc >> -c.exp
                    }
                })
                .collect();
        }
    }
    let mut res_pops = serde_json::Map::new();
    for ((n, _), (s, u, v)) in pops.iter().zip(rec) {
        res_pops.insert(n.clone(), json!({"spikes": s, "u": u, "v": v}));
    }
    let mut res_conns = serde_json::Map::new();
    for (c, w) in conns.iter().zip(&wq) {
        res_conns.insert(
            format!("{}_{}", c.pre, c.post),
            json!({"effective_weights_get_after_run": w}),
        );
    }
    json!({"name": name, "run_cfg": "Loihi2SimCfg(select_tag='fixed_pt')", "num_steps": steps,
           "populations": pops_json, "connections": conns_json,
           "result": {"populations": res_pops, "connections": res_conns}})
}

fn pop(
    n: usize,
    u: Vec<i64>,
    v: Vec<i64>,
    du: i64,
    dv: i64,
    bm: Vec<i64>,
    be: Vec<i64>,
    vth: i64,
) -> RefPop {
    assert_eq!(u.len(), n);
    RefPop {
        u,
        v,
        du,
        dv,
        bm,
        be,
        vth,
    }
}

fn assert_match(j: &Value) {
    let r = check(j, NeuroBackend::Cpu).unwrap();
    assert!(r.is_match(), "{}: {:?}", r.name, r.mismatch);
}

#[test]
fn u_wraps_around_at_24_bits() {
    // Input spikes every step through W = 255 (exp 7) and -256 push u across +-2^23.
    let p = pop(
        2,
        vec![8_000_000, -8_000_000],
        vec![0, 0],
        0,
        4095,
        vec![0, 0],
        vec![0, 0],
        131_071,
    );
    let j = fixed_network(
        "wrap",
        vec![("lif".into(), p)],
        vec![RefConn {
            pre: "input".into(),
            post: "lif".into(),
            w: vec![vec![255, 0], vec![0, -256]],
            exp: 7,
            bits: 8,
            mode: None,
        }],
        Some(vec![vec![1], vec![1]]),
        30,
    );
    // Check the trace really wraps.
    let u = &j["result"]["populations"]["lif"]["u"];
    let us: Vec<f64> = (0..30).map(|t| u[t][0].as_f64().unwrap()).collect();
    assert!(
        us.windows(2).any(|w| w[1] < w[0] - 1e6),
        "u should wrap: {us:?}"
    );
    assert_match(&j);
}

#[test]
fn v_saturates_and_extreme_bias_and_threshold() {
    let p = pop(
        4,
        vec![0; 4],
        vec![8_388_000, -8_388_000, 0, 0],
        0,
        0,
        vec![4095, -4096, 4095, -4096],
        vec![7, 7, -3, 7],
        131_071,
    );
    let j = fixed_network("saturate", vec![("lif".into(), p)], vec![], None, 40);
    let v = &j["result"]["populations"]["lif"]["v"];
    assert!(
        (0..40).any(|t| v[t][1].as_f64().unwrap() == -8_388_607.0),
        "v should saturate"
    );
    assert_match(&j);
}

#[test]
fn weight_clipping_truncation_and_exponents() {
    let mk = |bits, exp, mode, w: Vec<Vec<i64>>| {
        let n_out = w.len();
        let n_in = w[0].len();
        fixed_network(
            "weights",
            vec![(
                "lif".into(),
                pop(
                    n_out,
                    vec![0; n_out],
                    vec![0; n_out],
                    100,
                    300,
                    vec![0; n_out],
                    vec![0; n_out],
                    2000,
                ),
            )],
            vec![RefConn {
                pre: "input".into(),
                post: "lif".into(),
                w,
                exp,
                bits,
                mode,
            }],
            Some(
                (0..n_in)
                    .map(|i| (0..7).map(|t| ((i + t) % 3 == 0) as i64).collect())
                    .collect(),
            ),
            25,
        )
    };
    let mixed = vec![vec![5, -5, 300, -300], vec![7, 1, -1, 129]];
    for (bits, exp) in [(8, 0), (8, -3), (6, 2), (3, 5), (1, -1)] {
        assert_match(&mk(bits, exp, None, mixed.clone()));
    }
    assert_match(&mk(5, 1, None, vec![vec![3, 300, 17], vec![0, 64, 255]]));
    assert_match(&mk(
        5,
        -2,
        None,
        vec![vec![-3, -300, -17], vec![0, -64, -255]],
    ));
    assert_match(&mk(7, 0, Some("EXCITATORY"), mixed.clone()));
    assert_match(&mk(7, 0, Some("INHIBITORY"), mixed.clone()));
    assert_match(&mk(8, 0, Some("MIXED"), vec![vec![4, 8], vec![12, 16]]));
}

#[test]
fn recurrence_and_several_inputs_into_one_inport() {
    let a = pop(
        5,
        vec![0; 5],
        vec![0; 5],
        410,
        205,
        vec![40, 60, 80, 100, 120],
        vec![6; 5],
        100,
    );
    let b = pop(
        3,
        vec![0; 3],
        vec![0; 3],
        0,
        410,
        vec![0; 3],
        vec![0; 3],
        120,
    );
    let j = fixed_network(
        "recurrent",
        vec![("a".into(), a), ("b".into(), b)],
        vec![
            RefConn {
                pre: "a".into(),
                post: "a".into(),
                w: (0..5)
                    .map(|i| {
                        (0..5)
                            .map(|k| {
                                if i == k {
                                    0
                                } else {
                                    30 - 13 * ((i * k) % 5) as i64
                                }
                            })
                            .collect()
                    })
                    .collect(),
                exp: 0,
                bits: 8,
                mode: None,
            },
            RefConn {
                pre: "a".into(),
                post: "b".into(),
                w: vec![vec![100; 5], vec![50; 5], vec![-20, 90, 90, 90, -20]],
                exp: 1,
                bits: 8,
                mode: None,
            },
            RefConn {
                pre: "b".into(),
                post: "b".into(),
                w: vec![vec![0, -80, -80], vec![-80, 0, -80], vec![-80, -80, 0]],
                exp: 0,
                bits: 8,
                mode: None,
            },
            RefConn {
                pre: "input".into(),
                post: "b".into(),
                w: vec![vec![200, 0], vec![0, 200], vec![100, 100]],
                exp: 0,
                bits: 8,
                mode: None,
            },
        ],
        Some(vec![vec![1, 0, 0, 1], vec![0, 1, 1, 0]]),
        60,
    );
    let s = &j["result"]["populations"]["b"]["spikes"];
    assert!(
        (0..60).any(|t| s[t]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_i64() == Some(1))),
        "b should spike"
    );
    assert_match(&j);
}

#[test]
fn float_recurrence_gives_one_step_delay() {
    let net = Network::new();
    let lif = Lif::new(
        &net,
        "lif",
        LifParams::new(2)
            .bias_mant(vec![1.5, 0.0])
            .vth(1.0)
            .du(0.5)
            .dv(0.25),
    )
    .unwrap();
    let w = Dense::new(&net, "w", DenseParams::new(2, 2, vec![0.0, 0.0, 0.75, 0.0])).unwrap();
    lif.s_out().connect(&w.s_in()).unwrap();
    w.a_out().connect(&lif.a_in()).unwrap();
    let mon = Monitor::new(&net, "mon").unwrap();
    mon.probe(&lif.u(), 6).unwrap();
    mon.probe_out(&lif.s_out(), 6).unwrap();
    lif.process()
        .run(RunSteps(6), &RunCfg::floating_pt())
        .unwrap();
    let (u, s) = (mon.data("lif.u").unwrap(), mon.data("lif.s_out").unwrap());
    // neuron 0 spikes every step; neuron 1's u sees it one step later.
    let mut u1 = 0.0;
    for t in 0..6 {
        assert_eq!(s[t][0], 1.0);
        u1 = u1 * 0.5 + if t == 0 { 0.0 } else { 0.75 };
        assert!(
            (u[t][1] - u1).abs() < 1e-12,
            "step {}: {} vs {u1}",
            t + 1,
            u[t][1]
        );
    }
}

// ---------- connection rules and errors ----------

fn two_procs() -> (Network, Process, Process) {
    let net = Network::new();
    let mk = |name: &str| {
        net.process(name, "T")
            .var("x", &[3], vec![0.0; 3])
            .var("y", &[2], vec![0.0; 2])
            .var_port("xp", "x")
            .in_port("inp", &[3])
            .in_port("inp2", &[2])
            .out_port("out", &[3])
            .ref_port("r", &[3])
            .model(ModelSpec::leaf("Nop", &["floating_pt"], |_| {
                Ok(Box::new(Nop))
            }))
            .build()
            .unwrap()
    };
    let (a, b) = (mk("a"), mk("b"));
    (net, a, b)
}

#[test]
fn every_allowed_connection() {
    let (_n, a, b) = two_procs();
    let p = |pr: &Process, n: &str| pr.port(n).unwrap();
    p(&a, "out").connect(&p(&b, "inp")).unwrap();
    p(&a, "inp").connect_from(&p(&b, "out")).unwrap();
    p(&a, "out").connect(&p(&b, "out")).unwrap(); // hierarchical OutPort -> OutPort
    p(&a, "inp").connect(&p(&b, "inp")).unwrap(); // hierarchical InPort -> InPort
    p(&a, "r").connect(&p(&b, "xp")).unwrap();
    p(&a, "r").connect(&p(&b, "r")).unwrap();
    p(&b, "r").connect_from(&p(&a, "r")).unwrap_err(); // duplicate of the line above
    p(&b, "r").connect_var(&a.var("x").unwrap()).unwrap();
    p(&a, "xp").connect(&p(&b, "xp")).unwrap();
    p(&a, "xp").connect_from(&p(&b, "xp")).unwrap();
    p(&b, "xp").connect_from(&p(&a, "r")).unwrap_err(); // duplicate
    let (_n, c, d) = two_procs();
    p(&d, "xp").connect_from(&p(&c, "r")).unwrap();
    p(&d, "r").connect_from(&p(&c, "r")).unwrap();
}

#[test]
fn typed_ports_check_their_kind() {
    let (_n, a, b) = two_procs();
    assert!(a.out_port("out").is_ok() && a.in_port("inp").is_ok());
    assert!(a.ref_port("r").is_ok() && a.var_port("xp").is_ok());
    let e = a.out_port("inp").unwrap_err();
    assert!(
        matches!(
            e,
            NeuroError::WrongPortKind {
                op: "convert",
                src_kind: "InPort",
                dst_kind: "OutPort",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        a.ref_port("out"),
        Err(NeuroError::WrongPortKind { .. })
    ));
    // Typed connections compile only for allowed pairs; an untyped Port is checked at run time.
    a.out_port("out")
        .unwrap()
        .connect(&b.in_port("inp").unwrap())
        .unwrap();
    a.ref_port("r")
        .unwrap()
        .connect(&b.var_port("xp").unwrap())
        .unwrap();
    b.in_port("inp")
        .unwrap()
        .connect_from(&a.out_port("out").unwrap())
        .unwrap_err(); // duplicate
    let e = a
        .out_port("out")
        .unwrap()
        .connect(&b.port("r").unwrap())
        .unwrap_err();
    assert!(matches!(e, NeuroError::WrongPortKind { .. }));
}

#[test]
fn connection_errors_are_typed() {
    let (_n, a, b) = two_procs();
    let p = |pr: &Process, n: &str| pr.port(n).unwrap();
    assert!(matches!(
        p(&a, "out").connect(&p(&b, "inp2")),
        Err(NeuroError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        p(&a, "r").connect_var(&b.var("y").unwrap()),
        Err(NeuroError::ShapeMismatch { .. })
    ));
    for (s, d) in [
        ("out", "r"),
        ("out", "xp"),
        ("inp", "out"),
        ("r", "inp"),
        ("r", "out"),
        ("xp", "r"),
        ("xp", "inp"),
        ("inp", "xp"),
    ] {
        let e = p(&a, s).connect(&p(&b, d)).unwrap_err();
        assert!(
            matches!(e, NeuroError::WrongPortKind { op: "connect", .. }),
            "{s}->{d}: {e}"
        );
    }
    assert!(matches!(
        p(&b, "out").connect_from(&p(&a, "inp")),
        Err(NeuroError::WrongPortKind {
            op: "connect_from",
            ..
        })
    ));
    for s in ["out", "inp", "xp"] {
        assert!(matches!(
            p(&a, s).connect_var(&b.var("x").unwrap()),
            Err(NeuroError::WrongPortKind {
                op: "connect_var",
                ..
            })
        ));
    }
    p(&a, "out").connect(&p(&b, "inp")).unwrap();
    assert!(matches!(
        p(&a, "out").connect(&p(&b, "inp")),
        Err(NeuroError::DuplicateConnection { .. })
    ));
    assert!(matches!(
        p(&b, "inp").connect_from(&p(&a, "out")),
        Err(NeuroError::DuplicateConnection { .. })
    ));
    p(&a, "r").connect_var(&b.var("x").unwrap()).unwrap();
    assert!(matches!(
        p(&a, "r").connect_var(&b.var("x").unwrap()),
        Err(NeuroError::DuplicateConnection { .. })
    ));
    let other = Network::new();
    let c = other.process("c", "T").in_port("i", &[3]).build().unwrap();
    assert!(matches!(
        p(&a, "out").connect(&c.port("i").unwrap()),
        Err(NeuroError::ForeignNetwork { .. })
    ));
    assert!(matches!(a.port("nope"), Err(NeuroError::NotFound { .. })));
    let e = a
        .network()
        .process("d", "T")
        .var("x", &[1], vec![0.0])
        .in_port("x", &[1])
        .build()
        .unwrap_err();
    assert!(matches!(e, NeuroError::DuplicateName { .. }));
    let e = a
        .network()
        .process("d", "T")
        .var("x", &[2], vec![0.0])
        .build()
        .unwrap_err();
    assert!(matches!(e, NeuroError::Invalid { .. }));
}

#[test]
fn missing_model_names_the_process() {
    let (_n, a, _b) = two_procs();
    let e = a.run(RunSteps(1), &RunCfg::fixed_pt()).unwrap_err();
    match e {
        NeuroError::NoProcessModel { process, tag, .. } => {
            assert_eq!(process, "a");
            assert_eq!(tag.as_deref(), Some("fixed_pt"));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn lif_to_itself_without_a_synapse_is_a_spike_cycle() {
    let net = Network::new();
    let lif = Lif::new(&net, "lif", LifParams::new(2)).unwrap();
    lif.s_out().connect(&lif.a_in()).unwrap();
    assert!(matches!(
        lif.process().run(RunSteps(1), &RunCfg::floating_pt()),
        Err(NeuroError::SpikeCycle { .. })
    ));
}

#[test]
fn refport_in_spike_phase_is_refused() {
    struct Bad(PortIx);
    impl ProcessModel for Bad {
        fn name(&self) -> &str {
            "Bad"
        }
        fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
            cx.ref_read(self.0).map(|_| ())
        }
    }
    let net = Network::new();
    let a = net
        .process("a", "A")
        .ref_port("r", &[1])
        .model(ModelSpec::leaf("Bad", &[], |b| {
            Ok(Box::new(Bad(b.port("r")?)))
        }))
        .build()
        .unwrap();
    let b = net
        .process("b", "B")
        .var("x", &[1], vec![1.0])
        .model(ModelSpec::leaf("Nop", &[], |_| Ok(Box::new(Nop))))
        .build()
        .unwrap();
    a.port("r")
        .unwrap()
        .connect_var(&b.var("x").unwrap())
        .unwrap();
    let e = a.run(RunSteps(1), &RunCfg::default_sim()).unwrap_err();
    assert!(
        matches!(&e, NeuroError::ModelFailed { process, phase: "SPK", time_step: 1, .. } if process == "a"),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("served only in PRE_MGMT and POST_MGMT"));
}

#[test]
fn guards_drive_the_phases_in_lava_order() {
    struct Log {
        log: Arc<Mutex<Vec<String>>>,
        pre: bool,
        lrn: bool,
        post: bool,
    }
    impl ProcessModel for Log {
        fn name(&self) -> &str {
            "Log"
        }
        fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
            self.log.lock().push(format!("{} spk", cx.time_step()));
            Ok(())
        }
        fn pre_guard(&self, t: u64) -> bool {
            self.pre && t.is_multiple_of(2)
        }
        fn lrn_guard(&self, _: u64) -> bool {
            self.lrn
        }
        fn post_guard(&self, _: u64) -> bool {
            self.post
        }
        fn run_pre_mgmt(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
            self.log.lock().push(format!("{} pre", cx.time_step()));
            Ok(())
        }
        fn run_lrn(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
            self.log.lock().push(format!("{} lrn", cx.time_step()));
            Ok(())
        }
        fn run_post_mgmt(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
            self.log.lock().push(format!("{} post", cx.time_step()));
            Ok(())
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let net = Network::new();
    let l2 = log.clone();
    // pre_guard alone never asks for PRE_MGMT (Lava asks only when lrn_guard is true too).
    let p = net
        .process("p", "P")
        .model(ModelSpec::leaf("Log", &[], move |_| {
            Ok(Box::new(Log {
                log: l2.clone(),
                pre: true,
                lrn: false,
                post: true,
            }))
        }))
        .build()
        .unwrap();
    p.run(RunSteps(2), &RunCfg::default_sim()).unwrap();
    assert_eq!(*log.lock(), vec!["1 spk", "1 post", "2 spk", "2 post"]);
    log.lock().clear();
    let net = Network::new();
    let l2 = log.clone();
    let p = net
        .process("p", "P")
        .model(ModelSpec::leaf("Log", &[], move |_| {
            Ok(Box::new(Log {
                log: l2.clone(),
                pre: true,
                lrn: true,
                post: true,
            }))
        }))
        .build()
        .unwrap();
    p.run(RunSteps(2), &RunCfg::default_sim()).unwrap();
    assert_eq!(
        *log.lock(),
        vec!["1 spk", "1 lrn", "1 post", "2 spk", "2 pre", "2 lrn", "2 post"]
    );
}

// ---------- hierarchical processes ----------

fn flat_or_hier(hier: bool) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<String>, String) {
    let net = Network::new();
    let src = SpikeSource::new(&net, "src", &[vec![1.0, 0.0, 1.0], vec![0.0, 1.0, 1.0]]).unwrap();
    let mon = Monitor::new(&net, "mon").unwrap();
    let (inp, out, v) = if hier {
        let parent = net
            .process("layer", "Layer")
            .var("v", &[3], vec![0.0; 3])
            .in_port("s_in", &[2])
            .out_port("s_out", &[3])
            .model(ModelSpec::sub("SubLayerModel", &[], |parent| {
                let net = parent.network();
                let w = Dense::new(
                    net,
                    "layer.w",
                    DenseParams::new(3, 2, vec![2.0, 0.0, 0.0, 3.0, 1.0, 1.0]),
                )?;
                let lif = Lif::new(net, "layer.lif", LifParams::new(3).du(0.5).dv(0.5).vth(2.0))?;
                parent.adopt(w.process())?;
                parent.adopt(lif.process())?;
                parent.port("s_in")?.connect(&w.s_in())?;
                w.a_out().connect(&lif.a_in())?;
                lif.s_out().connect(&parent.port("s_out")?)?;
                parent.var("v")?.alias(&lif.v())
            }))
            .build()
            .unwrap();
        (
            parent.port("s_in").unwrap(),
            parent.port("s_out").unwrap(),
            parent.var("v").unwrap(),
        )
    } else {
        let w = Dense::new(
            &net,
            "w",
            DenseParams::new(3, 2, vec![2.0, 0.0, 0.0, 3.0, 1.0, 1.0]),
        )
        .unwrap();
        let lif = Lif::new(&net, "lif", LifParams::new(3).du(0.5).dv(0.5).vth(2.0)).unwrap();
        w.a_out().connect(&lif.a_in()).unwrap();
        (Port::from(w.s_in()), Port::from(lif.s_out()), lif.v())
    };
    src.s_out().connect(&inp).unwrap();
    mon.probe(&v, 12).unwrap();
    mon.probe_out(&out, 12).unwrap();
    let graph = src.process().compile(&RunCfg::floating_pt()).unwrap();
    src.process()
        .run(RunSteps(12), &RunCfg::floating_pt())
        .unwrap();
    let leaves = src.process().leaf_processes();
    let vv = mon.data(&v.label()).unwrap();
    assert_eq!(v.get().unwrap().to_f64(), vv[11]);
    (vv, mon.data(&out.label()).unwrap(), leaves, graph)
}

#[test]
fn hierarchical_process_expands_into_its_sub_processes() {
    let (v_flat, s_flat, _, _) = flat_or_hier(false);
    let (v_h, s_h, leaves, graph) = flat_or_hier(true);
    assert_eq!(v_flat, v_h);
    assert_eq!(s_flat, s_h);
    assert!(
        s_h.iter().flatten().any(|&x| x == 1.0),
        "some spikes expected"
    );
    assert!(
        leaves.contains(&"layer.lif".to_string()) && !leaves.contains(&"layer".to_string()),
        "{leaves:?}"
    );
    assert!(
        graph.contains("layer: Layer -> SubLayerModel (hierarchical, expanded)"),
        "{graph}"
    );
}

// ---------- run control ----------

#[test]
fn non_blocking_run_pause_and_resume() {
    let net = Network::new();
    let lif = Lif::new(
        &net,
        "lif",
        LifParams::new(4)
            .bias_mant(vec![1.0, 2.0, 3.0, 4.0])
            .vth(5.0),
    )
    .unwrap();
    let p = lif.process().clone();
    p.run(RunSteps(50_000_000).non_blocking(), &RunCfg::floating_pt())
        .unwrap();
    assert!(p.is_running());
    assert!(matches!(lif.v().get(), Err(NeuroError::Running { .. })));
    assert!(matches!(
        lif.v().set(vec![0.0; 4]),
        Err(NeuroError::Running { .. })
    ));
    assert!(matches!(
        p.run(RunSteps(1), &RunCfg::floating_pt()),
        Err(NeuroError::Running { .. })
    ));
    // Let it run some steps (however loaded the machine is), then pause.
    let t0 = std::time::Instant::now();
    while p.time_step() < 100 && t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    p.pause().unwrap();
    assert!(!p.is_running());
    let t = p.time_step();
    assert!(t > 0 && t < 50_000_000, "paused at {t}");
    // The state is consistent with t steps: v of neuron 0 (bias 1, vth 5) cycles with period 6.
    assert_eq!(lif.v().get().unwrap().to_f64()[0], (t % 6) as f64);
    // Set between runs takes effect at the next step; time continues.
    lif.v().set(vec![0.0; 4]).unwrap();
    lif.bias_mant().set(vec![0.5; 4]).unwrap();
    p.run(RunSteps(3), &RunCfg::floating_pt()).unwrap();
    assert_eq!(p.time_step(), t + 3);
    assert_eq!(lif.v().get().unwrap().to_f64(), vec![1.5; 4]);
    p.run(RunSteps(2).non_blocking(), &RunCfg::floating_pt())
        .unwrap();
    p.wait().unwrap();
    assert_eq!(p.time_step(), t + 5);
    assert!(matches!(
        p.run(RunSteps(1), &RunCfg::fixed_pt()),
        Err(NeuroError::ConfigChanged { .. })
    ));
    p.stop().unwrap();
}

#[test]
fn fixed_point_dense_weights_read_back_processed() {
    let net = Network::new();
    let src = SpikeSource::new(&net, "src", &[vec![1.0], vec![1.0]]).unwrap();
    let w = Dense::new(&net, "w", DenseParams::new(1, 2, vec![5.0, -5.0])).unwrap();
    let lif = Lif::new(&net, "lif", LifParams::new(1).vth(100_000.0)).unwrap();
    src.s_out().connect(&w.s_in()).unwrap();
    w.a_out().connect(&lif.a_in()).unwrap();
    assert_eq!(w.weights().get().unwrap(), Data::F64(vec![5.0, -5.0]));
    src.process().run(RunSteps(2), &RunCfg::fixed_pt()).unwrap();
    assert_eq!(w.weights().get().unwrap(), Data::I32(vec![4, -6]));
    assert_eq!(w.a_buff().get().unwrap(), Data::I32(vec![-2]));
    // u at step 2 = (-2) << 6.
    assert_eq!(lif.u().get().unwrap(), Data::I32(vec![-128]));
}

#[test]
fn random_fixed_point_networks_match_the_transcription() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |lo: i64, hi: i64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (state % (hi - lo + 1) as u64) as i64
    };
    for case in 0..6 {
        let (na, nb) = (rnd(1, 12) as usize, rnd(1, 12) as usize);
        let mut mkpop = |n: usize| {
            pop(
                n,
                (0..n).map(|_| rnd(-(1 << 23), 1 << 23)).collect(),
                (0..n).map(|_| rnd(-(1 << 23) + 1, (1 << 23) - 1)).collect(),
                rnd(0, 4095),
                rnd(0, 4095),
                (0..n).map(|_| rnd(-4096, 4095)).collect(),
                (0..n).map(|_| rnd(-7, 7)).collect(),
                rnd(0, 131_071),
            )
        };
        let (a, b) = (mkpop(na), mkpop(nb));
        let mut mkw = |o: usize, i: usize| -> Vec<Vec<i64>> {
            (0..o)
                .map(|_| (0..i).map(|_| rnd(-400, 400)).collect())
                .collect()
        };
        let (wab, wba, wbb) = (mkw(nb, na), mkw(na, nb), mkw(nb, nb));
        let (e1, e2, e3) = (rnd(-4, 4), rnd(-4, 4), rnd(-4, 4));
        let (b1, b2, b3) = (rnd(1, 8), rnd(1, 8), rnd(1, 8));
        let j = fixed_network(
            &format!("random{case}"),
            vec![("a".into(), a), ("b".into(), b)],
            vec![
                RefConn {
                    pre: "a".into(),
                    post: "b".into(),
                    w: wab,
                    exp: e1,
                    bits: b1,
                    mode: None,
                },
                RefConn {
                    pre: "b".into(),
                    post: "a".into(),
                    w: wba,
                    exp: e2,
                    bits: b2,
                    mode: None,
                },
                RefConn {
                    pre: "b".into(),
                    post: "b".into(),
                    w: wbb,
                    exp: e3,
                    bits: b3,
                    mode: None,
                },
            ],
            None,
            200,
        );
        assert_match(&j);
    }
}

#[test]
fn sparse_process_equals_dense() {
    neuro_common::dense_vs_sparse(NeuroBackend::Cpu, None);
}

#[test]
fn lava_check_cli_prints_match_or_the_first_difference() {
    let exe = env!("CARGO_BIN_EXE_hetflow");
    let good = data_dir().join("lava_lif_single_a_fixed.json");
    let out = std::process::Command::new(exe)
        .args(["lava-check"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "match");

    let text = std::fs::read_to_string(&good).unwrap();
    let mut j: Value = serde_json::from_str(&text).unwrap();
    j["result"]["populations"]["lif"]["u"][9][4] = json!(-1.0);
    let bad = std::env::temp_dir().join(format!("hetflow_lava_bad_{}.json", std::process::id()));
    std::fs::write(&bad, j.to_string()).unwrap();
    let out = std::process::Command::new(exe)
        .args(["lava-check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.contains("step 10, population lif, neuron 4: u expected -1"),
        "{msg}"
    );

    std::fs::write(&bad, "{\"not\": \"a network\"}").unwrap();
    let out = std::process::Command::new(exe)
        .args(["lava-check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn benchmark_network_runs_and_matches_its_plain_loop() {
    let r = hetflow_cli::bench::neuro::run(&cpu_rt(), 300, 0.1, 200, false, 7, NeuroBackend::Cpu)
        .unwrap();
    assert!(r.spikes > 0 && r.syn_events > 0);
    assert!(
        r.plain_loop_seconds.is_some(),
        "the float CPU row has a baseline (same spikes checked)"
    );
    let table = hetflow_cli::bench::neuro::table(&[r]);
    assert!(
        table.contains("plain loop") && !table.contains("Brian2"),
        "{table}"
    );
    let f = hetflow_cli::bench::neuro::run(&cpu_rt(), 300, 0.1, 200, true, 7, NeuroBackend::Cpu)
        .unwrap();
    assert!(f.plain_loop_seconds.is_none());
}

// ---------- lava-check on broken reference files (issue 13) ----------

/// Runs `hetflow lava-check` on a modified copy of golden file `name`; returns (exit code,
/// stdout, stderr). The exit code is `None` when the process was killed (an abort).
fn lava_check_modified(name: &str, edit: impl FnOnce(&mut Value)) -> (Option<i32>, String, String) {
    let text = std::fs::read_to_string(data_dir().join(name)).unwrap();
    let mut j: Value = serde_json::from_str(&text).unwrap();
    edit(&mut j);
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "hetflow_lava_edge_{}_{}.json",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, j.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(["lava-check", "--backend", "cpu"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lava_check_refuses_a_step_count_it_cannot_hold() {
    for steps in [json!(1_000_000_000_000u64), json!(1e12)] {
        let (code, out, err) = lava_check_modified("lava_lif_single_a_fixed.json", |j| {
            j["num_steps"] = steps.clone()
        });
        assert_eq!(
            code,
            Some(2),
            "num_steps {steps}: stdout {out:?} stderr {err:?}"
        );
        assert!(
            err.contains("num_steps") && err.contains("1000000000000"),
            "{err}"
        );
    }
}

#[test]
fn lava_check_reports_a_truncated_result_file() {
    let (code, out, err) = lava_check_modified("lava_lif_single_a_fixed.json", |j| {
        for q in ["spikes", "u", "v"] {
            let rows = j["result"]["populations"]["lif"][q].as_array_mut().unwrap();
            assert_eq!(rows.len(), 100);
            rows.truncate(10);
        }
    });
    assert_ne!(out.trim(), "match", "a truncated file must not match");
    assert_eq!(code, Some(2), "stdout {out:?} stderr {err:?}");
    assert!(err.contains("10 steps") && err.contains("100"), "{err}");
}

#[test]
fn lava_check_says_a_negative_step_count_is_invalid() {
    let (code, out, err) = lava_check_modified("lava_lif_single_a_fixed.json", |j| {
        j["num_steps"] = json!(-5)
    });
    assert_eq!(code, Some(2), "stdout {out:?} stderr {err:?}");
    assert!(err.contains("-5") && err.contains("negative"), "{err}");
    assert!(!err.contains("missing"), "{err}");
}

#[test]
fn lava_check_names_values_and_neurons_the_right_way_round() {
    // Population `pre` has shape [20]; give it a 5-value u0.
    let (code, out, err) = lava_check_modified("lava_ff_20_10_fixed.json", |j| {
        let u0 = j["populations"][0]["u0"].as_array_mut().unwrap();
        assert_eq!(u0.len(), 20);
        u0.truncate(5);
    });
    assert_eq!(code, Some(2), "stdout {out:?} stderr {err:?}");
    assert!(err.contains("u: 5 values for 20 neurons"), "{err}");
}

#[test]
fn recordings_too_large_for_memory_are_errors() {
    let net = Network::new();
    let lif = Lif::new(&net, "lif", LifParams::new(20)).unwrap();
    let mon = Monitor::new(&net, "mon").unwrap();
    // 2^62 steps x 20 values overflows usize.
    assert!(matches!(
        mon.probe(&lif.u(), 1 << 62),
        Err(NeuroError::Invalid { .. })
    ));
    // 2^40 steps x 20 values x 8 bytes: representable, not allocatable (used to abort).
    match mon.probe(&lif.u(), 1 << 40) {
        Err(e @ NeuroError::Allocation { .. }) => {
            assert!(e.to_string().contains("lif.u"), "{e}")
        }
        other => panic!("expected Allocation, got {other:?}"),
    }
    assert!(matches!(
        SpikeSink::new(&net, "sink", 20, 1 << 40),
        Err(NeuroError::Allocation { .. })
    ));
    // The monitor still works.
    mon.probe(&lif.v(), 3).unwrap();
    lif.process()
        .run(RunSteps(3), &RunCfg::floating_pt())
        .unwrap();
    assert_eq!(mon.data(&lif.v().label()).unwrap().len(), 3);
}

/// A CPU runtime shared by the tests that need one.
fn cpu_rt() -> hetflow::RuntimeHandle {
    static RT: std::sync::OnceLock<hetflow::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| hetflow::Runtime::builder().no_gpu().build().unwrap())
        .handle()
}

/// A LIF population of `n` neurons with a recurrent Sparse connection (`k` random synapses
/// per row) run on `rt` for `steps` steps: (spike counts, u, v) at the end.
fn large_recurrent(
    rt: &hetflow::RuntimeHandle,
    n: usize,
    k: usize,
    steps: u64,
    fixed: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let net = Network::new();
    let params = if fixed {
        LifParams::new(n)
            .du(1000.0)
            .dv(200.0)
            .vth(500.0)
            .bias_mant((0..n).map(|_| (next() % 60) as f64).collect())
            .bias_exp(vec![6.0; n])
    } else {
        LifParams::new(n)
            .du(0.25)
            .dv(0.05)
            .vth(1.0)
            .bias_mant((0..n).map(|_| (next() % 1000) as f64 * 1.2e-4).collect())
    };
    let lif = Lif::new(&net, "lif", params).unwrap();
    let (mut ptr, mut cols, mut vals) = (vec![0i32], Vec::new(), Vec::new());
    for _ in 0..n {
        let mut row: Vec<i32> = (0..k).map(|_| (next() % n as u64) as i32).collect();
        row.sort_unstable();
        row.dedup();
        for c in row {
            cols.push(c);
            let w = (next() % 200) as f64 - 130.0;
            vals.push(if fixed { w } else { w * 1e-3 });
        }
        ptr.push(cols.len() as i32);
    }
    let syn = Dense::new(&net, "syn", DenseParams::sparse(n, n, ptr, cols, vals)).unwrap();
    let counter = SpikeCounter::new(&net, "counter", n).unwrap();
    lif.s_out().connect(&syn.s_in()).unwrap();
    syn.a_out().connect(&lif.a_in()).unwrap();
    lif.s_out().connect(&counter.s_in()).unwrap();
    let cfg = if fixed {
        RunCfg::fixed_pt()
    } else {
        RunCfg::floating_pt()
    }
    .with_runtime(rt.clone());
    lif.process().run(RunSteps(steps), &cfg).unwrap();
    let out = (
        counter.count().get().unwrap().to_f64(),
        lif.u().get().unwrap().to_f64(),
        lif.v().get().unwrap().to_f64(),
    );
    lif.process().stop().unwrap();
    out
}

#[test]
fn parallel_run_equals_one_worker_run() {
    let one = hetflow::Runtime::builder()
        .no_gpu()
        .cpu_workers(1)
        .build()
        .unwrap();
    let two = hetflow::Runtime::builder()
        .no_gpu()
        .cpu_workers(2)
        .build()
        .unwrap();
    for fixed in [false, true] {
        let a = large_recurrent(&one.handle(), 20_000, 30, 40, fixed);
        two.start_trace();
        let b = large_recurrent(&two.handle(), 20_000, 30, 40, fixed);
        // The helper tasks end a moment after the run (idle): let them finish.
        two.wait_idle();
        let trace = two.take_trace();
        let spikes: f64 = a.0.iter().sum();
        assert!(
            spikes > 1000.0,
            "fixed = {fixed}: too quiet ({spikes} spikes)"
        );
        // Bit for bit, floating point too: each row adds its weights in the same order.
        assert_eq!(a, b, "fixed = {fixed}");
        // The two-worker run split LIF and the synapses into parts for the pool's helper
        // tasks (at least in the steps that measure the workers: 8 of every 256); a helper
        // stays for the parts of consecutive steps, so there are few of them.
        let helpers = trace
            .tasks
            .iter()
            .filter(|t| t.name == "neuro helper")
            .count();
        assert!(helpers >= 1, "fixed = {fixed}: no helper task ran");
    }
}

#[test]
fn event_driven_synapses_equal_the_dense_product() {
    // The synapses touch only the columns of neurons that spiked; the result equals the
    // full product W s (every stored weight), for binary and graded spikes.
    let (n_in, n_out) = (37usize, 23usize);
    let mut rnd = neuro_common::lcg(99);
    let w = neuro_common::sparse_weights(n_in * n_out, 3, 200, &mut rnd);
    let raster: Vec<Vec<f64>> = (0..n_in)
        .map(|_| {
            (0..9)
                .map(|_| (rnd(4) == 0) as u64 as f64 * (1 + rnd(3)) as f64)
                .collect()
        })
        .collect();
    for graded in [0, 4] {
        for cfg in [RunCfg::floating_pt(), RunCfg::fixed_pt()] {
            let net = Network::new();
            let src = SpikeSource::new(&net, "src", &raster).unwrap();
            let d = Dense::new(
                &net,
                "w",
                DenseParams::new(n_out, n_in, w.clone()).num_message_bits(graded),
            )
            .unwrap();
            src.s_out().connect(&d.s_in()).unwrap();
            let mon = Monitor::new(&net, "mon").unwrap();
            mon.probe(&d.a_buff(), 9).unwrap();
            src.process().run(RunSteps(9), &cfg).unwrap();
            let got = mon.data("w.a_buff").unwrap();
            let wq = d.weights().get().unwrap().to_f64();
            src.process().stop().unwrap();
            for t in 0..9 {
                let s: Vec<f64> = raster
                    .iter()
                    .map(|r| {
                        let x = r[t];
                        if graded > 0 {
                            x
                        } else {
                            (x != 0.0) as u64 as f64
                        }
                    })
                    .collect();
                let want: Vec<f64> = (0..n_out)
                    .map(|i| (0..n_in).map(|j| wq[i * n_in + j] * s[j]).sum())
                    .collect();
                assert_eq!(
                    got[t],
                    want,
                    "graded {graded}, {:?}, step {}",
                    cfg.select_tag,
                    t + 1
                );
            }
        }
    }
}
