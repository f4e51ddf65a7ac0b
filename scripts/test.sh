#!/usr/bin/env bash
# The whole test suite: unit tests, then the e2e cases that flash QEMU boards.
# Installs what it needs (scripts/deps.sh), builds or reuses the cached board images, and ends with
# one line "N passed, N failed" taken from bun test's own counts.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Unit tests first (fast), then e2e; bun runs the files one after another, so boards never overlap.
node_modules/.bin/bun test --timeout 1800000 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0)
if [[ $rc != 0 && $failed == 0 ]]; then failed=1; fi   # a crash before the summary is a failure
echo "${passed} passed, ${failed} failed"
exit "$rc"
