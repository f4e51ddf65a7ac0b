#!/bin/sh
# Gathers every fact flash-live needs about a board in one pass (nixos-anywhere's get-facts idea).
# Runs as the login user, changes nothing. Prints key=value lines; multi-valued facts repeat a key.
# Usage: sh facts.sh [IMAGE_PATH]   (IMAGE_PATH: local mode, to learn which disk holds the image)
# POSIX sh: must run under busybox ash, dash and bash.
set -u
kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n\r\t' '   ')"; }
have() { command -v "$1" >/dev/null 2>&1; }

kv uid "$(id -u)"
kv user "$(id -un 2>/dev/null || echo '?')"
if [ "$(id -u)" = 0 ]; then kv sudo root
elif ! have sudo; then kv sudo missing
elif sudo -n true >/dev/null 2>&1; then kv sudo ok
else kv sudo password
fi
kv arch "$(uname -m)"
kv cpus "$(grep -c '^processor' /proc/cpuinfo 2>/dev/null || echo 1)"
kv kernel "$(uname -r)"
kv hostname "$(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)"
kv boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
if [ -r /proc/device-tree/model ]; then kv model "$(tr -d '\000' < /proc/device-tree/model)"
elif [ -r /sys/class/dmi/id/product_name ]; then kv model "$(cat /sys/class/dmi/id/sys_vendor 2>/dev/null) $(cat /sys/class/dmi/id/product_name)"
fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  kv os "$( . /etc/os-release 2>/dev/null; printf '%s' "${PRETTY_NAME:-${NAME:-unknown}}")"
fi
[ -r /etc/flash-live-test-board ] && kv test_board "$(cat /etc/flash-live-test-board)"
kv cmdline "$(cat /proc/cmdline 2>/dev/null)"

while read -r key val _; do
  case "$key" in MemTotal: | MemAvailable:) kv "mem_${key%:}" "$val" ;; esac
done < /proc/meminfo

# /dev/shm: mount type and room (df -P: POSIX columns, 1024-byte blocks).
kv shm_avail_kib "$(df -P /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')"
kv shm_fstype "$(awk '$2 == "/dev/shm" {print $3}' /proc/mounts | tail -n 1)"

# Every mount: majmin, mount point, fs type, source, options. mountinfo gives the device number even
# for /dev/root indirections; the root line is the last one whose mount point is "/".
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break;
       printf "mount=%s %s %s %s %s\n", $3, $5, $(i+1), $(i+2), $6 }' /proc/self/mountinfo

# Block devices: name, maj:min, size (512-byte sectors), partition number, start, parent, ro, removable, dm/md.
for dev in /sys/class/block/*; do
  [ -e "$dev/dev" ] || continue
  name=${dev##*/}
  real=$(readlink -f "$dev")
  part=""; start=""; parent=""
  if [ -r "$real/partition" ]; then
    part=$(cat "$real/partition"); start=$(cat "$real/start" 2>/dev/null)
    parent=$(basename "$(dirname "$real")")
  fi
  kind=disk
  [ -n "$part" ] && kind=part
  [ -d "$real/dm" ] && kind=dm
  [ -d "$real/md" ] && kind=md
  case "$name" in loop*) kind=loop ;; ram*) kind=ram ;; zram*) kind=zram ;; esac
  model=$(tr -s " " 2>/dev/null < "$real/device/model")
  printf 'block=%s %s %s %s %s %s %s %s %s %s\n' "$name" "$(cat "$dev/dev")" "$(cat "$real/size")" \
    "$kind" "${part:--}" "${start:--}" "${parent:--}" "$(cat "$real/ro" 2>/dev/null || echo 0)" \
    "$(cat "$real/removable" 2>/dev/null || echo 0)" "$(printf '%s' "${model:--}" | tr ' ' '_')"
done

while read -r file type _; do
  [ "$file" = Filename ] || kv swap "$file $type"
done < /proc/swaps

for t in busybox sudo systemctl journalctl xz xzcat zstd gzip zcat bzcat lzop sha256sum md5sum fsfreeze blockdev findmnt lsblk setsid dd; do
  have "$t" && kv tool "$t"
done
if [ -d /run/systemd/system ] && have systemctl; then
  kv init systemd
  systemctl list-units --type=service --type=socket --state=active --no-legend --plain 2>/dev/null |
    awk '{print "unit=" $1}'
else
  kv init "$(readlink /proc/1/exe 2>/dev/null || echo unknown)"
fi

if [ "$#" -ge 1 ] && [ -n "$1" ]; then
  # Local mode: which device holds the image file (decimal st_dev; the caller splits major:minor).
  kv image_dev "$(stat -L -c %d "$1" 2>/dev/null || echo -)"
fi
kv end 1
