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
    /// Print the topology: the CPU and every GPU with backend, driver and limits.
    Info,
    /// Measure task overhead and GPU round trips against rayon and raw wgpu.
    Bench {
        /// CPU worker threads (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Repetition multiplier (1 = quick).
        #[arg(long, default_value_t = 1)]
        scale: usize,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Bench { workers, scale } => bench(workers, scale),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn info() -> Result<(), Box<dyn std::error::Error>> {
    let rt = hetflow::Runtime::builder().build()?;
    print!("{}", rt.topology());
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
