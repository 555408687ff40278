#!/usr/bin/env bash
# Runs every test: formatting and lints (native and wasm32), the unit tests, the wasm
# bundle that would ship (`wrangler deploy --dry-run`), and the end-to-end tests against
# that bundle under real `wrangler dev`. Installs whatever is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --lib --target wasm32-unknown-unknown --locked -- -D warnings

echo "==> building the worker (wasm32, release) and checking the deploy bundle"
worker-build --release
wrangler deploy --dry-run --outdir target/deploy-dry-run

echo "==> unit and end-to-end tests"
cargo test --locked
