#!/bin/sh
# Gathers every fact flash-live needs about a board in one pass (nixos-anywhere's get-facts idea).
# Runs as the login user, changes nothing. Prints key=value lines; multi-valued facts repeat a key.
# Usage: sh facts.sh [IMAGE_PATH]   (IMAGE_PATH: local mode, to learn which disk holds the image)
# POSIX sh: must run under busybox ash, dash and bash.
set -u
# Every fork costs on a slow or emulated board (50-60 ms per program under QEMU TCG), so values are read
# with the shell's own `read` and forks are kept to what needs a program.
nl='
'
cr=$(printf '\r')
tab=$(printf '\t')
kv() {
  case "$2" in
    *"$nl"* | *"$cr"* | *"$tab"*) printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n\r\t' '   ')" ;;
    *) printf '%s=%s\n' "$1" "$2" ;;
  esac
}
# rd FILE: its first line in $v (empty when unreadable), without a fork.
rd() { v=; [ -r "$1" ] && read -r v < "$1"; :; }
have() { command -v "$1" >/dev/null 2>&1; }

uid=$(id -u)
kv uid "$uid"
kv user "$(id -un 2>/dev/null || echo '?')"
if [ "$uid" = 0 ]; then kv sudo root
elif ! have sudo; then kv sudo missing
elif sudo -n true >/dev/null 2>&1; then kv sudo ok
else kv sudo password
fi
kv arch "$(uname -m)"
cpus=0
while read -r key _; do [ "$key" = processor ] && cpus=$((cpus + 1)); done < /proc/cpuinfo
kv cpus "$((cpus > 0 ? cpus : 1))"
rd /proc/sys/kernel/osrelease; kv kernel "${v:-$(uname -r)}"
rd /proc/sys/kernel/hostname; kv hostname "${v:-$(hostname)}"
rd /proc/sys/kernel/random/boot_id; kv boot_id "$v"
if [ -r /proc/device-tree/model ]; then kv model "$(tr -d '\000' < /proc/device-tree/model)"
elif [ -r /sys/class/dmi/id/product_name ]; then
  rd /sys/class/dmi/id/sys_vendor; vendor=$v
  rd /sys/class/dmi/id/product_name; kv model "$vendor $v"
fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  kv os "$( . /etc/os-release 2>/dev/null; printf '%s' "${PRETTY_NAME:-${NAME:-unknown}}")"
fi
[ -r /etc/flash-live-test-board ] && rd /etc/flash-live-test-board && kv test_board "$v"
rd /proc/cmdline; kv cmdline "$v"

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
# In a subshell (one fork): the loop changes directory.
(
for dev in /sys/class/block/*; do
  [ -e "$dev/dev" ] || continue
  name=${dev##*/}
  cd -P "$dev" 2>/dev/null || continue
  real=$PWD # the device's directory under /sys/devices: a partition's parent is the one above
  part=""; start=""; parent=""
  if [ -r partition ]; then
    rd partition; part=$v
    rd start; start=$v
    parent=${real%/*}; parent=${parent##*/}
  fi
  kind=disk
  [ -n "$part" ] && kind=part
  [ -d dm ] && kind=dm
  [ -d md ] && kind=md
  case "$name" in loop*) kind=loop ;; ram*) kind=ram ;; zram*) kind=zram ;; esac
  rd device/model; model=$v
  case "$model" in *" "*) model=$(printf '%s' "$model" | tr -s ' ' | tr ' ' '_') ;; esac
  rd dev; majmin=$v
  rd size; size=$v
  rd ro; ro=${v:-0}
  rd removable; removable=${v:-0}
  printf 'block=%s %s %s %s %s %s %s %s %s %s\n' "$name" "$majmin" "$size" \
    "$kind" "${part:--}" "${start:--}" "${parent:--}" "$ro" "$removable" "${model:--}"
done
)

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
