#!/usr/bin/env bash
# Installs whatever is missing, then serves the worker at http://127.0.0.1:8787 under
# `wrangler dev` with a local KV namespace. `--queue` serves queue mode (local queues);
# other arguments go to `wrangler dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

if [ ! -f .dev.vars ]; then
  cp .dev.vars.example .dev.vars
  echo "==> created .dev.vars from .dev.vars.example (a local-only signing secret)"
fi
# Build the offline sender now so `cargo run --bin stripe-edge -- trigger ...` is instant.
cargo build --quiet --bin stripe-edge
echo "==> serving the worker (default http://127.0.0.1:8787/webhook); send events with: cargo run --bin stripe-edge -- trigger --all"
# 8787 unless the caller passes its own --port.
port_args=(--port 8787)
mode_args=()
args=()
for arg in "$@"; do
  case "$arg" in
    --port|--port=*) port_args=(); args+=("$arg") ;;
    --queue)
      # Generated beside wrangler.toml so its relative paths hold; ignored by git.
      scripts/queue-config.sh > wrangler.queue.toml
      mode_args=(--config wrangler.queue.toml)
      echo "==> queue mode: events are kept, enqueued and delivered by the queue consumer" ;;
    *) args+=("$arg") ;;
  esac
done
exec wrangler dev --ip 127.0.0.1 "${port_args[@]}" "${mode_args[@]}" "${args[@]}"
