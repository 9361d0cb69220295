//! Remote buffers, remote and RTS variables: every error, ordering of stores and loads, data
//! movement, device offsets, and the three PopXL examples' outputs (seed 001).

// The three examples included below each bring their own copy of `examples/support/quiet.rs`
// (a standalone example must), so this crate loads that file three times.
#![allow(clippy::duplicate_mod)]

mod common;

#[allow(dead_code)]
#[path = "../examples/remote_rts_var.rs"]
mod remote_rts_var_example;
#[allow(dead_code)]
#[path = "../examples/remote_variable.rs"]
mod remote_variable_example;
#[allow(dead_code)]
#[path = "../examples/rts_var.rs"]
mod rts_var_example;

use hetflow::remote::{
    remote_buffer, remote_replica_sharded_variable, remote_variable, ElementType, HostTensor,
    RemoteBuffer, RemoteError, Replication,
};
use hetflow::{DeviceId, MemorySpace, Placement, Runtime};

fn cpu_runtime() -> Runtime {
    Runtime::builder().cpu_workers(2).no_gpu().build().unwrap()
}

#[test]
fn zero_entries_is_an_error() {
    let rt = cpu_runtime();
    match RemoteBuffer::<f32>::new(&rt, &[4], 0) {
        Err(e @ RemoteError::ZeroEntries { .. }) => {
            assert!(e.to_string().contains("at least 1 entry"), "{e}")
        }
        other => panic!("expected ZeroEntries, got {other:?}"),
    }
    let rep = Replication::new(&rt, 2).unwrap();
    assert!(matches!(
        RemoteBuffer::<f32>::replicated(&rep, &[1], 0),
        Err(RemoteError::ZeroEntries { .. })
    ));
}

#[test]
fn shape_mismatch_is_an_error() {
    let rt = cpu_runtime();
    let buffer = remote_buffer::<f32>(&rt, &[2, 3], 2).unwrap();
    // A store of an array with another element count.
    match buffer.store(0, &rt.array_from(vec![0.0f32; 5])) {
        Err(RemoteError::ShapeMismatch { expected, got, .. }) => {
            assert_eq!((expected, got), (vec![2, 3], vec![5]))
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    // Same element count, other shape.
    let wrong = rt.array::<f32>(6).reshape(&[3, 2]).unwrap();
    let e = buffer.store(1, &wrong).unwrap_err();
    assert!(
        e.to_string().contains("[2, 3]") && e.to_string().contains("[3, 2]"),
        "{e}"
    );
    // A flat array of 6 elements fits, and so does the right shape.
    buffer.store(1, &rt.array_from(vec![1.0f32; 6])).unwrap();
    let loaded = buffer.load(1).unwrap();
    assert_eq!(loaded.shape(), vec![2, 3]);
    // A remote variable's initial value must have the buffer's shape.
    let data = HostTensor::new(&[6], vec![0.0f32; 6]).unwrap();
    assert!(matches!(
        remote_variable(data, &buffer, 0),
        Err(RemoteError::ShapeMismatch { .. })
    ));
    // An RTS buffer's slot must hold ceil(n / R) elements.
    let rep = Replication::new(&rt, 2).unwrap();
    let rts = RemoteBuffer::<f32>::replicated(&rep, &[2], 1).unwrap();
    match remote_replica_sharded_variable(vec![1.0f32; 5], &rts, 0) {
        Err(RemoteError::ShapeMismatch { expected, got, .. }) => {
            assert_eq!((expected, got), (vec![2], vec![3]))
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn element_type_mismatch_is_an_error() {
    let rt = cpu_runtime();
    let buffer = remote_buffer::<f32>(&rt, &[], 1).unwrap();
    match remote_variable(1i32, &buffer, 0) {
        Err(e @ RemoteError::DTypeMismatch { .. }) => {
            assert!(matches!(
                e,
                RemoteError::DTypeMismatch {
                    expected: ElementType::F32,
                    got: ElementType::I32,
                    ..
                }
            ));
            assert!(
                e.to_string().contains("float32") && e.to_string().contains("int32"),
                "{e}"
            );
        }
        other => panic!("expected DTypeMismatch, got {other:?}"),
    }
    let rep = Replication::new(&rt, 2).unwrap();
    let rts = RemoteBuffer::<u32>::replicated(&rep, &[1], 1).unwrap();
    assert!(matches!(
        remote_replica_sharded_variable(vec![1.0f32, 2.0], &rts, 0),
        Err(RemoteError::DTypeMismatch {
            expected: ElementType::U32,
            got: ElementType::F32,
            ..
        })
    ));
}

#[test]
fn offset_out_of_range_is_an_error() {
    let rt = cpu_runtime();
    let buffer = remote_buffer::<u32>(&rt, &[2], 3).unwrap();
    let a = rt.array_from(vec![1u32, 2]);
    let check = |e: RemoteError| match e {
        RemoteError::OffsetOutOfRange {
            offset, entries, ..
        } => assert_eq!((offset, entries), (3, 3)),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    };
    check(buffer.store(3, &a).unwrap_err());
    check(buffer.load(3).unwrap_err());
    check(buffer.read(3).unwrap_err());
    check(remote_variable(vec![1u32, 2], &buffer, 3).unwrap_err());
    assert!(buffer
        .load(3)
        .unwrap_err()
        .to_string()
        .contains("expected 0..3"));
    // A device offset is checked before the access runs: the load fails, naming the cause.
    let off = rt.array_from(vec![7u32]);
    let loaded = buffer.load(&off).unwrap();
    let err = loaded.to_vec().unwrap_err();
    match RemoteError::root_cause(&err) {
        Some(RemoteError::OffsetOutOfRange {
            offset: 7,
            entries: 3,
            ..
        }) => {}
        other => panic!("expected OffsetOutOfRange as root cause of {err}, got {other:?}"),
    }
    let stored = buffer.store(&off, &a).unwrap();
    assert!(matches!(
        RemoteError::root_cause(&stored.wait().unwrap_err()),
        Some(RemoteError::OffsetOutOfRange { offset: 7, .. })
    ));
    // An offset array must hold one element.
    assert!(matches!(
        buffer.load(rt.array_from(vec![0u32, 1])),
        Err(RemoteError::OffsetArrayLength { len: 2, .. })
    ));
}

#[test]
fn replication_errors() {
    let rt = cpu_runtime();
    assert!(matches!(
        Replication::new(&rt, 0),
        Err(RemoteError::ZeroReplicas)
    ));
    assert!(matches!(
        Replication::on(&rt, vec![DeviceId::Cpu, DeviceId::Gpu(0)]),
        Err(RemoteError::NoSuchGpu {
            replica: 1,
            gpu: 0,
            available: 0
        })
    ));
    let rep = Replication::new(&rt, 2).unwrap();
    let rep3 = Replication::new(&rt, 3).unwrap();
    let buffer = RemoteBuffer::<f32>::replicated(&rep, &[1], 1).unwrap();
    let three = hetflow::remote::sharded_slice(&rep3.replicated(vec![1.0f32; 3])).unwrap();
    assert!(matches!(
        buffer.store_sharded(0, &three),
        Err(RemoteError::ReplicaMismatch {
            expected: 2,
            got: 3,
            ..
        })
    ));
    // Plain load on a replicated buffer points to the sharded form.
    let e = buffer.load(0).unwrap_err();
    assert!(e.to_string().contains("_sharded"), "{e}");
    let x = rep.replicated(vec![1.0f32; 4]);
    assert!(matches!(x.accumulate(&x), Err(RemoteError::Aliased { .. })));
    assert!(matches!(
        x.accumulate(&rep.replicated(vec![1.0f32; 3])),
        Err(RemoteError::LengthMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
}

/// Stores then loads, spawned back to back with no waits: each load sees its store.
fn stores_then_loads(rt: &Runtime, device: DeviceId) {
    let entries = 6;
    let buffer = remote_buffer::<f32>(rt, &[100], entries).unwrap();
    let mut loads = Vec::new();
    for round in 0..3 {
        for o in 0..entries {
            let v = (round * 100 + o) as f32;
            buffer.store(o, &rt.array_from(vec![v; 100])).unwrap();
            loads.push((v, buffer.load_to(o, device).unwrap()));
        }
    }
    for (v, a) in loads {
        assert_eq!(a.to_vec().unwrap(), vec![v; 100]);
    }
    assert_eq!(buffer.read(5).unwrap(), vec![205.0; 100]);
}

#[test]
fn store_then_load_is_ordered_on_cpu() {
    stores_then_loads(&cpu_runtime(), DeviceId::Cpu);
}

#[test]
fn store_then_load_is_ordered_on_gpu_and_the_entry_moves_there() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    stores_then_loads(rt, DeviceId::Gpu(0));
    // A load to GPU 0 moves the entry there (one upload of its bytes), a store writes it
    // back on the host.
    let buffer = remote_buffer::<f32>(rt, &[256], 2).unwrap();
    let entry = buffer.entry(1, 0).unwrap();
    buffer.store(1, &rt.array_from(vec![3.0f32; 256])).unwrap();
    rt.wait_idle();
    let before = rt.stats().link(MemorySpace::Host, MemorySpace::Gpu(0));
    let loaded = buffer.load_to(1, DeviceId::Gpu(0)).unwrap();
    rt.wait_idle();
    let after = rt.stats().link(MemorySpace::Host, MemorySpace::Gpu(0));
    assert!(entry.states().get(MemorySpace::Gpu(0)).is_valid());
    assert!(entry.states().get(MemorySpace::Host).is_valid());
    assert!(loaded.states().get(MemorySpace::Gpu(0)).is_valid());
    assert!(!loaded.states().get(MemorySpace::Host).is_valid());
    assert!(
        after.bytes - before.bytes >= 1024,
        "{before:?} -> {after:?}"
    );
    buffer.store(1, &loaded).unwrap().wait().unwrap();
    assert!(entry.states().get(MemorySpace::Host).is_valid());
    assert!(!entry.states().get(MemorySpace::Gpu(0)).is_valid());
    assert!(buffer.entry(2, 0).is_err());
}

#[test]
fn device_offset_computed_on_the_gpu() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let buffer = remote_buffer::<i32>(rt, &[3], 4).unwrap();
    for o in 0..4 {
        remote_variable(vec![o, 10 * o, -o], &buffer, o as usize).unwrap();
    }
    // The offset is written by a GPU task, then read on the GPU by the load.
    let off = rt.array_from(vec![0u32]);
    let add = rt.kernel(common::ADD_ONE, "main").unwrap();
    for _ in 0..2 {
        let (o, k) = (off.clone(), add.clone());
        rt.task("offset += 1")
            .read_write(&off)
            .on(Placement::Gpu(0))
            .gpu(move |cx| cx.dispatch_dyn(&k, &[&o], [1, 1, 1]))
            .spawn();
    }
    let loaded = buffer.load_to(&off, DeviceId::Gpu(0)).unwrap();
    assert_eq!(loaded.to_vec().unwrap(), vec![2, 20, -2]);
    // And a store through the same device offset, then a host-offset load.
    buffer
        .store(&off, &rt.array_from(vec![7, 8, 9]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(buffer.load(2).unwrap().to_vec().unwrap(), vec![7, 8, 9]);
    // A device offset out of range fails the load on the GPU too.
    let bad = rt.array_from(vec![4u32]);
    let err = buffer
        .load_to(&bad, DeviceId::Gpu(0))
        .unwrap()
        .to_vec()
        .unwrap_err();
    assert!(matches!(
        RemoteError::root_cause(&err),
        Some(RemoteError::OffsetOutOfRange { offset: 4, .. })
    ));
}

#[test]
fn remote_variable_example_prints_3_and_3() {
    for rt in [Some(&cpu_runtime()), common::gpu_runtime()]
        .into_iter()
        .flatten()
    {
        let (loaded, remote) = remote_variable_example::run(rt).unwrap();
        assert_eq!(
            (loaded.as_slice(), remote.as_slice()),
            (&[3.0][..], &[3.0][..])
        );
        assert_eq!(
            remote_variable_example::report(&loaded, &remote),
            "loaded_x: 3\nremote_x: 3\n"
        );
    }
}

#[test]
fn remote_rts_var_example_prints_4_6() {
    for rt in [Some(&cpu_runtime()), common::gpu_runtime()]
        .into_iter()
        .flatten()
    {
        let v = remote_rts_var_example::run(rt).unwrap();
        assert_eq!(v, vec![4.0, 6.0]);
        assert_eq!(format!("remote_x: {v:?}"), "remote_x: [4.0, 6.0]");
    }
}

#[test]
fn rts_var_example_prints_4_6() {
    for rt in [Some(&cpu_runtime()), common::gpu_runtime()]
        .into_iter()
        .flatten()
    {
        let v = rts_var_example::run(rt).unwrap();
        assert_eq!(v, vec![4.0, 6.0]);
        assert_eq!(format!("remote_x: {v:?}"), "remote_x: [4.0, 6.0]");
    }
}

#[test]
fn rts_variable_pads_and_drops_padding() {
    let rt = cpu_runtime();
    let rep = Replication::new(&rt, 4).unwrap();
    let (x, shards) =
        hetflow::remote::replica_sharded_variable::<u32>(vec![1u32, 2, 3, 4, 5], &rep).unwrap();
    assert_eq!(shards.shard_len(), 2);
    assert_eq!(shards.shard(2).to_vec().unwrap(), vec![5, 0]);
    assert_eq!(shards.shard(3).to_vec().unwrap(), vec![0, 0]);
    assert_eq!(x.get().unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(x.buffer().read(0).unwrap(), vec![1, 2, 3, 4, 5, 0, 0, 0]);
}

#[test]
fn collectives_on_gpu_replicas_run_as_gpu_kernels() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let rep = Replication::on(rt, vec![DeviceId::Gpu(0); 3]).unwrap();
    let x = rep
        .per_replica((1..=3).map(|r| rt.array_from(vec![r as f32; 10])).collect())
        .unwrap();
    rt.wait_idle();
    let before = rt.stats().gpu_submits[0];
    let y = hetflow::remote::all_reduce(&x, hetflow::remote::CollectiveOp::Mean).unwrap();
    rt.wait_idle();
    // The reduce-scatter and all-gather tasks ran on the GPU, and their results live there.
    assert!(rt.stats().gpu_submits[0] > before);
    assert!(y.replica(2).states().get(MemorySpace::Gpu(0)).is_valid());
    assert!(!y.replica(2).states().get(MemorySpace::Host).is_valid());
    assert_eq!(y.to_vec(2).unwrap(), vec![2.0; 10]);
}

/// Sharded loads and stores through an offset held in an array, on the CPU and on GPU
/// replicas.
fn sharded_device_offsets(rep: &Replication) {
    let rt = rep.runtime();
    let buffer = RemoteBuffer::<u32>::replicated(rep, &[2], 3).unwrap();
    for o in 0..3u32 {
        let data: Vec<u32> = (0..2 * rep.factor() as u32).map(|i| 100 * o + i).collect();
        remote_replica_sharded_variable(data, &buffer, o as usize).unwrap();
    }
    let off = rt.array_from(vec![2u32]);
    let loaded = buffer.load_sharded(&off).unwrap();
    assert_eq!(
        loaded.to_vec().unwrap(),
        (200..200 + 2 * rep.factor() as u32).collect::<Vec<_>>()
    );
    let ones =
        hetflow::remote::sharded_slice(&rep.replicated(vec![1u32; 2 * rep.factor()])).unwrap();
    loaded.accumulate(&ones).unwrap();
    let off1 = rt.array_from(vec![1u32]);
    buffer.store_sharded(&off1, &loaded).unwrap();
    assert_eq!(
        buffer.read(1).unwrap(),
        (201..201 + 2 * rep.factor() as u32).collect::<Vec<_>>()
    );
    assert_eq!(
        buffer.read(2).unwrap(),
        (200..200 + 2 * rep.factor() as u32).collect::<Vec<_>>()
    );
    let bad = rt.array_from(vec![3u32]);
    let err = buffer.load_sharded(&bad).unwrap().to_vec().unwrap_err();
    assert!(
        matches!(
            err.root(),
            RemoteError::OffsetOutOfRange {
                offset: 3,
                entries: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sharded_loads_and_stores_through_device_offsets() {
    let rt = cpu_runtime();
    sharded_device_offsets(&Replication::new(&rt, 3).unwrap());
    if let Some(rt) = common::gpu_runtime() {
        sharded_device_offsets(
            &Replication::on(rt, vec![DeviceId::Gpu(0), DeviceId::Cpu, DeviceId::Gpu(0)]).unwrap(),
        );
    }
}

// ---- Nothing lost, nothing hangs (issue 13) ----------------------------------------------

#[test]
fn a_store_at_a_bad_device_offset_fails_only_that_store() {
    let rt = cpu_runtime();
    let buffer = remote_buffer::<u32>(&rt, &[2], 3).unwrap();
    buffer
        .store(0, &rt.array_from(vec![1u32, 2]))
        .unwrap()
        .wait()
        .unwrap();
    let bad = rt.array_from(vec![7u32]);
    let stored = buffer.store(&bad, &rt.array_from(vec![9u32, 9])).unwrap();
    match RemoteError::root_cause(&stored.wait().unwrap_err()) {
        Some(RemoteError::OffsetOutOfRange {
            offset: 7,
            entries: 3,
            ..
        }) => {}
        other => panic!("expected OffsetOutOfRange for the bad store, got {other:?}"),
    }
    // Every entry still loads, with what it held before.
    assert_eq!(buffer.load(0).unwrap().to_vec().unwrap(), vec![1, 2]);
    assert_eq!(buffer.load(1).unwrap().to_vec().unwrap(), vec![0, 0]);
    assert_eq!(buffer.read(2).unwrap(), vec![0, 0]);
    // Later stores work, at host and at device offsets.
    buffer
        .store(1, &rt.array_from(vec![3u32, 4]))
        .unwrap()
        .wait()
        .unwrap();
    let good = rt.array_from(vec![2u32]);
    buffer
        .store(&good, &rt.array_from(vec![5u32, 6]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(buffer.load(1).unwrap().to_vec().unwrap(), vec![3, 4]);
    assert_eq!(buffer.load(&good).unwrap().to_vec().unwrap(), vec![5, 6]);
    assert_eq!(buffer.read(0).unwrap(), vec![1, 2]);
}

#[test]
fn a_bad_device_offset_on_a_replicated_buffer_fails_only_that_store() {
    let rt = cpu_runtime();
    let rep = Replication::new(&rt, 2).unwrap();
    let buffer = RemoteBuffer::<f32>::replicated(&rep, &[1], 2).unwrap();
    let x = rep
        .sharded(
            vec![rt.array_from(vec![1.0f32]), rt.array_from(vec![2.0f32])],
            2,
        )
        .unwrap();
    for h in buffer.store_sharded(0, &x).unwrap() {
        h.wait().unwrap();
    }
    let bad = rt.array_from(vec![5u32]);
    for h in buffer.store_sharded(&bad, &x).unwrap() {
        assert!(matches!(
            RemoteError::root_cause(&h.wait().unwrap_err()),
            Some(RemoteError::OffsetOutOfRange { offset: 5, .. })
        ));
    }
    assert_eq!(buffer.read(0).unwrap(), vec![1.0, 2.0]);
    for h in buffer.store_sharded(1, &x).unwrap() {
        h.wait().unwrap();
    }
    assert_eq!(buffer.read(1).unwrap(), vec![1.0, 2.0]);
}

#[test]
fn buffer_sizes_that_overflow_or_cannot_be_allocated_are_errors() {
    let rt = cpu_runtime();
    // 2^66 elements: the product overflows (it used to wrap to 0 elements).
    match RemoteBuffer::<f32>::new(&rt, &[1 << 33, 1 << 33], 1) {
        Err(e @ RemoteError::SizeOverflow { .. }) => {
            assert!(e.to_string().contains("8589934592"), "{e}")
        }
        other => panic!("expected SizeOverflow, got {other:?}"),
    }
    // Fits in usize, but not with 2^30 entries, nor in bytes.
    assert!(matches!(
        RemoteBuffer::<f32>::new(&rt, &[1 << 40], 1 << 30),
        Err(RemoteError::SizeOverflow { .. })
    ));
    assert!(matches!(
        RemoteBuffer::<f32>::new(&rt, &[1 << 62], 1),
        Err(RemoteError::SizeOverflow { .. })
    ));
    // 4 TiB: representable, but no machine here has it (it used to abort the process).
    match RemoteBuffer::<f32>::new(&rt, &[1 << 40], 1) {
        Err(e @ RemoteError::Allocation { .. }) => {
            assert!(e.to_string().contains("4398046511104 bytes"), "{e}")
        }
        other => panic!("expected Allocation, got {other:?}"),
    }
    // The runtime is unharmed.
    let ok = RemoteBuffer::<f32>::new(&rt, &[2], 2).unwrap();
    assert_eq!(ok.read(1).unwrap(), vec![0.0, 0.0]);
}
