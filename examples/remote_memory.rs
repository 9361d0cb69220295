//! Lava's "Remote Memory Access" tutorial: process P1 reads and writes the Var of process P2
//! through a RefPort in its post-management phase, first through an implicit VarPort
//! (`connect_var`), then through an explicit one (`connect`).
//!
//! Expected output (checked): `Value of var: [5] at time step: 1` ... `[15] at time step: 5`
//! twice, and the Var read from the host afterwards: `[20]`.
//!
//!     cargo run --release --example remote_memory

use std::sync::Arc;

use parking_lot::Mutex;

use hetflow::neuro::{
    Cx, Data, ModelSpec, Network, NeuroError, PortIx, Process, ProcessModel, RunCfg, RunSteps,
};

/// P1's model: post_guard is always true; in post-management it prints the remote value and
/// writes it back plus the time step.
struct PyProcModel1 {
    reference: PortIx,
    seen: Arc<Mutex<Vec<i32>>>,
}

impl ProcessModel for PyProcModel1 {
    fn name(&self) -> &str {
        "PyProcModel1"
    }

    fn run_spk(&mut self, _cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }

    fn post_guard(&self, _time_step: u64) -> bool {
        true
    }

    fn run_post_mgmt(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let cur = cx.ref_read(self.reference)?;
        println!("Value of var: {} at time step: {}", cur, cx.time_step());
        let cur = cur.to_i32();
        self.seen.lock().push(cur[0]);
        let new: Vec<i32> = cur.iter().map(|v| v + cx.time_step() as i32).collect();
        cx.ref_write(self.reference, &Data::I32(new))
    }
}

/// P2's model: holds `var`, does nothing itself.
struct PyProcModel2;

impl ProcessModel for PyProcModel2 {
    fn name(&self) -> &str {
        "PyProcModel2"
    }
    fn run_spk(&mut self, _cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
}

fn p1(net: &Network, seen: Arc<Mutex<Vec<i32>>>) -> Result<Process, NeuroError> {
    net.process("proc1", "P1")
        .ref_port("ref", &[1])
        .model(ModelSpec::leaf("PyProcModel1", &[], move |b| {
            Ok(Box::new(PyProcModel1 {
                reference: b.port("ref")?,
                seen: seen.clone(),
            }))
        }))
        .build()
}

fn p2(net: &Network, explicit: bool) -> Result<Process, NeuroError> {
    let mut b = net
        .process("proc2", "P2")
        .var("var", &[1], Data::I32(vec![5]));
    if explicit {
        b = b.var_port("var_port", "var");
    }
    b.model(ModelSpec::leaf("PyProcModel2", &[], |_| {
        Ok(Box::new(PyProcModel2))
    }))
    .build()
}

#[path = "support/quiet.rs"]
mod quiet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    // ANCHOR: rma
    for explicit in [false, true] {
        let net = Network::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let proc1 = p1(&net, seen.clone())?;
        let proc2 = p2(&net, explicit)?;
        let reference = proc1.ref_port("ref")?;
        if explicit {
            println!("# explicit VarPort: proc1.ref.connect(proc2.var_port)");
            reference.connect(&proc2.var_port("var_port")?)?;
        } else {
            println!("# implicit VarPort: proc1.ref.connect_var(proc2.var)");
            reference.connect_var(&proc2.var("var")?)?;
        }
        proc1.run(RunSteps(5), &RunCfg::default_sim())?;
        let host = proc2.var("var")?.get()?;
        println!("Var read from the host after the run: {host}");
        proc1.stop()?;
        assert_eq!(
            *seen.lock(),
            vec![5, 6, 8, 11, 15],
            "values read in post-management"
        );
        assert_eq!(host, Data::I32(vec![20]), "value read from the host");
    }
    // ANCHOR_END: rma
    println!("ok: both runs match Lava's tutorial (5, 6, 8, 11, 15; then 20)");
    Ok(())
}
