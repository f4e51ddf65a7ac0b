#!/usr/bin/env bash
# npm run build: single-file flash-live binaries for linux-x64 and linux-arm64 in dist/, each with the
# five pinned static busyboxes embedded (src/assets/_embedded.ts, written by fetch-busybox.ts).
#   bash scripts/build.sh [x64|arm64 ...]     default: both
# FLASH_LIVE_BUILD_ENTRY / FLASH_LIVE_BUILD_OUT (default src/cli.ts / dist/flash-live) compile another
# entry with the same flags (tests/e2e/binary.test.ts builds a probe of the embedded assets this way).
set -euo pipefail
cd "$(dirname "$0")/.."

BUN=node_modules/.bin/bun
want=$(node -p 'require("./package.json").devDependencies.bun')
have=$("$BUN" --version)
# Cross-compiling embeds the target's runtime of exactly this version: a drifted Bun would mix them.
if [[ $have != "$want" ]]; then
  echo "build: Bun $have is installed but package.json pins $want; run npm ci" >&2
  exit 1
fi

"$BUN" scripts/fetch-busybox.ts

entry=${FLASH_LIVE_BUILD_ENTRY:-src/cli.ts}
prefix=${FLASH_LIVE_BUILD_OUT:-dist/flash-live}
targets=("$@")
((${#targets[@]})) || targets=(x64 arm64)

# --no-compile-autoload-*: the binary must not pick up .env / bunfig.toml from the user's directory.
# --external: ssh2's optional native parts (cpu-features, sshcrypto.node) are built for the build
#   host only; left out, ssh2 takes its JS/node:crypto path on every target (FIELD-NOTES §3).
# --bytecode needs --format=esm here: plain --bytecode breaks on import.meta.
# Not --minify-identifiers (so not --minify): renamed identifiers break the mbr library under
# partitioninfo ("Not implemented" reading any partition table), i.e. customize and local flashes.
flags=(
  --compile --minify-syntax --minify-whitespace --bytecode --format=esm
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig
  --external cpu-features --external '*.node'
)

# Bun inlines process.env.NODE_ENV at build time: a build started from `bun test` (NODE_ENV=test)
# made consola silent below warnings in the binary. Release builds are production builds.
export NODE_ENV=production
mkdir -p "$(dirname "$prefix")"
for target in "${targets[@]}"; do
  out="$prefix-linux-$target"
  case $target in
    # baseline: the x64 binary also runs on boards without AVX2 (older Atoms/Celerons, QEMU's
    # default CPU); the AVX2 build dies there with "invalid opcode" (seen on a QEMU board).
    x64) extra=(); rt=bun-linux-x64-baseline ;;
    arm64)
      extra=(); rt=bun-linux-arm64
      # Bun fetches the arm64 runtime itself from a fixed npm registry address; where that is blocked,
      # FLASH_LIVE_BUN_ARM64=path/to/bun (from `npm pack @oven/bun-linux-aarch64@VERSION`) is used instead.
      if [[ -n ${FLASH_LIVE_BUN_ARM64:-} ]]; then extra=(--compile-executable-path="$FLASH_LIVE_BUN_ARM64"); fi
      ;;
    *) echo "build: unknown target $target (x64 or arm64)" >&2; exit 2 ;;
  esac
  rm -f "$out"
  if ! "$BUN" build "$entry" "${flags[@]}" --target="$rt" "${extra[@]}" --outfile "$out" >/dev/null; then
    if [[ $target != arm64 || -n ${FLASH_LIVE_BUN_ARM64:-} ]]; then exit 1; fi
    echo "build: Bun could not fetch its arm64 runtime; trying npm pack @oven/bun-linux-aarch64@$want" >&2
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/flash-live/bun-linux-aarch64-$want
    if [[ ! -x $cache/package/bin/bun ]]; then
      mkdir -p "$cache"
      tarball=$(cd "$cache" && npm pack --silent "@oven/bun-linux-aarch64@$want")
      tar -xzf "$cache/$tarball" -C "$cache"
    fi
    "$BUN" build "$entry" "${flags[@]}" --target=bun-linux-arm64 --compile-executable-path="$cache/package/bin/bun" --outfile "$out" >/dev/null
  fi
  echo "built $out ($(du -m "$out" | cut -f1) MB)"
done
