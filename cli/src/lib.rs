//! The `hetflow` command-line tool's library: the benchmark suites (each against a baseline
//! measured in the same run: rayon, raw wgpu, memcpy, raw MPI RMA, faer, a plain loop), the
//! Lava golden checker and the progress display of the long commands. None of this is part
//! of the `hetflow` library's API: it is built on that API only, so a program depending on
//! `hetflow` compiles none of it (nor clap, plotters, rayon, criterion, indicatif or
//! tracing-subscriber).

#![warn(missing_docs)]
#![recursion_limit = "256"]

pub mod bench;
pub mod lava_check;
pub mod progress;
