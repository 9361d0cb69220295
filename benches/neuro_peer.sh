#!/bin/sh
# The same-network peer benchmark in one command: Brian2 (benches/brian2_peer.py,
# cpp_standalone, 1 and 2 threads) on the `bench neuro` network, then hetflow's
# `bench neuro` with its results file, which checks the spike counts and prints the ratios.
# The load average is printed before, between and after (figures on a shared machine are
# only as good as it is quiet). Environment: SIZES, STEPS, ROUNDS, OUT.
set -e
SIZES=${SIZES:-1000,10000,100000}
STEPS=${STEPS:-1000}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-brian2-results.json}
echo "load before: $(cat /proc/loadavg)"
python3 benches/brian2_peer.py --sizes "$SIZES" --steps "$STEPS" --threads 1,2 \
    --rounds "$ROUNDS" --out "$OUT"
echo "load between: $(cat /proc/loadavg)"
cargo run --release --bin hetflow -- bench neuro --neuro-cpu-only --neuro-one-worker \
    --neuro-sizes "$SIZES" --neuro-steps "$STEPS" --neuro-rounds "$ROUNDS" --peer "$OUT"
echo "load after: $(cat /proc/loadavg)"
