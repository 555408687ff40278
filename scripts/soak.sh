#!/usr/bin/env bash
# The full soak: 10,000 signed events at 50 connections through the real worker, with an
# origin that fails a fifth of first attempts and a sender that retries like Stripe. Prints
# throughput, p50 and p99 latency per request, and the lost and doubled counts (both must
# be 0). The test command runs the same test with 1,000 events.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
scripts/build.sh
STRIPE_EDGE_SOAK_EVENTS="${STRIPE_EDGE_SOAK_EVENTS:-10000}" \
STRIPE_EDGE_SOAK_CONCURRENCY="${STRIPE_EDGE_SOAK_CONCURRENCY:-50}" \
  cargo test --locked --test soak -- --nocapture
