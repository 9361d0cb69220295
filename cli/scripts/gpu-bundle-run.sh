#!/usr/bin/env bash
# The runner of a hetflow GPU bundle (built by cli/scripts/gpu-bundle.sh, copied in as run.sh).
#
#   ./run.sh [--allow-software] [--quick] [--summary FILE] [--only STEP[,STEP]]
#
# Prints the adapter, runs the GPU test suites with HETFLOW_REQUIRE_GPU=1, then the
# benchmarks (engine, tiled linear algebra 4096/512, neuro GPU rows at 100k and 1M, remote
# all-reduce, the Cholesky example under dmda twice: calibration, then the saved model), each
# step under its own timeout, and writes everything to one summary file. Refuses a software
# adapter (llvmpipe/lavapipe, SwiftShader) unless --allow-software, so that no figure is
# mislabelled. --quick runs the benchmarks at small sizes (for software adapters).
# Steps (for --only): tests engine linalg neuro remote cholesky examples.
set -uo pipefail

BUNDLE="$(cd "$(dirname "$0")" && pwd)"
ALLOW_SOFTWARE=0
QUICK=0
SUMMARY="$PWD/gpu-bundle-summary.txt"
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --allow-software) ALLOW_SOFTWARE=1 ;;
        --quick) QUICK=1 ;;
        --summary) SUMMARY="$2"; shift ;;
        --only) ONLY=",$2,"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$SUMMARY" in /*) ;; *) SUMMARY="$PWD/$SUMMARY" ;; esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/hetflow-bundle.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Examples and test suites may share a name (data_movement): separate folders.
mkdir -p "$WORK/tests"
for f in "$BUNDLE"/bin/*.gz; do
    name="$(basename "$f" .gz)"
    gzip -dc "$f" > "$WORK/$name" && chmod +x "$WORK/$name"
done
for f in "$BUNDLE"/tests/*.gz; do
    name="$(basename "$f" .gz)"
    gzip -dc "$f" > "$WORK/tests/$name" && chmod +x "$WORK/tests/$name"
done

# The Vulkan loader travels with the bundle; the driver's ICD comes from the machine. A GPU
# driver installed without its Vulkan manifest (common on compute-only installs) still ships
# the ICD library: write a manifest for it.
export LD_LIBRARY_PATH="$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
have_icd=0
for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    ls "$d"/*.json >/dev/null 2>&1 && have_icd=1
done
if [ "$have_icd" = 0 ] && [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    nv=""
    for lib in libGLX_nvidia.so.0 libnvidia-vulkan-producer.so; do
        if ldconfig -p 2>/dev/null | grep -q "$lib"; then nv="$lib"; break; fi
    done
    if [ -n "$nv" ]; then
        printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
            "$nv" > "$WORK/nvidia_icd.json"
        export VK_DRIVER_FILES="$WORK/nvidia_icd.json" VK_ICD_FILENAMES="$WORK/nvidia_icd.json"
    fi
fi
# The runtime needs no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$WORK}"
export HETFLOW_TEST_DATA="$BUNDLE/data"
# The differential test's seeds per policy (each seed is a 10 000-task DAG).
if [ "$QUICK" = 1 ]; then
    export HETFLOW_DIFF_SEEDS="${HETFLOW_DIFF_SEEDS:-2}"
else
    export HETFLOW_DIFF_SEEDS="${HETFLOW_DIFF_SEEDS:-10}"
fi
cd "$WORK" || exit 1

: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
FAILED=0
# step NAME TIMEOUT_S CMD...: runs CMD under its timeout, its output into the summary.
step() {
    local name="$1" limit="$2"
    shift 2
    local start end rc
    start=$(date +%s)
    echo "=== $name (timeout ${limit}s): $*" >> "$SUMMARY"
    timeout --kill-after=10 "$limit" "$@" > "$WORK/out.txt" 2>&1
    rc=$?
    end=$(date +%s)
    cat "$WORK/out.txt" >> "$SUMMARY"
    local status=ok
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="TIMED OUT"
    [ "$rc" -ne 0 ] && [ "$status" = ok ] && status="FAILED (exit $rc)"
    [ "$status" = ok ] || FAILED=$((FAILED + 1))
    local tail_line
    tail_line=$(grep -E '^test result:' "$WORK/out.txt" | tail -n 1)
    say "$(printf '%-28s %-18s %4ss  %s' "$name" "$status" "$((end - start))" "$tail_line")"
    return 0
}
wanted() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }

say "hetflow GPU bundle run, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -n)"
sed 's/^/  /' "$BUNDLE/MANIFEST" | tee -a "$SUMMARY"

# 1. The adapter.
./hetflow info > "$WORK/info.txt" 2>&1
tee -a "$SUMMARY" < "$WORK/info.txt"
if ! grep -q '^gpu0' "$WORK/info.txt"; then
    say "no GPU adapter found (driver, Vulkan ICD and loader: see README, 'GPU bundle')"
    exit 1
fi
if grep -qiE 'llvmpipe|lavapipe|swiftshader|softpipe|type=Cpu' "$WORK/info.txt"; then
    if [ "$ALLOW_SOFTWARE" = 0 ]; then
        say "refusing a software adapter: its figures are not a GPU's (pass --allow-software to run anyway)"
        exit 1
    fi
    say "NOTE: software adapter; every GPU figure below is the CPU emulating a GPU"
fi

# 2. The GPU test suites, one binary at a time.
if wanted tests; then
    for t in "$BUNDLE"/tests/*.gz; do
        name="$(basename "$t" .gz)"
        HETFLOW_REQUIRE_GPU=1 step "test $name" 300 "./tests/$name" --test-threads=2
    done
fi

# 3. Benchmarks.
if [ "$QUICK" = 1 ]; then
    LINALG=(--linalg 1024 --tile 256)
    NEURO_BIG=(--neuro-sizes 10000 --neuro-steps 100)
    NEURO_HUGE=(--neuro-sizes 100000 --neuro-sparse-p 0.0001 --neuro-steps 20)
    CHOL=(1024 256)
else
    LINALG=(--linalg 4096 --tile 512)
    NEURO_BIG=(--neuro-sizes 100000)
    NEURO_HUGE=(--neuro-sizes 1000000 --neuro-sparse-p 0.0001 --neuro-steps 200)
    CHOL=(4096 512)
fi
wanted engine && step "bench engine" 240 ./hetflow bench
wanted linalg && step "bench linalg" 300 ./hetflow bench "${LINALG[@]}" --svg "$WORK/bench-linalg.svg"
if wanted neuro; then
    step "bench neuro (100k)" 240 ./hetflow bench neuro --neuro-gpu-only "${NEURO_BIG[@]}" --neuro-svg "$WORK/n1.svg"
    step "bench neuro (1M)" 240 ./hetflow bench neuro --neuro-gpu-only "${NEURO_HUGE[@]}" --neuro-svg "$WORK/n2.svg"
fi
wanted remote && step "bench remote" 180 ./hetflow bench remote
if wanted cholesky; then
    step "cholesky dmda (calibrate)" 300 ./cholesky "${CHOL[@]}" dmda --model "$WORK/dmda-model.json"
    step "cholesky dmda (model)" 300 ./cholesky "${CHOL[@]}" dmda --model "$WORK/dmda-model.json"
    step "cholesky cpu" 300 ./cholesky "${CHOL[@]}" cpu
fi
wanted examples && step "quickstart" 120 ./quickstart
wanted examples && step "data_movement" 120 ./data_movement
cp "$WORK"/*.svg "$(dirname "$SUMMARY")/" 2>/dev/null

say "steps failed: $FAILED"
say "summary: $SUMMARY"
[ "$FAILED" -eq 0 ]
