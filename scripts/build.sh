#!/usr/bin/env bash
# Builds the release worker into build/ (the `[build] command` of wrangler.toml, so
# `wrangler dev` and `wrangler deploy` run it too). worker-build keeps the wasm names
# section for readable stack traces; the worker never panics on request data and logs its
# own errors, so the section (about 100 KB raw, 26 KB gzipped) is dropped to keep the
# bundle small.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
worker-build --release
# The same feature set worker-build passes to wasm-opt, so nothing newer is emitted.
wasm-opt build/index_bg.wasm -o build/index_bg.wasm --strip-debug \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
# The entry module wrangler runs (wrangler.toml `main`): plain handlers in place of
# worker-build's per-request class and Proxies (see js/entry.mjs).
cp js/entry.mjs build/worker/entry.mjs
