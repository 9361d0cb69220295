//! The `hetflow` command-line tool: `info` prints the machine, `bench` measures the engine,
//! `lava-check` compares a network with a Lava reference file (exit 0 on a match, 1 on a
//! difference, 2 when the file cannot be used).

use clap::{Parser, Subcommand};
use hetflow_cli::progress::Progress;

#[derive(Parser)]
#[command(
    name = "hetflow",
    version,
    about = "Heterogeneous task runtime: CPU work stealing + wgpu GPUs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the topology: the CPU and every GPU with backend, driver and limits, and the
    /// HiCR view (devices -> memory spaces, compute resources).
    Info {
        /// Print the topology as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Measure task overhead and GPU round trips against rayon and raw wgpu.
    Bench {
        /// Instead of the engine suite: `remote` (all-reduce bandwidth across replicas
        /// against a plain host sum) or `comm` (memory-slot put/get latency and bandwidth,
        /// 8 B to 64 MiB, against memcpy on the thread backend, or raw MPI RMA under mpirun
        /// when built with `--features mpi`) or `neuro` (the recurrent LIF + Dense network on
        /// the CPU and the GPU, N = 1k and 10k with p = 0.1 and 100k sparse, against the
        /// same network as a plain loop; table + SVG plot).
        ///
        /// Long suites show their progress on stderr: a spinner or bar on a terminal, one
        /// `  measuring <step> ...` line per step otherwise.
        #[arg(value_enum)]
        suite: Option<BenchSuite>,
        /// CPU worker threads (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Repetition multiplier (1 = quick).
        #[arg(long, default_value_t = 1)]
        scale: usize,
        /// Instead of the engine suite: tiled GEMM and Cholesky of this size under each mode,
        /// against faer's own calls.
        #[arg(long)]
        linalg: Option<usize>,
        /// Tile size for --linalg.
        #[arg(long, default_value_t = 256)]
        tile: usize,
        /// Where --linalg writes its SVG plot.
        #[arg(long, default_value = "bench-linalg.svg")]
        svg: std::path::PathBuf,
        /// Network sizes for `bench neuro` (p = 0.1 up to 10k; above, --neuro-sparse-p):
        /// `--neuro-sizes 1000,10000` or `--neuro-sizes 1000 10000` (space-separated, after
        /// `neuro`).
        #[arg(
            long,
            num_args = 1..,
            value_delimiter = ',',
            default_values_t = [1000usize, 10000, 100000]
        )]
        neuro_sizes: Vec<usize>,
        /// Connection probability for `bench neuro` sizes above 10k (sparse enough to fit).
        #[arg(long, default_value_t = 0.001)]
        neuro_sparse_p: f64,
        /// Skip the GPU rows of `bench neuro`.
        #[arg(long, conflicts_with = "neuro_gpu_only")]
        neuro_cpu_only: bool,
        /// Only the GPU rows of `bench neuro` (an error when there is no GPU).
        #[arg(long)]
        neuro_gpu_only: bool,
        /// Where `bench neuro` writes its SVG plot.
        #[arg(long, default_value = "bench-neuro.svg")]
        neuro_svg: std::path::PathBuf,
        /// Time steps for `bench neuro`.
        #[arg(long, default_value_t = 1000)]
        neuro_steps: u64,
        /// Rounds of `bench neuro` (each configuration once per round, alternating); the
        /// table shows the median time of each configuration.
        #[arg(long, default_value_t = 1)]
        neuro_rounds: usize,
        /// `bench neuro` also runs the CPU rows on a one-worker runtime (the parallel
        /// speed-up column), alternating with the main runtime.
        #[arg(long)]
        neuro_one_worker: bool,
        /// Only floating point (`float`) or fixed point (`fixed`) rows in `bench neuro`.
        #[arg(long)]
        neuro_model: Option<String>,
        /// A peer's results file for `bench neuro` (written by `benches/brian2_peer.py`):
        /// prints the peer's time on the same network and the ratio, after checking that
        /// the spike counts are equal.
        #[arg(long)]
        peer: Option<std::path::PathBuf>,
    },
    /// The performance model placement learns and keeps between runs: where it lives, what
    /// it holds, and clearing it.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Rebuild the network of a Lava reference JSON file, run it and compare with Lava's
    /// recorded spikes, u and v; prints `match` (exit 0) or the first difference (exit 1).
    LavaCheck {
        /// The reference file.
        file: std::path::PathBuf,
        /// Which models run it.
        #[arg(long, value_enum, default_value_t = CheckBackend::Cpu)]
        backend: CheckBackend,
        /// Also print the compiled process graph.
        #[arg(long)]
        graph: bool,
    },
}

#[derive(Subcommand)]
enum ModelAction {
    /// Where the model of this machine's devices lives and what it holds.
    Show,
    /// Delete the model file: the next run starts uncalibrated.
    Reset,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckBackend {
    Cpu,
    Gpu,
    /// The runtime places the network (GPU only on a hardware GPU with a model for every
    /// process).
    Auto,
}

/// A benchmark suite other than the engine's.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchSuite {
    /// Remote buffers and collectives: all-reduce bandwidth against a host sum.
    Remote,
    /// Memory slots: put/get latency and bandwidth against memcpy / raw MPI RMA.
    Comm,
    /// Neural networks: LIF + Dense updates and synaptic events per second, CPU and GPU.
    Neuro,
    /// Placement: first and second runs of the default policy against the best single
    /// device and the better-of-both bound (GPU-fast, CPU-fast and mixed tasks).
    Sched,
}

// A private `XDG_RUNTIME_DIR` for this process, removed when dropped: the one the examples
// use (Mesa's harmless "XDG_RUNTIME_DIR is invalid" message, explained there).
#[path = "../../examples/support/quiet.rs"]
mod quiet;
use quiet::PrivateRuntimeDir;

fn main() -> std::process::ExitCode {
    let _runtime_dir = PrivateRuntimeDir::install();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json } => info(json),
        Command::Bench {
            suite: Some(BenchSuite::Remote),
            workers,
            scale,
            ..
        } => bench_remote(workers, scale),
        Command::Bench {
            linalg: Some(n),
            tile,
            svg,
            ..
        } => bench_linalg(n, tile, &svg),
        Command::Bench {
            suite: Some(BenchSuite::Comm),
            scale,
            ..
        } => bench_comm(scale),
        Command::Bench {
            suite: Some(BenchSuite::Neuro),
            neuro_sizes,
            neuro_steps,
            neuro_sparse_p,
            neuro_cpu_only,
            neuro_gpu_only,
            neuro_svg,
            neuro_rounds,
            neuro_one_worker,
            neuro_model,
            peer,
            workers,
            ..
        } => bench_neuro(NeuroArgs {
            sizes: neuro_sizes,
            steps: neuro_steps,
            sparse_p: neuro_sparse_p,
            rows: (!neuro_gpu_only, !neuro_cpu_only),
            svg: neuro_svg,
            rounds: neuro_rounds.max(1),
            one_worker: neuro_one_worker,
            model: neuro_model,
            peer,
            workers,
        }),
        Command::Bench {
            suite: Some(BenchSuite::Sched),
            workers,
            scale,
            ..
        } => bench_sched(workers, scale),
        Command::Bench { workers, scale, .. } => bench(workers, scale),
        Command::Model { action } => model(action),
        Command::LavaCheck {
            file,
            backend,
            graph,
        } => return lava_check(&file, backend, graph),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn info(json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let rt = hetflow::Runtime::builder().build()?;
    if json {
        println!("{}", rt.topology().to_json());
    } else {
        print!("{}", rt.topology());
        print!("{}", model_text(&rt));
    }
    Ok(())
}

/// Where the performance model lives and what it holds, per device.
fn model_text(rt: &hetflow::Runtime) -> String {
    let m = rt.perf_model();
    let mut s = format!("placement policy: {:?}\n", rt.policy());
    match m.store_path() {
        Some((path, ro)) => s.push_str(&format!(
            "performance model: {}{} ({})\n",
            path.display(),
            if ro { " (read-only)" } else { "" },
            if path.exists() {
                "exists"
            } else {
                "not written yet"
            }
        )),
        None => s.push_str(
            "performance model: not persisted (HETFLOW_PERF_MODEL=off or no cache directory)\n",
        ),
    }
    for d in m.summary() {
        s.push_str(&format!(
            "  {:<5} {} kinds, {} sizes, {} samples; time vs CPU {:.2}x ({})\n        {}\n",
            d.device.to_string(),
            d.kinds,
            d.keys,
            d.samples,
            d.ratio_to_cpu,
            if d.ratio_learned { "learned" } else { "prior" },
            d.identity
        ));
    }
    s
}

fn model(action: ModelAction) -> Result<(), Box<dyn std::error::Error>> {
    let rt = hetflow::Runtime::builder().build()?;
    match action {
        ModelAction::Show => print!("{}", model_text(&rt)),
        ModelAction::Reset => {
            let path = rt.perf_model().store_path().map(|(p, _)| p.to_path_buf());
            // Dropped first, so that it does not write the file back.
            drop(rt);
            match path {
                Some(p) if p.exists() => {
                    std::fs::remove_file(&p)?;
                    println!("removed {}", p.display());
                }
                Some(p) => println!("nothing to remove: {} does not exist", p.display()),
                None => println!("the performance model is not persisted here"),
            }
        }
    }
    Ok(())
}

fn bench_sched(workers: Option<usize>, scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    println!("hetflow bench sched: the default policy's first and second runs against the best single device (medians of 5 rounds)");
    let progress = Progress::new("bench sched", None);
    let rows = hetflow_cli::bench::sched::suite_rounds(workers, scale, 5, |s| progress.step(s))?;
    progress.finish();
    print!("{}", hetflow_cli::bench::sched::table(&rows));
    Ok(())
}

fn bench_linalg(
    n: usize,
    tile: usize,
    svg: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("hetflow bench --linalg {n} --tile {tile}");
    let progress = Progress::new("bench --linalg", None);
    let rows = hetflow_cli::bench::engine::linalg_suite(n, tile, |step| progress.step(step))?;
    progress.finish();
    print!("{}", hetflow_cli::bench::engine::linalg_table(&rows));
    hetflow_cli::bench::engine::linalg_svg(&rows, svg)?;
    println!("plot written to {}", svg.display());
    Ok(())
}

fn bench_comm(scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "mpi")]
    if hetflow::comm::MpiInstances::launched_by_mpirun() {
        let mut comm = hetflow::comm::MpiInstances::init()?;
        let ranks = comm.instances().len();
        let progress = Progress::new("bench comm", None);
        let rows =
            hetflow_cli::bench::comm::mpi_suite(&mut comm, scale, &|step| progress.step(step))?;
        progress.finish();
        if let Some(rows) = rows {
            println!("hetflow bench comm: MPI backend, {ranks} ranks (rank 0 -> rank 1), against raw MPI RMA and memcpy");
            print!("{}", hetflow_cli::bench::comm::table(&rows));
        }
        return Ok(());
    }
    println!("hetflow bench comm: thread backend, 2 instances (0 -> 1), against memcpy");
    let progress = Progress::new("bench comm", None);
    let rows = hetflow_cli::bench::comm::thread_suite(scale, &|step| progress.step(step))?;
    progress.finish();
    print!("{}", hetflow_cli::bench::comm::table(&rows));
    Ok(())
}

fn bench(workers: Option<usize>, scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = hetflow::Runtime::builder();
    if let Some(w) = workers {
        b = b.cpu_workers(w);
    }
    let rt = b.build()?;
    println!("hetflow bench on:\n{}", rt.topology());
    let progress = Progress::new("bench", None);
    let mut rows = hetflow_cli::bench::engine::engine_suite(&rt, scale, |step| progress.step(step));
    if rt.gpu_count() > 0 {
        progress.step("uploads");
        rows.extend(hetflow_cli::bench::engine::upload_suite(32, scale));
    }
    progress.finish();
    println!("{}", hetflow_cli::bench::engine::table(&rows));
    Ok(())
}

fn bench_remote(workers: Option<usize>, scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = hetflow::Runtime::builder();
    if let Some(w) = workers {
        b = b.cpu_workers(w);
    }
    let rt = b.build()?;
    println!("hetflow bench remote on:\n{}", rt.topology());
    let progress = Progress::new("bench remote", None);
    let rows =
        hetflow_cli::bench::remote::all_reduce_suite(&rt, scale, |step| progress.step(step))?;
    progress.finish();
    print!("{}", hetflow_cli::bench::remote::all_reduce_table(&rows));
    Ok(())
}

/// What `bench neuro` measures.
struct NeuroArgs {
    sizes: Vec<usize>,
    steps: u64,
    sparse_p: f64,
    rows: (bool, bool),
    svg: std::path::PathBuf,
    rounds: usize,
    one_worker: bool,
    model: Option<String>,
    peer: Option<std::path::PathBuf>,
    workers: Option<usize>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn bench_neuro(a: NeuroArgs) -> Result<(), Box<dyn std::error::Error>> {
    use hetflow::neuro::NeuroBackend;
    use hetflow_cli::bench::neuro as bench;
    let (cpu_rows, gpu_rows) = a.rows;
    let peer = match &a.peer {
        Some(p) => Some(bench::Peer::read(p)?),
        None => None,
    };
    let mut b = hetflow::Runtime::builder();
    if let Some(w) = a.workers {
        b = b.cpu_workers(w);
    }
    if !gpu_rows {
        b = b.no_gpu();
    }
    let rt = b.build()?;
    let one = if a.one_worker && cpu_rows {
        Some(
            hetflow::Runtime::builder()
                .cpu_workers(1)
                .no_gpu()
                .build()?,
        )
    } else {
        None
    };
    let mut backends = Vec::new();
    if cpu_rows {
        backends.push(NeuroBackend::Cpu);
    }
    if gpu_rows {
        match rt.gpu_count() {
            0 if cpu_rows => eprintln!("  no GPU rows: no GPU adapter"),
            0 => return Err("--neuro-gpu-only, but no GPU adapter".into()),
            _ => {
                backends.push(NeuroBackend::Gpu);
                println!(
                    "GPU: {}",
                    rt.topology()
                        .to_string()
                        .lines()
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                );
            }
        }
    }
    let fixeds: Vec<bool> = match a.model.as_deref() {
        Some("float") => vec![false],
        Some("fixed") => vec![true],
        Some(m) => return Err(format!("--neuro-model {m}: `float` or `fixed` expected").into()),
        None => vec![false, true],
    };
    println!(
        "hetflow bench neuro: recurrent LIF + Dense, {} steps, {} CPU workers, median of {} round(s)",
        a.steps,
        rt.topology().cpu.workers,
        a.rounds
    );
    let mut configs = Vec::new();
    for &n in &a.sizes {
        let p = if n > 10_000 { a.sparse_p } else { 0.1 };
        for &backend in &backends {
            for &fixed in &fixeds {
                configs.push((n, p, backend, fixed));
            }
        }
    }
    let per_round = configs.len() * if one.is_some() { 2 } else { 1 };
    let progress = Progress::new("bench neuro", Some((per_round * a.rounds) as u64));
    let mut runs: Vec<Vec<bench::NeuroBenchRow>> = vec![Vec::new(); configs.len()];
    let mut one_s: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..a.rounds {
        for (k, &(n, p, backend, fixed)) in configs.iter().enumerate() {
            let model = if fixed { "fixed_pt" } else { "floating_pt" };
            progress.step(&format!(
                "round {round}: N = {n}, p = {p}, {model}, {backend:?}"
            ));
            // Alternate which runtime goes first, so drift hits both alike.
            let mut order: Vec<Option<&hetflow::Runtime>> = vec![None];
            if let (Some(o), NeuroBackend::Cpu) = (&one, backend) {
                order.push(Some(o));
                if round % 2 == 1 {
                    order.reverse();
                }
            }
            for r in order {
                match r {
                    None => runs[k].push(bench::run(&rt, n, p, a.steps, fixed, 42, backend)?),
                    Some(o) => {
                        let row = bench::run(o, n, p, a.steps, fixed, 42, backend)?;
                        one_s[k].push(row.seconds);
                    }
                }
            }
        }
    }
    progress.finish();
    let rows: Vec<bench::NeuroBenchRow> = runs
        .into_iter()
        .zip(one_s)
        .map(|(rs, ones)| {
            let mut row = rs[0].clone();
            row.seconds = median(rs.iter().map(|r| r.seconds).collect());
            row.plain_loop_seconds = rs[0]
                .plain_loop_seconds
                .map(|_| median(rs.iter().filter_map(|r| r.plain_loop_seconds).collect()));
            row.one_worker_seconds = (!ones.is_empty()).then(|| median(ones));
            row
        })
        .collect();
    print!("{}", bench::table(&rows));
    if let Some(peer) = &peer {
        print!("{}", bench::peer_table(&rows, peer));
    }
    bench::svg(&rows, &a.svg)?;
    println!("plot written to {}", a.svg.display());
    Ok(())
}

fn lava_check(
    file: &std::path::Path,
    backend: CheckBackend,
    graph: bool,
) -> std::process::ExitCode {
    let backend = match backend {
        CheckBackend::Cpu => hetflow::neuro::NeuroBackend::Cpu,
        CheckBackend::Gpu => hetflow::neuro::NeuroBackend::Gpu,
        CheckBackend::Auto => hetflow::neuro::NeuroBackend::Auto,
    };
    let rt = match backend {
        hetflow::neuro::NeuroBackend::Cpu => None,
        _ => match hetflow::Runtime::builder().build() {
            Ok(rt) => Some(rt),
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    let handle = rt.as_ref().map(|r| r.handle());
    match hetflow_cli::lava_check::check_file_on(file, backend, handle.as_ref()) {
        Ok(report) => {
            if graph {
                print!("{}", report.process_graph);
            }
            match &report.mismatch {
                None => {
                    println!("match");
                    eprintln!(
                        "{}: {} values over {} steps ({}) equal",
                        report.name, report.compared, report.num_steps, report.tag
                    );
                    std::process::ExitCode::SUCCESS
                }
                Some(m) => {
                    println!("{m}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neuro_sizes(args: &[&str]) -> Vec<usize> {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Bench { neuro_sizes, .. } => neuro_sizes,
            _ => panic!("{args:?} is not `bench`"),
        }
    }

    #[test]
    fn neuro_sizes_take_commas_or_spaces() {
        let comma = neuro_sizes(&["hetflow", "bench", "neuro", "--neuro-sizes", "1000,10000"]);
        assert_eq!(comma, [1000, 10000]);
        let spaces = [
            "hetflow",
            "bench",
            "neuro",
            "--neuro-sizes",
            "1000",
            "10000",
        ];
        assert_eq!(neuro_sizes(&spaces), [1000, 10000]);
        let mixed = [
            "hetflow",
            "bench",
            "neuro",
            "--neuro-sizes",
            "1000,2000",
            "10000",
        ];
        assert_eq!(neuro_sizes(&mixed), [1000, 2000, 10000]);
        let then_more = [
            "hetflow",
            "bench",
            "neuro",
            "--neuro-sizes",
            "1000",
            "2000",
            "--neuro-steps",
            "50",
        ];
        assert_eq!(neuro_sizes(&then_more), [1000, 2000]);
        assert_eq!(
            neuro_sizes(&["hetflow", "bench", "neuro"]),
            [1000, 10000, 100000],
            "the defaults the help shows"
        );
        assert!(Cli::try_parse_from(["hetflow", "bench", "neuro", "--neuro-sizes"]).is_err());
        assert!(Cli::try_parse_from(["hetflow", "bench", "--neuro-sizes", "1k"]).is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
