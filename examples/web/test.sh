#!/usr/bin/env bash
# The browser tests: builds hetflow for wasm32 with Debian's rustc-web (the rustup toolchain
# has no wasm32 std) and runs tests/browser.rs in headless Chromium on WebGPU.
# Needs: apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium
# chromium-driver; cargo install wasm-bindgen-cli --version 0.2.130 (see README).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-300}
exec /usr/bin/cargo test -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown "$@"
