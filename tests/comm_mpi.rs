//! The MPI backend's tests. Run under a launcher, e.g.
//! `mpirun --allow-run-as-root --oversubscribe -n 2 target/release/deps/comm_mpi-<hash>`
//! (`-- ring` runs only the ring test, as CI does with `-n 4`). `cargo test --features mpi`
//! runs it as a single rank. One MPI universe per process, so this is a plain program
//! (harness = false) that runs its checks in order on every rank and prints
//! `N passed, M failed` on rank 0.

use hetflow::comm::{
    CommError, CommunicationManager, LocalSlot, MemoryManager, MessageCounts, MpiBackend,
    MpiInstances, Side,
};
use hetflow::MemorySpace;

type Comm = CommunicationManager<MpiBackend>;
type Check = Result<(), String>;
/// A copy's result and the out-of-bounds error it must be: side, offset, size, slot size.
type OobCase = (Result<(), CommError>, Side, usize, usize, usize);
type Named = (&'static str, fn(&mut Comm) -> Check);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn host(mm: &MemoryManager, n: usize) -> LocalSlot {
    mm.allocate(MemorySpace::Host, n).expect("host allocation")
}

fn e<T: std::fmt::Debug>(r: Result<T, CommError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn instances(comm: &mut Comm) -> Check {
    let n = comm.instances().len();
    ensure!(comm.root_instance().0 == 0, "root is not rank 0");
    ensure!(comm.instance_id().0 < n, "instance id out of range");
    match comm.require_instances(n + 1) {
        Err(CommError::WrongInstanceCount { expected, found })
            if expected == n + 1 && found == n => {}
        other => return Err(format!("expected WrongInstanceCount, got {other:?}")),
    }
    e(comm.require_instances(n))
}

fn unknown_tag_and_key(comm: &mut Comm) -> Check {
    let mm = MemoryManager::new();
    let s = host(&mm, 8);
    ensure!(
        matches!(
            comm.global_slot(100, 0),
            Err(CommError::UnknownTag { tag: 100 })
        ),
        "unknown tag not reported"
    );
    let me = comm.instance_id().0 as u64;
    e(comm.exchange_global_slots(100, &[(me, &s)]))?;
    ensure!(
        matches!(comm.global_slot(100, me), Err(CommError::UnknownKey { .. })),
        "a slot was usable before the fence"
    );
    e(comm.fence(100))?;
    e(comm.global_slot(100, me))?;
    match comm.global_slot(100, 9999) {
        Err(CommError::UnknownKey {
            tag: 100,
            key: 9999,
            ..
        }) => Ok(()),
        other => Err(format!("expected UnknownKey, got {other:?}")),
    }
}

fn duplicate_key(comm: &mut Comm) -> Check {
    let mm = MemoryManager::new();
    let s = host(&mm, 8);
    // Every rank publishes key 7: with one rank that is fine, with more a duplicate.
    let r = comm.exchange_global_slots(101, &[(7, &s)]);
    if comm.instances().len() == 1 {
        return e(r);
    }
    match r {
        Err(CommError::DuplicateKey {
            tag: 101,
            key: 7,
            first,
            second,
        }) => {
            ensure!(
                (first.0, second.0) == (0, 1),
                "wrong owners {first} {second}"
            );
            Ok(())
        }
        other => Err(format!("expected DuplicateKey, got {other:?}")),
    }
}

fn out_of_bounds(comm: &mut Comm) -> Check {
    let mm = MemoryManager::new();
    let n = comm.instances().len();
    let me = comm.instance_id().0;
    let small = host(&mm, 16);
    let big = host(&mm, 64);
    e(comm.exchange_global_slots(102, &[(me as u64, &small)]))?;
    e(comm.fence(102))?;
    let other = e(comm.global_slot(102, ((me + 1) % n) as u64))?;
    let cases: Vec<OobCase> = vec![
        (
            comm.memcpy(&other, 8, &big, 0, 9),
            Side::Destination,
            8,
            9,
            16,
        ),
        (
            comm.memcpy(&other, 0, &small, 10, 8),
            Side::Source,
            10,
            8,
            16,
        ),
        (comm.memcpy(&big, 0, &other, 0, 17), Side::Source, 0, 17, 16),
        (
            comm.memcpy(&small, 12, &other, 0, 8),
            Side::Destination,
            12,
            8,
            16,
        ),
    ];
    for (r, side, offset, size, slot_size) in cases {
        match r {
            Err(CommError::OutOfBounds {
                side: s,
                offset: o,
                size: z,
                slot_size: t,
                ..
            }) if (s, o, z, t) == (side, offset, size, slot_size) => {}
            other => {
                return Err(format!(
                    "expected OutOfBounds {side} {offset}+{size}>{slot_size}, got {other:?}"
                ))
            }
        }
    }
    e(comm.fence(102))?;
    ensure!(
        e(small.to_vec())? == vec![0u8; 16],
        "an out-of-bounds copy moved bytes"
    );
    ensure!(
        e(comm.messages(&small))? == MessageCounts::default(),
        "an out-of-bounds copy was counted"
    );
    Ok(())
}

fn ring(comm: &mut Comm) -> Check {
    let rounds = 3usize;
    let mm = MemoryManager::new();
    let n = comm.instances().len();
    let me = comm.instance_id().0;
    let inbox = host(&mm, 8 * rounds);
    let outbox = host(&mm, 8);
    e(outbox.write(0, &(me as u64).to_le_bytes()))?;
    e(comm.exchange_global_slots(103, &[(me as u64, &inbox)]))?;
    e(comm.fence(103))?;
    let right = e(comm.global_slot(103, ((me + 1) % n) as u64))?;
    for r in 0..rounds {
        e(comm.memcpy(&right, 8 * r, &outbox, 0, 8))?;
    }
    e(comm.fence(103))?;
    let left = ((me + n - 1) % n) as u64;
    let bytes = e(inbox.to_vec())?;
    for r in 0..rounds {
        ensure!(
            bytes[8 * r..8 * r + 8] == left.to_le_bytes(),
            "round {r}: inbox has {:?}",
            &bytes[8 * r..8 * r + 8]
        );
    }
    // Get the left neighbour's inbox back (it holds the id of its own left neighbour).
    let left_slot = e(comm.global_slot(103, left))?;
    let copy = host(&mm, 8 * rounds);
    e(comm.memcpy(&copy, 0, &left_slot, 0, 8 * rounds))?;
    e(comm.fence(103))?;
    let want = (((me + 2 * n - 2) % n) as u64).to_le_bytes();
    ensure!(e(copy.read(0, 8))? == want, "get returned the wrong bytes");
    let inbox_counts = e(comm.messages(&inbox))?;
    ensure!(
        inbox_counts
            == MessageCounts {
                sent: 1,
                received: rounds as u64
            },
        "inbox counters {inbox_counts:?}"
    );
    let out_counts = e(comm.messages(&outbox))?;
    ensure!(
        out_counts
            == MessageCounts {
                sent: rounds as u64,
                received: 0
            },
        "outbox counters {out_counts:?}"
    );
    let copy_counts = e(comm.messages(&copy))?;
    ensure!(
        copy_counts
            == MessageCounts {
                sent: 0,
                received: 1
            },
        "copy counters {copy_counts:?}"
    );
    Ok(())
}

fn per_slot_fence(comm: &mut Comm) -> Check {
    let mm = MemoryManager::new();
    let me = comm.instance_id().0;
    let inbox = host(&mm, 40);
    e(comm.exchange_global_slots(104, &[(me as u64, &inbox)]))?;
    e(comm.fence(104))?;
    if comm.instances().len() < 2 {
        return e(comm.fence(104));
    }
    if me == 0 {
        let target = e(comm.global_slot(104, 1))?;
        let src = host(&mm, 8);
        for i in 0..5u64 {
            e(src.write(0, &i.to_le_bytes()))?;
            e(comm.memcpy(&target, 8 * i as usize, &src, 0, 8))?;
        }
        e(comm.fence_slot(&src, 5, 0))?;
    } else if me == 1 {
        e(comm.fence_slot(&inbox, 0, 3))?;
        let first = e(inbox.read(0, 24))?;
        for i in 0..3u64 {
            ensure!(
                first[8 * i as usize..8 * i as usize + 8] == i.to_le_bytes(),
                "message {i} missing after the slot fence"
            );
        }
        e(comm.fence_slot(&inbox, 0, 2))?;
        ensure!(
            e(inbox.read(32, 8))? == 4u64.to_le_bytes(),
            "message 4 missing"
        );
        ensure!(e(comm.messages(&inbox))?.received == 5, "received count");
    }
    e(comm.fence(104))
}

fn global_lock(comm: &mut Comm) -> Check {
    let per = 20u64;
    let n = comm.instances().len() as u64;
    let mm = MemoryManager::new();
    let me = comm.instance_id().0;
    let counter = host(&mm, 8);
    let mine: Vec<(u64, &LocalSlot)> = if me == 0 { vec![(0, &counter)] } else { vec![] };
    e(comm.exchange_global_slots(105, &mine))?;
    e(comm.fence(105))?;
    let shared = e(comm.global_slot(105, 0))?;
    ensure!(
        matches!(
            comm.release_lock(&shared),
            Err(CommError::LockNotHeld { .. })
        ),
        "releasing an unheld lock succeeded"
    );
    e(comm.barrier())?;
    let tmp = host(&mm, 8);
    for _ in 0..per {
        e(comm.acquire_lock(&shared))?;
        e(comm.memcpy(&tmp, 0, &shared, 0, 8))?;
        let v = u64::from_le_bytes(e(tmp.read(0, 8))?.try_into().map_err(|_| "8 bytes")?);
        e(tmp.write(0, &(v + 1).to_le_bytes()))?;
        e(comm.memcpy(&shared, 0, &tmp, 0, 8))?;
        e(comm.release_lock(&shared))?;
    }
    e(comm.fence(105))?;
    if me == 0 {
        let v = u64::from_le_bytes(e(counter.read(0, 8))?.try_into().map_err(|_| "8 bytes")?);
        ensure!(
            v == n * per,
            "lost updates under the lock: {v} != {}",
            n * per
        );
    }
    Ok(())
}

fn gpu_slots(comm: &mut Comm) -> Check {
    let mm = MemoryManager::new();
    let me = comm.instance_id().0;
    let n = comm.instances().len();
    if hetflow::device::gpus().is_empty() {
        if std::env::var("HETFLOW_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            return Err("HETFLOW_REQUIRE_GPU=1 but no GPU adapter was found".into());
        }
        eprintln!("!!! NO GPU ADAPTER FOUND: skipping the MPI GPU-slot check");
        return Ok(());
    }
    // Exposing a GPU slot in an MPI window fails on every rank alike.
    let g = e(mm.allocate(MemorySpace::Gpu(0), 32))?;
    match comm.exchange_global_slots(106, &[(me as u64, &g)]) {
        Err(CommError::Unsupported { .. }) => {}
        other => {
            return Err(format!(
                "expected Unsupported for a GPU window, got {other:?}"
            ))
        }
    }
    // GPU slots as the local side of puts and gets.
    let inbox = host(&mm, 32);
    e(comm.exchange_global_slots(107, &[(me as u64, &inbox)]))?;
    e(comm.fence(107))?;
    let right = e(comm.global_slot(107, ((me + 1) % n) as u64))?;
    e(g.write(0, &[me as u8 + 1; 32]))?;
    e(comm.memcpy(&right, 5, &g, 3, 11))?; // GPU -> remote host, unaligned
    e(comm.fence(107))?;
    let left = ((me + n - 1) % n) as u8 + 1;
    let bytes = e(inbox.to_vec())?;
    ensure!(
        bytes[5..16].iter().all(|&b| b == left) && bytes[..5].iter().all(|&b| b == 0),
        "GPU put: {bytes:?}"
    );
    e(comm.memcpy(&g, 1, &right, 5, 11))?; // remote host -> GPU, unaligned
    e(comm.fence(107))?;
    let gb = e(g.to_vec())?;
    ensure!(
        gb[1..12].iter().all(|&b| b == me as u8 + 1),
        "GPU get: {gb:?}"
    );
    ensure!(
        e(comm.messages(&g))?
            == MessageCounts {
                sent: 1,
                received: 1
            },
        "GPU slot counters"
    );
    Ok(())
}

fn destroy_then_deregister(comm: &mut Comm) -> Check {
    let mm = MemoryManager::new();
    let me = comm.instance_id().0;
    let slot = e(mm.register(MemorySpace::Host, vec![me as u8; 4]))?;
    e(comm.exchange_global_slots(108, &[(me as u64, &slot)]))?;
    e(comm.fence(108))?;
    ensure!(
        matches!(
            mm.deregister(slot.clone()),
            Err(CommError::SlotShared { .. })
        ),
        "deregistered an exchanged slot"
    );
    e(comm.destroy_global_slots(108))?;
    ensure!(
        matches!(comm.global_slot(108, 0), Err(CommError::UnknownTag { .. })),
        "tag survived destroy"
    );
    ensure!(
        e(mm.deregister(slot))? == vec![me as u8; 4],
        "bytes changed"
    );
    Ok(())
}

/// Outside a launcher (`cargo test --features mpi`), runs this same binary under
/// `mpirun -n 2` (OpenMPI's default one-sided transport needs two ranks).
fn relaunch_under_mpirun() -> std::process::ExitCode {
    let Ok(me) = std::env::current_exe() else {
        eprintln!("error: cannot find this test binary to relaunch it");
        return std::process::ExitCode::FAILURE;
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2"])
        .arg(me)
        .args(args)
        .status();
    match status {
        Ok(s) if s.success() => std::process::ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("error: mpirun -n 2 exited with {s}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "error: could not start mpirun (install OpenMPI: apt-get install openmpi-bin): {e}"
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    if !MpiInstances::launched_by_mpirun() {
        return relaunch_under_mpirun();
    }
    // Names given on the command line select checks (CI runs `ring` alone under -n 4).
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut comm = match MpiInstances::init() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let all: Vec<Named> = vec![
        ("instances", instances),
        ("unknown_tag_and_key", unknown_tag_and_key),
        ("duplicate_key", duplicate_key),
        ("out_of_bounds", out_of_bounds),
        ("ring", ring),
        ("per_slot_fence", per_slot_fence),
        ("global_lock", global_lock),
        ("gpu_slots", gpu_slots),
        ("destroy_then_deregister", destroy_then_deregister),
    ];
    let checks: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.iter().any(|w| w == name))
        .collect();
    let me = comm.instance_id().0;
    let n = comm.instances().len();
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match check(&mut comm) {
            Ok(()) => {
                passed += 1;
                if me == 0 {
                    println!("test mpi::{name} (n={n}) ... ok");
                }
            }
            Err(msg) => {
                failed += 1;
                eprintln!("test mpi::{name} (n={n}) on rank {me} ... FAILED: {msg}");
            }
        }
    }
    if me == 0 {
        println!("mpi: {passed} passed, {failed} failed");
    } else if failed > 0 {
        println!("rank {me}: {passed} passed, {failed} failed");
    }
    drop(comm);
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
