#!/usr/bin/env bash
# The full soak: 10,000 signed events at 50 connections through the real worker, per
# delivery mode (or only the one named: `direct` or `queue`), with an origin that fails a
# fifth of first attempts (500, 429 + Retry-After, reset, hang) and goes down for a while,
# and a sender that retries like Stripe. Prints throughput, p50 and p99 latency per request,
# and the lost and doubled counts (both must be 0). The test command runs 1,000 per mode.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in ""|direct|queue) ;; *) echo "usage: scripts/soak.sh [direct|queue]" >&2; exit 2 ;; esac
scripts/setup.sh
source scripts/env.sh
scripts/build.sh
if [ -n "$mode" ]; then export STRIPE_EDGE_SOAK_MODE="$mode"; fi
STRIPE_EDGE_SOAK_EVENTS="${STRIPE_EDGE_SOAK_EVENTS:-10000}" \
STRIPE_EDGE_SOAK_CONCURRENCY="${STRIPE_EDGE_SOAK_CONCURRENCY:-50}" \
  cargo test --locked --test soak -- --nocapture --test-threads 1
