#!/usr/bin/env bash
# The performance benchmark of issue 5 (not a test; takes a few minutes). Builds the release
# worker, then on loopback only: native CPU per event (bench/native), the same inside wasm
# under workerd (bench/wasm-core), and load against
# (a) stripe-edge, (b) a reference JavaScript worker using the official `stripe` package and
# (c) an empty worker, all under the same local workerd. Writes BENCHMARKS.md and
# bench/throughput.svg; raw results go to bench/out/.
#
#   BENCH_SCALE=0.2 scripts/bench.sh     # fewer requests per run, for a quick look
#
# Sizes are 1 KiB, 10 KiB, 100 KiB and 1 MiB (bench/payloads.mjs); BENCH_CONCURRENCY (16)
# and BENCH_RUN_SECONDS_MAX (20) tune the load. To judge one change, bench/compare.mjs runs
# several builds side by side and bench/profile.mjs takes a CPU profile (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

OUT=bench/out
rm -rf "$OUT"
mkdir -p "$OUT"
started=$(date +%s)
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building the worker (wasm32, release)"
scripts/build.sh

echo "==> events at 1 KiB, 10 KiB, 100 KiB and 1 MiB"
node bench/payloads.mjs "$OUT/payloads"

echo "==> native CPU per event (bench/native)"
cargo build --release --quiet --manifest-path bench/native/Cargo.toml
bench/native/target/release/stripe-edge-bench "$OUT/payloads" > "$OUT/native.json"

echo "==> CPU per event inside wasm, under workerd (bench/wasm-core)"
# Its Cargo.lock pins the wasm-bindgen of the root crate's lockfile, which is the
# wasm-bindgen-cli scripts/setup.sh installs; keep the two in step.
(cd bench/wasm-core && worker-build --release)
node bench/wasm-core.mjs "$OUT/payloads" "$OUT/wasm.json"

echo "==> load: stripe-edge, reference JS and empty worker (loopback only)"
node bench/run.mjs "$OUT/payloads" "$OUT/load.json"

cat > "$OUT/meta.json" <<JSON
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "seconds": $(( $(date +%s) - started )),
  "loadavg_start": "$loadavg_start",
  "wrangler_version": "$(wrangler --version 2>/dev/null | tail -1)",
  "workerd_version": "$(node_modules/@cloudflare/workerd-linux-64/bin/workerd --version 2>/dev/null || echo unknown)",
  "wasm_compile_ms": null
}
JSON

echo "==> report"
node bench/report.mjs "$OUT"
