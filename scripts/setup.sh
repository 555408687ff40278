#!/usr/bin/env bash
# Installs whatever is missing to build, serve and test stripe-edge, printing only progress. Safe to run again: each step checks first. Source scripts/env.sh afterwards
# (dev.sh and test.sh do) to point worker-build at the tools installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

step() { printf '==> %s\n' "$*"; }

# The wasm-bindgen CLI must be exactly the version of the wasm-bindgen library in Cargo.lock.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
WORKER_BUILD_VERSION=$(awk '/^name = "worker"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# cargo install: try the crate's own lockfile first, and fall back to fresh resolution when
# the registry no longer serves a version it pins.
cargo_install() {
  local crate=$1 version=$2 binary=$3
  if [ -x "$CARGO_HOME/bin/$binary" ] && "$CARGO_HOME/bin/$binary" --version 2>/dev/null | grep -q "$version"; then
    return
  fi
  step "installing $crate $version (cached in $CARGO_HOME/bin after the first time)"
  cargo install "$crate" --version "$version" --locked --force \
    || cargo install "$crate" --version "$version" --force
}
cargo_install worker-build "$WORKER_BUILD_VERSION" worker-build
cargo_install wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen

# wrangler, workerd and binaryen (wasm-opt), pinned in package.json and package-lock.json.
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing the npm parts (wrangler, workerd, binaryen)"
  npm ci --no-audit --no-fund
fi

# The conformance tests sign with Stripe's own Python library, kept inside the project.
if ! PYTHONPATH=.tools/python python3 -c 'import stripe' 2>/dev/null; then
  step "installing the stripe Python package (tests/requirements.txt) into .tools/python"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target .tools/python -r tests/requirements.txt
fi
step "tools ready"
