//! Data-parallel SGD with sharded optimizer state: the loss goes down, and R replicas train
//! the same weights as one replica, within float tolerance, on CPU and GPU replicas.

mod common;

use hetflow::remote::sgd::{train_linear, Dataset, LinearSgd, Trained};
use hetflow::remote::{RemoteError, Replication};
use hetflow::{DeviceId, Runtime};

const CFG: LinearSgd = LinearSgd {
    lr: 0.05,
    momentum: 0.9,
    steps: 60,
};

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs())),
            "{what}[{i}]: {x} vs {y}\n{a:?}\n{b:?}"
        );
    }
}

fn check_trained(t: &Trained, single: &Trained, what: &str) {
    assert_eq!(t.losses.len(), CFG.steps);
    assert!(
        t.losses[CFG.steps - 1] < t.losses[0] / 100.0,
        "{what}: loss did not go down: {:?}",
        t.losses
    );
    assert_close(&t.weights, &single.weights, &format!("{what} weights"));
    assert_close(&t.momentum, &single.momentum, &format!("{what} momentum"));
    assert_close(&t.losses, &single.losses, &format!("{what} losses"));
}

#[test]
fn replicas_train_the_same_weights_as_one_replica() {
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    // 11 features: not divisible by 2, 3 or 4, so every shard layout has padding.
    let data = Dataset::synthetic(90, 11, 7);
    let single = train_linear(&Replication::new(&rt, 1).unwrap(), &data, &CFG).unwrap();
    for r in [2, 3, 4] {
        let t = train_linear(&Replication::new(&rt, r).unwrap(), &data, &CFG).unwrap();
        check_trained(&t, &single, &format!("R={r} on CPU"));
    }
    let truth: Vec<f32> = (0..11).map(|j| (j % 7) as f32 / 7.0 - 0.4).collect();
    // And they approach the generating weights (the targets carry a little noise).
    for (w, t) in single.weights.iter().zip(&truth) {
        assert!((w - t).abs() < 0.05, "{:?} vs {truth:?}", single.weights);
    }
}

#[test]
fn gpu_replicas_train_the_same_weights() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let data = Dataset::synthetic(90, 11, 7);
    let cpu = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    let single = train_linear(&Replication::new(&cpu, 1).unwrap(), &data, &CFG).unwrap();
    let on_gpu = Replication::on(rt, vec![DeviceId::Gpu(0); 3]).unwrap();
    check_trained(
        &train_linear(&on_gpu, &data, &CFG).unwrap(),
        &single,
        "R=3 on GPU",
    );
    let mixed = Replication::on(rt, vec![DeviceId::Gpu(0), DeviceId::Cpu]).unwrap();
    check_trained(
        &train_linear(&mixed, &data, &CFG).unwrap(),
        &single,
        "R=2 GPU+CPU",
    );
}

#[test]
fn bad_datasets_are_errors() {
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    let mut data = Dataset::synthetic(3, 2, 1);
    let rep = Replication::new(&rt, 4).unwrap();
    assert!(matches!(
        train_linear(&rep, &data, &CFG),
        Err(RemoteError::LengthMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    data.x.pop();
    assert!(matches!(
        train_linear(&Replication::new(&rt, 1).unwrap(), &data, &CFG),
        Err(RemoteError::LengthMismatch {
            expected: 6,
            got: 5,
            ..
        })
    ));
}
