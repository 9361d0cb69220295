//! HiCR's distributed memcpy tutorial: exactly two instances; the root sends.
//!
//! The receiver exchanges its buffer under a tag, the sender puts
//! "Hello, receiver! This is sender." into it, both fence, and the receiver prints
//!
//! ```text
//! [Receiver] Received Message Count: 1
//! [Receiver] Received buffer: Hello, receiver! This is sender.
//! ```
//!
//! Runs on two threads by default (`cargo run --release --example memcpy_distributed`,
//! `-- --instances N` to try another count, which fails with a clear error). Built with
//! `--features mpi` and launched by `mpirun -n 2`, the two instances are MPI ranks.

use hetflow::comm::{CommBackend, CommError, CommunicationManager, MemoryManager, Tag};
use hetflow::Topology;

const BUFFER_SIZE: usize = 256;
const COMM_TAG: Tag = 0;
const SRC_OFFSET: usize = 0;
const DST_OFFSET: usize = 0;
const MESSAGE: &str = "Hello, receiver! This is sender.";

/// What the receiver saw: (received message count, buffer as text).
type Received = Option<(u64, String)>;

// ANCHOR: memcpy
fn remote_memcpy<B: CommBackend>(
    comm: &mut CommunicationManager<B>,
) -> Result<Received, CommError> {
    // Exactly two instances: the root sends, the other receives.
    comm.require_instances(2)?;
    let me = comm.instance_id();
    let sender = comm.root_instance();
    let receiver = comm.instances().into_iter().find(|&i| i != sender).ok_or(
        CommError::WrongInstanceCount {
            expected: 2,
            found: 1,
        },
    )?;

    // The first memory space of the first device of the topology (the host RAM).
    let topology = Topology::detect();
    let devices = topology.devices();
    let first_space = &devices[0].memory_spaces[0];
    let space = MemoryManager::space_of(first_space)?;
    let mm = MemoryManager::new();
    let buffer = mm.allocate(space, BUFFER_SIZE)?;

    // The receiver exchanges its buffer; the sender exchanges nothing.
    let key = receiver.0 as u64;
    if me == sender {
        comm.exchange_global_slots(COMM_TAG, &[])?;
    } else {
        comm.exchange_global_slots(COMM_TAG, &[(key, &buffer)])?;
    }
    comm.fence(COMM_TAG)?;
    let receiver_slot = comm.global_slot(COMM_TAG, key)?;

    if me == sender {
        buffer.write(0, MESSAGE.as_bytes())?;
        comm.memcpy(&receiver_slot, DST_OFFSET, &buffer, SRC_OFFSET, BUFFER_SIZE)?;
    }
    comm.fence(COMM_TAG)?;

    if me == receiver {
        let count = comm.messages(&buffer)?.received;
        let bytes = buffer.to_vec()?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
        println!("[Receiver] Received Message Count: {count}");
        println!("[Receiver] Received buffer: {text}");
        return Ok(Some((count, text)));
    }
    Ok(None)
}
// ANCHOR_END: memcpy

fn check(received: &Received) -> Result<(), String> {
    match received {
        Some((1, text)) if text == MESSAGE => Ok(()),
        Some((count, text)) => Err(format!(
            "expected 1 message \"{MESSAGE}\", got {count} message(s) \"{text}\""
        )),
        None => Ok(()),
    }
}

#[path = "support/quiet.rs"]
mod quiet;

fn main() -> std::process::ExitCode {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let args: Vec<String> = std::env::args().collect();
    let instances = match args.iter().position(|a| a == "--instances") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => {
                eprintln!("error: --instances needs a number");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => 2,
    };
    let results: Result<Vec<Result<Received, CommError>>, CommError> = run(instances);
    // Every instance reports; the same error from several instances is printed once.
    let errors: std::collections::BTreeSet<String> = match results {
        Ok(list) => list
            .into_iter()
            .filter_map(|r| r.map_err(|e| e.to_string()).and_then(|r| check(&r)).err())
            .collect(),
        Err(e) => [e.to_string()].into(),
    };
    for e in &errors {
        eprintln!("error: {e}");
    }
    if errors.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Under an MPI launcher (with the `mpi` feature) this process is one rank; otherwise the
/// instances are threads.
fn run(instances: usize) -> Result<Vec<Result<Received, CommError>>, CommError> {
    #[cfg(feature = "mpi")]
    if hetflow::comm::MpiInstances::launched_by_mpirun() {
        let mut comm = hetflow::comm::MpiInstances::init()?;
        return Ok(vec![remote_memcpy(&mut comm)]);
    }
    hetflow::comm::ThreadInstances::run(instances, |mut comm| remote_memcpy(&mut comm))
}
