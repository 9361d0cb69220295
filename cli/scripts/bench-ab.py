#!/usr/bin/env python3
# Alternates `bench --scale 2` of several hetflow binaries (e.g. the previous commit's and
# this one's), ROUNDS rounds, and prints per row the medians of hetflow/item, base/item and
# the ratio, with the load average seen during the runs.
#
#   python3 cli/scripts/bench-ab.py OLD_BIN,NEW_BIN [ROUNDS=5]
import re, subprocess, statistics, sys, os
if len(sys.argv) < 2:
    sys.exit("usage: bench-ab.py OLD_BIN,NEW_BIN [ROUNDS]")
bins = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
rows = {}
def parse_ns(tok, unit):
    v = float(tok)
    return v * {"ns": 1, "us": 1e3, "ms": 1e6}[unit]
loads = []
for r in range(rounds):
    for b in bins:
        loads.append(os.getloadavg()[0])
        out = subprocess.run([b, "bench", "--scale", "2"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"^(.+?)\s{2,}([\d.]+) (ns|us|ms)\s+([\d.]+) (ns|us|ms)\s+([\d.]+)x", line)
            if not m: continue
            name = m.group(1).strip()
            h, base, ratio = parse_ns(m.group(2), m.group(3)), parse_ns(m.group(4), m.group(5)), float(m.group(6))
            rows.setdefault((b, name), []).append((h, base, ratio))
print(f"load average during runs: min {min(loads):.2f} max {max(loads):.2f}")
names = []
for (b, n) in rows:
    if n not in names: names.append(n)
for n in names:
    print(n)
    for b in bins:
        v = rows.get((b, n))
        if not v: continue
        med = lambda i: statistics.median(x[i] for x in v)
        print(f"   {os.path.basename(b):<14} hetflow {med(0):10.0f} ns  base {med(1):10.0f} ns  ratio {med(2):6.2f}  (n={len(v)}, ratios {', '.join(f'{x[2]:.2f}' for x in v)})")
