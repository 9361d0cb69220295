#!/usr/bin/env python3
# Where one task's instructions go, from two callgrind profiles of the same workload with
# N and 2N tasks (cli/scripts/callgrind-per-task.sh makes them): each phase is the
# difference of its functions' inclusive counts divided by N, so start-up cancels out.
#
#   python3 cli/scripts/callgrind-breakdown.py MODE FILE_N FILE_2N N
#
# Phases (nested calls subtracted, so they add up to the total but for "other"):
#   spawn       building the task and its node (TaskBuilder::spawn minus what follows)
#   deps        dependency tracking (edges to earlier tasks, the arrays' tracker lookup)
#   queue       making ready tasks runnable: scheduling, the queue push, pops and steals
#   wake        waking a sleeping worker (Sleep::notify_one)
#   run         running the task: start, body, data preparation (run_on_cpu minus finish)
#   complete    finishing: outcome, DONE, waiters (finish minus releasing dependents)
#   drop        giving back the references a worker ran with (and recycling nodes)
#   other       the rest: idle workers searching, the benchmark's own loop
import os
import re
import subprocess
import sys


def inclusive(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=100", path],
        # From /: with relative source paths, callgrind_annotate splits a function in two.
        capture_output=True, text=True, check=True, cwd="/").stdout
    counts = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*)$", line)
        if m:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return counts


def per_task(a, b, n, pattern):
    """Per-task inclusive count of the functions whose name matches `pattern` (a regex
    on the symbol, the binary's own copy only)."""
    rx = re.compile(pattern)
    keys = [k for k in set(a) | set(b) if rx.search(k) and ("[" in k or k == "PROGRAM TOTALS")]
    return sum(b.get(k, 0) - a.get(k, 0) for k in keys) / n


def main():
    mode, n = sys.argv[1], int(sys.argv[4])
    fa, fb = (os.path.abspath(p) for p in sys.argv[2:4])
    a, b = inclusive(fa), inclusive(fb)
    f = lambda p: per_task(a, b, n, p)
    total = f(r"^PROGRAM TOTALS")
    spawn = f(r":hetflow::task::builder::TaskBuilder<T>::spawn \[")
    guard = f(r":hetflow::task::node::Node::release_guard \[")
    # The edges to earlier tasks and the arrays' tracker lookup (the tracker's range
    # comparison is inlined into the spawn and counted there).
    deps = f(r":hetflow::task::node::Node::add_edge \[") + f(r"Trackers::of \[")
    run = f(r"<hetflow::task::node::Node as hetflow::sched::job::CpuJob>::run_on_cpu \[")
    finish = f(r":hetflow::task::node::Node::finish \[")
    dep_done = f(r":hetflow::task::node::Node::dep_done \[")
    wake = f(r":hetflow::sched::sleep::Sleep::notify_one \[")
    pops = f(r"crossbeam_deque::deque::Worker<T>::pop \[") + f(
        r"steal_batch_with_limit_and_pop \[")
    drop = f(r":hetflow::sched::cpu::WorkerLocal::drop_ran \[")
    if mode == "pool":
        # The spawning loop runs inside a task: its run_on_cpu holds every spawn.
        run -= spawn
    phases = {
        "spawn": spawn - guard - deps,
        "deps": deps,
        "queue": guard + dep_done + pops - wake,
        "wake": wake,
        "run": run - finish,
        "complete": finish - dep_done,
        "drop": drop,
    }
    phases["other"] = total - sum(phases.values())
    cells = "  ".join(f"{k} {v:5.0f}" for k, v in phases.items())
    print(f"{mode:<8} total {total:5.0f} Ir/task:  {cells}")


if __name__ == "__main__":
    main()
