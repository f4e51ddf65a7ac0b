#!/usr/bin/env bash
# The demo (README's first command): builds (or reuses) disposable QEMU boards, boots board A,
# flashes it over SSH with flash-live and a demo config, and shows it coming back running B-cloud
# with the configured hostname and user. Nothing outside the QEMU board is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if [[ $(id -u) != 0 ]]; then
  echo "demo: building the board images needs root (debootstrap, mkfs); run it as root (sudo npm run demo)." >&2
  exit 1
fi
exec node_modules/.bin/bun scripts/demo.ts "$@"
