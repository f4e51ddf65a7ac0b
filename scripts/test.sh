#!/usr/bin/env bash
# The whole test suite: unit tests and the e2e cases that flash QEMU boards.
# Installs what it needs (scripts/deps.sh), builds or reuses the cached board images, and ends with
# one line "N passed, N failed" summed from bun test's own counts.
#
# Without arguments the suite runs as two bun test processes side by side, each flashing one board at
# a time (a TCG board keeps one core busy; this machine has two): the e2e files are split into two
# groups of about equal length (times from CI runs). With arguments (files, -t PATTERN, ...) it is
# one plain `bun test` run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash scripts/deps.sh || exit 1

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
BUN=node_modules/.bin/bun
count() { # LOG pass|fail: the summary's count, 0 when there is none
  grep -Eo "^ *[0-9]+ $2\$" "$1" | tail -n 1 | grep -Eo '[0-9]+' || echo 0
}

if [[ $# -gt 0 ]]; then
  "$BUN" test --timeout 1800000 "$@" 2>&1 | tee "$dir/all.log"
  rc=${PIPESTATUS[0]}
  passed=$(count "$dir/all.log" pass)
  failed=$(count "$dir/all.log" fail)
  if [[ $rc != 0 && $failed == 0 ]]; then failed=1; fi # a crash before the summary is a failure
  echo "${passed} passed, ${failed} failed"
  exit "$rc"
fi

# Every test file in exactly one group; the groups run side by side, one bun test process each. The
# first groups take these files; the last takes everything else (the other e2e files and the unit
# tests). binary.test.ts and local.test.ts both build dist/: one group, one at a time.
# Balanced by the times of CI-style runs (2026-11-29 17:57: customize 549 s, flash 537, faults 221,
# local 204, check 128, harness 95, binary 42, the unit tests about 130 together).
groups=(
  "tests/e2e/customize.test.ts tests/e2e/check.test.ts tests/unit/target/ssh.test.ts"
  "tests/e2e/flash.test.ts tests/e2e/harness.test.ts"
)
mapfile -t all < <(find tests -name '*.test.ts' | sort)
rest=()
for f in "${all[@]}"; do
  [[ " ${groups[*]} " == *" $f "* ]] || rest+=("$f")
done
groups+=("${rest[*]}")
n=${#groups[@]}
# Images first, once, so the groups do not all wait on the same build.
if ! "$BUN" scripts/build-boards.ts; then
  echo "the board images could not be built (above): no test ran"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== $n groups side by side; group 1's output comes as it runs, the others' at the end =="
for ((i = 1; i < n; i++)); do
  echo "== group $((i + 1)): ${groups[i]}"
  # shellcheck disable=SC2086 # a group is a list of paths without spaces
  ( "$BUN" test --timeout 1800000 ${groups[i]} > "$dir/g$i.log" 2>&1; echo $? > "$dir/g$i.rc" ) &
done
echo "== group 1: ${groups[0]}"
# shellcheck disable=SC2086
"$BUN" test --timeout 1800000 ${groups[0]} 2>&1 | tee "$dir/g0.log"
echo "${PIPESTATUS[0]}" > "$dir/g0.rc"
wait
for ((i = 1; i < n; i++)); do
  echo "== group $((i + 1)) =="
  cat "$dir/g$i.log"
done

passed=0
failed=0
ok=true
for ((i = 0; i < n; i++)); do
  p=$(count "$dir/g$i.log" pass)
  f=$(count "$dir/g$i.log" fail)
  rc=$(cat "$dir/g$i.rc" 2>/dev/null || echo 1)
  if [[ $rc != 0 ]]; then ok=false; fi
  if [[ $rc != 0 && $f == 0 ]]; then f=1; fi # a crash before the summary is a failure
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "${passed} passed, ${failed} failed"
$ok
