//! The standard processes: LIF, Dense, spike source and sink, Monitor.

pub mod dense;
pub mod io;
pub mod lif;
pub mod monitor;
