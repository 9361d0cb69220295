#!/usr/bin/env python3
"""Issue 31's must-show runs: the default policy's first and second runs against the CPU.

Runs (after `cargo build --release --example cholesky` and, for the MPI rows,
`cargo build --release --features mpi --example dist_cholesky`):

  1. `cholesky N TILE` with a fresh cache (HOME and XDG_CACHE_HOME in a new empty temporary
     directory: the first run), then again with the same cache (the second run), and
     `cholesky N TILE cpu` beside them; ROUNDS rounds, alternating, medians printed;
  2. `cholesky` with no arguments (its own hetflow/faer ratio), ROUNDS times, fresh caches;
  3. with --mpi: `mpirun -n 2 dist_cholesky N TILE` (fresh cache) against `... --cpu`,
     alternating, ROUNDS rounds.

HETFLOW_SOFTWARE_GPU=1 is set for every run (software adapters in, as the default is).
The load average is printed before and after.

usage: placement-check.py [--rounds 3] [--n 4096] [--tile 512] [--mpi] [--eager]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EX = os.path.join(ROOT, "target", "release", "examples")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def run(cmd, cache):
    env = dict(os.environ)
    env["HETFLOW_SOFTWARE_GPU"] = "1"
    env["HOME"] = cache
    env["XDG_CACHE_HOME"] = os.path.join(cache, ".cache")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def seconds(text):
    m = re.search(r"^time ([0-9.]+) s", text, re.M)
    if not m:
        sys.exit(f"no time in:\n{text}")
    return float(m.group(1))


def placed(text):
    return ", ".join(
        f"{m.group(1)} {m.group(2)} on {m.group(3)}"
        for m in re.finditer(r"^\s+(\d+) x (\w+) on (\w+)", text, re.M)
    )


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--mpi", action="store_true")
    ap.add_argument("--eager", action="store_true", help="also one eager run (slow)")
    a = ap.parse_args()
    print(f"load average before: {load()}")
    chol = os.path.join(EX, "cholesky")
    n, t = str(a.n), str(a.tile)
    first, second, cpu = [], [], []
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory() as cache:
            out1 = run([chol, n, t], cache)
            out2 = run([chol, n, t], cache)
            outc = run([chol, n, t, "cpu"], cache)
        first.append(seconds(out1))
        second.append(seconds(out2))
        cpu.append(seconds(outc))
        print(f"round {r + 1}: first {first[-1]:.3f} s ({placed(out1)}), "
              f"second {second[-1]:.3f} s, cpu {cpu[-1]:.3f} s")
    mc, m1, m2 = (statistics.median(x) for x in (cpu, first, second))
    print(f"cholesky {n} {t}: cpu {mc:.3f} s; default first run {m1:.3f} s = {mc / m1:.2f}x the CPU "
          f"(goal >= 0.8); second run {m2:.3f} s = {mc / m2:.2f}x (goal >= 0.95)")
    if a.eager:
        with tempfile.TemporaryDirectory() as cache:
            oute = run([chol, n, t, "eager"], cache)
        print(f"cholesky {n} {t} eager: {seconds(oute):.3f} s ({placed(oute)})")
    ratios = []
    for _ in range(a.rounds):
        with tempfile.TemporaryDirectory() as cache:
            out = run([chol], cache)
        m = re.search(r"speed ratio ([0-9.]+)x", out)
        ratios.append(float(m.group(1)))
    print(f"cholesky (no arguments, first runs): hetflow/faer speed ratios {ratios}, "
          f"median {statistics.median(ratios):.2f}x (goal >= 0.8)")
    if a.mpi:
        dist = os.path.join(EX, "dist_cholesky")
        d, dc = [], []
        for _ in range(a.rounds):
            with tempfile.TemporaryDirectory() as cache:
                d.append(seconds(run(MPIRUN + ["-n", "2", dist, n, t], cache)))
                dc.append(seconds(run(MPIRUN + ["-n", "2", dist, n, t, "--cpu"], cache)))
        md, mdc = statistics.median(d), statistics.median(dc)
        print(f"mpirun -n 2 dist_cholesky {n} {t}: default {md:.3f} s, --cpu {mdc:.3f} s: "
              f"{mdc / md:.2f}x (goal >= 0.8); runs {d} / {dc}")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
