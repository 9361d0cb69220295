//! The neural GPU back end: golden files, equality with the CPU fixed-point model on random
//! networks over 1000 steps (many steps per submission), and a CPU process reading and
//! writing a GPU Var through a RefPort.

use std::sync::Arc;

use parking_lot::Mutex;

mod neuro_common;

use hetflow::neuro::*;
use hetflow_cli::lava_check::check_file_on;

/// The runtime every test of this file shares (one Vulkan device per test process).
fn shared() -> &'static Result<hetflow::Runtime, String> {
    static RT: std::sync::OnceLock<Result<hetflow::Runtime, String>> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        let rt = hetflow::Runtime::builder()
            .build()
            .map_err(|e| e.to_string())?;
        if rt.gpu_count() == 0 {
            return Err("no GPU adapter".into());
        }
        Ok(rt)
    })
}

/// The shared runtime's handle (call after `gpu()` returned Some).
fn rt() -> hetflow::RuntimeHandle {
    shared().as_ref().expect("checked by gpu()").handle()
}

/// The GPU back end's runtime, or `None` (loudly) without a GPU; fails under
/// HETFLOW_REQUIRE_GPU=1.
fn gpu() -> Option<&'static hetflow::Runtime> {
    match shared() {
        Ok(rt) => Some(rt),
        Err(e) => {
            if std::env::var("HETFLOW_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("HETFLOW_REQUIRE_GPU=1 but the GPU back end is unavailable: {e}");
            }
            eprintln!("!!! NO GPU ADAPTER FOUND: skipping a GPU test ({e})");
            None
        }
    }
}

/// Whether the shared runtime's GPU computes the floating-point models in f64, as Lava does
/// (`SHADER_F64`). Without it (e.g. llvmpipe through GL, where wgpu falls back without a
/// Vulkan driver) they run in f32 (`Elem::F32`), and f64 results cannot match bit for bit.
fn gpu_has_f64() -> bool {
    hetflow::device::gpus().first().is_some_and(|g| {
        g.wgpu_device()
            .features()
            .contains(wgpu::Features::SHADER_F64)
    })
}

/// Equal, bit for bit where the GPU computes in f64; within f32's rounding where it cannot.
fn assert_same_floats(cpu: &[f64], gpu: &[f64], what: &str) {
    if gpu_has_f64() {
        assert_eq!(cpu, gpu, "{what}");
        return;
    }
    assert_eq!(cpu.len(), gpu.len(), "{what}");
    for (c, g) in cpu.iter().zip(gpu) {
        assert!(
            (c - g).abs() <= 1e-5 * c.abs().max(1.0),
            "{what}: {c} vs {g} (f32 on the GPU)"
        );
    }
}

#[test]
fn gpu_reproduces_every_golden_file() {
    if gpu().is_none() {
        return;
    }
    let dir = neuro_common::lava_data_dir();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        if !name.contains("fixed") && !gpu_has_f64() {
            eprintln!("!!! {name}: the GPU has no SHADER_F64 (floats run in f32); not compared");
            continue;
        }
        let r = check_file_on(&path, NeuroBackend::Gpu, Some(&rt())).unwrap();
        assert!(r.is_match(), "{name} on the GPU: {:?}", r.mismatch);
        assert!(
            r.process_graph.contains("back end: Gpu"),
            "{}",
            r.process_graph
        );
        if name.contains("fixed") {
            // Integer atomics: the event-driven synapses, bit-exact.
            assert!(
                r.process_graph.contains("GPU synapses: event-driven"),
                "{}",
                r.process_graph
            );
        }
        n += 1;
    }
    // Seven golden files, three of them fixed point (the only ones an f32 device checks).
    assert_eq!(n, if gpu_has_f64() { 7 } else { 3 });
}

struct Rng(u64);
impl Rng {
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (self.0 % (hi - lo + 1) as u64) as i64
    }
}

type Trace = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>);

/// Two recurrently connected fixed-point populations fed by a source, random parameters.
fn random_network(seed: u64, backend: NeuroBackend, steps: usize) -> Trace {
    let mut r = Rng(seed);
    let net = Network::new();
    let (na, nb, ni) = (40, 25, 8);
    let lif = |name: &str, n: usize, r: &mut Rng| {
        let p = LifParams::new(n)
            .u((0..n).map(|_| r.int(-5000, 5000) as f64).collect())
            .du(r.int(0, 4095) as f64)
            .dv(r.int(0, 600) as f64)
            .bias_mant((0..n).map(|_| r.int(-20, 200) as f64).collect())
            .bias_exp((0..n).map(|_| r.int(0, 6) as f64).collect())
            .vth(r.int(50, 3000) as f64);
        Lif::new(&net, name, p).unwrap()
    };
    let a = lif("a", na, &mut r);
    let b = lif("b", nb, &mut r);
    let dense = |name: &str, o: usize, i: usize, r: &mut Rng| {
        let w = (0..o * i)
            .map(|_| {
                if r.int(0, 3) == 0 {
                    r.int(-300, 300) as f64
                } else {
                    0.0
                }
            })
            .collect();
        let p = DenseParams::new(o, i, w)
            .weight_exp(r.int(-3, 3) as i32)
            .num_weight_bits(r.int(4, 8) as i32);
        Dense::new(&net, name, p).unwrap()
    };
    let ab = dense("ab", nb, na, &mut r);
    let ba = dense("ba", na, nb, &mut r);
    let bb = dense("bb", nb, nb, &mut r);
    let ia = dense("ia", na, ni, &mut r);
    let raster: Vec<Vec<f64>> = (0..ni)
        .map(|_| (0..17).map(|_| r.int(0, 1) as f64).collect())
        .collect();
    let src = SpikeSource::new(&net, "src", &raster).unwrap();
    src.s_out().connect(&ia.s_in()).unwrap();
    ia.a_out().connect(&a.a_in()).unwrap();
    a.s_out().connect(&ab.s_in()).unwrap();
    ab.a_out().connect(&b.a_in()).unwrap();
    b.s_out().connect(&ba.s_in()).unwrap();
    ba.a_out().connect(&a.a_in()).unwrap();
    b.s_out().connect(&bb.s_in()).unwrap();
    bb.a_out().connect(&b.a_in()).unwrap();
    let mon = Monitor::new(&net, "mon").unwrap();
    mon.probe(&a.u(), steps).unwrap();
    mon.probe(&b.v(), steps).unwrap();
    mon.probe_out(&a.s_out(), steps).unwrap();
    mon.probe_out(&b.s_out(), steps).unwrap();
    let cfg = RunCfg::fixed_pt().on(backend).with_runtime(rt());
    // Two runs: time continues across them on both back ends.
    a.process().run(RunSteps(300), &cfg).unwrap();
    a.process().run(RunSteps(steps as u64 - 300), &cfg).unwrap();
    let t = (
        mon.data("a.u").unwrap(),
        mon.data("b.v").unwrap(),
        mon.data("a.s_out").unwrap(),
        mon.data("b.s_out").unwrap(),
    );
    a.process().stop().unwrap();
    t
}

#[test]
fn gpu_fixed_point_equals_cpu_on_random_networks_over_1000_steps() {
    let Some(rt) = gpu() else { return };
    for seed in [1u64, 77, 4242] {
        let cpu = random_network(seed, NeuroBackend::Cpu, 1000);
        let before: u64 = rt.stats().gpu_submits.iter().sum();
        let gpu = random_network(seed, NeuroBackend::Gpu, 1000);
        let submits: u64 = rt.stats().gpu_submits.iter().sum::<u64>() - before;
        let spikes: f64 = cpu.2.iter().flatten().sum::<f64>() + cpu.3.iter().flatten().sum::<f64>();
        assert!(
            spikes > 100.0,
            "seed {seed}: the network should be active ({spikes} spikes)"
        );
        assert_eq!(cpu, gpu, "seed {seed}");
        // 1000 steps in chunks of STEPS_PER_SUBMIT (+ uploads, downloads, host sets).
        let chunks = 1000u64.div_ceil(hetflow::neuro::gpu::STEPS_PER_SUBMIT);
        assert!(
            submits <= chunks + 30,
            "seed {seed}: {submits} submissions for 1000 steps"
        );
    }
}

/// A CPU process resetting a GPU LIF's v every 7 steps through a RefPort.
struct Resetter {
    r: PortIx,
    seen: Arc<Mutex<Vec<(u64, f64)>>>,
}
impl ProcessModel for Resetter {
    fn name(&self) -> &str {
        "PyResetter"
    }
    fn run_spk(&mut self, _: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
    fn post_guard(&self, t: u64) -> bool {
        t.is_multiple_of(7)
    }
    fn run_post_mgmt(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let v = cx.ref_read(self.r)?.to_f64();
        self.seen.lock().push((cx.time_step(), v[0]));
        cx.ref_write(
            self.r,
            &Data::F64(v.iter().map(|x| x * 0.5 - 1.0).collect()),
        )
    }
}

fn mixed(backend: NeuroBackend) -> (Vec<(u64, f64)>, Vec<Vec<f64>>) {
    let net = Network::new();
    let lif = Lif::new(
        &net,
        "lif",
        LifParams::new(3)
            .bias_mant(vec![0.3, 0.7, 1.1])
            .dv(0.1)
            .vth(5.0),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let p1 = net
        .process("p1", "P1")
        .ref_port("ref", &[3])
        .model(ModelSpec::leaf("PyResetter", &[], move |b| {
            Ok(Box::new(Resetter {
                r: b.port("ref")?,
                seen: s2.clone(),
            }))
        }))
        .build()
        .unwrap();
    p1.port("ref").unwrap().connect_var(&lif.v()).unwrap();
    let mon = Monitor::new(&net, "mon").unwrap();
    mon.probe(&lif.v(), 60).unwrap();
    let cfg = RunCfg::floating_pt().on(backend).with_runtime(rt());
    p1.run(RunSteps(60), &cfg).unwrap();
    let graph = p1.process_graph().unwrap();
    assert!(graph.contains(&format!("back end: {backend:?}")), "{graph}");
    let v = mon.data("lif.v").unwrap();
    p1.stop().unwrap();
    let s = seen.lock().clone();
    (s, v)
}

#[test]
fn cpu_process_reads_and_writes_a_gpu_var_through_a_refport() {
    if gpu().is_none() {
        return;
    }
    let (seen_cpu, v_cpu) = mixed(NeuroBackend::Cpu);
    let (seen_gpu, v_gpu) = mixed(NeuroBackend::Gpu);
    assert_eq!(seen_cpu.len(), 8);
    assert_eq!(
        seen_cpu.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![7, 14, 21, 28, 35, 42, 49, 56]
    );
    let (t_cpu, x_cpu): (Vec<u64>, Vec<f64>) = seen_cpu.iter().copied().unzip();
    let (t_gpu, x_gpu): (Vec<u64>, Vec<f64>) = seen_gpu.iter().copied().unzip();
    assert_eq!(t_cpu, t_gpu);
    assert_same_floats(&x_cpu, &x_gpu, "values seen through the RefPort");
    // The monitor reads v after the write of the same step on the CPU (it runs after P1 in
    // POST_MGMT); on the GPU the monitor records on the device before the host sync, so
    // compare the steps no write touched.
    for t in 0..60 {
        if (t + 1) % 7 != 0 {
            assert_same_floats(&v_cpu[t], &v_gpu[t], &format!("step {}", t + 1));
        }
    }
}

/// A LIF whose spikes go to a process named `custom` that has only a CPU model.
fn lif_into_a_process_without_gpu_model() -> Lif {
    struct Nop;
    impl ProcessModel for Nop {
        fn name(&self) -> &str {
            "PyNop"
        }
        fn run_spk(&mut self, _: &mut Cx<'_>) -> Result<(), NeuroError> {
            Ok(())
        }
    }
    let net = Network::new();
    let lif = Lif::new(&net, "lif", LifParams::new(2)).unwrap();
    let p = net
        .process("custom", "Custom")
        .in_port("i", &[2])
        .model(ModelSpec::leaf("PyNop", &[], |_| Ok(Box::new(Nop))))
        .build()
        .unwrap();
    lif.s_out().connect(&p.port("i").unwrap()).unwrap();
    lif
}

#[test]
fn non_gpu_process_with_message_ports_is_refused_by_name() {
    if gpu().is_none() {
        return;
    }
    let lif = lif_into_a_process_without_gpu_model();
    let e = lif
        .process()
        .run(
            RunSteps(1),
            &RunCfg::floating_pt()
                .on(NeuroBackend::Gpu)
                .with_runtime(rt()),
        )
        .unwrap_err();
    assert!(
        matches!(&e, NeuroError::NoProcessModel { process, .. } if process == "custom"),
        "{e}"
    );
}

#[test]
fn sparse_process_equals_dense_on_the_gpu() {
    if gpu().is_none() {
        return;
    }
    neuro_common::dense_vs_sparse(NeuroBackend::Gpu, Some(&rt()));
}

#[test]
fn gpu_benchmark_network_spikes_like_the_cpu_and_pauses() {
    if gpu().is_none() {
        return;
    }
    for fixed in [false, true] {
        let c = hetflow_cli::bench::neuro::run(&rt(), 500, 0.1, 300, fixed, 3, NeuroBackend::Cpu)
            .unwrap();
        let g = hetflow_cli::bench::neuro::run(&rt(), 500, 0.1, 300, fixed, 3, NeuroBackend::Gpu)
            .unwrap();
        assert_eq!(
            (c.spikes, c.syn_events),
            (g.spikes, g.syn_events),
            "fixed = {fixed}"
        );
    }
    // A non-blocking GPU run pauses between submissions and resumes where it stopped.
    let net = Network::new();
    let lif = Lif::new(
        &net,
        "lif",
        LifParams::new(4)
            .bias_mant(vec![1.0, 2.0, 3.0, 4.0])
            .vth(5.0),
    )
    .unwrap();
    let cfg = RunCfg::floating_pt()
        .on(NeuroBackend::Gpu)
        .with_runtime(rt());
    let p = lif.process().clone();
    p.run(RunSteps(1_000_000).non_blocking(), &cfg).unwrap();
    assert!(matches!(lif.v().get(), Err(NeuroError::Running { .. })));
    // time_step() answers while the device runs.
    let t0 = std::time::Instant::now();
    while p.time_step() < 256 && t0.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(p.time_step() >= 256, "the GPU run should progress");
    p.pause().unwrap();
    let t = p.time_step();
    assert!(
        t < 1_000_000 && t.is_multiple_of(hetflow::neuro::gpu::STEPS_PER_SUBMIT),
        "paused at {t}"
    );
    assert_eq!(lif.v().get().unwrap().to_f64()[0], (t % 6) as f64);
    p.run(RunSteps(5), &cfg).unwrap();
    assert_eq!(p.time_step(), t + 5);
    assert_eq!(lif.v().get().unwrap().to_f64()[0], ((t + 5) % 6) as f64);
    p.stop().unwrap();
}

#[test]
fn the_runtime_places_the_whole_network() {
    let Some(shared_rt) = gpu() else {
        return;
    };
    let hardware = !shared_rt.topology().gpus[0].device_type.shares_cpu_cores();
    // Every golden network has GPU models: on a hardware GPU it goes there, on a software
    // rasterizer (lavapipe) to the CPU; the results match Lava either way.
    let dir = neuro_common::lava_data_dir();
    let path = dir.join("lava_ff_20_10_fixed.json");
    let r = check_file_on(&path, NeuroBackend::Auto, Some(&rt())).unwrap();
    assert!(r.is_match(), "{:?}", r.mismatch);
    let expected = if hardware {
        "placed by the runtime: Gpu"
    } else {
        "placed by the runtime: Cpu (no hardware GPU"
    };
    assert!(r.process_graph.contains(expected), "{}", r.process_graph);

    // A process without a GPU model that exchanges messages keeps the network on the CPU,
    // where NeuroBackend::Gpu refuses it.
    let lif = lif_into_a_process_without_gpu_model();
    let cfg = RunCfg::floating_pt()
        .on(NeuroBackend::Auto)
        .with_runtime(rt());
    let graph = lif.process().compile(&cfg).unwrap();
    assert!(
        graph.contains("placed by the runtime: Cpu (a process of the network has no GPU model)"),
        "{graph}"
    );
    lif.process().run(RunSteps(3), &cfg).unwrap();
    assert_eq!(lif.process().time_step(), 3);
}

/// A CPU LIF `a` feeding a Dense `ab` into a CPU LIF `b` and back through `ba`, fixed
/// point; `cfg` says where each process runs. Returns (u and v of both, spike counts of
/// both) after `warm + steps` steps, and the host<->GPU moves of the last `steps` steps.
fn cpu_gpu_chain(
    rt: &hetflow::Runtime,
    cfg: RunCfg,
    warm: u64,
    steps: u64,
) -> (Vec<Vec<f64>>, (u64, u64)) {
    let cfg = cfg.with_runtime(rt.handle());
    let (na, nb) = (40usize, 30usize);
    let mut r = Rng(4242);
    let net = Network::new();
    let lif = |name: &str, n: usize, r: &mut Rng| {
        Lif::new(
            &net,
            name,
            LifParams::new(n)
                .du(900.0)
                .dv(300.0)
                .vth(200.0)
                .bias_mant((0..n).map(|_| r.int(0, 90) as f64).collect())
                .bias_exp(vec![6.0; n]),
        )
        .unwrap()
    };
    let a = lif("a", na, &mut r);
    let b = lif("b", nb, &mut r);
    let dense = |name: &str, n_out: usize, n_in: usize, r: &mut Rng| {
        let w = (0..n_out * n_in)
            .map(|_| {
                if r.int(0, 3) == 0 {
                    r.int(-120, 200) as f64
                } else {
                    0.0
                }
            })
            .collect();
        Dense::new(&net, name, DenseParams::new(n_out, n_in, w)).unwrap()
    };
    let ab = dense("ab", nb, na, &mut r);
    let ba = dense("ba", na, nb, &mut r);
    a.s_out().connect(&ab.s_in()).unwrap();
    ab.a_out().connect(&b.a_in()).unwrap();
    b.s_out().connect(&ba.s_in()).unwrap();
    ba.a_out().connect(&a.a_in()).unwrap();
    let ca = SpikeCounter::new(&net, "ca", na).unwrap();
    let cb = SpikeCounter::new(&net, "cb", nb).unwrap();
    a.s_out().connect(&ca.s_in()).unwrap();
    b.s_out().connect(&cb.s_in()).unwrap();
    let p = a.process().clone();
    p.run(RunSteps(warm), &cfg).unwrap();
    let link = |from, to| rt.stats().link(from, to).moves;
    use hetflow::MemorySpace::{Gpu, Host};
    let (up0, down0) = (link(Host, Gpu(0)), link(Gpu(0), Host));
    p.run(RunSteps(steps), &cfg).unwrap();
    let moves = (link(Host, Gpu(0)) - up0, link(Gpu(0), Host) - down0);
    let out = vec![
        a.u().get().unwrap().to_f64(),
        a.v().get().unwrap().to_f64(),
        b.u().get().unwrap().to_f64(),
        b.v().get().unwrap().to_f64(),
        ca.count().get().unwrap().to_f64(),
        cb.count().get().unwrap().to_f64(),
        ab.a_buff().get().unwrap().to_f64(),
    ];
    p.stop().unwrap();
    (out, moves)
}

#[test]
fn mixed_cpu_lif_gpu_dense_equals_all_cpu_in_fixed_point() {
    if gpu().is_none() {
        return;
    }
    // A runtime of its own (on the process's one device), so that the moves counted are
    // this network's, not those of the tests running beside it on the shared runtime.
    let own = hetflow::Runtime::builder().build().unwrap();
    let (cpu, _) = cpu_gpu_chain(&own, RunCfg::fixed_pt(), 10, 200);
    let gpu_dense = RunCfg::fixed_pt()
        .pin("ab", hetflow::DeviceId::Gpu(0))
        .pin("ba", hetflow::DeviceId::Gpu(0));
    let (mixed, moves) = cpu_gpu_chain(&own, gpu_dense, 10, 200);
    let spikes: f64 = cpu[4].iter().chain(&cpu[5]).sum();
    assert!(
        spikes > 500.0,
        "the network should be active ({spikes} spikes)"
    );
    assert_eq!(
        cpu, mixed,
        "a CPU LIF -> GPU Dense -> CPU LIF network equals all-CPU"
    );
    // Each CPU<->GPU connection costs one move per step: the two LIFs' spikes go up, the
    // two Denses' activations come down.
    assert_eq!(
        moves,
        (2 * 200, 2 * 200),
        "(host->gpu, gpu->host) moves in 200 steps"
    );
    // And the other way round: GPU LIFs around CPU Denses.
    let gpu_lifs = RunCfg::fixed_pt()
        .pin("a", hetflow::DeviceId::Gpu(0))
        .pin("b", hetflow::DeviceId::Gpu(0));
    let (mixed2, _) = cpu_gpu_chain(&own, gpu_lifs, 10, 200);
    assert_eq!(cpu, mixed2, "GPU LIFs with CPU Denses equal all-CPU");
}
