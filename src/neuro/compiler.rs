//! The compiler: from one process to an executable (Lava's `Compiler.compile`).
//!
//! 1. Find every process connected to the start process through any port (and the
//!    sub-processes of hierarchical ones).
//! 2. Select a model per process by the run configuration's tag; expand hierarchical
//!    processes by running their sub-process model, then repeat from 1 until only leaf
//!    processes are left.
//! 3. Resolve every leaf InPort to the leaf OutPorts that feed it (through the port chains of
//!    hierarchical processes) and every leaf RefPort to the Var it reaches (through VarPorts
//!    and Var aliases).
//! 4. Order the spike phase by message dependencies and group neighbouring processes that
//!    share a model type (Lava's iso-model condensation).

use std::collections::{BTreeSet, VecDeque};

use super::model::{ModelBuild, ModelKind, ProcessModel, Wiring};
use super::process::{Graph, PortKind, Process};
use super::{Data, NeuroError, RunCfg};

/// The product of compilation, before it runs.
pub(crate) struct Compiled {
    pub leaf_procs: Vec<usize>,
    /// Per leaf: Var names.
    pub var_names: Vec<Vec<String>>,
    /// Per leaf: (port name, kind).
    pub ports: Vec<Vec<(String, PortKind)>>,
    pub leaf_of: Vec<Option<usize>>,
    pub names: Vec<String>,
    pub models: Vec<Box<dyn ProcessModel>>,
    pub vars: Vec<Vec<Data>>,
    pub outs: Vec<Vec<Data>>,
    pub wiring: Wiring,
    pub order: Vec<usize>,
    pub description: String,
}

fn discover(g: &Graph, start: usize) -> Vec<usize> {
    let mut seen = vec![false; g.procs.len()];
    let mut q = VecDeque::from([start]);
    seen[start] = true;
    let mut out = Vec::new();
    while let Some(p) = q.pop_front() {
        out.push(p);
        let mut next: Vec<usize> = g.procs[p].children.clone();
        for e in &g.edges {
            if e.src.0 == p {
                next.push(e.dst.0);
            }
            if e.dst.0 == p {
                next.push(e.src.0);
            }
        }
        if let Some(parent) = g.procs[p].parent {
            next.push(parent);
        }
        for n in next {
            if !seen[n] {
                seen[n] = true;
                q.push_back(n);
            }
        }
    }
    out.sort_unstable();
    out
}

fn select(g: &Graph, p: usize, cfg: &RunCfg) -> Result<usize, NeuroError> {
    let proc = &g.procs[p];
    proc.models
        .iter()
        .position(|m| m.matches(cfg.select_tag.as_deref()))
        .ok_or_else(|| NeuroError::NoProcessModel {
            process: proc.name.clone(),
            process_type: proc.type_name.clone(),
            tag: cfg.select_tag.clone(),
            available: proc
                .models
                .iter()
                .map(|m| format!("{} {:?}", m.name, m.tags))
                .collect(),
        })
}

/// Compiles the network around `start` for `cfg`.
pub(crate) fn compile(start: &Process, cfg: &RunCfg) -> Result<Compiled, NeuroError> {
    // Steps 1 and 2: discover and expand until no hierarchical process is left unexpanded.
    loop {
        let pending = {
            let g = start.net.graph.lock();
            let mut pending = None;
            for p in discover(&g, start.id) {
                let m = select(&g, p, cfg)?;
                if let ModelKind::Sub(build) = &g.procs[p].models[m].kind {
                    if !g.procs[p].expanded {
                        pending = Some((p, build.clone()));
                        break;
                    }
                }
            }
            pending
        };
        match pending {
            Some((p, build)) => {
                let parent = Process {
                    net: start.net.clone(),
                    id: p,
                };
                build(&parent)?;
                start.net.graph.lock().procs[p].expanded = true;
            }
            None => break,
        }
    }

    let g = start.net.graph.lock();
    let all = discover(&g, start.id);
    let mut leaf_procs = Vec::new();
    let mut selected = Vec::new();
    for &p in &all {
        let m = select(&g, p, cfg)?;
        if let ModelKind::Leaf(_) = g.procs[p].models[m].kind {
            leaf_procs.push(p);
            selected.push(m);
        }
    }
    let mut leaf_of = vec![None; g.procs.len()];
    for (l, &p) in leaf_procs.iter().enumerate() {
        leaf_of[p] = Some(l);
    }

    // Step 3: wiring.
    let mut in_srcs = Vec::new();
    let mut refs = Vec::new();
    let mut port_labels = Vec::new();
    for &p in &leaf_procs {
        let ports = &g.procs[p].ports;
        let mut ins = vec![Vec::new(); ports.len()];
        let mut rs = vec![None; ports.len()];
        for (i, port) in ports.iter().enumerate() {
            match port.kind {
                PortKind::In => {
                    let mut seen = BTreeSet::new();
                    feeders(&g, &leaf_of, (p, i), &mut seen, &mut ins[i]);
                }
                PortKind::Ref => {
                    let mut targets = BTreeSet::new();
                    let mut seen = BTreeSet::new();
                    ref_targets(&g, (p, i), &mut seen, &mut targets);
                    let resolved: BTreeSet<(usize, usize)> =
                        targets.into_iter().map(|v| g.resolve_var(v)).collect();
                    if resolved.len() > 1 {
                        return Err(NeuroError::Invalid {
                            what: format!("RefPort {}", g.port_label((p, i))),
                            reason: format!("reaches {} Vars, one expected", resolved.len()),
                        });
                    }
                    if let Some(&(vp, vi)) = resolved.iter().next() {
                        let leaf = leaf_of[vp].ok_or_else(|| NeuroError::Invalid {
                            what: format!("RefPort {}", g.port_label((p, i))),
                            reason: format!(
                                "reaches Var {} of a process that has no leaf model (alias it to a sub-process Var)",
                                g.var_label((vp, vi))
                            ),
                        })?;
                        rs[i] = Some((leaf, vi));
                    }
                }
                PortKind::Out | PortKind::Var => {}
            }
        }
        in_srcs.push(ins);
        refs.push(rs);
        port_labels.push((0..ports.len()).map(|i| g.port_label((p, i))).collect());
    }
    let wiring = Wiring {
        in_srcs,
        refs,
        port_labels,
    };

    // Build the models (they may convert their Vars' element types).
    let mut models: Vec<Box<dyn ProcessModel>> = Vec::new();
    let mut vars = Vec::new();
    let mut outs = Vec::new();
    let mut names = Vec::new();
    let mut var_names = Vec::new();
    let mut port_info = Vec::new();
    for (l, &p) in leaf_procs.iter().enumerate() {
        let proc = &g.procs[p];
        var_names.push(proc.vars.iter().map(|v| v.name.clone()).collect());
        port_info.push(
            proc.ports
                .iter()
                .map(|v| (v.name.clone(), v.kind))
                .collect(),
        );
        let mut values: Vec<Data> = proc.vars.iter().map(|v| v.init.clone()).collect();
        // (large Vars are cloned once here; the graph keeps the initial values)
        let ModelKind::Leaf(build) = &proc.models[selected[l]].kind else {
            unreachable!("leaf_procs holds leaf models only")
        };
        let mut mb = ModelBuild {
            process: &proc.name,
            var_names: proc.vars.iter().map(|v| v.name.clone()).collect(),
            var_shapes: proc.vars.iter().map(|v| v.shape.clone()).collect(),
            vars: &mut values,
            port_names: proc.ports.iter().map(|v| v.name.clone()).collect(),
            port_shapes: proc.ports.iter().map(|v| v.shape.clone()).collect(),
            port_kinds: proc.ports.iter().map(|v| v.kind).collect(),
        };
        models.push(build(&mut mb)?);
        vars.push(values);
        outs.push(
            proc.ports
                .iter()
                .map(|port| match port.kind {
                    PortKind::Out => Data::F64(vec![0.0; port.shape.iter().product()]),
                    _ => Data::F64(Vec::new()),
                })
                .collect(),
        );
        names.push(proc.name.clone());
    }

    // Step 4: spike-phase order (Kahn, lowest index first) and groups.
    let n = leaf_procs.len();
    let mut succ = vec![BTreeSet::new(); n];
    let mut indeg = vec![0usize; n];
    for (b, ins) in wiring.in_srcs.iter().enumerate() {
        for srcs in ins {
            for &(a, _) in srcs {
                if !models[a].sends_early() && succ[a].insert(b) {
                    indeg[b] += 1;
                }
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(&a) = ready.iter().next() {
        ready.remove(&a);
        order.push(a);
        for &b in &succ[a] {
            indeg[b] -= 1;
            if indeg[b] == 0 {
                ready.insert(b);
            }
        }
    }
    if order.len() < n {
        let stuck = (0..n)
            .filter(|&i| indeg[i] > 0)
            .map(|i| names[i].clone())
            .collect();
        return Err(NeuroError::SpikeCycle { processes: stuck });
    }

    // Groups: union-find over connected leaves with the same model.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut pairs = Vec::new();
    for b in 0..n {
        for srcs in &wiring.in_srcs[b] {
            pairs.extend(srcs.iter().map(|&(a, _)| (a, b)));
        }
        pairs.extend(wiring.refs[b].iter().flatten().map(|&(a, _)| (a, b)));
    }
    for (a, b) in pairs {
        if models[a].name() == models[b].name() {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            parent[ra] = rb;
        }
    }

    let mut d = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        d,
        "process graph (select_tag {:?}): {} processes before expansion, {} leaf processes",
        cfg.select_tag,
        all.len(),
        n
    );
    for &p in &all {
        let proc = &g.procs[p];
        let m = &proc.models[select(&g, p, cfg)?];
        let kind = match m.kind {
            ModelKind::Leaf(_) => "",
            ModelKind::Sub(_) => " (hierarchical, expanded)",
        };
        let parent = proc
            .parent
            .map(|q| format!(" in {}", g.procs[q].name))
            .unwrap_or_default();
        let _ = writeln!(
            d,
            "  {}: {} -> {}{kind}{parent}",
            proc.name, proc.type_name, m.name
        );
    }
    let _ = writeln!(d, "channels:");
    for b in 0..n {
        for (i, srcs) in wiring.in_srcs[b].iter().enumerate() {
            for &(a, o) in srcs {
                let _ = writeln!(
                    d,
                    "  {} -> {}",
                    wiring.port_labels[a][o], wiring.port_labels[b][i]
                );
            }
        }
    }
    let _ = writeln!(d, "remote memory access:");
    for a in 0..n {
        for (i, r) in wiring.refs[a].iter().enumerate() {
            if let Some((b, v)) = *r {
                let _ = writeln!(
                    d,
                    "  {} -> {}",
                    wiring.port_labels[a][i],
                    g.var_label((leaf_procs[b], v))
                );
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut root_of = std::collections::BTreeMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        let k = *root_of.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[k].push(i);
    }
    let _ = writeln!(d, "process groups:");
    for grp in &groups {
        let members: Vec<&str> = grp.iter().map(|&i| names[i].as_str()).collect();
        let _ = writeln!(d, "  {{{}}} {}", members.join(", "), models[grp[0]].name());
    }
    let _ = writeln!(
        d,
        "spike order: {}",
        order
            .iter()
            .map(|&i| names[i].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    Ok(Compiled {
        leaf_procs,
        var_names,
        ports: port_info,
        leaf_of,
        names,
        models,
        vars,
        outs,
        wiring,
        order,
        description: d,
    })
}

/// The leaf OutPorts feeding port `port` (an InPort, or an OutPort of a hierarchical process).
fn feeders(
    g: &Graph,
    leaf_of: &[Option<usize>],
    port: (usize, usize),
    seen: &mut BTreeSet<(usize, usize)>,
    out: &mut Vec<(usize, usize)>,
) {
    if !seen.insert(port) {
        return;
    }
    for e in g.edges.iter().filter(|e| e.dst == port) {
        let src = &g.procs[e.src.0].ports[e.src.1];
        match (src.kind, leaf_of[e.src.0]) {
            (PortKind::Out, Some(l)) => out.push((l, e.src.1)),
            _ => feeders(g, leaf_of, e.src, seen, out),
        }
    }
}

/// The Vars a RefPort reaches through RefPorts and VarPorts.
fn ref_targets(
    g: &Graph,
    port: (usize, usize),
    seen: &mut BTreeSet<(usize, usize)>,
    out: &mut BTreeSet<(usize, usize)>,
) {
    if !seen.insert(port) {
        return;
    }
    let data = &g.procs[port.0].ports[port.1];
    let forward: Vec<_> = g.edges.iter().filter(|e| e.src == port).collect();
    if data.kind == PortKind::Var && forward.is_empty() {
        if let Some(v) = data.var {
            out.insert((port.0, v));
        }
        return;
    }
    for e in forward {
        ref_targets(g, e.dst, seen, out);
    }
}
