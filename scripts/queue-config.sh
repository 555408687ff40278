#!/usr/bin/env bash
# Prints wrangler.toml with its queue-mode blocks switched on (the lines between
# `# queue-mode:begin` and `# queue-mode:end`, uncommented). `scripts/dev.sh --queue` and
# the tests serve this, so the blocks users uncomment are the ones tested.
set -euo pipefail
cd "$(dirname "$0")/.."
sed -e '/^# queue-mode:begin$/,/^# queue-mode:end$/{/^# queue-mode:/d;s/^# \{0,1\}//;}' wrangler.toml
