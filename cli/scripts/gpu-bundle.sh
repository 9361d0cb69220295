#!/usr/bin/env bash
# Builds a self-contained GPU test and benchmark bundle: stripped release binaries (the GPU
# test suites, the `hetflow` CLI, the examples that use a GPU), compressed, with the Vulkan
# loader and a runner (`run.sh`). Copy the folder to any x86-64 Linux machine with a GPU
# driver and run `./run.sh`: no Rust toolchain, package registry or network needed there.
#
#   cli/scripts/gpu-bundle.sh [OUT_DIR]        (default: target/gpu-bundle)
#
# The bundle must stay within 60 MiB (checked at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT="${1:-target/gpu-bundle}"
LIMIT_MIB=60
# The integration tests that run GPU work (each binary runs alone on the target, so the
# device-destroying test cannot disturb the others).
TESTS=(gpu gpu_failures gpu_device_lost coherence_model differential reduce slices
       data_movement linalg neuro_gpu remote_collectives policies stealing typed_args)
EXAMPLES=(quickstart cholesky data_movement)

for tool in strip gzip; do
    command -v "$tool" >/dev/null || { echo "gpu-bundle: '$tool' is needed" >&2; exit 1; }
done
LOADER=""
for cand in /usr/lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib64/libvulkan.so.1 /usr/lib/libvulkan.so.1; do
    if [ -e "$cand" ]; then LOADER="$cand"; break; fi
done
if [ -z "$LOADER" ]; then
    echo "gpu-bundle: the Vulkan loader (libvulkan.so.1) is not installed here; apt-get install libvulkan1" >&2
    exit 1
fi

echo "gpu-bundle: building release binaries ..."
cargo build --release --bin hetflow $(printf -- '--example %s ' "${EXAMPLES[@]}")
# The test executables, from cargo's own report (their file names carry a hash).
TEST_ARGS=$(printf -- '--test %s ' "${TESTS[@]}")
# shellcheck disable=SC2086
EXES=$(cargo test --release $TEST_ARGS --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | sed 's/"executable":"\(.*\)"/\1/')

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/tests" "$OUT/lib" "$OUT/data"
pack() { # pack SRC NAME: strip a copy and gzip it into the bundle
    local tmp
    tmp=$(mktemp)
    cp "$1" "$tmp"
    strip "$tmp"
    gzip -9 -c "$tmp" > "$2.gz"
    rm -f "$tmp"
}
pack target/release/hetflow "$OUT/bin/hetflow"
for ex in "${EXAMPLES[@]}"; do
    pack "target/release/examples/$ex" "$OUT/bin/$ex"
done
for t in "${TESTS[@]}"; do
    exe=$(echo "$EXES" | grep "/deps/$t-[0-9a-f]*$" | head -n 1 || true)
    if [ -z "$exe" ]; then
        echo "gpu-bundle: no executable for test '$t'" >&2
        exit 1
    fi
    pack "$exe" "$OUT/tests/$t"
done
cp -L "$LOADER" "$OUT/lib/libvulkan.so.1"
cp -r tests/data/. "$OUT/data/"
cp cli/scripts/gpu-bundle-run.sh "$OUT/run.sh"
chmod +x "$OUT/run.sh"

GLIBC=$(objdump -T target/release/hetflow 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 || true)
{
    echo "hetflow GPU bundle"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(rustc --version)"
    echo "needs: x86-64 Linux with ${GLIBC:-glibc} or newer, a GPU driver with Vulkan (its ICD)"
    echo "tests: ${TESTS[*]}"
    echo "examples: ${EXAMPLES[*]}"
} > "$OUT/MANIFEST"

SIZE_KIB=$(du -sk "$OUT" | cut -f1)
echo "gpu-bundle: $OUT is $((SIZE_KIB / 1024)) MiB ($SIZE_KIB KiB)"
if [ "$SIZE_KIB" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "gpu-bundle: over the ${LIMIT_MIB} MiB limit" >&2
    exit 1
fi
echo "gpu-bundle: run it with $OUT/run.sh (--allow-software on a software adapter such as lavapipe)"
