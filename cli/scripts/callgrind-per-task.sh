#!/usr/bin/env bash
# Instructions per task, hetflow against rayon on the same work, with valgrind's callgrind:
# (Ir(2N tasks) - Ir(N tasks)) / N for each workload of `cli/examples/overhead.rs`, so the
# runtime's start-up cancels out. Counts do not depend on the machine's load; spin loops
# of idle workers make them vary by a few percent between runs (the script prints the
# median of 3). valgrind runs one thread at a time; `--fair-sched=yes` makes it switch
# between them often, as the machine's two cores interleave the spawning and the running
# threads (without it the spawner makes every node before any task runs, and no finished
# node is there to reuse). OVERHEAD_BIN=PATH counts another build of the example.
#
# Then, per hetflow workload, where the instructions of one task go (spawn, dependency
# tracking, queueing, wake-up, run, completion, drop: cli/scripts/callgrind-breakdown.py),
# from the first run's two profiles.
#
#   bash cli/scripts/callgrind-per-task.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-2000}
cargo build --quiet --release -p hetflow-cli --example overhead
bin=${OVERHEAD_BIN:-target/release/examples/overhead}
out=$(mktemp -d)
ir() { # mode tasks run
  valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out/$1-$2-$3" "$bin" "$1" "$2" >/dev/null 2>&1
  awk '/^(summary|totals):/ {print $2; exit}' "$out/$1-$2-$3"
}
for mode in pool main rwchain chain rayon-scope rayon-chain; do
  per=()
  for run in 1 2 3; do
    a=$(ir "$mode" "$n" "$run"); b=$(ir "$mode" $((2 * n)) "$run")
    per+=($(( (b - a) / n )))
  done
  sorted=($(printf '%s\n' "${per[@]}" | sort -n))
  printf '%-12s %6d Ir/task   (runs: %s)\n' "$mode" "${sorted[1]}" "${per[*]}"
done
echo "where one task's instructions go (Ir/task, run 1):"
for mode in pool main rwchain chain; do
  python3 cli/scripts/callgrind-breakdown.py "$mode" "$out/$mode-$n-1" "$out/$mode-$((2 * n))-1" "$n"
done
rm -rf "$out"
