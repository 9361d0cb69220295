#!/usr/bin/env bash
# Builds the page (wasm32, Debian's rustc-web) and serves it on http://localhost:8000/ .
# Open it in a browser with WebGPU (Chromium: --enable-unsafe-webgpu on Linux).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
/usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown --lib
wasm-bindgen --target web --out-dir www/pkg \
    target/wasm32-unknown-unknown/release/hetflow_web.wasm
echo "serving http://localhost:${PORT:-8000}/"
exec python3 -m http.server "${PORT:-8000}" --directory www
