#!/usr/bin/env bash
# The whole test suite: unit tests and the e2e cases that flash QEMU boards.
# Installs what it needs (scripts/deps.sh), builds or reuses the cached board images, and ends with
# one line "N passed, N failed" summed from bun test's own counts.
#
# Without arguments the suite runs as two workers side by side, each running one bun test process at
# a time (a TCG board keeps one core busy; this machine has two). They take the test files from one
# queue, longest first (times from CI runs), so they end together whether the images were cached or
# not. On a fresh machine the first worker starts as soon as the light images are built, with the
# file that needs nothing else, while the rest of the images are built. With arguments (files,
# -t PATTERN, ...) it is one plain `bun test` run.
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

# The queue: one bun test process per line, longest first. local.test.ts and binary.test.ts share
# a line: both build dist/ (scripts/build.sh), which must not change under the other's feet.
# FIRST (L, L2 and L-gpt only) goes to the worker that starts before the other images exist.
FIRST=tests/e2e/flash.test.ts
queue=(
  tests/e2e/customize.test.ts
  "tests/e2e/local.test.ts tests/e2e/binary.test.ts"
  tests/e2e/faults.test.ts
  tests/e2e/check.test.ts
  tests/e2e/harness.test.ts
  UNIT
  tests/e2e/arm64.test.ts
)
mapfile -t all < <(find tests -name '*.test.ts' | sort)
listed=" $FIRST ${queue[*]} "
unit=()
rest=()
for f in "${all[@]}"; do
  if [[ $f == tests/unit/* ]]; then unit+=("$f")
  elif [[ $listed != *" $f "* ]]; then rest+=("$f"); fi
done
: > "$dir/queue"
for item in "${queue[@]}" "${rest[@]}"; do
  if [[ $item == UNIT ]]; then echo "${unit[*]}"; else echo "$item"; fi >> "$dir/queue"
done

take() { # the queue's next line (empty when it is empty or the images failed), under a lock: two workers take from it
  until [[ -e $dir/built ]]; do
    [[ -e $dir/build-failed ]] && return 0
    sleep 1
  done
  (
    flock 9
    head -n 1 "$dir/queue"
    sed -i 1d "$dir/queue"
  ) 9> "$dir/queue.lock"
}
worker() { # NAME [ITEM]: runs ITEM, then queue lines until none is left; output lines start with [NAME]
  local name=$1 item=${2:-} log
  while :; do
    [[ -n $item ]] || item=$(take)
    [[ -n $item ]] || return 0
    log=$(mktemp "$dir/run-XXXX.log")
    if [[ ${#item} -gt 100 ]]; then echo "[$name] == ${item:0:100}... =="; else echo "[$name] == $item =="; fi
    # An item is a list of files without spaces.
    # shellcheck disable=SC2086
    "$BUN" test --timeout 1800000 $item 2>&1 | tee "$log" | sed -u "s/^/[$name] /"
    echo "${PIPESTATUS[0]}" > "$log.rc"
    item=
  done
}

# Images first (each worker would otherwise wait on the other's build); the light ones come first.
rm -f "$dir/light"
"$BUN" scripts/build-boards.ts --light-ready "$dir/light" &
build=$!
while [[ ! -e $dir/light ]] && kill -0 "$build" 2> /dev/null; do sleep 1; done
worker_b=
if [[ -e $dir/light ]]; then
  echo "== the light images are ready: worker 2 starts with $FIRST while the others are built =="
  worker 2 "$FIRST" &
  worker_b=$!
fi
wait "$build"
build_rc=$?
if [[ $build_rc == 0 ]]; then touch "$dir/built"; else touch "$dir/build-failed"; fi
if [[ $build_rc == 0 ]]; then
  [[ -n $worker_b ]] || { worker 2 "$FIRST" & worker_b=$!; }
  worker 1
else
  echo "the board images could not be built (above): the queue did not run"
fi
[[ -z $worker_b ]] || wait "$worker_b"

passed=0
failed=0
for log in "$dir"/run-*.log; do
  [[ -e $log ]] || continue
  p=$(count "$log" pass)
  f=$(count "$log" fail)
  if [[ $(cat "$log.rc" 2>/dev/null || echo 1) != 0 && $f == 0 ]]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
done
if [[ $build_rc != 0 ]]; then failed=$((failed + 1)); fi
# Every line of the queue ran (a worker that died would leave some).
left=$(grep -c . "$dir/queue" || true)
if [[ $build_rc == 0 && $left != 0 ]]; then
  echo "not run: $(tr '\n' ' ' < "$dir/queue")"
  failed=$((failed + 1))
fi
echo "${passed} passed, ${failed} failed"
[[ $failed == 0 ]]
