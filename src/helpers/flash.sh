#!/bin/sh
# flash-live's helper: the only code that writes the board's disk. It runs as root under the static
# busybox that flash-live copied into its work directory on tmpfs, and calls nothing else by PATH:
# once the write starts, every page read from the old root can be garbage (FIELD-NOTES §1, §2).
#
#   busybox sh flash.sh check-source WORK CODEC FILE
#       prints the sha256 of FILE and the md5/size of its decompressed content (ramfs staging proof
#       of a file sent as it is: the board's busybox decodes all of it).
#   busybox sh flash.sh check-copy WORK FILE
#       prints the md5 of FILE (ramfs staging proof of a copy made on the sending side, which hashed
#       the image's bytes that went into it).
#   busybox sh flash.sh run    WORK [options]   the flash, in this session (stream mode reads stdin)
#   busybox sh flash.sh detach WORK [options]   the flash in a new session that survives the SSH
#                                               connection; this one follows its log
# options:
#   --disk DEV --codec xz|gz|bz2|lzo|raw --source FILE|- --size BYTES
#   --stop-units FILE   systemd units to stop, one per line
#   --ro MOUNTPOINT     remount read-only before the write (repeatable; vfat cannot be frozen)
#   --freeze MOUNTPOINT freeze with FIFREEZE before the write (repeatable; "/" last)
#   --patch FILE        sector patch index: "disk_offset length data_offset" lines; data in FILE.bin
#   --verify FILE       ranges to read back: "offset length md5" lines
#   --ranges FILE       write only these "offset length" ranges (sorted) of the image: a block map
#   --packed FILE       the stream holds only the "d" ranges of FILE's sorted "offset length d|z"
#                       lines, back to back; "z" ranges are written with zeros; the rest is left
#                       as it is (src/image/pack.ts)
#   --record OFFSET     after the verify, write the flash record (WORK/record + the result, padded
#                       with WORK/record.pad) into the 512-byte sector at OFFSET (its placeholder is
#                       in the patch)
#   --no-reboot         test hook: stop before the reboot (only used by unit tests of this script)
#   --on-fail reboot|halt  what to do when verification still fails (default reboot)
#
# Output: lines starting with "@" are for flash-live (phase, progress, verify, error, exit);
# everything else is for humans. Values reach this script only as arguments and files.
set -u

cmd=${1:-}
WORK=${2:-}
if [ -z "$cmd" ] || [ ! -d "$WORK" ]; then echo "@error usage: flash.sh check-source|check-copy|run|detach WORK ..."; exit 2; fi
shift 2
BB="$WORK/busybox"
[ -x "$BB" ] || { echo "@error $BB is missing"; exit 2; }

say() { echo "$*"; }
at() { echo "@$*"; }

decompressor() {
  case "$1" in
    xz) echo "$BB xzcat" ;;
    gz) echo "$BB zcat" ;;
    bz2) echo "$BB bzcat" ;;
    lzo) echo "$BB lzop -dc" ;;
    raw) echo "$BB cat" ;;
    *) return 1 ;;
  esac
}

if [ "$cmd" = check-source ]; then
  codec=$1 file=$2
  dec=$(decompressor "$codec") || { at "error unknown codec $codec"; exit 2; }
  at "source_sha256 $("$BB" sha256sum "$file" | "$BB" awk '{print $1}')"
  # The md5 of the decompressed bytes (which fixes their size too). One pipe only: every extra pipe
  # stage (tee to a byte counter) costs a board as much as the decompression itself.
  "$BB" rm -f "$WORK/check.rc"
  # $dec is one of the fixed command lines from decompressor().
  # shellcheck disable=SC2086
  md5=$( { $dec < "$file"; echo $? > "$WORK/check.rc"; } | "$BB" md5sum | "$BB" awk '{print $1}')
  rc=$("$BB" cat "$WORK/check.rc")
  "$BB" rm -f "$WORK/check.rc"
  [ "$rc" = 0 ] || { at "error decompressing the staged copy failed (exit $rc): the copy or the image is damaged"; exit 1; }
  at "raw_md5 $md5"
  exit 0
fi

if [ "$cmd" = check-copy ]; then
  sum=$("$BB" md5sum "$1" | "$BB" awk '{print $1}')
  [ -n "$sum" ] || { at "error could not read the staged copy $1"; exit 1; }
  at "source_md5 $sum"
  exit 0
fi

if [ "$cmd" = detach ]; then
  # Re-run ourselves in a new session (survives the SSH connection and its SIGHUP), log to tmpfs,
  # and follow the log here so the developer sees progress over this session, opened before the
  # freeze (new SSH logins hang on a frozen root: FIELD-NOTES §2).
  LOG="$WORK/flash.log"
  : > "$LOG"
  "$BB" setsid "$BB" sh "$0" run "$WORK" "$@" > "$LOG" 2>&1 < /dev/null &
  exec "$BB" tail -n +1 -f "$LOG"
fi
DISK="" CODEC=raw SOURCE="-" SIZE="" UNITS="" PATCH="" VERIFY="" RANGES="" PACKED="" RECORD="" REBOOT=1 ONFAIL=reboot
RO_LIST="" FREEZE_LIST=""
while [ $# -gt 0 ]; do
  case "$1" in
    --disk) DISK=$2; shift ;;
    --codec) CODEC=$2; shift ;;
    --source) SOURCE=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --stop-units) UNITS=$2; shift ;;
    --ro) RO_LIST="$RO_LIST
$2"; shift ;;
    --freeze) FREEZE_LIST="$FREEZE_LIST
$2"; shift ;;
    --patch) PATCH=$2; shift ;;
    --verify) VERIFY=$2; shift ;;
    --ranges) RANGES=$2; shift ;;
    --packed) PACKED=$2; shift ;;
    --record) RECORD=$2; shift ;;
    --no-reboot) REBOOT=0 ;;
    --on-fail) ONFAIL=$2; shift ;;
    *) at "error unknown option $1"; exit 2 ;;
  esac
  shift
done
[ -b "$DISK" ] || { at "error $DISK is not a block device"; exit 2; }
case "$SIZE" in '' | *[!0-9]*) at "error --size must be a byte count"; exit 2 ;; esac
case "$RECORD" in *[!0-9]*) at "error --record must be a byte offset"; exit 2 ;; esac
if [ -n "$RECORD" ] && { [ $((RECORD % 512)) != 0 ] || [ ! -s "$WORK/record" ] || [ ! -s "$WORK/record.pad" ]; }; then
  at "error --record needs a sector offset and WORK/record, WORK/record.pad"; exit 2
fi
DEC=$(decompressor "$CODEC") || { at "error unknown codec $CODEC"; exit 2; }

[ "$cmd" = run ] || { at "error unknown command $cmd"; exit 2; }
# Defence in depth for the test harness (src/core/safety.ts): a work directory staged by a harness
# run carries this marker, and then only a QEMU test board may be written.
if [ -e "$WORK/harness" ] && [ ! -e /etc/flash-live-test-board ]; then
  at "error this work directory was staged by the test harness but this machine is not a test board"
  exit 3
fi

disk_name=${DISK##*/}
committed=0
# O_DIRECT writes (copy_exact) need whole logical blocks: 512 or 4096 bytes on real disks.
DIRECT_OK=0
if read -r lbs < "/sys/block/$disk_name/queue/logical_block_size" 2>/dev/null; then
  case $lbs in 512 | 1024 | 2048 | 4096) DIRECT_OK=1 ;; esac
fi

finish() {
  rc=$?
  if [ "$committed" = 1 ] && [ "$REBOOT" = 1 ]; then
    # The old root is frozen and partly overwritten: there is nothing to go back to. Reboot at
    # once, without sync (old dirty pages would land in the new image); everything meant to
    # survive was flushed to the device already.
    trap '' HUP PIPE INT TERM
    at "reboot"
    "$BB" sleep 1
    echo b > /proc/sysrq-trigger
  fi
  at "exit $rc"
}
trap finish EXIT
trap 'exit 130' INT TERM HUP

partitions() {
  for p in /sys/block/"$disk_name"/"$disk_name"*; do
    [ -e "$p/partition" ] && echo "${p##*/}"
  done
}

# ---- quiesce: everything here may still use the old root ---------------------------------------
at "phase quiesce"
if [ -n "$UNITS" ] && [ -s "$UNITS" ]; then
  while IFS= read -r unit; do
    [ -n "$unit" ] || continue
    say "stopping $unit"
    "$BB" timeout 90 systemctl stop "$unit" || say "warning: could not stop $unit"
  done < "$UNITS"
fi
if [ -d /run/systemd/system ]; then
  # udev watches block devices and, after the write, touches the old root, whose ext4 error handler
  # then writes the OLD superblock over the new image (FIELD-NOTES §2).
  "$BB" timeout 60 systemctl stop systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-udevd.service 2>/dev/null
  "$BB" timeout 30 journalctl --relinquish-var 2>/dev/null
fi
# Swap on the target disk would be written to during the write, and tmpfs pages (the staged image)
# may sit in it: bring everything back into RAM now.
"$BB" awk 'NR > 1 && $1 !~ /zram/ {print $1}' /proc/swaps | while IFS= read -r sw; do
  "$BB" swapoff "$sw" || { at "error could not turn off swap $sw (not enough RAM?)"; exit 1; }
done || exit 1
echo 1 > /proc/sys/kernel/sysrq 2>/dev/null
"$BB" sync
echo "$RO_LIST" | while IFS= read -r mp; do
  [ -n "$mp" ] || continue
  "$BB" mount -o remount,ro "$mp" 2>/dev/null || say "warning: could not remount $mp read-only"
done
"$BB" sync

# ---- point of no return --------------------------------------------------------------------------
at "phase write"
committed=1
# From here on the helper must reach the reboot whatever happens to its session (the link drops;
# sshd and sudo run from the old root, which is being overwritten). Without these, the hang-up or
# the next "@" line into the dead pipe would end the helper and leave the board on its half-
# overwritten old system. The sending side then learns the verify result from the flash record.
trap '' HUP PIPE
t_write=$("$BB" date +%s)
echo "$FREEZE_LIST" | while IFS= read -r mp; do
  [ -n "$mp" ] || continue
  "$BB" fsfreeze --freeze "$mp" 2>/dev/null || echo "warning: could not freeze $mp"
done
for p in $(partitions); do
  "$BB" blockdev --setro "/dev/$p" 2>/dev/null
done

# The write: decompressor | dd, nothing else in the data path (each pipe stage costs a slow board
# CPU as much as the decompression). Buffered, not O_DIRECT: the kernel writes back while dd reads
# the next block, so decoding and the disk overlap. busybox dd reports records, not bytes, so each
# byte count is proven by the record count, and the input must end right after SIZE bytes.
BS=4194304
# Exactly $1 bytes from stdin (or from $3: /dev/zero): to the disk at offset $2, or discarded (no
# $2): $1/4M full records, then one partial one if there is a remainder (iflag=count_bytes reads no
# further than asked, so the next dd continues where this one stopped). One program per range: the
# record count is checked with shell builtins (a program costs a TCG board 50-60 ms, and a packed
# image has up to 512 ranges), and there is no fsync per range (each one stopped the decoder until
# the disk caught up): write_exact ends with one fsync of the device, which waits for all of it.
# Zeros (from /dev/zero) go straight to the device (O_DIRECT) when offset and length are whole 4 KiB
# blocks and the disk's logical blocks divide 4 KiB: no page-cache copy and write-back for bytes
# nothing will read. A TCG board wrote 128 MiB of zeros in 0.36 s that way, 1.16 s buffered (the
# write-back's copy costs the CPU that decodes). Past the point of no return nothing may fail that
# can still work: a direct write that fails is done again buffered.
copy_exact() {
  full=$(($1 / BS))
  part=$(($1 % BS > 0))
  if [ -n "${3:-}" ]; then
    if [ "$DIRECT_OK" = 1 ] && [ $(($1 % 4096)) = 0 ] && [ $(($2 % 4096)) = 0 ] &&
      "$BB" dd if="$3" of="$DISK" bs=$BS count="$1" iflag=fullblock,count_bytes oflag=seek_bytes,direct seek="$2" conv=notrunc 2> "$WORK/dd.last"; then
      :
    else
      "$BB" dd if="$3" of="$DISK" bs=$BS count="$1" iflag=fullblock,count_bytes oflag=seek_bytes seek="$2" conv=notrunc 2> "$WORK/dd.last" || return 1
    fi
  elif [ -n "${2:-}" ]; then
    "$BB" dd of="$DISK" bs=$BS count="$1" iflag=fullblock,count_bytes oflag=seek_bytes seek="$2" conv=notrunc 2> "$WORK/dd.last" || return 1
  else
    "$BB" dd of=/dev/null bs=$BS count="$1" iflag=fullblock,count_bytes 2> "$WORK/dd.last" || return 1
  fi
  records=1
  while IFS= read -r line; do
    echo "$line"
    case $line in "$full+$part records out"*) records=0 ;; esac
  done < "$WORK/dd.last" >> "$WORK/dd.err"
  return $records
}
write_exact() {
  if [ -n "$PACKED" ]; then
    while read -r off len kind <&4; do
      [ -n "$off" ] || continue
      if [ "$kind" = z ]; then copy_exact "$len" "$off" /dev/zero || return 1; else copy_exact "$len" "$off" || return 1; fi
    done 4< "$PACKED"
  elif [ -z "$RANGES" ]; then
    copy_exact "$SIZE" 0 || return 1
  else
    at=0
    while read -r off len <&4; do
      [ -n "$off" ] || continue
      if [ "$off" -gt "$at" ]; then copy_exact $((off - at)) || return 1; fi
      copy_exact "$len" "$off" || return 1
      at=$((off + len))
    done 4< "$RANGES"
    if [ "$SIZE" -gt "$at" ]; then copy_exact $((SIZE - at)) || return 1; fi
  fi
  # More input than the image's size: the source changed since it was checked.
  [ "$("$BB" head -c 1 | "$BB" wc -c)" = 0 ] || { echo "longer than $SIZE bytes" >> "$WORK/dd.err"; return 1; }
  # fsync of the device: every range's pages are on the disk (a write error surfaces here).
  "$BB" dd if=/dev/null of="$DISK" count=0 conv=notrunc,fsync 2>> "$WORK/dd.err" || { echo "fsync of $DISK failed" >> "$WORK/dd.err"; return 1; }
}
TOTAL=$SIZE
if [ -n "$PACKED" ]; then TOTAL=$("$BB" awk '{n += $2} END {printf "%.0f", n}' "$PACKED")
elif [ -n "$RANGES" ]; then TOTAL=$("$BB" awk '{n += $2} END {printf "%.0f", n}' "$RANGES"); fi
# The progress loop runs every second of the write, on the CPU that decodes it: shell builtins only
# (a program costs a TCG board 50-60 ms to start, an awk and a sleep per second were ~10 % of it).
# Field 7 of /sys/block/DISK/stat is the sectors written; "sleep" is a read that times out on a FIFO
# held open for reading and writing (it never has data and never ends).
sectors_written() { read -r _ _ _ _ _ _ SW _ < "/sys/block/$disk_name/stat"; }
# busybox ash's read -t (the helper runs under it); anything else falls back to sleep.
# shellcheck disable=SC3045
tick() { read -r -t 1 _ <&5 || [ $? -gt 128 ] || "$BB" sleep 1; }
exec 3<&0
"$BB" rm -f "$WORK/dec.rc" "$WORK/dd.err" "$WORK/write.rc"
sectors_written
base=$SW
# $DEC is one of the fixed command lines from decompressor().
# shellcheck disable=SC2086
{ { if [ "$SOURCE" = - ]; then $DEC <&3; else $DEC < "$SOURCE"; fi; echo $? > "$WORK/dec.rc"; } |
  { write_exact; echo $? > "$WORK/write.rc"; }; } &
writer=$!
exec 3<&-
"$BB" rm -f "$WORK/tick"
if "$BB" mkfifo -m 600 "$WORK/tick"; then exec 5<> "$WORK/tick"; else exec 5< /dev/null; fi
# Progress: sectors that reached the disk since the write began (/sys/block/DISK/stat, field 7).
last=-1
while [ -d "/proc/$writer" ]; do
  sectors_written
  pos=$(( (SW - base) * 512 ))
  [ "$pos" -gt "$TOTAL" ] && pos=$TOTAL
  if [ "$pos" != "$last" ]; then at "progress $pos $TOTAL"; last=$pos; fi
  tick
done
exec 5<&-
wait "$writer"
decrc=$("$BB" cat "$WORK/dec.rc" 2>/dev/null || echo missing)
wrc=$("$BB" cat "$WORK/write.rc" 2>/dev/null || echo missing)
if [ "$wrc" != 0 ] || [ "$decrc" != 0 ]; then
  at "error write incomplete: the image is $SIZE bytes; dd: $("$BB" tr '\n' ' ' < "$WORK/dd.err" 2>/dev/null), decompressor exit $decrc"
  exit 1
fi
at "progress $TOTAL $TOTAL"

apply_extents() { # INDEX DATA: write "disk_offset length data_offset" extents
  while read -r off len doff; do
    [ -n "$off" ] || continue
    "$BB" dd if="$2" of="$DISK" bs=64k iflag=skip_bytes,count_bytes oflag=seek_bytes \
      skip="$doff" seek="$off" count="$len" conv=notrunc,fsync 2>/dev/null || return 1
  done < "$1"
}
if [ -n "$PATCH" ]; then
  at "phase customize"
  apply_extents "$PATCH" "$PATCH.bin" || { at "error writing the customization sectors failed"; exit 1; }
fi
"$BB" blockdev --flushbufs "$DISK"
# Read-back must come from the device, not the page cache: flushbufs (BLKFLSBUF) writes back and
# drops the disk's cache, and the read-back uses O_DIRECT. Not drop_caches: it would also evict the
# old root's file pages, which the running sshd, sudo and systemd would then fault back in from the
# overwritten disk.

repair_pieces() { # stdin: bad "offset length" lines; out: "disk_offset length copy_offset|-" lines
  if [ -z "$PACKED" ]; then "$BB" awk '{print $1, $2, $1}'; return; fi
  "$BB" awk -v layout="$PACKED" '
    BEGIN { n = 0; p = 0
      while ((getline line < layout) > 0) { split(line, f, " "); o[n] = f[1]; l[n] = f[2]; k[n] = f[3]; s[n] = p; if (f[3] != "z") p += f[2]; n++ } }
    { a = $1; b = $1 + $2
      for (i = 0; i < n; i++) { from = (a > o[i]) ? a : o[i]; to = (b < o[i] + l[i]) ? b : o[i] + l[i]
        if (to <= from) continue
        if (k[i] == "z") printf "%.0f %.0f -\n", from, to - from; else printf "%.0f %.0f %.0f\n", from, to - from, s[i] + from - o[i] } }'
}

verify_all() { # prints the bad ranges, one per line; "@progress" lines go to fd 4 (the helper's stdout)
  vtotal=$("$BB" awk '{ t += $2 } END { printf "%.0f", t }' "$1")
  vdone=0
  while read -r off len want; do
    [ -n "$off" ] || continue
    got=$("$BB" dd if="$DISK" bs=1M iflag=skip_bytes,count_bytes,direct skip="$off" count="$len" 2>/dev/null |
      "$BB" md5sum | "$BB" awk '{print $1}')
    if [ "$got" != "$want" ]; then echo "$off $len $want"; fi
    vdone=$((vdone + len))
    at "progress $vdone $vtotal" >&4
  done < "$1"
}
exec 4>&1
t_written=$("$BB" date +%s)
verify_result=skipped
if [ -n "$VERIFY" ]; then
  at "phase verify"
  # Test-only fault injection between write and read-back (src/core/safety.ts: staged only by the
  # harness, and flash.sh refuses harness work directories outside a test board).
  if [ -e "$WORK/fault.sh" ] && [ -e "$WORK/harness" ]; then "$BB" sh "$WORK/fault.sh" "$DISK" "$BB"; fi
  bad=$(verify_all "$VERIFY")
  if [ -n "$bad" ] && [ "$SOURCE" != - ]; then
    at "verify-mismatch $(echo "$bad" | "$BB" awk '{printf "%s+%s ", $1, $2}')"
    # Where each bad range's bytes are in the copy: "disk_offset length copy_offset", or "-" for
    # zeros; a packed copy holds only the layout's "d" ranges, back to back.
    echo "$bad" | repair_pieces | while read -r off len src; do
      if [ "$src" = - ]; then copy_exact "$len" "$off" /dev/zero; continue; fi
      # Skip in whole blocks: busybox dd skips bytes of a pipe (skip_bytes) one read(2) of 1 byte
      # at a time. The largest power of two up to 1 MiB that divides both offsets (ranges start on
      # 64 MiB boundaries, on a block map's blocks, on the layout's 1 MiB blocks).
      bs=1048576
      while [ $((off % bs)) != 0 ] || [ $((src % bs)) != 0 ]; do bs=$((bs / 2)); done
      # The decoder's stderr is dropped: dd stops reading at count, and the decoder then reports its
      # broken pipe ("lzop: short write"), which is how this pipe ends. A real decode error leaves the
      # range short or wrong, and the read-back below reports it.
      # shellcheck disable=SC2086
      $DEC < "$SOURCE" 2>/dev/null | "$BB" dd of="$DISK" bs=$bs iflag=count_bytes,fullblock \
        skip=$((src / bs)) seek=$((off / bs)) count="$len" conv=notrunc,fsync 2>/dev/null
    done
    [ -n "$PATCH" ] && apply_extents "$PATCH" "$PATCH.bin"
    "$BB" blockdev --flushbufs "$DISK"
    at "repaired"
    repaired=1
    at "phase verify again"
    bad=$(verify_all "$VERIFY")
  fi
  if [ -n "$bad" ]; then
    verify_result=failed
    at "verify-failed $(echo "$bad" | "$BB" awk '{printf "%s+%s ", $1, $2}')"
    echo "flash-live: VERIFICATION FAILED: the disk does not hold the image. Bad ranges: $bad" > /dev/console 2>/dev/null
  else
    verify_result=ok
    [ "${repaired:-0}" = 1 ] && verify_result=repaired
    at "verify-ok"
  fi
fi
t_verified=$("$BB" date +%s)

# The record: what the sending side knew, plus what happened here. One sector, written last; it
# is not part of the read-back (it did not exist yet), so it is read back on its own.
if [ -n "$RECORD" ]; then
  {
    "$BB" cat "$WORK/record"
    echo "verify=$verify_result"
    [ -n "${bad:-}" ] && echo "bad-ranges=$(echo "$bad" | "$BB" awk '{printf "%s+%s ", $1, $2}' | "$BB" head -c 40)"
    echo "write-seconds=$((t_written - t_write))"
    echo "verify-seconds=$((t_verified - t_written))"
    echo "finished=$("$BB" date -u +%Y-%m-%dT%H:%M:%SZ)"
    "$BB" cat "$WORK/record.pad"
  } | "$BB" dd of="$DISK" bs=512 count=1 seek=$((RECORD / 512)) iflag=fullblock conv=notrunc,fsync 2>/dev/null
  "$BB" blockdev --flushbufs "$DISK"
  if "$BB" dd if="$DISK" bs=512 count=1 skip=$((RECORD / 512)) 2>/dev/null | "$BB" grep -q "^verify=$verify_result\$"; then
    at "record-written $RECORD"
  else
    at "record-failed the record sector at $RECORD did not read back"
  fi
fi

if [ "$verify_result" = failed ] && [ "$ONFAIL" = halt ]; then
  at "halting: the board stays off so the disk can be inspected or re-flashed"
  committed=0
  echo o > /proc/sysrq-trigger
fi
at "phase done"
exit 0
