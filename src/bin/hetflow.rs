//! The `hetflow` command-line tool: `info` prints the machine, `bench` measures the engine.

use clap::{Parser, Subcommand};

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
        /// when built with `--features mpi`).
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
    },
}

/// A benchmark suite other than the engine's.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchSuite {
    /// Remote buffers and collectives: all-reduce bandwidth against a host sum.
    Remote,
    /// Memory slots: put/get latency and bandwidth against memcpy / raw MPI RMA.
    Comm,
}

fn main() -> std::process::ExitCode {
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
        Command::Bench { workers, scale, .. } => bench(workers, scale),
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
    }
    Ok(())
}

fn bench_linalg(
    n: usize,
    tile: usize,
    svg: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("hetflow bench --linalg {n} --tile {tile}");
    let rows = hetflow::bench::linalg_suite(n, tile, |step| eprintln!("  measuring {step} ..."))?;
    print!("{}", hetflow::bench::linalg_table(&rows));
    hetflow::bench::linalg_svg(&rows, svg)?;
    println!("plot written to {}", svg.display());
    Ok(())
}

fn bench_comm(scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "mpi")]
    if hetflow::comm::MpiInstances::launched_by_mpirun() {
        let mut comm = hetflow::comm::MpiInstances::init()?;
        let ranks = comm.instances().len();
        if let Some(rows) = hetflow::comm::bench::mpi_suite(&mut comm, scale)? {
            println!("hetflow bench comm: MPI backend, {ranks} ranks (rank 0 -> rank 1), against raw MPI RMA and memcpy");
            print!("{}", hetflow::comm::bench::table(&rows));
        }
        return Ok(());
    }
    println!("hetflow bench comm: thread backend, 2 instances (0 -> 1), against memcpy");
    let rows = hetflow::comm::bench::thread_suite(scale)?;
    print!("{}", hetflow::comm::bench::table(&rows));
    Ok(())
}

fn bench(workers: Option<usize>, scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = hetflow::Runtime::builder();
    if let Some(w) = workers {
        b = b.cpu_workers(w);
    }
    let rt = b.build()?;
    println!("hetflow bench on:\n{}", rt.topology());
    let mut rows =
        hetflow::bench::engine_suite(&rt, scale, |step| eprintln!("  measuring {step} ..."));
    if rt.gpu_count() > 0 {
        eprintln!("  measuring uploads ...");
        rows.extend(hetflow::bench::upload_suite(32, scale));
    }
    println!("{}", hetflow::bench::table(&rows));
    Ok(())
}

fn bench_remote(workers: Option<usize>, scale: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = hetflow::Runtime::builder();
    if let Some(w) = workers {
        b = b.cpu_workers(w);
    }
    let rt = b.build()?;
    println!("hetflow bench remote on:\n{}", rt.topology());
    let rows = hetflow::remote::bench::all_reduce_suite(&rt, scale, |step| {
        eprintln!("  measuring {step} ...")
    })?;
    print!("{}", hetflow::remote::bench::all_reduce_table(&rows));
    Ok(())
}
