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

# Every test file in exactly one group: group A takes these, group B everything else (the other e2e
# files and the unit tests). binary.test.ts and local.test.ts both build dist/: one group, one at a time.
# (CI-style run of 2026-11-29 15:34, the arm64 board cases skipped as under CI: A 855 s, B 902 s;
# tests/unit/target/ssh.test.ts, 23 s, then moved to A.)
group_a=(tests/e2e/customize.test.ts tests/e2e/local.test.ts tests/e2e/binary.test.ts tests/e2e/arm64.test.ts tests/e2e/check.test.ts tests/unit/target/ssh.test.ts)
mapfile -t all < <(find tests -name '*.test.ts' | sort)
group_b=()
for f in "${all[@]}"; do
  [[ " ${group_a[*]} " == *" $f "* ]] || group_b+=("$f")
done
# Images first, once, so the two groups do not both wait on the same build.
if ! "$BUN" scripts/build-boards.ts; then
  echo "the board images could not be built (above): no test ran"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== group A: ${group_a[*]}; group B (the other ${#group_b[@]} files) runs beside it, its output follows at the end =="
( "$BUN" test --timeout 1800000 "${group_b[@]}" > "$dir/b.log" 2>&1; echo $? > "$dir/b.rc" ) &
b_pid=$!
"$BUN" test --timeout 1800000 "${group_a[@]}" 2>&1 | tee "$dir/a.log"
a_rc=${PIPESTATUS[0]}
wait "$b_pid"
b_rc=$(cat "$dir/b.rc" 2>/dev/null || echo 1)
echo "== group B =="
cat "$dir/b.log"

passed=0
failed=0
for g in a b; do
  p=$(count "$dir/$g.log" pass)
  f=$(count "$dir/$g.log" fail)
  rc=$([[ $g == a ]] && echo "$a_rc" || echo "$b_rc")
  if [[ $rc != 0 && $f == 0 ]]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "${passed} passed, ${failed} failed"
[[ $a_rc == 0 && $b_rc == 0 ]]
