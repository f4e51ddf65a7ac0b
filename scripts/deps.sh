#!/usr/bin/env bash
# Installs what flash-live's demo and tests need on a fresh Debian machine with Node.js/npm:
# the npm packages (Bun itself comes from npm), and Debian packages when run as root (else it says
# exactly what to install). Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  qemu-system-x86 qemu-system-arm qemu-utils qemu-user-static   # boards, arm64 binary check
  debootstrap mtools dosfstools fdisk e2fsprogs                 # board images (no loop mounts)
  cpio kmod                                                     # the arm64 board's initramfs and depmod
  busybox-static xz-utils zstd bzip2 gzip                       # image formats
  openssh-client openssh-server                                 # SSH tests against a real sshd
  libc6-arm64-cross                                             # qemu-aarch64 -L for the arm64 binary
  shellcheck wpasupplicant openssl util-linux bmap-tools        # oracles: lint, wpa_passphrase, passwd -6, script(1), bmaptool
  binutils gpg gpgv debian-archive-keyring ca-certificates        # .deb checks, busybox re-pinning
  python3 python3-jsonschema python3-yaml python3-jinja2 python3-configobj python3-requests python3-jsonpatch python3-netifaces  # cloud-init schema oracle
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "deps: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing Debian packages; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# npm packages: reinstall when package-lock.json changed since the last install. A finished install
# is kept outside the repo, next to the board images, keyed by the lock file, Node's version and the
# machine: a fresh clone (CI) copies it in about 3 s instead of `npm ci` (about 20 s here; it also
# compiles ssh2's optional native cpu-features with node-gyp). FLASH_LIVE_NPM_CACHE=0 turns that off.
stamp=node_modules/.flash-live-lock
if [[ ! -x node_modules/.bin/bun ]] || ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
  cache=""
  if [[ ${FLASH_LIVE_NPM_CACHE:-1} != 0 ]]; then
    key=$( { cat package-lock.json; node --version; uname -m; } | sha256sum | cut -c1-16)
    cache=${FLASH_LIVE_BOARD_CACHE:-/var/cache/flash-live-boards}/npm/$key
    mkdir -p "${cache%/*}" 2>/dev/null && [[ -w ${cache%/*} ]] || cache=""
  fi
  if [[ -n $cache && -x $cache/node_modules/.bin/bun && -f $cache/complete ]]; then
    echo "deps: npm packages from $cache" >&2
    rm -rf node_modules
    cp -a "$cache/node_modules" node_modules
  else
    echo "deps: installing npm packages" >&2
    npm ci --no-audit --no-fund --loglevel=error
    if [[ -n $cache ]]; then # an interrupted copy is never used: it becomes $cache only once complete
      find "${cache%/*}" -mindepth 1 -maxdepth 1 -exec rm -rf {} + # older lock files' installs
      tmp=$(mktemp -d "$cache.tmp.XXXXXX")
      if cp -a node_modules "$tmp/node_modules" && touch "$tmp/complete"; then
        mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
      else
        rm -rf "$tmp"
      fi
    fi
  fi
  cp package-lock.json "$stamp"
fi

# Static busybox for every board architecture (Debian's busybox-static, pinned by sha256).
node_modules/.bin/bun scripts/fetch-busybox.ts >&2
