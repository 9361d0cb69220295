//! Memory slots and one-sided memcpy on the thread backend: every error, the ring with exact
//! counters, per-slot fences, the global lock, GPU slots, and the HiCR topology.

use hetflow::comm::{
    CommError, MemoryManager, MessageCounts, Side, ThreadCommunicator, ThreadInstances,
};
use hetflow::MemorySpace;

fn host(mm: &MemoryManager, n: usize) -> hetflow::comm::LocalSlot {
    mm.allocate(MemorySpace::Host, n).unwrap()
}

/// A one-word slot of instance 0, exchanged under tag 9 and fenced: every instance's handle to
/// the global lock the lock tests contend for.
fn shared_lock(comm: &mut ThreadCommunicator, mm: &MemoryManager) -> hetflow::comm::GlobalSlot {
    let word = host(mm, 8);
    let mine: Vec<(u64, &hetflow::comm::LocalSlot)> = if comm.instance_id().0 == 0 {
        vec![(0, &word)]
    } else {
        vec![]
    };
    comm.exchange_global_slots(9, &mine).unwrap();
    comm.fence(9).unwrap();
    comm.global_slot(9, 0).unwrap()
}

/// Whether GPU tests can run; panics when `HETFLOW_REQUIRE_GPU=1` and there is no GPU.
fn have_gpu() -> bool {
    if !hetflow::device::gpus().is_empty() {
        return true;
    }
    if std::env::var("HETFLOW_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("HETFLOW_REQUIRE_GPU=1 but no GPU adapter was found");
    }
    eprintln!("!!! NO GPU ADAPTER FOUND: skipping a GPU test");
    false
}

#[test]
fn unknown_tag_and_unknown_key_are_errors() {
    ThreadInstances::run(2, |mut comm| {
        let mm = MemoryManager::new();
        let s = host(&mm, 8);
        assert!(matches!(
            comm.global_slot(3, 0),
            Err(CommError::UnknownTag { tag: 3 })
        ));
        let me = comm.instance_id().0 as u64;
        comm.exchange_global_slots(3, &[(me, &s)]).unwrap();
        // Exchanged but not fenced: unknown, with a hint.
        match comm.global_slot(3, 0) {
            Err(CommError::UnknownKey { hint, .. }) => assert!(hint.contains("fence")),
            other => panic!("expected UnknownKey before the fence, got {other:?}"),
        }
        comm.fence(3).unwrap();
        assert_eq!(comm.global_slot(3, 1).unwrap().owner().0, 1);
        match comm.global_slot(3, 9) {
            Err(CommError::UnknownKey {
                tag,
                key,
                known,
                hint,
            }) => {
                assert_eq!((tag, key, known), (3, 9, vec![0, 1]));
                assert!(hint.is_empty());
            }
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        assert!(matches!(
            comm.global_slot(4, 0),
            Err(CommError::UnknownTag { tag: 4 })
        ));
    })
    .unwrap();
}

#[test]
fn duplicate_key_fails_on_every_instance() {
    let out = ThreadInstances::run(3, |mut comm| {
        let mm = MemoryManager::new();
        let s = host(&mm, 8);
        // Instances 0 and 2 both publish key 5.
        let mine: Vec<(u64, &hetflow::comm::LocalSlot)> = match comm.instance_id().0 {
            1 => vec![],
            _ => vec![(5, &s)],
        };
        comm.exchange_global_slots(1, &mine)
    })
    .unwrap();
    for r in out {
        match r {
            Err(CommError::DuplicateKey {
                tag: 1,
                key: 5,
                first,
                second,
            }) => assert_eq!((first.0, second.0), (0, 2)),
            other => panic!("expected DuplicateKey, got {other:?}"),
        }
    }
}

fn expect_oob(r: Result<(), CommError>, side: Side, offset: usize, size: usize, slot_size: usize) {
    match r {
        Err(CommError::OutOfBounds {
            side: s,
            offset: o,
            size: n,
            slot_size: z,
            ..
        }) => assert_eq!((s, o, n, z), (side, offset, size, slot_size)),
        other => panic!("expected OutOfBounds {side} {offset}+{size}>{slot_size}, got {other:?}"),
    }
}

#[test]
fn out_of_bounds_on_either_side_is_an_error_and_moves_nothing() {
    ThreadInstances::run(2, |mut comm| {
        let mm = MemoryManager::new();
        let big = host(&mm, 64);
        let small = host(&mm, 16);
        let me = comm.instance_id().0 as u64;
        comm.exchange_global_slots(0, &[(me, &small)]).unwrap();
        comm.fence(0).unwrap();
        let other = comm.global_slot(0, 1 - me).unwrap();
        mm.memset(&big, 0, 64, 0xAB).unwrap();
        // put: the remote (destination) side is too small — HiCR would not notice.
        expect_oob(
            comm.memcpy(&other, 8, &big, 0, 9),
            Side::Destination,
            8,
            9,
            16,
        );
        // put: the local source range runs past its end.
        expect_oob(
            comm.memcpy(&other, 0, &small, 10, 8),
            Side::Source,
            10,
            8,
            16,
        );
        // get: the remote source side.
        expect_oob(comm.memcpy(&big, 0, &other, 0, 17), Side::Source, 0, 17, 16);
        // get: the local destination side.
        expect_oob(
            comm.memcpy(&small, 12, &other, 0, 8),
            Side::Destination,
            12,
            8,
            16,
        );
        // local -> local, both sides.
        expect_oob(comm.memcpy(&small, 0, &big, 60, 8), Side::Source, 60, 8, 64);
        expect_oob(
            comm.memcpy(&small, 9, &big, 0, 8),
            Side::Destination,
            9,
            8,
            16,
        );
        // Offsets that overflow usize are out of bounds, not a panic.
        expect_oob(
            comm.memcpy(&small, usize::MAX, &big, 0, 2),
            Side::Destination,
            usize::MAX,
            2,
            16,
        );
        expect_oob(mm.memset(&small, 15, 2, 0), Side::Destination, 15, 2, 16);
        assert!(matches!(
            comm.memcpy(&other, 0, &other, 0, 1),
            Err(CommError::GlobalToGlobal)
        ));
        comm.fence(0).unwrap();
        // Nothing moved and nothing was counted.
        assert_eq!(small.to_vec().unwrap(), vec![0u8; 16]);
        assert_eq!(comm.messages(&small).unwrap(), MessageCounts::default());
        assert_eq!(comm.messages(&big).unwrap(), MessageCounts::default());
    })
    .unwrap();
}

#[test]
fn wrong_instance_count_is_an_error() {
    let out = ThreadInstances::run(3, |comm| comm.require_instances(2)).unwrap();
    for r in out {
        assert!(matches!(
            r,
            Err(CommError::WrongInstanceCount {
                expected: 2,
                found: 3
            })
        ));
    }
    assert!(matches!(
        ThreadInstances::run(0, |_| ()),
        Err(CommError::InvalidInstanceCount { count: 0 })
    ));
    let ok = ThreadInstances::run(2, |comm| comm.require_instances(2)).unwrap();
    assert!(ok.iter().all(|r| r.is_ok()));
}

/// Every instance puts its id (8 bytes at offset 8·round) into its right neighbour's slot,
/// then gets the left neighbour's slot back; counters must be exact.
fn ring(comm: &mut ThreadCommunicator, rounds: usize) -> (Vec<u8>, MessageCounts, MessageCounts) {
    let mm = MemoryManager::new();
    let n = comm.instances().len();
    let me = comm.instance_id().0;
    let inbox = host(&mm, 8 * rounds);
    let outbox = host(&mm, 8);
    outbox.write(0, &(me as u64).to_le_bytes()).unwrap();
    comm.exchange_global_slots(10, &[(me as u64, &inbox)])
        .unwrap();
    comm.fence(10).unwrap();
    let right = comm.global_slot(10, ((me + 1) % n) as u64).unwrap();
    for r in 0..rounds {
        comm.memcpy(&right, 8 * r, &outbox, 0, 8).unwrap();
    }
    comm.fence(10).unwrap();
    // Read the left neighbour's inbox (it holds its own left neighbour's id).
    let left = comm.global_slot(10, ((me + n - 1) % n) as u64).unwrap();
    let copy = host(&mm, 8 * rounds);
    comm.memcpy(&copy, 0, &left, 0, 8 * rounds).unwrap();
    comm.fence(10).unwrap();
    let bytes = inbox.to_vec().unwrap();
    assert_eq!(
        copy.to_vec().unwrap()[..8],
        (((me + n - 2) % n) as u64).to_le_bytes()
    );
    (
        bytes,
        comm.messages(&inbox).unwrap(),
        comm.messages(&outbox).unwrap(),
    )
}

#[test]
fn ring_puts_reach_the_neighbour_with_exact_counters() {
    for n in [2usize, 3, 4] {
        let rounds = 3;
        let out = ThreadInstances::run(n, |mut comm| ring(&mut comm, rounds)).unwrap();
        for (me, (bytes, inbox, outbox)) in out.into_iter().enumerate() {
            let left = ((me + n - 1) % n) as u64;
            for r in 0..rounds {
                assert_eq!(bytes[8 * r..8 * r + 8], left.to_le_bytes(), "n={n} me={me}");
            }
            // Inbox: `rounds` puts received, one get served (sent) to the right neighbour.
            assert_eq!(
                inbox,
                MessageCounts {
                    sent: 1,
                    received: rounds as u64
                },
                "n={n} me={me}"
            );
            assert_eq!(
                outbox,
                MessageCounts {
                    sent: rounds as u64,
                    received: 0
                }
            );
        }
    }
}

#[test]
fn local_memcpy_counts_and_overlaps() {
    ThreadInstances::run(1, |comm| {
        let mm = MemoryManager::new();
        let a = mm.register(MemorySpace::Host, (0u8..16).collect()).unwrap();
        let b = host(&mm, 16);
        comm.memcpy(&b, 4, &a, 0, 8).unwrap();
        assert_eq!(b.read(4, 8).unwrap(), (0u8..8).collect::<Vec<_>>());
        // Overlapping copy within one slot.
        comm.memcpy(&a, 2, &a, 0, 8).unwrap();
        assert_eq!(a.read(0, 10).unwrap(), vec![0, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            comm.messages(&a).unwrap(),
            MessageCounts {
                sent: 2,
                received: 1
            }
        );
        assert_eq!(comm.messages(&b).unwrap().received, 1);
        // Zero-byte copies at the very end are in bounds.
        comm.memcpy(&b, 16, &a, 16, 0).unwrap();
    })
    .unwrap();
}

#[test]
fn per_slot_fence_waits_for_further_messages() {
    ThreadInstances::run(2, |mut comm| {
        let mm = MemoryManager::new();
        let me = comm.instance_id().0;
        let inbox = host(&mm, 40);
        comm.exchange_global_slots(2, &[(me as u64, &inbox)])
            .unwrap();
        comm.fence(2).unwrap();
        if me == 0 {
            let target = comm.global_slot(2, 1).unwrap();
            let src = host(&mm, 8);
            for i in 0..5u64 {
                src.write(0, &i.to_le_bytes()).unwrap();
                comm.memcpy(&target, 8 * i as usize, &src, 0, 8).unwrap();
                if i == 2 {
                    // Give the receiver time to block in its first fence.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            comm.fence_slot(&src, 5, 0).unwrap();
        } else {
            comm.fence_slot(&inbox, 0, 3).unwrap();
            let first = inbox.read(0, 24).unwrap();
            for i in 0..3u64 {
                assert_eq!(first[8 * i as usize..8 * i as usize + 8], i.to_le_bytes());
            }
            // Two further messages: counted from where the previous fence stopped.
            comm.fence_slot(&inbox, 0, 2).unwrap();
            assert_eq!(inbox.read(32, 8).unwrap(), 4u64.to_le_bytes());
            assert_eq!(comm.messages(&inbox).unwrap().received, 5);
        }
        comm.fence(2).unwrap();
    })
    .unwrap();
}

#[test]
fn global_lock_gives_mutual_exclusion() {
    let n = 4;
    let per = 50u64;
    let out = ThreadInstances::run(n, |mut comm| {
        let mm = MemoryManager::new();
        let me = comm.instance_id().0;
        let counter = host(&mm, 8);
        let mine: Vec<(u64, &hetflow::comm::LocalSlot)> =
            if me == 0 { vec![(0, &counter)] } else { vec![] };
        comm.exchange_global_slots(4, &mine).unwrap();
        comm.fence(4).unwrap();
        let shared = comm.global_slot(4, 0).unwrap();
        // Releasing a lock that is not held is an error.
        assert!(matches!(
            comm.release_lock(&shared),
            Err(CommError::LockNotHeld { .. })
        ));
        comm.barrier().unwrap();
        let tmp = host(&mm, 8);
        for _ in 0..per {
            comm.acquire_lock(&shared).unwrap();
            comm.memcpy(&tmp, 0, &shared, 0, 8).unwrap();
            let v = u64::from_le_bytes(tmp.read(0, 8).unwrap().try_into().unwrap());
            std::thread::yield_now(); // widen the race window
            tmp.write(0, &(v + 1).to_le_bytes()).unwrap();
            comm.memcpy(&shared, 0, &tmp, 0, 8).unwrap();
            comm.release_lock(&shared).unwrap();
        }
        comm.fence(4).unwrap();
        let v = u64::from_le_bytes(counter.read(0, 8).unwrap().try_into().unwrap());
        // While one instance holds the lock, another cannot take it.
        if me == 0 {
            assert!(comm.try_acquire_lock(&shared).unwrap());
        }
        comm.barrier().unwrap();
        if me == 1 {
            assert!(!comm.try_acquire_lock(&shared).unwrap());
        }
        comm.barrier().unwrap();
        if me == 0 {
            comm.release_lock(&shared).unwrap();
        }
        v
    })
    .unwrap();
    assert_eq!(out[0], n as u64 * per);
}

#[test]
fn deregister_waits_for_destroy_and_register_wraps_bytes() {
    ThreadInstances::run(2, |mut comm| {
        let mm = MemoryManager::new();
        let me = comm.instance_id().0;
        let slot = mm.register(MemorySpace::Host, vec![me as u8; 4]).unwrap();
        comm.exchange_global_slots(6, &[(me as u64, &slot)])
            .unwrap();
        comm.fence(6).unwrap();
        let slot = {
            // Still exchanged: the bytes cannot be handed back.
            let clone = slot.clone();
            match mm.deregister(clone) {
                Err(CommError::SlotShared { .. }) => {}
                other => panic!("expected SlotShared, got {other:?}"),
            }
            slot
        };
        comm.destroy_global_slots(6).unwrap();
        assert!(matches!(
            comm.global_slot(6, 0),
            Err(CommError::UnknownTag { tag: 6 })
        ));
        assert_eq!(mm.deregister(slot).unwrap(), vec![me as u8; 4]);
    })
    .unwrap();
}

#[test]
fn a_panicking_instance_does_not_hang_the_others() {
    let r = ThreadInstances::run(3, |mut comm| {
        if comm.instance_id().0 == 1 {
            panic!("instance 1 fails on purpose");
        }
        comm.fence(0)
    });
    match r {
        Err(CommError::InstancePanicked { instance, message }) => {
            assert_eq!(instance.0, 1);
            assert!(message.contains("on purpose"));
        }
        Err(other) => panic!("expected InstancePanicked, got {other:?}"),
        Ok(_) => panic!("expected InstancePanicked, got Ok"),
    }
}

#[test]
fn gpu_slots_move_through_staging() {
    if !have_gpu() {
        return;
    }
    let out = ThreadInstances::run(2, |mut comm| {
        let mm = MemoryManager::new();
        let me = comm.instance_id().0;
        // Each instance exposes a GPU slot of an odd size.
        let gslot = mm.allocate(MemorySpace::Gpu(0), 37).unwrap();
        mm.memset(&gslot, 0, 37, 0x11).unwrap();
        comm.exchange_global_slots(8, &[(me as u64, &gslot)])
            .unwrap();
        comm.fence(8).unwrap();
        if me == 0 {
            let remote = comm.global_slot(8, 1).unwrap();
            let msg = mm.register(MemorySpace::Host, b"abcdefg".to_vec()).unwrap();
            // Host -> remote GPU at an unaligned offset.
            comm.memcpy(&remote, 3, &msg, 0, 7).unwrap();
            // Remote GPU -> local GPU at another unaligned offset.
            comm.memcpy(&gslot, 29, &remote, 1, 8).unwrap();
        }
        comm.fence(8).unwrap();
        let bytes = gslot.to_vec().unwrap();
        let counts = comm.messages(&gslot).unwrap();
        (bytes, counts)
    })
    .unwrap();
    let mut want1 = vec![0x11u8; 37];
    want1[3..10].copy_from_slice(b"abcdefg");
    assert_eq!(out[1].0, want1);
    assert_eq!(
        out[1].1,
        MessageCounts {
            sent: 1,
            received: 1
        }
    );
    let mut want0 = vec![0x11u8; 37];
    want0[29..37].copy_from_slice(&want1[1..9]);
    assert_eq!(out[0].0, want0);
    assert_eq!(
        out[0].1,
        MessageCounts {
            sent: 0,
            received: 1
        }
    );

    // Local GPU <-> host and GPU <-> GPU copies on one device, aligned and not.
    ThreadInstances::run(1, |comm| {
        let mm = MemoryManager::new();
        let h = mm.register(MemorySpace::Host, (0u8..64).collect()).unwrap();
        let g1 = mm.allocate(MemorySpace::Gpu(0), 64).unwrap();
        let g2 = mm.allocate(MemorySpace::Gpu(0), 64).unwrap();
        comm.memcpy(&g1, 0, &h, 0, 64).unwrap();
        comm.memcpy(&g2, 8, &g1, 0, 16).unwrap(); // aligned: on the device
        comm.memcpy(&g2, 33, &g1, 5, 7).unwrap(); // unaligned: through the host
        let back = mm.allocate(MemorySpace::Host, 64).unwrap();
        comm.memcpy(&back, 0, &g2, 0, 64).unwrap();
        let b = back.to_vec().unwrap();
        assert_eq!(b[8..24], (0u8..16).collect::<Vec<_>>()[..]);
        assert_eq!(b[33..40], (5u8..12).collect::<Vec<_>>()[..]);
        assert!(b[..8].iter().all(|&x| x == 0) && b[24..33].iter().all(|&x| x == 0));
        let too_big = mm.allocate(MemorySpace::Gpu(0), usize::MAX / 2);
        assert!(matches!(too_big, Err(CommError::Allocation { .. })));
    })
    .unwrap();
}

#[test]
fn unknown_memory_space_is_an_error() {
    let mm = MemoryManager::new();
    let n = hetflow::device::gpus().len();
    assert!(matches!(
        mm.allocate(MemorySpace::Gpu(n + 3), 8),
        Err(CommError::NoSuchMemorySpace { .. })
    ));
    let mut info = hetflow::Topology::detect().devices()[0].memory_spaces[0].clone();
    info.name = "tape".into();
    assert!(matches!(
        MemoryManager::space_of(&info),
        Err(CommError::UnknownMemorySpaceName { .. })
    ));
    info.name = format!("gpu{}", n + 3);
    assert!(matches!(
        MemoryManager::space_of(&info),
        Err(CommError::NoSuchMemorySpace { .. })
    ));
}

#[test]
fn topology_lists_memory_spaces_and_compute_resources_as_json() {
    let topo = hetflow::Topology::detect();
    let devices = topo.devices();
    assert_eq!(devices.len(), 1 + topo.gpus.len());
    let hostdev = &devices[0];
    assert_eq!(hostdev.memory_spaces[0].name, "host");
    assert_eq!(hostdev.memory_spaces[0].size_bytes, topo.cpu.memory_bytes);
    assert!(topo.cpu.memory_bytes.unwrap_or(0) > 0);
    assert_eq!(hostdev.compute_resources.len(), topo.cpu.logical_cores);
    let json: serde_json::Value = serde_json::from_str(&topo.to_json()).unwrap();
    let devs = json["devices"].as_array().unwrap();
    assert_eq!(devs.len(), devices.len());
    assert_eq!(devs[0]["memory_spaces"][0]["kind"], "host_ram");
    assert_eq!(devs[0]["compute_resources"][0]["kind"], "cpu_core");
    for (i, g) in topo.gpus.iter().enumerate() {
        let d = &devs[i + 1];
        assert_eq!(d["memory_spaces"][0]["name"], format!("gpu{}", g.index));
        assert_eq!(
            d["memory_spaces"][0]["max_allocation_bytes"],
            g.max_buffer_size
        );
        assert_eq!(d["compute_resources"][0]["kind"], "gpu");
        let space = MemoryManager::space_of(&devices[i + 1].memory_spaces[0]).unwrap();
        assert_eq!(space, MemorySpace::Gpu(g.index));
    }
    assert_eq!(
        MemoryManager::space_of(&hostdev.memory_spaces[0]).unwrap(),
        MemorySpace::Host
    );
    assert!(topo.to_string().contains("HiCR view"));
}

mod model {
    //! Property test: random local copies (in and out of bounds) against a plain byte model.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Copy {
        dst: usize,
        dst_off: usize,
        src: usize,
        src_off: usize,
        n: usize,
    }

    fn copies() -> impl Strategy<Value = Vec<Copy>> {
        prop::collection::vec(
            (0..3usize, 0..40usize, 0..3usize, 0..40usize, 0..24usize).prop_map(
                |(dst, dst_off, src, src_off, n)| Copy {
                    dst,
                    dst_off,
                    src,
                    src_off,
                    n,
                },
            ),
            1..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn local_copies_match_a_byte_model(ops in copies()) {
            let sizes = [16usize, 32, 40];
            let result = ThreadInstances::run(1, |comm| -> Result<(), TestCaseError> {
                let mm = MemoryManager::new();
                let mut model: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (0..s).map(|b| (i * 64 + b) as u8).collect())
                    .collect();
                let slots: Vec<_> = model
                    .iter()
                    .map(|m| mm.register(MemorySpace::Host, m.clone()).unwrap())
                    .collect();
                let mut counts = [MessageCounts::default(); 3];
                for op in &ops {
                    let r = comm.memcpy(&slots[op.dst], op.dst_off, &slots[op.src], op.src_off, op.n);
                    let dst_ok = op.dst_off + op.n <= sizes[op.dst];
                    let src_ok = op.src_off + op.n <= sizes[op.src];
                    match r {
                        Ok(()) => {
                            prop_assert!(dst_ok && src_ok, "{op:?} should have failed");
                            let bytes = model[op.src][op.src_off..op.src_off + op.n].to_vec();
                            model[op.dst][op.dst_off..op.dst_off + op.n].copy_from_slice(&bytes);
                            counts[op.src].sent += 1;
                            counts[op.dst].received += 1;
                        }
                        Err(CommError::OutOfBounds { side, .. }) => {
                            // The destination is checked first.
                            let want = if !dst_ok { Side::Destination } else { Side::Source };
                            prop_assert!(!(dst_ok && src_ok), "{op:?} should have succeeded");
                            prop_assert_eq!(side, want);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                for i in 0..3 {
                    prop_assert_eq!(&slots[i].to_vec().unwrap(), &model[i]);
                    prop_assert_eq!(comm.messages(&slots[i]).unwrap(), counts[i]);
                }
                Ok(())
            })
            .unwrap();
            result.into_iter().collect::<Result<Vec<_>, _>>()?;
        }
    }
}

// ---- Nothing lost, nothing hangs (issue 13) ----------------------------------------------
//
// Each scenario runs in its own thread and must finish within a deadline, so a regression
// fails the test instead of hanging the suite.

/// Runs `f` in a thread; panics if it has not returned within `secs` seconds.
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario hung: no result after {secs} s")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the scenario panicked (see its message above)")
        }
    }
}

#[test]
fn an_instance_that_returns_without_its_fence_fails_the_others() {
    let out = within(20, || {
        ThreadInstances::run(3, |mut comm| {
            if comm.instance_id().0 == 2 {
                return Ok(()); // leaves without the fence the others wait in
            }
            comm.fence(5)
        })
        .unwrap()
    });
    assert!(out[2].is_ok());
    for r in &out[..2] {
        match r {
            Err(e @ CommError::InstanceFinished { instance, .. }) => {
                assert_eq!(instance.0, 2);
                assert!(e.to_string().contains("fence(tag 5)"), "{e}");
            }
            other => panic!("expected InstanceFinished naming instance 2, got {other:?}"),
        }
    }
}

#[test]
fn an_instance_that_panics_holding_the_lock_fails_the_waiters() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let r = within(20, move || {
        ThreadInstances::run(3, |mut comm| {
            let mm = MemoryManager::new();
            let me = comm.instance_id().0;
            let lock = shared_lock(&mut comm, &mm);
            if me == 1 {
                comm.acquire_lock(&lock).unwrap();
            }
            comm.barrier().unwrap(); // the lock is held by instance 1 from here on
            if me == 1 {
                panic!("instance 1 dies holding the lock");
            }
            let r = comm.acquire_lock(&lock);
            seen2
                .lock()
                .unwrap()
                .push((me, r.map_err(|e| e.to_string())));
        })
    });
    match r {
        Err(CommError::InstancePanicked { instance, message }) => {
            assert_eq!(instance.0, 1);
            assert!(message.contains("holding the lock"), "{message}");
        }
        other => panic!("expected InstancePanicked for instance 1, got {other:?}"),
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (_, r) in seen.iter() {
        let e = r
            .as_ref()
            .expect_err("the lock of a dead holder must not be taken");
        assert!(e.contains("instance 1") && e.contains("panicked"), "{e}");
    }
}

#[test]
fn a_lock_held_by_an_instance_that_returned_fails_the_waiter() {
    let out = within(20, || {
        ThreadInstances::run(2, |mut comm| {
            let mm = MemoryManager::new();
            let me = comm.instance_id().0;
            let lock = shared_lock(&mut comm, &mm);
            if me == 0 {
                comm.acquire_lock(&lock).unwrap();
            }
            comm.barrier().unwrap();
            if me == 0 {
                return Ok(()); // returns without releasing
            }
            comm.acquire_lock(&lock)
        })
        .unwrap()
    });
    match &out[1] {
        Err(CommError::LockUnavailable { holder, key: 0, .. }) => assert_eq!(holder.0, 0),
        other => panic!("expected LockUnavailable naming holder 0, got {other:?}"),
    }
}

#[test]
fn fence_slot_waiting_for_a_message_nobody_sends_fails() {
    // Instance 1 waits for a message instance 0 never sends: instance 0 waits in a fence
    // (which needs instance 1), so no message can come.
    let out = within(20, || {
        ThreadInstances::run(2, |mut comm| {
            let mm = MemoryManager::new();
            let inbox = host(&mm, 8);
            if comm.instance_id().0 == 1 {
                // Returning (with the error) releases instance 0's fence.
                return comm.fence_slot(&inbox, 0, 1);
            }
            comm.fence(3)
        })
        .unwrap()
    });
    match &out[1] {
        Err(
            e @ CommError::MessagesCannotArrive {
                expected, found, ..
            },
        ) => {
            assert_eq!((expected.sent, expected.received), (0, 1));
            assert_eq!((found.sent, found.received), (0, 0));
            assert!(e.to_string().contains("fence(tag 3)"), "{e}");
        }
        other => panic!("expected MessagesCannotArrive, got {other:?}"),
    }
    assert!(
        matches!(out[0], Err(CommError::InstanceFinished { instance, .. }) if instance.0 == 1),
        "{:?}",
        out[0]
    );
}

#[test]
fn fence_slot_after_every_sender_returned_fails() {
    let out = within(20, || {
        ThreadInstances::run(3, |comm| {
            let mm = MemoryManager::new();
            let inbox = host(&mm, 8);
            if comm.instance_id().0 == 0 {
                comm.fence_slot(&inbox, 0, 2)
            } else {
                Ok(())
            }
        })
        .unwrap()
    });
    match &out[0] {
        Err(CommError::MessagesCannotArrive { reason, .. }) => {
            assert!(reason.contains("returned"), "{reason}")
        }
        other => panic!("expected MessagesCannotArrive, got {other:?}"),
    }
}

#[test]
fn fence_slot_timeout_gives_up_and_a_later_fence_still_counts_the_message() {
    let out = within(20, || {
        ThreadInstances::run(2, |mut comm| {
            let mm = MemoryManager::new();
            let me = comm.instance_id().0;
            let inbox = host(&mm, 8);
            comm.exchange_global_slots(4, &[(me as u64, &inbox)])
                .unwrap();
            comm.fence(4).unwrap();
            if me == 0 {
                // Busy (alive, not in a collective) for a while, then sends.
                std::thread::sleep(std::time::Duration::from_millis(300));
                let src = mm.register(MemorySpace::Host, vec![7; 8]).unwrap();
                comm.memcpy(&comm.global_slot(4, 1).unwrap(), 0, &src, 0, 8)
                    .unwrap();
                comm.fence(4).map(|_| None)
            } else {
                let timed_out =
                    comm.fence_slot_timeout(&inbox, 0, 1, std::time::Duration::from_millis(30));
                // The timed-out wait did not consume anything: this one gets the message.
                comm.fence_slot(&inbox, 0, 1).unwrap();
                assert_eq!(inbox.read(0, 8).unwrap(), vec![7; 8]);
                comm.fence(4).map(|_| Some(timed_out))
            }
        })
        .unwrap()
    });
    match &out[1] {
        Ok(Some(Err(e @ CommError::Timeout { .. }))) => {
            assert!(e.to_string().contains("received"), "{e}")
        }
        other => panic!("expected a Timeout from fence_slot_timeout, got {other:?}"),
    }
}

#[test]
fn fence_timeout_gives_up_and_the_fence_can_be_retried() {
    let out = within(20, || {
        ThreadInstances::run(2, |mut comm| {
            if comm.instance_id().0 == 1 {
                std::thread::sleep(std::time::Duration::from_millis(300));
                return comm.fence(8).map(|_| None);
            }
            let first = comm.fence_timeout(8, std::time::Duration::from_millis(30));
            comm.fence(8).map(|_| Some(first))
        })
        .unwrap()
    });
    match &out[0] {
        Ok(Some(Err(e @ CommError::Timeout { .. }))) => {
            let s = e.to_string();
            assert!(s.contains("fence(tag 8)") && s.contains("[1]"), "{s}");
        }
        other => {
            panic!("expected a Timeout from fence_timeout, then a matched fence, got {other:?}")
        }
    }
    assert!(matches!(out[1], Ok(None)), "{:?}", out[1]);
}

#[test]
fn fences_on_different_tags_do_not_match() {
    let out = within(20, || {
        ThreadInstances::run(2, |mut comm| {
            let tag = if comm.instance_id().0 == 0 { 10 } else { 20 };
            let r = comm.fence(tag);
            // The program is broken from here on: later collectives fail too.
            (r, comm.barrier())
        })
        .unwrap()
    });
    for (r, later) in &out {
        match r {
            Err(e @ CommError::CollectiveMismatch { .. }) => {
                let s = e.to_string();
                assert!(
                    s.contains("fence(tag 10)") && s.contains("fence(tag 20)"),
                    "{s}"
                );
            }
            other => panic!("expected CollectiveMismatch naming both tags, got {other:?}"),
        }
        assert!(
            matches!(later, Err(CommError::CollectiveMismatch { .. })),
            "{later:?}"
        );
    }
}

#[test]
fn acquiring_a_lock_whose_holder_waits_for_us_in_a_barrier_fails() {
    let out = within(20, || {
        ThreadInstances::run(2, |mut comm| {
            let mm = MemoryManager::new();
            let me = comm.instance_id().0;
            let lock = shared_lock(&mut comm, &mm);
            if me == 0 {
                comm.acquire_lock(&lock).unwrap();
                // Waits for instance 1 while holding the lock: instance 1 can never get it.
                let r = comm.barrier();
                comm.release_lock(&lock).unwrap();
                return r;
            }
            while matches!(comm.try_acquire_lock(&lock), Ok(true)) {
                comm.release_lock(&lock).unwrap(); // instance 0 has not taken it yet
                std::thread::yield_now();
            }
            let r = comm.acquire_lock(&lock);
            comm.barrier().unwrap();
            r
        })
        .unwrap()
    });
    match &out[1] {
        Err(e @ CommError::LockUnavailable { holder, .. }) => {
            assert_eq!(holder.0, 0);
            assert!(e.to_string().contains("barrier()"), "{e}");
        }
        other => panic!("expected LockUnavailable naming holder 0, got {other:?}"),
    }
    assert!(out[0].is_ok(), "{:?}", out[0]);
}
