#!/usr/bin/env bash
# npm run bench: flash-live's benchmark on QEMU boards (bench/README.md). Not part of npm test.
#   npm run bench -- [--image L2|B] [--cases ...] [--extra]
# Installs what it needs (scripts/deps.sh), builds or reuses the cached board images, prints a
# markdown table and appends it to bench/results-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if [[ $(id -u) != 0 ]]; then
  echo "bench: building and booting the board images needs root; run it as root (sudo npm run bench)." >&2
  exit 1
fi
exec node_modules/.bin/bun bench/flash.ts "$@"
