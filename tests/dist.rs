//! The distributed runtime with its ranks as threads of this process (`LocalCluster`): the
//! random-DAG differential test, caching, failures across ranks, flow mismatches, bad input.
//! The same program runs under mpirun in `tests/dist_mpi.rs` (in `.ci/run`).

mod common;
mod dist_common;

use std::time::Duration;

use hetflow::dist::{Cluster, ClusterBuilder, DistError, LocalCluster};
use hetflow::TaskError;

#[test]
fn random_dags_on_2_and_4_ranks_equal_sequential_execution() {
    for ranks in [2, 4] {
        for seed in 0..4 {
            let ran = LocalCluster::new(ranks)
                .run(|c| dist_common::random_dag(c, seed, 2000))
                .unwrap();
            // Every task ran exactly once, somewhere.
            assert_eq!(
                ran.iter().sum::<usize>(),
                2000,
                "ranks {ranks}, seed {seed}"
            );
            assert!(ran.iter().all(|r| *r > 0), "every rank ran tasks: {ran:?}");
        }
    }
}

#[test]
// ANCHOR: cached
fn a_received_copy_is_cached_until_the_owner_writes() {
    let stats = LocalCluster::new(2)
        .run(|c| {
            let x = c.array_from(0, vec![1u32; 8]).unwrap();
            let ys: Vec<_> = (0..3).map(|_| c.array::<u32>(1, 8).unwrap()).collect();
            // Three tasks on rank 1 read x: one message, two cache hits.
            for y in &ys {
                c.task::<()>("copy")
                    .args((x.read(), y.write()))
                    .cpu(|(x, y)| y.copy_from_slice(x))
                    .spawn()
                    .unwrap();
            }
            // The owner writes x: the next read on rank 1 needs a new message.
            c.task::<()>("inc")
                .args(x.read_write())
                .cpu(|x| x.iter_mut().for_each(|v| *v += 1))
                .spawn()
                .unwrap();
            c.task::<()>("copy")
                .args((x.read(), ys[0].write()))
                .cpu(|(x, y)| y.copy_from_slice(x))
                .spawn()
                .unwrap();
            c.wait_all().unwrap();
            assert_eq!(ys[0].to_vec().unwrap(), vec![2; 8]);
            assert_eq!(ys[1].to_vec().unwrap(), vec![1; 8]);
            c.all_stats().unwrap()
        })
        .unwrap();
    let s = &stats[0];
    // Rank 0 sent x twice (v0, then v1 after its write); the gathers had rank 1 send ys[0]
    // and ys[1] to rank 0.
    assert_eq!((s[0].messages_sent, s[0].bytes_sent), (2, 2 * 32), "{s:?}");
    assert_eq!(
        (s[1].messages_sent, s[1].messages_received),
        (2, 2),
        "{s:?}"
    );
    assert_eq!(s[1].cache_hits, 2, "{s:?}");
    assert_eq!(stats[0], stats[1], "every rank sees the same statistics");
}
// ANCHOR_END: cached

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

#[test]
fn a_failure_on_one_rank_fails_its_dependents_on_every_rank_naming_root_and_rank() {
    let out = LocalCluster::new(3)
        .run(|c| {
            let a = c.array_from(1, vec![1.0f32; 4]).unwrap();
            let b = c.array::<f32>(2, 4).unwrap();
            let d = c.array::<f32>(0, 4).unwrap();
            c.task::<()>("breaks")
                .args(a.read_write())
                .cpu_try(|_| Err::<(), _>(Injected))
                .spawn()
                .unwrap();
            let hb = c
                .task::<()>("uses a on rank 2")
                .args((a.read(), b.write()))
                .cpu(|(a, b)| b.copy_from_slice(a))
                .spawn()
                .unwrap();
            // Two hops: rank 2 forwards the failure it received to rank 0.
            let hd = c
                .task::<()>("uses b on rank 0")
                .args((b.read(), d.write()))
                .cpu(|(b, d)| d.copy_from_slice(b))
                .spawn()
                .unwrap();
            let (rb, rd) = (hb.rank(), hd.rank());
            let eb = hb.wait();
            let ed = hd.wait();
            let all = c.wait_all();
            (c.rank(), rb, eb.err(), rd, ed.err(), all)
        })
        .unwrap();
    for (rank, rb, eb, rd, ed, all) in out {
        if rank == rb {
            let e = eb.expect("the dependent on rank 2 fails");
            let DistError::Task(TaskError::DependencyFailed { root, cause, .. }) = &e else {
                panic!("{e}")
            };
            assert_eq!(root, "breaks");
            assert!(matches!(&**cause, TaskError::Remote { rank: 1, .. }), "{e}");
        }
        if rank == rd {
            let e = ed.expect("the dependent two hops away fails");
            assert!(e.to_string().contains("`breaks` failed on rank 1"), "{e}");
        }
        match all {
            Err(DistError::RemoteTask { task, rank: 1, .. }) => assert_eq!(task, "breaks"),
            other => panic!("rank {rank}: wait_all gave {other:?}"),
        }
    }
}

#[test]
fn different_flows_on_different_ranks_are_an_error_not_a_hang() {
    let out = LocalCluster::new(2)
        .options(ClusterBuilder::default().timeout(Duration::from_secs(5)))
        .run(|c| {
            let a = c.array_from(0, vec![0u32; 4]).unwrap();
            let b = c.array::<u32>(1, 4).unwrap();
            // Rank 1 spawns one task more than rank 0.
            let n = if c.rank() == 1 { 2 } else { 1 };
            for _ in 0..n {
                c.task::<()>("copy")
                    .args((a.read(), b.write()))
                    .cpu(|(a, b)| b.copy_from_slice(a))
                    .spawn()
                    .unwrap();
            }
            c.wait_all()
        })
        .unwrap();
    for r in out {
        assert!(matches!(r, Err(DistError::FlowMismatch { .. })), "{r:?}");
    }
}

#[test]
fn a_message_planned_by_another_flow_is_refused() {
    let out = LocalCluster::new(2)
        .options(ClusterBuilder::default().timeout(Duration::from_secs(5)))
        .run(|c| {
            let a = c.array_from(0, vec![0u32; 4]).unwrap();
            let b = c.array::<u32>(1, 4).unwrap();
            // The same transfer, planned after differently named tasks.
            let name = if c.rank() == 0 { "zero" } else { "one" };
            c.task::<()>(name)
                .args(a.read_write())
                .cpu(|_| ())
                .spawn()
                .unwrap();
            let h = c
                .task::<()>("copy")
                .args((a.read(), b.write()))
                .cpu(|(a, b)| b.copy_from_slice(a))
                .spawn()
                .unwrap();
            (c.rank(), h.wait(), c.wait_all())
        })
        .unwrap();
    let (_, copy, all) = &out[1];
    assert!(copy.is_err(), "the receiving task fails: {copy:?}");
    assert!(
        matches!(all, Err(DistError::FlowMismatch { .. })),
        "{all:?}"
    );
}

#[test]
fn bad_ranks_and_foreign_arrays_are_typed_errors() {
    LocalCluster::new(2)
        .run(|c: &Cluster| {
            assert!(matches!(
                c.array::<u32>(2, 4),
                Err(DistError::NoSuchRank {
                    rank: 2,
                    size: 2,
                    ..
                })
            ));
            let a = c.array::<u32>(0, 4).unwrap();
            let e = c
                .task::<()>("t")
                .args(a.read_write())
                .on_rank(7)
                .cpu(|_| ())
                .spawn()
                .err()
                .unwrap();
            assert!(e.to_string().contains("on_rank is rank 7"), "{e}");
            // The refused task left the flow as it was: the ranks still agree.
            c.wait_all().unwrap();
        })
        .unwrap();
    // An array of one cluster in a task of another.
    let out = LocalCluster::new(1)
        .run(|c| {
            LocalCluster::new(1)
                .run(|d| {
                    let x = d.array::<u32>(0, 1).unwrap();
                    c.task::<()>("t").args(x.read()).cpu(|_| ()).spawn().err()
                })
                .unwrap()
        })
        .unwrap();
    assert!(matches!(&out[0][0], Some(DistError::ForeignArray { .. })));
}

#[test]
fn a_gathered_array_is_the_latest_version_on_every_rank() {
    let out = LocalCluster::new(3)
        .run(|c| {
            let a = c.array_from(2, vec![5i64; 3]).unwrap();
            c.task::<()>("neg")
                .args(a.read_write())
                .cpu(|a| a.iter_mut().for_each(|x| *x = -*x))
                .spawn()
                .unwrap();
            let first = a.to_vec().unwrap();
            // Gathered copies are cached: a second gather sends nothing.
            let before = c.stats().messages_received;
            let second = a.to_vec().unwrap();
            (first, second, c.stats().messages_received - before)
        })
        .unwrap();
    for (first, second, again) in out {
        assert_eq!(first, vec![-5; 3]);
        assert_eq!(second, first);
        assert_eq!(again, 0);
    }
}

#[test]
fn the_merged_trace_has_one_process_per_rank_with_its_messages() {
    let dir = std::env::temp_dir().join(format!("hetflow-dist-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.json");
    let p = path.clone();
    let wrote = LocalCluster::new(2)
        .run(move |c| {
            c.start_trace();
            let x = c.array_from(0, vec![1u32; 64]).unwrap();
            let y = c.array::<u32>(1, 64).unwrap();
            c.task::<()>("copy")
                .args((x.read(), y.write()))
                .cpu(|(x, y)| y.copy_from_slice(x))
                .spawn()
                .unwrap();
            c.wait_all().unwrap();
            c.write_trace(&p).unwrap()
        })
        .unwrap();
    assert_eq!(wrote, vec![true, false], "rank 0 writes the file");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ev = doc["traceEvents"].as_array().unwrap();
    let names: Vec<(u64, &str)> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| {
            (
                e["pid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, vec![(0, "rank 0"), (1, "rank 1")]);
    let has = |pid: u64, cat: &str, name: &str| {
        ev.iter().any(|e| {
            e["pid"] == pid && e["cat"] == cat && e["name"].as_str().unwrap().contains(name)
        })
    };
    assert!(has(0, "message", "d0 v0 -> 1"), "rank 0's send");
    assert!(has(1, "message", "d0 v0 <- 0"), "rank 1's receive");
    assert!(has(1, "task", "copy"), "rank 1 ran the task");
    assert!(
        has(0, "task", "send d0 v0 -> 1"),
        "rank 0 ran the send task"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn layouts_that_do_not_fit_are_typed_errors() {
    use hetflow::dist::{BlockCyclic, DistMatrix};
    LocalCluster::new(2)
        .run(|c| {
            let a = vec![0.0f32; 100];
            // 10 is not a multiple of 4.
            let e = DistMatrix::lower(c, &a, 10, 4, BlockCyclic::square(2))
                .err()
                .unwrap();
            assert!(e.to_string().contains("multiple of tile"), "{e}");
            // A 2 x 2 grid needs 4 ranks.
            let e = DistMatrix::lower(c, &a, 10, 5, BlockCyclic { p: 2, q: 2 })
                .err()
                .unwrap();
            assert!(e.to_string().contains("needs 4 ranks"), "{e}");
            assert!(BlockCyclic::new(3, 1, 2).is_err());
            // Nothing was added to the flow: the ranks still agree.
            c.wait_all().unwrap();
        })
        .unwrap();
}

#[test]
fn the_communication_thread_naps_while_every_worker_is_busy_and_loses_no_message() {
    // Rank 1's only worker runs a long task while a message for its next task is on the way:
    // the communication thread naps instead of polling (pacing), and the message is still
    // delivered and used as soon as the worker is free.
    let stats = LocalCluster::new(2)
        .run(|c| {
            let x = c.array_from(0, vec![0u32; 4]).unwrap();
            let busy = c.array_from(1, vec![0u32; 1]).unwrap();
            let y = c.array::<u32>(1, 4).unwrap();
            c.task::<()>("long")
                .args(busy.read_write())
                .cpu(|b| {
                    std::thread::sleep(Duration::from_millis(200));
                    b[0] = 1;
                })
                .spawn()
                .unwrap();
            c.task::<()>("produce")
                .args(x.write())
                .cpu(|x| {
                    // Late: rank 1 waits for this message while its worker is busy.
                    std::thread::sleep(Duration::from_millis(100));
                    x.copy_from_slice(&[1, 2, 3, 4])
                })
                .spawn()
                .unwrap();
            c.task::<()>("consume")
                .args((x.read(), busy.read(), y.write()))
                .cpu(|(x, b, y)| {
                    for (o, v) in y.iter_mut().zip(x) {
                        *o = v * 10 + b[0];
                    }
                })
                .spawn()
                .unwrap();
            c.wait_all().unwrap();
            assert_eq!(y.to_vec().unwrap(), vec![11, 21, 31, 41]);
            c.all_stats().unwrap()
        })
        .unwrap();
    let s = &stats[0];
    // 100 ms of a busy worker with a receive posted on rank 1: naps of at most 2 ms, so
    // dozens of them, and fewer transport polls than the backoff's 200 µs would make (500).
    assert!(s[1].naps >= 20, "{s:?}");
    assert!(s[1].polls < 250, "{s:?}");
}
