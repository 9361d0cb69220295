#!/usr/bin/env python3
"""The `hetflow bench neuro` network in Brian2, draw for draw: a peer benchmark of the *same*
network.

The network (cli/src/bench/neuro.rs, `run`): one LIF population of N neurons with a random
bias, its spikes fed back through an N x N connection with probability p, drawn by
SplitMix64(seed) row by row with geometric skips; float (du 0.25, dv 0.05, vth 1) or the
bit-accurate fixed-point LIF of Lava (MODELS.md section 3), emulated exactly in float64
(every value is an integer below 2^53). Dense sends what it accumulated one step late, so
the input of step t is W s(t-1). One warm-up step, then STEPS timed steps; the spikes of
the timed steps are counted and must equal hetflow's (`hetflow bench neuro --peer FILE`
checks it and prints the ratio only then).

Brian2 runs as `cpp_standalone` (generated C++, compiled with -O3 -march=native by Brian2's
defaults) with 1 and 2 OpenMP threads; the time is Brian2's own measure of the timed run
(`device._last_run_time`, the simulation loop only, no compilation or set-up), the median of
ROUNDS runs of the compiled binary.

    pip install brian2 'numpy<2'    # Brian2 2.9 uses ndarray.ptp, gone in NumPy 2
    python3 benches/brian2_peer.py --sizes 1000,10000,100000 --threads 1,2 --rounds 5 \
        --out brian2-results.json
    cargo run --release --bin hetflow -- bench neuro --neuro-cpu-only --neuro-rounds 5 \
        --peer brian2-results.json
"""

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time

import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class SplitMix64:
    """The generator of cli/src/bench/neuro.rs (`Rng`), drawing in blocks with numpy: draw k
    of a generator seeded with s is mix(s + (k + 1) * GOLDEN)."""

    def __init__(self, seed, block=1 << 20):
        self.seed = seed
        self.k = 0
        self.block = block
        self.buf = []
        self.pos = 0

    def _fill(self):
        with np.errstate(over="ignore"):
            idx = np.arange(self.k + 1, self.k + 1 + self.block, dtype=np.uint64)
            z = np.uint64(self.seed) + idx * np.uint64(GOLDEN)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        units = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        self.k += self.block
        self.buf = units.tolist()
        self.pos = 0

    def unit(self):
        if self.pos == len(self.buf):
            self._fill()
        x = self.buf[self.pos]
        self.pos += 1
        return x


def rust_round(x):
    """f64::round: halves away from zero (Python's round() goes to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def draw(n, p, fixed, seed):
    """(bias, pre, post, w) exactly as `run` draws them (pre = column j, post = row i)."""
    rng = SplitMix64(seed)
    if fixed:
        bias = [math.floor(rng.unit() * 60.0) for _ in range(n)]
        scale = 8.0
    else:
        bias = [rng.unit() * 0.12 for _ in range(n)]
        scale = 0.02 / math.sqrt(n * p) * 30.0
    ln_q = math.log(1.0 - p)
    pre, post, w = [], [], []
    unit, log, floor = rng.unit, math.log, math.floor
    for i in range(n):
        j = 0
        while True:
            x = log(1.0 - unit()) / ln_q
            if not math.isfinite(x) or j + floor(x) >= n:
                break
            skip = floor(x)
            if j + skip >= n:
                break
            j += skip
            v = (unit() * 2.0 - 1.3) * scale
            if fixed:
                v = rust_round(v)
            if v != 0.0:
                pre.append(j)
                post.append(i)
                w.append(v)
            j += 1
    pre = np.array(pre, dtype=np.int32)
    post = np.array(post, dtype=np.int32)
    w = np.array(w, dtype=np.float64)
    if fixed:
        # Lava's bit-accurate Dense on its first step (MODELS.md section 5): the signs are
        # mixed, 8 weight bits, so one LSB is dropped: (clip(w, -256, 255) >> 1) << 1.
        w = np.floor(np.clip(w, -256, 255) / 2.0) * 2.0
        keep = w != 0.0
        pre, post, w = pre[keep], post[keep], w[keep]
    # Brian2 adds a spike's effects in synapse order: sort by (pre, post) so that every
    # target sums its inputs in the order of the presynaptic index, as hetflow does.
    order = np.lexsort((post, pre))
    return np.array(bias), pre[order], post[order], w[order]


_DRAWS = {}


def build_and_time(n, p, fixed, seed, steps, threads, rounds, workdir):
    import brian2 as b2

    b2.device.reinit()
    b2.device.activate()
    b2.set_device("cpp_standalone", directory=workdir, build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = threads
    b2.defaultclock.dt = 1 * b2.ms
    t_draw = time.time()
    key = (n, p, fixed, seed)
    if key not in _DRAWS:
        _DRAWS.clear()
        _DRAWS[key] = draw(n, p, fixed, seed)
    bias_v, pre, post, w_v = _DRAWS[key]
    t_draw = time.time() - t_draw
    eqs = """
    u : 1
    v : 1
    a : 1
    anext : 1
    vt : 1
    bias : 1 (constant)
    count : 1
    """
    if fixed:
        # 24-bit u wrapping, v saturating, the decays truncated toward zero; H = 2^23.
        update = """
        u = sign(u) * floor(abs(u) * fu / 4096.0) + a * 64
        u = u - 2 * H * int(u > H) + 2 * H * int(u <= -H)
        vt = sign(v) * floor(abs(v) * fv / 4096.0) + u
        v = clip(vt + bias, -(H - 1), H - 1)
        """
        ns = dict(fu=4096 - 1001, fv=4096 - 200, H=float(1 << 23), vth=float(500 << 6))
        bias_v = bias_v * 64.0  # bias_mant << bias_exp (6)
    else:
        # Two terms per statement: IEEE addition is commutative, so however Brian2 orders
        # the operands the sum is hetflow's.
        update = """
        u = u * cu + a
        vt = v * cv + u
        v = vt + bias
        """
        ns = dict(cu=1.0 - 0.25, cv=1.0 - 0.05, vth=1.0)
    g = b2.NeuronGroup(
        n, eqs, threshold="v > vth", reset="v = 0\ncount += 1", namespace=ns, name="lif"
    )
    g.bias = bias_v
    g.run_regularly(update, when="groups", name="lif_update")
    g.run_regularly("a = anext\nanext = 0", when="end", name="lif_dense_delay")
    s = b2.Synapses(g, g, "w : 1", on_pre="anext_post += w", namespace={}, name="dense")
    s.connect(i=pre, j=post)
    s.w = w_v
    b2.run(1 * b2.ms)  # warm-up step, as hetflow's
    g.count = 0
    b2.run(steps * b2.ms)
    t_build = time.time()
    b2.device.build(directory=workdir, compile=True, run=False, clean=False)
    t_build = time.time() - t_build
    times, spikes = [], None
    for _ in range(rounds):
        b2.device.run(directory=workdir, with_output=False, run_args=[])
        times.append(b2.device._last_run_time)
        got = int(round(float(np.sum(g.count[:]))))
        if spikes is not None and got != spikes:
            raise SystemExit(f"N={n}: spike counts differ between rounds ({spikes}, {got})")
        spikes = got
    return dict(
        seconds=times,
        median_s=statistics.median(times),
        spikes=spikes,
        synapses=int(len(w_v)),
        draw_s=t_draw,
        build_s=t_build,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--sparse-p", type=float, default=0.001, help="p above 10k (as hetflow)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="float,fixed")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="brian2-results.json")
    ap.add_argument("--workdir", default="/tmp/hetflow-brian2-peer")
    args = ap.parse_args()
    import brian2 as b2

    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        p = 0.1 if n <= 10_000 else args.sparse_p
        for model in args.models.split(","):
            fixed = model == "fixed"
            for threads in [int(x) for x in args.threads.split(",")]:
                wd = os.path.join(args.workdir, f"n{n}_{model}_t{threads}")
                shutil.rmtree(wd, ignore_errors=True)
                r = build_and_time(n, p, fixed, args.seed, args.steps, threads, args.rounds, wd)
                row = dict(
                    n=n,
                    p=p,
                    model="fixed_pt" if fixed else "floating_pt",
                    threads=threads,
                    **r,
                )
                print(
                    f"N={n} p={p} {row['model']} threads={threads}: median {row['median_s']:.4f} s "
                    f"of {args.rounds}, {row['spikes']} spikes, {row['synapses']} synapses",
                    file=sys.stderr,
                )
                rows.append(row)
    out = dict(
        peer=f"brian2 {b2.__version__} cpp_standalone",
        steps=args.steps,
        seed=args.seed,
        load_average=os.getloadavg(),
        rows=rows,
    )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"written {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
