#!/usr/bin/env bash
# Prints wrangler.toml with queue mode switched on: the lines between `# queue-mode:begin`
# and `# queue-mode:end` uncommented and `DELIVERY = "queue"`. `scripts/dev.sh --queue`,
# the tests and the deploy dry run use it, so the blocks users uncomment are the ones tested.
set -euo pipefail
cd "$(dirname "$0")/.."
sed -e '/^# queue-mode:begin$/,/^# queue-mode:end$/{/^# queue-mode:/d;s/^# \{0,1\}//;}' \
  -e 's/^DELIVERY = "direct"$/DELIVERY = "queue"/' wrangler.toml
